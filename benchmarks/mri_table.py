"""Accelerated MRI on held-out brain slices: single- and multi-coil Cartesian sampling, diffusion solvers
beside classical reconstructions, and the calibration of posterior-sample uncertainty maps.

    python benchmarks/mri_table.py [--out benchmarks/results/mri_table.json] [--n-images 4] [--tune]

Images: ``brain_slices(n, 64, split="test")`` (the held-out slab, seed 10 000), magnitudes in [0, 1];
the prior is the shipped ``brain64``. Measurements y = A x + σ_y n, σ_y = 0.01 per real and imaginary
part of every k-space sample (every coil), as the course's tasks ``mri4`` / ``mri8``. Configurations
(:data:`CONFIGS`): 8 synthetic coils (``coil_sensitivities``) or one; 1-D Cartesian masks (whole
columns) with a fully sampled centre, equispaced or random. Solvers: score-POCS (Chung & Ye, MedIA
2022; multi-coil: their SENSE gradient step as the consistency), DPS (Chung, Kim, McCann, Klasky & Ye,
ICLR 2023), DDS (Chung, Lee & Ye, ICLR 2024), DMPS (Meng & Kabashima 2022; single coil, where the SVD
of A exists); baselines: zero-filled Aᴴy, SENSE least squares by CG (Pruessmann et al., MRM 1999; the
iteration count regularises) and ADMM-TV. Settings (:data:`SETTINGS`, :data:`BASELINES`) were tuned
with ``--tune`` on two other held-out slices (seed 20 000). Rows: mean PSNR / SSIM over the images,
seconds and network evaluations per image (a batch of B images in one call counts B evaluations).

Uncertainty (the ``mc8_rand`` configuration): DPS and DDS draw :data:`N_SAMPLES` posterior samples per
image; the rows give the PSNR of one sample and of the sample mean, the coverage of the truth by
mean ± k std (k = 1, 2, 3) beside the Gaussian erf(k/√2) and the exact 8-sample Student value, and the
correlation of the std map with the error map (:mod:`diffcourse.posterior.uncertainty`).

Complex images (``mc4_equi``): the brain magnitude times exp(i φ), φ a smooth random phase
(``smooth_phase``, up to ±π). Two ways to use the real prior, both with DDS: on the real and imaginary
parts apart (Chung & Ye's scheme, :class:`~diffcourse.posterior.complex_mri.RealImag`), and on a real
image ρ, x = ρ exp(i φ̂), after estimating the phase (:class:`~diffcourse.posterior.complex_mri.PhaseModulated`)
from the k-space centre, from the SENSE-CG image, or given the true phase (an oracle: the error floor of
the scheme). Baselines act on the complex image. Everything is scored on |x|.

Run time: 1238 s on one thread of a 2-core machine at load 10 (449 s on a quieter one with
``--uq-images 2``); the seconds of every row are in the output.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from diffcourse.data import brain_slices
from diffcourse.metrics import psnr, ssim
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.mri import MultiCoilMRI, SingleCoilMRI, cartesian_mask, coil_sensitivities, smooth_phase
from diffcourse.physics.noise import GaussianNoise
from diffcourse.posterior import solvers
from diffcourse.posterior.classical import admm_tv, least_squares
from diffcourse.posterior.complex_mri import (PhaseModulated, RealImag, centre_phase, real_images, sense_dc,
                                              split_denoiser)
from diffcourse.posterior.uncertainty import calibration, pixel_stats, std_error_correlation
from diffcourse.prior import pretrained
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.samplers.loop import CountingDenoiser

SIZE, SIGMA_Y, N_COILS = 64, 0.01, 8
TEST_SEED, TUNE_SEED, NOISE_SEED, SOLVER_SEED, PHASE_SEED = 10_000, 20_000, 1, 0, 3
N_SAMPLES = 8
CONFIGS = {  # coils, acceleration R, mask kind, centre fraction (fastMRI's 0.08 at 4x, 0.04 at 8x)
    "mc4_equi": (N_COILS, 4, "equispaced", 0.08),
    "mc8_rand": (N_COILS, 8, "random", 0.04),
    "sc4_rand": (1, 4, "random", 0.08),
}
UQ_CONFIG, COMPLEX_CONFIG = "mc8_rand", "mc4_equi"
# Tuned with --tune on two other held-out slices (seed 20 000), PSNR of one run (mc8_rand / sc4_rand):
# score-POCS 15 levels snr 0.16 / 0.4: 14.3 / 15.5 and 14.2 / 15.8 dB; 30 levels: 18.4 / 19.7 and 19.3 / 21.1;
# DPS (25 levels) zeta 0.5 / 1 / 2 with sigma_max 10: 19.8 / 21.5 / 21.9 and 21.0 / 22.4 / 22.6 (sigma_max 80:
# 18.7 / 21.2 and 19.8 / 22.5); DDS (25 levels, 5 CG steps) gamma 10 / 100 / 1000: 22.5 / 22.8 / 22.8 and
# 22.2 / 22.5 / 22.5; DMPS lam 1 / 1.75 / 3: 19.5 / 19.4 / 4.2 (sc4_rand). "n" is the number of noise levels
# (karras_sigmas(n, sigma_max=...), down to 0.002, then 0). Multi-coil values, tuned on mc8_rand, are
# reused on mc4_equi and on the complex images. The step counts are set by the time budget.
SETTINGS = {
    "mc": {"score_pocs": {"n": 30, "snr": 0.4}, "dps": {"n": 25, "zeta": 2.0, "sigma_max": 10.0},
           "dds": {"n": 25, "gamma": 100.0}},
    "sc": {"score_pocs": {"n": 30, "snr": 0.4}, "dps": {"n": 25, "zeta": 2.0, "sigma_max": 10.0},
           "dds": {"n": 25, "gamma": 100.0}, "dmps": {"n": 25, "lam": 1.0}},
}
TV_ITER = 100
# SENSE-CG iterations from {5, 10, 20, 50} (mc4_equi 23.9 / 25.0 / 23.5 / 20.5 dB, mc8_rand 19.0 / 19.5 /
# 19.6 / 17.4: semi-convergence, the noise grows with the iterations; sc4_rand converges in 2: 18.2);
# ADMM-TV (lam, rho = 10 lam) from lam in {3e-4, 1e-3, 3e-3}, TV_ITER iterations.
BASELINES = {
    "mc4_equi": {"cg_iter": 10, "tv": (1e-3, 1e-2)},
    "mc8_rand": {"cg_iter": 20, "tv": (1e-3, 1e-2)},
    "sc4_rand": {"cg_iter": 10, "tv": (3e-3, 3e-2)},
}


def operator(config: str):
    coils, R, kind, centre = CONFIGS[config]
    mask = cartesian_mask(SIZE, R, centre, kind=kind, generator=torch.Generator().manual_seed(0))
    return SingleCoilMRI(mask) if coils == 1 else MultiCoilMRI(mask, coil_sensitivities(coils, SIZE))


def measure(config: str, x: torch.Tensor, op=None) -> Likelihood:
    op = operator(config) if op is None else op
    return Likelihood.measure(op, GaussianNoise(SIGMA_Y), x, generator=torch.Generator().manual_seed(NOISE_SEED))


def family(config: str) -> str:
    return "sc" if CONFIGS[config][0] == 1 else "mc"


def run_solver(D, name: str, lik, shape, kw: dict, n_samples: int = 1, dc_op=None):
    """``n_samples`` chains per image in one batch: returns (samples (S, B, ...), seconds, counter)."""
    kw = dict(kw)
    sigmas = karras_sigmas(kw.pop("n"), sigma_max=kw.pop("sigma_max", 80.0)).float()
    if name == "score_pocs" and dc_op is not None:
        kw["dc"] = sense_dc(dc_op)
    rep = Likelihood(lik.op, lik.noise, lik.y.repeat(n_samples, *[1] * (lik.y.ndim - 1)))
    g = torch.Generator().manual_seed(SOLVER_SEED)
    x = sigmas[0] * torch.randn((n_samples * shape[0], *shape[1:]), generator=g)
    counted = CountingDenoiser(D)
    start = time.perf_counter()
    out = getattr(solvers, name)(counted, x, sigmas, rep, generator=g, **kw).detach()
    return out.reshape(n_samples, *shape), time.perf_counter() - start, counted


def score(x: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    x = x.clamp(0, 1)
    return psnr(x, ref).mean().item(), ssim(x, ref).mean().item()


def row(config, method, x, ref, seconds, evaluations=None, **extra):
    p, s = score(x, ref)
    B = ref.shape[0]
    return {"config": config, "method": method, "psnr": p, "ssim": s, "seconds_per_image": seconds / B,
            "nfe_per_image": None if evaluations is None else evaluations / B, **extra}


def baseline_rows(config: str, lik, ref, params=None, *, magnitude=False):
    """Zero-filled, SENSE-CG and ADMM-TV; real images (Re Aᴴ) or complex ones (scored on |x|)."""
    params = BASELINES[config] if params is None else params
    op = lik.op if magnitude else real_images(lik.op)
    post = (lambda v: v.abs()) if magnitude else (lambda v: v)
    rows = []
    for method, fn in (("zero-filled", lambda: op.AT(lik.y)),
                       (f"SENSE-CG ({params['cg_iter']} it.)", lambda: least_squares(op, lik.y, n_iter=params["cg_iter"])),
                       ("ADMM-TV", lambda: admm_tv(op, lik.y, *params["tv"], n_iter=TV_ITER))):
        start = time.perf_counter()
        x = post(fn())
        rows.append(row(config, method, x, ref, time.perf_counter() - start))
    return rows


def uq_numbers(samples: torch.Tensor, ref: torch.Tensor) -> dict:
    """Coverage at k = 1, 2, 3 (all pixels and the head, truth > 0.02) and the std-error correlation."""
    samples = samples.clamp(0, 1)
    mean, std = pixel_stats(samples)
    head = ref > 0.02
    cal, cal_head = calibration(samples, ref), calibration(samples, ref, mask=head)
    return {"coverage": cal.observed.mean(0).tolist(), "coverage_head": cal_head.observed.mean(0).tolist(),
            "gaussian": cal.gaussian.tolist(), "student": cal.student.tolist(),
            "corr_std_error": std_error_correlation(std, mean - ref).mean().item(),
            "corr_std_error_head": std_error_correlation(std, mean - ref, mask=head).mean().item(),
            "psnr_mean": score(mean, ref)[0], "ssim_mean": score(mean, ref)[1],
            "mean_std": std.mean().item(), "rmse_mean": (mean - ref).pow(2).mean().sqrt().item()}


def solver_rows(D, config, lik, ref, names, n_samples=1):
    fam = family(config)
    rows = []
    for name in names:
        kw = SETTINGS[fam][name]
        samples, seconds, counted = run_solver(D, name, lik, ref.shape, kw, n_samples,
                                               dc_op=lik.op if fam == "mc" else None)
        extra = {"settings": kw}
        if n_samples > 1:
            extra.update(uq_numbers(samples, ref), n_samples=n_samples)
        r = row(config, name, samples[0], ref, seconds, counted.evaluations, **extra)
        r["seconds_per_image"], r["nfe_per_image"] = seconds / ref.shape[0], counted.evaluations / ref.shape[0]
        rows.append(r)
    return rows


def complex_rows(D, ref, phase):
    """mc4_equi on |x| exp(i φ): baselines on |x|, DDS with the real prior on (Re, Im) and phase-first."""
    config = COMPLEX_CONFIG
    truth_c = ref * torch.polar(torch.ones_like(phase), phase)
    op = operator(config)
    lik = measure(config, truth_c, op)
    rows = [dict(r, method=r["method"] + ", complex") for r in baseline_rows(config, lik, ref, magnitude=True)]
    kw = SETTINGS["mc"]["dds"]
    split_lik = Likelihood(RealImag(op), lik.noise, lik.y)
    samples, seconds, counted = run_solver(split_denoiser(D), "dds", split_lik, (ref.shape[0], 2, SIZE, SIZE), kw)
    x_split = samples[0].pow(2).sum(1, keepdim=True).sqrt()                 # |x| from (Re, Im)
    rows.append(row(config, "dds, real prior on Re and Im", x_split, ref, seconds, 2 * counted.evaluations,
                    settings=kw))
    n_center = round(SIZE * CONFIGS[config][3])
    phase_hat = centre_phase(op, lik.y, n_center)
    err = torch.angle(torch.polar(torch.ones_like(phase), phase - phase_hat))[ref > 0.02].abs().mean().item()
    ph_lik = Likelihood(PhaseModulated(op, phase_hat), lik.noise, lik.y)
    samples, seconds, counted = run_solver(D, "dds", ph_lik, ref.shape, kw)
    rows.append(row(config, "dds, phase from the centre, real prior", samples[0].abs(), ref, seconds,
                    counted.evaluations, settings=kw, phase_error_rad=err))
    sense = least_squares(op, lik.y, n_iter=BASELINES[config]["cg_iter"])   # complex SENSE-CG: a full-res phase
    err = torch.angle(torch.polar(torch.ones_like(phase), phase - sense.angle()))[ref > 0.02].abs().mean().item()
    samples, seconds, counted = run_solver(D, "dds", Likelihood(PhaseModulated(op, sense.angle()), lik.noise, lik.y),
                                           ref.shape, kw)
    rows.append(row(config, "dds, phase from SENSE-CG, real prior", samples[0].abs(), ref, seconds,
                    counted.evaluations, settings=kw, phase_error_rad=err))
    truth_lik = Likelihood(PhaseModulated(op, phase), lik.noise, lik.y)
    samples, seconds, counted = run_solver(D, "dds", truth_lik, ref.shape, kw)
    rows.append(row(config, "dds, true phase (oracle)", samples[0].abs(), ref, seconds, counted.evaluations, settings=kw))
    return rows


def markdown(rows) -> str:
    lines = ["| config | method | PSNR | SSIM | s/img | NFE/img |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        nfe = "" if r["nfe_per_image"] is None else f"{r['nfe_per_image']:.0f}"
        lines.append(f"| {r['config']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                     f"{r['seconds_per_image']:.1f} | {nfe} |")
    return "\n".join(lines)


def uq_markdown(rows) -> str:
    lines = ["| method | S | PSNR 1 sample | PSNR mean | cover k=1 / 2 / 3 (all) | head | Student | corr(std, err) all / head |",
             "|---|---:|---:|---:|---|---|---|---|"]
    for r in rows:
        if "coverage" not in r:
            continue
        f = lambda v: " / ".join(f"{100 * c:.1f}" for c in v)  # noqa: E731
        lines.append(f"| {r['method']} | {r['n_samples']} | {r['psnr']:.2f} | {r['psnr_mean']:.2f} | {f(r['coverage'])} | "
                     f"{f(r['coverage_head'])} | {f(r['student'])} | {r['corr_std_error']:.2f} / {r['corr_std_error_head']:.2f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- tuning (on other slices) and the run
GRIDS = {  # candidate settings tried by --tune on two held-out slices of seed TUNE_SEED (two rounds)
    "score_pocs": [{"n": n, "snr": s} for n in (15, 30) for s in (0.16, 0.4)],
    "dps": [{"n": 25, "zeta": z, "sigma_max": m} for z in (0.5, 1.0) for m in (80.0, 10.0)]
    + [{"n": 25, "zeta": 2.0, "sigma_max": 10.0}],
    "dds": [{"n": 25, "gamma": g} for g in (10.0, 100.0, 1000.0)],
    "dmps": [{"n": 25, "lam": lam} for lam in (1.0, 1.75, 3.0)],
}
TUNE_ON = {"mc": "mc8_rand", "sc": "sc4_rand"}


def tune(D, n_images: int = 2, solver_names=None) -> dict:
    ref = brain_slices(n_images, SIZE, torch.Generator().manual_seed(TUNE_SEED), split="test")
    out = {"baselines": {}, "solvers": {}}
    for config in CONFIGS if not solver_names or "baselines" in solver_names else ():  # per configuration
        lik = measure(config, ref)
        op = real_images(lik.op)
        cg = {n: score(least_squares(op, lik.y, n_iter=n), ref)[0] for n in (5, 10, 20, 50)}
        tv = {f"{lam:g},{10 * lam:g}": score(admm_tv(op, lik.y, lam, 10 * lam, n_iter=TV_ITER), ref)[0]
              for lam in (3e-4, 1e-3, 3e-3)}
        out["baselines"][config] = {"cg_iter": cg, "tv": tv}
        print(config, "CG", cg, "\n", config, "TV", tv, flush=True)
    for fam, config in TUNE_ON.items():
        lik = measure(config, ref)
        for name, grid in GRIDS.items():
            if (solver_names and name not in solver_names) or (name == "dmps" and fam == "mc"):
                continue
            for kw in grid:
                samples, seconds, _ = run_solver(D, name, lik, ref.shape, kw, dc_op=lik.op if fam == "mc" else None)
                p = score(samples[0], ref)[0]
                out["solvers"].setdefault(f"{fam}:{name}", []).append({**kw, "psnr": p, "seconds": seconds})
                print(config, name, kw, f"{p:.2f} dB, {seconds:.0f} s", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/mri_table.json")
    parser.add_argument("--n-images", type=int, default=4)
    parser.add_argument("--uq-images", type=int, default=4, help="images of the uncertainty runs (the first ones)")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS))
    parser.add_argument("--no-complex", action="store_true")
    parser.add_argument("--tune", action="store_true", help="run the tuning grids instead (seed 20 000)")
    parser.add_argument("--solvers", nargs="*", help="with --tune: only these solvers (and/or 'baselines')")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    D = pretrained.load("brain64")
    if args.tune:
        result = tune(D, solver_names=args.solvers)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        return
    start = time.perf_counter()
    ref = brain_slices(args.n_images, SIZE, torch.Generator().manual_seed(TEST_SEED), split="test")
    print(f"{args.n_images} held-out brain slices (seed {TEST_SEED}), torch {torch.__version__}, 1 thread", flush=True)
    rows, uq_rows = [], []

    def save():
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "uncertainty": uq_rows, "seconds": time.perf_counter() - start,
                       "settings": SETTINGS, "baselines": BASELINES, "n_images": args.n_images}, f, indent=1)
    for config in args.configs:
        lik = measure(config, ref)
        rows += baseline_rows(config, lik, ref)
        names = ["score_pocs", "dps", "dds"] + (["dmps"] if family(config) == "sc" else [])
        rows += solver_rows(D, config, lik, ref, names)
        print(markdown([r for r in rows if r["config"] == config]).split("\n", 2)[-1], flush=True)
        save()
        if config == UQ_CONFIG:
            k = args.uq_images
            sub = measure(config, ref[:k])
            uq_rows += solver_rows(D, config, sub, ref[:k], ["dds", "dps"], n_samples=N_SAMPLES)
            print(uq_markdown(uq_rows), flush=True)
            save()
    if not args.no_complex:
        phase = smooth_phase(args.n_images, SIZE, generator=torch.Generator().manual_seed(PHASE_SEED))
        rows += complex_rows(D, ref, phase)
        save()
    print(f"\n## {args.n_images} held-out brain slices\n\n" + markdown(rows))
    print(f"\n## Uncertainty ({UQ_CONFIG}, {args.uq_images} image(s), {N_SAMPLES} samples)\n\n" + uq_markdown(uq_rows))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
