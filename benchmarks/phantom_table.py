"""Every posterior solver on every task of :mod:`diffcourse.posterior.tasks`, on held-out phantoms.

    python benchmarks/phantom_table.py [--quick] [--json PATH] [--tasks ct20 mri4] [--n-images 4]

For each task: the classical baseline (FBP, zero-filled, pseudo-inverse, ...), ADMM-TV with the
λ tuned on a separate phantom, and each diffusion solver with its tuned settings
(``tasks.settings``), all on the same measurements of ``--n-images`` held-out phantoms (a seed the
prior never saw; the settings were tuned on other phantoms, seed 20 000). Printed per row: mean
PSNR and SSIM over the images, wall time per image and network evaluations per image (a batched
call of the denoiser counts once; "∇" counts the calls whose output is differentiated, i.e. one
forward + one backward). ct20 and mri4 are also run on the Shepp-Logan phantom itself, which the
first phantom64 never saw; the retrained one saw random relatives of it (``phantoms_sharp``).

Phase retrieval is scored up to its trivial ambiguities (180° rotation, shifts of up to 2 px: all
have the same |F pad(x)|), and DPS is also reported as the best of 4 runs, the run picked by the
smallest data residual ||y - A(x)|| (no ground truth used). Full run ≈ 10-15 min on a 2-core CPU,
``--quick`` (2 images, ct20 and mri4) ≈ 2 min.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from diffcourse.metrics import psnr, ssim
from diffcourse.phantoms import shepp_logan
from diffcourse.posterior import tasks
from diffcourse.prior import pretrained
from diffcourse.prior.samplers.loop import CountingDenoiser as Counted
from diffcourse.prior.train import held_out_phantoms

TEST_SEED = 10_000  # held_out_phantoms' default evaluation seed; tuning used 20_000
NOISE_SEED, SOLVER_SEED = 1, 0
PHASE_RUNS = 4


def _solvers():
    from diffcourse.posterior import solvers
    return solvers


def run_solver(D, name: str, task: str, lik, shape) -> tuple[torch.Tensor, float, Counted]:
    """Run solver ``name`` with its tuned settings from x = σ_max z; returns (x, seconds, counter)."""
    fn = getattr(_solvers(), name)
    kw = tasks.settings(task, name)
    g = torch.Generator().manual_seed(SOLVER_SEED)
    x = kw["sigmas"][0].item() * torch.randn(shape, generator=g)
    counted = Counted(D)
    start = time.perf_counter()
    out = fn(counted, x, kw.pop("sigmas").float(), lik, generator=g, **kw)
    return out.detach(), time.perf_counter() - start, counted


def align_phase(x: torch.Tensor, ref: torch.Tensor, shift: int = 2) -> torch.Tensor:
    """x or its 180° rotation, circularly shifted by up to ``shift`` px, whichever is nearest ref."""
    best, best_err = x, None
    for cand in (x, x.flip(-2, -1)):
        for dy in range(-shift, shift + 1):
            for dx in range(-shift, shift + 1):
                c = cand.roll((dy, dx), (-2, -1))
                err = (c - ref).flatten(1).square().sum(1)  # (B,)
                if best_err is None:
                    best, best_err = c, err
                else:
                    pick = err < best_err
                    best = torch.where(pick[:, None, None, None], c, best)
                    best_err = torch.minimum(err, best_err)
    return best


def scores(x: torch.Tensor, ref: torch.Tensor, task: str) -> tuple[float, float]:
    x = x.clamp(0, 1)
    if task == "phase":
        x = align_phase(x, ref)
    return psnr(x, ref).mean().item(), ssim(x, ref).mean().item()


def row(task, method, x, ref, seconds, counted=None, note=""):
    p, s = scores(x, ref, task)
    B = ref.shape[0]
    return {"task": task, "method": method, "psnr": p, "ssim": s, "seconds_per_image": seconds / B,
            "nfe": None if counted is None else counted.calls, "nfe_grad": None if counted is None else counted.with_grad,
            "note": note}


def classical_rows(task, lik, ref):
    rows = []
    start = time.perf_counter()
    base = tasks.baseline(task, lik)
    rows.append(row(task, "baseline", base, ref, time.perf_counter() - start))
    if lik.linear:
        start = time.perf_counter()
        tv = tasks.admm_tv_tuned(task, lik)
        rows.append(row(task, "ADMM-TV (tuned)", tv, ref, time.perf_counter() - start))
    return rows


def phase_best_of(D, lik, ref, runs: int = PHASE_RUNS):
    """DPS ``runs`` times per image in one batch; the run with the smallest ||y - A(x)|| wins."""
    B = ref.shape[0]
    rep = tasks.Likelihood(lik.op, lik.noise, lik.y.repeat(runs, 1, 1, 1))
    out, seconds, counted = run_solver(D, "dps", "phase", rep, (runs * B, *ref.shape[1:]))
    res = (rep.y - rep.A(out)).flatten(1).norm(dim=1).reshape(runs, B)  # (runs, B)
    pick = res.argmin(0)
    best = out.reshape(runs, B, *ref.shape[1:])[pick, torch.arange(B)]
    first = out.reshape(runs, B, *ref.shape[1:])[0]
    counted.calls, counted.with_grad = counted.calls * runs, counted.with_grad * runs  # per image: runs chains
    one = row("phase", "dps", first, ref, seconds / runs, None, "1 run")
    one["nfe"], one["nfe_grad"] = counted.calls // runs, counted.with_grad // runs
    return [one, row("phase", f"dps best of {runs}", best, ref, seconds, counted,
                     "run chosen by smallest residual")]


def task_rows(D, task, ref, solver_names=None):
    lik = tasks.make(task, ref, torch.Generator().manual_seed(NOISE_SEED))
    rows = classical_rows(task, lik, ref)
    for name in tasks.tuned_solvers(task):
        if solver_names and name not in solver_names:
            continue
        if task == "phase" and name == "dps":
            rows += phase_best_of(D, lik, ref)
            continue
        out, seconds, counted = run_solver(D, name, task, lik, ref.shape)
        rows.append(row(task, name, out, ref, seconds, counted))
    return rows


def markdown(rows) -> str:
    lines = ["| task | method | PSNR | SSIM | s/img | NFE/img |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        nfe = "" if r["nfe"] is None else f"{r['nfe']}" + (f" ({r['nfe_grad']} ∇)" if r["nfe_grad"] else "")
        lines.append(f"| {r['task']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                     f"{r['seconds_per_image']:.2f} | {nfe} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 images, ct20 and mri4 only (~2 min)")
    parser.add_argument("--tasks", nargs="*", help="tasks to run (default: all)")
    parser.add_argument("--solvers", nargs="*", help="solvers to run (default: every tuned one)")
    parser.add_argument("--n-images", type=int, default=4)
    parser.add_argument("--no-shepp-logan", action="store_true")
    parser.add_argument("--json", help="also write the rows as JSON to this path")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    task_names = args.tasks or (["ct20", "mri4"] if args.quick else tasks.names())
    n = 2 if args.quick else args.n_images
    D = pretrained.load("phantom64")
    ref = held_out_phantoms(n, tasks.SIZE, TEST_SEED)
    print(f"{n} held-out phantoms (seed {TEST_SEED}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    rows, sl_rows = [], []

    def save():
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"held_out": rows, "shepp_logan": sl_rows}, f, indent=1)
    for task in task_names:  # progress: each task's rows as they come, saved as they come
        rows += task_rows(D, task, ref, args.solvers)
        print(markdown([r for r in rows if r["task"] == task]).split("\n", 2)[-1], flush=True)
        save()
    print("\n## Held-out phantoms\n\n" + markdown(rows))
    if not args.no_shepp_logan:
        sl = shepp_logan(tasks.SIZE)
        for task in ("ct20", "mri4"):
            sl_rows += task_rows(D, task, sl, args.solvers)
            save()
        print("\n## Shepp-Logan\n\n" + markdown(sl_rows))


if __name__ == "__main__":
    main()
