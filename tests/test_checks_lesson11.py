"""Lesson 11's exercise checks: the references are the library's (and agree with autograd and with scipy's
truncated normal), correct answers written differently pass, and typical mistakes fail with a message
that names them.

(tests/test_checks.py already runs every check on its reference, the stub and its listed wrong
answers; here: independent oracles, the words the learner reads, and mistakes outside the lists.)
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _util import verdict
from scipy import stats

from diffcourse.checks import lesson11 as L
from diffcourse.physics.noise import log_normal_interval
from diffcourse.posterior import guidance_quantized as gq

F64 = torch.float64


def autograd_bin_score(z, l, u, s):
    """∂/∂z of the library's log-space log[Φ((u - z)/s) - Φ((l - z)/s)], by autograd."""
    with torch.enable_grad():
        zg = z.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(log_normal_interval((l - zg) / s, (u - zg) / s).sum(), zg)
    return g


# ---------------------------------------------------------------- references against oracles
def test_bin_score_reference_is_the_autograd_derivative():
    args = L._BIN_MODERATE
    torch.testing.assert_close(L.check_bin_score.reference(*args), autograd_bin_score(*args), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(L.check_bin_score.reference(*args), gq.qcs_multibit_g(*args), rtol=0, atol=0)


def test_one_bit_reference_is_the_bin_score_of_a_half_line():
    z, y, s = (torch.cat([a, b]) for a, b in zip(L._ONE_BIT_MODERATE, L._ONE_BIT_TAILS))
    inf = torch.full_like(z, math.inf)
    l, u = torch.where(y > 0, torch.zeros_like(z), -inf), torch.where(y > 0, inf, torch.zeros_like(z))
    torch.testing.assert_close(L.check_one_bit_score.reference(z, y, s), gq.qcs_multibit_g(z, l, u, s),
                               rtol=1e-10, atol=1e-12)


def test_tilted_moments_reference_is_scipys_truncated_normal():
    mu, v, l, u = L._TILTED_CASES
    mean, var = L.check_tilted_moments.reference(mu, v, l, u)
    sd = v.sqrt()
    for i in range(len(mu)):
        a, b = float((l[i] - mu[i]) / sd[i]), float((u[i] - mu[i]) / sd[i])
        m_ref, v_ref = stats.truncnorm.stats(a, b, loc=float(mu[i]), scale=float(sd[i]), moments="mv")
        assert float(mean[i]) == pytest.approx(float(m_ref), rel=1e-9, abs=1e-12)
        assert float(var[i]) == pytest.approx(float(v_ref), rel=1e-8)


def test_tail_cases_really_are_beyond_linear_space():
    """The tail cases exist to catch answers computed without logs: the naive formula must fail on them."""
    naive = L._bin_score_naive(*L._BIN_TAILS)
    assert not bool(torch.isfinite(naive).all())
    assert not bool(torch.isfinite(L._one_bit_naive(*L._ONE_BIT_TAILS)).all())
    assert bool(torch.isfinite(L.check_bin_score.reference(*L._BIN_TAILS)).all())


# ---------------------------------------------------------------- correct answers written differently
def test_bin_score_accepts_autograd(capsys):
    assert verdict(L.check_bin_score, autograd_bin_score, capsys) == (True, "✔ bin score: correct\n")


def test_one_bit_accepts_the_bin_form_and_log_ndtr_of_the_mirror(capsys):
    def via_bins(z, y, s):
        inf = torch.full_like(z, math.inf)
        l = torch.where(y > 0, torch.zeros_like(z), -inf)
        u = torch.where(y > 0, inf, torch.zeros_like(z))
        return autograd_bin_score(z, l, u, s)

    def mills(z, y, s):                               # y φ(y z/s) / (s Φ(y z/s)): φ is even
        t = y * z / s
        return y / s * torch.exp(-t ** 2 / 2 - 0.5 * math.log(2 * math.pi) - torch.special.log_ndtr(t))
    for fn in (via_bins, mills):
        ok, out = verdict(L.check_one_bit_score, fn, capsys)
        assert ok, (fn.__name__, out)


def test_tilted_moments_accepts_scipy_and_quadrature(capsys):
    def with_scipy(mu, v, l, u):
        sd = v.sqrt()
        m, w = stats.truncnorm.stats(((l - mu) / sd).numpy(), ((u - mu) / sd).numpy(), loc=mu.numpy(),
                                     scale=sd.numpy(), moments="mv")
        return torch.tensor(np.asarray(m), dtype=F64), torch.tensor(np.asarray(w), dtype=F64)

    def with_log_space(mu, v, l, u):                  # the library's helpers, used differently
        sd = v.sqrt()
        a, b = (l - mu) / sd, (u - mu) / sd
        m = gq.normal_interval_score(a, b)
        t_phi = lambda t: torch.where(torch.isinf(t), torch.zeros_like(t),  # noqa: E731
                                      t * torch.exp(-t ** 2 / 2 - 0.5 * math.log(2 * math.pi)
                                                    - log_normal_interval(a, b)))
        return mu + sd * m, v * (1 + t_phi(a) - t_phi(b) - m ** 2)
    for fn in (with_scipy, with_log_space):
        ok, out = verdict(L.check_tilted_moments, fn, capsys)
        assert ok, (fn.__name__, out)


# ---------------------------------------------------------------- typical mistakes, pointed messages
def clamped_like_the_official_code(z, l, u, s):
    """Right formula, denominator clamped at 1e-6 (as QCS-SGM's official code): right near z, wrong far out."""
    a, b = (l - z) / s, (u - z) / s
    pdf = lambda t: torch.exp(-t ** 2 / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return (pdf(a) - pdf(b)) / (s * (torch.special.ndtr(b) - torch.special.ndtr(a)).clamp_min(1e-6))


@pytest.mark.parametrize("fn, words", [
    (L._bin_score_naive, "Work in log space"),
    (clamped_like_the_official_code, "wrong far in the tails"),
    (lambda z, l, u, s: -gq.qcs_multibit_g(z, l, u, s), "wrong sign"),
    (lambda z, l, u, s: s * gq.qcs_multibit_g(z, l, u, s), "chain rule"),
    (lambda z, l, u, s: gq.qcs_multibit_g(z, l, u, s) / s, "one factor 1/s too many"),
    (lambda z, l, u, s: 2 * gq.qcs_multibit_g(z, l, u, s), "2 times the expected value"),
    (lambda z, l, u, s: gq.qcs_multibit_g(z, l, u, s)[:2], "shape of z"),
    (lambda z, l, u, s: gq.qcs_multibit_g(z, l, u, s).tolist(), "return a tensor"),
])
def test_bin_score_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_bin_score, fn, capsys)
    assert not ok and words in out, out


@pytest.mark.parametrize("fn, words", [
    (L._one_bit_naive, "log space"),
    (lambda z, y, s: gq.qcs_onebit_g(z, torch.ones_like(y), s), "max error"),   # y ignored altogether
    (lambda z, y, s: gq.qcs_onebit_g(z, y, s) * y, "factor y in front"),
    (lambda z, y, s: -gq.qcs_onebit_g(z, y, s), "minus the expected value"),
    (lambda z, y, s: gq.qcs_onebit_g(z, y, s).clamp(-100, 100), "wrong far in the wrong tail"),
])
def test_one_bit_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_one_bit_score, fn, capsys)
    assert not ok and words in out, out


@pytest.mark.parametrize("fn, words", [
    (L._tilted_standard, "standardised variable"),
    (L._tilted_second_moment, "subtract the squared mean"),
    (L._tilted_sign, "wrong sign of the shift"),
    (lambda mu, v, l, u: L._tilted(mu, v, l, u)[0], "return a tuple"),
    (lambda mu, v, l, u: (L._tilted(mu, v, l, u)[0], 2 * L._tilted(mu, v, l, u)[1]), "entry 1 of your answer: 2 times"),
])
def test_tilted_moments_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_tilted_moments, fn, capsys)
    assert not ok and words in out, out


def test_a_crash_is_reported_with_the_learners_line(capsys):
    def crashes(z, l, u, s):
        return torch.special.ndtr(u - z, s)                              # a second argument ndtr does not take
    ok, out = verdict(L.check_bin_score, crashes, capsys)
    assert not ok and "your code raised TypeError" in out and "ndtr(u - z, s)" in out, out
