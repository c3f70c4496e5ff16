"""A noise-level classifier p(σ | x) for phantoms: the σ-step of Denoising MCMC (Kim & Ye, ICML 2023).

DMCMC's Denoising Langevin Gibbs draws σ ~ p(σ | x) ∝ p(σ) p_σ(x) (their Sec. 4). On images p_σ is
unknown, so, as in the paper, a classifier trained on pairs (x0 + σ_i z, i) with i uniform over a
fixed grid of levels stands in for it: the Bayes-optimal classifier of that training distribution
*is* p(σ_i | x) under a uniform prior over the grid, so cross-entropy training targets exactly the
conditional the Gibbs step needs.

The network is small (about 13 k parameters): the image is normalised by its own mean and standard
deviation (whose logarithm goes to the head, since at large σ the spread of x is σ itself), four 3x3
convolutions (three of stride 2) each followed by *log-energy pooling*, the spatial mean of
log(h² + δ) per channel, and a small head that predicts the mean and width of a discretised
Gaussian over log σ (:class:`NoiseLevelNet`). Log-energy pooling is a
learned, robust version of the classical noise estimators (a high-pass filter and a median of its
magnitudes, Donoho & Johnstone, Biometrika 1994): a logarithm averaged over pixels is dominated by the many flat
regions, where a filter's response is noise alone, not by the few edges.

Training reuses :mod:`diffcourse.prior.train`'s pieces: the prior's training data from a seeded
generator (:func:`~diffcourse.prior.train.training_batch`), atomic checkpoints of weights, optimiser
and both generators (a resumed run ends bitwise equal to an uninterrupted one), and provenance with a
SHA-256 on export, loaded by :func:`diffcourse.prior.pretrained.load_noise_level`::

    python -m diffcourse.prior.noise_level --run-dir runs/noise_level \
        --export diffcourse/prior/weights/noise_level_phantom64.pt
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from .._validate import check_image, check_int, check_tensor
from .train import TrainConfig, _atomic_save, _revision, final_loss, held_out_phantoms, portable_path, training_batch

__all__ = ["NoiseLevelConfig", "NoiseLevelNet", "NoiseTrainConfig", "log_p_sigma", "predict_sigma",
           "train_noise_level", "export_noise_level", "log_sigma_error", "main"]


@dataclass(frozen=True)
class NoiseLevelConfig:
    """Architecture and σ grid of :class:`NoiseLevelNet` (plain data, stored in the provenance)."""
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    levels: int = 64
    channels: tuple[int, ...] = (8, 16, 16, 32)
    hidden: int = 64
    delta: float = 1e-6

    def grid(self, dtype=torch.float32) -> torch.Tensor:
        """The L increasing levels, log-spaced from ``sigma_min`` to ``sigma_max``; (L,)."""
        return torch.logspace(math.log10(self.sigma_min), math.log10(self.sigma_max), self.levels,
                              dtype=torch.float64).to(dtype)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseLevelConfig":
        return cls(**{**d, "channels": tuple(d["channels"])})


class NoiseLevelNet(nn.Module):
    """x (B, 1, H, W) -> logits (B, L) over ``config.grid()``; log p(σ_i | x) = log_softmax(logits).

    The head predicts a mean m(x) and a width τ(x) of log σ and returns the logits of a discretised
    Gaussian, -(m - log σ_i)² / (2 τ²): given thousands of pixels the posterior of a noise level is
    unimodal and close to Gaussian in log σ, and a width is one number to learn where free logits
    would need weights large enough to separate neighbouring levels. The mean is written as
    m = log std(x) + log ρ, ρ = sigmoid(u(x)) estimating σ / std(x) <= 1, the noise's share of the
    spread of x: ρ -> 1 at large σ, and at small σ log ρ is
    linear in the log energies of the first layer, whose filters have zero mean (no bias), so that
    flat regions answer with noise alone.

    >>> net = NoiseLevelNet(NoiseLevelConfig(levels=8))
    >>> net(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 8])
    """

    def __init__(self, config: NoiseLevelConfig = NoiseLevelConfig()):
        super().__init__()
        self.config = config
        chans = (1, *config.channels)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=1 if i == 0 else 2, padding=1, bias=i > 0)
                                   for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])))
        n_feat = sum(config.channels) + 1
        self.head = nn.Sequential(nn.Linear(n_feat, config.hidden), nn.SiLU(), nn.Linear(config.hidden, 2))
        self.skip = nn.Linear(n_feat, 2)
        for layer in (self.head[-1], self.skip):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.register_buffer("sigma_grid", config.grid(), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's input: log std of x and the log-energy pooled responses of every layer; (B, 1 + ΣC)."""
        check_image(x, "x")
        flat = x.flatten(1)
        std = flat.std(1).clamp_min(1e-12)                                          # (B,)
        h = (x - flat.mean(1)[:, None, None, None]) / std[:, None, None, None]
        feats = [std.log()[:, None]]
        for i, conv in enumerate(self.convs):
            if i == 0:                                                              # zero-mean filters: high-pass
                h = F.conv2d(h, conv.weight - conv.weight.mean((2, 3), keepdim=True), padding=1)
            else:
                h = conv(F.silu(h))
            feats.append(torch.log(h * h + self.config.delta).mean((2, 3)) / 4)    # (B, C): log-energy pooling
        return torch.cat(feats, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        out = self.head(f) + self.skip(f)                                           # (B, 2)
        m = f[:, 0] + F.logsigmoid(out[:, 0] + 3.0)                                 # log std(x) + log ρ
        log_tau = out[:, 1] - 1.0                                                   # τ starts at e^-1
        z = (m[:, None] - self.sigma_grid.to(f).log()[None]) / log_tau.exp()[:, None]
        return -0.5 * z * z                                                         # (B, L)


def _subset(classifier: NoiseLevelNet, sigma_grid: torch.Tensor | None) -> torch.Tensor:
    """Indices of ``sigma_grid``'s levels in the classifier's grid (all of them when None)."""
    full = classifier.config.grid(torch.float64)
    if sigma_grid is None:
        return torch.arange(full.numel())
    check_tensor(sigma_grid, "sigma_grid", ndim=1)
    s = sigma_grid.detach().to("cpu", torch.float64)
    idx = (s[:, None].log() - full[None].log()).abs().argmin(1)                   # (L',)
    if not torch.allclose(full[idx], s, rtol=1e-5, atol=0) or bool((idx[1:] <= idx[:-1]).any()):
        raise ValueError(f"sigma_grid must be increasing levels of the classifier's grid (logspace from "
                         f"{full[0]:.3g} to {full[-1]:.3g}, {full.numel()} levels), got {s.tolist()[:6]}...")
    return idx


def log_p_sigma(classifier: NoiseLevelNet, sigma_grid: torch.Tensor | None = None):
    """log p(σ | x) from a noise-level classifier, in the form ``dmcmc``'s ``log_p_sigma`` takes.

    ``sigma_grid`` (L',): increasing levels of the classifier's grid (default: all of it). A subset
    means a uniform prior p(σ) over it: Bayes' rule renormalises the classifier's posterior there.
    Returns a callable x (B, 1, H, W) -> (B, L') normalised log-probabilities, without gradients.

    >>> net = NoiseLevelNet(NoiseLevelConfig(levels=8))
    >>> f = log_p_sigma(net, net.config.grid()[2:5])
    >>> p = f(torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))).exp()
    >>> tuple(p.shape), bool(torch.allclose(p.sum(1), torch.ones(3)))
    ((3, 3), True)
    """
    idx = _subset(classifier, sigma_grid)

    def log_p(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = classifier(x.to(next(classifier.parameters()).dtype))
        return torch.log_softmax(logits[:, idx.to(logits.device)].to(x.dtype), dim=1)
    return log_p


def predict_sigma(classifier: NoiseLevelNet, x: torch.Tensor) -> torch.Tensor:
    """The posterior mean of log σ as a point estimate: exp E[log σ | x]; (B,)."""
    p = log_p_sigma(classifier)(x).exp()
    return (p * classifier.sigma_grid.to(p).log()).sum(1).exp()


def log_sigma_error(classifier: NoiseLevelNet, n: int = 64, seed: int = 20_000,
                    x0: torch.Tensor | None = None) -> float:
    """Mean |log σ̂ - log σ| on ``n`` held-out phantoms (:func:`~diffcourse.prior.train.held_out_phantoms`
    from ``seed``, or the images ``x0``), each at a level drawn uniformly from the classifier's grid."""
    g = torch.Generator().manual_seed(seed)
    grid = classifier.config.grid()
    x0 = held_out_phantoms(n, 64, seed) if x0 is None else x0
    sigma = grid[torch.randint(grid.numel(), (x0.shape[0],), generator=g)]
    x = x0 + sigma[:, None, None, None] * torch.randn(x0.shape, generator=g)
    return (predict_sigma(classifier, x).log() - sigma.log()).abs().mean().item()


@dataclass(frozen=True)
class NoiseTrainConfig:
    """Settings of one classifier training run; every field is recorded in the checkpoint."""
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 50
    size: int = 64
    head_fraction: float = 0.75
    #: the training data of :mod:`diffcourse.prior.train` (``DATA_SOURCES``); the default is the
    #: shipped ``phantom64`` prior's: head slices, ellipses and sharp-edged families
    data: str = "phantoms_sharp"
    pool: int = 4096
    seed: int = 0
    checkpoint_every: int = 100
    net: NoiseLevelConfig = field(default_factory=NoiseLevelConfig)

    def to_dict(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, "net": self.net.to_dict()}


def train_noise_level(config: NoiseTrainConfig, run_dir: str | os.PathLike | None = None, *,
                      resume: bool = True, stop_after: int | None = None) -> tuple[NoiseLevelNet, dict]:
    """Train the classifier by cross-entropy on (x0 + σ_i z, i), i uniform over the grid; returns
    (network in eval mode, run state). x0 comes from a pool of ``config.pool`` images of
    ``config.data`` (:func:`~diffcourse.prior.train.training_batch`, drawn once from the seed: drawing
    phantoms costs as much CPU as a training step), flipped left-right at random. Checkpoints in ``run_dir``
    resume exactly, as in :func:`diffcourse.prior.train.train`; ``stop_after`` interrupts after that
    many steps in total."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = NoiseLevelNet(config.net)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    g_data = torch.Generator().manual_seed(config.seed + 1)
    g_noise = torch.Generator().manual_seed(config.seed + 2)
    state = {"step": 0, "losses": [], "config": config.to_dict(), "revision": _revision(), "seconds": 0.0}
    ckpt = Path(run_dir) / "checkpoint.pt" if run_dir is not None else None
    if ckpt is not None and resume and ckpt.exists():
        saved = torch.load(ckpt, weights_only=True)
        if {**saved["config"], "steps": 0} != {**config.to_dict(), "steps": 0}:
            raise ValueError(f"checkpoint {ckpt} was written with other settings; use another run_dir")
        net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        g_data.set_state(saved["g_data"])
        g_noise.set_state(saved["g_noise"])
        state.update(step=saved["step"], losses=list(saved["losses"]), seconds=saved["seconds"])
    grid = config.net.grid()
    data = TrainConfig(batch_size=config.pool, size=config.size, head_fraction=config.head_fraction, data=config.data)
    pool = training_batch(data, torch.Generator().manual_seed(config.seed + 3))
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    t0 = time.perf_counter() - state["seconds"]
    net.train()
    while state["step"] < end:
        for group in opt.param_groups:
            group["lr"] = config.lr * min(1.0, (state["step"] + 1) / config.warmup)
        x0 = pool[torch.randint(config.pool, (config.batch_size,), generator=g_data)]
        x0 = torch.where(torch.rand(config.batch_size, 1, 1, 1, generator=g_data) < 0.5, x0.flip(-1), x0)
        label = torch.randint(grid.numel(), (config.batch_size,), generator=g_noise)
        x = x0 + grid[label][:, None, None, None] * torch.randn(x0.shape, generator=g_noise)
        loss = F.cross_entropy(net(x), label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1
        state["losses"].append(loss.item())
        state["seconds"] = time.perf_counter() - t0
        if ckpt is not None and (state["step"] % config.checkpoint_every == 0 or state["step"] == end):
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            _atomic_save({"model": net.state_dict(), "opt": opt.state_dict(), "g_data": g_data.get_state(),
                          "g_noise": g_noise.get_state(), **state}, ckpt)
    state["final_loss"] = final_loss(state["losses"])
    return net.eval(), state


def export_noise_level(run_dir: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Write ``run_dir``'s weights to ``out`` (.pt) and their provenance to ``out`` with suffix .json
    (kind "noise_level", settings, revision, steps, final loss, held-out error, SHA-256, command)."""
    saved = torch.load(Path(run_dir) / "checkpoint.pt", weights_only=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save({k: v.clone() for k, v in saved["model"].items()}, out)
    net = NoiseLevelNet(NoiseLevelConfig.from_dict(saved["config"]["net"]))
    net.load_state_dict(saved["model"])
    meta = {"kind": "noise_level", "config": {**saved["config"], "steps": saved["step"]},
            "revision": saved["revision"], "steps": saved["step"], "train_seconds": round(saved["seconds"], 1),
            "final_loss": final_loss(saved["losses"]),
            "held_out_log_sigma_error": round(log_sigma_error(net.eval()), 4),
            "torch": torch.__version__, "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
            "command": (f"python -m diffcourse.prior.noise_level --steps {saved['step']} "
                        f"--run-dir {portable_path(run_dir)} --export {portable_path(out)}")}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> None:
    """Command line: train (or continue) the phantom classifier, optionally export shipped weights."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="folder for checkpoint.pt (resumed if present)")
    parser.add_argument("--steps", type=int, default=NoiseTrainConfig.steps)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--export", help="write the weights and provenance here after training")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    net, state = train_noise_level(NoiseTrainConfig(steps=check_int(args.steps, "steps")), args.run_dir)
    print(f"trained {state['step']} steps in {state['seconds']:.0f} s; final loss {state['final_loss']:.4f}; "
          f"held-out mean |log σ̂ - log σ| {log_sigma_error(net):.4f}")
    if args.export:
        meta = export_noise_level(args.run_dir, args.export)
        print(f"exported {args.export} (sha256 {meta['sha256'][:12]}...)")


if __name__ == "__main__":
    main()
