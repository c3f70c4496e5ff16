"""Adapters between eps/x0/score/velocity models and the denoiser D(x, sigma), with the exact mixture
as the truth: the reverse adapters must give the exact process-time models (checked independently
through the mixture rescaled to the process' scale and through the exact posterior), and the
forward adapters must recover the exact D from them."""
import pytest
import torch

from diffcourse.prior.denoisers import (denoiser_from_score, flip_average, from_eps, from_score, from_v,
                                        from_velocity_flow, from_x0, score_from_denoiser, to_eps, to_score,
                                        to_v, to_velocity_flow, to_x0)
from diffcourse.prior.processes import DDPM, VE, Flow, VPCosine, VPLinear
from diffcourse.prior.toy import GaussianMixture

from _util import gen

F64 = torch.float64
PROCESSES = [VE(0.01, 50.0), VPLinear(), VPCosine(), DDPM.linear(), DDPM.cosine(T=100), Flow()]
IDS = ["VE", "VPLinear", "VPCosine", "DDPM", "DDPMcos", "Flow"]


@pytest.fixture(scope="module")
def gm():
    g = gen(0)
    B = torch.randn(3, 3, 3, generator=g, dtype=F64) * 0.5
    return GaussianMixture(torch.tensor([0.2, 0.5, 0.3], dtype=F64),
                           torch.randn(3, 3, generator=g, dtype=F64) * 1.5,
                           B @ B.mT + 0.1 * torch.eye(3, dtype=F64))


def scaled(gm, s, sigma):
    """Law of x_p = s (x0 + sigma z): the mixture with means s mu_k, covs s^2 (C_k + sigma^2 I)."""
    eye = torch.eye(gm.dim, dtype=F64)
    return GaussianMixture(gm.weights, s * gm.means, s ** 2 * (gm.covs + sigma ** 2 * eye))


def model_time(p, frac):
    return frac * (p.T - 1) if isinstance(p, DDPM) else frac


@pytest.mark.parametrize("p", PROCESSES, ids=IDS)
@pytest.mark.parametrize("frac", [0.1, 0.5, 0.8])
def test_reverse_adapters_give_exact_process_models(gm, p, frac):
    t = model_time(p, frac)
    s, sigma = float(p.s(t)), float(p.sigma(t))
    law = scaled(gm, s, sigma)
    x_p = law.sample(6, generator=gen(1))
    score_p = law.score(x_p, 0.0)                                 # grad log p_t(x_p), independently
    assert torch.allclose(to_score(gm.denoiser, p)(x_p, t), score_p, rtol=1e-8, atol=1e-10)
    # eps = -sqrt(1 - abar) s_VP for VP (card 0); in general -(s sigma) grad log p_t(x_p)
    assert torch.allclose(to_eps(gm.denoiser, p)(x_p, t), -(s * sigma) * score_p, rtol=1e-8, atol=1e-10)
    # E[x0 | x_p]: the posterior of the measurement x_p = (s I) x0 + (s sigma) n
    post_means = torch.stack([gm.posterior(s * torch.eye(3, dtype=F64), s * sigma, y).mean for y in x_p])
    assert torch.allclose(to_x0(gm.denoiser, p)(x_p, t), post_means, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("p", PROCESSES, ids=IDS)
def test_forward_adapters_recover_the_exact_denoiser(gm, p):
    sigma = torch.tensor([0.05, 0.3, 1.0, 4.0], dtype=F64)
    x = gm.sample(4, generator=gen(2)) + sigma[:, None] * torch.randn(4, 3, generator=gen(3), dtype=F64)
    exact = gm.denoiser(x, sigma)
    for D in (from_eps(to_eps(gm.denoiser, p), p), from_x0(to_x0(gm.denoiser, p), p),
              from_score(to_score(gm.denoiser, p), p), from_v(to_v(gm.denoiser, p), p)):
        assert torch.allclose(D(x, sigma), exact, rtol=1e-8, atol=1e-10)


def test_forward_adapter_on_an_independent_eps_model(gm):
    """A VP eps-model built from the rescaled mixture alone (no adapter) gives back the exact D."""
    p = VPLinear()

    def eps_model(x_vp, t):                                             # one t for the batch
        s, sigma = float(p.s(t[0])), float(p.sigma(t[0]))
        return -(s * sigma) * scaled(gm, s, sigma).score(x_vp, 0.0)

    x = gm.sample(5, generator=gen(4)) + 0.7 * torch.randn(5, 3, generator=gen(5), dtype=F64)
    assert torch.allclose(from_eps(eps_model, p)(x, 0.7), gm.denoiser(x, 0.7), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("t", [0.1, 0.4, 0.9])
def test_velocity_matches_card_10_score_link(gm, t):
    """Meng's convention a = 1 - t, b = t: v = -x_t/(1 - t) - (t/(1 - t)) grad log p_t(x_t)."""
    law = scaled(gm, 1 - t, t / (1 - t))                                # x_t = (1 - t) x0 + t z
    x_t = law.sample(6, generator=gen(6))
    v = to_velocity_flow(gm.denoiser)(x_t, t)
    assert torch.allclose(v, -x_t / (1 - t) - t / (1 - t) * law.score(x_t, 0.0), rtol=1e-8, atol=1e-10)
    # rectified-flow code convention t' = 1 - t: v' = -v = x_t/t' + ((1 - t')/t') grad log p
    tp = 1 - t
    assert torch.allclose(-v, x_t / tp + (1 - tp) / tp * law.score(x_t, 0.0), rtol=1e-8, atol=1e-10)
    sigma = torch.tensor([0.2, 1.0, 5.0], dtype=F64)
    x = law.sample(3, generator=gen(7))
    D = from_velocity_flow(to_velocity_flow(gm.denoiser))
    assert torch.allclose(D(x, sigma), gm.denoiser(x, sigma), rtol=1e-8, atol=1e-10)


def test_velocity_is_the_conditional_mean_of_z_minus_x0(gm):
    """Monte Carlo: E[z - x0 | x_t] by importance weights on prior draws, within 5 standard errors."""
    t = 0.5
    x0 = gm.sample(200_000, generator=gen(8))
    x_t = torch.tensor([[0.3, -0.4, 0.8]], dtype=F64)
    z = (x_t - (1 - t) * x0) / t                                        # the z that explains x_t
    logw = -(z ** 2).sum(1) / 2
    w = torch.softmax(logw, 0)
    target = z - x0
    mc = w @ target
    se = ((w[:, None] ** 2) * (target - mc) ** 2).sum(0).sqrt()
    v = to_velocity_flow(gm.denoiser)(x_t, t)[0]
    assert ((mc - v).abs() / se).max() < 5


@pytest.mark.parametrize("p", [VPLinear(), DDPM.cosine(T=100), VE(0.01, 50.0)], ids=["VPLinear", "DDPMcos", "VE"])
def test_v_prediction_is_the_conditional_mean_of_a_eps_minus_b_x0(gm, p):
    """Monte Carlo: E[a eps - b x0 | x_p] (a = s, b = s sigma) by importance weights on prior draws."""
    t = model_time(p, 0.4)
    a, sigma = float(p.s(t)), float(p.sigma(t))
    b = a * sigma
    x0 = gm.sample(200_000, generator=gen(13))
    x_p = torch.tensor([[0.3, -0.4, 0.8]], dtype=F64) * a
    eps = (x_p - a * x0) / b                                            # the eps that explains x_p
    w = torch.softmax(-(eps ** 2).sum(1) / 2, 0)
    target = a * eps - b * x0
    mc = w @ target
    se = ((w[:, None] ** 2) * (target - mc) ** 2).sum(0).sqrt()
    v = to_v(gm.denoiser, p)(x_p, t)[0]
    assert ((mc - v).abs() / se).max() < 5
    if not isinstance(p, VE):                                           # VP: v = a eps - b x0, a^2 + b^2 = 1
        assert abs(a ** 2 + b ** 2 - 1) < 1e-12
        x0_hat = to_x0(gm.denoiser, p)(x_p, t)
        assert torch.allclose(a * x_p - b * to_v(gm.denoiser, p)(x_p, t), x0_hat, atol=1e-10)


def test_score_and_denoiser_converters(gm):
    x = torch.randn(4, 3, generator=gen(9), dtype=F64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0], dtype=F64)
    assert torch.allclose(score_from_denoiser(gm.denoiser)(x, sigma), gm.score(x, sigma), atol=1e-10)
    assert torch.allclose(denoiser_from_score(gm.score)(x, sigma), gm.denoiser(x, sigma), atol=1e-10)
    one_point = score_from_denoiser(lambda x, sigma: torch.zeros_like(x))   # data = {0}
    assert torch.allclose(one_point(x, 2.0), -x / 4)


@pytest.mark.parametrize("p", [VPLinear(), DDPM.linear(), Flow()], ids=["VPLinear", "DDPM", "Flow"])
def test_batch_invariance_and_image_shapes(gm, p):
    gm4 = GaussianMixture(gm.weights[:2], torch.randn(2, 4, generator=gen(10), dtype=F64),
                          0.3 * torch.eye(4, dtype=F64).expand(2, 4, 4))
    x = torch.randn(2, 1, 2, 2, generator=gen(11), dtype=F64)
    sigma = torch.tensor([0.3, 2.0], dtype=F64)
    D = from_eps(to_eps(gm4.denoiser, p), p)
    both = D(x, sigma)
    assert both.shape == x.shape
    one = torch.cat([D(x[i:i + 1], sigma[i:i + 1]) for i in range(2)])
    assert torch.allclose(both, one, atol=1e-14)
    assert torch.allclose(both, gm4.denoiser(x, sigma), atol=1e-10)
    x32 = x.float()
    assert D(x32, 0.5).dtype == torch.float32
    assert torch.allclose(D(x32, 0.5).double(), gm4.denoiser(x32.double(), 0.5), atol=1e-5)


def test_bad_input(gm):
    with pytest.raises(TypeError, match="eps_model"):
        from_eps("not a model", VPLinear())
    with pytest.raises(TypeError, match="process"):
        from_eps(lambda x, t: x, "VP")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        score_from_denoiser(gm.denoiser)(torch.zeros(2, 3, dtype=F64), 0.0)
    with pytest.raises(ValueError, match="sigma"):
        from_x0(lambda x, t: x, VE())(torch.zeros(2, 3), torch.ones(3))
    with pytest.raises(TypeError, match="x must be"):
        from_x0(lambda x, t: x, VE())([0.0, 1.0], 1.0)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_adapters_follow_the_input_device(gm, device):
    x = torch.randn(3, 3, generator=gen(12), dtype=F64)
    sigma = torch.tensor([0.2, 1.0, 3.0], dtype=F64)
    for p in (DDPM.linear(), VPLinear(), Flow()):
        D = from_eps(to_eps(gm.denoiser, p), p)
        out = D(x.to(device), sigma.to(device))
        assert out.device.type == torch.device(device).type
        assert torch.allclose(out.cpu(), gm.denoiser(x, sigma), atol=1e-10)


# ---------------------------------------------------------------- self-ensemble over flips
def _flip_symmetric_mixture():
    """A mixture whose law is invariant under reversing the coordinates: components in mirrored pairs."""
    mu = torch.tensor([[1.0, -0.5, 2.0], [0.3, 0.0, -1.0]], dtype=F64)
    C = torch.tensor([[[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.8]],
                      [[0.4, 0.0, 0.2], [0.0, 0.9, 0.0], [0.2, 0.0, 0.6]]], dtype=F64)
    return GaussianMixture(torch.tensor([0.3, 0.2, 0.3, 0.2], dtype=F64), torch.cat([mu, mu.flip(-1)]),
                           torch.cat([C, C.flip(-1).flip(-2)]))


def test_flip_average_leaves_the_exact_denoiser_of_a_flip_invariant_law_unchanged():
    gm = _flip_symmetric_mixture()
    x = gm.sample(64, gen(1)) + 0.7 * torch.randn(64, 3, generator=gen(2), dtype=F64)
    D_avg = flip_average(gm.denoiser)
    assert torch.allclose(D_avg(x, 0.7), gm.denoiser(x, 0.7), atol=1e-12)
    assert not torch.allclose(gm.denoiser(x.flip(-1), 0.7), gm.denoiser(x, 0.7))   # the test is not vacuous


def test_flip_average_is_equivariant_and_no_worse_on_a_mirrored_batch():
    """For any D and a batch closed under the flip (each clean image and its noisy version paired with
    their mirror images), convexity gives sum ||D_avg - x0||^2 <= sum ||D - x0||^2 exactly."""
    W = torch.randn(8 * 8, 8 * 8, generator=gen(3), dtype=F64) / 8
    D = lambda x, sigma: (x.flatten(1) @ W).reshape(x.shape) + sigma    # neither equivariant nor good
    x0 = torch.rand(5, 1, 8, 8, generator=gen(4), dtype=F64)
    x = x0 + 0.2 * torch.randn(x0.shape, generator=gen(5), dtype=F64)
    x0, x = torch.cat([x0, x0.flip(-1)]), torch.cat([x, x.flip(-1)])
    for dims in [(-1,), (-2, -1)]:
        D_avg = flip_average(D, dims)
        assert torch.allclose(D_avg(x.flip(dims), 0.2), D_avg(x, 0.2).flip(dims), atol=1e-12)
    D_avg = flip_average(D)
    err_avg, err = ((D_avg(x, 0.2) - x0) ** 2).sum(), ((D(x, 0.2) - x0) ** 2).sum()
    assert err_avg <= err and not torch.isclose(err_avg, err)
    with pytest.raises(ValueError, match="dims must be distinct integer axes"):
        flip_average(D, (-1, -1))
