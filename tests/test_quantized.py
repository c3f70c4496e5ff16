"""Quantized compressed sensing: QCS-SGM's closed form and QCS-SGM+'s EP against autograd, limits,
Monte Carlo and brute-force integrals; both solvers on a Gaussian-mixture testbed with the exact
quantized posterior; the ill-conditioned / correlated sensing matrices; solver properties."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from diffcourse.physics.cs import SubsampledDCT
from diffcourse.physics.cs_matrices import correlated, haar_orthogonal, ill_conditioned, kms, row_orthogonal
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.matrix import Matrix
from diffcourse.physics.noise import GaussianNoise, QuantizedNoise
from diffcourse.physics.nonlinear import Quantizer
from diffcourse.posterior import guidance_quantized as G
from diffcourse.posterior.solvers.quantized import qcs_sgm, qcs_sgm_plus
from diffcourse.prior.processes import ve_sigmas
from diffcourse.prior.toy import GaussianMixture

from _util import gen

F64 = torch.float64


def quantized_lik(op, quant, sigma_y, x0, seed=0):
    return Likelihood.measure(op, QuantizedNoise(quant, sigma_y), x0, generator=gen(seed))


def flat_prior_log_lik(A, l, u, sigma_y, sigma, x):
    """Σ_m log[Φ((u - a_m x)/s_m) - Φ((l - a_m x)/s_m)], s_m² = σ_y² + σ²||a_m||², plain ndtr (no log tricks)."""
    z = x @ A.T
    s = (sigma_y ** 2 + sigma ** 2 * (A ** 2).sum(1)).sqrt()
    return torch.log(torch.special.ndtr((u - z) / s) - torch.special.ndtr((l - z) / s)).sum(1)


# ------------------------------------------------------------------------------- QCS-SGM's closed form
@pytest.mark.parametrize("quant", [Quantizer.sign(), Quantizer([0.4]), Quantizer.uniform(2, -1.5, 1.5),
                                   Quantizer.uniform(3, -2.0, 2.0)], ids=["sign", "1bit@0.4", "2bit", "3bit"])
def test_g_is_the_autograd_derivative_of_the_flat_prior_log_likelihood(quant):
    """Card 24 (e1): Aᵀ g = ∇_x of the factorised log-likelihood (row-orthogonal A, unequal row norms)."""
    A = row_orthogonal(7, 4, generator=gen(1)).matrix * torch.tensor([1.0, 2.0, 0.5, 1.3], dtype=F64)[:, None]
    x0 = torch.randn(1, 7, generator=gen(2), dtype=F64)
    lik = quantized_lik(Matrix(A), quant, 0.3, x0)
    x = x0 + 0.4 * torch.randn(3, 7, generator=gen(3), dtype=F64)
    sigma = torch.tensor([0.0, 0.5, 2.0], dtype=F64)
    l, u = quant.bounds(lik.y, dtype=F64)
    xg = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(flat_prior_log_lik(A, l, u, 0.3, sigma[:, None], xg).sum(), xg)
    torch.testing.assert_close(G.qcs(x, sigma, lik), ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(G.qcs(x, 0.0, lik), lik.grad(x), rtol=1e-9, atol=1e-10)  # σ = 0: ∇ log p(y | x)


def test_card_value_and_tails_without_clamping():
    """Card §31 value; far in the wrong tail g is the inverse Mills ratio |t| + 1/|t| - 2/|t|³ (the official
    code's clamp at 1e-6 would return ≈ 0 there)."""
    g = G.qcs_multibit_g(torch.tensor([0.3], dtype=F64), torch.tensor([-0.2], dtype=F64),
                         torch.tensor([0.7], dtype=F64), torch.tensor([0.4], dtype=F64))
    assert g.item() == pytest.approx(-0.2015837, abs=1e-7)
    for t in (-12.0, -40.0, -300.0):
        one = G.qcs_onebit_g(torch.tensor([t], dtype=F64), torch.tensor([1.0], dtype=F64),
                             torch.tensor([1.0], dtype=F64))
        multi = G.qcs_multibit_g(torch.tensor([t], dtype=F64), torch.tensor([0.0], dtype=F64),
                                 torch.tensor([math.inf], dtype=F64), torch.tensor([1.0], dtype=F64))
        T = abs(t)
        assert one.item() == pytest.approx(T + 1 / T - 2 / T ** 3, rel=1e-6 if T > 20 else 1e-4)
        assert multi.item() == pytest.approx(one.item(), rel=1e-12)
    # a finite bin far out on the right: the mean of N(0, 1) truncated to [30, 31) is just above 30
    mean = G.normal_interval_score(torch.tensor([30.0], dtype=F64), torch.tensor([31.0], dtype=F64))
    assert 30.0 < mean.item() < 30.04


def test_one_bit_formula_equals_the_multi_bit_one_with_half_line_bins():
    """Card 24 (e3): the 1-bit g (y = ±1, threshold t) = the multi-bit g with [t, ∞) and (-∞, t)."""
    z = torch.linspace(-6, 6, 41, dtype=F64)[None].expand(2, -1)
    y = torch.tensor([[1.0], [-1.0]], dtype=F64).expand(2, 41)
    s = torch.full_like(z, 0.7)
    inf = torch.full_like(z, math.inf)
    for t in (0.0, 0.4):
        l = torch.where(y > 0, torch.full_like(z, t), -inf)
        u = torch.where(y > 0, inf, torch.full_like(z, t))
        torch.testing.assert_close(G.qcs_onebit_g(z, y, s, t), G.qcs_multibit_g(z, l, u, s), rtol=1e-12, atol=1e-12)


def test_fine_quantization_tends_to_the_gaussian_term():
    """Card 24 (e2): bins [c - Δ/2, c + Δ/2) shrinking to the value c give g → (c - z)/s², error O(Δ²)."""
    z = torch.tensor([-0.3, 0.2, 1.1], dtype=F64)
    c = torch.tensor([0.4, -0.5, 1.0], dtype=F64)
    s = torch.tensor([0.2, 0.5, 0.3], dtype=F64)
    gauss = (c - z) / s ** 2
    errs = [float(((G.qcs_multibit_g(z, c - d / 2, c + d / 2, s) - gauss) / gauss).abs().max())
            for d in (0.1, 0.01, 1e-3)]
    assert errs[0] < 0.05 and errs[2] < 1e-5
    assert errs[1] / errs[0] == pytest.approx(0.01, rel=0.1)  # second order in Δ


def test_fine_quantizer_guidance_tends_to_the_annealed_gaussian_score():
    """Through a likelihood: a 14-bit quantizer on a row-orthogonal A gives Jalal's Aᵀ(y - A x)/(σ_y² + σ²)."""
    op = row_orthogonal(6, 4, generator=gen(4))
    quant = Quantizer.uniform(14, -4.0, 4.0)
    x0 = torch.randn(1, 6, generator=gen(5), dtype=F64)
    lik = quantized_lik(op, quant, 0.2, x0)
    y_val = quant.dequantize(lik.y, dtype=F64)
    x = torch.randn(2, 6, generator=gen(6), dtype=F64)
    gauss = (y_val - op.A(x)) @ op.matrix / (0.2 ** 2 + 0.7 ** 2)
    torch.testing.assert_close(G.qcs(x, 0.7, lik), gauss, rtol=1e-6, atol=1e-6)


def test_monte_carlo_p_y_given_x_sigma_factorises_for_row_orthogonal_A():
    """Card 24 (e4): with x0 ~ N(x_σ, σ² I) the frequencies of the joint 1-bit outcomes match
    Π_m [Φ(...) - Φ(...)] for row-orthogonal A, and miss it for a correlated A (why QCS-SGM+ exists)."""
    x_s = torch.tensor([[0.3, -0.2, 0.5, 0.1, -0.4]], dtype=F64)
    sigma, sigma_y, n = 0.6, 0.3, 200_000
    quant = Quantizer.sign()
    g = gen(7)
    for op, factorises in ((row_orthogonal(5, 3, scale=1.5, generator=gen(8)), True),
                           (Matrix(torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0], [1.0, 0.9, 0.2, 0.0, 0.0],
                                                 [0.9, 1.0, 0.0, 0.3, 0.0]], dtype=F64)), False)):
        x0 = x_s + sigma * torch.randn(n, 5, generator=g, dtype=F64)
        k = QuantizedNoise(quant, sigma_y).sample(op.A(x0), generator=g)           # (n, 3) in {0, 1}
        code = (k * torch.tensor([1, 2, 4])).sum(1)
        freq = torch.bincount(code, minlength=8).to(F64) / n
        outcomes = torch.tensor([[(c >> m) & 1 for m in range(3)] for c in range(8)])
        l, u = quant.bounds(outcomes, dtype=F64)
        p = flat_prior_log_lik(op.matrix, l, u, sigma_y, sigma, x_s.expand(8, -1)).exp()
        z = (freq - p).abs().max() / math.sqrt(0.25 / n)
        assert bool(z < 5) == factorises, (factorises, float(z))


# ------------------------------------------------------------------------------- QCS-SGM+ (EP)
def box_prob(lo, hi, cov):
    if len(lo) == 1:
        s = math.sqrt(cov[0, 0])
        return stats.norm.cdf(hi[0] / s) - stats.norm.cdf(lo[0] / s)
    mvn = stats.multivariate_normal(np.zeros(len(lo)), cov, abseps=1e-8, releps=1e-6, maxpts=50_000)
    return mvn.cdf(np.minimum(hi, 50.0), lower_limit=np.maximum(lo, -50.0))


def brute_force_box_score(z, l, u, C):
    """∇_z log P(z + ñ ∈ [l, u)), ñ ~ N(0, C), by the face formula ∂P/∂z_m = p_m(l_m - z_m) P(rest | l) -
    p_m(u_m - z_m) P(rest | u) with Genz's MVN integrals (scipy)."""
    M = len(z)
    P = box_prob(l - z, u - z, C)
    g = np.zeros(M)
    for m in range(M):
        r = [i for i in range(M) if i != m]
        cond = C[np.ix_(r, r)] - np.outer(C[r, m], C[r, m]) / C[m, m]
        for t, sign in ((l[m] - z[m], 1.0), (u[m] - z[m], -1.0)):
            if np.isfinite(t):
                shift = C[r, m] * t / C[m, m]
                g[m] += sign * stats.norm.pdf(t, 0, math.sqrt(C[m, m])) * box_prob(l[r] - z[r] - shift,
                                                                                  u[r] - z[r] - shift, cond)
    return g / P


@pytest.mark.parametrize("quant", [Quantizer.sign(), Quantizer.uniform(2, -1.0, 1.0)], ids=["1bit", "2bit"])
def test_ep_reproduces_qcs_sgm_when_AAT_is_a_multiple_of_I(quant):
    """Card 25 (e): A Aᵀ = c I makes the scalar-variance EP exact: it returns QCS-SGM's closed form."""
    op = row_orthogonal(9, 5, scale=1.7, generator=gen(9))
    x0 = torch.randn(1, 9, generator=gen(10), dtype=F64)
    lik = quantized_lik(op, quant, 0.2, x0)
    x = x0 + torch.randn(4, 9, generator=gen(11), dtype=F64)
    sigma = torch.tensor([0.05, 0.5, 1.0, 5.0], dtype=F64)
    ref = G.qcs(x, sigma, lik)
    for n_iter, damping in ((0, 0.02), (10, 0.02), (25, 0.5)):
        torch.testing.assert_close(G.qcs_ep(x, sigma, lik, n_iter=n_iter, damping=damping), ref, rtol=1e-9, atol=1e-9)


def test_ep_gradient_against_a_brute_force_integral():
    """Card 25 (e): nine small problems (M = 4: ill-conditioned κ = 100, 1000 and correlated ρ = 0.8, 2-bit,
    σ = 1, where σ² A Aᵀ dominates σ_y² I) against the exact ∇_z log P(box) (Genz integrals + face formula).

    What holds: the paper's scalar-variance EP beats QCS-SGM's diagonal approximation on most problems
    (8 of 9 here) and its median error is a quarter of QCS-SGM's (0.17 vs 0.72), but it is an
    approximation, not the integral: where diag(C) is very uneven it can be worse than QCS-SGM (one
    problem here, error 1.1 vs 0.55). (An EP with one variance per measurement, M x M solves per
    iteration, gets within 3 % on eight of these nine.)"""
    rng = np.random.default_rng(1)
    sy2, sigma, N, M = 0.01, 1.0, 8, 4
    ep_err, diag_err = [], []
    for seed in range(9):
        op = [ill_conditioned(N, M, 100.0, generator=gen(20 + seed)),
              ill_conditioned(N, M, 1e3, generator=gen(20 + seed)),
              correlated(N, M, 0.8, generator=gen(20 + seed))][seed % 3]
        A = op.matrix.numpy()
        C = sy2 * np.eye(M) + sigma ** 2 * A @ A.T
        x0 = rng.normal(size=N)
        z = A @ (x0 + sigma * rng.normal(size=N))
        th = np.array([-1.0, 0.0, 1.0])
        k = np.searchsorted(th, A @ x0 + 0.1 * rng.normal(size=M), side="right")
        lo, hi = np.concatenate([[-np.inf], th])[k], np.concatenate([th, [np.inf]])[k]
        exact = brute_force_box_score(z, lo, hi, C)
        lam, U = np.linalg.eigh(A @ A.T)
        T = lambda a: torch.tensor(a, dtype=F64)[None]  # noqa: E731
        ep = G.ep_box_score(T(z), T(lo), T(hi), T(1 / (sy2 + sigma ** 2 * lam)), torch.tensor(U), n_iter=10)[0].numpy()
        diag = G.qcs_multibit_g(T(z), T(lo), T(hi), T(np.sqrt(np.diag(C))))[0].numpy()
        ep_err.append(np.linalg.norm(ep - exact) / np.linalg.norm(exact))
        diag_err.append(np.linalg.norm(diag - exact) / np.linalg.norm(exact))
    ep_err, diag_err = np.array(ep_err), np.array(diag_err)
    assert (ep_err < diag_err).sum() >= 7, (ep_err, diag_err)
    assert np.median(ep_err) < 0.25 and np.median(ep_err) < 0.5 * np.median(diag_err), (ep_err, diag_err)


# ------------------------------------------------------------------------------- testbed: exact quantized posterior
def mixture(d=4, K=6, seed=0):
    """K equal-weight Gaussians N(μ_k, 0.15² I) in R^d, μ_k ~ N(0, I)."""
    means = torch.randn(K, d, generator=gen(seed), dtype=F64)
    covs = 0.15 ** 2 * torch.eye(d, dtype=F64).expand(K, d, d)
    return GaussianMixture(torch.full((K,), 1.0 / K, dtype=F64), means, covs)


def reference_posterior(gm, lik, n=200_000, seed=1):
    """p(x0 | y) ∝ p(x0) Π_m P(y_m | a_m x0): importance sampling from the prior, resampled to 20 000 points."""
    x0 = gm.sample(n, gen(seed))
    w = torch.softmax(lik.log_prob(x0), 0)
    ess = float(1 / (w ** 2).sum())  # the reference is only as good as its effective sample size
    if ess <= 5000:
        raise AssertionError(f"importance sampling degenerated (effective sample size {ess:.0f} of {n}); "
                             f"the reference posterior would be noise: draw more prior samples")
    return x0[torch.multinomial(w, 20_000, replacement=True, generator=gen(seed + 1))]


def sliced_w1(a, b, n_dir=64, n_q=200):
    """Mean over random directions of the 1-D Wasserstein-1 distance (by sorted quantiles)."""
    th = torch.randn(n_dir, a.shape[1], generator=gen(99), dtype=F64)
    th = th / th.norm(dim=1, keepdim=True)

    def quantiles(v):
        s = (v @ th.T).sort(0).values
        return s[((torch.arange(n_q) + 0.5) / n_q * s.shape[0]).long()]
    return float((quantiles(a) - quantiles(b)).abs().mean())


def run_testbed(cond, seed=0, n=300, solvers=(qcs_sgm, qcs_sgm_plus)):
    gm = mixture(seed=seed)
    x_true = gm.sample(1, gen(100 + seed))
    lik = quantized_lik(ill_conditioned(4, 4, cond, generator=gen(200 + seed)), Quantizer.uniform(3, -2.0, 2.0), 0.1,
                        x_true, seed=300 + seed)
    ref = reference_posterior(gm, lik, seed=400 + seed)
    sigmas = torch.cat([torch.logspace(math.log10(3.0), math.log10(0.02), 20, dtype=F64), torch.zeros(1, dtype=F64)])
    x = 3.0 * torch.randn(n, 4, generator=gen(7), dtype=F64)
    outs = [solver(gm.denoiser, x, sigmas, lik, eps=0.3 * 0.02 ** 2, n_steps_each=5, generator=gen(8))
            for solver in solvers]
    return [sliced_w1(o, ref) for o in outs], sliced_w1(ref[:n], ref[n:]), outs


def test_testbed_both_solvers_against_the_exact_quantized_posterior():
    """3-bit CS of a 4-D Gaussian mixture, A = U diag(s) Vᵀ (4 x 4), σ_y = 0.1: sliced W1 to the exact posterior.

    κ = 1 (A Aᵀ = c I): QCS-SGM+ = QCS-SGM to rounding, both near the Monte-Carlo floor.
    κ = 10: QCS-SGM's diagonal likelihood is far off; EP's is at least twice as close.
    κ = 100: both fail alike. The cause is the flat-prior approximation p(x0 | x_σ) ≈ N(x_σ, σ² I) that
    both share, not EP: with Gaussian y the exact flat-prior score Aᵀ(σ_y² + σ² A Aᵀ)⁻¹(y - A x) fails
    there too, while the exact mixture likelihood score samples the posterior.
    """
    (q1,), floor, _ = run_testbed(1.0, solvers=(qcs_sgm,))
    assert q1 < 0.05 and q1 < 5 * floor
    _, _, (a, b) = run_testbed(1.0, n=40)
    torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)
    (q10, e10), _, _ = run_testbed(10.0)
    assert e10 < 0.5 * q10 and q10 > 0.3
    (q100, e100), _, _ = run_testbed(100.0)
    assert min(q100, e100) > 10 * q1


# ------------------------------------------------------------------------------- solver and guidance properties
def D_gauss(x, s):
    """Exact denoiser of N(0.5, I) on vectors."""
    return 0.5 + (x - 0.5) / (1 + s.reshape(-1, 1) ** 2)


def small_problem(dtype=F64, bits=2):
    op = Matrix(ill_conditioned(6, 4, 10.0, generator=gen(30)).matrix.to(dtype))
    quant = Quantizer.sign() if bits == 1 else Quantizer.uniform(bits, -2.0, 2.0)
    lik = quantized_lik(op, quant, 0.1, torch.rand(1, 6, generator=gen(31), dtype=dtype), seed=32)
    return 2 * torch.randn(3, 6, generator=gen(33), dtype=dtype), lik


SOLVERS = [(qcs_sgm, {}), (qcs_sgm_plus, {}), (qcs_sgm_plus, {"likelihood_scale": 0.5})]
IDS = ["qcs_sgm", "qcs_sgm_plus", "qcs_sgm_plus_code"]
L = ve_sigmas(4, 0.05, 3.0)


def run(solver, kw, x, lik, seed=3, sigmas=L):
    return solver(D_gauss, x, sigmas, lik, eps=1e-3, n_steps_each=2, generator=gen(seed), **kw)


@pytest.mark.parametrize("solver,kw", SOLVERS, ids=IDS)
def test_solvers_are_deterministic_and_batch_invariant(solver, kw):
    x, lik = small_problem()
    out = run(solver, kw, x, lik)
    torch.testing.assert_close(out, run(solver, kw, x, lik), rtol=0, atol=0)
    other = torch.cat([x[:1], 100 * x[1:]])
    torch.testing.assert_close(run(solver, kw, other, lik)[0], out[0])
    assert not torch.equal(run(solver, kw, x, lik, seed=4), out)


@pytest.mark.parametrize("guide", [G.qcs, G.qcs_ep])
@pytest.mark.parametrize("bits", [1, 2])
def test_guidance_is_per_sample(guide, bits):
    x, lik = small_problem(bits=bits)
    sigma = torch.tensor([0.1, 1.0, 3.0], dtype=F64)
    whole = guide(x, sigma, lik)
    for i in range(3):
        torch.testing.assert_close(guide(x[i:i + 1], sigma[i:i + 1], lik), whole[i:i + 1], rtol=1e-12, atol=1e-12)


def test_float32_runs_and_agrees_with_float64():
    """Same bins, same draws (CPU randn gives the same first values in both precisions for 12 numbers)."""
    x64, lik64 = small_problem()
    x64 = x64[:2]
    lik32 = Likelihood(Matrix(lik64.op.matrix.float()), lik64.noise, lik64.y)
    for solver, kw in SOLVERS[:2]:
        out = run(solver, kw, x64.float(), lik32)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), run(solver, kw, x64, lik64), rtol=1e-3, atol=1e-3)


def test_no_host_round_trip_in_the_loop(monkeypatch):
    x, lik = small_problem()

    def forbidden(self):
        raise AssertionError(".item() called inside a solver loop")
    G.quantized_problem(lik, x)  # warm the A Aᵀ cache (one eigendecomposition per operator, before any loop)
    monkeypatch.setattr(torch.Tensor, "item", forbidden)
    for solver, kw in SOLVERS:
        run(solver, kw, x, lik)


def test_gram_is_cached_per_operator_and_correct_without_a_matrix():
    op = SubsampledDCT((4, 4), 6, gen(34))
    lam, U, diag = G.gram_eigh(op, (6,))
    assert G.gram_eigh(op, (6,))[1] is U  # computed once
    torch.testing.assert_close(lam, torch.ones(6, dtype=F64))
    torch.testing.assert_close(diag, torch.ones(6, dtype=F64))
    A = correlated(5, 3, 0.5, generator=gen(35))
    lam, U, _ = G.gram_eigh(A, (3,))
    torch.testing.assert_close((U * lam) @ U.T, A.matrix @ A.matrix.T)


def test_bad_input_errors_name_the_argument():
    x, lik = small_problem()
    with pytest.raises(TypeError, match="lik.noise must be a QuantizedNoise"):
        qcs_sgm(D_gauss, x, L, Likelihood(lik.op, GaussianNoise(0.1), torch.zeros(1, 4, dtype=F64)))
    with pytest.raises(TypeError, match="lik.y must hold integer bin indices"):
        G.qcs(x, 0.5, Likelihood(lik.op, lik.noise, lik.y.to(F64)))
    with pytest.raises(ValueError, match="y has shape"):
        qcs_sgm_plus(D_gauss, x, L, Likelihood(lik.op, lik.noise, torch.zeros(1, 5, dtype=torch.long)))
    with pytest.raises(ValueError, match="sigmas"):
        qcs_sgm(D_gauss, x, torch.tensor([1.0, 2.0, 0.0], dtype=F64), lik)
    with pytest.raises(ValueError, match="end at 0"):
        qcs_sgm(D_gauss, x, torch.tensor([3.0, 2.0, 1.0], dtype=F64), lik)
    with pytest.raises(ValueError, match="eps"):
        qcs_sgm(D_gauss, x, L, lik, eps=0.0)
    with pytest.raises(ValueError, match="damping"):
        qcs_sgm_plus(D_gauss, x, L, lik, damping=1.0)
    with pytest.raises(ValueError, match="n_iter"):
        G.qcs_ep(x, 0.5, lik, n_iter=-1)
    with pytest.raises(TypeError, match="n_steps_each"):
        qcs_sgm_plus(D_gauss, x, L, lik, n_steps_each=2.0)
    with pytest.raises(ValueError, match="likelihood_scale"):
        qcs_sgm_plus(D_gauss, x, L, lik, likelihood_scale=-1.0)
    with pytest.raises(ValueError, match="sigma"):
        G.qcs(x, torch.ones(2, dtype=F64), lik)

    class Square:
        def A(self, x):
            return x[:, :4] ** 2
    with pytest.raises(TypeError, match="linear operator"):
        G.qcs_ep(x, 0.5, Likelihood(Square(), lik.noise, lik.y))
    with pytest.raises(FloatingPointError, match=r"qcs_sgm at step \d+ \(sigma="):
        qcs_sgm(D_gauss, x, L, lik, eps=1e6, n_steps_each=20, generator=gen(5))


# ------------------------------------------------------------------------------- the sensing matrices
def test_ill_conditioned_has_the_asked_singular_values():
    for n, m in ((16, 8), (4, 9)):
        A = ill_conditioned(n, m, 1e3, generator=gen(40)).matrix
        s = torch.linalg.svdvals(A)[:min(n, m)]
        torch.testing.assert_close(s[0] / s[-1], torch.tensor(1e3, dtype=F64))
        torch.testing.assert_close(s[1:] / s[:-1], torch.full((min(n, m) - 1,), s[1] / s[0], dtype=F64))  # geometric
        torch.testing.assert_close((A ** 2).sum(), torch.tensor(float(n), dtype=F64))
    torch.testing.assert_close(ill_conditioned(8, 4, 10.0, generator=gen(1)).matrix,
                               ill_conditioned(8, 4, 10.0, generator=gen(1)).matrix, rtol=0, atol=0)
    with pytest.raises(ValueError, match="cond"):
        ill_conditioned(8, 4, 0.5)


def test_correlated_has_kms_row_and_column_correlations():
    """E[A Aᵀ] = R_L tr(R_R)/m and E[Aᵀ A] = R_R tr(R_L)/m with R = [ρ^|i-j|]; ρ = 0 is i.i.d. N(0, 1/m)."""
    n, m, rho = 60, 40, 0.6
    AAt, AtA = torch.zeros(m, m, dtype=F64), torch.zeros(n, n, dtype=F64)
    for seed in range(40):
        A = correlated(n, m, rho, generator=gen(seed)).matrix
        AAt, AtA = AAt + A @ A.T / 40, AtA + A.T @ A / 40
    torch.testing.assert_close(AAt, kms(m, rho) * n / m, atol=0.3, rtol=0)
    torch.testing.assert_close(AtA, kms(n, rho), atol=0.3, rtol=0)
    assert abs(float(torch.diagonal(AAt, 1).mean()) - rho * n / m) < 0.05
    A0 = correlated(n, m, 0.0, generator=gen(1)).matrix
    torch.testing.assert_close(A0, torch.randn(m, n, generator=gen(1), dtype=F64) / math.sqrt(m))
    with pytest.raises(ValueError, match="rho"):
        correlated(8, 4, 1.0)


def test_row_orthogonal_and_haar():
    Q = haar_orthogonal(5, gen(2))
    torch.testing.assert_close(Q.T @ Q, torch.eye(5, dtype=F64))
    A = row_orthogonal(7, 3, scale=0.5, generator=gen(3)).matrix
    torch.testing.assert_close(A @ A.T, 0.25 * torch.eye(3, dtype=F64))
    with pytest.raises(ValueError, match="m must be <= n"):
        row_orthogonal(3, 4)
