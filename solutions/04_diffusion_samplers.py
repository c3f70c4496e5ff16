# %% [markdown]
# # 04 · Diffusion samplers — exercises
#
# Companion to `lessons/04_diffusion_samplers.py`. You will write
#
# 1. one **DDIM step** in VP coordinates, with the stochasticity $\eta$,
# 2. the **VE → VP conversion** of a state and its noise level,
# 3. an **ε-model from a VE denoiser** — the bijection that lets one denoiser drive DDPM.
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's implementation, so the notebook
# runs top to bottom even before you start.
#
# **Conventions** (as in `diffcourse.prior`): VE state $x = x_0 + \sigma z$; VP state
# $x_{\rm VP} = \sqrt{\bar\alpha}\,x_0 + \sqrt{1-\bar\alpha}\,z$; they are the same state at another scale,
# $x_{\rm VP} = \sqrt{\bar\alpha}\,x$ with $\bar\alpha = 1/(1+\sigma^2)$.

# %%
import math

import matplotlib.pyplot as plt
import torch

from diffcourse.checks.lesson04 import check_ddim_step, check_eps_from_denoiser, check_ve_to_vp
from diffcourse.prior.processes import alpha_bar_from_sigma, karras_sigmas
from diffcourse.prior.samplers import ddim, ddpm, ddpm_vp
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64
gen = torch.Generator().manual_seed(0)
p = GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=F64),
                    torch.tensor([[-1.0, 0.0], [1.0, 0.8], [0.3, -1.2]], dtype=F64),
                    torch.stack([0.05 * torch.eye(2, dtype=F64), 0.04 * torch.eye(2, dtype=F64),
                                 0.03 * torch.eye(2, dtype=F64)]))
exact = p.sample(1000, generator=gen)

# %% [markdown]
# ## Exercise 1 · One DDIM step
#
# DDIM (Song, Meng & Ermon, ICLR 2021, Eq. 12) moves a VP state $x_t$ with noise prediction $\hat\epsilon$ to the
# level $\bar\alpha_{t'}$ (with $\bar\alpha_{t'} > \bar\alpha_t$: less noise) by
#
# $$ \hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon}{\sqrt{\bar\alpha_t}},\qquad
#    x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t'}-\sigma_\eta^2}\;\hat\epsilon + \sigma_\eta\, z,\qquad
#    \sigma_\eta = \eta\sqrt{\frac{1-\bar\alpha_{t'}}{1-\bar\alpha_t}}\sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_{t'}}} . $$
#
# Complete `ddim_step` for a given noise draw `z` (same shape as `x_t`); `alpha_bar`,
# `alpha_bar_next` and `eta` are numbers. Careful: the variance of the fresh noise is
# $\eta^2\tilde\beta$, not $\eta\tilde\beta$ (a slip easily made, and seen in presentations).

# %%
def ddim_step(x_t, eps_hat, alpha_bar, alpha_bar_next, eta, z):
    """One DDIM step in VP coordinates (Song, Meng & Ermon 2021, Eq. 12); x_t, eps_hat, z: (B, ...)."""
    ### BEGIN SOLUTION
    x0_hat = (x_t - math.sqrt(1 - alpha_bar) * eps_hat) / math.sqrt(alpha_bar)
    sigma_eta = eta * math.sqrt((1 - alpha_bar_next) / (1 - alpha_bar)) * math.sqrt(1 - alpha_bar / alpha_bar_next)
    direction = math.sqrt(1 - alpha_bar_next - sigma_eta ** 2) * eps_hat
    return math.sqrt(alpha_bar_next) * x0_hat + direction + sigma_eta * z
    ### END SOLUTION


# %%
check_ddim_step(ddim_step)

# %% tags=["solution"]
assert check_ddim_step(ddim_step, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# A whole DDIM sampler is this step in a loop. Below, the reference step runs in VP coordinates with
# the exact $\hat\epsilon$ of the mixture, and its end points are compared with the library's `ddim`,
# which runs in VE coordinates: with the same noise draws they coincide.

# %%
sigmas = karras_sigmas(30, 0.002, 40.0)
abars = alpha_bar_from_sigma(sigmas).tolist()
x_ve0 = exact + 40.0 * torch.randn(1000, 2, generator=gen, dtype=F64)
for eta in (0.0, 1.0):
    g = torch.Generator().manual_seed(1)
    x = math.sqrt(abars[0]) * x_ve0
    for i in range(len(abars) - 1):
        sigma = math.sqrt((1 - abars[i]) / abars[i])
        eps_hat = (x / math.sqrt(abars[i]) - p.denoiser(x / math.sqrt(abars[i]), sigma)) / sigma
        z = torch.randn(x.shape, generator=g, dtype=F64) if eta > 0 else torch.zeros_like(x)
        x = check_ddim_step.reference(x, eps_hat, abars[i], abars[i + 1], eta, z)
    library = ddim(p.denoiser, x_ve0, sigmas, eta=eta, generator=torch.Generator().manual_seed(1))
    print(f"eta = {eta:g}: VP loop vs library ddim (VE), largest difference {(x - library).abs().max():.1e}")

fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharex=True, sharey=True)
axes[0].scatter(exact[:, 0], exact[:, 1], s=2)
axes[0].set_title("exact samples")
axes[1].scatter(x[:, 0], x[:, 1], s=2, color="tab:green")
axes[1].set_title("DDIM η = 1 (= DDPM), 30 steps, VP loop")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 2 · From VE to VP
#
# Dividing $x_{\rm VP} = \sqrt{\bar\alpha}\,x_0 + \sqrt{1-\bar\alpha}\,z$ by $\sqrt{\bar\alpha}$ gives the VE state at
# $\sigma^2 = (1-\bar\alpha)/\bar\alpha$. Complete `ve_to_vp`: given a VE state `x` at noise level `sigma`
# (a number), return the pair `(x_vp, alpha_bar)`.

# %%
def ve_to_vp(x, sigma):
    """VE state at noise level sigma -> (VP state, alpha_bar) (Kawar et al. 2022, App. B)."""
    ### BEGIN SOLUTION
    alpha_bar = 1 / (1 + sigma ** 2)
    return math.sqrt(alpha_bar) * x, alpha_bar
    ### END SOLUTION


# %%
check_ve_to_vp(ve_to_vp)

# %% tags=["solution"]
assert check_ve_to_vp(ve_to_vp, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# The same noisy mixture in both coordinates: VE spreads with $\sigma$, VP stays in a box of size
# about 1 and fades the signal by $\sqrt{\bar\alpha}$.

# %%
fig, axes = plt.subplots(2, 3, figsize=(12, 8))
for col, sigma in enumerate((0.3, 1.0, 3.0)):
    x_ve = exact + sigma * torch.randn(1000, 2, generator=gen, dtype=F64)
    x_vp, alpha_bar = check_ve_to_vp.reference(x_ve, sigma)
    for row, (pts, name) in enumerate(((x_ve, f"VE, σ = {sigma:g}"), (x_vp, f"VP, ᾱ = {alpha_bar:.3f}"))):
        axes[row, col].scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.5)
        axes[row, col].set(title=name, aspect="equal")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 3 · An ε-model from a VE denoiser
#
# DDPM code (Ho et al. 2020, Alg. 2) asks for a noise prediction $\hat\epsilon(x_{\rm VP}, \bar\alpha)$ in VP
# coordinates. A VE denoiser $D(x,\sigma)$ gives it: rescale to the VE state $x = x_{\rm VP}/\sqrt{\bar\alpha}$ at
# $\sigma = \sqrt{(1-\bar\alpha)/\bar\alpha}$; since $x = x_0 + \sigma\epsilon$, $\hat\epsilon = (x - D(x,\sigma))/\sigma$.
# Complete `eps_from_denoiser` (`alpha_bar` is a number).

# %%
def eps_from_denoiser(D, x_vp, alpha_bar):
    """Noise prediction in VP coordinates from a VE denoiser D(x, sigma); x_vp: (B, ...)."""
    ### BEGIN SOLUTION
    sigma = math.sqrt((1 - alpha_bar) / alpha_bar)
    x = x_vp / math.sqrt(alpha_bar)
    return (x - D(x, sigma)) / sigma
    ### END SOLUTION


# %%
check_eps_from_denoiser(eps_from_denoiser)

# %% tags=["solution"]
assert check_eps_from_denoiser(eps_from_denoiser, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# With it, `ddpm_vp` (Ho et al.'s Algorithm 2, VP coordinates) samples the mixture from
# $x_T\sim\mathcal N(0, I)$ — and the library's `ddpm`, written in VE coordinates with the
# denoiser itself, follows the same chain (same noise draws).

# %%
def eps_model(x_vp, alpha_bar):                 # ddpm_vp passes alpha_bar as a (B,) tensor
    return check_eps_from_denoiser.reference(p.denoiser, x_vp, alpha_bar[0].item())


chain = alpha_bar_from_sigma(karras_sigmas(100, 0.002, 80.0))    # increasing, ends at 1
x_T = torch.randn(1000, 2, generator=gen, dtype=F64)
vp = ddpm_vp(eps_model, x_T, chain, generator=torch.Generator().manual_seed(2))
ve = ddpm(p.denoiser, x_T / chain[0].sqrt(), karras_sigmas(100, 0.002, 80.0),
          generator=torch.Generator().manual_seed(2))
print(f"DDPM, VP (eps-model) vs VE (denoiser): largest difference {(vp - ve).abs().max():.1e}")

plt.figure(figsize=(4.5, 4.2))
plt.scatter(exact[:, 0], exact[:, 1], s=2, alpha=0.4, label="exact")
plt.scatter(vp[:, 0], vp[:, 1], s=2, alpha=0.4, label="DDPM (VP), 100 steps")
plt.legend(markerscale=5)
plt.gca().set_aspect("equal")
plt.tight_layout()
plt.show()
