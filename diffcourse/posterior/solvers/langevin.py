"""Guided annealed Langevin (Jalal et al., NeurIPS 2021) and guided SBIM (Dimos 2022), VE coordinates.

Both add a likelihood term g ≈ ∇ log p(y | x_σ) to the prior score; the sampler steps take it
as a posterior denoiser x̂0 + σ² g (whose Tweedie score is s + g). Langevin in the paper form
x ← x + (α/2)(s + g) + √α z; the official codes' x + δ(s - g_code) + √(2δ) z is α = 2δ.

The likelihood term, per sample:
* paper form, Aᵀ(y - A x)/(σ_y² + γ²σ²) — Jalal's annealed Gaussian likelihood (γ = 0: the plain
  Aᵀ(y - A x)/σ_y² of Dimos's thesis, NTUA 2022);
* ``mse`` given: the official codes' norm matching, g = mse · ||s|| · u/||u||, u = Aᵀ(y - A x):
  a fixed multiple of the prior score's norm, with no σ_y (a different, uncalibrated target).
"""
from __future__ import annotations

import torch

from ..._validate import check_int, check_nonnegative, check_positive
from ...prior.samplers.loop import guard, noise, report, steps
from ...prior.samplers.steps import ddim_ve_step, langevin_step, sbim_step
from ._common import linear_op, per_sample, real_AT, sample_norm, setup, sigma_y2

__all__ = ["jalal", "guided_sbim"]


def _likelihood_term(lik, op, sy2, gamma, mse):
    """g(x, x0_hat, σ): the annealed Gaussian likelihood score, or the norm-matched code form."""
    def annealed(x, x0_hat, sigma):
        return real_AT(op, lik.residual(x), x) / (sy2 + (gamma * sigma) ** 2)

    def norm_matched(x, x0_hat, sigma):
        u = real_AT(op, lik.residual(x), x)
        tiny = torch.finfo(u.real.dtype if u.is_complex() else u.dtype).tiny
        ratio = sample_norm((x0_hat - x) / sigma ** 2) / sample_norm(u).clamp_min(tiny)
        return mse * per_sample(ratio, u) * u
    return annealed if mse is None else norm_matched


def _prepare(D, x, sigmas, lik, generator, name, gamma, mse):
    levels, sigma_b, _ = setup(D, x, sigmas, lik, generator)
    if len(levels) < 3:
        raise ValueError(f"sigmas needs at least two positive levels before the final 0, got {levels}")
    op = linear_op(lik, name)
    gamma = check_nonnegative(gamma, "gamma")
    if mse is not None:
        mse, sy2 = check_positive(mse, "mse"), None
    else:
        sy2 = sigma_y2(lik, x, name)
    return levels, sigma_b, _likelihood_term(lik, op, sy2, gamma, mse)


def jalal(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, eps: float = 1e-4, n_steps_each: int = 4,
          gamma: float = 1.0, mse: float | None = None, generator: torch.Generator | None = None,
          callback=None, progress: bool = False) -> torch.Tensor:
    """Guided annealed Langevin (Jalal et al., NeurIPS 2021, Alg. 1), paper form:
    x ← x + (α_i/2)[s(x, σ_i) + Aᵀ(y - A x)/(σ_y² + γ²σ_i²)] + √α_i z,  α_i = ε σ_i²/σ_L².

    ``n_steps_each`` steps at every positive level of ``sigmas`` (σ_L the last positive one); the
    trailing 0 stands for the final denoising x̂0 + σ_L² g (posterior Tweedie at σ_L). With γ = 1 and
    A Aᵀ = I the annealed term is the exact ∇ log p(y | x_σ) under a flat prior. ``mse`` (e.g. 5.0,
    the code's brain_T2 config) switches to the code's norm-matched term instead. Defaults from
    the official code: step_lr δ = 5e-5, i.e. ε = 2δ = 1e-4 in the paper form, 4 steps per level
    (σ 232 → 0.0066, 2311 levels, starting at level 1155); images scaled to about [0, 1].
    ε is relative to the last level: the step at σ_i is ε σ_i²/σ_L², so a schedule that ends lower
    (e.g. Karras' σ_min = 0.002) takes larger steps at every other level; with a coarser ladder or
    a smaller σ_L lower ε (the tuned values per task are in :mod:`diffcourse.posterior.tasks`).
    The callback's ``i`` counts every inner step. x: (B, ...); returns (B, ...).
    """
    eps = check_positive(eps, "eps")
    n_steps_each = check_int(n_steps_each, "n_steps_each")
    levels, sigma_b, g = _prepare(D, x, sigmas, lik, generator, "jalal", gamma, mse)
    sigma_L, k = levels[-2], 0
    for j in steps(len(levels) - 1, progress, "jalal"):
        sigma = levels[j]
        alpha = eps * (sigma / sigma_L) ** 2
        for _ in range(n_steps_each):
            x0_hat = D(x, sigma_b[j])
            report(callback, k, x, sigma, sigma, x0_hat)
            x0_y = x0_hat + sigma ** 2 * g(x, x0_hat, sigma)
            x = guard(langevin_step(x, x0_y, sigma, noise(x, generator), alpha=alpha), "jalal", k, sigma,
                      "lower eps or n_steps_each")
            k += 1
    x0_hat = D(x, sigma_b[-2])
    return x0_hat + sigma_L ** 2 * g(x, x0_hat, sigma_L)


def guided_sbim(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, exact_ddim: bool = False, n_corrector: int = 2,
                eps: float = 1e-4, mse: float | None = 5.0, gamma: float = 0.0,
                generator: torch.Generator | None = None, callback=None, progress: bool = False) -> torch.Tensor:
    """Guided SBIM with a Langevin corrector (Dimos, NTUA diploma thesis 2022, guided SBIM + LD):
    x' = x + [σ/√(1 + σ²)](σ - σ')(s + g)  (``exact_ddim=True``: x + σ(σ - σ')(s + g), exact VE-DDIM),

    then ``n_corrector`` steps x ← x + (α/2)[s(x, σ') + g] + √α z with α = ε σ²/σ_L² (the code uses the
    pre-step σ). The last step (to σ = 0) is the final Tweedie step x + σ_L²(s + g). Published SBIM's
    coefficient is the DDIM one times √ᾱ = 1/√(1 + σ²) (the derivation substituted the VE score
    for the VP one): it contracts too much and under-disperses; ``exact_ddim`` gives the correct
    deterministic VE-DDIM step. g: the code's norm-matched term (``mse`` = 5, brain_T2 config) by
    default; ``mse=None`` uses Aᵀ(y - A x)/(σ_y² + γ²σ²) (γ = 0: the thesis' plain σ_y², which is
    unstable at large σ; γ = 1: Jalal's annealing). Code defaults: 2 corrector steps, step_lr 5e-5
    (ε = 1e-4), 32 predictor steps on σ 232 → 0.0066, start x ~ N(0, I). x: (B, ...).
    """
    eps = check_positive(eps, "eps")
    n_corrector = check_int(n_corrector, "n_corrector", 0)
    levels, sigma_b, g = _prepare(D, x, sigmas, lik, generator, "guided_sbim", gamma, mse)
    predictor = ddim_ve_step if exact_ddim else sbim_step
    sigma_L = levels[-2]
    for i in steps(len(levels) - 1, progress, "guided_sbim"):
        sigma, sigma_next = levels[i], levels[i + 1]
        x0_hat = D(x, sigma_b[i])
        report(callback, i, x, sigma, sigma_next, x0_hat)
        x0_y = x0_hat + sigma ** 2 * g(x, x0_hat, sigma)
        if sigma_next == 0:
            return guard(x0_y, "guided_sbim", i, sigma, "lower eps or mse")
        x = predictor(x, x0_y, sigma, sigma_next)
        alpha = eps * (sigma / sigma_L) ** 2
        for _ in range(n_corrector):
            x0_c = D(x, sigma_b[i + 1])
            x = langevin_step(x, x0_c + sigma_next ** 2 * g(x, x0_c, sigma_next), sigma_next,
                              noise(x, generator), alpha=alpha)
        x = guard(x, "guided_sbim", i, sigma, "lower eps or mse, or use more steps")
    return x
