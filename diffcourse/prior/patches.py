"""Patch priors: a position-aware denoiser of small patches, assembled into a whole-image denoiser.

PaDIS (Hu, Song, Xu, Shen & Fessler, "Learning image priors through patch-based diffusion models for
solving inverse problems", NeurIPS 2024, Sec. 3) learns the prior of an N x N image from P x P patches
only. The image is zero-padded by M = K P - N pixels on each side, K = 1 + floor(N / P), into a canvas
of side S = N + 2M. For a shift m in {0, ..., M-1}^2 the K^2 patches starting at m + P (j, l) tile a
K P x K P window that holds every interior pixel exactly once (Eq. 5-6), and the whole-image
denoiser is the sum of the patch denoisers' corrections,

    d(x) = x + sum_k G_k^T (D_theta(G_k x, sigma, pos_k) - G_k x),    score = (d(x) - x) / sigma^2,

with G_k the k-th patch of the padded canvas and pos_k two extra input channels holding the (x, y)
coordinate of each patch pixel on the canvas, scaled to [-1, 1] (Sec. 3.3). A new random shift per
call (Sec. 3.2) moves the patch seams around, so that no pixel is always at a border.

:class:`PatchDenoiser` is that d(x) as an ordinary ``D(x, sigma)``: every sampler and solver of the
course uses it unchanged. The padding is the zero image noised to the current level (its pixels
are 0 + sigma z, as in the paper's denoiser of a whole image and as the patches of padded images
looked in training). :func:`random_patches` cuts the training patches, positions included.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import as_sigma, check_image, check_int

__all__ = ["geometry", "positions", "assemble", "PatchDenoiser", "random_patches", "PATCHES_PER_IMAGE"]

#: Training patches cut from each image of a batch (:func:`random_patches`): a batch of B patches
#: draws ceil(B / 8) images, so the costly slice rendering is shared among patches.
PATCHES_PER_IMAGE = 8


def geometry(size: int, patch_size: int) -> tuple[int, int]:
    """(K, M): patches per side K = 1 + floor(N / P) and padding per side M = K P - N for an image of
    side N = ``size`` and patches of side P (Hu et al. 2024, Sec. 3.2).

    >>> geometry(256, 56), geometry(64, 14)        # the paper's CT setting, and a quarter of it
    ((5, 24), (5, 6))
    """
    check_int(size, "size")
    check_int(patch_size, "patch_size")
    if patch_size > size:
        raise ValueError(f"patch_size must be at most the image size {size}, got {patch_size}")
    K = 1 + size // patch_size
    return K, K * patch_size - size


def positions(canvas: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """Positional channels of a ``canvas`` x ``canvas`` padded image, (2, S, S): channel 0 the column
    (x) and channel 1 the row (y) coordinate, linear from -1 at the first to +1 at the last pixel.

    >>> p = positions(5)
    >>> p[:, 0, 0].tolist(), p[:, -1, -1].tolist(), p[0, 0].tolist(), p[1, :, 0].tolist()
    ([-1.0, -1.0], [1.0, 1.0], [-1.0, -0.5, 0.0, 0.5, 1.0], [-1.0, -0.5, 0.0, 0.5, 1.0])
    """
    check_int(canvas, "canvas", 2)
    c = torch.linspace(-1.0, 1.0, canvas, dtype=dtype, device=device)
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x, y])


def _tiles(window: torch.Tensor, K: int, P: int) -> torch.Tensor:
    """(B, C, K P, K P) -> (B K^2, C, P, P), row-major patch order."""
    B, C = window.shape[:2]
    return window.reshape(B, C, K, P, K, P).permute(0, 2, 4, 1, 3, 5).reshape(B * K * K, C, P, P)


def _untile(tiles: torch.Tensor, B: int, K: int, P: int) -> torch.Tensor:
    """(B K^2, C, P, P) -> (B, C, K P, K P), the inverse of :func:`_tiles`."""
    C = tiles.shape[1]
    return tiles.reshape(B, K, K, C, P, P).permute(0, 3, 1, 4, 2, 5).reshape(B, C, K * P, K * P)


def assemble(D_patch, x: torch.Tensor, sigma, shifts: torch.Tensor, patch_size: int,
             border: torch.Tensor | None = None) -> torch.Tensor:
    """The whole-image denoiser d(x) (Hu et al. 2024, Eq. 6) for given grid shifts, (B, C, N, N).

    ``D_patch(v, sigma, pos)``: a patch denoiser, v (n, C, P, P), sigma (n,), pos (n, 2, P, P);
    ``shifts``: (B, 2) integers in [0, M) (row, column) per image; ``border``: (B, C, S, S) values of
    the padding (None: zeros), the interior of which is ignored. Differentiable in ``x``.
    """
    check_image(x, "x")
    B, C, N = x.shape[0], x.shape[1], x.shape[-1]
    if x.shape[-2] != N:
        raise ValueError(f"x must be square, got spatial size {tuple(x.shape[-2:])}")
    K, M = geometry(N, patch_size)
    P, S = patch_size, N + 2 * M
    shifts = torch.as_tensor(shifts).reshape(B, 2).tolist()
    if any(not 0 <= v < M for v in sum(shifts, [])):
        raise ValueError(f"shifts must lie in [0, {M}) for size {N} and patch_size {P}, got {shifts}")
    canvas = F.pad(x, (M, M, M, M))                                           # (B, C, S, S)
    if border is not None:
        inside = F.pad(torch.ones_like(x[:1, :1]), (M, M, M, M))
        canvas = canvas + (1 - inside) * border
    pos = positions(S, dtype=x.dtype, device=x.device)
    window = [canvas[b, :, r:r + K * P, c:c + K * P] for b, (r, c) in enumerate(shifts)]
    pos_window = [pos[:, r:r + K * P, c:c + K * P] for r, c in shifts]
    v = _tiles(torch.stack(window), K, P)                                     # (B K^2, C, P, P)
    pos_v = _tiles(torch.stack(pos_window), K, P)                             # (B K^2, 2, P, P)
    s = as_sigma(sigma, x).flatten().repeat_interleave(K * K)
    out = _untile(D_patch(v, s, pos_v), B, K, P)                              # (B, C, K P, K P)
    return torch.stack([out[b, :, M - r:M - r + N, M - c:M - c + N] for b, (r, c) in enumerate(shifts)])


class PatchDenoiser(nn.Module):
    """A whole-image denoiser D(x, sigma) assembled from a patch denoiser with positions (PaDIS, Hu et
    al., NeurIPS 2024, Eq. 6), with a fresh random grid shift per image and call.

    ``net(v, sigma, pos)``: a patch denoiser (an :class:`diffcourse.prior.nets.EDMDenoiser` with
    ``cond_channels=2``, or any callable); ``patch_size`` P; ``generator`` draws the shifts and the
    noise of the padding (settable later: ``D.generator = torch.Generator().manual_seed(0)``), one
    image after the other, so a batch of two equals two batches of one. ``noisy_border=False`` pads
    with exact zeros instead of 0 + sigma z. Images: (B, C, N, N), any N >= P.

    >>> from diffcourse.prior.nets import UNetConfig, build_denoiser
    >>> net = build_denoiser(UNetConfig(channels=(16, 32), groups=4, emb_dim=32, cond_channels=2))
    >>> D = PatchDenoiser(net, 14, generator=torch.Generator().manual_seed(0))
    >>> D(torch.zeros(2, 1, 64, 64), 0.5).shape
    torch.Size([2, 1, 64, 64])
    """

    def __init__(self, net, patch_size: int, *, generator: torch.Generator | None = None,
                 noisy_border: bool = True):
        super().__init__()
        if not callable(net):
            raise TypeError(f"net must be a callable net(v, sigma, pos), got {type(net).__name__}")
        self.net = net
        self.patch_size = check_int(patch_size, "patch_size")
        self.generator = generator
        self.noisy_border = bool(noisy_border)

    def draw(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The random part of one call: shifts (B, 2) and the padding's values (B, C, S, S) or None."""
        B, C, N = x.shape[0], x.shape[1], x.shape[-1]
        K, M = geometry(N, self.patch_size)
        g = self.generator
        device = g.device if g is not None else x.device    # draw where the generator (or the image) lives
        s = as_sigma(sigma, x)
        shifts, border = [], []
        for b in range(B):
            shifts.append(torch.randint(M, (2,), generator=g, device=device))
            if self.noisy_border:
                z = torch.randn((C, N + 2 * M, N + 2 * M), generator=g, device=device, dtype=x.dtype)
                border.append(s[b] * z.to(x.device))
        # the shifts become slicing offsets (Python ints in assemble): one small host copy per call, which
        # any data-dependent crop needs; the padding noise stays on the image's device
        return torch.stack(shifts).cpu(), (torch.stack(border) if border else None)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        check_image(x, "x")
        shifts, border = self.draw(x, sigma)
        return assemble(self.net, x, sigma, shifts, self.patch_size, border)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, noisy_border={self.noisy_border}"


def random_patches(images: torch.Tensor, patch_size: int, n_per_image: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Training patches of zero-padded images with their positions (Hu et al. 2024, Sec. 3.3):
    (B n, C + 2, P, P), the image channels followed by the two positional channels.

    Each image (B, C, N, N) is padded by M (:func:`geometry`) and ``n_per_image`` patches are cut at
    corners drawn uniformly from {0, ..., S - P}^2, image after image; the positions are those of
    :func:`positions` on the S x S canvas, as :class:`PatchDenoiser` passes them.

    >>> x = torch.rand(2, 1, 64, 64)
    >>> random_patches(x, 14, 3, torch.Generator().manual_seed(0)).shape
    torch.Size([6, 3, 14, 14])
    """
    check_image(images, "images")
    check_int(n_per_image, "n_per_image")
    N = images.shape[-1]
    _, M = geometry(N, patch_size)
    S, P = N + 2 * M, patch_size
    canvas = torch.cat([F.pad(images, (M, M, M, M)),
                        positions(S, dtype=images.dtype, device=images.device).expand(images.shape[0], -1, -1, -1)], 1)
    corners = torch.randint(S - P + 1, (images.shape[0], n_per_image, 2), generator=generator)
    return torch.stack([canvas[b, :, r:r + P, c:c + P]
                        for b in range(images.shape[0]) for r, c in corners[b].tolist()])
