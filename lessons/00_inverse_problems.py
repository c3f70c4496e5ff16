# %% [markdown]
# # 00 · Inverse problems: forward models, ill-posedness and hand-crafted priors
#
# Every problem of this course has the same shape: an unknown image $x$, a known **forward model**
# $A$, and a measurement
#
# $$ y = A x + n, \qquad n \sim \mathcal N(0, \sigma_y^2 I). $$
#
# Denoising, deblurring, inpainting, super-resolution, colorization, sparse-view CT and
# compressed-sensing MRI only differ in $A$. This lesson builds the vocabulary the diffusion solvers
# of later lessons are measured against.
#
# **Learning goals**
#
# 1. Write seven imaging tasks as $y = Ax + n$, run each forward model on a phantom, and check that
#    every operator comes with its exact **adjoint** $A^\top$ ($\langle Ax, y\rangle = \langle x, A^\top y\rangle$).
# 2. Explain **ill-posedness**: the **null space** of $A$ (many images give the same data), the
#    **minimum-norm** solution $A^+ y$ (which is just $y$ for inpainting), and the **instability**
#    of inverting small singular values (deblurring).
# 3. Derive **MAP** estimation with hand-crafted priors — Gaussian (Tikhonov), Laplace (sparsity,
#    $\ell_1$) and total variation (TV) — and solve TV by **ADMM**; measure what ADMM-TV gains over
#    filtered back-projection (FBP) and zero-filled MRI, and what it misses (staircasing).
# 4. Tell apart three answers to "which $x$?": the **MAP** estimate, the **MMSE** estimate
#    (posterior mean) and **posterior samples**, on a small bimodal example where they disagree.
#
# Further reading: J. Kaipio & E. Somersalo, *Statistical and Computational Inverse Problems*
# (Springer, 2005), ch. 3 (MAP, conditional mean, sampling); A. M. Stuart, *Inverse problems: a
# Bayesian perspective*, Acta Numerica 19 (2010); S. Boyd et al., *Distributed optimization and
# statistical learning via ADMM*, Found. Trends Mach. Learn. 3 (2011); L. Rudin, S. Osher &
# E. Fatemi, *Nonlinear total variation based noise removal algorithms*, Physica D 60 (1992).

# %%
import math

import matplotlib.pyplot as plt
import torch

from diffcourse.metrics import psnr, ssim
from diffcourse.phantoms import head, rgb_images
from diffcourse.physics.blur import motion_kernel
from diffcourse.physics.ct import Radon, hann_window, limited_angle, sparse_view
from diffcourse.physics.masks import cartesian_mask
from diffcourse.physics.mri import (MultiCoilMRI, SingleCoilMRI, coil_sensitivities, ifft2c, rss,
                                    variable_density_mask)
from diffcourse.physics.noise import PoissonNoise
from diffcourse.physics.nonlinear import NeuralBlur, PhaseRetrieval, Quantizer
from diffcourse.physics.operators import (Blur, Colorize, Downsample, GaussianCS, Identity, Inpaint,
                                          gaussian_kernel, random_mask)
from diffcourse.posterior.classical import admm_l1, admm_tv, least_squares, tikhonov
from diffcourse.posterior.tv import grad_2d, tv_denoise_tuned
from diffcourse.prior.toy import GaussianMixture

torch.manual_seed(0)  # nothing below draws from the global generator; every draw has its own


def gen(seed):
    return torch.Generator().manual_seed(seed)


def show(ax, img, title, **kw):
    """Show a (1, C, H, W) image (magnitude if complex) on ``ax``."""
    img = img.detach()[0]
    img = img.abs() if img.is_complex() else img
    ax.imshow(img.permute(1, 2, 0).clamp(0, 1) if img.shape[0] == 3 else img[0],
              cmap="gray", **kw)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


x = head(1, 64, generator=gen(0))         # (1, 1, 64, 64) head phantom in [0, 1]
x_rgb = rgb_images(1, 64, generator=gen(0))  # (1, 3, 64, 64) for colorization

# %% [markdown]
# ## 1. Seven forward models
#
# | task | $A$ | $y$ |
# |---|---|---|
# | denoising | $I$ | noisy image |
# | deblurring | convolution with a Gaussian kernel $k$ (circular) | blurred image |
# | inpainting | $\operatorname{diag}(m)$, $m\in\{0,1\}^n$ (here 70 % of pixels missing) | masked image |
# | super-resolution ×4 | $4\times4$ average pooling | $16\times16$ image |
# | colorization | $\tfrac13(R+G+B)$ per pixel | gray image |
# | sparse-view CT | Radon transform at 20 angles | sinogram |
# | CS-MRI ×4 | $P F$: 2-D Fourier transform, keep 25 % of k-space ($P$) | k-space samples |
#
# (The same operators are often written as $A = (I\otimes k^\top)P$ for super-resolution, $k$ the
# averaging kernel of one block, and $(Ax)_i = k^\top p_i$ for colorization, $p_i$ the RGB values of
# pixel $i$ and $k = (\frac13,\frac13,\frac13)$: colorization averages the three channels.) Every operator in
# `diffcourse.physics` is an object with `A(x)` and `AT(y)`; the noise is added outside it (here
# white Gaussian noise with a level $\sigma_y$ per task; `diffcourse.physics.noise` has Poisson and
# quantisation models too).

# %%
tasks = {  # name: (operator, clean image, sigma_y)
    "denoising": (Identity(), x, 0.1),
    "deblurring": (Blur(gaussian_kernel(9, 2.0)), x, 0.01),
    "inpainting (70% missing)": (Inpaint(random_mask(64, 0.3, generator=gen(1))), x, 0.01),
    "super-resolution x4": (Downsample(4), x, 0.01),
    "colorization": (Colorize(), x_rgb, 0.01),
    "sparse-view CT (20 views)": (Radon(64, sparse_view(20)), x, 0.05),
    "CS-MRI x4": (SingleCoilMRI(variable_density_mask(64, 4, generator=gen(2))), x, 0.01),
}


def measure(op, img, sigma_y, seed):
    """y = A x + sigma_y n, n standard normal (complex for MRI: E|n_i|^2 = 1); entries that a mask
    leaves unmeasured (inpainting, MRI) stay exactly zero.

    Convention: for complex k-space this is circular noise with E|n_i|^2 = sigma_y^2, i.e. sigma_y^2 / 2
    per real and imaginary part, so the MAP data term is ||Ax - y||^2 / sigma_y^2 there. The library's
    GaussianNoise puts sigma_y^2 on each part instead (E|n_i|^2 = 2 sigma_y^2): say which one you use
    when you compare numbers."""
    Ax = op.A(img)
    n = torch.randn(Ax.shape, dtype=Ax.dtype, generator=gen(seed))
    return Ax + sigma_y * (n * op.mask if hasattr(op, "mask") else n)


measured = {name: measure(op, img, s, seed=3) for name, (op, img, s) in tasks.items()}

fig, axes = plt.subplots(2, len(tasks), figsize=(2.2 * len(tasks), 4.6))
for k, (name, (op, img, _)) in enumerate(tasks.items()):
    show(axes[0, k], img, name)
    y = measured[name]
    if "MRI" in name:
        show(axes[1, k], (y.abs() + 1e-3).log() / 8 + 0.8, "y: log |k-space|")
    elif "CT" in name:
        show(axes[1, k], y / y.max(), f"y: sinogram {tuple(y.shape[-2:])}", aspect="auto")
    else:
        show(axes[1, k], y, f"y {tuple(y.shape[-2:])}")
plt.suptitle("top: x, bottom: y = A x + n")
plt.tight_layout()
plt.show()

# %% [markdown]
# **Adjoints.** Reconstruction algorithms need $A^\top$ (for complex $A$, $A^H$): gradients of
# $\tfrac12\|Ax-y\|^2$ are $A^\top(Ax-y)$. A wrong adjoint fails silently — the algorithm still runs,
# it just solves another problem. So the first test of any operator is the **dot-product test**
#
# $$ \langle A x', y' \rangle = \langle x', A^\top y'\rangle \quad\text{for random } x', y', $$
#
# with $\langle a, b\rangle = \operatorname{Re}\sum \bar a\, b$. Every operator above passes it:

# %%
def dot(a, b):
    return (a.conj() * b).real.sum().item()


for k, (name, (op, img, _)) in enumerate(tasks.items()):
    xr = torch.randn(img.shape, generator=gen(10 + k))
    Ax = op.A(xr)
    yr = torch.randn(Ax.shape, dtype=Ax.dtype, generator=gen(20 + k))
    lhs, rhs = dot(Ax, yr), dot(xr, op.AT(yr))
    print(f"{name:28s} <Ax,y> = {lhs:10.4f}   <x,ATy> = {rhs:10.4f}")
    assert abs(lhs - rhs) <= 1e-4 * (abs(lhs) + 1), name

# %% [markdown]
# **A nonlinear example: phase retrieval.** Some instruments record only the magnitude of the
# Fourier transform, $y = |F x|$ (with zero padding, oversampling 2). The map is not linear, and it
# is blind to a global sign and to a rotation of the image by 180° — distinct images, identical
# data, however little noise there is. (Lesson 07 reconstructs from such data with DPS.)

# %%
pr = PhaseRetrieval(oversample=2.0)
flipped = torch.flip(x, dims=(-2, -1))  # 180-degree rotation
print("max |y(x) - y(-x)|         =", (pr.A(x) - pr.A(-x)).abs().max().item())
print("max |y(x) - y(rot180 x)|   =", (pr.A(x) - pr.A(flipped)).abs().max().item())
assert torch.allclose(pr.A(x), pr.A(-x)) and torch.allclose(pr.A(x), pr.A(flipped), atol=1e-4)
assert (x - flipped).abs().max() > 0.5  # ... although the images differ

# %% [markdown]
# **More forward models that later lessons use.** The same interface covers the harder variants:
#
# * **motion blur** (lesson 12, BlindDPS): a random camera-shake kernel instead of a Gaussian;
# * **limited-angle CT**: 60 views, but only over $[0°, 120°)$ — a whole wedge of Fourier space is
#   missing (Fourier-slice theorem), so edges perpendicular to the missing directions vanish;
# * **multi-coil MRI** (lesson 14): $y_i = P F S_i x$ for coils $i = 1..n_c$ with smooth
#   sensitivities normalised so that $\sum_i |S_i|^2 = 1$; then $\sum_i \bar S_i S_i x = x$;
# * **Poisson noise** (low-dose CT, photon counting): $y \sim \mathrm{Poisson}(\zeta\,Ax)/\zeta$, whose
#   variance $Ax/\zeta$ grows with the signal;
# * **1-bit quantization** (lesson 11, QCS-SGM): $y = \operatorname{sign}(Ax + n)$ keeps no scale at all;
# * a **nonlinear blur**: a fixed, seeded two-layer CNN (`NeuralBlur`), our offline stand-in for
#   the learned blur of the DPS paper; $A(2x) \ne 2A(x)$.

# %%
mc_mask = cartesian_mask(64, 4, 0.08, generator=gen(4))
S = coil_sensitivities(4, 64)
mc = MultiCoilMRI(mc_mask, S)
y_mc = mc.A(x)                                                      # (1, 4, 64, 64) complex
coil_images = ifft2c(y_mc)                                          # aliased coil images
full = MultiCoilMRI(torch.ones(64, 64), S)
assert torch.allclose(full.AT(full.A(x)).real, x, atol=1e-5)        # sum_i conj(S_i) S_i x = x

radon_full, radon_wedge = Radon(64, sparse_view(60)), Radon(64, limited_angle(60, 120.0))
fbp_full = radon_full.fbp(radon_full.A(x), window=hann_window)
fbp_wedge = radon_wedge.fbp(radon_wedge.A(x), window=hann_window)
p_full, p_wedge = psnr(fbp_full, x).item(), psnr(fbp_wedge, x).item()
print(f"FBP, 60 views over 180 deg: {p_full:.1f} dB   over 120 deg: {p_wedge:.1f} dB")
assert p_full > p_wedge + 2                                         # the missing wedge costs

poisson = PoissonNoise(scale=20.0)                                  # about 10 counts at intensity 0.5
y_pois = poisson.sample(x, generator=gen(5))
tissue = (x > 0.3) & (x < 0.6)
var_ratio = (y_pois - x)[tissue].var() / (x[tissue].mean() / 20.0)
print(f"Poisson: empirical variance / (mean / zeta) in tissue = {var_ratio:.2f}")
assert 0.8 < var_ratio < 1.2                                        # variance = mean / zeta

cs = GaussianCS((1, 64, 64), 1024, generator=gen(6))
sign = Quantizer.sign()
assert torch.equal(sign.A(cs.A(x)), sign.A(cs.A(3 * x)))            # 1-bit data forget the scale

nb = NeuralBlur(seed=0)
y_nb = nb.A(x)
assert (nb.A(2 * x) - 2 * y_nb).abs().max() > 0.05                  # not linear

fig, axes = plt.subplots(1, 6, figsize=(13.5, 2.6))
show(axes[0], Blur(motion_kernel(9, gen(7))).A(x), "motion blur")
show(axes[1], fbp_wedge.clamp(0, 1), f"FBP, 120° wedge ({p_wedge:.1f} dB)")
show(axes[2], coil_images[0, 0].abs()[None, None] / coil_images.abs().max(), "coil 1 image (R = 4)")
show(axes[3], rss(coil_images) / rss(coil_images).max(), "RSS of 4 aliased coils")
show(axes[4], y_pois.clamp(0, 1), "Poisson, zeta = 20")
show(axes[5], y_nb, "nonlinear (CNN) blur")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Ill-posedness
#
# Hadamard called a problem well-posed when a solution exists, is unique and depends continuously
# on the data. Imaging inverse problems break the last two.
#
# **Uniqueness fails: the null space.** When $A$ has fewer rows than columns (inpainting,
# super-resolution, sparse-view CT, CS-MRI) its null space $\mathcal N(A) = \{v : Av = 0\}$ is
# large, and every image splits into a part the data see and a part they cannot see:
#
# $$ x = \underbrace{A^+ A x}_{\in\, \mathcal R(A^\top)} + \underbrace{(I - A^+A)\,x}_{\in\, \mathcal N(A)} . $$
#
# Maximum likelihood, $\arg\min_x \|Ax - y\|^2$, cannot decide the second part. The
# **minimum-norm** solution $A^+ y$ sets it to zero; it is what conjugate gradients on
# $A^\top A x = A^\top y$ returns when started from $0$ (the iterates never leave
# $\mathcal R(A^\top)$). For inpainting, $A = \operatorname{diag}(m)$ is an orthogonal projector,
# so $A^+ = A$ and $A^+ y = y$: the missing pixels stay at zero — a unique answer, but a useless
# one.

# %%
inpaint, _, _ = tasks["inpainting (70% missing)"]
y_inp = measured["inpainting (70% missing)"]
x_mn_inp = least_squares(inpaint, y_inp)  # CG from 0
print("inpainting: max |A+ y - y| =", (x_mn_inp - y_inp).abs().max().item())
assert torch.allclose(x_mn_inp, y_inp, atol=1e-6) and torch.equal(inpaint.pinv(y_inp), y_inp)

sr, _, _ = tasks["super-resolution x4"]
ct, _, _ = tasks["sparse-view CT (20 views)"]
parts = {}
for name, op in [("inpainting", inpaint), ("super-resolution x4", sr), ("sparse-view CT", ct)]:
    x_mn = op.pinv(op.A(x)) if name != "sparse-view CT" else least_squares(op, op.A(x), n_iter=300, tol=1e-7)
    x_null = x - x_mn
    seen = (op.A(x_null).norm() / op.A(x).norm()).item()
    parts[name] = (x_mn, x_null)
    print(f"{name:22s} ||A x_null|| / ||A x|| = {seen:.1e},  ||x_null|| / ||x|| = "
          f"{(x_null.norm() / x.norm()).item():.2f}")
    assert seen < 1e-2  # the data do not see the null-space component ...
    assert x_null.norm() > 0.1 * x.norm()  # ... although it is a sizeable part of the image

fig, axes = plt.subplots(2, 3, figsize=(8, 5.4))
for k, (name, (x_mn, x_null)) in enumerate(parts.items()):
    show(axes[0, k], x_mn, f"{name}: A+ A x")
    v = x_null.abs().max().item()
    axes[1, k].imshow(x_null[0, 0], cmap="RdBu_r", vmin=-v, vmax=v)
    axes[1, k].set_title(f"null-space part (I - A+ A) x, ±{v:.2f}", fontsize=9)
    axes[1, k].axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# Adding *any* null-space image to a solution leaves the data unchanged — the data alone cannot
# prefer the phantom over its minimum-norm version. Choosing among them is the job of a **prior**.
#
# **Stability fails: small singular values.** Deblurring is square and, here, invertible: no
# singular value is exactly zero. But the singular values — the magnitudes $|\hat k|$ of the
# kernel's Fourier transform — decay below $10^{-7}$, and the pseudo-inverse divides the noise by
# them (the library's `pinv` drops the singular values below the numerical rank, about $10^{-4}$ of the
# largest in float32, so it computes a truncated version of this sum — still catastrophically unstable):
#
# $$ A^+ y = x + \sum_i \frac{\langle u_i, n\rangle}{s_i}\, v_i . $$
#
# Tikhonov regularisation $\min_x \tfrac12\|Ax - y\|^2 + \tfrac\lambda2\|x\|^2$ replaces $1/s_i$ by
# $s_i/(s_i^2 + \lambda)$ and keeps the noise in check.

# %%
blur, _, _ = tasks["deblurring"]
y_blur = measured["deblurring"]
s = blur.svd(x).s.flatten().sort(descending=True).values
x_pinv = blur.pinv(y_blur)
x_tik = tikhonov(blur, y_blur, lam=0.02, n_iter=100)
scores = {"y (blurred, noisy)": psnr(y_blur, x).item(), "A+ y": psnr(x_pinv, x).item(),
          "Tikhonov": psnr(x_tik, x).item()}
print({k: round(v, 1) for k, v in scores.items()}, " smallest singular value", f"{s[-1].item():.1e}")

fig, axes = plt.subplots(1, 4, figsize=(12, 3))
axes[0].semilogy(s.numpy())
axes[0].set_title("singular values of the blur")
axes[0].set_xlabel("index")
for ax, (name, img) in zip(axes[1:], [("y (blurred, noisy)", y_blur), ("A+ y", x_pinv),
                                      ("Tikhonov", x_tik)]):
    show(ax, img, f"{name}: {scores[name]:.1f} dB")
plt.tight_layout()
plt.show()
assert scores["A+ y"] < scores["y (blurred, noisy)"] - 10  # inverting makes it far worse
assert scores["Tikhonov"] > scores["y (blurred, noisy)"]   # regularising makes it better

# %% [markdown]
# ## 3. MAP estimation with hand-crafted priors
#
# Bayes' rule combines the likelihood of the physics with a prior $p(x)$:
#
# $$ p(x\mid y) \propto p(y\mid x)\,p(x), \qquad
#    \hat x_{\text{MAP}} = \arg\min_x \frac{1}{2\sigma_y^2}\|Ax - y\|^2 - \log p(x) . $$
#
# Classical priors are written by hand:
#
# | prior $p(x)$ | $-\log p(x)$ | MAP problem |
# |---|---|---|
# | Gaussian $\mathcal N(0, s^2 I)$ | $\|x\|^2/(2s^2)$ | Tikhonov, $\lambda = \sigma_y^2/s^2$ |
# | Laplace on pixels (or wavelet coefficients) | $\|x\|_1/b$ | Lasso / sparsity (compressed sensing) |
# | Laplace on image gradients | $\operatorname{TV}(x)/b$ | total variation (Rudin, Osher, Fatemi 1992) |
#
# with the isotropic $\operatorname{TV}(x) = \sum_i \|(\nabla x)_i\|_2$. The last two are not
# differentiable; **ADMM** (Boyd et al. 2011) splits $z = Dx$ ($D = I$ or $D = \nabla$) and
# alternates three easy steps, with a scaled dual variable $u$:
#
# $$ x \leftarrow (A^\top A + \rho D^\top D)^{-1}\big(A^\top y + \rho D^\top(z - u)\big), \quad
#    z \leftarrow \operatorname{shrink}_{\lambda/\rho}(Dx + u), \quad
#    u \leftarrow u + Dx - z , $$
#
# the first by a few warm-started conjugate-gradient steps, the second by soft-thresholding
# ($\ell_1$) or by shrinking each pixel's gradient vector (isotropic TV). The exercise notebook
# has you write this iteration.
#
# ### 3a. Sparsity: compressed sensing of a sparse image
#
# A $16\times16$ image with 12 bright spots, measured by 96 random Gaussian projections
# ($m/n = 0.375$). The minimum-norm solution spreads the energy everywhere; the $\ell_1$ (Laplace)
# MAP estimate finds the spots (Candès, Romberg & Tao 2006; Donoho 2006).

# %%
n_side, k_spots = 16, 12
spots = torch.zeros(1, 1, n_side, n_side)
where = torch.randperm(n_side * n_side, generator=gen(4))[:k_spots]
spots.view(-1)[where] = 0.5 + 0.5 * torch.rand(k_spots, generator=gen(5))
cs = GaussianCS((1, n_side, n_side), 96, generator=gen(6))
y_cs = measure(cs, spots, 0.005, seed=7)
x_mn_cs = least_squares(cs, y_cs)
x_l1 = admm_l1(cs, y_cs, lam=0.01, rho=0.5, n_iter=150, n_iter_cg=5)
err = {name: ((v - spots).norm() / spots.norm()).item() for name, v in
       [("minimum norm", x_mn_cs), ("l1 (sparsity)", x_l1)]}
print({k: round(v, 3) for k, v in err.items()})

fig, axes = plt.subplots(1, 3, figsize=(8, 2.8))
for ax, (name, img) in zip(axes, [("x (12 spots)", spots), ("minimum norm", x_mn_cs),
                                  ("l1 (sparsity)", x_l1)]):
    show(ax, img, name + (f": rel. error {err[name]:.2f}" if name in err else ""))
plt.tight_layout()
plt.show()
assert err["l1 (sparsity)"] < 0.2 * err["minimum norm"]

# %% [markdown]
# ### 3b. Total variation for sparse-view CT and CS-MRI
#
# Sparse-view CT: FBP (with a Hann window), least squares stopped early (30 CG iterations — early
# stopping is itself a regulariser), Tikhonov, and ADMM-TV. CS-MRI ×4: the zero-filled
# reconstruction $A^H y$ (here also the minimum-norm solution, because $AA^H = P$) and ADMM-TV. The
# weights $\lambda, \rho$ were tuned once on this setting and are kept fixed. Expect ADMM-TV to gain
# about 10 dB over FBP and about 15 dB over zero-filling — hand-crafted priors are strong baselines.
# In MRI the unknown is treated as a complex image (real data would also have a phase), and PSNR
# and SSIM compare magnitudes.

# %%
y_ct = measured["sparse-view CT (20 views)"]
recon_ct = {
    "FBP (Hann)": ct.fbp(y_ct, window=hann_window),
    "least squares (30 CG)": least_squares(ct, y_ct, n_iter=30),
    "Tikhonov": tikhonov(ct, y_ct, lam=5.0, n_iter=30),
    "ADMM-TV": admm_tv(ct, y_ct, lam=0.3, rho=10.0, n_iter=50),
}
mri, _, _ = tasks["CS-MRI x4"]
y_mri = measured["CS-MRI x4"]
recon_mri = {"zero-filled": mri.AT(y_mri), "ADMM-TV": admm_tv(mri, y_mri, lam=0.003, rho=0.1, n_iter=50)}

table = {}
fig, axes = plt.subplots(1, 6, figsize=(15, 3.3))
for ax, (name, img) in zip(axes, [*(("CT: " + k, v) for k, v in recon_ct.items()),
                                  *(("MRI: " + k, v) for k, v in recon_mri.items())]):
    table[name] = (psnr(img, x).item(), ssim(img, x).item())
    show(ax, img, f"{name}\n{table[name][0]:.1f} dB, SSIM {table[name][1]:.2f}")
plt.tight_layout()
plt.show()
for name, (p, s_) in table.items():
    print(f"{name:30s} PSNR {p:5.1f} dB   SSIM {s_:.3f}")

gain_ct = table["CT: ADMM-TV"][0] - table["CT: FBP (Hann)"][0]
gain_mri = table["MRI: ADMM-TV"][0] - table["MRI: zero-filled"][0]
print(f"ADMM-TV gains {gain_ct:.1f} dB over FBP (20-view CT) and {gain_mri:.1f} dB over zero-filling (4x MRI)")
assert gain_ct >= 7.0 and gain_mri >= 10.0  # measured: 10.0 dB and 14.9 dB
assert table["CT: ADMM-TV"][0] > max(table["CT: least squares (30 CG)"][0], table["CT: Tikhonov"][0])

# %% [markdown]
# ### 3c. What TV misses: staircasing
#
# TV says "images are piecewise constant". The head phantom's brain is *smoothly shaded*, so even
# the **best-tuned** TV denoiser — $\lambda$ chosen per image for the highest PSNR against the
# truth, an oracle no real reconstruction has — turns the shading into flat plateaus separated by
# small steps. We measure it by the fraction of brain pixels whose gradient vanishes
# ($\|\nabla x\| < 10^{-3}$): almost none in the truth, a large share after TV.

# %%
y_den = measured["denoising"]
x_tv, lam_best = tv_denoise_tuned(y_den, x, [0.02, 0.05, 0.08, 0.12, 0.2], n_iter=100)
brain = ((x > 0.35) & (x < 0.65))[0, 0]
brain[1:-1, 1:-1] &= brain[:-2, 1:-1] & brain[2:, 1:-1] & brain[1:-1, :-2] & brain[1:-1, 2:]


def flat_fraction(img):
    g = grad_2d(img)[0, :, 0].norm(dim=0)  # (H, W) gradient magnitude
    return (g[brain] < 1e-3).float().mean().item()


flat = {"truth": flat_fraction(x), "best-tuned TV": flat_fraction(x_tv)}
print(f"best lambda {lam_best.item():.2f};  flat brain pixels: {flat};  "
      f"PSNR noisy {psnr(y_den, x).item():.1f} dB -> TV {psnr(x_tv, x).item():.1f} dB")

row = 40
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
show(axes[0], y_den, "noisy (sigma = 0.1)")
show(axes[1], x_tv, f"best-tuned TV (lambda = {lam_best.item():.2f})")
axes[2].plot(x[0, 0, row], label="truth")
axes[2].plot(x_tv[0, 0, row], label="TV")
axes[2].set_ylim(0.3, 0.7)
axes[2].set_title(f"profile along row {row}: plateaus and steps")
axes[2].legend()
plt.tight_layout()
plt.show()
assert flat["truth"] < 0.05 and flat["best-tuned TV"] > 0.3

# %% [markdown]
# TV also shrinks the contrast of small structures (a lesion is "expensive" in TV by its
# perimeter). Hand-crafted priors encode a few generic properties; a learned prior — a diffusion
# model trained on images like these — encodes what such images actually look like. That is the
# rest of the course.
#
# ## 4. MAP, MMSE and posterior samples
#
# The posterior $p(x\mid y)$ is a whole distribution, and "the" reconstruction is a choice:
#
# * **MAP** $\arg\max_x p(x\mid y)$ — the most probable image (Section 3);
# * **MMSE** $\mathbb E[x\mid y]$ — minimises the expected squared error (the best PSNR of the
#   *expected* MSE); it averages over all plausible images and can be blurry, or even implausible;
# * **posterior samples** $x \sim p(x\mid y)$ — each is a plausible image; their spread is the
#   uncertainty. A sample has *twice* the MMSE's expected squared error:
#   $\mathbb E\|x - x'\|^2 = 2\operatorname{tr}\operatorname{Cov}(x\mid y)$ for independent $x, x'$.
#
# A 2-D example makes the difference visible. The prior is a mixture of two Gaussians centred at
# $(-1, 1)$ and $(1, -1)$ (weights 0.6, 0.4), and we measure only the sum, $y = x_1 + x_2 + n$ with
# $y = 0$: both clusters explain the data. The posterior is again a Gaussian mixture, known in
# closed form (`GaussianMixture.posterior`; Bishop 2006, eqs. 2.115–2.117 per component, with the
# mixture weights from the marginal $w_k\,\mathcal N(y; A\mu_k, S_k)$).

# %%
F64 = torch.float64
prior = GaussianMixture(torch.tensor([0.6, 0.4], dtype=F64),
                        torch.tensor([[-1.0, 1.0], [1.0, -1.0]], dtype=F64),
                        torch.stack([0.08 * torch.eye(2, dtype=F64)] * 2))
A_toy, sigma_y_toy = torch.tensor([[1.0, 1.0]], dtype=F64), 0.1
post = prior.posterior(A_toy, sigma_y_toy, torch.tensor([0.0], dtype=F64))

t = torch.linspace(-2.5, 2.5, 401, dtype=F64)
grid = torch.stack(torch.meshgrid(t, t, indexing="xy"), -1).reshape(-1, 2)  # (401^2, 2)
log_post = post.log_prob(grid)
x_map = grid[log_post.argmax()]
x_mmse = post.mean
samples = post.sample(4000, generator=gen(8))

density = lambda v: post.log_prob(v.reshape(1, 2)).exp().item()
mse = lambda est: (samples - est).square().sum(1).mean().item()
pair_mse = (samples[:2000] - samples[2000:]).square().sum(1).mean().item()
print(f"MAP {x_map.tolist()}, MMSE {[round(v, 3) for v in x_mmse.tolist()]}")
print(f"posterior density at MAP {density(x_map):.3f}, at MMSE {density(x_mmse):.2e}")
print(f"E||x - MAP||^2 = {mse(x_map):.3f},  E||x - MMSE||^2 = {mse(x_mmse):.3f},  "
      f"E||x - x'||^2 (two samples) = {pair_mse:.3f}")

plt.figure(figsize=(4.6, 4.2))
plt.contour(t, t, log_post.exp().reshape(401, 401), levels=8, cmap="Greys")
plt.scatter(samples[:300, 0], samples[:300, 1], s=3, alpha=0.5, label="posterior samples")
plt.scatter(*x_map, marker="*", s=250, c="C3", edgecolors="k", zorder=5, label="MAP")
plt.scatter(*x_mmse, marker="X", s=120, c="C2", edgecolors="k", zorder=5, label="MMSE")
plt.plot([-2.5, 2.5], [2.5, -2.5], "k:", lw=1, label="x1 + x2 = y")
plt.legend(fontsize=8)
plt.gca().set_aspect("equal")
plt.title("posterior p(x | y = 0)")
plt.show()

in_first = (samples[:, 0] < 0).double().mean().item()
print(f"fraction of samples in the (-1, 1) cluster: {in_first:.3f} (posterior weight {post.weights[0].item():.3f})")
assert (x_map - torch.tensor([-1.0, 1.0], dtype=F64)).norm() < 0.15  # MAP: the heavier mode
assert density(x_mmse) < 1e-2 * density(x_map)    # MMSE: between the modes, where no image lives
assert mse(x_mmse) < mse(x_map)                    # ... yet it has the smallest squared error
assert abs(pair_mse / mse(x_mmse) - 2) < 0.15      # a sample: twice the MMSE error
assert abs(in_first - post.weights[0].item()) < 0.03  # samples visit both modes with the right odds

# %% [markdown]
# In imaging the same three answers appear: MAP with a hand-crafted prior is what ADMM-TV computes;
# the MMSE estimate is what a trained denoiser returns (Tweedie's formula, lesson 01); posterior
# samples are what the diffusion solvers of lessons 06–15 produce — sharp, plausible images, with
# their spread as an uncertainty map.
#
# ## Summary
#
# * $y = Ax + n$ covers denoising, deblurring, inpainting, super-resolution, colorization,
#   sparse-view CT and CS-MRI; every operator passes the dot-product test.
# * Wide $A$ have a null space the data cannot see; the minimum-norm solution ignores it ($=y$ for
#   inpainting). Small singular values make naive inversion explode (deblurring).
# * MAP with a Gaussian, Laplace or TV prior gives Tikhonov, $\ell_1$ and TV reconstructions;
#   ADMM-TV clearly beats FBP and zero-filling, but staircases smooth anatomy.
# * MAP, MMSE and posterior samples are different answers; only sampling shows the uncertainty.
#
# **References.** Hadamard (1902); Tikhonov (1963); Rudin, Osher & Fatemi, Physica D (1992);
# Candès, Romberg & Tao, IEEE TIT (2006); Donoho, IEEE TIT (2006); Lustig, Donoho & Pauly, MRM
# (2007); Boyd et al., Found. Trends ML (2011, ADMM); Beck & Teboulle, IEEE TIP (2009, fast TV
# denoising); Kak & Slaney (1988, FBP); Bishop, *Pattern Recognition and Machine Learning* (2006).
