"""Score-matching and self-supervised losses: closed-form optima, unbiasedness, autograd oracles.

Monte-Carlo comparisons use float64, a fixed generator and a tolerance of a few standard errors of
the very samples drawn; comparisons between two losses use common random numbers.
"""
from __future__ import annotations

import math

import pytest
import torch

from diffcourse.prior import losses
from diffcourse.prior.mlp import MLPDenoiser, train_dsm
from diffcourse.prior.toy import GaussianMixture

from _util import gen

F64 = torch.float64


def close_in_mean(sample: torch.Tensor, value: float, k: float = 4.0) -> bool:
    """|mean(sample) - value| within k standard errors."""
    return abs(float(sample.mean()) - value) < k * float(sample.std()) / math.sqrt(sample.numel())


# ------------------------------------------------------------------ denoising score matching
MU, TAU, SIGMA, D, N = 0.3, 0.8, 0.5, 3, 50_000


def gaussian_data(seed=0):
    g = gen(seed)
    return MU + TAU * torch.randn(N, D, generator=g, dtype=F64), torch.randn(N, D, generator=g, dtype=F64)


def gaussian_score(c, shift=0.0):
    """s(x) = -(x - mu) / c + shift; exact for the noisy marginal when c = tau^2 + sigma^2, shift = 0."""
    return lambda x, sigma=None: -(x - MU) / c + shift


def test_dsm_minimum_value_at_the_exact_score():
    """Card 3: at s* the sigma^2-weighted loss is d tau^2 / (2 (tau^2 + sigma^2))."""
    x0, z = gaussian_data()
    c = TAU ** 2 + SIGMA ** 2
    loss = losses.dsm_loss(gaussian_score(c), x0, SIGMA, z=z)
    assert loss.shape == (N,)
    assert close_in_mean(loss, 0.5 * D * TAU ** 2 / c)


@pytest.mark.parametrize("c_factor,shift", [(1.2, 0.0), (0.8, 0.0), (1.0, 0.3), (1.0, -0.2)])
def test_dsm_excess_is_the_explicit_score_matching_loss(c_factor, shift):
    """Vincent 2011: DSM(s) - DSM(s*) = sigma^2 E 1/2 ||s - s*||^2 on p_sigma, so perturbations cost."""
    x0, z = gaussian_data()
    c = TAU ** 2 + SIGMA ** 2
    best = losses.dsm_loss(gaussian_score(c), x0, SIGMA, z=z)
    other = losses.dsm_loss(gaussian_score(c_factor * c, shift), x0, SIGMA, z=z)
    x = x0 + SIGMA * z
    esm = losses.esm_loss(gaussian_score(c_factor * c, shift), x, gaussian_score(c)(x))
    assert float(other.mean()) > float(best.mean())
    assert close_in_mean(other - best - SIGMA ** 2 * esm, 0.0)


@pytest.mark.parametrize("sigma", [0.3, 1.0])
def test_dsm_is_minimised_by_the_exact_score_of_a_gaussian_mixture(sigma):
    """Non-Gaussian data: on a 3-component mixture the exact score of p_sigma (toy.GaussianMixture.score)
    minimises DSM, and any other field costs exactly sigma^2 ESM (Vincent 2011), checked per sample."""
    g = gen(7)
    L = torch.randn(3, 2, 2, generator=g, dtype=F64)
    gm = GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=F64), 2.5 * torch.randn(3, 2, generator=g, dtype=F64),
                         L @ L.mT + 0.05 * torch.eye(2, dtype=F64))
    x0, z = gm.sample(N, generator=g), torch.randn(N, 2, generator=g, dtype=F64)
    exact = lambda x, s=None: gm.score(x, sigma)
    best = losses.dsm_loss(exact, x0, sigma, z=z)
    x = x0 + sigma * z
    for other in (lambda x, s=None: gm.score(x, 1.3 * sigma),               # a neighbouring noise level
                  lambda x, s=None: gm.score(x, sigma) + 0.2 * torch.tanh(x),   # a smooth perturbation
                  lambda x, s=None: -(x - x0.mean(0)) / (x0.var(0) + sigma ** 2)):  # best single Gaussian
        worse = losses.dsm_loss(other, x0, sigma, z=z)
        assert float(worse.mean()) > float(best.mean())
        assert close_in_mean(worse - best - sigma ** 2 * losses.esm_loss(other, x, exact(x)), 0.0)


def test_denoiser_and_eps_forms_match_dsm():
    x0, z = gaussian_data()
    c = TAU ** 2 + SIGMA ** 2
    score = gaussian_score(c, 0.1)
    D_fn = lambda x, sigma: x + sigma ** 2 * score(x)
    eps_fn = lambda x, sigma: -sigma * score(x)
    dsm = losses.dsm_loss(score, x0, SIGMA, z=z)
    torch.testing.assert_close(losses.denoiser_loss(D_fn, x0, SIGMA, z=z), dsm, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(losses.eps_loss(eps_fn, x0, SIGMA, z=z), 2 * dsm, rtol=1e-12, atol=1e-12)


def test_dsm_per_sample_sigma_and_batch_invariance():
    g = gen(3)
    x0 = torch.randn(2, 1, 4, 4, generator=g, dtype=F64)               # image-shaped samples
    z = torch.randn(2, 1, 4, 4, generator=g, dtype=F64)
    sigma = torch.tensor([0.2, 1.5], dtype=F64)
    score = lambda x, s: -torch.tanh(x) / (1 + torch.as_tensor(s, dtype=F64).reshape(-1, 1, 1, 1) ** 2)
    for loss in (losses.dsm_loss, losses.denoiser_loss, losses.eps_loss):
        both = loss(score, x0, sigma, z=z)
        alone = torch.cat([loss(score, x0[i:i + 1], sigma[i:i + 1], z=z[i:i + 1]) for i in range(2)])
        torch.testing.assert_close(both, alone, rtol=1e-14, atol=0)
    a = losses.dsm_loss(score, x0, sigma, generator=gen(7))
    b = losses.dsm_loss(score, x0, sigma, generator=gen(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_sigma_squared_weighting_keeps_small_noise_levels_on_scale():
    """The unweighted optimum d tau^2 / (2 sigma^2 (tau^2 + sigma^2)) explodes as sigma -> 0; the
    sigma^2-weighted one stays below d / 2."""
    x0, z = gaussian_data()
    for sigma in (0.01, 0.1, 1.0):
        c = TAU ** 2 + sigma ** 2
        weighted = losses.dsm_loss(gaussian_score(c), x0, sigma, z=z)
        assert close_in_mean(weighted, 0.5 * D * TAU ** 2 / c)
        assert float(weighted.mean()) < D / 2
        assert close_in_mean(weighted / sigma ** 2, 0.5 * D * TAU ** 2 / (sigma ** 2 * c))


# ------------------------------------------------------------------ implicit and sliced SM
SIGMA_X = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.8]], dtype=F64)


def correlated_data(n=40_000, seed=4):
    L = torch.linalg.cholesky(SIGMA_X)
    return torch.randn(n, 3, generator=gen(seed), dtype=F64) @ L.T


def linear_score(Lam):
    return lambda x: -x @ Lam.T


def ssm_objective(Lam):
    """E[v^T grad s v + 1/2 ||s||^2] = -tr Lam + 1/2 tr(Lam Sigma Lam^T) for s = -Lam x, x ~ N(0, Sigma)."""
    return float(-torch.trace(Lam) + 0.5 * torch.trace(Lam @ SIGMA_X @ Lam.T))


def test_ism_equals_esm_up_to_a_constant():
    """Hyvarinen 2005, Thm. 1: ISM(s) = ESM(s) - 1/2 E||grad log p||^2 for every s (here -1/2 tr Sigma^-1)."""
    x = correlated_data()
    P = torch.linalg.inv(SIGMA_X)
    const = -0.5 * float(torch.trace(P))
    for Lam in (P, 0.5 * P, torch.eye(3, dtype=F64), P + 0.2 * torch.ones(3, 3, dtype=F64)):
        ism = losses.ism_loss(linear_score(Lam), x).detach()
        esm = losses.esm_loss(linear_score(Lam), x, linear_score(P)(x))
        assert close_in_mean(ism, ssm_objective(Lam))
        assert close_in_mean(ism - esm, const)


def test_ism_divergence_matches_finite_differences_for_a_network():
    net = MLPDenoiser(3, hidden=16, depth=2, generator=gen(0)).double()
    score = lambda x: net.score(x, 0.3)
    x = torch.randn(4, 3, generator=gen(1), dtype=F64)
    div = losses.divergence(score, x)
    h, fd = 1e-5, torch.zeros(4, dtype=F64)
    for i in range(3):
        e = torch.zeros(3, dtype=F64)
        e[i] = h
        fd += ((score(x + e) - score(x - e))[:, i] / (2 * h)).detach()
    torch.testing.assert_close(div.detach(), fd, rtol=1e-7, atol=1e-8)
    ism = losses.ism_loss(score, x)
    torch.testing.assert_close(ism.detach(), 0.5 * (score(x) ** 2).sum(1).detach() + fd, rtol=1e-7, atol=1e-8)
    ism.sum().backward()                                                  # differentiable for training
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("rademacher", [False, True])
def test_sliced_score_matching_on_a_linear_model(rademacher):
    """Card 4: the SSM and SSM-VR objectives converge to -tr Lam + 1/2 tr(Lam Sigma Lam) (minimised at
    Lam = Sigma^-1), and with common random numbers Sigma^-1 beats its perturbations."""
    x = correlated_data()
    P = torch.linalg.inv(SIGMA_X)
    values = []
    for Lam in (P, 1.2 * P, 0.8 * P, P + 0.3 * torch.eye(3, dtype=F64)):
        for loss in (losses.ssm_loss, losses.ssm_vr_loss):
            val = loss(linear_score(Lam), x, rademacher=rademacher, generator=gen(5)).detach()
            assert val.shape == (x.shape[0],)
            assert close_in_mean(val, ssm_objective(Lam))
        values.append(float(losses.ssm_vr_loss(linear_score(Lam), x, rademacher=rademacher,
                                               generator=gen(5)).detach().mean()))
    assert values[0] < min(values[1:])


def test_sliced_jacobian_term_is_exact_with_rademacher_probes_on_a_diagonal_jacobian():
    """s(x) = -x^3 has Jacobian diag(-3 x^2): v^T J v = -3 sum x^2 exactly when v_i = +-1."""
    x = torch.randn(5, 4, generator=gen(6), dtype=F64)
    score = lambda t: -t ** 3
    val = losses.ssm_vr_loss(score, x, rademacher=True, n_particles=3, generator=gen(0)).detach()
    torch.testing.assert_close(val, -3 * (x ** 2).sum(1) + 0.5 * (x ** 6).sum(1), rtol=1e-12, atol=1e-12)


def test_rademacher_trace_estimator_is_unbiased():
    """Hutchinson with Rademacher probes on s(x) = -W x: E[v^T(-W)v] = -tr W, variance shrinks with n."""
    W = torch.randn(4, 4, generator=gen(8), dtype=F64)
    x = torch.zeros(20_000, 4, dtype=F64)                                 # s = -W x, so 1/2 ||s||^2 = 0
    single = losses.ssm_vr_loss(linear_score(W), x, rademacher=True, generator=gen(9)).detach()
    assert close_in_mean(single, -float(torch.trace(W)))
    many = losses.ssm_vr_loss(linear_score(W), x[:2000], rademacher=True, n_particles=10, generator=gen(9)).detach()
    assert 5 < float(single.var() / many.var()) < 20


def test_ssm_batch_invariance_and_explicit_probes():
    x = torch.randn(2, 3, generator=gen(10), dtype=F64)
    v = torch.randn(4, 2, 3, generator=gen(11), dtype=F64)
    score = lambda t: -torch.sin(t) * t.sum(1, keepdim=True)
    for loss in (losses.ssm_loss, losses.ssm_vr_loss):
        both = loss(score, x, v=v).detach()
        alone = torch.cat([loss(score, x[i:i + 1], v=v[:, i:i + 1]).detach() for i in range(2)])
        torch.testing.assert_close(both, alone, rtol=1e-13, atol=1e-13)


# ------------------------------------------------------------------ SURE and divergence
def test_mc_divergence_is_unbiased_and_its_variance_falls_with_probes():
    """Card 2 test 2: b^T W b has mean tr W and variance ||W||_F^2 + tr(W W) = 2 ||sym W||_F^2."""
    W = torch.randn(5, 5, generator=gen(12), dtype=F64)
    F = lambda y: y @ W.T
    y = torch.randn(20_000, 5, generator=gen(13), dtype=F64)
    one = losses.mc_divergence(F, y, generator=gen(14))
    assert close_in_mean(one, float(torch.trace(W)))
    var = float(2 * (0.5 * (W + W.T)).pow(2).sum())
    assert abs(float(one.var()) / var - 1) < 0.1
    eight = losses.mc_divergence(F, y[:5000], n_probes=8, generator=gen(15))
    assert abs(float(eight.var()) / (var / 8) - 1) < 0.15


def test_sure_is_unbiased_for_linear_shrinkage_and_picks_the_wiener_factor():
    """Card 2 test 1: F(y) = a y, x ~ N(0, tau^2 I): E SURE = d ((1-a)^2 tau^2 + a^2 sigma^2) = MSE."""
    tau, sigma, d, n = 1.0, 0.6, 8, 20_000
    g = gen(16)
    x = tau * torch.randn(n, d, generator=g, dtype=F64)
    y = x + sigma * torch.randn(n, d, generator=g, dtype=F64)
    grid = torch.linspace(0.3, 1.0, 15, dtype=F64)
    sure = []
    for a in grid.tolist():
        val = losses.sure_loss(lambda t: a * t, y, sigma, generator=gen(17))
        mse = ((a * y - x) ** 2).sum(1)
        assert close_in_mean(val, d * ((1 - a) ** 2 * tau ** 2 + a ** 2 * sigma ** 2))
        assert close_in_mean(val - mse, 0.0)                              # unbiased for each draw of x
        sure.append(float(val.mean()))
    a_star = tau ** 2 / (tau ** 2 + sigma ** 2)
    assert abs(float(grid[torch.tensor(sure).argmin()]) - a_star) <= float(grid[1] - grid[0])


def test_sure_is_unbiased_for_a_nonlinear_denoiser():
    """Soft thresholding of sparse data (Donoho & Johnstone 1995): SURE tracks the unseen MSE."""
    sigma, n, d = 0.5, 4000, 16
    g = gen(18)
    x = torch.randn(n, d, generator=g, dtype=F64) * (torch.rand(n, d, generator=g) < 0.2)
    y = x + sigma * torch.randn(n, d, generator=g, dtype=F64)
    soft = lambda t: torch.sign(t) * torch.clamp(t.abs() - 0.6, min=0)
    val = losses.sure_loss(soft, y, sigma, eps=1e-6, generator=gen(19))
    assert close_in_mean(val - ((soft(y) - x) ** 2).sum(1), 0.0)
    exact_div = (y.abs() > 0.6).sum(1).to(F64)                            # the divergence of soft thresholding
    stein = ((y - soft(y)) ** 2).sum(1) - d * sigma ** 2 + 2 * sigma ** 2 * exact_div
    assert close_in_mean(val - stein, 0.0)


def test_noise2noise_loss_is_mse_plus_the_noise_energy():
    tau, sigma, d, n = 1.0, 0.4, 4, 40_000
    g = gen(20)
    x = tau * torch.randn(n, d, generator=g, dtype=F64)
    y1 = x + sigma * torch.randn(n, d, generator=g, dtype=F64)
    y2 = x + sigma * torch.randn(n, d, generator=g, dtype=F64)
    F = lambda t: 0.8 * t
    n2n = losses.noise2noise_loss(F, y1, y2)
    assert close_in_mean(n2n - ((F(y1) - x) ** 2).sum(1), d * sigma ** 2)


# ------------------------------------------------------------------ the MLP learns a mixture score
def test_mlp_learns_the_mixture_score_in_a_few_hundred_steps():
    gm = GaussianMixture.ring(4, radius=1.5, std=0.3, dtype=torch.float32)
    g = gen(21)
    net = MLPDenoiser(2, generator=g)
    hist = train_dsm(net, gm.sample(4096, generator=g), steps=400, batch_size=512,
                     sigma_min=0.05, sigma_max=3.0, lr=1e-2, generator=g)   # ~1 s of CPU
    assert float(hist[-50:].mean()) < float(hist[:50].mean())
    x0 = gm.sample(2000, generator=g)
    for sigma, tol in ((0.2, 0.35), (0.5, 0.2), (1.0, 0.15)):     # measured 0.25, 0.13, 0.09
        x = x0 + sigma * torch.randn(x0.shape, generator=g)
        with torch.no_grad():
            err = (net.score(x, sigma) - gm.score(x, sigma)).norm(dim=1)
        rel = float(err.pow(2).mean().sqrt() / gm.score(x, sigma).norm(dim=1).pow(2).mean().sqrt())
        assert rel < tol, (sigma, rel)
    with torch.no_grad():
        assert float((net(x, 1.0) - (x + net.score(x, 1.0))).abs().max()) < 1e-5   # D = x + sigma^2 s


def test_mlp_is_seeded_per_sample_and_a_denoiser():
    a, b = MLPDenoiser(2, generator=gen(3)), MLPDenoiser(2, generator=gen(3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    x, sigma = torch.randn(2, 2, generator=gen(4)), torch.tensor([0.1, 2.0])
    with torch.no_grad():
        both = a(x, sigma)
        torch.testing.assert_close(both, torch.cat([a(x[i:i + 1], sigma[i].item()) for i in range(2)]))
        torch.testing.assert_close(a.score(x, sigma), (both - x) / sigma[:, None] ** 2)   # Tweedie
        torch.testing.assert_close(a(x, 0.0), x)                                         # D(x, 0) = x


# ------------------------------------------------------------------ bad input
def test_bad_input_is_refused_with_a_clear_message():
    x = torch.ones(2, 3)
    score = lambda t, s=None: -t
    with pytest.raises(ValueError, match="z must have the shape of x"):
        losses.dsm_loss(score, x, 0.1, z=torch.ones(3))
    with pytest.raises(TypeError, match="x0 must be a torch.Tensor"):
        losses.dsm_loss(score, [1.0], 0.1)
    with pytest.raises(ValueError, match="sigma must be"):
        losses.denoiser_loss(score, x, torch.ones(5))
    with pytest.raises(ValueError, match="n_particles must be a positive int"):
        losses.ssm_loss(score, x, n_particles=0)
    with pytest.raises(ValueError, match=r"v must have shape \(n, \*\(2, 3\)\)"):
        losses.ssm_vr_loss(score, x, v=torch.ones(2, 3))
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        losses.sure_loss(lambda t: t, x, 0.1, eps=0.0)
    with pytest.raises(ValueError, match="n_probes must be a positive int"):
        losses.mc_divergence(lambda t: t, x, n_probes=2.5)
    with pytest.raises(ValueError, match="y_other must have the shape of y"):
        losses.noise2noise_loss(lambda t: t, x, torch.ones(3))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        MLPDenoiser(2)(torch.ones(4, 3), 0.1)
    with pytest.raises(ValueError, match="sigma_min must be <= sigma_max"):
        train_dsm(MLPDenoiser(2), torch.ones(8, 2), sigma_min=2.0, sigma_max=1.0)
