# %% [markdown]
# # 10 · Closed-form likelihoods — exercises
#
# Companion to `lessons/10_closed_form_likelihoods.py`. You will write
#
# 1. the **DMPS guidance through the SVD** of $A$: a closed-form likelihood score without any
#    network gradient,
# 2. the **DDNM correction**: the range-space part of an estimate from the measurement, the
#    null-space part from the prior,
# 3. the **ΠGDM guidance**: a Gaussian likelihood around Tweedie's estimate, differentiated through
#    the denoiser by one vector-Jacobian product.
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's implementation, so the notebook
# runs top to bottom even before you start.
#
# **Conventions** (as in `diffcourse`): VE state $x = x_0 + \sigma z$, a batch of $N$ vectors in $\mathbb R^n$ of
# shape `(N, n)`; a matrix `A` of shape `(m, n)` acts on every row, $Ax$ = `x @ A.T`; its thin SVD
# $A = U\,\mathrm{diag}(s)\,V^\top$ is `U` `(m, k)`, `s` `(k,)`, `Vh` `(k, n)` (so $V^\top$ = `Vh`); `y` is one
# measurement of shape `(m,)`, shared by the batch.

# %%
import matplotlib.pyplot as plt
import torch

from diffcourse.checks.lesson10 import check_ddnm_correction, check_dmps_guidance_svd, check_pgdm_guidance
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.matrix import Matrix
from diffcourse.physics.noise import GaussianNoise
from diffcourse.posterior import guidance
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64
gen = torch.Generator().manual_seed(0)

# %% [markdown]
# ## Exercise 1 · DMPS guidance through the SVD
#
# DMPS (Meng & Kabashima 2022) assumes a flat prior next to the noise, so that $x_0\mid x\sim\mathcal N(x,\sigma^2 I)$
# and $p(y\mid x) = \mathcal N\big(y;\ Ax,\ \sigma_y^2 I + \sigma^2 AA^\top\big)$. Its score is
#
# $$ g(x) = A^\top\big(\sigma_y^2 I + \sigma^2 AA^\top\big)^{-1}(y - Ax)
#        = V\,\Sigma\,\big(\sigma_y^2 I + \sigma^2\Sigma^2\big)^{-1}U^\top(y - Ax) , $$
#
# since $AA^\top = U\Sigma^2U^\top$ and $A^\top = V\Sigma U^\top$: in the basis of singular vectors the matrix to invert
# is diagonal. Complete `dmps_guidance_svd`: form the residual $y - Ax$, take its coordinates
# $U^\top(y - Ax)$, weight coordinate $i$ by $s_i/(\sigma_y^2+\sigma^2s_i^2)$, and map back with $V$. No
# `torch.linalg.solve`, no inverse: only products with `U`, `s` and `Vh`.

# %%
def dmps_guidance_svd(x, sigma, U, s, Vh, y, sigma_y):
    """V diag(s/(σ_y² + σ² s²)) Uᵀ (y - A x) per row (Meng & Kabashima 2022, Thm. 2); x (N, n) -> (N, n)."""
    ### BEGIN SOLUTION
    A = (U * s) @ Vh                                               # (m, n)
    coeffs = (y - x @ A.T) @ U                                     # Uᵀ(y - A x), (N, k)
    return (coeffs * s / (sigma_y ** 2 + sigma ** 2 * s ** 2)) @ Vh
    ### END SOLUTION


# %%
check_dmps_guidance_svd(dmps_guidance_svd)

# %% tags=["solution"]
assert check_dmps_guidance_svd(dmps_guidance_svd, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# The library's `guidance.dmps(D, x, sigma, lik)` computes the same term for any operator with an
# SVD (and by conjugate gradients for the others); it ignores `D`. We compare on a random
# $4\times 10$ problem, and then look at the weight each singular direction gets as the noise level
# falls: $s_i/(\sigma_y^2+\sigma^2s_i^2)$ is a pseudo-inverse weight $1/(\sigma^2 s_i)$ while $\sigma s_i\gg\sigma_y$ (the
# state is noisier than the data, trust the data only as much as the state allows) and DPS's
# $s_i/\sigma_y^2$ once $\sigma s_i\ll\sigma_y$ (the plain likelihood). The crossover is at $\sigma = \sigma_y/s_i$: weak
# directions hand over to the likelihood earlier.

# %%
A = torch.randn(4, 10, generator=gen, dtype=F64)
U, s, Vh = torch.linalg.svd(A, full_matrices=False)
lik = Likelihood.measure(Matrix(A), GaussianNoise(0.05), torch.randn(1, 10, generator=gen, dtype=F64), generator=gen)
x = torch.randn(3, 10, generator=gen, dtype=F64)
mine = check_dmps_guidance_svd.reference(x, 0.8, U, s, Vh, lik.y[0], 0.05)
print(f"reference vs guidance.dmps: largest difference {(mine - guidance.dmps(None, x, 0.8, lik)).abs().max():.1e}")

sig = torch.logspace(-4, 1, 200, dtype=F64)
fig, ax = plt.subplots(figsize=(6.5, 4))
for si in s.tolist():
    ax.loglog(sig, si / (0.05 ** 2 + sig ** 2 * si ** 2), label=f"s = {si:.2f}")
    ax.axvline(0.05 / si, color="grey", lw=0.5, ls=":")
ax.set(xlabel="σ", ylabel="weight of the direction", title="DMPS weight s/(σ_y² + σ² s²), σ_y = 0.05")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 2 · The DDNM correction
#
# DDNM (Wang, Yu & Zhang, ICLR 2023, Eq. 12) splits an estimate into the part $A$ sees and the part it
# does not, and takes the first from the measurement:
#
# $$ \hat x_0 = A^+y + (I - A^+A)\,x_0 = x_0 - A^+(Ax_0 - y) . $$
#
# Then $A\hat x_0 = AA^+y = y$ for every $y$ in the range of $A$ (since $AA^+A = A$), and the null-space part of
# $x_0$ is untouched. Complete `ddnm_correction` for a matrix `A` `(m, n)` with $m < n$. The pseudo-inverse
# is `torch.linalg.pinv(A)`, of shape `(n, m)`. (Careful: $A^\top$ is $A^+$ only when $AA^\top = I$, as for an
# inpainting mask.)

# %%
def ddnm_correction(x0, A, y):
    """x0 - A⁺(A x0 - y) per row (Wang, Yu & Zhang, ICLR 2023, Eq. 12); x0 (N, n), A (m, n), y (m,) -> (N, n)."""
    ### BEGIN SOLUTION
    A_pinv = torch.linalg.pinv(A)                                  # (n, m)
    return x0 - (x0 @ A.T - y) @ A_pinv.T
    ### END SOLUTION


# %%
check_ddnm_correction(ddnm_correction)

# %% tags=["solution"]
assert check_ddnm_correction(ddnm_correction, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# In two dimensions with one measurement, $a^\top x = y$ is a line, and the correction moves each point
# **orthogonally** onto it ($A^+A$ is the orthogonal projector onto the range of $A^\top$): the component
# along the line, the null space, is the prior's and stays. Using $A^\top$ instead of $A^+$ moves the
# points in the same direction but by the wrong amount, $\|a\|^2$ times too far here, so they miss the
# line. Below: 30 points, corrected with $A^+$ (on the line) and with $A^\top$ (off it).

# %%
a = torch.tensor([[1.5, 0.8]], dtype=F64)                          # one measurement of a 2-D point
y_line = torch.tensor([1.0], dtype=F64)
pts = torch.randn(30, 2, generator=gen, dtype=F64)
with_pinv = check_ddnm_correction.reference(pts, a, y_line)
with_transpose = pts - (pts @ a.T - y_line) @ a
print(f"max |a x̂0 - y|: with A⁺ {(with_pinv @ a.T - y_line).abs().max():.1e}, "
      f"with Aᵀ {(with_transpose @ a.T - y_line).abs().max():.2f}")

t = torch.linspace(-3, 3, 2, dtype=F64)
on_line = y_line / (a ** 2).sum() * a + t[:, None] * torch.tensor([[-0.8, 1.5]], dtype=F64)
fig, ax = plt.subplots(figsize=(5.5, 5.5))
ax.plot(*on_line.T, "k-", lw=1, label="{x : a·x = y}")
for start, end in zip(pts, with_pinv):
    ax.plot(*torch.stack([start, end]).T, color="tab:blue", lw=0.5)
ax.scatter(*pts.T, s=10, c="grey", label="x0")
ax.scatter(*with_pinv.T, s=12, c="tab:blue", label="x0 - A⁺(A x0 - y)")
ax.scatter(*with_transpose.T, s=12, c="tab:red", marker="x", label="x0 - Aᵀ(A x0 - y)")
ax.set(aspect="equal", xlim=(-3, 3), ylim=(-3, 3), title="DDNM's correction: a projection onto A x = y")
ax.legend(loc="lower left", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 3 · The ΠGDM guidance, one vector-Jacobian product
#
# ΠGDM (Song, Vahdat, Mardani & Kautz, ICLR 2023, Eq. 7–8) keeps Tweedie's $\hat x_0 = D(x,\sigma)$ as the
# mean of $x_0\mid x$ and gives it a spread $r^2$: $p(y\mid x)\approx\mathcal N(y;\ A\hat x_0,\ \sigma_y^2 I + r^2AA^\top)$. With the
# covariance held fixed, its gradient is
#
# $$ g = J^\top v,\qquad v = A^\top\big(\sigma_y^2 I + r^2AA^\top\big)^{-1}(y - A\hat x_0),\qquad J = \frac{\partial\hat x_0}{\partial x} . $$
#
# Autograd computes $J^\top v$ without ever forming $J$: it is the gradient of $\langle v, \hat x_0(x)\rangle$ with $v$
# held constant. Complete `pgdm_guidance`: evaluate $\hat x_0$ with its graph, compute $v$ from a
# **detached** copy of $\hat x_0$ (an $m\times m$ solve, `torch.linalg.solve`), and differentiate the sum of
# $\langle v, \hat x_0\rangle$ over the batch with respect to $x$ (the samples are independent). As in lesson 07,
# use `with torch.enable_grad():` and `x.detach().requires_grad_(True)`.

# %%
def pgdm_guidance(D, x, sigma, A, y, sigma_y, r2):
    """Jᵀ Aᵀ(σ_y² I + r² A Aᵀ)⁻¹(y - A x̂0), x̂0 = D(x, σ) (Song et al., ICLR 2023, Eq. 8); x (N, n) -> (N, n)."""
    ### BEGIN SOLUTION
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        x0_hat = D(xg, sigma)                                      # (N, n), with its graph
        M = sigma_y ** 2 * torch.eye(A.shape[0], dtype=A.dtype) + r2 * A @ A.T
        v = torch.linalg.solve(M, (y - x0_hat.detach() @ A.T).T).T @ A      # (N, n), a constant
        (g,) = torch.autograd.grad((v * x0_hat).sum(), xg)
    return g
    ### END SOLUTION


# %%
check_pgdm_guidance(pgdm_guidance)

# %% tags=["solution"]
assert check_pgdm_guidance(pgdm_guidance, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# With the paper's $r^2 = \sigma^2/(1+\sigma^2)$ (`guidance.pgdm_r2`) this is the library's `guidance.pgdm`, and
# for the prior $\mathcal N(0, I)$ it is the exact likelihood score (`guidance.exact`), because that $r^2$ is the
# true spread of $x_0\mid x$ there. Below, on a unit Gaussian prior in $\mathbb R^5$ with two measurements: the
# relative error against the exact score for $r^2$ from 0 (DPS) to 2, at three noise levels. Only the
# paper's value (dotted lines) brings it to zero.

# %%
unit = GaussianMixture.gaussian(torch.zeros(5, dtype=F64), 1.0)
A2 = torch.randn(2, 5, generator=gen, dtype=F64)
lik2 = Likelihood.measure(Matrix(A2), GaussianNoise(0.1), unit.sample(1, gen), generator=gen)
x5 = torch.randn(20, 5, generator=gen, dtype=F64)
mine = check_pgdm_guidance.reference(unit.denoiser, x5, 1.5, A2, lik2.y[0], 0.1, guidance.pgdm_r2(1.5))
lib = guidance.pgdm(unit.denoiser, x5, 1.5, lik2)
print(f"reference vs guidance.pgdm: largest difference {(mine - lib).abs().max():.1e}")

levels = (0.3, 1.0, 3.0)
r2_grid = torch.cat([torch.linspace(0, 2, 81, dtype=F64),
                     torch.tensor([guidance.pgdm_r2(s) for s in levels], dtype=F64)]).sort().values
fig, ax = plt.subplots(figsize=(6.5, 4))
for sigma in levels:
    xs = x5 * (1 + sigma ** 2) ** 0.5                              # states at this noise level
    ex = guidance.exact(unit, xs, sigma, lik2)
    err = [((check_pgdm_guidance.reference(unit.denoiser, xs, sigma, A2, lik2.y[0], 0.1, r2.item()) - ex).norm()
            / ex.norm()).item() for r2 in r2_grid]
    line, = ax.semilogy(r2_grid, [max(e, 1e-16) for e in err], label=f"σ = {sigma}")
    ax.axvline(guidance.pgdm_r2(sigma), color=line.get_color(), ls=":")
ax.set(xlabel="r²", ylabel="relative error vs exact score", title="ΠGDM on an N(0, I) prior: which r²?")
ax.legend()
plt.tight_layout()
plt.show()
