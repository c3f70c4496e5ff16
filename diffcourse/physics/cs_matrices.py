"""Sensing matrices for quantized compressed sensing: row-orthogonal, ill-conditioned and correlated.

QCS-SGM's pseudo-likelihood is exact (under its flat-prior approximation) when A Aᵀ is diagonal
(Meng & Kabashima, ICLR 2023); QCS-SGM+ was built for the matrices where it is not, an
ill-conditioned A = U diag(s) Vᵀ with geometric singular values and a correlated A = R_L H R_R
(Meng & Kabashima, AAAI 2024, Sec. 5). Each factory draws its matrix in float64 from ``generator``
and returns a :class:`~diffcourse.physics.matrix.Matrix` acting on (B, n) vectors.

>>> op = ill_conditioned(16, 8, cond=100.0, generator=torch.Generator().manual_seed(0))
>>> s = op.svd().s
>>> round(float(s.max() / s.min()), 6), round(float((op.matrix ** 2).sum()), 6)   # κ and ||A||_F² = n
(100.0, 16.0)
"""
from __future__ import annotations

import math

import torch

from .._validate import check_int, check_positive
from .matrix import Matrix

__all__ = ["haar_orthogonal", "kms", "row_orthogonal", "ill_conditioned", "correlated"]

_F64 = torch.float64


def haar_orthogonal(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A Haar-distributed orthogonal (n, n) matrix, float64: QR of a Gaussian matrix with the signs
    of R's diagonal moved into Q (Mezzadri, Notices AMS 2007, Sec. 5).

    >>> Q = haar_orthogonal(4, torch.Generator().manual_seed(0))
    >>> torch.allclose(Q @ Q.T, torch.eye(4, dtype=torch.float64))
    True
    """
    n = check_int(n, "n")
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=_F64))
    return Q * torch.sign(torch.diagonal(R))[None, :]


def kms(n: int, rho: float) -> torch.Tensor:
    """The Kac-Murdock-Szegő correlation matrix R_ij = ρ^|i-j| (n, n), float64, 0 <= ρ < 1."""
    n = check_int(n, "n")
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0 <= rho < 1:
        raise ValueError(f"rho must be a number in [0, 1), got {rho!r}")
    i = torch.arange(n, dtype=_F64)
    return float(rho) ** (i[:, None] - i[None, :]).abs()


def _sqrtm(R: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    lam, Q = torch.linalg.eigh(R)
    return (Q * lam.clamp_min(0).sqrt()) @ Q.T


def _sizes(n, m):
    n, m = check_int(n, "n"), check_int(m, "m")
    return n, m


def row_orthogonal(n: int, m: int, *, scale: float = 1.0, generator: torch.Generator | None = None,
                   dtype=_F64) -> Matrix:
    """A = c Pᵀ Q: m rows of a Haar orthogonal (n, n) matrix times ``scale`` c, so A Aᵀ = c² I (m <= n):
    the setting in which QCS-SGM's factorised likelihood is exact (Meng & Kabashima, ICLR 2023, Sec. 3).

    >>> A = row_orthogonal(6, 3, scale=2.0, generator=torch.Generator().manual_seed(0)).matrix
    >>> torch.allclose(A @ A.T, 4 * torch.eye(3, dtype=torch.float64))
    True
    """
    n, m = _sizes(n, m)
    if m > n:
        raise ValueError(f"m must be <= n for orthonormal rows, got m={m}, n={n}")
    return Matrix((check_positive(scale, "scale") * haar_orthogonal(n, generator)[:m]).to(dtype))


def ill_conditioned(n: int, m: int, cond: float = 1e3, *, generator: torch.Generator | None = None,
                    dtype=_F64) -> Matrix:
    """Ill-conditioned A = U diag(s) Vᵀ (QCS-SGM+, Meng & Kabashima, AAAI 2024, Sec. 5), (m, n).

    U (m, m) and V (n, k), k = min(m, n), Haar orthonormal; singular values geometric,
    s_i ∝ cond^(-i/(k-1)), i = 0..k-1, so that s_max/s_min = ``cond`` exactly, scaled to
    ||A||_F² = Σ s_i² = n (the expected squared norm of an i.i.d. N(0, 1/m) matrix). The official
    code (runners/ncsn_runner.py) sets s_i² ∝ κ^(-i/m) instead: its κ is about the condition
    number of A Aᵀ, i.e. κ ≈ ``cond``².
    """
    n, m = _sizes(n, m)
    cond = check_positive(cond, "cond")
    if cond < 1:
        raise ValueError(f"cond must be >= 1 (s_max / s_min), got {cond}")
    k = min(m, n)
    s = cond ** (-torch.arange(k, dtype=_F64) / max(k - 1, 1))
    s = s * math.sqrt(n / float((s ** 2).sum()))
    U, V = haar_orthogonal(m, generator), haar_orthogonal(n, generator)[:, :k]
    return Matrix(((U[:, :k] * s) @ V.T).to(dtype))


def correlated(n: int, m: int, rho: float = 0.4, *, generator: torch.Generator | None = None,
               dtype=_F64) -> Matrix:
    """Correlated A = R_L^½ H R_R^½ / √m (QCS-SGM+, Meng & Kabashima, AAAI 2024, Sec. 5), (m, n).

    H has i.i.d. N(0, 1) entries, R_L = [ρ^|i-j|] (m, m) and R_R = [ρ^|i-j|] (n, n) (:func:`kms`),
    so E[A_ij A_kl] = (R_L)_ik (R_R)_jl / m: neighbouring rows and neighbouring columns are
    correlated with coefficient ρ (ρ = 0: the i.i.d. Gaussian CS matrix). The square roots are
    the symmetric matrix square roots; the official code takes ``np.sqrt`` of R elementwise,
    which is the KMS matrix of √ρ, not R^½.
    """
    n, m = _sizes(n, m)
    H = torch.randn(m, n, generator=generator, dtype=_F64)
    return Matrix((_sqrtm(kms(m, rho)) @ H @ _sqrtm(kms(n, rho)) / math.sqrt(m)).to(dtype))
