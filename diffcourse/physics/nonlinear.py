"""Nonlinear forward models: Fourier phase retrieval, quantizers, a fixed neural-network blur.

Each has ``A(x)`` (also its ``forward``); phase retrieval and the neural blur are differentiable,
as DPS needs (Chung et al., ICLR 2023); the quantizer returns bin indices and the bin bounds
``[l, u)`` that QCS-SGM's likelihood uses (Meng & Kabashima, ICLR 2023).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import check_image, check_int, check_same_device, check_tensor
from .base import Operator

__all__ = ["PhaseRetrieval", "Quantizer", "NeuralBlur"]


class PhaseRetrieval(Operator):
    """Fourier phase retrieval ``y = |F pad(x)|`` with oversampling (DPS, Chung et al. ICLR 2023).

    ``pad`` zero-pads each side by ``(oversample - 1) * size / 2`` (oversample 2: twice the size),
    ``F`` the orthonormal 2D FFT: (B, C, H, W) -> (B, C, H + 2 p_h, W + 2 p_w), real, >= 0.
    ``y`` is unchanged by a global sign flip and by the 180-degree rotation of the support.

    >>> PhaseRetrieval().A(torch.ones(1, 1, 4, 4)).shape
    torch.Size([1, 1, 8, 8])
    """

    settings = ("oversample",)

    def __init__(self, oversample: float = 2.0):
        super().__init__()
        if isinstance(oversample, bool) or not isinstance(oversample, (int, float)) \
                or oversample < 1:
            raise ValueError(f"oversample must be a number >= 1, got {oversample}")
        self.oversample = float(oversample)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero padding of ``(oversample - 1) * size / 2`` pixels on each side."""
        ph = round((self.oversample - 1) * x.shape[-2] / 2)
        pw = round((self.oversample - 1) * x.shape[-1] / 2)
        return F.pad(x, (pw, pw, ph, ph))

    def A(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, "x", complex_ok=True)
        return torch.fft.fft2(self.pad(x), norm="ortho").abs()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)


class Quantizer(nn.Module):
    """Scalar quantizer ``Q(z) = k`` for ``z`` in bin ``k = [t_{k-1}, t_k)``, with ``t_{-1} = -inf``
    and ``t_{K-1} = +inf`` (K - 1 increasing ``thresholds``, K bins).

    ``A(z)`` returns the bin indices (long), ``bounds(k)`` the bin bounds ``(l, u)`` and
    ``dequantize(k)`` a representative value per bin (``levels``, default: bin midpoints, outer bins
    mirrored). :meth:`uniform` is QCS-SGM's Q-bit quantizer, :meth:`sign` the 1-bit one.

    >>> q = Quantizer.uniform(2, -1.0, 1.0)
    >>> q.A(torch.tensor([-2.0, -0.2, 0.3, 0.9])).tolist()
    [0, 1, 2, 3]
    """

    def __init__(self, thresholds, levels=None):
        super().__init__()
        t = torch.as_tensor(thresholds, dtype=torch.float64)
        if t.ndim != 1 or t.numel() == 0 or not bool(torch.isfinite(t).all()):
            raise ValueError(f"thresholds must be a non-empty 1D sequence of finite numbers, "
                             f"got {thresholds!r}")
        if not bool((t[1:] > t[:-1]).all()):
            raise ValueError("thresholds must be strictly increasing")
        levels = self._default_levels(t) if levels is None else torch.as_tensor(levels,
                                                                                dtype=torch.float64)
        if levels.shape != (t.numel() + 1,):
            raise ValueError(f"levels must hold one value per bin ({t.numel() + 1}), got shape "
                             f"{tuple(levels.shape)}")
        inf = torch.tensor([math.inf], dtype=torch.float64)
        self.register_buffer("thresholds", t)
        self.register_buffer("lower", torch.cat((-inf, t)))
        self.register_buffer("upper", torch.cat((t, inf)))
        self.register_buffer("levels", levels)

    @staticmethod
    def _default_levels(t: torch.Tensor) -> torch.Tensor:
        if t.numel() == 1:
            return torch.cat((t - 1, t + 1))
        mid = (t[1:] + t[:-1]) / 2
        return torch.cat((t[:1] - (t[1] - t[0]) / 2, mid, t[-1:] + (t[-1] - t[-2]) / 2))

    @classmethod
    def uniform(cls, bits: int, low: float, high: float) -> "Quantizer":
        """Q-bit uniform quantizer: ``2^bits`` bins of width ``(high - low) / 2^bits`` from ``low``
        (outer bins open), representative values at the bin centres (QCS-SGM)."""
        check_int(bits, "bits")
        if not high > low:
            raise ValueError(f"high must be > low, got low={low}, high={high}")
        n = 2 ** bits
        delta = (high - low) / n
        k = torch.arange(n + 1, dtype=torch.float64)
        return cls(low + delta * k[1:-1], levels=low + delta * (k[:-1] + 0.5))

    @classmethod
    def sign(cls) -> "Quantizer":
        """1-bit quantizer ``sign(z)``: bin 0 is ``(-inf, 0)`` (level -1), bin 1 ``[0, inf)`` (+1)."""
        return cls([0.0], levels=[-1.0, 1.0])

    @property
    def n_bins(self) -> int:
        return self.levels.numel()

    def A(self, z: torch.Tensor) -> torch.Tensor:
        """Bin indices ``k`` with ``l_k <= z < u_k`` (long, shape of z)."""
        check_tensor(z, "z")
        check_same_device(self.thresholds, z, "the quantizer", "z")
        return torch.bucketize(z, self.thresholds.to(z.dtype), right=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.A(z)

    def _index(self, k: torch.Tensor) -> torch.Tensor:
        if not isinstance(k, torch.Tensor) or k.dtype not in (torch.int64, torch.int32,
                                                              torch.int16, torch.uint8):
            raise TypeError(f"k must be an integer tensor of bin indices, got "
                            f"{k.dtype if isinstance(k, torch.Tensor) else type(k).__name__}")
        if k.numel() and (int(k.min()) < 0 or int(k.max()) >= self.n_bins):
            raise ValueError(f"k must hold bin indices in [0, {self.n_bins - 1}]")
        return k.long()

    def bounds(self, k: torch.Tensor, dtype: torch.dtype | None = None):
        """Bin bounds ``(l, u)`` of indices ``k`` (``-inf`` / ``+inf`` for the outer bins)."""
        k = self._index(k)
        dtype = dtype or torch.get_default_dtype()
        return self.lower.to(dtype)[k], self.upper.to(dtype)[k]

    def dequantize(self, k: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The representative value ``levels[k]`` of each bin."""
        return self.levels.to(dtype or torch.get_default_dtype())[self._index(k)]


class NeuralBlur(Operator):
    """A fixed, seeded two-layer CNN as a nonlinear blur (stand-in for DPS's learned blur).

    ``y = sum_j a_j g_j * softplus(k_j * x + b_j) - c``: ``n_filters`` smooth random positive
    kernels ``k_j``, ``g_j`` (Gaussian bumps of random width and offset), random biases and
    mixing weights ``a_j`` (scaled to unit gain at 0, so small images are just blurred), all drawn from ``torch.Generator().manual_seed(seed)`` (no files). The
    offset ``c`` makes ``A(0) = 0``. Acts on each channel, zero padding: (B, C, H, W) -> same.

    >>> y = NeuralBlur(seed=0).A(torch.rand(1, 1, 16, 16))
    >>> y.shape
    torch.Size([1, 1, 16, 16])
    """

    settings = ("seed", "n_filters", "size")

    def __init__(self, seed: int = 0, *, n_filters: int = 4, size: int = 7):
        super().__init__()
        self.seed = check_int(seed, "seed", 0)
        self.n_filters = check_int(n_filters, "n_filters")
        self.size = check_int(size, "size", 3)
        if size % 2 == 0:
            raise ValueError(f"size must be odd, got {size}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("k1", self._bumps(n_filters, size, g)[:, None])  # (J, 1, s, s)
        self.register_buffer("k2", self._bumps(n_filters, size, g)[None])  # (1, J, s, s)
        b1 = torch.rand(n_filters, generator=g) - 0.5
        a = torch.rand(n_filters, generator=g) + 0.5
        self.register_buffer("b1", b1)
        self.register_buffer("a", a / (a * torch.sigmoid(b1)).sum())  # unit gain at x = 0

    @staticmethod
    def _bumps(n: int, size: int, g: torch.Generator) -> torch.Tensor:
        t = torch.arange(size, dtype=torch.float64) - size // 2
        std = 0.6 + 1.4 * torch.rand(n, 1, 1, generator=g, dtype=torch.float64)
        shift = torch.rand(n, 2, 1, 1, generator=g, dtype=torch.float64) * 2 - 1
        d2 = (t[:, None] - shift[:, 0]) ** 2 + (t[None, :] - shift[:, 1]) ** 2
        k = torch.exp(-d2 / (2 * std ** 2))
        return (k / k.sum((-2, -1), keepdim=True)).to(torch.get_default_dtype())

    def A(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, "x")
        check_same_device(self.k1, x, "the network", "x")
        B, C, H, W = x.shape
        k1, k2, b1, a = (t.to(x.dtype) for t in (self.k1, self.k2, self.b1, self.a))
        p = k1.shape[-1] // 2
        h = F.softplus(F.conv2d(x.reshape(B * C, 1, H, W), k1, b1, padding=p))  # (BC, J, H, W)
        y = F.conv2d(h * a[:, None, None], k2, padding=p)  # (BC, 1, H, W)
        zero = F.conv2d(F.softplus(b1)[None, :, None, None].expand(1, -1, H, W) * a[:, None, None],
                        k2, padding=p)
        return (y - zero).reshape(B, C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)
