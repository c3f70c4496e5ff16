"""VE, VP and flow as one family: x_t = s(t) * (x0 + sigma(t) * z) (Karras et al. 2022, eq. 11).

Every process here is the variance-exploding state x = x0 + sigma z seen at another scale s:

* VE (Song & Ermon 2019; Song et al. 2021):  s = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t.
* VP (Ho et al. 2020; Song et al. 2021):     x_vp = sqrt(abar) x0 + sqrt(1 - abar) z, so
  s = sqrt(abar) = 1 / sqrt(1 + sigma^2), sigma^2 = (1 - abar) / abar, abar = 1 / (1 + sigma^2),
  and x_vp = x_ve / sqrt(1 + sigma^2).
* Rectified flow (Liu et al. 2023), Meng's convention t = 0 data, t = 1 noise:
  x_flow = a x0 + b z = a (x0 + (b / a) z) with a = 1 - t, b = t, so s = 1 - t, sigma = t / (1 - t),
  t = sigma / (1 + sigma) and x_flow = x_ve / (1 + sigma).  (The RectifiedFlow code runs its own
  time t' = 1 - t, noise at t' = 0.)

Each process is a small frozen dataclass with ``s(t)``, ``sigma(t)``, their inverse ``t_of_sigma``
and ``scale(sigma)`` = s as a function of sigma. Times and sigmas may be numbers (returned as
float64 0-d tensors) or tensors of any shape and device. The grid builders at the end make the
decreasing sigma schedules the samplers take (n noise levels, then an appended 0 by default).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._validate import check_int, check_positive, check_tensor

__all__ = ["VE", "VPLinear", "VPCosine", "DDPM", "Flow", "ve_sigmas", "karras_sigmas", "vp_sigmas",
           "flow_sigmas", "sigma_from_alpha_bar", "alpha_bar_from_sigma"]

_F64 = torch.float64


def _tensor(v, name: str) -> torch.Tensor:
    """A number or tensor as a floating tensor (integers become float64)."""
    if isinstance(v, torch.Tensor):
        return v if v.is_floating_point() else v.to(_F64)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return torch.tensor(float(v), dtype=_F64)
    raise TypeError(f"{name} must be a number or a torch.Tensor, got {type(v).__name__}")


def sigma_from_alpha_bar(alpha_bar) -> torch.Tensor:
    """VE noise level of a VP state: sigma = sqrt((1 - abar) / abar) (Kawar et al. 2022, App. B)."""
    a = _tensor(alpha_bar, "alpha_bar")
    return ((1 - a) / a).sqrt()


def alpha_bar_from_sigma(sigma) -> torch.Tensor:
    """VP signal level of a VE noise level: abar = 1 / (1 + sigma^2)."""
    return 1 / (1 + _tensor(sigma, "sigma") ** 2)


class _VPScale:
    """Shared by the VP processes: s = sqrt(abar) = 1 / sqrt(1 + sigma^2)."""

    def scale(self, sigma) -> torch.Tensor:
        return alpha_bar_from_sigma(sigma).sqrt()

    def s(self, t) -> torch.Tensor:
        return self.alpha_bar(t).sqrt()

    def sigma(self, t) -> torch.Tensor:
        return sigma_from_alpha_bar(self.alpha_bar(t))


@dataclass(frozen=True)
class VE:
    """Variance exploding: s = 1, sigma(t) = sigma_min (sigma_max/sigma_min)^t, t in [0, 1]
    (Song et al. 2021, eq. 31).

    >>> float(VE(0.01, 50.0).sigma(1.0))
    50.0
    """
    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def __post_init__(self):
        if check_positive(self.sigma_min, "sigma_min") >= check_positive(self.sigma_max, "sigma_max"):
            raise ValueError(f"sigma_min must be < sigma_max, got {self.sigma_min} >= {self.sigma_max}")

    def s(self, t) -> torch.Tensor:
        return torch.ones_like(_tensor(t, "t"))

    def scale(self, sigma) -> torch.Tensor:
        return torch.ones_like(_tensor(sigma, "sigma"))

    def sigma(self, t) -> torch.Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** _tensor(t, "t")

    def t_of_sigma(self, sigma) -> torch.Tensor:
        ratio = math.log(self.sigma_max / self.sigma_min)
        return (_tensor(sigma, "sigma") / self.sigma_min).log() / ratio


@dataclass(frozen=True)
class VPLinear(_VPScale):
    """VP SDE with beta(t) = beta_min + t (beta_max - beta_min), t in [0, 1] (Song et al. 2021, eq. 33).

    abar(t) = exp(-beta_min t - (beta_max - beta_min) t^2 / 2).

    >>> p = VPLinear()
    >>> round(float(p.t_of_sigma(p.sigma(0.3))), 12)
    0.3
    """
    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self):
        if check_positive(self.beta_min, "beta_min") > check_positive(self.beta_max, "beta_max"):
            raise ValueError(f"beta_min must be <= beta_max, got {self.beta_min} > {self.beta_max}")

    def beta(self, t) -> torch.Tensor:
        return self.beta_min + _tensor(t, "t") * (self.beta_max - self.beta_min)

    def _integral(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t ** 2

    def alpha_bar(self, t) -> torch.Tensor:
        return torch.exp(-self._integral(_tensor(t, "t")))

    def sigma(self, t) -> torch.Tensor:
        return torch.expm1(self._integral(_tensor(t, "t"))).sqrt()   # exact at small t

    def t_of_sigma(self, sigma) -> torch.Tensor:
        B = torch.log1p(_tensor(sigma, "sigma") ** 2)                 # integral of beta up to t
        slope = self.beta_max - self.beta_min
        if slope == 0:
            return B / self.beta_min
        return (B * 2 * slope + self.beta_min ** 2).sqrt().sub(self.beta_min) / slope


@dataclass(frozen=True)
class VPCosine(_VPScale):
    """Cosine schedule abar(t) = f(t)/f(0), f(t) = cos^2(pi/2 (t + offset)/(1 + offset)), t in [0, 1)
    (Nichol & Dhariwal 2021, eq. 17, in continuous time; abar(1) = 0, so sigma(1) is infinite).

    >>> p = VPCosine()
    >>> round(float(p.t_of_sigma(p.sigma(0.5))), 12)
    0.5
    """
    offset: float = 0.008

    def __post_init__(self):
        check_positive(self.offset, "offset")

    def _f(self, t):
        return torch.cos(0.5 * math.pi * (t + self.offset) / (1 + self.offset)) ** 2

    def alpha_bar(self, t) -> torch.Tensor:
        t = _tensor(t, "t")
        return self._f(t) / self._f(torch.zeros_like(t))

    def beta(self, t) -> torch.Tensor:
        """beta(t) = -d/dt log abar(t) = pi/(1 + offset) tan(pi/2 (t + offset)/(1 + offset))."""
        u = 0.5 * math.pi * (_tensor(t, "t") + self.offset) / (1 + self.offset)
        return math.pi / (1 + self.offset) * torch.tan(u)

    def t_of_sigma(self, sigma) -> torch.Tensor:
        abar = alpha_bar_from_sigma(sigma)
        f0 = math.cos(0.5 * math.pi * self.offset / (1 + self.offset)) ** 2
        return torch.arccos((abar * f0).sqrt()) * 2 * (1 + self.offset) / math.pi - self.offset


@dataclass(frozen=True, eq=False)
class DDPM(_VPScale):
    """Discrete VP chain: alpha_bars[t] = prod_{i <= t} (1 - betas[i]), t = 0 .. T-1
    (Ho et al. 2020, eq. 4).

    The time is the 0-based step index of guided-diffusion (the state at index t has abar[t]);
    fractional t interpolates log sigma linearly, so ``t_of_sigma`` is its exact inverse inside
    [sigma(0), sigma(T-1)] and clamps outside.

    >>> p = DDPM.linear()
    >>> p.T, round(float(p.betas[-1]), 6)
    (1000, 0.02)
    """
    alpha_bars: torch.Tensor

    def __post_init__(self):
        a = check_tensor(self.alpha_bars, "alpha_bars", ndim=1)
        bad = bool((a <= 0).any()) or bool((a > 1).any()) or bool((a[1:] >= a[:-1]).any())
        if a.numel() < 2 or bad:
            raise ValueError("alpha_bars must be strictly decreasing, in (0, 1], of length >= 2")
        object.__setattr__(self, "alpha_bars", a.detach().to(device="cpu", dtype=_F64))

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> "DDPM":
        """abar = cumprod(1 - betas)."""
        check_tensor(betas, "betas", ndim=1)
        if bool((betas <= 0).any()) or bool((betas >= 1).any()):
            raise ValueError("betas must lie in (0, 1)")
        return cls(torch.cumprod(1 - betas.to(_F64), 0))

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "DDPM":
        """Ho et al.'s linear betas, rescaled by 1000/T as in guided-diffusion (the same at T = 1000)."""
        check_int(T, "T", 2)
        scale = 1000 / T
        return cls.from_betas(torch.linspace(scale * beta_start, scale * beta_end, T, dtype=_F64))

    @classmethod
    def cosine(cls, T: int = 1000, offset: float = 0.008, max_beta: float = 0.999) -> "DDPM":
        """Nichol & Dhariwal's cosine betas: 1 - abar(t+1)/abar(t) on t/T, clipped at max_beta."""
        check_int(T, "T", 2)
        abar = VPCosine(offset).alpha_bar(torch.arange(T + 1, dtype=_F64) / T)
        return cls.from_betas((1 - abar[1:] / abar[:-1]).clamp(max=max_beta))

    @property
    def T(self) -> int:
        return self.alpha_bars.numel()

    @property
    def betas(self) -> torch.Tensor:
        a = self.alpha_bars
        return 1 - a / torch.cat([a.new_ones(1), a[:-1]])

    def alpha_bar(self, t) -> torch.Tensor:
        return alpha_bar_from_sigma(self.sigma(t))

    def sigma(self, t) -> torch.Tensor:
        t = _tensor(t, "t")
        log_sig = sigma_from_alpha_bar(self.alpha_bars).log()
        steps = torch.arange(self.T, dtype=_F64)
        return _interp(t, steps, log_sig).exp()

    def t_of_sigma(self, sigma) -> torch.Tensor:
        sigma = _tensor(sigma, "sigma")
        log_sig = sigma_from_alpha_bar(self.alpha_bars).log()
        return _interp(sigma.log(), log_sig, torch.arange(self.T, dtype=_F64))


@dataclass(frozen=True)
class Flow:
    """Rectified flow x_t = (1 - t) x0 + t z, t = 0 data, t = 1 noise (Liu et al., ICLR 2023, time reversed).

    >>> float(Flow().t_of_sigma(Flow().sigma(0.25)))
    0.25
    """

    def a(self, t) -> torch.Tensor:
        return 1 - _tensor(t, "t")

    def b(self, t) -> torch.Tensor:
        return _tensor(t, "t").clone()

    def s(self, t) -> torch.Tensor:
        return self.a(t)

    def sigma(self, t) -> torch.Tensor:
        t = _tensor(t, "t")
        return t / (1 - t)

    def scale(self, sigma) -> torch.Tensor:
        return 1 / (1 + _tensor(sigma, "sigma"))

    def t_of_sigma(self, sigma) -> torch.Tensor:
        sigma = _tensor(sigma, "sigma")
        return sigma / (1 + sigma)


def _interp(x, xp, fp):
    """Piecewise-linear interpolation of (xp, fp) at x (xp increasing), clamped at the ends."""
    xp, fp = xp.to(x.device), fp.to(x.device)
    xc = x.to(_F64).clamp(float(xp[0]), float(xp[-1]))
    i = torch.searchsorted(xp, xc.reshape(-1).contiguous(), right=True).clamp(1, xp.numel() - 1)
    i = i.reshape(xc.shape)
    w = (xc - xp[i - 1]) / (xp[i] - xp[i - 1])
    return (fp[i - 1] + w * (fp[i] - fp[i - 1])).to(x.dtype)


def _finish(sigmas, append_zero, dtype, device):
    if append_zero:
        sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    return sigmas.to(dtype=dtype, device=device)


def ve_sigmas(n: int, sigma_min: float = 0.01, sigma_max: float = 50.0, *, append_zero: bool = True,
              dtype=_F64, device=None) -> torch.Tensor:
    """n geometric levels sigma_max -> sigma_min (NCSN ladder, Song & Ermon 2019), then 0.

    >>> ve_sigmas(3, 0.1, 10.0)
    tensor([10.0000,  1.0000,  0.1000,  0.0000], dtype=torch.float64)
    """
    check_int(n, "n")
    t = torch.linspace(1, 0, n, dtype=_F64) if n > 1 else torch.ones(1, dtype=_F64)
    return _finish(VE(sigma_min, sigma_max).sigma(t), append_zero, dtype, device)


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0, *,
                  append_zero: bool = True, dtype=_F64, device=None) -> torch.Tensor:
    """(sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i < n, then 0
    (Karras et al. 2022, eq. 5).

    >>> karras_sigmas(2, 0.002, 80.0, append_zero=False)
    tensor([8.0000e+01, 2.0000e-03], dtype=torch.float64)
    """
    check_int(n, "n")
    VE(sigma_min, sigma_max)
    lo, hi = sigma_min ** (1 / check_positive(rho, "rho")), sigma_max ** (1 / rho)
    ramp = torch.linspace(0, 1, n, dtype=_F64) if n > 1 else torch.zeros(1, dtype=_F64)
    return _finish((hi + ramp * (lo - hi)) ** rho, append_zero, dtype, device)


def vp_sigmas(n: int, process: DDPM | None = None, *, append_zero: bool = True, dtype=_F64,
              device=None) -> torch.Tensor:
    """sigma = sqrt((1 - abar) / abar) at n steps evenly spaced from T-1 down to 0, then 0 (DDIM's uniform skip, Song, Meng & Ermon 2021).

    ``process`` defaults to ``DDPM.linear()``; the chosen steps are ``process.t_of_sigma(sigmas)``.
    """
    check_int(n, "n")
    process = DDPM.linear() if process is None else process
    if n > process.T:
        raise ValueError(f"n must be <= T = {process.T}, got {n}")
    steps = torch.linspace(process.T - 1, 0, n, dtype=_F64).round().long()
    return _finish(sigma_from_alpha_bar(process.alpha_bars[steps]), append_zero, dtype, device)


def flow_sigmas(n: int, eps: float = 1e-3, *, append_zero: bool = True, dtype=_F64,
                device=None) -> torch.Tensor:
    """sigma = t / (1 - t) on the grid t_i = (1 - eps)(1 - i/n), i < n, then 0 (t = 0, the data).

    eps = 1e-3 as in the official RectifiedFlow Euler sampler (Liu et al., ICLR 2023).
    """
    check_int(n, "n")
    if not 0 < check_positive(eps, "eps") < 1:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    t = (1 - eps) * (1 - torch.arange(n, dtype=_F64) / n)
    return _finish(Flow().sigma(t), append_zero, dtype, device)
