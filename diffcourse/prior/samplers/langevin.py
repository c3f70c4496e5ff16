"""Stochastic samplers: Langevin, annealed Langevin, reverse-SDE Euler–Maruyama, predictor–corrector.

Step-size convention (the factor-2 trap): everywhere here Langevin is written in the **paper form**
(Song & Ermon 2019, Alg. 1)  x ← x + (α/2) s(x, σ) + √α z.  Official code (ncsn, ncsnv2,
score_sde's corrector) writes  x ← x + δ s + √(2δ) z;  the two coincide for **α = 2δ**, so a code
value δ (``step_lr``) is passed here as ``alpha = 2 * delta`` (or ``eps = 2 * step_lr``).
Conventions of D, ``sigmas`` and ``callback``: see :mod:`diffcourse.prior.samplers.loop`.
"""
from __future__ import annotations


import torch

from diffcourse._validate import check_int, check_nonnegative, check_positive

from .loop import guard, noise, prepare, report, score, steps
from .steps import euler_maruyama_step, langevin_step, reverse_diffusion_step

__all__ = ["langevin", "annealed_langevin", "euler_maruyama", "snr_step_size", "predictor_corrector",
           "snr_corrector_step"]

_HINT_LANGEVIN = "lower the step size (alpha / eps) or the number of steps per level"
_HINT_SDE = "use more steps (a finer sigma schedule)"


def langevin(D, x: torch.Tensor, sigma: float, *, alpha: float, n_steps: int = 100,
             generator: torch.Generator | None = None, callback=None, progress: bool = False) -> torch.Tensor:
    """Langevin MCMC at one noise level (Song & Ermon 2019, Eq. 4): x ← x + (α/2) s(x, σ) + √α z.

    Targets p_σ = p_0 * N(0, σ² I) as α → 0, n_steps → ∞. Code-form step δ: pass alpha = 2δ.
    x: (B, ...); returns (B, ...).

    >>> D = lambda x, sigma: x / 2                       # exact denoiser of N(0, I) at sigma = 1
    >>> x = langevin(D, torch.zeros(4000, 1), 1.0, alpha=0.05, n_steps=200,
    ...              generator=torch.Generator().manual_seed(0))
    >>> round(x.var().item(), 1)                         # p_1 = N(0, 2)
    2.0
    """
    check_positive(sigma, "sigma")
    alpha, n_steps = check_positive(alpha, "alpha"), check_int(n_steps, "n_steps")
    levels, sigma_b = prepare(D, x, torch.tensor([float(sigma)], dtype=torch.float64), generator, positive=True)
    for i in steps(n_steps, progress, "langevin"):
        x0_hat = D(x, sigma_b[0])
        report(callback, i, x, levels[0], levels[0], x0_hat)
        x = guard(langevin_step(x, x0_hat, levels[0], noise(x, generator), alpha=alpha),
                  "langevin", i, levels[0], _HINT_LANGEVIN)
    return x


def annealed_langevin(D, x: torch.Tensor, sigmas: torch.Tensor, *, eps: float = 2e-5,
                      n_steps_each: int = 100, final_denoise: bool = True,
                      generator: torch.Generator | None = None, callback=None,
                      progress: bool = False) -> torch.Tensor:
    """Annealed Langevin dynamics (NCSN, Song & Ermon 2019, Alg. 1; final denoising of NCSNv2).

    For each σ_i of the decreasing, positive ``sigmas`` (σ_L = last): α_i = ε σ_i²/σ_L², then
    ``n_steps_each`` times x ← x + (α_i/2) s(x, σ_i) + √α_i z. With ``final_denoise``, return
    D(x, σ_L) = x + σ_L² s(x, σ_L) (Tweedie), else x (a sample of p_{σ_L}). Paper form: the code's
    ``step_lr`` δ equals ε/2. The callback's ``i`` counts every inner step. x: (B, ...).
    """
    eps = check_positive(eps, "eps")
    n_steps_each = check_int(n_steps_each, "n_steps_each")
    levels, sigma_b = prepare(D, x, sigmas, generator, positive=True)
    k = 0
    for j in steps(len(levels), progress, "annealed_langevin"):
        sigma = levels[j]
        alpha = eps * (sigma / levels[-1]) ** 2
        for _ in range(n_steps_each):
            x0_hat = D(x, sigma_b[j])
            report(callback, k, x, sigma, sigma, x0_hat)
            x = guard(langevin_step(x, x0_hat, sigma, noise(x, generator), alpha=alpha),
                      "annealed_langevin", k, sigma, _HINT_LANGEVIN)
            k += 1
    return D(x, sigma_b[-1]) if final_denoise else x


def euler_maruyama(D, x: torch.Tensor, sigmas: torch.Tensor, *, generator: torch.Generator | None = None,
                   callback=None, progress: bool = False) -> torch.Tensor:
    """Euler–Maruyama on the reverse VE SDE (Song et al. 2021, Eq. 6) with σ as the time variable.

    Forward dx = √(dσ²/dσ) dw, so the reverse SDE is dx = -2σ s(x, σ) dσ + √(2σ) dw̄ (σ falling):
    x_{i+1} = x_i + 2σ_i(σ_i - σ_{i+1}) s(x_i, σ_i) + √(2σ_i(σ_i - σ_{i+1})) z.
    A last step to σ = 0 returns the noise-free Tweedie estimate D(x, σ_N) (score_sde's
    ``noise_removal``), since the σ-time step to 0 would overshoot to 2D - x. x: (B, ...).
    """
    levels, sigma_b = prepare(D, x, sigmas, generator)
    for i in steps(len(levels) - 1, progress, "euler_maruyama"):
        x0_hat = D(x, sigma_b[i])
        report(callback, i, x, levels[i], levels[i + 1], x0_hat)
        z = noise(x, generator) if levels[i + 1] > 0 else None
        x = guard(euler_maruyama_step(x, x0_hat, levels[i], levels[i + 1], z),
                  "euler_maruyama", i, levels[i], _HINT_SDE)
    return x


def snr_step_size(score: torch.Tensor, z: torch.Tensor, snr: float) -> torch.Tensor:
    """Corrector step of score-SDE (Song et al. 2021, Alg. 4, VE): ε = 2 (r ||z|| / ||s||)², per sample.

    Chosen so that ||ε s|| / ||√(2ε) z|| = r exactly. score, z: (B, ...); returns (B, 1, ..., 1).
    """
    norm_s = score.flatten(1).norm(dim=1).clamp_min(torch.finfo(score.dtype).tiny)  # (B,)
    eps = 2 * (snr * z.flatten(1).norm(dim=1) / norm_s) ** 2
    return eps.reshape(-1, *([1] * (score.ndim - 1)))


def predictor_corrector(D, x: torch.Tensor, sigmas: torch.Tensor, *, snr: float = 0.16, n_corrector: int = 1,
                        generator: torch.Generator | None = None, callback=None,
                        progress: bool = False) -> torch.Tensor:
    """Predictor–corrector sampler, VE (Song et al. 2021, Alg. 2): Langevin corrector, then reverse diffusion.

    The paper's Alg. 2 runs the predictor first; like the official code we run the corrector first
    at each level (the official code and Alg. 2 disagree on the order), which changes nothing in the
    limit of small steps.

    Order as in the official code (corrector first, at the current σ_i, then the predictor):
    ``n_corrector`` times  x ← x + ε s + √(2ε) z,  ε = :func:`snr_step_size` (per sample);
    then  x ← x + (σ_i² - σ_{i+1}²) s + √(σ_i² - σ_{i+1}²) z.  A last step to σ = 0 returns its
    mean D(x, σ_N) (noise removal). Network evaluations: (n_corrector + 1) per σ. x: (B, ...).
    The snr rule needs many dimensions per sample (images): for one 2-D point ||z||/||s|| is
    heavy-tailed and a rare huge step throws it away; pass low-dimensional toy data as one sample.
    """
    snr = check_nonnegative(snr, "snr")
    n_corrector = check_int(n_corrector, "n_corrector", 0)
    levels, sigma_b = prepare(D, x, sigmas, generator)
    for i in steps(len(levels) - 1, progress, "predictor_corrector"):
        for _ in range(n_corrector):
            x = snr_corrector_step(x, D(x, sigma_b[i]), levels[i], noise(x, generator), snr=snr)
        x0_hat = D(x, sigma_b[i])
        report(callback, i, x, levels[i], levels[i + 1], x0_hat)
        z = noise(x, generator) if levels[i + 1] > 0 else None
        x = guard(reverse_diffusion_step(x, x0_hat, levels[i], levels[i + 1], z),
                  "predictor_corrector", i, levels[i], "lower snr or use more steps")
    return x


def snr_corrector_step(x, x0_hat, sigma, noise, *, snr: float):
    """One Langevin corrector step of score-SDE (Song et al. 2021, Alg. 4): x + ε s + √(2ε) z,
    ε = :func:`snr_step_size` (per sample)."""
    grad = score(x, x0_hat, sigma)
    eps = snr_step_size(grad, noise, snr)
    return x + eps * grad + (2 * eps).sqrt() * noise
