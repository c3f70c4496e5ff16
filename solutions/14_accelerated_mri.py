# %% [markdown]
# # 14 · Accelerated MRI — exercises
#
# Companion to `lessons/14_accelerated_mri.py`. You will write
#
# 1. the **multi-coil forward model** $y_i = M\odot F(S_i x)$: one k-space per coil,
# 2. its **adjoint**, the SENSE coil combination $A^{\mathsf H}y = \sum_i \bar S_i F^{-1}(M\odot y_i)$, checked by the dot
#    test $\langle Ax, y\rangle = \langle x, A^{\mathsf H}y\rangle$,
# 3. the **coverage** of an uncertainty map: the fraction of pixels whose error lies within $k$ standard
#    deviations of the posterior samples.
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done yet" or
# what is wrong). The cells after a check use the library's implementation, so the notebook runs top to
# bottom even before you start.
#
# **Conventions** (as in `diffcourse.physics.mri`): images `x` of shape `(B, 1, H, W)`, complex; coil maps `S`
# `(C, H, W)`, complex; a 0/1 mask `(H, W)` in the centred k-space layout (DC at `(H//2, W//2)`); `fft2c` and
# `ifft2c` are the centred orthonormal 2-D FFT and its inverse; `y` has one channel per coil,
# `(B, C, H, W)`. Posterior samples come first: `(S, B, ...)`.

# %%
import math

import matplotlib.pyplot as plt
import torch

from diffcourse.checks.lesson14 import check_coverage, check_multicoil_adjoint, check_multicoil_forward
from diffcourse.physics.mri import MultiCoilMRI, cartesian_mask, coil_sensitivities, fft2c, ifft2c, rss
from diffcourse.plot import show_images
from diffcourse.posterior.uncertainty import gaussian_coverage, student_coverage

gen = torch.Generator().manual_seed(0)
SIZE = 32

# %% [markdown]
# ## Exercise 1 · The multi-coil forward model
#
# Coil $i$ sees the image weighted by its sensitivity, $S_i x$ (pixel by pixel); the scanner measures its
# Fourier transform on the sampled lines only (Pruessmann et al., MRM 1999):
#
# $$ y_i = M\odot F(S_i x),\qquad i = 1, \dots, C . $$
#
# Complete `multicoil_forward`. Broadcasting does the work: `S` `(C, H, W)` times `x` `(B, 1, H, W)` is
# `(B, C, H, W)`, one image per coil; `fft2c` transforms the last two axes.

# %%
def multicoil_forward(x, S, mask):
    """y_i = mask ⊙ fft2c(S_i x) for every coil (Pruessmann et al. 1999); x (B, 1, H, W) -> y (B, C, H, W)."""
    ### BEGIN SOLUTION
    coil_images = S * x                                            # (B, C, H, W)
    return mask * fft2c(coil_images)
    ### END SOLUTION


# %%
check_multicoil_forward(multicoil_forward)

# %% tags=["solution"]
assert check_multicoil_forward(multicoil_forward, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# The library's `MultiCoilMRI(mask, S).A(x)` is the same map. Below: a smooth test object seen by the 8
# synthetic coils of the course (`coil_sensitivities`), the magnitude of each coil's image, and the log
# magnitude of its k-space on a random 4× mask. Every coil's k-space has the same columns missing; what
# differs between coils is how the image was weighted before the transform.

# %%
t = torch.linspace(-1, 1, SIZE)
blob = ((t[:, None] ** 2 / 0.6 + t[None, :] ** 2 / 0.4) < 1).float() * (0.6 + 0.4 * torch.cos(4 * t)[None, :])
x = blob[None, None].to(torch.complex64)                              # (1, 1, 32, 32)
S = coil_sensitivities(8, SIZE)
mask = cartesian_mask(SIZE, 4, 0.125, generator=gen)
y = check_multicoil_forward.reference(x, S, mask)
print(f"reference vs MultiCoilMRI.A: largest difference {(y - MultiCoilMRI(mask, S).A(x)).abs().max():.1e}")
show_images(list((S * x).abs()[0, :, None]) + list(torch.log1p(100 * y.abs())[0, :, None]),
            [f"|S_{i} x|" for i in range(8)] + [f"log |y_{i}|" for i in range(8)], ncols=8, size=1.4, vmax=None)
plt.show()

# %% [markdown]
# ## Exercise 2 · The adjoint: SENSE's coil combination
#
# The adjoint undoes each step in reverse order with its own adjoint: the mask is its own adjoint, the
# adjoint of the orthonormal $F$ is $F^{-1}$, the adjoint of multiplying by $S_i$ is multiplying by $\bar S_i$,
# and the adjoint of copying $x$ to every coil is **summing** over the coils:
#
# $$ A^{\mathsf H}y = \sum_{i=1}^{C} \bar S_i\, F^{-1}(M\odot y_i) . $$
#
# Complete `multicoil_adjoint` (keep the coil axis with `keepdim=True`, so the result is `(B, 1, H, W)`). The
# check runs the dot test $\langle Ax, y\rangle = \langle x, A^{\mathsf H}y\rangle$ with $\langle a, b\rangle = \sum \bar a\, b$ on random complex
# vectors, and tells you how far off your answer is.

# %%
def multicoil_adjoint(y, S, mask):
    """Aᴴy = Σ_i conj(S_i) ifft2c(mask ⊙ y_i) (the SENSE combination); y (B, C, H, W) -> (B, 1, H, W)."""
    ### BEGIN SOLUTION
    coil_images = ifft2c(mask * y)                                 # (B, C, H, W)
    return (S.conj() * coil_images).sum(1, keepdim=True)
    ### END SOLUTION


# %%
check_multicoil_adjoint(multicoil_adjoint)

# %% tags=["solution"]
assert check_multicoil_adjoint(multicoil_adjoint, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# Because the course's maps satisfy $\sum_i|S_i|^2 = 1$, the adjoint of a **fully sampled** acquisition
# returns the image exactly: $A^{\mathsf H}Ax = \sum_i |S_i|^2 x = x$. On the undersampled data it returns the
# coil-combined zero-filled image, folded and smeared. The root sum of squares $\sqrt{\sum_i|F^{-1}y_i|^2}$, the
# usual way to look at coil images, is $|x|$ when fully sampled but throws the phase away; the adjoint
# keeps it, which any linear reconstruction needs.

# %%
full = torch.ones(SIZE, SIZE)
back = check_multicoil_adjoint.reference(check_multicoil_forward.reference(x, S, full), S, full)
print(f"fully sampled: max |Aᴴ A x - x| = {(back - x).abs().max():.1e}, "
      f"max |RSS - |x|| = {(rss(ifft2c(check_multicoil_forward.reference(x, S, full))) - x.abs()).abs().max():.1e}")
folded = check_multicoil_adjoint.reference(y, S, mask)
show_images([x.abs(), folded.abs(), folded.angle()], ["|x|", "|Aᴴ y|, 4× random", "phase of Aᴴ y"], size=2.4,
            vmax=None)
plt.show()

# %% [markdown]
# ## Exercise 3 · Coverage: do the error bars hold?
#
# A posterior sampler run $S$ times gives samples $x^{(1)}, \dots, x^{(S)}$; pixel by pixel their mean $\bar x$ is the
# estimate and their standard deviation $s$ (unbiased: divided by $S - 1$, `samples.std(0)`) the claimed
# uncertainty. The **coverage** at $k$ is the fraction of an image's pixels where the truth lies within
# $k$ standard deviations of the mean:
#
# $$ c_k = \frac{1}{n}\,\#\{\,j : |x_j - \bar x_j| \le k\, s_j\,\} . $$
#
# Complete `coverage`: samples `(S, B, ...)`, the truth `(B, ...)`, one fraction per image, shape `(B,)`.

# %%
def coverage(samples, truth, k):
    """Fraction of pixels with |truth - mean| <= k std, per image; samples (S, B, ...), truth (B, ...) -> (B,)."""
    ### BEGIN SOLUTION
    mean, std = samples.mean(0), samples.std(0)                    # unbiased std (divides by S - 1)
    inside = (truth - mean).abs() <= k * std                       # (B, ...)
    return inside.flatten(1).double().mean(1)
    ### END SOLUTION


# %%
check_coverage(coverage)

# %% tags=["solution"]
assert check_coverage(coverage, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# What should a calibrated sampler give? Draw the samples and the truth from the **same** Gaussian, pixel by
# pixel, and measure. With many samples the coverage is $\mathrm{erf}(k/\sqrt2)$ (68 / 95 / 99.7 %). With few, the mean
# and the std are themselves noisy, and $(x - \bar x)/(s\sqrt{1 + 1/S})$ follows Student's $t$ with $S - 1$ degrees of
# freedom (Student, Biometrika 1908): at $S = 8$ the target is lower, 62 % at $k = 1$. Below: the measured
# coverage of 4096 exactly Gaussian pixels for $S = 8$ and $S = 200$ beside the two curves; a sampler whose
# std is too small (over-confident) falls below them.

# %%
ks = torch.linspace(0.25, 3.0, 12)
mu, sd = torch.rand(1, 1, 64, 64, generator=gen), 0.05 + torch.rand(1, 1, 64, 64, generator=gen)
truth_g = mu + sd * torch.randn(1, 1, 64, 64, generator=gen)
fig, ax = plt.subplots(figsize=(6.5, 4))
for n_samples, style in ((8, "o"), (200, "s")):
    draws = mu + sd * torch.randn(n_samples, 1, 1, 64, 64, generator=gen)
    ax.plot(ks, [check_coverage.reference(draws, truth_g, k.item()).item() for k in ks], style,
            label=f"measured, S = {n_samples}")
    ax.plot(ks, [student_coverage(k.item(), n_samples) for k in ks], "--", lw=1, label=f"Student, S = {n_samples}")
over = mu + 0.5 * sd * torch.randn(8, 1, 1, 64, 64, generator=gen)       # std half as large: over-confident
ax.plot(ks, [check_coverage.reference(over, truth_g, k.item()).item() for k in ks], "x", label="over-confident, S = 8")
ax.plot(ks, [gaussian_coverage(k.item()) for k in ks], "k-", lw=1, label="erf(k/√2)")
ax.set(xlabel="k", ylabel="coverage", title="How often the truth lies within k std")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print(f"S = 8 at k = 1: Student {student_coverage(1.0, 8):.3f}, Gaussian {gaussian_coverage(1.0):.3f}, "
      f"1/√(1 + 1/8) = {1 / math.sqrt(1 + 1 / 8):.3f}")
