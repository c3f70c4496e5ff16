"""Checks for lesson 07 (diffusion posterior sampling): the DPS guidance term, the official code's
step, and the Poisson-weighted misfit.

Conventions: VE state x = x0 + σ z (N, d); a denoiser D(x, σ) ≈ E[x0 | x]; a linear operator is a
matrix A (m, d) acting on each row, A x̂0 = x̂0 @ A.T; y is one measurement (m,) shared by the batch.
DPS (Chung, Kim, McCann, Klasky & Ye, ICLR 2023): ∇_x log p(y | x̂0(x)) with the gradient through D.
"""
from __future__ import annotations

import torch

from ..prior.toy import GaussianMixture
from ._core import close, diagnose, exercise

__all__ = ["check_dps_guidance", "check_dps_code_step", "check_poisson_misfit"]

F64 = torch.float64
_TOL = {"rtol": 1e-7, "atol": 1e-9}           # autograd in float64: rounding slack only


def _mixture() -> GaussianMixture:
    """A 3-D mixture of three anisotropic Gaussians: its denoiser has a non-trivial Jacobian."""
    g = torch.Generator().manual_seed(7)
    means = 1.5 * torch.randn(3, 3, generator=g, dtype=F64)
    L = 0.4 * torch.randn(3, 3, 3, generator=g, dtype=F64)
    covs = L @ L.mT + 0.05 * torch.eye(3, dtype=F64)
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=F64), means, covs)


def _grad_through(D, x, sigma, fn):
    """∇_x sum_n fn(D(x, σ))_n for a per-sample fn: (N, d) -> (N,)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(D(xg, sigma)).sum(), xg)
    return g


def _problem(seed: int, n: int, m: int):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, 3, generator=g, dtype=F64)
    y = torch.randn(m, generator=g, dtype=F64)
    x = 1.5 * torch.randn(n, 3, generator=g, dtype=F64)
    return A, y, x


# ---------------------------------------------------------------- exercise 1: DPS guidance
def _dps_guidance(D, x, sigma, A, y, sigma_y):
    return _grad_through(D, x, sigma, lambda x0: -((y - x0 @ A.T) ** 2).sum(1) / (2 * sigma_y ** 2))


def _no_jacobian(D, x, sigma, A, y, sigma_y):  # ∇ with respect to x̂0: the Jacobian of D is missing
    return (y - D(x, sigma) @ A.T) @ A / sigma_y ** 2


def _at_the_noisy_state(D, x, sigma, A, y, sigma_y):  # p(y | x) as if x were clean: no Tweedie
    return (y - x @ A.T) @ A / sigma_y ** 2


def _no_half(D, x, sigma, A, y, sigma_y):
    return 2 * _dps_guidance(D, x, sigma, A, y, sigma_y)


def _misfit_gradient(D, x, sigma, A, y, sigma_y):  # ∇ of the misfit, not of the log-likelihood
    return -_dps_guidance(D, x, sigma, A, y, sigma_y)


def _sigma_y_not_squared(D, x, sigma, A, y, sigma_y):
    return sigma_y * _dps_guidance(D, x, sigma, A, y, sigma_y)


_GUIDANCE_MISTAKES = {
    _no_jacobian: "that is Aᵀ(y - A x̂0)/σ_y², the gradient with respect to x̂0; DPS differentiates with "
                  "respect to x, through the denoiser: (∂x̂0/∂x)ᵀ Aᵀ(y - A x̂0)/σ_y² (autograd does it)",
    _at_the_noisy_state: "the likelihood is evaluated at x̂0 = D(x, σ), not at the noisy state x",
    _no_half: "log N(y; A x̂0, σ_y² I) = -||y - A x̂0||²/(2σ_y²): the factor 1/2 is missing",
    _misfit_gradient: "wrong sign: the guidance is the gradient of the log-likelihood, which points "
                      "towards smaller residuals",
    _sigma_y_not_squared: "divide by σ_y² (the noise variance), not by σ_y",
}


def _compare_like_x(fn, args, reference, mistakes, what: str, label: str) -> None:
    """Call fn on copies of args (D, x, sigma, A, y, c); its answer must be a tensor shaped like x that
    matches reference(*args), else an error naming the case and, where one matches, the mistake."""
    x = args[1]
    out = fn(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
    assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
    assert out.shape == x.shape, f"{what} has the shape of x {tuple(x.shape)}, got {tuple(out.shape)}"
    expected = reference(*args)
    if not close(out, expected, **_TOL):
        raise AssertionError(f"{label}: " + diagnose(out, expected, args, mistakes, **_TOL))


@exercise(_dps_guidance, *_GUIDANCE_MISTAKES)
def check_dps_guidance(fn):
    """fn(D, x, sigma, A, y, sigma_y) = ∇_x [-||y - A D(x, σ)||²/(2σ_y²)] per sample, shaped like x."""
    mix = _mixture()
    for seed, (n, m, sigma, sigma_y) in enumerate([(5, 2, 0.7, 0.1), (4, 1, 2.5, 0.3), (3, 3, 0.15, 0.05)]):
        A, y, x = _problem(seed, n, m)
        _compare_like_x(fn, (mix.denoiser, x, sigma, A, y, sigma_y), _dps_guidance, _GUIDANCE_MISTAKES,
                        "the guidance", f"σ = {sigma}, σ_y = {sigma_y}")


# ---------------------------------------------------------------- exercise 2: the code's step
def _dps_code_step(D, x, sigma, A, y, zeta):
    return -zeta * _grad_through(D, x, sigma, lambda x0: (y - x0 @ A.T).norm(dim=1))


def _batch_norm(D, x, sigma, A, y, zeta):  # one norm over the whole batch (the official code's)
    return -zeta * _grad_through(D, x, sigma, lambda x0: (y - x0 @ A.T).norm().expand(1))


def _squared_norm(D, x, sigma, A, y, zeta):
    return -zeta * _grad_through(D, x, sigma, lambda x0: ((y - x0 @ A.T) ** 2).sum(1))


def _paper_rule_same_zeta(D, x, sigma, A, y, zeta):  # ζ/||r|| ∇||r||² = 2 ζ ∇||r||
    return 2 * _dps_code_step(D, x, sigma, A, y, zeta)


def _step_sign(D, x, sigma, A, y, zeta):
    return -_dps_code_step(D, x, sigma, A, y, zeta)


def _code_no_jacobian(D, x, sigma, A, y, zeta):
    r = y - D(x, sigma) @ A.T
    return zeta * (r / r.norm(dim=1, keepdim=True)) @ A


_STEP_MISTAKES = {
    _batch_norm: "the norm must be taken per sample (.norm(dim=1)): with one norm over the batch each "
                 "sample's step depends on the other samples (a batch of two must equal two batches of one)",
    _squared_norm: "the official code descends the non-squared norm ||y - A x̂0||₂",
    _paper_rule_same_zeta: "that is twice the code's step: ∇||r||²/||r|| = 2∇||r||, the paper's rule "
                           "with the same ζ",
    _step_sign: "wrong sign: the correction descends the residual norm (it is subtracted)",
    _code_no_jacobian: "the gradient is with respect to x, through the denoiser D, not with respect to x̂0",
}


@exercise(_dps_code_step, *_STEP_MISTAKES)
def check_dps_code_step(fn):
    """fn(D, x, sigma, A, y, zeta) = -ζ ∇_x ||y - A D(x, σ)||₂, the norm taken per sample; shaped like x."""
    mix = _mixture()
    for seed, (n, m, sigma, zeta) in enumerate([(4, 2, 0.8, 0.5), (3, 3, 2.0, 1.3), (5, 1, 0.2, 0.25)], 10):
        A, y, x = _problem(seed, n, m)
        _compare_like_x(fn, (mix.denoiser, x, sigma, A, y, zeta), _dps_code_step, _STEP_MISTAKES,
                        "the step", f"σ = {sigma}, ζ = {zeta}, batch of {n}")


# ---------------------------------------------------------------- exercise 3: Poisson misfit
def _poisson_misfit(y, Ax, scale):
    k, lam = scale * y, scale * Ax
    return ((k - lam) ** 2 / (2 * k.clamp_min(1.0))).flatten(1).sum(1)


def _intensity_units(y, Ax, scale):  # the weight 1/(2y) applied to intensities, not counts
    return ((y - Ax) ** 2 / (2 * y.clamp_min(1.0 / scale))).flatten(1).sum(1)


def _variance_squared(y, Ax, scale):
    k, lam = scale * y, scale * Ax
    return ((k - lam) ** 2 / (2 * k.clamp_min(1.0) ** 2)).flatten(1).sum(1)


def _no_half_poisson(y, Ax, scale):
    return 2 * _poisson_misfit(y, Ax, scale)


def _weight_by_prediction(y, Ax, scale):  # Pearson's χ² (weight 1/λ), not the paper's 1/y
    k, lam = scale * y, scale * Ax
    return ((k - lam) ** 2 / (2 * lam.clamp_min(1.0))).flatten(1).sum(1)


def _official_code(y, Ax, scale):  # ||r|| · mean(1/|y|), one weight for all pixels
    r = (y - Ax).flatten(1)
    return r.norm(dim=1) * (1 / y.flatten(1).abs().clamp_min(1.0 / scale)).mean(1)


def _no_clamp(y, Ax, scale):  # divides by zero where no photon arrived
    k, lam = scale * y, scale * Ax
    return ((k - lam) ** 2 / (2 * k)).flatten(1).sum(1)


def _not_per_sample(y, Ax, scale):
    return _poisson_misfit(y, Ax, scale).sum().expand(y.shape[0])


_POISSON_MISTAKES = {
    _intensity_units: "Λ_jj = 1/(2y_j) holds for counts, whose variance equals their mean: work in counts k = "
                      "scale·y, λ = scale·A x",
    _variance_squared: "the weight is 1/(2k), one over twice the variance k; not 1/(2k²)",
    _no_half_poisson: "the weight is 1/(2k) (a Gaussian exponent has the 1/2): the 2 is missing",
    _weight_by_prediction: "the paper weights by the measured counts y (Λ_jj = 1/(2y_j)), not by the "
                           "predicted λ = scale·A x",
    _official_code: "that is the official code's variant ||r||·mean(1/|y|); the paper's misfit weights "
                    "each pixel: Σ_j (k_j - λ_j)²/(2k_j)",
    _no_clamp: "pixels with zero counts divide by zero: weight them as one count, 1/(2 max(k, 1))",
    _not_per_sample: "return one value per sample: sum over the pixels of each image, .flatten(1).sum(1)",
}


@exercise(_poisson_misfit, *_POISSON_MISTAKES)
def check_poisson_misfit(fn):
    """fn(y, Ax, scale) = Σ_j (k_j - λ_j)²/(2 max(k_j, 1)), k = scale·y, λ = scale·A x, per sample (B,)."""
    g = torch.Generator().manual_seed(3)
    for shape, scale in [((2, 1, 4, 4), 255.0), ((3, 1, 3, 5), 20.0), ((1, 1, 6, 6), 1000.0)]:
        Ax = 0.9 * torch.rand(shape, generator=g, dtype=F64) + 0.02
        y = torch.poisson(scale * Ax, generator=g) / scale
        y.flatten()[:2] = 0.0                                       # zero counts occur: weight 1 count
        args = (y, Ax, scale)
        out = fn(y.clone(), Ax.clone(), scale)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == (shape[0],), f"return one value per sample, shape ({shape[0]},), got {tuple(out.shape)}"
        expected = _poisson_misfit(*args)
        assert bool(torch.isfinite(out).all()), ("the misfit must stay finite where y = 0: weight such "
                                                  "pixels as one count, 1/(2 max(k, 1))")
        if not close(out, expected, **_TOL):
            raise AssertionError(f"scale = {scale:g}: " + diagnose(out, expected, args, _POISSON_MISTAKES, **_TOL))
