# %% [markdown]
# # 08 · MCG and geometry — exercises
#
# Companion to `lessons/08_mcg_geometry.py`. You will write
#
# 1. a **tangent check**: the share of a gradient that points off a manifold, given a basis of the
#    tangent space;
# 2. one **MCG inpainting step**: the gradient step, then the replacement of the measured pixels by
#    the measurement noised to the new level (Chung, Sim, Ryu & Ye, NeurIPS 2022).
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's reference, so the notebook runs
# top to bottom even before you start.
#
# **The testbed** (as in the lesson): $16\times16$ smooth images $x_0 = \mu + Uc$, $c\sim\mathcal N(0,\Lambda)$,
# with $U$ the 9 lowest-frequency cosine patterns; the manifold $\mathcal M = \mu + \operatorname{span}U$
# is flat, and its tangent space is $\operatorname{span}U$ everywhere. The measurement hides the middle
# $8\times8$ block. VE convention: a state at level $\sigma$ is $x = x_0 + \sigma z$.

# %%
import math

import matplotlib.pyplot as plt
import torch

from diffcourse.checks.lesson08 import check_mcg_inpaint_step, check_normal_fraction
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.noise import GaussianNoise
from diffcourse.physics.operators import Inpaint, box_mask
from diffcourse.plot import show_images
from diffcourse.posterior import guidance, solvers
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.samplers.steps import ddpm_step
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64


def seeded(k):
    return torch.Generator().manual_seed(k)


H = 16
n = torch.arange(H, dtype=F64)
cos1d = torch.stack([torch.cos(math.pi * (2 * n + 1) * a / (2 * H)) for a in range(3)])
cos1d = cos1d / cos1d.norm(dim=1, keepdim=True)
U = torch.stack([torch.outer(cos1d[a], cos1d[b]) for a in range(3) for b in range(3)]).reshape(9, -1).T  # (d, k)
lam = torch.tensor([9.0 / (1 + a * a + b * b) for a in range(3) for b in range(3)], dtype=F64)
d, k = U.shape
mu = torch.full((d,), 0.5, dtype=F64)
P_perp = torch.eye(d, dtype=F64) - U @ U.T
prior = GaussianMixture(torch.ones(1, dtype=F64), mu[None], (U @ torch.diag(lam) @ U.T + 1e-14 * P_perp)[None])
hide = box_mask(H, (4, 4, 8, 8)).to(F64)                         # 1 = measured, 0 = hidden
op = Inpaint(hide)
x_true = prior.sample(1, generator=seeded(2)).reshape(1, 1, H, H)
lik = Likelihood.measure(op, GaussianNoise(1e-3), x_true, generator=seeded(3))

# %% [markdown]
# ## Exercise 1 · Is a gradient tangent to the manifold?
#
# Given vectors $g$ (a batch, each with $d$ values: shape (B, d) or image-shaped (B, 1, H, W)) and a
# basis $B\in\mathbb R^{d\times k}$ of the tangent space, return for each sample the **normal fraction**
#
# $$ \frac{\|g - \Pi g\|}{\|g\|},\qquad \Pi = \text{the orthogonal projector onto } \operatorname{span}B , $$
#
# 0 for a tangent vector, 1 for a normal one. Careful: the columns of `basis` are **not necessarily
# orthonormal** (below we pass $U\Lambda^{1/2}$, the prior's own square-root covariance), so $BB^\top$ is
# not a projector; orthonormalise first (`torch.linalg.qr`) or use $B(B^\top B)^{-1}B^\top$. Return a
# tensor of shape (B,), one value per sample.

# %%
def normal_fraction(g, basis):
    """||g - Π g|| / ||g|| per sample, Π the orthogonal projector onto span(basis); g (B, ...), basis (d, k)."""
    ### BEGIN SOLUTION
    Q, _ = torch.linalg.qr(basis)                                 # orthonormal basis of the span, (d, k)
    gf = g.flatten(1)                                             # (B, d)
    return (gf - gf @ Q @ Q.T).norm(dim=1) / gf.norm(dim=1)
    ### END SOLUTION


# %%
check_normal_fraction(normal_fraction)

# %% tags=["solution"]
assert check_normal_fraction(normal_fraction, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# With it, three gradients at 64 noisy states per level: the MCG gradient
# $\nabla_x\|y - A\hat x_0(x)\|^2$ (`guidance.mcg`, up to its sign), DPS's (the same direction) and the
# measurement-space gradient $A^\top(y-Ax)$ (`Likelihood.grad`). The first two are tangent to float
# precision; the third is not.

# %%
basis = U * lam.sqrt()                                           # a tangent basis, not orthonormal
print(f"{'sigma':>6} {'MCG':>10} {'DPS':>10} {'Aᵀ(y-Ax)':>10}   (largest normal fraction over 64 states)")
largest = {}
for s in (0.1, 0.5, 2.0):
    x = prior.sample(64, generator=seeded(4)).reshape(64, 1, H, H) + s * torch.randn(64, 1, H, H, generator=seeded(5),
                                                                                       dtype=F64)
    largest[s] = [check_normal_fraction.reference(g, basis).max().item() for g in
                  (guidance.mcg(prior.denoiser, x, s, lik), guidance.dps(prior.denoiser, x, s, lik), lik.grad(x))]
    print(f"{s:6} " + " ".join(f"{v:10.1e}" for v in largest[s]))
assert all(v[0] < 1e-10 and v[1] < 1e-10 and v[2] > 0.3 for v in largest.values())

# %% [markdown]
# ## Exercise 2 · One MCG inpainting step
#
# The official MCG inpainting code (Chung, Sim, Ryu & Ye, NeurIPS 2022) does, after the ordinary
# reverse step $x'_{i-1}$ from $x_i$ (a DDPM step, here in VE coordinates at level $\sigma' = \sigma_{i-1}$):
#
# $$ x''_{i-1} = x'_{i-1} - \alpha\, g,\qquad g = \nabla_{x_i}\|y - P\odot\hat x_0(x_i)\|_2^2, \qquad
#    x_{i-1} = (1-P)\odot x''_{i-1} + P\odot\big(y + \sigma' z\big), $$
#
# with $P$ the mask (1 = measured) and $z\sim\mathcal N(0, I)$: the measured pixels are **replaced** by the
# measurement noised to the state's new level, so the state stays on its layer of the onion. (The code
# masks the gradient with $1-P$; after the replacement that changes nothing.) Complete `mcg_inpaint_step`:
# `x_next` is $x'_{i-1}$, `grad` is $g$ (the gradient of the misfit, not of the log-likelihood), `y`
# the measurement (only its measured pixels count), `mask` (H, W), `sigma_next` $= \sigma'$, `z` a noise
# draw shaped like `x_next`, `alpha` a number or a per-sample tensor (B, 1, 1, 1).

# %%
def mcg_inpaint_step(x_next, grad, y, mask, sigma_next, z, alpha):
    """(1 - P) (x' - α g) + P (y + σ' z): MCG's gradient step and noisy replacement; x_next, grad, z (B, 1, H, W)."""
    ### BEGIN SOLUTION
    y_noisy = y + sigma_next * mask * z                           # the measurement at level σ'
    return (1 - mask) * (x_next - alpha * grad) + mask * y_noisy
    ### END SOLUTION


# %%
check_mcg_inpaint_step(mcg_inpaint_step)

# %% tags=["solution"]
assert check_mcg_inpaint_step(mcg_inpaint_step, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# A whole MCG run is this step in a loop. The library's `solvers.mcg` uses the code's non-squared norm,
# $\alpha\nabla\|r\| = \tfrac{\alpha}{2\|r\|}\nabla\|r\|^2$, and the VP→VE factor
# $c = \sqrt{(1+\sigma^2)(1+\sigma'^2)}$, so the loop below passes $\alpha_i = \alpha c/(2\|r\|)$ per sample.
# With the random draws taken in the solver's order (DDPM noise, then the measurement's noise) the
# loop with the reference step reproduces `solvers.mcg` exactly.

# %%
sigmas = karras_sigmas(40, 0.002, 20.0)
x_start = 20.0 * torch.randn(16, 1, H, H, generator=seeded(6), dtype=F64)
gen, x = seeded(7), x_start
levels = sigmas.tolist()
for s, s_next in zip(levels[:-1], levels[1:]):
    x0_hat = prior.denoiser(x, s)
    grad = -guidance.mcg(prior.denoiser, x, s, lik)               # ∇ ||y - A x0_hat||², the misfit's gradient
    x_next = ddpm_step(x, x0_hat, s, s_next, torch.randn(x.shape, generator=gen, dtype=F64))
    r_norm = lik.residual(x0_hat).flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
    alpha_i = 1.0 * math.sqrt((1 + s ** 2) * (1 + s_next ** 2)) / (2 * r_norm)
    z = torch.randn(x.shape, generator=gen, dtype=F64) if s_next > 0 else torch.zeros_like(x)
    x = check_mcg_inpaint_step.reference(x_next, grad, lik.y, hide, s_next, z, alpha_i)
library = solvers.mcg(prior.denoiser, x_start, sigmas, lik, alpha=1.0, generator=seeded(7))
loop_gap = (x - library).abs().max().item()
print(f"loop of MCG inpainting steps vs solvers.mcg: largest difference {loop_gap:.1e}")
assert loop_gap < 1e-10

show_images([x_true, lik.y * hide, x[:4]], ["truth", "measured", "MCG 1", "MCG 2", "MCG 3", "MCG 4"],
            vmin=-0.3, vmax=1.3, size=1.8)
plt.show()
