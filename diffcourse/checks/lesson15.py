"""Checks for lesson 15 (3-D reconstruction): the circular difference along the slices D_z and its
adjoint, and one ADMM iteration for min_x 1/2 ||y - A x||² + λ ||D_z x||₁ (DiffusionMBIR, Chung, Ryu,
McCann, Klasky & Ye, CVPR 2023, Eq. 11-13).

Conventions: volumes x (B, C, D, H, W) with the slices along dim 2; D_z x has the shape of x,
(D_z x)_d = x_{(d+1) mod D} - x_d (circular, as the official code), and (D_zᵀ p)_d = p_{(d-1) mod D} - p_d.
The ADMM iteration, split z = D_z x, scaled dual w (Boyd et al. 2011, eqs. 3.5-3.7):

    x <- n_cg CG steps, started at x, on (AᵀA + ρ D_zᵀD_z) x = Aᵀy + ρ D_zᵀ(z - w)
    z <- S_{λ/ρ}(D_z x + w),   S_κ(v) = sign(v) max(|v| - κ, 0)
    w <- w + D_z x - z
"""
from __future__ import annotations

import torch

from .._linalg import cg
from ._core import close, diagnose, exercise

__all__ = ["check_diff_z_circ", "check_diff_z_circ_T", "check_admm_tv_z_step"]

F64 = torch.float64
_TOL = {"rtol": 1e-7, "atol": 1e-9}           # float64: rounding slack only


def _volume(seed: int, shape=(2, 1, 5, 3, 4)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# ---------------------------------------------------------------- exercise 1: D_z
def _diff_z_circ(x):
    return torch.roll(x, -1, dims=2) - x


def _dz_neumann(x):                                                # no wrap-around: last difference 0
    out = torch.zeros_like(x)
    out[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return out


def _dz_backward(x):                                               # x_d - x_{d-1}
    return x - torch.roll(x, 1, dims=2)


def _dz_reversed(x):                                               # x_d - x_{d+1}
    return x - torch.roll(x, -1, dims=2)


def _dz_roll_the_other_way(x):                                     # torch.roll(x, 1): x_{d-1} - x_d
    return torch.roll(x, 1, dims=2) - x


def _dz_wrong_axis(x):                                             # along H, the rows of a slice
    return torch.roll(x, -1, dims=3) - x


def _check_along_z(fn, reference, mistakes, *, seeds, name, image):
    """fn against ``reference`` on three volumes (B, C, D, H, W) of the given seeds; a wrong answer is
    named from ``mistakes`` when it is one of them."""
    for seed, shape in zip(seeds, ((2, 1, 5, 3, 4), (1, 2, 3, 4, 4), (3, 1, 2, 2, 3))):
        v = _volume(seed, shape)
        out = fn(v.clone())
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == v.shape, f"{image} has the shape of {name} {tuple(v.shape)}, got {tuple(out.shape)}"
        expected = reference(v)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"{name} {tuple(shape)}: " + diagnose(out, expected, (v,), mistakes, **_TOL))


_DZ_MISTAKES = {
    _dz_neumann: "the last difference is 0 here: D_z is circular, (D_z x)_{D-1} = x_0 - x_{D-1} (the last "
                 "slice is compared with the first), e.g. torch.roll(x, -1, dims=2) - x",
    _dz_backward: "that is the backward difference x_d - x_{d-1}; D_z is forward: x_{d+1} - x_d",
    _dz_reversed: "wrong sign: (D_z x)_d = x_{d+1} - x_d",
    _dz_roll_the_other_way: "that is x_{d-1} - x_d: torch.roll(x, 1, dims=2)[d] is x_{d-1}; the next slice "
                            "x_{d+1} is torch.roll(x, -1, dims=2)",
    _dz_wrong_axis: "that differences along H (dim 3), the rows of each slice; the slices are along dim 2",
}


@exercise(_diff_z_circ, *_DZ_MISTAKES)
def check_diff_z_circ(fn):
    """fn(x) = x_{(d+1) mod D} - x_d along dim 2 of x (B, C, D, H, W), shaped like x."""
    _check_along_z(fn, _diff_z_circ, _DZ_MISTAKES, seeds=(0, 1, 2), name="x", image="D_z x")


# ---------------------------------------------------------------- exercise 2: D_zᵀ
def _diff_z_circ_T(p):
    return torch.roll(p, 1, dims=2) - p


def _dzT_same_as_forward(p):                                       # D_z used for D_zᵀ
    return torch.roll(p, -1, dims=2) - p


def _dzT_minus(p):                                                 # minus the adjoint
    return p - torch.roll(p, 1, dims=2)


def _dzT_neumann(p):                                               # the non-circular adjoint
    out = -p.clone()
    out[:, :, 1:] += p[:, :, :-1]
    return out


_DZT_MISTAKES = {
    _dzT_same_as_forward: "that is D_z itself; D_z is not symmetric: its adjoint shifts the other way, "
                          "(D_zᵀ p)_d = p_{d-1} - p_d (check <D_z x, p> = <x, D_zᵀ p>)",
    _dzT_minus: "wrong sign: (D_zᵀ p)_d = p_{(d-1) mod D} - p_d",
    _dzT_neumann: "the adjoint of the circular D_z wraps around too: (D_zᵀ p)_0 = p_{D-1} - p_0",
}


@exercise(_diff_z_circ_T, *_DZT_MISTAKES)
def check_diff_z_circ_T(fn):
    """fn(p) = p_{(d-1) mod D} - p_d along dim 2, the adjoint: <D_z x, p> = <x, fn(p)>."""
    _check_along_z(fn, _diff_z_circ_T, _DZT_MISTAKES, seeds=(3, 4, 5), name="p", image="D_zᵀ p")


# ---------------------------------------------------------------- exercise 3: one ADMM-TV_z iteration
def _shrink(v, kappa):
    return torch.sign(v) * (v.abs() - kappa).clamp_min(0)


def _admm(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg, *, warm=True, kappa=None, dual_sign=1.0, with_w=True,
          rho_in_b=True):
    normal = lambda v: AT(A(v)) + rho * DzT(Dz(v))
    b = AT(y) + (rho if rho_in_b else 1.0) * DzT(z - w)
    x = cg(normal, b, x if warm else None, n_iter=n_cg, tol=0.0)
    Dx = Dz(x)
    z = _shrink(Dx + w if with_w else Dx, lam / rho if kappa is None else kappa)
    return x, z, w + dual_sign * (Dx - z)


def _admm_tv_z_step(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg):
    return _admm(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg)


def _cold_start(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg):
    return _admm(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg, warm=False)


def _threshold_lam(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg):
    return _admm(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg, kappa=lam)


def _threshold_rho_over_lam(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg):
    return _admm(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg, kappa=rho / lam)


def _dual_sign(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg):
    return _admm(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg, dual_sign=-1.0)


def _shrink_without_w(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg):
    return _admm(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg, with_w=False)


def _no_rho_in_b(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg):
    return _admm(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg, rho_in_b=False)


def _z_from_old_x(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg):    # z and w updated with the input x
    x_new, _, _ = _admm(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg)
    _, z_new, w_new = _admm(A, AT, Dz, DzT, y, x, z, w, lam, rho, 0)
    return x_new, z_new, w_new


_ADMM_MISTAKES = {
    _cold_start: "start CG at the current x (x0=x), not at 0: with a few CG steps per iteration, as DiffusionMBIR "
                 "runs it, the warm start is what carries the previous iterate over",
    _threshold_lam: "the threshold of the z-update is λ/ρ, not λ: z = S_{λ/ρ}(D_z x + w)",
    _threshold_rho_over_lam: "the threshold of the z-update is λ/ρ, not ρ/λ",
    _dual_sign: "the scaled dual grows by the constraint's residual: w <- w + D_z x - z",
    _shrink_without_w: "shrink D_z x + w, not D_z x alone: the scaled dual w carries the accumulated residual",
    _no_rho_in_b: "the right-hand side is Aᵀy + ρ D_zᵀ(z - w): the factor ρ multiplies the D_z part too",
    _z_from_old_x: "update z and w with the new x from the CG step, not with the x you were given",
}


def _problem(seed: int, B: int, D: int, m: int):
    """A dense matrix on every slice (m × 9 on 3 × 3 slices), data, and a random ADMM state."""
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(m, 9, generator=g, dtype=F64)
    A = lambda v: (v.transpose(1, 2).reshape(v.shape[0], D, 9) @ M.T)           # (B, D, m)
    AT = lambda r: (r @ M).reshape(r.shape[0], D, 1, 3, 3).transpose(1, 2)       # (B, 1, D, 3, 3)
    x = torch.randn(B, 1, D, 3, 3, generator=g, dtype=F64)
    y = torch.randn(B, D, m, generator=g, dtype=F64)
    z = 0.3 * torch.randn(B, 1, D, 3, 3, generator=g, dtype=F64)
    w = 0.1 * torch.randn(B, 1, D, 3, 3, generator=g, dtype=F64)
    return A, AT, y, x, z, w


_ADMM_CASES = [(10, 2, 4, 5, 0.3, 1.5, 3), (11, 1, 3, 12, 0.05, 0.2, 2), (12, 3, 5, 4, 1.0, 4.0, 1)]
# seed, B, D, m, λ, ρ, n_cg


@exercise(_admm_tv_z_step, *_ADMM_MISTAKES)
def check_admm_tv_z_step(fn):
    """fn(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg) = (x, z, w) after one ADMM-TV_z iteration."""
    for seed, B, D, m, lam, rho, n_cg in _ADMM_CASES:
        A, AT, y, x, z, w = _problem(seed, B, D, m)
        args = (A, AT, _diff_z_circ, _diff_z_circ_T, y, x, z, w, lam, rho, n_cg)
        out = fn(A, AT, _diff_z_circ, _diff_z_circ_T, y.clone(), x.clone(), z.clone(), w.clone(), lam, rho, n_cg)
        assert isinstance(out, (tuple, list)) and len(out) == 3, "return the triple (x, z, w)"
        for name, o in zip("xzw", out):
            assert isinstance(o, torch.Tensor) and o.shape == x.shape, \
                f"{name} must be a tensor of the volume's shape {tuple(x.shape)}, got {getattr(o, 'shape', type(o))}"
        expected = _admm_tv_z_step(*args)
        if not close(tuple(out), expected, **_TOL):
            raise AssertionError(f"λ = {lam}, ρ = {rho}, {n_cg} CG step(s): "
                                 + diagnose(tuple(out), expected, args, _ADMM_MISTAKES, **_TOL))
