"""Re-tune a few knobs of the brain benchmark on one held-out brain slice that is not a test slice.

    python benchmarks/brain_tune.py [--out benchmarks/results/brain_tune.json] [--tasks ct20 mri4] [--knobs hqs]

The slice: ``brain_slices(1, 64, seed 20 000, contrast="mixed", split="test")`` (the test images use
seed 10 000). Grids (:data:`TV_SCALES` ...), PSNR of one run each (printed and saved): ADMM-TV's λ at
1/16 ... 16 times the task table's λ (ρ / λ kept), on every task; on ct20 and mri4 only: PnP-ADMM's
denoiser σ (ρ = σ_y² / σ²), PnP-HQS's (λ, σ_min) on DPIR's levels from 49/255 (``bb.HQS_ITER`` of them),
RED's (σ, weight) with τ = weight · σ_y² / σ², DDS's γ at 0.3 ... 30 times
the table's (50 levels), and the warm start's t0 with the best γ and λ. The winners go into
``brain_benchmark.BRAIN`` by hand. ``--knobs`` tunes only the named knobs (of tv, pnp_sigma, hqs,
hqs_flip: with or without ``flip_average`` at the (λ, σ_min) in ``BRAIN``, red, dds_gamma, t0; t0 also
tunes tv and dds_gamma, which it starts from) and keeps the other entries already in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os

import torch

import brain_benchmark as bb
from diffcourse.posterior import tasks
from diffcourse.posterior.classical import admm_tv, dpir_sigmas, pnp_admm, pnp_hqs, red
from diffcourse.prior import pretrained
from diffcourse.prior.denoisers import flip_average
from diffcourse.prior.processes import karras_sigmas

TV_SCALES = (1 / 16, 1 / 8, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
PNP_SIGMAS = (0.02, 0.05, 0.1, 0.2, 0.4)
HQS_GRID = [(lam, s) for lam in (0.05, 0.1, 0.23, 0.5, 1.0) for s in (0.003, 0.01, 0.03, 0.1)]
RED_GRID = [(s, w) for s in (0.03, 0.1) for w in (0.3, 1.0, 3.0, 10.0)]
DDS_SCALES = (0.3, 1.0, 3.0, 10.0, 30.0)
T0S = (0.2, 0.4, 0.6)


def score(x, ref) -> float:
    return round(bb.phantom_table.scores(x, ref, "")[0], 2)


def best(grid: dict):
    return max(grid, key=grid.get)


def tune_task(D, task, ref, full: bool, knobs=None) -> dict:
    want = lambda k: knobs is None or k in knobs
    lik = tasks.make(task, ref, torch.Generator().manual_seed(bb.NOISE_SEED))
    op, sy2 = bb.linear_op(lik), lik.sigma_y ** 2
    lam0, rho0 = tasks.TASKS[task]["admm_tv"]["lam"], tasks.TASKS[task]["admm_tv"]["rho"]
    out = {}
    if want("tv") or want("t0"):                   # t0 warm-starts from the best ADMM-TV
        out["tv"] = {(lam0 * s, rho0 * s): score(admm_tv(op, lik.y, lam0 * s, rho0 * s, n_iter=200), ref)
                     for s in TV_SCALES}
    if not full:
        return out
    x0 = tasks.baseline(task, lik)
    with torch.no_grad():
        if want("pnp_sigma"):
            out["pnp_sigma"] = {s: score(pnp_admm(op, lik.y, D, sy2 / s ** 2, n_iter=bb.PNP_ITER, sigma=s, x0=x0),
                                         ref) for s in PNP_SIGMAS}
        if want("hqs"):
            out["hqs"] = {(lam, s): score(pnp_hqs(op, lik.y, D, dpir_sigmas(bb.HQS_ITER, s), sigma_y=lik.sigma_y,
                                                  lam=lam, x0=x0), ref) for lam, s in HQS_GRID}
        if want("hqs_flip"):                     # the self-ensemble lever at the tuned (λ, σ_min)
            lam, s_min = bb.BRAIN[task]["hqs"]
            out["hqs_flip"] = {flip: score(pnp_hqs(op, lik.y, flip_average(D) if flip else D,
                                                   dpir_sigmas(bb.HQS_ITER, s_min), sigma_y=lik.sigma_y, lam=lam,
                                                   x0=x0), ref) for flip in (False, True)}
        if want("red"):
            n2 = bb.op_norm2(op, ref)
            out["red"] = {(s, w): score(red(op, lik.y, D, w * sy2 / s ** 2, 1 / (n2 + w * sy2 / s ** 2), bb.RED_ITER,
                                            sigma=s, x0=x0), ref) for s, w in RED_GRID}
    if want("dds_gamma") or want("t0"):
        g0 = tasks.settings(task, "dds")["gamma"]
        sig50 = karras_sigmas(50).float()
        out["dds_gamma"] = {g0 * s: score(bb.diffusion("dds", sig50, gamma=g0 * s)(D, lik, ref), ref)
                            for s in DDS_SCALES}
    if want("t0"):
        sig = karras_sigmas(100).float()
        out["t0"] = {t0: score(bb.warm_dds(sig, t0, best(out["dds_gamma"]), best(out["tv"]))(D, lik, ref), ref)
                     for t0 in T0S}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=bb.TASK_ORDER)
    parser.add_argument("--full", nargs="*", default=["ct20", "mri4"], help="tasks tuned beyond ADMM-TV")
    parser.add_argument("--out", default="benchmarks/results/brain_tune.json")
    parser.add_argument("--knobs", nargs="*", help="tune only these knobs; keep the others already in --out")
    args = parser.parse_args(argv)
    D = pretrained.load("brain64")
    ref = bb.load_images(1, bb.TUNE_SEED, torch.device("cpu"))
    result = {}
    if args.knobs and os.path.exists(args.out):
        with open(args.out) as f:
            result = json.load(f)
    for task in args.tasks:
        grids = tune_task(D, task, ref, task in args.full, args.knobs)
        result.setdefault(task, {}).update(
            {k: {"grid": {str(p): v for p, v in g.items()}, "best": best(g)} for k, g in grids.items()})
        print(task, json.dumps(result[task]), flush=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
