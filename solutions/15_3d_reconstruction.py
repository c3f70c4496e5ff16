# %% [markdown]
# # 15 · 3-D reconstruction — exercises
#
# Companion to `lessons/15_3d_reconstruction.py`. You will write the model-based half of
# DiffusionMBIR (Chung, Ryu, McCann, Klasky & Ye, CVPR 2023):
#
# 1. the **circular difference along the slices** $D_z$,
# 2. its **adjoint** $D_z^\top$,
# 3. one **ADMM iteration** for $\min_x\tfrac12\|y-Ax\|^2+\lambda\|D_zx\|_1$, the step DiffusionMBIR takes
#    after every diffusion step.
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's implementation, so the notebook
# runs top to bottom even before you start.
#
# **Conventions**: volumes `x` of shape `(B, C, D, H, W)`, the slices along dim 2; $D_zx$ has the shape
# of `x` (the library stacks it on a new dim 1, `diffcourse.posterior.tv3d.diff_z_circ`, which is the
# same numbers); `A` and `AT` act on whole volumes.

# %%
import matplotlib.pyplot as plt
import torch

from diffcourse.checks.lesson15 import check_admm_tv_z_step, check_diff_z_circ, check_diff_z_circ_T
from diffcourse.physics.ct import Radon, sparse_view
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.noise import GaussianNoise
from diffcourse.physics.volume import SliceWise
from diffcourse.posterior.classical import cg
from diffcourse.posterior.tv3d import admm_tv_z_step as library_admm_step

F64 = torch.float64
gen = torch.Generator().manual_seed(0)

# %% [markdown]
# ## Exercise 1 · The circular difference along $z$
#
# $$ (D_zx)_d = x_{(d+1)\bmod D} - x_d ,\qquad d = 0,\dots,D-1 , $$
#
# a forward difference between neighbouring slices, where the last slice is compared with the
# first (the official DiffusionMBIR code's boundary). `torch.roll(x, shifts, dims)` shifts cyclically:
# `torch.roll(x, -1, dims=2)[:, :, d]` is `x[:, :, (d + 1) % D]`.

# %%
def diff_z_circ(x):
    """(D_z x)_d = x_{(d+1) mod D} - x_d along dim 2 of x (B, C, D, H, W); returns the shape of x."""
    ### BEGIN SOLUTION
    return torch.roll(x, -1, dims=2) - x
    ### END SOLUTION


# %%
check_diff_z_circ(diff_z_circ)

# %% tags=["solution"]
assert check_diff_z_circ(diff_z_circ, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# A volume that does not change along $z$ has $D_zx = 0$: TV along $z$ costs nothing for it, and every
# change from slice to slice costs its size. Below, per pixel column: a constant volume, the same with
# one slice flickering, and a ramp from 0 to 1 along $z$.

# %%
flat = torch.full((1, 1, 8, 4, 4), 0.5, dtype=F64)
flicker = flat.clone()
flicker[:, :, 4] += 0.3
ramp = torch.linspace(0, 1, 8, dtype=F64).reshape(1, 1, 8, 1, 1).expand(1, 1, 8, 4, 4).clone()
ref_dz = check_diff_z_circ.reference
for name, vol in (("constant", flat), ("one slice +0.3", flicker), ("ramp", ramp)):
    column = ref_dz(vol)[0, 0, :, 0, 0]
    print(f"{name:15s} D_z x = {[round(v, 3) for v in column.tolist()]},  ||D_z x||_1 = {column.abs().sum():.2f}")

# %% [markdown]
# The flickering slice pays $2\times0.3$: it leaves its neighbours and comes back. The ramp pays $1/7$ per
# step and then the jump back from the last slice to the first, $-1$: the circular boundary. At the
# ends of a real volume both slices are background and that jump costs nothing.
#
# ## Exercise 2 · Its adjoint
#
# The $x$-update of ADMM needs $D_z^\top$, the adjoint: $\langle D_zx, p\rangle = \langle x, D_z^\top p\rangle$ for all
# $x, p$. Writing out $\sum_d (x_{d+1}-x_d)\,p_d$ and collecting the terms of each $x_d$ gives
#
# $$ (D_z^\top p)_d = p_{(d-1)\bmod D} - p_d . $$

# %%
def diff_z_circ_T(p):
    """(D_zᵀ p)_d = p_{(d-1) mod D} - p_d along dim 2 of p (B, C, D, H, W); returns the shape of p."""
    ### BEGIN SOLUTION
    return torch.roll(p, 1, dims=2) - p
    ### END SOLUTION


# %%
check_diff_z_circ_T(diff_z_circ_T)

# %% tags=["solution"]
assert check_diff_z_circ_T(diff_z_circ_T, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# The test of any adjoint: random $x$ and $p$, both inner products. And the matrix of $D_z$ for one
# pixel column: $-1$ on the diagonal, $+1$ above it, and a $+1$ in the corner for the wrap-around. Its
# transpose, $D_z^\top$, has the $+1$ below the diagonal.

# %%
x = torch.randn(2, 1, 6, 3, 3, generator=gen, dtype=F64)
p = torch.randn(2, 1, 6, 3, 3, generator=gen, dtype=F64)
ref_dzT = check_diff_z_circ_T.reference
print(f"<D_z x, p> = {(ref_dz(x) * p).sum():.6f},  <x, D_zᵀ p> = {(x * ref_dzT(p)).sum():.6f}")
M = torch.stack([ref_dz(torch.eye(5, dtype=F64)[j].reshape(1, 1, 5, 1, 1)).flatten() for j in range(5)], 1)
print("D_z for D = 5:\n", M.int())

# %% [markdown]
# ## Exercise 3 · One ADMM iteration for TV along $z$
#
# DiffusionMBIR's volume step solves $\min_x \tfrac12\|y-Ax\|^2+\lambda\|D_zx\|_1$ by ADMM with the split
# $z = D_zx$ and the scaled dual $w$ (Boyd et al. 2011, eqs. 3.5–3.7):
#
# $$ x\leftarrow(A^\top A+\rho D_z^\top D_z)^{-1}\big(A^\top y+\rho D_z^\top(z-w)\big),\qquad
#    z\leftarrow S_{\lambda/\rho}(D_zx+w),\qquad w\leftarrow w+D_zx-z , $$
#
# with $S_\kappa(v)=\mathrm{sign}(v)\max(|v|-\kappa,0)$. The inverse is never formed: run `n_cg` steps of conjugate
# gradients on the $x$-equation, **started at the current x** (`cg(M, b, x0, n_iter=n_cg, tol=0.0)` from
# `diffcourse.posterior.classical`, where `M` is a function $v\mapsto(A^\top A+\rho D_z^\top D_z)v$). DiffusionMBIR
# takes one such iteration with `n_cg = 1` after each diffusion step, keeping $z$ and $w$.
# `Dz` and `DzT` are given (the checks' answers to exercises 1 and 2). Return `(x, z, w)`.

# %%
def admm_tv_z_step(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg):
    """One ADMM iteration for 1/2||y - A x||² + λ||D_z x||₁ (Chung et al., CVPR 2023, Eq. 11-13); returns (x, z, w)."""
    ### BEGIN SOLUTION
    normal = lambda v: AT(A(v)) + rho * DzT(Dz(v))
    x = cg(normal, AT(y) + rho * DzT(z - w), x, n_iter=n_cg, tol=0.0)
    Dx = Dz(x)
    v = Dx + w
    z = torch.sign(v) * (v.abs() - lam / rho).clamp_min(0)
    return x, z, w + Dx - z
    ### END SOLUTION


# %%
check_admm_tv_z_step(admm_tv_z_step)

# %% tags=["solution"]
assert check_admm_tv_z_step(admm_tv_z_step, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# ADMM at work, without any diffusion prior: noisy 6-view CT ($\sigma_y = 0.5$) of a small volume whose
# 8 slices of $16\times16$ are nearly equal, 60 iterations from zero. The library's `admm_tv_z_step` is the
# same iteration (with $D_z$ on a new dim 1). Every slice is measured by the same operator, so every
# slice misses the same null space, and TV along $z$ cannot bring back what no slice measured. What
# it removes is what differs from slice to slice: here the noise, averaged over neighbouring
# slices. In DiffusionMBIR what differs is the prior's guess of the null space, drawn anew in every
# slice: TV along $z$ makes those guesses agree.

# %%
base = torch.zeros(1, 1, 1, 16, 16, dtype=F64)
base[..., 4:12, 5:11] = 1.0
base[..., 7:10, 7:9] = 0.4
truth = base.expand(1, 1, 8, 16, 16) + 0.02 * torch.randn(1, 1, 8, 16, 16, generator=gen, dtype=F64)
op = SliceWise(Radon(16, sparse_view(6), dtype=F64), 8)
lik = Likelihood.measure(op, GaussianNoise(0.5), truth, generator=gen)
Dz_lib = lambda v: check_diff_z_circ.reference(v)
errors = {}
for lam in (0.0, 3.0):
    x_k = torch.zeros_like(truth)
    z_k, w_k = torch.zeros_like(truth), torch.zeros_like(truth)
    err = []
    for _ in range(60):
        x_k, z_k, w_k = check_admm_tv_z_step.reference(op.A, op.AT, Dz_lib, check_diff_z_circ_T.reference,
                                                        lik.y, x_k, z_k, w_k, lam, 2.0, 5)
        err.append((x_k - truth).pow(2).mean().sqrt().item())
    errors[lam] = err
x_lib = torch.zeros_like(truth)
z_lib, w_lib = torch.zeros(1, 1, 1, 8, 16, 16, dtype=F64), torch.zeros(1, 1, 1, 8, 16, 16, dtype=F64)
for _ in range(60):
    x_lib, z_lib, w_lib = library_admm_step(op, lik.y, x_lib, z_lib, w_lib, lam=3.0, rho=2.0, n_iter_cg=5)
print(f"RMSE after 60 iterations: λ = 0 {errors[0.0][-1]:.3f}, λ = 3 {errors[3.0][-1]:.3f}; "
      f"library vs check's answer: {(x_lib - x_k).abs().max():.1e}")
plt.figure(figsize=(5.5, 3.5))
for lam, err in errors.items():
    plt.semilogy(err, label=f"λ = {lam}")
plt.xlabel("ADMM iteration")
plt.ylabel("RMSE to the truth")
plt.title("6-view CT of 8 similar slices")
plt.legend()
plt.tight_layout()
plt.show()
