# %% [markdown]
# # 00 · Inverse problems — exercises
#
# Two exercises to go with lesson 00:
#
# 1. write the **adjoint** of the super-resolution operator (average pooling) and pass the
#    dot-product test — and see that the adjoint is *not* the pseudo-inverse;
# 2. write **one iteration of ADMM-TV** and use it to reconstruct an inpainted phantom.
#
# Each exercise is a function to complete; the cell after it calls a check that prints "correct",
# "not done yet" or what is wrong. The cells after that use the library's own implementation, so the
# notebook runs even before you start.

# %%
import matplotlib.pyplot as plt
import torch

from diffcourse.checks.lesson00 import check_admm_tv_step, check_downsample_adjoint
from diffcourse.metrics import psnr
from diffcourse.phantoms import head
from diffcourse.physics.operators import Downsample, Inpaint, random_mask
from diffcourse.posterior.classical import admm_step, cg
from diffcourse.posterior.tv import grad_2d, grad_2d_T, group_shrink, tv

x = head(1, 64, generator=torch.Generator().manual_seed(0))  # (1, 1, 64, 64)

# %% [markdown]
# ## Exercise 1 · The adjoint of downsampling
#
# Super-resolution by a factor $f$ averages each $f\times f$ block:
#
# $$ (Ax)_{I} = \frac{1}{f^2}\sum_{i \in \text{block } I} x_i ,
#    \qquad A:\ \mathbb R^{H\times W}\to\mathbb R^{H/f\times W/f}. $$
#
# The adjoint $A^\top$ is defined by $\langle Ax, y\rangle = \langle x, A^\top y\rangle$ for all
# $x, y$. Write `downsample_adjoint(y, factor)` for a batch `y` of shape (B, C, H/f, W/f); it must
# return (B, C, H, W). Hint: each $x_i$ enters exactly one average, with weight $1/f^2$.
# (`torch.repeat_interleave` copies entries along one dimension.)

# %%
def downsample_adjoint(y, factor):
    """A^T y for A = average pooling by ``factor``: (B, C, h, w) -> (B, C, h * factor, w * factor)."""
    ### BEGIN SOLUTION
    up = y.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    return up / factor ** 2
    ### END SOLUTION


# %%
check_downsample_adjoint(downsample_adjoint)

# %% tags=["solution"]
assert check_downsample_adjoint(downsample_adjoint, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# **Adjoint versus pseudo-inverse.** The pseudo-inverse of average pooling is nearest-neighbour
# upsampling (each block gets its average back), so $A^+ = f^2 A^\top$: here the two differ by a
# constant, $AA^\top = I/f^2$. For most operators they differ by much more than a constant (for
# CT, $A^\top$ is the blurry back-projection, $A^+$ needs the ramp filter). Below, the library's
# `Downsample` confirms both identities.

# %%
sr = Downsample(4)
y = sr.A(x)
print("A A^T y = y / 16:", torch.allclose(sr.A(sr.AT(y)), y / 16, atol=1e-7),
      "   A A^+ y = y:", torch.allclose(sr.A(sr.pinv(y)), y, atol=1e-6))
assert torch.allclose(sr.A(sr.AT(y)), y / 16, atol=1e-7)
assert torch.allclose(sr.pinv(y), 16 * sr.AT(y), atol=1e-6)

fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, (name, img) in zip(axes, [("y (16 x 16)", y), ("A^T y (x 1/16)", sr.AT(y) * 16),
                                  ("A^+ y", sr.pinv(y))]):
    ax.imshow(img[0, 0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(name)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 2 · One iteration of ADMM-TV
#
# ADMM for $\min_x \tfrac12\|Ax - y\|^2 + \lambda\,\mathrm{TV}(x)$, with the split $z = \nabla x$
# and a scaled dual variable $u$ (Boyd et al., Found. Trends Mach. Learn. 2011, §6.4):
#
# $$ \begin{aligned}
#   x &\leftarrow (A^\top A + \rho\,\nabla^\top\nabla)^{-1}\big(A^\top y + \rho\,\nabla^\top(z - u)\big) \\
#   z &\leftarrow \operatorname{shrink}_{\lambda/\rho}(\nabla x + u) \\
#   u &\leftarrow u + \nabla x - z
# \end{aligned} $$
#
# where $\operatorname{shrink}_\kappa$ shrinks each pixel's gradient 2-vector $v_i$ to
# $v_i \max(1 - \kappa/\|v_i\|, 0)$ (isotropic TV). Use the library's pieces:
#
# * `grad_2d(x)`: (B, C, H, W) -> (B, 2, C, H, W), and its adjoint `grad_2d_T(p)`;
# * `group_shrink(v, kappa, dim=1)`: the shrinkage above, over dim 1;
# * `cg(M, b, x0=..., n_iter=..., tol=0.0)`: conjugate gradients for $Mx = b$, with `M` a function.
#
# Solve the $x$-step with `n_iter_cg` CG iterations warm-started at the current `x`, and return the
# new `(x, z, u)`. Use the new $x$ in the $z$- and $u$-steps.

# %%
def admm_tv_step(op, y, x, z, u, lam, rho, n_iter_cg=50):
    """One ADMM-TV iteration; x (B, C, H, W), z and u (B, 2, C, H, W) -> new (x, z, u)."""
    ### BEGIN SOLUTION
    normal = lambda v: op.AT(op.A(v)) + rho * grad_2d_T(grad_2d(v))
    rhs = op.AT(y) + rho * grad_2d_T(z - u)
    x = cg(normal, rhs, x0=x, n_iter=n_iter_cg, tol=0.0)
    Dx = grad_2d(x)
    z = group_shrink(Dx + u, lam / rho, dim=1)
    u = u + Dx - z
    return x, z, u
    ### END SOLUTION


# %%
check_admm_tv_step(admm_tv_step)

# %% tags=["solution"]
assert check_admm_tv_step(admm_tv_step, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# With the library's step (`admm_step`, the same iteration), reconstruct the phantom from 30 % of its
# pixels. The minimum-norm solution is $y$ itself (lesson 00): the missing pixels stay black. ADMM-TV
# fills them from their neighbours, and the objective falls with the iterations.

# %%
g = torch.Generator().manual_seed(1)
inpaint = Inpaint(random_mask(64, 0.3, generator=g))
y = inpaint.A(x) + 0.01 * inpaint.mask * torch.randn(x.shape, generator=g)
lam, rho = 0.02, 0.5
x_k, z_k, u_k = y.clone(), grad_2d(y), torch.zeros_like(grad_2d(y))
objective = []
for _ in range(60):
    x_k, z_k, u_k = admm_step(inpaint, y, x_k, z_k, u_k, lam=lam, rho=rho, n_iter_cg=5)
    objective.append((0.5 * (inpaint.A(x_k) - y).square().sum() + lam * tv(x_k).sum()).item())

fig, axes = plt.subplots(1, 3, figsize=(10, 3))
for ax, (name, img) in zip(axes[:2], [("y = A+ y", y), ("ADMM-TV", x_k)]):
    ax.imshow(img[0, 0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"{name}: {psnr(img, x).item():.1f} dB")
    ax.axis("off")
axes[2].semilogy(objective)
axes[2].set_xlabel("ADMM iteration")
axes[2].set_title("objective")
plt.tight_layout()
plt.show()
assert objective[-1] < 0.5 * objective[0]
assert psnr(x_k, x).item() > psnr(y, x).item() + 10
