"""Guidance terms against closed forms: exact posterior sampling, the Jensen gap, the DPS/MCG identities.

The ring testbed defined here is shared with test_solvers_exact.py:
y = A x0 + σ_y n with A = [1, 0.3] (1×2) and σ_y = 0.1: the exact posterior
(``GaussianMixture.posterior``) is bimodal, with weights ≈ 0.78 / 0.19 on two ring components.
Distances: the sliced Wasserstein-2 distance over 64 fixed directions against the quantiles of a
20× larger exact posterior sample, and its noise floor, the mean distance of 20 exact sets of the
same size.
"""
from __future__ import annotations

import functools

import torch

from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.matrix import Matrix
from diffcourse.physics.noise import GaussianNoise
from diffcourse.posterior import guidance as G
from diffcourse.prior import samplers as S
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.toy import GaussianMixture

from _util import gen

F64 = torch.float64
N = 400
GM = GaussianMixture.ring(8, 1.0, 0.1, dtype=F64)
A = torch.tensor([[1.0, 0.3]], dtype=F64)
SIGMA_Y = 0.1
Y = torch.tensor([[0.55]], dtype=F64)
LIK = Likelihood(Matrix(A), GaussianNoise(SIGMA_Y), Y)
POST = GM.posterior(A, SIGMA_Y, Y.reshape(-1))
POST_MEAN = (POST.weights[:, None] * POST.means).sum(0)
THETA = torch.nn.functional.normalize(torch.randn(64, 2, generator=gen(1), dtype=F64), dim=1)


@functools.lru_cache(maxsize=None)
def _ref_quantiles() -> torch.Tensor:
    ref = POST.sample(20 * N, gen(5))
    return (ref @ THETA.T).sort(0).values[10::20]                       # (N, 64)


def sliced_w2(x: torch.Tensor) -> float:
    return float((((x @ THETA.T).sort(0).values - _ref_quantiles()) ** 2).mean().sqrt())


@functools.lru_cache(maxsize=None)
def noise_floor() -> float:
    return sum(sliced_w2(POST.sample(N, gen(100 + i))) for i in range(20)) / 20


def weights(x: torch.Tensor) -> torch.Tensor:
    """Component weights of a sample by nearest ring mean."""
    k = torch.cdist(x, GM.means).argmin(1)
    return torch.bincount(k, minlength=8).to(F64) / len(x)


def start(seed: int = 0, sigma_max: float = 20.0):
    g = gen(seed)
    return sigma_max * torch.randn(N, 2, generator=g, dtype=F64), g


def test_exact_guidance_with_ddpm_samples_the_exact_posterior():
    """posterior_denoiser(D, exact) driven by DDPM reproduces GaussianMixture.posterior: no approximation."""
    D_y = G.posterior_denoiser(GM.denoiser, lambda x, s: G.exact(GM, x, s, LIK))
    x, g = start(0)
    out = S.ddpm(D_y, x, karras_sigmas(80, 0.005, 20.0), generator=g)
    assert (weights(out) - POST.weights).abs().max() < 0.07, (weights(out), POST.weights)
    assert (out.mean(0) - POST_MEAN).norm() < 0.06
    assert sliced_w2(out) < 2 * noise_floor(), (sliced_w2(out), noise_floor())


JENSEN_SIGMAS = [20.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01]


def test_jensen_gap_of_dps_vanishes_as_sigma_goes_to_zero():
    """Chung et al. 2023, Thm. 1: ||DPS - exact|| / ||exact|| is large at high σ and vanishes as σ → 0."""
    table = G.jensen_gap_table(GM, LIK, JENSEN_SIGMAS, n=300, generator=gen(0))
    print("\nJensen gap of DPS on the ring testbed (relative error vs the exact likelihood score):")
    for sigma, gap in table:
        print(f"  sigma = {sigma:6.2f}   gap = {gap:9.4f}")
    gaps = [gap for _, gap in table]
    assert gaps[0] > 10 and gaps[-1] < 0.05, gaps
    assert all(b < 1.1 * a for a, b in zip(gaps, gaps[1:])), gaps          # monotone up to 10 %


def _gaussian_problem(d=4, m=2, sigma_y=0.2):
    A = torch.randn(m, d, generator=gen(3), dtype=F64)
    y = torch.randn(1, m, generator=gen(4), dtype=F64)
    return A, Likelihood(Matrix(A), GaussianNoise(sigma_y), y), y


def test_dps_for_a_standard_normal_prior_against_the_exact_perturbed_likelihood():
    """N(0, I) prior in VE: x̂0 = x/(1+σ²) = √ᾱ x_vp; DPS = Aᵀ(y - A x̂0)/(σ_y²(1+σ²)) while the exact score
    is ∇ log N(y; A x̂0, σ_y² I + σ²/(1+σ²) A Aᵀ): they differ by that covariance term, which vanishes as σ → 0."""
    A, lik, y = _gaussian_problem()
    gm = GaussianMixture.gaussian(torch.zeros(4, dtype=F64), 1.0)
    x = torch.randn(3, 4, generator=gen(5), dtype=F64)
    rel = []
    for sigma in (3.0, 1.0, 0.1, 0.01):
        a = 1 / (1 + sigma ** 2)
        x0 = a * x
        dps = G.dps(gm.denoiser, x, sigma, lik)
        torch.testing.assert_close(dps, a * (y - x0 @ A.T) @ A / 0.2 ** 2)
        S_cov = 0.04 * torch.eye(2, dtype=F64) + sigma ** 2 * a * A @ A.T
        exact = a * torch.linalg.solve(S_cov, (y - x0 @ A.T).T).T @ A
        torch.testing.assert_close(G.exact(gm, x, sigma, lik), exact)
        rel.append(float((dps - exact).norm() / exact.norm()))
    assert rel[0] > 10 and rel[-1] < 0.01 and rel == sorted(rel, reverse=True), rel


def test_code_step_is_the_paper_step_with_zeta_over_2_norm():
    """ζ' ∇||r|| = (ζ'/(2||r||)) ∇||r||² (autograd), the relation between DPS's code and paper steps."""
    A, lik, _ = _gaussian_problem()
    x = torch.randn(3, 4, generator=gen(6), dtype=F64)
    D = lambda x, s: torch.tanh(x) / (1 + s[:, None] ** 2)               # a nonlinear denoiser
    g_norm, _, r = G.tweedie_grad(D, x, 0.5, lambda x0: lik.residual(x0).norm(dim=1))
    g_sq, _, r2 = G.tweedie_grad(D, x, 0.5, G.dps_misfit(lik))
    torch.testing.assert_close(r ** 2, r2)
    torch.testing.assert_close(g_norm, g_sq / (2 * r[:, None]))


def test_mcg_gradient_is_minus_two_J_transpose_H_transpose_residual():
    """Chung et al. 2022: ∇_x||y - H x̂0||² = -2 Jᵀ Hᵀ (y - H x̂0) for a linear (Gaussian-prior) denoiser."""
    A, lik, y = _gaussian_problem()
    L = torch.randn(4, 4, generator=gen(7), dtype=F64)
    gm = GaussianMixture.gaussian(torch.linspace(-1, 1, 4, dtype=F64), L @ L.T + 0.1 * torch.eye(4, dtype=F64))
    x = torch.randn(3, 4, generator=gen(8), dtype=F64)
    sigma = 0.8
    J = gm.covs[0] @ torch.linalg.inv(gm.covs[0] + sigma ** 2 * torch.eye(4, dtype=F64))  # ∂x̂0/∂x
    r = y - gm.denoiser(x, sigma) @ A.T
    torch.testing.assert_close(G.mcg(gm.denoiser, x, sigma, lik), 2 * r @ A @ J)    # -∇||r||² = 2 Jᵀ Aᵀ r


def test_mcg_gradient_is_tangent_to_the_data_manifold():
    """A rank-2 Gaussian prior in R^5 lives on a plane; x̂0 stays on it, so the MCG gradient lies in the
    plane at every σ, while the plain gradient Aᵀ(y - A x) does not."""
    U = torch.linalg.qr(torch.randn(5, 2, generator=gen(9), dtype=F64))[0]
    gm = GaussianMixture.gaussian(torch.zeros(5, dtype=F64), U @ torch.diag(torch.tensor([1.0, 0.5], dtype=F64)) @ U.T
                                  + 1e-9 * torch.eye(5, dtype=F64))
    A = torch.randn(2, 5, generator=gen(10), dtype=F64)
    lik = Likelihood(Matrix(A), GaussianNoise(0.1), torch.randn(1, 2, generator=gen(11), dtype=F64))
    off = torch.eye(5, dtype=F64) - U @ U.T                              # projector off the plane
    for sigma in (5.0, 1.0, 0.2):
        x = (gm.sample(4, gen(12)) + sigma * torch.randn(4, 5, generator=gen(13), dtype=F64))
        g = G.mcg(gm.denoiser, x, sigma, lik)
        assert (g @ off).norm() < 1e-6 * g.norm(), sigma
        plain = lik.residual(x) @ A
        assert (plain @ off).norm() > 0.3 * plain.norm()


def test_jalal_guidance_is_exact_for_a_flat_prior_when_rows_are_orthonormal():
    """A Aᵀ = I, γ = 1: Aᵀ(y - A x)/(σ_y² + σ²) equals the exact score under a (nearly) flat prior."""
    Q = torch.linalg.qr(torch.randn(4, 2, generator=gen(14), dtype=F64))[0].T   # (2, 4), Q Qᵀ = I
    lik = Likelihood(Matrix(Q), GaussianNoise(0.3), torch.randn(1, 2, generator=gen(15), dtype=F64))
    flat = GaussianMixture.gaussian(torch.zeros(4, dtype=F64), 1e8)
    x = torch.randn(3, 4, generator=gen(16), dtype=F64)
    torch.testing.assert_close(G.jalal(flat.denoiser, x, 0.7, lik), G.exact(flat, x, 0.7, lik), rtol=1e-5, atol=1e-6)
