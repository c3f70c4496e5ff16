"""The exact Gaussian-mixture testbed against independent oracles.

Oracles: torch.distributions (the convolved mixture and the joint Gaussian of (x_t, y) built per
component), autograd, finite differences, Monte-Carlo importance sampling on prior draws (checked
within a few of its own standard errors) and the information-form Gaussian posterior.
"""
import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from diffcourse.prior.toy import GaussianMixture

from _util import gen

F64 = torch.float64


def random_mixture(K=3, d=3, seed=0, spread=2.0):
    """A mixture with full, unequal covariances and unequal weights."""
    g = gen(seed)
    w = torch.rand(K, generator=g, dtype=F64) + 0.2
    means = spread * torch.randn(K, d, generator=g, dtype=F64)
    B = torch.randn(K, d, d, generator=g, dtype=F64) * 0.5
    covs = B @ B.mT + 0.1 * torch.eye(d, dtype=F64)
    return GaussianMixture(w / w.sum(), means, covs)


def torch_mixture(gm, sigma=0.0):
    """Independent oracle: the convolved mixture as a torch.distributions object."""
    eye = torch.eye(gm.dim, dtype=F64)
    return MixtureSameFamily(Categorical(probs=gm.weights.to(F64)),
                             MultivariateNormal(gm.means.to(F64), gm.covs.to(F64) + sigma ** 2 * eye))


def weighted_stats(x, logw):
    """Self-normalised importance-sampling mean, covariance and the mean's standard error."""
    w = torch.softmax(logw, 0)
    mean = w @ x
    c = x - mean
    cov = (w[:, None] * c).T @ c
    se = ((w[:, None] ** 2) * c ** 2).sum(0).sqrt()
    return mean, cov, se


# ---- density, score, denoiser -------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [0.0, 0.3, 2.0])
def test_log_prob_matches_torch_distributions(sigma):
    gm = random_mixture()
    x = torch.randn(7, 3, generator=gen(1), dtype=F64) * 2
    ref = torch_mixture(gm, sigma).log_prob(x)
    assert torch.allclose(gm.log_prob(x, sigma=sigma), ref, atol=1e-10)
    assert torch.allclose(gm.marginal(sigma).log_prob(x), ref, atol=1e-10)


@pytest.mark.parametrize("sigma", [0.0, 0.05, 0.7, 5.0])
def test_score_is_autograd_of_convolved_log_density(sigma):
    gm = random_mixture()
    x = torch.randn(6, 3, generator=gen(2), dtype=F64).requires_grad_(True)
    (grad,) = torch.autograd.grad(torch_mixture(gm, sigma).log_prob(x).sum(), x)
    assert torch.allclose(gm.score(x.detach(), sigma), grad, rtol=1e-9, atol=1e-9)


def test_score_matches_finite_differences_with_per_sample_sigma():
    gm = random_mixture(K=4, d=2, seed=3)
    x = torch.randn(5, 2, generator=gen(4), dtype=F64)
    sigma = torch.tensor([0.0, 0.1, 0.5, 1.0, 3.0], dtype=F64)
    h = 1e-6
    fd = torch.stack([(gm.log_prob(x + h * e, sigma=sigma) - gm.log_prob(x - h * e, sigma=sigma)) / (2 * h)
                      for e in torch.eye(2, dtype=F64)], 1)
    assert torch.allclose(gm.score(x, sigma), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sigma", [0.05, 0.5, 3.0])
def test_denoiser_and_score_agree_by_tweedie(sigma):
    gm = random_mixture()
    x = torch.randn(8, 3, generator=gen(5), dtype=F64) * 3
    assert torch.allclose(gm.denoiser(x, sigma), x + sigma ** 2 * gm.score(x, sigma), atol=1e-10)


def test_denoiser_matches_monte_carlo_posterior_mean():
    """E[x0 | x] by importance weights N(x; x0_j, sigma^2 I) on prior draws x0_j."""
    gm = random_mixture(K=3, d=2, seed=6, spread=1.5)
    x0 = gm.sample(200_000, generator=gen(7))
    sigma = 0.6
    for x in torch.tensor([[0.3, -0.2], [1.5, 1.0], [-2.0, 0.5]], dtype=F64):
        logw = -((x0 - x) ** 2).sum(1) / (2 * sigma ** 2)
        mc, _, se = weighted_stats(x0, logw)
        exact = gm.denoiser(x[None], sigma)[0]
        assert ((mc - exact).abs() / se).max() < 5, (mc, exact, se)


def test_component_posteriors_against_autograd_jacobian():
    """Cov[x0 | x] = sigma^2 dD/dx (second-order Tweedie) and sum_k r_k m_k = D."""
    gm = random_mixture()
    x = torch.randn(3, 3, generator=gen(8), dtype=F64)
    sigma = 0.8
    r, m, P = gm.component_posteriors(x, sigma)
    assert torch.allclose(r.sum(1), torch.ones(3, dtype=F64))
    D = (r[..., None] * m).sum(1)
    assert torch.allclose(D, gm.denoiser(x, sigma), atol=1e-12)
    second = (r[..., None, None] * (P + m[..., :, None] * m[..., None, :])).sum(1)
    total = second - D[:, :, None] * D[:, None, :]                     # Cov[x0 | x], (N, d, d)
    for n in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: gm.denoiser(v[None], sigma)[0], x[n])
        assert torch.allclose(total[n], sigma ** 2 * jac, atol=1e-9)


def test_small_sigma_and_far_points_do_not_underflow():
    gm = random_mixture(K=4, d=3, seed=9)
    far = torch.full((2, 3), 60.0, dtype=F64)
    for sigma in (1e-4, 1e-2):
        xt = far.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(torch_mixture(gm, sigma).log_prob(xt).sum(), xt)
        assert torch.allclose(gm.score(far, sigma), grad, rtol=1e-9)
        assert torch.allclose(gm.denoiser(far, sigma), far + sigma ** 2 * grad, rtol=1e-9)
    assert torch.allclose(gm.denoiser(far, 0.0), far)
    assert torch.isfinite(gm.log_prob(far)).all()


def test_batch_invariance_dtype_and_image_shape():
    gm = random_mixture(K=2, d=4, seed=10)
    x = torch.randn(2, 4, generator=gen(11), dtype=F64)
    sigma = torch.tensor([0.2, 1.5], dtype=F64)
    both = gm.denoiser(x, sigma)
    one = torch.cat([gm.denoiser(x[i:i + 1], sigma[i:i + 1]) for i in range(2)])
    assert torch.equal(both, one) or torch.allclose(both, one, atol=1e-14)
    img = gm.score(x.reshape(2, 1, 2, 2), sigma)
    assert img.shape == (2, 1, 2, 2) and torch.allclose(img.reshape(2, 4), gm.score(x, sigma))
    x32 = x.float()
    assert gm.denoiser(x32, 0.5).dtype == torch.float32
    assert torch.allclose(gm.denoiser(x32, 0.5).double(), gm.denoiser(x32.double(), 0.5), atol=1e-12)


def test_sampling_moments_and_determinism():
    gm = random_mixture(K=3, d=2, seed=12)
    n = 100_000
    s = gm.sample(n, generator=gen(13))
    assert s.shape == (n, 2) and s.dtype == F64
    assert torch.equal(s, gm.sample(n, generator=gen(13)))
    se = (gm.cov.diagonal() / n).sqrt()
    assert ((s.mean(0) - gm.mean).abs() / se).max() < 5
    emp_cov = torch.cov(s.T)
    assert torch.allclose(emp_cov, gm.cov, atol=0.05 * gm.cov.abs().max())
    # the mixture mean and covariance themselves against torch.distributions
    ref = torch_mixture(gm)
    assert torch.allclose(gm.mean, ref.mean) and torch.allclose(gm.cov.diagonal(), ref.variance)


# ---- posterior and likelihood -------------------------------------------------------------------

def test_single_gaussian_posterior_matches_information_form():
    g = gen(14)
    mean = torch.randn(4, generator=g, dtype=F64)
    B = torch.randn(4, 4, generator=g, dtype=F64)
    C = B @ B.T + 0.5 * torch.eye(4, dtype=F64)
    A = torch.randn(2, 4, generator=g, dtype=F64)
    y = torch.randn(2, generator=g, dtype=F64)
    sy = 0.3
    post = GaussianMixture.gaussian(mean, C).posterior(A, sy, y)
    prec = torch.linalg.inv(C) + A.T @ A / sy ** 2
    cov = torch.linalg.inv(prec)
    mu = cov @ (torch.linalg.solve(C, mean) + A.T @ y / sy ** 2)
    assert torch.allclose(post.means[0], mu, atol=1e-10)
    assert torch.allclose(post.covs[0], cov, atol=1e-10)


def test_mixture_posterior_matches_importance_sampling():
    gm = random_mixture(K=3, d=2, seed=15, spread=1.5)
    A = torch.tensor([[1.0, -0.5]], dtype=F64)
    sy = 0.4
    y = torch.tensor([0.7], dtype=F64)
    post = gm.posterior(A, sy, y)
    # component weights: w_k * E_{x0 ~ N(mu_k, C_k)} N(y; A x0, sy^2), estimated per component
    evid = []
    for k in range(3):
        L = torch.linalg.cholesky(gm.covs[k])
        xk = gm.means[k] + torch.randn(100_000, 2, generator=gen(16 + k), dtype=F64) @ L.T
        evid.append(torch.exp(-((xk @ A.T - y) ** 2).sum(1) / (2 * sy ** 2)).mean())
    w_mc = gm.weights * torch.stack(evid)
    assert torch.allclose(post.weights, w_mc / w_mc.sum(), atol=0.01)
    # mean and covariance of the whole posterior
    x0 = gm.sample(300_000, generator=gen(20))
    mc_mean, mc_cov, se = weighted_stats(x0, -((x0 @ A.T - y) ** 2).sum(1) / (2 * sy ** 2))
    assert ((mc_mean - post.mean).abs() / se).max() < 5
    assert torch.allclose(mc_cov, post.cov, atol=0.03 * post.cov.abs().max())


def test_posterior_batched_over_y_is_a_list_of_single_posteriors():
    gm = random_mixture()
    A = torch.randn(2, 3, generator=gen(21), dtype=F64)
    ys = torch.randn(3, 2, generator=gen(22), dtype=F64)
    posts = gm.posterior(A, 0.2, ys)
    assert isinstance(posts, list) and len(posts) == 3
    for p, y in zip(posts, ys):
        q = gm.posterior(A, 0.2, y)
        assert torch.allclose(p.weights, q.weights) and torch.allclose(p.means, q.means)


def exact_log_likelihood(gm, xt, sigma, A, sy, y):
    """log p(y | x_t) from the joint Gaussian of (x_t, y) per component, independently of toy.py."""
    d, m = gm.dim, A.shape[0]
    C, mu = gm.covs.to(F64), gm.means.to(F64)
    top = torch.cat([C + sigma ** 2 * torch.eye(d, dtype=F64), C @ A.T], 2)
    bottom = torch.cat([A @ C, A @ C @ A.T + sy ** 2 * torch.eye(m, dtype=F64)], 2)
    comps = MultivariateNormal(torch.cat([mu, mu @ A.T], 1), torch.cat([top, bottom], 1))
    joint = MixtureSameFamily(Categorical(probs=gm.weights.to(F64)), comps)
    log_joint = joint.log_prob(torch.cat([xt, y.expand(xt.shape[0], m)], 1))
    return log_joint - torch_mixture(gm, sigma).log_prob(xt)


@pytest.mark.parametrize("sigma", [0.05, 0.5, 2.0])
def test_likelihood_score_is_autograd_of_exact_log_likelihood(sigma):
    gm = random_mixture(K=3, d=3, seed=23)
    A = torch.randn(2, 3, generator=gen(24), dtype=F64)
    y = torch.randn(2, generator=gen(25), dtype=F64)
    sy = 0.3
    xt = (gm.sample(5, generator=gen(26)) + sigma * torch.randn(5, 3, generator=gen(27), dtype=F64))
    xt.requires_grad_(True)
    (grad,) = torch.autograd.grad(exact_log_likelihood(gm, xt, sigma, A, sy, y).sum(), xt)
    ours = gm.likelihood_score(xt.detach(), sigma, A, sy, y)
    assert torch.allclose(ours, grad, rtol=1e-8, atol=1e-8)
    # Bayes: grad log p(y | x_t) = grad log p(x_t | y) - grad log p(x_t)
    bayes = gm.posterior(A, sy, y).score(xt.detach(), sigma) - gm.score(xt.detach(), sigma)
    assert torch.allclose(ours, bayes, rtol=1e-8, atol=1e-8)


def test_likelihood_score_limits_and_batching():
    gm = random_mixture(K=2, d=3, seed=28)
    A = torch.randn(2, 3, generator=gen(29), dtype=F64)
    x = torch.randn(4, 3, generator=gen(30), dtype=F64)
    ys = torch.randn(4, 2, generator=gen(31), dtype=F64)
    sy = 0.5
    # sigma = 0: p(y | x0) = N(y; A x0, sy^2 I), gradient A^T (y - A x) / sy^2
    clean = (ys - x @ A.T) @ A / sy ** 2
    assert torch.allclose(gm.likelihood_score(x, 0.0, A, sy, ys), clean, atol=1e-10)
    sigma = torch.tensor([0.1, 0.4, 1.0, 3.0], dtype=F64)
    both = gm.likelihood_score(x, sigma, A, sy, ys)
    one = torch.cat([gm.likelihood_score(x[i:i + 1], sigma[i:i + 1], A, sy, ys[i]) for i in range(4)])
    assert torch.allclose(both, one, atol=1e-12)
    # a huge sigma carries no information about y: the likelihood score vanishes
    assert gm.likelihood_score(x, 1e4, A, sy, ys).abs().max() < 1e-6


# ---- presets and validation ---------------------------------------------------------------------

def test_presets():
    ring = GaussianMixture.ring(6, radius=2.0, std=0.1, dtype=F64)
    assert torch.allclose(ring.means.norm(dim=1), torch.full((6,), 2.0, dtype=F64))
    assert torch.allclose(ring.mean, torch.zeros(2, dtype=F64), atol=1e-12)
    moons = GaussianMixture.moons(5, std=0.1)
    assert moons.means.shape == (10, 2) and moons.dtype == torch.get_default_dtype()
    g = GaussianMixture.gaussian(torch.zeros(3), 2.0)
    assert torch.allclose(g.cov, 2.0 * torch.eye(3))
    x = torch.randn(4, 3, generator=gen(32))
    assert torch.allclose(g.denoiser(x, 1.0), x * 2.0 / 3.0, atol=1e-6)   # tau^2 / (tau^2 + sigma^2) x


def test_weights_are_normalised():
    gm = GaussianMixture(torch.tensor([2.0, 6.0]), torch.zeros(2, 1), torch.ones(2, 1, 1))
    assert torch.allclose(gm.weights, torch.tensor([0.25, 0.75]))


@pytest.mark.parametrize("weights, means, covs, err, word", [
    (torch.tensor([-0.5, 1.5]), torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2), ValueError, "weights"),
    (torch.zeros(2), torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2), ValueError, "weights"),
    (torch.ones(3), torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2), ValueError, "weights"),
    (torch.ones(1), torch.zeros(1, 2), torch.tensor([[[1.0, 0.5], [0.0, 1.0]]]), ValueError, "symm"),
    (torch.ones(1), torch.zeros(1, 2), torch.tensor([[[1.0, 2.0], [2.0, 1.0]]]), ValueError, "definite"),
    ([1.0], torch.zeros(1, 2), torch.eye(2)[None], TypeError, "weights"),
    (torch.ones(1), torch.zeros(1, 2, dtype=torch.long), torch.eye(2)[None], TypeError, "means"),
])
def test_bad_parameters_are_refused(weights, means, covs, err, word):
    with pytest.raises(err, match=word):
        GaussianMixture(weights, means, covs)


def test_bad_arguments_are_refused():
    gm = random_mixture()
    x = torch.zeros(2, 3, dtype=F64)
    A = torch.ones(1, 3, dtype=F64)
    y = torch.ones(1, dtype=F64)
    with pytest.raises(ValueError, match="x must be"):
        gm.denoiser(torch.zeros(2, 4), 1.0)
    with pytest.raises(TypeError, match="x must be"):
        gm.score([[0.0, 0.0, 0.0]], 1.0)
    with pytest.raises(ValueError, match="sigma"):
        gm.denoiser(x, -1.0)
    with pytest.raises(ValueError, match="sigma"):
        gm.denoiser(x, torch.ones(3))
    with pytest.raises(ValueError, match="A must be"):
        gm.posterior(torch.ones(1, 2), 0.1, y)
    with pytest.raises(ValueError, match="y must be"):
        gm.posterior(A, 0.1, torch.ones(2))
    with pytest.raises(ValueError, match="sigma_y"):
        gm.likelihood_score(x, 0.5, A, 0.0, y)
    with pytest.raises(ValueError, match="y must be"):
        gm.likelihood_score(x, 0.5, A, 0.1, torch.ones(3, 1, dtype=F64))
    with pytest.raises(ValueError, match="n must be"):
        gm.sample(-1)
    assert math.isfinite(float(gm.log_prob(x).sum()))


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_results_live_on_the_input_device(device):
    gm = random_mixture()
    x = torch.randn(4, 3, generator=gen(40), dtype=F64)
    A = torch.randn(2, 3, generator=gen(41), dtype=F64)
    y = torch.randn(2, generator=gen(42), dtype=F64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0], dtype=F64)
    calls = [lambda v, a, b: gm.denoiser(v, sigma.to(v.device)), lambda v, a, b: gm.score(v, 0.5),
             lambda v, a, b: gm.log_prob(v, sigma=0.3), lambda v, a, b: gm.likelihood_score(v, 0.5, a, 0.2, b),
             lambda v, a, b: gm.posterior(a, 0.2, b).means]
    for f in calls:
        out = f(x.to(device), A.to(device), y.to(device))
        assert out.device.type == torch.device(device).type
        assert torch.allclose(out.cpu(), f(x, A, y), atol=1e-10)
    moved = gm.to(device)
    draws = moved.sample(5, generator=torch.Generator(device).manual_seed(0))
    assert draws.device.type == torch.device(device).type
