"""DPS and MCG: a DDPM ancestral step plus a gradient through the denoiser (VE coordinates).

DPS (Chung, Kim, McCann, Klasky & Ye, ICLR 2023, Alg. 1) writes its step in VP coordinates,
x_vp = x/√(1 + σ²) (ᾱ = 1/(1 + σ²), the course's VE↔VP bijection). With s = 1/√(1 + σ²) at the
current level and s' at the next, the VP update x'_vp - ζ ∇_{x_vp} f becomes, divided by s',

    x' = DDPM_VE(x) - ζ · c · ∇_x f,   c = 1/(s s') = √((1 + σ²)(1 + σ'²)),

since ∇_{x_vp} f = (1/s) ∇_x f. So the paper's constant ζ' carries over unchanged: the factor c
(≈ σ² at high noise, 1 at the end) is the change of coordinates, not a retuning. The same holds
for MCG's step (its inpainting code is the same guided-diffusion DDPM).

Image range: the official codes work on [-1, 1]; for images in [0, 1] the same relative step
needs ζ'/2 (x and the residual both halve, ∇_x||r|| does not change), which is how the defaults
below were scaled.
"""
from __future__ import annotations

import math

import torch

from ...prior.samplers.loop import guard, noise, report, steps
from ...prior.samplers.steps import ddpm_step
from ..consistency import affine_projection, noisy_measurement
from ..guidance import dps_misfit, tweedie_grad
from ._common import linear_op, per_sample, setup

__all__ = ["dps", "dps_code", "mcg"]

_HINT = "lower zeta (the guidance scale) or use more steps"


def _ve_factor(sigma: float, sigma_next: float) -> float:
    """c = √((1 + σ²)(1 + σ'²)): a VP-coordinate step size read in VE coordinates."""
    return math.sqrt((1 + sigma ** 2) * (1 + sigma_next ** 2))


def _dps_loop(D, x, sigmas, lik, scale, name, x0_clip, generator, callback, progress):
    """DDPM step on x̂0, minus c · scale(L) · ∇L with L the per-sample misfit at x̂0(x)."""
    levels, sigma_b, _ = setup(D, x, sigmas, lik, generator)
    misfit = dps_misfit(lik)
    for i in steps(len(levels) - 1, progress, name):
        sigma, sigma_next = levels[i], levels[i + 1]
        grad, x0_hat, L = tweedie_grad(D, x, sigma_b[i], misfit)
        report(callback, i, x, sigma, sigma_next, x0_hat)
        x0_step = x0_hat if x0_clip is None else x0_hat.clamp(*x0_clip)
        x_next = ddpm_step(x, x0_step, sigma, sigma_next, noise(x, generator))
        step = per_sample(scale(L.clamp_min(torch.finfo(L.dtype).tiny)), x) * grad
        x = guard(x_next - _ve_factor(sigma, sigma_next) * step, name, i, sigma, _HINT)
    return x


def dps(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, zeta: float = 0.125, x0_clip=None,
        generator: torch.Generator | None = None, callback=None, progress: bool = False) -> torch.Tensor:
    """DPS as in the paper (Chung et al., ICLR 2023, Alg. 1, App. C): x' = DDPM(x) - ζ_i ∇||y - A(x̂0)||²,
    ζ_i = ζ'/||y - A(x̂0)||, per sample; in VE coordinates the step is multiplied by √((1+σ²)(1+σ'²)).

    The misfit is ||r||²₂ for Gaussian noise and the shot-noise weighted ||r||²_Λ for Poisson noise
    (:func:`diffcourse.posterior.guidance.dps_misfit`); its gradient flows through the denoiser by
    autograd, so nonlinear operators (phase retrieval, the neural blur) work. Since
    ζ'∇||r||²/||r|| = 2ζ'∇||r||, this equals :func:`dps_code` with twice the ζ': the default
    ζ' = 0.125 is the official inpainting scale 0.5 on [-1, 1] images, halved for [0, 1] and
    halved again for the squared norm (SR and deblurring used 0.3, phase retrieval 1.0).
    ``x0_clip``: e.g. (0, 1) clips x̂0 in the DDPM step as the code does ([-1, 1] there).
    x: (B, ...) the start (σ_max z); ``sigmas`` decreasing, ending at 0. Returns (B, ...).
    """
    zeta = float(zeta)
    return _dps_loop(D, x, sigmas, lik, lambda L: zeta / L.sqrt(), "dps", x0_clip, generator, callback, progress)


def dps_code(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, zeta: float = 0.25, x0_clip=None,
             generator: torch.Generator | None = None, callback=None, progress: bool = False) -> torch.Tensor:
    """DPS as in the official code: x' = DDPM(x) - ζ' ∇_x ||y - A(x̂0)||₂ (non-squared norm), per sample.

    ∇||r|| = ∇||r||²/(2||r||): the paper's rule with ζ_i = ζ'/(2||r||) (the factor 2 absorbed in
    the tuned constant). Default ζ' = 0.25: the inpainting config's 0.5 for [-1, 1] images, halved
    for [0, 1] (SR ×4, Gaussian/motion/nonlinear deblur 0.3 → 0.15; phase retrieval 1.0 → 0.5).
    Unlike the official code, every norm is per sample. Same VE step factor and arguments as :func:`dps`.
    """
    zeta = float(zeta)
    return _dps_loop(D, x, sigmas, lik, lambda L: zeta / (2 * L.sqrt()), "dps_code", x0_clip, generator,
                     callback, progress)


def mcg(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, alpha: float = 1.0, code_index: bool = False,
        generator: torch.Generator | None = None, callback=None, progress: bool = False) -> torch.Tensor:
    """MCG (Chung, Sim, Ryu & Ye, NeurIPS 2022, Eq. 14–15): x'' = DDPM(x) - α ∇_x||y - A x̂0(x)||,
    then the projection onto {A x = y_σ'}, y_σ' = y + σ' A z (the noisy measurement set).

    As in the official inpainting code the norm is not squared (α = 1, scale-free; the paper's
    α ∇||r||² is this with α_i = α/(2||r||)), and the step carries the VP→VE factor
    √((1+σ²)(1+σ'²)) of :mod:`.guided`. The projection x + A⁺(y_σ - A x) removes the gradient's
    row-space part, so only its component along the measured set survives: the code's (1 - P) mask
    for inpainting. ``alpha = 0`` is the projection-only baseline (score-SDE's inpainting).
    ``code_index=False`` noises y to the new level σ' (the paper's y_{i-1}); True to the current σ
    (the code's q_sample(y, t)). Linear operators only. x: (B, ...); returns (B, ...).
    """
    alpha = float(alpha)
    levels, sigma_b, y = setup(D, x, sigmas, lik, generator)
    op = linear_op(lik, "mcg")

    def norm_r(x0):
        return (lik.residual(x0).abs() ** 2).flatten(1).sum(1)
    for i in steps(len(levels) - 1, progress, "mcg"):
        sigma, sigma_next = levels[i], levels[i + 1]
        if alpha:
            grad, x0_hat, L = tweedie_grad(D, x, sigma_b[i], norm_r)
        else:                                   # projection only: no backward pass needed
            with torch.no_grad():
                x0_hat = D(x, sigma_b[i])
        report(callback, i, x, sigma, sigma_next, x0_hat)
        x = ddpm_step(x, x0_hat, sigma, sigma_next, noise(x, generator))
        if alpha:
            scale = alpha * _ve_factor(sigma, sigma_next) / (2 * L.clamp_min(torch.finfo(L.dtype).tiny).sqrt())
            x = x - per_sample(scale, x) * grad
        level = sigma if code_index else sigma_next
        y_level = noisy_measurement(op, y, level, noise(x, generator)) if level > 0 else y
        x = guard(affine_projection(x, y_level, op), "mcg", i, sigma, "lower alpha or use more steps")
    return x
