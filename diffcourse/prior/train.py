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
The data sources live in :mod:`diffcourse.prior.training_data` (re-exported here).

Checkpoints hold the weights, the EMA weights, the optimiser and both random generators, written
atomically; a run interrupted and resumed ends bitwise equal to an uninterrupted one on CPU.

Command line (records its settings, code revision and final loss in the checkpoint)::

    python -m diffcourse.prior.train --preset phantom64 --run-dir runs/phantom64
    python -m diffcourse.prior.train --preset phantom64 --run-dir runs/phantom64 \
        --export diffcourse/prior/weights/phantom64.pt
    python -m diffcourse.prior.train --preset brain64 --run-dir runs/brain64 --threads 1
    torchrun --nproc_per_node=4 -m diffcourse.prior.train --preset brain64 --run-dir runs/brain64

Under ``torchrun`` the processes share the work of each batch (:mod:`diffcourse.prior.distributed`):
gloo on CPUs, NCCL with one GPU per process; ``batch_size`` must be a multiple of their number.
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

from . import distributed
from .losses import edm_loss
from .nets import EDMDenoiser, UNetConfig, build_denoiser
from .training_data import (brain_batch, brain_images, brain_patch_batch, fixed_brain_slices,  # noqa: F401
                            held_out_phantoms, kernel_batch, phantom_batch, sharp_phantom_batch,
                            training_batch)

__all__ = ["TrainConfig", "PRESETS", "DATA_SOURCES", "phantom_batch", "brain_batch", "kernel_batch", "training_batch",
           "edm_loss", "train", "export", "held_out_phantoms", "final_loss", "FINAL_LOSS_STEPS", "main"]


#: Training data: "phantoms" (head-like slices and ellipses, :func:`phantom_batch`) or "brain" (posed
#: MNI152 slices in mixed synthetic contrasts, :func:`brain_batch`), "brain_coronal" (the same in
#: coronal orientation: the perpendicular prior of TPDM, Lee et al., ICCV 2023), "phantoms_sharp" (the
#: phantoms with sharp-edged families beside them, :func:`sharp_phantom_batch`), "kernels" (blur kernels as
#: images, :func:`kernel_batch`: the kernel prior of blind deblurring, Chung et al., CVPR 2023),
#: "brain_patches" (patches of zero-padded "brain" slices with their two positional channels,
#: :func:`brain_patch_batch`: the patch prior of PaDIS, Hu et al., NeurIPS 2024).
DATA_SOURCES = ("phantoms", "brain", "brain_coronal", "phantoms_sharp", "kernels", "brain_patches")


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
    #: weights file (a state dict, e.g. shipped EMA weights) the network and its EMA start from, as a
    #: path relative to the repository (:func:`portable_path`); None: random initial weights
    init: str | None = None
    #: the learning rate falls linearly to ``lr * lr_final`` over the last ``lr_decay_steps`` steps
    #: (0: constant after warm-up). A run resumes across a change of ``steps`` or of the decay as
    #: long as the two schedules agree up to the checkpoint's step (e.g. a decay added at its end).
    lr_decay_steps: int = 0
    lr_final: float = 0.1
    #: side of the training patches ("brain_patches"; the images are ``size`` x ``size``); 0: whole images
    patch_size: int = 0
    #: train on a fixed set of this many slices (drawn once, from seed + 3; "brain", "brain_patches"),
    #: for data-efficiency experiments; 0: fresh random slices every step
    n_images: int = 0

    def __post_init__(self):
        if self.data not in DATA_SOURCES:
            raise ValueError(f"data must be one of {DATA_SOURCES}, got {self.data!r}")
        if (self.data == "brain_patches") != (self.patch_size > 0):
            raise ValueError(f"patch_size > 0 goes with data='brain_patches' only, got patch_size="
                             f"{self.patch_size!r} with data={self.data!r}")
        if self.n_images < 0 or (self.n_images and self.data not in ("brain", "brain_patches")):
            raise ValueError(f"n_images must be >= 0, and > 0 only with data 'brain' or 'brain_patches', "
                             f"got {self.n_images!r} with data={self.data!r}")
        if self.init is not None and not isinstance(self.init, str):
            raise ValueError(f"init must be a path to a weights file or None, got {self.init!r}")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["net"] = self.net.to_dict()
        if d["data"] == "phantoms":             # the default: left out, so records made before the
            del d["data"]                       # field existed stay exactly as they were
        if d["init"] is None:
            del d["init"]
        if d["lr_decay_steps"] == 0:            # no decay: records stay as they were before the fields
            del d["lr_decay_steps"], d["lr_final"]
        for key in ("patch_size", "n_images"):  # defaults left out, as "data" above
            if d[key] == 0:
                del d[key]
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
#: (Measured: 1500 more steps with the learning rate falling linearly to a tenth, ``--steps 6500`` with
#: ``lr_decay_steps=1500``, gained only 0.1 dB at sigma = 0.1 on held-out slices; not shipped.)
#: Steps of ``brain64_coronal``: fewer, so that it trains within a session beside ``brain64``.
BRAIN64_CORONAL_STEPS = 3000

#: Steps of ``phantom64_sharp``, the fine-tuning of the first phantom64 on the sharp-edged mix.
PHANTOM64_SHARP_STEPS = 1500
#: Where ``phantom64_sharp`` expects the first phantom64's weights (``--preset phantom64 --steps 10000``,
#: SHA-256 in :data:`PHANTOM64_BASE_SHA256`); write them there with
#: ``git show 63b2616:diffcourse/prior/weights/phantom64.pt > runs/phantom64_base.pt``, or train them.
PHANTOM64_BASE = "runs/phantom64_base.pt"
PHANTOM64_BASE_SHA256 = "eba45d70b604f6bcfd2675ddadc48f10b78e360095e950d94519b38b58bbed73"

#: Steps of the ``patch`` preset: batches of 64 patches of 14 x 14 px, about a third of a ``brain64`` step
#: (0.5 s on one idle CPU thread), so about 50 minutes.
PATCH_STEPS = 6000
#: Steps of the data-efficiency presets ``patch_n16``, ``patch_n128``, ``whole_n16``, ``whole_n128``.
DATA_EFFICIENCY_STEPS = 1000

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
    # phantom64 fine-tuned on a mix with sharp-edged families, so that it fails gracefully on
    # piecewise-constant images (Shepp-Logan); starts from the first phantom64 (see PHANTOM64_BASE)
    "phantom64_sharp": TrainConfig(steps=PHANTOM64_SHARP_STEPS, lr=2e-4, warmup=50, data="phantoms_sharp",
                                   init=PHANTOM64_BASE),
    # blur kernels on a 16 x 16 canvas (kernel/image = 1/4 on 64-px images, as BlindDPS's 64-px kernels
    # for 256-px images); 0.15 s a step on one idle CPU thread, ~1 s on a shared one
    "kernel": TrainConfig(steps=3000, batch_size=32, lr=1e-3, warmup=100, ema_decay=0.995, size=16,
                          checkpoint_every=500, data="kernels",
                          net=UNetConfig(channels=(16, 32, 32), groups=4, emb_dim=64, sigma_data=0.2,
                                         data_mean=0.0)),
    # PaDIS's patch prior (Hu et al., NeurIPS 2024): 14-px patches of 64-px brain slices padded by 6 px,
    # the paper's 56-px patches and 24-px padding on 256-px images scaled by 1/4; a two-level UNet
    # (14 -> 7 px) with the two positional channels as input (see PATCH_STEPS for the time)
    "patch": TrainConfig(steps=PATCH_STEPS, batch_size=64, lr=1e-3, warmup=200, checkpoint_every=500,
                         data="brain_patches", patch_size=14,
                         net=UNetConfig(channels=(32, 64), blocks_per_level=2, cond_channels=2)),
    # data efficiency (benchmarks/padis_data_efficiency.py): a patch prior and a whole-image prior of about
    # the same size (0.97 M and 1.08 M parameters) trained on the same fixed 16 or 128 brain slices, for
    # the same steps and slices seen (8 per step: 64 patches of 8 slices, or 8 whole slices); short runs,
    # 0.55 s (patch) and 0.6-0.8 s (whole) a step on one CPU thread, so 10-15 CPU-minutes each
    **{f"{kind}_n{n}": TrainConfig(steps=DATA_EFFICIENCY_STEPS, batch_size=batch, lr=1e-3, warmup=200,
                                   ema_decay=0.995, checkpoint_every=250, n_images=n, **extra)
       for n in (16, 128) for kind, batch, extra in (
           ("patch", 64, dict(data="brain_patches", patch_size=14,
                              net=UNetConfig(channels=(32, 64), blocks_per_level=2, cond_channels=2))),
           ("whole", 8, dict(data="brain", net=UNetConfig(channels=(32, 64, 64)))))},
}


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


_SCHEDULE = ("steps", "lr_decay_steps", "lr_final")


def _lr_at(step: int, cfg: TrainConfig) -> float:
    decay = cfg.lr_decay_steps
    if decay and step >= cfg.steps - decay:
        done = (step - (cfg.steps - decay) + 1) / decay
        return cfg.lr * (1 - (1 - cfg.lr_final) * done)
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))


def train(config: TrainConfig, run_dir: str | os.PathLike | None = None, *, resume: bool = True,
          stop_after: int | None = None, progress: bool = False,
          callback: Callable[[int, float], None] | None = None,
          device: str | torch.device | None = None) -> tuple[EDMDenoiser, dict]:
    """Train a denoiser on ``config.data``; returns (EMA denoiser in eval mode, state dict of the run).

    ``run_dir`` holds ``checkpoint.pt`` (written every ``checkpoint_every`` steps and at the end);
    with ``resume=True`` an existing checkpoint there is continued exactly. ``stop_after`` ends the
    call early after that many steps in total (an interruption, for tests). The returned state has
    ``step``, ``losses`` (per step), ``final_loss`` (mean of the last :data:`FINAL_LOSS_STEPS`
    steps), ``config``, ``revision`` and ``seconds``; the checkpoint holds the same.

    Under ``torchrun`` (a process group joined, :func:`diffcourse.prior.distributed.init_from_env`)
    each of W processes trains the network on B / W images of the same global batch, with gradients
    averaged by DistributedDataParallel: the run equals one process's up to float rounding, rank 0
    writes the checkpoint, and any W resumes it (:mod:`diffcourse.prior.distributed`). ``device``:
    where the network trains (default CPU); data and noise are always drawn on the CPU.
    """
    rank, world_size = distributed.world()
    part = distributed.part(config.batch_size, rank, world_size)
    device = torch.device("cpu" if device is None else device)
    with torch.random.fork_rng(devices=[]):             # initial weights, global RNG left untouched
        torch.manual_seed(config.seed)
        model = build_denoiser(config.net)
    if config.init is not None:
        init = Path(config.init) if Path(config.init).is_absolute() else _REPO / config.init
        if not init.exists():
            raise FileNotFoundError(f"init weights {init} not found (TrainConfig.init={config.init!r}); "
                                    f"see the preset's comment in diffcourse/prior/train.py for how to make them")
        model.load_state_dict(torch.load(init, map_location="cpu", weights_only=True))
    model.to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    g_data = torch.Generator().manual_seed(config.seed + 1)
    g_noise = torch.Generator().manual_seed(config.seed + 2)
    state = {"step": 0, "losses": [], "config": config.to_dict(), "revision": _revision(), "seconds": 0.0}
    ckpt = Path(run_dir) / "checkpoint.pt" if run_dir is not None else None
    if ckpt is not None and resume and ckpt.exists():
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        old = TrainConfig.from_dict(saved["config"])
        same_rest = dataclasses.replace(old, **{k: getattr(config, k) for k in _SCHEDULE}) == config
        if not same_rest or any(_lr_at(i, old) != _lr_at(i, config) for i in range(saved["step"])):
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
        if ckpt is None or rank != 0:                   # one writer: all processes hold the same state
            return
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                      "g_data": g_data.get_state(), "g_noise": g_noise.get_state(), **state}, ckpt)

    end = config.steps if stop_after is None else min(config.steps, stop_after)
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.steps, initial=state["step"], desc="training")
    model.train()
    net = model if world_size == 1 else distributed.wrap(model, device)
    t0 = time.perf_counter() - state["seconds"]
    while state["step"] < end:
        step = state["step"]
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, config)
        x0 = training_batch(config, g_data)
        if world_size == 1 and device.type == "cpu":
            loss = edm_loss(model, x0, g_noise, config.P_mean, config.P_std, config.net.sigma_data,
                            cond_channels=config.net.cond_channels).mean()
            value = loss.item()
        else:                                           # this process's part; the whole batch's mean
            loss = distributed.part_loss(net, x0, g_noise, part, device, P_mean=config.P_mean,
                                         P_std=config.P_std, sigma_data=config.net.sigma_data,
                                         cond_channels=config.net.cond_channels).mean()
            value = distributed.mean_over_processes(loss.item())
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at step {step}; lower lr "
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
        state["losses"].append(value)
        state["seconds"] = time.perf_counter() - t0
        state["final_loss"] = final_loss(state["losses"])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}")
        if callback is not None:
            callback(state["step"], value)
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
    weights = {k: v.detach().cpu().clone() for k, v in saved["ema"].items()}
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
        **({"init_sha256": hashlib.sha256((_REPO / saved["config"]["init"]).read_bytes()).hexdigest()}
           if saved["config"].get("init") else {}),
        "command": (f"python -m diffcourse.prior.train --preset {preset} --steps {saved['step']} "
                    f"--run-dir {portable_path(run_dir)} --export {portable_path(out)}"),
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


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
    device = distributed.init_from_env()               # torchrun: join its processes (else nothing)
    try:
        _, state = train(config, args.run_dir, progress=True, device=device)
    finally:
        rank = distributed.world()[0]
        distributed.finish()
    if rank != 0:                                       # rank 0 wrote the checkpoint and reports
        return
    n_tail = min(len(state["losses"]), FINAL_LOSS_STEPS)
    print(f"trained {state['step']} steps in {state['seconds']:.0f} s; "
          f"mean loss of the last {n_tail} steps {state['final_loss']:.4f}")
    if args.export:
        meta = export(args.run_dir, args.export, args.preset)
        print(f"exported {args.export} (sha256 {meta['sha256'][:12]}...)")


if __name__ == "__main__":
    main()
