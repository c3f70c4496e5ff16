# %% [markdown]
# # 12 · Blind inverse problems: BlindDPS
#
# Every solver so far knew its forward model. A camera that shakes, a lens out of focus, a turbulent
# atmosphere do not tell us their blur: in **blind deblurring** we measure
#
# $$ y = k \circledast x + n,\qquad n\sim\mathcal N(0,\sigma_y^2 I), $$
#
# and both the image $x$ and the kernel $k$ are unknown. BlindDPS (Chung, Kim, Kim & Ye, "Parallel
# diffusion models of operator and image for blind inverse problems", CVPR 2023) gives the kernel a
# diffusion prior of its own and runs two reverse diffusions side by side, one over images and one
# over kernels, coupled only through the DPS likelihood gradient of lesson 07.
#
# **Learning goals**
#
# 1. See why an unknown operator is harder: the data cannot tell a shifted pair $(x, k)$ from the true
#    one, and they *prefer* the trivial explanation "no blur at all".
# 2. Use a **prior over kernels**: a small diffusion model trained on camera-shake and Gaussian kernels,
#    and the normalisation that turns its output into a kernel.
# 3. Write the **joint update**: two DDPM steps, one gradient of $\|y - \hat k_0\circledast\hat x_0\|$ through both
#    denoisers, an $\ell_1$ penalty on the kernel, and the two step-size rules (paper and code).
# 4. Run it on a blurred phantom beside DPS with the true and with a wrong kernel, and watch the
#    kernel take shape along the chain.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch

from diffcourse.metrics import psnr
from diffcourse.physics.blur import Blur, gaussian_kernel, motion_kernel
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.noise import GaussianNoise
from diffcourse.plot import show_images
from diffcourse.posterior import solvers
from diffcourse.posterior.solvers.blind import blind_grad, blind_objective, normalize_kernel
from diffcourse.prior import pretrained
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.samplers.steps import ddpm_step
from diffcourse.prior.train import held_out_phantoms, kernel_batch

start_time = time.perf_counter()


def seeded(k):
    """A fresh generator: runs given seeded(k) draw the same noise."""
    return torch.Generator().manual_seed(k)


def on_canvas(k, size=16):
    """An odd (s, s) kernel centred on a (size, size) canvas (centre at pixel size // 2), as (1, size, size)."""
    s = k.shape[-1]
    out = torch.zeros(1, size, size)
    o = size // 2 - s // 2
    out[0, o:o + s, o:o + s] = k
    return out


def kernel_error(k_hat, k):
    """Relative error ||k̂ - k|| / ||k|| per kernel, (B, s, s) -> (B,)."""
    return (k_hat - k).flatten(1).norm(dim=1) / k.flatten(1).norm(dim=1)

# %% [markdown]
# ## 1. Two unknowns, one measurement
#
# We blur a held-out head phantom with a camera-shake kernel (a random walk with inertia, Boracchi & Foi,
# IEEE TIP 2012) of $15\times15$ pixels on a $16\times16$ canvas, and add noise $\sigma_y = 0.02$ (BlindDPS's
# level). The blur is circular: $k\circledast x$ is a product in the Fourier domain.
#
# Two pairs $(x, k)$ explain $y$ at least as well as the truth:
#
# * **a shift**: moving the image by $d$ pixels and the kernel by $-d$ leaves $k\circledast x$ unchanged, so no
#   method can recover the absolute position; we compare results up to such a shift. (A scale,
#   $(a k, x/a)$, is the other such pair; the constraint $\sum k = 1$ removes it.)
# * **no blur at all**: $k = \delta$, $x = y$ fits the data *exactly*, with residual 0, while the true pair
#   leaves the noise, $\|y - k\circledast x\|\approx\sigma_y\sqrt{n} = 0.02\cdot 64 = 1.28$. Maximum likelihood picks
#   the blurry image. Levin, Weiss, Durand & Freeman (CVPR 2009) showed that even a MAP estimate
#   over $(x, k)$ with a sparse image prior prefers this no-blur solution: the prior must do the work.

# %%
x_true = held_out_phantoms(4)[:1]                                    # a head phantom (1, 1, 64, 64) in [0, 1]
sigma_y = 0.02
k_true = on_canvas(motion_kernel(15, seeded(500)))                   # (1, 16, 16), sums to one
y = Blur(k_true).A(x_true) + sigma_y * torch.randn(x_true.shape, generator=seeded(1))

clean = Blur(k_true).A(x_true)
k_room = torch.nn.functional.pad(k_true, (8, 8, 8, 8))              # the same kernel on a 32 × 32 canvas
shifted = Blur(k_room.roll((-2, 3), (-2, -1))).A(x_true.roll((2, -3), (-2, -1)))
delta = on_canvas(torch.ones(1, 1))
res_true = (y - clean).norm().item()
res_no_blur = (y - Blur(delta).A(y)).norm().item()
shift_gap = (shifted - clean).abs().max().item()
print(f"||y - k ⊛ x|| for the truth: {res_true:.3f};  for (δ, y): {res_no_blur:.1e};  "
      f"shifted pair vs true pair: {shift_gap:.1e}")
show_images([x_true[0], y[0], k_true[0] / k_true.max()], ["x (unknown)", "y = k ⊛ x + n", "k (unknown)"],
            vmin=None, vmax=None)
plt.show()

# %%
# Claims: a shifted pair gives the same measurement (to float32 rounding); the no-blur pair fits y exactly,
# better than the truth, whose residual is the noise, σ_y √n = 1.28 within 10 %.
assert shift_gap < 1e-5 and res_no_blur < 1e-4
assert abs(res_true / (sigma_y * 64) - 1) < 0.1

# %% [markdown]
# ## 2. A diffusion prior over kernels
#
# BlindDPS trains a second diffusion model, on kernels. Ours (`pretrained.load("kernel")`) is a small
# UNet (270 k parameters, 1.1 MB) trained with the course's training loop on $16\times16$ kernel *images*:
# each kernel divided by its maximum, so that it lies in $[0, 1]$ with background 0 (half camera-shake
# kernels of sizes 7-15, half Gaussians of standard deviation 0.5-3 px, drawn afresh at every step;
# `diffcourse.prior.train.kernel_batch`). Its output $\tilde k_0 = D_k(k,\sigma)$ is an image, with small
# negative ripples; the kernel it stands for is
#
# $$ \hat k_0 = \frac{\max(\tilde k_0, 0)}{\sum\max(\tilde k_0, 0)} \qquad(\text{non-negative, sums to one}). $$
#
# BlindDPS maps its $[-1, 1]$ kernel image by $(\tilde k_0+1)/2$ and divides by the sum; the clip is ours and
# makes $\hat k_0$ a kernel at every step. Below: training kernels, and samples of the prior drawn with 30
# DDPM steps from $\sigma = 80$, after the normalisation.

# %%
D_k = pretrained.load("kernel")
meta = pretrained.info("kernel")
print(f"kernel prior: {meta['steps']} steps of batch {meta['config']['batch_size']}, "
      f"{meta['train_seconds'] / 60:.0f} min on a shared CPU thread, final loss {meta['final_loss']:.3f}")

g = seeded(2)
sig30 = karras_sigmas(30)
k_state = sig30[0] * torch.randn(8, 1, 16, 16, generator=g)
with torch.no_grad():
    for i in range(len(sig30) - 1):
        k_state = ddpm_step(k_state, D_k(k_state, sig30[i]), sig30[i].item(), sig30[i + 1].item(),
                            torch.randn(k_state.shape, generator=g))
samples = normalize_kernel(k_state)                                  # (8, 16, 16)
training = kernel_batch(8, 16, seeded(3))
show_images(list(training[:, 0]) + list(samples / samples.amax((-2, -1), keepdim=True)),
            ["training"] * 8 + ["sample"] * 8, ncols=8, size=1.4)
plt.show()
top25 = samples.flatten(1).sort(1, descending=True).values[:, :25].sum(1)
print("mass of the 25 largest pixels of each sample:", [round(v, 2) for v in top25.tolist()])

# %%
# Claims: after the normalisation every sample is a kernel (non-negative, unit sum), and like the training
# kernels it is concentrated: its 25 largest pixels hold most of its mass (the uniform kernel's hold 10 %).
assert bool((samples >= 0).all()) and torch.allclose(samples.sum((-2, -1)), torch.ones(8))
assert top25.median() > 0.6

# %% [markdown]
# ## 3. Two chains, one likelihood
#
# With independent priors $p(x_0)\,p(k_0)$ and the DPS approximation
# $p(y\mid x_\sigma, k_\sigma)\approx p(y\mid\hat x_0, \hat k_0)$ (Tweedie estimates of both), the joint posterior score
# splits into a prior score for each chain plus the gradient of one shared likelihood term. BlindDPS's
# step, for $u\in\{x, k\}$ in VE coordinates ($x = x_0 + \sigma z$), is
#
# $$ u' = \mathrm{DDPM}(u, \hat u_0;\ \sigma\to\sigma') - c\,\zeta_u\,\nabla_u F,\qquad
#    F = \|y - \hat k_0\circledast\hat x_0\|_2 + \lambda\,\|\tilde k_0\|_1, $$
#
# with $\hat x_0 = D(x,\sigma)$, $\tilde k_0 = D_k(k,\sigma)$, $\hat k_0$ its normalisation and
# $c = \sqrt{(1+\sigma^2)(1+\sigma'^2)}$, the factor that carries the paper's VP step into VE coordinates
# (lesson 07). The gradient reaches $x$ through the image denoiser and $k$ through the kernel denoiser:
# the only coupling of the two chains.
#
# * The norm is not squared, as in the official code (the paper's DPS rule $\zeta/\|r\|$ times the square is
#   the same up to a factor 2).
# * The $\ell_1$ penalty asks for a sparse kernel image. On a normalised kernel it would be useless:
#   $\|\hat k_0\|_1 = 1$ for every non-negative kernel of unit sum, so it acts on $\tilde k_0$.
# * **Step sizes.** The paper reports a constant $\zeta_t = \zeta$ (`solvers.blind_dps`); the official code
#   uses $\zeta_t = \zeta\sqrt{\bar\alpha_t} = \zeta/\sqrt{1+\sigma^2}$, small at high noise and growing along the chain
#   (`solvers.blind_dps_code`; a comment in the code calls it more stable).
#
# One step by hand, with the library's pieces, against the library's solver:

# %%
D = pretrained.load("phantom64")
noise = GaussianNoise(sigma_y)
g = seeded(4)
x_state = 2.0 * torch.randn(1, 1, 64, 64, generator=g)
k_state = 2.0 * torch.randn(1, 1, 16, 16, generator=g)
sigma, sigma_next = 2.0, 1.5
F = blind_objective(y, noise, lam=0.0)
gx, gk, x0_hat, k_image, F_value = blind_grad(D, D_k, x_state, k_state, torch.full((1,), sigma),
                                               torch.full((1,), sigma), F)
c = math.sqrt((1 + sigma ** 2) * (1 + sigma_next ** 2))
z_x, z_k = torch.randn(x_state.shape, generator=seeded(5)), torch.randn(k_state.shape, generator=seeded(6))
x_hand = ddpm_step(x_state, x0_hat, sigma, sigma_next, z_x) - c * 1.5 * gx
k_hand = ddpm_step(k_state, k_image, sigma, sigma_next, z_k) - c * 1.0 * gk

seen = {}
solvers.blind_dps(D, D_k, x_state, k_state, torch.tensor([sigma, sigma_next, 0.0]), y, noise=noise, zeta=1.5,
                  zeta_k=1.0, generator=seeded(5), generator_k=seeded(6),
                  callback=lambda d: seen.setdefault(d["i"], (d["x"], d["k"])))
step_gap = max((x_hand - seen[1][0]).abs().max().item(), (k_hand - seen[1][1]).abs().max().item())
print(f"F = {F_value.item():.2f};  by hand vs library after one step: {step_gap:.1e}")

# %%
# Claim: the joint step is a DDPM step of each chain minus c ζ ∇F, as written above.
assert step_gap < 1e-4

# %% [markdown]
# **Freezing the kernel chain gives DPS back.** If the kernel denoiser returned the true kernel image
# whatever its input, $\hat k_0$ would be the true kernel at every step and the image chain would be DPS
# with the non-squared norm (`solvers.dps_code`). We check it on a short run of 4 steps.

# %%
true_image = (k_true / k_true.max())[:, None]                       # the true kernel image, (1, 1, 16, 16)
frozen = lambda k, s: true_image                                     # noqa: E731
sig4 = karras_sigmas(4)
x_start = sig4[0] * torch.randn(1, 1, 64, 64, generator=seeded(7))
x_blind, _ = solvers.blind_dps(D, frozen, x_start, torch.zeros(1, 1, 16, 16), sig4, y, noise=noise, zeta=1.5,
                               generator=seeded(8), generator_k=seeded(9))
x_dps = solvers.dps_code(D, x_start, sig4, Likelihood(Blur(k_true), noise, y), zeta=1.5, generator=seeded(8))
frozen_gap = (x_blind - x_dps).abs().max().item()
print(f"frozen kernel chain vs DPS: largest difference {frozen_gap:.1e}")

# %%
# Claim: with the kernel chain frozen at the true kernel, BlindDPS is DPS.
assert frozen_gap < 1e-4

# %% [markdown]
# ## 4. Blind deblurring of a phantom
#
# Now the real thing: BlindDPS (`solvers.blind_dps`, its default $\zeta = 1.5$, $\zeta_k = 1$, $\lambda = 0$, tuned
# on other phantoms) with the shipped phantom prior and the kernel prior, 100 steps of Karras et al.'s
# schedule from $\sigma = 80$, both chains started from noise. Beside it, the same image chain with the
# kernel given: DPS (`solvers.dps_code`, $\zeta = 1.5$) with the **true** kernel, the best a blind method can
# hope for, and with a **wrong** kernel, another camera shake of the same size (both in one batch: `Blur`
# takes one kernel per image). We record $\hat k_0$ along the chain. The scores are taken after aligning
# the shift the data cannot see (the one, up to 3 px, that brings $\hat k$ closest to $k$).

# %%
steps = 100
sigmas = karras_sigmas(steps)
k_wrong = on_canvas(motion_kernel(15, seeded(501)))
trace = {}


def record(d):
    trace[d["sigma"]] = d["k0_hat"].clone()


g = seeded(10)
x_start = sigmas[0] * torch.randn(1, 1, 64, 64, generator=g)
k_start = sigmas[0] * torch.randn(1, 1, 16, 16, generator=g)
x_bl, k_bl = solvers.blind_dps(D, D_k, x_start, k_start, sigmas, y, noise=noise, generator=g, callback=record)
lik_given = Likelihood(Blur(torch.cat([k_true, k_wrong])), noise, y.expand(2, -1, -1, -1))
x_tr, x_wr = solvers.dps_code(D, x_start.expand(2, -1, -1, -1), sigmas, lik_given, zeta=1.5,
                              generator=seeded(11)).split(1)


def align(x, k_hat, k, max_shift=3):
    """(x rolled by d, k̂ rolled by -d) for the shift d that brings k̂ closest to k."""
    shifts = [(i, j) for i in range(-max_shift, max_shift + 1) for j in range(-max_shift, max_shift + 1)]
    i, j = min(shifts, key=lambda d: kernel_error(k_hat.roll((-d[0], -d[1]), (-2, -1)), k).item())
    return x.roll((i, j), (-2, -1)), k_hat.roll((-i, -j), (-2, -1))


x_al, k_al = align(x_bl, k_bl, k_true)
scores = {"y": psnr(y, x_true).item(), "DPS, wrong kernel": psnr(x_wr.clamp(0, 1), x_true).item(),
          "BlindDPS": psnr(x_al.clamp(0, 1), x_true).item(), "DPS, true kernel": psnr(x_tr.clamp(0, 1), x_true).item()}
blind_kernel_error = kernel_error(k_al, k_true).item()
for name, value in scores.items():
    print(f"{name:18s} PSNR {value:5.2f} dB")
wrong_kernel_error = kernel_error(k_wrong, k_true).item()
print(f"BlindDPS kernel error {blind_kernel_error:.2f} (the wrong kernel's: {wrong_kernel_error:.2f})")
show_images([x_true[0], y[0], x_wr[0].clamp(0, 1), x_al[0].clamp(0, 1), x_tr[0].clamp(0, 1)],
            ["truth", "y", "DPS, wrong k", "BlindDPS", "DPS, true k"])
plt.show()

# %%
# Claims: BlindDPS beats DPS with a wrong kernel by more than 5 dB and the blurred y by more than 4 dB; DPS with
# the true kernel stays the upper bound (within 1 dB: both are single random runs); the kernel estimate is
# closer to the truth than the wrong kernel.
assert scores["BlindDPS"] > scores["DPS, wrong kernel"] + 5 and scores["BlindDPS"] > scores["y"] + 4, scores
assert scores["DPS, true kernel"] > scores["BlindDPS"] - 1, scores
assert blind_kernel_error < 0.7 * wrong_kernel_error

# %% [markdown]
# ## 5. The kernel's evolution along the chain
#
# For most of the chain $\hat k_0$ is a round blob, close to the prior's mean: while $\hat x_0$ is itself blurry, a
# blob explains $y$ as well as anything, and the likelihood cannot tell one shape from another. The
# image chain settles the coarse structure first; only when $\sigma$ drops below about 0.1 does $\hat x_0$ have
# edges sharp enough to reveal the blur's shape, and the path of the camera shake appears, in the last
# tenth of the steps. (The paper's 1000 steps give the two chains more time to negotiate in that phase.)

# %%
levels = sorted(trace, reverse=True)
picks = [min(levels, key=lambda s: abs(math.log(s / target))) for target in (80, 3, 0.3, 0.05, 0.015, 0.002)]
errors = [kernel_error(align(x_bl, trace[s], k_true)[1], k_true).item() for s in levels]
fig, ax = plt.subplots(1, len(picks) + 2, figsize=(14, 2.4))
for a, s in zip(ax, picks):
    a.imshow(trace[s][0], cmap="gray")
    a.set_title(f"σ = {s:.2g}")
    a.axis("off")
ax[-2].imshow(k_true[0], cmap="gray")
ax[-2].set_title("true k")
ax[-2].axis("off")
ax[-1].semilogx(levels, errors, "-", lw=1)
ax[-1].invert_xaxis()
ax[-1].set(xlabel="σ", title="error of k̂0")
plt.tight_layout()
plt.show()
early, late = sum(errors[:10]) / 10, sum(errors[-10:]) / 10
print(f"kernel error: first 10 steps {early:.2f}, last 10 steps {late:.2f}")

# %%
# Claim: the kernel estimate improves along the chain: its error over the last 10 steps is below 0.85 times
# its error over the first 10 (the prior's mean).
assert late < 0.85 * early, (early, late)

# %% [markdown]
# ## 6. What to remember
#
# * An unknown operator adds unknowns *and* ambiguities: shifts the data cannot see, and a no-blur
#   solution the data prefer. A prior on the operator is not a luxury.
# * BlindDPS needs nothing new beyond DPS: a second diffusion prior, the normalisation that makes its
#   output an operator, and one gradient of one misfit through both denoisers. The kernel chain can be
#   frozen, and DPS comes back.
# * Its weak points are DPS's: a backward pass through each network at every step, a step size to tune
#   for each chain (two rules: the paper's constant one, and the code's $\sqrt{\bar\alpha_t}$), and results
#   that vary from run to run. On held-out phantoms (`benchmarks/blind_table.py`) it recovers most of the
#   gap between a wrong kernel and the true one. Its committed output (`benchmarks/results/blind_table.json`:
#   4 held-out phantoms, $\sigma_y = 0.02$, 100 steps; PSNR after the best integer shift, and the
#   kernel's relative error after the same shift):
#
# | blur | $y$ | alternating TV (blind) | DPS, wrong kernel | BlindDPS, paper step | BlindDPS, code step | DPS, true kernel |
# |---|---|---|---|---|---|---|
# | motion, PSNR (dB) | 16.2 | 17.3 | 16.3 | 23.7 | 24.8 | 29.9 |
# | motion, kernel error | | 1.02 | 1.09 | 0.56 | 0.56 | 0 |
# | Gaussian, PSNR (dB) | 18.8 | 19.9 | 21.0 | 27.2 | 27.2 | 27.8 |
# | Gaussian, kernel error | | 0.34 | 0.66 | 0.19 | 0.27 | 0 |
#
#   Gaussian blur is nearly solved; camera shake keeps a 5 dB gap to the true kernel. With 200 steps
#   the true-kernel DPS rises to 33.9 dB on motion blur and BlindDPS (paper step) to 26.1 dB.

# %%
elapsed = time.perf_counter() - start_time
print(f"notebook ran in {elapsed:.0f} s")
