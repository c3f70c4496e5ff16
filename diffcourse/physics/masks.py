"""k-space undersampling masks in the centred layout (DC at ``(H // 2, W // 2)``).

Cartesian masks sample whole phase-encoding lines (columns: the mask is constant along the first
spatial axis) with a fully sampled centre (auto-calibration lines), as in fastMRI (Zbontar et al.,
2018); the 2D variable-density mask samples single points with a density falling off with the
distance to the centre (Lustig, Donoho & Pauly, MRM 2007).
"""
from __future__ import annotations

import torch

from .._validate import check_int

__all__ = ["cartesian_mask", "variable_density_mask"]


def _check_fraction(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value}")
    return float(value)


def _check_acceleration(acceleration) -> float:
    if isinstance(acceleration, bool) or not isinstance(acceleration, (int, float)) \
            or not acceleration >= 1:
        raise ValueError(f"acceleration must be a number >= 1, got {acceleration}")
    return float(acceleration)


def cartesian_mask(size: int, acceleration: float = 4, center_fraction: float = 0.08,
                   kind: str = "random", generator: torch.Generator | None = None) -> torch.Tensor:
    """1D Cartesian line mask (size, size) with ``round(size / acceleration)`` sampled columns.

    The ``round(size * center_fraction)`` central columns are always sampled; the others are
    drawn uniformly without replacement (``kind="random"``) or spread evenly over the remaining
    columns (``kind="equispaced"``).

    >>> m = cartesian_mask(32, 4, 0.125, generator=torch.Generator().manual_seed(0))
    >>> int(m[0].sum()), bool(m[:, 14:18].all())
    (8, True)
    """
    check_int(size, "size")
    R = _check_acceleration(acceleration)
    center_fraction = _check_fraction(center_fraction, "center_fraction")
    if kind not in ("random", "equispaced"):
        raise ValueError(f"kind must be 'random' or 'equispaced', got {kind!r}")
    n_lines = max(1, round(size / R))
    n_center = min(round(size * center_fraction), n_lines)
    cols = torch.zeros(size, dtype=torch.bool)
    start = size // 2 - n_center // 2
    cols[start:start + n_center] = True
    rest = (~cols).nonzero().squeeze(1)
    n_extra = n_lines - n_center
    if kind == "random":
        pick = torch.randperm(rest.numel(), generator=generator)[:n_extra]
    else:
        pick = ((torch.arange(n_extra) + 0.5) * rest.numel() / max(n_extra, 1)).long()
    cols[rest[pick]] = True
    return cols.to(torch.get_default_dtype()).expand(size, size).clone()


def variable_density_mask(size: int, acceleration: float = 4, *, center_fraction: float = 0.08,
                          decay: float = 2.0,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """2D random mask (size, size): point (i, j) is sampled with probability ``min(1, c (1 - r)^decay)``.

    ``r`` is the distance to the centre over the largest distance, and ``c`` is set by bisection so
    that the expected sampled fraction is ``1 / acceleration``; a disc of radius
    ``center_fraction * size / 2`` around the centre is always sampled. (A simple Bernoulli stand-in
    for Poisson-disc sampling.)

    >>> m = variable_density_mask(64, 4, generator=torch.Generator().manual_seed(0))
    >>> 0.2 < float(m.mean()) < 0.3
    True
    """
    check_int(size, "size")
    R = _check_acceleration(acceleration)
    center_fraction = _check_fraction(center_fraction, "center_fraction")
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or decay < 0:
        raise ValueError(f"decay must be a number >= 0, got {decay}")
    t = torch.arange(size, dtype=torch.float64) - size // 2
    dist = (t[:, None] ** 2 + t[None, :] ** 2).sqrt()
    r = dist / dist.max()
    center = dist <= center_fraction * size / 2
    target = 1.0 / R

    def density(c: float) -> torch.Tensor:
        return torch.where(center, torch.ones_like(r), (c * (1 - r) ** decay).clamp(max=1.0))

    lo, hi = 0.0, 1.0
    while float(density(hi).mean()) < target and hi < 1e12:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if float(density(mid).mean()) < target else (lo, mid)
    u = torch.rand((size, size), generator=generator, dtype=torch.float64)
    return (u < density(hi)).to(torch.get_default_dtype())
