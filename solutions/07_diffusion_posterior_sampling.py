# %% [markdown]
# # 07 · Diffusion posterior sampling — exercises
#
# Companion to `lessons/07_diffusion_posterior_sampling.py`. You will write
#
# 1. the **DPS guidance term** for a linear problem with Gaussian noise — a gradient *through the
#    denoiser*, by autograd,
# 2. the **official code's DPS step** $-\zeta\nabla_x\|y-A\hat x_0\|$ and its conversion to the paper's step
#    size,
# 3. the **Poisson-weighted misfit** $\|y-A x\|^2_\Lambda$ of DPS for shot noise.
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's implementation, so the notebook
# runs top to bottom even before you start.
#
# **Conventions** (as in `diffcourse`): VE state $x = x_0 + \sigma z$, a batch of $N$ points in $\mathbb R^d$
# of shape `(N, d)`; a denoiser `D(x, sigma)` $\approx\mathbb E[x_0\mid x]$; a matrix `A` of shape `(m, d)`
# acts on every row, $A\hat x_0$ = `x0_hat @ A.T`; `y` is one measurement of shape `(m,)`, shared by the batch.

# %%
import matplotlib.pyplot as plt
import torch

from diffcourse.checks.lesson07 import check_dps_code_step, check_dps_guidance, check_poisson_misfit
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.matrix import Matrix
from diffcourse.physics.noise import GaussianNoise, PoissonNoise
from diffcourse.physics.operators import Identity
from diffcourse.posterior import guidance
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64
gen = torch.Generator().manual_seed(0)
ring = GaussianMixture.ring(8, radius=1.0, std=0.1, dtype=F64)

# %% [markdown]
# ## Exercise 1 · The DPS guidance term
#
# DPS (Chung, Kim, McCann, Klasky & Ye, ICLR 2023) replaces the intractable likelihood of a noisy
# state by the likelihood of its Tweedie estimate $\hat x_0(x) = D(x,\sigma)$. For $y = Ax_0 + \sigma_y n$:
#
# $$ g(x) = \nabla_x \log \mathcal N\big(y;\ A\hat x_0(x),\ \sigma_y^2 I\big)
#         = -\frac{1}{2\sigma_y^2}\nabla_x\big\|y - A D(x,\sigma)\big\|^2 . $$
#
# Complete `dps_guidance`: compute the log-likelihood of each sample at $\hat x_0$ and let
# `torch.autograd.grad` differentiate it with respect to $x$ — *through* `D`. (Inside a function
# that must work whether or not gradients are enabled, use `with torch.enable_grad():` and a copy
# `x.detach().requires_grad_(True)`.) The samples are independent, so the gradient of the *sum* over
# the batch is the per-sample gradient.

# %%
def dps_guidance(D, x, sigma, A, y, sigma_y):
    """∇_x log N(y; A D(x, σ), σ_y² I) per sample (Chung et al., ICLR 2023); x (N, d), A (m, d), y (m,)."""
    ### BEGIN SOLUTION
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        x0_hat = D(xg, sigma)                                    # (N, d)
        log_lik = -((y - x0_hat @ A.T) ** 2).sum(1) / (2 * sigma_y ** 2)
        (g,) = torch.autograd.grad(log_lik.sum(), xg)
    return g
    ### END SOLUTION


# %%
check_dps_guidance(dps_guidance)

# %% tags=["solution"]
assert check_dps_guidance(dps_guidance, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# The library's `guidance.dps(D, x, sigma, lik)` computes the same term for any `Likelihood`. On the
# ring testbed of the lesson ($y = x_{0,1} + n = 0.5$, $\sigma_y = 0.1$) we compare it with the exact
# likelihood score `guidance.exact` as a vector field at one noise level. The arrows are drawn at
# unit length: both fields push towards the measured line $x_1 = 0.5$, with different directions in
# places — and very different lengths (printed: the Jensen gap).

# %%
A = torch.tensor([[1.0, 0.0]], dtype=F64)
lik = Likelihood(Matrix(A), GaussianNoise(0.1), torch.tensor([[0.5]], dtype=F64))
u = torch.linspace(-1.6, 1.6, 15, dtype=F64)
pts = torch.stack(torch.meshgrid(u, u, indexing="xy"), -1).reshape(-1, 2)
sigma = 0.3
g_ref = check_dps_guidance.reference(ring.denoiser, pts, sigma, A, lik.y.reshape(-1), 0.1)
g_lib = guidance.dps(ring.denoiser, pts, sigma, lik)
g_exact = guidance.exact(ring, pts, sigma, lik)
print(f"reference vs guidance.dps: largest difference {(g_ref - g_lib).abs().max():.1e}; "
      f"median length ratio DPS / exact: {(g_lib.norm(dim=1) / g_exact.norm(dim=1)).median():.1f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
for ax, (g, name) in zip(axes, ((g_exact, "exact ∇ log p(y | x)"), (g_lib, "DPS ∇ log p(y | x̂0(x))"))):
    unit_g = g / g.norm(dim=1, keepdim=True)                      # directions only
    ax.quiver(pts[:, 0], pts[:, 1], unit_g[:, 0], unit_g[:, 1], color="tab:blue")
    ax.scatter(ring.means[:, 0], ring.means[:, 1], c="k", s=10)
    ax.axvline(0.5, color="k", lw=0.6)
    ax.set(aspect="equal", title=f"{name}, σ = {sigma}")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 2 · The official code's step, and the paper's
#
# The paper (Alg. 1) corrects each DDPM step by $-\zeta_i\nabla_x\|y - A\hat x_0\|_2^2$ with
# $\zeta_i = \zeta'/\|y - A\hat x_0\|$. The official code instead subtracts
# $\zeta\,\nabla_x\|y - A\hat x_0\|_2$ — the **non-squared** norm with a constant $\zeta$.
#
# Complete `dps_code_step`: return the code's correction $-\zeta\nabla_x\|y - A D(x,\sigma)\|_2$, with the norm
# taken **per sample** (the official code took one norm over the whole batch, so each image's step
# depended on the others in the batch).

# %%
def dps_code_step(D, x, sigma, A, y, zeta):
    """The official DPS correction -ζ ∇_x ||y - A D(x, σ)||₂, per sample; x (N, d), A (m, d), y (m,)."""
    ### BEGIN SOLUTION
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        norms = (y - D(xg, sigma) @ A.T).norm(dim=1)             # (N,) one norm per sample
        (g,) = torch.autograd.grad(norms.sum(), xg)
    return -zeta * g
    ### END SOLUTION


# %%
check_dps_code_step(dps_code_step)

# %% tags=["solution"]
assert check_dps_code_step(dps_code_step, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# Since $\nabla\|r\|^2 = 2\|r\|\,\nabla\|r\|$, the paper's correction $-(\zeta'/\|r\|)\nabla\|r\|^2 = -2\zeta'\nabla\|r\|$:
# **the code's $\zeta$ is twice the paper's $\zeta'$**. We check it by autograd on the ring, and then look
# at the step sizes each convention takes along a DPS run.

# %%
x = ring.sample(6, gen) + 0.4 * torch.randn(6, 2, generator=gen, dtype=F64)
y = lik.y.reshape(-1)
zeta_paper = 0.3
g_sq, _, r2 = guidance.tweedie_grad(ring.denoiser, x, 0.4, lambda x0: ((y - x0 @ A.T) ** 2).sum(1))  # ∇||r||², ||r||²
paper = -(zeta_paper / r2.sqrt()[:, None]) * g_sq
code = check_dps_code_step.reference(ring.denoiser, x, 0.4, A, y, 2 * zeta_paper)
print(f"paper step (ζ' = {zeta_paper}) vs code step (ζ = {2 * zeta_paper}): largest difference "
      f"{(paper - code).abs().max():.1e}")

# %% [markdown]
# ## Exercise 3 · The Poisson-weighted misfit
#
# For shot noise, $y = \mathrm{Poisson}(s\,Ax)/s$ with $s$ counts per unit intensity, DPS (Chung et al. 2023,
# Sec. 3.2) approximates the Poisson likelihood of the counts $k = s\,y$ given the rates
# $\lambda = s\,Ax$ by a Gaussian whose variance is the measured count, $\mathcal N(k;\lambda, k)$, and
# descends
#
# $$ \|y - Ax\|_\Lambda^2 = \sum_j \frac{(k_j - \lambda_j)^2}{2k_j},\qquad \Lambda_{jj} = \frac{1}{2k_j}\ \text{(in counts)} . $$
#
# Complete `poisson_misfit(y, Ax, scale)` for images `(B, C, H, W)`: one value per sample, `(B,)`.
# Where no photon arrived ($k_j = 0$) use one count, $1/(2\max(k_j, 1))$, as the library does.

# %%
def poisson_misfit(y, Ax, scale):
    """Σ_j (k_j - λ_j)²/(2 max(k_j, 1)) with k = scale·y, λ = scale·Ax, per sample (B,) (DPS, shot noise)."""
    ### BEGIN SOLUTION
    k, lam = scale * y, scale * Ax
    return ((k - lam) ** 2 / (2 * k.clamp_min(1.0))).flatten(1).sum(1)
    ### END SOLUTION


# %%
check_poisson_misfit(poisson_misfit)

# %% tags=["solution"]
assert check_poisson_misfit(poisson_misfit, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# This is minus the library's `guidance.poisson_log_lik`. Why weight at all? A bright pixel's
# count varies more than a dark one's (variance = mean), so the same residual is less surprising
# there. Below: on a Poisson measurement of a ramp, the unweighted residual is largest in the bright
# part, the weighted one is even: with the true rates each weighted term is about $\tfrac12$ on
# average (a little more in the darkest columns, where the measured count is a noisy stand-in for
# the variance).

# %%
scale = 200.0
ramp = torch.linspace(0.05, 1.0, 64, dtype=F64).expand(1, 1, 64, 64).clone()   # brightness grows along x
lik_p = Likelihood.measure(Identity(), PoissonNoise(scale), ramp, generator=gen)
yp = lik_p.y
per_pixel = (scale * (yp - ramp)) ** 2 / (2 * (scale * yp).clamp_min(1.0))
mine = check_poisson_misfit.reference(yp, ramp, scale)
lib = -guidance.poisson_log_lik(lik_p, ramp)
print(f"reference {mine.item():.2f} vs -guidance.poisson_log_lik {lib.item():.2f}; "
      f"mean weighted term {per_pixel.mean():.3f} (≈ 1/2)")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
axes[0].plot(((yp - ramp) ** 2).mean((0, 1, 2)))
axes[0].set(xlabel="column (brightness grows →)", title="squared residual (y - Ax)² per column")
axes[1].plot(per_pixel.mean((0, 1, 2)), color="tab:orange")
axes[1].axhline(0.5, color="k", ls=":")
axes[1].set(xlabel="column (brightness grows →)", title="Poisson-weighted term per column")
plt.tight_layout()
plt.show()
