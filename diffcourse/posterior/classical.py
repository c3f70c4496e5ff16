"""Classical reconstructions, the baselines beside the diffusion solvers (as compared in Hu et al., NeurIPS 2024).

``op`` is any object with the methods ``A(x)`` and ``AT(y)`` (a linear operator and its adjoint); ``y``
has a leading batch axis and ``x`` has the shape of ``op.AT(y)``. Every solver works per sample: the
conjugate-gradient inner products and stopping tests are taken image by image, so a batch of two
gives the same result as two batches of one.

* least squares and Tikhonov by conjugate gradients (Hestenes & Stiefel 1952;
  :func:`diffcourse._linalg.cg`, re-exported here as ``cg``);
* ADMM for min_x 1/2 ||A x - y||^2 + lam ||D x||_1 (Boyd et al. 2011, sec. 6.4): TV (D = gradient),
  TV along z for volumes (DiffusionMBIR, Chung et al. CVPR 2023), sparsity (D = I);
* plug-and-play ADMM (Venkatakrishnan et al. 2013), plug-and-play half-quadratic splitting with a
  decreasing denoiser level (DPIR, Zhang et al., IEEE TPAMI 2022) and RED (Romano, Elad, Milanfar 2017)
  with any denoiser D(x, sigma);
* quantized compressed sensing: binary iterative hard thresholding for 1-bit data (BIHT, Jacques,
  Laska, Boufounos & Baraniuk, IEEE Trans. Inf. Theory 2013) and its multi-bit, quantization-
  consistent counterpart, sparse in an orthonormal transform W (e.g. the Haar wavelet of
  :mod:`diffcourse.posterior.wavelet`).

Iteration counts are ``n_iter`` (outer iterations) and ``n_iter_cg`` (CG steps per x-update).
:class:`~diffcourse.physics.volume.SliceWise` (a 2-D operator on every slice of a volume) lives in
``physics`` and is re-exported here.
"""
from __future__ import annotations

import math

import torch

from .._linalg import cg
from .._validate import check_finite, check_int, check_nonnegative, check_op, check_positive, check_tensor
from ..physics.volume import SliceWise
from .tv import diff_z, diff_z_T, grad_2d, grad_2d_T, group_shrink, soft_threshold

__all__ = ["cg", "least_squares", "tikhonov", "admm_step", "admm_l1", "admm_tv", "SliceWise", "admm_tv_z",
           "pnp_admm", "dpir_sigmas", "pnp_hqs", "red", "hard_threshold", "biht", "qiht"]


def least_squares(op, y: torch.Tensor, *, x0: torch.Tensor | None = None, n_iter: int = 100,
                  tol: float = 1e-6) -> torch.Tensor:
    """argmin_x ||A x - y||^2 by CG on the normal equations A^T A x = A^T y (minimum norm from x0 = 0).

    >>> class Op:  # keep the first two of three entries
    ...     A = staticmethod(lambda x: x[:, :2]); AT = staticmethod(lambda y: torch.cat([y, 0 * y[:, :1]], 1))
    >>> least_squares(Op(), torch.tensor([[1., 2.]]))
    tensor([[1., 2., 0.]])
    """
    check_op(op)
    check_tensor(y, "y", complex_ok=True)
    return cg(lambda v: op.AT(op.A(v)), op.AT(y), x0, n_iter=n_iter, tol=tol)


def tikhonov(op, y: torch.Tensor, lam: float, *, x0: torch.Tensor | None = None, n_iter: int = 100,
             tol: float = 1e-6) -> torch.Tensor:
    """argmin_x 1/2 ||A x - y||^2 + lam/2 ||x||^2, i.e. (A^T A + lam I) x = A^T y, by CG (Tikhonov 1963).

    >>> class Op:
    ...     A = staticmethod(lambda x: x); AT = staticmethod(lambda y: y)
    >>> tikhonov(Op(), torch.tensor([[2.]]), lam=1.0)
    tensor([[1.]])
    """
    check_op(op)
    check_tensor(y, "y", complex_ok=True)
    lam = check_nonnegative(lam, "lam")
    return cg(lambda v: op.AT(op.A(v)) + lam * v, op.AT(y), x0, n_iter=n_iter, tol=tol)


def admm_step(op, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor, u: torch.Tensor, *, lam: float,
              rho: float, D=grad_2d, DT=grad_2d_T, isotropic: bool = True, n_iter_cg: int = 5):
    """One scaled ADMM iteration for min_x 1/2 ||A x - y||^2 + lam ||D x||_1, split z = D x
    (Boyd et al. 2011, eqs. 3.5-3.7); returns the new (x, z, u).

        x <- (A^T A + rho D^T D)^{-1} (A^T y + rho D^T (z - u))   (CG, ``n_iter_cg`` steps from x)
        z <- shrink_{lam / rho}(D x + u)                          (group shrink if ``isotropic``)
        u <- u + D x - z

    Here ``D`` is the sparsifying transform (finite differences for TV), not a denoiser: it maps x to
    its K components stacked on dim 1; the isotropic shrink groups them (TV's per-pixel gradient
    norm), otherwise each entry is soft-thresholded.
    """
    lam, rho = check_nonnegative(lam, "lam"), check_positive(rho, "rho")
    normal = lambda v: op.AT(op.A(v)) + rho * DT(D(v))
    x = cg(normal, op.AT(y) + rho * DT(z - u), x0=x, n_iter=n_iter_cg, tol=0.0)
    Dx = D(x)
    z = group_shrink(Dx + u, lam / rho, dim=1) if isotropic else soft_threshold(Dx + u, lam / rho)
    return x, z, u + Dx - z


def _components(x: torch.Tensor) -> torch.Tensor:
    """x itself as a single component on dim 1 (the sparsity transform D = I)."""
    return x.unsqueeze(1)


def _components_T(p: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`_components`."""
    return p[:, 0]


def admm_l1(op, y: torch.Tensor, lam: float, rho: float, n_iter: int = 100, *, D=_components,
            DT=_components_T, isotropic: bool = False, x0: torch.Tensor | None = None,
            n_iter_cg: int = 5) -> torch.Tensor:
    """argmin_x 1/2 ||A x - y||^2 + lam ||D x||_1 by ADMM (Boyd et al. 2011, sec. 6.4); by default
    D = I, the sparsity (Lasso / Laplace-prior MAP) problem. Starts at x0 (default 0) with z = D x0,
    u = 0 and repeats :func:`admm_step` ``n_iter`` times; x has the shape of op.AT(y).

    >>> class Op:
    ...     A = staticmethod(lambda x: x); AT = staticmethod(lambda y: y)
    >>> admm_l1(Op(), torch.tensor([[3.0, -0.5]]), lam=1.0, rho=1.0, n_iter=50).round(decimals=6)  # soft threshold
    tensor([[2., 0.]])
    """
    check_op(op)
    check_tensor(y, "y", complex_ok=True)
    check_int(n_iter, "n_iter", 0)
    x = torch.zeros_like(op.AT(y)) if x0 is None else check_tensor(x0, "x0", complex_ok=True)
    z = D(x)
    u = torch.zeros_like(z)
    for _ in range(n_iter):
        x, z, u = admm_step(op, y, x, z, u, lam=lam, rho=rho, D=D, DT=DT, isotropic=isotropic,
                            n_iter_cg=n_iter_cg)
    return check_finite(x, "ADMM", "check that op.AT is the adjoint of op.A and that y is finite")


def admm_tv(op, y: torch.Tensor, lam: float, rho: float, n_iter: int = 100, *, isotropic: bool = True,
            x0: torch.Tensor | None = None, n_iter_cg: int = 5) -> torch.Tensor:
    """ADMM-TV: argmin_x 1/2 ||A x - y||^2 + lam TV(x) for images (B, C, H, W) (Rudin et al. 1992;
    Boyd et al. 2011, §6.4.1). The x-update is warm-started CG; see :func:`admm_step`.

    >>> class Op:
    ...     A = staticmethod(lambda x: x); AT = staticmethod(lambda y: y)
    >>> from diffcourse.posterior.tv import tv
    >>> y = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> x = admm_tv(Op(), y, lam=0.1, rho=1.0, n_iter=20)
    >>> bool(tv(x) < tv(y))
    True
    """
    return admm_l1(op, y, lam, rho, n_iter, D=grad_2d, DT=grad_2d_T, isotropic=isotropic, x0=x0,
                   n_iter_cg=n_iter_cg)


def admm_tv_z(op, y: torch.Tensor, depth: int, lam: float, rho: float, n_iter: int = 100, *,
              x0: torch.Tensor | None = None, n_iter_cg: int = 5) -> torch.Tensor:
    """argmin_x 1/2 ||A x - y||^2 + lam ||D_z x||_1 for volumes (B, C, D, H, W) (DiffusionMBIR, Chung
    et al. CVPR 2023, eq. 11): ``op`` acts slice by slice on (B*D, C, H, W) and
    y (B*D, ...) holds its measurements, slice index fastest; only the difference along z couples
    the slices.

    D_z has a Neumann boundary (no difference between the last and the first slice); the official
    DiffusionMBIR code uses a circular one. Its "fast" variant (one ADMM iteration with one CG step
    per diffusion step, z and u kept across steps) is ``admm_step(SliceWise(op, depth), y_vol, x, z,
    u, lam=lam, rho=rho, D=diff_z, DT=diff_z_T, isotropic=False, n_iter_cg=1)`` with the measurements
    as (B, D, ...), ``y_vol = y.reshape(-1, depth, *y.shape[1:])``.
    """
    check_tensor(y, "y", complex_ok=True)
    depth = check_int(depth, "depth")
    if y.ndim < 1 or y.shape[0] % depth:
        raise ValueError(f"y must stack B * {depth} slices' measurements along dim 0, got {y.shape[0]}")
    y_vol = y.reshape(-1, depth, *y.shape[1:])  # (B*D, ...) -> (B, D, ...)
    return admm_l1(SliceWise(op, depth), y_vol, lam, rho, n_iter, D=diff_z, DT=diff_z_T, x0=x0,
                   n_iter_cg=n_iter_cg)


def pnp_admm(op, y: torch.Tensor, D, rho: float, n_iter: int = 50, *, sigma=None,
             x0: torch.Tensor | None = None, n_iter_cg: int = 10) -> torch.Tensor:
    """Plug-and-play ADMM (Venkatakrishnan et al. 2013) with a denoiser D(x, sigma):

        x <- argmin 1/2 ||A x - y||^2 + rho/2 ||x - (v - u)||^2   (CG, ``n_iter_cg`` steps, warm-started)
        v <- D(x + u, sigma)
        u <- u + x - v

    If D is the proximal map of g / rho, this is ADMM for 1/2 ||A x - y||^2 + g(x); an MMSE/MAP
    denoiser at noise level sigma plays prox of sigma^2 (-log p), hence the default sigma = 1/sqrt(rho).
    Returns x; x (B, ...) has the shape of op.AT(y).

    >>> class Op:
    ...     A = staticmethod(lambda x: x); AT = staticmethod(lambda y: y)
    >>> D = lambda x, sigma: x / (1 + sigma ** 2)        # prox of sigma^2/2 ||x||^2 (a Gaussian prior)
    >>> pnp_admm(Op(), torch.tensor([[2.0]]), D, rho=1.0, n_iter=100)   # = tikhonov(lam=1)
    tensor([[1.]])
    """
    check_op(op)
    check_tensor(y, "y", complex_ok=True)
    check_int(n_iter, "n_iter", 0)
    rho = check_positive(rho, "rho")
    sigma = 1 / math.sqrt(rho) if sigma is None else sigma
    ATy = op.AT(y)
    x = torch.zeros_like(ATy) if x0 is None else check_tensor(x0, "x0", complex_ok=True)
    v, u = x.clone(), torch.zeros_like(x)
    normal = lambda w: op.AT(op.A(w)) + rho * w
    for _ in range(n_iter):
        x = cg(normal, ATy + rho * (v - u), x0=x, n_iter=n_iter_cg, tol=0.0)
        v = D(x + u, sigma)
        u = u + x - v
    return check_finite(x, "pnp_admm", "increase rho or check the denoiser's output range")


def dpir_sigmas(n: int, sigma_min: float, sigma_max: float = 49 / 255) -> torch.Tensor:
    """The denoiser levels of DPIR (Zhang et al., IEEE TPAMI 2022, sec. 4.2): ``n`` levels spaced
    uniformly in log from ``sigma_max`` (their 49/255 for images in [0, 1]) down to ``sigma_min`` (their
    noise level of the image; for measurements in another domain, e.g. a sinogram, a level to tune).

    >>> [round(s, 4) for s in dpir_sigmas(3, 0.01, 1.0).tolist()]
    [1.0, 0.1, 0.01]
    """
    check_int(n, "n", 1)
    sigma_min, sigma_max = check_positive(sigma_min, "sigma_min"), check_positive(sigma_max, "sigma_max")
    if sigma_min > sigma_max:
        raise ValueError(f"sigma_min must be <= sigma_max, got {sigma_min} > {sigma_max}")
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n, dtype=torch.float64)


def pnp_hqs(op, y: torch.Tensor, D, sigmas, *, sigma_y: float, lam: float = 0.23,
            x0: torch.Tensor | None = None, n_iter_cg: int = 10) -> torch.Tensor:
    """Plug-and-play half-quadratic splitting with a decreasing denoiser level: DPIR (Zhang, Li, Zuo,
    Zhang, Van Gool & Timofte, IEEE TPAMI 2022, eqs. 6-7), one iteration per level sigma_k of ``sigmas``:

        x_k = argmin ||A x - y||^2 + alpha_k ||x - z_{k-1}||^2,   alpha_k = lam sigma_y^2 / sigma_k^2   (CG)
        z_k = D(x_k, sigma_k)

    HQS for 1/(2 sigma_y^2) ||A x - y||^2 + (1/lam) R(x), with the penalty alpha_k growing as sigma_k falls:
    an MMSE denoiser at sigma_k plays the prox of sigma_k^2 R / lam (their lam = 0.23; the levels: see
    :func:`dpir_sigmas`). Unlike PnP-ADMM at one fixed level, the early large levels pull the estimate
    toward the prior's coarse structure and the late small ones restore detail, much as a diffusion
    sampler's levels do, but without fresh noise. Starts from z_0 = x0 (default 0); returns z_K, the last
    denoised image, of the shape of op.AT(y). One network evaluation per level.

    >>> class Op:
    ...     A = staticmethod(lambda x: x); AT = staticmethod(lambda y: y)
    >>> D = lambda x, sigma: x / (1 + sigma ** 2)       # MMSE denoiser of the prior N(0, I)
    >>> x = pnp_hqs(Op(), torch.tensor([[2.0]]), D, [0.5, 0.1], sigma_y=0.1, lam=1.0)
    >>> round(x.item(), 4)     # x_1 = (2 + 0.04 * 0) / 1.04, z_1 = x_1 / 1.25; x_2 = (2 + z_1) / 2, z_2 = x_2 / 1.01
    1.7517
    """
    check_op(op)
    check_tensor(y, "y", complex_ok=True)
    check_int(n_iter_cg, "n_iter_cg", 0)
    sigma_y, lam = check_positive(sigma_y, "sigma_y"), check_positive(lam, "lam")
    levels = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
    if not levels or min(levels) <= 0 or not all(math.isfinite(s) for s in levels):
        raise ValueError(f"sigmas must be a non-empty sequence of positive finite levels, got {levels}")
    ATy = op.AT(y)
    z = torch.zeros_like(ATy) if x0 is None else check_tensor(x0, "x0", complex_ok=True)
    x = z
    for s in levels:
        alpha = lam * sigma_y ** 2 / s ** 2
        x = cg(lambda w: op.AT(op.A(w)) + alpha * w, ATy + alpha * z, x0=x, n_iter=n_iter_cg, tol=0.0)
        z = D(x, s)
    return check_finite(z, "pnp_hqs", "raise sigma_min or lam, or check the denoiser's output range")


def red(op, y: torch.Tensor, D, tau: float, step: float, n_iter: int = 100, *, sigma,
        x0: torch.Tensor | None = None) -> torch.Tensor:
    """Regularisation by denoising, steepest descent (Romano, Elad, Milanfar 2017, eq. 38):

        x <- x - step [A^T (A x - y) + tau (x - D(x, sigma))]

    the gradient of 1/2 ||A x - y||^2 + tau/2 x^T (x - D(x)) when the denoiser D is locally
    homogeneous with a symmetric Jacobian. Converges for step < 2 / (||A||^2 + tau ||I - dD/dx||).
    x has the shape of op.AT(y); starts at x0 (default 0); ``n_iter`` steps.
    """
    check_op(op)
    check_tensor(y, "y", complex_ok=True)
    check_int(n_iter, "n_iter", 0)
    tau, step = check_nonnegative(tau, "tau"), check_positive(step, "step")
    x = torch.zeros_like(op.AT(y)) if x0 is None else check_tensor(x0, "x0", complex_ok=True)
    for _ in range(n_iter):
        x = x - step * (op.AT(op.A(x) - y) + tau * (x - D(x, sigma)))
    return check_finite(x, "red", "reduce step (or tau)")


def hard_threshold(c: torch.Tensor, k: int) -> torch.Tensor:
    """H_k: keep the k entries of largest modulus of each sample, zero the rest (Blumensath & Davies 2009).

    >>> hard_threshold(torch.tensor([[3.0, -5.0, 1.0], [0.5, 0.1, -0.2]]), 1)
    tensor([[ 0.0000, -5.0000,  0.0000],
            [ 0.5000,  0.0000,  0.0000]])
    """
    flat = c.flatten(1)                                             # (B, n)
    k = check_int(k, "k")
    if k > flat.shape[1]:
        raise ValueError(f"k must be <= the number of coefficients {flat.shape[1]}, got {k}")
    idx = flat.abs().topk(k, dim=1).indices
    return torch.zeros_like(flat).scatter(1, idx, flat.gather(1, idx)).reshape(c.shape)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def biht(op, y: torch.Tensor, k: int, n_iter: int = 100, *, W=_identity, WT=_identity) -> torch.Tensor:
    """Binary iterative hard thresholding (Jacques, Laska, Boufounos & Baraniuk, IEEE Trans. Inf. Theory
    2013, Alg. 1) for 1-bit data y = sign(A x) ∈ {-1, +1}, k-sparse in the orthonormal transform W:

        x <- WT(H_k(W(x + 1/2 A^T (y - sign(A x)))))   from x = 0,   then x / ||x||

    A^T(y - sign(A x))/2 is minus a subgradient of the one-sided l1 sign misfit sum_m [-y_m a_m^T x]_+.
    1-bit data carry no scale (sign(A x) = sign(A 2x)), so the estimate is returned with unit norm per
    sample; the paper's step τ is left out because from x = 0 it only scales every iterate. ``W`` and
    ``WT``: an orthonormal transform and its inverse (default identity). y (B, M) -> x like op.AT(y).

    >>> class Op:
    ...     A = staticmethod(lambda x: x); AT = staticmethod(lambda y: y)
    >>> biht(Op(), torch.tensor([[1.0, -1.0, 1.0]]), k=3, n_iter=5)   # identity: x ∝ y
    tensor([[ 0.5774, -0.5774,  0.5774]])
    """
    check_op(op)
    check_tensor(y, "y")
    if not bool((y.abs() == 1).all()):
        raise ValueError("y must hold signs -1 or +1 (for bin indices k of Quantizer.sign(): y = 2 k - 1)")
    check_int(n_iter, "n_iter", 0)
    x = torch.zeros_like(op.AT(y))
    for _ in range(n_iter):
        x = WT(hard_threshold(W(x + op.AT(y - torch.sign(op.A(x))) / 2), k))
    norm = x.flatten(1).norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
    return x / norm.reshape(-1, *([1] * (x.ndim - 1)))


def qiht(op, l: torch.Tensor, u: torch.Tensor, k: int, n_iter: int = 100, *, step: float = 1.0, W=_identity,
         WT=_identity, x0: torch.Tensor | None = None) -> torch.Tensor:
    """Quantization-consistent iterative hard thresholding for multi-bit data, y_m = the bin [l_m, u_m)
    holding a_m^T x: projected gradient descent (Blumensath & Davies 2009) on the distance of A x to the
    bins, 1/2 ||A x - Π(A x)||², with Π the clamp into [l, u], under k-sparsity in W:

        x <- WT(H_k(W(x + step A^T (Π(A x) - A x))))

    With the half-lines [0, ∞) and (-∞, 0) as bins this is the l2 variant of BIHT (Jacques et al.
    2013), which 0 already satisfies: only several thresholds (or a known norm) fix the scale.
    ``step`` <= 1/||A||² (1 when A A^T = I); bounds may be infinite; starts at x0 (default 0).
    """
    check_op(op)
    check_tensor(l, "l")
    check_tensor(u, "u")
    check_int(n_iter, "n_iter", 0)
    step = check_positive(step, "step")
    x = torch.zeros_like(op.AT(torch.zeros_like(l))) if x0 is None else check_tensor(x0, "x0")
    for _ in range(n_iter):
        z = op.A(x)
        x = WT(hard_threshold(W(x + step * op.AT(torch.minimum(torch.maximum(z, l), u) - z)), k))
    return check_finite(x, "qiht", "reduce step (<= 1/||A||^2)")
