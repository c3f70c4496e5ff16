# %% [markdown]
# # 09 · Come closer, diffuse faster — exercises
#
# Companion to `lessons/09_come_closer_diffuse_faster.py`. You will write
#
# 1. the **contraction factors** of CCDF's Theorem 1 for a noise schedule, for DDPM, SMLD and DDIM,
# 2. the **number of reverse steps** $N'$ that the paper's error bound asks for, and so choose $t_0$ from
#    the bound (and see how far to trust it),
# 3. the **warm start** itself: forward-diffuse an estimate to the level where the shortened chain
#    begins, and cut the schedule.
#
# Each exercise is a function followed by a cell that checks it (it prints "correct", "not done
# yet" or what is wrong). The cells after a check use the library's implementation, so the notebook
# runs top to bottom even before you start.
#
# **Conventions** (as in `diffcourse`): a schedule `sigmas` is a VE noise ladder of $N+1$ levels,
# float64, strictly decreasing and ending at 0; step $i$ goes from $\sigma_i$ = `sigmas[i]` to
# $\sigma_{i+1}$ = `sigmas[i + 1]` (the paper counts the other way: its step $i$ goes from $\sigma_i$ to
# $\sigma_{i-1}$). VP and VE are related by $\bar\alpha = 1/(1+\sigma^2)$.

# %%
import math

import matplotlib.pyplot as plt
import torch

from diffcourse.checks.lesson09 import check_card_lambdas, check_steps_from_bound, check_warm_start
from diffcourse.posterior import ccdf
from diffcourse.prior import samplers as S
from diffcourse.prior.processes import karras_sigmas, ve_sigmas, vp_sigmas
from diffcourse.prior.samplers import ddim_step
from diffcourse.prior.toy import GaussianMixture

F64 = torch.float64


def seeded(k):
    """A fresh generator: runs given seeded(k) draw the same noise."""
    return torch.Generator().manual_seed(k)

# %% [markdown]
# ## Exercise 1 · The paper's contraction factors for a schedule
#
# CCDF's Theorem 1 (Chung, Sim & Ye, CVPR 2022) bounds the error of a reverse chain with the largest
# per-step factor of its schedule. In the paper's notation (step from level $i$ to the cleaner level
# $i-1$, $\alpha_i = \bar\alpha_i/\bar\alpha_{i-1}$):
#
# $$ \text{DDPM: } \frac{\sqrt{\alpha_i}\,(1-\bar\alpha_{i-1})}{1-\bar\alpha_i},\qquad
#    \text{SMLD: } \frac{\sigma_{i-1}^2-\sigma_0^2}{\sigma_i^2-\sigma_0^2},\qquad
#    \text{DDIM: } \frac{\sigma_{i-1}}{\sigma_i} . $$
#
# Our schedules end at $\sigma = 0$, so take $\sigma_0 = 0$ in SMLD's factor. Complete `card_lambdas(sigmas)`:
# return the three per-step factors, each a tensor of shape `(N,)` (one per step, in the order of
# `sigmas`), computing $\bar\alpha$ from $\sigma$ for DDPM's.

# %%
def card_lambdas(sigmas):
    """CCDF's per-step factors (DDPM in VP coordinates, SMLD, DDIM) of a VE schedule (N + 1,): three (N,) tensors."""
    ### BEGIN SOLUTION
    s, s_next = sigmas[:-1], sigmas[1:]                          # current and next (cleaner) level
    ab, ab_next = 1 / (1 + s ** 2), 1 / (1 + s_next ** 2)        # abar_i and abar_{i-1}
    ddpm = (ab / ab_next).sqrt() * (1 - ab_next) / (1 - ab)      # sqrt(alpha_i) (1 - abar_{i-1}) / (1 - abar_i)
    return ddpm, s_next ** 2 / s ** 2, s_next / s
    ### END SOLUTION


# %%
check_card_lambdas(card_lambdas)

# %% tags=["solution"]
assert check_card_lambdas(card_lambdas, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# The paper's $\lambda$ is the largest factor over the steps that are run. It depends on the schedule as
# much as on the sampler: below, the library's factors (`ccdf.lambda_ddpm`, `lambda_smld`, `lambda_ddim`)
# for three schedules of 100 steps — DDPM's linear $\beta$ (`vp_sigmas`), a geometric VE ladder (`ve_sigmas`)
# and the Karras levels the course's solvers use (`karras_sigmas`) — as functions of the current level.
# The last step, to $\sigma = 0$, has factor 0 and is left out of the maximum.

# %%
schedules = {"linear β (vp_sigmas)": vp_sigmas(100), "geometric (ve_sigmas)": ve_sigmas(100, 0.01, 50.0),
             "Karras ρ = 7 (karras_sigmas)": karras_sigmas(100)}
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), sharey=True)
print(f"{'schedule':30s} {'DDPM':>7s} {'SMLD':>7s} {'DDIM':>7s}   (max over the steps before sigma = 0)")
for ax, (name, sig) in zip(axes, schedules.items()):
    factors = {"DDPM": ccdf.lambda_ddpm(sig), "SMLD": ccdf.lambda_smld(sig), "DDIM": ccdf.lambda_ddim(sig)}
    for label, f in factors.items():
        ax.semilogx(sig[:-2], f[:-1], label=label)
    ax.set(title=name, xlabel="σ (current level)", ylim=(0, 1.05))
    print(f"{name:30s} " + " ".join(f"{f[:-1].max():7.4f}" for f in factors.values()))
axes[0].set_ylabel("per-step factor")
axes[0].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# On the geometric ladder DDIM's factor is one number, $\sigma_{i+1}/\sigma_i$, and SMLD's is its square (DDPM's
# joins it at low noise, where VP and VE coordinates agree). On the other two ladders the factors
# vary along the chain: their steps are long in $\log\sigma$ at low noise (small factors) and short at high
# noise, so $\lambda$, the largest factor, comes from the noisy end. The window of a warm start, the last
# $N'$ steps, therefore has a smaller $\lambda$ than the full chain — on paper. The lesson (section 2) showed
# why a real prior does not deliver it: at low noise its factor is close to 1 whatever the schedule.

# %% [markdown]
# ## Exercise 2 · How many steps does the bound ask for?
#
# Theorem 1 bounds the mean squared error after $N'$ reverse steps from an estimate with error $\varepsilon_0$:
#
# $$ \bar\varepsilon_0 \le \frac{2C\tau}{1-\lambda^2} + \lambda^{2N'}\,\varepsilon_0 . $$
#
# Theorem 2 turns it around: for a target error there is a smallest $N'$. Complete
# `steps_from_bound(eps0, lam, target, C, tau)`: return the smallest whole $N' \ge 0$ for which the
# bound is at most `target`, or `None` when no $N'$ can reach it (the noise term alone exceeds the
# target). Solve $\lambda^{2N'}\varepsilon_0 \le$ target $-$ noise term for $N'$ with logarithms (mind the sign
# of $\log\lambda$) and round in the safe direction.

# %%
def steps_from_bound(eps0, lam, target, C=0.0, tau=1.0):
    """Smallest N' >= 0 with 2 C tau / (1 - lam^2) + lam^(2 N') eps0 <= target (CCDF Thm. 1-2), or None."""
    ### BEGIN SOLUTION
    room = target - 2 * C * tau / (1 - lam ** 2)                  # what is left for the decaying term
    if room <= 0:
        return None
    if room >= eps0:
        return 0
    return math.ceil(math.log(room / eps0) / (2 * math.log(lam)))
    ### END SOLUTION


# %%
check_steps_from_bound(steps_from_bound)

# %% tags=["solution"]
assert check_steps_from_bound(steps_from_bound, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# **Choosing $t_0$ from the bound.** Theorem 2's message is that a better estimate needs fewer steps.
# We test it on the lesson's testbed: prior $\mathcal N(0, 0.1^2 I)$, estimates = truth $+\ e\,z$ for four errors $e$,
# DDIM with shared noise ($C = 0$) on a geometric ladder of 40 levels from 20 to 0.01, target error
# $10^{-4}$. For each estimate: the $N'$ the bound asks for (the check's reference answer), and the $N'$
# the chain really needs (`ccdf.coupled_error` measures the error after each $N'$).

# %%
ladder = ve_sigmas(40, 0.01, 20.0)
lam = ccdf.lambda_ddim(ladder)[:-1].max().item()
narrow = GaussianMixture.gaussian(torch.zeros(2, dtype=F64), 0.01)
x_true = narrow.sample(300, seeded(1))
target = 1e-4
rows = []
for e in (0.03, 0.1, 0.3, 1.0):
    x_init = x_true + e * torch.randn(300, 2, generator=seeded(2), dtype=F64)
    eps0 = ((x_init - x_true) ** 2).sum(1).mean().item()
    err = ccdf.coupled_error(narrow.denoiser, ddim_step, x_true, x_init, ladder, list(range(1, 41)), generator=seeded(3))
    n_bound = check_steps_from_bound.reference(eps0, lam, target)
    n_real = next((n for n, v in enumerate(err.tolist(), start=1) if v <= target), None)
    rows.append((e, eps0, n_bound, n_real))
print(f"DDIM on a geometric ladder, lambda = {lam:.3f}, target {target:g}")
print("  error e   eps0      N' from the bound   N' measured   (t0 = N'/40)")
for e, eps0, n_bound, n_real in rows:
    print(f"{e:8.2f} {eps0:9.2e} {n_bound:12d} {n_real:16d}       ({n_bound / 40:.2f} vs {n_real / 40:.2f})")

# %% [markdown]
# The trend is the theorem's: the better the estimate, the shorter the chain. The numbers are not:
# the bound asks for about 12 steps fewer than the chain needs, for every estimate, because a real
# prior contracts less than the paper's $\lambda$ at the low-noise end of the chain (lesson, section 2).
# Use the bound to rank estimates and to see how $N'$ scales ($\propto\log\varepsilon_0/\log\lambda^{-2}$), then
# choose $t_0$ by measuring.

# %% [markdown]
# ## Exercise 3 · The warm start
#
# CCDF (Alg. 1) runs only the last $N' = \lceil t_0 N\rceil$ steps of an $N$-step schedule, from the estimate
# forward-diffused to the level where they begin: in VE coordinates
#
# $$ x_{N'} = x_0^{\rm init} + \sigma_{N'}\,z ,\qquad \sigma_{N'} = \texttt{sigmas[N - N']} . $$
#
# Complete `warm_start(x_init, sigmas, t0, z)`: return the start and the **tail** of the schedule that
# the shortened chain runs, `sigmas[N - N':]` ($N'$ steps need $N'+1$ levels, ending at 0). Use at least one
# step. (To avoid rounding surprises such as `0.07 * 100 = 7.000000000000001`, the library computes
# $\lceil t_0 N - 10^{-9}\rceil$; the checks use values of $t_0 N$ where this does not matter.)

# %%
def warm_start(x_init, sigmas, t0, z):
    """CCDF's start: (x_init + sigma_{N'} z, the last N' + 1 levels of sigmas), N' = ceil(t0 N) >= 1."""
    ### BEGIN SOLUTION
    n = len(sigmas) - 1
    n_prime = max(1, math.ceil(t0 * n - 1e-9))
    return x_init + sigmas[n - n_prime] * z, sigmas[n - n_prime:]
    ### END SOLUTION


# %%
check_warm_start(warm_start)

# %% tags=["solution"]
assert check_warm_start(warm_start, quiet=True), "the worked answer must pass its check"

# %% [markdown]
# The library's `ccdf.warm_start(x_init, sigmas, t0, generator=...)` draws $z$ itself. On lesson 04's
# three-component mixture, an estimate that is too blurry (exact samples $+\ 0.3\,z$) is handed to DDPM with
# a 60-level schedule from $\sigma = 40$. From $t_0 = 0.3$ (18 steps) the chain restores the mixture; the same
# 18 steps from pure noise do not, and from $t_0 = 0.1$ the chain starts below the blur and keeps it.
# Scores: sliced Wasserstein-2 distance to the mixture, relative to the distance of exact samples.

# %%
def cov2(sx, sy, rho):
    return torch.tensor([[sx * sx, rho * sx * sy], [rho * sx * sy, sy * sy]], dtype=F64)


mix = GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=F64),
                      torch.tensor([[-1.0, 0.0], [1.0, 0.8], [0.3, -1.2]], dtype=F64),
                      torch.stack([cov2(0.3, 0.15, 0.5), cov2(0.2, 0.25, -0.3), cov2(0.25, 0.2, 0.0)]))
N = 1000
theta = torch.randn(64, 2, generator=seeded(123), dtype=F64)
theta = theta / theta.norm(dim=1, keepdim=True)
truth_q = (mix.sample(20 * N, seeded(1)) @ theta.T).sort(0).values[10::20]


def sw2(x):
    return (((x @ theta.T).sort(0).values - truth_q) ** 2).mean().sqrt().item()


floor = sum(sw2(mix.sample(N, seeded(100 + i))) for i in range(10)) / 10
sig = karras_sigmas(60, 0.002, 40.0)
blurry = mix.sample(N, seeded(2)) + 0.3 * torch.randn(N, 2, generator=seeded(3), dtype=F64)
results = {"estimate (blurry)": blurry}
for t0 in (0.3, 0.1):
    x, tail = ccdf.warm_start(blurry, sig, t0, generator=seeded(4))
    results[f"warm start t0 = {t0} ({len(tail) - 1} steps)"] = S.ddpm(mix.denoiser, x, tail, generator=seeded(5))
results["from noise (18 steps)"] = S.ddpm(mix.denoiser, 40 * torch.randn(N, 2, generator=seeded(6), dtype=F64),
                                          karras_sigmas(18, 0.002, 40.0), generator=seeded(5))
fig, axes = plt.subplots(1, 4, figsize=(15, 3.9))
for ax, (name, pts) in zip(axes, results.items()):
    ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.5)
    ax.set(xlim=(-2.2, 2.2), ylim=(-2.2, 2.2), aspect="equal", title=f"{name}\nSW₂ {sw2(pts) / floor:.2f}x floor")
plt.tight_layout()
plt.show()
