"""The papers' posterior solvers as short recipes: a prior sampler step + a likelihood term + a projection.

Every solver has one signature,
``solver(D, x, sigmas, lik, *, generator=None, callback=None, progress=False, **paper_params) -> x``:
``D(x, sigma)`` a denoiser (VE, x = x0 + σ z), ``x`` the start (usually σ_max z), ``sigmas`` a
strictly decreasing schedule ending at 0, ``lik`` a :class:`diffcourse.physics.likelihood.Likelihood`.
Keyword defaults are the official codes' values, rescaled to images in [0, 1] where those used
[-1, 1]. The callback gets the loop's dict {"i", "x", "sigma", "sigma_next", "x0_hat"}; a run that
diverges stops with ``FloatingPointError`` naming the step and σ. Every norm and step size is per
sample, so a batch gives what its items give one by one.

* :func:`score_pocs` — Chung & Ye, MedIA 2022 (PC + hard data consistency);
* :func:`song2022` — Song, Shen, Xing & Ermon, ICLR 2022 (λ-weighted projection of a noised y);
* :func:`ilvr` — Choi et al., ICCV 2021 (DDPM + low-pass replacement);
* :func:`jalal` — Jalal et al., NeurIPS 2021 (annealed Langevin with an annealed likelihood);
* :func:`guided_sbim` — Dimos 2022 (SBIM or exact VE-DDIM + Langevin corrector);
* :func:`dps`, :func:`dps_code` — Chung et al., ICLR 2023 (the paper's and the code's step rule);
* :func:`mcg` — Chung, Sim, Ryu & Ye, NeurIPS 2022 (gradient through x̂0 + projection).

>>> import torch
>>> from diffcourse.physics.likelihood import Likelihood
>>> from diffcourse.physics.matrix import Matrix
>>> from diffcourse.physics.noise import GaussianNoise
>>> from diffcourse.prior.toy import GaussianMixture
>>> from diffcourse.prior.processes import karras_sigmas
>>> gm = GaussianMixture.ring(dtype=torch.float64)
>>> lik = Likelihood(Matrix(torch.tensor([[1.0, 0.0]], dtype=torch.float64)), GaussianNoise(0.05),
...                  torch.tensor([[1.0]], dtype=torch.float64))
>>> g = torch.Generator().manual_seed(0)
>>> x = 20 * torch.randn(4, 2, generator=g, dtype=torch.float64)
>>> out = dps(gm.denoiser, x, karras_sigmas(50, 0.01, 20.0), lik, zeta=0.05, generator=g)
>>> out.shape
torch.Size([4, 2])
"""
from .guided import dps, dps_code, mcg
from .langevin import guided_sbim, jalal
from .projections import default_dc, ilvr, score_pocs, song2022

__all__ = ["score_pocs", "song2022", "ilvr", "jalal", "guided_sbim", "dps", "dps_code", "mcg", "default_dc"]
