"""Data efficiency of a patch prior against a whole-image prior (PaDIS, Hu, Song, Xu, Shen & Fessler,
NeurIPS 2024, after their ablation of the training-set size): both trained on the same few brain slices.

The four training runs are the presets ``patch_n16``, ``patch_n128``, ``whole_n16``, ``whole_n128`` of
:mod:`diffcourse.prior.train`: a fixed set of n = 16 or 128 posed, mixed-contrast MNI152 slices (the
16 are the first 16 of the 128), a patch network (14-px patches, two positional channels, 0.97 M
parameters) or a whole-image UNet of about the same size (1.08 M), the same 1000 steps and 8 slices
per step (64 patches cut from 8 slices, or 8 whole slices)::

    for X in patch_n16 patch_n128 whole_n16 whole_n128; do
        python -m diffcourse.prior.train --preset $X --run-dir runs/eff/$X --threads 1
    done
    python benchmarks/padis_data_efficiency.py --runs runs/eff --json benchmarks/results/padis_data_efficiency.json

Measured, from the EMA weights of each run:

1. Tweedie denoising PSNR at σ = 0.1, 0.2 and 0.5 on 8 held-out slices (split "test", seed 20 010, the
   slices of tools/eval_patch.py) and on 8 training slices (the first 8 of the fixed set, in every
   run's training set); their difference is the memorisation gap. The shipped priors ``patch`` and
   ``brain64``, trained on fresh slices at every step, give the gap that the two sets' difference alone
   makes (held-out slices come from a slab of the brain no training slice crosses; oracle-tuned TV,
   the classical reference, also gains 1.8 dB on the training slices).
2. 20-view CT (``tasks.make("ct20", ...)``) of ``--n-ct`` held-out slices (seed 20 020, the first two
   are tools/eval_patch.py's): PaDIS (``solvers.padis``) with each of the four priors and the two
   shipped ones, DPS with the whole-image priors (the ct20 table's settings, tuned for brain64), FBP and
   ADMM-TV. PaDIS runs a short schedule that starts from the clamped FBP image (the official code's
   start, :func:`solvers.padis_start_pinv` with FBP for A⁺) at a low ``--sigma-max``: the EDM grid of
   ``--levels`` levels down to ``--sigma-min``, ``--inner`` steps each, ``--zeta`` (chosen with the
   shipped patch prior on another held-out slice, seed 20 030, FBP 21.9 dB: 15 x 10 steps from σ = 0.5
   gave 25.4 dB there, 20 x 10 from σ = 1 25.3 dB, 20 x 4 23.9 dB at best, and the paper's 100 x 10
   from noise at σ = 10 26.2 dB; ``--start noise --sigma-max 10 --levels 100 --zeta 0.02`` runs the
   latter).
   PSNR of the reconstruction clipped to [0, 1], per image.

The whole run takes about 7 minutes on one (shared) CPU thread.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffcourse import data, metrics
from diffcourse.posterior import solvers, tasks
from diffcourse.posterior.tv import tv_denoise_tuned
from diffcourse.prior import pretrained
from diffcourse.prior.nets import UNetConfig, build_denoiser
from diffcourse.prior.patches import PatchDenoiser
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.train import fixed_brain_slices

NAMES = ("patch_n16", "patch_n128", "whole_n16", "whole_n128")
SIGMAS = (0.1, 0.2, 0.5)
TV_WEIGHTS = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.14, 0.2, 0.3, 0.4, 0.6]


def load_run(run_dir: Path) -> tuple[torch.nn.Module, dict]:
    """The EMA denoiser of a training run (patch priors assembled into a :class:`PatchDenoiser`) and
    a summary of the run."""
    saved = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    cfg = saved["config"]
    net = build_denoiser(UNetConfig.from_dict(cfg["net"]))
    net.load_state_dict(saved["ema"])
    net = net.eval().requires_grad_(False)
    info = {"steps": saved["step"], "train_seconds": round(saved["seconds"], 1),
            "final_loss": saved["final_loss"], "n_images": cfg.get("n_images", 0),
            "batch_size": cfg["batch_size"], "patch_size": cfg.get("patch_size", 0),
            "parameters": sum(p.numel() for p in net.parameters())}
    D = PatchDenoiser(net, cfg["patch_size"]) if cfg.get("patch_size") else net
    return D, info


def reseed(D, seed: int = 0) -> None:
    """Fix the random grid shifts of a patch prior (a whole-image denoiser has none)."""
    if hasattr(D, "generator"):
        D.generator = torch.Generator().manual_seed(seed)


def denoising(priors: dict, sets: dict) -> list[dict]:
    rows = []
    for set_name, x0 in sets.items():
        g = torch.Generator().manual_seed(3)
        for sigma in SIGMAS:
            y = x0 + sigma * torch.randn(x0.shape, generator=g)
            tv, _ = tv_denoise_tuned(y, x0, TV_WEIGHTS, n_iter=150)
            rows.append({"prior": "TV (oracle-tuned)", "set": set_name, "sigma": sigma,
                         "psnr": metrics.psnr(tv, x0).mean().item()})
            for name, D in priors.items():
                reseed(D)
                with torch.no_grad():
                    d = D(y, sigma)
                rows.append({"prior": name, "set": set_name, "sigma": sigma,
                             "psnr": metrics.psnr(d, x0).mean().item()})
            print(f"denoising {set_name:9s} sigma={sigma}: "
                  + "  ".join(f"{r['prior']} {r['psnr']:.2f}" for r in rows if r["set"] == set_name
                              and r["sigma"] == sigma), flush=True)
    return rows


def ct20(priors: dict, n: int, levels: int, inner: int, zeta: float, sigma_min: float, sigma_max: float,
         start: str) -> dict:
    x0 = data.brain_slices(n, 64, torch.Generator().manual_seed(20_020), contrast="mixed", split="test")
    lik = tasks.make("ct20", x0, torch.Generator().manual_seed(2))
    fbp = tasks.baseline("ct20", lik).clamp(0, 1)
    out = {"fbp (hann)": {"psnr": metrics.psnr(fbp, x0).tolist()},
           "admm-tv": {"psnr": metrics.psnr(tasks.admm_tv_tuned("ct20", lik).clamp(0, 1), x0).tolist()}}
    for name, D in priors.items():
        whole = not isinstance(D, PatchDenoiser)
        runs = [("padis", None)] + ([("dps", tasks.settings("ct20", "dps"))] if whole else [])
        for method, kw in runs:
            g = torch.Generator().manual_seed(0)
            reseed(D)
            t = time.perf_counter()
            if method == "padis":
                x = fbp.clone() if start == "fbp" else solvers.padis_start_noise(x0.shape, sigma_max, generator=g)
                rec = solvers.padis(D, x, karras_sigmas(levels, sigma_min, sigma_max), lik, zeta=zeta,
                                    n_inner=inner, generator=g)
            else:
                x = solvers.padis_start_noise(x0.shape, float(kw["sigmas"][0]), generator=g)
                rec = solvers.dps(D, x, lik=lik, generator=g, **kw)
            out[f"{method} + {name}"] = {"psnr": metrics.psnr(rec.clamp(0, 1), x0).tolist(),
                                         "seconds": round(time.perf_counter() - t, 1)}
    for name, r in out.items():
        print(f"ct20 {name:20s} {sum(r['psnr']) / n:6.2f} dB  {[round(v, 2) for v in r['psnr']]}", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/eff", help="folder holding the four run folders")
    parser.add_argument("--names", nargs="+", default=list(NAMES), help="the runs to measure")
    parser.add_argument("--n-ct", type=int, default=6, help="held-out slices for the CT comparison")
    parser.add_argument("--levels", type=int, default=15, help="PaDIS levels (the paper's CT runs: 100)")
    parser.add_argument("--inner", type=int, default=10, help="PaDIS steps per level (the paper: 10)")
    parser.add_argument("--zeta", type=float, default=0.05)
    parser.add_argument("--sigma-min", type=float, default=0.02)
    parser.add_argument("--sigma-max", type=float, default=0.5, help="(the paper: 10, from noise)")
    parser.add_argument("--start", choices=("fbp", "noise"), default="fbp")
    parser.add_argument("--no-ct", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    priors, runs = {}, {}
    for name in args.names:
        priors[name], runs[name] = load_run(Path(args.runs) / name)
        print(name, runs[name], flush=True)
    shipped = {"patch (shipped)": pretrained.load("patch"), "brain64 (shipped)": pretrained.load("brain64")}
    sets = {"held-out": data.brain_slices(8, 64, torch.Generator().manual_seed(20_010), contrast="mixed",
                                          split="test"),
            "train": fixed_brain_slices(16, 64, 0)[:8]}
    result = {"command": "python benchmarks/padis_data_efficiency.py " + " ".join(argv or []),
              "runs": runs, "denoising": denoising({**priors, **shipped}, sets)}
    if not args.no_ct:
        padis = {"levels": args.levels, "inner": args.inner, "zeta": args.zeta, "sigma_min": args.sigma_min,
                 "sigma_max": args.sigma_max, "start": args.start}
        result["ct20"] = {"n_images": args.n_ct, "padis": padis,
                          "results": ct20({**priors, **shipped}, args.n_ct, **padis)}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"total {result['seconds']:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
