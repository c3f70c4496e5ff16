"""PaDIS (Hu, Song, Xu, Shen & Fessler, NeurIPS 2024): annealed Langevin dynamics with a DPS-like data
step, written for a patch prior but working with any denoiser D(x, σ).

At every level σ_i of the EDM grid (Karras et al. 2022, Eq. 5; the paper's CT runs: 100 levels from
σ_max = 10 to σ_min = 0.003, ρ = 7) the official code (``dps`` in ``inverse_nodist.py``, the solver its
``main`` calls) takes ``n_inner`` = 10 steps of

    d = D(x, σ_i)                                  (a patch prior draws a new random shift per call)
    x ← x - ζ ∇_x ||y - A d(x)||₂                   (non-squared norm, the gradient through D)
    x ← x + (α_i/2)(d - x)/σ_i² + √α_i z,   α_i = ε σ_i²,  ε = 0.5,  z ~ N(0, I),

with the score taken before the data step, and no noise at the last level; it returns x. The
paper's algorithm writes the data step as ζ_t ∇||A d - y||²₂ with ζ_t = ζ/||A d - y||, i.e. the
code's rule with ζ_paper = ζ_code/2. Two starts, both named here: the paper's x ~ N(0, σ_max² I)
(:func:`padis_start_noise`) and the code's clamped pseudo-inverse, clamp(A⁺y, 0, 1)
(:func:`padis_start_pinv`: the code draws noise and then overwrites it with A⁺y); with σ_max = 10 the
first steps bury either start in noise, so they matter only for a low σ_max.
"""
from __future__ import annotations

import torch

from ..._validate import check_int, check_nonnegative, check_positive
from ...prior.samplers.loop import guard, noise, prior_sample_init, report, steps
from ..guidance import dps_misfit, tweedie_grad
from ._common import setup

__all__ = ["padis", "padis_start_noise", "padis_start_pinv"]


def padis_start_noise(shape, sigma_max: float = 10.0, *, generator: torch.Generator | None = None,
                      dtype=torch.float32, device=None) -> torch.Tensor:
    """The paper's start (Hu et al. 2024, Alg. 1): x ~ N(0, σ_max² I)."""
    return prior_sample_init(shape, sigma_max, generator=generator, dtype=dtype, device=device)


def padis_start_pinv(lik, pinv=None) -> torch.Tensor:
    """The official code's start: the measurement's pseudo-inverse clamped to [0, 1], clamp(A⁺y, 0, 1).

    ``pinv``: a callable y -> image replacing ``lik.op.pinv`` (the code's A⁺ for CT is filtered
    back-projection, e.g. ``lambda y: op.fbp(y, window=hann_window)``).
    """
    with torch.no_grad():
        x = (lik.op.pinv if pinv is None else pinv)(lik.y)
    return (x.real if x.is_complex() else x).clamp(0, 1)


def padis(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, zeta: float = 0.3, eps: float = 0.5,
          n_inner: int = 10, generator: torch.Generator | None = None, callback=None,
          progress: bool = False) -> torch.Tensor:
    """PaDIS as in the official code (Hu et al., NeurIPS 2024): per level σ_i and inner step,
    x ← x - ζ ∇_x ||y - A D(x, σ_i)||, then x ← x + (α_i/2)(D(x, σ_i) - x)/σ_i² + √α_i z, α_i = ε σ_i²
    (D evaluated once, before the data step).

    ``D``: any denoiser, typically a :class:`diffcourse.prior.patches.PatchDenoiser`; ``x``: the start
    (:func:`padis_start_noise` or :func:`padis_start_pinv`); ``sigmas``: decreasing, ending at 0 (the
    code's grid is ``karras_sigmas(100, 0.003, 10.0)``); ``n_inner`` steps at every positive level, the
    last level without noise; returns the final state x (B, ...). The norm is per sample (the code's
    is over the batch) and, for non-Gaussian noise, the square root of DPS's misfit
    (:func:`diffcourse.posterior.guidance.dps_misfit`). Defaults: ζ = 0.3 (the code's CT example on
    [0, 1] images), ε = 0.5, 10 inner steps. The callback's ``i`` counts every inner step.

    >>> from diffcourse.physics.likelihood import Likelihood
    >>> from diffcourse.physics.noise import GaussianNoise
    >>> from diffcourse.physics.operators import Identity
    >>> from diffcourse.prior.processes import karras_sigmas
    >>> lik = Likelihood(Identity(), GaussianNoise(0.1), torch.full((1, 1, 4, 4), 0.5))
    >>> x = padis_start_pinv(lik)
    >>> padis(lambda v, s: 0 * v + 0.5, x, karras_sigmas(3, 0.01, 1.0), lik, n_inner=2).shape
    torch.Size([1, 1, 4, 4])
    """
    zeta = check_nonnegative(zeta, "zeta")
    eps = check_positive(eps, "eps")
    n_inner = check_int(n_inner, "n_inner")
    levels, sigma_b, _ = setup(D, x, sigmas, lik, generator)
    misfit = dps_misfit(lik)

    def norm(x0):
        return misfit(x0).clamp_min(torch.finfo(x0.dtype).tiny).sqrt()
    last, k = len(levels) - 2, 0
    for i in steps(last + 1, progress, "padis"):
        sigma = levels[i]
        alpha = eps * sigma ** 2
        for _ in range(n_inner):
            grad, x0_hat, _ = tweedie_grad(D, x, sigma_b[i], norm)
            report(callback, k, x, sigma, sigma, x0_hat)
            score = (x0_hat - x) / sigma ** 2
            x = x - zeta * grad + (alpha / 2) * score
            if i < last:
                x = x + alpha ** 0.5 * noise(x, generator)
            x = guard(x, "padis", k, sigma, "lower zeta or eps")
            k += 1
    return x
