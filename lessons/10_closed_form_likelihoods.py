# %% [markdown]
# # 10 · Closed-form likelihoods and fewer steps: ΠGDM, DMPS, DDNM, DDS
#
# DPS (lesson 07) estimates the likelihood of a noisy state by plugging Tweedie's $\hat x_0$ into
# $p(y\mid x_0)$, and pays for it twice: the estimate is far too confident at high noise (the Jensen
# gap), and every step back-propagates through the network. This lesson meets four methods that
# pay less. Three of them replace the point estimate by a **Gaussian** $p(x_0\mid x_t)$, which makes
# $p(y\mid x_t)$ Gaussian too, in closed form: pseudoinverse-guided diffusion, ΠGDM (Song, Vahdat,
# Mardani & Kautz, ICLR 2023), and diffusion-model-based posterior sampling, DMPS (Meng & Kabashima,
# arXiv 2022), which needs no network gradient at all. The other two skip the likelihood and act on
# $\hat x_0$ directly: the denoising diffusion null-space model, DDNM (Wang, Yu & Zhang, ICLR 2023),
# takes the part of the image that $y$ determines from $y$, and the decomposed diffusion sampler,
# DDS (Chung, Lee & Ye, ICLR 2024), replaces that projection by a few conjugate-gradient steps.
#
# **Learning goals**
#
# 1. Write the three Gaussian approximations of $p(x_0\mid x_t)$ (DPS's point mass, ΠGDM's
#    $\mathcal N(\hat x_0, r_t^2 I)$, DMPS's flat prior) and the likelihood each one implies.
# 2. Verify that ΠGDM is **exact** for a unit Gaussian prior and that DMPS is exact only as the
#    prior becomes flat; measure all three against the exact likelihood score on the ring testbed.
# 3. Compute the DMPS guidance through the **SVD** of $A$, and write its DDPM and flow versions as
#    prior samplers driven by a posterior denoiser.
# 4. Split an image into the **range and null space** of $A$ (DDNM): $A x = y$ holds exactly.
# 5. Replace the projection by a few **conjugate-gradient** steps (DDS), for operators without an SVD.
# 6. Measure the **speed**: time per step and network calls with and without a backward pass,
#    against DPS on the same phantom.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch

from diffcourse.metrics import psnr
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.matrix import Matrix
from diffcourse.physics.noise import GaussianNoise
from diffcourse.physics.operators import Downsample, Inpaint, random_mask
from diffcourse.plot import show_images
from diffcourse.posterior import guidance, solvers, tasks
from diffcourse.posterior.solvers.closed_form import dds_consistency
from diffcourse.prior import pretrained
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.samplers.loop import CountingDenoiser
from diffcourse.prior.toy import GaussianMixture
from diffcourse.prior.train import held_out_phantoms

F64 = torch.float64
start_time = time.perf_counter()


def seeded(k):
    """A fresh generator: runs given seeded(k) draw the same noise."""
    return torch.Generator().manual_seed(k)

# %% [markdown]
# ## 1. Three Gaussian guesses for $p(x_0\mid x_t)$
#
# We work, as the library does, in VE coordinates $x = x_0 + \sigma z$ (the papers' VP state is
# $x_t = \sqrt{\bar\alpha_t}\,x$ with $\sigma^2 = (1-\bar\alpha_t)/\bar\alpha_t$; lesson 04). For a linear forward model
# $y = Ax_0 + n$, $n\sim\mathcal N(0,\sigma_y^2 I)$, the likelihood of a noisy state is
#
# $$ p(y\mid x) = \int \mathcal N(y;\,Ax_0,\,\sigma_y^2 I)\;p(x_0\mid x)\,\mathrm dx_0 . $$
#
# If $p(x_0\mid x)$ were Gaussian, $\mathcal N(m(x), C)$, this integral would be a Gaussian in $y$:
# $\mathcal N\big(y;\ A\,m(x),\ \sigma_y^2 I + A C A^\top\big)$. The methods differ in the guess:
#
# | method | guess for $p(x_0\mid x)$ | $p(y\mid x)\approx$ | guidance $\nabla_x\log p(y\mid x)$ |
# |---|---|---|---|
# | DPS | $\delta(x_0-\hat x_0)$ | $\mathcal N(A\hat x_0,\ \sigma_y^2 I)$ | $J^\top A^\top(y-A\hat x_0)/\sigma_y^2$ |
# | ΠGDM | $\mathcal N(\hat x_0,\ r^2 I)$ | $\mathcal N(A\hat x_0,\ \sigma_y^2 I + r^2AA^\top)$ | $J^\top A^\top(\sigma_y^2 I + r^2AA^\top)^{-1}(y-A\hat x_0)$ |
# | DMPS | $\mathcal N(x,\ \sigma^2 I)$ | $\mathcal N(Ax,\ \sigma_y^2 I + \sigma^2AA^\top)$ | $A^\top(\sigma_y^2 I + \sigma^2AA^\top)^{-1}(y-Ax)$ |
#
# with $\hat x_0 = D(x,\sigma)$ Tweedie's estimate and $J = \partial\hat x_0/\partial x$ its Jacobian.
#
# * **ΠGDM** (Song et al. 2023, Eq. 7–8) keeps Tweedie's mean and adds a spread $r^2$ around it. Their
#   choice, $r^2 = \sigma^2/(1+\sigma^2) = 1-\bar\alpha$ (`guidance.pgdm_r2`), is the posterior variance of $x_0$
#   when the data are $\mathcal N(0, I)$. The mean still depends on $x$ through the network, so the
#   gradient is a vector–Jacobian product: one backward pass, as in DPS. The spread's dependence on $x$
#   is ignored. When $\sigma_y = 0$ the inverse becomes a pseudo-inverse,
#   $A^\top(AA^\top)^{-1} = A^+$ (for $A$ of full row rank), which gives the method its name:
#   $J^\top A^+(y - A\hat x_0)/r^2$.
# * **DMPS** (Meng & Kabashima 2022, Assumption 1, Thm. 1) assumes the prior is *flat* compared with
#   the noise. Then $p(x_0\mid x)\propto p(x\mid x_0) = \mathcal N(x;\,x_0,\sigma^2 I)$, i.e. $x_0\mid x\sim\mathcal N(x,\sigma^2 I)$.
#   The network does not enter the likelihood at all: **no backward pass**, and the guidance of
#   every step is a linear map applied to the residual $y - Ax$. In the paper's VP coordinates it reads
#   $\frac{1}{\sqrt{\bar\alpha_t}}A^\top\big(\sigma_y^2 I + \frac{1-\bar\alpha_t}{\bar\alpha_t}AA^\top\big)^{-1}\big(y - A x_t/\sqrt{\bar\alpha_t}\big)$.
#
# DPS's guess has no spread, so at high noise it trusts $\hat x_0$ as if it were the clean image; the
# other two add spread $\propto\sigma^2$ through $AA^\top$ and thus weaken the data term where the
# state is too noisy to say much.

# %% [markdown]
# ## 2. A unit Gaussian prior: ΠGDM is exact, DMPS only in the flat limit
#
# For $x_0\sim\mathcal N(0, I)$ everything is Gaussian: $x_0\mid x\sim\mathcal N\big(x/(1+\sigma^2),\ \tfrac{\sigma^2}{1+\sigma^2}I\big)$.
# Tweedie's mean is $\hat x_0 = x/(1+\sigma^2)$ and the spread is exactly ΠGDM's $r^2$. So the ΠGDM
# guidance *is* the exact likelihood score, for any linear $A$ and any $\sigma_y$. We check this with
# the library's `guidance.pgdm` against `guidance.exact` (the closed form for Gaussian-mixture priors,
# `diffcourse.prior.toy`) on $\mathbb R^8$, with a random $4\times 8$ operator and $\sigma_y = 0.1$, in float64.

# %%
d, m, sigma_y = 8, 4, 0.1
g = seeded(0)
unit = GaussianMixture.gaussian(torch.zeros(d, dtype=F64), 1.0)
A8 = torch.randn(m, d, generator=g, dtype=F64) / math.sqrt(d)
lik8 = Likelihood.measure(Matrix(A8), GaussianNoise(sigma_y), unit.sample(1, g), generator=g)
print(" sigma   rel. error ΠGDM   rel. error DPS   rel. error DMPS")
pgdm_err, dps_err = [], []
for s in (20.0, 5.0, 1.0, 0.3, 0.1, 0.03):
    x = unit.sample(64, g) + s * torch.randn(64, d, generator=g, dtype=F64)
    ex = guidance.exact(unit, x, s, lik8)
    rel = [((fn(unit.denoiser, x, s, lik8) - ex).abs().max() / ex.abs().max()).item()
           for fn in (guidance.pgdm, guidance.dps, guidance.dmps)]
    pgdm_err.append(rel[0])
    dps_err.append(rel[1])
    print(f"{s:6.2f}   {rel[0]:14.1e}   {rel[1]:14.3g}   {rel[2]:14.3g}")

# %% [markdown]
# DPS is off by a factor of up to 100. DMPS, whose guess ignores the prior, is off too, badly at high
# noise — for this prior its guess is wrong, as the next experiment shows.

# %%
# Claims: for the N(0, I) prior ΠGDM equals the exact likelihood score to float64 precision at every
# noise level, while DPS is off by more than 10 % at every level but the smallest.
assert max(pgdm_err) < 1e-12, pgdm_err
assert min(dps_err[:-1]) > 0.1, dps_err

# %% [markdown]
# DMPS's guess $\mathcal N(x,\sigma^2 I)$ is the posterior of a prior with infinite variance. For the
# prior $\mathcal N(0, s^2 I)$ the true $x_0\mid x$ is $\mathcal N\big(\tfrac{s^2}{s^2+\sigma^2}x,\ \tfrac{s^2\sigma^2}{s^2+\sigma^2}I\big)$, which
# tends to DMPS's as $s\to\infty$, with an error of order $\sigma^2/s^2$. We take one state at $\bar\alpha = 0.3$
# ($\sigma^2 = 7/3$) and let the prior widen.

# %%
sigma_03 = math.sqrt((1 - 0.3) / 0.3)
x_one = lik8.op.pinv(lik8.y) + sigma_03 * torch.randn(1, d, generator=g, dtype=F64)
flat_err = []
for s2 in (1.0, 1e2, 1e4):
    wide = GaussianMixture.gaussian(torch.zeros(d, dtype=F64), s2)
    ex = guidance.exact(wide, x_one, sigma_03, lik8)
    flat_err.append((guidance.dmps(None, x_one, sigma_03, lik8) - ex).abs().max().item())
    print(f"prior variance s² = {s2:7.0e}: max |g_DMPS - g_exact| = {flat_err[-1]:.2e}")

# %%
# Claim: DMPS becomes exact only as the prior flattens: its error falls more than 10-fold from s² = 1
# to 100, and then as 1/s² (between 50 and 200 times from s² = 100 to 10⁴).
assert flat_err[0] > 10 * flat_err[1] and 50 < flat_err[1] / flat_err[2] < 200, flat_err

# %% [markdown]
# ## 3. On a prior that is neither: the ring
#
# Real priors are neither a unit Gaussian nor flat. On lesson 07's testbed — eight Gaussians on a
# ring (std 0.1), one measurement $y = x_{0,1} + n = 0.5$ with $\sigma_y = 0.1$ — the exact score is known
# (`guidance.exact`), and we measure the relative error
# $\mathbb E\|g - g_{\rm exact}\|/\mathbb E\|g_{\rm exact}\|$ of each guidance at states $x = x_0 + \sigma z$ with $x_0$
# drawn from the exact posterior (200 states per level), all three driven by the mixture's exact
# denoiser: the differences are the approximations', not a network's.

# %%
ring = GaussianMixture.ring(8, radius=1.0, std=0.1, dtype=F64)
A_ring = torch.tensor([[1.0, 0.0]], dtype=F64)
lik_ring = Likelihood(Matrix(A_ring), GaussianNoise(0.1), torch.tensor([[0.5]], dtype=F64))
post = ring.posterior(A_ring, 0.1, lik_ring.y.reshape(-1))
table_sigmas = [20.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01]
methods = {"DPS": guidance.dps, "ΠGDM": guidance.pgdm, "DMPS": guidance.dmps}
g = seeded(1)
x0_post = post.sample(200, g).to(F64)
table = {name: [] for name in methods}
for s in table_sigmas:
    x = x0_post + s * torch.randn(x0_post.shape, generator=g, dtype=F64)
    ex = guidance.exact(ring, x, s, lik_ring)
    for name, fn in methods.items():
        table[name].append(((fn(ring.denoiser, x, s, lik_ring) - ex).norm(dim=1).mean()
                            / ex.norm(dim=1).mean()).item())
print(" sigma " + "".join(f"{n:>9s}" for n in methods))
for i, s in enumerate(table_sigmas):
    print(f"{s:6.2f} " + "".join(f"{table[n][i]:9.3g}" for n in methods))

fig, ax = plt.subplots(figsize=(6.5, 4.2))
for name, errs in table.items():
    ax.loglog(table_sigmas, errs, "o-", label=name)
ax.axhline(1.0, color="k", ls=":", lw=0.8)
ax.set(xlabel="σ", ylabel="E||g - g_exact|| / E||g_exact||", title="guidance error on the ring testbed")
ax.legend()
plt.tight_layout()
plt.show()

# %%
# Claims: ΠGDM's spread beats DPS's point mass by more than 10x wherever sigma >= 0.5, and beats DMPS at
# every level; DMPS beats DPS by more than 1.5x where sigma >= 1, and its own error grows like sigma there
# (3 to 5 times larger at sigma = 20 than at sigma = 5); all three tend to the exact score as sigma -> 0
# (error < 2 % at sigma = 0.01).
assert all(table["ΠGDM"][i] < table["DPS"][i] / 10 for i, s in enumerate(table_sigmas) if s >= 0.5), table
assert all(p < q for p, q in zip(table["ΠGDM"], table["DMPS"])), table
assert all(table["DMPS"][i] < table["DPS"][i] / 1.5 for i, s in enumerate(table_sigmas) if s >= 1), table
assert 3 < table["DMPS"][0] / table["DMPS"][1] < 5, table
assert all(errs[-1] < 0.02 for errs in table.values()), table

# %% [markdown]
# DPS is wrong by a factor of about 40 at high noise: its guidance is far too long (lesson 07).
# ΠGDM's relative error stays below 0.6 at every level — its $r^2$ is the spread of a unit Gaussian,
# and the ring, of radius 1, is not far from one. DMPS sits in between, for a reason that shows at
# high noise: its flat guess centres $x_0\mid x$ at $x$ itself, far outside the ring when $\sigma$ is large,
# while the true $x_0\mid x$ stays on the ring whatever $x$ is. So DMPS pulls on $x$ with a force of order
# $1/\sigma$ where the exact likelihood, which hardly depends on $x$, gives one of order $1/\sigma^2$: the
# relative error grows like $\sigma$. At low noise the ring's shape decides $p(x_0\mid x)$, and ΠGDM, with
# the network's $\hat x_0$ and a spread around it, follows it best. DMPS never consults the network for
# its likelihood: that is the price of saving the backward pass.
#
# ## 4. DMPS through the SVD; its DDPM and flow versions
#
# The DMPS guidance needs $(\sigma_y^2 I + \sigma^2AA^\top)^{-1}$ at every step, with $\sigma$ changing. With the
# SVD $A = U\Sigma V^\top$ (singular values $s_i$) the matrix is diagonal in the basis $U$:
#
# $$ g_{\rm DMPS} = V\,\Sigma\,\big(\sigma_y^2 I + \sigma^2\Sigma^2\big)^{-1}U^\top(y - Ax)
#    = \sum_i \frac{s_i}{\sigma_y^2 + \sigma^2 s_i^2}\,v_i\,u_i^\top(y - Ax), $$
#
# (Meng & Kabashima 2022, Thm. 2): a cost of one $A$, one $U^\top$ and one $V$ per step, $O(n)$ for the
# structured operators of imaging. Each direction $i$ is weighted by $s_i/(\sigma_y^2+\sigma^2s_i^2)$: like
# DPS ($s_i/\sigma_y^2$) when $\sigma s_i\ll\sigma_y$, like a pseudo-inverse ($1/(\sigma^2s_i)$) when $\sigma s_i\gg\sigma_y$.
# The library's operators expose `op.svd()` where it is cheap (matrices, inpainting, downsampling,
# circular blur, colorization, the compressed-sensing matrices, single-coil MRI); for the others (CT,
# multi-coil MRI, zero-padded blur) `guidance.gaussian_solve` falls back to conjugate gradients on
# $(\sigma_y^2 I + \sigma^2AA^\top)v = y - Ax$. We check the SVD form three ways: written out from
# `torch.linalg.svd` for a random matrix, against the dense $m\times m$ solve, and, for a random
# inpainting mask, against the CG form.

# %%
g = seeded(2)
A_mat = torch.randn(5, 12, generator=g, dtype=F64)
lik_mat = Likelihood.measure(Matrix(A_mat), GaussianNoise(0.05), torch.rand(1, 12, generator=g, dtype=F64),
                             generator=g)
x = torch.randn(6, 12, generator=g, dtype=F64)
sigma = 0.7
U, s_vals, Vh = torch.linalg.svd(A_mat, full_matrices=False)
resid = lik_mat.y - x @ A_mat.T                                    # (6, 5)
by_hand = ((resid @ U) * s_vals / (0.05 ** 2 + sigma ** 2 * s_vals ** 2)) @ Vh
M = 0.05 ** 2 * torch.eye(5, dtype=F64) + sigma ** 2 * A_mat @ A_mat.T
dense = torch.linalg.solve(M, resid.T).T @ A_mat
library = guidance.dmps(None, x, sigma, lik_mat)
mask = random_mask(16, 0.3, generator=g).to(F64)
lik_mask = Likelihood.measure(Inpaint(mask), GaussianNoise(0.05), torch.rand(2, 1, 16, 16, generator=g, dtype=F64),
                              generator=g)
x_img = torch.randn(2, 1, 16, 16, generator=g, dtype=F64)
svd_vs_cg = (guidance.dmps(None, x_img, sigma, lik_mask)
             - guidance.dmps(None, x_img, sigma, lik_mask, use_svd=False)).abs().max().item()
svd_gaps = {"by hand vs library": (by_hand - library).abs().max().item(),
            "dense solve vs library": (dense - library).abs().max().item(),
            "inpainting, SVD vs CG": svd_vs_cg}
for k, v in svd_gaps.items():
    print(f"{k:24s} {v:.1e}")

# %%
# Claim: the SVD form, the dense form and the CG form of the DMPS guidance agree to rounding.
assert max(svd_gaps.values()) < 1e-10, svd_gaps

# %% [markdown]
# **Using the guidance in a sampler.** A score estimate $g \approx \nabla\log p(y\mid x)$ turns any prior sampler
# into a posterior sampler: the posterior score is the prior score plus $g$, i.e. the sampler runs with
# the *posterior denoiser* $D_y(x,\sigma) = D(x,\sigma) + \sigma^2 g$ (`guidance.posterior_denoiser`). In VE
# coordinates a DDPM step gives the score the weight $\sigma^2-\sigma'^2$, a DDIM step (the exact
# probability-flow Euler step) the weight $\sigma(\sigma-\sigma')$. The two versions of DMPS are these two
# samplers, with the likelihood part scaled by $\lambda$:
#
# * **DDPM version** (Meng & Kabashima, Alg. 1): $x' = \mathrm{DDPM}(x) + \lambda\,(\sigma^2-\sigma'^2)\,g_{\rm DMPS}(x)$,
#   the paper's $x_{t-1} \mathrel{+}= \lambda\frac{1-\alpha_t}{\sqrt{\alpha_t}}\nabla_{x_t}\log\tilde p(y\mid x_t)$ in VE coordinates
#   (`solvers.dmps`).
# * **Flow version**: rectified flow $x_t = a_t x_0 + b_t\varepsilon$ with $a_t = 1-t$, $b_t = t$ (Liu, Gong & Liu,
#   ICLR 2023). Its state is our VE state scaled, $x = x_t/a_t$ with $\sigma = b_t/a_t$; DMPS's flat guess is
#   $x_0\mid x_t\approx\mathcal N(x_t/a_t,\ (b_t/a_t)^2 I)$, so the residual is $y - Ax_t/a_t$. The flow's Euler step is exactly
#   DDIM, and the extra term is $\lambda\,\sigma(\sigma-\sigma')\,g_{\rm DMPS}$ (`solvers.dmps_flow`).
#
# **Conventions the library chose.** The official DMPS code uses $\lambda = 1.75$ for every task; the
# library keeps it as the default of `solvers.dmps`. With $\lambda = 1$ the sampler follows the flat-prior
# posterior exactly (it *is* DDPM with $D_y$); $\lambda > 1$ trusts the data more. The paper evaluates
# the guidance at $x_t$; the official code evaluates it at the sample *after* the DDPM step (with the
# pre-step $\bar\alpha_t$). The library follows the paper and offers the code's point as
# `code_point=True`. There is no official flow code; `solvers.dmps_flow` uses $\lambda = 1$.
#
# We run both versions on the ring (40 steps, 1000 samples, the exact denoiser) beside the exact
# posterior.

# %%
K40 = karras_sigmas(40, 0.005, 20.0)
ring_runs = {"DMPS (DDPM), λ = 1": (solvers.dmps, {"lam": 1.0}),
             "DMPS (DDPM), λ = 1.75": (solvers.dmps, {"lam": 1.75}),
             "DMPS (flow), λ = 1": (solvers.dmps_flow, {"lam": 1.0})}
ring_out = {}
for name, (solver, kw) in ring_runs.items():
    g = seeded(3)
    ring_out[name] = solver(ring.denoiser, 20 * torch.randn(1000, 2, generator=g, dtype=F64), K40, lik_ring,
                            generator=g, **kw)
exact_pts = post.sample(1000, seeded(4))

fig, axes = plt.subplots(1, 4, figsize=(15, 4))
for ax, (name, pts) in zip(axes, [("exact posterior", exact_pts), *ring_out.items()]):
    ax.scatter(*ring.sample(1000, seeded(5)).T, s=1, alpha=0.2, c="grey")
    ax.scatter(*pts.T, s=2, alpha=0.5)
    ax.axvline(0.5, color="k", lw=0.6)
    ax.set(aspect="equal", xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), title=f"{name}\nstd of x₁: {pts[:, 0].std():.3f}")
plt.tight_layout()
plt.show()

main_modes = post.means[post.weights > 0.1]                      # (0.60, ±0.71): 99 % of the posterior
upper = {name: (pts[:, 1] > 0).double().mean().item() for name, pts in ring_out.items()}
near_mode = {name: (torch.cdist(pts, main_modes).min(1).values < 0.3).double().mean().item()
             for name, pts in [("exact posterior", exact_pts), *ring_out.items()]}
spread = {name: pts[:, 0].std().item() for name, pts in [("exact posterior", exact_pts), *ring_out.items()]}
print("share in the upper half:", {k: round(v, 2) for k, v in upper.items()})
print("share within 0.3 of the two posterior modes:", {k: round(v, 3) for k, v in near_mode.items()})
print("std of x₁:", {k: round(v, 3) for k, v in spread.items()})

# %%
# Claims: both versions find both posterior modes in equal shares (each 40-60 %); but where the exact
# posterior has more than 95 % of its samples within 0.3 of the two modes, DMPS with lambda = 1 has
# fewer than 80 % there and spreads more than 1.5 times as widely along the measured coordinate;
# lambda = 1.75 narrows the samples and puts more of them near the modes.
assert all(0.4 < u < 0.6 for u in upper.values()), upper
assert near_mode["exact posterior"] > 0.95, near_mode
for name in ("DMPS (DDPM), λ = 1", "DMPS (flow), λ = 1"):
    assert near_mode[name] < 0.8 and spread[name] > 1.5 * spread["exact posterior"], (near_mode, spread)
assert spread["DMPS (DDPM), λ = 1.75"] < 0.8 * spread["DMPS (DDPM), λ = 1"], spread
assert near_mode["DMPS (DDPM), λ = 1.75"] > near_mode["DMPS (DDPM), λ = 1"] + 0.05, near_mode

# %% [markdown]
# Where the prior is informative, the flat guess over-states the spread of $x_0\mid x$ and thus
# under-weights the data: the $\lambda = 1$ samples are too wide along $x_1$, and some settle on the
# ring's components at $(0.75, 0)$ and $(0.25, \pm1)$, which the exact posterior almost excludes. The
# code's $\lambda = 1.75$ is an empirical correction for this. For a prior that really is flat, $\lambda = 1$ is
# calibrated and 1.75 over-concentrates the samples (the library's tests measure both). The flow
# version is an ODE: from its random starts it moves deterministically, the guidance pulls $x_1$
# towards the data at a rate that depends on $x_2$, and no fresh noise spreads the samples again, so
# they end on a curve.
#
# ## 5. DDNM: the range space from $y$, the null space from the prior
#
# Any image splits into a part that $A$ sees and a part it does not:
#
# $$ x = \underbrace{A^+A\,x}_{\text{range of }A^\top} + \underbrace{(I - A^+A)\,x}_{\text{null space of }A},\qquad A(I-A^+A) = 0 . $$
#
# For noise-free data $y = Ax_0$ the first part is known: $A^+Ax_0 = A^+y$. DDNM (Wang, Yu & Zhang 2023,
# Eq. 12–13) therefore corrects Tweedie's estimate at each step by keeping only its null-space part,
#
# $$ \hat x_{0} = A^+y + (I - A^+A)\,D(x,\sigma) = D - A^+(AD - y),\qquad A\hat x_0 = y, $$
#
# and continues as DDIM from the corrected estimate, with fresh noise mixed in:
# $x' = \hat x_0 + \sigma'\big(\eta z + \sqrt{1-\eta^2}\,\hat\varepsilon\big)$, $\hat\varepsilon = (x - D)/\sigma$. (This $\eta$ is DDNM's: $\eta = 1$ adds only
# fresh noise; the official code uses $\eta = 0.85$, the library's default.) No likelihood, no
# gradient: one network call and one $A^+$ per step. The last step has $\sigma' = 0$, so the output
# *is* a corrected estimate and satisfies $Ax = y$ exactly.
#
# **With noise** the correction would copy the noise into the image. DDNM+ (Eq. 17–19) shrinks it per
# singular direction: where the measurement noise of direction $i$, $\tau_i = \sigma_y/s_i$, exceeds the next level
# $\sigma'$, it applies only the fraction $\sigma'\sqrt{1-\eta^2}/\tau_i$ of the correction, and it reduces the injected
# noise where $y$ already brings some, so the total variance stays $\sigma'^2$. `solvers.ddnm` does DDNM+
# when $\sigma_y > 0$ and the operator has an SVD, plain DDNM otherwise (with $A^+$ by CGLS when there is
# no SVD). The paper's "time travel" (re-noising and repeating a stretch of steps) is not implemented;
# the official code's configurations switch it off.
#
# We super-resolve noise-free $4\times$ downsampled phantoms ($4\times4$ average pooling to $16\times16$) with the
# shipped phantom prior, 50 steps, and show the two parts of the answer.

# %%
D = pretrained.load("phantom64")
truth = held_out_phantoms(2, 64, 10_000)                            # never seen in training
sr = Downsample(4)
lik_sr0 = Likelihood(sr, GaussianNoise(0.0), sr.A(truth))          # sigma_y = 0: DDNM, not DDNM+
sigmas50 = karras_sigmas(50).float()
g = seeded(6)
ddnm_out = solvers.ddnm(D, sigmas50[0] * torch.randn(2, 1, 64, 64, generator=g), sigmas50, lik_sr0, eta=0.85,
                        generator=g)
range_part = sr.pinv(lik_sr0.y)                                     # A⁺y: each 16 x 16 pixel as a 4 x 4 block
null_part = ddnm_out - sr.pinv(sr.A(ddnm_out))                      # (I - A⁺A) x: what the prior added
ddnm_misfit = (sr.A(ddnm_out) - lik_sr0.y).abs().max().item()
sr_psnr = {"A⁺y": psnr(range_part.clamp(0, 1), truth), "DDNM": psnr(ddnm_out.clamp(0, 1), truth)}
print(f"max |A x - y| of the DDNM output: {ddnm_misfit:.1e}")
for name, p in sr_psnr.items():
    print(f"{name:5s} PSNR " + ", ".join(f"{v:.2f}" for v in p.tolist()))
show_images([panel[k] for k in range(2) for panel in (truth, range_part, null_part + 0.5, ddnm_out)],
            ncols=4, size=2.3,
            titles=[t for k in range(2) for t in ("truth", f"A⁺y (range) {sr_psnr['A⁺y'][k]:.1f} dB",
                                                  "(I - A⁺A)x (null) + 0.5", f"DDNM = sum {sr_psnr['DDNM'][k]:.1f} dB")],
            suptitle="noise-free 4× super-resolution: the range part comes from y, the null part from the prior")
plt.show()

# %%
# Claims: the DDNM output reproduces the noise-free measurement to float32 rounding, and beats the
# pseudo-inverse by more than 4 dB on both phantoms.
assert ddnm_misfit < 1e-5, ddnm_misfit
assert (sr_psnr["DDNM"] - sr_psnr["A⁺y"]).min() > 4.0, sr_psnr

# %% [markdown]
# ## 6. DDS: a few conjugate-gradient steps instead of $A^+$
#
# DDNM needs $A^+$ and DMPS the SVD; for CT (a Radon transform) neither is cheap. DDS (Chung, Lee &
# Ye, ICLR 2024, Alg. 1) keeps DDNM's loop — Tweedie, a data step on $\hat x_0$, re-noising — and makes the
# data step a few conjugate-gradient (CG) iterations started at $\hat x_0$:
#
# $$ \hat x_0' \approx \arg\min_x\ \tfrac{\gamma}{2}\|y - Ax\|^2 + \tfrac12\|x - \hat x_0\|^2,
#    \qquad (I + \gamma A^\top A)\,x = \hat x_0 + \gamma A^\top y , $$
#
# or, for $\sigma_y = 0$, CG on the normal equations $A^\top Ax = A^\top y$. CG needs only $A$ and $A^\top$. Started at
# $\hat x_0$ its iterates stay in $\hat x_0 + \mathrm{span}\{A^\top r, (A^\top A)A^\top r, \dots\}$, a Krylov subspace inside
# $\hat x_0 + \mathrm{range}(A^\top)$: the null-space part of $\hat x_0$ is never touched, as in DDNM, and with
# enough iterations the normal-equation version *is* DDNM's projection. The paper's argument is that
# a few steps ($M = 5$) in this subspace keep $\hat x_0$ near the clean-data manifold, so the whole
# chain needs few network calls (the official code: 50 steps).
#
# **Convention.** The official code always runs its $M$ iterations; `dds_consistency` stops a sample
# early once its residual is below $10^3$ times machine epsilon relative to the right-hand side: on a
# singular $A^\top A$ further iterations would only divide rounding noise by rounding noise.
#
# We watch CG on the `ct20` task (20 views, $\sigma_y = 0.7$ in ray-sum units) from a noisy estimate
# $\hat x_0$ (the truth plus noise of std 0.1). CG minimises the quadratic objective $f$ of the subproblem
# over a growing subspace, so $f$ falls at every iteration (its residual need not).

# %%
lik_ct = tasks.make("ct20", truth[:1], seeded(7))
x0_rough = (truth[:1] + 0.1 * torch.randn(truth[:1].shape, generator=seeded(8))).clamp(0, 1)


def objective(x, gamma=1.0):
    """The DDS data subproblem gamma/2 ||y - A x||² + 1/2 ||x - x̂0||², per sample."""
    return (gamma / 2 * (lik_ct.y - lik_ct.op.A(x)).flatten(1).pow(2).sum(1)
            + 0.5 * (x - x0_rough).flatten(1).pow(2).sum(1)).item()


cg_steps = list(range(0, 11))
f_iter = [objective(dds_consistency(x0_rough, lik_ct.y, lik_ct.op, gamma=1.0, n_iter=n)) for n in cg_steps]
f_best = objective(dds_consistency(x0_rough, lik_ct.y, lik_ct.op, gamma=1.0, n_iter=200))
gap = [(f - f_best) / (f_iter[0] - f_best) for f in f_iter]
fig, ax = plt.subplots(figsize=(5.5, 3.6))
ax.semilogy(cg_steps, gap, "o-")
ax.set(xlabel="CG iterations", ylabel="(f - f*) / (f(x̂0) - f*)", title="DDS data step on 20-view CT (γ = 1)")
plt.tight_layout()
plt.show()
print("remaining objective gap after 1, 2, 5, 10 CG steps: " + ", ".join(f"{gap[n]:.2e}" for n in (1, 2, 5, 10)))

# %%
# Claim: CG decreases the data subproblem's objective at every iteration, and five steps (the paper's
# M) remove more than 90 % of the gap to its minimum.
assert all(b < a for a, b in zip(f_iter, f_iter[1:])), f_iter
assert gap[5] < 0.1, gap

# %% [markdown]
# ## 7. Speed: DMPS, DDNM and DDS call the network once, without a backward pass
#
# We run every solver of this lesson and DPS on one phantom, $4\times$ super-resolution with noise
# ($\sigma_y = 0.025$, the `sr4` task), the same 25-step schedule and the same start. A wrapper counts the
# network calls and those whose output is differentiated. The time per step is measured apart, on
# one-step runs ($\sigma = 1\to0$) of all six solvers in turn, five rounds, and we report each solver's
# median: interleaving makes a busy spell of the machine hit all of them alike. The settings are given
# explicitly: DPS $\zeta' = 0.5$, ΠGDM $\zeta = 1$, DMPS $\lambda = 1.75$, DMPS-flow $\lambda = 1$, DDNM+ and DDS
# $\eta = 0.85$, DDS $\gamma = 100$ (for this operator, $s_i = 1/4$, the official $\gamma = 1$ gives
# $\gamma s_i^2 = 1/16$ and barely moves the estimate).
#
# **ΠGDM's step weight.** The library adds the guidance to the denoiser, $\hat x_0 + \zeta\sigma^2 g$, and takes
# the DDIM step from there: with $\zeta = 1$ and an exact $g$ that is the step of the posterior
# denoiser. The reference implementation (by the same group, in NVlabs' RED-diff repository) adds
# $\sqrt{\bar\alpha_{t-1}}\sqrt{\bar\alpha_t}\,g$ to the VP state with $g$ its noiseless form without the $1/r^2$;
# in VE coordinates the two weightings differ by the factor $(1+\sigma^2)(1-\sigma'/\sigma)$. That code also starts
# from $A^+y$ plus noise, where the library's solvers start from whatever state they are given (here
# $\sigma_{\max} z$, as for the others).

# %%
lik_sr = tasks.make("sr4", truth[:1], seeded(9))
sigmas25 = karras_sigmas(25).float()
race = {"DPS": (solvers.dps, {"zeta": 0.5}),
        "ΠGDM": (solvers.pgdm, {"zeta": 1.0}),
        "DMPS": (solvers.dmps, {"lam": 1.75}),
        "DMPS-flow": (solvers.dmps_flow, {"lam": 1.0}),
        "DDNM+": (solvers.ddnm, {"eta": 0.85}),
        "DDS": (solvers.dds, {"eta": 0.85, "gamma": 100.0, "n_cg": 5})}
speed, race_out = {}, {}
for name, (solver, kw) in race.items():                              # full runs: counts and images
    counted = CountingDenoiser(D)   # counts calls, and calls with a backward pass
    g = seeded(10)
    race_out[name] = solver(counted, sigmas25[0] * torch.randn(1, 1, 64, 64, generator=g), sigmas25, lik_sr,
                            generator=g, **kw).clamp(0, 1)
    speed[name] = {"calls": counted.calls, "with grad": counted.with_grad,
                   "PSNR": psnr(race_out[name], truth[:1]).item()}

one_step = torch.tensor([1.0, 0.0])                                  # a one-step schedule: sigma = 1 -> 0
x_mid = truth[:1] + torch.randn(1, 1, 64, 64, generator=seeded(11))
seconds = {name: [] for name in race}
for _ in range(5):                                                   # interleaved: a busy spell hits all
    for name, (solver, kw) in race.items():
        t = time.perf_counter()
        solver(D, x_mid, one_step, lik_sr, generator=seeded(12), **kw)
        seconds[name].append(time.perf_counter() - t)
for name in race:
    speed[name]["ms/step"] = 1e3 * torch.tensor(seconds[name]).median().item()
base_sr = psnr(lik_sr.op.pinv(lik_sr.y).clamp(0, 1), truth[:1]).item()
print(f"{'':10s} {'ms/step':>8s} {'calls':>6s} {'with grad':>10s} {'PSNR':>6s}    (A⁺y: {base_sr:.2f} dB)")
for name, row in speed.items():
    print(f"{name:10s} {row['ms/step']:8.0f} {row['calls']:6d} {row['with grad']:10d} {row['PSNR']:6.2f}")

fig, ax = plt.subplots(figsize=(7, 3.4))
ax.barh(list(speed)[::-1], [row["ms/step"] for row in speed.values()][::-1],
        color=["tab:red" if row["with grad"] else "tab:blue" for row in speed.values()][::-1])
ax.set(xlabel="median time per step (ms)", title="red: a backward pass per step; blue: forward only")
plt.tight_layout()
plt.show()
show_images([truth[:1], lik_sr.op.pinv(lik_sr.y), *race_out.values()], ncols=8, size=1.9,
            titles=["truth", f"A⁺y {base_sr:.1f} dB"] + [f"{n} {r['PSNR']:.1f} dB" for n, r in speed.items()])
plt.show()

# %%
# Claims: DPS and ΠGDM differentiate through the network at every step; DMPS, DMPS-flow, DDNM+ and DDS
# call it once per step and never differentiate; a DMPS step is more than 1.3 times faster than a DPS
# step (a forward pass against a forward and a backward pass; 1.7 to 2.2 times in our runs).
assert all(speed[n]["calls"] == speed[n]["with grad"] == 25 for n in ("DPS", "ΠGDM")), speed
assert all(speed[n]["calls"] == 25 and speed[n]["with grad"] == 0 for n in ("DMPS", "DMPS-flow", "DDNM+", "DDS"))
dps_over_dmps = speed["DPS"]["ms/step"] / speed["DMPS"]["ms/step"]
print(f"DPS step / DMPS step: {dps_over_dmps:.2f}x")
assert dps_over_dmps > 1.3, speed

# %% [markdown]
# The image quality of a 25-step run on one phantom says little about the methods (each was tuned
# elsewhere, for other step counts and other tasks; the course's benchmark compares them on many
# phantoms with tuned settings). What this section measures is the price per step: the methods
# without a network gradient cost one forward pass plus some cheap linear algebra, DPS and ΠGDM a
# forward and a backward pass — and in memory, the backward pass must keep every activation.
#
# ## Summary
#
# * A Gaussian guess for $p(x_0\mid x_t)$ makes $p(y\mid x_t)$ Gaussian in closed form. DPS's point mass
#   has no spread and over-weights the data at high noise; ΠGDM adds $r^2 = \sigma^2/(1+\sigma^2)$ through
#   $AA^\top$ and is exact for a unit Gaussian prior (float64 precision here); DMPS's flat guess
#   $\mathcal N(x,\sigma^2I)$ is exact only as the prior flattens (error $\propto 1/s^2$).
# * On the ring, ΠGDM's relative error stays below 0.6 at every level, DPS's reaches 40 and DMPS's lies
#   in between: its flat guess centres $x_0\mid x$ at $x$, and its error grows like $\sigma$ at high noise.
# * DMPS's guidance is $V\Sigma(\sigma_y^2 + \sigma^2\Sigma^2)^{-1}U^\top(y - Ax)$: no network gradient, $O(n)$ with a structured
#   SVD, CG otherwise. Its DDPM and flow versions are the DDPM and DDIM samplers driven by the posterior
#   denoiser $D + \lambda\sigma^2 g$; the official $\lambda = 1.75$ narrows the samples.
# * DDNM replaces the range-space part of $\hat x_0$ by $A^+y$: $Ax = y$ exactly without noise; DDNM+
#   shrinks the correction per singular direction with noise. DDS makes this data step a few CG
#   iterations, for operators such as CT that have no cheap $A^+$.
# * DMPS, DDNM and DDS call the network once per step without a backward pass; a DMPS step was 1.7 to
#   2.2 times faster than a DPS step in our runs on a CPU.
#
# **References.** J. Song, A. Vahdat, M. Mardani & J. Kautz, *Pseudoinverse-guided diffusion models
# for inverse problems*, ICLR 2023 (ΠGDM, Eq. 7–8, Alg. 1). X. Meng & Y. Kabashima, *Diffusion model
# based posterior sampling for noisy linear inverse problems*, arXiv:2211.12343, 2022 (DMPS,
# Assumption 1, Thm. 1–2, Alg. 1). Y. Wang, J. Yu & J. Zhang, *Zero-shot image restoration using
# denoising diffusion null-space model*, ICLR 2023 (DDNM, DDNM+, Eq. 12–19). H. Chung, S. Lee &
# J. C. Ye, *Decomposed diffusion sampler for accelerating large-scale inverse problems*, ICLR 2024
# (DDS, Alg. 1). H. Chung, J. Kim, M. T. McCann, M. L. Klasky & J. C. Ye, *Diffusion posterior sampling
# for general noisy inverse problems*, ICLR 2023 (DPS). X. Liu, C. Gong & Q. Liu, *Flow straight and
# fast: learning to generate and transfer data with rectified flow*, ICLR 2023.

# %%
print(f"lesson run time {time.perf_counter() - start_time:.0f} s")
