"""The course's solvers on held-out 2-D brain slices: PSNR, SSIM, time, network evaluations, peak memory.

    python benchmarks/bench_solvers.py --table [--device cuda] [--n-images 2] [--tasks ct20 mri4] [--quick]
        [--methods ...] [--prior phantom64] [--volume-json benchmarks/results/volume_table_ct8.json ...] [--out PATH]

Images: ``brain_slices(n, 64, seed 10 000, contrast="mixed", split="test")``, the axial slab that the
shipped prior ``brain64`` never saw; measurements by the course's tasks (``diffcourse.posterior.tasks``:
σ_y as there), noise seed 1, all images of a task in one batch. Rows per task: the classical
baseline (FBP / zero-filled / pseudo-inverse / truncated SVD), ADMM-TV with the λ of the task table
(tuned on phantoms) and with λ re-tuned on a brain slice, PnP-ADMM (Venkatakrishnan et al. 2013),
PnP-HQS with DPIR's decreasing denoiser levels (Zhang et al., IEEE TPAMI 2022) and RED (Romano, Elad &
Milanfar 2017) with ``brain64`` as the denoiser, every diffusion solver tuned for
the task (``tasks.settings``, phantom-tuned, run with ``brain64``), and the levers: DDS with γ re-tuned
on a brain slice (and, the lever "steps", with :data:`STEPS_LEVER` levels), DDS warm-started from ADMM-TV
(CCDF, Chung, Sim & Ye, CVPR 2022), PnP-HQS with the denoiser averaged over left-right flips (the
lever "self-ensemble", ct20 and mri4), and ``UQ_SAMPLES`` DDS posterior samples per image (scored by their
mean; coverage of the truth by mean ± k std, k = 1, 2, 3, beside the exact Student value, and the
std-error correlation). ``--prior phantom64`` runs the same methods with another shipped prior (the lever
"prior"; rows named "<method>, phantom64 prior").
Every solver is held to at most 100 network evaluations per image (NFE; a call on a batch of B
images counts B, per image: evaluations / B; "∇" counts evaluations whose output is differentiated),
but for Jalal's 101 (the task table's schedule) and the 200-level row of the steps lever.

Re-tuned knobs (:data:`BRAIN`): found by ``benchmarks/brain_tune.py`` on one other held-out slice
(seed 20 000), never on the test slices; the grids and their PSNRs are in that file's output.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the memory allocated before the run;
on a Linux CPU the peak resident set size (VmHWM in /proc/self/status, reset before each run by
writing 5 to /proc/self/clear_refs) above the resident size before the run: the memory the run added
to the process, whole process, allocator caching included (None where /proc is not available).

The committed ``benchmarks/results/brain_benchmark.json`` / ``.md`` ran on one thread of a busy 2-core CPU,
in several runs (ct20 and mri4 with every method; the other tasks with ``--methods``, core set, then the
other diffusion solvers; ``--prior phantom64``; the steps lever; PnP-HQS), merged by ``--merge`` (which
adds a run's rows to the existing file, replacing rows of the same task and method, and records the
run's command, machine and time under "runs"); the 3-D rows are copied from ``benchmarks/volume_table.py``'s output
(``--volume-json``). ``--device cuda`` batches each task's images on the GPU; that path has not been run yet.
"""
from __future__ import annotations

import json
import shlex
import sys
import time

import torch

import phantom_table
from brain_report import machine, markdown, merge, volume_rows, write
from diffcourse.data import brain_slices
from diffcourse.physics.mri import SingleCoilMRI
from diffcourse.posterior import solvers, tasks
from diffcourse.posterior.ccdf import warm_start
from diffcourse.posterior.classical import admm_tv, dpir_sigmas, pnp_admm, pnp_hqs, red
from diffcourse.posterior.complex_mri import real_images
from diffcourse.posterior.uncertainty import calibration, pixel_stats, std_error_correlation
from diffcourse.prior import pretrained
from diffcourse.prior.denoisers import flip_average
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.samplers.loop import CountingDenoiser

TEST_SEED, TUNE_SEED, NOISE_SEED, SOLVER_SEED = 10_000, 20_000, 1, 0
TASK_ORDER = ["ct20", "mri4", "ct8", "mri8", "inpaint92", "sr4", "deblur", "box"]
UQ_SAMPLES, UQ_LEVELS = 4, 25          # 4 chains of 25 levels: 100 NFE per image
PNP_ITER, HQS_ITER, RED_ITER = 30, 30, 100
STEPS_LEVER = (25, 50, 200)            # DDS schedules beside the 100 levels, on the re-tuned tasks
BUDGET = (f"<= 100 NFE per image per solver (Jalal: 101, the task table's 25 levels x 4 steps and a final "
          f"denoising; the steps lever's 200-level row is marked over the budget); PnP-ADMM {PNP_ITER} iterations, "
          f"PnP-HQS {HQS_ITER} levels, RED {RED_ITER}, UQ {UQ_SAMPLES} DDS chains of {UQ_LEVELS} levels")
# Re-tuned on one brain slice (seed 20 000) by benchmarks/brain_tune.py (grids and PSNRs: its output,
# benchmarks/results/brain_tune.json): ADMM-TV's (λ, ρ) on every task; on ct20 and mri4 also PnP-ADMM's σ,
# PnP-HQS's (λ, σ_min), RED's (σ, weight), DDS's γ and the warm start's t0. Other tasks take PnP, RED and t0 from ct20 (CT)
# or mri4 (the rest; PnP's ρ and RED's τ scale with each task's σ_y²) and DDS's γ from the task table.
BRAIN = {
    "ct20": {"tv": (3.0, 90.0), "pnp_sigma": 0.2, "hqs": (0.23, 0.03), "red": (0.03, 0.3), "dds_gamma": 0.003, "t0": 0.4},
    "mri4": {"tv": (0.004, 0.012), "pnp_sigma": 0.05, "hqs": (0.05, 0.01), "red": (0.1, 10.0), "dds_gamma": 300.0, "t0": 0.6},
    "ct8": {"tv": (3.0, 90.0)}, "mri8": {"tv": (0.0125, 0.125)}, "inpaint92": {"tv": (0.000125, 0.000375)},
    "sr4": {"tv": (0.002, 0.06)}, "deblur": {"tv": (0.002, 0.06)}, "box": {"tv": (0.0003125, 0.009375)},
}
FAMILY = {"ct8": "ct20"}                 # every other task borrows from mri4


def brain_knobs(task: str) -> dict:
    """The knobs of ``task``: its own re-tuned ones, else its family's, and DDS's γ from the task table."""
    family = BRAIN[task if task in ("ct20", "mri4") else FAMILY.get(task, "mri4")]
    return {"pnp_sigma": family["pnp_sigma"], "hqs": family["hqs"], "red": family["red"], "t0": family["t0"],
            "dds_gamma": tasks.settings(task, "dds")["gamma"],
            "tv": tuple(tasks.TASKS[task]["admm_tv"][k] for k in ("lam", "rho")), **BRAIN.get(task, {})}


def linear_op(lik):
    return real_images(lik.op) if isinstance(lik.op, SingleCoilMRI) else lik.op


def op_norm2(op, like: torch.Tensor, n_iter: int = 30) -> float:
    """||A||² by power iteration on AᵀA from a fixed start."""
    v = torch.randn(like.shape, generator=torch.Generator().manual_seed(0)).to(like)
    for _ in range(n_iter):
        w = op.AT(op.A(v))
        lam = w.flatten(1).norm(dim=1).max().item() / v.flatten(1).norm(dim=1).max().item()
        v = w / w.flatten(1).norm(dim=1).max()
    return lam


class PeakMemory:
    """Peak memory a block adds, in MiB: CUDA allocator peak, or the process's peak RSS on Linux."""

    def __init__(self, device: torch.device):
        self.device, self.mib = device, None

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key))  # kB

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        try:
            self.base = self._status("VmRSS:")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")                       # reset VmHWM to the current RSS
        except OSError:
            self.base = None
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        elif self.base is not None:
            self.mib = (self._status("VmHWM:") - self.base) / 1024
        return False


def start(sigmas, shape, device, n_samples=1):
    g = torch.Generator(device=device).manual_seed(SOLVER_SEED)
    return g, float(sigmas[0]) * torch.randn((n_samples * shape[0], *shape[1:]), generator=g, device=device)


def diffusion(name, sigmas, **kw):
    """A method running diffusion solver ``name`` from σ_max z on ``sigmas``."""
    def run(D, lik, ref):
        g, x = start(sigmas, ref.shape, ref.device)
        return getattr(solvers, name)(D, x, sigmas.to(ref.device), lik, generator=g, **kw)
    return run


def warm_dds(sigmas, t0, gamma, tv):
    """DDS from ADMM-TV's image forward-diffused to σ at t0 of the schedule (CCDF)."""
    def run(D, lik, ref):
        g = torch.Generator(device=ref.device).manual_seed(SOLVER_SEED)
        x_init = admm_tv(linear_op(lik), lik.y, *tv, n_iter=200)
        x, tail = warm_start(x_init, sigmas.to(ref.device), t0, generator=g)
        return solvers.dds(D, x, tail, lik, gamma=gamma, generator=g)
    return run


def methods(task: str, lik, ref, quick: bool = False) -> dict:
    """Method name -> run(D, lik, ref) -> images (B, ...) or samples (S B, ...)."""
    k, op = brain_knobs(task), linear_op(lik)
    out = {"baseline": lambda D, lik, ref: tasks.baseline(task, lik),
           "ADMM-TV (phantom λ)": lambda D, lik, ref: tasks.admm_tv_tuned(task, lik),
           "ADMM-TV": lambda D, lik, ref: admm_tv(op, lik.y, *k["tv"], n_iter=200)}
    sy2 = lik.sigma_y ** 2
    rho = sy2 / k["pnp_sigma"] ** 2            # ½||Ax - y||² + σ_y² (-log p): prox at σ² = σ_y²/ρ
    out["PnP-ADMM"] = lambda D, lik, ref: pnp_admm(op, lik.y, D, rho, n_iter=PNP_ITER, sigma=k["pnp_sigma"],
                                                   x0=tasks.baseline(task, lik))
    hqs_lam, hqs_min = k["hqs"]
    out["PnP-HQS (DPIR levels)"] = lambda D, lik, ref: pnp_hqs(op, lik.y, D, dpir_sigmas(HQS_ITER, hqs_min),
                                                               sigma_y=lik.sigma_y, lam=hqs_lam,
                                                               x0=tasks.baseline(task, lik))
    if task in ("ct20", "mri4"):       # the lever "self-ensemble": the same with D averaged over L-R flips
        out["PnP-HQS (DPIR levels), flip average"] = lambda D, lik, ref: pnp_hqs(
            op, lik.y, flip_average(D), dpir_sigmas(HQS_ITER, hqs_min), sigma_y=lik.sigma_y, lam=hqs_lam,
            x0=tasks.baseline(task, lik))
    red_sigma, red_w = k["red"]
    tau = red_w * sy2 / red_sigma ** 2
    step = 1.0 / (op_norm2(op, ref) + tau)
    out["RED"] = lambda D, lik, ref: red(op, lik.y, D, tau, step, RED_ITER, sigma=red_sigma,
                                         x0=tasks.baseline(task, lik))
    levels = 3 if quick else None
    for name in tasks.tuned_solvers(task):
        kw = tasks.settings(task, name)
        sig = kw.pop("sigmas").float()
        if quick:
            sig = karras_sigmas(levels, float(sig[-2]), float(sig[0]))
        out[name] = diffusion(name, sig, **kw)
    sig = karras_sigmas(levels or 100).float()
    if "dds_gamma" in BRAIN.get(task, {}):
        out["dds, brain γ"] = diffusion("dds", sig, gamma=k["dds_gamma"])
        for n in () if quick else STEPS_LEVER:                # the lever "steps", beside the 100 levels above
            name = f"dds, brain γ, {n} levels" + (" (over the budget)" if n > 100 else "")
            out[name] = diffusion("dds", karras_sigmas(n).float(), gamma=k["dds_gamma"])
    out[f"dds warm from ADMM-TV, t0 = {k['t0']}"] = warm_dds(sig, k["t0"], k["dds_gamma"], k["tv"])
    return out


def uq_run(D, lik, ref, task, quick=False):
    """``UQ_SAMPLES`` DDS chains per image in one batch: samples (S, B, ...)."""
    sig = karras_sigmas(2 if quick else UQ_LEVELS).float().to(ref.device)
    rep = tasks.Likelihood(lik.op, lik.noise, lik.y.repeat(UQ_SAMPLES, *[1] * (lik.y.ndim - 1)))
    g, x = start(sig, ref.shape, ref.device, UQ_SAMPLES)
    out = solvers.dds(D, x, sig, rep, gamma=brain_knobs(task)["dds_gamma"], generator=g)
    return out.reshape(UQ_SAMPLES, *ref.shape)


def uq_fields(samples, ref) -> dict:
    samples = samples.clamp(0, 1)
    mean, std = pixel_stats(samples)
    cal = calibration(samples, ref)
    return {"coverage": cal.observed.mean(0).tolist(), "coverage_student": cal.student.tolist(),
            "corr_std_error": std_error_correlation(std, mean - ref).mean().item(),
            "psnr_one_sample": phantom_table.scores(samples[0], ref, "")[0], "n_samples": samples.shape[0]}


def timed_row(task, method, run, D, lik, ref, device):
    counted = CountingDenoiser(D)
    with PeakMemory(device) as mem:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        with torch.enable_grad():                          # DPS-type solvers differentiate (weights are frozen)
            x = run(counted, lik, ref).detach()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t
    B = ref.shape[0]
    extra = {}
    if x.shape[0] != B:                                    # samples: score their mean
        samples = x.reshape(-1, *ref.shape)
        extra = uq_fields(samples, ref)
        x = samples.clamp(0, 1).mean(0)
    r = phantom_table.row(task, method, x, ref, seconds)
    uses_net = counted.evaluations > 0
    r.update(nfe=counted.evaluations / B if uses_net else None,
             nfe_grad=counted.with_grad * counted.evaluations / max(counted.calls, 1) / B if uses_net else None,
             peak_mib=mem.mib, **extra)
    return r


def task_rows(D, task, ref, device, only=None, quick=False, prior_name=None):
    """All rows of ``task`` on the images ``ref`` (B, 1, 64, 64), yielded as they come; with ``prior_name``
    (D is then that prior, not brain64) the methods are named "<method>, <prior_name> prior"."""
    lik = tasks.make(task, ref, torch.Generator(device=device).manual_seed(NOISE_SEED))
    runs = methods(task, lik, ref, quick)
    if lik.linear:
        runs[f"dds, mean of {UQ_SAMPLES} samples ({UQ_LEVELS} levels)"] = \
            lambda D, lik, ref: uq_run(D, lik, ref, task, quick).flatten(0, 1)
    for method, run in runs.items():
        if only and method not in only and method.split(",")[0] not in only:
            continue
        yield timed_row(task, method if prior_name is None else f"{method}, {prior_name} prior", run, D, lik, ref,
                        device)


def load_images(n: int, seed: int, device) -> torch.Tensor:
    return brain_slices(n, 64, torch.Generator().manual_seed(seed), contrast="mixed", split="test").to(device)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n-images", type=int, default=2)
    parser.add_argument("--tasks", nargs="*", default=TASK_ORDER)
    parser.add_argument("--methods", nargs="*", help="only these methods (names as in the table)")
    parser.add_argument("--quick", action="store_true", help="schedules of 3 levels: a smoke test, not a table")
    parser.add_argument("--out", default="benchmarks/results/brain_benchmark.json")
    parser.add_argument("--volume-json", nargs="*", default=[], help="volume_table.py outputs to include")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--merge", metavar="WHAT", help="add this run's rows to the table already at --out "
                        "(replacing rows of the same task and method) and record the run under 'runs', "
                        "described by WHAT (e.g. 'PnP-HQS on every task')")
    parser.add_argument("--prior", default="brain64", help="another shipped prior in place of brain64 (the lever "
                        "'prior': rows are named '<method>, <prior> prior')")
    argv_list = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    D = pretrained.load(args.prior, device=device)
    ref = load_images(args.n_images, TEST_SEED, device)
    result = {"machine": machine(device), "images": f"brain_slices({args.n_images}, 64, seed {TEST_SEED}, "
              "contrast='mixed', split='test')", "prior": args.prior, "noise_seed": NOISE_SEED,
              "solver_seed": SOLVER_SEED, "quick": args.quick, "brain_knobs": BRAIN,
              "budget": BUDGET,
              "rows": [], "volume_rows": volume_rows(args.volume_json)}
    begin = time.perf_counter()
    base = None
    if args.merge:
        with open(args.out) as f:
            base = json.load(f)
    command = "python benchmarks/bench_solvers.py --table " + " ".join(shlex.quote(a) for a in argv_list)

    def save():
        result["seconds"] = time.perf_counter() - begin
        write(result if base is None else merge(base, result, args.merge, command), args.out)
    print(f"{result['images']} on {device}: {result['machine']}", flush=True)
    for task in args.tasks:
        for r in task_rows(D, task, ref, device, args.methods, args.quick,
                           None if args.prior == "brain64" else args.prior):
            result["rows"].append(r)
            print(markdown([r]).split("\n", 2)[-1], flush=True)
            save()
    save()
    print(markdown(result["rows"]))
