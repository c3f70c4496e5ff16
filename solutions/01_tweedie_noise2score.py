# %% [markdown]
# # 01 · Tweedie and Noise2Score — exercises
#
# Companion to `lessons/01_tweedie_noise2score.py`. You will write
#
# 1. the **Poisson** Noise2Score estimator for scaled counts $y = \zeta\,\mathrm{Poisson}(x/\zeta)$,
# 2. the **Gamma** estimator for multiplicative noise (mind the sign of $T(y)$, often misprinted),
# 3. the **SURE** loss with a Monte-Carlo divergence, which trains a denoiser without clean images.
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's implementation
# (`diffcourse.prior.tweedie`, `diffcourse.prior.losses`), so the notebook runs top to bottom
# even before you start.
#
# **Tweedie for the exponential family** (Efron 2011; Kim & Ye 2021): if
# $p(y\mid\eta) = p_0(y)\exp(\eta^\top T(y) - \varphi(\eta))$ then
# $\mathbb E[\eta\mid y]^\top T'(y) = l'(y) - l_0'(y)$, with $l'(y) = \frac{d}{dy}\log p(y)$ the score
# of the *noisy* marginal. All functions act elementwise on tensors of any shape.

# %%
import math

import matplotlib.pyplot as plt
import torch

from diffcourse.checks.lesson01 import check_gamma_tweedie, check_poisson_tweedie, check_sure
from diffcourse.prior import losses, tweedie

F64 = torch.float64


def autograd_score(log_p, y):
    """d/dy log p(y), elementwise, by autograd."""
    y = y.clone().requires_grad_(True)
    return torch.autograd.grad(log_p(y).sum(), y)[0]


# %% [markdown]
# ## Exercise 1 · Poisson noise
#
# For counts $c\mid x\sim\mathrm{Poisson}(x)$: $\eta = \log x$, $T(c) = c$, $p_0(c) = 1/c!$ and
# $l_0'(c) = -\psi(c+1)\approx -\log(c+\tfrac12)$, so
# $\hat x = (c + \tfrac12)\,\exp(l_c'(c))$.
#
# Detectors report scaled counts $y = \zeta c$ with $c\sim\mathrm{Poisson}(x/\zeta)$. Given $y$, `zeta`
# and `score` $= \frac{d}{dy}\log p(y)$ (the score of the **observed** $y$, not of the counts), return
# the estimate of $x$. Hint: $p_y(y) = p_c(y/\zeta)/\zeta$, so $l_c'(c) = \zeta\, l_y'(y)$; and
# $x = \zeta\cdot$(the estimate for the counts).

# %%
def poisson_tweedie(y, score, zeta):
    """Noise2Score for y = zeta Poisson(x / zeta); y, score: tensors of one shape; zeta > 0."""
    ### BEGIN SOLUTION
    return (y + 0.5 * zeta) * torch.exp(zeta * score)
    ### END SOLUTION


# %%
check_poisson_tweedie(poisson_tweedie)

# %% tags=["solution"]
assert check_poisson_tweedie(poisson_tweedie, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# With the library's estimator: a Gamma(4, rate 3) prior on the intensity $x$ and $\zeta = 0.05$
# (about 20 counts per unit intensity). The posterior mean is $\zeta(a + c)/(1 + b\zeta)$ and, with
# $\psi(c+1)\approx\log(c+\tfrac12)$, the estimate is $\zeta(a + c - \tfrac12)/(1 + b\zeta)$: it sits
# $\tfrac12/(1 + b\zeta)\approx 0.43$ of a count below the posterior mean — the half count of
# $\log(c+\tfrac12)$, shrunk by the posterior's factor $1/(1+b\zeta)$.

# %%
a, b, zeta = 4.0, 3.0, 0.05
counts = torch.arange(0.0, 80.0, dtype=F64)
y = zeta * counts
log_p = lambda t: torch.lgamma(a + t / zeta) - torch.lgamma(t / zeta + 1) - (t / zeta) * math.log(1 + b * zeta)
x_hat = tweedie.poisson(y, autograd_score(log_p, y), zeta)
post_mean = zeta * (a + counts) / (1 + b * zeta)

plt.figure(figsize=(5, 3))
plt.plot(y, (post_mean - x_hat) / zeta, ".-")
plt.axhline(0.5 / (1 + b * zeta), color="k", ls=":", label=r"$\frac{1}{2}/(1+b\zeta)$")
plt.xlabel(r"observed $y = \zeta c$")
plt.ylabel(r"(posterior mean $-\ \hat x$) / $\zeta$")
plt.legend()
plt.tight_layout()
plt.show()
assert abs((post_mean - x_hat)[-1].item() / zeta - 0.5 / (1 + b * zeta)) < 0.02

# %% [markdown]
# ## Exercise 2 · Gamma (multiplicative) noise
#
# $y\mid x\sim\mathrm{Gamma}(\text{shape }k,\ \text{rate }k/x)$, so $\mathbb E[y\mid x] = x$ and
# $p(y\mid x)\propto y^{k-1}\exp\!\big(-\tfrac{k}{x}\,y\big)$. Hence $\eta = [k-1,\ -k/x]$ with
# $T(y) = [\log y,\ y]$ (a misprint that circulates writes $-y$, which flips a sign), $T'(y) = [1/y,\ 1]$ and
# $l_0' = 0$. Tweedie gives $(k-1)/y - k\,\mathbb E[1/x\mid y] = l'(y)$. Solve for the estimate
# $\hat x = 1/\mathbb E[1/x\mid y]$ and return it.

# %%
def gamma_tweedie(y, score, k):
    """Noise2Score for y | x ~ Gamma(k, rate k / x): returns 1 / E[1/x | y]; y > 0."""
    ### BEGIN SOLUTION
    return k * y / ((k - 1) - y * score)
    ### END SOLUTION


# %%
check_gamma_tweedie(gamma_tweedie)

# %% tags=["solution"]
assert check_gamma_tweedie(gamma_tweedie, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# With the library's estimator, for the conjugate prior $1/x\sim\mathrm{Gamma}(a,b)$ (so
# $l'(y) = (k-1)/y - k(a+k)/(b+ky)$): the estimate is the *harmonic* posterior mean, below the
# arithmetic one $(b+ky)/(a+k-1)$, and the gap closes as $k$ grows (less noise).

# %%
a, b = 3.0, 2.0
yg = torch.linspace(0.1, 3.0, 30, dtype=F64)
plt.figure(figsize=(5, 3))
for k in (2.0, 10.0, 50.0):
    score = (k - 1) / yg - k * (a + k) / (b + k * yg)
    ratio = tweedie.gamma(yg, score, k) / ((b + k * yg) / (a + k - 1))
    plt.plot(yg, ratio, label=f"k = {k:g}")
    assert torch.allclose(ratio, torch.full_like(ratio, (a + k - 1) / (a + k)))
plt.xlabel("y")
plt.ylabel(r"$\hat x\ /\ \mathbb{E}[x\mid y]$")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 3 · The SURE loss
#
# For $y = x + \sigma n$ with $d$ values per image, Stein's unbiased risk estimate of a denoiser $F$ is
#
# $$ \mathrm{SURE}(F, y) = \|y - F(y)\|^2 - d\sigma^2 + 2\sigma^2\, \frac{b^\top\big(F(y+\epsilon b) - F(y)\big)}{\epsilon}, $$
#
# with one random probe $b$ (given, same shape as $y$) for the divergence. `y` has shape
# (B, ...): return one value per image, shape (B,) (sum over all but the first dimension).

# %%
def sure(F, y, sigma, b, eps):
    """Monte-Carlo SURE of the denoiser F at y (B, ...), noise level sigma, probe b, step eps: (B,)."""
    ### BEGIN SOLUTION
    Fy = F(y)
    div = (b * (F(y + eps * b) - Fy)).flatten(1).sum(1) / eps
    d = y[0].numel()
    return ((y - Fy) ** 2).flatten(1).sum(1) - d * sigma ** 2 + 2 * sigma ** 2 * div
    ### END SOLUTION


# %%
check_sure(sure)

# %% tags=["solution"]
assert check_sure(sure, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# With the library's `losses.sure_loss`: choose the shrinkage $F(y) = a\,y$ for $x\sim\mathcal N(0,\tau^2 I)$
# from noisy data alone. SURE tracks the true MSE $d((1-a)^2\tau^2 + a^2\sigma^2)$ and is minimised at
# the Wiener factor $a^* = \tau^2/(\tau^2+\sigma^2)$.

# %%
gen = torch.Generator().manual_seed(0)
tau, sigma, d = 1.0, 0.7, 16
x = tau * torch.randn(2000, d, generator=gen, dtype=F64)
y = x + sigma * torch.randn(2000, d, generator=gen, dtype=F64)
grid = torch.linspace(0.2, 1.0, 17, dtype=F64)
sure_curve = torch.stack([losses.sure_loss(lambda t: a * t, y, sigma, generator=gen).mean() for a in grid.tolist()])
mse_curve = d * ((1 - grid) ** 2 * tau ** 2 + grid ** 2 * sigma ** 2)
plt.figure(figsize=(5, 3))
plt.plot(grid, mse_curve, "k-", lw=3, alpha=0.4, label="true MSE")
plt.plot(grid, sure_curve, "o--", ms=3, label="SURE (noisy data only)")
plt.axvline(tau ** 2 / (tau ** 2 + sigma ** 2), color="gray", ls=":", label="Wiener factor")
plt.xlabel("shrinkage a")
plt.legend()
plt.tight_layout()
plt.show()
a_sure = grid[sure_curve.argmin()].item()
assert abs(a_sure - tau ** 2 / (tau ** 2 + sigma ** 2)) <= (grid[1] - grid[0]).item()
