"""Measure a trained phantom prior: Tweedie-denoiser PSNR vs noisy input and vs the best-tuned TV
denoiser on held-out phantoms, in family (held-out head-like phantoms and ellipses) and out of the
first prior's family (Shepp-Logan, sharp-edged random ellipses, sharp random Shepp-Logan relatives,
from seeds no training run draws), and (optionally) save a grid of unconditional samples.

    python tools/eval_prior.py                          # the shipped phantom64
    python tools/eval_prior.py --run-dir runs/phantom64 --samples runs/phantom64_samples.png
    python tools/eval_prior.py --weights runs/phantom64_base.pt --json runs/phantom64_base.json
"""
from __future__ import annotations

import argparse

import torch

import json
from pathlib import Path

from diffcourse import metrics, phantoms
from diffcourse.posterior.tv import tv_denoise_tuned
from diffcourse.prior import pretrained, samplers
from diffcourse.prior.nets import UNetConfig, build_denoiser
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.train import held_out_phantoms

TV_WEIGHTS = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.14, 0.2, 0.3, 0.4, 0.6, 0.8, 1.2]


def denoising_table(D, x0: torch.Tensor, sigmas=(0.1, 0.2, 0.5), seed: int = 0) -> list[dict]:
    """PSNR (mean over images) of noisy input, Tweedie denoiser D and oracle-tuned TV at each sigma."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for sigma in sigmas:
        y = x0 + sigma * torch.randn(x0.shape, generator=g)
        with torch.no_grad():
            d = D(y, sigma)
        tv, _ = tv_denoise_tuned(y, x0, TV_WEIGHTS, n_iter=150)
        rows.append({"sigma": sigma, "noisy": metrics.psnr(y, x0).mean().item(),
                     "tweedie": metrics.psnr(d, x0).mean().item(), "tv": metrics.psnr(tv, x0).mean().item()})
    return rows


def load_run(run_dir: str):
    saved = torch.load(f"{run_dir}/checkpoint.pt", weights_only=True)
    D = build_denoiser(UNetConfig.from_dict(saved["config"]["net"]))
    D.load_state_dict(saved["ema"])
    return D.eval().requires_grad_(False), saved["step"]


def test_sets(n: int, seed: int = 30_000) -> dict[str, torch.Tensor]:
    """The evaluation images, by name: in family (held-out phantoms) and the sharp-edged families."""
    g = torch.Generator().manual_seed(seed)
    return {"held-out heads": held_out_phantoms(n)[: (3 * n) // 4],
            "held-out ellipses": held_out_phantoms(n)[(3 * n) // 4:],
            "Shepp-Logan": phantoms.shepp_logan(64),
            "sharp ellipses": phantoms.ellipses(n, 64, generator=g, antialias=False),
            "sharp SL family": phantoms.shepp_logan_family(n, 64, generator=g)}


def load_weights(path: str):
    """Exported EMA weights (a state dict) of the phantom64 network."""
    D = build_denoiser(UNetConfig.from_dict(pretrained.info("phantom64")["config"]["net"]))
    D.load_state_dict(torch.load(path, weights_only=True))
    return D.eval().requires_grad_(False), Path(path).name


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir")
    parser.add_argument("--weights", help="an exported .pt of the phantom64 network")
    parser.add_argument("--json", help="write the tables here")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--samples", help="save a grid of 16 samples (Heun, 50 steps) to this PNG")
    args = parser.parse_args()
    if args.run_dir:
        D, step = load_run(args.run_dir)
    elif args.weights:
        D, step = load_weights(args.weights)
    else:
        D, step = pretrained.load("phantom64"), "shipped"
    print(f"checkpoint: {step}")
    tables = {}
    for name, x0 in test_sets(args.n).items():
        tables[name] = denoising_table(D, x0)
        print(name)
        for r in tables[name]:
            print(f"  sigma={r['sigma']:.2f}  noisy {r['noisy']:.2f} dB  tweedie {r['tweedie']:.2f} dB "
                  f"(gain {r['tweedie'] - r['noisy']:+.2f})  best TV {r['tv']:.2f} dB "
                  f"(tweedie - TV {r['tweedie'] - r['tv']:+.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": str(step), "tables": tables}, indent=1))
    if args.samples:
        import matplotlib
        matplotlib.use("Agg")
        from diffcourse.plot import show_images
        g = torch.Generator().manual_seed(0)
        sig = karras_sigmas(50, 0.002, 80.0)
        x = samplers.prior_sample_init((16, 1, 64, 64), 80.0, generator=g)
        with torch.no_grad():
            x = samplers.heun(D, x, sig)
        fig = show_images(x.clamp(0, 1), ncols=8)
        fig.savefig(args.samples, dpi=60)


if __name__ == "__main__":
    main()
