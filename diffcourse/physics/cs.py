"""Compressed-sensing matrices ``y = A vec(x)``: dense Gaussian, subsampled DCT and Hadamard.

Each acts on a batch of signals of a fixed shape (``in_shape``, e.g. (1, 28, 28)) and returns
(B, m) measurements. The subsampled orthonormal transforms are row-orthogonal, ``A A^T = I``, the
setting in which QCS-SGM's pseudo-likelihood is exact (Meng & Kabashima, ICLR 2023).
"""
from __future__ import annotations

import math

import torch

from .._validate import check_int, check_same_device, check_tensor
from .linear import SVD, LinearOperator

__all__ = ["GaussianCS", "SubsampledDCT", "SubsampledHadamard", "dct_matrix", "fwht"]


def _shape(n, name: str = "n") -> tuple[int, ...]:
    shape = (n,) if isinstance(n, int) and not isinstance(n, bool) else tuple(n)
    if not shape:
        raise ValueError(f"{name} must be an int or a non-empty shape tuple, got {n}")
    return tuple(check_int(s, name) for s in shape)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class _CSOperator(LinearOperator):
    """Shared shape checks: x is (B, *in_shape), y is (B, m)."""

    settings = ("in_shape", "m")

    def _init_shape(self, shape, m: int, name: str) -> None:
        self.in_shape = _shape(shape, name)
        self.n = math.prod(self.in_shape)
        self.m = check_int(m, "m")
        if self.m > self.n:
            raise ValueError(f"m must be <= the signal size {self.n}, got {self.m}")

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x")
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, self.in_shape))}), "
                             f"got {tuple(x.shape)}")
        return x.flatten(1)  # (B, n)

    def _meas(self, y: torch.Tensor) -> torch.Tensor:
        check_tensor(y, "y", ndim=2)
        if y.shape[1] != self.m:
            raise ValueError(f"y must have shape (B, {self.m}), got {tuple(y.shape)}")
        return y


class GaussianCS(_CSOperator):
    """Dense Gaussian sensing matrix ``A_ij ~ N(0, 1/m)`` (Candès & Tao 2006): (B, *shape) -> (B, m).

    ``n``: the signal size or shape. ``svd()`` is the exact (thin) SVD of the dense matrix.

    >>> op = GaussianCS((1, 4, 4), 8, torch.Generator().manual_seed(0))
    >>> op.A(torch.ones(2, 1, 4, 4)).shape
    torch.Size([2, 8])
    """

    def __init__(self, n, m: int, generator: torch.Generator | None = None):
        super().__init__()
        self._init_shape(n, m, "n")
        M = torch.randn((self.m, self.n), generator=generator) / math.sqrt(self.m)
        self.register_buffer("matrix", M)

    def A(self, x):
        x = self._flat(x)
        return x @ self._match(self.matrix, x).T

    def AT(self, y):
        y = self._meas(y)
        return (y @ self._match(self.matrix, y, "y")).reshape(-1, *self.in_shape)

    def svd(self, x=None):
        U, s, Vh = torch.linalg.svd(self.matrix, full_matrices=False)
        return SVD(lambda c: c @ U.T.to(c.dtype), lambda y: self._meas(y) @ U.to(y.dtype),
                   lambda c: (c @ Vh.to(c.dtype)).reshape(-1, *self.in_shape),
                   lambda x: self._flat(x) @ Vh.T.to(x.dtype), s)


def dct_matrix(n: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Orthonormal DCT-II matrix (n, n): ``C_kj = sqrt(2/n) cos(pi (2j+1) k / (2n))``, row 0 / sqrt 2."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(n, dtype=torch.float64)[None, :]
    C = math.sqrt(2.0 / n) * torch.cos(math.pi * (2 * j + 1) * k / (2 * n))
    C[0] /= math.sqrt(2.0)
    return C.to(dtype=dtype, device=device)


def _pick(n: int, m: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randperm(n, generator=generator)[:m].sort().values


class SubsampledDCT(_CSOperator):
    """``A = P C`` with C the orthonormal 2D DCT-II of each channel and P keeping m random rows.

    ``shape``: (H, W) or (C, H, W). Row-orthogonal: ``A A^T = I``, so ``s = 1`` and ``A^+ = A^T``.

    >>> op = SubsampledDCT((4, 4), 6, torch.Generator().manual_seed(0))
    >>> torch.allclose(op.A(op.AT(torch.eye(6))), torch.eye(6), atol=1e-6)
    True
    """

    def __init__(self, shape, m: int, generator: torch.Generator | None = None):
        super().__init__()
        self._init_shape(shape, m, "shape")
        if len(self.in_shape) < 2:
            raise ValueError(f"shape must be (H, W) or (C, H, W), got {shape}")
        self.register_buffer("rows", _pick(self.n, self.m, generator))

    def _dct(self, t: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The DCT matrices of the last two axes, made in ``t``'s dtype on its device."""
        check_same_device(self.rows, t, "the operator", name)
        H, W = self.in_shape[-2:]
        return dct_matrix(H, t.dtype, t.device), dct_matrix(W, t.dtype, t.device)

    def A(self, x):
        self._flat(x)
        CH, CW = self._dct(x, "x")
        return (CH @ x @ CW.T).flatten(1)[:, self.rows]

    def AT(self, y):
        y = self._meas(y)
        z = y.new_zeros(y.shape[0], self.n)
        z[:, self.rows] = y
        CH, CW = self._dct(y, "y")
        return CH.T @ z.reshape(-1, *self.in_shape) @ CW

    def svd(self, x=None):
        return SVD(_identity, _identity, self.AT, self.A, torch.ones(()))


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal fast Walsh-Hadamard transform of the last dim (a power of 2): its own inverse."""
    *lead, n = x.shape
    h = 1
    while h < n:
        x = x.reshape(*lead, n // (2 * h), 2, h)
        a, b = x[..., 0, :], x[..., 1, :]
        x = torch.stack((a + b, a - b), -2)
        h *= 2
    return x.reshape(*lead, n) / math.sqrt(n)


class SubsampledHadamard(_CSOperator):
    """``A = P H D``: random signs D, orthonormal Walsh-Hadamard H, m random rows P.

    ``shape``: any signal shape with a power-of-two size. Row-orthogonal, ``A A^T = I``.

    >>> SubsampledHadamard((1, 4, 4), 5, torch.Generator().manual_seed(0)).A(torch.ones(1, 1, 4, 4)).shape
    torch.Size([1, 5])
    """

    def __init__(self, shape, m: int, generator: torch.Generator | None = None):
        super().__init__()
        self._init_shape(shape, m, "shape")
        if self.n & (self.n - 1):
            raise ValueError(f"shape must have a power-of-two size, got {self.in_shape} "
                             f"(size {self.n})")
        signs = torch.randint(0, 2, (self.n,), generator=generator) * 2 - 1
        self.register_buffer("signs", signs.to(torch.get_default_dtype()))
        self.register_buffer("rows", _pick(self.n, self.m, generator))

    def A(self, x):
        x = self._flat(x)
        return fwht(x * self._match(self.signs, x))[:, self.rows]

    def AT(self, y):
        y = self._meas(y)
        z = y.new_zeros(y.shape[0], self.n)
        z[:, self.rows] = y
        return (fwht(z) * self._match(self.signs, y, "y")).reshape(-1, *self.in_shape)

    def svd(self, x=None):
        return SVD(_identity, _identity, self.AT, self.A, torch.ones(()))
