"""CCDF (Chung, Sim & Ye, CVPR 2022): the warm start, and reverse diffusion as a contraction.

Closed forms: for a prior N(μ, s² I) the denoiser is affine, so one step x' = a x + (1 - a) D + noise
of two chains sharing their noise scales their gap by exactly a + (1 - a) s²/(s² + σ²); for a
point mass (D ≡ x0) by a alone, the card's λ_i. Sample quality: sliced Wasserstein-2 against a 20×
larger exact set, relative to the noise floor (the mean distance of exact sets of the same size).
"""
from __future__ import annotations

import math

import pytest
import torch

from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.matrix import Matrix
from diffcourse.physics.noise import GaussianNoise
from diffcourse.posterior import ccdf as C
from diffcourse.posterior import solvers
from diffcourse.prior import samplers as S
from diffcourse.prior.processes import karras_sigmas, ve_sigmas, vp_sigmas
from diffcourse.prior.samplers import ddim_step, ddpm_step, reverse_diffusion_step
from diffcourse.prior.toy import GaussianMixture

from _util import gen, reference_quantiles, sliced_w2, unit_directions

F64 = torch.float64
SIG = karras_sigmas(50, 0.002, 20.0)
MU, S2 = torch.tensor([0.3, -0.2], dtype=F64), 0.25
GAUSS = GaussianMixture.gaussian(MU, S2)
STEPS = {"ddpm": ddpm_step, "smld": reverse_diffusion_step, "ddim": ddim_step}
POINT_FACTORS = {"ddpm": C.lambda_smld, "smld": C.lambda_smld, "ddim": C.lambda_ddim}  # VE coordinates


def _pair(n=64, sigma=20.0):
    return (sigma * torch.randn(n, 2, generator=gen(1), dtype=F64),
            sigma * torch.randn(n, 2, generator=gen(2), dtype=F64))


# ---- warm_start --------------------------------------------------------------------------------
def test_warm_start_returns_the_forward_diffused_estimate_and_the_tail():
    x_init = torch.randn(3, 1, 4, 4, generator=gen(0), dtype=F64)
    for t0, n_prime in [(0.2, 10), (0.3, 15), (1.0, 50), (1e-6, 1)]:
        x, tail = C.warm_start(x_init, SIG, t0, generator=gen(5))
        assert len(tail) == n_prime + 1 and torch.equal(tail, SIG[-n_prime - 1:])
        z = torch.randn(x_init.shape, generator=gen(5), dtype=F64)
        torch.testing.assert_close(x, x_init + SIG[-n_prime - 1] * z, rtol=0, atol=1e-14)
    a, _ = C.warm_start(x_init, SIG, 0.2, generator=gen(7))
    b, _ = C.warm_start(x_init, SIG, 0.2, generator=gen(7))
    c, _ = C.warm_start(x_init, SIG, 0.2, generator=gen(8))
    assert torch.equal(a, b) and (a - c).abs().max() > 1e-3


def test_warm_start_feeds_any_posterior_solver_and_sampler():
    gm = GaussianMixture.ring(8, 1.0, 0.1, dtype=F64)
    lik = Likelihood(Matrix(torch.tensor([[1.0, 0.3]], dtype=F64)), GaussianNoise(0.1),
                     torch.tensor([[0.55]], dtype=F64))
    x, tail = C.warm_start(torch.full((4, 2), 0.5, dtype=F64), SIG, 0.3, generator=gen(0))
    for out in (solvers.dps(gm.denoiser, x, tail, lik, generator=gen(1)),
                solvers.score_pocs(gm.denoiser, x, tail, lik, generator=gen(1)),
                S.ddpm(gm.denoiser, x, tail, generator=gen(1))):
        assert out.shape == (4, 2) and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("kwargs, match", [
    (dict(t0=0.0), "t0"), (dict(t0=1.5), "t0"), (dict(t0=float("nan")), "t0"),
    (dict(sigmas=SIG.flip(0)), "decreasing"), (dict(sigmas=SIG[:-1]), "end at 0"),
    (dict(sigmas=SIG[None]), "sigmas"), (dict(sigmas=SIG[-1:]), "at least 2"),
    (dict(x_init=torch.zeros(())), "batch"),
])
def test_warm_start_rejects_bad_input(kwargs, match):
    args = dict(x_init=torch.zeros(2, 3, dtype=F64), sigmas=SIG, t0=0.5) | kwargs
    with pytest.raises(ValueError, match=match):
        C.warm_start(args["x_init"], args["sigmas"], args["t0"])


def test_warm_start_rejects_bad_types():
    with pytest.raises(TypeError, match="t0"):
        C.warm_start(torch.zeros(2, 3), SIG, "0.2")
    with pytest.raises(TypeError, match="x_init"):
        C.warm_start([0.0], SIG, 0.2)
    with pytest.raises(TypeError, match="generator"):
        C.warm_start(torch.zeros(2, 3), SIG, 0.2, generator=0)


# ---- contraction factors ---------------------------------------------------------------------
@pytest.mark.parametrize("name", list(STEPS))
def test_card_lambda_is_the_point_mass_contraction(name):
    """D ≡ x0 (the score of q(x_i | x0), CCDF's assumption): the measured factor is the card's λ_i
    exactly; DDPM's λ in VP coordinates is the VE factor times √ᾱ_{i-1}/√ᾱ_i."""
    x0 = torch.tensor([0.4, -0.7], dtype=F64)
    r = C.contraction_factors(lambda x, s: x0.expand_as(x), STEPS[name], *_pair(), SIG, generator=gen(3))
    card = POINT_FACTORS[name](SIG)
    torch.testing.assert_close(r[:-1], card[:-1, None].expand_as(r[:-1]), rtol=1e-7, atol=0)
    assert bool((r[-1] < 1e-9).all()) and float(card.max()) < 1
    if name == "ddpm":
        torch.testing.assert_close(r[:-1] * C.vp_factors(SIG)[:-1, None], C.lambda_ddpm(SIG)[:-1, None].expand_as(r[:-1]))


@pytest.mark.parametrize("name", list(STEPS))
def test_gaussian_prior_contraction_matches_the_closed_form(name):
    r = C.contraction_factors(GAUSS.denoiser, STEPS[name], *_pair(), SIG, generator=gen(3))
    exact = C.gaussian_factors(POINT_FACTORS[name](SIG), SIG, S2)
    torch.testing.assert_close(r, exact[:, None].expand_as(r), rtol=1e-7, atol=0)
    assert bool((r < 1).all())
    # The card's λ is the s → 0 limit: a prior with spread contracts less, and hardly at low σ.
    assert bool((exact >= POINT_FACTORS[name](SIG) - 1e-15).all()) and float(exact[-2]) > 0.99


def test_ddpm_and_smld_share_their_mean_map_in_ve_coordinates():
    x, xo = _pair()
    a = C.contraction_factors(GAUSS.denoiser, ddpm_step, x, xo, SIG, generator=gen(4))
    b = C.contraction_factors(GAUSS.denoiser, reverse_diffusion_step, x, xo, SIG, generator=gen(4))
    torch.testing.assert_close(a, b, rtol=1e-7, atol=0)


def test_card_lambda_of_the_ddpm_linear_schedule_is_below_one():
    """Card 21 test (1): λ < 1 over any window of the linear β schedule (T = 1000, 100 strided steps)."""
    sig = vp_sigmas(100)
    for lam in (C.lambda_ddpm(sig), C.lambda_smld(sig), C.lambda_ddim(sig)):
        assert 0.8 < float(lam.max()) < 0.96, float(lam.max())


def test_a_mixture_step_can_expand():
    """On a Gaussian mixture the contraction is not uniform: where two chains fall into different
    modes a step expands their gap (factor > 1), which no λ < 1 bound allows."""
    gm = GaussianMixture.ring(8, 1.0, 0.1, dtype=F64)
    x, xo = (gm.sample(200, gen(i)) + 20 * torch.randn(200, 2, generator=gen(i + 10), dtype=F64) for i in (1, 2))
    r = C.contraction_factors(gm.denoiser, ddim_step, x, xo, SIG, generator=gen(3))
    assert float(r.max()) > 1.1 and float(r.median()) < 1


# ---- the error bound against N' --------------------------------------------------------------
LADDER = ve_sigmas(40, 0.01, 20.0)        # geometric: the card's λ_DDIM = σ_{i-1}/σ_i is one number
N_PRIME = [5, 10, 15, 20, 25, 30, 35, 40]


@pytest.mark.parametrize("name", ["ddim", "smld"])
def test_coupled_error_decays_at_the_card_rate_but_above_the_card_bound(name):
    """Prior N(0, 0.1² I), estimate = truth + 0.3 z, same noise in both chains (C = 0).
    Measured ε̄_0(N') equals ε_0 Π J_i² (closed form); its asymptotic rate per step is the card's λ²;
    the card's bound λ^{2N'} ε_0 is nevertheless violated (by about (s/σ_min)²), while the bound with
    the largest true factor of the window holds."""
    s2 = 0.01
    gm = GaussianMixture.gaussian(torch.zeros(2, dtype=F64), s2)
    x_true = gm.sample(300, gen(1))
    x_init = x_true + 0.3 * torch.randn(300, 2, generator=gen(2), dtype=F64)
    eps0 = float(((x_init - x_true) ** 2).sum(1).mean())
    err = C.coupled_error(gm.denoiser, STEPS[name], x_true, x_init, LADDER, N_PRIME, generator=gen(3))
    point = POINT_FACTORS[name](LADDER)
    J = C.gaussian_factors(point, LADDER, s2)
    closed = torch.tensor([eps0 * float(J[-n:].prod() ** 2) for n in N_PRIME], dtype=F64)
    torch.testing.assert_close(err, closed, rtol=1e-8, atol=0)
    lam = float(point[:-1].max())
    rate = (err[-1] / err[-2]) ** (1 / 5)                            # per step, N' = 35 -> 40
    assert abs(float(rate) - lam ** 2) < 0.02 * lam ** 2, (float(rate), lam ** 2)
    card = C.error_bound(eps0, lam, N_PRIME)
    assert bool((err > 10 * card)[2:].all()), (err, card)
    window = torch.stack([C.error_bound(eps0, float(J[-n:].max()), [n])[0] for n in N_PRIME])
    assert bool((err <= window * (1 + 1e-12)).all())


def test_error_bound_formula_and_errors():
    torch.testing.assert_close(C.error_bound(2.0, 0.5, [0, 1, 3], C=0.1, tau=0.5),
                               torch.tensor([2.0, 0.5, 2 / 64], dtype=F64) + 0.1 / 0.75)
    with pytest.raises(ValueError, match="lam"):
        C.error_bound(1.0, 1.0, [1])
    with pytest.raises(ValueError, match="n_prime"):
        C.coupled_error(GAUSS.denoiser, ddim_step, *_pair(4), LADDER, [41])


# ---- the warm start pays off ---------------------------------------------------------------------
W = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
M = torch.tensor([[-1.0, 0.0], [1.0, 0.8], [0.3, -1.2]], dtype=F64)


def _cov(sx, sy, rho):
    return torch.tensor([[sx * sx, rho * sx * sy], [rho * sx * sy, sy * sy]], dtype=F64)


GM = GaussianMixture(W, M, torch.stack([_cov(0.3, 0.15, 0.5), _cov(0.2, 0.25, -0.3), _cov(0.25, 0.2, 0.0)]))


def test_a_warm_start_reaches_the_target_in_fewer_steps_than_noise():
    """A blurred estimate (exact samples + 0.3 z) forward-diffused to t0 = 0.3 of a 60-step DDPM
    schedule reaches the mixture (sliced W2 within 1.25x the exact-sample floor) in N' = 18 steps;
    DDPM from noise with 18 steps does not, nor does t0 = 0.1 (the blur survives)."""
    n, theta = 1000, unit_directions(64)
    ref = reference_quantiles(GM.sample(20 * n, gen(1)), n, theta)
    floor = sum(sliced_w2(GM.sample(n, gen(100 + i)), ref, theta) for i in range(10)) / 10
    sig = karras_sigmas(60, 0.002, 40.0)
    x_init = GM.sample(n, gen(2)) + 0.3 * torch.randn(n, 2, generator=gen(3), dtype=F64)

    def warm(t0):
        x, tail = C.warm_start(x_init, sig, t0, generator=gen(4))
        return S.ddpm(GM.denoiser, x, tail, generator=gen(5)), len(tail) - 1
    out, n_prime = warm(0.3)
    cold = S.ddpm(GM.denoiser, 40 * torch.randn(n, 2, generator=gen(6), dtype=F64),
                  karras_sigmas(n_prime, 0.002, 40.0), generator=gen(5))
    scores = {k: sliced_w2(v, ref, theta) / floor for k, v in
              {"init": x_init, "warm": out, "cold": cold, "t0=0.1": warm(0.1)[0]}.items()}
    assert n_prime == 18 and scores["warm"] < 1.25, scores
    assert scores["cold"] > 1.25 and scores["t0=0.1"] > 1.25 and scores["init"] > 1.25, scores
    assert math.isfinite(scores["warm"])
