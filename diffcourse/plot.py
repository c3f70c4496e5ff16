"""Small plotting helpers for the notebooks; no algorithm imports this module.

* :func:`show_images` — a grid of (B, 1, H, W) or (B, 3, H, W) image tensors with titles;
* :func:`plot_score_field` — a quiver plot of a 2-D score (or any vector field);
* :func:`plot_density` — filled contours of a 2-D density from its log-density.

Each returns what it drew on (a Figure or an Axes) and never calls ``plt.show()``: the notebook does.
"""
from __future__ import annotations

from typing import Callable, Sequence

import matplotlib.pyplot as plt
import torch

from diffcourse._validate import check_int, check_positive, check_tensor

__all__ = ["show_images", "plot_score_field", "plot_density"]


def _as_frames(images, name: str) -> list[torch.Tensor]:
    """Split a tensor or a list of tensors into single (H, W) or (H, W, 3) frames on the CPU."""
    items = images if isinstance(images, (list, tuple)) else [images]
    frames = []
    for k, item in enumerate(items):
        item = check_tensor(item, f"{name}[{k}]", ndim=(2, 3, 4), complex_ok=True).detach()
        item = item.abs() if item.is_complex() else item
        item = item.reshape(1, 1, *item.shape) if item.ndim == 2 else item
        item = item.unsqueeze(0) if item.ndim == 3 else item  # (B, C, H, W)
        if item.shape[1] not in (1, 3):
            raise ValueError(f"{name}[{k}] must have 1 or 3 channels, got shape {tuple(item.shape)}")
        for frame in item.cpu().float():
            frames.append(frame[0] if frame.shape[0] == 1 else frame.permute(1, 2, 0).clamp(0, 1))
    return frames


def show_images(images, titles: Sequence[str] | None = None, *, ncols: int | None = None,
                vmin: float | None = 0.0, vmax: float | None = 1.0, cmap: str = "gray",
                size: float = 2.5, colorbar: bool = False, suptitle: str | None = None):
    """Show images in a grid; returns the Figure.

    ``images``: a tensor (B, C, H, W), (C, H, W) or (H, W) with C in {1, 3}, or a list of such
    tensors (each may have its own size); complex images are shown by magnitude. One title per
    image. ``vmin``/``vmax`` fix the grey-level range (``None`` lets each panel scale itself);
    colour images are clipped to [0, 1]. ``suptitle`` titles the whole figure.

    The figure uses matplotlib's constrained layout, which is recomputed whenever the figure is
    drawn: a title added afterwards (``plt.suptitle(...)``) also gets room above the top row.

    >>> fig = show_images(torch.rand(2, 1, 8, 8), ["a", "b"], suptitle="two images")
    >>> len(fig.axes), fig.get_suptitle()
    (2, 'two images')
    """
    frames = _as_frames(images, "images")
    if titles is not None and len(titles) != len(frames):
        raise ValueError(f"titles must have one entry per image ({len(frames)}), got {len(titles)}")
    ncols = min(len(frames), ncols or 6)
    nrows = -(-len(frames) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False,
                             layout="constrained")
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(frames):
            fig.delaxes(ax)
            continue
        shown = ax.imshow(frames[k].numpy(), cmap=cmap, vmin=vmin, vmax=vmax)
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
        if colorbar and frames[k].ndim == 2:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig


def _grid(xlim, ylim, n: int, dtype=torch.float64):
    """An (n*n, 2) tensor of grid points and the two (n, n) coordinate arrays."""
    xs = torch.linspace(float(xlim[0]), float(xlim[1]), n, dtype=dtype)
    ys = torch.linspace(float(ylim[0]), float(ylim[1]), n, dtype=dtype)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")  # (n, n), x varies along columns
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1), gx, gy


def plot_score_field(score_fn: Callable[[torch.Tensor], torch.Tensor], xlim=(-3.0, 3.0),
                     ylim=(-3.0, 3.0), *, n: int = 20, ax=None, normalize: bool = False,
                     dtype=torch.float64, **quiver_kwargs):
    """Quiver plot of a 2-D vector field ``score_fn(x)``, x of shape (N, 2) -> (N, 2); returns the Axes.

    Typical use: ``plot_score_field(lambda x: gm.score(x, sigma))``. ``normalize=True`` draws unit
    arrows coloured by the field's norm (the direction matters more than the length far from the
    data). The grid is an ``n``-by-``n`` lattice over ``xlim`` x ``ylim`` in ``dtype``.

    >>> ax = plot_score_field(lambda x: -x, n=5)
    >>> ax.collections[0].U.shape
    (25,)
    """
    check_int(n, "n", 2)
    points, gx, gy = _grid(xlim, ylim, n, dtype)
    with torch.no_grad():
        field = score_fn(points)
    check_tensor(field, "score_fn(x)", ndim=2)
    if tuple(field.shape) != tuple(points.shape):
        raise ValueError(f"score_fn(x) must return shape {tuple(points.shape)}, got {tuple(field.shape)}")
    field = field.detach().cpu().double()
    u, v = field[:, 0], field[:, 1]
    ax = ax if ax is not None else plt.figure(figsize=(4, 4)).gca()
    if normalize:
        norm = field.norm(dim=1)
        scale = norm.clamp_min(1e-12)
        ax.quiver(gx.reshape(-1), gy.reshape(-1), u / scale, v / scale, norm, **quiver_kwargs)
    else:
        ax.quiver(gx.reshape(-1), gy.reshape(-1), u, v, **quiver_kwargs)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    return ax


def plot_density(log_prob: Callable[[torch.Tensor], torch.Tensor], xlim=(-3.0, 3.0),
                 ylim=(-3.0, 3.0), *, n: int = 100, ax=None, levels: int = 20,
                 dtype=torch.float64, cmap: str = "viridis"):
    """Filled contours of ``exp(log_prob(x))``, x of shape (N, 2) -> (N,); returns the Axes.

    >>> ax = plot_density(lambda x: -0.5 * (x ** 2).sum(1), n=10)
    >>> len(ax.collections) > 0
    True
    """
    check_int(n, "n", 2)
    check_positive(levels, "levels")
    points, gx, gy = _grid(xlim, ylim, n, dtype)
    with torch.no_grad():
        logp = log_prob(points)
    check_tensor(logp, "log_prob(x)", ndim=1)
    if logp.shape[0] != points.shape[0]:
        raise ValueError(f"log_prob(x) must return shape ({points.shape[0]},), got {tuple(logp.shape)}")
    density = logp.detach().cpu().double().exp().reshape(gx.shape)
    ax = ax if ax is not None else plt.figure(figsize=(4, 4)).gca()
    ax.contourf(gx.numpy(), gy.numpy(), density.numpy(), levels=int(levels), cmap=cmap)
    ax.set_aspect("equal")
    return ax
