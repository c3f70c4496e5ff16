# %% [markdown]
# # 06 · Projection solvers — exercises
#
# Companion to `lessons/06_projection_solvers.py`. You will write
#
# 1. a **POCS step** for Cartesian MRI: k-space replacement (Chung & Ye, MedIA 2022),
# 2. the **annealed likelihood score** of guided Langevin (Jalal et al., NeurIPS 2021),
# 3. **ILVR's low-pass replacement** for 4× super-resolution (Choi et al., ICCV 2021).
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's implementation, so the notebook
# runs top to bottom even before you start.
#
# **Conventions** (as in `diffcourse`): MRI measures $y = MFx$ with $F$ the centred orthonormal 2-D FFT
# (`fft2c`, DC in the middle of the array) and $M$ a 0/1 column mask, $y$ zero off the mask. A noisy
# state at level $\sigma$ is $x_\sigma = x_0 + \sigma z$ (VE).

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from diffcourse.checks.lesson06 import check_annealed_likelihood, check_ilvr_refine, check_kspace_pocs
from diffcourse.metrics import psnr
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.matrix import Matrix
from diffcourse.physics.mri import fft2c, ifft2c
from diffcourse.physics.noise import GaussianNoise
from diffcourse.plot import show_images
from diffcourse.posterior import guidance, solvers, tasks
from diffcourse.prior.pretrained import load
from diffcourse.prior.processes import karras_sigmas, ve_sigmas
from diffcourse.prior.samplers import annealed_langevin
from diffcourse.prior.samplers.steps import ddpm_step
from diffcourse.prior.toy import GaussianMixture
from diffcourse.prior.train import held_out_phantoms

F64 = torch.float64
gen = torch.Generator().manual_seed(0)
truth = held_out_phantoms(4)[:2]                    # two held-out head phantoms (B, 1, 64, 64) in [0, 1]

# %% [markdown]
# ## Exercise 1 · A POCS step for an MRI mask
#
# The images that agree with the measured k-space form the set $\{x : MFx = y\}$. Since $F$ is
# unitary, the closest point of that set to a state $x$ keeps the *unmeasured* k-space of $x$ and
# writes the measured data where $M = 1$ (Chung & Ye 2022):
#
# $$ x \leftarrow F^{-1}\big[(1 - M)\odot Fx + M\odot y\big]. $$
#
# Complete `kspace_pocs` for a **complex** state `x` (B, 1, H, W), complex `y` of the same shape and a
# 0/1 `mask` (H, W). Use `fft2c` and `ifft2c` (imported above); return the complex image.

# %%
def kspace_pocs(x, y, mask):
    """k-space replacement F^{-1}[(1 - M) F x + M y] (Chung & Ye, MedIA 2022); x, y complex (B, 1, H, W)."""
    ### BEGIN SOLUTION
    k = fft2c(x)
    return ifft2c((1 - mask) * k + mask * y)
    ### END SOLUTION


# %%
check_kspace_pocs(kspace_pocs)

# %% tags=["solution"]
assert check_kspace_pocs(kspace_pocs, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# **Classical POCS.** Youla & Webb (IEEE TMI 1982) alternate projections onto convex sets that the
# image is known to lie in. Here: the data set above, and the set of real, non-negative images in
# $[0, 1]$ that vanish outside the head's support (known, for instance, from a scout scan — here taken
# from the truth, dilated by two pixels). We start from the zero-filled image and alternate. A
# hand-made convex prior helps a little; the lesson's diffusion prior, used in exactly the same
# alternation, gains far more.

# %%
lik_mri = tasks.make("mri4", truth, torch.Generator().manual_seed(1))
mask = lik_mri.op.mask
support = (F.max_pool2d(truth, 5, 1, 2) > 0.02).to(truth.dtype)      # the head, dilated by 2 pixels
x = ifft2c(mask * lik_mri.y)                                          # zero-filled start (complex)
history = [psnr(x.real, truth)]
for it in range(100):
    x = check_kspace_pocs.reference(x, lik_mri.y, mask)                # onto {M F x = y}
    x = (x.real.clamp(0, 1) * support).to(x.dtype)                     # onto {real, in [0, 1], supported}
    history.append(psnr(x.real, truth))
history = torch.stack(history)                                        # (101, B)
print(f"zero-filled {history[0].tolist()} dB -> after 100 POCS iterations {history[-1].tolist()} dB")

plt.figure(figsize=(5, 3.5))
plt.plot(range(101), history, label=["phantom 1", "phantom 2"])
plt.legend()
plt.xlabel("POCS iteration")
plt.ylabel("PSNR (dB)")
plt.title("classical POCS: data set and a convex prior set")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 2 · The annealed likelihood of guided Langevin
#
# Under a flat prior the noisy state $x_\sigma$ of level $\sigma$ explains $y = Ax_0 + \sigma_y n$ with
# $p(y\mid x_\sigma) = \mathcal N(Ax_\sigma, \sigma_y^2 I + \sigma^2 AA^\top)$; for $AA^\top = I$ its score is Jalal et al.'s
# annealed likelihood term
#
# $$ g(x,\sigma) = \frac{A^\top(y - Ax)}{\sigma_y^2 + \sigma^2}. $$
#
# Complete `annealed_likelihood`: `A` and `AT` are functions (the operator and its adjoint),
# `sigma` and `sigma_y` numbers, `x` a batch (B, ...); return a tensor shaped like `x`.

# %%
def annealed_likelihood(x, sigma, A, AT, y, sigma_y):
    """Jalal et al. (NeurIPS 2021): A^T (y - A x) / (sigma_y^2 + sigma^2), shaped like x."""
    ### BEGIN SOLUTION
    return AT(y - A(x)) / (sigma_y ** 2 + sigma ** 2)
    ### END SOLUTION


# %%
check_annealed_likelihood(annealed_likelihood)

# %% tags=["solution"]
assert check_annealed_likelihood(annealed_likelihood, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# Added to the prior's score, the term turns annealed Langevin (lesson 03) into a posterior sampler:
# `guidance.posterior_denoiser` wraps it as a denoiser $D + \sigma^2 g$, which the unchanged sampler
# accepts. On a ring of eight Gaussians with $x_1$ measured ($y = 0.6$, $\sigma_y = 0.05$) the posterior
# has two modes of equal weight; we compare with the exact posterior.

# %%
ring = GaussianMixture.ring(8, 1.0, 0.1, dtype=F64)
A_ring = torch.tensor([[1.0, 0.0]], dtype=F64)
y_ring = torch.tensor([[0.6]], dtype=F64)
post = ring.posterior(A_ring, 0.05, y_ring[0])


def g_ring(x, sigma):
    s = float(sigma.reshape(-1)[0]) if isinstance(sigma, torch.Tensor) else sigma
    return check_annealed_likelihood.reference(x, s, lambda v: v @ A_ring.T, lambda r: r @ A_ring, y_ring, 0.05)


D_y = guidance.posterior_denoiser(ring.denoiser, g_ring)
samples = annealed_langevin(D_y, 10.0 * torch.randn(2000, 2, generator=gen, dtype=F64), ve_sigmas(30, 0.01, 10.0)[:-1],
                            eps=1e-4, n_steps_each=10, generator=gen)
middle = (samples[:, 1].abs() < 0.35).double().mean().item()
print(f"upper mode: {(samples[:, 1] > 0).double().mean():.3f} (exact 0.5); middle mode (0.68, 0): {middle:.3f} "
      f"(exact {post.weights[0]:.4f})")

fig, ax = plt.subplots(figsize=(4.5, 4.2))
ax.scatter(*post.sample(2000, generator=gen).T, s=1.5, alpha=0.4, label="exact posterior")
ax.scatter(*samples.T, s=1.5, alpha=0.4, label="annealed Langevin + g")
ax.set(aspect="equal", xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), title="p(x | x1 = 0.6 + noise)")
ax.legend(markerscale=4, loc="lower left")
plt.tight_layout()
plt.show()

# %% [markdown]
# The two big modes come out right, but a few per cent of the chains sit in the middle mode at
# $(0.68, 0)$, which the exact posterior nearly rules out. The annealed term is exact only where
# the prior looks flat on the scale $\sigma$; at the intermediate levels, where $\sigma$ is comparable to the
# ring, it is not, and chains that wander into the wrong mode there cannot leave it with the small
# steps of the last levels. More steps per level shrink the fraction; the lesson measures the same
# effect on a Gaussian.

# %% [markdown]
# ## Exercise 3 · ILVR's low-pass replacement
#
# For 4× super-resolution $A$ averages $f\times f$ blocks; its pseudo-inverse $A^+$ repeats each value
# over its block (nearest-neighbour upsampling), and $\varphi = A^+A$ replaces each block by its mean —
# an orthogonal projector. ILVR (Choi et al. 2021) refines a DDPM sample $x$ with a
# low-resolution reference $y_\sigma$ (the measurement noised to the sample's level):
#
# $$ x \leftarrow \varphi(y_\sigma) + (I - \varphi)\,x = x - A^+Ax + A^+y_\sigma . $$
#
# Complete `ilvr_refine` for `x` (B, C, H, W), `y_level` (B, C, H/f, W/f) and the integer `factor`
# $f$. `F.avg_pool2d(x, f)` is $A$; `v.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)` is $A^+$.

# %%
def ilvr_refine(x, y_level, factor):
    """ILVR (Choi et al., ICCV 2021): x - up(avgpool(x)) + up(y_level), nearest-neighbour up."""
    ### BEGIN SOLUTION
    def up(v):
        return v.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    return x - up(F.avg_pool2d(x, factor)) + up(y_level)
    ### END SOLUTION


# %%
check_ilvr_refine(ilvr_refine)

# %% tags=["solution"]
assert check_ilvr_refine(ilvr_refine, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# ILVR is the DDPM loop of lesson 04 with this refinement after every step. Below, the reference
# refinement runs inside a hand-written loop with the phantom prior, and the result is compared with
# the library's `solvers.ilvr`: with the same noise draws (the DDPM noise, then the noise of the
# measurement $y_{\sigma'} = y + \sigma' A\xi$) the two coincide.

# %%
D = load("phantom64")
lik_sr = tasks.make("sr4", truth[:1], torch.Generator().manual_seed(5))
sigmas = karras_sigmas(25, 0.002, 80.0)
levels = sigmas.tolist()
x_start = levels[0] * torch.randn(truth[:1].shape, generator=torch.Generator().manual_seed(6))
g = torch.Generator().manual_seed(7)
x = x_start
with torch.no_grad():
    for i in range(len(levels) - 1):
        sigma, sigma_next = levels[i], levels[i + 1]
        x = ddpm_step(x, D(x, torch.full((x.shape[0],), sigma)), sigma, sigma_next, torch.randn(x.shape, generator=g))
        xi = torch.randn(x.shape, generator=g) if sigma_next > 0 else torch.zeros_like(x)
        y_level = lik_sr.y + sigma_next * F.avg_pool2d(xi, 4)                      # y + sigma' A xi
        x = check_ilvr_refine.reference(x, y_level, 4)
    library = solvers.ilvr(D, x_start, sigmas, lik_sr, generator=torch.Generator().manual_seed(7))
nearest = tasks.baseline("sr4", lik_sr)                                      # A^+ y
print(f"hand-written loop vs solvers.ilvr: largest difference {(x - library).abs().max():.1e}; "
      f"PSNR {psnr(x, truth[:1]).item():.1f} dB, nearest-neighbour {psnr(nearest, truth[:1]).item():.1f} dB")

show_images([lik_sr.y[0], nearest[0], x[0].clamp(0, 1), truth[0]],
            ["y (16 × 16)", "nearest neighbour", "ILVR, 25 steps", "truth"], size=2.4)
plt.show()
