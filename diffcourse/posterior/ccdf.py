"""CCDF, come closer diffuse faster (Chung, Sim & Ye, CVPR 2022): a warm start, and why it works.

Start a shorter reverse chain from a forward-diffused initial estimate instead of from noise:
x_{N'} = √ᾱ_{N'} x0_init + √(1 - ᾱ_{N'}) z (their Alg. 1, line 1), i.e. x0_init + σ_{N'} z in the
course's VE coordinates, with N' = t0 · N of the N steps left. :func:`warm_start` returns that
state and the tail of the schedule, so every solver of :mod:`diffcourse.posterior.solvers` and every
sampler of :mod:`diffcourse.prior.samplers` runs from it unchanged.

Why a better start needs fewer steps: reverse diffusion is a contraction (their Thm. 1). Two chains
with the same noise, one step of an update x' = a x + (1 - a) D(x, σ) + noise, differ by
Δ' = [a + (1 - a) J_D] Δ with J_D the Jacobian of the denoiser. The paper's λ takes the score of
q(x_i | x0) for the true x0, i.e. D ≡ x0 (J_D = 0): the factor is a alone,

    DDPM  a = √α_i (1 - ᾱ_{i-1})/(1 - ᾱ_i)   (VP coordinates; σ'²/σ² · √((1 + σ²)/(1 + σ'²)))
    SMLD  a = (σ_{i-1}² - σ_0²)/(σ_i² - σ_0²) (VE; σ'²/σ² when σ_0 = 0; DDPM's step in VE coordinates)
    DDIM  a = σ_{i-1}/σ_i                     (VE; η = 0)

(:func:`lambda_ddpm`, :func:`lambda_smld`, :func:`lambda_ddim`). For a Gaussian prior N(μ, s² I),
J_D = s²/(s² + σ²) and the factor is exactly a + (1 - a) s²/(s² + σ²) (:func:`gaussian_factors`), so
the paper's λ is its s → 0 limit, a lower bound: a prior with spread contracts less, and not at all
where σ ≪ s. The bound ε̄_0 ≤ 2Cτ/(1 - λ²) + λ^{2N'} ε̄_{N'} (Thm. 1) is :func:`error_bound`;
:func:`contraction_factors` and :func:`coupled_error` measure what a sampler step really does.

What was verified numerically (tests/test_ccdf.py, exact Gaussian and Gaussian-mixture denoisers):
* the measured per-step factor equals the paper's λ_i to 1e-12 for a point-mass prior (D ≡ x0),
  for DDPM (in VP coordinates), SMLD and DDIM; for N(μ, s² I) it equals a + (1 - a) s²/(s² + σ²);
* with the same noise in both chains (C = 0) the error after N' steps equals ε_0 Π J_i² (Gaussian
  prior), obeys λ_eff^{2N'} ε_0 with λ_eff the largest true factor of the window, and on a geometric
  ladder decays at the paper's rate λ² per step once σ_{N'} ≫ s, but with a prefactor ≈ (s/σ_min)²;
* the paper's λ does NOT bound a real prior's contraction: on N(0, I) the measured factors exceed it
  at low σ (ratio → 1), and on a Gaussian mixture a step can even expand (factor > 1) where chains
  fall into different modes; the bound with the paper's λ then fails, with the measured λ it holds.
What could not be verified (the paper's proof and official code were not available): the
constants C (n(1 - α_N) for DDPM as printed; n max(σ_i² - σ_{i-1}²) for SMLD; 0 for DDIM) and
τ = Tr(AᵀA)/n of the noise term, and whether ε̄ in the paper is per pixel or a total; the noise term
here is only a function of the C and τ the caller passes.
"""
from __future__ import annotations

import math

import torch

from .._validate import check_int, check_nonnegative, check_positive, check_tensor
from ..prior.samplers.loop import check_generator, guard, noise, prepare

__all__ = ["warm_start", "lambda_ddpm", "lambda_smld", "lambda_ddim", "vp_factors", "gaussian_factors",
           "contraction_factors", "coupled_error", "error_bound"]


def _schedule(sigmas) -> torch.Tensor:
    """Raise unless ``sigmas`` is 1-D, finite, strictly decreasing and ends at 0; its float64 copy on CPU."""
    check_tensor(sigmas, "sigmas", ndim=1)
    s = sigmas.detach().to("cpu", torch.float64)
    if s.numel() < 2:
        raise ValueError(f"sigmas needs at least 2 values (one step), got {s.numel()}")
    if not bool(torch.isfinite(s).all()) or bool((s[:-1] <= s[1:]).any()):
        raise ValueError(f"sigmas must be finite and strictly decreasing, got {s.tolist()[:6]}...")
    if s[-1] != 0:
        raise ValueError(f"sigmas must end at 0 (the chain returns a clean estimate), got {s[-1].item()}")
    return s


def warm_start(x_init: torch.Tensor, sigmas: torch.Tensor, t0: float, *,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CCDF start (Chung, Sim & Ye, CVPR 2022, Alg. 1 line 1): x_{N'} = x0_init + σ_{N'} z, N' = ⌈t0 N⌉.

    ``sigmas``: the full schedule (N + 1 values, strictly decreasing, ending at 0); ``t0`` in (0, 1]
    is the fraction of its N steps to run (t0 = 1: the whole chain, from a noised estimate). In VP
    coordinates this is √ᾱ x0_init + √(1 - ᾱ) z. Returns (x_start (B, ...) like x_init, the last
    N' + 1 values of ``sigmas``), ready for any ``solver(D, x_start, tail, lik, ...)``.

    >>> from diffcourse.prior.processes import karras_sigmas
    >>> x, tail = warm_start(torch.zeros(2, 3), karras_sigmas(100), 0.2, generator=torch.Generator().manual_seed(0))
    >>> x.shape, len(tail) - 1, float(tail[-1])
    (torch.Size([2, 3]), 20, 0.0)
    """
    check_tensor(x_init, "x_init")
    if x_init.ndim < 1 or x_init.shape[0] < 1:
        raise ValueError(f"x_init must have a batch dimension first, got shape {tuple(x_init.shape)}")
    s = _schedule(sigmas)
    t0 = check_positive(t0, "t0")
    if t0 > 1:
        raise ValueError(f"t0 must lie in (0, 1] (the fraction of the schedule to run), got {t0}")
    check_generator(generator, x_init)
    n = s.numel() - 1
    n_prime = max(1, math.ceil(t0 * n - 1e-9))
    tail = sigmas[n - n_prime:].clone()
    return x_init + float(s[n - n_prime]) * noise(x_init, generator), tail


def lambda_ddpm(sigmas: torch.Tensor) -> torch.Tensor:
    """CCDF's per-step DDPM factor √α_i (1 - ᾱ_{i-1})/(1 - ᾱ_i) (Chung, Sim & Ye 2022, Thm. 1), ᾱ = 1/(1 + σ²).

    The x_i coefficient of the posterior mean of q(x_{i-1} | x_i, x0) (Ho et al. 2020, Eq. 7): the
    contraction in VP coordinates when the score knows x0. (N,) float64 for N + 1 levels.

    >>> [round(v, 4) for v in lambda_ddpm(torch.tensor([2.0, 1.0, 0.0])).tolist()]   # (1/4) √(5/2), 0
    [0.3953, 0.0]
    """
    s = sigmas.detach().to("cpu", torch.float64)
    return lambda_smld(sigmas, 0.0) * vp_factors(s)


def lambda_smld(sigmas: torch.Tensor, sigma_0: float = 0.0) -> torch.Tensor:
    """CCDF's per-step SMLD factor (σ_{i-1}² - σ_0²)/(σ_i² - σ_0²) (Thm. 1), VE coordinates; (N,) float64.

    σ_0 is the smallest noise level of the NCSN ladder (0 for a schedule ending at 0). With σ_0 = 0
    it is σ'²/σ², the x coefficient of both :func:`~diffcourse.prior.samplers.ddpm_step` and
    :func:`~diffcourse.prior.samplers.reverse_diffusion_step` (the same mean in VE coordinates).
    """
    s = sigmas.detach().to("cpu", torch.float64)
    s0 = check_nonnegative(sigma_0, "sigma_0") ** 2
    return (s[1:] ** 2 - s0).clamp_min(0) / (s[:-1] ** 2 - s0)


def lambda_ddim(sigmas: torch.Tensor) -> torch.Tensor:
    """CCDF's per-step DDIM factor σ_{i-1}/σ_i (Thm. 1), read with VE σ: x' = x0 + (σ'/σ)(x - x0); (N,) float64."""
    s = sigmas.detach().to("cpu", torch.float64)
    return s[1:] / s[:-1]


def vp_factors(sigmas: torch.Tensor) -> torch.Tensor:
    """√ᾱ_{i-1}/√ᾱ_i = √((1 + σ²)/(1 + σ'²)): multiply a VE distance ratio by it to get the VP one; (N,)."""
    s = sigmas.detach().to("cpu", torch.float64)
    return ((1 + s[:-1] ** 2) / (1 + s[1:] ** 2)).sqrt()


def gaussian_factors(a: torch.Tensor, sigmas: torch.Tensor, s2: float) -> torch.Tensor:
    """Exact per-step factor for a prior N(μ, s² I): a + (1 - a) s²/(s² + σ_i²), VE coordinates; (N,).

    ``a`` (N,): the point-mass factors of the step (:func:`lambda_smld` for DDPM and SMLD,
    :func:`lambda_ddim` for DDIM), since D(x, σ) = μ + s²/(s² + σ²)(x - μ) is affine in x.

    >>> sig = torch.tensor([1.0, 0.5, 0.0])
    >>> gaussian_factors(lambda_ddim(sig), sig, 1.0).tolist()
    [0.75, 0.8]
    """
    s = sigmas.detach().to("cpu", torch.float64)
    g = check_positive(s2, "s2") / (s2 + s[:-1] ** 2)
    return a + (1 - a) * g


def contraction_factors(D, step, x: torch.Tensor, x_other: torch.Tensor, sigmas: torch.Tensor, *,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Measured contraction ||x'_{i+1} - x_{i+1}|| / ||x'_i - x_i|| of two chains driven by the SAME noise.

    ``step(x, x0_hat, sigma, sigma_next, noise)`` is one sampler step of
    :mod:`diffcourse.prior.samplers.steps` (``ddpm_step``, ``reverse_diffusion_step``, ``ddim_step``);
    both chains draw one shared standard normal per step, so the noise cancels in the difference, as
    in the coupling argument of CCDF's Thm. 1. VE coordinates (multiply by :func:`vp_factors` for VP).
    x, x_other: (B, ...) starts at sigmas[0]; returns (N, B) float64, one ratio per step and sample.
    """
    levels, sigma_b = prepare(D, x, sigmas, generator)
    if x_other.shape != x.shape:
        raise ValueError(f"x_other must have the shape of x {tuple(x.shape)}, got {tuple(x_other.shape)}")
    ratios = []
    for i in range(len(levels) - 1):
        z = noise(x, generator)
        gap = (x_other - x).flatten(1).norm(dim=1)                    # (B,)
        x = step(x, D(x, sigma_b[i]), levels[i], levels[i + 1], z)
        x_other = step(x_other, D(x_other, sigma_b[i]), levels[i], levels[i + 1], z)
        guard(x_other - x, "contraction_factors", i, levels[i], "check D and the step function")
        ratios.append(((x_other - x).flatten(1).norm(dim=1) / gap).to(torch.float64))
    return torch.stack(ratios)


def coupled_error(D, step, x_true: torch.Tensor, x_init: torch.Tensor, sigmas: torch.Tensor, n_prime, *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """ε̄_0(N') = mean ||x_0 - x̃_0||² of the chains from x_init and from the truth, N' steps each.

    Both are forward-diffused to σ_{N'} with the same z (so ε̄_{N'} = ε_0 = mean ||x_init - x_true||²
    in VE coordinates) and run with the same noise (C = 0 in Thm. 1) by ``step`` on the last N' steps
    of ``sigmas``; ``n_prime``: a list of N' <= N. Returns (len(n_prime),) float64.
    """
    s = _schedule(sigmas)
    check_generator(generator, x_true)
    z = noise(x_true, generator)
    gap0 = (x_init - x_true).flatten(1).norm(dim=1).to(torch.float64)      # (B,)
    out = []
    for n in n_prime:
        n = check_int(n, "n_prime")
        if n > s.numel() - 1:
            raise ValueError(f"n_prime: each N' must be <= N = {s.numel() - 1} steps of sigmas, got {n}")
        level = float(s[-n - 1])
        r = contraction_factors(D, step, x_true + level * z, x_init + level * z, sigmas[-n - 1:],
                                generator=generator)
        out.append(((gap0 * r.prod(0)) ** 2).mean())
    return torch.stack(out)


def error_bound(eps_start, lam: float, n_prime, *, C: float = 0.0, tau: float = 1.0) -> torch.Tensor:
    """CCDF Thm. 1 (Chung, Sim & Ye 2022): ε̄_0 <= 2Cτ/(1 - λ²) + λ^{2N'} ε̄_{N'}, for each N'.

    ``eps_start`` = ε̄_{N'} (a number, or a tensor broadcastable against ``n_prime``), ``lam`` in [0, 1),
    C and τ the noise constants (C = 0 for DDIM or for two chains sharing their noise).

    >>> error_bound(1.0, 0.5, [0, 1, 2]).tolist()
    [1.0, 0.25, 0.0625]
    """
    lam = check_nonnegative(lam, "lam")
    if lam >= 1:
        raise ValueError(f"lam must be < 1 (a contraction), got {lam}")
    n = torch.as_tensor(n_prime, dtype=torch.float64)
    noise_term = 2 * check_nonnegative(C, "C") * check_nonnegative(tau, "tau") / (1 - lam ** 2)
    return noise_term + lam ** (2 * n) * torch.as_tensor(eps_start, dtype=torch.float64)
