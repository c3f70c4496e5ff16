"""Checks for lesson 03 (Langevin dynamics): one annealed Langevin step, the step-size ladder, the shell.

Convention of the course (paper form, Song & Ermon 2019, Alg. 1): x <- x + (alpha/2) s + sqrt(alpha) z
with s = (D(x, sigma) - x) / sigma^2 and alpha_i = eps sigma_i^2 / sigma_L^2 (sigma_L the smallest level).
"""
from __future__ import annotations

import math

import torch

from ..prior.processes import ve_sigmas
from ..prior.toy import GaussianMixture
from ._core import close, diagnose, exercise

__all__ = ["check_langevin_step", "check_step_sizes", "check_shell"]

F64 = torch.float64
_TOL = {"rtol": 1e-9, "atol": 1e-9}          # float64 answers: rounding slack only
_LADDER_TOL = {"rtol": 1e-9, "atol": 0.0}    # step sizes span orders of magnitude: relative only


# ---------------------------------------------------------------- exercise 1: one Langevin step
def _langevin_step(D, x, sigma, alpha, z):
    score = (D(x, sigma) - x) / sigma ** 2
    return x + (alpha / 2) * score + math.sqrt(alpha) * z


def _code_form_with_alpha(D, x, sigma, alpha, z):  # the factor-2 trap: alpha used as the code's delta
    score = (D(x, sigma) - x) / sigma ** 2
    return x + alpha * score + math.sqrt(2 * alpha) * z


def _paper_drift_code_noise(D, x, sigma, alpha, z):  # conventions mixed: samples p^(1/2)
    score = (D(x, sigma) - x) / sigma ** 2
    return x + (alpha / 2) * score + math.sqrt(2 * alpha) * z


def _score_sign_flipped(D, x, sigma, alpha, z):
    score = (x - D(x, sigma)) / sigma ** 2
    return x + (alpha / 2) * score + math.sqrt(alpha) * z


def _sigma_not_squared(D, x, sigma, alpha, z):
    score = (D(x, sigma) - x) / sigma
    return x + (alpha / 2) * score + math.sqrt(alpha) * z


def _noise_not_square_rooted(D, x, sigma, alpha, z):
    score = (D(x, sigma) - x) / sigma ** 2
    return x + (alpha / 2) * score + alpha * z


_STEP_MISTAKES = {
    _code_form_with_alpha: "this is the code form x + a s + sqrt(2a) z with a = alpha; the paper form "
                           "halves both: (alpha/2) s + sqrt(alpha) z",
    _paper_drift_code_noise: "the noise sqrt(2 alpha) z belongs to the code form; with the drift "
                             "(alpha/2) s it must be sqrt(alpha) z (else the chain samples p^(1/2))",
    _score_sign_flipped: "the score is (D(x, sigma) - x) / sigma^2: it points from x towards the denoised D(x)",
    _sigma_not_squared: "the score divides by sigma^2, not sigma (Tweedie: D = x + sigma^2 s)",
    _noise_not_square_rooted: "the noise has standard deviation sqrt(alpha), not alpha",
}


@exercise(_langevin_step, *_STEP_MISTAKES)
def check_langevin_step(fn):
    """fn(D, x, sigma, alpha, z) = x + (alpha/2)(D(x, sigma) - x)/sigma^2 + sqrt(alpha) z, any shape of x."""
    g = torch.Generator().manual_seed(0)
    mixture = GaussianMixture(torch.tensor([0.3, 0.7], dtype=F64), torch.randn(2, 3, generator=g, dtype=F64),
                              torch.stack([0.5 * torch.eye(3, dtype=F64), torch.eye(3, dtype=F64)]))
    gaussian_image = lambda x, sigma: 0.2 + 0.25 * (x - 0.2) / (0.25 + sigma ** 2)  # N(0.2, 0.25 I)
    cases = [(mixture.denoiser, (5, 3), 0.7, 0.3), (gaussian_image, (2, 1, 4, 4), 2.5, 1.7)]
    for D, shape, sigma, alpha in cases:
        x = torch.randn(shape, generator=g, dtype=F64)
        z = torch.randn(shape, generator=g, dtype=F64)
        args = (D, x.clone(), sigma, alpha, z.clone())
        out = fn(*args)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == x.shape, f"the new x must have the shape of x {tuple(shape)}, got {tuple(out.shape)}"
        expected = _langevin_step(D, x, sigma, alpha, z)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"sigma = {sigma}, alpha = {alpha}, x of shape {tuple(shape)}: "
                                 + diagnose(out, expected, (D, x, sigma, alpha, z), _STEP_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 2: the step-size ladder
def _step_sizes(sigmas, eps):
    return eps * (sigmas / sigmas[-1]) ** 2


def _not_squared(sigmas, eps):
    return eps * sigmas / sigmas[-1]


def _relative_to_largest(sigmas, eps):  # sigma_1 (the largest, NCSN index 1) taken as the reference
    return eps * (sigmas / sigmas[0]) ** 2


def _code_delta(sigmas, eps):  # the code-form step delta = alpha / 2, not alpha
    return eps / 2 * (sigmas / sigmas[-1]) ** 2


def _inverted(sigmas, eps):
    return eps * (sigmas[-1] / sigmas) ** 2


_LADDER_MISTAKES = {
    _not_squared: "alpha_i grows like sigma_i^2, not sigma_i (drift/noise ratio sqrt(alpha_i)/(2 sigma_i) constant)",
    _relative_to_largest: "divide by sigma_L^2, the *smallest* level (the last entry): eps is the step at the last level",
    _code_delta: "that is the code-form delta_i = alpha_i / 2; the paper form asks for alpha_i itself",
    _inverted: "the step must be largest at the largest sigma: alpha_i = eps sigma_i^2 / sigma_L^2",
}


@exercise(_step_sizes, *_LADDER_MISTAKES)
def check_step_sizes(fn):
    """fn(sigmas, eps) = eps * sigmas**2 / sigmas[-1]**2 for decreasing positive ladders, shape (L,)."""
    cases = [(ve_sigmas(6, 0.05, 10.0, append_zero=False), 3e-3),
             (torch.tensor([5.0, 2.0, 1.0, 0.3], dtype=F64), 0.01)]
    for sigmas, eps in cases:
        out = fn(sigmas.clone(), eps)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == sigmas.shape, f"one step per level: shape {tuple(sigmas.shape)}, got {tuple(out.shape)}"
        expected = _step_sizes(sigmas, eps)
        if not close(out, expected, **_LADDER_TOL):
            raise AssertionError(f"sigmas = {[round(s, 3) for s in sigmas.tolist()]}, eps = {eps}: expected "
                                 f"{[f'{a:.3g}' for a in expected.tolist()]}, got "
                                 f"{[f'{a:.3g}' for a in out.tolist()]}; "
                                 + diagnose(out, expected, (sigmas, eps), _LADDER_MISTAKES, **_LADDER_TOL))


# ---------------------------------------------------------------- exercise 3: the Gaussian annulus
def _shell(sigma, d):
    return sigma * math.sqrt(d), sigma / math.sqrt(2)


def _radius_d(sigma, d):
    return sigma * d, sigma / math.sqrt(2)


def _relative_spread(sigma, d):  # std(||z||) / sqrt(d) is the relative spread, not the spread
    return sigma * math.sqrt(d), sigma / math.sqrt(2 * d)


def _spread_sigma(sigma, d):
    return sigma * math.sqrt(d), sigma


def _sqrt_of_sigma_d(sigma, d):
    return math.sqrt(sigma * d), sigma / math.sqrt(2)


def _chi_moments(sigma: float, d: int) -> tuple[float, float]:
    """Exact mean and std of ||sigma z||, z ~ N(0, I_d) (sigma times the chi distribution)."""
    mean = math.sqrt(2) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))
    return sigma * mean, sigma * math.sqrt(d - mean ** 2)


@exercise(_shell, _radius_d, _relative_spread, _spread_sigma, _sqrt_of_sigma_d)
def check_shell(fn):
    """fn(sigma, d) = (radius, spread) of ||sigma z||, z ~ N(0, I_d): within 3 % of the exact chi moments."""
    for sigma, d in [(1.0, 4096), (0.3, 64), (2.5, 16)]:
        out = fn(sigma, d)
        assert isinstance(out, (tuple, list)) and len(out) == 2, "return a pair (radius, spread)"
        radius, spread = (float(v) for v in out)
        mean, std = _chi_moments(sigma, d)
        assert abs(radius / mean - 1) < 0.03, (
            f"sigma = {sigma}, d = {d}: ||sigma z|| is about {mean:.4g}, your radius is {radius:.4g}")
        shrunk = abs(spread * math.sqrt(d) / std - 1) < 0.03
        assert abs(spread / std - 1) < 0.03, (
            f"sigma = {sigma}, d = {d}: the standard deviation of ||sigma z|| is about {std:.4g}, your "
            f"spread is {spread:.4g}" + ("; the spread does not shrink with d, only the relative spread "
                                         "spread / radius does" if shrunk else ""))
