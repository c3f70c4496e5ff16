"""Image quality metrics, one number per image: PSNR, SSIM (Wang et al. 2004) and NMSE.

Every metric takes ``x`` and ``ref`` of shape (B, C, H, W) and returns a tensor of shape (B,), so a
batch of two gives the same numbers as two batches of one. Complex inputs (e.g. MRI images) are
compared by their magnitude.
"""
from __future__ import annotations

import math

import torch

from ._validate import check_image, check_positive, check_same_device

__all__ = ["psnr", "ssim", "nmse"]


def _pair(x, ref) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (prediction, reference) pair and return both as real tensors (magnitude if complex)."""
    check_image(x, "x", complex_ok=True)
    check_image(ref, "ref", complex_ok=True)
    check_same_device(x, ref, "x", "ref")
    if x.shape != ref.shape:
        raise ValueError(f"x and ref must have the same shape, got {tuple(x.shape)} and {tuple(ref.shape)}")
    x, ref = (t.abs() if t.is_complex() else t for t in (x, ref))
    dtype = torch.promote_types(x.dtype, ref.dtype)
    return x.to(dtype), ref.to(dtype)


def nmse(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Normalised mean squared error ||x - ref||^2 / ||ref||^2 per image; (B, C, H, W) x2 -> (B,).

    >>> ref = torch.ones(2, 1, 8, 8)
    >>> nmse(0.9 * ref, ref)
    tensor([0.0100, 0.0100])
    """
    x, ref = _pair(x, ref)
    return (x - ref).flatten(1).square().sum(1) / ref.flatten(1).square().sum(1)


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio 10 log10(data_range^2 / MSE) in dB per image; (B, C, H, W) x2 -> (B,).

    >>> ref = torch.zeros(1, 1, 8, 8)
    >>> psnr(ref + 0.1, ref)
    tensor([20.])
    """
    x, ref = _pair(x, ref)
    data_range = check_positive(data_range, "data_range")
    mse = (x - ref).flatten(1).square().mean(1)
    return 10 * torch.log10(data_range ** 2 / mse)


def _gaussian_window(sigma: float, truncate: float, like: torch.Tensor) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius int(truncate * sigma + 0.5), as in scipy.ndimage."""
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


def _blur_valid(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' correlation of every channel of x (N, C, H, W) with the 1-D window w."""
    n, c, h, wd = x.shape
    x = x.reshape(n * c, 1, h, wd)  # (N*C, 1, H, W)
    x = torch.nn.functional.conv2d(x, w.view(1, 1, -1, 1))
    x = torch.nn.functional.conv2d(x, w.view(1, 1, 1, -1))
    return x.reshape(n, c, x.shape[-2], x.shape[-1])


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0, *, sigma: float = 1.5,
         K1: float = 0.01, K2: float = 0.03) -> torch.Tensor:
    """Structural similarity, Wang et al. 2004 eq. (13), Gaussian window; (B, C, H, W) x2 -> (B,).

    SSIM = (2 mu_x mu_r + C1)(2 s_xr + C2) / ((mu_x^2 + mu_r^2 + C1)(s_x^2 + s_r^2 + C2)) with
    C_k = (K_k data_range)^2, local statistics from a Gaussian window (std ``sigma``, truncated at
    3.5 sigma), averaged over all channels and over the pixels at least one window radius away from
    the border. This equals ``skimage.metrics.structural_similarity(..., data_range=data_range,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` (channels averaged).

    >>> ref = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    >>> ssim(ref, ref)
    tensor([1., 1.])
    """
    x, ref = _pair(x, ref)
    data_range = check_positive(data_range, "data_range")
    w = _gaussian_window(check_positive(sigma, "sigma"), 3.5, x)
    if min(x.shape[-2:]) < w.numel():
        raise ValueError(f"x and ref must be at least {w.numel()}x{w.numel()} pixels for the SSIM "
                         f"window (sigma={sigma}), got {tuple(x.shape[-2:])}")
    mu_x, mu_r = _blur_valid(x, w), _blur_valid(ref, w)
    var_x = _blur_valid(x * x, w) - mu_x ** 2
    var_r = _blur_valid(ref * ref, w) - mu_r ** 2
    cov = _blur_valid(x * ref, w) - mu_x * mu_r
    C1, C2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * mu_x * mu_r + C1) * (2 * cov + C2)) / ((mu_x ** 2 + mu_r ** 2 + C1) * (var_x + var_r + C2))
    return s.flatten(1).mean(1)
