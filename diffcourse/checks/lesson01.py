"""Checks for lesson 01 (Tweedie and Noise2Score): Poisson and Gamma Tweedie, the SURE loss.

Conventions (as in :mod:`diffcourse.prior.tweedie` and :mod:`diffcourse.prior.losses`): scaled Poisson
noise ``y = zeta Poisson(x / zeta)`` with ``score = d/dy log p(y)`` of the observed ``y``; Gamma noise
``y | x ~ Gamma(k, rate k/x)`` with ``T(y) = [log y, y]``; SURE with the ``- d sigma^2`` constant, so
that it is an unbiased estimate of the per-image MSE (Stein 1981).
"""
from __future__ import annotations

import math

import torch

from ..prior import losses, tweedie
from ._core import close, diagnose, exercise

__all__ = ["check_poisson_tweedie", "check_gamma_tweedie", "check_sure"]

F64 = torch.float64
_TOL = {"rtol": 1e-8, "atol": 1e-10}   # float64 answers: rounding slack only


def _score_of(log_p, y: torch.Tensor) -> torch.Tensor:
    y = y.clone().requires_grad_(True)
    return torch.autograd.grad(log_p(y).sum(), y)[0]


# ---------------------------------------------------------------- exercise 1: Poisson Tweedie
def _poisson(y, score, zeta):
    return tweedie.poisson(y, score, zeta)


def _no_half(y, score, zeta):
    return y * torch.exp(zeta * score)


def _half_not_scaled(y, score, zeta):
    return (y + 0.5) * torch.exp(zeta * score)


def _score_not_scaled(y, score, zeta):
    return (y + 0.5 * zeta) * torch.exp(score)


def _gaussian_form(y, score, zeta):
    return y + zeta * score


_POISSON_MISTAKES = {
    _no_half: "the counts enter as (c + 1/2): exp(-psi(c + 1)) ~ 1 / (c + 1/2), so add zeta / 2 to y",
    _half_not_scaled: "with y = zeta c, the half count is zeta / 2 in the units of y, not 1/2",
    _score_not_scaled: "the score of the counts c = y / zeta is zeta * d/dy log p(y): use exp(zeta * score)",
    _gaussian_form: "that is the Gaussian (additive) Tweedie; Poisson noise has eta = log x, so exp(score)",
}


@exercise(_poisson, *_POISSON_MISTAKES)
def check_poisson_tweedie(fn):
    """fn(y, score, zeta) = (y + zeta/2) exp(zeta score) for y = zeta Poisson(x/zeta), Gamma(a, b) prior."""
    for a, b, zeta in [(3.0, 2.0, 1.0), (4.0, 3.0, 0.05), (2.0, 1.0, 0.2)]:
        counts = torch.arange(0.0, 30.0, 3.0, dtype=F64).reshape(2, 5)
        # x / zeta ~ Gamma(a, rate b zeta): the counts are negative binomial (continuous in c)
        log_p = lambda y: (torch.lgamma(a + y / zeta) - torch.lgamma(y / zeta + 1)
                           - (y / zeta) * math.log(1 + b * zeta) - math.log(zeta))
        y = zeta * counts
        score = _score_of(log_p, y)
        out = fn(y.clone(), score.clone(), zeta)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == y.shape, f"x_hat must have the shape of y {tuple(y.shape)}, got {tuple(out.shape)}"
        expected = _poisson(y, score, zeta)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"zeta = {zeta}: x_hat {[round(v, 4) for v in out.flatten()[:4].tolist()]}... "
                                 f"should be {[round(v, 4) for v in expected.flatten()[:4].tolist()]}...; "
                                 + diagnose(out, expected, (y, score, zeta), _POISSON_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 2: Gamma Tweedie
def _gamma(y, score, k):
    return tweedie.gamma(y, score, k)


def _plus_sign(y, score, k):  # a sign slip in the denominator
    return k * y / ((k - 1) + y * score)


def _misprinted_statistic(y, score, k):  # Tweedie with the misprinted T(y) = [log y, -y]
    return -k * y / ((k - 1) - y * score)


def _no_k(y, score, k):
    return y / ((k - 1) - y * score)


def _alpha_not_minus_one(y, score, k):
    return k * y / (k - y * score)


_GAMMA_MISTAKES = {
    _plus_sign: "the denominator is (k - 1) - y * score: the score enters with a minus sign",
    _misprinted_statistic: "negative intensities: that is Tweedie with the misprinted statistic T(y) = [log y, -y] "
                           "(a misprint that circulates in talks); the estimator needs T(y) = [log y, y]",
    _no_k: "the numerator is beta * y = k * y",
    _alpha_not_minus_one: "the first natural parameter is alpha - 1 = k - 1 (from y^(alpha - 1))",
}


@exercise(_gamma, *_GAMMA_MISTAKES)
def check_gamma_tweedie(fn):
    """fn(y, score, k) = 1 / E[1/x | y] for y | x ~ Gamma(k, rate k/x), checked on 1/x ~ Gamma(a, b)."""
    for a, b, k in [(3.0, 2.0, 6.0), (1.5, 0.5, 50.0)]:
        y = torch.tensor([[0.2, 0.7, 1.5], [3.0, 0.05, 2.2]], dtype=F64)
        score = (k - 1) / y - k * (a + k) / (b + k * y)                  # d/dy log p(y), p(y) ~ y^(k-1)/(b+ky)^(a+k)
        out = fn(y.clone(), score.clone(), k)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == y.shape, f"x_hat must have the shape of y {tuple(y.shape)}, got {tuple(out.shape)}"
        expected = (b + k * y) / (a + k)                                  # 1 / E[1/x | y], conjugate prior
        if not close(out, expected, **_TOL):
            raise AssertionError(f"k = {k}: for a Gamma prior on 1/x the estimate must be 1/E[1/x | y] = "
                                 f"{[round(v, 4) for v in expected[0].tolist()]}, got "
                                 f"{[round(v, 4) for v in out[0].tolist()]}; "
                                 + diagnose(out, expected, (y, score, k), _GAMMA_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 3: SURE
def _sure(F, y, sigma, b, eps):
    return losses.sure_loss(F, y, sigma, eps=eps, b=b[None])


def _per_sum(t):
    return t.flatten(1).sum(1)


def _no_constant(F, y, sigma, b, eps):  # the usual training form: a constant off the risk
    return _sure(F, y, sigma, b, eps) + y[0].numel() * sigma ** 2


def _sigma_not_squared(F, y, sigma, b, eps):
    div = _per_sum(b * (F(y + eps * b) - F(y))) / eps
    return _per_sum((y - F(y)) ** 2) - y[0].numel() * sigma ** 2 + 2 * sigma * div


def _no_two(F, y, sigma, b, eps):
    div = _per_sum(b * (F(y + eps * b) - F(y))) / eps
    return _per_sum((y - F(y)) ** 2) - y[0].numel() * sigma ** 2 + sigma ** 2 * div


def _sure_flip(F, y, sigma, b, eps):
    div = _per_sum(b * (F(y) - F(y + eps * b))) / eps
    return _per_sum((y - F(y)) ** 2) - y[0].numel() * sigma ** 2 + 2 * sigma ** 2 * div


def _batch_mean(F, y, sigma, b, eps):
    return _sure(F, y, sigma, b, eps).mean()


_SURE_MISTAKES = {
    _no_constant: "subtract d * sigma^2 (d = values per image): without it SURE is the MSE plus a constant, "
                  "not an unbiased estimate of it",
    _sigma_not_squared: "the divergence term is 2 sigma^2 div F, with the noise variance sigma^2",
    _no_two: "the divergence term carries a factor 2: 2 sigma^2 div F",
    _sure_flip: "the divergence is b . (F(y + eps b) - F(y)) / eps (a forward difference along b)",
    _batch_mean: "return one value per image, shape (B,), not the batch mean",
}


@exercise(_sure, *_SURE_MISTAKES)
def check_sure(fn):
    """fn(F, y, sigma, b, eps) = ||y - F(y)||^2 - d sigma^2 + 2 sigma^2 b.(F(y + eps b) - F(y))/eps, per image."""
    g = torch.Generator().manual_seed(0)
    filters = [lambda t: torch.tanh(2 * t) / 2, lambda t: torch.sign(t) * torch.clamp(t.abs() - 0.3, min=0)]
    for F, shape, sigma in zip(filters, [(3, 1, 4, 4), (2, 6)], [0.3, 0.7]):
        y = torch.randn(shape, generator=g, dtype=F64)
        b = torch.randn(shape, generator=g, dtype=F64)
        out = fn(F, y.clone(), sigma, b.clone(), 1e-4)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        expected = _sure(F, y, sigma, b, 1e-4)
        assert out.shape == expected.shape, (f"return one value per image, shape {tuple(expected.shape)}, "
                                             f"got {tuple(out.shape)}")
        if not close(out, expected, **_TOL):
            raise AssertionError(f"y of shape {shape}, sigma = {sigma}: SURE should be "
                                 f"{[round(v, 4) for v in expected.tolist()]}, got "
                                 f"{[round(v, 4) for v in out.tolist()]}; "
                                 + diagnose(out, expected, (F, y, sigma, b, 1e-4), _SURE_MISTAKES, **_TOL))
