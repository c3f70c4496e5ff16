"""Quantized compressed sensing by annealed Langevin: QCS-SGM (Meng & Kabashima, ICLR 2023) and
QCS-SGM+ (Meng & Kabashima, AAAI 2024), VE coordinates.

Both are Jalal's annealed Langevin (:func:`~diffcourse.posterior.solvers.jalal`) with the Gaussian
likelihood replaced by the pseudo-likelihood score of quantized data y = Q(A x0 + n),
``lik.noise`` a :class:`~diffcourse.physics.noise.QuantizedNoise`:
QCS-SGM by the factorised closed form (:func:`~diffcourse.posterior.guidance_quantized.qcs`),
QCS-SGM+ by expectation propagation (:func:`~diffcourse.posterior.guidance_quantized.qcs_ep`).
The papers' Algorithm 1 runs, for t = 1..T (largest σ first, the NCSN ordering),
K times x ← x + α_t [s(x, σ_t) + γ ∇ log p̃(y | x)] + √(2 α_t) z, α_t = ε' σ_t²/σ_T²; here in the
library's paper form x ← x + (α/2)(s + γ g) + √α z, so ε = 2 ε' (the codes' ``step_lr``).
"""
from __future__ import annotations

import torch

from ..._validate import check_int, check_nonnegative, check_positive
from ...prior.samplers.loop import guard, noise, report, steps
from ...prior.samplers.steps import langevin_step
from ..guidance_quantized import qcs_ep_score, qcs_score, quantized_problem
from ._common import linear_op, per_sample, sample_norm, setup

__all__ = ["qcs_sgm", "qcs_sgm_plus", "annealed_langevin"]


def annealed_langevin(D, x, levels, sigma_b, g, *, eps: float, n_steps_each: int, generator=None, callback=None,
                      progress: bool = False, name: str = "annealed_langevin", hint: str = "lower eps"):
    """Annealed Langevin with a likelihood term (Song & Ermon 2019, Alg. 1; Jalal et al. 2021):
    ``n_steps_each`` steps x ← x + (α/2)[s(x, σ) + g(x, x̂0, σ)] + √α z, α = ε σ²/σ_L², at each
    positive level of ``levels`` (largest first, σ_L the last positive one), then the final
    posterior Tweedie step x̂0 + σ_L² g. ``levels``/``sigma_b`` as returned by the solvers' setup.
    """
    sigma_L, k = levels[-2], 0
    for j in steps(len(levels) - 1, progress, name):
        sigma = levels[j]
        alpha = eps * (sigma / sigma_L) ** 2
        for _ in range(n_steps_each):
            x0_hat = D(x, sigma_b[j])
            report(callback, k, x, sigma, sigma, x0_hat)
            x0_y = x0_hat + sigma ** 2 * g(x, x0_hat, sigma)
            x = guard(langevin_step(x, x0_y, sigma, noise(x, generator), alpha=alpha), name, k, sigma, hint)
            k += 1
    x0_hat = D(x, sigma_b[-2])
    return guard(x0_hat + sigma_L ** 2 * g(x, x0_hat, sigma_L), name, k, sigma_L, hint)


def _prepare(D, x, sigmas, lik, generator, name, eps, n_steps_each, gamma, spectrum):
    levels, sigma_b, _ = setup(D, x, sigmas, lik, generator)
    if len(levels) < 3:
        raise ValueError(f"sigmas needs at least two positive levels before the final 0, got {levels}")
    linear_op(lik, name)
    prob = quantized_problem(lik, x, name, spectrum=spectrum)
    return (levels, sigma_b, prob, check_positive(eps, "eps"), check_int(n_steps_each, "n_steps_each"),
            check_nonnegative(gamma, "gamma"))


def _norm_matched(score, scale):
    """The official QCS-SGM+ code's rescaling g ← scale · ||s|| / ||g|| · g, per sample."""
    def g(x, x0_hat, sigma):
        v = score(x, x0_hat, sigma)
        ratio = sample_norm((x0_hat - x) / sigma ** 2) / sample_norm(v).clamp_min(torch.finfo(v.dtype).tiny)
        return scale * per_sample(ratio, v) * v
    return g


def qcs_sgm(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, eps: float = 4e-4, n_steps_each: int = 5,
            gamma: float = 1.0, generator: torch.Generator | None = None, callback=None,
            progress: bool = False) -> torch.Tensor:
    """QCS-SGM (Meng & Kabashima, ICLR 2023, Alg. 1): annealed Langevin on s(x, σ) + γ Aᵀ G(x, σ), with
    G the factorised pseudo-likelihood score of quantized y (Eq. 10-12,
    :func:`~diffcourse.posterior.guidance_quantized.qcs`).

    x ← x + (α_i/2)[s(x, σ_i) + γ Aᵀ G] + √α_i z, α_i = ε σ_i²/σ_L² at each positive level of
    ``sigmas`` (``n_steps_each`` steps per level), then x̂0 + σ_L² γ Aᵀ G at the trailing 0. Exact
    likelihood (under the flat prior) for row-orthogonal A. Defaults from the official code's
    MNIST/CelebA configs: step_lr 2e-4 (ε = 4e-4 in this paper form), K = 5, γ = 1 (σ 50 → 0.01 on
    232 levels, start x ~ U(0, 1)). ``lik``: linear operator, QuantizedNoise. x: (B, ...).
    """
    levels, sigma_b, prob, eps, n_steps_each, gamma = _prepare(D, x, sigmas, lik, generator, "qcs_sgm", eps,
                                                               n_steps_each, gamma, spectrum=False)

    def g(x, x0_hat, sigma):
        return gamma * qcs_score(prob, x, sigma)
    return annealed_langevin(D, x, levels, sigma_b, g, eps=eps, n_steps_each=n_steps_each, generator=generator,
                             callback=callback, progress=progress, name="qcs_sgm", hint="lower eps or n_steps_each")


def qcs_sgm_plus(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, eps: float = 4e-4, n_steps_each: int = 5,
                 gamma: float = 1.0, n_iter: int = 10, damping: float = 0.02, likelihood_scale: float | None = None,
                 generator: torch.Generator | None = None, callback=None, progress: bool = False) -> torch.Tensor:
    """QCS-SGM+ (Meng & Kabashima, AAAI 2024, Alg. 2): QCS-SGM with the likelihood score of the correlated
    noise σ_y² I + σ² A Aᵀ by expectation propagation (:func:`~diffcourse.posterior.guidance_quantized.qcs_ep`),
    for ill-conditioned or correlated A.

    Same loop as :func:`qcs_sgm`; A Aᵀ is eigendecomposed once (cached per operator) and every step
    runs ``n_iter`` EP iterations with ``damping``. ``likelihood_scale`` given (0.5 MNIST, 0.3
    CelebA/CIFAR-10 in the official configs): the official code's rescaling of the EP score to
    likelihood_scale · ||s|| / ||g|| · g per step (a different, uncalibrated target); ``None``: the
    paper's γ g. Defaults as :func:`qcs_sgm`; the code stops EP after 3 iterations (damping 0.02).
    """
    levels, sigma_b, prob, eps, n_steps_each, gamma = _prepare(D, x, sigmas, lik, generator, "qcs_sgm_plus", eps,
                                                               n_steps_each, gamma, spectrum=True)
    n_iter = check_int(n_iter, "n_iter", 0)
    damping = check_nonnegative(damping, "damping")
    if damping >= 1:
        raise ValueError(f"damping must be in [0, 1), got {damping}")

    def score(x, x0_hat, sigma):
        return gamma * qcs_ep_score(prob, x, sigma, n_iter=n_iter, damping=damping)
    g = score if likelihood_scale is None else _norm_matched(score, check_positive(likelihood_scale,
                                                                                   "likelihood_scale"))
    return annealed_langevin(D, x, levels, sigma_b, g, eps=eps, n_steps_each=n_steps_each, generator=generator,
                             callback=callback, progress=progress, name="qcs_sgm_plus",
                             hint="lower eps or n_steps_each")
