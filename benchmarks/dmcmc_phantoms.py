"""DMCMC on phantoms (Kim & Ye, ICML 2023): network evaluations to reach a sample quality, with and
without Denoising Langevin Gibbs, for the shipped ``phantom64`` prior.

    python benchmarks/dmcmc_phantoms.py [--n 24] [--threads 1] [--json PATH] [--quick]
                                        [--seed 42000] [--select REGEX] [--families ...]

Samplers (each draws ``--n`` unconditional 64 x 64 phantoms; NFE = network evaluations per sample,
counted by ``CountingDenoiser``):

* **Heun** (Karras et al. 2022, Alg. 1) from σ_max = 80 with n Karras levels: 2n - 1 NFE;
* **Euler-Maruyama** on the reverse SDE (Song et al., ICLR 2021) with n levels: n NFE, a stochastic
  sampler for contrast (the ≈ 400 NFE baseline of Kim & Ye's demo is Karras et al.'s sampler with
  200 steps, 399 NFE);
* **DMCMC**: n / n_samples chains start at σ_hi (Heun from 80 down to σ_hi, ``n_start`` levels), run
  DLG with σ ~ p(σ | x) from the shipped noise-level classifier (``pretrained.load_noise_level``) over
  its levels from 0.02 to 80 (a uniform prior p(σ) on them), ``n_burn`` sweeps, then ``n_samples``
  emissions of ``n_gibbs`` sweeps + a Heun ODE of ``n_ode`` levels from the chain's σ (ε = 0.3).
  NFE per sample: (2 (n_start - 1) + n_burn) / n_samples + n_gibbs + 2 n_ode - 1;
* **no chain** (ablation): the same start at σ_hi and the same ODE, without the Gibbs sweeps.

Sample quality: Fréchet distances (the statistic of FID, Heusel et al., NeurIPS 2017) between the
samples and 2048 images of the prior's own training distribution (its recorded ``data``, drawn from
generator seeds no training run uses), on two feature sets:
8 x 8 block means of the pixels ("pix", 64-d: layout and intensities) and log energies of Haar-like
differences at four scales ("tex", 24-d: edges and texture, where noise and blur show); neither
uses the classifier that DMCMC relies on.
Both are biased at small sample sizes, so each is divided by its *floor*: the mean over 16 sets of
``--n`` held-out phantoms. "Reaches the quality" below means both ratios <= ``--target`` (default 2,
about the worst of the 16 held-out sets: the floor's spread is printed).
Samples are clipped to [0, 1] before they are measured.

Result (``--n 24``, seed 42000, one busy CPU thread, 18 min; the worst of the 16 held-out sets is at
pix 1.28, tex 1.88):

    sampler          settings                                   NFE    pix    tex
    Heun             4 / 6 / 8 / 10 / 12 levels          7 / 11 / 15 / 19 / 23
                                               pix  4.20 / 1.78 / 1.49 / 1.28 / 1.15
                                               tex  65.5 / 17.9 / 3.49 / 1.59 / 1.11
    Euler-Maruyama   24 / 48 / 96 levels       pix  2.53 / 1.40 / 1.12,  tex 25.9 / 4.43 / 1.22
    DMCMC            σ_hi 1, start 4, burn 2, gibbs 1, ode 5, emit 2   14.0   2.27   5.63
    no chain         σ_hi 1, start 4, ode 5                            15.0   1.89   5.67
    DMCMC            σ_hi 1, start 4, burn 2, gibbs 1, ode 7, emit 2   18.0   2.26   5.27
    no chain         σ_hi 1, start 4, ode 7                            19.0   1.89   5.37
    DMCMC            σ_hi 1, start 4, burn 8, gibbs 4, ode 5, emit 4   16.5   2.60   3.72
    DMCMC            σ_hi 0.3, start 5, burn 2, gibbs 1, ode 5, emit 2 15.0   1.83   2.03
    no chain         σ_hi 0.3, start 5, ode 5                          17.0   1.38   2.53
    DMCMC            σ_hi 0.3, start 5, burn 8, gibbs 2, ode 4, emit 4 13.0   3.88   7.65

Fewest NFE with both ratios <= 2: Heun 19, Euler-Maruyama 96, DMCMC and "no chain" not reached.
With 24 samples the measure is noisy: the best DMCMC row, Heun 8 / 10 and its "no chain" row rerun
with ``--seed 1`` and ``--seed 2`` (``--select '^Heun (8|10) |σ_hi 0.3, start 5, (burn 2, gibbs 1, )?ode 5'``)
give, as pix / tex over the three seeds, Heun 15 NFE 1.49 1.58 3.06 / 3.49 2.63 4.70, Heun 19 NFE
1.28 1.39 2.72 / 1.59 1.42 3.55, DMCMC 15 NFE 1.83 1.86 3.18 / 2.03 2.65 2.75, no chain 17 NFE
1.38 1.36 2.85 / 2.53 1.87 3.11: seed 2 misses the target with every sampler. What holds on every
seed: DMCMC's samples are *less diverse* (pix above Heun's at equal NFE: two emissions of one chain
are correlated) and mostly *sharper* than Heun's at equal NFE (tex), and Heun with 19 NFE is at least
as good as DMCMC on both. So on this prior DMCMC does not save evaluations against a good ODE sampler
(Heun has converged by 19-23 NFE; a 399-NFE baseline would be far past that); a ratio like the
paper's (≈ 400 against < 150) appears only against the reverse SDE, which needs 96 NFE for the
quality Heun reaches with 19. Why the Gibbs step helps little here: p(σ | x) of a 64 x 64 image is
sharp (a width of about 1/sqrt(2 · 4096) in log σ, below the grid's spacing of log 1.18), so in the
chains we traced (lesson 09) σ never moved, and DLG acts as Langevin at the level the chain starts from.

Run time: about ``--n`` x (total NFE, 386 in the sweep) x the time of one network evaluation of one
image (0.1-0.2 s on a busy CPU thread): 15-30 min.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time

import torch
import torch.nn.functional as F

from diffcourse.prior import noise_level as NL
from diffcourse.prior import pretrained
from diffcourse.prior import samplers as S
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.train import TrainConfig, training_batch


def prior_data(n: int, seed: int) -> torch.Tensor:
    """n images of the data the shipped ``phantom64`` prior was trained on (its recorded settings)."""
    cfg = TrainConfig.from_dict(pretrained.info("phantom64")["config"])
    return training_batch(dataclasses.replace(cfg, batch_size=n), torch.Generator().manual_seed(seed))

REF_SEED, FLOOR_SEED, SAMPLER_SEED = 40_000, 41_000, 42_000


def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance of Gaussians fitted to feature sets a (n, d) and b (m, d):
    |μa - μb|² + tr Ca + tr Cb - 2 tr (Ca^½ Cb Ca^½)^½."""
    a, b = a.double(), b.double()
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    w, v = torch.linalg.eigh(ca)
    half = v @ torch.diag(w.clamp_min(0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(half @ cb @ half).clamp_min(0).sqrt().sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + ca.trace() + cb.trace() - 2 * cross)


def texture(x: torch.Tensor) -> torch.Tensor:
    """Per image: mean log energy and log mean energy of horizontal, vertical and diagonal Haar-like
    differences at 1, 2, 4 and 8 px (block means first); (B, 24). Noise raises the fine scales, blur
    lowers them, wrong structure moves the coarse ones. Differences below 0.01 (1 % of the range)
    count as flat (the 1e-4 in the logarithm): exact phantoms are exactly flat in places, which no
    network reproduces to the last bit, and that should not count."""
    out = []
    for s in (1, 2, 4, 8):
        y = F.avg_pool2d(x, s) if s > 1 else x
        for d in (y[..., :, 1:] - y[..., :, :-1], y[..., 1:, :] - y[..., :-1, :],
                  y[..., 1:, 1:] - y[..., :-1, :-1]):
            e = d.flatten(1) ** 2
            out += [(e + 1e-4).log().mean(1), (e.mean(1) + 1e-4).log()]
    return torch.stack(out, 1)


class Quality:
    """Fréchet distances of a sample set to held-out phantoms, in units of the floor (see module doc)."""

    def __init__(self, n: int, n_ref: int = 2048, n_floor: int = 16):
        self.ref = self.features(prior_data(n_ref, REF_SEED))
        sets = [self.raw(prior_data(n, FLOOR_SEED + i)) for i in range(n_floor)]
        self.floor = {k: sum(s[k] for s in sets) / n_floor for k in sets[0]}
        self.floor_max = {k: max(s[k] / self.floor[k] for s in sets) for k in sets[0]}

    def features(self, x):
        with torch.no_grad():
            return {"pix": F.avg_pool2d(x, 8).flatten(1), "tex": texture(x)}

    def raw(self, x) -> dict:
        return {k: frechet(f, self.ref[k]) for k, f in self.features(x.clamp(0, 1)).items()}

    def __call__(self, x) -> dict:
        return {k: v / self.floor[k] for k, v in self.raw(x).items()}


def heun_run(D, n_levels, n, seed):
    x = 80.0 * torch.randn(n, 1, 64, 64, generator=torch.Generator().manual_seed(seed))
    return S.heun(D, x, karras_sigmas(n_levels, 0.002, 80.0, dtype=torch.float32))


def em_run(D, n_levels, n, seed):
    g = torch.Generator().manual_seed(seed)
    x = 80.0 * torch.randn(n, 1, 64, 64, generator=g)
    return S.euler_maruyama(D, x, karras_sigmas(n_levels, 0.002, 80.0, dtype=torch.float32), generator=g)


def start_at(D, sigma_hi, n_start, n, seed, g):
    """n states at σ_hi: Heun from 80 down to σ_hi with n_start levels (no step to 0)."""
    x = 80.0 * torch.randn(n, 1, 64, 64, generator=torch.Generator().manual_seed(seed))
    return S.heun(D, x, karras_sigmas(n_start, sigma_hi, 80.0, append_zero=False, dtype=torch.float32))


def dmcmc_run(D, log_p, grid, n, seed, *, sigma_hi, n_start, n_gibbs, n_ode, n_burn, n_samples, eps):
    g = torch.Generator().manual_seed(seed + 1)
    chains = n // n_samples
    x = start_at(D, sigma_hi, n_start, chains, seed, g)
    return S.dmcmc(D, x, grid, log_p, n_gibbs=n_gibbs, eps=eps, n_ode=n_ode, n_burn=n_burn,
                   n_samples=n_samples, generator=g)


def no_chain_run(D, n, seed, *, sigma_hi, n_start, n_ode):
    x = start_at(D, sigma_hi, n_start, n, seed, None)
    return S.heun(D, x, karras_sigmas(n_ode, 0.002, sigma_hi, dtype=torch.float32))


HEUN_LEVELS = (4, 6, 8, 10, 12)
EM_LEVELS = (24, 48, 96)
#: DMCMC settings: (σ_hi, n_start, n_burn, n_gibbs, n_ode, n_samples); chains = n / n_samples
DMCMC = ((1.0, 4, 2, 1, 5, 2), (1.0, 4, 2, 1, 7, 2), (1.0, 4, 8, 4, 5, 4), (0.3, 5, 2, 1, 5, 2),
         (0.3, 5, 8, 2, 4, 4))
#: the chains' levels: the classifier's grid from SIGMA_LO up (to 80), a uniform prior p(σ) over them
SIGMA_LO = 0.02


def configs(D, net, n: int, quick: bool = False, seed: int = SAMPLER_SEED):
    """(family, settings, run) for every configuration of the sweep."""
    for k in HEUN_LEVELS[:1] if quick else HEUN_LEVELS:
        yield "Heun", f"{k} levels", lambda k=k: heun_run(D, k, n, seed)
    for k in EM_LEVELS[:1] if quick else EM_LEVELS:
        yield "Euler-Maruyama", f"{k} levels", lambda k=k: em_run(D, k, n, seed)
    if net is None:
        return
    full = net.config.grid()
    grid = full[full >= SIGMA_LO]
    done = set()
    for sigma_hi, n_start, n_burn, n_gibbs, n_ode, n_samples in DMCMC[:1] if quick else DMCMC:
        kw = dict(sigma_hi=sigma_hi, n_start=n_start, n_ode=n_ode)
        yield ("DMCMC", f"σ_hi {sigma_hi:g}, start {n_start}, burn {n_burn}, gibbs {n_gibbs}, ode {n_ode}, "
                        f"emit {n_samples}",
               lambda kw=kw, a=(n_burn, n_gibbs, n_samples): dmcmc_run(
                   D, NL.log_p_sigma(net, grid), grid, n, seed, n_burn=a[0], n_gibbs=a[1],
                   n_samples=a[2], eps=0.3, **kw))
        if (sigma_hi, n_start, n_ode) not in done:
            done.add((sigma_hi, n_start, n_ode))
            yield "no chain", f"σ_hi {sigma_hi:g}, start {n_start}, ode {n_ode}", lambda kw=kw: no_chain_run(
                D, n, seed, **kw)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=24, help="samples per configuration")
    parser.add_argument("--target", type=float, default=2.0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json")
    parser.add_argument("--families", nargs="+", default=["Heun", "Euler-Maruyama", "DMCMC", "no chain"])
    parser.add_argument("--quick", action="store_true", help="one configuration of each (a smoke test)")
    parser.add_argument("--seed", type=int, default=SAMPLER_SEED, help="the samplers' noise")
    parser.add_argument("--select", help="run only the rows whose 'sampler settings' matches this regex")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    D = S.CountingDenoiser(pretrained.load("phantom64"))
    quality = Quality(args.n)
    print(f"floor (mean Fréchet distance of {args.n} held-out phantoms): pix {quality.floor['pix']:.4g}, "
          f"tex {quality.floor['tex']:.4g}; worst of 16 held-out sets: pix {quality.floor_max['pix']:.2f}x, "
          f"tex {quality.floor_max['tex']:.2f}x the floor")
    net = pretrained.load_noise_level() if {"DMCMC", "no chain"} & set(args.families) else None
    rows = []
    print(f"{'sampler':15s} {'settings':48s} {'NFE':>6s} {'pix':>6s} {'tex':>6s} {'s':>6s}")
    for family, label, run in configs(D, net, args.n, args.quick, args.seed):
        if family not in args.families or (args.select and not re.search(args.select, f"{family} {label}")):
            continue
        D.reset()
        t = time.perf_counter()
        x = run()
        nfe = D.evaluations / x.shape[0]
        q = quality(x)
        rows.append({"sampler": family, "settings": label, "nfe": nfe, **q, "seconds": time.perf_counter() - t})
        print(f"{family:15s} {label:48s} {nfe:6.1f} {q['pix']:6.2f} {q['tex']:6.2f} {rows[-1]['seconds']:6.0f}",
              flush=True)
    print(f"\nfewest NFE per sample with both ratios <= {args.target}:")
    for family in dict.fromkeys(r["sampler"] for r in rows):
        ok = [r for r in rows if r["sampler"] == family and max(r["pix"], r["tex"]) <= args.target]
        best = min(ok, key=lambda r: r["nfe"]) if ok else None
        print(f"  {family:15s} " + (f"{best['nfe']:.1f} ({best['settings']})" if best else "not reached"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": args.n, "seed": args.seed, "floor": quality.floor, "floor_max": quality.floor_max,
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
