"""Training a denoiser by denoising score matching, with EMA weights and exact, resumable checkpoints.

The loss is denoising score matching (Vincent 2011) written for the denoiser, with the noise-level
distribution and weighting of EDM (Karras et al. 2022, Eq. 8 and Table 1):

    L = E_{sigma, x0, z} lambda(sigma) || D(x0 + sigma z, sigma) - x0 ||^2,
    ln sigma ~ N(P_mean, P_std^2),   lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2,

which equals ||sigma s(x, sigma) + z||^2 up to the weight (Tweedie: s = (D - x) / sigma^2).
Training data are phantoms drawn afresh every step from a seeded generator (head-like slices and
random ellipses), so there is no data set to download and the run is reproducible from its settings.
With ``data="brain"`` (preset ``brain64``) they are random views of the MNI ICBM152 template in mixed
synthetic contrasts (:func:`diffcourse.data.brain_slices`, Fonov et al. 2011), outside its held-out slab.

Checkpoints hold the weights, the EMA weights, the optimiser and both random generators, written
atomically; a run interrupted and resumed ends bitwise equal to an uninterrupted one on CPU.

Command line (records its settings, code revision and final loss in the checkpoint)::

    python -m diffcourse.prior.train --preset phantom64 --run-dir runs/phantom64
    python -m diffcourse.prior.train --preset phantom64 --run-dir runs/phantom64 \
        --export diffcourse/prior/weights/phantom64.pt
    python -m diffcourse.prior.train --preset brain64 --run-dir runs/brain64 --threads 1
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .. import phantoms
from .losses import edm_loss
from .nets import EDMDenoiser, UNetConfig, build_denoiser

__all__ = ["TrainConfig", "PRESETS", "DATA_SOURCES", "phantom_batch", "brain_batch", "training_batch", "edm_loss",
           "train", "export", "held_out_phantoms", "final_loss", "FINAL_LOSS_STEPS", "main"]


#: Training data: "phantoms" (head-like slices and ellipses, :func:`phantom_batch`) or "brain" (posed
#: MNI152 slices in mixed synthetic contrasts, :func:`brain_batch`), "brain_coronal" (the same in
#: coronal orientation: the perpendicular prior of TPDM, Lee et al., ICCV 2023).
DATA_SOURCES = ("phantoms", "brain", "brain_coronal")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; every field is recorded in the checkpoint."""
    steps: int = 20000
    batch_size: int = 16
    lr: float = 5e-4
    warmup: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    P_mean: float = -1.2
    P_std: float = 1.2
    size: int = 64
    head_fraction: float = 0.75
    seed: int = 0
    checkpoint_every: int = 200
    net: UNetConfig = field(default_factory=lambda: UNetConfig(channels=(32, 64, 64, 96)))
    data: str = "phantoms"

    def __post_init__(self):
        if self.data not in DATA_SOURCES:
            raise ValueError(f"data must be one of {DATA_SOURCES}, got {self.data!r}")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["net"] = self.net.to_dict()
        if d["data"] == "phantoms":             # the default: left out, so records made before the
            del d["data"]                       # field existed stay exactly as they were
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["net"] = UNetConfig.from_dict(d["net"])
        return cls(**d)


#: Steps of the ``brain64`` preset: 1.5 s per step at batch 16 on one idle CPU thread (0.7 s on two), about
#: 4 s on a busy shared machine, where one thread beats two (threads stall waiting for each other).
#: Stopping at a checkpoint after N steps equals ``--steps N`` (constant learning rate after warm-up).
BRAIN64_STEPS = 5000
#: Steps of ``brain64_coronal``: fewer, so that it trains within a session beside ``brain64``.
BRAIN64_CORONAL_STEPS = 3000

#: Named presets for the command line. ``phantom64`` is the shipped prior; ``tiny`` is the model
#: lesson 05 trains in about 40 s on a laptop CPU (600 steps of batch 8 at 32 x 32).
PRESETS: dict[str, TrainConfig] = {
    "phantom64": TrainConfig(),
    "tiny": TrainConfig(steps=600, batch_size=8, lr=2e-3, warmup=20, size=32, ema_decay=0.95,
                        checkpoint_every=50,
                        net=UNetConfig(channels=(16, 32, 32), groups=4, emb_dim=64,
                                       attention_at_bottom=False)),
    # the phantom64 network on real anatomy (2 h on an idle CPU thread)
    "brain64": TrainConfig(steps=BRAIN64_STEPS, data="brain"),
    # the same network on coronal slices (the second, perpendicular prior of TPDM)
    "brain64_coronal": TrainConfig(steps=BRAIN64_CORONAL_STEPS, data="brain_coronal"),
}


def brain_batch(n: int, size: int, generator: torch.Generator, orientation: str = "axial") -> torch.Tensor:
    """n training images: posed MNI152 slices (axial by default) outside the held-out slab, each in a
    random (synthetic) contrast; see :func:`diffcourse.data.brain_slices`."""
    from .. import data

    return data.brain_slices(n, size, generator, orientation=orientation, contrast="mixed", split="train")


def training_batch(config: "TrainConfig", generator: torch.Generator) -> torch.Tensor:
    """One batch of the configured training data (B, 1, size, size) in [0, 1]."""
    if config.data == "brain":
        return brain_batch(config.batch_size, config.size, generator)
    if config.data == "brain_coronal":
        return brain_batch(config.batch_size, config.size, generator, orientation="coronal")
    return phantom_batch(config.batch_size, config.size, generator, config.head_fraction)


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


def _revision() -> str:
    try:
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


FINAL_LOSS_STEPS = 500


def final_loss(losses: list[float]) -> float:
    """The loss a run reports: the mean over its last ``FINAL_LOSS_STEPS`` steps (or all, if fewer)."""
    tail = losses[-FINAL_LOSS_STEPS:]
    return sum(tail) / max(len(tail), 1)


def _lr_at(step: int, cfg: TrainConfig) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))


def train(config: TrainConfig, run_dir: str | os.PathLike | None = None, *, resume: bool = True,
          stop_after: int | None = None, progress: bool = False,
          callback: Callable[[int, float], None] | None = None) -> tuple[EDMDenoiser, dict]:
    """Train a denoiser on ``config.data``; returns (EMA denoiser in eval mode, state dict of the run).

    ``run_dir`` holds ``checkpoint.pt`` (written every ``checkpoint_every`` steps and at the end);
    with ``resume=True`` an existing checkpoint there is continued exactly. ``stop_after`` ends the
    call early after that many steps in total (an interruption, for tests). The returned state has
    ``step``, ``losses`` (per step), ``final_loss`` (mean of the last :data:`FINAL_LOSS_STEPS`
    steps), ``config``, ``revision`` and ``seconds``; the checkpoint holds the same.
    """
    with torch.random.fork_rng(devices=[]):             # initial weights, global RNG left untouched
        torch.manual_seed(config.seed)
        model = build_denoiser(config.net)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    g_data = torch.Generator().manual_seed(config.seed + 1)
    g_noise = torch.Generator().manual_seed(config.seed + 2)
    state = {"step": 0, "losses": [], "config": config.to_dict(), "revision": _revision(), "seconds": 0.0}
    ckpt = Path(run_dir) / "checkpoint.pt" if run_dir is not None else None
    if ckpt is not None and resume and ckpt.exists():
        saved = torch.load(ckpt, weights_only=True)
        if {**saved["config"], "steps": 0} != {**config.to_dict(), "steps": 0}:
            raise ValueError(f"checkpoint {ckpt} was written with other settings; use another "
                             f"run_dir or resume=False")
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["opt"])
        g_data.set_state(saved["g_data"])
        g_noise.set_state(saved["g_noise"])
        state.update(step=saved["step"], losses=list(saved["losses"]), seconds=saved["seconds"])
    state["final_loss"] = final_loss(state["losses"])

    def save():
        if ckpt is None:
            return
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                      "g_data": g_data.get_state(), "g_noise": g_noise.get_state(), **state}, ckpt)

    end = config.steps if stop_after is None else min(config.steps, stop_after)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.steps, initial=state["step"], desc="training")
    model.train()
    t0 = time.perf_counter() - state["seconds"]
    while state["step"] < end:
        step = state["step"]
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, config)
        x0 = training_batch(config, g_data)
        loss = edm_loss(model, x0, g_noise, config.P_mean, config.P_std, config.net.sigma_data).mean()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"training loss became {loss.item()} at step {step}; lower lr "
                                     f"(now {config.lr}) or grad_clip, and resume from {ckpt}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1 - decay)
        state["step"] = step + 1
        state["losses"].append(loss.item())
        state["seconds"] = time.perf_counter() - t0
        state["final_loss"] = final_loss(state["losses"])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if callback is not None:
            callback(state["step"], loss.item())
        if state["step"] % config.checkpoint_every == 0 or state["step"] == end:
            save()
    if bar is not None:
        bar.close()
    return ema.eval(), state


_REPO = Path(__file__).resolve().parents[2]


def portable_path(path: str | os.PathLike, root: str | os.PathLike = _REPO) -> str:
    """``path`` as a recorded command shows it: relative to the repository ``root`` when it lies
    inside it; else as given when it is relative; else (an absolute path elsewhere, which would
    only record the machine it ran on) its last component alone.

    >>> outside = Path("/") / "elsewhere" / "phantom64"          # an absolute path outside the repository
    >>> portable_path(_REPO / "runs" / "phantom64"), portable_path(outside)
    ('runs/phantom64', 'phantom64')
    """
    path = Path(path)
    try:
        return path.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return path.as_posix() if not path.is_absolute() else path.name


def export(run_dir: str | os.PathLike, out: str | os.PathLike, preset: str = "<preset>") -> dict:
    """Write the EMA weights of ``run_dir``'s checkpoint to ``out`` (.pt) and its provenance to
    ``out`` with suffix .json (settings, revision, steps, final loss, SHA-256 of the .pt, and the
    command that reproduces it, with paths relative to the repository: :func:`portable_path`)."""
    import hashlib
    import json

    saved = torch.load(Path(run_dir) / "checkpoint.pt", weights_only=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.clone() for k, v in saved["ema"].items()}
    _atomic_save(weights, out)
    losses = saved["losses"]
    meta = {
        # the settings of the run as exported: its step count is the number of steps actually taken,
        # so that `--steps N` in the recorded command reproduces exactly this config
        "config": {**saved["config"], "steps": saved["step"]}, "revision": saved["revision"], "steps": saved["step"],
        "train_seconds": round(saved["seconds"], 1),
        "final_loss": final_loss(losses),
        "torch": torch.__version__,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "command": (f"python -m diffcourse.prior.train --preset {preset} --steps {saved['step']} "
                    f"--run-dir {portable_path(run_dir)} --export {portable_path(out)}"),
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def held_out_phantoms(n: int = 16, size: int = 64, seed: int = 10_000) -> torch.Tensor:
    """Phantoms for evaluation, drawn from a seed no training run uses (training seeds are
    ``seed + 1`` of a :class:`TrainConfig`, small integers): 3/4 head slices, 1/4 ellipses."""
    g = torch.Generator().manual_seed(seed)
    n_head = (3 * n) // 4
    parts = [phantoms.head(n_head, size, generator=g)] if n_head else []
    if n > n_head:
        parts.append(phantoms.ellipses(n - n_head, size, generator=g))
    return torch.cat(parts)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: train (or continue) a preset, optionally export shipped weights."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="phantom64")
    parser.add_argument("--run-dir", required=True, help="folder for checkpoint.pt (resumed if present)")
    parser.add_argument("--steps", type=int, help="override the preset's number of steps")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--export", help="write the EMA weights and provenance here after training")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = PRESETS[args.preset]
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps)
    _, state = train(config, args.run_dir, progress=True)
    n_tail = min(len(state["losses"]), FINAL_LOSS_STEPS)
    print(f"trained {state['step']} steps in {state['seconds']:.0f} s; "
          f"mean loss of the last {n_tail} steps {state['final_loss']:.4f}")
    if args.export:
        meta = export(args.run_dir, args.export, args.preset)
        print(f"exported {args.export} (sha256 {meta['sha256'][:12]}...)")


if __name__ == "__main__":
    main()
