"""A small noise-conditional MLP for low-dimensional data, usable as a denoiser D(x, sigma).

The network predicts the noise (NCSNv2's unitless output, Song & Ermon 2020, Technique 3):
``eps_theta(c_in x, log sigma)`` with ``c_in = 1 / sqrt(sigma_data^2 + sigma^2)`` (Karras et al. 2022,
Eq. 7), so that

    D(x, sigma) = x - sigma eps_theta,     s(x, sigma) = -eps_theta / sigma,

and the sigma^2-weighted DSM loss ``1/2 ||sigma s + z||^2`` is ``1/2 ||eps_theta - z||^2``: every
noise level contributes on the same scale. ``log sigma`` enters with fixed Fourier features.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from diffcourse._validate import as_sigma, check_int, check_positive, check_tensor
from diffcourse.prior.losses import dsm_loss

__all__ = ["MLPDenoiser", "train_dsm"]


class MLPDenoiser(nn.Module):
    """Noise-conditional MLP denoiser D(x, sigma) for x of shape (B, dim) (eps-parameterised, see module).

    ``hidden`` units in ``depth`` SiLU layers; ``n_freq`` Fourier features of log sigma; weights
    drawn from ``generator`` (PyTorch's default uniform(+-1/sqrt(fan_in)) law).

    >>> net = MLPDenoiser(2, generator=torch.Generator().manual_seed(0))
    >>> net(torch.zeros(5, 2), 0.1).shape, net.score(torch.zeros(5, 2), 0.1).shape
    (torch.Size([5, 2]), torch.Size([5, 2]))
    """

    def __init__(self, dim: int, *, hidden: int = 64, depth: int = 3, sigma_data: float = 1.0,
                 n_freq: int = 4, generator: torch.Generator | None = None):
        super().__init__()
        for value, name in ((dim, "dim"), (hidden, "hidden"), (depth, "depth"), (n_freq, "n_freq")):
            check_int(value, name)
        self.dim = dim
        self.sigma_data = check_positive(sigma_data, "sigma_data")
        self.register_buffer("freqs", 0.25 * 2.0 ** torch.arange(n_freq, dtype=torch.float32))
        widths = [dim + 1 + 2 * n_freq] + [hidden] * depth + [dim]
        layers = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [nn.Linear(n_in, n_out)] + ([nn.SiLU()] if i < depth else [])
        self.net = nn.Sequential(*layers)
        self._init(generator)

    @torch.no_grad()
    def _init(self, generator) -> None:
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                for p in (layer.weight, layer.bias):
                    p.copy_((2 * torch.rand(p.shape, generator=generator) - 1) * bound)

    def eps(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The predicted noise eps_theta(x, sigma): (B, dim)."""
        check_tensor(x, "x", ndim=2)
        if x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        s = as_sigma(sigma, x)                                          # (B, 1)
        log_s = torch.log(s.clamp_min(1e-12))
        angles = log_s * self.freqs.to(x.dtype)                         # (B, n_freq)
        c_in = 1.0 / torch.sqrt(self.sigma_data ** 2 + s ** 2)
        h = torch.cat([c_in * x, log_s / 4, torch.sin(angles), torch.cos(angles)], dim=1)
        return self.net(h)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The denoiser D(x, sigma) = x - sigma eps_theta(x, sigma) ~ E[x0 | x]: (B, dim)."""
        return x - as_sigma(sigma, x) * self.eps(x, sigma)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The score s(x, sigma) = -eps_theta(x, sigma) / sigma ~ grad log p_sigma(x): (B, dim)."""
        return -self.eps(x, sigma) / as_sigma(sigma, x)


def train_dsm(net: MLPDenoiser, x0: torch.Tensor, *, steps: int = 500, batch_size: int = 512,
              sigma_min: float = 0.05, sigma_max: float = 3.0, lr: float = 1e-2,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Fit ``net`` by sigma^2-weighted DSM (Song & Ermon 2019, Eq. 2) with Adam; returns the (steps,) losses.

    Each step draws ``batch_size`` rows of ``x0`` (N, dim) and one log-uniform sigma in
    [sigma_min, sigma_max] per row; the learning rate decays by cosine to 0. ``generator`` must live
    on ``x0``'s device.
    """
    check_tensor(x0, "x0", ndim=2)
    for value, name in ((steps, "steps"), (batch_size, "batch_size")):
        check_int(value, name)
    lo, hi = math.log(check_positive(sigma_min, "sigma_min")), math.log(check_positive(sigma_max, "sigma_max"))
    if lo > hi:
        raise ValueError(f"sigma_min must be <= sigma_max, got {sigma_min} > {sigma_max}")
    opt = torch.optim.Adam(net.parameters(), lr=check_positive(lr, "lr"))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    losses = torch.empty(steps)
    for step in range(steps):
        idx = torch.randint(x0.shape[0], (batch_size,), generator=generator, device=x0.device)
        u = torch.rand(batch_size, generator=generator, device=x0.device, dtype=x0.dtype)
        sigma = torch.exp(lo + (hi - lo) * u)                           # (B,)
        loss = dsm_loss(net.score, x0[idx], sigma, generator=generator).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses[step] = loss.detach()
    return losses
