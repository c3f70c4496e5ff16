"""Nonlinear forward models: phase retrieval, quantizers, the seeded neural blur."""
from __future__ import annotations

import numpy as np
import torch

from diffcourse.physics.nonlinear import NeuralBlur, PhaseRetrieval, Quantizer

from _util import gen

F64 = torch.float64


# ---------------------------------------------------------------- phase retrieval
def test_phase_retrieval_is_the_oversampled_fourier_magnitude():
    x = torch.rand(2, 3, 6, 5, generator=gen(1), dtype=F64)
    y = PhaseRetrieval(2.0).A(x)
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (3, 3), (2, 2)))  # round(5/2) = 2 per side
    ref = np.abs(np.fft.fft2(padded)) / np.sqrt(12 * 9)
    assert y.shape == (2, 3, 12, 9)
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-13)


def test_phase_retrieval_trivial_ambiguities():
    op = PhaseRetrieval()
    x = torch.rand(1, 1, 8, 8, generator=gen(2), dtype=F64)
    torch.testing.assert_close(op.A(-x), op.A(x))  # global sign
    torch.testing.assert_close(op.A(x.flip((-2, -1))), op.A(x))  # 180-degree rotation
    assert (op.A(x.flip(-1)) - op.A(x)).abs().max() > 1e-3  # a mirror image is not an ambiguity


def test_phase_retrieval_gradient_matches_finite_differences():
    x = torch.rand(1, 1, 4, 4, generator=gen(3), dtype=F64) + 0.5
    assert torch.autograd.gradcheck(PhaseRetrieval().A, (x.requires_grad_(),))


# ---------------------------------------------------------------- quantizer
def test_uniform_quantizer_matches_qcs_sgm_definition():
    q = Quantizer.uniform(3, -1.0, 3.0)  # delta = 0.5, 8 bins
    torch.testing.assert_close(q.thresholds, torch.arange(1, 8, dtype=F64) * 0.5 - 1)
    torch.testing.assert_close(q.levels, torch.arange(8, dtype=F64) * 0.5 - 0.75)
    z = torch.randn(1000, generator=gen(4), dtype=F64) * 2 + 1
    k = q.A(z)
    np.testing.assert_array_equal(k.numpy(), np.digitize(z.numpy(), q.thresholds.numpy()))
    l, u = q.bounds(k, dtype=F64)
    assert bool(((l <= z) & (z < u)).all())
    assert torch.isinf(q.bounds(torch.tensor([0, 7]))[0][0]) and torch.isinf(q.bounds(torch.tensor([7]))[1][0])
    inside = (z > -1) & (z < 3)
    assert (q.dequantize(k, F64) - z)[inside].abs().max() <= 0.25 + 1e-12


def test_value_on_a_threshold_goes_to_the_upper_bin():
    q = Quantizer([0.0, 1.0])
    assert q.A(torch.tensor([-1e-9, 0.0, 0.5, 1.0, 7.0])).tolist() == [0, 1, 1, 2, 2]


def test_sign_quantizer():
    q = Quantizer.sign()
    z = torch.tensor([-2.0, -1e-6, 0.0, 3.0])
    k = q.A(z)
    assert k.tolist() == [0, 0, 1, 1]
    assert q.dequantize(k).tolist() == [-1.0, -1.0, 1.0, 1.0]
    l, u = q.bounds(k)
    assert l.tolist()[2:] == [0.0, 0.0] and u.tolist()[:2] == [0.0, 0.0]


def test_default_levels_are_bin_midpoints():
    q = Quantizer([0.0, 1.0, 3.0])
    torch.testing.assert_close(q.levels, torch.tensor([-0.5, 0.5, 2.0, 4.0], dtype=F64))


# ---------------------------------------------------------------- neural blur
def test_neural_blur_is_seeded_and_deterministic():
    x = torch.rand(2, 1, 16, 16, generator=gen(5))
    a, b, c = NeuralBlur(seed=0), NeuralBlur(seed=0), NeuralBlur(seed=1)
    assert torch.equal(a.A(x), b.A(x))
    assert (a.A(x) - c.A(x)).abs().max() > 1e-3


def test_neural_blur_is_nonlinear_smoothing_and_zero_at_zero():
    op = NeuralBlur(seed=0).to(F64)
    x = torch.rand(1, 1, 24, 24, generator=gen(6), dtype=F64)
    assert op.A(torch.zeros_like(x)).abs().max() < 1e-12
    y1, y2 = op.A(x), op.A(2 * x)
    assert (y2 - 2 * y1).abs().max() > 1e-2  # not linear
    tv = lambda t: t.diff(dim=-1).abs().mean() + t.diff(dim=-2).abs().mean()
    assert tv(y1) < 0.6 * tv(x)  # it blurs
    eps = 1e-6  # unit gain at 0: a small constant image passes unchanged away from the border
    small = op.A(torch.full_like(x, eps))[..., 8:-8, 8:-8] / eps
    torch.testing.assert_close(small, torch.ones_like(small), rtol=0, atol=1e-4)


def test_neural_blur_gradient_and_batch_invariance():
    op = NeuralBlur(seed=2).to(F64)
    x = torch.rand(2, 2, 8, 8, generator=gen(7), dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(op.A, (x,))
    y = op.A(x)
    torch.testing.assert_close(op.A(x[1:, 1:]), y[1:, 1:], rtol=0, atol=1e-14)
