# %% [markdown]
# # 01 · Tweedie's formula and Noise2Score: denoising from noisy data alone
#
# Supervised denoisers learn from pairs (noisy, clean). In medical imaging clean references are rare:
# a low-dose CT scan *is* the data. This lesson shows that the best denoiser in the mean-square sense
# can be built from **noisy images alone**, because it depends on the data only through the
# **score** $\nabla_y \log p(y)$ of the noisy distribution. That score is the object the rest of the
# course learns (lesson 02) and samples with (lessons 03–04).
#
# **Learning goals**
#
# 1. Explain why **Noise2Noise**, **Noise2Self** and **SURE** can train a denoiser without clean
#    images, and check each identity numerically on phantoms.
# 2. State **Tweedie's formula for the exponential family** (Efron 2011; Kim & Ye 2021) and derive
#    the estimators for Gaussian, Poisson, Gamma, Bernoulli and Exponential noise.
# 3. Know which estimators are **exact posterior means** (Gaussian, Exponential) and which are not:
#    Poisson gives $\exp\mathbb E[\log x\mid y]$ (biased low by about half a count), Gamma gives
#    $1/\mathbb E[1/x\mid y]$.
# 4. Learn the score of noisy data from the noisy data (AR-DAE) and denoise with it: **Noise2Score**.
# 5. See that SURE *is* implicit score matching: "Noise2X and SURE are score-based approaches".
#
# Conventions of the course, where presentations of this material differ: the Gamma row uses
# $T(y) = [\log y,\ y]$ (a version of the table that circulates in talks lists $[\log y, -y]$, which
# with $\eta = [\alpha-1, -\beta/x]$ flips the sign of the exponent; the estimator column is right
# either way); SURE keeps the constant $-d\sigma^2$ so that it estimates the MSE itself (it is often
# dropped: a constant, irrelevant for training); scaled Poisson noise is
# $y = \zeta\,\mathrm{Poisson}(x/\zeta)$ as in the official Noise2Score code (Kim & Ye, NeurIPS 2021).

# %%
import math

import matplotlib.pyplot as plt
import torch

from diffcourse.phantoms import ellipses
from diffcourse.plot import show_images
from diffcourse.prior import losses, tweedie
from diffcourse.prior.mlp import MLPDenoiser, train_dsm
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64


def autograd_score(log_p, y):
    """d/dy log p(y), elementwise, by autograd (for marginals we know in closed form)."""
    y = y.clone().requires_grad_(True)
    return torch.autograd.grad(log_p(y).sum(), y)[0]


# %% [markdown]
# ## 1. Three ways to train a denoiser on noisy images
#
# Let $y = x + \sigma n$, $n\sim\mathcal N(0, I_d)$, and $F$ a denoiser. The supervised risk
# $\mathbb E\|F(y) - x\|^2$ needs $x$. Three unbiased substitutes do not:
#
# * **Noise2Noise** (Lehtinen et al. 2018): with a second, independent noisy copy $y' = x + \sigma n'$,
#   $$\mathbb E\|F(y) - y'\|^2 = \mathbb E\|F(y) - x\|^2 + d\sigma^2 ,$$
#   because $n'$ is independent of $F(y)$ and has mean zero.
# * **Noise2Self** (Batson & Royer 2019): if $F$ is *$J$-invariant* — output pixel $i$ does not look at
#   input pixel $i$ — then $y_i - x_i$ is independent of $F(y)_i$ and
#   $\mathbb E\|F(y) - y\|^2 = \mathbb E\|F(y) - x\|^2 + d\sigma^2$.
# * **SURE** (Stein 1981; Soltanayev & Chun 2018): for *any* (weakly differentiable) $F$,
#   $$\mathrm{SURE}(F, y) = \|y - F(y)\|^2 - d\sigma^2 + 2\sigma^2\,\mathrm{div}_y F(y),
#   \qquad \mathbb E\,\mathrm{SURE} = \mathbb E\|F(y) - x\|^2 ,$$
#   with the divergence estimated by one random probe $b\sim\mathcal N(0,I)$:
#   $\mathrm{div}_y F \approx b^\top\big(F(y + \epsilon b) - F(y)\big)/\epsilon$ (`losses.mc_divergence`).
#
# We test all three on ellipse phantoms, $\sigma = 0.1$, for a family of Gaussian low-pass filters
# $F_h$ of width $h$ pixels (periodic, applied in Fourier space). The "oracle" curve uses the clean
# images, which a real application would not have.

# %%
gen = torch.Generator().manual_seed(0)
x = ellipses(6, 64, generator=gen).double()                             # (6, 1, 64, 64) in [0, 1]
sigma = 0.1
y = x + sigma * torch.randn(x.shape, generator=gen, dtype=F64)
y_copy = x + sigma * torch.randn(x.shape, generator=gen, dtype=F64)     # the Noise2Noise partner
d = x[0].numel()

k = torch.fft.fftfreq(64, dtype=F64)
k2 = k[:, None] ** 2 + k[None, :] ** 2


def lowpass(h):
    """Gaussian blur of standard deviation h pixels (periodic), as a function of the image."""
    gain = torch.exp(-2 * math.pi ** 2 * h ** 2 * k2)
    return lambda img: torch.fft.ifft2(torch.fft.fft2(img) * gain).real


widths = torch.linspace(0.2, 2.0, 19, dtype=F64).tolist()
oracle, n2n, sure = [], [], []
for h in widths:
    F = lowpass(h)
    oracle.append(((F(y) - x) ** 2).flatten(1).sum(1).mean().item() / d)
    n2n.append((losses.noise2noise_loss(F, y, y_copy) - d * sigma ** 2).mean().item() / d)
    sure.append(losses.sure_loss(F, y, sigma, n_probes=4, generator=torch.Generator().manual_seed(1)).mean().item() / d)

plt.figure(figsize=(5, 3.5))
plt.plot(widths, oracle, "k-", lw=3, alpha=0.4, label="true MSE (needs clean x)")
plt.plot(widths, n2n, "o--", ms=3, label=r"Noise2Noise $-\,\sigma^2$")
plt.plot(widths, sure, "s:", ms=3, label="SURE (4 random probes per image)")
plt.xlabel("filter width h (pixels)")
plt.ylabel("mean squared error per pixel")
plt.legend()
plt.title("self-supervised risk estimates")
plt.tight_layout()
plt.show()

# %% [markdown]
# All three curves agree, and so do their minimisers: the filter width chosen from noisy data alone
# is the one the clean data would have chosen.

# %%
step = widths[1] - widths[0]
best = {name: widths[min(range(len(widths)), key=c.__getitem__)] for name, c in
        [("oracle", oracle), ("n2n", n2n), ("sure", sure)]}
print("best width:", best)
assert abs(best["sure"] - best["oracle"]) <= step + 1e-9
assert abs(best["n2n"] - best["oracle"]) <= step + 1e-9
assert max(abs(s / o - 1) for s, o in zip(sure, oracle)) < 0.06           # SURE within 6 % of the MSE

# %%
F_best = lowpass(best["sure"])
show_images([x[:3], y[:3], F_best(y[:3]).clamp(0, 1)],
            ["clean"] * 3 + [f"noisy, sigma = {sigma}"] * 3 + [f"low-pass h = {best['sure']:.1f} (SURE)"] * 3, ncols=3)
plt.show()

# %% [markdown]
# A linear filter blurs the edges: the best it can do is a compromise. Better denoisers need a model
# of the images, and the rest of this lesson shows that such a model is the **score**.
#
# **Noise2Self.** The 4-neighbour mean (centre weight 0) is $J$-invariant; the 3×3 box mean is not
# (its centre weight is 1/9). For the first, the self-loss $\|F(y)-y\|^2 - d\sigma^2$ estimates the MSE;
# for the second it is optimistic by $2\sigma^2\,\mathrm{div}F = 2\sigma^2 d/9$ — exactly the term SURE adds.

# %%
donut = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=F64) / 4
box = torch.ones(3, 3, dtype=F64) / 9


def conv(kernel):
    return lambda img: torch.nn.functional.conv2d(
        torch.nn.functional.pad(img, (1, 1, 1, 1), mode="circular"), kernel[None, None])


for name, kernel in [("4-neighbour mean", donut), ("3x3 box mean", box)]:
    F = conv(kernel)
    self_loss = (((F(y) - y) ** 2).flatten(1).sum(1) - d * sigma ** 2).mean().item() / d
    mse = ((F(y) - x) ** 2).flatten(1).sum(1).mean().item() / d
    print(f"{name:17s}: self-loss - sigma^2 = {self_loss:.2e}, true MSE = {mse:.2e}")
    expected_gap = 2 * sigma ** 2 * kernel[1, 1].item()                      # per pixel
    assert abs((mse - self_loss) - expected_gap) < 0.1 * sigma ** 2

# %% [markdown]
# ## 2. Tweedie's formula for the exponential family
#
# Let the noise be an exponential family in its natural parameter $\eta$ (a function of the clean $x$):
#
# $$ p(y\mid\eta) = p_0(y)\,\exp\!\big(\eta^\top T(y) - \varphi(\eta)\big). $$
#
# Write $\lambda(y) = \log p(y) - \log p_0(y)$ with $p(y) = \int p(y\mid\eta)p(\eta)\,d\eta$ the
# **noisy marginal**. Bayes' rule gives $p(\eta\mid y) = \exp(\eta^\top T(y) - \lambda(y))\,p(\eta)e^{-\varphi(\eta)}$;
# differentiating $\log\int e^{\eta^\top T(y)}p(\eta)e^{-\varphi(\eta)}d\eta = \lambda(y)$ in $y$
# gives **Tweedie's formula** (Efron 2011; Kim & Ye 2021, Eq. 6):
#
# $$ \mathbb E[\eta\mid y]^\top\, T'(y) \;=\; \lambda'(y) \;=\; l'(y) - l_0'(y), \qquad l = \log p,\ l_0 = \log p_0 . $$
#
# The prior never appears: only the score $l'(y)$ of the noisy data does. The rows used in this course
# (`diffcourse.prior.tweedie`):
#
# | noise $p(y\mid x)$ | $\eta$ | $T(y)$ | $l_0'(y)$ | estimator | what it is |
# |---|---|---|---|---|---|
# | Gaussian $\mathcal N(x,\sigma^2)$ | $x/\sigma^2$ | $y$ | $-y/\sigma^2$ | $y + \sigma^2 l'(y)$ | $\mathbb E[x\mid y]$ exactly |
# | Poisson $x^y e^{-x}/y!$ | $\log x$ | $y$ | $-\psi(y+1)\approx-\log(y+\tfrac12)$ | $(y+\tfrac12)\,e^{l'(y)}$ | $\approx\exp\mathbb E[\log x\mid y]$ |
# | Gamma$(k,\ \text{rate }k/x)$ | $[k-1,\ -k/x]$ | $[\log y,\ y]$ | $0$ | $\dfrac{k y}{(k-1) - y\,l'(y)}$ | $1/\mathbb E[1/x\mid y]$ exactly |
# | Bernoulli $x^y(1-x)^{1-y}$ | $\mathrm{logit}\,x$ | $y$ | $0$ | $\mathrm{sigmoid}(l'(y))$ | plug-in |
# | Exponential $x e^{-xy}$ | $-x$ | $y$ | $0$ | $-l'(y)$ | $\mathbb E[x\mid y]$ exactly |
#
# Each estimator maps $\mathbb E[\eta\mid y]$ back through $x = \eta^{-1}$; that is exact only when
# the map is linear in $\eta$ (Gaussian, Exponential) or when we ask for the quantity that *is*
# linear in $\eta$ (Gamma: $1/x$).
#
# ## 3. Gaussian noise: the posterior mean, exactly
#
# Prior $x\sim\mathcal N(\mu,\tau^2)$, $y = x + \sigma n$: the marginal is $\mathcal N(\mu,\tau^2+\sigma^2)$,
# $l'(y) = -(y-\mu)/(\tau^2+\sigma^2)$, and the conjugate posterior mean is $(\tau^2 y + \sigma^2\mu)/(\tau^2+\sigma^2)$.

# %%
mu, tau, sigma = 0.4, 0.8, 0.5
ys = torch.linspace(-3, 3, 61, dtype=F64)
x_hat = tweedie.gaussian(ys[:, None], -(ys[:, None] - mu) / (tau ** 2 + sigma ** 2), sigma)[:, 0]
conjugate = (tau ** 2 * ys + sigma ** 2 * mu) / (tau ** 2 + sigma ** 2)
print(f"max |Tweedie - posterior mean| = {(x_hat - conjugate).abs().max().item():.1e}")
assert (x_hat - conjugate).abs().max().item() < 1e-6

# %% [markdown]
# Nothing is special about the Gaussian prior. For a two-component mixture prior the posterior
# mean is not linear in $y$, yet Tweedie with the exact noisy score (`GaussianMixture.score`) matches
# a brute-force posterior mean $\int x\,p(x)\,\mathcal N(y; x,\sigma^2)\,dx / \int p(x)\,\mathcal N(y;x,\sigma^2)\,dx$
# computed on a fine grid.

# %%
prior = GaussianMixture(torch.tensor([0.35, 0.65], dtype=F64), torch.tensor([[-1.5], [1.0]], dtype=F64),
                        torch.tensor([[[0.1]], [[0.3]]], dtype=F64))
x_grid = torch.linspace(-8, 8, 40001, dtype=F64)
log_prior = prior.log_prob(x_grid[:, None])                             # (G,)
log_w = log_prior[None, :] - 0.5 * (ys[:, None] - x_grid[None, :]) ** 2 / sigma ** 2
brute = (torch.softmax(log_w, dim=1) * x_grid).sum(1)                   # quadrature posterior mean
tweedie_mix = tweedie.gaussian(ys[:, None], prior.score(ys[:, None], sigma), sigma)[:, 0]
err_mix = (tweedie_mix - brute).abs().max().item()
print(f"mixture prior: max |Tweedie - posterior mean| = {err_mix:.1e}")
assert err_mix < 1e-6

fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
ax[0].plot(ys, conjugate, "k-", lw=4, alpha=0.3, label="posterior mean")
ax[0].plot(ys, x_hat, "r--", label=r"Tweedie $y+\sigma^2 l'(y)$")
ax[0].set_title(r"Gaussian prior $\mathcal{N}(0.4, 0.8^2)$")
ax[1].plot(ys, brute, "k-", lw=4, alpha=0.3, label="posterior mean (quadrature)")
ax[1].plot(ys, tweedie_mix, "r--", label="Tweedie with the exact noisy score")
ax[1].set_title("two-component mixture prior")
for a in ax:
    a.plot(ys, ys, ":", color="gray", label="identity (no denoising)")
    a.set_xlabel("noisy y")
    a.set_ylabel(r"$\hat x(y)$")
    a.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Poisson noise: the exponential of a posterior mean, biased low
#
# Photon counting (low-dose CT, PET, microscopy) gives $y\mid x\sim\mathrm{Poisson}(x)$. Tweedie with
# $\eta=\log x$ gives $\mathbb E[\log x\mid y] = l'(y) + \psi(y+1)$ exactly, and Noise2Score reports
# $(y+\tfrac12)\,e^{l'(y)}\approx \exp\mathbb E[\log x\mid y]$. By Jensen's inequality
# $\exp\mathbb E[\log x\mid y] \le \mathbb E[x\mid y]$, so the estimate is **biased low** — and at very
# low counts the approximation $\psi(y+1)\approx\log(y+\tfrac12)$ adds a second, smaller bias.
#
# Test case with everything in closed form (a conjugate pair): $x\sim\mathrm{Gamma}(a, \text{rate } b)$.
# The marginal is negative binomial; its continuous extension
# $\log p(y) = \log\Gamma(a+y) - \log\Gamma(y+1) - y\log(1+b) + \text{const}$ gives the score by
# autograd, and the posterior is $\mathrm{Gamma}(a+y,\ 1+b)$ with mean $(a+y)/(1+b)$.

# %%
a, b = 3.0, 2.0
counts = torch.arange(0.0, 41.0, dtype=F64)
score = autograd_score(lambda c: torch.lgamma(a + c) - torch.lgamma(c + 1) - c * math.log(1 + b), counts)
n2s = tweedie.poisson(counts, score)
post_mean = (a + counts) / (1 + b)
exp_mean_log = torch.exp(torch.digamma(a + counts) - math.log(1 + b))   # exp E[log x | y], exactly
rel_bias = n2s / post_mean - 1

fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
low = slice(0, 11)                                                       # zoom on few counts
ax[0].plot(counts[low], post_mean[low], "k-", lw=3, alpha=0.4, label=r"$\mathbb{E}[x\mid y]$")
ax[0].plot(counts[low], exp_mean_log[low], "b:", label=r"$\exp\,\mathbb{E}[\log x\mid y]$")
ax[0].plot(counts[low], n2s[low], "r--", label=r"Noise2Score $(y+\frac{1}{2})e^{l'(y)}$")
ax[0].set_xlabel("count y")
ax[0].set_title("Gamma(3, 2) prior, Poisson counts")
ax[0].legend(fontsize=8)
ax[1].plot(counts, 100 * rel_bias, "r.-", label="measured")
ax[1].plot(counts[2:], -100 / (2 * (a + counts[2:])), "k:", label=r"$-1/(2(a+y))$")
ax[1].set_xlabel("count y")
ax[1].set_ylabel("relative bias (%)")
ax[1].legend(fontsize=8)
plt.tight_layout()
plt.show()
for c in (0, 3, 10, 40):
    print(f"y = {c:2d}: Noise2Score {n2s[c].item():.3f}, posterior mean {post_mean[c].item():.3f}, "
          f"bias {100 * rel_bias[c].item():+.1f} %")

# %% [markdown]
# For a few counts and more the bias is about $-1/(2(a+y))$ in relative terms, i.e. a constant
# $\tfrac12/(1+b)$ in absolute terms: **half a count**, shrunk by the posterior. At $y = 0$ it is larger
# (a quarter too low): Jensen's gap alone gives $-16\,\%$ here, and the digamma approximation
# $\psi(1)\approx\log\tfrac12$ another $\times 0.89$. It fades as counts grow.

# %%
assert bool((rel_bias < 0).all())                                         # biased low everywhere
assert -0.30 < rel_bias[0].item() < -0.20                                 # about -25 % at y = 0
assert abs(rel_bias[10].item() + 1 / (2 * (a + 10))) < 0.002              # -3.9 % at y = 10
assert abs((post_mean - n2s)[-1].item() - 0.5 / (1 + b)) < 0.01           # half a (shrunk) count

# %% [markdown]
# With **scaled** Poisson noise $y = \zeta\,\mathrm{Poisson}(x/\zeta)$ (smaller $\zeta$ = more photons) the
# estimator reads $(y + \zeta/2)\,e^{\zeta l'(y)}$ and the bias is about $\zeta/2$ in intensity units.
# For the phantoms above at $\zeta = 0.01$ (≈ 50 counts in tissue of intensity 0.5) that is 0.005:
# 1 % of the intensity, well below the noise standard deviation $\sqrt{\zeta x}\approx 0.07$.

# %% [markdown]
# ## 5. Gamma, Exponential and Bernoulli noise
#
# **Gamma (speckle-like multiplicative) noise**, $y\mid x\sim\mathrm{Gamma}(k,\ \text{rate }k/x)$, mean $x$.
# Take the conjugate prior $1/x\sim\mathrm{Gamma}(a, b)$. Then
# $p(y)\propto y^{k-1}/(b+ky)^{a+k}$, $l'(y) = (k-1)/y - k(a+k)/(b+ky)$, and the posterior of $1/x$ is
# $\mathrm{Gamma}(a+k,\ b+ky)$. Tweedie gives $1/\mathbb E[1/x\mid y] = (b+ky)/(a+k)$, *below* the
# posterior mean $\mathbb E[x\mid y] = (b+ky)/(a+k-1)$ (harmonic vs arithmetic mean).
#
# *A misprint to be aware of (the exponential-family table of the talk).* The table prints the
# estimator correctly, $\hat x = \beta y/((\alpha-1) - y\,l'(y))$, but lists the sufficient statistic as
# $T(y) = [\log y, -y]$. With $\eta = [\alpha-1, -\beta/x]$ that would put $+\beta y/x$ in the exponent; carried
# through Tweedie it gives $-k y/((k-1) - y\,l')$, the **negative** of the right answer (negative
# intensities). The estimator needs $T(y) = [\log y, y]$.

# %%
a_g, b_g, k_g = 3.0, 2.0, 6.0
yg = torch.linspace(0.2, 3.0, 8, dtype=F64)
score_g = (k_g - 1) / yg - k_g * (a_g + k_g) / (b_g + k_g * yg)
x_gamma = tweedie.gamma(yg, score_g, k_g)
misprinted_T = -k_g * yg / ((k_g - 1) - yg * score_g)      # from T(y) = [log y, -y]
assert torch.allclose(x_gamma, (b_g + k_g * yg) / (a_g + k_g), rtol=1e-12)       # 1 / E[1/x | y]
assert bool((x_gamma < (b_g + k_g * yg) / (a_g + k_g - 1)).all())                 # below E[x | y]
assert bool((misprinted_T < 0).all())                                          # impossible intensities
print("Gamma:", [round(v, 3) for v in x_gamma.tolist()[:4]], "... with the misprinted T(y):",
      [round(v, 3) for v in misprinted_T.tolist()[:4]], "...")

# %% [markdown]
# **Exponential noise**, $y\mid x \sim x e^{-xy}$, prior $x\sim\mathrm{Gamma}(a,b)$:
# $p(y) = a b^a/(b+y)^{a+1}$, so $-l'(y) = (a+1)/(b+y)$, which is exactly the posterior mean of
# $x\mid y\sim\mathrm{Gamma}(a+1, b+y)$. **Bernoulli**, prior $x\sim\mathrm{Beta}(a,b)$, continuous
# extension $\log p(y) = \log\Gamma(a+y) + \log\Gamma(b+1-y)$: $l'(y) = \psi(a+y)-\psi(b+1-y) = \mathbb E[\mathrm{logit}\,x\mid y]$,
# and $\mathrm{sigmoid}(l')$ is a plug-in value, not $\mathbb E[x\mid y] = (a+y)/(a+b+1)$.

# %%
ye = torch.tensor([0.0, 0.5, 2.0], dtype=F64)
x_exp = tweedie.exponential(autograd_score(lambda t: -(a + 1) * torch.log(b + t), ye))
assert torch.allclose(x_exp, (a + 1) / (b + ye), rtol=1e-12)

a_b, b_b = 2.0, 5.0
yb = torch.tensor([0.0, 1.0], dtype=F64)
x_bern = tweedie.bernoulli(autograd_score(lambda t: torch.lgamma(a_b + t) + torch.lgamma(b_b + 1 - t), yb))
print("Bernoulli plug-in", [round(v, 3) for v in x_bern.tolist()], "vs E[x | y]",
      [round(v, 3) for v in ((a_b + yb) / (a_b + b_b + 1)).tolist()])
assert bool(((x_bern - (a_b + yb) / (a_b + b_b + 1)).abs() > 0.01).all())

# %% [markdown]
# ## 6. Noise2Score: learn the score from the noisy data, then apply Tweedie
#
# Nothing above used clean data except to *check*. In practice the score $l'(y)$ of the noisy
# marginal is unknown, but it can be learned from noisy samples by a denoising autoencoder with a
# small extra perturbation $\sigma_a$ (AR-DAE; Alain & Bengio 2014; Lim et al. 2020):
#
# $$ \mathcal L(\theta) = \mathbb E_{y,u}\,\big\|\sigma_a\, s_\theta(y + \sigma_a u) + u\big\|^2,
# \qquad u\sim\mathcal N(0,I), $$
#
# whose minimiser is the score of $p_y * \mathcal N(0,\sigma_a^2)$, which tends to $l'(y)$ as
# $\sigma_a\to 0$. This is exactly denoising score matching (lesson 02) run **on the noisy data**. We
# train the course's small noise-conditional MLP on noisy 2-D points (a ring of six clusters, noise
# $\sigma = 0.4$) over $\sigma_a\in[0.1, 0.3]$, read the score at $\sigma_a = 0.1$, and plug it into
# Gaussian Tweedie. The clean points are used only to measure the error, and to compare with the
# exact posterior mean `GaussianMixture.denoiser`.

# %%
gen = torch.Generator().manual_seed(1)
ring = GaussianMixture.ring(6, radius=2.0, std=0.15)
sigma = 0.4
x_clean = ring.sample(4000, generator=gen)
y_noisy = x_clean + sigma * torch.randn(x_clean.shape, generator=gen)

net = MLPDenoiser(2, generator=gen)
train_dsm(net, y_noisy, steps=600, batch_size=1024, sigma_min=0.1, sigma_max=0.3, generator=gen)  # noisy data only
sigma_a = 0.1
with torch.no_grad():
    score_y = net.score(y_noisy, sigma_a)
x_n2s = tweedie.gaussian(y_noisy, score_y, sigma)

u = torch.randn(y_noisy.shape, generator=gen)
with torch.no_grad():   # the AR-DAE loss is twice the sigma^2-weighted DSM loss on the noisy data
    ardae = tweedie.ardae_loss(lambda v: net.score(v, sigma_a), y_noisy, sigma_a, u=u)
    dsm = losses.dsm_loss(net.score, y_noisy, sigma_a, z=u)
assert torch.allclose(ardae, 2 * dsm, rtol=1e-4, atol=1e-5)

mse = lambda est: ((est - x_clean) ** 2).sum(1).mean().item()
mse_noisy, mse_n2s, mse_mmse = mse(y_noisy), mse(x_n2s), mse(ring.denoiser(y_noisy, sigma))
print(f"MSE per point: noisy {mse_noisy:.4f}, Noise2Score {mse_n2s:.4f}, exact posterior mean {mse_mmse:.4f}")

fig, ax = plt.subplots(1, 3, figsize=(10, 3.4), sharex=True, sharey=True)
for a_, pts, title in zip(ax, [y_noisy, x_n2s, ring.denoiser(y_noisy, sigma)],
                          ["noisy y (all we have)", "Noise2Score", "exact posterior mean"]):
    a_.scatter(pts[:1500, 0], pts[:1500, 1], s=1)
    a_.set_title(title)
    a_.set_aspect("equal")
plt.tight_layout()
plt.show()

# %% [markdown]
# Noise2Score removes most of the noise and comes close to the Bayes-optimal MSE, which it would
# reach with the exact score. The remaining gap is the error of a score learned in a few seconds
# (denoising score matching at small $\sigma_a$ is noisy: the regression target $u$ dwarfs the signal
# $\sigma_a\,l'(y)$; the paper trains for 22 000 iterations while annealing $\sigma_a$), plus a small bias
# from reading the score at $\sigma_a = 0.1$ instead of $0$.

# %%
assert mse_n2s < 0.35 * mse_noisy              # removes most of the noise ...
assert mse_n2s < 1.35 * mse_mmse               # ... and comes within 35 % of the Bayes-optimal MSE

# %% [markdown]
# ## 7. SURE is implicit score matching
#
# Write the denoiser in residual form $F(y) = y + \sigma^2 R(y)$ (Tweedie's shape). Then
# $\|y-F\|^2 = \sigma^4\|R\|^2$ and $\mathrm{div}F = d + \sigma^2\,\mathrm{div}R$, so
#
# $$ \mathrm{SURE}(F, y) = 2\sigma^4\Big(\tfrac12\|R(y)\|^2 + \mathrm{div}_y R(y)\Big) + d\sigma^2
#  = 2\sigma^4\,\mathrm{ISM}(R, y) + d\sigma^2 , $$
#
# Hyvärinen's implicit score-matching objective (lesson 02), whose minimiser is $R = \nabla\log p_y$.
# Minimising SURE therefore learns the score of the noisy data, and the SURE-optimal denoiser *is*
# Tweedie's: "Noise2X and SURE are score-based approaches" (Ye). We check the identity with exact
# divergences (`losses.divergence`) for the learned network.

# %%
R = lambda v: net.score(v, sigma_a)
yy = y_noisy[:200]
F = lambda v: v + sigma ** 2 * R(v)
d = yy.shape[1]
sure_exact = ((yy - F(yy)) ** 2).sum(1) - d * sigma ** 2 + 2 * sigma ** 2 * losses.divergence(F, yy)
ism = losses.ism_loss(R, yy)
gap = (sure_exact - (2 * sigma ** 4 * ism + d * sigma ** 2)).abs().max().item()
print(f"max |SURE - (2 sigma^4 ISM + d sigma^2)| = {gap:.1e}")
assert gap < 1e-4

# %% [markdown]
# **Summary.** The Bayes denoiser depends on the data only through the score of the noisy data. For
# Gaussian (and Exponential) noise Tweedie's formula gives the posterior mean exactly; for Poisson
# noise it gives $\exp\mathbb E[\log x\mid y]$, about half a count too low; for Gamma noise
# $1/\mathbb E[1/x\mid y]$. The score can be learned from noisy data by denoising score matching,
# and SURE/Noise2X are score matching in disguise. Lesson 02 studies the score-matching losses
# themselves; lesson 03 turns scores into samples.
#
# **References.** B. Efron, *Tweedie's formula and selection bias*, JASA 2011 · K. Kim, J. C. Ye,
# *Noise2Score*, NeurIPS 2021 · J. Lehtinen et al., *Noise2Noise*, ICML 2018 · J. Batson, L. Royer,
# *Noise2Self*, ICML 2019 · C. Stein, Ann. Stat. 1981 · S. Soltanayev, S. Y. Chun, *SURE-based training*,
# NeurIPS 2018 · S. Ramani et al., *Monte-Carlo SURE*, IEEE TIP 2008 · G. Alain, Y. Bengio, JMLR 2014 ·
# J. H. Lim et al., *AR-DAE*, ICML 2020 · A. Hyvärinen, JMLR 2005.
