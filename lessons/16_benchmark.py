# %% [markdown]
# # 16 · Benchmark: every solver on the same brain slices
#
# Fifteen lessons built solvers one at a time, each on its own example. A benchmark puts them side by
# side: the **same** held-out images, the **same** measurements (same operator, same noise draw), settings
# tuned on **other** images, and the same budget of network calls. Only then does a difference in a
# column say something about the methods rather than about the set-up. The full table comes from a
# script, `benchmarks/bench_solvers.py --table` (tens of minutes on one CPU thread; with `--device cuda` it
# runs on a GPU, all images of a task in one batch); this lesson runs a small part of it live and reads
# the rest from the file the script wrote.
#
# **Learning goals**
#
# 1. Read the columns of a reconstruction benchmark: PSNR and SSIM (and why both), network evaluations
#    (NFE, with and without a backward pass), wall time, peak memory, and the calibration of
#    posterior-sample uncertainty.
# 2. Run a fair comparison yourself: FBP, ADMM-TV, PnP-ADMM, DDS cold and warm-started, DPS on one
#    held-out brain slice with the same measurement.
# 3. Read the full table and separate the **levers**: a tuned classical baseline, the prior, the solver,
#    the warm start, the number of steps.
# 4. Know what a small benchmark cannot tell: two images, 64 × 64 pixels, a prior trained on a CPU.

# %%
import json
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import diffcourse
from diffcourse.data import brain_slices
from diffcourse.metrics import psnr, ssim
from diffcourse.posterior import solvers, tasks
from diffcourse.posterior.ccdf import warm_start
from diffcourse.posterior.classical import admm_tv, pnp_admm
from diffcourse.prior import pretrained
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.samplers.loop import CountingDenoiser

start_time = time.perf_counter()
D = pretrained.load("brain64")          # the 2-D brain prior of lessons 14 and 15


def seeded(k):
    """A fresh generator: runs given seeded(k) draw the same noise."""
    return torch.Generator().manual_seed(k)


def find_results(name="brain_benchmark.json"):
    """benchmarks/results/<name> of this checkout (the notebook may run from build/notebooks/lessons)."""
    roots = [Path(diffcourse.__file__).resolve().parents[1], Path.cwd().resolve(), *Path.cwd().resolve().parents]
    for root in roots:
        if (root / "benchmarks" / "results" / name).exists():
            return root / "benchmarks" / "results" / name
    raise FileNotFoundError(f"benchmarks/results/{name}: run python benchmarks/bench_solvers.py --table")


RESULTS = json.loads(find_results().read_text())
print("full table:", len(RESULTS["rows"]), "rows, written by benchmarks/bench_solvers.py --table on",
      RESULTS["machine"]["cpu"], "|", RESULTS["machine"]["device"], "|", RESULTS["machine"]["date"])

# %% [markdown]
# ## 1. The columns
#
# **PSNR** compares a reconstruction $\hat x$ with the truth $x$ (both in $[0,1]$) through the mean squared
# error: $\mathrm{PSNR}=10\log_{10}\big(1/\mathrm{MSE}\big)$ dB, so +3 dB halves the MSE. It is blind to
# *where* the error sits. **SSIM** (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004, Eq. 13) compares local
# means, contrasts and correlations in a Gaussian window; it punishes blur and lost structure more than
# a faint noise of the same MSE. Two images with the **same** PSNR can have very different SSIM:

# %%
truth = brain_slices(1, 64, seeded(10_000), contrast="mixed", split="test")   # the first test slice
blurred = torch.nn.functional.avg_pool2d(truth, 3, 1, 1, count_include_pad=False)
mse = (blurred - truth).pow(2).mean()
noisy = (truth + mse.sqrt() * torch.randn(truth.shape, generator=seeded(5))).clamp(0, 1)
noisy = truth + (noisy - truth) * (mse / (noisy - truth).pow(2).mean()).sqrt()      # exactly the same MSE
for name, img in (("3x3 blur", blurred), ("noise", noisy)):
    print(f"{name:9s} PSNR {psnr(img, truth).item():.2f} dB  SSIM {ssim(img, truth).item():.3f}")

# %%
# Claim: equal MSE gives equal PSNR, and yet SSIM tells the two errors apart by a wide margin.
assert abs(psnr(blurred, truth).item() - psnr(noisy, truth).item()) < 1e-3
assert abs(ssim(blurred, truth).item() - ssim(noisy, truth).item()) > 0.05

# %% [markdown]
# The cost columns. **NFE** counts network evaluations per image (a call on a batch of $B$ images counts
# $B$); DPS, ΠGDM and MCG also differentiate through the network, a backward pass that costs about
# twice a forward one and keeps the activations in memory (marked "∇"). **Wall time** depends on the
# machine, the load and the batch; it includes the operator (a CT projector is not free) and inner
# solvers such as conjugate gradients. **Peak memory** is what a run adds: on a GPU the allocator's peak,
# on a CPU the peak resident size of the process. **Uncertainty**: a solver that *samples* the posterior
# can give several reconstructions per image; their pixel-wise mean $\mu$ and standard deviation $s$ make
# an error bar. It is *calibrated* if the truth lies within $\mu\pm ks$ as often as the model says: for
# $S$ Gaussian samples the fraction is a Student-$t$ value, not $\operatorname{erf}(k/\sqrt2)$ (lesson 14).
#
# ## 2. A small benchmark, live
#
# One held-out slice, 20-view CT with $\sigma_y=0.7$ (the task `ct20`). Every method sees the same $y$. The
# ADMM-TV weight is the one the script tuned on *another* slice; DDS's $\gamma$ likewise.

# %%
lik = tasks.make("ct20", truth, seeded(1))
knobs = RESULTS["brain_knobs"]["ct20"]
sigmas = karras_sigmas(20).float()                      # 20 levels: 20 network calls
results = {}


def run(name, fn):
    """Time fn(D_counted) and record (image, seconds, NFE, NFE with a backward pass)."""
    counted = CountingDenoiser(D)
    t = time.perf_counter()
    x = fn(counted).detach()
    results[name] = (x, time.perf_counter() - t, counted.evaluations, counted.with_grad)


def cold(D_, solver, **kw):
    g = seeded(0)
    return getattr(solvers, solver)(D_, float(sigmas[0]) * torch.randn(truth.shape, generator=g), sigmas, lik,
                                    generator=g, **kw)


def warm(D_, t0=0.4):                                    # CCDF: start at σ(t0) from ADMM-TV's image
    g = seeded(0)
    x, tail = warm_start(results["ADMM-TV"][0], karras_sigmas(50).float(), t0, generator=g)
    return solvers.dds(D_, x, tail, lik, gamma=knobs["dds_gamma"], generator=g)


with torch.no_grad():
    run("FBP", lambda D_: tasks.baseline("ct20", lik))
    run("ADMM-TV", lambda D_: admm_tv(lik.op, lik.y, *knobs["tv"], n_iter=200))
    run("PnP-ADMM", lambda D_: pnp_admm(lik.op, lik.y, D_, lik.sigma_y ** 2 / knobs["pnp_sigma"] ** 2, n_iter=20,
                                        sigma=knobs["pnp_sigma"], x0=results["FBP"][0]))
    run("DDS", lambda D_: cold(D_, "dds", gamma=knobs["dds_gamma"]))
    run("DDS warm (t0 = 0.4 of 50)", warm)
run("DPS", lambda D_: cold(D_, "dps", **{k: v for k, v in tasks.settings("ct20", "dps").items() if k != "sigmas"}))
live = {name: psnr(x.clamp(0, 1), truth).item() for name, (x, *_) in results.items()}
print(f"{'method':26s} {'PSNR':>6s} {'SSIM':>6s} {'s':>6s} {'NFE':>4s} {'∇':>4s}")
for name, (x, sec, nfe, grad) in results.items():
    print(f"{name:26s} {live[name]:6.2f} {ssim(x.clamp(0, 1), truth).item():6.3f} {sec:6.2f} {nfe:4d} {grad:4d}")

# %%
fig, axes = plt.subplots(1, len(results) + 1, figsize=(2.1 * (len(results) + 1), 2.5))
for ax, (name, img) in zip(axes, [("truth", truth)] + [(n, r[0]) for n, r in results.items()]):
    ax.imshow(img[0, 0].clamp(0, 1), cmap="gray", vmin=0, vmax=1)
    ax.set_title(name if name == "truth" else f"{name}\n{live[name]:.1f} dB", fontsize=8)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %%
# Claims, on what this notebook computed: the tuned TV prior beats FBP by more than 2 dB; every
# diffusion run made exactly the network calls its schedule says (20, or 20 of 50 levels when warm),
# only DPS differentiated through the network; the warm start beats the cold DDS run at equal NFE.
assert live["ADMM-TV"] > live["FBP"] + 2
assert [results[n][2:] for n in ("DDS", "DDS warm (t0 = 0.4 of 50)", "DPS")] == [(20, 0), (20, 0), (20, 20)]
assert results["PnP-ADMM"][2] == 20 and results["PnP-ADMM"][3] == 0
assert live["DDS warm (t0 = 0.4 of 50)"] > live["DDS"]

# %% [markdown]
# Read the live numbers with the columns in mind. ADMM-TV costs no network call and already gains
# several dB over FBP: a **tuned** classical baseline is the bar to clear, not FBP. DDS and DPS made the
# same 20 calls, but DPS paid a backward pass at each; its wall time shows it. PnP-ADMM uses the same
# network as a plain denoiser inside a classical splitting (Venkatakrishnan, Bouman & Wohlberg, GlobalSIP
# 2013) and runs no diffusion at all. And the warm start spends its 20 calls on the last, low-noise part of
# a 50-level schedule, starting from ADMM-TV's image forward-diffused to $\sigma(t_0)$ (CCDF, Chung, Sim & Ye,
# CVPR 2022; lesson 09): the same NFE buys more.
#
# ## 3. The full table
#
# `python benchmarks/bench_solvers.py --table` runs every solver of the course on every 2-D task:
# CT with 20 and 8 views, MRI at 4× and 8×, inpainting (92 % missing, and a 24 × 24 box), 4×
# super-resolution and deblurring, on **two** held-out brain slices (the slab the prior never saw),
# with at most 100 network evaluations per image for every solver. Beside the diffusion solvers (with
# the settings tuned on phantoms in `tasks.settings`) it runs the baseline, ADMM-TV with the λ of the
# task table and with λ re-tuned on another brain slice, PnP-ADMM (30 iterations), PnP-HQS with the
# decreasing denoiser levels of DPIR (Zhang et al., IEEE TPAMI 2022, eqs. 6–7; 30 levels from 49/255 down,
# $\alpha_k=\lambda\sigma_y^2/\sigma_k^2$) and RED (Romano, Elad & Milanfar, SIAM J. Imaging Sci. 2017;
# 100 steepest-descent steps) with the brain prior as denoiser,
# and the levers: DDS with $\gamma$ re-tuned on the brain slice and with 25, 50 and 200 levels (ct20, mri4),
# DDS warm-started from ADMM-TV, PnP-ADMM, RED and DDS with the phantom prior in place of the brain prior
# (CT and MRI), and four DDS posterior samples per image (25 levels each, scored by their mean). What
# follows is **loaded from the file the script wrote**, `benchmarks/results/brain_benchmark.json` (six
# runs of the script on one busy 2-core CPU, merged with its `--merge` option; the file lists the
# commands), not computed here.

# %%
m = RESULTS["machine"]
print(f"loaded from benchmarks/results/brain_benchmark.json: {RESULTS['images']}, prior {RESULTS['prior']}")
print(f"machine: {m['cpu']}, {m['threads']} thread(s), device {m['device']}, torch {m['torch']}, {m['date']}")
print(f"budget: {RESULTS['budget']}; {RESULTS['seconds'] / 60:.0f} min in all\n")
rows = RESULTS["rows"]
by_task = {}
for r in rows:
    by_task.setdefault(r["task"], {})[r["method"]] = r
print(f"{'task':9s} {'method':52s} {'PSNR':>6s} {'SSIM':>6s} {'s/img':>7s} {'NFE':>5s} {'∇':>4s} {'MiB':>5s}")
for r in rows:
    nfe = "" if r["nfe"] is None else f"{r['nfe']:g}"
    grad = "" if not r["nfe_grad"] else f"{r['nfe_grad']:g}"
    mem = "" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
    print(f"{r['task']:9s} {r['method'][:52]:52s} {r['psnr']:6.2f} {r['ssim']:6.3f} {r['seconds_per_image']:7.2f} "
          f"{nfe:>5s} {grad:>4s} {mem:>5s}")

# %%
# Claims about the loaded table's consistency (not its values): every task has the baseline and the
# re-tuned ADMM-TV; every diffusion, PnP and RED row stays within 100 network evaluations per image
# (101 for Jalal et al.'s Langevin schedule of the task table: 25 levels x 4 steps and one last denoising;
# one row of the steps lever is marked "over the budget");
# classical rows call no network; PSNR and SSIM are finite and SSIM lies in [-1, 1].
assert by_task and all({"baseline", "ADMM-TV"} <= set(methods) for methods in by_task.values())
assert all(r["nfe"] is None or "over the budget" in r["method"] or 0 < r["nfe"] <= (101 if r["method"] == "jalal" else 100)
           for r in rows)
assert all(r["nfe"] is None for r in rows if r["method"] == "baseline" or r["method"].startswith("ADMM-TV"))
assert all(math.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1 for r in rows)

# %% [markdown]
# PSNR against the network evaluations per image, for the two headline tasks: the horizontal lines are
# the baseline and the tuned ADMM-TV, which call no network; red: the prior as a plain denoiser (PnP-ADMM,
# PnP-HQS, RED), green: the warm start and the mean of four samples, blue: the diffusion solvers, hollow gray: the
# same PnP-ADMM, RED and DDS with the phantom prior.

# %%
headline = [t for t in ("ct20", "mri4") if t in by_task]


def short(name):
    """A short label: the solver's name, 'warm DDS', 'DDS mean of 4' or 'PnP-HQS, flips'."""
    if "flip" in name:
        return "PnP-HQS, flips"
    return "warm DDS" if "warm" in name else "DDS mean of 4" if "samples" in name else name.split(",")[0]


fig, axes = plt.subplots(1, len(headline), figsize=(6.5 * len(headline), 4.6), squeeze=False)
for ax, task in zip(axes[0], headline):
    for name, r in by_task[task].items():
        if name in ("baseline", "ADMM-TV"):
            ax.axhline(r["psnr"], ls="--" if name == "baseline" else "-", color="gray" if name == "baseline" else "k",
                       lw=1, label=f"{name}, no network ({r['psnr']:.1f} dB)")
        elif r["nfe"] is not None and "phantom64" in name:     # the prior lever: same solver, other prior
            ax.scatter(r["nfe"], r["psnr"], marker="^" if r["nfe_grad"] else "o", s=30, facecolors="none",
                       edgecolors="gray", label="phantom64 prior" if "PnP" in name else None)
        elif r["nfe"] is not None and name != "dds, brain γ" and " levels" not in name.split("(")[0]:
            color = "C3" if name.startswith(("PnP", "RED")) else "C2" if "warm" in name or "samples" in name else "C0"
            ax.scatter(r["nfe"], r["psnr"], marker="^" if r["nfe_grad"] else "o", s=30, color=color)
            ax.annotate(short(name), (r["nfe"], r["psnr"]), fontsize=7, xytext=(4, -2), textcoords="offset points")
    steps = sorted((r["nfe"], r["psnr"]) for n, r in by_task[task].items()
                   if n.startswith("dds, brain γ") and "phantom64" not in n)
    if len(steps) > 1:                                   # the steps lever: DDS with 25 ... 200 levels
        ax.plot(*zip(*steps), ".-", color="C0", lw=1, alpha=0.6, label="DDS (brain γ), 25-200 levels")
    ax.set(title=f"{task}: {RESULTS['images'].split('(')[1].split(',')[0]} held-out brain slices, prior brain64",
           xlabel="NFE per image (▲: with a backward pass)", ylabel="PSNR (dB)", xlim=(0, 215))
    ax.legend(fontsize=7, loc="lower left")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. The levers
#
# The question a benchmark should answer is not only *who wins* but *what each ingredient contributes*.
# From the loaded table, per task: the gain of re-tuning ADMM-TV's λ on a brain slice (phantom λ → brain
# λ), of the brain prior over the phantom prior in PnP-ADMM and in DDS, of re-tuning DDS's γ, of the warm
# start over cold DDS (with fewer calls), and the best method's margin over the tuned ADMM-TV.


# %%
def lever(task, better, worse):
    t = by_task.get(task, {})
    return None if better not in t or worse not in t else t[better]["psnr"] - t[worse]["psnr"]


def fmt(v):
    return "   -  " if v is None else f"{v:+6.2f}"


print(f"{'task':9s} {'TV: brain λ':>11s} {'prior: PnP':>11s} {'prior: DDS':>11s} {'DDS: brain γ':>12s} "
      f"{'warm-cold':>10s} {'best-TV':>8s}  best")
best_gap = {}
for task, t in by_task.items():
    warm_name = next((n for n in t if n.startswith("dds warm")), None)
    cold_name = "dds, brain γ" if "dds, brain γ" in t else "dds"
    learned = {n: r for n, r in t.items() if n != "baseline" and not n.startswith("ADMM-TV")}
    winner = max(learned, key=lambda n: learned[n]["psnr"]) if learned else None
    best_gap[task] = None if winner is None else learned[winner]["psnr"] - t["ADMM-TV"]["psnr"]
    print(f"{task:9s} {fmt(lever(task, 'ADMM-TV', 'ADMM-TV (phantom λ)')):>11s} "
          f"{fmt(lever(task, 'PnP-ADMM', 'PnP-ADMM, phantom64 prior')):>11s} "
          f"{fmt(lever(task, 'dds', 'dds, phantom64 prior')):>11s} {fmt(lever(task, 'dds, brain γ', 'dds')):>12s} "
          f"{fmt(lever(task, warm_name, cold_name) if warm_name else None):>10s} {fmt(best_gap[task]):>8s}  {winner}")
print({task: (None if g is None else round(g, 2) >= 3) for task, g in best_gap.items()}, "(aim +3 dB over ADMM-TV met?)")
for task in headline:                                      # the steps lever
    steps = sorted((r["nfe"], r["psnr"]) for n, r in by_task[task].items()
                   if n.startswith("dds, brain γ") and "phantom64" not in n)
    print(f"{task}: DDS (brain γ) by levels: " + ", ".join(f"{n:g}: {p:.2f} dB" for n, p in steps))

# %%
# Claims (consistency of the loaded table): a warm start runs only the tail of its schedule, so it made
# fewer network calls than the cold DDS run of the same task; the posterior-sample rows made
# (samples x levels) calls per image, as their names say, and report one coverage per k = 1, 2, 3.
for task, t in by_task.items():
    for name, r in t.items():
        if name.startswith("dds warm"):
            assert r["nfe"] < t["dds"]["nfe"]
        if "coverage" in r:
            assert r["nfe"] == r["n_samples"] * int(name.split("(")[1].split()[0])
            assert len(r["coverage"]) == 3

# %% [markdown]
# What the committed run (two slices, one CPU thread) says, lever by lever:
#
# * **A tuned baseline.** Re-tuning ADMM-TV's λ on a brain slice moved it by at most about half a dB
#   (0.4 dB on ct20, 0.5 on mri8, 0.6 on deblurring, nearly nothing elsewhere): the phantom λ transferred
#   well. ADMM-TV stays hard to beat: on the 24 × 24 box the best method (DMPS) is 0.15 dB above it.
# * **The prior.** The same solvers with the phantom prior `phantom64` in place of `brain64`: PnP-ADMM
#   loses 3.0 (ct20), 5.7 (mri4), 3.3 (ct8) and 0.6 dB (mri8); DDS loses 0.6 to 2.6 dB, except on ct8,
#   where the phantom prior is 0.5 dB *better* (a reminder that two images decide little). Used as a plain
#   denoiser inside PnP-ADMM or RED, the brain prior gives the strongest methods on CT and on 4× MRI:
#   2.4–3.3 dB above ADMM-TV on ct20 and ct8, 7 dB on mri4, with 30 calls for PnP. These fail where the data
#   leave whole regions empty (92 % inpainting, the box): a denoiser at one small σ cannot invent what no
#   measurement constrains; a diffusion sampler, which starts from large σ, can.
# * **Annealing the denoiser.** PnP-HQS walks the denoiser down from σ = 0.19 as a diffusion sampler does,
#   but without fresh noise. Tuned on the same slice as the others, it is the best method on ct20 (29.8 dB,
#   0.2 above RED, with 30 calls), where DPIR's own λ = 0.23 won the grid; it does not fill the 92 % hole
#   either (9.7 dB: the levels start too low for that). On mri4 it won the tuning slice by 0.6 dB over
#   PnP-ADMM and then lost 5.4 dB to it on the two test slices (27.0 against 32.4). The tuned knobs
#   transferred from one slice to the next much worse for HQS than for ADMM, whose dual variable keeps
#   pulling the iterate back to the data: one more reason to distrust a table of two images.
# * **Self-ensemble.** Averaging the denoiser over left-right flips, $\bar D(x)=\tfrac12\,(D(x)+F D(Fx))$
#   (`prior.denoisers.flip_average`; never worse in expectation when the images' law is flip-invariant,
#   by convexity), doubles the calls and moved PnP-HQS by +0.07 dB on ct20 (29.90 dB, 2.97 above ADMM-TV)
#   and −0.1 dB on mri4; on the tuning slice +0.05 and −0.15. Brains are only roughly symmetric.
# * **The solver.** Among the twelve diffusion solvers at about 100 calls the spread is 2–12 dB, and the
#   winner changes with the task: DMPS on ct20, deblurring and the box, MCG on mri4, mri8 and
#   super-resolution, DPS on ct8, ΠGDM on 92 % inpainting. The Langevin-type solvers (Jalal et al.,
#   guided SBIM) fall far behind at this budget.
# * **The warm start.** Starting DDS from ADMM-TV's image at $t_0=0.4$–$0.6$ beats cold DDS on every task
#   (a tie on 92 % inpainting) with 40–60 % of the calls; on mri4 it clears ADMM-TV by 3.4 dB.
# * **Re-tuning DDS's γ** on the brain changed nothing on ct20 (the same γ won) and 0.1 dB on mri4.
# * **More steps.** DDS with 25, 50, 100 and 200 levels: 23.7, 26.0, 26.6, 25.7 dB on ct20 and 27.3, 27.5,
#   28.3, 29.3 dB on mri4. Below 50 levels quality drops fast; beyond 100 it depends on the task (γ was
#   tuned at 50 levels, and with more levels the data step acts more often), so the budget of 100 calls
#   is not what holds the diffusion solvers back on ct20. The warm start buys more per call than extra levels.
#
# The aim "the best solver beats tuned ADMM-TV by ≥ 3 dB" is met on mri4 (PnP-ADMM +7.0 dB, warm DDS
# +3.4), ct8 (PnP-HQS +3.4, PnP-ADMM +3.3) and super-resolution (PnP-HQS +3.5; +2.7 without it), and
# missed on ct20 (+2.97 with PnP-HQS and flips, +2.9 without flips, +2.7 without PnP-HQS), 92 % inpainting (+2.9, ΠGDM), mri8 (+1.5), deblurring
# (+1.3) and the box (+0.15), with a prior trained for a few hours on one CPU.

# %% [markdown]
# ### Uncertainty
#
# The DDS row "mean of 4 samples" draws four posterior samples per image. Its coverage columns give the
# fraction of pixels whose truth lies within mean ± 1, 2, 3 standard deviations, beside the exact value for
# four Gaussian samples (Student's $t$ with 3 degrees of freedom scaled by $\sqrt{1+1/S}$, lesson 14); the
# last number is the correlation between the std map and the error map.

# %%
for r in rows:
    if "coverage" in r:
        cov = " / ".join(f"{c:.2f}" for c in r["coverage"])
        stu = " / ".join(f"{c:.2f}" for c in r["coverage_student"])
        prior = "phantom64" if "phantom64" in r["method"] else "brain64"
        print(f"{r['task']:9s} {prior:9s} coverage {cov}  (calibrated: {stu})  corr(std, |error|) {r['corr_std_error']:+.2f}  "
              f"one sample {r['psnr_one_sample']:.2f} dB, mean {r['psnr']:.2f} dB")

# %% [markdown]
# For four samples a calibrated sampler covers 0.56 / 0.83 / 0.93 of the pixels. Where the data touch
# every pixel (CT, MRI, deblurring) the committed run's DDS error bars are close to that (0.54–0.63 at 1σ,
# 0.76–0.86 at 2σ, 0.86–0.93 at 3σ; the narrowest on ct20 and deblurring), and the std map correlates with
# the error (about 0.6–0.7): a fair map of *where* to doubt. On the box the coverage collapses to about 0.3–0.4. Outside
# the hole DDS's data step puts every sample on the **noisy** measured pixels: the samples agree with one
# another (a std of about $10^{-4}$ there, measured on the same two slices) and not with the truth, which
# differs from $y$ by the noise, $\sigma_y=0.025$. Inside the hole the coverage is 0.34 / 0.65 / 0.80.
# Four samples of a sampler whose data step trusts $y$ exactly cannot show the measurement noise.
# And the prior matters here too: with the phantom prior the DDS samples of ct20, mri4, ct8 and mri8 are
# overconfident (0.48–0.52 / 0.65–0.71 / 0.74–0.82) where the brain prior's were close to calibrated, and
# their std maps follow the error less closely (0.49–0.58): a wrong prior gives error bars that are too narrow.

# %% [markdown]
# ### The 3-D tasks
#
# The volume tasks of lesson 15 are measured by `benchmarks/volume_table.py` (two held-out volumes of
# 16 × 64 × 64 voxels, 50 levels, one CPU thread); the benchmark file carries its rows along. Time is per
# volume there and NFE per slice.

# %%
for r in RESULTS.get("volume_rows", []):
    nfe = "" if r["nfe"] is None else f"{r['nfe']:g}/slice"
    print(f"{r['task']:8s} {r['method']:15s} PSNR {r['psnr']:6.2f}  SSIM {r['ssim']:.3f}  "
          f"{r['seconds_per_image']:7.1f} s/volume  {nfe}")
if RESULTS.get("volume_rows"):
    print("source:", RESULTS["volume_rows"][0]["note"])

# %% [markdown]
# ## 5. What to remember
#
# * Compare on the same images, the same measurements and the same budget, with every knob tuned on
#   images that are not in the table, and tune the classical baseline as carefully as the new method:
#   a weak baseline makes any prior look good.
# * NFE is the cost unit that transfers across machines; wall time adds the operator, the backward pass
#   and the machine's load (the committed run shared two cores with other jobs); memory grows with the
#   backward pass and with the batch (on CT, DPS and ΠGDM peak at about 40 MiB above the process, the
#   four-sample runs, a batch of eight, at about 70 MiB; on a CPU the resident-size measure is coarse, as
#   memory freed by one run is reused by the next, and many rows read 0).
# * Report the levers separately. Here the **prior** used as a plain denoiser (PnP-ADMM, PnP-HQS, RED) is the
#   strongest lever on CT and 4× MRI at 64 × 64, and useless for large holes; the warm start makes DDS
#   better with fewer calls; re-tuning a weight on the new anatomy moved rows by half a dB at most.
# * Two images give a direction, not a verdict: differences of a few tenths of a dB between rows are not
#   significant. A GPU run (`--device cuda`, all images of a task in one batch) can afford more images
#   and more levels.

# %%
elapsed = time.perf_counter() - start_time
print(f"notebook ran in {elapsed:.0f} s")
