"""Pixel-wise uncertainty from posterior samples: mean and standard deviation maps, their calibration,
and how well the standard deviation predicts where the error is.

A posterior sampler (DPS, DDS, ...) run S times on one measurement gives samples x^(1..S) of
p(x | y); their pixel-wise mean is the estimate (the MMSE estimate as S grows) and their standard
deviation the claimed uncertainty (as the uncertainty maps of Jalal et al., NeurIPS 2021, and of
Chung & Ye, MedIA 2022). Whether the claim holds is measured against the truth:

* **calibration** -- the fraction of pixels whose error |x - mean| lies within k standard deviations.
  If the truth were one more draw of a Gaussian posterior, the fraction would be erf(k/sqrt 2)
  (68.3 / 95.4 / 99.7 %) as S grows; with S samples the mean and the std are themselves estimates and
  (x - mean) / (std sqrt(1 + 1/S)) follows Student's t with S - 1 degrees of freedom (Student,
  Biometrika 1908; the classical prediction interval for one more normal draw), so the expected fraction is
  P(|T_{S-1}| <= k / sqrt(1 + 1/S)), e.g. 62.3 / 89.9 / 97.5 % at k = 1 / 2 / 3 for S = 8. Fewer pixels than expected:
  the std is too small (over-confident); more: too large.
* **std-error correlation** -- the Pearson correlation, over the pixels of each image, of the std
  map with the absolute error map: whether the std points at the pixels that are wrong.

Shapes: ``samples`` (S, B, ...) with the sample axis first, ``truth`` (B, ...); every statistic is per
image (B,), over an optional boolean ``mask`` (B, ...) or broadcastable (e.g. the head's support).

>>> g = torch.Generator().manual_seed(0)
>>> samples = torch.randn(500, 2, 1, 8, 8, generator=g)         # a N(0, 1) posterior per pixel
>>> truth = torch.randn(2, 1, 8, 8, generator=g)                # one more draw: calibrated
>>> cal = calibration(samples, truth, ks=(1, 2))
>>> [round(v, 3) for v in cal.gaussian.tolist()]
[0.683, 0.954]
>>> bool((cal.observed - cal.gaussian).abs().max() < 0.15)
True
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

from .._validate import check_int, check_tensor

__all__ = ["pixel_stats", "coverage", "calibration", "Calibration", "gaussian_coverage", "student_coverage",
           "std_error_correlation"]


def _check_samples(samples: torch.Tensor) -> torch.Tensor:
    check_tensor(samples, "samples")
    if samples.ndim < 2 or samples.shape[0] < 2:
        raise ValueError(f"samples must be (S, B, ...) with S >= 2 posterior samples first, got shape "
                         f"{tuple(samples.shape)}")
    return samples


def pixel_stats(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-wise mean and standard deviation of S samples, (S, B, ...) -> ((B, ...), (B, ...)).

    The std is the unbiased sample std (divides by S - 1), the one Student's t refers to.

    >>> mean, std = pixel_stats(torch.tensor([[1.0, 2.0], [3.0, 2.0]]))
    >>> mean, std
    (tensor([2., 2.]), tensor([1.4142, 0.0000]))
    """
    samples = _check_samples(samples)
    return samples.mean(0), samples.std(0, correction=1)


def _masked_mean(v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of v (B, ...) over all but the batch axis, over ``mask`` where given: -> (B,)."""
    if mask is None:
        return v.flatten(1).double().mean(1)
    m = torch.broadcast_to(mask.to(torch.bool), v.shape).flatten(1)
    count = m.sum(1)
    if bool((count == 0).any()):
        raise ValueError("mask selects no pixel of some image")
    return (v.flatten(1) * m).sum(1).double() / count


def coverage(samples: torch.Tensor, truth: torch.Tensor, k: float, *, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Fraction of pixels with |truth - mean| <= k std, per image: (S, B, ...), (B, ...) -> (B,)."""
    mean, std = pixel_stats(samples)
    check_tensor(truth, "truth")
    if truth.shape != mean.shape:
        raise ValueError(f"truth must have the shape of one sample {tuple(mean.shape)}, got {tuple(truth.shape)}")
    return _masked_mean((truth - mean).abs() <= k * std, mask)


def gaussian_coverage(k: float) -> float:
    """P(|Z| <= k) = erf(k / sqrt 2) for Z ~ N(0, 1): 0.683, 0.954, 0.997 at k = 1, 2, 3."""
    return math.erf(k / math.sqrt(2))


def student_coverage(k: float, n_samples: int, *, n_grid: int = 4001) -> float:
    """P(|x - mean| <= k std) when x and the S = ``n_samples`` samples are i.i.d. Gaussian (std unbiased).

    (x - mean) / (std sqrt(1 + 1/S)) ~ t_{S-1} (Student 1908), so this is P(|T| <= k / sqrt(1 + 1/S)),
    computed by Simpson's rule on the t density; it tends to erf(k / sqrt 2) as S grows.

    >>> round(student_coverage(1.0, 8), 4), round(student_coverage(1.0, 10**6), 4)
    (0.6228, 0.6827)
    """
    S = check_int(n_samples, "n_samples", 2)
    nu, a = S - 1, k / math.sqrt(1 + 1 / S)
    t = torch.linspace(0, a, n_grid, dtype=torch.float64)
    log_c = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    pdf = torch.exp(log_c - (nu + 1) / 2 * torch.log1p(t ** 2 / nu))
    w = torch.ones(n_grid, dtype=torch.float64)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return float(2 * (w * pdf).sum() * (a / (n_grid - 1)) / 3)


class Calibration(NamedTuple):
    """Observed coverage (B, K) at each k of ``ks`` beside the Gaussian (K,) and finite-S Student (K,) values."""
    ks: tuple
    observed: torch.Tensor
    gaussian: torch.Tensor
    student: torch.Tensor


def calibration(samples: torch.Tensor, truth: torch.Tensor, ks: Sequence[float] = (1, 2, 3), *,
                mask: torch.Tensor | None = None) -> Calibration:
    """Coverage at k = ``ks`` standard deviations, per image, beside what a calibrated posterior gives.

    ``observed[b, j]``: the fraction of image b's pixels (within ``mask``) whose error lies within
    ks[j] stds; ``gaussian[j]`` = erf(k/sqrt 2); ``student[j]`` = the exact value for S Gaussian
    samples (:func:`student_coverage`), the fair target when S is small. (S, B, ...), (B, ...).
    """
    ks = tuple(float(k) for k in ks)
    if not ks or any(not k > 0 for k in ks):
        raise ValueError(f"ks must be positive numbers, got {ks}")
    S = _check_samples(samples).shape[0]
    observed = torch.stack([coverage(samples, truth, k, mask=mask) for k in ks], 1)   # (B, K)
    return Calibration(ks, observed, torch.tensor([gaussian_coverage(k) for k in ks], dtype=torch.float64),
                       torch.tensor([student_coverage(k, S) for k in ks], dtype=torch.float64))


def std_error_correlation(std: torch.Tensor, error: torch.Tensor, *, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pearson correlation of the std map with |error| over the pixels of each image: (B, ...) -> (B,).

    1 when the std is an exact affine image of the absolute error; about 0 when it says nothing about
    where the error is. A constant map has no correlation (NaN).

    >>> e = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> std_error_correlation(2 * e + 1, e)
    tensor([1.])
    """
    check_tensor(std, "std")
    check_tensor(error, "error")
    if std.shape != error.shape:
        raise ValueError(f"std and error must have the same shape, got {tuple(std.shape)} and {tuple(error.shape)}")
    a, b = std.double(), error.abs().double()
    m = torch.ones_like(a, dtype=torch.bool) if mask is None else torch.broadcast_to(mask.to(torch.bool), a.shape)
    mean_a, mean_b = _masked_mean(a, m), _masked_mean(b, m)
    shape = (-1, *([1] * (a.ndim - 1)))
    da, db = (a - mean_a.reshape(shape)) * m, (b - mean_b.reshape(shape)) * m
    cov = (da * db).flatten(1).sum(1)
    return (cov / (da.pow(2).flatten(1).sum(1) * db.pow(2).flatten(1).sum(1)).sqrt()).to(std.dtype)
