"""Lesson 09's exercise checks: a correct answer passes, each typical mistake fails with a message that
names it, and the checks' reference answers agree with the library (diffcourse.posterior.ccdf).

(tests/test_checks.py already runs every check on its reference, the stub and its listed wrong
answers; here: the words the learner reads, answers written differently from the reference, and
mistakes that are not in the checks' own lists.)
"""
from __future__ import annotations

import math

import pytest
import torch
from _util import verdict

from diffcourse.checks import lesson09 as L
from diffcourse.posterior import ccdf
from diffcourse.prior.processes import karras_sigmas, ve_sigmas, vp_sigmas

F64 = torch.float64


# ---------------------------------------------------------------- the references are the library's
@pytest.mark.parametrize("sigmas", [vp_sigmas(100), karras_sigmas(40), ve_sigmas(25, 0.01, 20.0)])
def test_card_lambdas_reference_is_the_library(sigmas):
    ddpm, smld, ddim = L.check_card_lambdas.reference(sigmas)
    torch.testing.assert_close(ddpm, ccdf.lambda_ddpm(sigmas), rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(smld, ccdf.lambda_smld(sigmas), rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(ddim, ccdf.lambda_ddim(sigmas), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("eps0, lam, target, C, tau", L._BOUND_CASES[:-1] + [(0.3, 0.95, 1e-6, 0.0, 1.0)])
def test_steps_from_bound_reference_is_the_smallest_n_under_the_library_bound(eps0, lam, target, C, tau):
    n = L.check_steps_from_bound.reference(eps0, lam, target, C, tau)
    assert float(ccdf.error_bound(eps0, lam, [n], C=C, tau=tau)[0]) <= target
    if n > 0:
        assert float(ccdf.error_bound(eps0, lam, [n - 1], C=C, tau=tau)[0]) > target


def test_steps_from_bound_reference_says_none_below_the_noise_floor():
    eps0, lam, target, C, tau = L._BOUND_CASES[-1]
    assert L.check_steps_from_bound.reference(eps0, lam, target, C, tau) is None
    assert float(ccdf.error_bound(eps0, lam, [10 ** 6], C=C, tau=tau)[0]) > target


@pytest.mark.parametrize("n, t0", L._WARM_CASES + [(100, 0.2), (100, 0.3)])
def test_warm_start_reference_is_the_library(n, t0):
    sigmas = karras_sigmas(n)
    x_init = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    x_lib, tail_lib = ccdf.warm_start(x_init, sigmas, t0, generator=torch.Generator().manual_seed(1))
    z = torch.randn(x_init.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    x_ref, tail_ref = L.check_warm_start.reference(x_init, sigmas, t0, z)
    assert torch.equal(tail_ref, tail_lib)
    torch.testing.assert_close(x_ref, x_lib, rtol=0, atol=1e-14)


# ---------------------------------------------------------------- correct answers written differently
def test_card_lambdas_accepts_an_answer_in_sigma_form(capsys):
    def mine(sigmas):
        r = sigmas[1:] / sigmas[:-1]
        return r ** 2 * torch.sqrt((1 + sigmas[:-1] ** 2) / (1 + sigmas[1:] ** 2)), r ** 2, r
    assert verdict(L.check_card_lambdas, mine, capsys) == (True, "✔ card lambdas: correct\n")


def test_steps_from_bound_accepts_a_loop_and_a_float(capsys):
    def mine(eps0, lam, target, C=0.0, tau=1.0):
        floor = 2 * C * tau / (1 - lam ** 2)
        if floor >= target:
            return None
        n = 0
        while floor + lam ** (2 * n) * eps0 > target:
            n += 1
        return float(n)
    ok, out = verdict(L.check_steps_from_bound, mine, capsys)
    assert ok, out


def test_warm_start_accepts_negative_indexing(capsys):
    def mine(x_init, sigmas, t0, z):
        k = max(1, math.ceil(t0 * (len(sigmas) - 1)))
        tail = sigmas[-k - 1:]
        return x_init + tail[0] * z, tail
    ok, out = verdict(L.check_warm_start, mine, capsys)
    assert ok, out


# ---------------------------------------------------------------- typical mistakes, pointed messages
def _ddim_sq(sigmas):
    ddpm, smld, _ = L.check_card_lambdas.reference(sigmas)
    return ddpm, smld, smld


@pytest.mark.parametrize("fn, words", [
    (lambda s: (ccdf.lambda_smld(s), ccdf.lambda_smld(s), ccdf.lambda_ddim(s)), "VP coordinates"),
    (_ddim_sq, "DDIM entry is wrong"),
    (lambda s: tuple(v.max() for v in L.check_card_lambdas.reference(s)), "one per step (N,)"),
    (lambda s: (*L.check_card_lambdas.reference(s)[:2], s[:-1] / s[1:]), "inverse ratios"),
    (lambda s: ccdf.lambda_ddim(s), "tuple of three tensors"),
    (lambda s: tuple(v.float() + 1e-3 for v in L.check_card_lambdas.reference(s)), "max error"),
])
def test_card_lambdas_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_card_lambdas, fn, capsys)
    assert not ok and words in out, out


def _bound(*, power=2, rounding=math.ceil, noise=True, clamp=True, none=True):
    def fn(eps0, lam, target, C=0.0, tau=1.0):
        room = target - (2 * C * tau / (1 - lam ** 2) if noise else 0.0)
        if room <= 0:
            return None if none else 0
        n = rounding(math.log(room / eps0) / (power * math.log(lam)))
        return max(0, n) if clamp else n
    return fn


@pytest.mark.parametrize("fn, words", [
    (_bound(power=1), "not λ^{N'}"),
    (_bound(rounding=math.floor), "round the real solution UP"),
    (_bound(rounding=int), "round the real solution UP"),
    (_bound(noise=False), "noise term 2Cτ/(1 - λ²) does not decay"),
    (_bound(clamp=False), "never negative"),
    (_bound(none=False), "return None"),
    (lambda eps0, lam, target, C=0.0, tau=1.0: None, "the target is reachable"),
    (lambda eps0, lam, target, C=0.0, tau=1.0: 12.5, "whole number"),
])
def test_steps_from_bound_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_steps_from_bound, fn, capsys)
    assert not ok and words in out, out


def _warm(*, n_prime=lambda t0, n: max(1, math.ceil(t0 * n)), start=lambda s, k, n: s[n - k],
          tail=lambda s, k, n: s[n - k:], noise=lambda sig, z: sig * z):
    def fn(x_init, sigmas, t0, z):
        n = len(sigmas) - 1
        k = n_prime(t0, n)
        return x_init + noise(start(sigmas, k, n), z), tail(sigmas, k, n)
    return fn


@pytest.mark.parametrize("fn, words", [
    (_warm(tail=lambda s, k, n: s[n - k + 1:]), "N' steps need N' + 1 levels"),
    (_warm(start=lambda s, k, n: s[k], tail=lambda s, k, n: s[k:]), "the LAST N' steps"),
    (_warm(noise=lambda sig, z: sig ** 2 * z), "not σ_{N'}² z"),
    (_warm(n_prime=lambda t0, n: int(t0 * n)), "round up (math.ceil)"),
    (_warm(n_prime=lambda t0, n: round(t0 * n) or 1), "round up (math.ceil)"),
    (_warm(noise=lambda sig, z: 0 * z), "forward-diffuse the estimate"),
    (lambda x_init, sigmas, t0, z: x_init + sigmas[0] * z, "pair (x_start, tail)"),
])
def test_warm_start_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_warm_start, fn, capsys)
    assert not ok and words in out, out


def test_warm_start_vp_formula_is_named(capsys):
    def vp(x_init, sigmas, t0, z):
        n = len(sigmas) - 1
        k = max(1, math.ceil(t0 * n))
        ab = 1 / (1 + sigmas[n - k] ** 2)
        return ab.sqrt() * x_init + (1 - ab).sqrt() * z, sigmas[n - k:]
    ok, out = verdict(L.check_warm_start, vp, capsys)
    assert not ok and "VP form" in out, out


def test_a_crash_is_reported_with_the_learners_line(capsys):
    def crashes(sigmas):
        return sigmas[:-1] / sigmas[2:]          # shapes do not match
    ok, out = verdict(L.check_card_lambdas, crashes, capsys)
    assert not ok and "your code raised RuntimeError" in out and "sigmas[2:]" in out, out
