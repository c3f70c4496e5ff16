"""Lesson 14's exercise checks: the references are the library's (MultiCoilMRI.A and AT, the uncertainty
module's coverage), answers written differently pass, and typical mistakes fail with a message that
names them.

(tests/test_checks.py already runs every check on its reference, the stub and its listed wrong
answers; here: the words the learner reads, other correct forms, and mistakes outside the lists.)
"""
from __future__ import annotations

import pytest
import torch
from _util import verdict

from diffcourse.checks import lesson14 as L
from diffcourse.physics.mri import MultiCoilMRI, fft2c, ifft2c
from diffcourse.posterior.uncertainty import coverage

F64 = torch.float64


# ---------------------------------------------------------------- the references are the library's
@pytest.mark.parametrize("seed, B, C, size", L._CASES)
def test_references_are_the_library_operator_and_adjoint(seed, B, C, size):
    x, S, mask, y = L._case(seed, B, C, size)
    op = MultiCoilMRI(mask, S).to(F64)
    torch.testing.assert_close(L.check_multicoil_forward.reference(x, S, mask), op.A(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(L.check_multicoil_adjoint.reference(y, S, mask), op.AT(y), rtol=0, atol=1e-12)
    ax = L.check_multicoil_forward.reference(x, S, mask)                  # the dot test
    lhs, rhs = (ax.conj() * y).sum(), (x.conj() * L.check_multicoil_adjoint.reference(y, S, mask)).sum()
    assert abs(lhs - rhs) < 1e-10 * abs(lhs)


def test_coverage_reference_is_the_library():
    g = torch.Generator().manual_seed(3)
    samples, truth = torch.randn(8, 3, 1, 10, 10, generator=g, dtype=F64), torch.randn(3, 1, 10, 10, generator=g, dtype=F64)
    for k in (0.5, 1.0, 2.0):
        torch.testing.assert_close(L.check_coverage.reference(samples, truth, k), coverage(samples, truth, k))


# ---------------------------------------------------------------- correct answers written differently
def test_forward_and_adjoint_accept_loops_and_einsum(capsys):
    def forward_loop(x, S, mask):
        return torch.cat([mask * fft2c(S[i] * x) for i in range(S.shape[0])], 1)

    def adjoint_einsum(y, S, mask):
        return torch.einsum("chw,bchw->bhw", S.conj(), ifft2c(mask * y))[:, None]

    def adjoint_by_autograd(y, S, mask):              # the adjoint as the gradient of Re<A x, y>
        x = torch.zeros(y.shape[0], 1, *y.shape[-2:], dtype=y.dtype, requires_grad=True)
        (g,) = torch.autograd.grad((L._forward(x, S, mask).conj() * y).real.sum(), x)
        return g
    assert verdict(L.check_multicoil_forward, forward_loop, capsys) == (True, "✔ multicoil forward: correct\n")
    for fn in (adjoint_einsum, adjoint_by_autograd):
        ok, out = verdict(L.check_multicoil_adjoint, fn, capsys)
        assert ok, (fn.__name__, out)


def test_coverage_accepts_a_loop_over_images(capsys):
    def mine(samples, truth, k):
        out = []
        for b in range(truth.shape[0]):
            s = samples[:, b]
            err = (truth[b] - s.mean(0)).abs()
            out.append((err <= k * s.std(0)).float().mean())
        return torch.stack(out)
    ok, out = verdict(L.check_coverage, mine, capsys)
    assert ok, out


# ---------------------------------------------------------------- typical mistakes, pointed messages
@pytest.mark.parametrize("fn, words", [
    (lambda x, S, mask: fft2c(S * x), "multiply F(S_i x) by the mask"),
    (lambda x, S, mask: mask * torch.fft.fft2(S * x), "centred orthonormal FFT"),
    (lambda x, S, mask: mask * fft2c(S.conj() * x), "conj(S_i) belongs to the adjoint"),
    (lambda x, S, mask: mask * fft2c((S * x).sum(1, keepdim=True)), "do not sum over the coils"),
    (lambda x, S, mask: mask * ifft2c(S * x), "max error"),
    (lambda x, S, mask: mask * fft2c(S * x)[:, :1], "one k-space per coil"),
    (lambda x, S, mask: (mask * fft2c(S * x)).numpy(), "return a tensor"),
])
def test_forward_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_multicoil_forward, fn, capsys)
    assert not ok and words in out, out


@pytest.mark.parametrize("fn, words", [
    (lambda y, S, mask: (S * ifft2c(mask * y)).sum(1, keepdim=True), "complex conjugate"),
    (lambda y, S, mask: (S.conj() * ifft2c(mask * y)).mean(1, keepdim=True), "a mean divides"),
    (lambda y, S, mask: (S.conj() * fft2c(mask * y)).sum(1, keepdim=True), "its inverse, ifft2c"),
    (lambda y, S, mask: (S.conj() * ifft2c(y)).sum(1, keepdim=True), "apply the mask"),
    (lambda y, S, mask: (S.conj() * ifft2c(mask * y)), "one image per sample"),
    (lambda y, S, mask: (S.conj() * ifft2c(mask * y)).sum(1, keepdim=True).conj(), "dot test"),
])
def test_adjoint_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_multicoil_adjoint, fn, capsys)
    assert not ok and words in out, out


@pytest.mark.parametrize("fn, words", [
    (lambda s, t, k: ((t - s.mean(0)).abs() <= k * s.std(0, correction=0)).flatten(1).double().mean(1),
     "unbiased standard deviation"),
    (lambda s, t, k: ((t - s.mean(0)).abs() <= k * s.var(0)).flatten(1).double().mean(1), "not k variances"),
    (lambda s, t, k: ((t - s[0]).abs() <= k * s.std(0)).flatten(1).double().mean(1), "not of one sample"),
    (lambda s, t, k: ((t - s.mean(0)).abs() < k * s.std(0)).flatten(1).double().mean(), "one fraction per image"),
    (lambda s, t, k: ((t - s.mean(0)).abs() <= 0.5 * k * s.std(0)).flatten(1).double().mean(1), "max error"),
])
def test_coverage_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_coverage, fn, capsys)
    assert not ok and words in out, out


def test_a_crash_is_reported_with_the_learners_line(capsys):
    def crashes(x, S, mask):
        return mask * fft2c(S * x.squeeze())                 # (C, H, W) * (B, H, W): the coil axis lost
    ok, out = verdict(L.check_multicoil_forward, crashes, capsys)
    assert not ok and "your code raised RuntimeError" in out and "x.squeeze()" in out, out
