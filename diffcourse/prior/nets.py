"""Networks: a small noise-conditional UNet and the EDM preconditioning that turns it into a denoiser.

The UNet follows the DDPM/NCSN++ recipe at a size a laptop can train (Ho et al. 2020, Sec. 4;
Song et al. 2021): residual blocks with GroupNorm and SiLU, a sinusoidal embedding of the noise level
added in every block, self-attention at the coarsest resolution only. :class:`EDMDenoiser` wraps it
with the preconditioning of Karras et al. (2022, Eq. 7 and Table 1),

    D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)),
    c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2),   c_noise = log(sigma) / 4,

so that the network's input and target have unit variance at every noise level. Our images live in
[0, 1], so the wrapper centres them at ``data_mean`` (0.5) before and after. The MLP for
low-dimensional data lives in :mod:`diffcourse.prior.mlp`.

Conditioning channels (``cond_channels``, e.g. the two positional channels of a patch network, Hu et
al., NeurIPS 2024, Sec. 3) are concatenated to the preconditioned image at the input and are not
denoised: the network still returns ``in_channels`` channels, and the preconditioning acts on the
image only.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
import torch.nn.functional as F

from .._validate import as_sigma, check_image

__all__ = ["UNetConfig", "UNet", "EDMDenoiser", "build_denoiser"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet` (stored in checkpoints, so it must stay plain data)."""
    in_channels: int = 1
    channels: tuple[int, ...] = (32, 64, 96, 128)   # one entry per resolution (64, 32, 16, 8 px)
    blocks_per_level: int = 1
    emb_dim: int = 128
    groups: int = 8
    attention_at_bottom: bool = True
    sigma_data: float = 0.5
    data_mean: float = 0.5
    cond_channels: int = 0                           # extra input channels that are not denoised

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if d["cond_channels"] == 0:             # the default: left out, so records made before the
            del d["cond_channels"]              # field existed stay exactly as they were
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        return cls(**d)


def sinusoidal_embedding(c_noise: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style embedding of the scalar noise input (B,) -> (B, dim) (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=c_noise.device, dtype=c_noise.dtype) / half)
    args = c_noise[:, None] * 100.0 * freqs[None]               # c_noise ~ O(1): spread it out
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the noise embedding as a per-channel scale and shift."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)   # (B, C, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class Attention(nn.Module):
    """Single-head self-attention over pixels, residual (used at the coarsest level only)."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.out = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)   # (B, C, HW) each
        h = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.out(h.transpose(1, 2).reshape(B, C, H, W))


class UNet(nn.Module):
    """Noise-conditional UNet F(x, c_noise): (B, C, H, W), (B,) -> (B, C, H, W); H, W divisible by
    2 ** (len(channels) - 1). With ``cond_channels`` k > 0, F(x, c_noise, cond) also takes ``cond``
    (B, k, H, W), concatenated to x at the input."""

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        cfg = self.config = config
        ch, E, G = cfg.channels, cfg.emb_dim, cfg.groups
        self.emb = nn.Sequential(nn.Linear(E, E), nn.SiLU(), nn.Linear(E, E))
        self.inp = nn.Conv2d(cfg.in_channels + cfg.cond_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips, c = [ch[0]], ch[0]
        for i, c_level in enumerate(ch):
            for _ in range(cfg.blocks_per_level):
                self.down.append(ResBlock(c, c_level, E, G))
                c = c_level
                skips.append(c)
            if i < len(ch) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid1 = ResBlock(c, c, E, G)
        self.mid_attn = Attention(c, G) if cfg.attention_at_bottom else nn.Identity()
        self.mid2 = ResBlock(c, c, E, G)
        self.up = nn.ModuleList()
        for i, c_level in reversed(list(enumerate(ch))):
            for _ in range(cfg.blocks_per_level + 1):
                self.up.append(ResBlock(c + skips.pop(), c_level, E, G))
                c = c_level
            if i > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.out_norm = nn.GroupNorm(G, c)
        self.out = nn.Conv2d(c, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this (one halving per level below the top)."""
        return 2 ** (len(self.config.channels) - 1)

    def check_input(self, x, name: str = "x") -> torch.Tensor:
        """Raise a ``TypeError``/``ValueError`` naming ``name`` unless ``x`` fits this network."""
        check_image(x, name)
        weight = self.inp.weight
        if x.dtype != weight.dtype:
            raise TypeError(f"{name} has dtype {x.dtype} but the network's weights are {weight.dtype}: "
                            f"convert the image ({name}.to({weight.dtype})) or the network "
                            f"(.to({x.dtype}))")
        if x.device != weight.device:
            raise ValueError(f"{name} is on {x.device} but the network is on {weight.device}: move one "
                             f"of them ({name}.to({str(weight.device)!r}))")
        if x.shape[1] != self.config.in_channels:
            raise ValueError(f"{name} must have {self.config.in_channels} channel(s) for this network, "
                             f"got shape {tuple(x.shape)} (B, C, H, W)")
        m = self.multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"{name}'s height and width must be multiples of {m} for this "
                             f"{len(self.config.channels)}-level UNet, got {tuple(x.shape[-2:])} (pad or "
                             f"crop the image, e.g. to {tuple(max(m, m * round(n / m)) for n in x.shape[-2:])})")
        return x

    def check_cond(self, cond, x: torch.Tensor) -> torch.Tensor | None:
        """``cond`` checked against this network's ``cond_channels`` and the image ``x`` (B, C, H, W)."""
        k = self.config.cond_channels
        if k == 0:
            if cond is not None:
                raise ValueError("cond must be None: this network has no conditioning channels "
                                 "(UNetConfig.cond_channels = 0)")
            return None
        if cond is None:
            raise ValueError(f"cond is required: this network takes {k} conditioning channel(s) "
                             f"(e.g. the positional channels of a patch network)")
        check_image(cond, "cond")
        if cond.shape != (x.shape[0], k, *x.shape[2:]):
            raise ValueError(f"cond must have shape {(x.shape[0], k, *x.shape[2:])} (B, cond_channels, H, W), "
                             f"got {tuple(cond.shape)}")
        return cond.to(device=x.device, dtype=x.dtype)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self.check_input(x)
        cond = self.check_cond(cond, x)
        emb = self.emb(sinusoidal_embedding(c_noise, self.config.emb_dim))
        h = self.inp(x if cond is None else torch.cat([x, cond], dim=1))
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.out(F.silu(self.out_norm(h)))


class EDMDenoiser(nn.Module):
    """A denoiser D(x, sigma) ~ E[x0 | x0 + sigma z] from a raw network by EDM preconditioning
    (Karras et al. 2022, Eq. 7, Table 1), centred at ``data_mean``.

    >>> D = EDMDenoiser(UNet(UNetConfig(channels=(16, 32), groups=4, emb_dim=32)))
    >>> D(torch.zeros(2, 1, 8, 8), 0.5).shape
    torch.Size([2, 1, 8, 8])

    A network with ``cond_channels`` k takes them as ``D(x, sigma, cond)``, cond (B, k, H, W); they
    enter the network unscaled and are not part of the output.
    """

    def __init__(self, net: UNet):
        super().__init__()
        self.net = net
        self.sigma_data = net.config.sigma_data
        self.data_mean = net.config.data_mean

    def forward(self, x: torch.Tensor, sigma, cond: torch.Tensor | None = None) -> torch.Tensor:
        self.net.check_input(x, "x")
        cond = self.net.check_cond(cond, x)
        s = as_sigma(sigma, x).clamp_min(1e-8)                              # (B, 1, 1, 1)
        sd = self.sigma_data
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        xc = x - self.data_mean
        F_x = self.net(c_in * xc, (s.log() / 4).flatten(), cond)
        return self.data_mean + c_skip * xc + c_out * F_x


def build_denoiser(config: UNetConfig = UNetConfig()) -> EDMDenoiser:
    """A fresh (untrained) UNet wrapped as an EDM denoiser."""
    return EDMDenoiser(UNet(config))
