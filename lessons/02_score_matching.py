# %% [markdown]
# # 02 · Score matching: learning $\nabla_x\log p(x)$ from samples
#
# Lesson 01 showed that the best denoiser needs only the **score** of the noisy data. This lesson
# is about learning a score $s_\theta(x)\approx\nabla_x\log p(x)$ from samples of $p$, without ever
# knowing $p$ or its normalising constant. Every diffusion model in the course is trained this way.
#
# **Learning goals**
#
# 1. Write **explicit score matching** (ESM) and see why it cannot be computed; derive **implicit
#    score matching** (ISM, Hyvärinen 2005) by integration by parts and check ISM = ESM − const.
# 2. Use **denoising score matching** (DSM, Vincent 2011): regress onto the score of the noise kernel;
#    its optimum is the score of the *noisy* density, and a denoising autoencoder is a score model
#    (Tweedie, Alain & Bengio 2014).
# 3. Use **sliced score matching** (SSM, Song et al. 2019): random projections replace the Jacobian
#    trace; plain vs variance-reduced, Gaussian vs Rademacher probes.
# 4. Explain **noise-conditional score networks** and the **$\sigma^2$ weighting** (NCSN, Song & Ermon 2019).
# 5. Train a small network for a few seconds and compare **learned and exact score fields** of a 2-D
#    Gaussian mixture: accurate where the data are, wrong where they are not.
#
# Conventions of the course (`diffcourse.prior.losses`): every loss is per sample, summed over the
# values of a sample, shape (B,); DSM carries the $\tfrac12$ and the weight $\lambda(\sigma)=\sigma^2$,
# $\tfrac12\|\sigma s_\theta(x_0+\sigma z,\sigma) + z\|^2$ (ncsn's `anneal_power = 2`).

# %%
import math

import matplotlib.pyplot as plt
import torch

from diffcourse.plot import plot_density, plot_score_field
from diffcourse.prior import losses
from diffcourse.prior.mlp import MLPDenoiser, train_dsm
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64

# %% [markdown]
# ## 1. Explicit and implicit score matching
#
# The natural objective is the Fisher divergence between model and data scores,
#
# $$ J_{\mathrm{ESM}}(\theta) = \tfrac12\,\mathbb E_{p}\,\big\|s_\theta(x) - \nabla_x\log p(x)\big\|^2 , $$
#
# useless as it stands: $\nabla\log p$ is what we are looking for. Expanding the square, the term
# $\mathbb E_p[s_\theta^\top\nabla\log p] = \int s_\theta^\top\nabla p\,dx$ can be integrated by parts
# (assuming $p\,s_\theta\to 0$ at infinity) into $-\int p\,\mathrm{tr}(\nabla_x s_\theta)\,dx$, so
# (Hyvärinen 2005, Thm. 1)
#
# $$ J_{\mathrm{ISM}}(\theta) = \mathbb E_p\Big[\tfrac12\|s_\theta(x)\|^2 + \mathrm{tr}\big(\nabla_x s_\theta(x)\big)\Big]
#    = J_{\mathrm{ESM}}(\theta) - \tfrac12\,\mathbb E_p\|\nabla\log p\|^2 . $$
#
# Only samples of $p$ are needed, but the trace costs $d$ backward passes — fine in 2-D, hopeless
# for a 256×256 image. We test on $p = \mathcal N(0,\Sigma)$ with the family $s_\lambda(x) = -\lambda\,\Sigma^{-1}x$
# (the truth is $\lambda = 1$): $J_{\mathrm{ESM}}(\lambda) = \tfrac12(\lambda-1)^2\,\mathrm{tr}\,\Sigma^{-1}$
# and the constant is $-\tfrac12\mathrm{tr}\,\Sigma^{-1}$.

# %%
gen = torch.Generator().manual_seed(0)
Sigma = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=F64)
P = torch.linalg.inv(Sigma)
x = torch.randn(20000, 2, generator=gen, dtype=F64) @ torch.linalg.cholesky(Sigma).T
family = lambda lam: (lambda v, sigma=None: -lam * v @ P.T)             # s_lambda; sigma ignored
true_score = family(1.0)(x)
lams = torch.linspace(0.5, 1.5, 21, dtype=F64).tolist()
sigma_dsm = 0.15
curves = {"ESM": [], "ISM": [], "SSM (Gaussian v)": [], "SSM-VR (Rademacher v)": [], "DSM, sigma = 0.15": []}
for lam in lams:
    s = family(lam)
    curves["ESM"].append(losses.esm_loss(s, x, true_score).mean().item())
    curves["ISM"].append(losses.ism_loss(s, x).mean().item())
    curves["SSM (Gaussian v)"].append(losses.ssm_loss(s, x, generator=torch.Generator().manual_seed(1)).mean().item())
    curves["SSM-VR (Rademacher v)"].append(
        losses.ssm_vr_loss(s, x, rademacher=True, generator=torch.Generator().manual_seed(1)).mean().item())
    curves["DSM, sigma = 0.15"].append(
        losses.dsm_loss(s, x, sigma_dsm, generator=torch.Generator().manual_seed(2)).mean().item() / sigma_dsm ** 2)

const = -0.5 * torch.trace(P).item()
plt.figure(figsize=(6, 3.8))
for name, values in curves.items():
    shift = -values[lams.index(1.0)] if name.startswith("DSM") else 0.0         # DSM: align at lambda = 1
    plt.plot(lams, [v + shift for v in values], label=name)
plt.plot(lams, [0.5 * (l - 1) ** 2 * torch.trace(P).item() + const for l in lams], "k:", lw=2,
         label=r"$\frac{1}{2}(\lambda-1)^2\mathrm{tr}\,\Sigma^{-1} - \frac{1}{2}\mathrm{tr}\,\Sigma^{-1}$")
plt.xlabel(r"$\lambda$ in $s_\lambda(x) = -\lambda\Sigma^{-1}x$")
plt.ylabel("objective")
plt.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ISM and both SSM variants trace the same parabola, shifted by the constant: all are minimised at
# the true score. DSM (divided by $\sigma^2$, shifted for display) is minimised *below* $\lambda = 1$:
# it learns the score of the **noisy** density $\mathcal N(0,\Sigma+\sigma^2 I)$, which is flatter.

# %%
argmin = {name: lams[min(range(len(lams)), key=v.__getitem__)] for name, v in curves.items()}
print("argmin over lambda:", argmin)
gap = [i - e for i, e in zip(curves["ISM"], curves["ESM"])]
print(f"ISM - ESM: from {min(gap):.4f} to {max(gap):.4f}; -tr(P)/2 = {const:.4f}")
assert max(abs(g - const) for g in gap) < 0.03 * abs(const)              # ISM = ESM + constant
for name in ("ESM", "ISM", "SSM (Gaussian v)", "SSM-VR (Rademacher v)"):
    assert abs(argmin[name] - 1.0) <= 0.05 + 1e-9
assert argmin["DSM, sigma = 0.15"] < 0.95

# %% [markdown]
# ## 2. Denoising score matching (Vincent 2011)
#
# Perturb each sample, $\tilde x = x + \sigma z$. The score of the Gaussian kernel is known,
# $\nabla_{\tilde x}\log q_\sigma(\tilde x\mid x) = -(\tilde x - x)/\sigma^2 = -z/\sigma$, and
#
# $$ \ell(\theta;\sigma) = \tfrac12\,\mathbb E_{x,z}\,\big\|s_\theta(\tilde x,\sigma) + z/\sigma\big\|^2
#    = \tfrac12\,\mathbb E_{p_\sigma}\big\|s_\theta(\tilde x,\sigma) - \nabla\log p_\sigma(\tilde x)\big\|^2 + C , $$
#
# because $\mathbb E[-z/\sigma\mid\tilde x] = \nabla\log p_\sigma(\tilde x)$ — Tweedie's formula again. So DSM
# is explicit score matching **for the noisy density** $p_\sigma = p * \mathcal N(0,\sigma^2 I)$, with no
# trace and no unknown target. For data $\mathcal N(\mu,\tau^2 I_d)$ the optimum is
# $s^* = -(\tilde x-\mu)/(\tau^2+\sigma^2)$ and the $\sigma^2$-weighted loss there equals
# $\tfrac12 d\,\tau^2/(\tau^2+\sigma^2)$, not zero: $z$ cannot be predicted from $\tilde x$.
#
# **DAE ≈ score.** With $D(\tilde x,\sigma) = \tilde x + \sigma^2 s(\tilde x,\sigma)$ (Tweedie),
# $\sigma s + z = (D - x)/\sigma$, so $\tfrac12\|\sigma s + z\|^2 = \|D(\tilde x,\sigma) - x\|^2/(2\sigma^2)$:
# training a denoiser by MSE *is* denoising score matching (`losses.denoiser_loss`), and the
# ε-prediction loss of DDPM is twice it with $\varepsilon = -\sigma s$ (`losses.eps_loss`).

# %%
mu, tau, sigma, d = 0.5, 0.7, 0.4, 4
gen = torch.Generator().manual_seed(3)
x0 = mu + tau * torch.randn(50000, d, generator=gen, dtype=F64)
z = torch.randn(x0.shape, generator=gen, dtype=F64)
exact = lambda v, s: -(v - mu) / (tau ** 2 + s ** 2)
at_optimum = losses.dsm_loss(exact, x0, sigma, z=z)
print(f"DSM at the exact score: {at_optimum.mean().item():.4f} (closed form {0.5 * d * tau ** 2 / (tau ** 2 + sigma ** 2):.4f})")
assert abs(at_optimum.mean().item() / (0.5 * d * tau ** 2 / (tau ** 2 + sigma ** 2)) - 1) < 0.01
for name, s in [("clean-data score", lambda v, s_: -(v - mu) / tau ** 2),
                ("shifted by 0.2", lambda v, s_: exact(v, s_) + 0.2),
                ("scaled by 1.1", lambda v, s_: 1.1 * exact(v, s_))]:
    worse = losses.dsm_loss(s, x0, sigma, z=z).mean().item()
    print(f"  {name:17s}: {worse:.4f}")
    assert worse > at_optimum.mean().item()
D_exact = lambda v, s: v + s ** 2 * exact(v, s)
assert torch.allclose(losses.denoiser_loss(D_exact, x0, sigma, z=z), at_optimum, rtol=1e-12)

# %% [markdown]
# ## 3. Sliced score matching (Song, Garg, Shi, Ermon 2019)
#
# Hutchinson's identity $\mathrm{tr}(J) = \mathbb E_v[v^\top J v]$ for any $v$ with $\mathbb E[vv^\top] = I$
# removes the $d$ backward passes of ISM: $v^\top(\nabla_x s)v = v^\top\nabla_x(v^\top s)$ costs one.
#
# $$ J_{\mathrm{SSM}} = \mathbb E_{v,x}\big[v^\top\nabla_x s_\theta(x)\,v + \tfrac12(v^\top s_\theta(x))^2\big],\qquad
#    J_{\mathrm{SSM\text{-}VR}} = \mathbb E_{v,x}\big[v^\top\nabla_x s_\theta(x)\,v + \tfrac12\|s_\theta(x)\|^2\big]. $$
#
# The variance-reduced form replaces $\tfrac12(v^\top s)^2$ by its mean over $v$ (valid when
# $\mathbb E[vv^\top] = I$), computing one random term exactly. The probe matters too: for a symmetric $J$, $\mathrm{Var}(v^\top Jv) = 2\|J\|_F^2$ with Gaussian $v$ but
# $2(\|J\|_F^2 - \sum_i J_{ii}^2)$ with Rademacher $v = \pm1$, which is exact for a diagonal $J$.

# %%
gen = torch.Generator().manual_seed(4)
A = torch.randn(6, 6, generator=gen, dtype=F64)
J = torch.diag(torch.linspace(1.0, 3.0, 6, dtype=F64)) + 0.2 * (A + A.T)      # strong diagonal
x6 = torch.zeros(20000, 6, dtype=F64)                                          # so s(x) = -J x = 0 ...
lin = lambda v: -v @ J.T                                                       # ... and only v^T(-J)v remains
var_gauss = losses.ssm_vr_loss(lin, x6, generator=gen).detach().var().item()
var_rad = losses.ssm_vr_loss(lin, x6, rademacher=True, generator=gen).detach().var().item()
fro2, diag2 = (J ** 2).sum().item(), (torch.diagonal(J) ** 2).sum().item()
print(f"trace-estimator variance: Gaussian {var_gauss:.2f} (theory {2 * fro2:.2f}), "
      f"Rademacher {var_rad:.2f} (theory {2 * (fro2 - diag2):.2f})")
assert abs(var_gauss / (2 * fro2) - 1) < 0.05 and abs(var_rad / (2 * (fro2 - diag2)) - 1) < 0.05


# %% [markdown]
# In practice DSM is preferred: it is slightly faster than SSM (one network evaluation per sample,
# no Jacobian-vector product), and in high dimension it avoids second derivatives entirely. The rest
# of the course uses DSM.
#
# ## 4. Noise-conditional score networks and the $\sigma^2$ weighting
#
# One noise level is not enough: small $\sigma$ gives an accurate score only near the data, large
# $\sigma$ a useful score everywhere but of a blurred density. NCSN (Song & Ermon 2019) trains one
# network $s_\theta(x,\sigma)$ on a ladder $\sigma_1>\dots>\sigma_L$ with
#
# $$ \mathcal L(\theta) = \frac1L\sum_i \lambda(\sigma_i)\,\ell(\theta;\sigma_i), \qquad \lambda(\sigma) = \sigma^2 . $$
#
# Why $\sigma^2$: the target $-z/\sigma$ has size $1/\sigma$, so the unweighted optimum
# $\ell^* = \tfrac12 d\tau^2/(\sigma^2(\tau^2+\sigma^2))$ explodes as $\sigma\to0$ and the small levels
# would drown the others; with $\lambda = \sigma^2$ every level contributes at most $d/2$. Equivalently
# the network predicts the unit-size quantity $\sigma s = -\varepsilon$ (NCSNv2's $s_\theta = \check s_\theta/\sigma$),
# which is how `diffcourse.prior.mlp.MLPDenoiser` is built.

# %%
sig = torch.logspace(-2, 1, 13, dtype=F64)
weighted = torch.stack([losses.dsm_loss(exact, x0[:20000], s.item(), z=z[:20000]).mean() for s in sig])
unweighted = weighted / sig ** 2
closed = 0.5 * d * tau ** 2 / (tau ** 2 + sig ** 2)
plt.figure(figsize=(5, 3.5))
plt.loglog(sig, unweighted, "o", label=r"unweighted $\ell^*(\sigma)$")
plt.loglog(sig, closed / sig ** 2, "k:")
plt.loglog(sig, weighted, "s", label=r"$\sigma^2$-weighted")
plt.loglog(sig, closed, "k:", label="closed forms")
plt.xlabel(r"$\sigma$")
plt.ylabel("optimal DSM loss")
plt.legend()
plt.tight_layout()
plt.show()
assert torch.allclose(weighted, closed, rtol=0.02)
assert unweighted[0].item() > 1e3 * unweighted[-1].item() and weighted.max().item() < d / 2

# %% [markdown]
# ## 5. Learned vs exact score fields of a Gaussian mixture
#
# Now a real network: `MLPDenoiser` (three SiLU layers of 64 units, Fourier features of $\log\sigma$)
# trained by $\sigma^2$-weighted DSM with $\sigma$ log-uniform in $[0.05, 3]$ (`train_dsm`, Adam, a few
# seconds on one core) on samples of a three-component mixture. `GaussianMixture.score` gives the exact
# score of every noisy density $p_\sigma$ to compare with.

# %%
mixture = GaussianMixture(torch.tensor([0.5, 0.3, 0.2]), torch.tensor([[-1.5, -0.5], [1.5, -0.5], [0.0, 1.5]]),
                          torch.stack([torch.tensor([[0.3, 0.2], [0.2, 0.3]]),
                                       torch.tensor([[0.2, -0.15], [-0.15, 0.3]]), 0.05 * torch.eye(2)]))
gen = torch.Generator().manual_seed(0)
net = MLPDenoiser(2, generator=gen)
history = train_dsm(net, mixture.sample(8192, generator=gen), steps=1000, generator=gen)

plt.figure(figsize=(5, 3))
plt.plot(history.numpy(), lw=0.5)
plt.plot(torch.nn.functional.avg_pool1d(history[None, None], 50, 1)[0, 0].numpy(), "k")
plt.xlabel("step")
plt.ylabel("DSM loss (batch mean)")
plt.tight_layout()
plt.show()

# %%
lim = (-4.0, 4.0)
xs = torch.linspace(lim[0], lim[1], 41)
grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)   # (41 * 41, 2)
fig, axes = plt.subplots(2, 3, figsize=(12, 8))
for row, sigma in enumerate([0.2, 1.0]):
    for col, (name, field) in enumerate([("exact", lambda v: mixture.score(v, sigma)),
                                          ("learned", lambda v: net.score(v.float(), sigma))]):
        ax = axes[row, col]
        plot_density(lambda v: mixture.log_prob(v, sigma=sigma), lim, lim, n=80, ax=ax, cmap="Greys")
        plot_score_field(field, lim, lim, n=17, ax=ax, normalize=True, cmap="viridis")
        ax.set_title(f"{name} score, sigma = {sigma}")
    with torch.no_grad():
        exact_s, learned_s = mixture.score(grid, sigma), net.score(grid, sigma)
    rel = ((learned_s - exact_s).norm(dim=1) / exact_s.norm(dim=1)).reshape(41, 41)
    shown = axes[row, 2].imshow(rel.log10().numpy(), origin="lower", extent=(*lim, *lim), vmin=-2, vmax=0.5)
    axes[row, 2].contour(xs.numpy(), xs.numpy(), mixture.log_prob(grid, sigma=sigma).exp().reshape(41, 41).numpy(),
                         levels=4, colors="w", linewidths=0.7)
    axes[row, 2].set_title(f"log10 relative error, sigma = {sigma}")
    fig.colorbar(shown, ax=axes[row, 2], fraction=0.046)
plt.tight_layout()
plt.show()

# %% [markdown]
# The arrows agree where the density (grey; white contours on the right) is high. Far from the
# data — where no noisy sample ever fell at small $\sigma$ — the learned field is a guess: the error
# map lights up between and beyond the clusters. (The isolated bright pixels at the centres of the
# modes are points where the exact score vanishes, so any error is large *relative* to it.) We measure the relative error
# $\|s_\theta - s\|/\|s\|$ (root-mean-square) on samples of $p_\sigma$ (the high-density region) and on
# the grid points where $p_\sigma$ is below $10^{-3}$ of its maximum (the low-density region).

# %%
x_data = mixture.sample(4000, generator=gen)


def rel_err(points, sigma):
    with torch.no_grad():
        exact_s, learned_s = mixture.score(points, sigma), net.score(points, sigma)
    return ((learned_s - exact_s).norm(dim=1).pow(2).mean() / exact_s.norm(dim=1).pow(2).mean()).sqrt().item()


errors = {}
for sigma in (0.2, 0.5, 1.0):
    noisy = x_data + sigma * torch.randn(x_data.shape, generator=gen)
    log_p = mixture.log_prob(grid, sigma=sigma)
    low = grid[log_p < log_p.max() - math.log(1e3)]
    errors[sigma] = (rel_err(noisy, sigma), rel_err(low, sigma))
    print(f"sigma = {sigma}: relative error {errors[sigma][0]:.3f} on the data, {errors[sigma][1]:.3f} "
          f"in low-density regions ({len(low)} of {len(grid)} grid points)")

# %% [markdown]
# At $\sigma = 0.2$ the learned score is within about 15 % on the data but several times worse away
# from it; at $\sigma = 1$ the noisy density covers the plane and the error is small everywhere.
# This is the failure that motivates **annealing** in lesson 03: start Langevin dynamics at a large
# $\sigma$, where the score is right everywhere, and lower it gradually.

# %%
assert errors[0.2][0] < 0.2 and errors[1.0][0] < 0.1      # accurate where the data are
assert errors[0.2][1] > 2 * errors[0.2][0]               # much worse where they are not
assert errors[1.0][1] < 0.15                              # large noise: good everywhere

# %% [markdown]
# **Summary.** ESM needs the unknown score; ISM removes it at the price of a Jacobian trace; SSM
# estimates that trace with random projections; DSM avoids it altogether by matching the score of
# the noisy density, which is what a denoiser learns anyway. Noise-conditional networks trained with
# the $\sigma^2$ weighting learn the whole family $s(x,\sigma)$, accurate in the high-density region of
# each $p_\sigma$.
#
# **References.** A. Hyvärinen, *Estimation of non-normalized statistical models by score matching*,
# JMLR 2005 · P. Vincent, *A connection between score matching and denoising autoencoders*, Neural
# Computation 2011 · G. Alain, Y. Bengio, JMLR 2014 · Y. Song, S. Garg, J. Shi, S. Ermon, *Sliced score
# matching*, UAI 2019 · Y. Song, S. Ermon, *Generative modeling by estimating gradients of the data
# distribution* (NCSN), NeurIPS 2019; *Improved techniques* (NCSNv2), NeurIPS 2020 · M. Hutchinson,
# 1989 · T. Karras et al., *EDM*, NeurIPS 2022.
