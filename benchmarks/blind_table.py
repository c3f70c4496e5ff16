"""Blind deblurring of held-out phantoms: BlindDPS beside non-blind DPS and a classical blind baseline.

    python benchmarks/blind_table.py [--n-images 4] [--steps 100] [--out runs/blind_table.json]

Each held-out phantom (``held_out_phantoms``, seed 10 000; settings tuned on seed 20 000) is blurred twice,
circularly, and σ_y = 0.02 noise is added (BlindDPS's σ_y, Chung, Kim, Kim & Ye, CVPR 2023):

* motion: a camera-shake kernel of size 15 on the 16 × 16 kernel canvas (``motion_kernel``, intensity
  0.5; BlindDPS uses 64-px kernels for 256-px images: the same ratio), one seed per image;
* Gaussian: a 15 × 15 Gaussian kernel of std 1.5, 3.0, 2.0 or 2.5 px (image i takes the i-th, cyclic).

Methods, all with the shipped phantom prior (``pretrained.load("phantom64")``), the same σ schedule
(``karras_sigmas(--steps)``) and the same seeds:

* DPS, true kernel — the non-blind upper bound (``solvers.dps``, ζ' = 0.5, tuned on the ``deblur`` task);
* DPS, wrong kernel — the same with the kernel of the next image of the same family (cyclic);
* BlindDPS, paper (constant ζ) and code (ζ √ᾱ_t) step rules (``solvers.blind_dps``, ``blind_dps_code``),
  with the kernel prior ``pretrained.load("kernel")``;
* alternating TV — the classical blind baseline: alternate ADMM-TV on x for the current kernel and
  projected gradient on k (onto kernels: non-negative, unit sum, 16 × 16 support) with a smoothness
  penalty β/2 ||∇k||², after Chan & Wong (IEEE TIP 1998) and Perrone & Favaro (CVPR 2014).

Scores: PSNR of the image (clipped to [0, 1]) and the kernel error ||k̂ - k||₂ / ||k||₂, both after
aligning the shift that blind deblurring cannot see (x rolled by d and k̂ by -d give the same y; d, up to
3 px each way, is the one that brings k̂ closest to k), and, in brackets, as they come. The blurred y is
the reference row.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffcourse.metrics import psnr
from diffcourse.physics.blur import Blur, gaussian_kernel, motion_kernel
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.noise import GaussianNoise
from diffcourse.posterior.classical import admm_tv
from diffcourse.posterior.solvers import blind_dps, blind_dps_code, dps
from diffcourse.posterior.tv import grad_2d
from diffcourse.prior import pretrained
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.samplers.loop import CountingDenoiser
from diffcourse.prior.train import held_out_phantoms

TEST_SEED, TUNE_SEED = 10_000, 20_000
NOISE_SEED, SOLVER_SEED, MOTION_SEED = 1, 0, 500
SIGMA_Y, KSIZE = 0.02, 16
GAUSS_STDS = (1.5, 3.0, 2.0, 2.5)
#: DPS: the deblur task's tuned ζ' (tasks.settings("deblur", "dps")); BlindDPS: the solvers' defaults, tuned on
#: two phantoms of seed 20 000 x (motion, Gaussian), 100 steps; alternating TV: λ in {0.001, ..., 0.3}, β in
#: {0, 0.01, 0.1, 1, 10} on the same images
DPS = {"zeta": 0.5}
BLIND, BLIND_CODE = {}, {}
ALT_TV = {"lam": 0.01, "rho": 0.3, "beta": 10.0, "n_outer": 20, "n_x": 20}


def on_canvas(k: torch.Tensor, size: int = KSIZE) -> torch.Tensor:
    """An odd (s, s) kernel centred on a (size, size) canvas, centre at pixel (size // 2, size // 2)."""
    s = k.shape[-1]
    out = torch.zeros(size, size, dtype=k.dtype)
    o = size // 2 - s // 2
    out[o:o + s, o:o + s] = k
    return out


def kernels(family: str, n: int) -> torch.Tensor:
    """The n true kernels (n, 16, 16) of ``family`` ("motion" or "gaussian")."""
    if family == "motion":
        return torch.stack([on_canvas(motion_kernel(15, torch.Generator().manual_seed(MOTION_SEED + i)))
                            for i in range(n)])
    return torch.stack([on_canvas(gaussian_kernel(15, GAUSS_STDS[i % len(GAUSS_STDS)])) for i in range(n)])


def measure(ref: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y = k ⊛ x + σ_y n (circular blur, one kernel per image)."""
    g = torch.Generator().manual_seed(NOISE_SEED)
    return Blur(k).A(ref) + SIGMA_Y * torch.randn(ref.shape, generator=g)


def project_kernels(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of (B, s, s) onto kernels {k >= 0, Σ k = 1} (Duchi et al., ICML 2008)."""
    flat = v.flatten(1)
    u = flat.sort(1, descending=True).values
    css = u.cumsum(1) - 1
    ind = torch.arange(1, flat.shape[1] + 1, dtype=v.dtype)
    rho = (u - css / ind > 0).sum(1, keepdim=True)                              # (B, 1)
    theta = css.gather(1, rho - 1) / rho
    return (flat - theta).clamp_min(0).reshape(v.shape)


def kernel_step(x: torch.Tensor, y: torch.Tensor, size: int, beta: float) -> torch.Tensor:
    """argmin_k 1/2 ||k ⊛ x - y||² + β/2 ||∇k||² over (size, size) kernels, then projected onto kernels.

    The normal equations are solved exactly (size² unknowns; the columns of the blur matrix are x blurred by
    unit kernels): the problem is too ill-conditioned for plain projected gradient.
    """
    B, n = x.shape[0], size * size
    units = torch.eye(n, dtype=x.dtype).reshape(n, size, size)
    cols = torch.stack([Blur(units[j]).A(x) for j in range(n)], 1).flatten(2)      # (B, n, H*W)
    G = cols @ cols.mT                                                              # (B, n, n)
    D = grad_2d(units[:, None]).flatten(1)                                          # (n, 2*n): ∇ of each unit
    G = G + beta * (D @ D.T)
    k = torch.linalg.solve(G, (cols @ y.flatten(1)[:, :, None]))[..., 0]           # (B, n)
    return project_kernels(k.reshape(B, size, size))


def alternating_tv(y: torch.Tensor, k: torch.Tensor, *, lam: float, rho: float, beta: float, n_outer: int,
                   n_x: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Alternating minimisation of 1/2 ||k ⊛ x - y||² + λ TV(x) + β/2 ||∇k||² over x and kernels k."""
    x = y.clone()
    for _ in range(n_outer):
        x = admm_tv(Blur(k), y, lam, rho, n_iter=n_x, x0=x)
        k = kernel_step(x, y, k.shape[-1], beta)
    return x, k


def kernel_error(k_hat: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """||k̂ - k||₂ / ||k||₂ per kernel, (B, s, s) -> (B,)."""
    return (k_hat - k).flatten(1).norm(dim=1) / k.flatten(1).norm(dim=1)


def align(x: torch.Tensor, k_hat: torch.Tensor, k: torch.Tensor, max_shift: int = 3):
    """(x rolled by d, k̂ rolled by -d) with the shift d, |d_i| <= max_shift, that brings k̂ closest to k.

    Blind deblurring cannot see such a shift: (x rolled by d) ⊛ (k̂ rolled by -d) = x ⊛ k̂ (circular blur).
    """
    best_x, best_k, best = x, k_hat, kernel_error(k_hat, k)
    for di in range(-max_shift, max_shift + 1):
        for dj in range(-max_shift, max_shift + 1):
            kk = k_hat.roll((-di, -dj), (-2, -1))
            err = kernel_error(kk, k)
            pick = err < best                                                          # (B,)
            best_k = torch.where(pick[:, None, None], kk, best_k)
            best_x = torch.where(pick[:, None, None, None], x.roll((di, dj), (-2, -1)), best_x)
            best = torch.minimum(err, best)
    return best_x, best_k


def run_dps(D, y, k, sigmas):
    g = torch.Generator().manual_seed(SOLVER_SEED)
    x = sigmas[0].item() * torch.randn(y.shape, generator=g)
    return dps(D, x, sigmas, Likelihood(Blur(k), GaussianNoise(SIGMA_Y), y), generator=g, **DPS)


def run_blind(solver, D, D_k, y, sigmas, settings, callback=None):
    g = torch.Generator().manual_seed(SOLVER_SEED)
    x = sigmas[0].item() * torch.randn(y.shape, generator=g)
    k = sigmas[0].item() * torch.randn(y.shape[0], 1, KSIZE, KSIZE, generator=g)
    return solver(D, D_k, x, k, sigmas, y, noise=GaussianNoise(SIGMA_Y), generator=g, callback=callback,
                  **settings)


def rows_for(family, D, D_k, ref, sigmas):
    k = kernels(family, ref.shape[0])
    wrong = k.roll(1, 0)
    y = measure(ref, k)
    rows = []

    def add(method, x, k_hat, seconds, counted=None):
        x_al, k_al = (x, None) if k_hat is None else align(x, k_hat, k)
        rows.append({"blur": family, "method": method, "psnr": psnr(x.clamp(0, 1), ref).tolist(),
                     "psnr_aligned": psnr(x_al.clamp(0, 1), ref).tolist(),
                     "kernel_error": None if k_hat is None else kernel_error(k_hat, k).tolist(),
                     "kernel_error_aligned": None if k_hat is None else kernel_error(k_al, k).tolist(),
                     "seconds_per_image": seconds / ref.shape[0],
                     "nfe": None if counted is None else counted.calls})
        r = rows[-1]
        mean = lambda v: "" if v is None else sum(v) / len(v)                      # noqa: E731
        kerr = "" if k_hat is None else f"{mean(r['kernel_error_aligned']):.3f} ({mean(r['kernel_error']):.3f})"
        print(f"| {family} | {method} | {mean(r['psnr_aligned']):.2f} ({mean(r['psnr']):.2f}) | {kerr} | "
              f"{r['seconds_per_image']:.1f} |", flush=True)
    add("measurement y", y, None, 0.0)
    start = time.perf_counter()
    k_start = on_canvas(gaussian_kernel(15, 1.0)).expand(ref.shape[0], -1, -1).clone()   # a small blur
    x_tv, k_tv = alternating_tv(y, k_start, **ALT_TV)
    add("alternating TV (blind)", x_tv, k_tv, time.perf_counter() - start)
    for method, kernel in (("DPS, true kernel", k), ("DPS, wrong kernel", wrong)):
        counted = CountingDenoiser(D)
        start = time.perf_counter()
        x = run_dps(counted, y, kernel, sigmas)
        add(method, x, kernel, time.perf_counter() - start, counted)
    for method, solver, settings in (("BlindDPS, paper step", blind_dps, BLIND),
                                     ("BlindDPS, code step", blind_dps_code, BLIND_CODE)):
        counted = CountingDenoiser(D)
        start = time.perf_counter()
        x, k_hat = run_blind(solver, counted, D_k, y, sigmas, settings)
        add(method, x, k_hat, time.perf_counter() - start, counted)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--blurs", nargs="*", default=["motion", "gaussian"])
    parser.add_argument("--out", default="benchmarks/results/blind_table.json", help="JSON with every image's scores")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    D, D_k = pretrained.load("phantom64"), pretrained.load("kernel")
    ref = held_out_phantoms(args.n_images, 64, TEST_SEED)
    sigmas = karras_sigmas(args.steps)
    print(f"{args.n_images} held-out phantoms (seed {TEST_SEED}), {args.steps} steps, sigma_y = {SIGMA_Y}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| blur | method | PSNR aligned (as is), dB | kernel error aligned (as is) | s/img |\n"
          "|---|---|---:|---:|---:|")
    rows = []
    for family in args.blurs:
        rows += rows_for(family, D, D_k, ref, sigmas)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"steps": args.steps, "sigma_y": SIGMA_Y, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
