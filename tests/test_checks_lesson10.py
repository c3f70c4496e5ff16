"""Lesson 10's exercise checks: a correct answer passes, each typical mistake fails with a message that
names it, and the checks' reference answers agree with the library (diffcourse.posterior.guidance.dmps
and pgdm, diffcourse.posterior.solvers.closed_form.ddnm_correction) and, for ΠGDM on a unit Gaussian
prior, with the exact likelihood score.

(tests/test_checks.py already runs every check on its reference, the stub and its listed wrong
answers; here: the words the learner reads, answers written differently from the reference, and
mistakes that are not in the checks' own lists.)
"""
from __future__ import annotations

import pytest
import torch
from _util import verdict

from diffcourse.checks import lesson10 as L
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.matrix import Matrix
from diffcourse.physics.noise import GaussianNoise
from diffcourse.posterior import guidance
from diffcourse.posterior.solvers.closed_form import ddnm_correction
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64


# ---------------------------------------------------------------- the references are the library's
@pytest.mark.parametrize("seed, N, m, n, sigma, sigma_y", L._DMPS_CASES)
def test_dmps_reference_is_the_library_guidance(seed, N, m, n, sigma, sigma_y):
    A = L._matrix(seed, m, n)
    U, s, Vh = torch.linalg.svd(A, full_matrices=False)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(N, n, generator=g, dtype=F64), torch.randn(1, m, generator=g, dtype=F64)
    lik = Likelihood(Matrix(A), GaussianNoise(sigma_y), y)
    ref = L.check_dmps_guidance_svd.reference(x, sigma, U, s, Vh, y[0], sigma_y)
    torch.testing.assert_close(ref, guidance.dmps(None, x, sigma, lik), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ref, guidance.dmps(None, x, sigma, lik, use_svd=False), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("seed, N, m, n", L._DDNM_CASES)
def test_ddnm_reference_is_the_library_correction_and_fits_y(seed, N, m, n):
    A = L._matrix(seed, m, n)
    op = Matrix(A)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(N, n, generator=g, dtype=F64)
    y = torch.randn(1, n, generator=g, dtype=F64) @ A.T
    ref = L.check_ddnm_correction.reference(x0, A, y[0])
    lib, _ = ddnm_correction(x0, y, op, op.svd(), torch.zeros(N, dtype=F64), 0.3, eta=0.85)
    torch.testing.assert_close(ref, lib, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ref @ A.T, y.expand(N, -1), rtol=0, atol=1e-10)          # A x̂0 = y
    P_null = torch.eye(n, dtype=F64) - torch.linalg.pinv(A) @ A
    torch.testing.assert_close(ref @ P_null, x0 @ P_null, rtol=0, atol=1e-10)           # null part kept


# ---------------------------------------------------------------- correct answers written differently
def test_dmps_accepts_the_dense_form(capsys):
    def mine(x, sigma, U, s, Vh, y, sigma_y):
        A = U @ torch.diag(s) @ Vh
        M = sigma_y ** 2 * torch.eye(A.shape[0], dtype=A.dtype) + sigma ** 2 * A @ A.T
        return torch.linalg.solve(M, (y - x @ A.T).T).T @ A
    assert verdict(L.check_dmps_guidance_svd, mine, capsys) == (True, "✔ dmps guidance svd: correct\n")


def test_dmps_accepts_a_loop_over_directions(capsys):
    def mine(x, sigma, U, s, Vh, y, sigma_y):
        A = (U * s) @ Vh
        r = y - x @ A.T
        out = torch.zeros_like(x)
        for i in range(len(s)):
            out += (r @ U[:, i])[:, None] * (s[i] / (sigma_y ** 2 + sigma ** 2 * s[i] ** 2)) * Vh[i]
        return out
    ok, out = verdict(L.check_dmps_guidance_svd, mine, capsys)
    assert ok, out


def test_ddnm_accepts_the_right_inverse_and_lstsq(capsys):
    def right_inverse(x0, A, y):                     # Aᵀ(AAᵀ)⁻¹ = A⁺ for a full-row-rank A
        return x0 - torch.linalg.solve(A @ A.T, (x0 @ A.T - y).T).T @ A

    def lstsq(x0, A, y):
        return x0 - torch.linalg.lstsq(A, (x0 @ A.T - y).T).solution.T
    for fn in (right_inverse, lstsq):
        ok, out = verdict(L.check_ddnm_correction, fn, capsys)
        assert ok, (fn.__name__, out)


def test_ddnm_accepts_the_range_plus_null_form(capsys):
    def mine(x0, A, y):
        P = torch.linalg.pinv(A)
        return y @ P.T + x0 - x0 @ (P @ A).T
    ok, out = verdict(L.check_ddnm_correction, mine, capsys)
    assert ok, out


# ---------------------------------------------------------------- typical mistakes, pointed messages
def _dmps(weight):
    def fn(x, sigma, U, s, Vh, y, sigma_y):
        r = y - x @ ((U * s) @ Vh).T
        return ((r @ U) * weight(s, sigma, sigma_y)) @ Vh
    return fn


@pytest.mark.parametrize("fn, words", [
    (_dmps(lambda s, sig, sy: s / sy ** 2), "not σ_y²"),
    (_dmps(lambda s, sig, sy: s / (sy ** 2 + sig * s ** 2)), "variance σ², not σ"),
    (_dmps(lambda s, sig, sy: 1 / (sy ** 2 + sig ** 2 * s ** 2)), "factor s_i in front is missing"),
    (_dmps(lambda s, sig, sy: 1 / (s * (sy ** 2 + sig ** 2 * s ** 2))), "as a pseudo-inverse would"),
    (_dmps(lambda s, sig, sy: -s / (sy ** 2 + sig ** 2 * s ** 2)), "wrong sign"),
    (_dmps(lambda s, sig, sy: 2 * s / (sy ** 2 + sig ** 2 * s ** 2)), "2 times the expected value"),
    (_dmps(lambda s, sig, sy: s / (sy ** 2 + sig ** 2 * s ** 2) + 1e-3), "max error"),
    (lambda x, sigma, U, s, Vh, y, sigma_y: x[:, :1], "shape of x"),
    (lambda x, sigma, U, s, Vh, y, sigma_y: (y - x @ ((U * s) @ Vh).T).numpy(), "return a tensor"),
])
def test_dmps_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_dmps_guidance_svd, fn, capsys)
    assert not ok and words in out, out


@pytest.mark.parametrize("fn, words", [
    (lambda x0, A, y: x0 - (x0 @ A.T - y) @ A, "pseudo-inverse A⁺"),
    (lambda x0, A, y: x0 - (x0 @ A.T - y) @ A / (A ** 2).sum(), "max error"),    # Aᵀ rescaled: still not A⁺
    (lambda x0, A, y: x0 + (x0 @ A.T - y) @ torch.linalg.pinv(A).T, "wrong sign"),
    (lambda x0, A, y: (y @ torch.linalg.pinv(A).T).expand_as(x0).clone(), "only the range-space part"),
    (lambda x0, A, y: x0 - x0 @ (torch.linalg.pinv(A) @ A).T, "only the null-space part"),
    (lambda x0, A, y: x0 + y @ torch.linalg.pinv(A).T, "replaces it"),
    (lambda x0, A, y: y @ torch.linalg.pinv(A).T, "shape of x0"),
])
def test_ddnm_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_ddnm_correction, fn, capsys)
    assert not ok and words in out, out


def test_a_crash_is_reported_with_the_learners_line(capsys):
    def crashes(x0, A, y):
        return x0 - (x0 @ A - y) @ torch.linalg.pinv(A).T        # A where Aᵀ is meant: shapes do not fit
    ok, out = verdict(L.check_ddnm_correction, crashes, capsys)
    assert not ok and "your code raised RuntimeError" in out and "x0 @ A - y" in out, out


# ---------------------------------------------------------------- exercise 3: ΠGDM
@pytest.mark.parametrize("sigma", [0.3, 1.5, 6.0])
def test_pgdm_reference_is_the_library_and_exact_for_a_unit_gaussian(sigma):
    gm = GaussianMixture.gaussian(torch.zeros(4, dtype=F64), 1.0)
    g = torch.Generator().manual_seed(5)
    A = torch.randn(2, 4, generator=g, dtype=F64)
    lik = Likelihood(Matrix(A), GaussianNoise(0.1), torch.randn(1, 2, generator=g, dtype=F64))
    x = 2 * torch.randn(3, 4, generator=g, dtype=F64)
    ref = L.check_pgdm_guidance.reference(gm.denoiser, x, sigma, A, lik.y[0], 0.1, guidance.pgdm_r2(sigma))
    torch.testing.assert_close(ref, guidance.pgdm(gm.denoiser, x, sigma, lik), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ref, guidance.exact(gm, x, sigma, lik), rtol=1e-10, atol=1e-12)


def test_pgdm_accepts_the_gradient_of_the_gaussian_log_likelihood(capsys):
    def mine(D, x, sigma, A, y, sigma_y, r2):       # -1/2 rᵀ Σ⁻¹ r with Σ fixed: the same Jᵀ Aᵀ Σ⁻¹ r
        cov = sigma_y ** 2 * torch.eye(A.shape[0], dtype=A.dtype) + r2 * A @ A.T
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            r = y - D(xg, sigma) @ A.T
            log_lik = -0.5 * (r * torch.linalg.solve(cov, r.T).T).sum()
            (gx,) = torch.autograd.grad(log_lik, xg)
        return gx
    ok, out = verdict(L.check_pgdm_guidance, mine, capsys)
    assert ok, out


def _pgdm_variant(*, cov=lambda A, sy, r2: sy ** 2 * torch.eye(A.shape[0], dtype=A.dtype) + r2 * A @ A.T,
                  detach=True, scale=1.0):
    def fn(D, x, sigma, A, y, sigma_y, r2):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = D(xg, sigma)
            x0_v = x0.detach() if detach else x0
            v = torch.linalg.solve(cov(A, sigma_y, r2), (y - x0_v @ A.T).T).T @ A
            (gx,) = torch.autograd.grad((v * x0).sum(), xg)
        return scale * gx
    return fn


@pytest.mark.parametrize("fn, words", [
    (_pgdm_variant(cov=lambda A, sy, r2: sy ** 2 * torch.eye(A.shape[0], dtype=A.dtype)), "not σ_y² I"),
    (_pgdm_variant(cov=lambda A, sy, r2: sy * torch.eye(A.shape[0], dtype=A.dtype) + r2 * A @ A.T), "not σ_y"),
    (_pgdm_variant(cov=lambda A, sy, r2: sy ** 2 * torch.eye(A.shape[0], dtype=A.dtype) + r2 * A.T @ A),
     "your code raised RuntimeError"),                                           # Aᵀ A (n, n) for A Aᵀ (m, m)
    (_pgdm_variant(detach=False), "detached x̂0"),
    (_pgdm_variant(scale=0.5), "1/2 times the expected value"),
    (lambda D, x, sigma, A, y, sigma_y, r2: L._solve_v(D(x, sigma), A, y, sigma_y, r2), "vector-Jacobian"),
    (lambda D, x, sigma, A, y, sigma_y, r2: (y - D(x, sigma) @ A.T), "shape of x"),
])
def test_pgdm_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_pgdm_guidance, fn, capsys)
    assert not ok and words in out, out
