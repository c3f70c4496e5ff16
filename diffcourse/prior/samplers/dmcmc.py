"""Denoising MCMC (Kim & Ye, ICML 2023): Langevin Gibbs on (x, σ), then a short reverse ODE from the visited σ.

Denoising Langevin Gibbs (DLG, their Sec. 4) targets the joint p(x, σ) = p(σ) p_σ(x) on the product
of data space and a grid of noise levels, alternating

    x ← x + (α/2) s(x, σ) + √α z,  α = ε σ²   (Langevin in x at the chain's σ; paper form)
    σ ~ p(σ | x) ∝ p(σ) p_σ(x)            (a draw over the grid; a noise-level classifier in the paper)

and then denoises a visited state (x, σ) with a short probability-flow ODE from its σ to 0 (Karras et al. 2022, Alg. 1: :func:`~diffcourse.prior.samplers.heun`). Chains
stay near the data, so the ODE is short: the paper's figure reports < 150 network evaluations (NFE)
for the quality plain reverse diffusion reaches with ≈ 400.

As in the official demo (1202kbs/DMCMC, ``Demo.ipynb``) the ODE is Karras's sampler with 20
levels from the lowest visited σ (their Alg. 2 with churn; here the deterministic Alg. 1), and the
baseline is the same sampler from σ_max with 201 levels (2·200 - 1 = 399 NFE). Differences: the
paper and demo use an absolute step η (0.8 for CIFAR-10 images); here the step scales with the
chain's level, α = ε σ², as NCSN's annealed Langevin does (Song & Ermon 2019, Alg. 1), because on
the 2-D testbed every absolute η tried (0.01-0.3) left the samples 1.3-4x the exact-sample
sliced-Wasserstein floor while ε = 0.1-0.3 reaches it (an absolute η overshoots wherever σ² < η/2;
ε = 1 over-disperses). ε = η/σ² converts; the default 0.3 is tuned on the testbed, not the paper's. The demo takes the classifier's argmax as σ; here σ is drawn (the Gibbs step).
The demo denoises the state of lowest σ seen in a sweep (``lowest=True``); by default the last
Gibbs pair (x_n, σ_n) is denoised, which is a draw of p(x, σ) at stationarity: in 2-D p(σ | x) is
broad, the minimum of several draws underestimates the noise left in x, and the lowest-σ outputs
came out over-dispersed (component std 0.28 against 0.22 on the testbed; on images p(σ | x) is sharp). On the Gaussian-mixture testbed p(σ | x) is exact
(:func:`mixture_log_p_sigma`); on images a trained noise-level classifier stands in for it.
NFE: (n_burn/n_samples) + n_gibbs + the ODE's (2 n_ode - 1 for Heun) per sample;
:class:`CountingDenoiser` counts them.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from diffcourse._validate import check_int, check_positive, check_tensor

from ..processes import karras_sigmas
from .diffusion import heun
from .loop import CountingDenoiser, check_generator, guard, noise, report, steps  # noqa: F401 (re-exported)
from .steps import langevin_step

__all__ = ["dmcmc", "denoising_langevin_gibbs", "denoise_from", "draw_sigma", "mixture_log_p_sigma",
           "GibbsState", "CountingDenoiser"]


class GibbsState(NamedTuple):
    """The chain (x, σ) after a Gibbs sweep, and its state of lowest σ seen in the sweep (σ: (B,))."""
    x: torch.Tensor
    sigma: torch.Tensor
    x_low: torch.Tensor
    sigma_low: torch.Tensor


def _grid(sigma_grid) -> torch.Tensor:
    check_tensor(sigma_grid, "sigma_grid", ndim=1)
    g = sigma_grid.detach().to("cpu", torch.float64)
    if g.numel() < 1 or not bool(torch.isfinite(g).all()) or bool((g <= 0).any()):
        raise ValueError(f"sigma_grid must hold finite noise levels > 0, got {g.tolist()[:6]}")
    if bool((g[1:] <= g[:-1]).any()):
        raise ValueError(f"sigma_grid must be strictly increasing, got {g.tolist()[:6]}...")
    return g


def mixture_log_p_sigma(gm, sigma_grid: torch.Tensor, log_prior: torch.Tensor | None = None):
    """Exact p(σ | x) ∝ p(σ) p_σ(x) over a grid for a :class:`~diffcourse.prior.toy.GaussianMixture`.

    p_σ is the mixture convolved with N(0, σ² I) (``gm.log_prob(x, sigma=σ)``); ``log_prior`` (L,)
    defaults to uniform over the grid. Returns a callable x (B, ...) -> (B, L) normalised log-probabilities.

    >>> from diffcourse.prior.toy import GaussianMixture
    >>> gm = GaussianMixture.gaussian(torch.zeros(2, dtype=torch.float64), 1.0)
    >>> f = mixture_log_p_sigma(gm, torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64))
    >>> [round(p, 3) for p in f(torch.zeros(1, 2, dtype=torch.float64)).exp()[0].tolist()]  # ∝ 1/(1 + σ²)
    [0.66, 0.333, 0.007]
    """
    grid = _grid(sigma_grid)
    if log_prior is None:
        log_prior = torch.zeros_like(grid)
    check_tensor(log_prior, "log_prior", ndim=1)
    if log_prior.numel() != grid.numel():
        raise ValueError(f"log_prior must have one value per grid level ({grid.numel()}), got {log_prior.numel()}")
    log_prior = log_prior.detach().to("cpu", torch.float64)

    def log_p_sigma(x: torch.Tensor) -> torch.Tensor:
        lp = torch.stack([gm.log_prob(x, sigma=float(s)).to(torch.float64) for s in grid], 1)  # (B, L)
        return torch.log_softmax(lp + log_prior.to(x.device), dim=1)
    return log_p_sigma


def draw_sigma(x: torch.Tensor, sigma_grid: torch.Tensor, log_p_sigma, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The Gibbs step σ ~ p(σ | x) (Kim & Ye 2023, DLG): inverse CDF of one uniform per sample; (B,).

    ``log_p_sigma(x)`` returns (B, L) log-probabilities (normalised or not) over ``sigma_grid`` (L,).
    """
    grid = _grid(sigma_grid)
    logp = log_p_sigma(x)
    if not isinstance(logp, torch.Tensor) or logp.shape != (x.shape[0], grid.numel()):
        raise ValueError(f"log_p_sigma(x) must return a (B, L) = ({x.shape[0]}, {grid.numel()}) tensor, got "
                         f"{tuple(logp.shape) if isinstance(logp, torch.Tensor) else type(logp).__name__}")
    cdf = torch.softmax(logp.to(torch.float64), dim=1).cumsum(1)                # (B, L)
    u = torch.rand(x.shape[0], 1, generator=generator, dtype=torch.float64, device=x.device)
    k = (cdf < u * cdf[:, -1:]).sum(1).clamp_max(grid.numel() - 1)             # (B,)
    return sigma_grid.to(device=x.device, dtype=x.dtype)[k]


def denoising_langevin_gibbs(D, x: torch.Tensor, sigma: torch.Tensor, sigma_grid: torch.Tensor, log_p_sigma, *,
                             n_gibbs: int, eps: float = 0.3, generator: torch.Generator | None = None,
                             callback=None, progress: bool = False) -> GibbsState:
    """DLG (Kim & Ye, ICML 2023, Sec. 4): ``n_gibbs`` times x ← Langevin(x; σ), σ ~ p(σ | x).

    x: (B, ...); sigma: (B,) the chains' current levels. Langevin in paper form with the step
    α = ε σ² per chain (:func:`~diffcourse.prior.samplers.langevin_step`); one network evaluation per
    sweep. The callback gets {"i", "x", "sigma" (B,), "sigma_next" (B,), "x0_hat", "nfe"} before each
    update, "nfe" the per-sample network evaluations so far. Returns a :class:`GibbsState`.
    """
    n_gibbs, eps = check_int(n_gibbs, "n_gibbs"), check_positive(eps, "eps")
    _grid(sigma_grid)
    check_tensor(x, "x")
    check_tensor(sigma, "sigma", ndim=1)
    if sigma.shape[0] != x.shape[0] or bool((sigma <= 0).any()):
        raise ValueError(f"sigma must hold one level > 0 per sample ({x.shape[0]}), got {tuple(sigma.shape)}")
    check_generator(generator, x)
    sigma = sigma.to(device=x.device, dtype=x.dtype)
    x_low, sigma_low = x, sigma
    for i in steps(n_gibbs, progress, "dmcmc"):
        x0_hat = D(x, sigma)
        s_col = sigma.reshape(-1, *([1] * (x.ndim - 1)))                       # (B, 1, ..., 1)
        x = guard(langevin_step(x, x0_hat, s_col, noise(x, generator), alpha=eps * s_col ** 2), "dmcmc", i,
                  float(sigma.max()), "lower eps (the Langevin step)")
        sigma_new = draw_sigma(x, sigma_grid, log_p_sigma, generator=generator)
        if callback is not None:
            report(callback, i, x, sigma, sigma_new, x0_hat, nfe=i + 1)
        sigma = sigma_new
        lower = sigma < sigma_low
        x_low = torch.where(lower.reshape(s_col.shape), x, x_low)
        sigma_low = torch.where(lower, sigma, sigma_low)
    return GibbsState(x, sigma, x_low, sigma_low)


def denoise_from(D, x: torch.Tensor, sigma: torch.Tensor, *, n_ode: int = 20, sigma_min: float = 0.002,
                 sampler=heun) -> torch.Tensor:
    """Reverse ODE from each sample's own σ to 0 (Kim & Ye 2023, the denoising step of DMCMC).

    Samples are grouped by their σ (a grid value) and each group runs ``sampler`` (default
    :func:`~diffcourse.prior.samplers.heun`, deterministic) on ``karras_sigmas(n_ode, sigma_min, σ)``;
    a σ <= ``sigma_min`` gets one Tweedie step D(x, σ). x: (B, ...); sigma: (B,). Returns (B, ...).
    """
    n_ode, sigma_min = check_int(n_ode, "n_ode"), check_positive(sigma_min, "sigma_min")
    out = torch.empty_like(x)
    for s in torch.unique(sigma):
        idx = (sigma == s).nonzero().flatten()
        if float(s) <= sigma_min:
            out[idx] = D(x[idx], sigma[idx])
            continue
        sched = karras_sigmas(n_ode, sigma_min, float(s), dtype=x.dtype, device=x.device)
        out[idx] = sampler(D, x[idx], sched)
    return out


def dmcmc(D, x: torch.Tensor, sigma_grid: torch.Tensor, log_p_sigma, *, n_gibbs: int, eps: float = 0.3,
          n_ode: int = 20, n_burn: int = 0, n_samples: int = 1, lowest: bool = False, sigma_min: float = 0.002,
          sampler=heun,
          generator: torch.Generator | None = None, callback=None, progress: bool = False) -> torch.Tensor:
    """DMCMC with Denoising Langevin Gibbs (Kim & Ye, ICML 2023): σ ~ p(σ | x), ``n_burn`` DLG sweeps,
    then ``n_samples`` times: ``n_gibbs`` sweeps and :func:`denoise_from` the last state (``lowest``:
    the sweep's lowest-σ state, as the official demo).

    ``sigma_grid`` (L,) increasing levels; ``log_p_sigma(x)`` -> (B, L) log p(σ | x) (exact on the
    testbed: :func:`mixture_log_p_sigma`). x: (B, ...) the chains' start (a rough sample: from pure
    noise the chains fix the mode weights too early, see tests/test_dmcmc.py). Returns
    (n_samples · B, ...) clean samples, emission after emission, as the official demo emits a batch
    every ``skp`` = n_gibbs sweeps of one long chain. NFE per sample:
    n_burn/n_samples + n_gibbs + the sampler's (2 n_ode - 1 for Heun). The callback (of every
    sweep, ``i`` counting all of them) is :func:`denoising_langevin_gibbs`'s.

    >>> from diffcourse.prior.toy import GaussianMixture
    >>> gm = GaussianMixture.ring(4, radius=2.0, std=0.2, dtype=torch.float64)
    >>> grid = torch.logspace(-1, 0.5, 12, dtype=torch.float64)
    >>> x = 2 * torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> dmcmc(gm.denoiser, x, grid, mixture_log_p_sigma(gm, grid), n_gibbs=3, n_ode=5, n_burn=10,
    ...       n_samples=2, generator=torch.Generator().manual_seed(1)).shape
    torch.Size([10, 2])
    """
    n_burn, n_samples = check_int(n_burn, "n_burn", 0), check_int(n_samples, "n_samples")
    check_generator(generator, check_tensor(x, "x"))
    sigma = draw_sigma(x, sigma_grid, log_p_sigma, generator=generator)
    run = functools.partial(denoising_langevin_gibbs, D, sigma_grid=sigma_grid, log_p_sigma=log_p_sigma,
                            eps=eps, generator=generator, progress=progress)
    done, out = 0, []
    if n_burn:
        x, sigma, _, _ = run(x, sigma, n_gibbs=n_burn, callback=_shifted(callback, done))
        done += n_burn
    for _ in range(n_samples):
        state = run(x, sigma, n_gibbs=n_gibbs, callback=_shifted(callback, done))
        done += n_gibbs
        x_out, s_out = (state.x_low, state.sigma_low) if lowest else (state.x, state.sigma)
        out.append(denoise_from(D, x_out, s_out, n_ode=n_ode, sigma_min=sigma_min, sampler=sampler))
        x, sigma = state.x, state.sigma
    return torch.cat(out)


def _shifted(callback, offset: int):
    """The callback with "i" and "nfe" counted from the chain's start, not the sweep's."""
    if callback is None:
        return None
    return lambda info: callback({**info, "i": info["i"] + offset, "nfe": info["nfe"] + offset})
