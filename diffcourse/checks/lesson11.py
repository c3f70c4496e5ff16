"""Checks for lesson 11 (quantized compressed sensing): QCS-SGM's score of a quantization bin, its 1-bit
form, and the moments of a truncated Gaussian that expectation propagation matches (QCS-SGM+).

Conventions: elementwise float64 tensors of one shape. A bin [l, u) (bounds may be ±inf) seen through
N(z, s²): P = Φ((u - z)/s) - Φ((l - z)/s).
QCS-SGM's g (Meng & Kabashima, ICLR 2023, Eq. 11): g = ∂/∂z log P = [φ((l - z)/s) - φ((u - z)/s)] / (s P).
1-bit (Eq. 12): y ∈ {-1, +1}, bins [0, ∞) / (-∞, 0): g = y φ(z/s) / (s Φ(y z/s)).
Tilted moments (QCS-SGM+, Meng & Kabashima, AAAI 2024; Minka, UAI 2001): the mean and variance of
N(μ, v) truncated to [l, u).
"""
from __future__ import annotations

import math

import torch

from ..posterior.guidance_quantized import qcs_multibit_g, qcs_onebit_g, truncated_normal_moments
from ._core import close, diagnose, exercise

__all__ = ["check_bin_score", "check_one_bit_score", "check_tilted_moments"]

F64 = torch.float64
INF = math.inf
_TOL = {"rtol": 1e-6, "atol": 1e-9}


def _t(*v) -> torch.Tensor:
    return torch.tensor(v, dtype=F64)


def _pdf(t):
    return torch.exp(-t ** 2 / 2) / math.sqrt(2 * math.pi)


def _not_finite(out, expected) -> str | None:
    """A message when the answer is NaN/±inf or 0 where the expected score is finite and not small."""
    if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
        return None
    bad = ~torch.isfinite(out.detach().to(F64))
    if bool(bad.any()):
        return (f"{int(bad.sum())} entries are NaN or infinite, far in a tail where the probability of the bin "
                f"underflows (Φ(b) - Φ(a) = 0 in float64). Work in log space: log(Φ(b) - Φ(a)) with "
                f"diffcourse.physics.noise.log_normal_interval, then exp(log φ - log(Φ(b) - Φ(a)))")
    return None


# ---------------------------------------------------------------- exercise 1: the score of a bin
def _bin_score(z, l, u, s):
    return qcs_multibit_g(z, l, u, s)


def _bin_score_naive(z, l, u, s):                                # correct algebra, linear space: NaN in tails
    a, b = (l - z) / s, (u - z) / s
    return (_pdf(a) - _pdf(b)) / (s * (torch.special.ndtr(b) - torch.special.ndtr(a)))


def _bin_score_sign(z, l, u, s):
    return -_bin_score(z, l, u, s)


def _bin_score_no_s(z, l, u, s):                                 # d/d(z/s) instead of d/dz
    return s * _bin_score(z, l, u, s)


def _bin_score_s2(z, l, u, s):
    return _bin_score(z, l, u, s) / s


def _bin_score_unscaled_bounds(z, l, u, s):                      # bounds not divided by s
    a, b = l - z, u - z
    return (_pdf(a) - _pdf(b)) / (s * (torch.special.ndtr(b) - torch.special.ndtr(a)))


def _bin_score_unnormalised_pdf(z, l, u, s):                     # exp(-t²/2) over ΔΦ: a factor √(2π)
    return math.sqrt(2 * math.pi) * _bin_score(z, l, u, s)


def _bin_score_gaussian(z, l, u, s):                              # the bin's centre as a Gaussian datum
    c = torch.where(torch.isfinite(l) & torch.isfinite(u), (l + u) / 2, torch.where(torch.isfinite(l), l, u))
    return (c - z) / s ** 2


_BIN_MISTAKES = {
    _bin_score_sign: "wrong sign: g = ∂/∂z log P points from z towards the bin, [φ(l̃) - φ(ũ)] / (s P) with "
                     "l̃ = (l - z)/s, ũ = (u - z)/s",
    _bin_score_no_s: "that is the derivative with respect to z/s; by the chain rule ∂/∂z brings a factor 1/s",
    _bin_score_s2: "one factor 1/s too many: g = [φ(l̃) - φ(ũ)] / (s P)",
    _bin_score_unscaled_bounds: "standardise the bounds: l̃ = (l - z)/s and ũ = (u - z)/s, not l - z and u - z",
    _bin_score_unnormalised_pdf: "√(2π) times too large: with the CDF Φ in the denominator use the normalised "
                                 "density φ(t) = exp(-t²/2)/√(2π) (or the unnormalised one on both sides, as the "
                                 "paper's integral of exp(-t²/2))",
    _bin_score_gaussian: "that treats the bin's centre as a Gaussian measurement, (c - z)/s²: the quantized "
                         "score is the mean of the noise that explains the bin, E[n | z + n ∈ [l, u)]/s²",
}

# moderate cases: z, l, u, s
_BIN_MODERATE = (_t(0.3, -1.0, 2.0, 0.0, 0.5, -0.7), _t(-0.2, -INF, 0.5, 0.0, 0.4, -0.75),
                 _t(0.7, -0.5, INF, 0.25, 0.6, -0.5), _t(0.4, 1.0, 0.8, 0.3, 0.05, 0.2))
# tails: a bin far from z (probability below 1e-300), a narrow far bin, a half-line seen from far away
_BIN_TAILS = (_t(-40.0, 0.0, 3.0, -12.0), _t(0.0, -INF, 30.0, 2.0), _t(INF, INF, 31.0, 2.5), _t(1.0, 0.5, 1.0, 0.1))


@exercise(_bin_score, _bin_score_naive, *_BIN_MISTAKES)
def check_bin_score(fn):
    """fn(z, l, u, s) = ∂/∂z log[Φ((u - z)/s) - Φ((l - z)/s)] elementwise, finite even far in the tails."""
    for name, args in (("moderate", _BIN_MODERATE), ("tail", _BIN_TAILS)):
        out = fn(*(a.clone() for a in args))
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        expected = _bin_score(*args)
        assert out.shape == expected.shape, f"g has the shape of z {tuple(expected.shape)}, got {tuple(out.shape)}"
        if close(out, expected, **_TOL):
            continue
        if name == "tail":
            raise AssertionError(_not_finite(out, expected) or
                                 "right for bins near z, wrong far in the tails (z = -40 below [0, ∞), the bin "
                                 f"[30, 31) seen from z = 3): expected {expected.tolist()}, got "
                                 f"{out.tolist()}. Compute the ratio in log space")
        raise AssertionError(_not_finite(out, expected) or diagnose(out, expected, args, _BIN_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 2: one bit
def _one_bit(z, y, s):
    return qcs_onebit_g(z, y, s)


def _one_bit_naive(z, y, s):
    return y * _pdf(z / s) / (s * torch.special.ndtr(y * z / s))


def _one_bit_no_y_inside(z, y, s):                               # Φ(z/s) for both signs
    return y * torch.exp(-z ** 2 / (2 * s ** 2) - 0.5 * math.log(2 * math.pi) - torch.special.log_ndtr(z / s)) / s


def _one_bit_no_y_outside(z, y, s):
    return _one_bit(z, y, s) * y


def _one_bit_no_s(z, y, s):
    return s * _one_bit(z, y, s)


def _one_bit_minus_inside(z, y, s):                              # Φ(-y z/s): the other bin's probability
    return y * torch.exp(-z ** 2 / (2 * s ** 2) - 0.5 * math.log(2 * math.pi) - torch.special.log_ndtr(-y * z / s)) / s


_ONE_BIT_MISTAKES = {
    _one_bit_no_y_inside: "the probability of the observed sign is Φ(y z/s): for y = -1 it is 1 - Φ(z/s) = Φ(-z/s), "
                          "so y belongs inside Φ too",
    _one_bit_no_y_outside: "the factor y in front is missing: for y = -1 the score pushes z down",
    _one_bit_no_s: "a factor 1/s is missing (the chain rule for z/s)",
    _one_bit_minus_inside: "that divides by Φ(-y z/s), the probability of the other sign: use Φ(y z/s)",
}

_ONE_BIT_MODERATE = (_t(0.3, -0.5, 1.2, 0.0, -2.0, 0.1), _t(1, 1, -1, -1, 1, -1), _t(0.5, 0.3, 1.0, 0.7, 1.5, 0.05))
_ONE_BIT_TAILS = (_t(-40.0, 40.0, -3.0, 300.0), _t(1, -1, 1, -1), _t(1.0, 1.0, 0.05, 2.0))


@exercise(_one_bit, _one_bit_naive, *_ONE_BIT_MISTAKES)
def check_one_bit_score(fn):
    """fn(z, y, s) = y φ(z/s) / (s Φ(y z/s)) elementwise, y ∈ {-1, +1}, finite far in the wrong tail."""
    for name, args in (("moderate", _ONE_BIT_MODERATE), ("tail", _ONE_BIT_TAILS)):
        out = fn(*(a.clone() for a in args))
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        expected = _one_bit(*args)
        assert out.shape == expected.shape, f"g has the shape of z {tuple(expected.shape)}, got {tuple(out.shape)}"
        if close(out, expected, **_TOL):
            continue
        if name == "tail":
            raise AssertionError(_not_finite(out, expected) or
                                 "right near the threshold, wrong far in the wrong tail (y = +1 at z = -40 s): "
                                 f"expected {expected.tolist()}, got {out.tolist()}. Use log Φ "
                                 "(torch.special.log_ndtr) and exp(log φ - log Φ)")
        raise AssertionError(_not_finite(out, expected) or
                             diagnose(out, expected, args, _ONE_BIT_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 3: tilted moments
def _tilted(mu, v, l, u):
    sd = v.sqrt()
    m, w = truncated_normal_moments((l - mu) / sd, (u - mu) / sd)
    return mu + sd * m, v * w


def _tilted_standard(mu, v, l, u):                               # moments of the standardised variable
    sd = v.sqrt()
    return truncated_normal_moments((l - mu) / sd, (u - mu) / sd)


def _tilted_var_unscaled(mu, v, l, u):
    sd = v.sqrt()
    m, w = truncated_normal_moments((l - mu) / sd, (u - mu) / sd)
    return mu + sd * m, w


def _tilted_second_moment(mu, v, l, u):                          # E[t²] for the variance: mean² not removed
    mean, var = _tilted(mu, v, l, u)
    sd = v.sqrt()
    return mean, var + v * ((mean - mu) / sd) ** 2


def _tilted_mean_times_v(mu, v, l, u):                            # v where the standard deviation belongs
    sd = v.sqrt()
    m, w = truncated_normal_moments((l - mu) / sd, (u - mu) / sd)
    return mu + v * m, v * w


def _tilted_sign(mu, v, l, u):
    sd = v.sqrt()
    m, w = truncated_normal_moments((l - mu) / sd, (u - mu) / sd)
    return mu - sd * m, v * w


def _tilted_untouched(mu, v, l, u):                               # the cavity itself: no moment matching
    return mu.clone(), v.clone()


_TILTED_MISTAKES = {
    _tilted_standard: "those are the moments of the standardised variable t = (x - μ)/√v; map back: "
                      "mean μ + √v E[t], variance v Var[t]",
    _tilted_var_unscaled: "the mean is right, the variance is that of the standardised variable: multiply by v",
    _tilted_second_moment: "the variance is E[t²] - E[t]²: subtract the squared mean of the truncated variable",
    _tilted_mean_times_v: "the mean moves by √v E[t] (the standard deviation), not by v E[t]",
    _tilted_sign: "wrong sign of the shift: the mean moves towards the bin, μ + √v (φ(a) - φ(b))/(Φ(b) - Φ(a))",
    _tilted_untouched: "that returns the cavity's moments: truncating to [l, u) moves the mean into the bin "
                       "and shrinks the variance",
}

# μ, v, l, u: standardised bounds within |t| < 6, so plain ndtr is accurate enough here
_TILTED_CASES = (_t(0.0, 0.5, -1.0, 2.0, 0.3, -0.4), _t(1.0, 0.25, 4.0, 0.5, 0.09, 2.0),
                 _t(-INF, 0.0, -0.5, 1.0, 0.2, -1.0), _t(0.0, INF, 0.5, 1.5, 0.5, 1.0))


@exercise(_tilted, *_TILTED_MISTAKES)
def check_tilted_moments(fn):
    """fn(mu, v, l, u) = (mean, variance) of N(μ, v) truncated to [l, u), elementwise, as a tuple."""
    out = fn(*(a.clone() for a in _TILTED_CASES))
    assert isinstance(out, (tuple, list)) and len(out) == 2, "return a tuple (mean, variance)"
    expected = _tilted(*_TILTED_CASES)
    for got, exp, what in zip(out, expected, ("mean", "variance")):
        assert isinstance(got, torch.Tensor), f"the {what} must be a tensor, got {type(got).__name__}"
        assert got.shape == exp.shape, f"the {what} has the shape of mu {tuple(exp.shape)}, got {tuple(got.shape)}"
    if not close(tuple(out), expected, **_TOL):
        raise AssertionError(diagnose(tuple(out), expected, _TILTED_CASES, _TILTED_MISTAKES, **_TOL))
