"""Likelihood scores for quantized measurements y = Q(A x0 + n): QCS-SGM and QCS-SGM+ (EP).

Under the flat-prior approximation p(x0 | x_σ) ≈ N(x_σ, σ² I) (VE, x_σ = x0 + σ z) a noisy state
sees y through w = A x_σ + ñ, ñ ~ N(0, C_σ), C_σ = σ_y² I + σ² A Aᵀ, so

    p̃(y | x_σ) = P(w ∈ B_y),   B_y = Π_m [l_{y_m}, u_{y_m}),   ∇_x log p̃ = Aᵀ ∇_z log P,  z = A x_σ

(Meng & Kabashima, ICLR 2023, Thm. 1). Two ways to evaluate ∇_z log P:

* :func:`qcs` — QCS-SGM (ICLR 2023, Eq. 10-11): keeps only diag(A Aᵀ), so P factorises into
  Gaussian-CDF differences; exact for row-orthogonal A;
* :func:`qcs_ep` — QCS-SGM+ (Meng & Kabashima, AAAI 2024, Sec. 4): the box probability of the
  correlated Gaussian approximated by expectation propagation between a factorised quantizer
  module and a Gaussian module, with A Aᵀ = U diag(λ) Uᵀ eigendecomposed once per operator.

Every CDF difference is taken in log space (:func:`diffcourse.physics.noise.log_normal_interval`)
and every ratio φ/ΔΦ as the exponential of a difference of logs, so a measurement deep in a tail
gives its exact (large but finite) score where the official codes clamp the denominator.

>>> import torch
>>> from diffcourse.physics.likelihood import Likelihood
>>> from diffcourse.physics.matrix import Matrix
>>> from diffcourse.physics.noise import QuantizedNoise
>>> from diffcourse.physics.nonlinear import Quantizer
>>> lik = Likelihood(Matrix(torch.eye(2, dtype=torch.float64)), QuantizedNoise(Quantizer.sign(), 0.5),
...                  torch.tensor([[1, 0]]))
>>> g = qcs(torch.zeros(1, 2, dtype=torch.float64), 0.0, lik)   # φ(0)/(σ_y Φ(0)) = 1.596
>>> g.round(decimals=3)
tensor([[ 1.5960, -1.5960]], dtype=torch.float64)
>>> torch.allclose(qcs_ep(torch.zeros(1, 2, dtype=torch.float64), 0.0, lik), g)   # A Aᵀ = I: EP = QCS-SGM
True
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch

from .._validate import as_sigma, check_int, check_nonnegative, check_tensor
from ..physics.noise import QuantizedNoise, log_normal_interval

__all__ = ["qcs", "qcs_ep", "qcs_multibit_g", "qcs_onebit_g", "normal_interval_score",
           "truncated_normal_moments", "gram_eigh", "gram_diag", "ep_box_score", "QuantizedProblem",
           "quantized_problem", "qcs_score", "qcs_ep_score"]

_F64 = torch.float64
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# ------------------------------------------------------------------------------ scalar pieces
def _log_phi(a: torch.Tensor) -> torch.Tensor:
    """log φ(a), -inf at a = ±inf."""
    return -0.5 * a ** 2 - _LOG_SQRT_2PI


def normal_interval_score(a: torch.Tensor, b: torch.Tensor, log_p: torch.Tensor | None = None) -> torch.Tensor:
    """(φ(a) - φ(b)) / (Φ(b) - Φ(a)) for a < b (either may be infinite), elementwise.

    = d/dc log[Φ(b - c) - Φ(a - c)] at c = 0, the mean of N(0, 1) truncated to [a, b). Written as
    e^(log φ(r) - log ΔΦ) (1 - e^((r² - o²)/2)) around the bound r of smaller modulus (o the other),
    with ``expm1``, so neither narrow bins (cancellation) nor far tails (underflow) lose it.
    ``log_p``: log(Φ(b) - Φ(a)) when already computed.

    >>> normal_interval_score(torch.tensor([0.0]), torch.tensor([math.inf]))   # φ(0)/(1/2)
    tensor([0.7979])
    """
    log_p = log_normal_interval(a, b) if log_p is None else log_p
    a_ref = a.abs() <= b.abs()
    r, o = torch.where(a_ref, a, b), torch.where(a_ref, b, a)
    half = torch.where(torch.isinf(o), torch.full_like(o, -math.inf), (r - o) * (r + o) / 2)  # (r² - o²)/2 <= 0
    val = -torch.exp(_log_phi(r) - log_p) * torch.expm1(half)   # φ(r) - φ(o) over ΔΦ
    return torch.where(a_ref, val, -val)


def truncated_normal_moments(a: torch.Tensor, b: torch.Tensor):
    """(mean, variance) of N(0, 1) truncated to [a, b) (Johnson, Kotz & Balakrishnan 1994, Sec. 10.1):
    μ = (φ(a) - φ(b))/ΔΦ, v = 1 + (a φ(a) - b φ(b))/ΔΦ - μ².

    The variance is rounded into [0, 1] (a truncated standard normal has variance below 1).
    """
    log_p = log_normal_interval(a, b)
    mean = normal_interval_score(a, b, log_p)

    def t_phi(t):  # t φ(t)/ΔΦ, 0 at t = ±inf
        return torch.where(torch.isinf(t), torch.zeros_like(t), t * torch.exp(_log_phi(t) - log_p))
    var = 1 + t_phi(a) - t_phi(b) - mean ** 2
    return mean, var.clamp(0.0, 1.0)


def qcs_multibit_g(z: torch.Tensor, l: torch.Tensor, u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """QCS-SGM's g_m (Meng & Kabashima, ICLR 2023, Eq. 11), elementwise:

    g = [exp(-ũ²/2) - exp(-l̃²/2)] / [s ∫_l̃^ũ exp(-t²/2) dt],  ũ = (z - u)/s,  l̃ = (z - l)/s,

    i.e. ∂/∂z log[Φ((u - z)/s) - Φ((l - z)/s)], the score of the bin [l, u) of N(z, s²).

    >>> z = torch.tensor([0.3], dtype=torch.float64)
    >>> qcs_multibit_g(z, torch.tensor([-0.2]), torch.tensor([0.7]), torch.tensor([0.4])).item()
    -0.20158...
    """
    return normal_interval_score((l - z) / s, (u - z) / s) / s


def qcs_onebit_g(z: torch.Tensor, y: torch.Tensor, s: torch.Tensor, threshold=0.0) -> torch.Tensor:
    """QCS-SGM's 1-bit g_m (Meng & Kabashima, ICLR 2023, Eq. 12), y ∈ {-1, +1}, elementwise:

    g = φ(z̃)/s [(1 + y)/(2Φ(z̃)) - (1 - y)/(2(1 - Φ(z̃)))],  z̃ = (z - threshold)/s,

    computed as y e^(log φ(z̃) - log Φ(y z̃))/s (the inverse Mills ratio, finite in both tails).

    >>> qcs_onebit_g(torch.tensor([-10.0], dtype=torch.float64), torch.tensor([1.0]), torch.tensor([1.0])).item()
    10.098...
    """
    zt = (z - threshold) / s
    return y * torch.exp(_log_phi(zt) - torch.special.log_ndtr(y * zt)) / s


# ------------------------------------------------------------------------------ A Aᵀ, once per operator
_GRAM: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _gram(op, y_shape, device) -> torch.Tensor:
    """A Aᵀ as a dense (M, M) float64 matrix: from ``op.matrix`` when there is one, else A(Aᵀ e_i)."""
    matrix = getattr(op, "matrix", None)
    if isinstance(matrix, torch.Tensor) and matrix.ndim == 2:
        A = matrix.to(device=device, dtype=_F64)
        return A @ A.T
    M = math.prod(y_shape)
    E = torch.eye(M, dtype=_F64, device=device).reshape(M, *y_shape)  # (M, *y)
    with torch.no_grad():
        G = op.A(op.AT(E))
    G = G.real if G.is_complex() else G
    G = G.reshape(M, M).to(_F64)
    return 0.5 * (G + G.T)


def gram_eigh(op, y_shape, device=None):
    """(λ, U, diag): A Aᵀ = U diag(λ) Uᵀ and its diagonal ||a_m||², float64, computed once per operator
    and device and cached (QCS-SGM+, Meng & Kabashima, AAAI 2024: "the eigendecomposition of A Aᵀ
    is computed only once"). ``y_shape``: the shape of one measurement. An operator whose matrix
    is changed in place keeps its old cache entry: build a new operator instead.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (tuple(y_shape), str(device))
    cache = _GRAM.setdefault(op, {})
    if key not in cache:
        G = _gram(op, tuple(y_shape), device)
        lam, U = torch.linalg.eigh(G)
        cache[key] = (lam.clamp_min(0.0), U, torch.diagonal(G).clone())
    return cache[key]


def gram_diag(op, y_shape, device=None) -> torch.Tensor:
    """diag(A Aᵀ) = ||a_m||² (M,), float64, all QCS-SGM needs: the row norms of ``op.matrix`` (O(MN)) when
    there is one, else ||Aᵀ e_m||² by M adjoint applications (in chunks), cached per operator and
    device; no M x M matrix, no eigendecomposition."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    matrix = getattr(op, "matrix", None)
    if isinstance(matrix, torch.Tensor) and matrix.ndim == 2:
        return (matrix.to(device=device, dtype=_F64) ** 2).sum(1)
    cache = _GRAM.setdefault(op, {})
    key = ("diag", tuple(y_shape), str(device))
    if key not in cache:
        done = cache.get((tuple(y_shape), str(device)))
        cache[key] = done[2] if done else _row_norms(op, tuple(y_shape), device)
    return cache[key]


def _row_norms(op, y_shape, device, chunk: int = 256) -> torch.Tensor:
    """||Aᵀ e_m||² for every m, ``chunk`` measurements at a time (no M x M matrix)."""
    M = math.prod(y_shape)
    out = torch.empty(M, dtype=_F64, device=device)
    with torch.no_grad():
        for i in range(0, M, chunk):
            idx = torch.arange(i, min(i + chunk, M), device=device)
            E = torch.zeros(len(idx), M, dtype=_F64, device=device)
            E[torch.arange(len(idx), device=device), idx] = 1.0
            v = op.AT(E.reshape(len(idx), *y_shape)).flatten(1)
            out[idx] = (v.abs() ** 2).sum(1).to(_F64)
    return out


# ------------------------------------------------------------------------------ guidance
def _quantized(lik, x: torch.Tensor, name: str):
    """(op, quantizer, σ_y) of a linear operator with quantized noise, else TypeError naming the argument."""
    if not (callable(getattr(lik, "A", None)) and callable(getattr(lik, "y_for", None))):
        raise TypeError(f"lik must be a diffcourse.physics.likelihood.Likelihood, got {type(lik).__name__}")
    if not callable(getattr(lik.op, "AT", None)):
        raise TypeError(f"{name} needs a linear operator with AT (lik.op), got {type(lik.op).__name__}")
    if not isinstance(lik.noise, QuantizedNoise):
        raise TypeError(f"{name} needs quantized measurements: lik.noise must be a QuantizedNoise, got "
                        f"{type(lik.noise).__name__}")
    check_tensor(x, "x")
    return lik.op, lik.noise.quantizer, lik.noise.sigma_y


@dataclass(frozen=True)
class QuantizedProblem:
    """What the quantized scores need, computed once per solver run: the operator, the bins
    [l, u) of y and its signs (1-bit), σ_y, diag(A Aᵀ) and, for EP, A Aᵀ = U diag(lam) Uᵀ (float64;
    lam and U are None when the problem was gathered with ``spectrum=False``)."""

    op: object
    y_shape: tuple
    l: torch.Tensor
    u: torch.Tensor
    sign: torch.Tensor | None
    threshold: torch.Tensor | None
    sigma_y: float
    lam: torch.Tensor | None
    U: torch.Tensor | None
    diag: torch.Tensor

    def z(self, x: torch.Tensor) -> torch.Tensor:
        """A x as (B, M) float64."""
        return self.op.A(x).flatten(1).to(_F64)

    def AT(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Aᵀ g for g (B, M), shaped like x (its real part for a real x)."""
        out = self.op.AT(g.to(x.dtype).reshape(g.shape[0], *self.y_shape))
        return out.real if out.is_complex() and not x.is_complex() else out


def quantized_problem(lik, x: torch.Tensor, name: str = "qcs", *, spectrum: bool = True) -> QuantizedProblem:
    """Check ``lik`` (a linear operator with :class:`~diffcourse.physics.noise.QuantizedNoise`) against
    an example state ``x`` and gather a :class:`QuantizedProblem`; errors name the argument.
    ``spectrum=False``: only diag(A Aᵀ) (QCS-SGM), not the O(M³) eigendecomposition EP needs."""
    op, quant, sigma_y = _quantized(lik, x, name)
    if lik.y.is_floating_point() or lik.y.is_complex() or lik.y.dtype == torch.bool:
        raise TypeError(f"lik.y must hold integer bin indices (as QuantizedNoise.sample returns), got {lik.y.dtype}")
    with torch.no_grad():
        Ax = op.A(x)
    k = lik.y_for(Ax)                                                  # ValueError naming y on a shape mismatch
    l, u = quant.bounds(k, dtype=_F64)
    if spectrum:
        lam, U, diag = gram_eigh(op, Ax.shape[1:], Ax.device)
    else:
        lam, U, diag = None, None, gram_diag(op, Ax.shape[1:], Ax.device)
    two = quant.n_bins == 2
    return QuantizedProblem(op, tuple(Ax.shape[1:]), l.flatten(1).to(Ax.device), u.flatten(1).to(Ax.device),
                            (2 * k.flatten(1) - 1).to(_F64) if two else None,
                            quant.thresholds[0].to(device=Ax.device, dtype=_F64) if two else None,
                            sigma_y, lam, U, diag)


def qcs_score(prob: QuantizedProblem, x: torch.Tensor, sigma) -> torch.Tensor:
    """:func:`qcs` on a prepared problem (no checks, no host synchronisation)."""
    z = prob.z(x)
    s2 = as_sigma(sigma, z, "sigma").to(_F64) ** 2                   # (B, 1)
    s = (prob.sigma_y ** 2 + s2 * prob.diag).sqrt()                    # (B, M)
    if prob.sign is not None:
        g = qcs_onebit_g(z, prob.sign, s, prob.threshold)
    else:
        g = qcs_multibit_g(z, prob.l, prob.u, s)
    return prob.AT(g, x)


def qcs(x: torch.Tensor, sigma, lik) -> torch.Tensor:
    """QCS-SGM pseudo-likelihood score ∇_x log p̃(y | x_σ) = Aᵀ G (Meng & Kabashima, ICLR 2023, Eq. 10-12).

    g_m = ∂/∂z_m log[Φ((u_m - z_m)/s_m) - Φ((l_m - z_m)/s_m)], z = A x, s_m² = σ_y² + σ² ||a_m||²,
    [l_m, u_m) the bin of y_m: the 1-bit form (:func:`qcs_onebit_g`) for a quantizer with two
    bins, the multi-bit form (:func:`qcs_multibit_g`) otherwise. Exact under the flat prior when
    A Aᵀ is diagonal; for other A it ignores the correlations of A x_σ's noise. ``lik``: a
    Likelihood with a linear operator and :class:`~diffcourse.physics.noise.QuantizedNoise`;
    ``sigma`` a number or (B,); x (B, ...) -> (B, ...). σ = 0 gives ∇_x log p(y | x) itself.
    """
    return qcs_score(quantized_problem(lik, x, "qcs", spectrum=False), x, sigma)


def _damp(new, old, damping):
    return new if old is None else (1 - damping) * new + damping * old


def ep_box_score(z, l, u, prec, U, *, n_iter: int = 10, damping: float = 0.02, tol: float = 0.0):
    """EP estimate of ∇_z log P(z + ñ ∈ [l, u)), ñ ~ N(0, C), C⁻¹ = U diag(prec) Uᵀ (Meng & Kabashima,
    AAAI 2024, Alg. 1, scalar-variance EP; Minka, UAI 2001; Opper & Winther, JMLR 2005). (B, M) in float64.

    Messages into the factorised module, N(ñ; h_F/λ_F, 1/λ_F), and into the Gaussian module,
    exp(h_G ñ - λ_G ñ²/2), with one variance λ per sample (the average over m):
    factor module: tilted moments m_F, χ_F = mean(var) of the cavity truncated to the bins;
    h_G = m_F/χ_F - h_F, λ_G = 1/χ_F - λ_F; Gaussian module: m_G = U diag(1/(λ_G + prec)) Uᵀ h_G,
    χ_G = mean(1/(λ_G + prec)); h_F = m_G/χ_G - h_G, λ_F = 1/χ_G - λ_G. Each message is damped,
    new ← (1 - ``damping``) new + ``damping`` old. Start: no message from the factors (h_G = λ_G = 0),
    i.e. the cavity N(0, mean(1/prec)); ``n_iter`` = 0 is then QCS-SGM with the average variance.
    Returns g_m = ∂/∂z_m log ∫ 1[z_m + v ∈ [l_m, u_m)] N(v; h_F/λ_F, 1/λ_F) dv at the last messages
    (the EP log-partition is stationary in the messages at a fixed point). ``tol`` > 0 stops when
    every sample's messages change by less (a host synchronisation per iteration).
    """
    hF = torch.zeros_like(z)
    lamF = 1 / (1 / prec).mean(1, keepdim=True)                        # (B, 1)
    hG = lamG = None
    for _ in range(n_iter):
        sd = lamF.rsqrt()
        mu = hF / lamF
        mean, var = truncated_normal_moments((l - z - mu) / sd, (u - z - mu) / sd)
        mF = mu + sd * mean
        chiF = (var / lamF).mean(1, keepdim=True).clamp_min(torch.finfo(_F64).tiny)
        hG = _damp(mF / chiF - hF, hG, damping)
        lamG = _damp((1 / chiF - lamF).clamp_min(0.0), lamG, damping)
        w = 1 / (lamG + prec)                                          # (B, M) eigenvalues of the posterior covariance
        mG = ((hG @ U) * w) @ U.T
        chiG = w.mean(1, keepdim=True)
        hF_new, lamF_new = _damp(mG / chiG - hG, hF, damping), _damp(1 / chiG - lamG, lamF, damping)
        done = tol > 0 and bool((hF_new - hF).abs().amax() + (lamF_new - lamF).abs().amax() < tol)
        hF, lamF = hF_new, lamF_new
        if done:
            break
    sd = lamF.rsqrt()
    mu = hF / lamF
    return normal_interval_score((l - z - mu) / sd, (u - z - mu) / sd) / sd


def qcs_ep(x: torch.Tensor, sigma, lik, *, n_iter: int = 10, damping: float = 0.02) -> torch.Tensor:
    """QCS-SGM+ likelihood score Aᵀ g by expectation propagation (Meng & Kabashima, AAAI 2024, Sec. 4):
    p̃(y | x_σ) = P(A x_σ + ñ ∈ B_y), ñ ~ N(0, σ_y² I + σ² A Aᵀ), for any (ill-conditioned, correlated) A.

    With A Aᵀ = U diag(λ) Uᵀ (eigendecomposed once per operator, :func:`gram_eigh`) the noise
    precision is U diag(1/(σ_y² + σ²λ)) Uᵀ and :func:`ep_box_score` runs ``n_iter`` damped EP
    iterations per sample. When A Aᵀ = c I the EP fixed point is QCS-SGM's closed form (:func:`qcs`)
    exactly. Defaults: damping 0.02 as in the official code (which stops after 3 iterations inside
    Langevin, from a cruder start); 10 iterations reach the fixed point on the course's problems.
    x (B, ...) -> (B, ...); ``sigma`` a number or (B,).
    """
    n_iter = check_int(n_iter, "n_iter", 0)
    damping = check_nonnegative(damping, "damping")
    if damping >= 1:
        raise ValueError(f"damping must be in [0, 1), got {damping}")
    return qcs_ep_score(quantized_problem(lik, x, "qcs_ep"), x, sigma, n_iter=n_iter, damping=damping)


def qcs_ep_score(prob: QuantizedProblem, x: torch.Tensor, sigma, *, n_iter: int = 10,
                 damping: float = 0.02) -> torch.Tensor:
    """:func:`qcs_ep` on a prepared problem (no checks, no host synchronisation)."""
    z = prob.z(x)
    s2 = as_sigma(sigma, z, "sigma").to(_F64) ** 2                   # (B, 1)
    prec = 1 / (prob.sigma_y ** 2 + s2 * prob.lam)                     # (B, M) eigenvalues of C⁻¹
    return prob.AT(ep_box_score(z, prob.l, prob.u, prec, prob.U, n_iter=n_iter, damping=damping), x)
