"""The training data of :mod:`diffcourse.prior.train`: every batch drawn afresh from a seeded generator.

Phantoms (head-like slices and random ellipses, :func:`phantom_batch`; with sharp-edged families,
:func:`sharp_phantom_batch`), posed MNI152 brain slices in mixed synthetic contrasts (:func:`brain_batch`,
Fonov et al., NeuroImage 2011; a fixed small set for the data-efficiency presets, :func:`brain_images`),
patches of them with positional channels (:func:`brain_patch_batch`; PaDIS, Hu et al., NeurIPS 2024),
blur kernels as images (:func:`kernel_batch`; BlindDPS, Chung et al., CVPR 2023), and the held-out
phantoms every evaluation uses (:func:`held_out_phantoms`). :func:`training_batch` picks by
``TrainConfig.data``. Nothing is downloaded: the data are generated, or cut from the template that
nilearn ships.
"""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import torch

from .. import phantoms

if TYPE_CHECKING:
    from .train import TrainConfig

__all__ = ["phantom_batch", "sharp_phantom_batch", "brain_batch", "fixed_brain_slices", "brain_images",
           "brain_patch_batch", "kernel_batch", "training_batch", "held_out_phantoms"]


def brain_batch(n: int, size: int, generator: torch.Generator, orientation: str = "axial") -> torch.Tensor:
    """n training images: posed MNI152 slices (axial by default) outside the held-out slab, each in a
    random (synthetic) contrast; see :func:`diffcourse.data.brain_slices`."""
    from .. import data

    return data.brain_slices(n, size, generator, orientation=orientation, contrast="mixed", split="train")


@functools.lru_cache(maxsize=4)
def fixed_brain_slices(n: int, size: int, seed: int) -> torch.Tensor:
    """The fixed training set of ``TrainConfig.n_images`` = n slices: :func:`brain_batch` drawn once
    from generator seed ``seed + 3`` (the data and noise streams use seed + 1 and seed + 2). Cached."""
    return brain_batch(n, size, torch.Generator().manual_seed(seed + 3))


def brain_images(n: int, config: "TrainConfig", generator: torch.Generator) -> torch.Tensor:
    """n training slices (n, 1, size, size): fresh ones (:func:`brain_batch`), or, with
    ``config.n_images`` > 0, n drawn with replacement from the fixed set :func:`fixed_brain_slices`."""
    if not config.n_images:
        return brain_batch(n, config.size, generator)
    pool = fixed_brain_slices(config.n_images, config.size, config.seed)
    return pool[torch.randint(len(pool), (n,), generator=generator)]


def brain_patch_batch(config: "TrainConfig", generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` patches of side ``patch_size`` with their positional channels, (B, 3, P, P): cut
    from zero-padded brain slices (:func:`brain_images`), 8 per slice, at uniform random places
    (:func:`diffcourse.prior.patches.random_patches`; PaDIS, Hu et al., NeurIPS 2024)."""
    from .patches import PATCHES_PER_IMAGE, random_patches

    images = brain_images(-(-config.batch_size // PATCHES_PER_IMAGE), config, generator)
    return random_patches(images, config.patch_size, PATCHES_PER_IMAGE, generator)[:config.batch_size]


def sharp_phantom_batch(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """n training images for ``phantoms_sharp``: with probabilities 1/2, 1/10, 1/5, 1/5 a head slice,
    antialiased random ellipses, sharp-edged random ellipses, a sharp-edged random Shepp-Logan
    relative (:func:`diffcourse.phantoms.shepp_logan_family`); half of them flipped left-right."""
    kind = torch.bucketize(torch.rand(n, generator=generator), torch.tensor([0.5, 0.6, 0.8]))
    draw = (lambda k: phantoms.head(k, size, generator=generator),
            lambda k: phantoms.ellipses(k, size, generator=generator),
            lambda k: phantoms.ellipses(k, size, generator=generator, antialias=False),
            lambda k: phantoms.shepp_logan_family(k, size, generator=generator))
    out = torch.empty(n, 1, size, size)
    for i, make in enumerate(draw):
        if (kind == i).any():
            out[kind == i] = make(int((kind == i).sum()))
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def training_batch(config: "TrainConfig", generator: torch.Generator) -> torch.Tensor:
    """One batch of the configured training data (B, 1, size, size) in [0, 1]; for "brain_patches"
    (B, 3, P, P), the patches followed by their two positional channels (:func:`brain_patch_batch`)."""
    if config.data == "phantoms_sharp":
        return sharp_phantom_batch(config.batch_size, config.size, generator)
    if config.data == "brain":
        return brain_images(config.batch_size, config, generator)
    if config.data == "brain_patches":
        return brain_patch_batch(config, generator)
    if config.data == "brain_coronal":
        return brain_batch(config.batch_size, config.size, generator, orientation="coronal")
    if config.data == "kernels":
        return kernel_batch(config.batch_size, config.size, generator)
    return phantom_batch(config.batch_size, config.size, generator, config.head_fraction)


def kernel_batch(n: int, size: int, generator: torch.Generator, motion_fraction: float = 0.5) -> torch.Tensor:
    """n blur kernels as images (n, 1, size, size) in [0, 1], each k / max k, centred at pixel (size // 2,
    size // 2) (the centre of :class:`diffcourse.physics.blur.Blur`); ``size`` even, at least 8.

    With probability ``motion_fraction`` a camera-shake kernel (Boracchi & Foi, IEEE TIP 2012; the physics'
    ``motion_kernel``, intensity 0.5) of odd size 7 ... size - 1, else a Gaussian of std ~ U(0.5, 3 size/16) px
    on an odd support of 3 std each side (at most size - 1). Divide a denoised kernel image by its sum to
    get a kernel back (BlindDPS, Chung et al., CVPR 2023).
    """
    from ..physics.blur import gaussian_kernel, motion_kernel   # the training data are the physics' kernels

    out = torch.zeros(n, 1, size, size)
    is_motion = torch.rand(n, generator=generator) < motion_fraction
    for b in range(n):
        if is_motion[b]:
            s = 2 * int(torch.randint(3, size // 2, (), generator=generator)) + 1
            k = motion_kernel(s, generator)
        else:
            std = 0.5 + (3 * size / 16 - 0.5) * float(torch.rand((), generator=generator))
            s = min(2 * math.ceil(3 * std) + 1, size - 1)
            k = gaussian_kernel(s, std)
        o = size // 2 - s // 2
        out[b, 0, o:o + s, o:o + s] = k / k.max()
    return out


def phantom_batch(n: int, size: int, generator: torch.Generator, head_fraction: float = 0.75) -> torch.Tensor:
    """n training images: each a head slice with probability ``head_fraction``, else random ellipses."""
    is_head = torch.rand(n, generator=generator) < head_fraction
    n_head = int(is_head.sum())
    out = torch.empty(n, 1, size, size)
    if n_head:
        out[is_head] = phantoms.head(n_head, size, generator=generator)
    if n_head < n:
        out[~is_head] = phantoms.ellipses(n - n_head, size, generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5                   # left-right flips
    out[flip] = out[flip].flip(-1)
    return out



def held_out_phantoms(n: int = 16, size: int = 64, seed: int = 10_000) -> torch.Tensor:
    """Phantoms for evaluation, drawn from a seed no training run uses (training seeds are
    ``seed + 1`` of a :class:`TrainConfig`, small integers): 3/4 head slices, 1/4 ellipses."""
    g = torch.Generator().manual_seed(seed)
    n_head = (3 * n) // 4
    parts = [phantoms.head(n_head, size, generator=g)] if n_head else []
    if n > n_head:
        parts.append(phantoms.ellipses(n - n_head, size, generator=g))
    return torch.cat(parts)
