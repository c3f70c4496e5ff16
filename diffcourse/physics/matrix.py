"""A dense matrix as a linear operator on vectors: the toy testbed's forward model."""
from __future__ import annotations

import torch

from .._validate import check_tensor
from .linear import SVD, LinearOperator

__all__ = ["Matrix"]


class Matrix(LinearOperator):
    """``A x`` for a dense (m, n) matrix acting on (B, n) vectors, with its exact SVD.

    The Gaussian-mixture testbed (:class:`diffcourse.prior.toy.GaussianMixture`) works with such
    vectors, so every solver can be run where the exact posterior is known. ``svd()`` is the thin
    SVD A = U diag(s) Vᵀ (``torch.linalg.svd``), computed once in float64.

    >>> op = Matrix(torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
    >>> op.A(torch.ones(1, 2))
    tensor([[1., 2., 0.]])
    >>> op.pinv(op.A(torch.ones(1, 2)))
    tensor([[1., 1.]])
    """

    settings = ("matrix",)

    def __init__(self, A: torch.Tensor):
        super().__init__()
        check_tensor(A, "A", ndim=2)
        if not bool(torch.isfinite(A).all()):
            raise ValueError("A must be finite (no NaN or Inf)")
        self.register_buffer("matrix", A.clone())
        self.in_shape = (A.shape[1],)
        self._svd = None

    @property
    def shape(self) -> tuple[int, int]:
        """(m, n): measurements by unknowns."""
        return tuple(self.matrix.shape)

    def _vec(self, t: torch.Tensor, n: int, name: str) -> torch.Tensor:
        check_tensor(t, name, ndim=2)
        if t.shape[1] != n:
            raise ValueError(f"{name} must be (B, {n}) for this {self.shape[0]}x{self.shape[1]} matrix, "
                             f"got {tuple(t.shape)}")
        return t

    def A(self, x):
        x = self._vec(x, self.shape[1], "x")
        return x @ self._match(self.matrix, x).T

    def AT(self, y):
        y = self._vec(y, self.shape[0], "y")
        return y @ self._match(self.matrix, y, "y")

    def svd(self, x=None):
        if self._svd is None or self._svd[0].device != self.matrix.device:
            U, s, Vh = torch.linalg.svd(self.matrix.to(torch.float64), full_matrices=False)
            self._svd = (U, s, Vh)
        U, s, Vh = self._svd
        cast = (lambda M, t: M.to(t.dtype))
        return SVD(U=lambda c: c @ cast(U, c).T, UT=lambda y: y @ cast(U, y),
                   V=lambda c: c @ cast(Vh, c), VT=lambda x: x @ cast(Vh, x).T, s=s)
