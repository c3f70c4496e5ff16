"""Exponential-family Tweedie (Noise2Score) against conjugate-prior closed forms and quadrature.

Every score l'(y) below is the derivative (by autograd, or by finite differences of a quadrature) of
the log-density of the noisy marginal; every posterior expectation is computed by numerical
quadrature of prior x likelihood (scipy), independently of the formulas in ``tweedie``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from diffcourse.prior import tweedie
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64


# densities written out (scipy.stats is slow per call inside quad)
def gamma_pdf(a, b):
    """Gamma(shape a, rate b) density."""
    return lambda x: math.exp((a - 1) * math.log(x) - b * x + a * math.log(b) - math.lgamma(a)) if x > 0 else 0.0


def normal_pdf(x, m, var):
    return math.exp(-0.5 * (x - m) ** 2 / var) / math.sqrt(2 * math.pi * var)


def poisson_pmf(k):
    return lambda x: math.exp(k * math.log(x) - x - math.lgamma(k + 1)) if x > 0 else float(k == 0)


def _autograd_score(log_p, y: torch.Tensor) -> torch.Tensor:
    y = y.clone().requires_grad_(True)
    return torch.autograd.grad(log_p(y).sum(), y)[0]


def _posterior_expectation(f, prior_pdf, lik, lo, hi, epsrel=1e-11):
    """E[f(x) | y] = int f p(x) p(y|x) dx / int p(x) p(y|x) dx by adaptive quadrature."""
    num = integrate.quad(lambda x: f(x) * prior_pdf(x) * lik(x), lo, hi, limit=200, epsabs=0, epsrel=epsrel)[0]
    den = integrate.quad(lambda x: prior_pdf(x) * lik(x), lo, hi, limit=200, epsabs=0, epsrel=epsrel)[0]
    return num / den


# ------------------------------------------------------------------------------------ Gaussian
def test_gaussian_tweedie_is_the_conjugate_posterior_mean():
    mu, tau = 0.7, 1.3
    g = torch.Generator().manual_seed(0)
    y = 3 * torch.randn(4, 3, generator=g, dtype=F64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0], dtype=F64)                 # one sigma per sample
    s2 = sigma[:, None] ** 2
    score = -(y - mu) / (tau ** 2 + s2)                                 # marginal N(mu, tau^2 + sigma^2)
    expected = (tau ** 2 * y + s2 * mu) / (tau ** 2 + s2)
    torch.testing.assert_close(tweedie.gaussian(y, score, sigma), expected, rtol=0, atol=1e-13)
    # a Python float sigma means the same sigma for every sample
    torch.testing.assert_close(tweedie.gaussian(y, score, 0.5)[1], expected[1], rtol=0, atol=1e-13)


def test_gaussian_tweedie_is_the_posterior_mean_for_a_mixture_prior():
    gm = GaussianMixture(torch.tensor([0.3, 0.7], dtype=F64), torch.tensor([[-1.0], [2.0]], dtype=F64),
                         torch.tensor([[[0.2]], [[0.5]]], dtype=F64))
    sigma = 0.8
    y = torch.linspace(-3, 4, 8, dtype=F64)[:, None]
    x_hat = tweedie.gaussian(y, gm.score(y, sigma), sigma)
    prior = lambda x: 0.3 * normal_pdf(x, -1, 0.2) + 0.7 * normal_pdf(x, 2, 0.5)
    for yi, xi in zip(y[:, 0].tolist(), x_hat[:, 0].tolist()):
        oracle = _posterior_expectation(lambda x: x, prior, lambda x: normal_pdf(yi, x, sigma ** 2), -12, 12)
        assert abs(xi - oracle) < 1e-8


# ------------------------------------------------------------------------------------ Poisson
def _poisson_gamma_log_marginal(a, b):
    """log p(y) of y | x ~ Poisson(x), x ~ Gamma(shape a, rate b): negative binomial, continuous in y."""
    return lambda y: (torch.lgamma(a + y) - torch.lgamma(y + 1) - math.lgamma(a)
                      + a * math.log(b / (1 + b)) - y * math.log(1 + b))


@pytest.mark.parametrize("a,b", [(3.0, 2.0), (0.8, 0.5)])
def test_poisson_score_gives_exp_of_posterior_mean_log(a, b):
    """Card 1 test 2 (i): l'(y) + psi(y + 1) = E[log x | y] (generalised Tweedie, eta = log x)."""
    y = torch.arange(0.0, 12.0, dtype=F64)
    score = _autograd_score(_poisson_gamma_log_marginal(a, b), y)
    for yi, si in zip(y.tolist(), score.tolist()):
        e_log = _posterior_expectation(math.log, gamma_pdf(a, b), poisson_pmf(yi), 0, 80)
        assert abs(si + special.digamma(yi + 1) - e_log) < 1e-8


def test_poisson_noise2score_is_biased_low_by_about_half_a_count():
    """Card 1 test 2 (ii): (y + 1/2) e^{l'} vs E[x | y]: relative bias ~ -1/(2 (a + y)), always low.

    Measured for a = 3, b = 2: -25.3 % at y = 0, -8.5 % at y = 3, -3.9 % at y = 10, -1.2 % at y = 40;
    the absolute bias tends to 1/(2 (1 + b)), half a count times the posterior shrinkage.
    """
    a, b = 3.0, 2.0
    y = torch.arange(0.0, 41.0, dtype=F64)
    score = _autograd_score(_poisson_gamma_log_marginal(a, b), y)
    x_hat = tweedie.poisson(y, score)
    post_mean = (a + y) / (1 + b)                                       # conjugate: x | y ~ Gamma(a + y, 1 + b)
    rel = x_hat / post_mean - 1
    assert bool((rel < 0).all())                                         # biased low everywhere
    assert bool((rel[1:] > rel[:-1]).all())                              # and less so as counts grow
    tail = y >= 2
    assert float(((rel + 1 / (2 * (a + y))) * (a + y) ** 2)[tail].abs().max()) < 0.11
    assert float(rel[0]) < -0.2                                           # a quarter too low at y = 0
    assert abs(float(post_mean[-1] - x_hat[-1]) - 1 / (2 * (1 + b))) < 0.01


def test_scaled_poisson_uses_the_score_of_the_observed_y():
    """y = zeta Poisson(x / zeta): the estimate is zeta times the count-domain estimate."""
    a, b, zeta = 4.0, 3.0, 0.05                                           # x ~ Gamma(a, rate b)
    counts = torch.arange(0.0, 200.0, 7.0, dtype=F64)
    log_pc = _poisson_gamma_log_marginal(a, b * zeta)                     # x / zeta ~ Gamma(a, rate b zeta)
    y = zeta * counts
    score_y = _autograd_score(lambda t: log_pc(t / zeta) - math.log(zeta), y)
    x_hat = tweedie.poisson(y, score_y, zeta=zeta)
    torch.testing.assert_close(x_hat, zeta * tweedie.poisson(counts, _autograd_score(log_pc, counts)),
                               rtol=1e-12, atol=0)
    post_mean = zeta * (a + counts) / (1 + b * zeta)                      # conjugate Gamma posterior
    assert bool((x_hat < post_mean).all())
    bias = post_mean - x_hat                                              # -> zeta / (2 (1 + b zeta))
    assert float((bias[-5:] / (zeta / (2 * (1 + b * zeta))) - 1).abs().max()) < 0.02


def test_scaled_poisson_posterior_mean_by_simulation():
    """The scaling convention matches simulated data: E[x | y] from samples vs the conjugate formula."""
    a, b, zeta = 4.0, 3.0, 0.05
    x = torch.from_numpy(np.random.default_rng(0).gamma(a, 1 / b, size=200_000))   # rate b
    y = zeta * torch.poisson(x / zeta, generator=torch.Generator().manual_seed(1))
    for c in (10.0, 20.0, 30.0):
        sel = (y / zeta - c).abs() < 0.5
        emp = x[sel].mean()
        se = x[sel].std() / math.sqrt(int(sel.sum()))
        assert abs(float(emp) - zeta * (a + c) / (1 + b * zeta)) < 4 * float(se)


# ------------------------------------------------------------------------------------ Gamma
def test_gamma_tweedie_is_one_over_posterior_mean_of_one_over_x():
    """Card 1 test 4: 1/x ~ Gamma(a, b), y | x ~ Gamma(k, rate k/x); score by finite differences of the
    quadrature marginal; the estimator equals 1 / E[1/x | y] (quadrature), not E[x | y]."""
    a, b, k = 3.0, 2.0, 6.0
    prior_w = gamma_pdf(a, b)                                             # w = 1 / x
    lik = lambda yv: (lambda w: gamma_pdf(k, k * w)(yv))
    p_y = lambda yv: integrate.quad(lambda w: prior_w(w) * lik(yv)(w), 0, 60, limit=200, epsrel=1e-12)[0]
    for yv in (0.2, 0.7, 1.5, 3.0):
        h = 1e-4 * yv
        score = (math.log(p_y(yv + h)) - math.log(p_y(yv - h))) / (2 * h)
        x_hat = float(tweedie.gamma(torch.tensor([yv], dtype=F64), torch.tensor([score], dtype=F64), k))
        inv_mean = 1 / _posterior_expectation(lambda w: w, prior_w, lik(yv), 0, 60)
        post_mean = _posterior_expectation(lambda w: 1 / w, prior_w, lik(yv), 1e-9, 60)
        assert abs(x_hat / inv_mean - 1) < 1e-6
        assert abs(x_hat / post_mean - 1) > 0.05                          # a different estimator
        sign_slip = k * yv / ((k - 1) + yv * score)                       # + instead of - in the denominator
        assert abs(sign_slip / inv_mean - 1) > 0.1
        misprinted = -k * yv / ((k - 1) - yv * score)                     # T(y) = [log y, -y] of the talk
        assert misprinted < 0 < x_hat


# ------------------------------------------------------------------------------------ Exponential
def test_exponential_tweedie_is_the_posterior_mean():
    """Card 1 test 3: x ~ Gamma(a, b), y | x ~ Exp(rate x) => p(y) = a b^a / (b + y)^(a + 1)."""
    a, b = 2.5, 1.5
    y = torch.tensor([0.0, 0.3, 1.0, 4.0], dtype=F64)
    score = _autograd_score(lambda t: math.log(a) + a * math.log(b) - (a + 1) * torch.log(b + t), y)
    x_hat = tweedie.exponential(score)
    for yi, xi in zip(y.tolist(), x_hat.tolist()):
        oracle = _posterior_expectation(lambda x: x, gamma_pdf(a, b), lambda x: x * math.exp(-x * yi), 0, 80)
        assert abs(xi - oracle) < 1e-8


# ------------------------------------------------------------------------------------ Bernoulli
def test_bernoulli_tweedie_is_sigmoid_of_posterior_mean_logit():
    """x ~ Beta(a, b), y | x ~ Bernoulli(x); log p(y) = log B(a + y, b + 1 - y) - log B(a, b) in y."""
    a, b = 2.0, 5.0
    y = torch.tensor([0.0, 1.0], dtype=F64)
    log_p = lambda t: torch.lgamma(a + t) + torch.lgamma(b + 1 - t) - math.lgamma(a + b + 1)
    x_hat = tweedie.bernoulli(_autograd_score(log_p, y))
    for yi, xi in zip(y.tolist(), x_hat.tolist()):
        lik = lambda x: x ** yi * (1 - x) ** (1 - yi)
        prior = lambda x: x ** (a - 1) * (1 - x) ** (b - 1)                # unnormalised Beta(a, b)
        e_logit = _posterior_expectation(lambda x: math.log(x / (1 - x)), prior, lik, 0, 1, epsrel=1e-10)
        assert abs(math.log(xi / (1 - xi)) - e_logit) < 1e-8
        assert abs(xi - (a + yi) / (a + b + 1)) > 0.01                    # plug-in, not E[x | y]


# ------------------------------------------------------------------------------------ AR-DAE
def test_ardae_loss_is_minimised_by_the_smoothed_score():
    """y ~ N(mu, v I_d), s_c(y) = -(y - mu) / c: E loss = d [sigma^2 v / c^2 + (1 - sigma^2 / c)^2],
    minimised at c = v + sigma_a^2 (the score of p_y * N(0, sigma_a^2)) with value d v / (v + sigma_a^2)."""
    mu, v, sigma_a, d, n = 0.5, 0.4, 0.3, 2, 40_000
    g = torch.Generator().manual_seed(2)
    y = mu + math.sqrt(v) * torch.randn(n, d, generator=g, dtype=F64)
    u = torch.randn(n, d, generator=g, dtype=F64)
    expected = lambda c: d * (sigma_a ** 2 * v / c ** 2 + (1 - sigma_a ** 2 / c) ** 2)
    c_star = v + sigma_a ** 2
    values = {}
    for c in (0.6 * c_star, c_star, 1.5 * c_star, v):
        loss = tweedie.ardae_loss(lambda t: -(t - mu) / c, y, sigma_a, u=u)
        assert loss.shape == (n,)
        assert abs(float(loss.mean()) - expected(c)) < 4 * float(loss.std()) / math.sqrt(n)
        values[c] = float(loss.mean())
    assert min(values, key=values.get) == c_star
    assert abs(expected(c_star) - d * v / c_star) < 1e-12


def test_ardae_loss_per_sample_and_seeded():
    score = lambda t: -t ** 3
    y = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    u = torch.randn(2, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    sigma_a = torch.tensor([0.1, 0.4], dtype=F64)
    both = tweedie.ardae_loss(score, y, sigma_a, u=u)
    one_by_one = torch.cat([tweedie.ardae_loss(score, y[i:i + 1], sigma_a[i:i + 1], u=u[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(both, one_by_one, rtol=1e-14, atol=0)
    draw = lambda: tweedie.ardae_loss(score, y, 0.2, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(draw(), draw(), rtol=0, atol=0)


# ------------------------------------------------------------------------------------ bad input
def test_bad_input_is_refused_with_a_clear_message():
    y = torch.ones(2, 3)
    with pytest.raises(ValueError, match="score must have the shape of y"):
        tweedie.gaussian(y, torch.ones(2, 2), 0.1)
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        tweedie.poisson([1.0], torch.ones(1))
    with pytest.raises(TypeError, match="floating-point"):
        tweedie.poisson(torch.ones(3, dtype=torch.long), torch.ones(3))
    with pytest.raises(ValueError, match="y must be >= 0"):
        tweedie.poisson(-y, y)
    with pytest.raises(ValueError, match="zeta must be a finite number > 0"):
        tweedie.poisson(y, y, zeta=0.0)
    with pytest.raises(ValueError, match="y must be > 0"):
        tweedie.gamma(0 * y, y, k=3.0)
    with pytest.raises(ValueError, match="k must be a finite number > 0"):
        tweedie.gamma(y, y, k=-1.0)
    with pytest.raises(ValueError, match="sigma must be"):
        tweedie.gaussian(y, y, torch.ones(3))
    with pytest.raises(ValueError, match="u must have the shape of y"):
        tweedie.ardae_loss(lambda t: t, y, 0.1, u=torch.ones(3))
