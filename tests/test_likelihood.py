"""Likelihood(op, noise, y) and Matrix(A): log p(y | x) and its gradient against oracles.

Oracles: the noise models' own log-likelihoods, autograd and central finite differences for the
gradients, dense linear algebra (torch.linalg.pinv, explicit adjoint) for the matrix operator.
"""
from __future__ import annotations

import math

import pytest
import torch
from _util import gen

from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.masks import cartesian_mask
from diffcourse.physics.matrix import Matrix
from diffcourse.physics.mri import SingleCoilMRI
from diffcourse.physics.noise import GaussianNoise, PoissonNoise, QuantizedNoise
from diffcourse.physics.nonlinear import NeuralBlur, PhaseRetrieval, Quantizer
from diffcourse.physics.operators import Blur, Inpaint, gaussian_kernel, random_mask

F64 = torch.float64


def _fd_grad(f, x, h=1e-6):
    """Central finite differences of a scalar function of x (float64), entry by entry."""
    g = torch.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for j in range(flat.numel()):
        e = torch.zeros_like(flat)
        e[j] = h
        gflat[j] = (f((flat + e).reshape(x.shape)) - f((flat - e).reshape(x.shape))) / (2 * h)
    return g


# ------------------------------------------------------------------------------------ Matrix
def test_matrix_is_adjoint_and_its_svd_reconstructs_and_inverts():
    M = torch.randn(5, 7, generator=gen(0), dtype=F64)
    op = Matrix(M)
    x, y = torch.randn(3, 7, generator=gen(1), dtype=F64), torch.randn(3, 5, generator=gen(2), dtype=F64)
    assert torch.allclose((op.A(x) * y).sum(1), (x * op.AT(y)).sum(1), atol=1e-12)
    svd = op.svd()
    torch.testing.assert_close(svd.U(svd.s * svd.VT(x)), op.A(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.pinv(y), y @ torch.linalg.pinv(M).T, rtol=1e-10, atol=1e-10)
    assert op.shape == (5, 7)


def test_matrix_refuses_wrong_shapes_and_non_finite_entries():
    op = Matrix(torch.eye(3))
    with pytest.raises(ValueError, match="x must be"):
        op.A(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="y must be"):
        op.AT(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="A must be finite"):
        Matrix(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="A must have 2"):
        Matrix(torch.zeros(3))


# --------------------------------------------------------------------------- log p and grad
def _linear_cases():
    g = gen(3)
    img = torch.rand(2, 1, 8, 8, generator=g, dtype=F64)
    return [
        ("matrix", Matrix(torch.randn(4, 6, generator=g, dtype=F64)), torch.randn(2, 6, generator=g, dtype=F64)),
        ("inpaint", Inpaint(random_mask(8, 0.5, gen(4)).to(F64)), img),
        ("blur", Blur(gaussian_kernel(5, 1.0).to(F64)), img),
        ("mri", SingleCoilMRI(cartesian_mask(8, 2, generator=gen(5)).to(F64)), img),
    ]


@pytest.mark.parametrize("name,op,x", _linear_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_gaussian_gradient_closed_form_equals_autograd_and_log_prob_matches_the_noise_model(name, op, x):
    noise = GaussianNoise(0.3)
    lik = Likelihood.measure(op, noise, x, generator=gen(6))
    x1 = x + 0.1 * torch.randn(x.shape, generator=gen(7), dtype=F64)
    torch.testing.assert_close(lik.log_prob(x1), noise.log_likelihood(lik.y, op.A(x1)))
    xg = x1.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(noise.log_likelihood(lik.y, op.A(xg)).sum(), xg)
    closed = lik.grad(x1)
    assert closed.dtype == x1.dtype and not closed.is_complex()
    torch.testing.assert_close(closed, auto, rtol=1e-10, atol=1e-10)


def test_poisson_and_quantized_gradients_equal_finite_differences():
    x = 0.2 + torch.rand(1, 1, 3, 3, generator=gen(8), dtype=F64)
    op = Blur(gaussian_kernel(3, 0.8).to(F64))
    lik = Likelihood.measure(op, PoissonNoise(50.0), x, generator=gen(9))
    x1 = x * 1.1
    torch.testing.assert_close(lik.grad(x1), _fd_grad(lambda v: lik.log_prob(v).sum(), x1), rtol=1e-6, atol=1e-6)
    A = Matrix(torch.randn(5, 4, generator=gen(10), dtype=F64))
    qlik = Likelihood.measure(A, QuantizedNoise(Quantizer.uniform(2, -2.0, 2.0), 0.2),
                              torch.randn(1, 4, generator=gen(11), dtype=F64), generator=gen(12))
    z = torch.randn(1, 4, generator=gen(13), dtype=F64)
    torch.testing.assert_close(qlik.grad(z), _fd_grad(lambda v: qlik.log_prob(v).sum(), z), rtol=1e-6, atol=1e-6)


def test_nonlinear_operators_plug_in_through_the_same_interface():
    x = torch.rand(1, 1, 6, 6, generator=gen(14), dtype=F64)
    for op in (PhaseRetrieval(), NeuralBlur(seed=0).to(F64)):
        assert not op.linear
        lik = Likelihood.measure(op, GaussianNoise(0.05), x, generator=gen(15))
        assert not lik.linear
        x1 = x + 0.05
        g = lik.grad(x1)
        fd = _fd_grad(lambda v: lik.log_prob(v).sum(), x1)
        torch.testing.assert_close(g, fd, rtol=1e-5, atol=1e-4)


def test_a_single_measurement_is_shared_by_a_batch_of_states():
    op = Matrix(torch.randn(3, 4, generator=gen(16), dtype=F64))
    lik = Likelihood.measure(op, GaussianNoise(0.1), torch.randn(1, 4, generator=gen(17), dtype=F64),
                             generator=gen(18))
    xs = torch.randn(5, 4, generator=gen(19), dtype=F64)
    both = lik.grad(xs)
    for i in range(5):
        torch.testing.assert_close(both[i:i + 1], lik.grad(xs[i:i + 1]))
    expected = -0.5 * ((lik.y - op.A(xs)) ** 2).sum(1) / 0.01 - 1.5 * math.log(2 * math.pi * 0.01)
    torch.testing.assert_close(lik.log_prob(xs), expected)


def test_bad_measurements_are_refused_with_the_argument_named():
    op = Matrix(torch.eye(3))
    with pytest.raises(ValueError, match="y must be finite"):
        Likelihood(op, GaussianNoise(0.1), torch.tensor([[1.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="y must be >= 0"):
        Likelihood(op, PoissonNoise(10.0), torch.tensor([[1.0, -1.0, 0.0]]))
    with pytest.raises(TypeError, match="op must be"):
        Likelihood(torch.eye(3), GaussianNoise(0.1), torch.zeros(1, 3))
    with pytest.raises(TypeError, match="noise must be"):
        Likelihood(op, 0.1, torch.zeros(1, 3))
    lik = Likelihood(op, GaussianNoise(0.1), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="y has shape"):
        lik.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="y"):
        Likelihood(op, GaussianNoise(0.1), torch.zeros(1, 4)).grad(torch.zeros(1, 3))


@pytest.mark.parametrize("kind", ["inpaint", "mri"])
def test_simulated_data_are_zero_where_nothing_is_measured_and_noisy_where_it_is(kind):
    mask = random_mask(32, 0.3, gen(40)).to(F64)
    op = Inpaint(mask) if kind == "inpaint" else SingleCoilMRI(mask)
    x = torch.rand(2, 1, 32, 32, generator=gen(41), dtype=F64)
    lik = Likelihood.measure(op, GaussianNoise(0.2), x, generator=gen(42))
    off = (1 - mask).bool().expand_as(lik.y)
    assert bool((lik.y[off] == 0).all())
    r = (lik.y - op.A(x))[~off]
    r = torch.view_as_real(r).flatten() if r.is_complex() else r
    # Gaussian noise of std 0.2 per real coordinate on the measured entries (~600 of them per image)
    assert abs(r.std().item() - 0.2) < 0.02
