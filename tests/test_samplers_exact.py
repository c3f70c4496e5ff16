"""Samplers against closed forms: PF-ODE order, identities between samplers, the cards' checks.

A Gaussian N(μ, Σ) has the linear denoiser D(x, σ) = μ + Σ(Σ + σ²I)⁻¹(x - μ), and its
probability-flow ODE dx/dσ = (x - D)/σ the exact solution (card 9)
    x(σ) = μ + U diag(√((λ + σ²)/(λ + σ_0²))) Uᵀ (x(σ_0) - μ),
so the error of a deterministic sampler is known exactly.
"""
from __future__ import annotations

import math

import pytest
import torch

from diffcourse.prior import samplers as S
from diffcourse.prior.processes import alpha_bar_from_sigma, karras_sigmas, ve_sigmas
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Gaussian:
    """N(mu, U diag(lam) U^T) in R^d with its exact denoiser and PF-ODE map."""

    def __init__(self, d: int = 8, seed: int = 0):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen(seed), dtype=F64))
        self.U, self.lam, self.mu = q, torch.linspace(0.05, 1.0, d, dtype=F64), torch.linspace(-1, 1, d, dtype=F64)

    def denoiser(self, x, sigma):
        s2 = torch.as_tensor(sigma, dtype=F64).reshape(-1, 1) ** 2          # (B or 1, 1)
        return self.mu + ((x - self.mu) @ self.U * (self.lam / (self.lam + s2))) @ self.U.T

    def flow(self, x, sigma0: float, sigma1: float):
        scale = ((self.lam + sigma1 ** 2) / (self.lam + sigma0 ** 2)).sqrt()
        return self.mu + (x - self.mu) @ self.U @ torch.diag(scale) @ self.U.T


G = Gaussian()


def test_gaussian_oracle_matches_the_mixture_class():
    gm = GaussianMixture.gaussian(G.mu, G.U @ torch.diag(G.lam) @ G.U.T)
    x = torch.randn(5, 8, generator=gen(1), dtype=F64)
    torch.testing.assert_close(G.denoiser(x, 0.7), gm.denoiser(x, 0.7))


def _ode_error(sampler, n: int) -> float:
    x = G.mu + 40.0 * torch.randn(16, 8, generator=gen(2), dtype=F64)
    sigmas = karras_sigmas(n, 0.01, 40.0, append_zero=False)
    return (sampler(G.denoiser, x, sigmas) - G.flow(x, 40.0, 0.01)).abs().max().item()


@pytest.mark.parametrize("sampler,order", [(S.ddim_ve, 1), (S.flow_euler, 1), (S.heun, 2)])
def test_pf_ode_convergence_order(sampler, order):
    """Error vs the exact PF-ODE map falls like n^-order (Euler/DDIM 1, Heun 2): fitted slope within 0.25."""
    ns = [16, 32, 64, 128]
    errs = [_ode_error(sampler, n) for n in ns]
    slope = -(math.log(errs[-1]) - math.log(errs[1])) / (math.log(ns[-1]) - math.log(ns[1]))
    assert abs(slope - order) < 0.25, (errs, slope)


def test_sbim_does_not_converge_to_the_pf_ode():
    """SBIM's error does not vanish as the steps grow (it is not a discretisation of the PF-ODE)."""
    errs = [_ode_error(S.sbim, n) for n in (32, 128)]
    assert min(errs) > 0.1 and errs[1] > 0.5 * errs[0], errs


def test_last_step_to_zero_returns_tweedie():
    """Card 11 (e3): a step from σ to 0 returns x + σ² s = D(x, σ) for every VE sampler."""
    x, sig = torch.randn(6, 8, generator=gen(3), dtype=F64), torch.tensor([0.8, 0.0], dtype=F64)
    expected = G.denoiser(x, 0.8)
    for f in (S.ddim_ve, S.heun, S.flow_euler, S.ddpm, S.euler_maruyama):
        torch.testing.assert_close(f(G.denoiser, x, sig, generator=gen(0)), expected, msg=f.__name__)
    torch.testing.assert_close(S.predictor_corrector(G.denoiser, x, sig, n_corrector=0), expected)
    torch.testing.assert_close(S.ddim(G.denoiser, x, sig, eta=0.7, generator=gen(0)), expected)


# ------------------------------------------------------------------------- identities

def test_ddim_eta0_equals_ddim_ve_and_flow_euler():
    """DDIM(η=0) in VE coordinates = exact VE-DDIM = Euler on the PF-ODE = rectified-flow Euler."""
    x = G.mu + 20.0 * torch.randn(7, 8, generator=gen(4), dtype=F64)
    sig = karras_sigmas(12, 0.002, 20.0)
    ref = S.ddim_ve(G.denoiser, x, sig)
    torch.testing.assert_close(S.ddim(G.denoiser, x, sig, eta=0.0), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S.flow_euler(G.denoiser, x, sig), ref, rtol=1e-10, atol=1e-10)


def test_ddim_eta1_equals_ddpm_with_the_same_noise():
    x = G.mu + 20.0 * torch.randn(7, 8, generator=gen(5), dtype=F64)
    sig = karras_sigmas(12, 0.002, 20.0)
    torch.testing.assert_close(S.ddim(G.denoiser, x, sig, eta=1.0, generator=gen(6)),
                               S.ddpm(G.denoiser, x, sig, generator=gen(6)), rtol=1e-10, atol=1e-10)


def test_ddim_transition_is_the_vp_formula_rescaled():
    """One DDIM step at η = 0.5 equals the VP update (card 8) divided by √ᾱ', noise draw included:
    x'_VP = √ᾱ' x̂0 + √(1 - ᾱ' - σ_η²) ε̂ + σ_η z, σ_η = η √((1-ᾱ')/(1-ᾱ)) √(1 - ᾱ/ᾱ')."""
    x, sig, eta = torch.randn(5, 8, generator=gen(7), dtype=F64) * 1.5, torch.tensor([1.2, 0.4], dtype=F64), 0.5
    out = S.ddim(G.denoiser, x, sig, eta=eta, generator=gen(8))
    a, a_next = alpha_bar_from_sigma(1.2).item(), alpha_bar_from_sigma(0.4).item()
    x_vp, x0_hat = math.sqrt(a) * x, G.denoiser(x, 1.2)
    eps_hat = (x_vp - math.sqrt(a) * x0_hat) / math.sqrt(1 - a)
    s_eta = eta * math.sqrt((1 - a_next) / (1 - a)) * math.sqrt(1 - a / a_next)
    z = torch.randn(x.shape, generator=gen(8), dtype=F64)
    vp = math.sqrt(a_next) * x0_hat + math.sqrt(1 - a_next - s_eta ** 2) * eps_hat + s_eta * z
    torch.testing.assert_close(out, vp / math.sqrt(a_next), rtol=1e-12, atol=1e-12)


def test_ddpm_in_vp_coordinates_matches_the_ve_form():
    """DDPM with an ε-model in VP coordinates (Ho et al. Alg. 2) traces the VE-form trajectory
    scaled by √ᾱ (x_VP = √ᾱ x_VE) with the same noise draws."""
    eps_model = lambda x, ab: (x - ab.sqrt()[:, None] * G.denoiser(  # noqa: E731
        x / ab.sqrt()[:, None], ((1 - ab) / ab).sqrt())) / (1 - ab).sqrt()[:, None]
    sig = karras_sigmas(15, 0.002, 30.0)
    ab = alpha_bar_from_sigma(sig)
    x = G.mu + 30.0 * torch.randn(6, 8, generator=gen(9), dtype=F64)
    ve, vp = [], []
    out_ve = S.ddpm(G.denoiser, x, sig, generator=gen(10), callback=lambda d: ve.append(d["x"]))
    out_vp = S.ddpm_vp(eps_model, x * ab[0].sqrt(), ab, generator=gen(10), callback=lambda d: vp.append(d["x"]))
    torch.testing.assert_close(out_vp, out_ve, rtol=1e-9, atol=1e-9)  # ᾱ = 1 at σ = 0
    for i, (a, b) in enumerate(zip(ve, vp)):
        torch.testing.assert_close(b / ab[i].sqrt(), a, rtol=1e-9, atol=1e-9)


def test_ddpm_vp_recovers_the_variance_on_a_linear_schedule():
    """Card 7 (e2): DDPM (T = 1000, linear β) with the exact ε of N(0, τ²) ends with variance ≈ τ²."""
    from diffcourse.prior.processes import DDPM
    tau2 = 0.25
    ab = torch.cat([DDPM.linear().alpha_bars.flip(0), torch.ones(1, dtype=F64)])  # increasing, ends at 1
    def eps_model(x, alpha_bar):  # exact ε = -√(1-ᾱ) s_VP with p_VP = N(0, ᾱτ² + 1 - ᾱ)
        a = alpha_bar[:, None]
        return x * (1 - a).sqrt() / (a * tau2 + 1 - a)
    x = torch.randn(4000, 1, generator=gen(11), dtype=F64)
    out = S.ddpm_vp(eps_model, x, ab, generator=gen(12))
    assert abs(out.var().item() / tau2 - 1) < 0.06, out.var().item()


def test_sbim_step_is_the_ddim_step_times_sqrt_alpha_bar():
    """Card 11: one SBIM step moves √ᾱ = 1/√(1+σ²) times as far as the exact VE-DDIM step."""
    x, sig = torch.randn(4, 8, generator=gen(13), dtype=F64), torch.tensor([3.0, 2.0], dtype=F64)
    ratio = (S.sbim(G.denoiser, x, sig) - x) / (S.ddim_ve(G.denoiser, x, sig) - x)
    torch.testing.assert_close(ratio, torch.full_like(ratio, 1 / math.sqrt(10.0)))


@pytest.mark.parametrize("n", [33, 100])
def test_sbim_card11_numbers(n):
    """Card 11: N(0, 0.5²), σ 232 -> 0.0066 geometric + 0. Exact VE-DDIM from N(0, σ_max²) ends with
    std ≈ 0.46-0.50; SBIM from N(0, I) (the code's start) with std ≈ 0.22-0.26 (< 0.7 τ); SBIM from
    N(0, σ_max²) does not contract at all (std ≈ 59)."""
    tau = 0.5
    D = lambda x, sigma: x * tau ** 2 / (tau ** 2 + torch.as_tensor(sigma).reshape(-1, 1) ** 2)  # noqa: E731
    sig = ve_sigmas(n, 0.0066, 232.0)
    z = torch.randn(20000, 1, generator=gen(14), dtype=F64)
    assert 0.45 < S.ddim_ve(D, 232.0 * z, sig).std().item() < 0.51
    sbim_std = S.sbim(D, z, sig).std().item()
    assert 0.20 < sbim_std < 0.27 and sbim_std < 0.7 * tau, sbim_std
    assert S.sbim(D, 232.0 * z, sig).std().item() > 10


# ------------------------------------------------------------------------- Langevin

def test_langevin_paper_and_code_step_conventions_agree():
    """Card 5: x + (α/2)s + √α z (paper) equals x + δ s + √(2δ) z (code) for α = 2δ."""
    delta, sigma, x = 0.01, 0.3, torch.randn(5, 8, generator=gen(15), dtype=F64)
    out = S.langevin(G.denoiser, x, sigma, alpha=2 * delta, n_steps=7, generator=gen(16))
    g, y = gen(16), x.clone()
    for _ in range(7):
        score = (G.denoiser(y, sigma) - y) / sigma ** 2
        y = y + delta * score + math.sqrt(2 * delta) * torch.randn(y.shape, generator=g, dtype=F64)
    torch.testing.assert_close(out, y, rtol=1e-12, atol=1e-12)


def test_annealed_langevin_final_denoising_variance():
    """Card 5: for N(μ, τ²) the last level's chain has the stationary variance of the unadjusted
    update, 2v/(2 - a) with v = τ² + σ_L², a = α_L/(2v), α_L = ε; the final denoising multiplies it
    by (τ²/v)², i.e. ≈ τ⁴/(τ² + σ_L²) (posterior-mean shrinkage, not τ²)."""
    tau2, mu, sigma_L, eps = 0.25, 0.3, 0.5, 0.05
    D = lambda x, sigma: mu + tau2 / (tau2 + torch.as_tensor(sigma).reshape(-1, 1) ** 2) * (x - mu)  # noqa: E731
    x = mu + 10.0 * torch.randn(4000, 4, generator=gen(17), dtype=F64)
    sig = ve_sigmas(6, sigma_L, 10.0, append_zero=False)
    v, a = tau2 + sigma_L ** 2, eps / (2 * (tau2 + sigma_L ** 2))
    raw = S.annealed_langevin(D, x, sig, eps=eps, n_steps_each=150, final_denoise=False, generator=gen(18))
    den = S.annealed_langevin(D, x, sig, eps=eps, n_steps_each=150, generator=gen(18))
    assert abs(raw.var().item() / (2 * v / (2 - a)) - 1) < 0.04, raw.var().item()
    assert abs(den.var().item() / ((tau2 / v) ** 2 * 2 * v / (2 - a)) - 1) < 0.04, den.var().item()
    assert den.var().item() < 0.6 * tau2  # τ⁴/(τ²+σ_L²) = 0.125, far from τ² = 0.25


def test_snr_step_size_meets_its_definition_per_sample():
    """Card 6: ||ε s|| / ||√(2ε) z|| = r for the drawn z, sample by sample."""
    score = torch.randn(3, 2, 4, 4, generator=gen(19), dtype=F64) * torch.tensor([1.0, 10.0, 0.1],
                                                                                 dtype=F64).reshape(3, 1, 1, 1)
    z = torch.randn(3, 2, 4, 4, generator=gen(20), dtype=F64)
    eps = S.snr_step_size(score, z, 0.16)
    ratio = (eps * score).flatten(1).norm(dim=1) / ((2 * eps).sqrt() * z).flatten(1).norm(dim=1)
    torch.testing.assert_close(ratio, torch.full((3,), 0.16, dtype=F64))
    torch.testing.assert_close(S.snr_step_size(score[:1], z[:1], 0.16), eps[:1])  # no batch coupling


# ------------------------------------------------------------------------- lesson 04 references

def test_lesson04_references_agree_with_the_library():
    """The exercise checks' reference answers (VP formulas) agree with the library's VE samplers."""
    from diffcourse.checks.lesson04 import check_ddim_step, check_eps_from_denoiser, check_ve_to_vp
    from diffcourse.prior.denoisers import to_eps
    from diffcourse.prior.processes import VPLinear
    x, s, s_next, eta = 2.0 * torch.randn(5, 8, generator=gen(21), dtype=F64), 2.0, 0.7, 0.6
    x_vp, a = check_ve_to_vp.reference(x, s)
    a_next = alpha_bar_from_sigma(s_next).item()
    eps = check_eps_from_denoiser.reference(G.denoiser, x_vp, a)
    z = torch.randn(x.shape, generator=gen(22), dtype=F64)
    step = check_ddim_step.reference(x_vp, eps, a, a_next, eta, z)
    library = S.ddim(G.denoiser, x, torch.tensor([s, s_next], dtype=F64), eta=eta, generator=gen(22))
    torch.testing.assert_close(step / math.sqrt(a_next), library, rtol=1e-12, atol=1e-12)
    vp = VPLinear()
    t = vp.t_of_sigma(torch.tensor(s, dtype=F64))
    torch.testing.assert_close(eps, to_eps(G.denoiser, vp)(x_vp, t), rtol=1e-10, atol=1e-10)
