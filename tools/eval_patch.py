"""Measure the patch prior (``--preset patch``; PaDIS, Hu et al., NeurIPS 2024) against ``brain64``.

1. Tweedie denoising on held-out brain slices (split="test", the same 8 mixed-contrast slices as
   tests/test_pretrained_brain.py): PSNR of the noisy input, of the assembled patch denoiser (one
   random shift; and the mean over 8 shifts, the paper's "patch averaging"), of brain64 and of the
   oracle-tuned TV denoiser, at sigma = 0.1, 0.2, 0.5.
2. 20-view CT (``tasks.make("ct20", ...)``) of 2 held-out slices: PaDIS with the patch prior, PaDIS
   with brain64 (the same solver, the whole-image prior), DPS with brain64 (the table's settings),
   FBP and ADMM-TV. PaDIS's zeta and sigma_min are tuned on one separate held-out slice (another seed);
   the schedule is the code's EDM grid, 100 levels x 10 steps from sigma_max = 10.

    python tools/eval_patch.py --run-dir /work/runs/patch                # a training run (EMA weights)
    python tools/eval_patch.py --weights diffcourse/prior/weights/patch.pt --ct
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_prior import denoising_table  # noqa: E402  (the sibling script's table)

from diffcourse import data, metrics  # noqa: E402
from diffcourse.posterior import solvers, tasks  # noqa: E402
from diffcourse.prior import pretrained  # noqa: E402
from diffcourse.prior.nets import UNetConfig, build_denoiser  # noqa: E402
from diffcourse.prior.patches import PatchDenoiser  # noqa: E402
from diffcourse.prior.processes import karras_sigmas  # noqa: E402


def load_patch(run_dir: str | None, weights: str | None) -> tuple[PatchDenoiser, int]:
    if weights:
        meta = json.loads(Path(weights).with_suffix(".json").read_text())
        state, step = torch.load(weights, weights_only=True), meta["steps"]
    else:
        meta = torch.load(f"{run_dir}/checkpoint.pt", weights_only=True)
        state, step = meta["ema"], meta["step"]
    net = build_denoiser(UNetConfig.from_dict(meta["config"]["net"]))
    net.load_state_dict(state)
    return PatchDenoiser(net.eval().requires_grad_(False), meta["config"]["patch_size"]), step


class ShiftAverage(torch.nn.Module):
    """The mean of ``n`` calls of a randomly shifted patch denoiser (the paper's "patch averaging")."""

    def __init__(self, D, n: int = 8):
        super().__init__()
        self.D, self.n = D, n

    def forward(self, x, sigma):
        return sum(self.D(x, sigma) for _ in range(self.n)) / self.n


def denoising(D_patch, D_whole, n: int = 8) -> list[dict]:
    x0 = data.brain_slices(n, 64, torch.Generator().manual_seed(20_010), contrast="mixed", split="test")
    rows = []
    for name, D in (("patch", D_patch), ("patch, 8 shifts", ShiftAverage(D_patch)), ("brain64", D_whole)):
        if hasattr(D_patch, "generator"):
            D_patch.generator = torch.Generator().manual_seed(0)
        for r in denoising_table(D, x0, seed=3):
            rows.append({"denoiser": name, **r})
            print(f"{name:16s} sigma={r['sigma']:.1f}  noisy {r['noisy']:6.2f}  D {r['tweedie']:6.2f} "
                  f"(gain {r['tweedie'] - r['noisy']:+6.2f})  TV {r['tv']:6.2f} "
                  f"(D - TV {r['tweedie'] - r['tv']:+6.2f})",
                  flush=True)
    return rows


def ct_run(method: str, D, x0, lik, zeta: float, n_levels: int, n_inner: int, sigma_min: float = 0.003,
           seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if method == "dps":
        kw = tasks.settings("ct20", "dps")
        x = solvers.padis_start_noise(x0.shape, float(kw["sigmas"][0]), generator=g)
        return solvers.dps(D, x, generator=g, lik=lik, **kw)
    x = solvers.padis_start_noise(x0.shape, 10.0, generator=g)
    return solvers.padis(D, x, karras_sigmas(n_levels, sigma_min, 10.0), lik, zeta=zeta, n_inner=n_inner,
                         generator=g)


def ct(D_patch, D_whole, n_levels: int, n_inner: int, zetas, sigma_mins) -> dict:
    x_tune = data.brain_slices(1, 64, torch.Generator().manual_seed(20_030), contrast="mixed", split="test")
    x0 = data.brain_slices(2, 64, torch.Generator().manual_seed(20_020), contrast="mixed", split="test")
    lik_tune = tasks.make("ct20", x_tune, torch.Generator().manual_seed(1))
    lik = tasks.make("ct20", x0, torch.Generator().manual_seed(2))
    out = {"n_levels": n_levels, "n_inner": n_inner, "tuning": {}, "test": {}}
    for name, D in (("padis + patch", D_patch), ("padis + brain64", D_whole)):
        best = None
        for zeta in zetas:
            for sigma_min in sigma_mins:
                if hasattr(D, "generator"):
                    D.generator = torch.Generator().manual_seed(0)
                t = time.perf_counter()
                rec = ct_run("padis", D, x_tune, lik_tune, zeta, n_levels, n_inner, sigma_min)
                p = metrics.psnr(rec.clamp(0, 1), x_tune).item()
                out["tuning"][f"{name}, zeta={zeta}, sigma_min={sigma_min}"] = p
                print(f"tune {name:16s} zeta={zeta:<6} sigma_min={sigma_min:<6} {p:6.2f} dB "
                      f"({time.perf_counter() - t:.0f} s)", flush=True)
                best = (p, zeta, sigma_min) if best is None or p > best[0] else best
        if hasattr(D, "generator"):
            D.generator = torch.Generator().manual_seed(0)
        rec = ct_run("padis", D, x0, lik, best[1], n_levels, n_inner, best[2]).clamp(0, 1)
        out["test"][name] = {"zeta": best[1], "sigma_min": best[2], "psnr": metrics.psnr(rec, x0).tolist()}
    p = metrics.psnr(ct_run("dps", D_whole, x_tune, lik_tune, 0, 0, 0).clamp(0, 1), x_tune).item()
    out["tuning"]["dps + brain64 (table settings)"] = p
    print(f"tune dps + brain64 (table settings) {p:6.2f} dB", flush=True)
    rec = ct_run("dps", D_whole, x0, lik, 0, 0, 0).clamp(0, 1)
    out["test"]["dps + brain64"] = {"zeta": tasks.settings("ct20", "dps")["zeta"],
                                    "psnr": metrics.psnr(rec, x0).tolist()}
    out["test"]["fbp (hann)"] = {"psnr": metrics.psnr(tasks.baseline("ct20", lik).clamp(0, 1), x0).tolist()}
    out["test"]["admm-tv"] = {"psnr": metrics.psnr(tasks.admm_tv_tuned("ct20", lik).clamp(0, 1), x0).tolist()}
    for name, r in out["test"].items():
        print(f"test {name:16s} {sum(r['psnr']) / 2:6.2f} dB  {[round(v, 2) for v in r['psnr']]}  "
              f"{'zeta=' + str(r['zeta']) if 'zeta' in r else ''} "
              f"{'sigma_min=' + str(r['sigma_min']) if 'sigma_min' in r else ''}", flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir")
    source.add_argument("--weights")
    parser.add_argument("--ct", action="store_true", help="also the 20-view CT comparison")
    parser.add_argument("--no-denoising", action="store_true")
    parser.add_argument("--levels", type=int, default=100, help="PaDIS levels (the code's CT runs: 100)")
    parser.add_argument("--inner", type=int, default=10, help="PaDIS steps per level (the code: 10)")
    parser.add_argument("--zetas", type=float, nargs="+", default=[0.02, 0.03, 0.05])
    parser.add_argument("--sigma-mins", type=float, nargs="+", default=[0.003, 0.02])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write the numbers here (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    D_patch, step = load_patch(args.run_dir, args.weights)
    D_whole = pretrained.load("brain64")
    print(f"patch prior: step {step}; PSNR in dB, mean over images", flush=True)
    result = {"step": step}
    if not args.no_denoising:
        result["denoising"] = denoising(D_patch, D_whole)
    if args.ct:
        result["ct20"] = ct(D_patch, D_whole, args.levels, args.inner, args.zetas, args.sigma_mins)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
