"""Noise models ``y ~ p(y | A x)``, kept apart from the operators.

Each has ``sample(Ax, generator=None)`` and a differentiable ``log_likelihood(y, Ax)`` summed per
sample, (B,) -- the term whose gradient DPS-type guidance follows (Chung et al., ICLR 2023).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._validate import as_sigma, check_nonnegative, check_positive, check_tensor
from .nonlinear import Quantizer

__all__ = ["GaussianNoise", "PoissonNoise", "QuantizedNoise", "log_normal_interval"]


def _check_level(value, name: str):
    """A noise level: a number >= 0 or a tensor (B,) of them."""
    if isinstance(value, torch.Tensor) and value.numel() > 1:
        check_tensor(value, name, ndim=1)
        if bool((value < 0).any()) or not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} must be finite and >= 0, got min {value.min().item():.3g}")
        return value
    return check_nonnegative(value, name)


def _check_pair(y: torch.Tensor, Ax: torch.Tensor, complex_ok: bool = False) -> None:
    check_tensor(y, "y", complex_ok=complex_ok)
    check_tensor(Ax, "Ax", complex_ok=complex_ok)
    if y.shape != Ax.shape:
        raise ValueError(f"y and Ax must have the same shape, got {tuple(y.shape)} and "
                         f"{tuple(Ax.shape)}")
    if y.device != Ax.device:
        raise ValueError(f"y is on {y.device} but Ax is on {Ax.device}")


class GaussianNoise(nn.Module):
    """Additive white Gaussian noise ``y = A x + sigma_y n``, ``n ~ N(0, I)``.

    ``sigma_y``: a number >= 0 or a tensor (B,). Complex data (MRI) get independent
    ``N(0, sigma_y^2)`` noise on the real and imaginary parts. ``log_likelihood`` is
    ``-||y - A x||^2 / (2 sigma_y^2) - (d/2) log(2 pi sigma_y^2)`` with d real dimensions per sample.

    >>> noise = GaussianNoise(0.1)
    >>> noise.log_likelihood(torch.zeros(2, 3), torch.zeros(2, 3)).shape
    torch.Size([2])
    """

    def __init__(self, sigma_y):
        super().__init__()
        self.sigma_y = _check_level(sigma_y, "sigma_y")

    def sample(self, Ax: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_tensor(Ax, "Ax", complex_ok=True)
        sigma = as_sigma(self.sigma_y, Ax.real, "sigma_y")
        real = Ax.real.dtype
        shape = (*Ax.shape, 2) if Ax.is_complex() else Ax.shape
        n = torch.randn(shape, generator=generator, dtype=real, device=Ax.device)
        return Ax + sigma * (torch.view_as_complex(n) if Ax.is_complex() else n)

    def log_likelihood(self, y: torch.Tensor, Ax: torch.Tensor) -> torch.Tensor:
        _check_pair(y, Ax, complex_ok=True)
        sigma = as_sigma(self.sigma_y, Ax.real, "sigma_y").flatten()
        if bool((sigma == 0).any()):
            raise ValueError("sigma_y must be > 0 for a log-likelihood (a density)")
        d = y[0].numel() * (2 if y.is_complex() else 1)
        r2 = (y - Ax).abs().pow(2).flatten(1).sum(1)
        return -0.5 * r2 / sigma ** 2 - 0.5 * d * torch.log(2 * math.pi * sigma ** 2)


class PoissonNoise(nn.Module):
    """Shot noise ``y = Poisson(scale * A x) / scale`` (``scale``: counts per unit intensity).

    ``log_likelihood`` is the log-probability of the counts ``k = scale * y`` given the rates
    ``lambda = scale * A x``: ``sum k log(lambda) - lambda - log(k!)``. Needs ``A x >= 0``.

    >>> Ax = torch.full((1, 4), 0.5, dtype=torch.float64)
    >>> y = PoissonNoise(100.0).sample(Ax, torch.Generator().manual_seed(0))
    >>> bool((y * 100 == (y * 100).round()).all())
    True
    """

    def __init__(self, scale: float):
        super().__init__()
        self.scale = check_positive(scale, "scale")

    def sample(self, Ax: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_tensor(Ax, "Ax")
        if bool((Ax < 0).any()):
            raise ValueError(f"Ax must be >= 0 (Poisson rates), got min {Ax.min().item():.3g}")
        return torch.poisson(self.scale * Ax, generator=generator) / self.scale

    def log_likelihood(self, y: torch.Tensor, Ax: torch.Tensor) -> torch.Tensor:
        _check_pair(y, Ax)
        if bool((y < 0).any()):
            raise ValueError(f"y must be >= 0 (counts / scale), got min {y.min().item():.3g}")
        if bool((Ax < 0).any()):
            raise ValueError(f"Ax must be >= 0 (Poisson rates), got min {Ax.min().item():.3g}")
        k, lam = self.scale * y, self.scale * Ax
        return (torch.xlogy(k, lam) - lam - torch.lgamma(k + 1)).flatten(1).sum(1)


def log_normal_interval(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(Phi(b) - Phi(a))`` for ``a < b`` (either may be infinite), stable in the tails.

    The interval is mirrored to the left half-line and computed as
    ``log Phi(hi) + log(-expm1(log Phi(lo) - log Phi(hi)))``.
    """
    big = 1e4  # stands in for an infinite bound: Phi(-1e4) = 0 in every float type
    a = torch.where(torch.isinf(a), torch.full_like(a, big).copysign(a), a)
    b = torch.where(torch.isinf(b), torch.full_like(b, big).copysign(b), b)
    flip = (a + b) > 0
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    lhi = torch.special.log_ndtr(hi)
    return lhi + torch.log(-torch.expm1(torch.special.log_ndtr(lo) - lhi))


class QuantizedNoise(nn.Module):
    """Quantized measurements ``y = Q(A x + sigma_y n)``: bin indices of a :class:`Quantizer`.

    ``log_likelihood(y, Ax) = sum_m log[Phi((u_m - A x_m)/sigma_y) - Phi((l_m - A x_m)/sigma_y)]``
    with ``[l_m, u_m)`` the bin of ``y_m`` (QCS-SGM, Meng & Kabashima ICLR 2023, with beta_t = 0).

    >>> noise = QuantizedNoise(Quantizer.sign(), 0.1)
    >>> noise.sample(torch.tensor([[-1.0, 1.0]]), torch.Generator().manual_seed(0)).tolist()
    [[0, 1]]
    """

    def __init__(self, quantizer: Quantizer, sigma_y: float):
        super().__init__()
        if not isinstance(quantizer, Quantizer):
            raise TypeError(f"quantizer must be a Quantizer, got {type(quantizer).__name__}")
        self.quantizer = quantizer
        self.sigma_y = check_positive(sigma_y, "sigma_y")

    def sample(self, Ax: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_tensor(Ax, "Ax")
        n = torch.randn(Ax.shape, generator=generator, dtype=Ax.dtype, device=Ax.device)
        return self.quantizer.A(Ax + self.sigma_y * n)

    def log_likelihood(self, y: torch.Tensor, Ax: torch.Tensor) -> torch.Tensor:
        check_tensor(Ax, "Ax")
        if not isinstance(y, torch.Tensor) or y.shape != Ax.shape:
            raise ValueError(f"y must be a tensor of bin indices shaped like Ax "
                             f"{tuple(Ax.shape)}, got "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(f"y must hold integer bin indices (as QuantizedNoise.sample returns), got "
                            f"dtype {y.dtype}")
        l, u = self.quantizer.bounds(y.to(Ax.device), dtype=Ax.dtype)
        s = self.sigma_y
        return log_normal_interval((l - Ax) / s, (u - Ax) / s).flatten(1).sum(1)
