# %% [markdown]
# # 02 · Score matching — exercises
#
# Companion to `lessons/02_score_matching.py`. You will write
#
# 1. the **denoising score-matching loss** with the NCSN weighting $\lambda(\sigma)=\sigma^2$,
# 2. the **exact score of a noisy Gaussian mixture**, the reference every learned score is compared with,
# 3. the **variance-reduced sliced score-matching** loss, with one extra backward pass.
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's implementation
# (`diffcourse.prior.losses`, `diffcourse.prior.toy`), so the notebook runs top to bottom even
# before you start.
#
# **Convention** (as in `diffcourse.prior.losses`): a loss returns one value per sample, shape (B,),
# summing over the values of each sample; average it yourself before `backward()`.

# %%
import matplotlib.pyplot as plt
import torch

from diffcourse.checks.lesson02 import check_dsm_loss, check_mixture_score, check_ssm_vr
from diffcourse.plot import plot_score_field
from diffcourse.prior import losses
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64

# %% [markdown]
# ## Exercise 1 · The DSM loss
#
# For clean samples $x_0$ (shape (B, ...)), noise $z$ of the same shape and a noise level $\sigma$
# (a positive number), return per sample
#
# $$ \tfrac12\,\big\|\sigma\, s(x_0 + \sigma z,\ \sigma) + z\big\|^2 , $$
#
# the $\sigma^2$-weighted form of $\tfrac12\|s(\tilde x,\sigma) + (\tilde x - x_0)/\sigma^2\|^2$
# (Vincent 2011; Song & Ermon 2019, Eq. 2). `score` is a callable `score(x, sigma)`.

# %%
def dsm_loss(score, x0, sigma, z):
    """sigma^2-weighted denoising score matching, one value per sample: (B,)."""
    ### BEGIN SOLUTION
    x_noisy = x0 + sigma * z
    residual = sigma * score(x_noisy, sigma) + z
    return 0.5 * (residual ** 2).flatten(1).sum(1)
    ### END SOLUTION


# %%
check_dsm_loss(dsm_loss)

# %% tags=["solution"]
assert check_dsm_loss(dsm_loss, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# With the library's `losses.dsm_loss`: for data $\mathcal N(\mu,\tau^2 I_d)$ the loss at the exact
# noisy score is $\tfrac12 d\tau^2/(\tau^2+\sigma^2)$ at every $\sigma$, while the *clean* score
# $-(x-\mu)/\tau^2$ — the wrong target at $\sigma > 0$ — does worse, more so as $\sigma$ grows.

# %%
mu, tau, d = 0.5, 0.7, 4
gen = torch.Generator().manual_seed(0)
x0 = mu + tau * torch.randn(20000, d, generator=gen, dtype=F64)
z = torch.randn(x0.shape, generator=gen, dtype=F64)
sigmas = [0.05, 0.1, 0.2, 0.5, 1.0]
noisy_score = lambda v, s: -(v - mu) / (tau ** 2 + s ** 2)
clean_score = lambda v, s: -(v - mu) / tau ** 2
at_noisy = [losses.dsm_loss(noisy_score, x0, s, z=z).mean().item() for s in sigmas]
at_clean = [losses.dsm_loss(clean_score, x0, s, z=z).mean().item() for s in sigmas]
plt.figure(figsize=(5, 3))
plt.semilogx(sigmas, at_noisy, "o-", label="exact noisy score")
plt.semilogx(sigmas, at_clean, "s--", label="clean-data score")
plt.semilogx(sigmas, [0.5 * d * tau ** 2 / (tau ** 2 + s ** 2) for s in sigmas], "k:", label="closed form")
plt.xlabel(r"$\sigma$")
plt.ylabel("DSM loss")
plt.legend()
plt.tight_layout()
plt.show()
assert all(c > n for c, n in zip(at_clean, at_noisy))

# %% [markdown]
# ## Exercise 2 · The exact score of a noisy Gaussian mixture
#
# For $p = \sum_k w_k\,\mathcal N(\mu_k, C_k)$ the noisy density is
# $p_\sigma = \sum_k w_k\,\mathcal N(\mu_k, C_k + \sigma^2 I)$, and
#
# $$ \nabla_x\log p_\sigma(x) = -\sum_k r_k(x)\,(C_k+\sigma^2 I)^{-1}(x-\mu_k),\qquad
#    r_k(x) = \frac{w_k\,\mathcal N(x;\mu_k, C_k+\sigma^2 I)}{\sum_j w_j\,\mathcal N(x;\mu_j, C_j+\sigma^2 I)} . $$
#
# Inputs: `x` (N, d), `sigma` a number, `weights` (K,), `means` (K, d), `covs` (K, d, d). Compute the
# responsibilities from log-densities with `torch.softmax` (or `logsumexp`) so that far-away points
# do not underflow.

# %%
def mixture_score(x, sigma, weights, means, covs):
    """Exact score of sum_k w_k N(mu_k, C_k + sigma^2 I) at x (N, d): (N, d)."""
    ### BEGIN SOLUTION
    d = x.shape[1]
    cov = covs + sigma ** 2 * torch.eye(d, dtype=x.dtype)                     # (K, d, d)
    diff = x[:, None, :] - means[None]                                        # (N, K, d)
    sol = torch.linalg.solve(cov[None], diff[..., None])[..., 0]              # (C + s2 I)^-1 (x - mu)
    log_n = -0.5 * (diff * sol).sum(-1) - 0.5 * torch.logdet(cov)[None]       # up to a constant
    r = torch.softmax(torch.log(weights)[None] + log_n, dim=1)                # (N, K)
    return -(r[..., None] * sol).sum(1)
    ### END SOLUTION


# %%
check_mixture_score(mixture_score)

# %% tags=["solution"]
assert check_mixture_score(mixture_score, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# The library's `GaussianMixture.score` is this formula. A score field is easiest to read with
# normalised arrows: at small $\sigma$ every arrow points to the nearest component; at large $\sigma$
# the field looks like that of a single Gaussian around the mixture mean.

# %%
mixture = GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=F64),
                          torch.tensor([[-1.5, -0.5], [1.5, -0.5], [0.0, 1.5]], dtype=F64),
                          torch.stack([torch.tensor([[0.3, 0.2], [0.2, 0.3]], dtype=F64),
                                       torch.tensor([[0.2, -0.15], [-0.15, 0.3]], dtype=F64),
                                       0.05 * torch.eye(2, dtype=F64)]))
fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
for ax, sigma in zip(axes, (0.1, 0.5, 2.0)):
    plot_score_field(lambda v: mixture.score(v, sigma), (-4, 4), (-4, 4), n=17, ax=ax, normalize=True)
    ax.set_title(f"sigma = {sigma}")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 3 · Sliced score matching, variance reduced
#
# For a score model `score(x)` (no $\sigma$), samples `x` (B, d) and one probe `v` (B, d), return per sample
#
# $$ v^\top\nabla_x s(x)\,v + \tfrac12\|s(x)\|^2 \qquad\text{(Song et al. 2019, SSM-VR).} $$
#
# The Jacobian term needs one backward pass: $\nabla_x\big(v^\top s(x)\big) = (\nabla_x s)^\top v$, then an
# inner product with $v$. Make `x` require gradients (`x = x.detach().requires_grad_(True)`), and keep
# the graph (`create_graph=True`) so that the loss can be trained. Sum over the batch before
# differentiating: the samples do not interact, so each row of the gradient belongs to its own sample.

# %%
def ssm_vr(score, x, v):
    """Variance-reduced sliced score matching with one probe per sample: (B,)."""
    ### BEGIN SOLUTION
    x = x.detach().requires_grad_(True)
    s = score(x)                                                              # (B, d)
    sv = (s * v).sum(1)                                                       # v^T s, (B,)
    grad = torch.autograd.grad(sv.sum(), x, create_graph=True)[0]             # (grad_x s)^T v
    return (grad * v).sum(1) + 0.5 * (s ** 2).sum(1)
    ### END SOLUTION


# %%
check_ssm_vr(ssm_vr)

# %% tags=["solution"]
assert check_ssm_vr(ssm_vr, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# With the library's `losses.ssm_vr_loss` we fit the one-parameter family $s_\lambda(x) = -\lambda x$
# to samples of $\mathcal N(0, \tau^2 I)$ by gradient descent on $\lambda$: the objective
# $-d\lambda + \tfrac12\lambda^2 d\tau^2$ is minimised at $\lambda = 1/\tau^2$, the true score, without ever
# evaluating it.

# %%
tau = 0.5
gen = torch.Generator().manual_seed(1)
data = tau * torch.randn(4000, 2, generator=gen, dtype=F64)
lam = torch.tensor(1.0, dtype=F64)
trace = []
for step in range(60):                                                        # gradient descent on lambda
    lam_var = lam.clone().requires_grad_(True)
    objective = losses.ssm_vr_loss(lambda t: -lam_var * t, data, rademacher=True, generator=gen).mean()
    (grad,) = torch.autograd.grad(objective, lam_var)
    lam = lam - 0.5 * grad
    trace.append(lam.item())
plt.figure(figsize=(5, 3))
plt.plot(trace)
plt.axhline(1 / tau ** 2, color="k", ls=":", label=r"$1/\tau^2$")
plt.xlabel("step")
plt.ylabel(r"$\lambda$")
plt.legend()
plt.tight_layout()
plt.show()
assert abs(trace[-1] * tau ** 2 - 1) < 0.05
