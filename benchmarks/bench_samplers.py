"""Sampler overhead: time per network evaluation of each sampler relative to the denoiser alone.

    python benchmarks/bench_samplers.py [--device cuda] [--steps 10] [--repeats 3]

The denoiser is a UNet at 64x64, batch 8: the shipped ``phantom64`` checkpoint if it loads, else an
untrained ``diffcourse.prior.nets`` UNet, else a small stand-in conv net (the script prints which).
For each sampler it runs ``steps`` steps, counts the network evaluations (NFE) and reports
    overhead = time(sampler) / (NFE x time(one denoiser evaluation)) - 1,
i.e. what the sampler's own arithmetic, noise draws, NaN checks and callbacks add per evaluation.
On a busy machine that difference drowns in noise, so the sampler is also run with a free stand-in
denoiser (``D0(x, sigma) = x / 2``): its time per evaluation is the sampler's own cost, and
"own/D" = that cost over one UNet evaluation is the precise overhead.
Times are the minimum over ``repeats`` runs (the least disturbed by other processes). Aim: < 5%.
"""
from __future__ import annotations

import argparse
import time

import torch

from diffcourse.prior import samplers as S
from diffcourse.prior.processes import karras_sigmas, ve_sigmas


def load_denoiser(device):
    """The UNet denoiser to time and a word on which one it is."""
    try:
        from diffcourse.prior import pretrained
        return pretrained.load("phantom64", device=device), "pretrained phantom64 UNet"
    except Exception as err:  # a missing or corrupt checkpoint: fall back, and say so
        reason = f"{type(err).__name__}: {err}"
    try:
        from diffcourse.prior.nets import build_denoiser
        return build_denoiser().to(device).eval(), f"untrained nets.UNet ({reason})"
    except Exception as err:
        reason += f"; {type(err).__name__}: {err}"
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 64, 3, padding=1), torch.nn.SiLU(),
                              torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.SiLU(),
                              torch.nn.Conv2d(64, 1, 3, padding=1)).to(device)
    return (lambda x, sigma: x - net(x)), f"stand-in conv net ({reason})"


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def samplers(D, x, n: int, g):
    """name -> (run, network evaluations)."""
    sig = karras_sigmas(n, 0.002, 80.0)
    ladder = ve_sigmas(n, 0.01, 80.0, append_zero=False)
    return {
        "langevin": (lambda: S.langevin(D, x, 0.5, alpha=1e-3, n_steps=n, generator=g), n),
        "annealed_langevin": (lambda: S.annealed_langevin(D, x, ladder, n_steps_each=1, generator=g), n + 1),
        "euler_maruyama": (lambda: S.euler_maruyama(D, x, sig, generator=g), n),
        "predictor_corrector": (lambda: S.predictor_corrector(D, x, sig, generator=g), 2 * n),
        "ddpm": (lambda: S.ddpm(D, x, sig, generator=g), n),
        "ddim(eta=0.5)": (lambda: S.ddim(D, x, sig, eta=0.5, generator=g), n),
        "ddim_ve": (lambda: S.ddim_ve(D, x, sig), n),
        "heun": (lambda: S.heun(D, x, sig), 2 * n - 1),
        "flow_euler": (lambda: S.flow_euler(D, x, sig), n),
        "sbim": (lambda: S.sbim(D, x, sig), n),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    D, which = load_denoiser(device)
    g = torch.Generator(device=device).manual_seed(0)
    x = 80.0 * torch.randn(8, 1, 64, 64, generator=g, device=device)
    sigma = torch.full((8,), 0.5, device=device)
    print(f"denoiser: {which}; batch 8 x 1 x 64 x 64 on {device}, {args.steps} steps, "
          f"min of {args.repeats} runs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with torch.inference_mode():
        D(x, sigma)  # warm-up
        runs = samplers(D, x, args.steps, g)
        free = samplers(lambda v, s: 0.5 * v, x, args.steps, g)
        best = {name: float("inf") for name in runs}
        own = {name: float("inf") for name in runs}
        t_D = float("inf")
        for _ in range(args.repeats):  # interleave, so that a slow spell hits every entry alike
            t_D = min(t_D, timed(lambda: [D(x, sigma) for _ in range(args.steps)], device) / args.steps)
            for name, (run, _) in runs.items():
                best[name] = min(best[name], timed(run, device))
                own[name] = min(own[name], timed(free[name][0], device))
    print(f"{'sampler':22s}{'NFE':>5s}{'ms/NFE':>10s}{'D alone':>10s}{'overhead':>10s}{'own ms':>10s}{'own/D':>8s}")
    for name, (_, nfe) in runs.items():
        per, mine = best[name] / nfe, own[name] / nfe
        print(f"{name:22s}{nfe:5d}{1e3 * per:10.2f}{1e3 * t_D:10.2f}{100 * (per / t_D - 1):9.1f}%"
              f"{1e3 * mine:10.3f}{100 * mine / t_D:7.2f}%")


if __name__ == "__main__":
    main()
