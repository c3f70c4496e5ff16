# %% [markdown]
# # 05 — Training a prior
#
# Every reconstruction lesson after this one stands on a **learned prior**: a network
# $D_\theta(x, \sigma) \approx \mathbb{E}[x_0 \mid x_0 + \sigma z]$ trained by denoising score
# matching on phantoms. Here we train one ourselves (a tiny one, in seconds), learn the
# engineering that makes training reliable (EMA weights, exact checkpoints), and then measure the
# prior the course ships, `diffcourse.prior.pretrained.load("phantom64")`.
#
# **Learning goals**
#
# 1. Write denoising score matching for a denoiser network, with the noise-level distribution and
#    weighting of EDM (Karras et al. 2022), and connect it to the $\sigma^2$-weighted score loss of
#    lesson 02.
# 2. Convert between the four parameterizations: clean image $x_0$, noise $\epsilon$, score $s$ and
#    velocity $v$ — one prior, four faces.
# 3. Know why we keep an exponential moving average (EMA) of the weights and how a training run is
#    checkpointed so that an interruption loses nothing (resume is *bitwise* exact).
# 4. Measure a prior: Tweedie-denoiser PSNR against the noisy input and against the best-tuned
#    total-variation denoiser, and unconditional samples.

# %%
import time

import matplotlib.pyplot as plt
import torch

from diffcourse import metrics, phantoms
from diffcourse.plot import show_images
from diffcourse.posterior.tv import tv_denoise_tuned
from diffcourse.prior import pretrained, samplers
from diffcourse.prior.denoisers import to_eps, to_score, to_velocity_flow
from diffcourse.prior.processes import VE, Flow, VPLinear, karras_sigmas
from diffcourse.prior.train import PRESETS, edm_loss, held_out_phantoms, phantom_batch, train

torch.manual_seed(0)

# %% [markdown]
# ## 1. The training data: phantoms
#
# We have no patient data in a course that must run offline, so the prior learns from generated
# phantoms (`diffcourse.phantoms`): **head-like slices** — skull, grey and white matter with smooth
# shading, ventricles, lesions, random pose and a mild deformation — and **random ellipses**.
# The smooth shading matters: piecewise-constant images are the home ground of total variation
# (TV); smooth anatomy with sharp edges is where a learned prior should win. Every training batch
# is drawn afresh from a seeded generator, so there is no data set to download and none to overfit.

# %%
g = torch.Generator().manual_seed(0)
batch = phantom_batch(16, 64, g)
show_images(batch, ncols=8, size=1.6,
            suptitle="a training batch: head slices and random ellipses")
plt.show()

# %% [markdown]
# ## 2. Denoising score matching for a denoiser
#
# Lesson 02 trained a score network with the $\sigma^2$-weighted denoising score-matching loss
# $\tfrac12\,\mathbb{E}\,\| \sigma\, s_\theta(x_0 + \sigma z, \sigma) + z \|^2$ (Vincent 2011;
# Song & Ermon 2019). With Tweedie's formula $s = (D - x)/\sigma^2$ the same loss reads, for the
# denoiser,
#
# $$ \sigma^2 \,\| s_\theta + z/\sigma \|^2 = \frac{1}{\sigma^2}\, \| D_\theta(x_0 + \sigma z, \sigma) - x_0 \|^2 .$$
#
# EDM (Karras et al. 2022, Eq. 8 and Table 1) makes two choices that train faster:
#
# * noise levels from a log-normal distribution, $\ln \sigma \sim \mathcal N(P_\text{mean}, P_\text{std}^2)$,
#   which concentrates the effort where denoising is neither trivial nor hopeless;
# * the weight $\lambda(\sigma) = (\sigma^2 + \sigma_\text{data}^2)/(\sigma\,\sigma_\text{data})^2$
#   together with a **preconditioning** $D = c_\text{skip} x + c_\text{out} F_\theta(c_\text{in} x, \tfrac14 \ln\sigma)$
#   that gives the raw network $F_\theta$ inputs and targets of about unit variance at every $\sigma$
#   (exactly so for data of standard deviation $\sigma_\text{data}$ around 0.5; our phantoms' is about 0.4).
#
# For small $\sigma$, $\lambda(\sigma) \approx 1/\sigma^2$: the $\sigma^2$-weighted score loss. For
# large $\sigma$ the weight flattens to $1/\sigma_\text{data}^2$ instead of vanishing.
#
# *Convention used here:* images in $[0, 1]$, the preconditioning centred at 0.5 with
# $\sigma_\text{data} = 0.5$, and $P_\text{mean} = -1.2$, $P_\text{std} = 1.2$ applied to our
# $[0, 1]$ images directly (EDM's values are for $[-1, 1]$ images, so our $\sigma$ distribution sits a
# factor two higher relative to the data range; that puts more training effort on the
# $\sigma \in [0.1, 1]$ range that the inverse-problem solvers use most).
#
# A check of the loss against a closed form: for Gaussian data $x_0 \sim \mathcal N(\mu, \tau^2)$ the
# exact denoiser is $\mu + \tfrac{\tau^2}{\tau^2 + \sigma^2}(x - \mu)$, and its expected squared error
# per pixel is $\tau^2\sigma^2/(\tau^2 + \sigma^2)$.

# %%
mu, tau, sigma = 0.4, 0.2, 0.3
x0 = mu + tau * torch.randn(20000, 1, 2, 2, generator=g, dtype=torch.float64)


def exact_gaussian_denoiser(x, s):
    s = torch.as_tensor(s, dtype=x.dtype).reshape(-1, 1, 1, 1)
    return mu + tau**2 / (tau**2 + s**2) * (x - mu)


ln_sigma = float(torch.tensor(sigma).log())
loss = edm_loss(exact_gaussian_denoiser, x0, g, P_mean=ln_sigma, P_std=0.0).mean().item()
weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
closed_form = weight * tau**2 * sigma**2 / (tau**2 + sigma**2)
print(f"Monte-Carlo EDM loss {loss:.4f}   closed form {closed_form:.4f}")
assert abs(loss - closed_form) < 0.02 * closed_form

# %% [markdown]
# ## 3. One prior, four parameterizations
#
# Papers train networks to predict different things. All are the same prior seen through
# Tweedie's formula (Karras et al., NeurIPS 2022, Sec. 2 and Table 1; Efron, JASA 2011):
#
# | prediction | formula in terms of $D$ | used by |
# |---|---|---|
# | clean image $\hat x_0$ | $D(x, \sigma)$ | EDM, this course |
# | noise $\hat\epsilon$ | $(x - D)/\sigma$ | DDPM, DDIM, DPS (VP time, input $x_{vp} = x/\sqrt{1+\sigma^2}$) |
# | score $s$ | $(D - x)/\sigma^2$ | NCSN, score SDE |
# | velocity $v$ | $(x_t - D)/t$ with $x_t = x/(1+\sigma)$, $t = \sigma/(1+\sigma)$ | rectified flow |
#
# `diffcourse.prior.denoisers` has one adapter per row in both directions, so that every sampler
# and solver works with every prior. Let us check that the adapters are consistent on the shipped
# network: each parameterization, converted back with the formula of the table, gives the same $\hat x_0$
# (a check of the time conversions $t(\sigma)$ and the input scalings; lesson 04 tests the samplers
# built on them against closed forms).

# %%
D = pretrained.load("phantom64")
x_clean = held_out_phantoms(4)
sigma = 0.3
x = x_clean + sigma * torch.randn(x_clean.shape, generator=g)
with torch.no_grad():
    x0_hat = D(x, sigma)
    vp = VPLinear()
    t_vp = vp.t_of_sigma(torch.full((4,), sigma))
    eps_hat = to_eps(D, vp)(x * vp.scale(torch.tensor(sigma)), t_vp)
    score_ve = to_score(D, VE(0.01, 100.0))(x, VE(0.01, 100.0).t_of_sigma(torch.full((4,), sigma)))
    t_flow = Flow().t_of_sigma(torch.full((4,), sigma))
    v_hat = to_velocity_flow(D)(x / (1 + sigma), t_flow)

err_eps = (x - sigma * eps_hat - x0_hat).abs().max().item()
err_score = (x + sigma**2 * score_ve - x0_hat).abs().max().item()
err_v = (x / (1 + sigma) - t_flow[0] * v_hat - x0_hat).abs().max().item()
print(f"max |x0 from eps - D| = {err_eps:.1e}, from score {err_score:.1e}, from velocity {err_v:.1e}")
assert max(err_eps, err_score, err_v) < 1e-4

# %% [markdown]
# ## 4. Training a tiny prior, with EMA and checkpoints
#
# `diffcourse.prior.train.train` runs the loop: draw a batch of phantoms, draw $\sigma$ and $z$,
# take an Adam step on the EDM loss, and update an **exponential moving average** of the weights,
#
# $$ \bar\theta \leftarrow \beta\, \bar\theta + (1 - \beta)\, \theta, $$
#
# which averages out the noise of the last steps of stochastic gradient descent; the EMA weights
# are the ones we sample with (Song & Ermon 2020, "Improved techniques", technique 5; Karras et al.
# 2022). The `tiny` preset trains a 32×32 model (0.27 M parameters) for 600 steps of 8 phantoms —
# about forty seconds on a laptop CPU.

# %%
tiny = PRESETS["tiny"]
t0 = time.perf_counter()
tiny_D, state = train(tiny, None)
print(f"{tiny.steps} steps in {time.perf_counter() - t0:.1f} s")
losses = torch.tensor(state["losses"])
smooth = torch.nn.functional.avg_pool1d(losses[None, None], 10, stride=1)[0, 0]
plt.figure(figsize=(5, 3))
plt.semilogy(losses, alpha=0.3, label="per step")
plt.semilogy(torch.arange(len(smooth)) + 5, smooth, label="moving average")
plt.xlabel("step"); plt.ylabel("EDM loss"); plt.legend(); plt.title("training the tiny prior")
plt.show()
first, last = losses[:15].mean().item(), losses[-15:].mean().item()
print(f"mean loss of the first 15 steps {first:.3f}, of the last 15 {last:.3f}")
assert last < 0.3 * first, "the loss should fall by at least 70% in 600 steps"

# %% [markdown]
# Even this tiny model denoises well — it has learned a good deal about phantoms in under a minute:

# %%
x_small = phantoms.head(4, 32, generator=torch.Generator().manual_seed(7))
noisy = x_small + 0.2 * torch.randn(x_small.shape, generator=g)
with torch.no_grad():
    den = tiny_D(noisy, 0.2)
print(f"noisy {metrics.psnr(noisy, x_small).mean():.1f} dB -> tiny denoiser {metrics.psnr(den, x_small).mean():.1f} dB")
assert (metrics.psnr(den, x_small) > metrics.psnr(noisy, x_small) + 10).all()
show_images(torch.cat([x_small, noisy.clamp(0, 1), den.clamp(0, 1)]), ncols=4, size=1.6,
            suptitle="rows: clean, noisy (σ = 0.2), tiny denoiser")
plt.show()

# %% [markdown]
# **Nothing is lost when a run is interrupted.** A checkpoint holds the weights, the EMA weights,
# the optimiser's moments and the states of both random generators (data and noise), and it is
# written atomically (to a temporary file, then renamed), so a crash while writing cannot corrupt
# it. Resuming therefore continues the *same* random stream: an interrupted and resumed run ends
# with exactly the weights of an uninterrupted one.

# %%
import dataclasses
import tempfile

short = dataclasses.replace(tiny, steps=10, checkpoint_every=5)
straight, _ = train(short, None)
with tempfile.TemporaryDirectory() as run_dir:
    train(short, run_dir, stop_after=6)           # "the laptop went to sleep" after 6 steps
    resumed, st = train(short, run_dir)           # same call again: continues from step 6
same = all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))
print("resumed run bitwise equal to the uninterrupted one:", same)
assert same and st["step"] == 10

# %% [markdown]
# ## 5. The shipped prior `phantom64`
#
# The prior used in the rest of the course is the same recipe at full size: a 2 M-parameter UNet
# at 64×64, trained in two stages. First 10 000 steps on the head-like phantoms and smooth random
# ellipses (`python -m diffcourse.prior.train --preset phantom64`); that prior was excellent on its
# family and poor just outside it: on the piecewise-constant Shepp–Logan phantom its denoiser lost
# to TV by 3.7 dB at σ = 0.1. Then 1 500 steps of fine-tuning at a lower learning rate on a mix that
# adds sharp-edged families, ellipses without antialiasing and random relatives of Shepp–Logan
# (`--preset phantom64_sharp`). Both commands, the settings, the code revision and the final loss are
# recorded next to the weights, and the file's SHA-256 is verified when it is loaded.

# %%
meta = pretrained.info("phantom64")
n_params = sum(p.numel() for p in D.parameters())
print(f"{n_params / 1e6:.2f} M parameters, {meta['steps']} steps of batch {meta['config']['batch_size']}, "
      f"{meta['train_seconds'] / 3600:.1f} h of training, final loss {meta['final_loss']:.4f}")
print("reproduce with:", meta["init"]["command"], "\n          then:", meta["command"])

# %% [markdown]
# **Quality of the Tweedie denoiser.** On held-out phantoms (drawn from a seed no training run
# uses) we add noise of level $\sigma$ and compare the network's $D(y, \sigma)$ with the noisy input
# and with the *best-tuned* TV denoiser — for each image the TV weight with the highest PSNR
# against the truth, an oracle a real user would not have, so the comparison flatters TV.

# %%
x_test = held_out_phantoms(8)
rows = []
for sigma in (0.1, 0.2, 0.5):
    y = x_test + sigma * torch.randn(x_test.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        d = D(y, sigma)
    tv_grid = [0.02, 0.03, 0.05, 0.07, 0.1, 0.14, 0.2, 0.3, 0.4, 0.6, 0.8, 1.2]
    tv, lam = tv_denoise_tuned(y, x_test, tv_grid, n_iter=100)
    assert lam.max() < tv_grid[-1], "the best TV weight must lie inside the grid (else widen it)"
    rows.append((sigma, y, d, tv, metrics.psnr(y, x_test).mean().item(), metrics.psnr(d, x_test).mean().item(),
                 metrics.psnr(tv, x_test).mean().item()))
    print(f"σ = {sigma:.1f}: noisy {rows[-1][4]:5.2f} dB | best TV {rows[-1][6]:5.2f} dB | "
          f"Tweedie {rows[-1][5]:5.2f} dB")

_, y, d, tv, *_ = rows[1]
show_images(torch.cat([x_test[:4], y[:4].clamp(0, 1), tv[:4].clamp(0, 1), d[:4].clamp(0, 1)]), ncols=4, size=1.8,
            suptitle="σ = 0.2 — rows: clean, noisy, best-tuned TV, Tweedie denoiser of the prior")
plt.show()

# %% [markdown]
# The claims of this lesson, checked: at $\sigma = 0.1$ the denoiser gains at least 11 dB over the
# noisy input, and at $\sigma = 0.2$ and $0.5$ it beats the oracle-tuned TV denoiser by at least 3 dB.
# TV's staircasing of the smooth shading is visible above. And on Shepp–Logan, whose hard edges are
# TV's home ground, the fine-tuned prior is not worse than the best-tuned TV either (a prior fails
# gracefully only on what its training data resemble: it still knows nothing of, say, brains).

# %%
sig01, sig02, sig05 = rows
assert sig01[5] - sig01[4] >= 11.0, "Tweedie gain at σ = 0.1"
assert sig02[5] - sig02[6] >= 3.0 and sig05[5] - sig05[6] >= 3.0, "margin over TV at σ = 0.2 and 0.5"

sl = phantoms.shepp_logan(64)
y_sl = sl + 0.1 * torch.randn(sl.shape, generator=torch.Generator().manual_seed(2))
with torch.no_grad():
    d_sl = D(y_sl, 0.1)
tv_sl, _ = tv_denoise_tuned(y_sl, sl, tv_grid, n_iter=100)
p_d, p_tv = metrics.psnr(d_sl, sl).item(), metrics.psnr(tv_sl, sl).item()
print(f"Shepp–Logan, σ = 0.1: best TV {p_tv:.2f} dB | Tweedie {p_d:.2f} dB")
assert p_d >= p_tv, "the fine-tuned prior is no worse than the best-tuned TV on Shepp–Logan"

# %% [markdown]
# **Unconditional samples.** Finally the prior as a generative model: 100 steps of ancestral
# DDPM sampling (lesson 04) on the EDM time grid ($\rho = 7$), i.e. 100 network evaluations from
# $\sigma_\text{max} = 80$ to 0 (about half a minute on a laptop CPU for 16 images). The samples should look
# like phantoms: a skull, tissue and dark ventricles, or random ellipses — not necessarily any
# phantom we have seen.

# %%
g_s = torch.Generator().manual_seed(3)
sig = karras_sigmas(100, 0.002, 80.0)
x_T = samplers.prior_sample_init((16, 1, 64, 64), 80.0, generator=g_s)
with torch.no_grad():
    samples = samplers.ddpm(D, x_T, sig, generator=g_s)
show_images(samples.clamp(0, 1), ncols=8, size=1.6,
            suptitle="unconditional samples of phantom64 (DDPM, 100 steps)")
plt.show()

# %% [markdown]
# A quantitative sanity check of the samples against held-out phantoms: the fraction of
# background (near-zero) pixels and the mean intensity of the object should match the data.
# What this check does not see, and the grid does: random-ellipse phantoms make up a quarter of
# the training data but appear less often among the samples, and less crisply, than head slices.
# A prior trained for 11 500 steps on a CPU has learned the frequent, structured family best;
# longer training (the preset's default is 20 000 steps) is the remedy.

# %%
ref = held_out_phantoms(32)
bg_s, bg_r = (samples.abs() < 0.05).float().mean().item(), (ref < 0.05).float().mean().item()
mean_s = samples[samples > 0.05].mean().item()
mean_r = ref[ref > 0.05].mean().item()
print(f"background fraction: samples {bg_s:.2f}, data {bg_r:.2f}; object mean: samples {mean_s:.2f}, data {mean_r:.2f}")
assert abs(bg_s - bg_r) < 0.12 and abs(mean_s - mean_r) < 0.1
assert samples.min() > -0.3 and samples.max() < 1.3

# %% [markdown]
# ## Summary
#
# * Denoising score matching trains a denoiser $D_\theta(x, \sigma)$; EDM's log-normal $\sigma$ and
#   weighting reweight the $\sigma^2$-weighted score loss (equal at small $\sigma$, flat at large
#   $\sigma$) and precondition the network.
# * $x_0$, $\epsilon$, score and velocity predictions are interchangeable through Tweedie.
# * EMA weights and exact, atomic checkpoints make training reliable and resumable.
# * The shipped `phantom64` prior beats the best-tuned TV denoiser by several dB on the phantoms —
#   the head room every diffusion solver in the following lessons builds on.
#
# **References.** P. Vincent, *A connection between score matching and denoising autoencoders*,
# Neural Computation 2011. Y. Song, S. Ermon, *Generative modeling by estimating gradients of the
# data distribution*, NeurIPS 2019; *Improved techniques for training score-based generative
# models*, NeurIPS 2020. T. Karras, M. Aittala, T. Aila, S. Laine, *Elucidating the design space of
# diffusion-based generative models*, NeurIPS 2022.
