# %% [markdown]
# # 13 · Patch priors — exercises
#
# Companion to `lessons/13_patch_priors.py`. You will write the two pieces that turn a patch denoiser
# into a whole-image prior (PaDIS, Hu, Song, Xu, Shen & Fessler, NeurIPS 2024):
#
# 1. the **positional channels** of the patches of a shifted tiling, what the patch network is told
#    about where each patch lies;
# 2. the **image score assembled from patch scores**, $s(x) = \sum_k G_k^{\mathsf T}\,(D(G_k x) - G_k x)/\sigma^2$;
# 3. **one step of the PaDIS solver**: a data step through the denoiser, then a Langevin step.
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's implementation, so the notebook
# runs top to bottom even before you start.
#
# **Conventions** (as in `diffcourse.prior.patches`): images `(B, C, N, N)`, patches of side $P$,
# $K = 1 + \lfloor N/P\rfloor$ patches per side, zero padding of $M = KP - N$ pixels on every side into a canvas
# of side $S = N + 2M$. For a shift $(r, c)$, $0\le r, c < M$, the $K^2$ patches start at canvas pixel
# $(r + Pj,\ c + Pl)$, $j, l = 0,\dots,K-1$, in row-major order (patch $k = jK + l$). Positional channels:
# channel 0 is the column ($x$) and channel 1 the row ($y$) of each canvas pixel, linear from $-1$ at the
# first to $+1$ at the last pixel. A patch denoiser is called `D_patch(v, sigma, pos)` with `v`
# `(n, C, P, P)` and `pos` `(n, 2, P, P)`.

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from diffcourse import data
from diffcourse.checks.lesson13 import check_assemble_score, check_padis_step, check_patch_positions
from diffcourse.metrics import psnr
from diffcourse.posterior import tasks
from diffcourse.prior import pretrained
from diffcourse.prior.patches import assemble, geometry, positions
from diffcourse.prior.processes import karras_sigmas

gen = torch.Generator().manual_seed(0)

# %% [markdown]
# ## Exercise 1 · Where is each patch?
#
# Complete `patch_positions(size, patch_size, shift)`: the positional channels that the $K^2$ patches of
# the tiling with this shift receive, as a tensor `(K², 2, P, P)`. Build the two coordinate maps of the
# whole canvas first (`torch.linspace` and `torch.meshgrid(..., indexing="ij")`), then cut them like
# the patches.

# %%
def patch_positions(size, patch_size, shift):
    """Positional channels (x = column, y = row, in [-1, 1] over the padded canvas) of the K² patches."""
    ### BEGIN SOLUTION
    K, M = geometry(size, patch_size)
    S, P, (r, c) = size + 2 * M, patch_size, shift
    ramp = torch.linspace(-1.0, 1.0, S, dtype=torch.float64)
    y, x = torch.meshgrid(ramp, ramp, indexing="ij")
    canvas = torch.stack([x, y])                                    # (2, S, S)
    return torch.stack([canvas[:, r + P * j:r + P * (j + 1), c + P * l:c + P * (l + 1)]
                        for j in range(K) for l in range(K)])       # noqa: E741
    ### END SOLUTION


# %%
check_patch_positions(patch_positions)

# %% tags=["solution"]
assert check_patch_positions(patch_positions, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# The 25 patches of a 64-px slice (14-px patches, shift (2, 5)): the x channel of each, laid out as the
# tiling. The padding lies outside the image, so the outer patches see coordinates the image never
# reaches, close to $\pm1$.

# %%
pp = check_patch_positions.reference(64, 14, (2, 5))                 # (25, 2, 14, 14)
fig, ax = plt.subplots(5, 5, figsize=(5, 5))
for k, a in enumerate(ax.flat):
    a.imshow(pp[k, 0], cmap="coolwarm", vmin=-1, vmax=1)
    a.axis("off")
plt.suptitle("channel 0 (x) of each patch")
plt.show()

# %% [markdown]
# ## Exercise 2 · The image score from patch scores
#
# Complete `assemble_score(D_patch, x, sigma, shift, patch_size)`, the score of the image $x$ under the
# patch prior for one tiling:
#
# $$ s(x) = \sum_k G_k^{\mathsf T}\,\frac{D(G_k x,\ \sigma,\ \mathrm{pos}_k) - G_k x}{\sigma^2} , $$
#
# with $G_k$ the $k$-th patch of the **zero-padded** canvas and $\mathrm{pos}_k$ its positional channels (use
# `positions(S, dtype=x.dtype)` of the library or your Exercise 1). Return the image part of the canvas,
# `(B, C, N, N)`. A loop over the $K^2$ patches is fine; `sigma` is a number.

# %%
def assemble_score(D_patch, x, sigma, shift, patch_size):
    """Σ_k G_kᵀ (D_patch(G_k x, σ, pos_k) - G_k x)/σ² over the zero-padded tiling with this shift."""
    ### BEGIN SOLUTION
    B, C, N = x.shape[0], x.shape[1], x.shape[-1]
    K, M = geometry(N, patch_size)
    S, P, (r, c) = N + 2 * M, patch_size, shift
    canvas = F.pad(x, (M, M, M, M))
    pos = positions(S, dtype=x.dtype)
    score = torch.zeros_like(canvas)
    for j in range(K):
        for l in range(K):                                          # noqa: E741
            rows, cols = slice(r + P * j, r + P * (j + 1)), slice(c + P * l, c + P * (l + 1))
            v = canvas[:, :, rows, cols]
            d = D_patch(v, sigma, pos[:, rows, cols].expand(B, -1, -1, -1))
            score[:, :, rows, cols] += (d - v) / sigma ** 2
    return score[:, :, M:M + N, M:M + N]
    ### END SOLUTION


# %%
check_assemble_score(assemble_score)

# %% tags=["solution"]
assert check_assemble_score(assemble_score, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# With the shipped patch prior: one Tweedie step $x + \sigma^2 s(x)$ with the score of one tiling
# denoises a held-out slice; averaging the scores of several shifts (as the lesson's averaging over
# tilings) removes the faint grid of the seams and gains a little. The library's `assemble` computes
# $x + \sigma^2 s(x)$ for all patches in one batch, much faster than a loop over them.

# %%
net = pretrained.load("patch").net
x0 = data.brain_slices(1, 64, torch.Generator().manual_seed(20_010), contrast="mixed", split="test")
sigma = 0.2
y = x0 + sigma * torch.randn(x0.shape, generator=gen)
with torch.no_grad():
    one = assemble(net, y, sigma, torch.tensor([[0, 0]]), 14)
    many = sum(assemble(net, y, sigma, torch.tensor([[r, (3 * r) % 6]]), 14) for r in range(6)) / 6
fig, ax = plt.subplots(1, 4, figsize=(11, 3))
for a, img, title in zip(ax, [x0, y, one, many], ["clean", "σ = 0.2", f"one tiling {psnr(one, x0).item():.1f} dB",
                                                   f"6 shifts {psnr(many, x0).item():.1f} dB"]):
    a.imshow(img[0, 0], cmap="gray", vmin=0, vmax=1)
    a.set_title(title)
    a.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 3 · One step of PaDIS
#
# At a level $\sigma$ of its schedule, PaDIS (the official code's `dps` routine) evaluates the denoiser once,
# $d = D(x, \sigma)$ (a patch prior draws a new random shift in that call), and moves
#
# $$ x' = x - \zeta\,\nabla_x\big\|y - A\,D(x,\sigma)\big\|_2 + \frac{\alpha}{2}\,\frac{d - x}{\sigma^2} + \sqrt{\alpha}\,z,
#    \qquad \alpha = \varepsilon\sigma^2 , $$
#
# with one norm per sample (not squared), the gradient taken through the denoiser (autograd from an `x`
# that requires grad, inside `with torch.enable_grad():`), and no noise at the last level, where `z` is
# `None`. `A` is a function of images `(B, ...)` and `y` has A's output shape. Complete `padis_step`.

# %%
def padis_step(D, x, sigma, A, y, zeta, eps, z):
    """x - ζ ∇_x ||y - A D(x, σ)|| + (α/2)(D(x, σ) - x)/σ² + √α z (no noise term if z is None), α = ε σ²."""
    ### BEGIN SOLUTION
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        d = D(xg, sigma)
        misfit = (y - A(d)).flatten(1).norm(dim=1)                     # one norm per sample
        (grad,) = torch.autograd.grad(misfit.sum(), xg)
    alpha = eps * sigma ** 2
    x_new = x - zeta * grad + (alpha / 2) * (d.detach() - x) / sigma ** 2
    return x_new if z is None else x_new + alpha ** 0.5 * z
    ### END SOLUTION


# %%
check_padis_step(padis_step)

# %% tags=["solution"]
assert check_padis_step(padis_step, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# A hundred of these steps (10 levels from $\sigma = 0.5$ down to 0.02, 10 steps each; the reference's) with
# the shipped patch prior on 20-view CT of a held-out slice, from the FBP image: the PSNR of the state along
# the way. (With only 5 levels the same 10 steps each barely improve on FBP: the schedule matters.)

# %%
D = pretrained.load("patch")
D.generator = torch.Generator().manual_seed(0)
x_ct = data.brain_slices(1, 64, torch.Generator().manual_seed(20_020), contrast="mixed", split="test")
lik = tasks.make("ct20", x_ct, torch.Generator().manual_seed(2))
x = tasks.baseline("ct20", lik).clamp(0, 1)
levels = karras_sigmas(10, 0.02, 0.5)[:-1].tolist()
trace = [psnr(x.clamp(0, 1), x_ct).item()]
for i, sigma in enumerate(levels):
    for _ in range(10):
        z = None if i == len(levels) - 1 else torch.randn(x.shape, generator=gen)
        x = check_padis_step.reference(D, x, sigma, lik.op.A, lik.y, 0.05, 0.5, z)
        trace.append(psnr(x.clamp(0, 1), x_ct).item())
plt.figure(figsize=(5, 3))
plt.plot(trace)
plt.xlabel("step")
plt.ylabel("PSNR (dB)")
plt.title("PaDIS from FBP, 10 levels x 10 steps")
plt.show()
print(f"FBP {trace[0]:.2f} dB, after 100 steps {trace[-1]:.2f} dB")
