"""Blur operators ``A x = k * x``: circular (FFT, exact SVD) and zero-boundary ("same", "valid").

The kernel ``k`` is (kh, kw), shared by the batch, or (B, kh, kw), one per sample (blind
deblurring), and acts on every channel. Convolution is the true convolution with the kernel's centre
at ``(kh // 2, kw // 2)``, so a circular and a zero-boundary blur agree away from the border.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._validate import check_image, check_int, check_positive, check_tensor
from .linear import SVD, LinearOperator

__all__ = ["gaussian_kernel", "motion_kernel", "Blur", "ZeroBlur", "ValidBlur"]


def gaussian_kernel(size: int, std: float) -> torch.Tensor:
    """Normalised Gaussian kernel ``k_ij ∝ exp(-((i-c)^2 + (j-c)^2) / (2 std^2))``: -> (size, size).

    >>> round(float(gaussian_kernel(5, 1.0).sum()), 6)
    1.0
    """
    check_int(size, "size")
    std = check_positive(std, "std")
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-t ** 2 / (2 * std ** 2))
    k = g[:, None] * g[None, :]
    return (k / k.sum()).to(torch.get_default_dtype())


def motion_kernel(size: int, generator: torch.Generator | None = None, *,
                  intensity: float = 0.5) -> torch.Tensor:
    """Random camera-shake kernel (size, size): a random walk with inertia, splatted bilinearly.

    After Boracchi & Foi (IEEE TIP 2012): the heading turns by ``intensity * N(0, 1)`` per step;
    the path is centred, scaled to fill the kernel, and the kernel sums to one.

    >>> round(float(motion_kernel(9, torch.Generator().manual_seed(0)).sum()), 6)
    1.0
    """
    check_int(size, "size", 3)
    intensity = float(intensity)
    n = 4 * size
    turns = intensity * torch.randn(n, generator=generator, dtype=torch.float64)
    heading = 2 * math.pi * torch.rand((), generator=generator, dtype=torch.float64) + turns.cumsum(0)
    path = torch.stack((heading.sin(), heading.cos()), 1).cumsum(0)  # (n, 2) rows, cols
    path = path - (path.amax(0) + path.amin(0)) / 2
    path = path * ((size - 1) / 2 - 0.5) / path.abs().max().clamp_min(1e-12) + (size - 1) / 2
    k = torch.zeros(size, size, dtype=torch.float64)
    base = path.floor().long().clamp(0, size - 2)
    frac = path - base
    for di in (0, 1):
        for dj in (0, 1):
            w = (frac[:, 0] if di else 1 - frac[:, 0]) * (frac[:, 1] if dj else 1 - frac[:, 1])
            k.index_put_((base[:, 0] + di, base[:, 1] + dj), w, accumulate=True)
    return (k / k.sum()).to(torch.get_default_dtype())


class _KernelOperator(LinearOperator):
    """Shared kernel handling: (kh, kw) or (B, kh, kw) stored as a (B|1, 1, kh, kw) buffer."""

    settings = ("kernel",)

    def __init__(self, kernel: torch.Tensor):
        super().__init__()
        check_tensor(kernel, "kernel", ndim=(2, 3))
        self.register_buffer("kernel", kernel.reshape(-1, 1, *kernel.shape[-2:]))

    def _kernel_for(self, x: torch.Tensor, name: str) -> torch.Tensor:
        check_image(x, name)
        k = self._match(self.kernel, x, name)
        if k.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"{name} has batch size {x.shape[0]} but the kernel holds "
                             f"{k.shape[0]} kernels (use one kernel or one per sample)")
        return k


def _conj_masks(H: int, W: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Frequencies f whose conjugate -f comes later (``pos``) or earlier (``neg``) in raster order."""
    i = torch.arange(H, device=device)[:, None]
    j = torch.arange(W, device=device)[None, :]
    lin, clin = i * W + j, ((-i) % H) * W + (-j) % W
    return lin < clin, lin > clin


def _flip_freq(r: torch.Tensor) -> torch.Tensor:
    """``r`` at frequency -f: r_flip[..., i, j] = r[..., -i mod H, -j mod W]."""
    return torch.roll(torch.flip(r, (-2, -1)), (1, 1), (-2, -1))


def _to_real(X: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Hermitian spectrum -> real orthonormal coordinates (sqrt2 Re, sqrt2 Im on conjugate pairs)."""
    r2 = math.sqrt(2.0)
    return torch.where(pos, r2 * X.real, torch.where(neg, -r2 * X.imag, X.real))


def _to_complex(r: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_to_real`: real coordinates -> Hermitian spectrum."""
    rf, r2 = _flip_freq(r), math.sqrt(2.0)
    return torch.where(pos, torch.complex(r, rf) / r2,
                       torch.where(neg, torch.complex(rf, -r) / r2, torch.complex(r, 0 * r)))


class Blur(_KernelOperator):
    """Circular blur ``A x = k ⊛ x`` by FFT: ``A = F^H diag(K) F``, ``A^T = F^H diag(conj K) F``.

    ``svd(x)`` is exact and real: ``s = |K|`` and ``V^T`` the real orthonormal Fourier basis
    (cos/sin pairs), ``U`` that basis turned by the phase of ``K`` (Fourier diagonalisation).

    >>> op = Blur(gaussian_kernel(5, 1.0))
    >>> op.A(torch.ones(1, 1, 8, 8)).mean().item()  # doctest: +ELLIPSIS
    1.0...
    """

    def _otf(self, x: torch.Tensor, name: str, full: bool = False) -> torch.Tensor:
        """Kernel spectrum K (B|1, 1, H, W') with its centre moved to pixel (0, 0)."""
        k = self._kernel_for(x, name)
        kh, kw = k.shape[-2:]
        H, W = x.shape[-2:]
        if kh > H or kw > W:
            raise ValueError(f"{name} of size {(H, W)} is smaller than the kernel {(kh, kw)}")
        k = torch.roll(F.pad(k, (0, W - kw, 0, H - kh)), (-(kh // 2), -(kw // 2)), (-2, -1))
        return torch.fft.fft2(k) if full else torch.fft.rfft2(k)

    def A(self, x):
        K = self._otf(x, "x")
        return torch.fft.irfft2(torch.fft.rfft2(x) * K, s=x.shape[-2:])

    def AT(self, y):
        K = self._otf(y, "y")
        return torch.fft.irfft2(torch.fft.rfft2(y) * K.conj(), s=y.shape[-2:])

    def svd(self, x=None):
        """Exact real SVD for images of ``x``'s size (``x`` is needed: the spectrum depends on it)."""
        x = self._example(x)
        K = self._otf(x, "x", full=True)
        s = K.abs()
        phase = torch.where(s > 0, K / torch.where(s > 0, s, torch.ones_like(s)), torch.ones_like(K))
        pos, neg = _conj_masks(*x.shape[-2:], x.device)

        def VT(v):
            return _to_real(torch.fft.fft2(v, norm="ortho"), pos, neg)

        def V(c):
            return torch.fft.ifft2(_to_complex(c, pos, neg), norm="ortho").real

        def UT(y):
            return _to_real(torch.fft.fft2(y, norm="ortho") * phase.conj(), pos, neg)

        def U(c):
            return torch.fft.ifft2(_to_complex(c, pos, neg) * phase, norm="ortho").real

        return SVD(U, UT, V, VT, s)

    def pinv(self, y, *, rcond: float | None = None, **kwargs):
        """``A^+ y``: Fourier division by ``K`` where ``|K| > rcond * max|K|``, else 0."""
        return self.svd(y).pinv(y, rcond=rcond)


class ZeroBlur(_KernelOperator):
    """Blur with zero boundary, output of the input's size ("same"): ``A x = k * pad_0(x)``.

    The adjoint is the transposed convolution. Needs odd kernel sizes. No cheap SVD: ``pinv`` runs
    conjugate gradients.

    >>> ZeroBlur(gaussian_kernel(3, 1.0)).A(torch.ones(1, 1, 5, 5)).shape
    torch.Size([1, 1, 5, 5])
    """

    def _padding(self) -> tuple[int, int]:
        kh, kw = self.kernel.shape[-2:]
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"kernel must have odd sizes for a 'same' blur, got {(kh, kw)}")
        return kh // 2, kw // 2

    def _conv(self, x: torch.Tensor, name: str, transpose: bool) -> torch.Tensor:
        k = self._kernel_for(x, name).flip((-2, -1))
        B, C, H, W = x.shape
        conv = F.conv_transpose2d if transpose else F.conv2d
        if k.shape[0] == 1:
            out = conv(x.reshape(B * C, 1, H, W), k, padding=self._padding())
        else:  # one kernel per sample: a grouped convolution over the B*C channels
            w = k.expand(B, C, *k.shape[-2:]).reshape(B * C, 1, *k.shape[-2:])
            out = conv(x.reshape(1, B * C, H, W), w, padding=self._padding(), groups=B * C)
        return out.reshape(B, C, *out.shape[-2:])

    def A(self, x):
        return self._conv(x, "x", transpose=False)

    def AT(self, y):
        return self._conv(y, "y", transpose=True)


class ValidBlur(ZeroBlur):
    """Blur keeping only fully overlapped pixels ("valid"): (H, W) -> (H - kh + 1, W - kw + 1).

    >>> ValidBlur(gaussian_kernel(3, 1.0)).A(torch.ones(1, 1, 5, 5)).shape
    torch.Size([1, 1, 3, 3])
    """

    def _padding(self) -> tuple[int, int]:
        return 0, 0
