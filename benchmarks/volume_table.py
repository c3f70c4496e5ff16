"""3-D reconstruction of held-out brain volumes: DiffusionMBIR, DDS with TV_z and TPDM beside slice-wise
diffusion, FBP / zero-filled and 3-D ADMM-TV, on the course's volume tasks (ct8_3d, la90_3d, mri4_3d).

    python benchmarks/volume_table.py [--out benchmarks/results/volume_table.json] [--volumes 2] [--tasks ...]
    python benchmarks/volume_table.py --tune [--tasks ct8_3d]       # the grids, on another volume
    python benchmarks/volume_table.py --whole [--tasks ct8_3d]      # TPDM on whole-brain volumes
    python benchmarks/volume_table.py --mbir-levels 50 100 200 --tasks ct8_3d   # DiffusionMBIR's schedule

Volumes: ``brain_volumes(n, 64, 56)`` (T1, seed 31 000; tuning: seed 32 000), slices 2.75 mm apart
across the whole brain (154 mm). The table's volumes are the slabs of :data:`SLAB` = 16 slices
around the slab of axial positions the 2-D prior ``brain64`` never saw in training (slices 24-39,
t = 0.44-0.71; held out: 0.55-0.65): 64 x 64 x 16. ``--whole`` keeps all 56 slices, the geometry in
which the coronal prior sees its own pixel spacing (:func:`~diffcourse.posterior.solvers.volume.
padded_denoiser`, 56 rows padded to 64 with noisy background), for TPDM.

Methods: FBP (Hann) / zero-filled, 3-D ADMM-TV (isotropic, 200 iterations), DDS slice by slice (the
2-D solver, no coupling; Chung, Lee & Ye, ICLR 2024), DiffusionMBIR (Chung, Ryu, McCann, Klasky & Ye,
CVPR 2023; fast variant, noisy-state ADMM-TV_z), DDS with TV_z (the 3-D script of DDS: DiffusionMBIR's
TV_z on Tweedie's estimate) and, with ``--whole``, TPDM (Lee et al., ICCV 2023). Settings: the tasks
table (:func:`diffcourse.posterior.tasks.settings`), tuned with ``--tune`` on the tuning volume.

Metrics per volume, averaged: PSNR over the volume, SSIM averaged over the axial slices and over the
coronal cuts, the flicker mean |x_{z+1} - x_z| (beside the truth's) and the z-gradient error
mean |D_z x - D_z x_true| (non-circular differences): slice-wise methods flicker where the truth does not.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch

from diffcourse.data import brain_volumes
from diffcourse.metrics import psnr, ssim
from diffcourse.posterior import solvers, tasks
from diffcourse.posterior.solvers.volume import (CORONAL, dds_tv_z, diffusion_mbir, padded_denoiser, slice_by_slice,
                                                 to_slices, tpdm)
from diffcourse.posterior.tv3d import admm_tv_3d
from diffcourse.prior import pretrained
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.samplers.loop import CountingDenoiser

SIZE, DEPTH, SLAB = 64, 56, (24, 40)
TEST_SEED, TUNE_SEED, NOISE_SEED, SOLVER_SEED, AUX_SEED = 31_000, 32_000, 1, 0, 5
TASKS = tasks.names(volumes=True)
METHODS = ("baseline", "admm_tv", "dds", "diffusion_mbir", "dds_tv_z")


def volumes(n: int, seed: int, whole: bool = False) -> torch.Tensor:
    x = brain_volumes(n, SIZE, DEPTH, torch.Generator().manual_seed(seed))
    return x if whole else x[:, :, SLAB[0]:SLAB[1]].contiguous()


def measure(task: str, x: torch.Tensor):
    return tasks.make(task, x, torch.Generator().manual_seed(NOISE_SEED))


def dz(v: torch.Tensor) -> torch.Tensor:
    return v[:, :, 1:] - v[:, :, :-1]


def metrics(x: torch.Tensor, ref: torch.Tensor) -> dict:
    """PSNR (volume), SSIM (axial slices, coronal cuts), flicker and z-gradient error, averaged over volumes."""
    x = x.clamp(0, 1)
    n = ref.shape[0]
    return {"psnr": psnr(x.flatten(1, 2), ref.flatten(1, 2)).mean().item(),
            "ssim_axial": ssim(x.transpose(1, 2).flatten(0, 1), ref.transpose(1, 2).flatten(0, 1)).mean().item(),
            "ssim_coronal": ssim(to_slices(x, CORONAL), to_slices(ref, CORONAL)).mean().item(),
            "flicker": dz(x).abs().mean().item(), "flicker_truth": dz(ref).abs().mean().item(),
            "dz_error": (dz(x) - dz(ref)).abs().mean().item(), "n_volumes": n}


def run(D, name: str, task: str, lik, shape, kw: dict, D_aux=None):
    """One diffusion method from σ_max z; returns (x, seconds, counter)."""
    kw = dict(kw)
    sigmas = kw.pop("sigmas").float()
    g = torch.Generator().manual_seed(SOLVER_SEED)
    x = sigmas[0] * torch.randn(shape, generator=g)
    counted = CountingDenoiser(D)
    start = time.perf_counter()
    if name == "diffusion_mbir":
        out = diffusion_mbir(counted, x, sigmas, lik, generator=g, **kw)
    elif name == "dds_tv_z":
        out = dds_tv_z(counted, x, sigmas, lik, generator=g, **kw)
    elif name == "tpdm":
        out = tpdm(counted, x, sigmas, lik, D_aux=CountingDenoiser(D_aux), generator=g, **kw)
    else:                                                    # a 2-D solver, slice by slice
        out = slice_by_slice(getattr(solvers, name), counted, x, sigmas, lik, generator=g, **kw)
    return out.detach(), time.perf_counter() - start, counted


def method_row(D, method: str, task: str, lik, ref, kw=None, D_aux=None) -> dict:
    start = time.perf_counter()
    nfe = None
    if method == "baseline":
        x = tasks.baseline(task, lik)
    elif method == "admm_tv":
        x = admm_tv_3d(lik.op, lik.y, **(kw or tasks.TASKS[task]["admm_tv"]))
    else:
        kw = tasks.settings(task, method) if kw is None else kw
        x, _, counted = run(D, method, task, lik, ref.shape, kw, D_aux)
        nfe = counted.evaluations / math.prod(ref.shape[:3])  # per slice
    seconds = time.perf_counter() - start
    settings = None if kw is None else {k: (v if k != "sigmas" else len(v) - 1) for k, v in kw.items()}
    return {"task": task, "method": method, **metrics(x, ref), "seconds_per_volume": seconds / ref.shape[0],
            "nfe_per_slice": nfe, "settings": settings}


def markdown(rows) -> str:
    lines = ["| task | method | PSNR | SSIM ax. | SSIM cor. | flicker (truth) | D_z error | s/vol | NFE/slice |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        nfe = "" if r["nfe_per_slice"] is None else f"{r['nfe_per_slice']:.0f}"
        lines.append(f"| {r['task']} | {r['method']} | {r['psnr']:.2f} | {r['ssim_axial']:.3f} | "
                     f"{r['ssim_coronal']:.3f} | {r['flicker']:.4f} ({r['flicker_truth']:.4f}) | "
                     f"{r['dz_error']:.4f} | {r['seconds_per_volume']:.0f} | {nfe} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- tuning on another volume
def _with(task, method, **changes) -> dict:
    return {**tasks.settings(task, method), **changes}


def grids(task: str, dds_best: dict | None = None) -> dict:
    """Candidate settings per method: a few values around the table's (and the papers') values. DDS:
    γ at 1/3, 1, 3 times the table's, then η = 0.5 at the best γ (``dds_best``); DDS + TV_z: (λ, ρ)
    around the table's, with DDS's best γ and η, so that the two differ only by TV_z."""
    tv = tasks.TASKS[task]["admm_tv"]
    g = tasks.settings(task, "dds")["gamma"]
    mb = tasks.settings(task, "diffusion_mbir")
    dz_ = tasks.settings(task, "dds_tv_z")
    shared = {k: v for k, v in (dds_best or {}).items() if k in ("gamma", "eta")}
    return {
        "admm_tv": [{**tv, "lam": tv["lam"] * f, "rho": tv["rho"] * f * r} for f in (0.3, 1, 3) for r in (1, 3)],
        "dds": ([_with(task, "dds", gamma=g * f) for f in (1 / 3, 1, 3)] if dds_best is None
                else [_with(task, "dds", gamma=dds_best["gamma"], eta=0.5)]),
        "dds_tv_z": [_with(task, "dds_tv_z", lam=dz_["lam"] * f, rho=dz_["rho"] * r, **shared) for f, r in
                     ((0.25, 1), (1, 1), (1, 4), (4, 4))],
        "diffusion_mbir": [_with(task, "diffusion_mbir", lam=mb["lam"] * f, rho=mb["rho"] * r) for f, r in
                           ((1, 1), (0.1, 0.1))],
    }


def best_settings(rows) -> dict:
    """{task: {method: settings}} of the best PSNR per task and method in tuning rows (the schedule as n)."""
    best = {}
    for r in rows:
        key = (r["task"], r["method"])
        if key not in best or r["psnr"] > best[key]["psnr"]:
            best[key] = r
    out = {}
    for (task, method), r in best.items():
        out.setdefault(task, {})[method] = r["settings"]
    return out


def _as_kwargs(settings: dict) -> dict:
    """Tuned settings back to keyword arguments: the number of levels to a karras_sigmas schedule."""
    return {k: (karras_sigmas(v) if k == "sigmas" else v) for k, v in settings.items()}


def tune(D, task_names, methods) -> list:
    """The grids on the tuning volume: ADMM-TV and DDS's γ, then η = 0.5 at the best γ, then DDS + TV_z
    (with DDS's best γ and η) and DiffusionMBIR. Returns the rows (settings with the schedule as n)."""
    ref = volumes(1, TUNE_SEED)
    rows = []

    def run_grid(task, lik, method, grid):
        for kw in grid if method in methods else ():
            rows.append(method_row(D, method, task, lik, ref, kw))
            r = rows[-1]
            print(task, method, r["settings"], f"{r['psnr']:.2f} dB, flicker {r['flicker']:.4f}, "
                  f"{r['seconds_per_volume']:.0f} s", flush=True)

    def best_dds(task):
        found = [r for r in rows if r["task"] == task and r["method"] == "dds"]
        return max(found, key=lambda r: r["psnr"])["settings"] if found else None
    for task in task_names:
        lik = measure(task, ref)
        for method in ("admm_tv", "dds"):
            run_grid(task, lik, method, grids(task)[method])
        if best_dds(task) is not None:
            run_grid(task, lik, "dds", grids(task, best_dds(task))["dds"])
        later = grids(task, best_dds(task))
        for method in ("dds_tv_z", "diffusion_mbir"):
            run_grid(task, lik, method, later[method])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/volume_table.json")
    parser.add_argument("--volumes", type=int, default=2)
    parser.add_argument("--tasks", nargs="*", default=TASKS)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--tune", action="store_true", help="run the grids on the tuning volume (seed 32 000)")
    parser.add_argument("--whole", action="store_true", help="whole-brain volumes (56 slices) and TPDM")
    parser.add_argument("--aux", default="brain64_coronal", help="TPDM's auxiliary (coronal) prior")
    parser.add_argument("--tuned", help="a --tune output: use its best settings instead of the tasks table")
    parser.add_argument("--mbir-levels", type=int, nargs="*",
                        help="instead: DiffusionMBIR with these numbers of levels on the tuning volume (its "
                             "published setting is 2000 levels; the tables use 50)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    D = pretrained.load("brain64")
    start = time.perf_counter()
    rows = []

    def save(extra=None):
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "seconds": time.perf_counter() - start, "volumes": args.volumes,
                       "depth": DEPTH, "slab": None if args.whole else SLAB, "seeds": [TEST_SEED, TUNE_SEED],
                       "torch": torch.__version__, **(extra or {})}, f, indent=1)
    if args.mbir_levels:
        ref = volumes(1, TUNE_SEED)
        for task in args.tasks:
            lik = measure(task, ref)
            for n in args.mbir_levels:
                kw = {**tasks.settings(task, "diffusion_mbir"), "sigmas": karras_sigmas(n)}
                rows.append(method_row(D, "diffusion_mbir", task, lik, ref, kw))
                print(markdown(rows[-1:]).split("\n", 2)[-1], flush=True)
                save()
        return
    if args.tune:
        rows += tune(D, args.tasks, args.methods)
        save({"best": best_settings(rows)})
        return
    tuned = {}
    if args.tuned:
        with open(args.tuned) as f:
            tuned = best_settings(json.load(f)["rows"])
    ref = volumes(args.volumes, TEST_SEED, args.whole)
    print(f"{args.volumes} held-out brain volumes {tuple(ref.shape[2:])} (seed {TEST_SEED}), 1 thread", flush=True)
    methods = list(args.methods) + (["tpdm"] if args.whole and "tpdm" not in args.methods else [])
    failed = []
    D_aux = None
    if "tpdm" in methods:
        D_aux = padded_denoiser(pretrained.load(args.aux), SIZE, generator=torch.Generator().manual_seed(AUX_SEED))
    for task in args.tasks:
        lik = measure(task, ref)
        for method in methods:
            kw = tuned.get(task, {}).get(method)
            kw = None if kw is None else (_as_kwargs(kw) if method != "admm_tv" else kw)
            try:
                rows.append(method_row(D, method, task, lik, ref, kw, D_aux=D_aux))
            except FloatingPointError as err:                 # a diverging run is a result too
                print(f"{task} {method}: {err}", flush=True)
                failed.append({"task": task, "method": method, "error": str(err)})
                continue
            print(markdown(rows[-1:]).split("\n", 2)[-1], flush=True)
            save({"aux": args.aux if D_aux is not None else None, "failed": failed})
    print("\n" + markdown(rows))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
