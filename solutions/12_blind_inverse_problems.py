# %% [markdown]
# # 12 · Blind inverse problems — exercises
#
# Companion to `lessons/12_blind_inverse_problems.py`. You will write the two pieces that BlindDPS
# (Chung, Kim, Kim & Ye, CVPR 2023) adds to DPS:
#
# 1. the **kernel normalisation**: from the kernel prior's output, an image of the kernel, to a kernel
#    (non-negative, summing to one);
# 2. **one update of the kernel chain**: a DDPM step of the kernel state, then a gradient step on the
#    data misfit and the ℓ1 penalty, differentiated through the kernel denoiser.
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's implementation, so the notebook
# runs top to bottom even before you start.
#
# **Conventions** (as in `diffcourse`): VE states $k = k_0 + \sigma z$. A *kernel image* $\tilde k$ has shape
# `(B, 1, s, s)`: the kernel divided by its maximum, as the kernel prior was trained (background 0,
# peak 1). A *kernel* has shape `(B, s, s)`, is non-negative and sums to one; `Blur(kernel)` blurs
# images `(B, 1, H, W)` circularly, one kernel per image, with the kernel's centre at pixel
# `(s // 2, s // 2)`.

# %%
import math

import matplotlib.pyplot as plt
import torch

from diffcourse.checks.lesson12 import check_kernel_update, check_normalize_kernel
from diffcourse.physics.blur import Blur, motion_kernel
from diffcourse.posterior.solvers.blind import normalize_kernel as library_normalize_kernel
from diffcourse.prior import pretrained
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.train import held_out_phantoms

gen = torch.Generator().manual_seed(0)
D_k = pretrained.load("kernel")                                      # the shipped kernel prior, 16 × 16

# %% [markdown]
# ## Exercise 1 · From a kernel image to a kernel
#
# The kernel prior denoises kernel images $\tilde k$, scaled to peak 1 as it was trained. Its estimate
# $\tilde k_0 = D_k(k, \sigma)$ is an image with small negative ripples, not a kernel. BlindDPS turns it into
# one before blurring with it; in our $[0, 1]$ convention, with a clip:
#
# $$ \hat k_0 = \frac{\max(\tilde k_0, 0)}{\sum_{ij}\max(\tilde k_0, 0)_{ij}} , $$
#
# per sample. If an image has no positive pixel at all, return the uniform kernel $1/s^2$ (an early,
# very noisy state can do that). Complete `normalize_kernel`: input `(B, 1, s, s)`, output `(B, s, s)`.

# %%
def normalize_kernel(k_image):
    """max(k̃, 0)/Σ max(k̃, 0) per sample, uniform if nothing is positive; (B, 1, s, s) -> (B, s, s)."""
    ### BEGIN SOLUTION
    w = k_image[:, 0].clamp_min(0)                                   # (B, s, s)
    total = w.sum((-2, -1), keepdim=True)                            # (B, 1, 1)
    uniform = torch.full_like(w, 1.0 / w[0].numel())
    return torch.where(total > 0, w / torch.where(total > 0, total, torch.ones_like(total)), uniform)
    ### END SOLUTION


# %%
check_normalize_kernel(normalize_kernel)

# %% tags=["solution"]
assert check_normalize_kernel(normalize_kernel, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# Below, the prior's estimate $\tilde k_0$ of a camera-shake kernel seen through noise of level
# $\sigma = 0.3$: its negative pixels (blue) and the kernel it stands for after the normalisation. The
# clip matters most at high noise, where $\tilde k_0$ is a blurry blob with a ring of negative values.

# %%
k_true = torch.zeros(1, 1, 16, 16)
shake = motion_kernel(15, torch.Generator().manual_seed(3))
k_true[0, 0, 1:, 1:] = shake / shake.max()                          # a kernel image, peak 1
noisy = k_true + 0.3 * torch.randn(k_true.shape, generator=gen)
with torch.no_grad():
    k0_image = D_k(noisy, 0.3)
fig, ax = plt.subplots(1, 4, figsize=(11, 3))
panels = [(k_true[0, 0], "true kernel image"), (noisy[0, 0], "noisy, σ = 0.3"),
          (k0_image[0, 0], "D_k: k̃0 (blue < 0)"), (library_normalize_kernel(k0_image)[0], "normalised k̂0")]
for a, (img, title) in zip(ax, panels):
    lim = img.abs().max().item()
    a.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
    a.set_title(title)
    a.axis("off")
plt.tight_layout()
plt.show()
print(f"negative pixels in k̃0: {(k0_image < 0).float().mean():.0%}")

# %% [markdown]
# ## Exercise 2 · One update of the kernel chain
#
# BlindDPS runs the kernel's reverse diffusion beside the image's. With the image estimate $\hat x_0$ held
# fixed, one step of the kernel chain from $\sigma$ to $\sigma'$ is, in VE coordinates,
#
# $$ k' = \underbrace{r\,k + (1-r)\,\tilde k_0 + \sigma'\sqrt{1-r}\,z}_{\text{DDPM step},\ r = \sigma'^2/\sigma^2}
#   \;-\; c\,\zeta_k\,\nabla_k F,\qquad
#   F = \|y - \hat k_0 \circledast \hat x_0\|_2 + \lambda\,\|\tilde k_0\|_1 , $$
#
# with $\tilde k_0 = D_k(k, \sigma)$, $\hat k_0$ its normalisation (Exercise 1), $c = \sqrt{(1+\sigma^2)(1+\sigma'^2)}$
# (the step of the paper's VP coordinates read in VE coordinates, as for DPS) and one norm per sample.
# The gradient is taken with respect to the **state** $k$, through the denoiser: autograd from a `k` that
# requires grad, inside `with torch.enable_grad():`. Complete `kernel_update`; use `Blur(kernel).A(x)`
# for the blur and `library_normalize_kernel` (or your own) for the normalisation.

# %%
def kernel_update(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z):
    """DDPM(k, k̃0) - c ζ_k ∇_k [||y - k̂0 ⊛ x̂0|| + λ ||k̃0||₁] (BlindDPS, VE form); k (B, 1, s, s)."""
    ### BEGIN SOLUTION
    with torch.enable_grad():
        kg = k.detach().requires_grad_(True)
        k_image = D_k(kg, sigma)                                      # (B, 1, s, s), with its graph
        residual = y - Blur(library_normalize_kernel(k_image)).A(x0_hat)
        F = residual.flatten(1).norm(dim=1) + lam * k_image.abs().flatten(1).sum(1)     # (B,)
        (grad,) = torch.autograd.grad(F.sum(), kg)
    r = (sigma_next / sigma) ** 2
    k_next = r * k + (1 - r) * k_image.detach() + sigma_next * math.sqrt(1 - r) * z
    c = math.sqrt((1 + sigma ** 2) * (1 + sigma_next ** 2))
    return k_next - c * zeta_k * grad
    ### END SOLUTION


# %%
check_kernel_update(kernel_update)

# %% tags=["solution"]
assert check_kernel_update(kernel_update, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# With the image known ($\hat x_0$ the true phantom), the kernel chain alone is a *non-blind kernel
# estimation*: a diffusion posterior sampler for $k$ given $x$ and $y$. We run 50 of these updates
# (the library's reference, with the constant step $\zeta_k = 1$ of `solvers.blind_dps`) from pure noise on
# a motion-blurred phantom and follow the error of $\hat k_0$ along the chain.

# %%
x_true = held_out_phantoms(4)[:1]                                    # a head phantom
kernel = library_normalize_kernel(k_true)
y = Blur(kernel).A(x_true) + 0.02 * torch.randn(x_true.shape, generator=gen)
sig = karras_sigmas(50)
k = sig[0] * torch.randn(1, 1, 16, 16, generator=gen)
errors = []
for i in range(len(sig) - 1):
    s, s_next = sig[i].item(), sig[i + 1].item()
    with torch.no_grad():
        k0_hat = library_normalize_kernel(D_k(k, s))
    errors.append(((k0_hat - kernel).norm() / kernel.norm()).item())
    k = check_kernel_update.reference(D_k, k, s, s_next, x_true, y, 1.0, 0.0, torch.randn(k.shape, generator=gen))
final = library_normalize_kernel(k)
errors.append(((final - kernel).norm() / kernel.norm()).item())
fig, ax = plt.subplots(1, 3, figsize=(11, 3.2))
ax[0].imshow(kernel[0], cmap="gray")
ax[0].set_title("true kernel")
ax[1].imshow(final[0], cmap="gray")
ax[1].set_title(f"kernel chain, error {errors[-1]:.2f}")
for a in ax[:2]:
    a.axis("off")
ax[2].semilogx(sig[:-1], errors[:-1], "o-", ms=3)
ax[2].set(xlabel="σ (the chain runs right to left)", ylabel="||k̂0 - k|| / ||k||",
          title="kernel error along the chain")
ax[2].invert_xaxis()
plt.tight_layout()
plt.show()
