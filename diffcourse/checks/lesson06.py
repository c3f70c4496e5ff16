"""Checks for lesson 06 (projection solvers): a k-space POCS step, Jalal's annealed likelihood score,
ILVR's low-pass replacement.

Conventions: single-coil Cartesian MRI y = M F x with F the centred orthonormal FFT
(:func:`diffcourse.physics.mri.fft2c`), y zero off the mask; VE states x_σ = x0 + σ z; the annealed
likelihood score of Jalal et al. (NeurIPS 2021) is Aᵀ(y - A x)/(σ_y² + σ²); ILVR (Choi et al.,
ICCV 2021) uses φ = A⁺A with A the f × f block average (``Downsample(f)``), A⁺ its
nearest-neighbour upsampling.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..physics.masks import cartesian_mask
from ..physics.mri import fft2c, ifft2c
from ._core import close, diagnose, exercise

__all__ = ["check_kspace_pocs", "check_annealed_likelihood", "check_ilvr_refine"]

F64, C128 = torch.float64, torch.complex128
_TOL = {"rtol": 1e-9, "atol": 1e-9}          # float64 answers: rounding slack only


# ---------------------------------------------------------------- exercise 1: k-space POCS step
def _kspace_pocs(x, y, mask):
    k = fft2c(x)
    return ifft2c((1 - mask) * k + mask * y)


def _measured_added(x, y, mask):  # the current measured k-space is kept and y added on top
    return ifft2c(fft2c(x) + mask * y)


def _mask_swapped(x, y, mask):  # keeps the measured part of x, writes y where nothing was measured
    return ifft2c(mask * fft2c(x) + (1 - mask) * y)


def _uncentred_fft(x, y, mask):  # torch.fft.fft2 puts DC at (0, 0); the mask is centred
    k = torch.fft.fft2(x, norm="ortho")
    return torch.fft.ifft2((1 - mask) * k + mask * y, norm="ortho")


def _unnormalised_fft(x, y, mask):  # fft2 / ifft2 without norm="ortho": y is on the orthonormal scale
    k = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1))), dim=(-2, -1))
    k = (1 - mask) * k + mask * y
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1))), dim=(-2, -1))


def _only_measured(x, y, mask):  # the zero-filled image: the prior's k-space is thrown away
    return ifft2c(mask * y)


_POCS_MISTAKES = {
    _measured_added: "replace, do not add: the measured entries of F x must be removed, (1 - M) F x + M y",
    _mask_swapped: "y is known where M = 1: keep F x where M = 0 and write y where M = 1",
    _uncentred_fft: "the mask lives in centred k-space: use fft2c / ifft2c (DC in the middle), not bare torch.fft",
    _unnormalised_fft: "y was measured with the orthonormal FFT (norm='ortho'): the unnormalised fft2 of an "
                       "n x n image is n times larger",
    _only_measured: "this is the zero-filled image F⁻¹(M y): keep the unmeasured k-space of x, (1 - M) F x",
}


@exercise(_kspace_pocs, *_POCS_MISTAKES)
def check_kspace_pocs(fn):
    """fn(x, y, mask) = F⁻¹[(1 - M) F x + M y] for complex x (B, 1, H, W), complex y, a 0/1 mask (H, W)."""
    g = torch.Generator().manual_seed(0)
    for size, R, center, batch in [(16, 4, 0.125, 2), (32, 3, 0.1, 1)]:
        mask = cartesian_mask(size, R, center, generator=g).to(F64)       # random columns: not symmetric
        x = torch.randn(batch, 1, size, size, generator=g, dtype=C128)
        truth = torch.randn(batch, 1, size, size, generator=g, dtype=F64)
        y = mask * (fft2c(truth) + 0.05 * torch.randn(batch, 1, size, size, generator=g, dtype=C128))
        out = fn(x.clone(), y.clone(), mask.clone())
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == x.shape, f"the new x must have the shape of x {tuple(x.shape)}, got {tuple(out.shape)}"
        assert out.is_complex(), "return the complex image: taking the real part changes the measured k-space"
        expected = _kspace_pocs(x, y, mask)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"{size} x {size}, {int(mask[0].sum())} columns: "
                                 + diagnose(out, expected, (x, y, mask), _POCS_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 2: annealed likelihood
def _annealed_likelihood(x, sigma, A, AT, y, sigma_y):
    return AT(y - A(x)) / (sigma_y ** 2 + sigma ** 2)


def _not_annealed(x, sigma, A, AT, y, sigma_y):  # the σ = 0 likelihood at every level
    return AT(y - A(x)) / sigma_y ** 2


def _sign_flipped(x, sigma, A, AT, y, sigma_y):  # the gradient of the misfit, not of the log-likelihood
    return AT(A(x) - y) / (sigma_y ** 2 + sigma ** 2)


def _sigma_not_squared(x, sigma, A, AT, y, sigma_y):
    return AT(y - A(x)) / (sigma_y ** 2 + sigma)


def _stds_added(x, sigma, A, AT, y, sigma_y):  # (σ_y + σ)²: standard deviations do not add
    return AT(y - A(x)) / (sigma_y + sigma) ** 2


def _prior_noise_only(x, sigma, A, AT, y, sigma_y):  # σ_y forgotten
    return AT(y - A(x)) / sigma ** 2


_LIK_MISTAKES = {
    _not_annealed: "this is the noise-free-state likelihood Aᵀ(y - A x)/σ_y²; at level σ the state carries "
                   "noise σ z too, so the variance is σ_y² + σ²",
    _sign_flipped: "the log-likelihood -||y - A x||²/(2 v) has gradient +Aᵀ(y - A x)/v: it pulls x towards the data",
    _sigma_not_squared: "variances add: σ_y² + σ², with σ a standard deviation",
    _stds_added: "independent noises add their variances, σ_y² + σ², not their standard deviations",
    _prior_noise_only: "the measurement noise σ_y stays: the variance is σ_y² + σ² (it is σ_y² at σ = 0)",
}


def _matrix_case(g, m, n, batch):
    M = torch.randn(m, n, generator=g, dtype=F64) / n ** 0.5
    return (lambda x: x @ M.T), (lambda r: r @ M), torch.randn(batch, n, generator=g, dtype=F64)


@exercise(_annealed_likelihood, *_LIK_MISTAKES)
def check_annealed_likelihood(fn):
    """fn(x, sigma, A, AT, y, sigma_y) = Aᵀ(y - A x)/(σ_y² + σ²) for callables A, AT and numbers σ, σ_y."""
    g = torch.Generator().manual_seed(1)
    pool = lambda x: F.avg_pool2d(x, 2)                                        # noqa: E731
    up = lambda r: r.repeat_interleave(2, -2).repeat_interleave(2, -1) / 4     # noqa: E731  (its adjoint)
    cases = [(*_matrix_case(g, 3, 5, 4), 0.7, 0.1), (*_matrix_case(g, 2, 6, 3), 0.0, 0.3),
             (pool, up, torch.randn(2, 1, 8, 8, generator=g, dtype=F64), 2.5, 0.05)]
    for A, AT, x, sigma, sigma_y in cases:
        y = A(torch.randn(x.shape, generator=g, dtype=F64)) + sigma_y * torch.randn(A(x).shape, generator=g,
                                                                                    dtype=F64)
        args = (x, sigma, A, AT, y, sigma_y)
        out = fn(x.clone(), sigma, A, AT, y.clone(), sigma_y)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == x.shape, f"a score has the shape of x {tuple(x.shape)}, got {tuple(out.shape)}"
        expected = _annealed_likelihood(*args)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"σ = {sigma}, σ_y = {sigma_y}: " + diagnose(out, expected, args, _LIK_MISTAKES,
                                                                             **_TOL))


# ---------------------------------------------------------------- exercise 3: ILVR refinement
def _up(v, f):
    return v.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)


def _ilvr_refine(x, y_level, factor):
    return x - _up(F.avg_pool2d(x, factor), factor) + _up(y_level, factor)


def _adjoint_for_pinv(x, y_level, f):  # Aᵀ = up/f² used where A⁺ = up belongs
    return x - _up(F.avg_pool2d(x, f), f) / f ** 2 + _up(y_level, f) / f ** 2


def _low_pass_not_removed(x, y_level, f):  # adds the reference's low frequencies on top of x's own
    return x + _up(y_level, f)


def _reference_only(x, y_level, f):  # φ(y) alone: the high frequencies of x are lost
    return _up(y_level, f)


def _bilinear(x, y_level, f):  # a smooth resizer: φ is then not a projector
    upb = lambda v: F.interpolate(v, scale_factor=f, mode="bilinear", align_corners=False)  # noqa: E731
    return x - upb(F.avg_pool2d(x, f)) + upb(y_level)


_ILVR_MISTAKES = {
    _adjoint_for_pinv: "φ = A⁺A with A⁺ = nearest-neighbour upsampling (no 1/f² factor): Aᵀ = up/f² is the "
                       "adjoint, not the pseudo-inverse",
    _low_pass_not_removed: "replace the low frequencies, do not add: remove φ(x) before adding φ(y), "
                           "x - φ(x) + φ(y)",
    _reference_only: "keep the high frequencies of x: (I - φ) x + φ(y), not φ(y) alone",
    _bilinear: "use the exact pair of the operator, block average down and nearest-neighbour up: then φ is "
               "an orthogonal projector and A x = y holds exactly after the refinement",
}


@exercise(_ilvr_refine, *_ILVR_MISTAKES)
def check_ilvr_refine(fn):
    """fn(x, y_level, factor) = x - up(avgpool(x)) + up(y_level) for x (B, C, H, W), y_level (B, C, H/f, W/f)."""
    g = torch.Generator().manual_seed(2)
    for shape, f in [((2, 1, 8, 8), 2), ((1, 1, 16, 16), 4), ((3, 2, 12, 12), 3)]:
        x = torch.randn(shape, generator=g, dtype=F64)
        y_level = torch.randn(shape[0], shape[1], shape[2] // f, shape[3] // f, generator=g, dtype=F64)
        out = fn(x.clone(), y_level.clone(), f)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == x.shape, f"the refined x has the shape of x {shape}, got {tuple(out.shape)}"
        expected = _ilvr_refine(x, y_level, f)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"factor {f}: " + diagnose(out, expected, (x, y_level, f), _ILVR_MISTAKES, **_TOL))
