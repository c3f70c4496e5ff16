"""Checks for lesson 10 (closed-form likelihoods): the DMPS guidance through the SVD of A, the DDNM
range/null-space correction, and the ΠGDM guidance by a vector-Jacobian product.

Conventions: VE state x = x0 + σ z, a batch of N vectors (N, n); a matrix A (m, n) with thin SVD
A = U diag(s) Vh (U (m, k), s (k,), Vh (k, n)) acts on each row, A x = x @ A.T; y is one
measurement (m,) shared by the batch.
DMPS (Meng & Kabashima 2022, Thm. 1-2): g = Aᵀ(σ_y² I + σ² A Aᵀ)⁻¹(y - A x) = V Σ(σ_y² + σ² Σ²)⁻¹ Uᵀ(y - A x).
DDNM (Wang, Yu & Zhang, ICLR 2023, Eq. 12): x̂0 = x0 - A⁺(A x0 - y) = A⁺y + (I - A⁺A) x0.
ΠGDM (Song, Vahdat, Mardani & Kautz, ICLR 2023, Eq. 7-8): g = Jᵀ Aᵀ(σ_y² I + r² A Aᵀ)⁻¹(y - A x̂0),
x̂0 = D(x, σ), J = ∂x̂0/∂x.
"""
from __future__ import annotations

import torch

from ..prior.toy import GaussianMixture
from ._core import close, diagnose, exercise

__all__ = ["check_dmps_guidance_svd", "check_ddnm_correction", "check_pgdm_guidance"]

F64 = torch.float64
_TOL = {"rtol": 1e-7, "atol": 1e-9}           # float64 linear algebra: rounding slack only


def _matrix(seed: int, m: int, n: int) -> torch.Tensor:
    """A random (m, n) matrix with singular values far from 1 and from each other (rows not orthonormal)."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    k = min(m, n)
    s = torch.logspace(0.6, -0.8, k, dtype=F64)                    # 4 ... 0.16
    return U[:, :k] @ torch.diag(s) @ V[:, :k].T


# ---------------------------------------------------------------- exercise 1: DMPS guidance by the SVD
def _dmps_guidance_svd(x, sigma, U, s, Vh, y, sigma_y):
    r = y - x @ (U * s @ Vh).T                                       # (N, m)
    return ((r @ U) * s / (sigma_y ** 2 + sigma ** 2 * s ** 2)) @ Vh


def _no_spread(x, sigma, U, s, Vh, y, sigma_y):                    # r² = σ² forgotten: DPS-like weight s/σ_y²
    r = y - x @ (U * s @ Vh).T
    return ((r @ U) * s / sigma_y ** 2) @ Vh


def _sigma_not_squared(x, sigma, U, s, Vh, y, sigma_y):
    r = y - x @ (U * s @ Vh).T
    return ((r @ U) * s / (sigma_y ** 2 + sigma * s ** 2)) @ Vh


def _s_not_squared(x, sigma, U, s, Vh, y, sigma_y):
    r = y - x @ (U * s @ Vh).T
    return ((r @ U) * s / (sigma_y ** 2 + sigma ** 2 * s)) @ Vh


def _no_s_in_front(x, sigma, U, s, Vh, y, sigma_y):                # the Σ of Aᵀ = V Σ Uᵀ forgotten
    r = y - x @ (U * s @ Vh).T
    return ((r @ U) / (sigma_y ** 2 + sigma ** 2 * s ** 2)) @ Vh


def _one_over_s(x, sigma, U, s, Vh, y, sigma_y):                   # a pseudo-inverse reflex: Σ⁻¹ in front
    r = y - x @ (U * s @ Vh).T
    return ((r @ U) / (s * (sigma_y ** 2 + sigma ** 2 * s ** 2))) @ Vh


def _sigma_y_not_squared(x, sigma, U, s, Vh, y, sigma_y):
    r = y - x @ (U * s @ Vh).T
    return ((r @ U) * s / (sigma_y + sigma ** 2 * s ** 2)) @ Vh


def _wrong_sign(x, sigma, U, s, Vh, y, sigma_y):
    return -_dmps_guidance_svd(x, sigma, U, s, Vh, y, sigma_y)


def _vp_residual(x, sigma, U, s, Vh, y, sigma_y):                  # the paper's x_t/√ᾱ applied to a VE state
    ab = 1 / (1 + sigma ** 2)
    return _dmps_guidance_svd(x / ab ** 0.5, sigma, U, s, Vh, y, sigma_y) / ab ** 0.5


_DMPS_MISTAKES = {
    _no_spread: "the denominator is σ_y² + σ² s_i², not σ_y²: DMPS's p(x0 | x) = N(x, σ² I) adds the spread "
                "σ² (seen through A as σ² s_i²) to the noise; without it this is an un-annealed likelihood, "
                "far too strong at high noise",
    _sigma_not_squared: "the spread of x0 | x is the variance σ², not σ: the denominator is σ_y² + σ² s_i²",
    _s_not_squared: "A Aᵀ = U Σ² Uᵀ: in the denominator the singular values enter squared, σ² s_i²",
    _no_s_in_front: "the factor s_i in front is missing: Aᵀ = V Σ Uᵀ contributes Σ, so each direction is "
                    "weighted by s_i/(σ_y² + σ² s_i²)",
    _one_over_s: "that weights direction i by 1/(s_i (σ_y² + σ² s_i²)), as a pseudo-inverse would; "
                 "Aᵀ = V Σ Uᵀ contributes s_i in the numerator: s_i/(σ_y² + σ² s_i²)",
    _sigma_y_not_squared: "the noise variance is σ_y², not σ_y",
    _wrong_sign: "wrong sign: the guidance is the gradient of the log-likelihood and points towards "
                 "smaller residuals, Aᵀ(...)⁻¹(y - A x)",
    _vp_residual: "the state is already in VE coordinates (x = x0 + σ z), so the flat-prior mean is x "
                  "itself: do not divide x by √ᾱ (the paper's x_t/√ᾱ_t converts its VP state x_t to this "
                  "VE state)",
}

_DMPS_CASES = [(0, 5, 3, 7, 1.3, 0.1), (1, 3, 4, 6, 0.2, 0.05), (2, 1, 6, 4, 4.0, 0.3)]  # seed, N, m, n, σ, σ_y


@exercise(_dmps_guidance_svd, *_DMPS_MISTAKES)
def check_dmps_guidance_svd(fn):
    """fn(x, sigma, U, s, Vh, y, sigma_y) = V diag(s/(σ_y² + σ² s²)) Uᵀ (y - A x) per row, shaped like x."""
    for seed, N, m, n, sigma, sigma_y in _DMPS_CASES:
        A = _matrix(seed, m, n)
        U, s, Vh = torch.linalg.svd(A, full_matrices=False)
        g = torch.Generator().manual_seed(100 + seed)
        x = 2 * torch.randn(N, n, generator=g, dtype=F64)
        y = torch.randn(m, generator=g, dtype=F64)
        args = (x, sigma, U, s, Vh, y, sigma_y)
        out = fn(x.clone(), sigma, U.clone(), s.clone(), Vh.clone(), y.clone(), sigma_y)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == x.shape, f"the guidance has the shape of x {tuple(x.shape)}, got {tuple(out.shape)}"
        expected = _dmps_guidance_svd(*args)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"A {m}×{n}, σ = {sigma}, σ_y = {sigma_y}: "
                                 + diagnose(out, expected, args, _DMPS_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 2: DDNM's correction
def _ddnm_correction(x0, A, y):
    return x0 - (x0 @ A.T - y) @ torch.linalg.pinv(A).T


def _transpose_for_pinv(x0, A, y):
    return x0 - (x0 @ A.T - y) @ A


def _plus_sign(x0, A, y):
    return x0 + (x0 @ A.T - y) @ torch.linalg.pinv(A).T


def _range_only(x0, A, y):
    return (y @ torch.linalg.pinv(A).T).expand_as(x0).clone()


def _null_only(x0, A, y):
    P = torch.linalg.pinv(A)
    return x0 - x0 @ A.T @ P.T


def _replace_not_correct(x0, A, y):                                # A⁺y + x0: the null-space projector forgotten
    return x0 + y @ torch.linalg.pinv(A).T


_DDNM_MISTAKES = {
    _transpose_for_pinv: "that uses Aᵀ where DDNM needs the pseudo-inverse A⁺: the two agree only when "
                         "A Aᵀ = I (an inpainting mask, orthonormal rows). Use A⁺ = torch.linalg.pinv(A); "
                         "then A x̂0 = y exactly",
    _plus_sign: "wrong sign: x̂0 = x0 - A⁺(A x0 - y) removes the misfit (then A x̂0 = y)",
    _range_only: "that is only the range-space part A⁺y; DDNM keeps the prior's null-space part too: "
                 "x̂0 = A⁺y + (I - A⁺A) x0",
    _null_only: "that is only the null-space part (I - A⁺A) x0; add the range-space part A⁺y from the "
                "measurement",
    _replace_not_correct: "x0 + A⁺y keeps the range-space part of x0 as well: x̂0 = A⁺y + (I - A⁺A) x0 "
                          "replaces it",
}

_DDNM_CASES = [(10, 4, 3, 8), (11, 2, 1, 5), (12, 3, 5, 6)]         # seed, N, m, n (all m < n)


@exercise(_ddnm_correction, *_DDNM_MISTAKES)
def check_ddnm_correction(fn):
    """fn(x0, A, y) = x0 - A⁺(A x0 - y) per row, shaped like x0; then A x̂0 = y."""
    for seed, N, m, n in _DDNM_CASES:
        A = _matrix(seed, m, n)
        g = torch.Generator().manual_seed(200 + seed)
        x0 = torch.randn(N, n, generator=g, dtype=F64)
        y = torch.randn(n, generator=g, dtype=F64) @ A.T             # a measurement of some image
        args = (x0, A, y)
        out = fn(x0.clone(), A.clone(), y.clone())
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == x0.shape, f"x̂0 has the shape of x0 {tuple(x0.shape)}, got {tuple(out.shape)}"
        expected = _ddnm_correction(*args)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"A {m}×{n}: " + diagnose(out, expected, args, _DDNM_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 3: ΠGDM guidance
def _mixture() -> GaussianMixture:
    """A 3-D mixture of three anisotropic Gaussians: its denoiser has a non-trivial Jacobian."""
    g = torch.Generator().manual_seed(17)
    means = 1.5 * torch.randn(3, 3, generator=g, dtype=F64)
    L = 0.5 * torch.randn(3, 3, 3, generator=g, dtype=F64)
    covs = L @ L.mT + 0.05 * torch.eye(3, dtype=F64)
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=F64), means, covs)


def _solve_v(x0_hat, A, y, sigma_y, r2):
    """v = Aᵀ(σ_y² I + r² A Aᵀ)⁻¹(y - A x̂0) per row, (N, n)."""
    M = sigma_y ** 2 * torch.eye(A.shape[0], dtype=A.dtype) + r2 * A @ A.T
    return torch.linalg.solve(M, (y - x0_hat @ A.T).T).T @ A


def _vjp(D, x, sigma, v_of):
    """Jᵀ v with v = v_of(x̂0) computed at the detached x̂0: ∇_x <v, D(x, σ)>."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        x0_hat = D(xg, sigma)
        v = v_of(x0_hat.detach())
        (g,) = torch.autograd.grad((v * x0_hat).sum(), xg)
    return g


def _pgdm_guidance(D, x, sigma, A, y, sigma_y, r2):
    return _vjp(D, x, sigma, lambda x0: _solve_v(x0, A, y, sigma_y, r2))


def _pgdm_no_spread(D, x, sigma, A, y, sigma_y, r2):               # r² forgotten: DPS
    return _vjp(D, x, sigma, lambda x0: (y - x0 @ A.T) @ A / sigma_y ** 2)


def _pgdm_r_not_squared(D, x, sigma, A, y, sigma_y, r2):
    return _pgdm_guidance(D, x, sigma, A, y, sigma_y, r2 ** 0.5)


def _pgdm_no_jacobian(D, x, sigma, A, y, sigma_y, r2):            # v itself: the score in x̂0, not in x
    return _solve_v(D(x, sigma), A, y, sigma_y, r2)


def _pgdm_v_differentiated(D, x, sigma, A, y, sigma_y, r2):       # ∇_x <v(x̂0(x)), x̂0(x)>, v not detached
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        x0_hat = D(xg, sigma)
        (g,) = torch.autograd.grad((_solve_v(x0_hat, A, y, sigma_y, r2) * x0_hat).sum(), xg)
    return g


def _pgdm_at_the_noisy_state(D, x, sigma, A, y, sigma_y, r2):     # the residual at x, not at x̂0
    return _vjp(D, x, sigma, lambda x0: _solve_v(x, A, y, sigma_y, r2))


def _pgdm_sigma_y_not_squared(D, x, sigma, A, y, sigma_y, r2):
    return _pgdm_guidance(D, x, sigma, A, y, sigma_y ** 0.5, r2)


def _pgdm_sign(D, x, sigma, A, y, sigma_y, r2):
    return -_pgdm_guidance(D, x, sigma, A, y, sigma_y, r2)


_PGDM_MISTAKES = {
    _pgdm_no_spread: "the covariance is σ_y² I + r² A Aᵀ, not σ_y² I: without r² in the denominator this is "
                     "DPS's guidance, which treats x̂0 as certain",
    _pgdm_r_not_squared: "r2 is already the variance r²: use σ_y² I + r2 · A Aᵀ as it is",
    _pgdm_no_jacobian: "that is v = Aᵀ(σ_y² I + r² A Aᵀ)⁻¹(y - A x̂0), the gradient with respect to x̂0; "
                       "ΠGDM differentiates with respect to x: Jᵀ v, a vector-Jacobian product through D",
    _pgdm_v_differentiated: "compute v at a detached x̂0 (x̂0.detach()) and differentiate only <v, x̂0(x)>: "
                            "otherwise autograd also differentiates v and the product is not Jᵀ v",
    _pgdm_at_the_noisy_state: "the residual is y - A x̂0 with x̂0 = D(x, σ), not y - A x",
    _pgdm_sigma_y_not_squared: "the noise variance is σ_y², not σ_y: σ_y² I + r² A Aᵀ",
    _pgdm_sign: "wrong sign: the guidance points towards smaller residuals, Jᵀ Aᵀ(...)⁻¹(y - A x̂0)",
}

_PGDM_CASES = [(20, 4, 2, 0.8, 0.1, 0.39), (21, 3, 1, 2.5, 0.3, 0.86), (22, 2, 3, 0.2, 0.05, 0.04)]
# seed, N, m, σ, σ_y, r²


@exercise(_pgdm_guidance, *_PGDM_MISTAKES)
def check_pgdm_guidance(fn):
    """fn(D, x, sigma, A, y, sigma_y, r2) = Jᵀ Aᵀ(σ_y² I + r2 A Aᵀ)⁻¹(y - A D(x, σ)) per row, shaped like x."""
    mix = _mixture()
    for seed, N, m, sigma, sigma_y, r2 in _PGDM_CASES:
        g = torch.Generator().manual_seed(seed)
        A = torch.randn(m, 3, generator=g, dtype=F64)
        y = torch.randn(m, generator=g, dtype=F64)
        x = 1.5 * torch.randn(N, 3, generator=g, dtype=F64)
        args = (mix.denoiser, x, sigma, A, y, sigma_y, r2)
        out = fn(mix.denoiser, x.clone(), sigma, A.clone(), y.clone(), sigma_y, r2)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == x.shape, f"the guidance has the shape of x {tuple(x.shape)}, got {tuple(out.shape)}"
        expected = _pgdm_guidance(*args)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"σ = {sigma}, σ_y = {sigma_y}, r² = {r2}: "
                                 + diagnose(out, expected, args, _PGDM_MISTAKES, **_TOL))
