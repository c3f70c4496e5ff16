"""Quantized compressed sensing of 64 x 64 phantoms at a fixed bit budget Q·M = 4096 bits (one bit per
pixel), as in Meng & Kabashima's CelebA experiment (ICLR 2023): 1 bit x 4096, 2 bits x 2048, 3 bits x 1365.

    python benchmarks/qcs_table.py [--out benchmarks/results/qcs_table.json] [--n-images 4] [--bits 1 2 3] [--quick]

Measurements y = Q(A x0 + n), n ~ N(0, σ_y² I), σ_y = 0.01, on ``--n-images`` held-out phantoms (seed
10 000) with two sensing matrices, both with unit mean row norm (so a_mᵀx0 has the same spread, std ≈
0.3): a row-orthogonal A, A Aᵀ = I (the subsampled randomised Hadamard transform P H D: random signs
D, orthonormal Walsh-Hadamard H, M random rows P, as a dense matrix), and a dense
ill-conditioned A = U diag(s) Vᵀ, U and V Haar, geometric singular values, κ = s_max/s_min = 100
(Meng & Kabashima, AAAI 2024).
Quantizers: sign (threshold 0) at 1 bit; at Q bits uniform over [min, max] of the batch's A x0 (as the
official QCS-SGM code, of the actual measurements), outer bins open. Rows:

* QCS-SGM (Meng & Kabashima, ICLR 2023): annealed Langevin with the factorised quantized
  pseudo-likelihood; exact (under the flat-prior approximation) for the row-orthogonal A; on the
  ill-conditioned A it over-counts correlated rows, and a chain that diverges is reported as such;
* QCS-SGM+ (Meng & Kabashima, AAAI 2024): the same with the EP likelihood, ill-conditioned A only;
* Jalal (Jalal et al., NeurIPS 2021) ignoring quantization: y replaced by its bin's representative
  value and treated as Gaussian with σ² = σ_y² + (quantization error variance): Δ²/12 at Q bits;
  at 1 bit the levels ±c, c = ρ√(2/π), variance ρ²(1 - 2/π), with ρ the rms of A x0 over the batch
  (the optimal 1-bit levels of N(0, ρ²), an oracle scale the quantized methods are not given);
  row-orthogonal A only (its annealed term assumes A Aᵀ = I);
* classical: BIHT (Jacques, Laska, Boufounos & Baraniuk, IEEE Trans. Inf. Theory 2013) sparse in the
  Haar wavelet at 1 bit, and at Q bits IHT on the bin centres followed by the quantization-consistent
  IHT (``classical.qiht``); sparsity k tuned on a separate phantom (seed 20 000).

All Langevin solvers share Jalal's tuned schedule on this prior (``tasks.settings("mri4", "jalal")``:
25 Karras levels 80 -> 0.01, 4 steps each, ε = 2e-4; 100 network evaluations per image); QCS-SGM+ runs
10 EP iterations per step (the library's default; the official code 3; with 5, the 2-bit chains
diverged). 1-bit data carry no scale: BIHT's unit-norm output is
scored with the norm of the true image known (``psnr``), and every row also after the best scale
fit c = <x̂, x0>/||x̂||² (``psnr_fit``, an oracle that removes any scale error). The diffusion methods
get their scale from the prior (the phantoms' intensities) and weakly from σ_y. A full run took 27 min
on one thread of a 2-core machine at load ≈ 9 (about 10 min is the estimate for an idle thread:
400 network calls on batches of 4 per bit depth, dense 4096² products and one 4096² eigendecomposition);
``--quick``: 1 image, 1 bit.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch

from diffcourse.metrics import psnr, ssim
from diffcourse.physics.cs import SubsampledHadamard
from diffcourse.physics.cs_matrices import ill_conditioned
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.matrix import Matrix
from diffcourse.physics.noise import GaussianNoise, QuantizedNoise
from diffcourse.physics.nonlinear import Quantizer
from diffcourse.posterior import tasks
from diffcourse.posterior.classical import biht, qiht
from diffcourse.posterior.solvers import jalal
from diffcourse.posterior.solvers.quantized import qcs_sgm, qcs_sgm_plus
from diffcourse.posterior.wavelet import haar2d, ihaar2d
from diffcourse.prior import pretrained
from diffcourse.prior.samplers.loop import CountingDenoiser
from diffcourse.prior.train import held_out_phantoms

SIZE, N = 64, 64 * 64
BUDGET = 4096                      # bits per image, Q·M
SIGMA_Y = 0.01
COND = 100.0                       # κ = s_max / s_min of the ill-conditioned A
EP_ITERS = 10
TEST_SEED, NOISE_SEED, SOLVER_SEED = 10_000, 1, 0
#: Haar-sparsity of the classical baselines, tuned on one phantom of seed 20 000 (PSNR, norm known at 1 bit)
SPARSITY = {1: 200, 2: 100, 3: 100}  # tried 100, 200, 300, 600, 1000, 1500
CLASSICAL_ITERS = 100


def image(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, 1, SIZE, SIZE)  # (B, N) -> (B, 1, H, W)


def flat_denoiser(D):
    """D on flattened images: the solvers see (B, N) vectors, the network (B, 1, 64, 64)."""
    return lambda x, sigma: D(image(x), sigma).flatten(1)


def haar(v):
    return haar2d(image(v)).flatten(1)


def ihaar(c):
    return ihaar2d(image(c)).flatten(1)


def quantizer(bits: int, z: torch.Tensor) -> Quantizer:
    return Quantizer.sign() if bits == 1 else Quantizer.uniform(bits, float(z.min()), float(z.max()))


def gaussian_stand_in(lik, bits: int, z: torch.Tensor) -> Likelihood:
    """y as Gaussian data: the bin's representative value, σ² = σ_y² + quantization error variance."""
    if bits == 1:
        rho = float(z.square().mean().sqrt())
        levels, var = [-rho * math.sqrt(2 / math.pi), rho * math.sqrt(2 / math.pi)], rho ** 2 * (1 - 2 / math.pi)
        quant = Quantizer([0.0], levels=levels)
    else:
        quant = lik.noise.quantizer
        var = float(quant.thresholds[1] - quant.thresholds[0]) ** 2 / 12
    y = quant.dequantize(lik.y, dtype=z.dtype)
    return Likelihood(lik.op, GaussianNoise(math.sqrt(SIGMA_Y ** 2 + var)), y)


def score(x, ref, scale_known=None):
    """(psnr, ssim, psnr after the best scale fit), means over the images; x, ref (B, N)."""
    fit = (x * ref).sum(1, keepdim=True) / x.square().sum(1, keepdim=True).clamp_min(1e-12)
    xf = image(fit * x).clamp(0, 1)
    if scale_known is not None:
        x = x * scale_known
    x, ref = image(x).clamp(0, 1), image(ref)
    return psnr(x, ref).mean().item(), ssim(x, ref).mean().item(), psnr(xf, ref).mean().item()


def diffusion(D, solver, lik, shape, **extra):
    kw = tasks.settings("mri4", "jalal")
    sigmas = kw.pop("sigmas").float()
    kw.pop("gamma", None)
    g = torch.Generator().manual_seed(SOLVER_SEED)
    x = sigmas[0].item() * torch.randn(shape, generator=g)
    counted = CountingDenoiser(flat_denoiser(D))
    with torch.no_grad():
        out = solver(counted, x, sigmas, lik, generator=g, **kw, **extra)
    return out, counted.calls


def classical(lik, bits: int, op, k: int):
    if bits == 1:
        return biht(op, 2.0 * lik.y.float() - 1, k, CLASSICAL_ITERS, W=haar, WT=ihaar)
    quant = lik.noise.quantizer
    l, u = quant.bounds(lik.y, dtype=torch.float32)
    c = quant.dequantize(lik.y, dtype=torch.float32)
    step = 1 / float(op.norm(torch.zeros(1, N)).max()) ** 2
    start = qiht(op, c, c, k, CLASSICAL_ITERS, step=step, W=haar, WT=ihaar)
    return qiht(op, l, u, k, CLASSICAL_ITERS, step=step, W=haar, WT=ihaar, x0=start)


def row_orthogonal(M: int, bits: int):
    """SubsampledHadamard's P H D as a dense float32 matrix (Sylvester's H; row norms then cost O(MN))."""
    srht = SubsampledHadamard((N,), M, torch.Generator().manual_seed(bits))
    H = torch.ones(1, 1)
    while H.shape[0] < N:
        H = torch.cat((torch.cat((H, H), 1), torch.cat((H, -H), 1)), 0)   # Sylvester: H_2n = [[H, H], [H, -H]]
    return Matrix(H[srht.rows] * srht.signs / math.sqrt(N))


def ill_conditioned_unit_rows(M: int, bits: int):
    """κ = COND, scaled from ||A||_F² = N to M (unit mean row norm)."""
    ill = ill_conditioned(N, M, COND, generator=torch.Generator().manual_seed(100 + bits)).matrix
    return Matrix((ill * math.sqrt(M / N)).float())


MATRICES = {"row-orthogonal": row_orthogonal, f"ill-conditioned κ={COND:g}": ill_conditioned_unit_rows}


def bit_rows(D, bits, ref, methods, matrices, sparsity=None, ep_iters=EP_ITERS, likelihood_scale=None):
    M = BUDGET // bits
    rows = []
    for a_name, make in MATRICES.items():
        if matrices and not any(a_name.startswith(m) for m in matrices):
            continue
        start = time.perf_counter()
        op = make(M, bits)
        print(f"{bits} bit(s), M = {M}, {a_name}: matrix {time.perf_counter() - start:.0f} s", flush=True)
        z = op.A(ref)
        quant = quantizer(bits, z)
        lik = Likelihood.measure(op, QuantizedNoise(quant, SIGMA_Y), ref,
                                 generator=torch.Generator().manual_seed(NOISE_SEED))
        row_orth = a_name == "row-orthogonal"
        runs = [("QCS-SGM", lambda: diffusion(D, qcs_sgm, lik, ref.shape))]
        if not row_orth:
            name = "QCS-SGM+" + (f" ({ep_iters} EP iterations)" if ep_iters != EP_ITERS else "") + \
                ("" if likelihood_scale is None else f" (code's norm matching, {likelihood_scale:g})")
            runs.append((name, lambda: diffusion(D, qcs_sgm_plus, lik, ref.shape, n_iter=ep_iters,
                                                 likelihood_scale=likelihood_scale)))
        else:
            runs.append(("Jalal, y as Gaussian", lambda: diffusion(D, jalal, gaussian_stand_in(lik, bits, z),
                                                                   ref.shape)))
        runs.append(("BIHT (Haar)" if bits == 1 else "IHT + consistent IHT (Haar)",
                     lambda: (classical(lik, bits, op, sparsity or SPARSITY[bits]), 0)))
        for method, run in runs:
            if methods and not any(method.startswith(m) for m in methods):
                continue
            start = time.perf_counter()
            try:
                out, nfe = run()
            except FloatingPointError as err:                      # a diverging chain is a result too
                rows.append({"bits": bits, "M": M, "A": a_name, "method": method, "psnr": math.nan, "ssim": math.nan,
                             "psnr_fit": math.nan, "seconds_per_image": (time.perf_counter() - start) / ref.shape[0],
                             "nfe": None, "note": f"diverged: {str(err).split(';')[0]}"})
                print(markdown(rows[-1:]).split("\n", 2)[-1], flush=True)
                continue
            seconds = time.perf_counter() - start
            known = ref.norm(dim=1, keepdim=True) if method.startswith("BIHT") else None
            p, s, pf = score(out.float(), ref, known)
            rows.append({"bits": bits, "M": M, "A": a_name, "method": method, "psnr": p, "ssim": s, "psnr_fit": pf,
                         "seconds_per_image": seconds / ref.shape[0], "nfe": nfe,
                         "note": "norm of x0 known" if known is not None else ""})
            print(markdown(rows[-1:]).split("\n", 2)[-1], flush=True)
    return rows


def markdown(rows) -> str:
    lines = ["| bits | M | A | method | PSNR | SSIM | PSNR (best scale) | s/img | NFE | note |",
             "|---:|---:|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['bits']} | {r['M']} | {r['A']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                     f"{r['psnr_fit']:.2f} | {r['seconds_per_image']:.1f} | {r['nfe'] or ''} | {r['note']} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/qcs_table.json", help="JSON output path")
    parser.add_argument("--n-images", type=int, default=4)
    parser.add_argument("--bits", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--methods", nargs="*", help="only the methods whose names start so")
    parser.add_argument("--matrices", nargs="*", help="only the matrices whose names start so (row, ill)")
    parser.add_argument("--seed", type=int, default=TEST_SEED, help="phantom seed (20 000: the tuning one)")
    parser.add_argument("--quick", action="store_true", help="1 image, 1 bit")
    parser.add_argument("--sparsity", type=int, help="override the classical baselines' k (tuning)")
    parser.add_argument("--ep-iters", type=int, default=EP_ITERS, help="EP iterations per QCS-SGM+ step")
    parser.add_argument("--likelihood-scale", type=float,
                        help="QCS-SGM+ with the official code's norm matching (0.3: its CelebA config)")
    args = parser.parse_args(argv)
    n, bit_list = (1, [1]) if args.quick else (args.n_images, args.bits)
    torch.manual_seed(0)
    D = pretrained.load("phantom64")
    ref = held_out_phantoms(n, SIZE, args.seed).flatten(1)             # (B, N)
    start = time.perf_counter()
    print(f"{n} held-out phantoms (seed {args.seed}), σ_y = {SIGMA_Y}, budget {BUDGET} bits, "
          f"{torch.get_num_threads()} threads", flush=True)
    rows = []
    for bits in bit_list:
        rows += bit_rows(D, bits, ref, args.methods, args.matrices, args.sparsity, args.ep_iters,
                         args.likelihood_scale)
        with open(args.out, "w") as f:
            json.dump({"settings": {"n_images": n, "seed": args.seed, "sigma_y": SIGMA_Y, "budget": BUDGET,
                                    "cond": COND, "ep_iters": EP_ITERS, "sparsity": SPARSITY},
                       "rows": rows}, f, indent=1)
    print("\n" + markdown(rows))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
