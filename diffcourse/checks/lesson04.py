"""Checks for lesson 04 (diffusion samplers): a DDIM step, the VE -> VP conversion, an ε-model from D.

Conventions: VE state x = x0 + σ z; VP state x_vp = √ᾱ x0 + √(1-ᾱ) z = √ᾱ x with ᾱ = 1/(1+σ²);
DDIM (Song, Meng & Ermon, ICLR 2021, Eq. 12) in VP coordinates with σ_η² = η² β̃_t, stepping from
the level ᾱ_t to a less noisy level ᾱ_t′ (ᾱ_t′ > ᾱ_t), written t′ as in the exercise.
"""
from __future__ import annotations

import math

import torch

from ..prior.processes import alpha_bar_from_sigma
from ..prior.toy import GaussianMixture
from ._core import close, diagnose, exercise

__all__ = ["check_ddim_step", "check_ve_to_vp", "check_eps_from_denoiser"]

F64 = torch.float64
_TOL = {"rtol": 1e-9, "atol": 1e-9}           # float64 answers: rounding slack only
_ABAR_TOL = {"rtol": 1e-12, "atol": 0.0}      # alpha_bar is one number: exact up to rounding


def _mixture() -> GaussianMixture:
    g = torch.Generator().manual_seed(4)
    return GaussianMixture(torch.tensor([0.6, 0.4], dtype=F64), torch.randn(2, 3, generator=g, dtype=F64),
                           torch.stack([0.3 * torch.eye(3, dtype=F64), 0.6 * torch.eye(3, dtype=F64)]))


# ---------------------------------------------------------------- exercise 1: one DDIM step
def _sigma_eta(eta, a, a_next):
    return eta * math.sqrt((1 - a_next) / (1 - a)) * math.sqrt(1 - a / a_next)


def _ddim_step(x_t, eps_hat, alpha_bar, alpha_bar_next, eta, z):
    x0_hat = (x_t - math.sqrt(1 - alpha_bar) * eps_hat) / math.sqrt(alpha_bar)
    s = _sigma_eta(eta, alpha_bar, alpha_bar_next)
    return math.sqrt(alpha_bar_next) * x0_hat + math.sqrt(1 - alpha_bar_next - s ** 2) * eps_hat + s * z


def _eta_not_squared(x_t, eps_hat, a, a_next, eta, z):  # σ_η² = η β̃: η left unsquared
    x0_hat = (x_t - math.sqrt(1 - a) * eps_hat) / math.sqrt(a)
    s = math.sqrt(eta) * _sigma_eta(1.0, a, a_next)
    return math.sqrt(a_next) * x0_hat + math.sqrt(1 - a_next - s ** 2) * eps_hat + s * z


def _direction_without_correction(x_t, eps_hat, a, a_next, eta, z):  # √(1-ᾱ_t′) ε̂: too much noise
    x0_hat = (x_t - math.sqrt(1 - a) * eps_hat) / math.sqrt(a)
    return math.sqrt(a_next) * x0_hat + math.sqrt(1 - a_next) * eps_hat + _sigma_eta(eta, a, a_next) * z


def _x0_without_sqrt(x_t, eps_hat, a, a_next, eta, z):  # x̂0 = (x_t - (1-ᾱ) ε̂)/√ᾱ
    x0_hat = (x_t - (1 - a) * eps_hat) / math.sqrt(a)
    s = _sigma_eta(eta, a, a_next)
    return math.sqrt(a_next) * x0_hat + math.sqrt(1 - a_next - s ** 2) * eps_hat + s * z


def _next_scale_on_x0_missing(x_t, eps_hat, a, a_next, eta, z):  # x̂0 not rescaled by √ᾱ_t′
    x0_hat = (x_t - math.sqrt(1 - a) * eps_hat) / math.sqrt(a)
    s = _sigma_eta(eta, a, a_next)
    return x0_hat + math.sqrt(1 - a_next - s ** 2) * eps_hat + s * z


_DDIM_MISTAKES = {
    _eta_not_squared: "the noise variance is σ_η² = η² β̃_t, not η β̃_t (they agree only at η = 0 and 1)",
    _direction_without_correction: "the direction term is √(1 - ᾱ_t′ - σ_η²) ε̂: the fresh noise σ_η z takes "
                                   "its share of the variance 1 - ᾱ_t′",
    _x0_without_sqrt: "x̂0 = (x_t - √(1 - ᾱ_t) ε̂)/√ᾱ_t: the noise in x_t has standard deviation √(1 - ᾱ_t)",
    _next_scale_on_x0_missing: "the predicted x̂0 enters the next state scaled by √ᾱ_t′",
}


@exercise(_ddim_step, *_DDIM_MISTAKES)
def check_ddim_step(fn):
    """fn(x_t, eps_hat, alpha_bar, alpha_bar_next, eta, z) = DDIM Eq. 12 with σ_η² = η² β̃_t."""
    g = torch.Generator().manual_seed(0)
    for shape, a, a_next, eta in [((4, 3), 0.3, 0.6, 0.5), ((2, 1, 4, 4), 0.05, 0.2, 0.0),
                                  ((3, 2), 0.5, 0.9, 1.0), ((3, 2), 0.7, 0.98, 0.3)]:
        x_t, eps_hat, z = (torch.randn(shape, generator=g, dtype=F64) for _ in range(3))
        args = (x_t, eps_hat, a, a_next, eta, z)
        out = fn(*(v.clone() if isinstance(v, torch.Tensor) else v for v in args))
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == x_t.shape, f"the new state must have the shape of x_t {shape}, got {tuple(out.shape)}"
        expected = _ddim_step(*args)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"ᾱ_t = {a}, ᾱ_t′ = {a_next}, η = {eta}: "
                                 + diagnose(out, expected, args, _DDIM_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 2: VE -> VP
def _ve_to_vp(x, sigma):
    alpha_bar = alpha_bar_from_sigma(sigma).item()
    return math.sqrt(alpha_bar) * x, alpha_bar


def _abar_not_squared(x, sigma):
    return x / math.sqrt(1 + sigma), 1 / (1 + sigma)


def _scaled_by_abar(x, sigma):
    return x / (1 + sigma ** 2), 1 / (1 + sigma ** 2)


def _inverted(x, sigma):
    return x * math.sqrt(1 + sigma ** 2), 1 / (1 + sigma ** 2)


def _abar_is_one_minus_var(x, sigma):
    return x * math.sqrt(1 / (1 + sigma ** 2)), 1 - sigma ** 2 / (1 + sigma)


_VP_MISTAKES = {
    _abar_not_squared: "ᾱ = 1/(1 + σ²): σ is a standard deviation, σ² the variance",
    _scaled_by_abar: "the VP state is √ᾱ x, not ᾱ x (x_vp = √ᾱ x0 + √(1-ᾱ) z)",
    _inverted: "x_vp = x_ve / √(1 + σ²) is *smaller* than x_ve: VP keeps the variance near 1",
}


def _pair_close(out, expected) -> bool:
    return close(out[1], expected[1], **_ABAR_TOL) and close(out[0], expected[0], **_TOL)


@exercise(_ve_to_vp, *_VP_MISTAKES, _abar_is_one_minus_var)
def check_ve_to_vp(fn):
    """fn(x, sigma) = (x / √(1 + σ²), 1 / (1 + σ²)) for a VE state x at noise level σ (a number)."""
    g = torch.Generator().manual_seed(1)
    for shape, sigma in [((5, 2), 0.4), ((2, 1, 3, 3), 3.0), ((4, 3), 80.0)]:
        x = torch.randn(shape, generator=g, dtype=F64) * (1 + sigma)
        out = fn(x.clone(), sigma)
        assert isinstance(out, (tuple, list)) and len(out) == 2, "return a pair (x_vp, alpha_bar)"
        assert isinstance(out[0], torch.Tensor) and out[0].shape == x.shape, \
            f"x_vp must be a tensor of the shape of x {shape}"
        expected = _ve_to_vp(x, sigma)
        if not _pair_close(out, expected):
            raise AssertionError(f"σ = {sigma}: expected ᾱ = {expected[1]:.6g} and x_vp = x · "
                                 f"{math.sqrt(expected[1]):.6g}, got ᾱ = {float(out[1]):.6g}; "
                                 + diagnose(tuple(out), expected, (x, sigma), _VP_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 3: ε-model from D
def _eps_from_denoiser(D, x_vp, alpha_bar):
    sigma = math.sqrt((1 - alpha_bar) / alpha_bar)
    x = x_vp / math.sqrt(alpha_bar)
    return (x - D(x, sigma)) / sigma


def _not_rescaled(D, x_vp, a):  # the VE denoiser fed with the VP state
    sigma = math.sqrt((1 - a) / a)
    return (x_vp - D(x_vp, sigma)) / sigma


def _sigma_squared(D, x_vp, a):  # σ² = (1-ᾱ)/ᾱ used as σ
    sigma = (1 - a) / a
    x = x_vp / math.sqrt(a)
    return (x - D(x, sigma)) / sigma


def _sign(D, x_vp, a):
    sigma = math.sqrt((1 - a) / a)
    x = x_vp / math.sqrt(a)
    return (D(x, sigma) - x) / sigma


def _mixed_scales(D, x_vp, a):  # D(x) is a VE quantity: it needs the factor √ᾱ in VP units
    sigma = math.sqrt((1 - a) / a)
    return (x_vp - D(x_vp / math.sqrt(a), sigma)) / math.sqrt(1 - a)


_EPS_MISTAKES = {
    _not_rescaled: "D is a VE denoiser: feed it x = x_vp / √ᾱ, not the VP state",
    _sigma_squared: "σ = √((1 - ᾱ)/ᾱ); (1 - ᾱ)/ᾱ is σ²",
    _sign: "ε is the noise that was added: x = x0 + σ ε, so ε = (x - D(x, σ))/σ",
    _mixed_scales: "in VP units ε = (x_vp - √ᾱ D(x, σ))/√(1 - ᾱ): the clean estimate needs the factor √ᾱ",
}


@exercise(_eps_from_denoiser, *_EPS_MISTAKES)
def check_eps_from_denoiser(fn):
    """fn(D, x_vp, alpha_bar) = ε̂ = (x - D(x, σ))/σ with x = x_vp/√ᾱ, σ = √((1-ᾱ)/ᾱ)."""
    mix, g = _mixture(), torch.Generator().manual_seed(2)
    for n, alpha_bar in [(6, 0.3), (4, 0.9), (3, 0.02)]:
        x_vp = torch.randn(n, 3, generator=g, dtype=F64)
        out = fn(mix.denoiser, x_vp.clone(), alpha_bar)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == x_vp.shape, f"ε̂ has the shape of x_vp {tuple(x_vp.shape)}, got {tuple(out.shape)}"
        expected = _eps_from_denoiser(mix.denoiser, x_vp, alpha_bar)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"ᾱ = {alpha_bar}: "
                                 + diagnose(out, expected, (mix.denoiser, x_vp, alpha_bar), _EPS_MISTAKES, **_TOL))
