"""Every sampler, driven by the exact denoiser of a Gaussian mixture, reproduces the mixture.

Ground truth: ``GaussianMixture.denoiser`` (exact E[x0 | x]) and exact samples. Each sampler starts
from exact samples of p_{σ_max} (so only its own discretisation error is measured) and must give
  * component weights (nearest-mean assignment) within 0.04 of the truth (3.5 standard errors at N = 2000),
  * component means within 0.05 and covariance entries within 0.02 (about 3 standard errors),
  * a sliced Wasserstein-2 distance to a (10x larger) exact sample below twice the noise floor, the
    mean SW of 100 independent exact sets of the same size N (twice that mean lies at about the 99th
    percentile of the exact sets' own distances, so an exact sampler passes 99 times in 100;
    ``test_exact_samples_pass_the_same_test`` measures that fraction).
SBIM is the exception: its published form under-disperses, and that is asserted (card 11).
"""
from __future__ import annotations

import math

import pytest
import torch

from diffcourse._validate import as_sigma
from diffcourse.prior import samplers as S
from diffcourse.prior.processes import karras_sigmas, ve_sigmas
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64
N = 2000
SIGMA_MAX = 40.0
WEIGHTS = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
MEANS = torch.tensor([[-1.0, 0.0], [1.0, 0.8], [0.3, -1.2]], dtype=F64)


def _cov(sx, sy, rho):
    return torch.tensor([[sx * sx, rho * sx * sy], [rho * sx * sy, sy * sy]], dtype=F64)


COVS = torch.stack([_cov(0.3, 0.15, 0.5), _cov(0.2, 0.25, -0.3), _cov(0.25, 0.2, 0.0)])
GM = GaussianMixture(WEIGHTS, MEANS, COVS)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def exact_start(sigma: float, seed: int, n: int = N) -> torch.Tensor:
    """Exact samples of p_sigma: x0 + sigma z."""
    g = gen(seed)
    return GM.sample(n, g) + sigma * torch.randn(n, 2, generator=g, dtype=F64)


THETA = torch.randn(128, 2, generator=gen(123), dtype=F64)
THETA = THETA / THETA.norm(dim=1, keepdim=True)                 # 128 random unit directions


def reference_quantiles(ref: torch.Tensor, n: int = N) -> torch.Tensor:
    """Projections of a large exact set (m n points) at the n plotting positions (k + 1/2)/n: (n, 128)."""
    m = ref.shape[0] // n
    return (ref @ THETA.T).sort(0).values[m // 2::m][:n]


def sliced_w2(x: torch.Tensor, ref_q: torch.Tensor) -> float:
    """Sliced Wasserstein-2 distance between the point set x (n, 2) and a reference given by its quantiles."""
    return (((x @ THETA.T).sort(0).values - ref_q) ** 2).mean().sqrt().item()


def mixture_errors(x: torch.Tensor) -> dict:
    """Max errors of the weights, means and covariances of the components (nearest-mean assignment)."""
    k = torch.cdist(x, MEANS).argmin(1)
    parts = [x[k == j] for j in range(len(WEIGHTS))]
    return {
        "weight": max(abs(len(p) / len(x) - w.item()) for p, w in zip(parts, WEIGHTS)),
        "mean": max((p.mean(0) - m).abs().max().item() for p, m in zip(parts, MEANS)),
        "cov": max((torch.cov(p.T) - c).abs().max().item() for p, c in zip(parts, COVS)),
    }


N_EXACT_SETS = 100


@pytest.fixture(scope="module")
def exact_sw():
    """Quantiles of a 10x larger exact set, and the SW distances of 100 independent exact sets of size
    N to that reference (the distances an exact sampler would show)."""
    ref_q = reference_quantiles(GM.sample(10 * N, gen(1)))
    return ref_q, torch.tensor([sliced_w2(GM.sample(N, gen(100 + i)), ref_q) for i in range(N_EXACT_SETS)])


@pytest.fixture(scope="module")
def reference(exact_sw):
    """The reference quantiles and the noise floor: the mean SW of the exact sets."""
    ref_q, sw = exact_sw
    return ref_q, sw.mean().item()


def _cloud(D):
    """View N independent 2-D points as ONE sample of dimension 2N (for the snr rule, see below)."""
    return lambda x, sigma: D(x.reshape(-1, 2), sigma[0]).reshape(x.shape)


# name -> (run(x_start, generator) -> samples, steps, network evaluations)
SAMPLERS = {
    "ddim_ve": (lambda x, g: S.ddim_ve(GM.denoiser, x, karras_sigmas(100, 0.002, SIGMA_MAX)), 100, 100),
    "flow_euler": (lambda x, g: S.flow_euler(GM.denoiser, x, karras_sigmas(100, 0.002, SIGMA_MAX)), 100, 100),
    "heun": (lambda x, g: S.heun(GM.denoiser, x, karras_sigmas(24, 0.002, SIGMA_MAX)), 24, 47),
    "ddim_eta0.5": (lambda x, g: S.ddim(GM.denoiser, x, karras_sigmas(100, 0.002, SIGMA_MAX), eta=0.5,
                                        generator=g), 100, 100),
    "ddpm": (lambda x, g: S.ddpm(GM.denoiser, x, karras_sigmas(200, 0.002, SIGMA_MAX), generator=g), 200, 200),
    "euler_maruyama": (lambda x, g: S.euler_maruyama(GM.denoiser, x, karras_sigmas(200, 0.002, SIGMA_MAX),
                                                     generator=g), 200, 200),
    # The snr rule sets the corrector step from ||z|| / ||s|| of one sample; for a single 2-D point that
    # ratio is heavy-tailed (an F(2, 2) variable) and the corrector diverges now and then. It is meant for
    # high-dimensional images, so the cloud of N independent points is passed as one sample of dimension 2N
    # (what the official code gets by averaging the norms over the batch).
    "predictor_corrector": (lambda x, g: S.predictor_corrector(
        _cloud(GM.denoiser), x.reshape(1, -1), karras_sigmas(100, 0.002, SIGMA_MAX), generator=g).reshape(-1, 2),
        100, 200),
    # Annealed Langevin fixes the mode weights slowly (weights freeze where the modes separate), and a
    # fine ladder matters more than many steps per level: over 10 start/noise seeds, 10 levels x 30
    # steps fail SW, 40 x 15 fail 1 in 10 (mean SW 0.066) and 80 x 10 pass all (mean SW 0.050, the
    # exact sets' 0.052).
    "annealed_langevin": (lambda x, g: S.annealed_langevin(
        GM.denoiser, x, ve_sigmas(80, 0.05, SIGMA_MAX, append_zero=False), eps=2e-3, n_steps_each=10,
        generator=g), 80, 800),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_reproduces_the_mixture(name, reference):
    run, _, _ = SAMPLERS[name]
    x = run(exact_start(SIGMA_MAX, seed=5), gen(7))
    err = mixture_errors(x)
    assert err["weight"] < 0.04, (name, err)
    assert err["mean"] < 0.05, (name, err)
    assert err["cov"] < 0.02, (name, err)
    ref_q, floor = reference
    assert sliced_w2(x, ref_q) < 2 * floor, (name, sliced_w2(x, ref_q), floor)


def test_exact_samples_pass_the_same_test(exact_sw):
    """The tolerances hold for exact samples of the same size (they are not tighter than the noise):
    the moment checks on 20 exact sets, the SW threshold for at least 97 of the 100 exact sets."""
    for seed in range(20):
        err = mixture_errors(GM.sample(N, gen(300 + seed)))
        assert err["weight"] < 0.04 and err["mean"] < 0.05 and err["cov"] < 0.02, (seed, err)
    _, sw = exact_sw
    assert float((sw >= 2 * sw.mean()).float().mean()) <= 0.03, sw.sort().values[-5:]


def test_too_few_steps_fail_the_test(reference):
    """The test has power: DDIM with 8 steps misses the mixture (so the checks above can fail)."""
    x = S.ddim_ve(GM.denoiser, exact_start(SIGMA_MAX, seed=5), karras_sigmas(8, 0.002, SIGMA_MAX))
    err = mixture_errors(x)
    ref_q, floor = reference
    assert err["mean"] > 0.05 or err["cov"] > 0.02 or sliced_w2(x, ref_q) > 2 * floor, err


def test_sbim_as_published_under_disperses_on_the_mixture():
    """Card 11: SBIM from N(0, I) (the official start) on the NCSN-MRI ladder σ 232 -> 0.0066 is no
    sampler: the overall std is below 0.7x the truth and the mass piles onto the heaviest component
    (measured: std ratio 0.64, weight 0.71 instead of 0.5 at 100 steps)."""
    x = S.sbim(GM.denoiser, torch.randn(N, 2, generator=gen(3), dtype=F64),
               ve_sigmas(100, 0.0066, 232.0, append_zero=True))
    spread_ratio = (torch.cov(x.T).trace() / GM.cov.trace()).sqrt().item()
    assert spread_ratio < 0.7, spread_ratio
    heaviest = (torch.cdist(x, MEANS).argmin(1) == 0).double().mean().item()
    assert heaviest > WEIGHTS[0] + 0.1, heaviest


# -------------------------------------------------------------------- a d = 8 Gaussian, per sample

def _gaussian8():
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen(0), dtype=F64))
    cov = q @ torch.diag(torch.linspace(0.05, 1.0, 8, dtype=F64)) @ q.T
    return GaussianMixture.gaussian(torch.linspace(-1, 1, 8, dtype=F64), cov)


@pytest.mark.parametrize("name", ["heun", "ddpm", "predictor_corrector", "euler_maruyama"])
def test_samplers_reproduce_a_gaussian_in_d8(name):
    """Full-covariance Gaussian in d = 8 (eigenvalues 0.05 .. 1): mean within 0.05, covariance entries
    within 0.06 (about 4 standard errors at N = 2000)."""
    g8 = _gaussian8()
    sig = karras_sigmas(200, 0.002, SIGMA_MAX)
    x = g8.sample(N, gen(1)) + SIGMA_MAX * torch.randn(N, 8, generator=gen(2), dtype=F64)
    run = {"heun": lambda: S.heun(g8.denoiser, x, karras_sigmas(40, 0.002, SIGMA_MAX)),
           "ddpm": lambda: S.ddpm(g8.denoiser, x, karras_sigmas(400, 0.002, SIGMA_MAX), generator=gen(3)),
           "predictor_corrector": lambda: S.predictor_corrector(
               lambda v, s: g8.denoiser(v.reshape(-1, 8), s[0]).reshape(v.shape), x.reshape(1, -1), sig,
               generator=gen(3)).reshape(-1, 8),
           "euler_maruyama": lambda: S.euler_maruyama(g8.denoiser, x, sig, generator=gen(3))}[name]
    y = run()
    assert (y.mean(0) - g8.mean).abs().max() < 0.05, name
    assert (torch.cov(y.T) - g8.cov).abs().max() < 0.06, (name, (torch.cov(y.T) - g8.cov).abs().max())


def test_predictor_corrector_per_sample_on_image_sized_samples():
    """The snr rule is meant for images: per sample, on 8 samples of a 64x64 Gaussian N(0.5, diag(λ)),
    λ in [0.05, 1], the variance in each quarter of the spectrum is within 10% of λ (measured
    +1% .. +6%: the unadjusted corrector inflates a little; the standard error is 1.6%)."""
    lam = torch.linspace(0.05, 1.0, 4096, dtype=F64).reshape(1, 1, 64, 64)
    D = lambda x, sigma: 0.5 + lam / (lam + as_sigma(sigma, x) ** 2) * (x - 0.5)  # noqa: E731
    x = 0.5 + (lam + SIGMA_MAX ** 2).sqrt() * torch.randn(8, 1, 64, 64, generator=gen(0), dtype=F64)
    y = S.predictor_corrector(D, x, karras_sigmas(100, 0.002, SIGMA_MAX), generator=gen(1))
    ratio = (((y - 0.5) ** 2).mean(0) / lam).reshape(-1)
    for quarter in ratio.chunk(4):
        assert abs(quarter.mean().item() - 1) < 0.1, quarter.mean().item()
