"""Samplers of a diffusion prior: plain functions ``f(D, x, sigmas, *, generator, callback, ...)``.

* :mod:`.diffusion` — DDPM, DDIM, exact VE-DDIM, Heun, flow Euler, SBIM, DDPM in VP coordinates;
* :mod:`.dmcmc` — DMCMC (Kim & Ye 2023): Langevin Gibbs on (x, σ), then a short reverse ODE;
* :mod:`.langevin` — Langevin, annealed Langevin, reverse-SDE Euler–Maruyama, predictor–corrector;
* :mod:`.steps` — one step of each as a pure function of (x, x0_hat, sigma, sigma_next, noise),
  the pieces posterior solvers reuse;
* :mod:`.loop` — the loop toolkit (input checks, noise, callback, NaN guard, Tweedie score).

All work in VE coordinates (x = x0 + σ z) with a denoiser ``D(x, sigma) ≈ E[x0 | x]``.
"""
from .diffusion import ddim, ddim_ve, ddpm, ddpm_vp, flow_euler, heun, sbim
from .dmcmc import (CountingDenoiser, denoise_from, denoising_langevin_gibbs, dmcmc, draw_sigma,
                    mixture_log_p_sigma)
from .langevin import (annealed_langevin, euler_maruyama, langevin, predictor_corrector, snr_corrector_step,
                       snr_step_size)
from .loop import prior_sample_init, score
from .steps import (ddim_step, ddim_ve_step, ddpm_step, euler_maruyama_step, langevin_step,
                    reverse_diffusion_step, sbim_step)

__all__ = ["langevin", "annealed_langevin", "euler_maruyama", "predictor_corrector", "ddpm", "ddim",
           "ddim_ve", "heun", "flow_euler", "sbim", "ddpm_vp", "snr_step_size", "snr_corrector_step",
           "prior_sample_init", "score", "ddpm_step", "ddim_step", "ddim_ve_step", "euler_maruyama_step",
           "reverse_diffusion_step", "langevin_step", "sbim_step", "dmcmc", "denoising_langevin_gibbs", "denoise_from",
           "draw_sigma", "mixture_log_p_sigma", "CountingDenoiser"]
