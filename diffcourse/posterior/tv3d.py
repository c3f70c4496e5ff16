"""Total variation along the slice axis of a volume, the model-based half of DiffusionMBIR.

Chung, Ryu, McCann, Klasky & Ye (CVPR 2023) couple the slices of a volume x (B, C, D, H, W), each
sampled by a 2-D diffusion prior, through the problem (their Eq. 11)

    min_x 1/2 ||y - A x||^2 + lam ||D_z x||_1,

solved by ADMM with the split z = D_z x and the scaled dual w (Boyd et al. 2011, eqs. 3.5-3.7):

    x <- (A^T A + rho D_z^T D_z)^{-1} (A^T y + rho D_z^T (z - w))   by CG, warm-started at x
    z <- S_{lam/rho}(D_z x + w),   w <- w + D_z x - z.

D_z is the forward difference along z with a **circular** boundary, as in the official code
(the last slice is compared with the first), unlike :func:`diffcourse.posterior.tv.diff_z`
(Neumann). Difference operators follow :mod:`diffcourse.posterior.tv`: the components are stacked
on a new dim 1, (B, C, D, H, W) -> (B, 1, C, D, H, W). The ADMM iteration itself is
:func:`diffcourse.posterior.classical.admm_step`, given this D_z.

The classical 3-D baseline is isotropic TV over all three axes, :func:`admm_tv_3d` (Neumann
boundaries, :func:`grad_3d`): it regularises the slices themselves as well as their coupling.

>>> x = torch.arange(3.0).reshape(1, 1, 3, 1, 1)
>>> diff_z_circ(x).flatten().tolist()          # x1 - x0, x2 - x1, x0 - x2
[1.0, 1.0, -2.0]
"""
from __future__ import annotations

import torch

from .._linalg import cg
from .._validate import check_int, check_nonnegative, check_op, check_positive, check_tensor
from .classical import admm_l1, admm_step
from .tv import diff, diff_T, soft_threshold

__all__ = ["diff_z_circ", "diff_z_circ_T", "admm_tv_z_step", "prox_tv_z_step", "normalised_step", "real_view",
           "grad_3d", "grad_3d_T", "admm_tv_3d"]


def diff_z_circ(x: torch.Tensor) -> torch.Tensor:
    """Circular forward difference along the slices, (D_z x)_d = x_{d+1 mod D} - x_d (Chung et al.
    CVPR 2023, Eq. 11; official code ``_Dz``); (B, C, D, H, W) -> (B, 1, C, D, H, W)."""
    return (torch.roll(x, -1, dims=-3) - x).unsqueeze(1)


def diff_z_circ_T(p: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`diff_z_circ`, (D_z^T p)_d = p_{d-1 mod D} - p_d; (B, 1, C, D, H, W) -> (B, C, D, H, W).

    >>> x, p = torch.randn(2, 1, 4, 3, 3), torch.randn(2, 1, 1, 4, 3, 3)
    >>> bool(torch.isclose((diff_z_circ(x) * p).sum(), (x * diff_z_circ_T(p)).sum(), atol=1e-5))
    True
    """
    q = p[:, 0]
    return torch.roll(q, 1, dims=-3) - q


class _RealAdjoint:
    """``op`` seen from real volumes: the same A, and Re A^H (the adjoint for real x) when A^H is complex."""

    def __init__(self, op):
        self.op = op

    def A(self, x):
        return self.op.A(x)

    def AT(self, r):
        g = self.op.AT(r)
        return g.real if g.is_complex() else g


def real_view(op, x: torch.Tensor):
    """``op`` itself for complex ``x``; for real ``x`` an operator whose AT returns Re A^H (complex MRI data)."""
    return op if x.is_complex() else _RealAdjoint(check_op(op))


def admm_tv_z_step(op, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor, w: torch.Tensor, *, lam: float,
                   rho: float, n_iter_cg: int = 1):
    """One ADMM iteration for min_x 1/2 ||y - A x||^2 + lam ||D_z x||_1 with the circular D_z
    (Chung et al. CVPR 2023, Eq. 11-13); returns (x, z, w).

    ``op`` acts on volumes (a :class:`~diffcourse.physics.volume.SliceWise`), y (B, D, ...) are its
    measurements, x (B, C, D, H, W), and z, w (B, 1, C, D, H, W) the split variable and the scaled
    dual. The "fast" DiffusionMBIR variant calls this once per diffusion step with one CG step
    (``n_iter_cg = 1``), keeping z and w across steps.
    """
    check_tensor(x, "x", ndim=5)
    return admm_step(real_view(op, x), y, x, z, w, lam=lam, rho=rho, D=diff_z_circ, DT=diff_z_circ_T,
                     isotropic=False, n_iter_cg=n_iter_cg)


def prox_tv_z_step(op, y: torch.Tensor, x0_hat: torch.Tensor, z: torch.Tensor, w: torch.Tensor, *, lam: float,
                   rho: float, gamma: float | None = None, n_iter_cg: int = 5):
    """One ADMM iteration of the 3-D data step of DDS (Chung, Lee & Ye, ICLR 2024; official ``solver_3d.py``,
    "3D DDS + DiffusionMBIR"): DiffusionMBIR's TV_z problem on Tweedie's estimate x̂0 instead of the noisy
    state,

        min_x 1/2 ||y - A x||^2 + lam ||D_z x||_1 + 1/(2 gamma) ||x - x̂0||^2,

    the x-update by ``n_iter_cg`` CG steps on (A^T A + I/gamma + rho D_z^T D_z) x = A^T y + x̂0/gamma
    + rho D_z^T (z - w) started at x̂0 (few steps keep x near x̂0, DDS's Krylov argument); then
    z <- S_{lam/rho}(D_z x + w), w <- w + D_z x - z. ``gamma`` None drops the proximal term (noiseless
    data, as in the official script). Returns (x, z, w); shapes as :func:`admm_tv_z_step`.
    """
    lam, rho = check_nonnegative(lam, "lam"), check_positive(rho, "rho")
    inv_gamma = 0.0 if gamma is None else 1 / check_positive(gamma, "gamma")
    op = real_view(op, check_tensor(x0_hat, "x0_hat", ndim=5))
    normal = lambda v: op.AT(op.A(v)) + inv_gamma * v + rho * diff_z_circ_T(diff_z_circ(v))
    b = op.AT(y) + inv_gamma * x0_hat + rho * diff_z_circ_T(z - w)
    x = cg(normal, b, x0=x0_hat, n_iter=check_int(n_iter_cg, "n_iter_cg", 0), tol=0.0)
    Dx = diff_z_circ(x)
    z = soft_threshold(Dx + w, lam / rho)
    return x, z, w + Dx - z


def normalised_step(op, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The final consistency step of DiffusionMBIR's code, x + A^T(y - A x) / (A^T A 1) (a SIRT-type,
    column-normalised Landweber step; official ``kaczmarz`` with lamb = 1). x (B, ...) -> (B, ...).

    Where A A^T = c I and A^T A 1 = c 1 (a mask, block averaging) it is the projection onto
    {A x = y}. Voxels with A^T A 1 <= 0 (unmeasured, or a signed sensing matrix) are left unchanged.

    >>> class Op:  # keep the first entry
    ...     A = staticmethod(lambda x: x[:, :1]); AT = staticmethod(lambda y: torch.cat([y, 0 * y], 1))
    >>> normalised_step(Op(), torch.tensor([[2.0]]), torch.tensor([[0.0, 5.0]]))
    tensor([[2., 5.]])
    """
    op = real_view(op, x)
    norm = op.AT(op.A(torch.ones_like(x)))  # A^T A 1
    ok = norm > 0
    return x + torch.where(ok, op.AT(y - op.A(x)) / torch.where(ok, norm, torch.ones_like(norm)), 0.0)


def grad_3d(x: torch.Tensor) -> torch.Tensor:
    """Volume gradient by forward differences (Neumann) along z, y, x; (B, C, D, H, W) -> (B, 3, C, D, H, W)."""
    return torch.stack([diff(x, -3), diff(x, -2), diff(x, -1)], dim=1)


def grad_3d_T(p: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`grad_3d` (minus the divergence); (B, 3, C, D, H, W) -> (B, C, D, H, W).

    >>> x, p = torch.randn(2, 1, 3, 4, 5), torch.randn(2, 3, 1, 3, 4, 5)
    >>> bool(torch.isclose((grad_3d(x) * p).sum(), (x * grad_3d_T(p)).sum(), atol=1e-4))
    True
    """
    return diff_T(p[:, 0], -3) + diff_T(p[:, 1], -2) + diff_T(p[:, 2], -1)


def admm_tv_3d(op, y: torch.Tensor, lam: float, rho: float, n_iter: int = 100, *, x0: torch.Tensor | None = None,
               n_iter_cg: int = 5) -> torch.Tensor:
    """3-D ADMM-TV: argmin_x 1/2 ||A x - y||^2 + lam TV_3d(x) for volumes x (B, C, D, H, W), isotropic TV
    over z, y and x (Rudin, Osher & Fatemi 1992; ADMM: Boyd et al. 2011, sec. 6.4.1), the model-based
    baseline of DiffusionMBIR (Chung et al., CVPR 2023, Sec. 5). ``op`` acts on volumes (a
    :class:`~diffcourse.physics.volume.SliceWise`); with complex data (MRI) AT is taken as Re A^H.
    """
    op = _RealAdjoint(check_op(op))
    check_tensor(op.AT(y) if x0 is None else x0, "x0 (or A^T y)", ndim=5)
    return admm_l1(op, y, lam, rho, n_iter, D=grad_3d, DT=grad_3d_T, isotropic=True, x0=x0, n_iter_cg=n_iter_cg)
