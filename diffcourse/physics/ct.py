"""Parallel-beam CT: the Radon transform as a sparse matrix with its exact transpose, and FBP.

Geometry follows ``skimage.transform.radon(image, theta, circle=False)`` so that the two can be
compared: angles in **degrees**, ``n_detectors = ceil(sqrt(2) N)`` detector bins of unit width
centred at ``n_detectors // 2``, and each ray sum taken at unit steps with bilinear interpolation of
the image (zero outside). Sinograms are laid out ``(B, C, n_angles, n_detectors)`` (scikit-image
uses ``(n_detectors, n_angles)``: transpose to compare).
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import torch

from .._validate import check_image, check_int, check_same_device
from .linear import LinearOperator

__all__ = ["Radon", "sparse_view", "limited_angle", "hann_window", "cosine_window",
           "shepp_logan_window", "ramp_filter"]


def sparse_view(n_views: int) -> torch.Tensor:
    """``n_views`` equispaced angles in [0, 180) degrees (sparse-view CT).

    >>> sparse_view(4).tolist()
    [0.0, 45.0, 90.0, 135.0]
    """
    check_int(n_views, "n_views")
    return torch.arange(n_views, dtype=torch.float64) * (180.0 / n_views)


def limited_angle(n: int, max_angle_deg: float) -> torch.Tensor:
    """``n`` equispaced angles in [0, max_angle_deg) degrees (limited-angle CT).

    >>> limited_angle(3, 90).tolist()
    [0.0, 30.0, 60.0]
    """
    check_int(n, "n")
    if isinstance(max_angle_deg, bool) or not isinstance(max_angle_deg, (int, float)) \
            or not 0 < max_angle_deg <= 180:
        raise ValueError(f"max_angle_deg must be a number in (0, 180], got {max_angle_deg}")
    return torch.arange(n, dtype=torch.float64) * (float(max_angle_deg) / n)


def _check_angles(angles) -> torch.Tensor:
    try:
        angles = torch.as_tensor(angles, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"angles must be a 1D sequence of numbers (degrees), got {angles!r}") from err
    if angles.ndim != 1 or angles.numel() == 0:
        raise ValueError(f"angles must be a non-empty 1D sequence of degrees, got shape "
                         f"{tuple(angles.shape)}")
    if not bool(torch.isfinite(angles).all()):
        raise ValueError("angles must be finite")
    return angles


def _angle_entries(N: int, P: int, theta: float):
    """Coalesced entries of one angle's block (P, N^2), sorted by (detector, pixel)."""
    t = torch.arange(P, dtype=torch.float64) - P // 2
    u, v = t[:, None], t[None, :]  # detector position, step along the ray
    cos, sin = math.cos(theta), math.sin(theta)
    col = N // 2 + cos * u + sin * v  # (P, P) sample positions in the image
    row = N // 2 - sin * u + cos * v
    near = (row > -1) & (row < N) & (col > -1) & (col < N)
    det = torch.arange(P).expand(P, P).T[near]
    row, col = row[near], col[near]
    r0, c0 = row.floor(), col.floor()
    dr, dc = row - r0, col - c0
    keys, vals = [], []
    for ir, wr in ((r0, 1 - dr), (r0 + 1, dr)):
        for ic, wc in ((c0, 1 - dc), (c0 + 1, dc)):
            w = wr * wc
            keep = (ir >= 0) & (ir < N) & (ic >= 0) & (ic < N) & (w > 0)
            keys.append(det[keep] * (N * N) + (ir[keep] * N + ic[keep]).long())
            vals.append(w[keep])
    key, inverse = torch.unique(torch.cat(keys), return_inverse=True)  # sorted, duplicates merged
    val = torch.zeros(key.numel(), dtype=torch.float64).index_add_(0, inverse, torch.cat(vals))
    return key // (N * N), key % (N * N), val


def _radon_matrices(N: int, angles: torch.Tensor, P: int, dtype):
    """CSR matrices of the ray sums (n_angles P, N^2) and of their transpose."""
    counts, pixels, vals = [], [], []
    for theta in torch.deg2rad(angles).tolist():
        det, pix, val = _angle_entries(N, P, theta)
        counts.append(torch.bincount(det, minlength=P))
        pixels.append(pix)
        vals.append(val.to(dtype))
    counts, pixels, vals = torch.cat(counts), torch.cat(pixels), torch.cat(vals)
    m, n = counts.numel(), N * N
    crow = torch.cat((counts.new_zeros(1), counts.cumsum(0)))
    rows = torch.repeat_interleave(torch.arange(m), counts)
    order = torch.sort(pixels, stable=True).indices  # by pixel, then by row (already increasing)
    crow_T = torch.cat((counts.new_zeros(1), torch.bincount(pixels, minlength=n).cumsum(0)))
    with warnings.catch_warnings():  # "sparse CSR support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        M = torch.sparse_csr_tensor(crow, pixels, vals, (m, n))
        MT = torch.sparse_csr_tensor(crow_T, rows[order], vals[order], (n, m))
    return M, MT


class _SparseMatmul(torch.autograd.Function):
    """``M @ X`` with the gradient ``M^T @ G`` taken from the stored transpose (differentiable)."""

    @staticmethod
    def forward(ctx, M, MT, X):
        ctx.M, ctx.MT = M, MT
        return M @ X

    @staticmethod
    def backward(ctx, G):
        return None, None, _SparseMatmul.apply(ctx.MT, ctx.M, G)


def ramp_filter(size: int, window: Callable[[torch.Tensor], torch.Tensor] | None = None,
                dtype=torch.float64) -> torch.Tensor:
    """Ram-Lak ramp filter of length ``size`` (FFT order), from its band-limited spatial kernel.

    Kak & Slaney, Principles of Computerized Tomographic Imaging (1988), ch. 3: h[0] = 1/4,
    h[n] = -1/(pi n)^2 for odd n, 0 for even n (this avoids the DC offset of a sampled ``|w|``).
    ``window(f)`` multiplies it, ``f = |frequency| / Nyquist`` in [0, 1].
    """
    n = torch.arange(size, dtype=torch.float64)
    n = torch.minimum(n, size - n)
    h = torch.where(n % 2 == 1, -1.0 / (math.pi * n.clamp_min(1)) ** 2, torch.zeros_like(n))
    h[0] = 0.25
    filt = 2 * torch.fft.fft(h).real
    if window is not None:
        filt = filt * window(torch.fft.fftfreq(size, dtype=torch.float64).abs() * 2)
    return filt.to(dtype)


def hann_window(f: torch.Tensor) -> torch.Tensor:
    """Hann window ``(1 + cos(pi f)) / 2`` on normalised frequency ``f`` in [0, 1]."""
    return 0.5 * (1 + torch.cos(math.pi * f))


def cosine_window(f: torch.Tensor) -> torch.Tensor:
    """Cosine window ``cos(pi f / 2)``."""
    return torch.cos(math.pi * f / 2)


def shepp_logan_window(f: torch.Tensor) -> torch.Tensor:
    """Shepp-Logan window ``sinc(f / 2) = sin(pi f / 2) / (pi f / 2)``."""
    return torch.sinc(f / 2)


class Radon(LinearOperator):
    """Parallel-beam Radon transform ``A``: (B, C, N, N) -> (B, C, n_angles, n_detectors).

    Radon (1917); discretised as a sparse matrix of bilinear weights (as scikit-image's ``radon``
    with ``circle=False``), stored in CSR with its transpose, so ``AT`` is the exact adjoint (the
    matched back-projector) and both are differentiable. ``angles`` in degrees.

    >>> op = Radon(16, sparse_view(8))
    >>> op.A(torch.ones(1, 1, 16, 16)).shape
    torch.Size([1, 1, 8, 23])
    """

    settings = ("image_size", "n_angles", "n_detectors")

    def __init__(self, image_size: int, angles, *, n_detectors: int | None = None, dtype=None):
        super().__init__()
        N = self.image_size = check_int(image_size, "image_size")
        angles = _check_angles(angles)
        P = self.n_detectors = check_int(n_detectors if n_detectors is not None
                                          else math.ceil(math.sqrt(2) * N), "n_detectors")
        self.in_shape = (1, N, N)
        M, MT = _radon_matrices(N, angles, P, dtype or torch.get_default_dtype())
        self.register_buffer("matrix", M)
        self.register_buffer("matrix_T", MT)
        self.register_buffer("angles", angles)

    @property
    def n_angles(self) -> int:
        return self.angles.numel()

    def _apply(self, fn, recurse=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return super()._apply(fn, recurse)

    def _check(self, t: torch.Tensor, name: str, size: tuple[int, int]) -> None:
        check_image(t, name, size=size)
        check_same_device(self.matrix, t, "the Radon matrix", name)
        if t.dtype != self.matrix.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but the Radon matrix is "
                            f"{self.matrix.dtype}; use radon.to({t.dtype}) or {name}.to"
                            f"({self.matrix.dtype})")

    def A(self, x):
        N = self.image_size
        self._check(x, "x", (N, N))
        B, C = x.shape[:2]
        X = x.reshape(B * C, N * N).T  # (N^2, B C)
        Y = _SparseMatmul.apply(self.matrix, self.matrix_T, X)
        return Y.T.reshape(B, C, self.n_angles, self.n_detectors)

    def AT(self, y):
        self._check(y, "y", (self.n_angles, self.n_detectors))
        B, C = y.shape[:2]
        Y = y.reshape(B * C, -1).T  # (n_angles n_det, B C)
        X = _SparseMatmul.apply(self.matrix_T, self.matrix, Y)
        return X.T.reshape(B, C, self.image_size, self.image_size)

    def filter(self, y: torch.Tensor, window: Callable | None = None) -> torch.Tensor:
        """Ramp-filter each projection (zero-padded to a power of two >= 2 n_detectors, >= 64)."""
        self._check(y, "y", (self.n_angles, self.n_detectors))
        P = self.n_detectors
        size = max(64, 2 ** math.ceil(math.log2(2 * P)))
        filt = ramp_filter(size, window, dtype=y.dtype).to(y.device)
        Y = torch.fft.fft(y, n=size, dim=-1) * filt
        return torch.fft.ifft(Y, dim=-1).real[..., :P]

    def fbp(self, y: torch.Tensor, *, window: Callable | None = None) -> torch.Tensor:
        """Filtered back-projection ``x ≈ (pi / (2 n_angles)) A^T (h * y)`` (Kak & Slaney 1988, ch. 3).

        ``window``: e.g. :func:`hann_window`; ``None`` is the plain ramp (Ram-Lak).
        """
        return self.AT(self.filter(y, window)) * (math.pi / (2 * self.n_angles))
