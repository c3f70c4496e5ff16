# %% [markdown]
# # 03 · Langevin dynamics: sampling with a score
#
# Lessons 01–02 gave us the **score** $\nabla_x \log p(x)$ of a distribution (exactly, or learned by
# denoising score matching). This lesson turns a score into **samples**.
#
# **Learning goals**
#
# 1. Write the Langevin SDE, show that $p$ is its stationary distribution, and discretise it in
#    both step-size conventions found in papers and code (the *factor-2 trap*).
# 2. Explain why plain Langevin with the clean score fails in practice: scores are inaccurate in
#    low-density regions, and chains do not move between separated modes, so the **mode weights
#    come out wrong**.
# 3. Run **annealed Langevin dynamics** (NCSN / SMLD, Song & Ermon 2019) over a geometric noise
#    ladder with $\alpha_i \propto \sigma_i^2$, and see it recover the weights.
# 4. Predict what the final denoising step does to the variance: $\tau^4/(\tau^2+\sigma_L^2)$.
# 5. Use **concentration of measure** (the Gaussian annulus) to see why noisy images live on thin
#    shells, and why neighbouring noise levels must overlap (NCSNv2, Song & Ermon 2020).
#
# Everything runs on the exact Gaussian-mixture testbed `diffcourse.prior.toy.GaussianMixture`, so
# every sample can be compared with the truth.

# %%
import math

import matplotlib.pyplot as plt
import torch

from diffcourse.phantoms import shepp_logan
from diffcourse.prior.processes import ve_sigmas
from diffcourse.prior.samplers import annealed_langevin, langevin
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64

# %% [markdown]
# ## 1. The Langevin SDE and its stationary distribution
#
# The (overdamped) Langevin diffusion driven by the score of $p$ is
#
# $$ \mathrm{d}x_t = \nabla_x \log p(x_t)\,\mathrm{d}t + \sqrt{2}\,\mathrm{d}W_t . $$
#
# Its density $\rho_t$ obeys the Fokker–Planck equation
# $\partial_t \rho = -\nabla\cdot(\rho\,\nabla\log p) + \Delta\rho$. Put $\rho = p$: since
# $p\,\nabla\log p = \nabla p$, the drift term is $-\Delta p$ and cancels the diffusion term $+\Delta p$,
# so $\partial_t \rho = 0$: **$p$ is stationary** (and, for smooth $p$ with light tails, the limit
# from any start; Roberts & Tweedie 1996). Only the score is needed — never the normalising
# constant of $p$ (Parisi 1981; Welling & Teh 2011).
#
# **Discretisation.** Euler–Maruyama with time step $\delta$ gives the update found in code
# (the official ncsn, ncsnv2, score_sde corrector and csgm-mri-langevin repositories) and in many
# presentations:
#
# $$ \text{code form:}\qquad x \leftarrow x + \delta\, s(x) + \sqrt{2\delta}\, z, \qquad z\sim\mathcal N(0, I). $$
#
# Papers (Song & Ermon, NeurIPS 2019, Alg. 1; Welling & Teh, ICML 2011, Eq. 4) write the same step
# with $\alpha = 2\delta$:
#
# $$ \text{paper form:}\qquad x \leftarrow x + \tfrac{\alpha}{2}\, s(x) + \sqrt{\alpha}\, z . $$
#
# **Convention of this course.** `diffcourse.prior.samplers.langevin(D, x, sigma, alpha=...)` and
# `annealed_langevin` use the **paper form**; a step $\delta$ (`step_lr`) copied from official code
# is passed as `alpha = 2 * delta`. (The NCSN paper quotes $\epsilon = 2\times10^{-5}$ while its
# official code uses `step_lr = 2e-5` in the code form: the paper and its code are a factor 2 apart.)
#
# Our samplers take a **denoiser** $D(x,\sigma)$ and use the score $s = (D(x,\sigma)-x)/\sigma^2$ of
# the smoothed density $p_\sigma = p * \mathcal N(0,\sigma^2 I)$. Plain Langevin on $p$ itself is the
# limit of small $\sigma$; we use $\sigma = 0.01$ (the variance of $p_\sigma$ differs from that of
# $p$ by $10^{-4}$).
#
# **The discretisation is biased.** For a Gaussian $\mathcal N(\mu, vI)$ the paper-form update is
# $x-\mu \leftarrow (1-\tfrac{\alpha}{2v})(x-\mu) + \sqrt\alpha z$, whose stationary variance is
# $\alpha / (1-(1-\tfrac{\alpha}{2v})^2) = v/(1-\tfrac{\alpha}{4v})$, not $v$: the unadjusted
# Langevin algorithm (ULA) samples a slightly wider distribution, with an error $O(\alpha)$. (A
# Metropolis correction — MALA — would remove it; diffusion samplers live with it and take small
# steps.)

# %%
p_gauss = GaussianMixture.gaussian(torch.tensor([2.0, -1.0], dtype=F64), 1.0)   # N(mu, I) in 2-D
sigma_clean, v = 0.01, 1.0 + 0.01 ** 2                                          # p_sigma = N(mu, v I)
ula = {}
for alpha in (0.4, 0.1):
    g = torch.Generator().manual_seed(0)
    x = langevin(p_gauss.denoiser, torch.zeros(4000, 2, dtype=F64), sigma_clean, alpha=alpha,
                 n_steps=150, generator=g)
    ula[alpha] = x.var(dim=0).mean().item()
    print(f"alpha = {alpha}: variance {ula[alpha]:.3f}, ULA prediction {v / (1 - alpha / (4 * v)):.3f}, "
          f"target {v:.3f}")

# %%
# Claim: the ULA variance follows v / (1 - alpha / (4 v)), clearly above the target for alpha = 0.4.
assert abs(ula[0.4] / (v / (1 - 0.4 / (4 * v))) - 1) < 0.05
assert ula[0.4] > 1.05 * v

# %% [markdown]
# **The factor-2 trap.** The two forms agree only when drift and noise are taken from the *same*
# form. Mixing them changes the temperature: $x \leftarrow x + a\,s + \sqrt{2aT}\,z$ samples
# $p^{1/T}$ (for a Gaussian, the variance times $T$). Drift $\tfrac{\alpha}{2}s$ with noise
# $\sqrt{2\alpha}z$ has $T = 2$; drift $\delta s$ with noise $\sqrt{\delta}z$ has $T=\tfrac12$. Below
# we write these two *wrong* updates by hand, on the clean score of the same Gaussian.

# %%
def mixed_chain(drift, noise, step, n_steps=200):
    """A deliberately wrong Langevin chain: x <- x + drift*step*s + sqrt(noise*step) z."""
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(4000, 2, dtype=F64)
    for _ in range(n_steps):
        z = torch.randn(x.shape, generator=g, dtype=F64)
        x = x + drift * step * p_gauss.score(x, 0.0) + math.sqrt(noise * step) * z
    return x.var(dim=0).mean().item()


step = 0.05
hot = mixed_chain(0.5, 2.0, step)    # (alpha/2) s + sqrt(2 alpha) z     -> T = 2
cold = mixed_chain(1.0, 1.0, step)   # delta s + sqrt(delta) z           -> T = 1/2
print(f"paper drift + code noise: variance {hot:.3f} (2 x target);  "
      f"code drift + paper noise: {cold:.3f} (target / 2)")

# %%
# Claim: mixing the conventions doubles or halves the variance (up to the O(step) ULA bias).
assert abs(hot / 2 - 1) < 0.08 and abs(cold / 0.5 - 1) < 0.08

# %% [markdown]
# ## 2. A two-mode test problem and its score field
#
# We use the example of Song & Ermon (2019, §3.2): unbalanced weights, well separated modes,
#
# $$ p = \tfrac15\,\mathcal N\big((-5,-5), I\big) + \tfrac45\,\mathcal N\big((5,5), I\big). $$
#
# The score points to the nearest mode almost everywhere. Score networks are trained by
# (denoising) score matching, $\mathbb E_{p}\,\|s_\theta - \nabla\log p\|^2$: errors are weighted by
# $p$, so where $p$ is tiny the network is **never told what the score is** (we measure how little data
# lies there below; lesson 02 shows the learned score's error growing in such regions) (Song & Ermon 2019,
# §3.2.1: estimated scores are only accurate in high-density regions). Let
# $R = \{x : p(x) < 10^{-3}\max p\}$ be the low-density region of the square $[-8, 8]^2$.

# %%
weights = torch.tensor([0.2, 0.8], dtype=F64)
means = torch.tensor([[-5.0, -5.0], [5.0, 5.0]], dtype=F64)
p = GaussianMixture(weights, means, torch.eye(2, dtype=F64).repeat(2, 1, 1))

gen = torch.Generator().manual_seed(0)
exact = p.sample(2000, generator=gen)                       # (2000, 2) exact samples of p
u = torch.linspace(-8, 8, 161, dtype=F64)
X, Y = torch.meshgrid(u, u, indexing="xy")
grid = torch.stack([X.flatten(), Y.flatten()], dim=1)       # (161*161, 2)
log_p = p.log_prob(grid)
threshold = log_p.max() - math.log(1e3)
area_R = (log_p < threshold).double().mean().item()
mass_R = (p.log_prob(exact) < threshold).double().mean().item()
noisy = p.marginal(3.0).sample(2000, generator=gen)         # samples of p_sigma, sigma = 3
inside = (noisy.abs() <= 8).all(dim=1)
mass_R_noisy = ((p.log_prob(noisy) < threshold) & inside).double().mean().item()
print(f"R covers {area_R:.0%} of the square but holds {mass_R:.2%} of the samples of p; "
      f"{mass_R_noisy:.0%} of the samples of p_sigma (sigma = 3) land there")

# %%
# Claim: the low-density region is most of the picture, almost none of the training data of a
# score network on p, but a good share of the data at noise level sigma = 3.
assert area_R > 0.6 and mass_R < 0.01 and mass_R_noisy > 0.2

# %%
q = torch.linspace(-8, 8, 17, dtype=F64)
QX, QY = torch.meshgrid(q, q, indexing="xy")
qgrid = torch.stack([QX.flatten(), QY.flatten()], dim=1)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
for ax, sigma in zip(axes, (0.0, 3.0)):
    S = p.score(qgrid, sigma)
    S = S / S.norm(dim=1, keepdim=True).clamp_min(1e-12)     # directions only
    ax.contourf(X, Y, p.log_prob(grid, sigma=sigma).reshape(X.shape).clamp_min(-40), levels=20, cmap="Blues")
    ax.quiver(QX.flatten(), QY.flatten(), S[:, 0], S[:, 1], color="k", width=0.004)
    ax.set_title(rf"score directions and $\log p_\sigma$, $\sigma$ = {sigma:g}")
    ax.set_aspect("equal")
axes[0].contour(X, Y, (log_p < threshold).double().reshape(X.shape), levels=[0.5], colors="r")
axes[0].set_xlabel("red: edge of the low-density region R (R is outside the circles)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Why plain Langevin fails: slow mixing between modes
#
# Even with the **exact** clean score, Langevin started (like Song & Ermon) from the uniform
# distribution on the square sends each chain to the mode of its basin and keeps it there. The
# expected time to cross from one mode to the other grows like $e^{\Delta U}$ (Arrhenius/Kramers),
# with $\Delta U = \log p(\text{mode}) - \log p(\text{saddle})$. Here $\Delta U\approx 23$, i.e.
# $\sim 10^{10}$ time units; we run 500 steps of $\alpha = 0.2$ — in the paper form the SDE time step is
# $\alpha/2$, so that is 50 time units, about fifty relaxation times inside a mode. The weights then reflect the basins' areas, not $w_k$; and
# chains started on one side (in the light mode) never find the heavy mode at all.

# %%
def major_fraction(x):
    """Fraction of samples closer to the heavy mode (5, 5) than to (-5, -5)."""
    d = torch.cdist(x, means)                                # (N, 2)
    return (d[:, 1] < d[:, 0]).double().mean().item()


barrier = (p.log_prob(means[:1]) - p.log_prob(torch.zeros(1, 2, dtype=F64))).item()
x_init = 16 * torch.rand(2000, 2, generator=gen, dtype=F64) - 8      # uniform on [-8, 8]^2
x_plain = langevin(p.denoiser, x_init, sigma_clean, alpha=0.2, n_steps=500, generator=gen)
w_plain = major_fraction(x_plain)
x_side = means[0] + torch.randn(500, 2, generator=gen, dtype=F64)         # all in the light mode
w_side = major_fraction(langevin(p.denoiser, x_side, sigma_clean, alpha=0.2, n_steps=500, generator=gen))
print(f"barrier Delta U = {barrier:.1f}; weight of the heavy mode: plain Langevin {w_plain:.3f} "
      f"from the uniform start, {w_side:.3f} from the light mode; exact samples "
      f"{major_fraction(exact):.3f} (true 0.8)")

# %%
# Claim: plain Langevin with the exact clean score misses the mode weight by more than 0.2
# (uniform start); started on one side it never reaches the other mode.
assert abs(w_plain - 0.8) > 0.2
assert w_side < 0.01

# %% [markdown]
# ## 4. Annealed Langevin dynamics (NCSN / SMLD)
#
# Noise solves both problems at once (Song & Ermon 2019): for a large $\sigma$ the smoothed density
# $p_\sigma$ covers the low-density region (where a network trained on noisy data *does* see data)
# and merges the modes, so chains mix; for a small $\sigma$, $p_\sigma \approx p$. Annealing runs
# Langevin on a decreasing **geometric ladder** $\sigma_1 > \dots > \sigma_L$ (NCSN index
# convention: $\sigma_1$ is the largest), each level started from the previous one, with
#
# $$ \alpha_i = \epsilon\, \sigma_i^2/\sigma_L^2, \qquad
#    x \leftarrow x + \tfrac{\alpha_i}{2}\, s(x, \sigma_i) + \sqrt{\alpha_i}\, z \quad (T \text{ times per level}). $$
#
# Why $\alpha_i\propto\sigma_i^2$: since $\|s(x,\sigma_i)\|\approx\sqrt d/\sigma_i$, the ratio of drift to
# noise, $\tfrac{\alpha_i}{2}\|s\| / (\sqrt{\alpha_i}\|z\|) \approx \sqrt{\alpha_i}/(2\sigma_i)$, is then
# the same at every level. $\epsilon$ is the step at the last level. As in Song & Ermon's toy
# experiment, $L = 10$, $\sigma_1 = 20$, $T = 100$ and a uniform start; our choice is $\sigma_L = 0.1$
# and $\alpha_i/\sigma_i^2 = 0.2$, i.e. $\epsilon = 0.2\,\sigma_L^2$.
# A callback records the heavy-mode fraction at the end of every level; we compare it with the
# exact fraction for $p_{\sigma_i}$.

# %%
sigmas = ve_sigmas(10, 0.1, 20.0, append_zero=False)                   # sigma_1 = 20 > ... > sigma_L = 0.1
track = []


def record(state):
    if state["i"] % 100 == 99:                               # last inner step of each level
        track.append((state["sigma"], major_fraction(state["x"])))


x_anneal = annealed_langevin(p.denoiser, x_init, sigmas, eps=0.2 * 0.1 ** 2, n_steps_each=100,
                             generator=gen, callback=record)
w_anneal = major_fraction(x_anneal)
exact_track = [major_fraction(p.marginal(s).sample(2000, generator=gen)) for s, _ in track]
print(f"weight of the heavy mode: annealed Langevin {w_anneal:.3f} (true 0.8, plain {w_plain:.3f})")

# %%
# Claim: annealed Langevin recovers the weight within 0.05.
assert abs(w_anneal - 0.8) < 0.05

# %%
fig, axes = plt.subplots(1, 4, figsize=(17, 4))
for ax, pts, title in zip(axes, (exact, x_plain, x_anneal),
                          ("exact samples of p", "plain Langevin (500 steps)", "annealed Langevin")):
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
    ax.set(xlim=(-9, 9), ylim=(-9, 9), title=title, aspect="equal")
labels = ["exact", "plain", "annealed"]
heavy = [major_fraction(exact), w_plain, w_anneal]
axes[3].bar(labels, heavy, color=["gray", "tab:red", "tab:green"])
axes[3].bar(labels, [1 - h for h in heavy], bottom=heavy, color="lightgray")
axes[3].axhline(0.8, color="k", ls="--", label="true weight 0.8")
axes[3].set(title="weight of the heavy mode (dark)", ylim=(0, 1))
axes[3].legend(loc="lower right")
plt.tight_layout()
plt.show()

sig_t, frac_t = zip(*track)
plt.figure(figsize=(6, 3.8))
plt.semilogx(sig_t, frac_t, "o-", label="annealed chain (end of level)")
plt.semilogx(sig_t, exact_track, "s--", label=r"exact $p_{\sigma_i}$")
plt.axhline(0.8, color="k", lw=0.8)
plt.gca().invert_xaxis()
plt.xlabel(r"$\sigma_i$")
plt.ylabel("fraction nearer the heavy mode")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The chain follows the exact fraction of $p_{\sigma_i}$ while the modes still overlap; once the
# barrier between them grows (around $\sigma \approx 2$) the chains stop crossing and the weights
# freeze — close to, but slightly below, 0.8. More levels or steps in the range
# $\sigma\in[2, 5]$ shrink that gap.

# %% [markdown]
# ## 5. The final denoising step
#
# After the last level the chain samples $p_{\sigma_L}$ (up to the ULA bias), not $p$. NCSNv2
# (Song & Ermon 2020) adds one Tweedie step $x \leftarrow x + \sigma_L^2 s(x,\sigma_L) = D(x,\sigma_L)$,
# the default `final_denoise=True` of `annealed_langevin`. For data $\mathcal N(\mu,\tau^2 I)$ the
# chain has variance $\tau^2+\sigma_L^2$ and $D(x,\sigma_L) = \mu + \tfrac{\tau^2}{\tau^2+\sigma_L^2}(x-\mu)$,
# so the output variance is
#
# $$ \Big(\tfrac{\tau^2}{\tau^2+\sigma_L^2}\Big)^2 (\tau^2+\sigma_L^2) = \frac{\tau^4}{\tau^2+\sigma_L^2} < \tau^2 : $$
#
# the noise is removed, but a posterior *mean* is less spread than a sample. The effect is
# negligible when $\sigma_L \ll \tau$ (images: $\sigma_L = 0.01$) — we make it visible with
# $\tau = \sigma_L = 0.5$ in $d = 16$. With the ULA bias of §1 at the last step $\alpha_L=\epsilon$,
# both variances are multiplied by $1/(1-\epsilon/(4(\tau^2+\sigma_L^2)))$.

# %%
d, tau, sigma_L, eps = 16, 0.5, 0.5, 0.05
gauss = GaussianMixture.gaussian(0.3 * torch.ones(d, dtype=F64), tau ** 2)
sig_g = ve_sigmas(10, sigma_L, 5.0, append_zero=False)
g = torch.Generator().manual_seed(2)
x_last = annealed_langevin(gauss.denoiser, 5.0 * torch.randn(2000, d, generator=g, dtype=F64), sig_g,
                           eps=eps, n_steps_each=50, final_denoise=False, generator=g)
x_final = gauss.denoiser(x_last, sigma_L)                  # what final_denoise=True returns
v_L = tau ** 2 + sigma_L ** 2
bias = 1 / (1 - eps / (4 * v_L))
var_last, var_final = x_last.var().item(), x_final.var().item()
print(f"before the final step: {var_last:.4f} (predicted {bias * v_L:.4f}); "
      f"after: {var_final:.4f} (predicted {bias * tau ** 4 / v_L:.4f}; tau^2 = {tau ** 2})")

# %%
# Claim: variance tau^2 + sigma_L^2 before, tau^4 / (tau^2 + sigma_L^2) after (times the ULA factor),
# which is well below the data variance tau^2.
assert abs(var_last / (bias * v_L) - 1) < 0.03
assert abs(var_final / (bias * tau ** 4 / v_L) - 1) < 0.03
assert var_final < 0.6 * tau ** 2

# %% [markdown]
# ## 6. Concentration of measure: the Gaussian annulus
#
# For $z\sim\mathcal N(0, I_d)$, $\|z\|^2 = \sum_j z_j^2$ has mean $d$ and variance $2d$, so
#
# $$ \|z\| \approx \sqrt d \pm \tfrac{1}{\sqrt 2}, \qquad
#    \frac{\operatorname{std}\|z\|}{\sqrt d} \approx \frac{1}{\sqrt{2d}} . $$
#
# The density is largest at $z = 0$, yet in high dimension no sample comes anywhere near it: the
# mass sits on a thin shell of radius $\sqrt d$ (the Gaussian annulus theorem; Blum, Hopcroft &
# Kannan 2020, ch. 2: concentration of measure). A $64\times64$ image has
# $d = 4096$. (At $d = 2$ the large-$d$ formulas are rough: $\|z\|$ is Rayleigh, with relative spread
# $\sqrt{(2-\pi/2)/2} = 0.46$ instead of $0.5$.)

# %%
dims = (2, 64, 4096)
radii = {}
for dim in dims:
    z = torch.randn(4000, dim, generator=torch.Generator().manual_seed(dim))
    radii[dim] = z.norm(dim=1) / math.sqrt(dim)               # ||z|| / sqrt(d), (4000,)
    print(f"d = {dim:5d}: mean ||z||/sqrt(d) = {radii[dim].mean():.4f}, relative spread "
          f"{radii[dim].std():.4f} (1/sqrt(2d) = {1 / math.sqrt(2 * dim):.4f}), "
          f"smallest {radii[dim].min():.3f}")

fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), sharex=True)
for ax, dim in zip(axes, dims):
    ax.hist(radii[dim].numpy(), bins=60, density=True)
    ax.set(title=f"d = {dim}", xlabel=r"$\|z\| / \sqrt{d}$", xlim=(0, 2.5))
    ax.axvline(1.0, color="k", lw=0.8)
plt.tight_layout()
plt.show()

# %%
# Claims: ||z|| / sqrt(d) is 1 within 1 % on average; its spread shrinks like 1 / sqrt(2 d);
# at d = 4096 every one of 4000 draws is within 5 % of sqrt(d) - none comes near the mode z = 0.
for dim in (64, 4096):
    assert abs(radii[dim].mean().item() - 1) < 0.01
    assert abs(radii[dim].std().item() * math.sqrt(2 * dim) - 1) < 0.05
assert (radii[4096] - 1).abs().max().item() < 0.05

# %% [markdown]
# **Noisy images live on thin shells.** $x = x_0 + \sigma z$ lies at distance $\sigma\|z\|\approx\sigma\sqrt d$
# from the clean image $x_0$ — every noisy copy is "equally noisy" (Chung's talk), and the noisy
# data at level $\sigma$ form a shell around the data (the "onion" of lesson 08).

# %%
x0 = shepp_logan(64).double()                               # (1, 1, 64, 64), d = 4096
sigma_img = 0.2
g = torch.Generator().manual_seed(3)
noisy_imgs = x0 + sigma_img * torch.randn(4, 1, 64, 64, generator=g, dtype=F64)
ratio = (noisy_imgs - x0).flatten(1).norm(dim=1) / (sigma_img * 64)   # per image, (4,)
fig, axes = plt.subplots(1, 5, figsize=(13, 2.8))
axes[0].imshow(x0[0, 0], cmap="gray")
axes[0].set_title("x0")
for ax, img, r in zip(axes[1:], noisy_imgs, ratio):
    ax.imshow(img[0], cmap="gray", vmin=-0.3, vmax=1.3)
    ax.set_title(rf"$\|x-x_0\|/(\sigma\sqrt{{d}})$ = {r:.3f}", fontsize=9)
for ax in axes:
    ax.axis("off")
plt.tight_layout()
plt.show()
assert (ratio - 1).abs().max().item() < 0.02

# %% [markdown]
# **Neighbouring shells must overlap.** Annealed Langevin hands the samples of level $\sigma_{i-1}$
# (on the shell of radius $\approx\sigma_{i-1}\sqrt d$ around the data) to the score of level
# $\sigma_i$, which was trained on the shell of radius $\sigma_i\sqrt d$. If the shells are disjoint,
# the chain starts where that score has never seen data. With ratio
# $\gamma = \sigma_{i-1}/\sigma_i$ and $\|\sigma z\| \approx \mathcal N(\sigma\sqrt d, \sigma^2/2)$, the
# probability that a radius at level $i$ falls inside the $\pm3$-std band of level $i-1$ is
#
# $$ \Phi\big(\sqrt{2d}(\gamma-1)+3\gamma\big) - \Phi\big(\sqrt{2d}(\gamma-1)-3\gamma\big), $$
#
# and NCSNv2 (Song & Ermon 2020, technique 2) chooses $\gamma$ so that it is $\approx 0.5$. We solve for
# that $\gamma^*$ at $d=4096$, measure the overlap by sampling, and compare with the 10-level
# ladder $1\to0.01$ of NCSN (Song & Ermon 2019, Sec. 5) and with the ladders of the official NCSNv2
# configurations (CIFAR-10: 232 levels from 50 to 0.01; FFHQ: 2311 levels from 348 to 0.01).

# %%
def overlap(gamma, dim):
    """P(radius at level i inside the +-3 std band of level i-1), normal approximation."""
    a = math.sqrt(2 * dim) * (gamma - 1)
    Phi = torch.special.ndtr                                  # standard normal CDF
    return (Phi(torch.tensor(a + 3 * gamma)) - Phi(torch.tensor(a - 3 * gamma))).item()


def gamma_star(dim):
    """The ratio with overlap 0.5 (bisection; the overlap falls as gamma grows)."""
    lo, hi = 1.0, 2.0
    for _ in range(50):
        lo, hi = ((lo + hi) / 2, hi) if overlap((lo + hi) / 2, dim) > 0.5 else (lo, (lo + hi) / 2)
    return lo


def measured_overlap(gamma, dim, r):
    """Sampled version: r = ||z|| of draws z ~ N(0, I_dim); level i has sigma = 1, level i-1 gamma."""
    centre, half = gamma * math.sqrt(dim), 3 * gamma / math.sqrt(2)
    return ((r - centre).abs() < half).double().mean().item()


dim = 4096
r = radii[dim] * math.sqrt(dim)                               # ||z||, (4000,)
g_star, g_ncsn = gamma_star(dim), (1 / 0.01) ** (1 / 9)
print(f"d = {dim}: gamma* = {g_star:.4f} -> {1 + math.log(50 / 0.01) / math.log(g_star):.0f} levels "
      f"from 50 to 0.01; sampled overlap {measured_overlap(g_star, dim, r):.3f}")
print(f"NCSN ladder (10 levels 1 -> 0.01, gamma = {g_ncsn:.2f}): overlap "
      f"{measured_overlap(g_ncsn, dim, r):.3f}")
cifar = overlap((50 / 0.01) ** (1 / 231), 32 * 32 * 3)        # NCSNv2 CIFAR-10: 232 levels 50 -> 0.01
ffhq = overlap((348 / 0.01) ** (1 / 2310), 256 * 256 * 3)     # NCSNv2 FFHQ: 2311 levels 348 -> 0.01
print(f"NCSNv2 configurations: CIFAR-10 overlap {cifar:.3f}, FFHQ {ffhq:.3f}")

# %%
# Claims: gamma* gives a sampled overlap of 0.5; the 10-level NCSN ladder has disjoint shells at
# d = 4096; the published NCSNv2 ladders satisfy the criterion (overlap about 0.5).
assert abs(measured_overlap(g_star, dim, r) - 0.5) < 0.05
assert measured_overlap(g_ncsn, dim, r) < 0.01
assert 0.45 < cifar < 0.65 and 0.45 < ffhq < 0.65

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.2))
for ax, gamma, name in ((axes[0], g_ncsn, "NCSN ladder"), (axes[1], g_star, "NCSNv2 criterion")):
    for k in range(4):
        ax.hist((gamma ** -k * r).numpy(), bins=40, density=True, alpha=0.6,
                label=rf"$\sigma = \gamma^{{-{k}}}$")
    ax.set(title=f"{name}: gamma = {gamma:.3f}, d = {dim}", xlabel=r"$\|\sigma z\|$")
    ax.legend(fontsize=8)
axes[0].set_xscale("log")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# * Langevin dynamics $x \leftarrow x + \tfrac{\alpha}{2}s + \sqrt\alpha z$ (paper form; code form
#   $\delta = \alpha/2$) samples $p$ using only the score — with an $O(\alpha)$ bias. Mixing the two
#   forms samples $p^{2}$ or $p^{1/2}$ instead.
# * With the clean score it fails on multimodal data: scores are unreliable in low-density regions
#   and chains do not cross between modes, so the **mode weights are wrong**.
# * Annealing over a geometric ladder with $\alpha_i = \epsilon\sigma_i^2/\sigma_L^2$ lets the
#   chains mix while the modes still overlap, and recovers the weights; the final Tweedie step
#   removes the last noise but shrinks the variance to $\tau^4/(\tau^2+\sigma_L^2)$.
# * In high dimension noise is a thin shell of radius $\sigma\sqrt d$ with width $\sigma/\sqrt2$; the
#   ladder must be fine enough that neighbouring shells overlap (NCSNv2).
# * Next (lesson 04): the ladder becomes a continuous SDE; its reverse-time discretisations (DDPM,
#   DDIM, predictor–corrector with a Langevin corrector) are the diffusion samplers.
#
# **References.** G. Parisi, *Correlation functions and computer simulations*, Nucl. Phys. B 1981.
# G. Roberts & R. Tweedie, *Exponential convergence of Langevin distributions and their discrete
# approximations*, Bernoulli 1996. M. Welling & Y. W. Teh, *Bayesian learning via stochastic gradient
# Langevin dynamics*, ICML 2011. Y. Song & S. Ermon, *Generative modeling by estimating gradients of
# the data distribution* (NCSN), NeurIPS 2019. Y. Song & S. Ermon, *Improved techniques for training
# score-based generative models* (NCSNv2), NeurIPS 2020. Y. Song et al., *Score-based generative
# modeling through stochastic differential equations*, ICLR 2021. A. Blum, J. Hopcroft & R. Kannan,
# *Foundations of Data Science*, 2020, ch. 2. H. Chung et al., *Improving diffusion models for inverse
# problems using manifold constraints* (MCG), NeurIPS 2022.
