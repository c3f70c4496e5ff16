# %% [markdown]
# # 03 · Langevin dynamics — exercises
#
# Companion to `lessons/03_langevin.py`. You will write
#
# 1. one **annealed Langevin step** at noise level $\sigma$ from a denoiser $D$,
# 2. the **step-size ladder** $\alpha_i = \epsilon\,\sigma_i^2/\sigma_L^2$ of NCSN,
# 3. the **radius and thickness of the Gaussian shell** on which noisy images live.
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's implementation, so the notebook
# runs top to bottom even before you start.
#
# **Convention** (as in `diffcourse.prior.samplers`): the *paper form* of Song & Ermon (2019, Alg. 1),
# $x \leftarrow x + \tfrac{\alpha}{2}\,s(x,\sigma) + \sqrt{\alpha}\,z$. Official code writes
# $x \leftarrow x + \delta s + \sqrt{2\delta}\,z$; the two agree for $\alpha = 2\delta$.

# %%
import math

import matplotlib.pyplot as plt
import torch

from diffcourse.checks.lesson03 import check_langevin_step, check_shell, check_step_sizes
from diffcourse.prior.processes import ve_sigmas
from diffcourse.prior.samplers import annealed_langevin
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64

# %% [markdown]
# ## Exercise 1 · One Langevin step from a denoiser
#
# A denoiser $D(x,\sigma)\approx\mathbb E[x_0\mid x]$ gives the score of the noisy density by
# Tweedie's formula, $s(x,\sigma) = (D(x,\sigma) - x)/\sigma^2$. Complete `langevin_step` so that it
# returns
#
# $$ x + \tfrac{\alpha}{2}\, s(x, \sigma) + \sqrt{\alpha}\, z $$
#
# for a given noise draw `z` (same shape as `x`); `sigma` and `alpha` are positive numbers.
# Watch the factor 2: do not mix the paper form with the code form.

# %%
def langevin_step(D, x, sigma, alpha, z):
    """One paper-form Langevin step at noise level sigma (Song & Ermon 2019, Alg. 1); x, z: (B, ...)."""
    ### BEGIN SOLUTION
    score = (D(x, sigma) - x) / sigma ** 2
    return x + (alpha / 2) * score + math.sqrt(alpha) * z
    ### END SOLUTION


# %%
check_langevin_step(langevin_step)

# %% tags=["solution"]
assert check_langevin_step(langevin_step, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# `annealed_langevin` repeats this step `n_steps_each` times per level of a decreasing ladder.
# Here it samples the two-mode mixture of the lesson, $\tfrac15\mathcal N((-5,-5),I)+\tfrac45\mathcal N((5,5),I)$,
# from a uniform start (the library's sampler, not your function, so this runs either way).

# %%
p = GaussianMixture(torch.tensor([0.2, 0.8], dtype=F64), torch.tensor([[-5.0, -5.0], [5.0, 5.0]], dtype=F64),
                    torch.eye(2, dtype=F64).repeat(2, 1, 1))
gen = torch.Generator().manual_seed(0)
x_start = 16 * torch.rand(1000, 2, generator=gen, dtype=F64) - 8
sigmas = ve_sigmas(10, 0.1, 20.0, append_zero=False)
x_end = annealed_langevin(p.denoiser, x_start, sigmas, eps=0.2 * 0.1 ** 2, n_steps_each=60, generator=gen)
heavy = (x_end.sum(dim=1) > 0).double().mean().item()
exact = p.sample(1000, generator=gen)

fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharex=True, sharey=True)
axes[0].scatter(exact[:, 0], exact[:, 1], s=2)
axes[0].set_title("exact samples")
axes[1].scatter(x_end[:, 0], x_end[:, 1], s=2, color="tab:green")
axes[1].set_title(f"annealed Langevin (heavy mode {heavy:.2f}, true 0.8)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 2 · The step-size ladder
#
# NCSN chooses $\alpha_i = \epsilon\,\sigma_i^2/\sigma_L^2$ for the levels $\sigma_1 > \dots > \sigma_L$
# (index 1 is the *largest* $\sigma$), so that the drift-to-noise ratio
# $\tfrac{\alpha_i}{2}\|s\|/(\sqrt{\alpha_i}\|z\|)\approx\sqrt{\alpha_i}/(2\sigma_i)$ is the same at every
# level, and $\epsilon$ is the step at the last level. Complete `step_sizes`: given the ladder
# `sigmas` (a decreasing 1-D tensor of positive values) and `eps`, return the tensor of the
# $\alpha_i$ (paper form, shape `(L,)`).

# %%
def step_sizes(sigmas, eps):
    """alpha_i = eps * sigma_i^2 / sigma_L^2 (Song & Ermon 2019, Alg. 1); sigmas (L,) -> (L,)."""
    ### BEGIN SOLUTION
    return eps * (sigmas / sigmas[-1]) ** 2
    ### END SOLUTION


# %%
check_step_sizes(step_sizes)

# %% tags=["solution"]
assert check_step_sizes(step_sizes, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# **The factor 2 in the wild.** The NCSN paper (Song & Ermon, NeurIPS 2019, Sec. 5) quotes
# $\epsilon = 2\times10^{-5}$, but its official code uses `step_lr = 2e-5` as the code-form $\delta$,
# i.e. $\epsilon = 2\delta = 4\times10^{-5}$ in our form. With the ladder of NCSN's configuration
# ($\sigma$: 1 → 0.01, 10 levels, geometric), the reference
# answer gives these steps — and the drift-to-noise ratio $\sqrt{\alpha_i}/(2\sigma_i)$ is indeed
# constant:

# %%
ncsn = ve_sigmas(10, 0.01, 1.0, append_zero=False)
alphas = check_step_sizes.reference(ncsn, 2 * 2e-5)
ratio = alphas.sqrt() / (2 * ncsn)
for s, a, r in zip(ncsn.tolist(), alphas.tolist(), ratio.tolist()):
    print(f"sigma = {s:7.4f}   alpha = {a:9.3e}   sqrt(alpha)/(2 sigma) = {r:.4f}")

# %% [markdown]
# ## Exercise 3 · The Gaussian shell
#
# For $z\sim\mathcal N(0, I_d)$, $\|z\|^2$ has mean $d$ and variance $2d$. Complete `shell` to return
# the typical **radius** of $\|\sigma z\|$ and its **spread** (standard deviation) for large $d$, as a
# pair `(radius, spread)` of numbers. Hint: for $y = \|z\|^2$ near its mean, $\sqrt y \approx \sqrt d + (y - d)/(2\sqrt d)$.

# %%
def shell(sigma, d):
    """(radius, spread) of ||sigma z|| for z ~ N(0, I_d), d large (Gaussian annulus theorem)."""
    ### BEGIN SOLUTION
    return sigma * math.sqrt(d), sigma / math.sqrt(2)
    ### END SOLUTION


# %%
check_shell(shell)

# %% tags=["solution"]
assert check_shell(shell, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# A noisy $64\times64$ image $x = x_0 + \sigma z$ sits at distance $\|\sigma z\|$ from $x_0$. The
# histogram of that distance for three noise levels, with the reference radius ± 3 spreads marked:
# the shells are thin, and even levels only 20 % apart do not overlap at $d = 4096$.

# %%
d = 64 * 64
norms = torch.randn(2000, d, generator=torch.Generator().manual_seed(1)).norm(dim=1)   # ||z||, (2000,)
plt.figure(figsize=(8, 3))
for sigma in (0.2, 0.25, 0.3):
    radius, spread = check_shell.reference(sigma, d)
    plt.hist((sigma * norms).numpy(), bins=40, density=True, alpha=0.6, label=f"sigma = {sigma}")
    plt.axvspan(radius - 3 * spread, radius + 3 * spread, color="k", alpha=0.08)
plt.xlabel(r"$\|x - x_0\|$")
plt.legend()
plt.tight_layout()
plt.show()
