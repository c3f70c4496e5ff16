"""Cartesian MRI: ``y = P F x`` (single coil) and ``y_i = P F S_i x`` (multi-coil, SENSE).

Conventions: ``F`` is the orthonormal 2D FFT with **centred** k-space (DC at ``(H // 2, W // 2)``,
``F = fftshift o fft2 o ifftshift``, unitary), ``P`` a 0/1 sampling mask in that centred layout,
measurements are the zero-filled k-space (unsampled entries are 0). ``A`` takes a real or complex
image (B, C, H, W) and returns complex k-space; ``AT`` is the complex adjoint ``A^H`` (adjointness
``<A x, y> = <x, A^H y>`` with ``<a, b> = sum conj(a) b``). For **real** images the forward model
is ``x -> A x`` restricted to real x, whose adjoint for the real inner product ``Re<., .>`` is
``AT_real(y) = Re(A^H y)``. Masks live in :mod:`diffcourse.physics.masks`, re-exported here.
"""
from __future__ import annotations

import math

import torch

from .._validate import check_image, check_int, check_mask, check_same_device, check_tensor
from .linear import SVD, LinearOperator
from .masks import cartesian_mask, variable_density_mask

__all__ = ["fft2c", "ifft2c", "SingleCoilMRI", "MultiCoilMRI", "coil_sensitivities",
           "cartesian_mask", "variable_density_mask", "rss", "smooth_phase"]


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over the last two dims (unitary)."""
    x = torch.fft.ifftshift(x, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2c` (= its adjoint)."""
    k = torch.fft.ifftshift(k, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.ifft2(k, norm="ortho"), dim=(-2, -1))


def rss(images: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Root sum of squares over coils: ``sqrt(sum_i |x_i|^2)`` (keeps ``dim``)."""
    return images.abs().pow(2).sum(dim, keepdim=True).sqrt()


def smooth_phase(n: int, size: int, *, max_freq: int = 2, amplitude: float = math.pi,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Smooth random phase maps (n, 1, size, size) in [-amplitude, amplitude], for complex test images.

    Each map is a random trigonometric polynomial: standard normal complex coefficients on the
    frequencies |k_y|, |k_x| <= ``max_freq`` (cycles per field of view), the real part taken and
    scaled so that its largest |value| is ``amplitude``. MR images carry such a slowly varying phase
    (field inhomogeneity, receive-chain phase); the image is then ``|x| exp(i phase)``. Each map draws its
    own numbers in turn, so a batch of two equals two batches of one from the same generator.

    >>> phi = smooth_phase(2, 16, generator=torch.Generator().manual_seed(0))
    >>> phi.shape, bool(torch.allclose(phi.abs().flatten(1).amax(1), torch.full((2,), math.pi)))
    (torch.Size([2, 1, 16, 16]), True)
    """
    check_int(n, "n")
    check_int(size, "size")
    check_int(max_freq, "max_freq", 0)
    if not 2 * max_freq < size:
        raise ValueError(f"max_freq must be < size / 2 = {size / 2}, got {max_freq}")
    if isinstance(amplitude, bool) or not isinstance(amplitude, (int, float)) or not amplitude > 0:
        raise ValueError(f"amplitude must be a number > 0, got {amplitude!r}")
    k = 2 * max_freq + 1
    c = torch.stack([torch.randn(k, k, 2, generator=generator, dtype=torch.float64) for _ in range(n)])  # per image
    coef = torch.zeros(n, size, size, dtype=torch.complex128)
    idx = torch.arange(-max_freq, max_freq + 1) % size                  # DFT indices of the low band
    coef[:, idx[:, None], idx[None, :]] = torch.view_as_complex(c)
    field = torch.fft.ifft2(coef).real                                 # (n, size, size)
    field = field / field.abs().flatten(1).amax(1).clamp_min(1e-30)[:, None, None]
    return (amplitude * field)[:, None].to(torch.get_default_dtype())


def coil_sensitivities(n_coils: int, size: int, *, width: float = 0.6,
                       dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    """Smooth synthetic coil maps (n_coils, size, size), normalised so ``sum_i |S_i|^2 = 1``.

    Coil i sits at angle ``2 pi i / n_coils`` on a circle of radius 1.2 (image in [-1, 1]^2); its
    magnitude is ``exp(-d^2 / (2 width^2))`` of the distance d to the coil and its phase turns
    slowly across the image (Pruessmann et al., SENSE, MRM 1999, for the model ``y_i = F S_i x``).

    >>> S = coil_sensitivities(4, 8)
    >>> bool(torch.allclose(S.abs().pow(2).sum(0), torch.ones(8, 8)))
    True
    """
    check_int(n_coils, "n_coils")
    check_int(size, "size")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    t = torch.linspace(-1, 1, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    phi = 2 * math.pi * torch.arange(n_coils, dtype=torch.float64)[:, None, None] / n_coils
    cy, cx = 1.2 * torch.sin(phi), 1.2 * torch.cos(phi)
    mag = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width ** 2))
    phase = phi + 0.5 * math.pi * (xx * torch.cos(phi) - yy * torch.sin(phi))
    S = mag * torch.exp(1j * phase)
    return (S / S.abs().pow(2).sum(0).sqrt()).to(dtype)


class _MRIOperator(LinearOperator):
    """Mask handling shared by the single- and multi-coil models."""

    def _init_mask(self, mask: torch.Tensor) -> None:
        self.register_buffer("mask", check_mask(mask))
        self.in_shape = (1, *self.mask.shape[-2:])

    def _mask_for(self, t: torch.Tensor, name: str) -> torch.Tensor:
        check_image(t, name, size=tuple(self.mask.shape[-2:]), complex_ok=True)
        if self.mask.shape[0] not in (1, t.shape[0]):
            raise ValueError(f"{name} has batch size {t.shape[0]} but the mask has "
                             f"{self.mask.shape[0]} (use one mask or one per sample)")
        return self._match(self.mask, t, name)

    def measured(self, y: torch.Tensor) -> torch.Tensor:
        """k-space data y with the unsampled entries set to zero."""
        return y * self._mask_for(y, "y")

    def AT_real(self, y: torch.Tensor) -> torch.Tensor:
        """``Re(A^H y)``: the adjoint of ``A`` restricted to real images (real inner product)."""
        return self.AT(y).real

    def _example(self, x):
        if x is None:
            x = super()._example(None)
            return x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
        return super()._example(x)


class SingleCoilMRI(_MRIOperator):
    """Single-coil Cartesian MRI ``A x = P F x`` (Lustig et al., MRM 2007): (B, C, H, W) -> complex.

    ``A A^H = P``: the SVD is ``V^H = F``, ``s = P``, ``U = I``; ``A^+ y = F^H (P y)`` (zero-filled).

    >>> op = SingleCoilMRI(torch.ones(4, 4))
    >>> x = torch.rand(1, 1, 4, 4)
    >>> bool(torch.allclose(op.AT(op.A(x)).real, x, atol=1e-6))
    True
    """

    settings = ("mask",)

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self._init_mask(mask)

    def A(self, x):
        return self._mask_for(x, "x") * fft2c(x)

    def AT(self, y):
        return ifft2c(self._mask_for(y, "y") * y)

    def svd(self, x=None):
        return SVD(lambda c: c, lambda y: y, ifft2c, fft2c, self.mask)


class MultiCoilMRI(_MRIOperator):
    """Multi-coil (SENSE) MRI ``y_i = P F S_i x``: (B, 1, H, W) -> complex (B, n_coils, H, W).

    Pruessmann et al., MRM 1999. ``sensitivities``: complex (n_coils, H, W) or (B, n_coils, H, W),
    e.g. :func:`coil_sensitivities` (``sum_i |S_i|^2 = 1``, so ``A^H A = I`` when fully sampled).
    ``A^H y = sum_i conj(S_i) F^H (P y_i)``. ``pinv`` runs CGLS.

    >>> S = coil_sensitivities(4, 8)
    >>> op = MultiCoilMRI(torch.ones(8, 8), S)
    >>> x = torch.rand(1, 1, 8, 8)
    >>> bool(torch.allclose(op.AT(op.A(x)).real, x, atol=1e-5))
    True
    """

    settings = ("mask", "n_coils")

    def __init__(self, mask: torch.Tensor, sensitivities: torch.Tensor):
        super().__init__()
        self._init_mask(mask)
        S = check_tensor(sensitivities, "sensitivities", ndim=(3, 4), complex_ok=True)
        if tuple(S.shape[-2:]) != tuple(self.mask.shape[-2:]):
            raise ValueError(f"sensitivities must have spatial size {tuple(self.mask.shape[-2:])} "
                             f"(the mask's), got shape {tuple(S.shape)}")
        S = S.to(torch.promote_types(S.dtype, torch.complex64))
        # stored as real pairs (..., 2) so that .to(torch.float64) keeps the imaginary part
        self.register_buffer("sens", torch.view_as_real(S.reshape(-1, *S.shape[-3:])))

    @property
    def n_coils(self) -> int:
        return self.sens.shape[1]

    def _sens_for(self, t: torch.Tensor, name: str) -> torch.Tensor:
        check_same_device(self.sens, t, "the sensitivities", name)
        S = torch.view_as_complex(self._match(self.sens, t, name).contiguous())
        if S.shape[0] not in (1, t.shape[0]):
            raise ValueError(f"{name} has batch size {t.shape[0]} but the sensitivities have "
                             f"{S.shape[0]} (use one set or one per sample)")
        return S

    def A(self, x):
        mask = self._mask_for(x, "x")
        if x.shape[1] != 1:
            raise ValueError(f"x must have 1 channel (one image seen by all coils), got shape "
                             f"{tuple(x.shape)}")
        return mask * fft2c(self._sens_for(x, "x") * x)

    def AT(self, y):
        mask = self._mask_for(y, "y")
        S = self._sens_for(y, "y")
        if y.shape[1] != S.shape[1]:
            raise ValueError(f"y must have {S.shape[1]} coils (channels), got shape "
                             f"{tuple(y.shape)}")
        return (S.conj() * ifft2c(mask * y)).sum(1, keepdim=True)
