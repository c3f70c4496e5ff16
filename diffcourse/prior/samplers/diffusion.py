"""Samplers of a diffusion prior: plain functions ``f(D, x, sigmas, *, generator, callback, ...)``.

All work in VE coordinates (x = x0 + σ z) with a denoiser ``D(x, sigma) ≈ E[x0 | x]``, a start
``x`` chosen by the caller (usually :func:`prior_sample_init`, x ~ N(0, σ_0² I)) and a strictly
decreasing schedule ``sigmas`` ending at 0; each returns the final x. The VP (DDPM) and flow
processes are the same family rescaled (Kawar et al. 2022, App. B):

    x_VP = x_VE / √(1 + σ²),  ᾱ = 1/(1 + σ²);      x_flow = x_VE / (1 + σ),  t = σ/(1 + σ),

so DDPM, DDIM and rectified-flow Euler are written here in VE coordinates and need no VP model.
Every sampler calls ``callback`` once per step, before the update, with the dict {"i", "x",
"sigma", "sigma_next", "x0_hat"} (VE coordinates); ``progress=True`` shows a tqdm bar; NaN/Inf
stops it with a ``FloatingPointError`` naming the step and σ. Schedules:
:mod:`diffcourse.prior.processes`; plumbing: :mod:`diffcourse.prior.samplers.loop`. Langevin, annealed Langevin, Euler–Maruyama and
predictor–corrector: :mod:`diffcourse.prior.samplers_langevin`.

>>> import torch
>>> from diffcourse.prior.processes import karras_sigmas
>>> D = lambda x, sigma: x / (1 + as_sigma(sigma, x) ** 2)     # exact denoiser of N(0, I)
>>> x = prior_sample_init((2000, 2), 80.0, generator=torch.Generator().manual_seed(0))
>>> round(heun(D, x, karras_sigmas(32)).std().item(), 1)       # PF-ODE: N(0, (1 + 80²) I) -> N(0, I)
1.0
"""
from __future__ import annotations

import math

import torch

from diffcourse._validate import as_sigma, check_tensor  # noqa: F401 (as_sigma: used in the doctest)
from diffcourse.prior.processes import Flow

from .loop import check_generator, guard, noise, prepare, prior_sample_init, report, steps
from .steps import ddim_step, ddim_ve_step, ddpm_step, sbim_step

__all__ = ["ddpm", "ddim", "ddim_ve", "heun", "flow_euler", "sbim", "ddpm_vp", "prior_sample_init"]

_HINT = "use more steps (a finer sigma schedule)"


def ddpm(D, x: torch.Tensor, sigmas: torch.Tensor, *, generator: torch.Generator | None = None,
         callback=None, progress: bool = False) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Eq. 6–7, σ_t² = β̃_t) in VE coordinates.

    The VP posterior q(x_{t-1} | x_t, x0) with ᾱ = 1/(1 + σ²), rescaled by 1/√ᾱ, is the VE bridge
    x' = r x + (1 - r) x̂0 + σ' √(1 - r) z,  r = σ'²/σ²,  x̂0 = D(x, σ)  (σ' = next σ).
    One noise draw per step (also the last). x: (B, ...).
    """
    levels, sigma_b = prepare(D, x, sigmas, generator)
    for i in steps(len(levels) - 1, progress, "ddpm"):
        x0_hat = D(x, sigma_b[i])
        report(callback, i, x, levels[i], levels[i + 1], x0_hat)
        x = ddpm_step(x, x0_hat, levels[i], levels[i + 1], noise(x, generator))
        x = guard(x, "ddpm", i, levels[i], _HINT)
    return x


def ddim(D, x: torch.Tensor, sigmas: torch.Tensor, *, eta: float = 0.0,
         generator: torch.Generator | None = None, callback=None, progress: bool = False) -> torch.Tensor:
    """DDIM (Song, Meng & Ermon 2021, Eq. 12 and 16) in VE coordinates, 0 <= η <= 1.

    VP: x_{t-1} = √ᾱ' x̂0 + √(1 - ᾱ' - σ_η²) ε̂ + σ_η z with σ_η² = η² β̃_t. Divided by √ᾱ':
    x' = x̂0 + √(σ'² - c²) ε̂ + c z,  c = η σ' √(1 - σ'²/σ²),  ε̂ = (x - x̂0)/σ.
    η = 0 is deterministic (= :func:`ddim_ve`); η = 1 is DDPM. Noise is drawn only if η > 0.
    """
    if not isinstance(eta, (int, float)) or isinstance(eta, bool) or not 0 <= eta <= 1:
        raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")
    levels, sigma_b = prepare(D, x, sigmas, generator)
    for i in steps(len(levels) - 1, progress, "ddim"):
        x0_hat = D(x, sigma_b[i])
        report(callback, i, x, levels[i], levels[i + 1], x0_hat)
        z = noise(x, generator) if eta > 0 else None
        x = guard(ddim_step(x, x0_hat, levels[i], levels[i + 1], z, eta=eta), "ddim", i, levels[i], _HINT)
    return x


def ddim_ve(D, x: torch.Tensor, sigmas: torch.Tensor, *, generator: torch.Generator | None = None,
            callback=None, progress: bool = False) -> torch.Tensor:
    """Exact DDIM (η = 0) in VE coordinates: x_{t-1} = x_t + σ_t(σ_t - σ_{t-1}) s(x_t, σ_t).

    This is also Euler's method on the probability-flow ODE dx/dσ = -σ s = (x - D)/σ (Karras et al.
    2022, Alg. 1 without the correction). A step to σ = 0 returns D(x, σ). ``generator`` is unused.
    """
    levels, sigma_b = prepare(D, x, sigmas, generator)
    for i in steps(len(levels) - 1, progress, "ddim_ve"):
        x0_hat = D(x, sigma_b[i])
        report(callback, i, x, levels[i], levels[i + 1], x0_hat)
        x = guard(ddim_ve_step(x, x0_hat, levels[i], levels[i + 1]), "ddim_ve", i, levels[i], _HINT)
    return x


def heun(D, x: torch.Tensor, sigmas: torch.Tensor, *, generator: torch.Generator | None = None,
         callback=None, progress: bool = False) -> torch.Tensor:
    """Heun's 2nd-order method on the PF-ODE dx/dσ = (x - D(x, σ))/σ (Karras et al. 2022, Alg. 1).

    d = (x - D(x, σ))/σ, x̃ = x + (σ' - σ) d, x' = x + (σ' - σ)(d + d̃)/2 with d̃ at (x̃, σ');
    Euler (x' = x̃) on a last step to σ' = 0. 2 network evaluations per step (1 on the last).
    """
    levels, sigma_b = prepare(D, x, sigmas, generator)
    for i in steps(len(levels) - 1, progress, "heun"):
        sigma, sigma_next = levels[i], levels[i + 1]
        x0_hat = D(x, sigma_b[i])
        report(callback, i, x, sigma, sigma_next, x0_hat)
        d = (x - x0_hat) / sigma
        x_next = x + (sigma_next - sigma) * d
        if sigma_next > 0:
            d_next = (x_next - D(x_next, sigma_b[i + 1])) / sigma_next
            x_next = x + (sigma_next - sigma) * 0.5 * (d + d_next)
        x = guard(x_next, "heun", i, sigma, _HINT)
    return x


def flow_euler(D, x: torch.Tensor, sigmas: torch.Tensor, *, generator: torch.Generator | None = None,
               callback=None, progress: bool = False) -> torch.Tensor:
    """Rectified flow / flow matching, Euler steps (Liu et al. 2023; Lipman et al. 2023), t = 1 is noise.

    The flow state x_t = (1 - t) x0 + t ε is x_VE/(1 + σ) at t = σ/(1 + σ); its optimal velocity
    v = E[ε - x0 | x_t] = (x_t - x̂0)/t with x̂0 = D(x_t (1 + σ), σ); Euler: x_{t'} = x_t + (t' - t) v.
    Input and output (and the callback's x) are in VE coordinates; the loop runs in flow ones.
    """
    levels, sigma_b = prepare(D, x, sigmas, generator)
    t = Flow().t_of_sigma(torch.tensor(levels, dtype=torch.float64)).tolist()  # t = σ/(1 + σ)
    x_t = x / (1 + levels[0])
    for i in steps(len(levels) - 1, progress, "flow_euler"):
        x_ve = x_t * (1 + levels[i])
        x0_hat = D(x_ve, sigma_b[i])
        report(callback, i, x_ve, levels[i], levels[i + 1], x0_hat)
        v = (x_t - x0_hat) / t[i]
        x_t = guard(x_t + (t[i + 1] - t[i]) * v, "flow_euler", i, levels[i], _HINT)
    return x_t * (1 + levels[-1])


def sbim(D, x: torch.Tensor, sigmas: torch.Tensor, *, generator: torch.Generator | None = None,
         callback=None, progress: bool = False) -> torch.Tensor:
    """SBIM exactly as published (Dimos, diploma thesis, NTUA 2022; its code d-dimos/thesis_ntua_sbim):

    x_{t-1} = x_t + [σ_t/√(1 + σ_t²)] (σ_t - σ_{t-1}) s(x_t, σ_t).
    This is :func:`ddim_ve` with its step scaled by √ᾱ_t = 1/√(1 + σ_t²) (the derivation used the VE
    score where the VP one belongs), so it is NOT a sampler: it contracts too much and returns an
    under-dispersed, mode-seeking x. The official code starts from x ~ N(0, I), not N(0, σ_max² I):
    the start is the caller's choice (``torch.randn`` reproduces the code). ``generator`` is unused.
    """
    levels, sigma_b = prepare(D, x, sigmas, generator)
    for i in steps(len(levels) - 1, progress, "sbim"):
        x0_hat = D(x, sigma_b[i])
        report(callback, i, x, levels[i], levels[i + 1], x0_hat)
        x = guard(sbim_step(x, x0_hat, levels[i], levels[i + 1]), "sbim", i, levels[i], _HINT)
    return x


def ddpm_vp(eps_model, x: torch.Tensor, alphas_bar: torch.Tensor, *, generator: torch.Generator | None = None,
            callback=None, progress: bool = False) -> torch.Tensor:
    """DDPM ancestral sampling in VP coordinates with an ε-model (Ho et al. 2020, Alg. 2, σ_t² = β̃_t).

    ``alphas_bar``: increasing ᾱ along the chain (ᾱ_T first, often ending at 1); ``eps_model(x,
    alpha_bar)`` gets ᾱ as a (B,) tensor. With α_t = ᾱ_t/ᾱ_{t-1}, β_t = 1 - α_t:
    x_{t-1} = (x_t - β_t/√(1 - ᾱ_t) ε̂)/√α_t + √β̃_t z,  β̃_t = β_t (1 - ᾱ_{t-1})/(1 - ᾱ_t).
    Same noise draws as :func:`ddpm`, whose trajectory is this one divided by √ᾱ. The callback's
    "x", "sigma" are in VP terms (x_VP and σ = √((1 - ᾱ)/ᾱ)); "x0_hat" is the Tweedie estimate.
    """
    if not callable(eps_model):
        raise TypeError(f"eps_model must be a callable eps_model(x, alpha_bar), got {type(eps_model).__name__}")
    check_tensor(alphas_bar, "alphas_bar", ndim=1)
    ab = alphas_bar.detach().to("cpu", torch.float64)
    if ab.numel() < 2 or bool((ab[1:] <= ab[:-1]).any()) or ab[0] <= 0 or ab[-1] > 1:
        raise ValueError(f"alphas_bar must be strictly increasing in (0, 1] with >= 2 values, got {ab.tolist()[:6]}")
    check_generator(generator, check_tensor(x, "x"))
    a, ab_b = ab.tolist(), alphas_bar.to(device=x.device, dtype=x.dtype)[:, None].expand(-1, x.shape[0])
    for i in steps(len(a) - 1, progress, "ddpm_vp"):
        eps_hat = eps_model(x, ab_b[i])
        alpha, sigma = a[i] / a[i + 1], math.sqrt((1 - a[i]) / a[i])
        report(callback, i, x, sigma, math.sqrt((1 - a[i + 1]) / a[i + 1]),
                (x - math.sqrt(1 - a[i]) * eps_hat) / math.sqrt(a[i]))
        beta_tilde = (1 - alpha) * (1 - a[i + 1]) / (1 - a[i])
        x = (x - (1 - alpha) / math.sqrt(1 - a[i]) * eps_hat) / math.sqrt(alpha)
        x = guard(x + math.sqrt(beta_tilde) * noise(x, generator), "ddpm_vp", i, sigma, _HINT)
    return x
