"""Noise models: log-likelihoods against scipy.stats, gradients against closed forms and finite
differences, sampling statistics, determinism under a seed, batch invariance."""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats
from scipy.integrate import quad

from diffcourse.physics.noise import (GaussianNoise, PoissonNoise, QuantizedNoise,
                                      log_normal_interval)
from diffcourse.physics.nonlinear import Quantizer

from _util import gen

F64 = torch.float64


# ---------------------------------------------------------------- Gaussian
def test_gaussian_log_likelihood_matches_scipy():
    Ax = torch.randn(3, 2, 4, generator=gen(1), dtype=F64)
    y = Ax + 0.3 * torch.randn(Ax.shape, generator=gen(2), dtype=F64)
    ours = GaussianNoise(0.3).log_likelihood(y, Ax)
    ref = stats.norm.logpdf(y.numpy(), Ax.numpy(), 0.3).reshape(3, -1).sum(1)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-12)
    sig = torch.tensor([0.1, 0.5, 2.0], dtype=F64)  # one sigma_y per sample
    ref = np.stack([stats.norm.logpdf(y[i].numpy(), Ax[i].numpy(), s).sum()
                    for i, s in enumerate(sig.tolist())])
    np.testing.assert_allclose(GaussianNoise(sig).log_likelihood(y, Ax).numpy(), ref, rtol=1e-12)


def test_gaussian_complex_log_likelihood_counts_both_parts():
    Ax = torch.randn(2, 5, generator=gen(3), dtype=torch.complex128)
    y = torch.randn(2, 5, generator=gen(4), dtype=torch.complex128)
    ours = GaussianNoise(0.7).log_likelihood(y, Ax)
    ref = (stats.norm.logpdf(y.real.numpy(), Ax.real.numpy(), 0.7)
           + stats.norm.logpdf(y.imag.numpy(), Ax.imag.numpy(), 0.7)).sum(1)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-12)


def test_gaussian_gradient_is_the_residual_over_variance():
    Ax = torch.randn(2, 6, generator=gen(5), dtype=F64, requires_grad=True)
    y = torch.randn(2, 6, generator=gen(6), dtype=F64)
    noise = GaussianNoise(0.4)
    (g,) = torch.autograd.grad(noise.log_likelihood(y, Ax).sum(), Ax)
    torch.testing.assert_close(g, (y - Ax.detach()) / 0.16)
    assert torch.autograd.gradcheck(lambda a: noise.log_likelihood(y, a), (Ax,))


def test_gaussian_samples_have_the_right_statistics_and_are_seeded():
    Ax = torch.zeros(2, 20000, dtype=F64)
    noise = GaussianNoise(torch.tensor([0.5, 2.0], dtype=F64))
    y = noise.sample(Ax, gen(7))
    assert torch.equal(y, noise.sample(Ax, gen(7)))
    std = y.std(1)
    assert abs(std[0] - 0.5) < 0.02 and abs(std[1] - 2.0) < 0.08  # 5 standard errors
    yc = GaussianNoise(1.0).sample(torch.zeros(1, 20000, dtype=torch.complex128), gen(8))
    assert abs(yc.real.std() - 1) < 0.03 and abs(yc.imag.std() - 1) < 0.03
    assert GaussianNoise(0.0).sample(Ax[:, :3], gen(9)).abs().max() == 0


# ---------------------------------------------------------------- Poisson
def test_poisson_log_likelihood_matches_scipy():
    scale = 20.0
    Ax = torch.rand(3, 7, generator=gen(10), dtype=F64) + 0.05
    y = PoissonNoise(scale).sample(Ax, gen(11))
    ours = PoissonNoise(scale).log_likelihood(y, Ax)
    k = np.rint(y.numpy() * scale)
    ref = stats.poisson.logpmf(k, Ax.numpy() * scale).sum(1)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-12)
    # zero rate and zero count: probability one
    assert PoissonNoise(scale).log_likelihood(torch.zeros(1, 3), torch.zeros(1, 3)).item() == 0


def test_poisson_gradient_matches_closed_form_and_finite_differences():
    scale = 5.0
    Ax = (torch.rand(2, 4, generator=gen(12), dtype=F64) + 0.2).requires_grad_()
    y = torch.tensor([[0, 1, 2, 3], [4, 0, 1, 0]], dtype=F64) / scale
    noise = PoissonNoise(scale)
    (g,) = torch.autograd.grad(noise.log_likelihood(y, Ax).sum(), Ax)
    torch.testing.assert_close(g, scale * y / Ax.detach() - scale)  # k / Ax - scale
    assert torch.autograd.gradcheck(lambda a: noise.log_likelihood(y, a), (Ax,))


def test_poisson_samples_are_counts_with_the_right_moments():
    scale, rate = 10.0, 0.8
    y = PoissonNoise(scale).sample(torch.full((1, 40000), rate, dtype=F64), gen(13))
    k = y * scale
    assert torch.equal(k, k.round()) and bool((k >= 0).all())
    assert abs(y.mean() - rate) < 5 * math.sqrt(rate / scale / 40000)
    assert abs(y.var() - rate / scale) < 0.05 * rate / scale


# ---------------------------------------------------------------- quantized
def test_log_normal_interval_matches_scipy_including_tails():
    a = torch.tensor([-1.0, -np.inf, 2.0, -40.0, 30.0, 5.0, -np.inf], dtype=F64)
    b = torch.tensor([0.5, 0.3, 2.5, -39.0, np.inf, 5.000001, np.inf], dtype=F64)
    ours = log_normal_interval(a, b).numpy()
    ref = [np.log(stats.norm.cdf(0.5) - stats.norm.cdf(-1.0)), stats.norm.logcdf(0.3),
           np.log(stats.norm.sf(2.0) - stats.norm.sf(2.5)),
           stats.norm.logcdf(-39.0) + np.log1p(-np.exp(stats.norm.logcdf(-40.0) - stats.norm.logcdf(-39.0))),
           stats.norm.logsf(30.0), np.log(stats.norm.sf(5.0) - stats.norm.sf(5.000001)), 0.0]
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_quantized_log_likelihood_matches_scipy():
    q = Quantizer.uniform(2, -1.0, 1.0)
    noise = QuantizedNoise(q, 0.3)
    Ax = torch.randn(3, 6, generator=gen(14), dtype=F64)
    k = noise.sample(Ax, gen(15))
    l, u = q.bounds(k, F64)
    ref = np.log(stats.norm.cdf((u - Ax).numpy() / 0.3) - stats.norm.cdf((l - Ax).numpy() / 0.3)).sum(1)
    np.testing.assert_allclose(noise.log_likelihood(k, Ax).numpy(), ref, rtol=1e-10)


def test_quantized_gradient_matches_qcs_sgm_closed_form():
    """QCS-SGM (Meng & Kabashima 2023) g_m = [phi(u~) - phi(l~)] / (s [Phi(u~) - Phi(l~)]) with
    u~ = (z - u)/s, l~ = (z - l)/s, written with exp(-t^2/2) as in the paper."""
    q = Quantizer([-0.2, 0.7])
    s = 0.4
    z = torch.tensor([[0.3, -1.0, 1.5, 0.69]], dtype=F64, requires_grad=True)
    k = torch.tensor([[1, 0, 2, 1]])
    (g,) = torch.autograd.grad(QuantizedNoise(q, s).log_likelihood(k, z).sum(), z)
    l, u = q.bounds(k, F64)
    zt = z.detach()
    ut, lt = (zt - u) / s, (zt - l) / s
    num = torch.exp(-ut ** 2 / 2) - torch.exp(-lt ** 2 / 2)
    integral = torch.tensor([[quad(lambda t: math.exp(-t * t / 2), a, b)[0]
                              for a, b in zip(lt[0].tolist(), ut[0].tolist())]], dtype=F64)
    torch.testing.assert_close(g, num / (s * integral), rtol=1e-8, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a: QuantizedNoise(q, s).log_likelihood(k, a), (z,))


def test_fine_quantization_tends_to_the_gaussian_score():
    """Bins of width w around y: g -> (y - z) / s^2 (card 24 test 2), with an O(w^2) error."""
    s, y = 0.5, 0.9
    errors = []
    for width in (1e-1, 1e-2, 1e-3):
        z = torch.tensor([[0.2]], dtype=F64, requires_grad=True)
        q = Quantizer([y - width / 2, y + width / 2])
        ll = QuantizedNoise(q, s).log_likelihood(torch.tensor([[1]]), z)
        (g,) = torch.autograd.grad(ll.sum(), z)
        errors.append(abs(g.item() - (y - 0.2) / s ** 2))
        assert errors[-1] < width ** 2
    assert 80 < errors[0] / errors[1] < 120 and 80 < errors[1] / errors[2] < 120


def test_quantized_bin_frequencies_match_the_likelihood():
    q = Quantizer.uniform(2, -1.0, 1.0)
    noise = QuantizedNoise(q, 0.5)
    n = 40000
    Ax = torch.full((1, n), 0.2, dtype=F64)
    k = noise.sample(Ax, gen(16))
    freq = torch.bincount(k[0], minlength=4).double() / n
    probs = torch.stack([noise.log_likelihood(torch.full((1, 1), j), Ax[:, :1]).exp()[0]
                         for j in range(4)])
    assert abs(probs.sum().item() - 1) < 1e-12
    assert (freq - probs).abs().max() < 5 * math.sqrt(0.25 / n)


def test_noise_models_are_batch_invariant():
    Ax = torch.rand(2, 5, generator=gen(17), dtype=F64) + 0.1
    q = Quantizer.sign()
    for noise, y in ((GaussianNoise(0.2), Ax + 0.1), (PoissonNoise(4.0), torch.ones_like(Ax)),
                     (QuantizedNoise(q, 0.3), torch.ones_like(Ax, dtype=torch.long))):
        both = noise.log_likelihood(y, Ax)
        torch.testing.assert_close(torch.cat([noise.log_likelihood(y[:1], Ax[:1]),
                                              noise.log_likelihood(y[1:], Ax[1:])]), both)
