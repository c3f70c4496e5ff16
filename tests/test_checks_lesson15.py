"""Lesson 15's exercise checks: a correct answer passes, each typical mistake fails with a message that
names it, and the checks' reference answers agree with the library (diffcourse.posterior.tv3d:
diff_z_circ, diff_z_circ_T and admm_tv_z_step on a SliceWise operator) and with a dense adjoint test.

(tests/test_checks.py already runs every check on its reference, the stub and its listed wrong
answers; here: the words the learner reads, answers written differently from the reference, and
mistakes that are not in the checks' own lists.)
"""
from __future__ import annotations

import pytest
import torch
from _util import verdict

from diffcourse.checks import lesson15 as L
from diffcourse.physics.volume import SliceWise
from diffcourse.posterior.classical import cg
from diffcourse.posterior.tv3d import admm_tv_z_step, diff_z_circ, diff_z_circ_T

F64 = torch.float64


# ---------------------------------------------------------------- the references are the library's
def test_dz_references_are_the_library_pair_and_adjoint():
    x = L._volume(0, (2, 3, 4, 2, 5))
    p = L._volume(1, (2, 3, 4, 2, 5))
    torch.testing.assert_close(L.check_diff_z_circ.reference(x), diff_z_circ(x)[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(L.check_diff_z_circ_T.reference(p), diff_z_circ_T(p.unsqueeze(1)), rtol=0, atol=0)
    lhs = (L.check_diff_z_circ.reference(x) * p).flatten(1).sum(1)
    rhs = (x * L.check_diff_z_circ_T.reference(p)).flatten(1).sum(1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


class Dense:
    """The check's dense per-slice matrix as a 2-D operator on (N, 1, 3, 3) slices, for SliceWise."""

    def __init__(self, M):
        self.M = M

    def A(self, v):
        return v.flatten(1) @ self.M.T

    def AT(self, r):
        return (r @ self.M).reshape(-1, 1, 3, 3)


@pytest.mark.parametrize("seed, B, D, m, lam, rho, n_cg", L._ADMM_CASES)
def test_admm_reference_is_the_library_step(seed, B, D, m, lam, rho, n_cg):
    A, AT, y, x, z, w = L._problem(seed, B, D, m)
    ref = L.check_admm_tv_z_step.reference(A, AT, L._diff_z_circ, L._diff_z_circ_T, y, x, z, w, lam, rho, n_cg)
    M = torch.randn(m, 9, generator=torch.Generator().manual_seed(seed), dtype=F64)   # the same matrix
    op = SliceWise(Dense(M), D)
    torch.testing.assert_close(op.A(x), A(x), rtol=0, atol=1e-12)
    lib = admm_tv_z_step(op, y, x, z.unsqueeze(1), w.unsqueeze(1), lam=lam, rho=rho, n_iter_cg=n_cg)
    for r, l in zip(ref, (lib[0], lib[1][:, 0], lib[2][:, 0])):
        torch.testing.assert_close(r, l, rtol=1e-10, atol=1e-12)


def test_many_admm_iterations_decrease_the_objective():
    """Run as ADMM is meant to be run, the reference step drives 1/2||y - A x||² + λ||D_z x||₁ down."""
    A, AT, y, x, z, w = L._problem(10, 2, 4, 12)
    lam, rho = 0.3, 1.5
    f = lambda v: 0.5 * (A(v) - y).square().sum() + lam * L._diff_z_circ(v).abs().sum()
    start = f(x)
    for _ in range(200):
        x, z, w = L.check_admm_tv_z_step.reference(A, AT, L._diff_z_circ, L._diff_z_circ_T, y, x, z, w, lam, rho, 5)
    assert f(x) < 0.5 * start and (L._diff_z_circ(x) - z).abs().max() < 1e-6    # and the split is consistent


# ---------------------------------------------------------------- correct answers written differently
def test_dz_accepts_cat_and_loop_forms(capsys):
    def cat_form(x):
        return torch.cat([x[:, :, 1:], x[:, :, :1]], 2) - x

    def loop_form(x):
        D = x.shape[2]
        return torch.stack([x[:, :, (d + 1) % D] - x[:, :, d] for d in range(D)], 2)
    for fn in (cat_form, loop_form):
        ok, out = verdict(L.check_diff_z_circ, fn, capsys)
        assert ok, out

    def adjoint_by_cat(p):
        return torch.cat([p[:, :, -1:], p[:, :, :-1]], 2) - p
    ok, out = verdict(L.check_diff_z_circ_T, adjoint_by_cat, capsys)
    assert ok and out == "✔ diff z circ T: correct\n", out


def test_admm_accepts_a_hand_written_cg(capsys):
    def mine(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg):
        M = lambda v: AT(A(v)) + rho * DzT(Dz(v))
        r = AT(y) + rho * DzT(z - w) - M(x)
        p = r.clone()
        for _ in range(n_cg):
            Mp = M(p)
            rr = (r * r).flatten(1).sum(1).reshape(-1, 1, 1, 1, 1)
            a = rr / (p * Mp).flatten(1).sum(1).reshape(-1, 1, 1, 1, 1)
            x, r_new = x + a * p, r - a * Mp
            p = r_new + (r_new * r_new).flatten(1).sum(1).reshape(-1, 1, 1, 1, 1) / rr * p
            r = r_new
        v = Dz(x) + w
        z = v.sign() * torch.relu(v.abs() - lam / rho)
        return x, z, w + Dz(x) - z
    ok, out = verdict(L.check_admm_tv_z_step, mine, capsys)
    assert ok, out


def test_admm_accepts_the_library_cg(capsys):
    def mine(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg):
        x = cg(lambda v: AT(A(v)) + rho * DzT(Dz(v)), AT(y) + rho * DzT(z - w), x, n_iter=n_cg, tol=0.0)
        z = torch.nn.functional.softshrink(Dz(x) + w, lam / rho)
        return x, z, w + Dz(x) - z
    ok, out = verdict(L.check_admm_tv_z_step, mine, capsys)
    assert ok, out


# ---------------------------------------------------------------- typical mistakes, pointed messages
@pytest.mark.parametrize("fn, words", [
    (lambda x: x.roll(1, 2) - x, "torch.roll(x, -1, dims=2)"),     # roll the other way: x_{d-1} - x_d
    (lambda x: torch.roll(x, -1, dims=4) - x, "max error"),        # along W
    (lambda x: 2 * (torch.roll(x, -1, dims=2) - x), "2 times the expected value"),
    (lambda x: (torch.roll(x, -1, dims=2) - x).unsqueeze(1), "shape of x"),   # the library's component dim
    (lambda x: torch.diff(x, dim=2), "shape of x"),                # D - 1 differences
])
def test_dz_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_diff_z_circ, fn, capsys)
    assert not ok and words in out, out


@pytest.mark.parametrize("fn, words", [
    (lambda p: -(torch.roll(p, -1, dims=2) - p), "max error"),     # minus D_z: not the adjoint either
    (lambda p: torch.roll(p, 1, dims=3) - p, "max error"),
    (lambda p: p, "max error"),
])
def test_dzT_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_diff_z_circ_T, fn, capsys)
    assert not ok and words in out, out


def _admm_variant(*, shrink=lambda v, k: torch.sign(v) * (v.abs() - k).clamp_min(0), rho_normal=True):
    def fn(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg):
        M = (lambda v: AT(A(v)) + rho * DzT(Dz(v))) if rho_normal else (lambda v: AT(A(v)) + DzT(Dz(v)))
        x = cg(M, AT(y) + rho * DzT(z - w), x, n_iter=n_cg, tol=0.0)
        z = shrink(Dz(x) + w, lam / rho)
        return x, z, w + Dz(x) - z
    return fn


@pytest.mark.parametrize("fn, words", [
    (_admm_variant(shrink=lambda v, k: v * (v.abs() > k)), "max error"),            # hard threshold
    (_admm_variant(rho_normal=False), "max error"),
    (lambda A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg: (x, z), "triple"),
    (lambda A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg: (x, z[:, 0], w), "volume's shape"),
])
def test_admm_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_admm_tv_z_step, fn, capsys)
    assert not ok and words in out, out


def test_a_crash_is_reported_with_the_learners_line(capsys):
    def crashes(A, AT, Dz, DzT, y, x, z, w, lam, rho, n_cg):
        return AT(x), z, w                                         # A^T of a volume: shapes do not fit
    ok, out = verdict(L.check_admm_tv_z_step, crashes, capsys)
    assert not ok and "your code raised" in out and "AT(x)" in out, out
