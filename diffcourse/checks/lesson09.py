"""Checks for lesson 09 (come closer, diffuse faster): CCDF's contraction factors for a schedule, the
number of steps its error bound asks for, and the warm start.

Conventions: a schedule ``sigmas`` is a VE σ ladder (N + 1,) float64, strictly decreasing, ending at 0;
step i goes from σ = sigmas[i] to σ' = sigmas[i + 1]; ᾱ = 1/(1 + σ²) (VP ↔ VE). CCDF: Chung, Sim &
Ye, CVPR 2022 (Thm. 1 for λ and the bound, Alg. 1 for the start).
"""
from __future__ import annotations

import math
import numbers

import torch

from ..posterior import ccdf
from ..prior.processes import karras_sigmas, ve_sigmas, vp_sigmas
from ._core import close, diagnose, exercise

__all__ = ["check_card_lambdas", "check_steps_from_bound", "check_warm_start"]

F64 = torch.float64
_TOL = {"rtol": 1e-9, "atol": 1e-12}
_NAMES = ("DDPM", "SMLD", "DDIM")


# ---------------------------------------------------------------- exercise 1: λ for a schedule
def _card_lambdas(sigmas):
    s, s_next = sigmas[:-1], sigmas[1:]
    ab, ab_next = 1 / (1 + s ** 2), 1 / (1 + s_next ** 2)
    ddpm = (ab / ab_next).sqrt() * (1 - ab_next) / (1 - ab)
    return ddpm, s_next ** 2 / s ** 2, s_next / s


def _ddpm_in_ve(sigmas):  # DDPM's factor without the change of scale √(ᾱ/ᾱ')
    _, smld, ddim = _card_lambdas(sigmas)
    return smld, smld, ddim


def _vp_factor_inverted(sigmas):  # √(ᾱ'/ᾱ) instead of √(ᾱ/ᾱ') = √α_i
    ddpm, smld, ddim = _card_lambdas(sigmas)
    ab, ab_next = 1 / (1 + sigmas[:-1] ** 2), 1 / (1 + sigmas[1:] ** 2)
    return ddpm * ab_next / ab, smld, ddim


def _smld_not_squared(sigmas):
    ddpm, _, ddim = _card_lambdas(sigmas)
    return ddpm, ddim, ddim


def _ddim_squared(sigmas):
    ddpm, smld, _ = _card_lambdas(sigmas)
    return ddpm, smld, smld


def _ratios_inverted(sigmas):  # σ/σ' (the step backwards): > 1, infinite at the last step
    return tuple(1 / v for v in _card_lambdas(sigmas))


def _only_the_max(sigmas):
    return tuple(v.max() for v in _card_lambdas(sigmas))


_LAMBDA_MISTAKES = {
    _ddpm_in_ve: "your DDPM factor is σ'²/σ², the VE ratio (or α_i where √α_i belongs); the paper's "
                 "√α_i(1 - ᾱ_{i-1})/(1 - ᾱ_i) measures distances in VP coordinates and carries "
                 "√α_i = √(ᾱ_i/ᾱ_{i-1}), the change of scale",
    _vp_factor_inverted: "DDPM: α_i = ᾱ_i/ᾱ_{i-1} is the ᾱ of the noisier level over the ᾱ of the cleaner one "
                         "(< 1), not the reverse",
    _smld_not_squared: "SMLD: the factor is (σ_{i-1}² - σ_0²)/(σ_i² - σ_0²), a ratio of variances (squared σ)",
    _ddim_squared: "DDIM: the factor is σ_{i-1}/σ_i, a ratio of standard deviations (not squared)",
    _ratios_inverted: "each factor is (cleaner level)/(noisier level) < 1; yours are the inverse ratios",
    _only_the_max: "return the per-step factors, one per step (N,); the paper's λ is their max",
}


@exercise(_card_lambdas, *_LAMBDA_MISTAKES)
def check_card_lambdas(fn):
    """fn(sigmas) = (DDPM, SMLD, DDIM) per-step factors of CCDF's Thm. 1, each (N,) for N + 1 levels."""
    for sigmas in (vp_sigmas(50), karras_sigmas(12, 0.01, 20.0), ve_sigmas(8, 0.05, 5.0)):
        out = fn(sigmas.clone())
        assert isinstance(out, (tuple, list)) and len(out) == 3, \
            f"return a tuple of three tensors (DDPM, SMLD, DDIM), got {type(out).__name__}"
        expected = _card_lambdas(sigmas)
        if close(out, expected, **_TOL):
            continue
        message = diagnose(out, expected, (sigmas,), _LAMBDA_MISTAKES, **_TOL)
        for name, mine, ref in zip(_NAMES, out, expected):
            if not close(mine, ref, **_TOL):
                if isinstance(mine, torch.Tensor) and close(1 / mine, ref, **_TOL):
                    message = _LAMBDA_MISTAKES[_ratios_inverted]
                shape = tuple(mine.shape) if isinstance(mine, torch.Tensor) else type(mine).__name__
                what = "" if shape == tuple(ref.shape) else f" (shape {shape}, expected {tuple(ref.shape)})"
                raise AssertionError(f"{len(sigmas)} levels from {sigmas[0]:.3g}: the {name} entry is wrong"
                                     f"{what}: {message}")


# ---------------------------------------------------------------- exercise 2: N' from the bound
def _steps_from_bound(eps0, lam, target, C=0.0, tau=1.0):
    room = target - 2 * C * tau / (1 - lam ** 2)
    if room <= 0:
        return None
    if room >= eps0:
        return 0
    return math.ceil(math.log(room / eps0) / (2 * math.log(lam)))


def _no_square(eps0, lam, target, C=0.0, tau=1.0):  # λ^{N'} instead of λ^{2N'}
    room = target - 2 * C * tau / (1 - lam ** 2)
    if room <= 0:
        return None
    return max(0, math.ceil(math.log(room / eps0) / math.log(lam)))


def _floor(eps0, lam, target, C=0.0, tau=1.0):
    room = target - 2 * C * tau / (1 - lam ** 2)
    if room <= 0:
        return None
    return max(0, math.floor(math.log(room / eps0) / (2 * math.log(lam))))


def _round(eps0, lam, target, C=0.0, tau=1.0):
    room = target - 2 * C * tau / (1 - lam ** 2)
    if room <= 0:
        return None
    return max(0, round(math.log(room / eps0) / (2 * math.log(lam))))


def _no_noise_term(eps0, lam, target, C=0.0, tau=1.0):
    return _steps_from_bound(eps0, lam, target)


def _noise_term_without_2(eps0, lam, target, C=0.0, tau=1.0):
    return _steps_from_bound(eps0, lam, target, C / 2, tau)


def _not_clamped(eps0, lam, target, C=0.0, tau=1.0):  # a negative N' when the start is good enough
    room = target - 2 * C * tau / (1 - lam ** 2)
    if room <= 0:
        return None
    return math.ceil(math.log(room / eps0) / (2 * math.log(lam)))


def _quietly(fn, args):
    """fn(*args), or None when that mistake cannot even run on these inputs."""
    try:
        return fn(*args)
    except Exception:
        return None


_BOUND_MISTAKES = {
    _no_square: "the bound decays as λ^{2N'} (squared errors contract by λ² per step), not λ^{N'}",
    _floor: "N' must make the bound <= target: round the real solution UP (math.ceil); rounding down "
            "leaves the bound above the target",
    _round: "round the real solution UP (math.ceil), not to the nearest integer: the bound must be <= target",
    _no_noise_term: "the noise term 2Cτ/(1 - λ²) does not decay: only target - 2Cτ/(1 - λ²) is left for "
                    "λ^{2N'} ε0",
    _noise_term_without_2: "the noise term is 2Cτ/(1 - λ²): the factor 2 is missing",
    _not_clamped: "when ε0 already meets the target no step is needed: N' = 0, never negative",
}

# (eps0, lam, target, C, tau): the real solutions are 32.8, 10.3 (floor, round and ceil differ), a
# start already good enough, a noise term that moves the answer, and an unreachable target.
_BOUND_CASES = [(1.0, 0.9, 1e-3, 0.0, 1.0), (0.17, 0.8, 0.0017, 0.0, 1.0), (0.5, 0.8, 1.0, 0.0, 1.0),
                (2.0, 0.7, 0.03, 0.01, 0.5), (2.0, 0.7, 0.015, 0.01, 0.5)]


@exercise(_steps_from_bound, *_BOUND_MISTAKES)
def check_steps_from_bound(fn):
    """fn(eps0, lam, target, C, tau) = the smallest N' >= 0 with 2Cτ/(1-λ²) + λ^{2N'} ε0 <= target, or None."""
    for eps0, lam, target, C, tau in _BOUND_CASES:
        args = (eps0, lam, target, C, tau)
        out = fn(*args)
        expected = _steps_from_bound(*args)
        where = f"ε0 = {eps0:g}, λ = {lam:g}, target = {target:g}, C = {C:g}, τ = {tau:g}"
        if expected is None:
            if out is not None:
                raise AssertionError(f"{where}: the noise term 2Cτ/(1 - λ²) = {2 * C * tau / (1 - lam ** 2):.4g} "
                                     f"already exceeds the target, so no N' reaches it: return None (got {out!r})")
            continue
        assert out is not None, f"{where}: the target is reachable (N' = {expected}), but you returned None"
        assert isinstance(out, numbers.Real) and not isinstance(out, bool) and float(out).is_integer(), \
            f"{where}: return a whole number of steps, got {out!r}"
        if out != expected:
            hint = next((msg for wrong, msg in _BOUND_MISTAKES.items() if _quietly(wrong, args) == out), None)
            bound = float(ccdf.error_bound(eps0, lam, [max(out, 0)], C=C, tau=tau)[0])
            raise AssertionError(f"{where}: N' = {out}, expected {expected} (the bound at your N' is {bound:.4g}): "
                                 + (hint or "N' is the smallest whole number with the bound <= target"))


# ---------------------------------------------------------------- exercise 3: the warm start
def _warm_start(x_init, sigmas, t0, z):
    n = len(sigmas) - 1
    n_prime = max(1, math.ceil(t0 * n - 1e-9))
    return x_init + sigmas[n - n_prime] * z, sigmas[n - n_prime:]


def _tail_without_start(x_init, sigmas, t0, z):
    x, tail = _warm_start(x_init, sigmas, t0, z)
    return x, tail[1:]


def _from_the_top(x_init, sigmas, t0, z):  # σ_{N'} counted from the noisy end
    n_prime = max(1, math.ceil(t0 * (len(sigmas) - 1) - 1e-9))
    return x_init + sigmas[n_prime] * z, sigmas[n_prime:]


def _vp_form(x_init, sigmas, t0, z):  # the paper's VP formula applied to VE coordinates
    x, tail = _warm_start(x_init, sigmas, t0, z)
    ab = 1 / (1 + tail[0] ** 2)
    return ab.sqrt() * x_init + (1 - ab).sqrt() * z, tail


def _variance(x_init, sigmas, t0, z):
    _, tail = _warm_start(x_init, sigmas, t0, z)
    return x_init + tail[0] ** 2 * z, tail


def _floor_steps(x_init, sigmas, t0, z):
    n = len(sigmas) - 1
    n_prime = int(t0 * n)
    return x_init + sigmas[n - n_prime] * z, sigmas[n - n_prime:]


def _round_steps(x_init, sigmas, t0, z):
    n = len(sigmas) - 1
    n_prime = round(t0 * n)
    return x_init + sigmas[n - n_prime] * z, sigmas[n - n_prime:]


def _no_noise(x_init, sigmas, t0, z):
    _, tail = _warm_start(x_init, sigmas, t0, z)
    return x_init.clone(), tail


_WARM_MISTAKES = {
    _tail_without_start: "the tail must start at the level of the start, σ_{N'}: N' steps need N' + 1 levels "
                         "(sigmas[N - N':])",
    _from_the_top: "the warm start runs the LAST N' steps, the low-noise end: σ_{N'} = sigmas[N - N'], "
                   "not sigmas[N']",
    _vp_form: "that is the VP form √ᾱ x0 + √(1 - ᾱ) z; in VE coordinates the start is x0_init + σ_{N'} z",
    _variance: "the noise is σ_{N'} z (a standard deviation), not σ_{N'}² z",
    _floor_steps: "N' = ⌈t0 N⌉: round up (math.ceil), so that t0 N = 12.5 gives 13 steps",
    _round_steps: "N' = ⌈t0 N⌉: round up (math.ceil), not to the nearest integer (and never to 0 steps)",
    _no_noise: "forward-diffuse the estimate: add σ_{N'} z (the chain expects a state at level σ_{N'})",
}

# (N, t0): t0 N = 12.5 (floor, round and ceil differ), 15, 20 (the full chain), 0.4 (one step).
_WARM_CASES = [(50, 0.25), (30, 0.5), (20, 1.0), (40, 0.01)]


@exercise(_warm_start, *_WARM_MISTAKES)
def check_warm_start(fn):
    """fn(x_init, sigmas, t0, z) = (x_init + σ_{N'} z, sigmas[N - N':]) with N' = ⌈t0 N⌉ (at least 1)."""
    g = torch.Generator().manual_seed(9)
    for k, (n, t0) in enumerate(_WARM_CASES):
        sigmas = karras_sigmas(n, 0.002, 80.0)
        x_init = torch.rand(2, 1, 4, 4, generator=g, dtype=F64)
        z = torch.randn(2, 1, 4, 4, generator=g, dtype=F64)
        args = (x_init, sigmas, t0, z)
        out = fn(x_init.clone(), sigmas.clone(), t0, z.clone())
        assert isinstance(out, (tuple, list)) and len(out) == 2, \
            f"return a pair (x_start, tail), got {type(out).__name__}"
        expected = _warm_start(*args)
        assert isinstance(out[1], torch.Tensor), f"the tail must be a tensor of levels, got {type(out[1]).__name__}"
        if not close(out, expected, **_TOL):
            n_prime = len(expected[1]) - 1
            raise AssertionError(f"N = {n}, t0 = {t0} (N' = {n_prime}, tail of {n_prime + 1} levels from "
                                 f"{expected[1][0]:.4g}; yours {len(out[1])} levels): "
                                 + diagnose(out, expected, args, _WARM_MISTAKES, **_TOL))
