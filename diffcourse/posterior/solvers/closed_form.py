"""Solvers with a closed-form likelihood or data step: ΠGDM, DDNM(+), DMPS (DDPM and flow), DDS (VE coordinates).

DPS back-propagates through the network at every one of about a thousand steps. These pay less:
a Gaussian p(y | x_σ) in closed form (ΠGDM still needs one vector-Jacobian product; DMPS none), an
exact range/null-space split (DDNM), or a few conjugate-gradient steps on x̂0 (DDS). Each is a prior
sampler step of :mod:`diffcourse.prior.samplers.steps` plus a likelihood term, or the DDNM/DDS
re-noising :func:`renoise_step`; the VP formulas of the papers are rewritten with x_VE = x_VP/√ᾱ,
σ² = (1 - ᾱ)/ᾱ. The SVD of A comes from ``op.svd(x)`` (computed once per run); operators without
one (Radon, multi-coil MRI, zero-padded blur) fall back as each docstring says.

>>> from diffcourse.physics.likelihood import Likelihood
>>> from diffcourse.physics.matrix import Matrix
>>> from diffcourse.physics.noise import GaussianNoise
>>> from diffcourse.prior.processes import karras_sigmas
>>> from diffcourse.prior.toy import GaussianMixture
>>> gm = GaussianMixture.ring(dtype=torch.float64)
>>> lik = Likelihood(Matrix(torch.tensor([[1.0, 0.0]], dtype=torch.float64)), GaussianNoise(0.0),
...                  torch.tensor([[1.0]], dtype=torch.float64))
>>> g = torch.Generator().manual_seed(0)
>>> out = ddnm(gm.denoiser, 20 * torch.randn(4, 2, generator=g, dtype=torch.float64), karras_sigmas(20, 0.01, 20.0),
...            lik, generator=g)
>>> out[:, 0]                                    # A x = y exactly: the range space comes from y
tensor([1., 1., 1., 1.], dtype=torch.float64)
"""
from __future__ import annotations

import math

import torch

from ..._linalg import cg
from ..._validate import check_int, check_nonnegative
from ...prior.samplers.loop import guard, noise, report, steps
from ...prior.samplers.steps import ddim_step, ddim_ve_step, ddpm_step
from ..guidance import _linear_gaussian, _r2_of, _real_like, gaussian_solve, pgdm_grad
from ._common import per_sample, real_AT, setup, sigma_y2

__all__ = ["pgdm", "ddnm", "dmps", "dmps_flow", "dds", "renoise_step", "ddnm_correction", "dds_consistency"]


def _check_eta(eta) -> float:
    if not isinstance(eta, (int, float)) or isinstance(eta, bool) or not 0 <= eta <= 1:
        raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")
    return float(eta)


def _prepare(D, x, sigmas, lik, generator, name, use_svd=True):
    """setup + the linear-Gaussian checks; returns (levels, sigma_b, y, op, σ_y² (B, 1, ...), svd or None)."""
    levels, sigma_b, y = setup(D, x, sigmas, lik, generator)
    op = _linear_gaussian(lik, name)
    return levels, sigma_b, y, op, sigma_y2(lik, x, name), (op.svd(x) if use_svd else None)


def renoise_step(x, x0_net, x0_new, sigma, sigma_next, z=None, *, eta: float):
    """DDNM / DDS re-noising in VE coordinates: x' = x̂0' + σ'(η z + √(1 - η²) ε̂), ε̂ = (x - x0_net)/σ.

    Wang, Yu & Zhang (ICLR 2023, Eq. 13 with c1 = √(1 - ᾱ') η, c2 = √(1 - ᾱ') √(1 - η²)) divided by
    √ᾱ'; ε̂ is the network's noise estimate (from x0_net, not from the corrected x0_new). This η is
    DDNM's, not DDIM's: η = 1 draws all fresh noise, η = 0 none. ``z`` is needed when η > 0.
    """
    out = x0_new + sigma_next * math.sqrt(1 - eta ** 2) * (x - x0_net) / sigma
    return out + sigma_next * eta * z if eta > 0 else out


def ddnm_correction(x0, y, op, svd, sigma_y, sigma_next, eta: float):
    """DDNM+'s x̂0 = x0 - Σ_t A⁺(A x0 - y) and its per-direction noise scales (Wang et al. 2023, Eq. 17-19).

    In the SVD basis, with τ_i = σ_y/s_i (the measurement noise of direction i at level 0):
    λ_i = 1 where σ' ≥ τ_i, else σ' √(1 - η²)/τ_i; and the noise added there is √(σ'² - τ_i²) z
    (σ' ≥ τ_i) or σ' η z (σ' < τ_i), with no ε̂ part, so that the total variance stays σ'². Null
    directions (s_i = 0) keep DDNM's mix. ``sigma_y`` (B, 1, ...) = 0 gives DDNM: λ = 1, A⁺ exactly.
    Returns (x̂0, noise_fn) with noise_fn(z, eps_hat) -> the added noise (B, ...).
    """
    c = svd.UT(y - op.A(x0))
    real = c.real.dtype if c.is_complex() else c.dtype
    s = svd.s.to(device=c.device, dtype=real).expand(c.shape)
    keep = s > 1e3 * torch.finfo(real).eps * per_sample(s.flatten(1).amax(1), s)
    s_safe = torch.where(keep, s, torch.ones_like(s))
    sy = per_sample(sigma_y.reshape(-1), c)
    noisy = keep & (sy > 0)
    tau = torch.where(noisy, sy / s_safe, torch.zeros_like(s))
    k = math.sqrt(1 - eta ** 2)
    lam = torch.where(sigma_next >= tau, torch.ones_like(s), sigma_next * k / torch.where(noisy, tau, 1.0))
    x0_hat = x0 + _real_like(svd.V(torch.where(keep, lam / s_safe, torch.zeros_like(s)) * c), x0)
    mixed = sigma_next * eta * torch.ones_like(s)
    d1 = torch.where(sigma_next >= tau, (sigma_next ** 2 - tau ** 2).clamp_min(0).sqrt(), mixed)
    d1 = torch.where(noisy, d1, mixed) - sigma_next * eta
    d2 = torch.where(noisy, -sigma_next * k * torch.ones_like(s), torch.zeros_like(s))

    def noise_fn(z, eps_hat):
        base = sigma_next * (eta * z + k * eps_hat)
        return base + _real_like(svd.V(d1 * svd.VT(z) + d2 * svd.VT(eps_hat)), x0)
    return x0_hat, noise_fn


def ddnm(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, eta: float = 0.85, generator: torch.Generator | None = None,
         callback=None, progress: bool = False) -> torch.Tensor:
    """DDNM / DDNM+ (Wang, Yu & Zhang, ICLR 2023, Eq. 12-13 and 17-19): range space from y, null space from the prior.

    Per step: x0 = D(x, σ); x̂0 = x0 - A⁺(A x0 - y) (so A x̂0 = y and (I - A⁺A) x̂0 = (I - A⁺A) x0);
    then x' = x̂0 + σ'(η z + √(1 - η²) ε̂) (:func:`renoise_step`). With σ_y > 0 and an SVD this is
    DDNM+: the range correction is shrunk per singular direction and the noise reduced where the
    measurement already carries some (:func:`ddnm_correction`); with σ_y = 0 the two coincide.
    Fallback without ``op.svd`` (Radon, multi-coil MRI, ZeroBlur): plain DDNM with ``op.pinv``
    (CGLS), unshrunk even for σ_y > 0. Default η = 0.85 (official code, main.py); time-travel
    (travel_length = travel_repeat = 1 there, i.e. off) is not implemented. One network
    forward per step, no backward. x: (B, ...); returns (B, ...).
    """
    eta = _check_eta(eta)
    levels, sigma_b, y, op, sy2, svd = _prepare(D, x, sigmas, lik, generator, "ddnm")
    sy = sy2.sqrt()
    for i in steps(len(levels) - 1, progress, "ddnm"):
        sigma, sigma_next = levels[i], levels[i + 1]
        x0 = D(x, sigma_b[i])
        report(callback, i, x, sigma, sigma_next, x0)
        z = noise(x, generator) if eta > 0 else torch.zeros_like(x)
        eps_hat = (x - x0) / sigma
        if svd is not None:
            x0_hat, noise_fn = ddnm_correction(x0, y, op, svd, sy, sigma_next, eta)
            x_next = x0_hat + noise_fn(z, eps_hat)
        else:
            x0_hat = x0 - _real_like(op.pinv(op.A(x0) - y), x0)
            x_next = renoise_step(x, x0, x0_hat, sigma, sigma_next, z, eta=eta)
        x = guard(x_next, "ddnm", i, sigma, "use more steps")
    return x


def pgdm(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, zeta: float = 1.0, eta: float = 0.0, r2=None,
         use_svd: bool = True, cg_iter: int = 50, generator: torch.Generator | None = None, callback=None,
         progress: bool = False) -> torch.Tensor:
    """ΠGDM (Song, Vahdat, Mardani & Kautz, ICLR 2023, Alg. 1): DDIM with the guidance of Eq. 8 added to x̂0.

    x̂0_y = x̂0 + ζ σ² g with g = :func:`diffcourse.posterior.guidance.pgdm` (r² = σ²/(1 + σ²) by
    default), then the DDIM step (η = 0, as in the reference code) from x̂0_y: the step of the
    posterior denoiser D + σ² g, so ζ = 1 with the exact g samples the posterior. (The reference
    implementation, NVlabs/RED-diff algos/pgdm.py, adds √ᾱ'√ᾱ·g_VP to the VP state, which in VE
    coordinates is + 1 · Jᵀ A⁺(y - A x̂0): its noiseless g without the 1/r² and without the step
    length σ²(1 - σ'/σ); the two weightings differ by (1 + σ²)(1 - σ'/σ).) It starts from x as
    given; the reference code starts from A⁺y + σ_max z. One forward and one backward pass per
    step. ``use_svd``/``cg_iter``: as in :func:`diffcourse.posterior.guidance.gaussian_solve`.
    """
    zeta, eta = float(zeta), _check_eta(eta)
    levels, sigma_b, _, op, sy2, svd = _prepare(D, x, sigmas, lik, generator, "pgdm", use_svd)
    cg_iter = check_int(cg_iter, "cg_iter")
    for i in steps(len(levels) - 1, progress, "pgdm"):
        sigma, sigma_next = levels[i], levels[i + 1]
        g, x0_hat = pgdm_grad(D, x, sigma_b[i], lik, _r2_of(r2, sigma), sy2, svd, cg_iter)
        report(callback, i, x, sigma, sigma_next, x0_hat)
        z = noise(x, generator) if eta > 0 else None
        x = guard(ddim_step(x, x0_hat + zeta * sigma ** 2 * g, sigma, sigma_next, z, eta=eta), "pgdm", i, sigma,
                  "lower zeta or use more steps")
    return x


def _dmps_loop(D, x, sigmas, lik, step, weight, point, use_svd, cg_iter, generator, callback, progress, name):
    levels, sigma_b, y, op, sy2, svd = _prepare(D, x, sigmas, lik, generator, name, use_svd)
    cg_iter = check_int(cg_iter, "cg_iter")
    for i in steps(len(levels) - 1, progress, name):
        sigma, sigma_next = levels[i], levels[i + 1]
        x0_hat = D(x, sigma_b[i])
        report(callback, i, x, sigma, sigma_next, x0_hat)
        x_next = step(x, x0_hat, sigma, sigma_next)
        at = point(x, x_next, sigma, sigma_next)
        g = gaussian_solve(op, y - op.A(at), sigma ** 2, sy2, x, svd=svd, cg_iter=cg_iter)
        x = guard(x_next + weight(sigma, sigma_next) * g, name, i, sigma, "lower lam or use more steps")
    return x


def dmps(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, lam: float = 1.75, code_point: bool = False,
         use_svd: bool = True, cg_iter: int = 50, generator: torch.Generator | None = None, callback=None,
         progress: bool = False) -> torch.Tensor:
    """DMPS, DDPM version (Meng & Kabashima 2022, Alg. 1): x' = DDPM(x) + λ (σ² - σ'²) ∇ log p̃(y | x_σ).

    The paper's x_{t-1} += λ ((1 - α_t)/√α_t) ∇_{x_t} log p̃ reads in VE coordinates as
    λ (σ² - σ'²) times the VE guidance :func:`diffcourse.posterior.guidance.dmps` (1 - α_t = (σ² -
    σ'²)/(1 + σ²)): the reverse-diffusion step of the likelihood score. λ = 1.75: the official code's
    ``scale`` for every task. The guidance is evaluated at x_σ (the paper, ``code_point=False``) or,
    as the official code does, at the post-step sample with the pre-step level's ᾱ (``code_point=True``:
    x_VP(t-1)/√ᾱ_t, i.e. x' √((1 + σ²)/(1 + σ'²)) in VE). SVD form where ``op.svd`` exists, else the
    dense CG form (:func:`~diffcourse.posterior.guidance.gaussian_solve`). One network forward per
    step, no backward. x: (B, ...); returns (B, ...).
    """
    lam = check_nonnegative(lam, "lam")

    def point(x, x_next, s, s_next):
        return x_next * math.sqrt((1 + s ** 2) / (1 + s_next ** 2)) if code_point else x

    def step(x, x0_hat, s, s_next):
        return ddpm_step(x, x0_hat, s, s_next, noise(x, generator))
    return _dmps_loop(D, x, sigmas, lik, step, lambda s, s_next: lam * (s ** 2 - s_next ** 2), point, use_svd,
                      cg_iter, generator, callback, progress, "dmps")


def dmps_flow(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, lam: float = 1.0, use_svd: bool = True,
              cg_iter: int = 50, generator: torch.Generator | None = None, callback=None,
              progress: bool = False) -> torch.Tensor:
    """DMPS, flow-matching version (Meng & Kabashima): flow Euler + λ × the likelihood part of the posterior velocity.

    Flow x_t = a x0 + b ε (rectified flow a = 1 - t, b = t): x0 | x_t ≈ N(x_t/a, (b/a)² I) gives
    ∇_{x_t} log p̃ = (1/a) Aᵀ(σ_y² I + (b/a)² A Aᵀ)⁻¹(y - A x_t/a) (the residual is y - A x_t/a, not
    y - A x_t/√ᾱ_t, the VP form, which does not hold in flow coordinates), and the step x_{t-Δ} = x_t - v Δt -
    λ [b(ȧ b - a ḃ)/a] ∇ log p̃ Δt. With x_VE = x_t/a, σ = b/a, the Euler step is exact DDIM
    (:func:`~diffcourse.prior.samplers.steps.ddim_ve_step`) and the extra term is λ σ(σ - σ') times the
    VE guidance :func:`diffcourse.posterior.guidance.dmps`. There is no official flow code; λ = 1
    (the exact posterior velocity under the approximation) is our default. Input, output and callback
    in VE coordinates. One network forward per step. x: (B, ...); returns (B, ...).
    """
    lam = check_nonnegative(lam, "lam")
    return _dmps_loop(D, x, sigmas, lik, lambda x, x0, s, s_next: ddim_ve_step(x, x0, s, s_next),
                      lambda s, s_next: lam * s * (s - s_next), lambda x, x_next, s, s_next: x, use_svd, cg_iter,
                      generator, callback, progress, "dmps_flow")


def dds_consistency(x0_hat: torch.Tensor, y: torch.Tensor, op, *, gamma: float | None = 1.0, n_iter: int = 5,
                    tol: float | None = None):
    """DDS's data step (Chung, Lee & Ye, ICLR 2024, Eq. 13-14): ``n_iter`` CG steps from x̂0, per sample.

    ``gamma`` None (σ_y = 0): CG on Aᵀ A x = Aᵀ y, which from x̂0 stays in x̂0 + range(Aᵀ) (the Krylov
    subspace): the limit is the projection of x̂0 onto {A x = y}. ``gamma`` > 0: CG on
    (I + γ Aᵀ A) x = x̂0 + γ Aᵀ y, the proximal step argmin γ/2 ||y - A x||² + 1/2 ||x - x̂0||².
    Aᵀ is the adjoint over real images for a real x̂0. A sample stops early once its residual is below
    ``tol`` ||b|| (default 1000 eps of the dtype: converged to rounding; the official code always runs
    ``n_iter``, and on a singular Aᵀ A further CG steps would divide rounding noise by rounding noise).
    x̂0 (B, ...) -> (B, ...).
    """
    n_iter = check_int(n_iter, "n_iter", 0)
    real = x0_hat.real.dtype if x0_hat.is_complex() else x0_hat.dtype
    tol = 1e3 * torch.finfo(real).eps if tol is None else check_nonnegative(tol, "tol")
    ATy = real_AT(op, y, x0_hat)
    if gamma is None:
        return cg(lambda v: real_AT(op, op.A(v), v), ATy, x0_hat, n_iter=n_iter, tol=tol)
    gamma = check_nonnegative(gamma, "gamma")
    return cg(lambda v: v + gamma * real_AT(op, op.A(v), v), x0_hat + gamma * ATy, x0_hat, n_iter=n_iter, tol=tol)


def dds(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, eta: float = 0.85, gamma: float = 1.0, n_cg: int = 5,
        generator: torch.Generator | None = None, callback=None, progress: bool = False) -> torch.Tensor:
    """DDS, the decomposed diffusion sampler (Chung, Lee & Ye, ICLR 2024, Alg. 1): Tweedie, CG, re-noise.

    x̂0 = D(x, σ); x̂0' = ``n_cg`` CG steps on the data subproblem from x̂0 (:func:`dds_consistency`:
    the noiseless normal equations when σ_y = 0, the γ-proximal step otherwise); then
    x' = x̂0' + σ'(η z + √(1 - η²) ε̂) with the network's ε̂ (:func:`renoise_step`, DDIM with DDNM's
    η). No gradient through the network, any linear operator (CG needs only A and Aᵀ). Defaults from
    the official code (HJ-harry/DDS main.py): η = 0.85, γ = 1, 5 CG steps; 50 steps (T_sampling).
    One network forward and n_cg (A, Aᵀ) pairs per step. x: (B, ...); returns (B, ...).
    """
    eta, n_cg = _check_eta(eta), check_int(n_cg, "n_cg", 0)
    levels, sigma_b, y, op, sy2, _ = _prepare(D, x, sigmas, lik, generator, "dds", use_svd=False)
    gamma_used = None if not bool((sy2 > 0).any()) else gamma
    for i in steps(len(levels) - 1, progress, "dds"):
        sigma, sigma_next = levels[i], levels[i + 1]
        x0 = D(x, sigma_b[i])
        report(callback, i, x, sigma, sigma_next, x0)
        x0_dc = dds_consistency(x0, y, op, gamma=gamma_used, n_iter=n_cg)
        z = noise(x, generator) if eta > 0 else None
        x = guard(renoise_step(x, x0, x0_dc, sigma, sigma_next, z, eta=eta), "dds", i, sigma, "use more steps")
    return x
