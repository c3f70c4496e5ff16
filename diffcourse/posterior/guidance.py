"""Approximations of the likelihood score ∇_x log p(y | x_σ) of a noisy state (VE, x_σ = x0 + σ z).

p(y | x_σ) = ∫ p(y | x0) p(x0 | x_σ) dx0 is intractable for a learned prior; every guided solver
is a diffusion sampler plus one of these estimates. Each is a function
``(D, x, sigma, lik, **params) -> tensor shaped like x``, with ``D(x, sigma)`` a denoiser,
``sigma`` a number or a (B,) tensor and ``lik`` a :class:`diffcourse.physics.likelihood.Likelihood`:

* :func:`exact` — the truth, for a Gaussian-mixture prior, a linear operator and Gaussian noise;
* :func:`dps` — ∇_x log p(y | x̂0(x)), through the denoiser (Chung et al., ICLR 2023, Eq. 16);
  Poisson noise with the paper's weighted norm; :func:`dps_poisson_official` the code's variant;
* :func:`jalal` — the annealed Gaussian likelihood Aᵀ(y - A x)/(σ_y² + γ²σ²) (Jalal et al.,
  NeurIPS 2021), exact for a flat prior when A Aᵀ = I and γ = 1;
* :func:`mcg` — the manifold-constrained gradient -∇_x ||y - A x̂0(x)||² (Chung et al., NeurIPS
  2022, Eq. 14), used together with a projection;
* :func:`posterior_denoiser` — D_y(x, σ) = D(x, σ) + σ² g(x, σ): any prior sampler becomes a
  posterior sampler, since (D_y - x)/σ² = ∇ log p_σ(x) + g.

:func:`tweedie_grad` is the shared core: it evaluates x̂0 = D(x, σ) once with its graph and
returns the gradient of a per-sample function of x̂0 together with x̂0, so a solver pays one
forward and one backward pass per step.

>>> import torch
>>> from diffcourse.physics.likelihood import Likelihood
>>> from diffcourse.physics.matrix import Matrix
>>> from diffcourse.physics.noise import GaussianNoise
>>> from diffcourse.prior.toy import GaussianMixture
>>> gm = GaussianMixture.gaussian(torch.zeros(2, dtype=torch.float64), 1.0)
>>> lik = Likelihood(Matrix(torch.eye(2, dtype=torch.float64)), GaussianNoise(0.1),
...                  torch.ones(1, 2, dtype=torch.float64))
>>> x = torch.zeros(1, 2, dtype=torch.float64)
>>> exact(gm, x, 0.0, lik)           # at σ = 0 the likelihood score is Aᵀ(y - A x)/σ_y²
tensor([[100., 100.]], dtype=torch.float64)
>>> dps(gm.denoiser, x, 1e-6, lik).round()
tensor([[100., 100.]], dtype=torch.float64)
"""
from __future__ import annotations

from typing import Callable

import torch

from .._validate import as_sigma, check_nonnegative, check_tensor
from ..physics.noise import GaussianNoise, PoissonNoise

__all__ = ["tweedie_grad", "exact", "dps", "dps_poisson_official", "jalal", "mcg", "posterior_denoiser",
           "gaussian_log_lik", "poisson_log_lik", "dps_misfit", "jensen_gap_table"]


def _sigma_b(sigma, x: torch.Tensor) -> torch.Tensor:
    """σ as a (B,) tensor for D; a (B,) tensor already on x's device and dtype passes through
    unchecked (the solvers' schedule rows: no host synchronisation inside a loop)."""
    if (isinstance(sigma, torch.Tensor) and sigma.shape == (x.shape[0],) and sigma.device == x.device
            and sigma.dtype == (x.real.dtype if x.is_complex() else x.dtype)):
        return sigma
    return as_sigma(sigma, x).reshape(-1)


def tweedie_grad(D, x: torch.Tensor, sigma, fn: Callable[[torch.Tensor], torch.Tensor]):
    """(∇_x fn(x̂0(x)), x̂0, fn(x̂0)) with x̂0 = D(x, σ): one forward and one backward pass.

    ``fn`` maps x̂0 (B, ...) to one value per sample (B,); samples do not interact, so the gradient
    of the sum is the per-sample gradient. Returns detached tensors.
    """
    check_tensor(x, "x")
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        x0_hat = D(xg, _sigma_b(sigma, x))
        val = fn(x0_hat)
        (g,) = torch.autograd.grad(val.sum(), xg)
    return g, x0_hat.detach(), val.detach()


def gaussian_log_lik(lik, x0: torch.Tensor) -> torch.Tensor:
    """log N(y; A(x0), σ_y² I) up to a constant: -||y - A(x0)||²/(2σ_y²), per sample (B,)."""
    r = lik.residual(x0)
    s = as_sigma(lik.noise.sigma_y, r.real if r.is_complex() else r, "sigma_y")
    return -0.5 * (r.abs() ** 2 / s ** 2).flatten(1).sum(1)


def poisson_log_lik(lik, x0: torch.Tensor) -> torch.Tensor:
    """Shot-noise Gaussian approximation of DPS (Chung et al., ICLR 2023, Eq. 19): -||y - A x0||²_Λ.

    In counts k = scale·y the variance is ≈ k, so log p ≈ -Σ_j scale (y_j - A x0_j)² / (2 y_j),
    i.e. Λ_jj = 1/(2 y_j) in counts. Pixels with zero counts use one count (y_j ≥ 1/scale).
    """
    r = lik.residual(x0)
    y = lik.y_for(r).clamp_min(1.0 / lik.noise.scale)
    return -0.5 * (lik.noise.scale * r ** 2 / y).flatten(1).sum(1)


def _dps_log_lik(lik):
    if isinstance(lik.noise, GaussianNoise):
        return lambda x0: gaussian_log_lik(lik, x0)
    if isinstance(lik.noise, PoissonNoise):
        return lambda x0: poisson_log_lik(lik, x0)
    return lik.log_prob  # any other noise model: its exact log-likelihood at x̂0


def dps_misfit(lik) -> Callable[[torch.Tensor], torch.Tensor]:
    """The data misfit DPS descends, x0 (B, ...) -> (B,) (Chung et al., ICLR 2023, Eq. 16 and 19).

    Gaussian noise: ||y - A(x0)||²₂ (σ_y is absorbed in the step size ζ); Poisson noise: the
    weighted ||y - A x0||²_Λ of :func:`poisson_log_lik`; any other noise model: -log p(y | x0).
    """
    if isinstance(lik.noise, GaussianNoise):
        return lambda x0: (lik.residual(x0).abs() ** 2).flatten(1).sum(1)
    if isinstance(lik.noise, PoissonNoise):
        return lambda x0: -poisson_log_lik(lik, x0)
    return lambda x0: -lik.log_prob(x0)


def dps(D, x: torch.Tensor, sigma, lik) -> torch.Tensor:
    """DPS guidance ∇_x log p(y | x̂0(x)) (Chung, Kim, McCann, Klasky & Ye, ICLR 2023, Eq. 16).

    The intractable E_{x0 | x}[p(y | x0)] is replaced by p(y | E[x0 | x]) (the Jensen gap) and
    differentiated through the denoiser. Gaussian noise: Jᵀ A'ᵀ (y - A x̂0)/σ_y²; Poisson noise:
    the paper's weighted norm (:func:`poisson_log_lik`); other noise models: their exact
    log-likelihood at x̂0. Works for nonlinear A (phase retrieval, the neural blur).
    """
    return tweedie_grad(D, x, sigma, _dps_log_lik(lik))[0]


def dps_poisson_official(D, x: torch.Tensor, sigma, lik) -> torch.Tensor:
    """The official DPS code's Poisson guidance, -∇_x ||y - A x̂0||₂ · mean_j(1/|y_j|).

    Not the paper's per-pixel weighting (one global weight, a non-squared norm); kept to compare.
    Zero counts are read as one count, where the code would divide by zero.
    """
    def neg_norm(x0):
        r = lik.residual(x0)
        w = (1.0 / lik.y_for(r).abs().clamp_min(1.0 / lik.noise.scale)).flatten(1).mean(1)
        return -r.flatten(1).norm(dim=1) * w
    return tweedie_grad(D, x, sigma, neg_norm)[0]


def mcg(D, x: torch.Tensor, sigma, lik) -> torch.Tensor:
    """Manifold-constrained gradient -∇_x ||y - A x̂0(x)||²₂ (Chung, Sim, Ryu & Ye, NeurIPS 2022, Eq. 14).

    = 2 Jᵀ Aᵀ (y - A x̂0): tangent to the noisy data manifold under its linear-manifold
    assumption (Prop. 3). MCG follows it with a projection onto {A x = y} (see
    :mod:`diffcourse.posterior.consistency`).
    """
    return tweedie_grad(D, x, sigma, lambda x0: -(lik.residual(x0).abs() ** 2).flatten(1).sum(1))[0]


def jalal(D, x: torch.Tensor, sigma, lik, *, gamma: float = 1.0) -> torch.Tensor:
    """Annealed Gaussian likelihood Aᵀ(y - A x)/(σ_y² + γ²σ²) (Jalal et al., NeurIPS 2021).

    Under a flat prior x0 | x_σ ~ N(x_σ, σ² I), so p(y | x_σ) = N(A x_σ, σ_y² I + σ² A Aᵀ); for
    A Aᵀ = I this is exact with γ = 1. ``D`` is not used (no network pass).
    """
    gamma = check_nonnegative(gamma, "gamma")
    r = lik.residual(x)
    g = lik.op.AT(r)
    if g.is_complex() and not x.is_complex():
        g = g.real
    s = as_sigma(sigma, x)
    sy = as_sigma(lik.noise.sigma_y, x, "sigma_y")
    return g / (sy ** 2 + gamma ** 2 * s ** 2)


def exact(gm, x: torch.Tensor, sigma, lik) -> torch.Tensor:
    """The exact ∇_x log p(y | x_σ) for a Gaussian-mixture prior ``gm``, a :class:`Matrix` operator
    and Gaussian noise (:meth:`diffcourse.prior.toy.GaussianMixture.likelihood_score`)."""
    matrix = getattr(lik.op, "matrix", None)
    if matrix is None or not isinstance(lik.noise, GaussianNoise):
        raise TypeError("exact guidance needs lik.op = physics.Matrix(A) and lik.noise = GaussianNoise, got "
                        f"{type(lik.op).__name__} and {type(lik.noise).__name__}")
    y = lik.y.reshape(lik.y.shape[0], -1)
    return gm.likelihood_score(x, sigma, matrix, float(lik.noise.sigma_y), y[0] if y.shape[0] == 1 else y)


def posterior_denoiser(D, g: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    """D_y(x, σ) = D(x, σ) + σ² g(x, σ): the denoiser whose Tweedie score is prior score + g.

    With ``g`` an estimate of ∇ log p(y | x_σ) (e.g. ``lambda x, s: jalal(D, x, s, lik)``), every
    prior sampler of :mod:`diffcourse.prior.samplers` samples the posterior unchanged.
    """
    if not callable(D) or not callable(g):
        raise TypeError("D and g must be callables D(x, sigma) and g(x, sigma)")

    def D_y(x, sigma):
        return D(x, sigma) + as_sigma(sigma, x) ** 2 * g(x, sigma)
    return D_y


def jensen_gap_table(gm, lik, sigmas, *, n: int = 400, generator: torch.Generator | None = None):
    """The Jensen gap of DPS on a mixture testbed: relative error of :func:`dps` against :func:`exact`.

    For each σ, x_σ = x0 + σ z with x0 drawn from the exact posterior p(x0 | y) (one measurement y),
    and gap(σ) = mean_j ||g_dps - g_exact|| / mean_j ||g_exact|| over the n draws. DPS replaces
    E[p(y | x0) | x_σ] by p(y | E[x0 | x_σ]) (Chung et al., ICLR 2023, Thm. 1): the gap vanishes
    as σ → 0, where both tend to Aᵀ(y - A x)/σ_y², and is large at high σ. Returns a list of
    (σ, gap) pairs of Python floats.

    >>> from diffcourse.physics.likelihood import Likelihood
    >>> from diffcourse.physics.matrix import Matrix
    >>> from diffcourse.physics.noise import GaussianNoise
    >>> from diffcourse.prior.toy import GaussianMixture
    >>> gm = GaussianMixture.ring(dtype=torch.float64)
    >>> lik = Likelihood(Matrix(torch.tensor([[1.0, 0.0]], dtype=torch.float64)), GaussianNoise(0.1),
    ...                  torch.tensor([[0.5]], dtype=torch.float64))
    >>> table = jensen_gap_table(gm, lik, [10.0, 0.01], generator=torch.Generator().manual_seed(0))
    >>> table[0][1] > 1 > 0.01 > table[1][1]
    True
    """
    matrix = getattr(lik.op, "matrix", None)
    if matrix is None:
        raise TypeError(f"lik.op must be a physics.Matrix, got {type(lik.op).__name__}")
    post = gm.posterior(matrix, float(lik.noise.sigma_y), lik.y.reshape(-1))
    x0 = post.sample(n, generator).to(gm.dtype)
    rows = []
    for sigma in [float(s) for s in sigmas]:
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        x = x0 + sigma * z
        g_exact, g_dps = exact(gm, x, sigma, lik), dps(gm.denoiser, x, sigma, lik)
        gap = (g_dps - g_exact).flatten(1).norm(dim=1).mean() / g_exact.flatten(1).norm(dim=1).mean()
        rows.append((sigma, float(gap)))
    return rows
