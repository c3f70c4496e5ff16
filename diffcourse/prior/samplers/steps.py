"""One step of each sampler as a pure function of (x, x0_hat, sigma, sigma_next, noise).

VE coordinates, x = x0 + σ z; ``x0_hat`` = D(x, σ); σ and σ' (``sigma_next``) are numbers or
tensors broadcastable against x; ``noise`` is a standard normal draw shaped like x. A posterior
solver is the same step with a likelihood term added (to x0_hat, to the score, or after the step),
so none of them copies a sampler loop.

>>> import torch
>>> x, x0 = torch.full((1,), 2.0), torch.zeros(1)
>>> ddim_step(x, x0, 2.0, 1.0)                 # x̂0 + σ'/σ (x - x̂0)
tensor([1.])
>>> ddpm_step(x, x0, 2.0, 0.0, torch.ones(1))  # a step to σ' = 0 lands on x̂0
tensor([0.])
"""
from __future__ import annotations

import math

import torch

__all__ = ["ddpm_step", "ddim_step", "ddim_ve_step", "euler_maruyama_step", "reverse_diffusion_step",
           "langevin_step", "sbim_step"]


def _sqrt(v):
    return v.sqrt() if isinstance(v, torch.Tensor) else math.sqrt(v)


def ddpm_step(x, x0_hat, sigma, sigma_next, noise):
    """DDPM ancestral step (Ho et al. 2020, Eq. 6–7, σ_t² = β̃_t) in VE coordinates.

    The VP posterior q(x_{t-1} | x_t, x0) with ᾱ = 1/(1 + σ²), rescaled by 1/√ᾱ, is the VE bridge
    x' = r x + (1 - r) x̂0 + σ' √(1 - r) z,  r = σ'²/σ².
    """
    r = (sigma_next / sigma) ** 2
    return r * x + (1 - r) * x0_hat + sigma_next * _sqrt(1 - r) * noise


def ddim_step(x, x0_hat, sigma, sigma_next, noise=None, *, eta: float = 0.0):
    """DDIM step (Song, Meng & Ermon 2021, Eq. 12 and 16) in VE coordinates, 0 <= η <= 1.

    x' = x̂0 + √(σ'² - c²) ε̂ + c z,  c = η σ' √(1 - σ'²/σ²),  ε̂ = (x - x̂0)/σ. η = 0 needs no noise.
    """
    c = eta * sigma_next * _sqrt(1 - (sigma_next / sigma) ** 2)
    c2 = sigma_next ** 2 - c ** 2
    c2 = c2.clamp_min(0.0) if isinstance(c2, torch.Tensor) else max(c2, 0.0)
    out = x0_hat + _sqrt(c2) / sigma * (x - x0_hat)
    return out + c * noise if eta > 0 else out


def ddim_ve_step(x, x0_hat, sigma, sigma_next, noise=None):
    """Exact DDIM (η = 0) in VE form, x' = x + σ(σ - σ') s (Euler on the PF-ODE, Karras et al. 2022)."""
    return x + sigma * (sigma - sigma_next) * (x0_hat - x) / sigma ** 2


def sbim_step(x, x0_hat, sigma, sigma_next, noise=None):
    """SBIM as published (Dimos 2022): x' = x + [σ/√(1 + σ²)](σ - σ') s — DDIM's step times √ᾱ."""
    return x + sigma / _sqrt(1 + sigma ** 2) * (sigma - sigma_next) * (x0_hat - x) / sigma ** 2


def euler_maruyama_step(x, x0_hat, sigma, sigma_next, noise):
    """Reverse VE SDE, Euler–Maruyama in σ-time (Song et al. 2021, Eq. 6); a step to 0 returns x̂0.

    x' = x + 2σ(σ - σ') s + √(2σ(σ - σ')) z  (g² |dσ| = 2σ |dσ| for σ² as the variance).
    """
    if _is_zero(sigma_next):
        return x0_hat
    dt = 2 * sigma * (sigma - sigma_next)
    return x + (dt / sigma ** 2) * (x0_hat - x) + _sqrt(dt) * noise


def reverse_diffusion_step(x, x0_hat, sigma, sigma_next, noise):
    """Reverse-diffusion predictor (Song et al. 2021, Eq. 46, VE); a step to 0 returns x̂0.

    x' = x + (σ² - σ'²) s + √(σ² - σ'²) z.
    """
    if _is_zero(sigma_next):
        return x0_hat
    dvar = sigma ** 2 - sigma_next ** 2
    return x + (dvar / sigma ** 2) * (x0_hat - x) + _sqrt(dvar) * noise


def langevin_step(x, x0_hat, sigma, noise, *, alpha):
    """Langevin step, paper form (Song & Ermon 2019, Alg. 1): x' = x + (α/2) s(x, σ) + √α z.

    The code form x + δ s + √(2δ) z is α = 2δ.
    """
    return x + (alpha / 2) * (x0_hat - x) / sigma ** 2 + _sqrt(alpha) * noise


def _is_zero(v) -> bool:
    return bool((v == 0).all()) if isinstance(v, torch.Tensor) else v == 0
