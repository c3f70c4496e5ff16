"""The orthonormal 2-D Haar wavelet transform (Haar 1910; Mallat, IEEE TPAMI 1989), the sparsifying
transform of the classical compressed-sensing baselines (:func:`~diffcourse.posterior.classical.biht`).

:func:`haar2d` maps an image (..., H, W) to its coefficients of the same shape, in the usual pyramid
layout: after ``levels`` levels the top-left (H/2^levels, W/2^levels) block holds the averages and
each level's three detail bands (vertical, horizontal, diagonal differences) surround it. The
transform is orthonormal, so :func:`ihaar2d` is both its inverse and its adjoint, and a piecewise
constant image on dyadic blocks has few non-zero coefficients.

>>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
>>> c = haar2d(x)
>>> bool(torch.allclose(ihaar2d(c), x)), bool(torch.allclose(c.norm(), x.norm()))
(True, True)
"""
from __future__ import annotations

import math

import torch

from .._validate import check_int, check_tensor

__all__ = ["haar2d", "ihaar2d", "max_levels"]

_R2 = math.sqrt(2.0)


def max_levels(H: int, W: int) -> int:
    """The number of levels an (H, W) image allows: halvings while both sides stay even."""
    n = 0
    while H % 2 == 0 and W % 2 == 0 and min(H, W) > 1:
        H, W, n = H // 2, W // 2, n + 1
    return n


def _levels(x: torch.Tensor, levels: int | None) -> int:
    check_tensor(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must be (..., H, W), got shape {tuple(x.shape)}")
    most = max_levels(*x.shape[-2:])
    if levels is None:
        return most
    levels = check_int(levels, "levels", 0)
    if levels > most:
        raise ValueError(f"levels must be <= {most} for an image of size {tuple(x.shape[-2:])}, got {levels}")
    return levels


def _split(t: torch.Tensor, dim: int) -> torch.Tensor:
    """One Haar step along ``dim`` (-1 or -2): [pair sums; pair differences] / √2."""
    pairs = t.unflatten(dim, (-1, 2))                                # the pair axis lands at ``dim``
    even, odd = pairs.select(dim, 0), pairs.select(dim, 1)
    return torch.cat(((even + odd) / _R2, (even - odd) / _R2), dim)


def _merge(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of :func:`_split` along ``dim`` (-1 or -2)."""
    a, d = t.chunk(2, dim)
    return torch.stack(((a + d) / _R2, (a - d) / _R2), dim).flatten(dim - 1, dim)  # interleave


def haar2d(x: torch.Tensor, levels: int | None = None) -> torch.Tensor:
    """Orthonormal multi-level 2-D Haar coefficients of x (..., H, W), same shape; ``levels`` default:
    as many as the size allows (:func:`max_levels`)."""
    levels = _levels(x, levels)
    c = x.clone()
    h, w = x.shape[-2:]
    for _ in range(levels):
        c[..., :h, :w] = _split(_split(c[..., :h, :w], -2), -1)
        h, w = h // 2, w // 2
    return c


def ihaar2d(c: torch.Tensor, levels: int | None = None) -> torch.Tensor:
    """Inverse (= adjoint) of :func:`haar2d` with the same ``levels``."""
    levels = _levels(c, levels)
    x = c.clone()
    H, W = c.shape[-2:]
    for j in reversed(range(levels)):
        h, w = H >> j, W >> j
        x[..., :h, :w] = _merge(_merge(x[..., :h, :w], -1), -2)
    return x
