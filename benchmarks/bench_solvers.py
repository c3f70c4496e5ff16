"""Solver overhead: each posterior solver's time per step over the network cost of that step.

    python benchmarks/bench_solvers.py [--device cuda] [--steps 10] [--repeats 3] [--tasks mri4 ct20]
    python benchmarks/bench_solvers.py --table [--device cuda] [--n-images 2] [--quick] [--out PATH]

With ``--table`` the script runs the brain benchmark instead (``benchmarks/brain_benchmark.py``: every
solver on held-out brain slices, PSNR, SSIM, time, NFE, peak memory, posterior-sample uncertainty;
it writes ``benchmarks/results/brain_benchmark.json`` and ``.md``); without it, the overhead below.

The denoiser is the shipped ``phantom64`` UNet at 64x64, batch 1 and 4. Each solver runs ``steps``
steps with its tuned settings (``diffcourse.posterior.tasks.settings``, schedule shortened to
``steps`` levels) through a counting wrapper of the denoiser, which records per run the number
of plain network calls and of calls whose output is differentiated (forward + backward, as DPS and
MCG need). In the same run, interleaved, the script times the same calls of the UNet alone, back to
back as one block (as long as the solver's run, so that both are minima over equally long spells of
a possibly busy machine; timing single calls made the network look cheaper than it is in a run),
so the network cost of a step is

    cost = time of (plain calls x forward + differentiated calls x (forward + backward)) / steps

and the printed ratio is time per step / cost: 1.00 means the solver adds nothing to the network;
the rest is the operator (A, A^T), projections, noise draws and bookkeeping. Times are minima over
``repeats`` runs (the least disturbed by other processes). Aim: <= 1.05 on mri4 (an FFT operator);
the CT operator (a sparse Radon matrix) costs more on a CPU and shows up in the ct20 column.

The closed-form solvers (``CLOSED_FORM``: ΠGDM, DDNM, DMPS, DMPS-flow, DDS) run with their paper
defaults on the schedule of the task's DPS row when the table has no tuned row for them. DMPS,
DDNM and DDS call the network without a graph (one forward per step, no backward); ΠGDM pays one
vector-Jacobian product like DPS. On ct20 (no SVD of the Radon transform) DMPS and ΠGDM fall back to
CG in measurement space and DDNM to a CGLS pseudo-inverse, which the ratio shows.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from diffcourse.posterior import solvers, tasks
from diffcourse.prior import pretrained
from diffcourse.prior.samplers.loop import CountingDenoiser as Counted
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.train import held_out_phantoms


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def network_costs(D, B, device):
    """(forward, forward + backward) of the UNet at batch B, one call each."""
    x = torch.randn(B, 1, 64, 64, device=device)
    sigma = torch.full((B,), 1.0, device=device)

    def fwd():
        with torch.no_grad():
            D(x, sigma)

    def fwd_bwd():
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(D(xg, sigma).sum(), xg)
    return fwd, fwd_bwd


CLOSED_FORM = ["pgdm", "ddnm", "dmps", "dmps_flow", "dds"]


def _settings(task, name):
    """The tuned row, or for an untuned closed-form solver its defaults on the DPS row's schedule."""
    if name in tasks.tuned_solvers(task):
        return tasks.settings(task, name)
    return {"sigmas": tasks.settings(task, "dps")["sigmas"]}


def _runs_on(task, name, lik):
    return name in tasks.tuned_solvers(task) or (name in CLOSED_FORM and lik.linear)


def solver_run(D, name, task, lik, B, steps, device):
    """A closure running ``steps`` steps of solver ``name`` and the counter it uses."""
    kw = _settings(task, name)
    sig = kw.pop("sigmas")
    sigmas = karras_sigmas(steps, float(sig[-2]), float(sig[0])).to(device=device, dtype=torch.float32)
    fn = getattr(solvers, name)
    g = torch.Generator(device=device).manual_seed(0)
    x = float(sigmas[0]) * torch.randn(B, 1, 64, 64, generator=g, device=device)
    counted = Counted(D)

    def run():
        counted.reset()
        fn(counted, x, sigmas, lik, generator=g, **kw)
    return run, counted


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--table" in argv:  # the brain benchmark table
        argv.remove("--table")
        import brain_benchmark
        return brain_benchmark.main(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 4])
    parser.add_argument("--tasks", nargs="*", default=["mri4", "ct20"])
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    D = pretrained.load("phantom64", device=device)
    print(f"shipped phantom64 UNet on {device}, {args.steps} steps, min of {args.repeats} runs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = f"{'solver':14s}{'B':>3s}" + "".join(f"{t + ' ms/step':>16s}{'net ms':>9s}{'ratio':>7s}"
                                                  for t in args.tasks)
    print(header)
    for B in args.batches:
        ref = held_out_phantoms(4, 64, 10_000)[:B].to(device)  # n = 1 would draw 0 heads
        liks = {t: tasks.make(t, ref, torch.Generator(device=device).manual_seed(1)) for t in args.tasks}
        fwd, fwd_bwd = network_costs(D, B, device)
        fwd(), fwd_bwd()  # warm-up
        names = [n for n in dict.fromkeys([s for t in args.tasks for s in tasks.tuned_solvers(t)] + CLOSED_FORM)]
        runs = {(n, t): solver_run(D, n, t, liks[t], B, args.steps, device)
                for n in names for t in args.tasks if _runs_on(t, n, liks[t])}
        best = {k: float("inf") for k in runs}
        net = {k: float("inf") for k in runs}
        t_f = t_fb = float("inf")
        for key, (run, c) in runs.items():
            run()                                   # warm-up, and the call counts of one run

        def block(c):
            """The network calls of one solver run, back to back, timed as one block like the run."""
            def calls():
                for _ in range(c.calls - c.with_grad):
                    fwd()
                for _ in range(c.with_grad):
                    fwd_bwd()
            return calls
        for _ in range(args.repeats):  # interleaved, so a slow spell hits every entry alike
            for key, (run, c) in runs.items():
                t_f = min(t_f, timed(fwd, device))
                t_fb = min(t_fb, timed(fwd_bwd, device))
                net[key] = min(net[key], timed(block(c), device))
                best[key] = min(best[key], timed(run, device))
        for n in names:
            line = f"{n:14s}{B:3d}"
            for t in args.tasks:
                if (n, t) not in runs:
                    line += f"{'-':>16s}{'':>9s}{'':>7s}"
                    continue
                cost = net[(n, t)] / args.steps
                per = best[(n, t)] / args.steps
                line += f"{1e3 * per:16.1f}{1e3 * cost:9.1f}{per / cost:7.2f}"
            print(line)
        print(f"{'(UNet alone)':14s}{B:3d}  forward {1e3 * t_f:.1f} ms, forward+backward {1e3 * t_fb:.1f} ms")


if __name__ == "__main__":
    main()
