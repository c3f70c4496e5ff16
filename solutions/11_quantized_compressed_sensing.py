# %% [markdown]
# # 11 · Quantized compressed sensing — exercises
#
# Companion to `lessons/11_quantized_compressed_sensing.py`. You will write
#
# 1. the **score of a quantization bin**, QCS-SGM's $g_m$: the derivative of
#    $\log[\Phi(\tilde u) - \Phi(\tilde l)]$, computed in log space so that it stays finite far in the tails,
# 2. its **1-bit** special case, $g = y\,\varphi(z/s)/\big(s\,\Phi(yz/s)\big)$,
# 3. the **moments of a truncated Gaussian**, the moment matching at the heart of expectation
#    propagation in QCS-SGM+.
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's implementation, so the notebook
# runs top to bottom even before you start.
#
# **Conventions.** All inputs are float64 tensors of one shape, and every operation is elementwise. A
# bin is $[l, u)$, bounds possibly $\pm\infty$ (`math.inf`). $\varphi$ and $\Phi$ are the standard normal
# density and distribution function: `torch.special.ndtr` is $\Phi$, `torch.special.log_ndtr` is $\log\Phi$
# (accurate far in the left tail), and `diffcourse.physics.noise.log_normal_interval(a, b)` is
# $\log[\Phi(b) - \Phi(a)]$, accurate for any $a < b$.

# %%
import math

import matplotlib.pyplot as plt
import torch

from diffcourse.checks.lesson11 import check_bin_score, check_one_bit_score, check_tilted_moments
from diffcourse.physics.noise import log_normal_interval
from diffcourse.posterior import guidance_quantized as gq

F64 = torch.float64

# %% [markdown]
# ## Exercise 1 · The score of a bin
#
# A measurement $y_m$ says that $w_m = z_m + \tilde n_m$, with $\tilde n_m\sim\mathcal N(0, s^2)$, fell in the bin
# $[l, u)$. Its likelihood and score in $z$ are (Meng & Kabashima, ICLR 2023, Eq. 11)
#
# $$ P = \Phi\!\Big(\frac{u - z}{s}\Big) - \Phi\!\Big(\frac{l - z}{s}\Big),\qquad
#    g = \frac{\partial \log P}{\partial z} = \frac{\varphi(\tilde l) - \varphi(\tilde u)}{s\,P},\qquad
#    \tilde l = \frac{l - z}{s},\ \tilde u = \frac{u - z}{s} . $$
#
# In float64, $\Phi(28) - \Phi(27) = 1 - 1 = 0$, and $P$ underflows to 0 long before $g$ becomes large, so
# the ratio must be formed from logarithms: $\log P$ = `log_normal_interval(l̃, ũ)` and
# $\varphi(t)/P = \exp\big(\log\varphi(t) - \log P\big)$, with $\log\varphi(t) = -t^2/2 - \tfrac12\log 2\pi$ (and
# $\varphi(\pm\infty) = 0$). Complete `bin_score`; the check includes bins 40 standard deviations away.

# %%
def bin_score(z, l, u, s):
    """∂/∂z log[Φ((u - z)/s) - Φ((l - z)/s)] elementwise (Meng & Kabashima, ICLR 2023, Eq. 11)."""
    ### BEGIN SOLUTION
    lt, ut = (l - z) / s, (u - z) / s
    log_p = log_normal_interval(lt, ut)

    def ratio(t):                                                  # φ(t)/P, 0 at t = ±inf
        return torch.where(torch.isinf(t), torch.zeros_like(t),
                           torch.exp(-t ** 2 / 2 - 0.5 * math.log(2 * math.pi) - log_p))
    return (ratio(lt) - ratio(ut)) / s
    ### END SOLUTION


# %%
check_bin_score(bin_score)

# %% tags=["solution"]
assert check_bin_score(bin_score, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# The library's `guidance_quantized.qcs_multibit_g(z, l, u, s)` is the same function (it also avoids
# the cancellation of $\varphi(\tilde l) - \varphi(\tilde u)$ for very narrow bins). Below, the score of the bin
# $[0, 0.5)$ for three noise levels: it is close to 0 inside the bin (every $z$ there explains $y$) and
# grows like $(\text{nearest edge} - z)/s^2$ outside, the Gaussian score of the edge.

# %%
z = torch.linspace(-1.0, 1.5, 401, dtype=F64)
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for s in (0.02, 0.1, 0.3):
    g = check_bin_score.reference(z, torch.zeros_like(z), torch.full_like(z, 0.5), torch.full_like(z, s))
    ax.plot(z, g * s ** 2, label=f"s = {s}")
edge = torch.where(z < 0, -z, torch.where(z > 0.5, 0.5 - z, torch.zeros_like(z)))
ax.plot(z, edge, "k:", label="(nearest edge - z)")
ax.axvspan(0, 0.5, color="grey", alpha=0.15)
ax.set(xlabel="z", ylabel="s² g", title="Score of the bin [0, 0.5), scaled by s²")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 2 · One bit
#
# With the sign quantizer, $y\in\{-1, +1\}$ and the bins are $[0,\infty)$ and $(-\infty, 0)$. Then
# $P = \Phi(yz/s)$ and the score becomes (ICLR 2023, Eq. 12)
#
# $$ g = \frac{y\,\varphi(z/s)}{s\,\Phi(yz/s)} . $$
#
# When the sign disagrees with $z$ (the "wrong tail", $yz/s \ll 0$), $\Phi$ underflows; with $\log\Phi$ from
# `torch.special.log_ndtr` the ratio $\varphi/\Phi$ (the inverse Mills ratio) stays finite, about $|z|/s$.
# Complete `one_bit_score`.

# %%
def one_bit_score(z, y, s):
    """y φ(z/s) / (s Φ(y z/s)) elementwise, y ∈ {-1, +1} (Meng & Kabashima, ICLR 2023, Eq. 12)."""
    ### BEGIN SOLUTION
    t = z / s
    return y * torch.exp(-t ** 2 / 2 - 0.5 * math.log(2 * math.pi) - torch.special.log_ndtr(y * t)) / s
    ### END SOLUTION


# %%
check_one_bit_score(one_bit_score)

# %% tags=["solution"]
assert check_one_bit_score(one_bit_score, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# The 1-bit form is the bin score of Exercise 1 with the half-lines as bins. We compare the two
# references over a wide range of $z$, then plot $s\,g$ for $y = +1$: it decays to 0 when $z$ is well on
# the right side (the sign is already explained) and grows linearly in the wrong tail.

# %%
z = torch.linspace(-8, 8, 161, dtype=F64)
ones, s = torch.ones_like(z), torch.full_like(z, 0.5)
g1 = check_one_bit_score.reference(z, ones, s)
g_bins = check_bin_score.reference(z, torch.zeros_like(z), torch.full_like(z, math.inf), s)
print(f"1-bit form vs bin form: largest relative difference {((g1 - g_bins) / g1).abs().max():.1e}")
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(z, 0.5 * g1)
ax.set(xlabel="z", ylabel="s g", title="1-bit score for y = +1, s = 0.5")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 3 · Moments of a truncated Gaussian
#
# Expectation propagation (Minka, UAI 2001) replaces each hard factor $\mathbb 1[w_m\in[l_m,u_m)]$ by a
# Gaussian chosen so that, next to the rest of the model (the "cavity" $\mathcal N(\mu, v)$), it gives
# the same mean and variance as the exact factor would. QCS-SGM+ (Meng & Kabashima, AAAI 2024) does
# this for every measurement in its factorised module. The moments to match are those of the
# truncated Gaussian: with $a = (l-\mu)/\sqrt v$, $b = (u-\mu)/\sqrt v$, $Z = \Phi(b) - \Phi(a)$,
#
# $$ \mathbb E[w] = \mu + \sqrt v\,\frac{\varphi(a) - \varphi(b)}{Z},\qquad
#    \mathrm{Var}[w] = v\Big[1 + \frac{a\varphi(a) - b\varphi(b)}{Z}
#                      - \Big(\frac{\varphi(a) - \varphi(b)}{Z}\Big)^2\Big] $$
#
# (Johnson, Kotz & Balakrishnan 1994, Sec. 10.1; take $t\,\varphi(t) = 0$ at $t = \pm\infty$). Complete
# `tilted_moments`; here the bins stay within six standard deviations, so `torch.special.ndtr` is
# accurate enough.

# %%
def tilted_moments(mu, v, l, u):
    """(mean, variance) of N(μ, v) truncated to [l, u), elementwise."""
    ### BEGIN SOLUTION
    sd = v.sqrt()
    a, b = (l - mu) / sd, (u - mu) / sd
    Z = torch.special.ndtr(b) - torch.special.ndtr(a)

    def pdf(t):
        return torch.exp(-t ** 2 / 2) / math.sqrt(2 * math.pi)

    def t_pdf(t):                                                  # t φ(t), 0 at ±inf
        return torch.where(torch.isinf(t), torch.zeros_like(t), t * pdf(t))
    m = (pdf(a) - pdf(b)) / Z
    return mu + sd * m, v * (1 + (t_pdf(a) - t_pdf(b)) / Z - m ** 2)
    ### END SOLUTION


# %%
check_tilted_moments(tilted_moments)

# %% tags=["solution"]
assert check_tilted_moments(tilted_moments, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# The Gaussian with these moments is the one EP keeps. Below, a cavity $\mathcal N(0.3, 0.5^2)$ and the bin
# $[0.5, 1)$: the tilted density (the cavity restricted to the bin, renormalised) and its moment-matched
# Gaussian. In QCS-SGM+ this is done for all measurements at once, and the variances are averaged
# into one number per sample (the "scalar-variance" EP of the paper), which makes the Gaussian
# module a single eigen-decomposed solve.

# %%
mu, v = torch.tensor([0.3], dtype=F64), torch.tensor([0.25], dtype=F64)
l, u = torch.tensor([0.5], dtype=F64), torch.tensor([1.0], dtype=F64)
m, var = check_tilted_moments.reference(mu, v, l, u)
w = torch.linspace(-1.0, 2.0, 600, dtype=F64)
cavity = torch.exp(-(w - mu) ** 2 / (2 * v)) / torch.sqrt(2 * math.pi * v)
inside = ((w >= l) & (w < u)).to(F64)
Z = torch.special.ndtr((u - mu) / v.sqrt()) - torch.special.ndtr((l - mu) / v.sqrt())
matched = torch.exp(-(w - m) ** 2 / (2 * var)) / torch.sqrt(2 * math.pi * var)
fig, ax = plt.subplots(figsize=(6.5, 3.8))
ax.plot(w, cavity, label="cavity N(0.3, 0.5²)")
ax.plot(w, cavity * inside / Z, label="tilted: cavity × 1[w ∈ [0.5, 1)] / Z")
ax.plot(w, matched, "--", label=f"moment-matched N({m.item():.2f}, {var.sqrt().item():.2f}²)")
ax.set(xlabel="w", title="One EP site update")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print("library truncated_normal_moments agrees:",
      torch.allclose(torch.stack(gq.truncated_normal_moments((l - mu) / v.sqrt(), (u - mu) / v.sqrt())).flatten(),
                     torch.cat([(m - mu) / v.sqrt(), var / v])))
