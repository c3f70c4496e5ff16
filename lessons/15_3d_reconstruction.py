# %% [markdown]
# # 15 · 3-D reconstruction with 2-D priors: DiffusionMBIR and TPDM
#
# CT and MRI scanners measure volumes. A diffusion prior for whole volumes would have to be trained
# on whole volumes, and it would have to fit in memory while it runs. Both are hard, so the methods
# of this lesson keep a **2-D prior** for the slices and add what couples the slices. DiffusionMBIR
# (Chung, Ryu, McCann, Klasky & Ye, CVPR 2023) adds a classical model-based prior along the slice
# axis: total variation along $z$, solved by ADMM after every diffusion step. TPDM (Lee, Chung, Park,
# Park, Ryu & Ye, ICCV 2023) adds a second 2-D prior trained on slices perpendicular to the first.
# The decomposed diffusion sampler, DDS (Chung, Lee & Ye, ICLR 2024), shows how to take the TV step
# on Tweedie's estimate, which makes the method work with tens of steps instead of thousands.
#
# **Learning goals**
#
# 1. Count why 3-D priors are hard: memory per network call and training samples per scan.
# 2. Measure a volume slice by slice (`SliceWise`) and see why a slice-wise reconstruction
#    **flickers** along $z$: look at the coronal and sagittal cuts, and measure the flicker.
# 3. Write the circular difference $D_z$ and its adjoint, and one **ADMM iteration** for
#    $\min_x \tfrac12\|y-Ax\|^2+\lambda\|D_zx\|_1$ (the exercise).
# 4. Run DiffusionMBIR as published with a small step budget, see it fail, and fix it with DDS's
#    version, where the TV step acts on Tweedie's $\hat x_0$.
# 5. Check TPDM's premise: a prior trained on coronal slices denoises coronal cuts better than the
#    axial prior does; follow its schedule of the two priors.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch

from diffcourse.data import brain_volumes
from diffcourse.metrics import psnr
from diffcourse.physics.linear import inner
from diffcourse.posterior import solvers, tasks
from diffcourse.posterior.solvers.volume import (AXIAL, CORONAL, SAGITTAL, dds_tv_z, diffusion_mbir,
                                                 padded_denoiser, primary_turns, slice_by_slice, to_slices)
from diffcourse.posterior.tv3d import admm_tv_3d, admm_tv_z_step, diff_z_circ, diff_z_circ_T
from diffcourse.prior import pretrained
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.samplers.loop import CountingDenoiser

F64 = torch.float64
start_time = time.perf_counter()
D = pretrained.load("brain64")          # the 2-D prior: 64 x 64 axial brain slices


def seeded(k):
    """A fresh generator: runs given seeded(k) draw the same noise."""
    return torch.Generator().manual_seed(k)

# %% [markdown]
# ## 1. Why not a 3-D prior?
#
# A clinical CT volume has about $512\times512\times 400$ voxels, one slice $512\times512$. A diffusion network
# stores its activations at every layer; for the first layer alone, with 64 channels in float32,
# that is $4\cdot 64\cdot N$ bytes for $N$ voxels, and training keeps them all for the backward pass.
# And the data: one scanned volume is **one** training sample for a 3-D prior but **hundreds** of
# samples for a 2-D prior of its slices. Public CT collections hold tens to hundreds of volumes, so a
# 2-D prior sees tens of thousands of training images where a 3-D prior sees tens to hundreds.

# %%
voxels_3d, voxels_2d = 512 * 512 * 400, 512 * 512
first_layer_gb = {name: 4 * 64 * n / 1e9 for name, n in (("slice", voxels_2d), ("volume", voxels_3d))}
print(f"first-layer activations, 64 channels, float32: slice {first_layer_gb['slice']:.3f} GB, "
      f"volume {first_layer_gb['volume']:.1f} GB")
print(f"training samples from 100 scans: 3-D prior 100, 2-D prior {100 * 400}")

# %%
# Claim: one layer's activations for a whole volume (about 27 GB) exceed a large GPU's memory, for a
# slice they are 400 times smaller (0.07 GB); a scan gives 400 times more 2-D training samples.
assert first_layer_gb["volume"] > 24 and round(first_layer_gb["volume"] / first_layer_gb["slice"]) == 400

# %% [markdown]
# ## 2. A volume, measured slice by slice
#
# Our volumes come from the MNI ICBM152 brain template (Fonov et al., NeuroImage 2011) in a random
# pose: `brain_volumes(n, 64, 56)` cuts 56 axial slices of $64\times64$ across the whole brain, from the
# bottom (slice 0) to the top, 2.75 mm apart (the in-plane pixels are 3.2 mm). We keep a **slab** of
# 12 slices around the band of axial positions that the shipped prior `brain64` never saw in training.
#
# A volume is $x\in\mathbb R^{D\times H\times W}$, stored `(n, 1, D, H, W)`. Cutting it three ways gives the
# **axial** slices (normal to $z$, `AXIAL`), the **coronal** cuts (normal to the front-back axis,
# $D\times W$) and the **sagittal** cuts (normal to left-right, $D\times H$). The scanner of the task
# `ct8_3d` measures every axial slice with the 8-view CT of lesson 06:
# $y_d = A x_d + n_d$ for $d = 1..D$, i.e. $A_{3D} = \mathrm{diag}(A, \dots, A)$, block diagonal. That is
# `SliceWise(A, depth)`: its adjoint is block diagonal too.

# %%
volume = brain_volumes(1, 64, 56, seeded(33_000))              # (1, 1, 56, 64, 64), whole brain
truth = volume[:, :, 26:38].contiguous()                        # a 12-slice slab, 2.75 mm apart
lik = tasks.make("ct8_3d", truth, seeded(1))
print(tasks.describe("ct8_3d"))
print("volume", tuple(truth.shape), "-> data", tuple(lik.y.shape), "(n, D, 1, views, detector bins)")
v = torch.randn(lik.y.shape, generator=seeded(2))
adjoint_gap = (inner(lik.A(truth), v) - inner(truth, lik.op.AT(v))).abs() / inner(truth, lik.op.AT(v)).abs()
print(f"<A x, v> vs <x, A^T v>: relative gap {adjoint_gap.item():.1e}")


def show_cuts(volumes, titles, *, row=32, col=32, slice_=6, spacing=(2.75, 3.2)):
    """Axial slice ``slice_``, coronal cut ``row`` and sagittal cut ``col`` of each volume (1, 1, D, H, W),
    one column per volume, superior at the top of the cuts, drawn with the true aspect ratio."""
    cut = volumes[0].shape[2] * spacing[0] / spacing[1] / volumes[0].shape[3]   # a cut's height / width
    fig, axes = plt.subplots(3, len(volumes), figsize=(2.6 * len(volumes), 2.6 * (1 + 2 * cut) + 0.8),
                             squeeze=False, gridspec_kw={"height_ratios": [1, cut, cut]}, layout="constrained")
    for k, (vol, title) in enumerate(zip(volumes, titles)):
        vol = vol[0, 0].clamp(0, 1)
        views = (vol[slice_], vol[:, row].flip(0), vol[:, :, col].flip(0))   # (H, W), (D, W), (D, H)
        for r, (img, aspect) in enumerate(zip(views, (1.0, spacing[0] / spacing[1], spacing[0] / spacing[1]))):
            axes[r, k].imshow(img.cpu().numpy(), cmap="gray", vmin=0, vmax=1, aspect=aspect)
            axes[r, k].set_xticks([])
            axes[r, k].set_yticks([])
        axes[0, k].set_title(title, fontsize=9)
    for r, name in enumerate(("axial", "coronal", "sagittal")):
        axes[r, 0].set_ylabel(name, fontsize=8)
    return fig


fbp = tasks.baseline("ct8_3d", lik)
show_cuts([truth, fbp], ["truth", "FBP, slice by slice"])
plt.show()

# %%
# Claim: the volume operator is block diagonal with the 2-D CT on each slice, and its AT is the adjoint.
assert adjoint_gap < 1e-5
assert torch.allclose(lik.A(truth)[:, 3], tasks.operator("ct8").A(truth[:, :, 3]), atol=1e-4)

# %% [markdown]
# ## 3. A 2-D prior on every slice, and the flicker
#
# Applying the 2-D denoiser to all axial slices at once is the MMSE denoiser of the **product** prior
# $\prod_d p(x_d)$: slices drawn independently. Any 2-D solver then runs on every slice on its own
# (`slice_by_slice`). We take DDS (lesson 10) with the settings tuned for this task. Each slice
# looks plausible, but the 8 views leave much of each slice undetermined, and each slice fills the
# gap its own way. Along $z$ the anatomy changes smoothly; the reconstruction jumps. We measure this
# by the **flicker** $\frac1N\sum|x_{d+1}-x_d|$ (mean over all voxels, non-circular) next to the
# truth's, and by the error of the $z$-differences, $\frac1N\sum|(x_{d+1}-x_d)-(x^\ast_{d+1}-x^\ast_d)|$.

# %%
N_LEVELS = 30                                                     # the tasks table uses 50


def dz(v):
    return v[:, :, 1:] - v[:, :, :-1]


def measure_volume(x):
    """PSNR over the volume, flicker (beside the truth's) and the z-difference error."""
    x = x.clamp(0, 1)
    return {"psnr": psnr(x.flatten(1, 2), truth.flatten(1, 2)).item(), "flicker": dz(x).abs().mean().item(),
            "dz_error": (dz(x) - dz(truth)).abs().mean().item()}


def run(method, **changes):
    """One solver on the slab from σ_max z, with the tasks table's settings and N_LEVELS levels."""
    kw = {**tasks.settings("ct8_3d", method), **changes}
    sigmas = karras_sigmas(N_LEVELS) if "sigmas" not in changes else changes["sigmas"]
    kw.pop("sigmas")
    g = seeded(3)
    x = sigmas[0] * torch.randn(truth.shape, generator=g)
    counted = CountingDenoiser(D)
    t = time.perf_counter()
    if method == "dds":
        out = slice_by_slice(solvers.dds, counted, x, sigmas, lik, generator=g, **kw)
    else:
        out = {"dds_tv_z": dds_tv_z, "diffusion_mbir": diffusion_mbir}[method](counted, x, sigmas, lik,
                                                                             generator=g, **kw)
    print(f"{method:15s} {counted.evaluations / truth.shape[2]:4.0f} network calls per slice, "
          f"{time.perf_counter() - t:5.1f} s")
    return out


results = {"FBP": fbp, "slice-wise DDS": run("dds")}
scores = {name: measure_volume(x) for name, x in results.items()}
print(f"truth flicker {dz(truth).abs().mean():.4f}")
for name, s in scores.items():
    print(f"{name:16s} PSNR {s['psnr']:5.2f} dB   flicker {s['flicker']:.4f}   z-difference error {s['dz_error']:.4f}")
show_cuts([truth, results["slice-wise DDS"]], ["truth", "slice-wise DDS"])
plt.show()

# %%
# Claims: slice-wise DDS beats FBP by more than 1 dB, but flickers: its z-differences are more than
# 1.2 times larger than the truth's.
assert scores["slice-wise DDS"]["psnr"] > scores["FBP"]["psnr"] + 1, scores
assert scores["slice-wise DDS"]["flicker"] > 1.2 * dz(truth).abs().mean().item(), scores

# %% [markdown]
# ## 4. Total variation along $z$, by ADMM
#
# DiffusionMBIR couples the slices through the model-based problem (Chung et al. 2023, Eq. 11)
#
# $$ \min_x\ \tfrac12\|y-Ax\|_2^2+\lambda\|D_zx\|_1, \qquad (D_zx)_d = x_{(d+1)\bmod D}-x_d , $$
#
# the total variation along the slice axis only: the 2-D prior handles each slice, the TV only asks
# neighbouring slices to agree where the data cannot tell. The difference is **circular** as in the
# official code (the last slice is compared with the first), and its adjoint is
# $(D_z^\top p)_d = p_{(d-1)\bmod D}-p_d$. ADMM (Boyd et al. 2011, §3.1) splits $z = D_zx$ with a scaled
# dual $w$ and alternates
#
# $$ x\leftarrow(A^\top A+\rho D_z^\top D_z)^{-1}\big(A^\top y+\rho D_z^\top(z-w)\big),\quad
#    z\leftarrow S_{\lambda/\rho}(D_zx+w),\quad w\leftarrow w+D_zx-z, $$
#
# with the soft threshold $S_\kappa(v)=\mathrm{sign}(v)\max(|v|-\kappa,0)$ and the $x$-update by conjugate
# gradients, warm-started at the current $x$. You write these in the exercise notebook. Here the
# library's `admm_tv_z_step` runs many iterations on the FBP volume, without any prior: the objective
# falls and $D_zx$ and $z$ come to agree.

# %%
x_admm = fbp.clone()
z, w = torch.zeros_like(diff_z_circ(fbp)), torch.zeros_like(diff_z_circ(fbp))
lam_tv, rho_tv = 2.0, 50.0


def objective(x):
    return (0.5 * (lik.A(x) - lik.y).square().sum() + lam_tv * diff_z_circ(x).abs().sum()).item()


history = [objective(x_admm)]
for _ in range(40):
    x_admm, z, w = admm_tv_z_step(lik.op, lik.y, x_admm, z, w, lam=lam_tv, rho=rho_tv, n_iter_cg=5)
    history.append(objective(x_admm))
split_gap = (diff_z_circ(x_admm) - z).abs().max().item()
p_test = torch.randn(diff_z_circ(truth).shape, generator=seeded(4))
dz_adjoint_gap = abs(inner(diff_z_circ(truth), p_test).item() - inner(truth, diff_z_circ_T(p_test)).item())
print(f"objective {history[0]:.4g} -> {history[-1]:.4g}; max |D_z x - z| = {split_gap:.1e}; "
      f"adjoint gap of D_z {dz_adjoint_gap:.1e}")

# %%
# Claims: D_z^T is the adjoint of the circular D_z; 40 ADMM iterations lower the objective at least
# 5-fold from FBP (whose data misfit is large: FBP does not fit noisy data) and nearly close the split.
assert dz_adjoint_gap < 1e-3
assert history[-1] < history[0] / 5 and split_gap < 0.05, (history[0], history[-1], split_gap)

# %% [markdown]
# ## 5. DiffusionMBIR, and DDS's version of it
#
# **DiffusionMBIR** (Chung et al. 2023, Alg. 1, "fast" variant) runs the 2-D prior's predictor and
# corrector on all slices, then **one** ADMM iteration with **one** CG step on the noisy state, with
# $z, w$ kept from step to step. Official setting: 2000 noise levels, so that consecutive states
# differ little and the ADMM variables remain valid from one step to the next. With our budget
# (15 levels, 30 network calls per slice) the state changes a lot between steps: the kept $z$ pulls
# the new state towards the old, noisier differences, and the data step on the noisy state cannot
# keep up.
#
# **DDS** (Chung, Lee & Ye 2024; the 3-D script of its official code) takes the same ADMM step on
# Tweedie's estimate $\hat x_0 = D(x,\sigma)$ instead of on the noisy state: a few CG steps from $\hat x_0$
# on $\min_x\tfrac12\|y-Ax\|^2+\lambda\|D_zx\|_1+\tfrac1{2\gamma}\|x-\hat x_0\|^2$, then back to the next noise
# level by DDIM-style re-noising: $x' = \hat x_0' + \sigma'(\eta z + \sqrt{1-\eta^2}\,\hat\varepsilon)$. This is
# `dds_tv_z`: with $\lambda = 0$ it is slice-wise DDS but for CG's step sizes, which are taken per volume.

# %%
results["DiffusionMBIR (15 levels, PC)"] = run("diffusion_mbir", sigmas=karras_sigmas(15))
results["DDS + TV_z"] = run("dds_tv_z")
results["3-D ADMM-TV"] = admm_tv_3d(lik.op, lik.y, **tasks.TASKS["ct8_3d"]["admm_tv"])
scores = {name: measure_volume(x) for name, x in results.items()}
for name, s in scores.items():
    print(f"{name:30s} PSNR {s['psnr']:5.2f} dB   flicker {s['flicker']:.4f}   z-difference error {s['dz_error']:.4f}")
show_cuts([truth, results["slice-wise DDS"], results["DDS + TV_z"], results["DiffusionMBIR (15 levels, PC)"]],
          ["truth", "slice-wise DDS", "DDS + TV_z", "DiffusionMBIR, 15 levels"])
plt.show()

# %%
# Claims: with the same 30 network calls per slice, DDS + TV_z beats slice-wise DDS by more than
# 0.8 dB, and its z-differences are closer to the truth's (error below 0.7 times slice-wise DDS's);
# DiffusionMBIR run with 15 instead of 2000 levels falls below FBP.
s = scores
assert s["DDS + TV_z"]["psnr"] > s["slice-wise DDS"]["psnr"] + 0.8, s
assert s["DDS + TV_z"]["dz_error"] < 0.7 * s["slice-wise DDS"]["dz_error"], s
assert s["DiffusionMBIR (15 levels, PC)"]["psnr"] < s["FBP"]["psnr"], s

# %% [markdown]
# The coronal and sagittal cuts show what the numbers say: slice-wise DDS draws every slice anew, and
# the cuts are striped; with TV along $z$ the stripes are gone. DiffusionMBIR with 15 levels has not
# converged to anything. The last row, 3-D ADMM-TV (isotropic TV in all three directions, no learned
# prior), is a strong competitor at this size: the learned prior is small (trained for 5000 steps on
# one CPU), the budget is 30 calls per slice, and PSNR rewards the smooth, mean-like images that TV
# produces over sharp samples. `benchmarks/volume_table.py` measures all of them on held-out
# volumes. Its committed output (`benchmarks/results/volume_table_*.json`: 2 held-out brain volumes,
# the 16 central of 56 slices, 50 levels, settings tuned on a third volume, one CPU thread) reads:
#
# | task | FBP | 3-D ADMM-TV | slice-wise DDS | DiffusionMBIR (50 levels) | DDS + TV_z |
# |---|---|---|---|---|---|
# | 8-view CT, PSNR (dB) | 19.2 | 23.7 | 23.0 | 21.5 | **24.9** |
# | 8-view CT, flicker (truth 0.027) | 0.066 | 0.016 | 0.052 | 0.051 | 0.014 |
# | 90° limited angle, PSNR (dB) | 11.6 | 23.4 | 23.0 | 18.8 | **25.0** |
# | 90° limited angle, flicker (truth 0.027) | 0.016 | 0.018 | 0.051 | 0.073 | 0.016 |
# | 4× MRI of every slice, PSNR (dB) | 19.4 (zero-filled) | 24.2 | 25.1 | 24.1 | **27.0** |
# | 4× MRI, flicker (truth 0.027) | 0.021 | 0.021 | 0.041 | 0.041 | 0.018 |
#
# "Flicker" is the mean $|x_{z+1}-x_z|$ over the volume: slice-wise DDS has twice the truth's, TV along
# $z$ brings it to the truth's level or just below it (TV flattens along $z$ a little). With tens of levels, TV on
# Tweedie's estimate gains 1.2–2.8 dB over 3-D ADMM-TV and 1.9–2.0 dB over slice-wise sampling;
# DiffusionMBIR at 50 levels, far from its published 2000, stays below both. It needs its levels: on
# the tuning volume of 8-view CT (`volume_table.py --mbir-levels 50 100 200`) it reaches 21.0 / 23.3 /
# 23.8 dB at 50 / 100 / 200 levels, and its flicker falls from 0.051 to 0.033 and 0.029 (truth 0.031).
# At 200 levels it beats 3-D ADMM-TV (22.6 dB) and slice-wise DDS (22.5 dB) on that volume, at eight
# times the network evaluations of DDS + TV_z (24.0 dB with 50 levels and 50 evaluations per slice).
# On the two held-out volumes at 200 levels (`volume_table_ct8_mbir200.json`) it reaches 24.5 dB with the
# truth's flicker (0.027): 0.8 dB above 3-D ADMM-TV and 1.4 dB above slice-wise DDS, 0.4 dB below DDS + TV_z.

# %% [markdown]
# ## 6. TPDM: a second 2-D prior, perpendicular to the first
#
# TPDM (Lee et al. 2023) trains a second 2-D prior on **coronal** slices and alternates: at each
# noise level either the primary (axial) prior takes a predictor-corrector step followed by a
# DPS-type data step, $x\leftarrow x-w\nabla_x\|y-A\hat x_0(x)\|_2$, or the auxiliary (coronal) prior takes an
# unconditional step on the coronal cuts. The product of the two priors constrains what neither
# constrains alone: the axial prior knows the slices, the coronal one knows how anatomy continues
# along $z$. With an integer $K$ the primary prior steps $K-1$ times, then the auxiliary once; with a
# real $K$ the auxiliary prior steps with probability $1/K$ (the official default is $K = 2.7$).
#
# The premise is that the coronal prior knows the coronal cuts. We test it by denoising: the coronal
# cuts of a whole-brain volume are $56\times64$ (56 slices, 2.75 mm apart, close to the 2.78 mm pixels of
# the coronal training slices), placed in a $64\times64$ canvas whose empty rows hold what the noisy
# state would hold there, background plus noise (`padded_denoiser`; it also turns the cut so that
# the top of the head is up, as in training). Both priors get the same noisy cuts; a third row gives
# the coronal prior the cuts upside down, as `to_slices` returns them.

# %%
print("K = 3:  ", "".join("P" if t else "a" for t in primary_turns(12, 3)))
print("K = 2.7:", "".join("P" if t else "a" for t in primary_turns(12, 2.7, seeded(5))))
D_cor = pretrained.load("brain64_coronal")
cuts = to_slices(volume, CORONAL)[16:48]                       # (32, 1, 56, 64): coronal cuts through the head
gain = {}
for sigma in (0.1, 0.2):
    noisy = cuts + sigma * torch.randn(cuts.shape, generator=seeded(6))
    s_vec = torch.full((cuts.shape[0],), sigma)
    with torch.no_grad():
        for name, prior, flip in (("axial prior", D, True), ("coronal prior", D_cor, True),
                                  ("coronal prior, upside down", D_cor, False)):
            out = padded_denoiser(prior, 64, flip=flip, generator=seeded(7))(noisy, s_vec).clamp(0, 1)
            gain[name, sigma] = (psnr(out, cuts) - psnr(noisy, cuts)).mean().item()
    print(f"σ = {sigma}: denoising gain on coronal cuts: " +
          ", ".join(f"{name} {gain[name, sigma]:.2f} dB" for name, s in gain if s == sigma))

# %%
# Claims: on coronal cuts the coronal prior denoises better than the axial prior, at both noise
# levels; and only the right way up: upside down it loses more than 0.5 dB.
assert all(gain["coronal prior", s] > gain["axial prior", s] for s in (0.1, 0.2)), gain
assert all(gain["coronal prior", s] > gain["coronal prior, upside down", s] + 0.5 for s in (0.1, 0.2)), gain

# %% [markdown]
# The full TPDM run is in `benchmarks/volume_table.py --whole`: its DPS-type data step needs a
# backward pass through the network at every primary step, which makes it the slowest method here.
#
# ## 7. Summary
#
# * A 2-D prior applied slice by slice is the MMSE denoiser of independent slices: each slice is
#   plausible, the stack flickers along $z$ (section 3).
# * DiffusionMBIR couples the slices with $\lambda\|D_zx\|_1$, one ADMM iteration per diffusion step;
#   published with 2000 levels. With a budget of tens of levels the same TV step belongs on Tweedie's
#   estimate (DDS), not on the noisy state (section 5).
# * TPDM couples them with a second, perpendicular prior; the auxiliary prior must see the
#   geometry it was trained on (section 6).
# * `benchmarks/volume_table.py` compares FBP, 3-D ADMM-TV, slice-wise DDS, DiffusionMBIR, DDS + TV_z
#   and TPDM on sparse-view and limited-angle CT and on MRI of held-out volumes.

# %%
elapsed = time.perf_counter() - start_time
print(f"notebook ran in {elapsed:.0f} s")
