# %% [markdown]
# # 05 · Training a prior — exercises
#
# Companion to `lessons/05_training_a_prior.py`. You will write the pieces of the training loop of
# `diffcourse.prior.train`:
#
# 1. EDM's **loss weight** $\lambda(\sigma)$ and why it is the natural one for a preconditioned denoiser,
# 2. the **noise prediction** $\hat\epsilon$ of a denoiser (the DDPM parameterization),
# 3. the **exponential moving average** (EMA) of the weights,
# 4. one full **training step**: draw $\sigma$ and $z$, weighted loss, zero the gradients, backward,
#    optimiser step — and then train a tiny prior with the library's loop.
#
# **Learning goals.** Read EDM's training choices (Karras et al. 2022, Eq. 8 and Table 1) as
# equations you can write yourself; see that the $\epsilon$-, $x_0$- and score losses differ only by
# their weighting; know what an EMA does to the noise of stochastic gradient descent; write a
# training step that is reproducible under a seeded `torch.Generator`.
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's implementation, so the notebook
# runs top to bottom even before you start.
#
# **Conventions** (as in `diffcourse.prior.train`): images in $[0, 1]$, $\sigma_\text{data} = 0.5$,
# $\ln\sigma \sim \mathcal N(P_\text{mean}, P_\text{std}^2)$ with $P_\text{mean} = -1.2$,
# $P_\text{std} = 1.2$ (EDM's values, applied to $[0,1]$ images rather than EDM's $[-1, 1]$), and
# the per-sample loss $\lambda(\sigma)\cdot\text{mean over pixels of }(D - x_0)^2$, averaged over the batch.

# %%
import dataclasses
import time

import matplotlib.pyplot as plt
import torch

from diffcourse import metrics, phantoms
from diffcourse._validate import as_sigma
from diffcourse.checks.lesson05 import check_dsm_step, check_edm_weight, check_ema_update, check_eps_from_denoiser
from diffcourse.plot import show_images
from diffcourse.prior.train import PRESETS, train

F64 = torch.float64

# %% [markdown]
# ## Exercise 1 · EDM's loss weight
#
# The denoiser loss $\mathbb E\,\lambda(\sigma)\,\|D_\theta(x_0 + \sigma z, \sigma) - x_0\|^2$ needs a
# weight per noise level. EDM writes the denoiser as
# $D = c_\text{skip}\,x + c_\text{out}\,F_\theta(c_\text{in}\,x, c_\text{noise})$ with
# $c_\text{out}(\sigma) = \sigma\sigma_\text{data}/\sqrt{\sigma^2 + \sigma_\text{data}^2}$, so that
# $\|D - x_0\|^2 = c_\text{out}^2\,\|F_\theta - F_\text{target}\|^2$. Choosing
#
# $$ \lambda(\sigma) = \frac{\sigma^2 + \sigma_\text{data}^2}{(\sigma\,\sigma_\text{data})^2} = \frac{1}{c_\text{out}(\sigma)^2} $$
#
# gives the raw network $F_\theta$ the same unit-weighted regression problem at every $\sigma$
# (Karras et al. 2022, Table 1 and Sec. 5). Complete `edm_weight`: `sigma` is a tensor of noise
# levels (any shape) or a number; return $\lambda(\sigma)$ elementwise.

# %%
def edm_weight(sigma, sigma_data=0.5):
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (Karras et al. 2022, Table 1)."""
    ### BEGIN SOLUTION
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    ### END SOLUTION


# %%
check_edm_weight(edm_weight)

# %% tags=["solution"]
assert check_edm_weight(edm_weight, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# **Where the weight sits.** With the reference answer, compare $\lambda(\sigma)$ with the
# $1/\sigma^2$ weight that the $\sigma^2$-weighted *score* loss of lesson 02 gives the denoiser
# (Tweedie: $\sigma^2\|s + z/\sigma\|^2 = \|D - x_0\|^2/\sigma^2$), together with the log-normal density
# of the training noise levels. For small $\sigma$ the two weights agree; for large $\sigma$, EDM's
# weight levels off at $1/\sigma_\text{data}^2 = 4$ instead of vanishing.

# %%
sig = torch.logspace(-3, 2, 200, dtype=F64)
lam = check_edm_weight.reference(sig)
density = torch.exp(-((sig.log() + 1.2) ** 2) / (2 * 1.2**2)) / (1.2 * (2 * torch.pi) ** 0.5)  # of ln sigma

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.loglog(sig, lam, label=r"EDM $\lambda(\sigma)$")
ax.loglog(sig, 1 / sig**2, "--", label=r"$1/\sigma^2$ (score loss)")
ax.set_xlabel(r"$\sigma$"); ax.set_ylabel("weight"); ax.legend(loc="lower left")
ax2 = ax.twinx()
ax2.semilogx(sig, density, color="tab:gray", alpha=0.6)
ax2.set_ylabel(r"density of $\ln\sigma$", color="tab:gray")
plt.title("loss weight and training noise levels")
plt.show()

c_out = sig * 0.5 / (sig**2 + 0.25).sqrt()
assert torch.allclose(lam * c_out**2, torch.ones_like(sig))              # lambda = 1 / c_out^2
lam_small, lam_large = check_edm_weight.reference(0.01), check_edm_weight.reference(80.0)
assert abs(lam_small * 0.01**2 - 1) < 1e-3                               # small sigma: 1 / sigma^2
assert abs(lam_large - 4) < 1e-3                                         # large sigma: 1 / sigma_data^2

# %% [markdown]
# ## Exercise 2 · The noise prediction of a denoiser
#
# DDPM, DDIM and DPS use networks that predict the **noise** rather than the clean image. For the
# VE state $x = x_0 + \sigma\epsilon$, Tweedie's denoiser gives it as
#
# $$ \hat\epsilon(x, \sigma) = \mathbb E[\epsilon \mid x] = \frac{x - D(x, \sigma)}{\sigma} . $$
#
# Complete `eps_from_denoiser`. `sigma` is a number or a tensor of shape `(B,)` (one level per
# image); `as_sigma(sigma, x)` turns either into a tensor of shape `(B, 1, ..., 1)` that broadcasts
# against `x`. Call `D` with the `sigma` you were given.

# %%
def eps_from_denoiser(D, x, sigma):
    """eps_hat = (x - D(x, sigma)) / sigma (Ho et al. 2020, Sec. 3.2, in VE form); x (B, ...), sigma float or (B,)."""
    ### BEGIN SOLUTION
    return (x - D(x, sigma)) / as_sigma(sigma, x)
    ### END SOLUTION


# %%
check_eps_from_denoiser(eps_from_denoiser)

# %% tags=["solution"]
assert check_eps_from_denoiser(eps_from_denoiser, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# **The $\epsilon$-loss is a reweighted $x_0$-loss.** Since $\hat\epsilon - z = (x_0 - D)/\sigma$, DDPM's
# "simple" loss $\|\hat\epsilon - z\|^2$ (Ho et al. 2020, Eq. 14) is the denoiser loss with weight
# $1/\sigma^2$. For Gaussian data $x_0 \sim \mathcal N(\mu, \tau^2)$ per pixel the exact errors are
# $\mathbb E(D - x_0)^2 = \tau^2\sigma^2/(\tau^2+\sigma^2)$ and $\mathbb E(\hat\epsilon - z)^2 = \tau^2/(\tau^2+\sigma^2)$:
# at small $\sigma$ the noise is almost unpredictable (error near 1, the variance of $z$), at
# large $\sigma$ the clean image is. A Monte-Carlo check with the library's reference answer:

# %%
mu, tau = 0.4, 0.2
g = torch.Generator().manual_seed(0)
x0 = mu + tau * torch.randn(20000, 1, 2, 2, generator=g, dtype=F64)
z = torch.randn(x0.shape, generator=g, dtype=F64)


def gaussian_denoiser(x, sigma):
    """Exact E[x0 | x] for x0 ~ N(mu, tau^2) per pixel."""
    return mu + tau**2 / (tau**2 + as_sigma(sigma, x) ** 2) * (x - mu)


levels = torch.logspace(-1.5, 0.5, 9, dtype=F64)
err_D, err_eps = [], []
for s in levels.tolist():
    x = x0 + s * z
    err_D.append(((gaussian_denoiser(x, s) - x0) ** 2).mean().item())
    err_eps.append(((check_eps_from_denoiser.reference(gaussian_denoiser, x, s) - z) ** 2).mean().item())
exact_D = tau**2 * levels**2 / (tau**2 + levels**2)
exact_eps = tau**2 / (tau**2 + levels**2)

plt.figure(figsize=(5.5, 3.2))
plt.loglog(levels, exact_D, label=r"$E(D - x_0)^2$"); plt.loglog(levels, err_D, "o", color="C0")
plt.loglog(levels, exact_eps, label=r"$E(\hat\epsilon - z)^2$"); plt.loglog(levels, err_eps, "o", color="C1")
plt.xlabel(r"$\sigma$"); plt.legend(); plt.title("exact (lines) and Monte-Carlo (dots) errors, Gaussian data")
plt.show()
assert torch.allclose(torch.tensor(err_D, dtype=F64), exact_D, rtol=0.03)
assert torch.allclose(torch.tensor(err_eps, dtype=F64), exact_eps, rtol=0.03)

# %% [markdown]
# ## Exercise 3 · The exponential moving average of the weights
#
# The last iterates of stochastic gradient descent bounce around a minimum. Sampling uses an
# average of recent weights instead (Song & Ermon 2020, "Improved techniques", technique 5):
#
# $$ \bar\theta \leftarrow \beta\,\bar\theta + (1 - \beta)\,\theta, \qquad \beta \text{ close to } 1 . $$
#
# Complete `ema_update`: `ema_params` and `params` are lists of tensors of matching shapes (one per
# parameter of the network), `decay` is $\beta$. Return a **new** list of tensors and leave both
# inputs unchanged. (The library's loop does the same update in place, with `lerp_`, and eases
# $\beta$ in at the start as $\min(\beta, (1 + k)/(10 + k))$ at step $k$.)

# %%
def ema_update(ema_params, params, decay):
    """New EMA weights decay * ema + (1 - decay) * theta for each pair of tensors; inputs untouched."""
    ### BEGIN SOLUTION
    return [decay * e + (1 - decay) * p for e, p in zip(ema_params, params)]
    ### END SOLUTION


# %%
check_ema_update(ema_update)

# %% tags=["solution"]
assert check_ema_update(ema_update, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# **What the average buys.** Model the last iterates as $\theta_k = \theta^* + s\,\xi_k$ with
# independent $\xi_k \sim \mathcal N(0, I)$. After many steps the EMA's error is
# $(1-\beta)\sum_j \beta^j s\,\xi_{k-j}$, of standard deviation $s\sqrt{(1-\beta)/(1+\beta)}$ — for
# $\beta = 0.9$ about a quarter of the iterates' bounce, for $\beta = 0.999$ about 1/45. Simulated
# with the reference answer ($\theta^* = 0$, 5000 coordinates, 300 steps):

# %%
g = torch.Generator().manual_seed(1)
beta, s, n_steps = 0.9, 1.0, 300
theta = s * torch.randn(5000, generator=g, dtype=F64)
ema = [theta.clone()]
path_theta, path_ema = [], []
for _ in range(n_steps):
    theta = s * torch.randn(5000, generator=g, dtype=F64)
    ema = check_ema_update.reference(ema, [theta], beta)
    path_theta.append(theta[0].item()); path_ema.append(ema[0][0].item())

plt.figure(figsize=(6, 2.8))
plt.plot(path_theta, lw=0.8, alpha=0.6, label=r"iterate $\theta_k$ (one coordinate)")
plt.plot(path_ema, lw=1.5, label=rf"EMA, $\beta$ = {beta}")
plt.axhline(0, color="k", lw=0.5); plt.xlabel("step"); plt.legend(); plt.show()

spread, predicted = ema[0].std().item(), s * ((1 - beta) / (1 + beta)) ** 0.5
print(f"std of the EMA {spread:.4f}, predicted {predicted:.4f}, of the iterates {theta.std().item():.4f}")
assert abs(spread / predicted - 1) < 0.05

# %% [markdown]
# ## Exercise 4 · One training step
#
# Put it together: one step of denoising score matching with EDM's choices, exactly as
# `diffcourse.prior.train.edm_loss` and the loop of `train` do it (without the gradient clipping
# and learning-rate warm-up). With `generator` draw, **in this order**,
#
# 1. $\ln\sigma \sim \mathcal N(P_\text{mean}, P_\text{std}^2)$, one per image, shape `(B,)`, dtype and device of `x0`;
# 2. $z \sim \mathcal N(0, I)$ of the shape of `x0`;
#
# then compute the batch loss
# $\frac1B\sum_b \lambda(\sigma_b)\,\mathrm{mean}_\text{pixels}\big(D(x_0 + \sigma z, \sigma) - x_0\big)^2_b$
# (pass `D` the `(B,)` tensor $\sigma$), **zero the gradients**, backpropagate, take the optimiser
# step, and return the loss as a Python number. You may use your `edm_weight`. The check runs two
# steps from two identical copies of a small network and optimiser — yours and the reference —
# and compares the losses and the parameters: a forgotten `zero_grad` shows at the second step.

# %%
def dsm_step(D, opt, x0, generator, P_mean=-1.2, P_std=1.2, sigma_data=0.5):
    """One Adam step on the EDM loss (Karras et al. 2022, Eq. 8); x0 (B, C, H, W); returns the loss."""
    ### BEGIN SOLUTION
    B = x0.shape[0]
    sigma = (P_mean + P_std * torch.randn(B, generator=generator, dtype=x0.dtype, device=x0.device)).exp()
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    err = (D(x0 + as_sigma(sigma, x0) * z, sigma) - x0) ** 2                  # (B, C, H, W)
    loss = (edm_weight(sigma, sigma_data) * err.flatten(1).mean(1)).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()
    ### END SOLUTION


# %%
check_dsm_step(dsm_step)

# %% tags=["solution"]
assert check_dsm_step(dsm_step, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# ## Train a tiny prior
#
# The library's `train` repeats this step with fresh phantoms from a seeded generator, a learning-rate
# warm-up, gradient clipping and the EMA of exercise 3. The `tiny` preset (a 32×32 UNet) is cut
# to 50 steps here so the notebook stays quick; the lesson runs the full 100. Step 0 (`steps=0`) gives the
# untrained network: its output layer starts at zero, so the EDM preconditioning alone makes it
# $D = 0.5 + c_\text{skip}(\sigma)(x - 0.5)$, the exact denoiser of Gaussian data with mean 0.5 and
# standard deviation $\sigma_\text{data}$ — a fair baseline to beat.

# %%
quick = dataclasses.replace(PRESETS["tiny"], steps=50)
t0 = time.perf_counter()
tiny_D, state = train(quick, None)
print(f"{quick.steps} steps in {time.perf_counter() - t0:.1f} s")
untrained_D, _ = train(dataclasses.replace(quick, steps=0), None)

losses = torch.tensor(state["losses"])
plt.figure(figsize=(5, 3))
plt.semilogy(losses, label="per step")
plt.xlabel("step"); plt.ylabel("EDM loss"); plt.title("training the tiny prior"); plt.legend()
plt.show()
first, last = losses[:10].mean().item(), losses[-10:].mean().item()
print(f"mean loss of the first 10 steps {first:.3f}, of the last 10 {last:.3f}")
assert last < 0.6 * first, "the loss should fall by at least 40% in 50 steps"

# %% [markdown]
# The trained EMA denoiser against the noisy input and the untrained (Gaussian) baseline, at
# $\sigma = 0.2$ on head phantoms it has never seen:

# %%
x_clean = phantoms.head(4, 32, generator=torch.Generator().manual_seed(7))
noisy = x_clean + 0.2 * torch.randn(x_clean.shape, generator=torch.Generator().manual_seed(8))
with torch.no_grad():
    den, base = tiny_D(noisy, 0.2), untrained_D(noisy, 0.2)
p_noisy, p_base, p_den = (metrics.psnr(v, x_clean) for v in (noisy, base, den))
print(f"PSNR: noisy {p_noisy.mean():.1f} dB, untrained (Gaussian) {p_base.mean():.1f} dB, "
      f"tiny prior after {quick.steps} steps {p_den.mean():.1f} dB")
show_images(torch.cat([x_clean, noisy.clamp(0, 1), base.clamp(0, 1), den.clamp(0, 1)]), ncols=4, size=1.6,
            suptitle="rows: clean, noisy (σ = 0.2), untrained network, tiny prior")
plt.show()
assert (p_den > p_base + 3).all() and (p_den > p_noisy + 4).all()

# %% [markdown]
# **References.** T. Karras, M. Aittala, T. Aila, S. Laine, *Elucidating the design space of
# diffusion-based generative models*, NeurIPS 2022. J. Ho, A. Jain, P. Abbeel, *Denoising diffusion
# probabilistic models*, NeurIPS 2020. Y. Song, S. Ermon, *Improved techniques for training
# score-based generative models*, NeurIPS 2020. P. Vincent, *A connection between score matching
# and denoising autoencoders*, Neural Computation 2011.
