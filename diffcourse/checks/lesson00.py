"""Checks for lesson 00 (inverse problems): the adjoint of downsampling, one ADMM-TV iteration."""
from __future__ import annotations

import torch

from ..physics.operators import Downsample, Inpaint, random_mask
from ..posterior.classical import admm_step, cg
from ..posterior.tv import grad_2d, grad_2d_T, group_shrink
from ._core import exercise

__all__ = ["check_downsample_adjoint", "check_admm_tv_step"]

F64 = torch.float64


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


@exercise(_downsample_adjoint, _upsample_without_scaling, _upsample_over_factor, _zero_insertion)
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
        assert abs(lhs - rhs) <= 1e-8 * (1 + abs(lhs)), (
            f"<A x, y> = {lhs:.6f} but <x, A^T y> = {rhs:.6f} (shape {shape}, factor {factor})")


# ---------------------------------------------------------------- exercise 2: one ADMM-TV iteration
def _admm_tv_step(op, y, x, z, u, lam, rho, cg_iters=50):
    return admm_step(op, y, x, z, u, lam=lam, rho=rho, cg_iters=cg_iters)


def _dual_sign_flipped(op, y, x, z, u, lam, rho, cg_iters=50):
    x, z, u_next = _admm_tv_step(op, y, x, z, u, lam, rho, cg_iters)
    return x, z, 2 * u - u_next  # u - (D x - z)


def _threshold_lam(op, y, x, z, u, lam, rho, cg_iters=50):  # shrinks by lam instead of lam / rho
    return admm_step(op, y, x, z, u, lam=lam * rho, rho=rho, cg_iters=cg_iters)


def _anisotropic(op, y, x, z, u, lam, rho, cg_iters=50):
    return admm_step(op, y, x, z, u, lam=lam, rho=rho, isotropic=False, cg_iters=cg_iters)


def _no_rho_in_normal(op, y, x, z, u, lam, rho, cg_iters=50):
    normal = lambda v: op.AT(op.A(v)) + grad_2d_T(grad_2d(v))
    x = cg(normal, op.AT(y) + rho * grad_2d_T(z - u), x0=x, iters=cg_iters, tol=0.0)
    Dx = grad_2d(x)
    z = group_shrink(Dx + u, lam / rho)
    return x, z, u + Dx - z


def _z_from_old_x(op, y, x, z, u, lam, rho, cg_iters=50):
    Dx_old = grad_2d(x)
    x, _, _ = _admm_tv_step(op, y, x, z, u, lam, rho, cg_iters)
    z = group_shrink(Dx_old + u, lam / rho)
    return x, z, u + grad_2d(x) - z


@exercise(_admm_tv_step, _dual_sign_flipped, _threshold_lam, _anisotropic, _no_rho_in_normal,
          _z_from_old_x)
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
    got = fn(op, y, x.clone(), z.clone(), u.clone(), lam, rho)
    assert isinstance(got, tuple) and len(got) == 3, "return the tuple (x, z, u)"
    want = _admm_tv_step(op, y, x, z, u, lam, rho, cg_iters=100)
    for name, a, b in zip("xzu", got, want):
        assert isinstance(a, torch.Tensor) and a.shape == b.shape, (
            f"{name} must be a tensor of shape {tuple(b.shape)}, got {getattr(a, 'shape', type(a))}")
        err = (a - b).abs().max().item()
        assert err < 1e-6, f"{name} differs from the ADMM update by up to {err:.3g}"
