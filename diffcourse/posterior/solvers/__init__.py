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
* :func:`mcg` — Chung, Sim, Ryu & Ye, NeurIPS 2022 (gradient through x̂0 + projection);
* :func:`pgdm` — Song, Vahdat, Mardani & Kautz, ICLR 2023 (ΠGDM: DDIM + a closed-form Gaussian p(y | x_σ)
  through one vector-Jacobian product);
* :func:`ddnm` — Wang, Yu & Zhang, ICLR 2023 (DDNM / DDNM+: range space from y, null space from the prior);
* :func:`dmps`, :func:`dmps_flow` — Meng & Kabashima 2022 (closed-form likelihood through the SVD of A,
  no network gradient; DDPM and flow-matching versions);
* :func:`dds` — Chung, Lee & Ye, ICLR 2024 (Tweedie, a few CG steps on the data term, re-noising);
* :func:`diffusion_mbir` — Chung, Ryu, McCann, Klasky & Ye, CVPR 2023 (a 2-D prior per slice + ADMM TV_z);
* :func:`tpdm` — Lee, Chung, Park, Park, Ryu & Ye, ICCV 2023 (two perpendicular 2-D priors);
* :func:`qcs_sgm`, :func:`qcs_sgm_plus` — Meng & Kabashima, ICLR 2023 / AAAI 2024 (annealed Langevin with
  the quantized pseudo-likelihood; EP for a general A).
* :func:`padis` — Hu, Song, Xu, Shen & Fessler, NeurIPS 2024 (annealed Langevin with a non-squared DPS data
  step, for a patch prior assembled by :class:`diffcourse.prior.patches.PatchDenoiser`; starts
  :func:`padis_start_noise` (the paper's) and :func:`padis_start_pinv` (the code's)).
* :func:`blind_dps`, :func:`blind_dps_code` — Chung, Kim, Kim & Ye, CVPR 2023 (BlindDPS: an image chain and a
  kernel chain coupled by the DPS gradient; unknown blur, returns (x, kernel); the paper's and the code's step).

The 3-D solvers take volumes x (n, 1, D, H, W) and a likelihood whose operator is a
:class:`diffcourse.physics.volume.SliceWise`; D stays the 2-D prior.

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
from .blind import blind_dps, blind_dps_code
from .closed_form import ddnm, dds, dmps, dmps_flow, pgdm
from .guided import dps, dps_code, mcg
from .langevin import guided_sbim, jalal
from .padis import padis, padis_start_noise, padis_start_pinv
from .projections import default_dc, ilvr, score_pocs, song2022
from .quantized import qcs_sgm, qcs_sgm_plus
from .volume import diffusion_mbir, tpdm

__all__ = ["score_pocs", "song2022", "ilvr", "jalal", "guided_sbim", "dps", "dps_code", "mcg", "default_dc", "pgdm",
           "ddnm", "dmps", "dmps_flow", "dds", "diffusion_mbir", "tpdm", "padis", "padis_start_noise", "padis_start_pinv",
           "qcs_sgm", "qcs_sgm_plus", "blind_dps", "blind_dps_code"]
