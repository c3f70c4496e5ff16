"""Projection solvers: a prior sampler step followed by a data-consistency step (VE coordinates).

score-MRI's POCS (Chung & Ye, MedIA 2022), the λ-weighted projection of Song, Shen, Xing & Ermon
(ICLR 2022) and ILVR (Choi et al., ICCV 2021). Each reuses the prior samplers' steps
(:mod:`diffcourse.prior.samplers.steps`) and the consistency steps of
:mod:`diffcourse.posterior.consistency`; none needs a gradient through the network.
"""
from __future__ import annotations

import torch

from ..._validate import check_int, check_nonnegative
from ...physics.mri import SingleCoilMRI
from ...physics.operators import Inpaint
from ...prior.samplers.langevin import snr_corrector_step
from ...prior.samplers.loop import guard, noise, report, steps
from ...prior.samplers.steps import ddpm_step, reverse_diffusion_step
from ..consistency import (affine_projection, hard_replace, kspace_replace, low_pass_replace, noisy_measurement,
                           weighted_projection)
from ._common import linear_op, setup

__all__ = ["score_pocs", "song2022", "ilvr", "default_dc"]


def default_dc(op):
    """score-MRI's hard data consistency for ``op``, a function dc(x, y) -> x.

    Single-coil MRI: k-space replacement; inpainting: pixel replacement; any other linear operator:
    the λ = 1 projection x + A⁺(y - A x) (A⁺ = ``op.pinv``; for A Aᵀ = I it is also the λ = 1
    gradient step x + Aᵀ(y - A x) of the paper).
    """
    if isinstance(op, SingleCoilMRI):
        return lambda x, y: kspace_replace(x, y, op.mask)
    if isinstance(op, Inpaint):
        return lambda x, y: hard_replace(x, y, op.mask)
    return lambda x, y: affine_projection(x, y, op)


def score_pocs(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, snr: float = 0.16, n_corrector: int = 1,
               dc=None, generator: torch.Generator | None = None, callback=None,
               progress: bool = False) -> torch.Tensor:
    """Score-based MRI with POCS (Chung & Ye, MedIA 2022, Alg. 1): PC sampling, hard consistency after each step.

    Per level, as in the official code: ``n_corrector`` Langevin corrector steps (score-SDE's snr
    rule, snr = 0.16), then the reverse-diffusion predictor, each followed by x ← dc(x, y);
    the start x is made consistent first. ``dc`` defaults to :func:`default_dc` (k-space
    replacement for single-coil MRI, pixel replacement for inpainting, the λ = 1 projection
    otherwise). The data y is used as measured (noise included), never noised to the level.
    The last step to σ = 0 returns x̂0, then dc. Paper: N = 2000 levels, σ 378 → 0.01. x: (B, ...).
    The snr rule needs many dimensions per sample (images).
    """
    snr = check_nonnegative(snr, "snr")
    n_corrector = check_int(n_corrector, "n_corrector", 0)
    levels, sigma_b, y = setup(D, x, sigmas, lik, generator)
    dc = default_dc(linear_op(lik, "score_pocs")) if dc is None else dc
    x = dc(x, y)
    for i in steps(len(levels) - 1, progress, "score_pocs"):
        sigma, sigma_next = levels[i], levels[i + 1]
        for _ in range(n_corrector):
            x = dc(snr_corrector_step(x, D(x, sigma_b[i]), sigma, noise(x, generator), snr=snr), y)
        x0_hat = D(x, sigma_b[i])
        report(callback, i, x, sigma, sigma_next, x0_hat)
        z = noise(x, generator) if sigma_next > 0 else None
        x = guard(dc(reverse_diffusion_step(x, x0_hat, sigma, sigma_next, z), y), "score_pocs", i, sigma,
                  "lower snr or use more steps")
    return x


def song2022(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, lam: float = 1.0, snr: float = 0.206,
             n_corrector: int = 1, generator: torch.Generator | None = None, callback=None,
             progress: bool = False) -> torch.Tensor:
    """Song, Shen, Xing & Ermon (ICLR 2022, Alg. 1): before every corrector and predictor step,
    x ← x + λ A⁺(ŷ_σ - A x) with ŷ_σ = y + σ A(ξ) the measurement noised to the current level.

    The predictor is reverse diffusion, the corrector score-SDE's Langevin step with the snr rule
    (corrector first, as in the official code). The last predictor step to σ = 0 returns x̂0 (the
    final denoising), followed by the hard λ = 1 replacement with y. Defaults: the repository's
    default configuration (λ = 1, snr = 0.206); its tuned values are λ = 1, snr = 0.517 (BraTS MRI)
    and λ = 0.841, snr = 0.246 (sparse-view CT). A⁺ is ``op.pinv``: exact for A = P T with T
    unitary (MRI), CGLS otherwise. x: (B, ...); returns (B, ...).
    """
    snr = check_nonnegative(snr, "snr")
    n_corrector = check_int(n_corrector, "n_corrector", 0)
    levels, sigma_b, y = setup(D, x, sigmas, lik, generator)
    op = linear_op(lik, "song2022")

    def merge(x, sigma):
        return weighted_projection(x, noisy_measurement(op, y, sigma, noise(x, generator)), op, lam=lam)
    for i in steps(len(levels) - 1, progress, "song2022"):
        sigma, sigma_next = levels[i], levels[i + 1]
        for _ in range(n_corrector):
            x = merge(x, sigma)
            x = snr_corrector_step(x, D(x, sigma_b[i]), sigma, noise(x, generator), snr=snr)
        x = merge(x, sigma)
        x0_hat = D(x, sigma_b[i])
        report(callback, i, x, sigma, sigma_next, x0_hat)
        z = noise(x, generator) if sigma_next > 0 else None
        x = guard(reverse_diffusion_step(x, x0_hat, sigma, sigma_next, z), "song2022", i, sigma,
                  "lower snr or use more steps")
    return weighted_projection(x, y, op, lam=1.0)


def ilvr(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, range_t: int = 0, code_index: bool = False,
         generator: torch.Generator | None = None, callback=None, progress: bool = False) -> torch.Tensor:
    """ILVR (Choi et al., ICCV 2021, Alg. 1): x' ~ DDPM step, then x ← φ(y_σ') + (I - φ) x', φ = A⁺A.

    y_σ' = y + σ' A(z) is the reference noised to the new state's level (the paper's y_{t-1});
    ``code_index=True`` noises it to the current level σ instead, as the official code's
    q_sample(y, t) does. The last ``range_t`` steps are unconditional (code default 0). With
    ``Downsample(N)`` φ is block averaging followed by nearest-neighbour upsampling, an orthogonal
    projector, so A x = y_σ' exactly after each refinement. x: (B, ...); returns (B, ...).
    """
    range_t = check_int(range_t, "range_t", 0)
    levels, sigma_b, y = setup(D, x, sigmas, lik, generator)
    op = linear_op(lik, "ilvr")
    n = len(levels) - 1
    for i in steps(n, progress, "ilvr"):
        sigma, sigma_next = levels[i], levels[i + 1]
        x0_hat = D(x, sigma_b[i])
        report(callback, i, x, sigma, sigma_next, x0_hat)
        x = ddpm_step(x, x0_hat, sigma, sigma_next, noise(x, generator))
        if i < n - range_t:
            level = sigma if code_index else sigma_next
            y_level = noisy_measurement(op, y, level, noise(x, generator)) if level > 0 else y
            x = low_pass_replace(x, y_level, op)
        x = guard(x, "ilvr", i, sigma, "use more steps")
    return x
