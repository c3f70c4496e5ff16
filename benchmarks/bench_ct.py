"""Benchmark the Radon transform: A (projection) and AT (back-projection) at 128 x 128, 60 angles.

Side by side in one run:
* ``diffcourse``: ``Radon`` (precomputed CSR matrix and its transpose, exact adjoint);
* ``grid_sample``: the same bilinear ray sums by ``torch.nn.functional.grid_sample`` over all
  angles at once, its adjoint by autograd (also exact) -- the usual pure-torch alternative;
* ``skimage``: ``skimage.transform.radon`` / ``iradon(filter_name=None)`` (a back-projection, not
  the exact adjoint), one image at a time;
* ``deepinv``: ``deepinv.physics.Tomography`` when it is installed (skipped otherwise).

Usage: ``python benchmarks/bench_ct.py [--size 128] [--angles 60] [--repeats 5] [--threads 1]``.
Prints milliseconds per call (median of the repeats) and each method's time over diffcourse's.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from diffcourse.physics.ct import Radon, sparse_view


def timeit(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds (one warm-up call first)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def grid_sample_radon(N: int, angles: torch.Tensor):
    """Ray sums with bilinear sampling by grid_sample (scikit-image geometry); AT by autograd."""
    P = math.ceil(math.sqrt(2) * N)
    c, pad = P // 2, P // 2 - N // 2
    t = torch.arange(P, dtype=torch.float64) - c
    u, v = t[:, None], t[None, :]
    th = torch.deg2rad(angles)[:, None, None]
    col = c + torch.cos(th) * u + torch.sin(th) * v  # (n_angles, P det, P steps), padded coords
    row = c - torch.sin(th) * u + torch.cos(th) * v
    grid = torch.stack((col, row), -1) * (2 / (P - 1)) - 1  # align_corners=True
    grid = grid.float()

    def A(x):  # (B, 1, N, N) -> (B, 1, n_angles, P)
        B = x.shape[0]
        xp = F.pad(x, (pad, P - N - pad, pad, P - N - pad))
        xp = xp.repeat_interleave(len(angles), 0)  # (B n_angles, 1, P, P)
        g = grid.repeat(B, 1, 1, 1)
        s = F.grid_sample(xp, g, mode="bilinear", padding_mode="zeros", align_corners=True)
        return s.sum(-1).reshape(B, 1, len(angles), P)

    def AT(y, x_like):
        x = torch.zeros_like(x_like, requires_grad=True)
        (g,) = torch.autograd.grad((A(x) * y).sum(), x)
        return g

    return A, AT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--angles", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    N, angles = args.size, sparse_view(args.angles)

    t0 = time.perf_counter()
    op = Radon(N, angles)
    build = time.perf_counter() - t0
    print(f"Radon {N}x{N}, {args.angles} angles, {op.n_detectors} detectors; threads "
          f"{torch.get_num_threads()}; matrix build {build:.2f} s, nnz {op.matrix._nnz():,}")
    gs_A, gs_AT = grid_sample_radon(N, angles)
    try:
        from skimage.transform import iradon, radon
    except ImportError:  # pragma: no cover - scikit-image is a dev dependency
        radon = iradon = None
    try:
        import deepinv  # noqa: F401
        from deepinv.physics import Tomography
    except ImportError:
        Tomography = None
        print("deepinv is not installed: its Tomography operator is skipped")

    rows = []
    for B in (1, 8):
        g = torch.Generator().manual_seed(B)
        x = torch.rand(B, 1, N, N, generator=g)
        y = op.A(x)
        methods = {"diffcourse": (lambda: op.A(x), lambda: op.AT(y)),
                   "grid_sample+autograd": (lambda: gs_A(x), lambda: gs_AT(y, x))}
        err = (gs_A(x) - y).abs().max().item() / y.abs().max().item()
        print(f"batch {B}: grid_sample vs diffcourse max relative difference {err:.1e}")
        if radon is not None:
            xs, ys = x[:, 0].numpy().astype(np.float64), y[:, 0].numpy().astype(np.float64)
            ang = angles.numpy()
            methods["skimage"] = (lambda: [radon(im, ang, circle=False) for im in xs],
                                  lambda: [iradon(s.T, ang, circle=False, filter_name=None)
                                           for s in ys])
        if Tomography is not None:
            tomo = Tomography(angles=angles.float(), img_width=N, circle=False)
            y_dinv = tomo.A(x)                      # its own sinogram layout; AT timed on it alone
            methods["deepinv"] = (lambda: tomo.A(x), lambda: tomo.A_adjoint(y_dinv))
        ref = None
        for name, (fa, fat) in methods.items():
            ta, tat = timeit(fa, args.repeats), timeit(fat, args.repeats)
            ref = ref or (ta, tat)
            rows.append((B, name, ta, tat, ta / ref[0], tat / ref[1]))

    print(f"\n{'batch':>5} {'method':<22} {'A ms':>9} {'AT ms':>9} {'A ratio':>8} {'AT ratio':>9}")
    for B, name, ta, tat, ra, rat in rows:
        print(f"{B:>5} {name:<22} {ta:>9.2f} {tat:>9.2f} {ra:>8.2f} {rat:>9.2f}")
    print("(ratio = method time / diffcourse time; > 1 means diffcourse is faster)")


if __name__ == "__main__":
    main()
