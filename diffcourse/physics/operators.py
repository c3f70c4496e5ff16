"""Linear forward operators of the course: identity, inpainting, blur, super-resolution,
colorization and compressed sensing.

Each is a :class:`~diffcourse.physics.linear.LinearOperator` acting on images ``(B, C, H, W)`` with
``A``, ``AT`` (exact adjoint), ``pinv`` and, where cheap, an exact ``svd``. Blur kernels live in
:mod:`diffcourse.physics.blur`, compressed-sensing matrices in :mod:`diffcourse.physics.cs`; both
are re-exported here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._validate import check_image, check_int, check_mask, check_tensor
from .blur import Blur, ValidBlur, ZeroBlur, gaussian_kernel, motion_kernel
from .cs import GaussianCS, SubsampledDCT, SubsampledHadamard
from .linear import SVD, LinearOperator
from .matrix import Matrix

__all__ = ["LinearOperator", "SVD", "Identity", "Inpaint", "random_mask", "box_mask", "Downsample",
           "Colorize", "Blur", "ZeroBlur", "ValidBlur", "gaussian_kernel", "motion_kernel",
           "GaussianCS", "SubsampledDCT", "SubsampledHadamard", "Matrix"]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class Identity(LinearOperator):
    """``A = I`` (denoising): ``A x = x``, ``A^T = A^+ = I``, SVD with ``s = 1``.

    >>> Identity().A(torch.ones(1, 1, 2, 2)).sum().item()
    4.0
    """

    def A(self, x):
        return check_tensor(x, "x", complex_ok=True)

    def AT(self, y):
        return check_tensor(y, "y", complex_ok=True)

    def svd(self, x=None):
        return SVD(_identity, _identity, _identity, _identity, torch.ones(()))


def _size2(size, name: str = "size") -> tuple[int, int]:
    size = (size, size) if isinstance(size, int) and not isinstance(size, bool) else tuple(size)
    if len(size) != 2:
        raise ValueError(f"{name} must be an int or a pair (H, W), got {size}")
    return check_int(size[0], name), check_int(size[1], name)


def random_mask(size, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random inpainting mask (H, W): each pixel is kept (1) with probability ``p``, else 0.

    ``1 - p`` is the missing fraction (DPS, Chung et al. ICLR 2023: 92 % missing means p = 0.08).

    >>> random_mask(8, 0.5, torch.Generator().manual_seed(0)).shape
    torch.Size([8, 8])
    """
    H, W = _size2(size)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    u = torch.rand((H, W), generator=generator)
    return (u < p).to(torch.get_default_dtype())


def box_mask(size, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Box inpainting mask (H, W): ones except a hidden box ``(top, left, height, width)`` of zeros.

    >>> int(box_mask(8, (2, 2, 4, 4)).sum())
    48
    """
    H, W = _size2(size)
    if len(box) != 4:
        raise ValueError(f"box must be (top, left, height, width), got {box}")
    top, left = (check_int(v, "box", 0) for v in box[:2])
    h, w = (check_int(v, "box", 1) for v in box[2:])
    if top + h > H or left + w > W:
        raise ValueError(f"box {tuple(box)} does not fit in an image of size {(H, W)}")
    mask = torch.ones((H, W))
    mask[top:top + h, left:left + w] = 0
    return mask


class Inpaint(LinearOperator):
    """Inpainting ``A x = m * x`` (convention: the masked image, zeros where missing).

    ``mask``: (H, W) or (B|1, C|1, H, W) of zeros and ones. ``A`` is an orthogonal projector, so
    ``A^T = A`` and the minimum-norm solution is ``A^+ y = A^T y = m * y`` (``= y`` for measured y).

    >>> op = Inpaint(box_mask(4, (0, 0, 2, 2)))
    >>> op.A(torch.ones(1, 1, 4, 4)).sum().item()
    12.0
    """

    settings = ("mask",)

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", check_mask(mask))
        self.in_shape = (self.mask.shape[1], *self.mask.shape[-2:])

    def _mask_for(self, x: torch.Tensor, name: str) -> torch.Tensor:
        check_image(x, name, size=tuple(self.mask.shape[-2:]), complex_ok=True)
        Bm, Cm = self.mask.shape[:2]
        if Bm not in (1, x.shape[0]) or Cm not in (1, x.shape[1]):
            raise ValueError(f"{name} of shape {tuple(x.shape)} does not fit the mask of shape "
                             f"{tuple(self.mask.shape)} (batch and channels must be 1 or equal)")
        return self._match(self.mask, x, name)

    def A(self, x):
        return x * self._mask_for(x, "x")

    def AT(self, y):
        return y * self._mask_for(y, "y")

    def measured(self, y):
        """y with the unmeasured (masked-out) entries set to zero."""
        return y * self._mask_for(y, "y")

    def svd(self, x=None):
        return SVD(_identity, _identity, _identity, _identity, self.mask)

    def pinv(self, y, **kwargs):
        return self.AT(y)


class Downsample(LinearOperator):
    """Super-resolution ``A x = avgpool_f(x)``: (B, C, H, W) -> (B, C, H/f, W/f).

    ``A A^T = I / f^2``, so the SVD is ``U = I``, ``s = 1/f``, ``V^T x = f * avgpool(x)`` and the
    pseudo-inverse is nearest-neighbour upsampling.

    >>> Downsample(2).A(torch.ones(1, 1, 4, 4)).shape
    torch.Size([1, 1, 2, 2])
    """

    settings = ("factor",)

    def __init__(self, factor: int):
        super().__init__()
        self.factor = check_int(factor, "factor")

    def A(self, x):
        check_image(x, "x")
        f = self.factor
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(f"x must have height and width divisible by factor={f}, "
                             f"got shape {tuple(x.shape)}")
        return F.avg_pool2d(x, f)

    def _up(self, y: torch.Tensor) -> torch.Tensor:
        f = self.factor
        return y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)

    def AT(self, y):
        check_image(y, "y")
        return self._up(y) / self.factor ** 2

    def svd(self, x=None):
        f = self.factor
        return SVD(_identity, _identity, lambda z: self._up(check_image(z, "z")) / f,
                   lambda x: self.A(x) * f, torch.tensor(1.0 / f, dtype=torch.float64))


class Colorize(LinearOperator):
    """Colorization ``A x = sum_c w_c x_c``: RGB (B, 3, H, W) -> gray (B, 1, H, W).

    Default ``w = (1/3, 1/3, 1/3)`` (DDRM/DDNM). One non-zero singular value ``s = ||w||`` per
    pixel, ``V^T x = A x / ||w||``, ``U = I``.

    >>> Colorize().A(torch.ones(1, 3, 2, 2)).shape
    torch.Size([1, 1, 2, 2])
    """

    settings = ("weights",)

    def __init__(self, weights=(1 / 3, 1 / 3, 1 / 3)):
        super().__init__()
        w = torch.as_tensor(weights, dtype=torch.get_default_dtype())
        if w.shape != (3,):
            raise ValueError(f"weights must hold 3 numbers (R, G, B), got shape {tuple(w.shape)}")
        self.register_buffer("weights", w)

    def A(self, x):
        check_image(x, "x")
        if x.shape[1] != 3:
            raise ValueError(f"x must have 3 channels (RGB), got shape {tuple(x.shape)}")
        w = self._match(self.weights, x)
        return (x * w[:, None, None]).sum(1, keepdim=True)

    def AT(self, y):
        check_image(y, "y")
        if y.shape[1] != 1:
            raise ValueError(f"y must have 1 channel (gray), got shape {tuple(y.shape)}")
        return y * self._match(self.weights, y, "y")[:, None, None]

    def svd(self, x=None):
        n = self.weights.norm()
        return SVD(_identity, _identity, lambda z: self.AT(z) / n, lambda x: self.A(x) / n, n)
