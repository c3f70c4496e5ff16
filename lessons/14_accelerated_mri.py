# %% [markdown]
# # 14 · Accelerated MRI: coils, masks, solvers and uncertainty maps
#
# An MR scanner measures the Fourier transform of the image, one line of k-space at a time, and time
# is what limits it. Sampling only every $R$-th line makes the scan $R$ times faster and the problem
# underdetermined; two things make it solvable again. **Several receive coils**, each seeing the
# body through its own smooth sensitivity, give several views of the same missing lines
# (SENSE, Pruessmann, Weiger, Scheidegger & Boesiger, MRM 1999), and a **prior** fills in what no
# coil measured: here the brain prior of lesson 05, used by the solvers of lessons 06-10
# (score-POCS of Chung & Ye, MedIA 2022; DPS of Chung, Kim, McCann, Klasky & Ye, ICLR 2023; DDS of
# Chung, Lee & Ye, ICLR 2024; DMPS of Meng & Kabashima 2022). A posterior sampler also says how sure
# it is: run it several times and the pixel-wise spread is an **uncertainty map** (Jalal, Arvinte,
# Daras, Price, Dimakis & Tamir, NeurIPS 2021). Whether that map can be trusted is a measurement, not
# a given, and this lesson makes it.
#
# **Learning goals**
#
# 1. Write single- and multi-coil Cartesian MRI, $y_i = M\odot F(S_i x) + n_i$, and its adjoint, the
#    SENSE coil combination $A^{\mathsf H}y = \sum_i \bar S_i F^{-1}(M\odot y_i)$; check adjointness and
#    $A^{\mathsf H}A = I$ when fully sampled.
# 2. See why **equispaced** undersampling folds the image into $R$ shifted copies and **random**
#    undersampling smears it into noise-like artefacts.
# 3. Unfold with the coils: **SENSE least squares** by conjugate gradients, and the noise it amplifies
#    (stop early: semi-convergence).
# 4. Run score-POCS, DPS and DDS with the brain prior on multi-coil data, and DMPS on single-coil data
#    (where $A$ has an SVD), beside zero-filling, SENSE and ADMM-TV.
# 5. Turn posterior samples into **mean and standard-deviation maps**; check their **calibration**
#    (how often the truth lies within $k$ standard deviations) and whether the std points at the error.
# 6. Reconstruct **complex** images with a prior trained on real magnitudes: real and imaginary parts
#    apart (Chung & Ye 2022), or the phase first.

# %%
import time

import matplotlib.pyplot as plt
import torch

from diffcourse.data import brain_slices
from diffcourse.metrics import psnr, ssim
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.mri import (MultiCoilMRI, SingleCoilMRI, cartesian_mask, coil_sensitivities, fft2c, ifft2c,
                                    rss, smooth_phase)
from diffcourse.physics.noise import GaussianNoise
from diffcourse.plot import show_images
from diffcourse.posterior import solvers
from diffcourse.posterior.classical import admm_tv, least_squares
from diffcourse.posterior.complex_mri import (PhaseModulated, RealImag, centre_phase, real_images, sense_dc,
                                              split_denoiser)
from diffcourse.posterior.uncertainty import calibration, pixel_stats, std_error_correlation
from diffcourse.prior import pretrained
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.samplers.loop import CountingDenoiser

start_time = time.perf_counter()
SIZE, SIGMA_Y = 64, 0.01


def seeded(k):
    """A fresh generator: runs given seeded(k) draw the same numbers."""
    return torch.Generator().manual_seed(k)


def score(x, ref):
    """PSNR (dB) and SSIM of x clipped to [0, 1], for one image."""
    x = x.clamp(0, 1)
    return psnr(x, ref).item(), ssim(x, ref).item()


truth = brain_slices(1, SIZE, seeded(10_000), split="test")      # a held-out slice, never seen in training

# %% [markdown]
# ## 1. One coil: k-space, masks and aliasing
#
# With one coil of uniform sensitivity, $y = M\odot Fx + n$: $F$ the centred orthonormal 2-D Fourier
# transform (`fft2c`, DC in the middle), $M$ a 0/1 mask of whole columns (the phase-encoding lines;
# each is one repetition of the sequence, so the scan time is proportional to their number), and
# $n$ complex Gaussian noise, $\sigma_y = 0.01$ per real and imaginary part. At acceleration $R$ a
# mask keeps $64/R$ of the 64 columns, always including a fully sampled block in the centre (8 % of
# the columns at $R = 4$, 4 % at $R = 8$, as in fastMRI: Zbontar et al., arXiv 2018), where most of
# the image's energy lies; the others are spread **evenly** or drawn **at random**.
#
# The **zero-filled** image $F^{-1}(M\odot y)$ shows what is missing. Keeping every $R$-th column
# multiplies k-space by a comb, which in image space is a sum of $R$ copies of the image shifted by
# $64/R$ pixels: the image **folds**,
#
# $$ F^{-1}(M_{\rm comb}\odot Fx) = \frac1R\sum_{j=0}^{R-1} x\big(\cdot,\ \cdot - j\,\tfrac{W}{R}\big)\quad(\text{circularly}). $$
#
# We check this identity on a pure comb (no centre block), then look at the four masks.

# %%
comb = torch.zeros(SIZE, SIZE)
comb[:, ::4] = 1                                                    # columns 0, 4, 8, ...
folded = ifft2c(comb * fft2c(truth.to(torch.complex64)))
copies = sum(truth.roll(j * SIZE // 4, dims=-1) for j in range(4)) / 4
fold_gap = (folded - copies).abs().max().item()
print(f"comb mask, R = 4: max |zero-filled - mean of 4 shifted copies| = {fold_gap:.1e}")
assert fold_gap < 1e-5, fold_gap

masks = {f"{kind} R={R}": cartesian_mask(SIZE, R, 0.08 if R == 4 else 0.04, kind=kind, generator=seeded(0))
         for R in (4, 8) for kind in ("equispaced", "random")}
zero_filled = {}
for name, m in masks.items():
    lik = Likelihood.measure(SingleCoilMRI(m), GaussianNoise(SIGMA_Y), truth, generator=seeded(1))
    zero_filled[name] = lik.op.AT(lik.y).real
show_images(list(masks.values()), [f"{n}: {int(m[0].sum())} of 64 columns" for n, m in masks.items()], size=2.2)
plt.show()
show_images([truth] + list(zero_filled.values()),
            ["truth"] + [f"{n}: {score(z, truth)[0]:.1f} dB" for n, z in zero_filled.items()], size=2.2,
            suptitle="zero-filled single-coil images: folded copies (equispaced) or smeared ones (random)")
plt.show()

# %% [markdown]
# The equispaced images show ghost copies displaced by a quarter (an eighth) of the field of view;
# the random masks spread the same missing energy over the image as incoherent, noise-like streaks
# along the undersampled (horizontal) axis, which is what compressed sensing wants (Lustig, Donoho &
# Pauly, MRM 2007). Zero-filling knows nothing of either.
#
# ## 2. Many coils: SENSE
#
# Coil $i$ sees $S_i x$, the image weighted by its smooth complex sensitivity $S_i$, so the model is
#
# $$ y_i = M\odot F(S_i x) + n_i,\quad i = 1..C,\qquad A^{\mathsf H}y = \sum_i \bar S_i\,F^{-1}(M\odot y_i). $$
#
# The adjoint combines the coil images, each weighted by its own conjugate sensitivity. The course's
# synthetic maps (`coil_sensitivities`: 8 coils on a ring, Gaussian fall-off, a slowly turning phase)
# are normalised so that $\sum_i |S_i|^2 = 1$: then a fully sampled $A$ is an isometry, $A^{\mathsf H}A = I$, and the
# root sum of squares of the coil images is $|x|$. We check that, and the dot test
# $\langle Ax, y\rangle = \langle x, A^{\mathsf H}y\rangle$ on complex vectors.

# %%
S = coil_sensitivities(8, SIZE)
full = MultiCoilMRI(torch.ones(SIZE, SIZE), S)
coil_images = ifft2c(full.A(truth.to(torch.complex64)))                 # S_i x, (1, 8, 64, 64)
iso_gap = (full.AT(full.A(truth.to(torch.complex64))) - truth).abs().max().item()
rss_gap = (rss(coil_images) - truth).abs().max().item()
op8 = MultiCoilMRI(masks["random R=8"], S)
g = seeded(2)
xc = torch.complex(torch.randn(2, 1, SIZE, SIZE, generator=g), torch.randn(2, 1, SIZE, SIZE, generator=g))
yc = torch.complex(torch.randn(2, 8, SIZE, SIZE, generator=g), torch.randn(2, 8, SIZE, SIZE, generator=g))
lhs, rhs = (op8.A(xc).conj() * yc).sum((1, 2, 3)), (xc.conj() * op8.AT(yc)).sum((1, 2, 3))
dot_gap = ((lhs - rhs).abs() / rhs.abs()).max().item()
print(f"fully sampled: max |A^H A x - x| = {iso_gap:.1e}, max |RSS - |x|| = {rss_gap:.1e}; "
      f"dot test, R = 8: relative gap {dot_gap:.1e}")
assert iso_gap < 1e-5 and rss_gap < 1e-5 and dot_gap < 1e-5
show_images(list(S.abs()[:, None]) + list(coil_images.abs()[0, :, None]), [f"|S_{i}|" for i in range(8)]
            + [f"|S_{i} x|" for i in range(8)], ncols=8, size=1.4, suptitle="coil sensitivities and coil images")
plt.show()

# %% [markdown]
# **Unfolding.** With equispaced sampling each pixel of a coil's zero-filled image is the sum of
# $R$ pixels of $S_i x$, one in each fold. Eight coils give eight such sums with different weights:
# $C \ge R$ equations for $R$ unknowns per group of folded pixels, solvable as long as the coils
# tell the folds apart. SENSE solves them in least squares; we do it for the whole image at once by
# conjugate gradients on $A^{\mathsf H}Ax = A^{\mathsf H}y$ (`least_squares`), over real images here (the adjoint
# is then $\mathrm{Re}\,A^{\mathsf H}$, `real_images`). The conditioning of those small systems sets how much the
# noise grows (SENSE's g-factor); CG fits the well-determined directions first and the noisy ones
# last, so its **iteration count is a regulariser**: the error falls, then rises again.

# %%
configs = {"mc4_equi": ("equispaced R=4", 8), "mc8_rand": ("random R=8", 8), "sc4_rand": ("random R=4", 1)}


def measure(config, x):
    """The likelihood of the brain image(s) x under a configuration (coils, mask), sigma_y = 0.01."""
    mask_name, coils = configs[config]
    op = MultiCoilMRI(masks[mask_name], S) if coils > 1 else SingleCoilMRI(masks[mask_name])
    return Likelihood.measure(op, GaussianNoise(SIGMA_Y), x, generator=seeded(1))


iters = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 80)
cg_curves = {}
for config in ("mc4_equi", "mc8_rand"):
    lik = measure(config, truth)
    cg_curves[config] = [score(least_squares(real_images(lik.op), lik.y, n_iter=n), truth)[0] for n in iters]
    zf = score(real_images(lik.op).AT(lik.y), truth)[0]
    best = max(cg_curves[config])
    print(f"{config}: zero-filled {zf:.1f} dB, SENSE-CG best {best:.1f} dB at {iters[cg_curves[config].index(best)]} "
          f"iterations, {cg_curves[config][-1]:.1f} dB at {iters[-1]}")
    assert best > zf + 2.5 and cg_curves[config][-1] < best - 2       # unfolding helps; too many iterations hurt
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for config, curve in cg_curves.items():
    ax.semilogx(iters, curve, "o-", label=config)
ax.set(xlabel="CG iterations", ylabel="PSNR (dB)", title="SENSE by CG: semi-convergence")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Diffusion solvers with the brain prior
#
# The shipped `brain64` prior (lesson 05) knows axial brain slices in $[0, 1]$. Each solver of the
# course runs unchanged on the multi-coil operator, because each needs only $A$ and $A^{\mathsf H}$:
#
# * **score-POCS** (Chung & Ye, MedIA 2022, Alg. 1): predictor-corrector sampling, each step followed
#   by data consistency. For one coil that is k-space replacement (lesson 06); for many coils
#   Chung & Ye's hybrid sampler uses the SENSE gradient step $x \leftarrow x + \lambda\,\mathrm{Re}\,A^{\mathsf H}(y - Ax)$
#   (`sense_dc`, $\lambda = 1$), since with noisy multi-coil data, more equations than unknowns, the exact
#   projection onto $\{Ax = y\}$ would be the noisy SENSE image itself;
# * **DPS** (Chung et al., ICLR 2023, Alg. 1): DDPM steps minus $\zeta\nabla\|y - A\hat x_0\|$ through the network;
# * **DDS** (Chung, Lee & Ye, ICLR 2024, Alg. 1): Tweedie's $\hat x_0$, a few CG steps on
#   $\min \frac\gamma2\|y - Ax\|^2 + \frac12\|x - \hat x_0\|^2$, re-noising;
# * **DMPS** (Meng & Kabashima 2022) needs the SVD of $A$. One coil has it for free: $A = MF$ with $F$
#   unitary, singular values $M$ (lesson 10). Coil maps mix the pixels, and $A = MFS$ has no cheap SVD,
#   so DMPS is run on single-coil data only.
#
# The settings are those of `benchmarks/mri_table.py`, tuned on two other held-out slices: 25 noise
# levels for DPS ($\zeta' = 2$, $\sigma_{\max} = 10$), DDS ($\gamma = 100$, 5 CG steps) and DMPS ($\lambda = 1$), 30
# predictor-corrector levels for score-POCS (snr $= 0.4$). ADMM-TV ($\lambda = 10^{-3}$, 100 iterations) is the
# classical competitor.

# %%
D = pretrained.load("brain64")
SETTINGS = {"score_pocs": {"n": 30, "snr": 0.4}, "dps": {"n": 25, "zeta": 2.0, "sigma_max": 10.0},
            "dds": {"n": 25, "gamma": 100.0}, "dmps": {"n": 25, "lam": 1.0}}


def run(D, name, lik, shape, n_samples=1):
    """n_samples chains of solver `name` (one batch); returns (samples (S, *shape), NFE per chain)."""
    kw = dict(SETTINGS[name])
    sigmas = karras_sigmas(kw.pop("n"), sigma_max=kw.pop("sigma_max", 80.0)).float()
    if name == "score_pocs" and isinstance(lik.op, MultiCoilMRI):
        kw["dc"] = sense_dc(lik.op)
    many = Likelihood(lik.op, lik.noise, lik.y.repeat(n_samples, *[1] * (lik.y.ndim - 1)))
    g = seeded(0)
    counted = CountingDenoiser(D)
    x = sigmas[0] * torch.randn((n_samples * shape[0], *shape[1:]), generator=g)
    out = getattr(solvers, name)(counted, x, sigmas, many, generator=g, **kw).detach()
    return out.reshape(n_samples, *shape), counted.calls


results = {}
lik8 = measure("mc8_rand", truth)
results["zero-filled"] = real_images(lik8.op).AT(lik8.y)
results["SENSE-CG (20 it.)"] = least_squares(real_images(lik8.op), lik8.y, n_iter=20)
results["ADMM-TV"] = admm_tv(real_images(lik8.op), lik8.y, 1e-3, 1e-2, n_iter=100)
for name in ("score_pocs", "dps"):
    samples, nfe = run(D, name, lik8, truth.shape)
    results[f"{name} ({nfe} NFE)"] = samples[0]
for name, x in results.items():
    print(f"mc8_rand  {name:20s} PSNR {score(x, truth)[0]:5.2f} dB  SSIM {score(x, truth)[1]:.3f}")

lik1 = measure("sc4_rand", truth)
single = {"zero-filled": lik1.op.AT(lik1.y).real}
for name in ("dmps", "dds"):
    samples, nfe = run(D, name, lik1, truth.shape)
    single[f"{name} ({nfe} NFE)"] = samples[0]
for name, x in single.items():
    print(f"sc4_rand  {name:20s} PSNR {score(x, truth)[0]:5.2f} dB  SSIM {score(x, truth)[1]:.3f}")
assert score(results["dps (25 NFE)"], truth)[0] > score(results["SENSE-CG (20 it.)"], truth)[0] + 1.5

# %% [markdown]
# ## 4. Uncertainty maps: mean, standard deviation, and whether to believe them
#
# DDS with $\eta = 0.85$ re-noises with fresh noise at every step, so each run ends at a different
# sample. Eight runs on the same data give, pixel by pixel, a mean $\bar x$ (the estimate) and a
# standard deviation $s$ (the claimed uncertainty; unbiased, divided by $S - 1$). Two checks against the
# truth:
#
# * **calibration**: the fraction of pixels with $|x - \bar x| \le k\,s$. If the truth were one more draw
#   from a Gaussian posterior and $S$ large, it would be $\mathrm{erf}(k/\sqrt2)$ = 68.3 / 95.4 / 99.7 % at
#   $k = 1, 2, 3$. With $S = 8$ the mean and the std are themselves estimates: $(x - \bar x)/(s\sqrt{1 + 1/S})$
#   then follows Student's $t$ with $S - 1$ degrees of freedom (Student, Biometrika 1908), and the fair
#   target is 62.3 / 89.9 / 97.5 %. Fewer pixels than that: the sampler is **over-confident**.
# * **std-error correlation**: the Pearson correlation, over the pixels, of $s$ with $|x - \bar x|$.

# %%
samples, nfe = run(D, "dds", lik8, truth.shape, n_samples=8)           # (8, 1, 1, 64, 64)
samples = samples.clamp(0, 1)
mean, std = pixel_stats(samples)
error = mean - truth
cal = calibration(samples, truth)
head = truth > 0.02
cal_head = calibration(samples, truth, mask=head)
corr, corr_head = std_error_correlation(std, error).item(), std_error_correlation(std, error, mask=head).item()
one, avg = score(samples[0], truth)[0], score(mean, truth)[0]
print(f"DDS, mc8_rand, 8 samples of {nfe} NFE: one sample {one:.2f} dB, mean of 8 {avg:.2f} dB")
print("k      observed   (head)   Student S=8   Gaussian")
for j, k in enumerate(cal.ks):
    print(f"{k:.0f}      {100 * cal.observed[0, j]:6.1f} %  {100 * cal_head.observed[0, j]:6.1f} %   "
          f"{100 * cal.student[j]:6.1f} %     {100 * cal.gaussian[j]:6.1f} %")
print(f"corr(std, |error|): {corr:.2f} (all pixels), {corr_head:.2f} (head)")
assert avg > one                                  # averaging samples approaches the posterior mean
assert corr > 0.3                                 # the std map points at the error ...
assert cal.observed[0, 1] < cal.student[1] - 0.05  # ... but it is too small: over-confident at k = 2
top = error.abs().max().item()
show_images([truth, mean, 2 * std, error.abs()], ["truth", f"mean of 8: {avg:.1f} dB", "2 std",
            "|error| of the mean"], size=2.4, vmax=None, suptitle="DDS posterior samples, 8 coils, random 8x")
plt.show()
show_images([2 * std, error.abs()], [f"2 std, on [0, {top:.2f}]", f"|error|, on [0, {top:.2f}]"], vmax=top, size=2.4)
plt.show()

# %% [markdown]
# The std map is zero in the background, where every sample agrees, and spread over the whole head,
# somewhat larger along edges. The largest errors sit around the ventricles, which the std marks only
# weakly: on the same grey scale (second figure) the error there exceeds two standard deviations. As a
# probability statement the std is too small: far fewer pixels than 90 % lie within two standard
# deviations. DDS's samples differ from each other less than they differ from the truth.
# (A plausible reason, not tested here: its few CG steps pull every sample towards the same data fit,
# and 25 steps leave little room to explore.) Over all pixels the correlation is flattered by the background, where error and std are both
# zero; inside the head it is weaker (printed above). `benchmarks/mri_table.py` measures the same on four
# slices, for DDS and DPS:
#
# | 8 posterior samples, 8 coils, 8× random | coverage $k$ = 1 / 2 / 3 (all pixels) | in the head | corr(std, \|error\|), all / head |
# |---|---|---|---|
# | DDS | 53.1 / 74.7 / 84.9 % | 46.4 / 76.4 / 89.4 % | 0.56 / 0.23 |
# | DPS | 65.9 / 94.0 / 98.1 % | 59.8 / 88.2 / 96.0 % | 0.64 / 0.31 |
# | calibrated (Student, $S = 8$) | 62.3 / 89.9 / 97.5 % | | |
#
# DPS's spread is about right: a little wide over all pixels, a little narrow inside the head. DDS's is
# too small everywhere. Both std maps point at the error, DPS's more. Calibration over the pixels of a
# few images is still a small measurement: neighbouring pixels are not independent, and another
# anatomy, noise level or step count can change it.
#
# ## 5. Complex images with a real prior
#
# Real MR images are complex, $x = |x|\,e^{i\varphi}$, with a phase that varies slowly over the field of
# view (field inhomogeneity, the receive chain). Our prior was trained on magnitudes in $[0, 1]$. Two ways
# to use it anyway, both with DDS on 8 coils at 4× equispaced:
#
# 1. **real and imaginary parts apart**, as score-MRI does (Chung & Ye 2022): the state is the
#    two-channel real image $(\mathrm{Re}\,x, \mathrm{Im}\,x)$ (`RealImag`), and the prior denoises each
#    channel as if it were an image (`split_denoiser`). But $|x|\cos\varphi$ and $|x|\sin\varphi$ are brains
#    multiplied by smooth signed fields, in $[-1, 1]$: not what the prior has seen.
# 2. **phase first**: estimate $\varphi$ from the fully sampled centre of k-space (`centre_phase`: the phase of
#    the low-resolution image of the central columns) and reconstruct a real $\rho$ with $x = \rho\,e^{i\hat\varphi}$
#    (`PhaseModulated`), to which the prior applies as trained. Its error floor is the phase error.
#
# The phase below is a random trigonometric polynomial of degree 2 with values in $[-\pi, \pi]$ (`smooth_phase`).

# %%
phase = smooth_phase(1, SIZE, generator=seeded(3))
x_complex = truth * torch.polar(torch.ones_like(phase), phase)
lik_c = measure("mc4_equi", x_complex)
complex_results = {"zero-filled |A^H y|": lik_c.op.AT(lik_c.y).abs()}
split_lik = Likelihood(RealImag(lik_c.op), lik_c.noise, lik_c.y)
split_samples, _ = run(split_denoiser(D), "dds", split_lik, (1, 2, SIZE, SIZE))
complex_results["DDS, Re and Im apart"] = split_samples[0].pow(2).sum(1, keepdim=True).sqrt()
phase_hat = centre_phase(lik_c.op, lik_c.y, n_center=5)
phase_err = torch.angle(torch.polar(torch.ones_like(phase), phase - phase_hat))
for name, p in (("DDS, phase from the centre", phase_hat), ("DDS, true phase (oracle)", phase)):
    rho, _ = run(D, "dds", Likelihood(PhaseModulated(lik_c.op, p), lik_c.noise, lik_c.y), truth.shape)
    complex_results[name] = rho[0].abs()
for name, x in complex_results.items():
    print(f"complex mc4_equi  {name:28s} PSNR of |x| {score(x, truth)[0]:5.2f} dB")
print(f"phase error in the head: mean {phase_err[head].abs().mean():.2f} rad, "
      f"90th percentile {phase_err[head].abs().quantile(0.9):.2f} rad")
show_images([truth, phase / torch.pi, x_complex.real, x_complex.imag], ["|x|", "phase / π", "Re x", "Im x"],
            vmin=-1, vmax=1, size=2.3, suptitle="a complex image: its real and imaginary parts are signed")
plt.show()
show_images(list(complex_results.values()), [f"{n.split(', ')[-1]}: {score(x, truth)[0]:.1f} dB"
                                             for n, x in complex_results.items()], size=2.3,
            suptitle="|x| reconstructed by DDS, 8 coils, 4x equispaced")
plt.show()
zf_c, split_c, centre_c, oracle_c = (score(x, truth)[0] for x in complex_results.values())
assert split_c > zf_c + 2            # the split prior helps ...
assert oracle_c > split_c + 5        # ... but far less than the prior on |x| with the right phase
assert centre_c < split_c            # and a coarse phase estimate is worse than no phase model

# %% [markdown]
# Applying the magnitude prior to the real and imaginary parts gains over zero-filling but stays far below
# what the same prior achieves on a real image (the oracle, with the true phase, is as good as section 3's
# real case). The parts are signed and modulated by the phase, and the prior pulls each towards a
# brain-like image in $[0, 1]$. The phase-first scheme fails for another reason. Five central columns give a
# phase blurred along the undersampled axis, off by 0.3 rad on average, and a real $\rho$ cannot explain the
# part $\rho\sin(\varphi - \hat\varphi)$ of the data in quadrature. DDS's least-squares data step then spreads that
# misfit through the folds. In `benchmarks/mri_table.py` (four slices) a phase taken from the SENSE-CG
# image (0.12 rad error) does better, 21.1 dB, but no better than the split (21.0 dB), while the true phase
# gives 28.5 dB. ADMM-TV on the complex image (26.9 dB there) beats both. A magnitude prior is the wrong
# prior for complex data; a prior trained on the real and imaginary
# channels of complex images (as Jalal et al., NeurIPS 2021, train theirs on complex fastMRI brain images)
# is the remedy. The lesson's main comparisons therefore use real-valued images.
#
# ## 6. The benchmark: four held-out slices
#
# `python benchmarks/mri_table.py` runs every method on four held-out slices (this lesson's slice is the
# first) and the uncertainty check on all four with DPS and DDS (8 samples each), and writes the rows
# as JSON (`--out`), in about 20 minutes on one thread of a busy CPU. Mean PSNR (dB) / SSIM; the
# diffusion rows are one posterior sample per image, with 60 (score-POCS) or 25 network evaluations
# (DPS's each with a backward pass):
#
# | | zero-filled | SENSE-CG | ADMM-TV | score-POCS | DPS | DDS | DMPS |
# |---|---|---|---|---|---|---|---|
# | 8 coils, 4× equispaced | 20.5 / 0.58 | 25.9 / 0.71 | **32.4** / 0.90 | 29.1 / 0.88 | 28.8 / **0.92** | 28.9 / 0.76 | (no SVD) |
# | 8 coils, 8× random | 17.2 / 0.38 | 20.4 / 0.50 | 24.2 / 0.75 | 21.1 / 0.63 | 22.5 / 0.75 | 23.3 / 0.63 | (no SVD) |
# | ... mean of 8 samples | | | | | **24.8 / 0.76** | **24.8** / 0.69 | |
# | 1 coil, 4× random | 18.7 / 0.47 | 19.0 / 0.48 | 23.3 / 0.68 | 22.3 / 0.68 | **23.9 / 0.81** | 23.6 / 0.74 | 20.5 / 0.64 |
# | complex, 8 coils, 4× equispaced | 17.0 / 0.42 | 20.6 / 0.55 | **26.9 / 0.72** | | | Re, Im apart 21.0 / 0.53 | |
#
# * **ADMM-TV wins at 4× with 8 coils** (64 × 64 brains with little texture, a tuned $\lambda$). There the
#   diffusion solvers are given one posterior *sample*, which for an exact sampler has twice the mean
#   squared error of the posterior mean: 3 dB of PSNR. At 8×, the **mean of 8 samples** of DPS or DDS
#   (200 network evaluations) beats ADMM-TV, by 0.6 dB, and DPS's also in SSIM. With one coil DPS is
#   best even with one sample.
# * Eight coils turn 4× from hopeless (one coil, zero-filled 18.7 dB) into easy (SENSE alone 25.9 dB); at 8×
#   the coils are not enough and the prior matters.
# * DMPS is the weakest diffusion solver on single-coil data here: its flat-prior likelihood ignores what
#   the prior knows about $x_0$ (lesson 10).
#
# ## Summary
#
# * Multi-coil Cartesian MRI is $y_i = M\odot F(S_ix) + n_i$; its adjoint combines coils with $\bar S_i$. With
#   $\sum_i|S_i|^2 = 1$ a fully sampled $A$ is an isometry. Check every operator with the dot test.
# * Equispaced masks fold the image into $R$ copies (exactly, for a comb); random masks smear it. Coils unfold
#   it (SENSE), at the price of noise amplification: stop CG early.
# * Every solver of the course runs on the multi-coil operator as it is; only DMPS needs an SVD, which
#   single-coil MRI has and multi-coil MRI has not. Score-POCS uses Chung & Ye's SENSE gradient step.
# * Pixel-wise mean and standard deviation of 8 posterior samples: both std maps point at the error, but
#   with DDS the truth lies within $2s$ on 75 % of the pixels where a calibrated 8-sample posterior gives 90 %
#   (Student's $t$, not the Gaussian 95 %): DDS is over-confident; DPS's 94 % is about right.
# * A prior trained on magnitudes does not transfer to complex images: applied to real and imaginary parts
#   it loses 7.5 dB against the same prior with the true phase (four slices).
#
# **References.** K. P. Pruessmann, M. Weiger, M. B. Scheidegger & P. Boesiger, *SENSE: sensitivity encoding
# for fast MRI*, Magn. Reson. Med. 42, 952-962, 1999. M. Lustig, D. Donoho & J. M. Pauly, *Sparse MRI*,
# Magn. Reson. Med. 58, 1182-1195, 2007. J. Zbontar et al., *fastMRI: an open dataset and benchmarks for
# accelerated MRI*, arXiv:1811.08839, 2018. H. Chung & J. C. Ye, *Score-based diffusion models for
# accelerated MRI*, Medical Image Analysis 80, 102479, 2022 (Alg. 1; also complex and multi-coil
# data). A. Jalal, M. Arvinte, G. Daras, E. Price, A. G. Dimakis & J. I. Tamir, *Robust compressed sensing
# MRI with deep generative priors*, NeurIPS 2021. H. Chung, J. Kim, M. T. McCann, M. L. Klasky & J. C. Ye,
# *Diffusion posterior sampling for general noisy inverse problems*, ICLR 2023 (Alg. 1). H. Chung, S. Lee &
# J. C. Ye, *Decomposed diffusion sampler for accelerating large-scale inverse problems*, ICLR 2024
# (Alg. 1). X. Meng & Y. Kabashima, *Diffusion model based posterior sampling for noisy linear inverse
# problems*, arXiv:2211.12343, 2022. D. C. Noll, D. G. Nishimura & A. Macovski, *Homodyne detection in
# magnetic resonance imaging*, IEEE Trans. Med. Imaging 10, 154-163, 1991 (phase from the k-space centre).
# Student, *The probable error of a mean*, Biometrika 6, 1-25, 1908.

# %%
print(f"lesson run time {time.perf_counter() - start_time:.0f} s")
