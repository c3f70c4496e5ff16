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
* :func:`pgdm` — ΠGDM, x0 | x_σ ≈ N(x̂0, r² I): Jᵀ Aᵀ(r² A Aᵀ + σ_y² I)⁻¹(y - A x̂0) (Song, Vahdat,
  Mardani & Kautz, ICLR 2023, Eq. 7-8), exact for an N(0, I) prior;
* :func:`dmps` — DMPS, x0 | x_σ ≈ N(x_σ, σ² I): Aᵀ(σ² A Aᵀ + σ_y² I)⁻¹(y - A x_σ) through the SVD
  of A, no network pass (Meng & Kabashima 2022, Thm. 1-2), exact in the flat-prior limit;
* :func:`qcs`, :func:`qcs_ep` — quantized measurements y = Q(A x + n): the QCS-SGM pseudo-likelihood
  score for row-orthogonal A and its EP version for a general A (Meng & Kabashima, ICLR 2023 and
  AAAI 2024); flat-prior approximations that need no denoiser, so they take ``(x, sigma, lik)``;
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

from .._linalg import cg, per_sample
from .._validate import as_sigma, check_int, check_nonnegative, check_tensor
from ..physics.noise import GaussianNoise, PoissonNoise
from .guidance_quantized import qcs, qcs_ep  # noqa: F401  (QCS-SGM, QCS-SGM+; Meng & Kabashima 2023/2024)

__all__ = ["tweedie_grad", "exact", "dps", "dps_poisson_official", "jalal", "mcg", "pgdm", "dmps", "pgdm_r2",
           "pgdm_grad", "gaussian_solve", "posterior_denoiser", "gaussian_log_lik", "poisson_log_lik", "dps_misfit",
           "jensen_gap_table", "qcs", "qcs_ep"]


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


def _linear_gaussian(lik, name: str):
    """(op, σ_y² as (B,)) of a linear operator with Gaussian noise, else TypeError naming ``name``."""
    if not (callable(getattr(lik.op, "AT", None)) and callable(getattr(lik.op, "pinv", None))):
        raise TypeError(f"{name} needs a linear operator with AT and pinv, got {type(lik.op).__name__}; "
                        f"for a nonlinear forward model use dps")
    if not isinstance(lik.noise, GaussianNoise):
        raise TypeError(f"{name} needs Gaussian noise (a closed-form likelihood), got {type(lik.noise).__name__}")
    return lik.op


def gaussian_solve(op, r: torch.Tensor, r2, sigma_y2, x: torch.Tensor, *, svd=None, cg_iter: int = 50):
    """Aᵀ(σ_y² I + r² A Aᵀ)⁻¹ r shaped like the state ``x``: the score in m of N(y; A m, σ_y² I + r² A Aᵀ).

    ``r`` = y - A m (B, ...) in measurement space; ``r2`` and ``sigma_y2`` numbers or tensors with
    one value per sample (B,) or (B, 1, ..., 1). With ``svd`` = ``op.svd(x)`` (A = U diag(s) Vᵀ) it is
    V diag(s/(σ_y² + r² s²)) Uᵀ r, O(n) per call (Meng & Kabashima 2022, Thm. 2); singular values
    below 1000 eps · max s count as zero. Without one (CT, multi-coil MRI, zero-padded blur) the
    "dense" form: (σ_y² I + r² A Aᵀ) v = r by ``cg_iter`` CG iterations per sample, then Aᵀ v; for
    σ_y = 0 it is A⁺ r / r² with ``op.pinv`` (CGLS). For a complex operator on a real state the
    real part is kept (the adjoint over real images).
    """
    real = x.real.dtype if x.is_complex() else x.dtype
    if svd is not None:
        c = svd.UT(r)
        s = svd.s.to(device=c.device, dtype=real)
        s = s.expand(c.shape)
        keep = s > 1e3 * torch.finfo(real).eps * per_sample(s.flatten(1).amax(1), s)  # numerical rank
        r2c, sy2c = _per_coeff(r2, c), _per_coeff(sigma_y2, c)
        w = torch.where(keep, s / torch.where(keep, sy2c + r2c * s ** 2, torch.ones_like(s)), torch.zeros_like(s))
        return _real_like(svd.V(w * c), x)
    r2m, sy2m = _per_coeff(r2, r), _per_coeff(sigma_y2, r)
    if not bool((torch.as_tensor(sy2m) > 0).any()):
        return _real_like(op.pinv(r), x) / _per_coeff(r2, x)
    v = cg(lambda u: sy2m * u + r2m * op.A(_real_like(op.AT(u), x)), r, n_iter=check_int(cg_iter, "cg_iter"),
           tol=1e-10)
    return _real_like(op.AT(v), x)


def _per_coeff(v, like: torch.Tensor):
    """A number stays a number; a (B,) or (B, 1, ...) tensor becomes (B, 1, ..., 1) against ``like``."""
    return per_sample(v.reshape(-1), like) if isinstance(v, torch.Tensor) else v


def _real_like(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.real if v.is_complex() and not x.is_complex() else v


def pgdm_r2(sigma):
    """ΠGDM's r_σ² = σ²/(1 + σ²) = 1 - ᾱ: Var(x0 | x_σ) under an N(0, I) prior (Song et al., ICLR 2023)."""
    return sigma ** 2 / (1 + sigma ** 2)


def _r2_of(r2, sigma):
    """r² at σ: ``None`` -> :func:`pgdm_r2`; a number -> that constant; a callable -> r2(σ)."""
    if r2 is None:
        return pgdm_r2(sigma)
    if callable(r2):
        return r2(sigma)
    return check_nonnegative(r2, "r2")


def pgdm_grad(D, x: torch.Tensor, sigma, lik, r2, sigma_y2, svd, cg_iter: int = 50):
    """(ΠGDM guidance, x̂0) in one forward and one backward pass: the solvers' core of :func:`pgdm`.

    The vector v = Aᵀ(r² A Aᵀ + σ_y² I)⁻¹(y - A x̂0) is computed at the detached x̂0 and the
    vector-Jacobian product Jᵀ v is the gradient of <v, x̂0(x)> (Song et al. 2023, Eq. 8).
    """
    def inner_v(x0):
        v = gaussian_solve(lik.op, lik.residual(x0.detach()), r2, sigma_y2, x, svd=svd, cg_iter=cg_iter)
        return (v * x0).flatten(1).sum(1)
    g, x0_hat, _ = tweedie_grad(D, x, sigma, inner_v)
    return g, x0_hat


def pgdm(D, x: torch.Tensor, sigma, lik, *, r2=None, use_svd: bool = True, cg_iter: int = 50) -> torch.Tensor:
    """ΠGDM guidance (Song, Vahdat, Mardani & Kautz, ICLR 2023, Eq. 7-8): with p(x0 | x_σ) ≈ N(x̂0, r² I),
    p(y | x_σ) ≈ N(A x̂0, r² A Aᵀ + σ_y² I) and g = (∂x̂0/∂x)ᵀ Aᵀ(r² A Aᵀ + σ_y² I)⁻¹(y - A x̂0).

    ``r2``: ``None`` for the paper's r² = σ²/(1 + σ²) (:func:`pgdm_r2`, the posterior variance
    of x0 under an N(0, I) prior, with which g is exact for that prior), a number for a constant
    r², or a callable σ -> r² (e.g. ``lambda s: s**2`` for DMPS's flat prior, or v σ²/(v + σ²)
    for data of variance v). For σ_y = 0 this is the paper's noiseless form Jᵀ A⁺(y - A x̂0)/r²
    (its pseudo-inverse residual, with the 1/r² that its step weight absorbs). The inverse is
    taken through ``op.svd`` where the operator has one (``use_svd=False`` forces the CG form of
    :func:`gaussian_solve`). Linear operators and Gaussian noise only. x (B, ...) -> (B, ...).

    >>> from diffcourse.physics.likelihood import Likelihood
    >>> from diffcourse.physics.matrix import Matrix
    >>> from diffcourse.physics.noise import GaussianNoise
    >>> from diffcourse.prior.toy import GaussianMixture
    >>> gm = GaussianMixture.gaussian(torch.zeros(3, dtype=torch.float64), 1.0)
    >>> lik = Likelihood(Matrix(torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64)), GaussianNoise(0.1),
    ...                  torch.ones(1, 1, dtype=torch.float64))
    >>> x = torch.ones(2, 3, dtype=torch.float64)
    >>> bool((pgdm(gm.denoiser, x, 2.0, lik) - exact(gm, x, 2.0, lik)).abs().max() < 1e-12)
    True
    """
    op = _linear_gaussian(lik, "pgdm")
    s = _sigma_b(sigma, x)
    sy2 = as_sigma(lik.noise.sigma_y, x, "sigma_y") ** 2
    return pgdm_grad(D, x, s, lik, _r2_of(r2, s), sy2, op.svd(x) if use_svd else None, cg_iter)[0]


def dmps(D, x: torch.Tensor, sigma, lik, *, use_svd: bool = True, cg_iter: int = 50) -> torch.Tensor:
    """DMPS guidance (Meng & Kabashima 2022, Thm. 1-2): with the flat-prior p(x0 | x_σ) ≈ N(x_σ, σ² I),
    ∇ log p̃(y | x_σ) = Aᵀ(σ_y² I + σ² A Aᵀ)⁻¹(y - A x_σ) = V Σ (σ_y² + σ² Σ²)⁻¹ Uᵀ(y - A x_σ).

    In VP coordinates this is the paper's (1/√ᾱ) V Σᵀ(σ_y² + ((1 - ᾱ)/ᾱ) Σ²)⁻¹ Uᵀ(y - A x_t/√ᾱ) times
    √ᾱ (x_VE = x_t/√ᾱ, σ² = (1 - ᾱ)/ᾱ). ``D`` is not called: no network pass, no backward pass.
    The SVD form needs ``op.svd`` (Matrix, Identity, Inpaint, Downsample, Colorize, circular Blur,
    the CS matrices, single-coil MRI); other operators (Radon, multi-coil MRI, ZeroBlur/ValidBlur)
    fall back to the dense form by CG (:func:`gaussian_solve`), also chosen by ``use_svd=False``.
    Exact only as the prior becomes flat (for a unit Gaussian prior :func:`pgdm` is exact instead).

    >>> from diffcourse.physics.likelihood import Likelihood
    >>> from diffcourse.physics.matrix import Matrix
    >>> from diffcourse.physics.noise import GaussianNoise
    >>> lik = Likelihood(Matrix(torch.eye(2, dtype=torch.float64)), GaussianNoise(0.5),
    ...                  torch.ones(1, 2, dtype=torch.float64))
    >>> dmps(None, torch.zeros(1, 2, dtype=torch.float64), 0.5, lik)   # (y - x)/(σ_y² + σ²)
    tensor([[2., 2.]], dtype=torch.float64)
    """
    op = _linear_gaussian(lik, "dmps")
    check_tensor(x, "x", complex_ok=True)
    s = as_sigma(sigma, x)
    sy2 = as_sigma(lik.noise.sigma_y, x, "sigma_y") ** 2
    return gaussian_solve(op, lik.residual(x), s ** 2, sy2, x, svd=op.svd(x) if use_svd else None, cg_iter=cg_iter)


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
