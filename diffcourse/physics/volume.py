"""Volumes measured slice by slice: a 2-D forward model applied to every axial slice.

3-D reconstruction with a 2-D prior (DiffusionMBIR, Chung et al. CVPR 2023; TPDM) measures a volume
(B, C, D, H, W) one slice at a time: sparse-view CT of each slice, or 2-D MRI of each slice. The
operator is block diagonal, one block per slice, so its adjoint and its pseudo-inverse are those of
the 2-D operator, slice by slice.
"""
from __future__ import annotations

import torch

from .._validate import check_int, check_op, check_tensor
from .linear import LinearOperator

__all__ = ["SliceWise"]


class SliceWise(LinearOperator):
    """A 2-D operator ``op`` applied to every slice of volumes x (B, C, D, H, W) -> y (B, D, ...).

    ``y[:, d] = op.A(x[:, :, d])``: the measurements of each volume's slices are stacked on dim 1,
    so the batch axis stays the volume's (per-sample inner products, CG and norms are per volume).
    ``op`` is any object with ``A`` and ``AT`` on (N, C, H, W) (a :class:`LinearOperator` or not).

    >>> from diffcourse.physics.operators import Downsample
    >>> op = SliceWise(Downsample(2), depth=3)
    >>> y = op.A(torch.ones(2, 1, 3, 8, 8))
    >>> y.shape, op.AT(y).shape
    (torch.Size([2, 3, 1, 4, 4]), torch.Size([2, 1, 3, 8, 8]))
    """

    settings = ("op", "depth")

    def __init__(self, op, depth: int):
        super().__init__()
        self.op = check_op(op)
        self.depth = check_int(depth, "depth")

    @property
    def in_shape(self) -> tuple[int, ...] | None:
        """(C, D, H, W) when ``op`` knows its (C, H, W), else ``None``."""
        s = getattr(self.op, "in_shape", None)
        return None if s is None else (s[0], self.depth, *s[1:])

    def A(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", ndim=5, complex_ok=True)
        b, c, d, h, w = x.shape
        if d != self.depth:
            raise ValueError(f"x must have depth {self.depth} (B, C, D, H, W), got shape {tuple(x.shape)}")
        y = self.op.A(x.transpose(1, 2).reshape(b * d, c, h, w))  # (B*D, C, H, W) -> (B*D, ...)
        return y.reshape(b, d, *y.shape[1:])  # (B, D, ...)

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        return self._volume(self.op.AT(self._slices(y)))

    def pinv(self, y: torch.Tensor, **kwargs) -> torch.Tensor:
        """``A^+ y`` = ``op.pinv`` slice by slice (block diagonal); CGLS if ``op`` has no ``pinv``."""
        if not callable(getattr(self.op, "pinv", None)):
            return super().pinv(y, **kwargs)
        return self._volume(self.op.pinv(self._slices(y), **kwargs))

    def _slices(self, y: torch.Tensor) -> torch.Tensor:
        """(B, D, ...) -> (B*D, ...), slice index fastest."""
        check_tensor(y, "y", complex_ok=True)
        if y.ndim < 2 or y.shape[1] != self.depth:
            raise ValueError(f"y must stack the measurements of {self.depth} slices on dim 1, (B, "
                             f"{self.depth}, ...), got shape {tuple(y.shape)}")
        return y.flatten(0, 1)

    def _volume(self, s: torch.Tensor) -> torch.Tensor:
        """(B*D, C, H, W) -> (B, C, D, H, W)."""
        return s.reshape(-1, self.depth, *s.shape[1:]).transpose(1, 2)
