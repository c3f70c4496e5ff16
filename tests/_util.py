"""Helpers shared by the test modules, imported as ``from _util import gen``.

pytest's default ("prepend") import mode puts ``tests/`` (no ``__init__.py``) on ``sys.path`` before
it imports a test module, in the main process and in every xdist worker, so this plain module is
importable from any test file; unlike a fixture it also serves module-level tables of cases.
"""
from __future__ import annotations

import torch


def gen(seed: int = 0) -> torch.Generator:
    """A fresh CPU generator seeded with ``seed``: every test draws its own reproducible numbers.

    >>> torch.equal(torch.rand(3, generator=gen(1)), torch.rand(3, generator=gen(1)))
    True
    """
    return torch.Generator().manual_seed(seed)


def unit_directions(n: int = 64, d: int = 2, seed: int = 123) -> torch.Tensor:
    """n fixed random unit vectors in R^d (float64), the projections of a sliced Wasserstein distance."""
    theta = torch.randn(n, d, generator=gen(seed), dtype=torch.float64)
    return theta / theta.norm(dim=1, keepdim=True)


def reference_quantiles(ref: torch.Tensor, n: int, theta: torch.Tensor) -> torch.Tensor:
    """Projections of a large exact set (m n points) at the n plotting positions (k + 1/2)/n: (n, len(theta))."""
    m = ref.shape[0] // n
    return (ref @ theta.T).sort(0).values[m // 2::m][:n]


def sliced_w2(x: torch.Tensor, ref_q: torch.Tensor, theta: torch.Tensor) -> float:
    """Sliced Wasserstein-2 distance of the point set x (n, d) to a reference given by its quantiles.

    >>> th = unit_directions(8)
    >>> x = torch.randn(100, 2, generator=gen(0), dtype=torch.float64)
    >>> sliced_w2(x, reference_quantiles(x, 100, th), th)
    0.0
    """
    return float((((x @ theta.T).sort(0).values - ref_q) ** 2).mean().sqrt())


def denoising_margins(D, clean: torch.Tensor, tv_weights, sigmas=(0.1, 0.2, 0.5), seed: int = 3) -> dict:
    """{sigma: (gain over the noisy input, margin over the best-tuned TV denoiser)} in dB, mean PSNR over
    ``clean``, noise from ``gen(seed)`` drawn in the order of ``sigmas`` (the pretrained-prior tests)."""
    from diffcourse import metrics
    from diffcourse.posterior.tv import tv_denoise_tuned

    g, out = gen(seed), {}
    for sigma in sigmas:
        y = clean + sigma * torch.randn(clean.shape, generator=g)
        with torch.no_grad():
            p_den = metrics.psnr(D(y, sigma), clean).mean().item()
        tv, _ = tv_denoise_tuned(y, clean, tv_weights, n_iter=100)
        out[sigma] = (p_den - metrics.psnr(y, clean).mean().item(), p_den - metrics.psnr(tv, clean).mean().item())
    return out


def verdict(check, fn, capsys) -> tuple[bool, str]:
    """Run an exercise check on ``fn``: (its verdict, what it printed for the learner)."""
    ok = check(fn)
    return ok, capsys.readouterr().out
