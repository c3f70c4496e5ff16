"""Checks for lesson 14 (accelerated MRI): the multi-coil forward model, its adjoint (the SENSE coil
combination), and the coverage of the truth by posterior mean ± k standard deviations.

Conventions: images x (B, 1, H, W) complex; coil maps S (C, H, W) complex; a 0/1 k-space mask (H, W)
in the centred layout; ``fft2c`` / ``ifft2c`` of :mod:`diffcourse.physics.mri` are the centred
orthonormal 2-D FFT and its inverse.
Forward (Pruessmann et al., MRM 1999): y_i = M ⊙ F(S_i x), y (B, C, H, W).
Adjoint: Aᴴ y = Σ_i conj(S_i) F⁻¹(M ⊙ y_i), (B, 1, H, W) -- the coil combination of SENSE.
Coverage: the fraction of pixels with |truth - mean| <= k std, mean and unbiased std over S samples.
"""
from __future__ import annotations

import torch

from ..physics.mri import coil_sensitivities, fft2c, ifft2c
from ._core import close, diagnose, exercise

__all__ = ["check_multicoil_forward", "check_multicoil_adjoint", "check_coverage"]

C128, F64 = torch.complex128, torch.float64
_TOL = {"rtol": 1e-9, "atol": 1e-11}


def _crandn(g, *shape):
    return torch.complex(torch.randn(shape, generator=g, dtype=F64), torch.randn(shape, generator=g, dtype=F64))


def _case(seed: int, B: int, C: int, size: int):
    """x (B, 1, H, W), S (C, H, W), a random 0/1 mask (H, W) with its centre sampled, y (B, C, H, W)."""
    g = torch.Generator().manual_seed(seed)
    x = _crandn(g, B, 1, size, size)
    S = coil_sensitivities(C, size, dtype=C128) * torch.exp(0.3j * torch.randn(C, size, size, generator=g, dtype=F64))
    mask = (torch.rand(size, size, generator=g, dtype=F64) < 0.4).to(F64)
    mask[size // 2 - 1:size // 2 + 1] = 1
    return x, S, mask, _crandn(g, B, C, size, size)


_CASES = [(0, 2, 4, 8), (1, 1, 3, 6), (2, 3, 2, 10)]   # seed, B, coils, size


# ---------------------------------------------------------------- exercise 1: the forward model
def _forward(x, S, mask):
    return mask * fft2c(S * x)


def _no_mask(x, S, mask):
    return fft2c(S * x)


def _uncentred(x, S, mask):                      # torch's FFT: DC in the corner, not orthonormal
    return mask * torch.fft.fft2(S * x)


def _not_orthonormal(x, S, mask):
    return mask * torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(S * x, dim=(-2, -1))), dim=(-2, -1))


def _conj_coils(x, S, mask):
    return mask * fft2c(S.conj() * x)


def _mask_before_fft(x, S, mask):               # the mask belongs to k-space, not to the image
    return fft2c(mask * S * x)


def _coils_summed(x, S, mask):
    return mask * fft2c((S * x).sum(1, keepdim=True))


_FORWARD_MISTAKES = {
    _no_mask: "the k-space samples off the mask are not measured: multiply F(S_i x) by the mask",
    _uncentred: "use the centred orthonormal FFT fft2c: torch.fft.fft2 puts the DC term in the corner "
                "(the mask is centred) and is not orthonormal",
    _not_orthonormal: "the FFT must be orthonormal (norm='ortho', as fft2c is), so that ||F x|| = ||x||",
    _conj_coils: "the coil multiplies the image by S_i itself; conj(S_i) belongs to the adjoint",
    _mask_before_fft: "the mask selects k-space samples: apply it after the FFT, y_i = M ⊙ F(S_i x)",
    _coils_summed: "each coil gives its own k-space, y has one channel per coil: do not sum over coils",
}


@exercise(_forward, *_FORWARD_MISTAKES)
def check_multicoil_forward(fn):
    """fn(x, S, mask) = mask ⊙ fft2c(S_i x) for every coil i: (B, 1, H, W) -> (B, C, H, W)."""
    for seed, B, C, size in _CASES:
        x, S, mask, _ = _case(seed, B, C, size)
        args = (x, S, mask)
        out = fn(x.clone(), S.clone(), mask.clone())
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == (B, C, size, size), \
            f"y has one k-space per coil (do not sum over the coils), shape {(B, C, size, size)}, got {tuple(out.shape)}"
        expected = _forward(*args)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"{C} coils, {size}×{size}: " + diagnose(out, expected, args, _FORWARD_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 2: the adjoint (SENSE combination)
def _adjoint(y, S, mask):
    return (S.conj() * ifft2c(mask * y)).sum(1, keepdim=True)


def _adjoint_no_conj(y, S, mask):
    return (S * ifft2c(mask * y)).sum(1, keepdim=True)


def _adjoint_mean(y, S, mask):
    return (S.conj() * ifft2c(mask * y)).mean(1, keepdim=True)


def _adjoint_rss(y, S, mask):                    # root sum of squares: a magnitude, not the adjoint
    return ifft2c(mask * y).abs().pow(2).sum(1, keepdim=True).sqrt().to(y.dtype)


def _adjoint_divided(y, S, mask):               # the pseudo-inverse reflex: divide by S instead of conj(S)
    return (ifft2c(mask * y) / S).sum(1, keepdim=True)


def _adjoint_forward_fft(y, S, mask):
    return (S.conj() * fft2c(mask * y)).sum(1, keepdim=True)


def _adjoint_no_mask(y, S, mask):
    return (S.conj() * ifft2c(y)).sum(1, keepdim=True)


_ADJOINT_MISTAKES = {
    _adjoint_no_conj: "the adjoint multiplies by the complex conjugate conj(S_i), not by S_i: "
                      "<S x, z> = <x, conj(S) z>",
    _adjoint_mean: "the adjoint sums the coils, Σ_i conj(S_i) F⁻¹(M y_i); a mean divides by the number of coils",
    _adjoint_rss: "that is the root-sum-of-squares magnitude; the adjoint is linear and complex: "
                  "Σ_i conj(S_i) F⁻¹(M ⊙ y_i)",
    _adjoint_divided: "dividing by S_i inverts each coil, which is neither the adjoint nor stable where "
                      "|S_i| is small; the adjoint multiplies by conj(S_i)",
    _adjoint_forward_fft: "the adjoint of the orthonormal fft2c is its inverse, ifft2c",
    _adjoint_no_mask: "apply the mask (its own adjoint) before the inverse FFT: F⁻¹(M ⊙ y_i)",
}


@exercise(_adjoint, *_ADJOINT_MISTAKES)
def check_multicoil_adjoint(fn):
    """fn(y, S, mask) = Σ_i conj(S_i) ifft2c(mask ⊙ y_i): (B, C, H, W) -> (B, 1, H, W); <A x, y> = <x, Aᴴ y>."""
    for seed, B, C, size in _CASES:
        x, S, mask, y = _case(seed, B, C, size)
        args = (y, S, mask)
        out = fn(y.clone(), S.clone(), mask.clone())
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == (B, 1, size, size), \
            f"the adjoint returns one image per sample, shape {(B, 1, size, size)}, got {tuple(out.shape)}"
        expected = _adjoint(*args)
        if not close(out, expected, **_TOL):
            lhs = (_forward(x, S, mask).conj() * y).sum()
            rhs = (x.conj() * out).sum()
            gap = (abs(lhs - rhs) / abs(lhs)).item()
            raise AssertionError(f"{C} coils, {size}×{size}: dot test <A x, y> vs <x, your Aᴴ y>: relative gap "
                                 f"{gap:.1e}; " + diagnose(out, expected, args, _ADJOINT_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 3: coverage
def _coverage(samples, truth, k):
    mean, std = samples.mean(0), samples.std(0, correction=1)
    return ((truth - mean).abs() <= k * std).flatten(1).double().mean(1)


def _coverage_biased_std(samples, truth, k):
    mean, std = samples.mean(0), samples.std(0, correction=0)
    return ((truth - mean).abs() <= k * std).flatten(1).double().mean(1)


def _coverage_variance(samples, truth, k):
    mean, var = samples.mean(0), samples.var(0, correction=1)
    return ((truth - mean).abs() <= k * var).flatten(1).double().mean(1)


def _coverage_pooled(samples, truth, k):        # one number for the whole batch
    return _coverage(samples, truth, k).mean().expand(truth.shape[0]).clone()


def _coverage_signed(samples, truth, k):        # only errors on one side counted
    mean, std = samples.mean(0), samples.std(0, correction=1)
    return ((truth - mean) <= k * std).flatten(1).double().mean(1)


def _coverage_first_sample(samples, truth, k):  # the error of one sample instead of the mean's
    std = samples.std(0, correction=1)
    return ((truth - samples[0]).abs() <= k * std).flatten(1).double().mean(1)


def _coverage_wrong_axis(samples, truth, k):    # statistics over the batch axis
    mean, std = samples.mean(1, keepdim=True), samples.std(1, keepdim=True)
    return ((truth - mean).abs() <= k * std).flatten(2).double().mean((0, 2))


_COVERAGE_MISTAKES = {
    _coverage_biased_std: "use the unbiased standard deviation over the S samples (divide by S - 1, "
                          "samples.std(0), torch's default), the one the Student-t expectation refers to",
    _coverage_variance: "compare the error with k standard deviations, not k variances",
    _coverage_pooled: "report one fraction per image (B,), not one for the whole batch",
    _coverage_signed: "count |truth - mean| <= k std: an error of either sign",
    _coverage_first_sample: "the error is that of the posterior mean (the average of the samples), "
                            "not of one sample",
    _coverage_wrong_axis: "the samples are on axis 0 (S, B, ...): take the mean and std over axis 0",
}


@exercise(_coverage, *_COVERAGE_MISTAKES)
def check_coverage(fn):
    """fn(samples (S, B, ...), truth (B, ...), k) = per-image fraction of pixels with |truth - mean| <= k std."""
    for seed, S, B, k in ((30, 8, 2, 1.0), (31, 5, 3, 2.0), (32, 12, 1, 0.5)):
        g = torch.Generator().manual_seed(seed)
        scale = 0.05 + torch.rand(B, 1, 12, 12, generator=g, dtype=F64)
        truth = torch.rand(B, 1, 12, 12, generator=g, dtype=F64)
        samples = truth + 0.3 * scale + scale * torch.randn(S, B, 1, 12, 12, generator=g, dtype=F64)
        args = (samples, truth, k)
        out = fn(samples.clone(), truth.clone(), k)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == (B,), f"one fraction per image, shape ({B},), got {tuple(out.shape)}"
        expected = _coverage(*args)
        if not close(out, expected, rtol=0, atol=1e-6):            # fractions step by 1/144: float32 is fine
            raise AssertionError(f"S = {S}, k = {k}: "
                                 + diagnose(out, expected, args, _COVERAGE_MISTAKES, rtol=0, atol=1e-6))
