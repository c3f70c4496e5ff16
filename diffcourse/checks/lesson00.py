"""Checks for lesson 00 (inverse problems): the adjoint of downsampling, one ADMM-TV iteration."""
from __future__ import annotations

import torch

from ..physics.operators import Downsample, Inpaint, random_mask
from ..posterior.classical import admm_step, cg
from ..posterior.tv import grad_2d, grad_2d_T, group_shrink
from ._core import close, diagnose, exercise

__all__ = ["check_downsample_adjoint", "check_admm_tv_step"]

F64 = torch.float64
_ADJOINT_TOL = {"rtol": 1e-8, "atol": 1e-8}   # <A x, y> = <x, A^T y> up to float64 rounding
_ADMM_TOL = {"rtol": 0.0, "atol": 1e-6}       # 50 CG steps against the reference's 100


# ---------------------------------------------------------------- exercise 1: an adjoint
def _downsample_adjoint(y, factor):
    return Downsample(factor).AT(y)


def _upsample_without_scaling(y, factor):  # the pseudo-inverse, not the adjoint
    return y.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def _upsample_over_factor(y, factor):  # divides by f instead of f^2
    return _upsample_without_scaling(y, factor) / factor


def _zero_insertion(y, factor):  # adjoint of strided subsampling, not of averaging
    x = torch.zeros(*y.shape[:-2], y.shape[-2] * factor, y.shape[-1] * factor, dtype=y.dtype)
    x[..., ::factor, ::factor] = y
    return x


_ADJOINT_MISTAKES = {
    _upsample_without_scaling: "that is the pseudo-inverse A^+ (nearest-neighbour upsampling); the adjoint "
                               "of averaging f x f pixels also carries the weight 1/f^2 of each pixel",
    _upsample_over_factor: "each output of A averages f^2 pixels: divide the copies by f^2, not by f",
    _zero_insertion: "zero insertion is the adjoint of keeping every f-th pixel; averaging spreads each "
                     "value y_i over its whole f x f block",
}


@exercise(_downsample_adjoint, *_ADJOINT_MISTAKES)
def check_downsample_adjoint(fn):
    """<A x, y> = <x, A^T y> for A = average pooling by ``factor``, on several shapes and factors."""
    g = torch.Generator().manual_seed(0)
    for shape, factor in [((2, 1, 8, 8), 2), ((1, 3, 12, 6), 3), ((1, 1, 16, 16), 4)]:
        x = torch.randn(shape, generator=g, dtype=F64)
        y = torch.randn(Downsample(factor).A(x).shape, generator=g, dtype=F64)
        ATy = fn(y, factor)
        assert isinstance(ATy, torch.Tensor), f"return a tensor, got {type(ATy).__name__}"
        assert ATy.shape == x.shape, f"A^T y must have the shape of x {tuple(x.shape)}, got {tuple(ATy.shape)}"
        lhs = (Downsample(factor).A(x) * y).sum().item()
        rhs = (x * ATy).sum().item()
        assert close(rhs, lhs, **_ADJOINT_TOL), (
            f"<A x, y> = {lhs:.6f} but <x, A^T y> = {rhs:.6f} (shape {shape}, factor {factor}); "
            + diagnose(ATy, _downsample_adjoint(y, factor), (y, factor), _ADJOINT_MISTAKES, **_ADJOINT_TOL))


# ---------------------------------------------------------------- exercise 2: one ADMM-TV iteration
def _admm_tv_step(op, y, x, z, u, lam, rho, n_iter_cg=50):
    return admm_step(op, y, x, z, u, lam=lam, rho=rho, n_iter_cg=n_iter_cg)


def _dual_sign_flipped(op, y, x, z, u, lam, rho, n_iter_cg=50):
    x, z, u_next = _admm_tv_step(op, y, x, z, u, lam, rho, n_iter_cg)
    return x, z, 2 * u - u_next  # u - (D x - z)


def _threshold_lam(op, y, x, z, u, lam, rho, n_iter_cg=50):  # shrinks by lam instead of lam / rho
    return admm_step(op, y, x, z, u, lam=lam * rho, rho=rho, n_iter_cg=n_iter_cg)


def _anisotropic(op, y, x, z, u, lam, rho, n_iter_cg=50):
    return admm_step(op, y, x, z, u, lam=lam, rho=rho, isotropic=False, n_iter_cg=n_iter_cg)


def _no_rho_in_normal(op, y, x, z, u, lam, rho, n_iter_cg=50):
    normal = lambda v: op.AT(op.A(v)) + grad_2d_T(grad_2d(v))
    x = cg(normal, op.AT(y) + rho * grad_2d_T(z - u), x0=x, n_iter=n_iter_cg, tol=0.0)
    Dx = grad_2d(x)
    z = group_shrink(Dx + u, lam / rho)
    return x, z, u + Dx - z


def _z_from_old_x(op, y, x, z, u, lam, rho, n_iter_cg=50):
    Dx_old = grad_2d(x)
    x, _, _ = _admm_tv_step(op, y, x, z, u, lam, rho, n_iter_cg)
    z = group_shrink(Dx_old + u, lam / rho)
    return x, z, u + grad_2d(x) - z


_ADMM_MISTAKES = {
    _dual_sign_flipped: "the scaled dual update adds the new residual: u <- u + D x - z",
    _threshold_lam: "in scaled ADMM the shrinkage threshold is lam / rho, not lam",
    _anisotropic: "isotropic TV shrinks each pixel's gradient 2-vector as a whole (group_shrink over dim 1), "
                  "not each component on its own",
    _no_rho_in_normal: "the x-step solves (A^T A + rho D^T D) x = A^T y + rho D^T (z - u): rho multiplies "
                       "D^T D too",
    _z_from_old_x: "update z from the new x: z <- shrink(D x_new + u)",
}


@exercise(_admm_tv_step, *_ADMM_MISTAKES)
def check_admm_tv_step(fn):
    """One scaled ADMM iteration for 1/2 ||A x - y||^2 + lam TV(x) (isotropic) on a small inpainting
    problem, from a random state (x, z, u); compares x, z and u with the exact update."""
    g = torch.Generator().manual_seed(1)
    op = Inpaint(random_mask(8, 0.5, generator=g).to(F64))
    x_true = torch.rand(2, 1, 8, 8, generator=g, dtype=F64)
    y = op.A(x_true)
    x = torch.rand(2, 1, 8, 8, generator=g, dtype=F64)
    z = 0.3 * torch.randn(2, 2, 1, 8, 8, generator=g, dtype=F64)
    u = 0.3 * torch.randn(2, 2, 1, 8, 8, generator=g, dtype=F64)
    lam, rho = 0.2, 2.0
    args = (op, y, x, z, u, lam, rho)
    got = fn(op, y, x.clone(), z.clone(), u.clone(), lam, rho)
    assert isinstance(got, tuple) and len(got) == 3, "return the tuple (x, z, u)"
    want = _admm_tv_step(*args, n_iter_cg=100)
    for name, a, b in zip("xzu", got, want):
        assert isinstance(a, torch.Tensor) and a.shape == b.shape, (
            f"{name} must be a tensor of shape {tuple(b.shape)}, got {getattr(a, 'shape', type(a))}")
        assert close(a, b, **_ADMM_TOL), (f"{name} differs from the ADMM update; "
                                          + diagnose(got, want, args, _ADMM_MISTAKES, **_ADMM_TOL))
