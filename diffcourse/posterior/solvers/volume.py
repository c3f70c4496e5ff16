"""3-D reconstruction with 2-D priors: DiffusionMBIR, DDS with TV_z and TPDM (volumes x (n, C, D, H, W)).

A 2-D denoiser D(x, σ) on slices (N, C, H, W) is a 3-D denoiser on volumes once every slice of
every volume goes through it as one batch (:func:`slice_denoiser`): the product of independent
slice priors. Alone it reconstructs each slice on its own, and the volume flickers from slice to
slice along the axis the prior never sees. The two papers add what couples the slices:

* :func:`diffusion_mbir` — Chung, Ryu, McCann, Klasky & Ye, CVPR 2023: a model-based TV along z,
  one ADMM iteration with one CG step after every diffusion step (:mod:`diffcourse.posterior.tv3d`);
* :func:`tpdm` — Lee, Chung, Park, Park, Ryu & Ye, ICCV 2023: a second 2-D prior trained on a
  perpendicular plane, its steps alternating with those of the primary (axial) one;
* :func:`dds_tv_z` — Chung, Lee & Ye, ICLR 2024 (DDS, its 3-D script): DiffusionMBIR's TV_z step on
  Tweedie's estimate x̂0, then re-noising, which works with tens of levels where the noisy-state step
  of DiffusionMBIR needs thousands.

The measurements are slice by slice: ``lik.op`` is a :class:`~diffcourse.physics.volume.SliceWise`
and y is (n, D, ...). Signature, schedule, callback and errors as in :mod:`diffcourse.posterior.solvers`;
every norm and step size is per volume. :func:`to_slices` / :func:`from_slices` cut a volume into
the slices normal to one of its axes and put them back (``AXIAL`` = 2: the (H, W) slices indexed by
D; ``CORONAL`` = 3: the (D, W) slices indexed by H; ``SAGITTAL`` = 4: the (D, H) slices indexed by W,
for the course's brain volumes, where D runs from inferior to superior). :func:`slice_by_slice`
runs any 2-D solver on every axial slice on its own (the uncoupled baseline), and
:func:`padded_denoiser` lets a prior trained on (64, 64) slices denoise smaller cuts.

>>> x = torch.arange(24.0).reshape(1, 1, 2, 3, 4)
>>> to_slices(x, CORONAL).shape                 # 3 slices of size D x W
torch.Size([3, 1, 2, 4])
>>> torch.equal(from_slices(to_slices(x, CORONAL), CORONAL, 1), x)
True
"""
from __future__ import annotations

import math

import torch

from ..._validate import check_nonnegative, check_positive
from ...physics.likelihood import Likelihood
from ...physics.volume import SliceWise
from ...prior.samplers.langevin import snr_corrector_step
from ...prior.samplers.loop import check_int, guard, noise, report, steps
from ...prior.samplers.steps import reverse_diffusion_step
from ..guidance import dps_misfit, tweedie_grad
from ..tv3d import admm_tv_z_step, diff_z_circ, normalised_step, prox_tv_z_step, real_view
from ._common import linear_op, setup, sigma_y2
from .closed_form import renoise_step

__all__ = ["AXIAL", "CORONAL", "SAGITTAL", "to_slices", "from_slices", "slice_denoiser", "padded_denoiser",
           "slice_by_slice", "primary_turns", "diffusion_mbir", "dds_tv_z", "tpdm"]

AXIAL, CORONAL, SAGITTAL = 2, 3, 4


def _slice_dim(dim) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim not in (2, 3, 4, -3, -2, -1):
        raise ValueError(f"dim must be the volume axis the slices are normal to: 2 (AXIAL), 3 (CORONAL), "
                         f"4 (SAGITTAL) or -3, -2, -1, got {dim!r}")
    return dim % 5


def to_slices(x: torch.Tensor, dim: int = AXIAL) -> torch.Tensor:
    """The slices of volumes x (n, C, D, H, W) normal to axis ``dim``, as one batch (n S, C, a, b).

    Slice s of volume k is row k S + s (slice index fastest, as in ``SliceWise``)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        raise ValueError(f"x must be a batch of volumes (n, C, D, H, W), got shape {tuple(getattr(x, 'shape', ()))}")
    v = x.movedim(_slice_dim(dim), 1)  # (n, S, C, a, b)
    return v.reshape(-1, *v.shape[2:])  # (n S, C, a, b)


def from_slices(s: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """Inverse of :func:`to_slices`: slices (n S, C, a, b) of ``n`` volumes back to (n, C, D, H, W)."""
    if s.ndim != 4 or s.shape[0] % n:
        raise ValueError(f"slices must be (n S, C, a, b) with n = {n}, got shape {tuple(s.shape)}")
    return s.reshape(n, -1, *s.shape[1:]).movedim(1, _slice_dim(dim))  # (n, S, C, a, b) -> (n, C, D, H, W)


def slice_denoiser(D, dim: int = AXIAL):
    """The volume denoiser that applies the 2-D denoiser ``D`` to every slice normal to ``dim``.

    The returned D3(x, σ) takes volumes (n, C, D, H, W) and σ (n,) and calls D once on all slices,
    (n S, C, a, b) with σ repeated per slice: the MMSE denoiser of the product prior Π_s p(x_s).
    """
    _slice_dim(dim)

    def D3(x, sigma):
        return from_slices(D(to_slices(x, dim), sigma.repeat_interleave(x.shape[dim])), dim, x.shape[0])
    return D3


def padded_denoiser(D, size: int = 64, *, flip: bool = True, background: float = 0.0,
                    generator: torch.Generator | None = None):
    """A denoiser for cuts (N, C, r, c) with r, c <= ``size`` from a 2-D denoiser ``D`` trained on
    (size, size) images of the same anatomy at the same pixel spacing: the cut is placed in the middle of
    a (size, size) canvas whose border is what the state would hold there, ``background`` + σ z (fresh
    z from ``generator``), and D's output is cropped back. ``flip`` turns the rows upside down first
    (and back after): the coronal and sagittal cuts of :func:`to_slices` have their rows along D,
    inferior to superior for the course's volumes, while :func:`diffcourse.data.brain_slices` puts
    superior at the top.

    Honest only where the border really is background: for the course's volumes, cuts through the
    whole brain (``brain_volumes`` spans its z extent, 154 mm, so ``depth`` = 56 gives 2.75 mm rows,
    the coronal training slices' 2.78 mm, and 56 rows padded to 64); a slab of a few slices is not
    surrounded by background, and a volume of 32 slices (4.8 mm) would show the prior a brain squashed
    to 58 % of its height.
    """
    def D_cut(x, sigma):
        n, c, h, w = x.shape
        if h > size or w > size:
            raise ValueError(f"cuts must be at most {size} x {size}, got shape {tuple(x.shape)}")
        top, left = (size - h) // 2, (size - w) // 2
        sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        z = torch.randn((n, c, size, size), generator=generator, dtype=x.dtype,
                        device=generator.device if generator is not None else x.device).to(x.device)
        canvas = background + sig * z                                    # (N, C, size, size)
        canvas[..., top:top + h, left:left + w] = x.flip(-2) if flip else x
        out = D(canvas, sigma)[..., top:top + h, left:left + w]
        return out.flip(-2) if flip else out
    return D_cut


def slice_by_slice(solver, D, x: torch.Tensor, sigmas: torch.Tensor, lik, **kwargs) -> torch.Tensor:
    """A 2-D solver of :mod:`diffcourse.posterior.solvers` run on every axial slice on its own: the
    slice-wise baseline of 3-D reconstruction, with no coupling between slices. x: (n, C, D, H, W),
    ``lik.op`` a ``SliceWise``; every norm and step size is then per slice. Returns (n, C, D, H, W).

    >>> from diffcourse.physics.noise import GaussianNoise
    >>> from diffcourse.physics.operators import Downsample
    >>> from diffcourse.posterior.solvers import dds
    >>> op = SliceWise(Downsample(2), depth=3)
    >>> lik = Likelihood(op, GaussianNoise(0.1), op.A(torch.ones(2, 1, 3, 8, 8)))
    >>> slice_by_slice(dds, lambda x, s: 0 * x, torch.zeros(2, 1, 3, 8, 8), torch.tensor([1.0, 0.0]), lik).shape
    torch.Size([2, 1, 3, 8, 8])
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        raise ValueError(f"x must be a batch of volumes (n, C, D, H, W), got shape {tuple(getattr(x, 'shape', ()))}")
    if not isinstance(getattr(lik, "op", None), SliceWise):
        raise TypeError(f"slice_by_slice needs lik.op to be a SliceWise, got {type(getattr(lik, 'op', None)).__name__}")
    y = lik.y.expand(x.shape[0], *lik.y.shape[1:]) if lik.y.shape[0] == 1 else lik.y   # one y for all volumes
    slices = Likelihood(lik.op.op, lik.noise, y.flatten(0, 1))        # (n D, ...), slice index fastest
    return from_slices(solver(D, to_slices(x, AXIAL), sigmas, slices, **kwargs), AXIAL, x.shape[0])


def _setup_volume(D, x, sigmas, lik, generator, name):
    """``setup`` after the checks that only volume solvers need: x (n, C, D, H, W), a SliceWise operator."""
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        raise ValueError(f"{name}: x must be a batch of volumes (n, C, D, H, W), got shape "
                         f"{tuple(getattr(x, 'shape', ()))}; for images use a 2-D solver")
    if not isinstance(getattr(lik, "op", None), SliceWise):
        raise TypeError(f"{name} needs lik.op to be a diffcourse.physics.SliceWise (a 2-D operator on every "
                        f"slice), got {type(getattr(lik, 'op', None)).__name__}")
    return setup(D, x, sigmas, lik, generator)


def diffusion_mbir(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, lam: float = 0.04, rho: float = 10.0,
                   snr: float = 0.16, n_corrector: int = 1, n_admm: int = 1, n_iter_cg: int = 1,
                   final_consistency: bool = True, generator: torch.Generator | None = None, callback=None,
                   progress: bool = False) -> torch.Tensor:
    """DiffusionMBIR (Chung, Ryu, McCann, Klasky & Ye, CVPR 2023, Alg. 1, fast variant): per level, the
    2-D prior's VE predictor and corrector on every axial slice at once, then ``n_admm`` ADMM
    iterations on 1/2 ||y - A x||² + λ ||D_z x||₁ (Eq. 11-13, :func:`~diffcourse.posterior.tv3d.admm_tv_z_step`,
    ``n_iter_cg`` CG steps each, circular D_z), with z and w kept across levels from 0; at the end
    x + Aᵀ(y - A x)/(AᵀA𝟙) (:func:`~diffcourse.posterior.tv3d.normalised_step`; ``final_consistency``).

    Order as in the official ``get_pc_radon_ADMM_TV_vol``: reverse-diffusion predictor σ → σ', then
    ``n_corrector`` Langevin steps (snr rule) at σ', the level the state now has (the code labels
    them with σ; no corrector at σ' = 0, where the predictor returns x̂0), then ADMM on the noisy
    state. Defaults from the official AAPM sparse-view script: λ = 0.04, ρ = 10, snr = 0.16, one ADMM
    iteration with one CG step; its images are in [0, 1] (score-SDE, not centred), so no rescaling.
    Paper: N = 2000 levels, σ 378 → 0.01. D: the 2-D denoiser (N, C, H, W); x: (n, C, D, H, W), the
    start (σ_max z); ``lik.op`` a ``SliceWise``. Returns (n, C, D, H, W).
    """
    lam, rho = check_nonnegative(lam, "lam"), check_positive(rho, "rho")
    snr = check_nonnegative(snr, "snr")
    n_corrector, n_admm = check_int(n_corrector, "n_corrector", 0), check_int(n_admm, "n_admm", 0)
    levels, sigma_b, y = _setup_volume(D, x, sigmas, lik, generator, "diffusion_mbir")
    op = real_view(linear_op(lik, "diffusion_mbir"), x)
    D3 = slice_denoiser(D)
    z = torch.zeros_like(diff_z_circ(x))  # (n, 1, C, D, H, W)
    w = torch.zeros_like(z)
    for i in steps(len(levels) - 1, progress, "diffusion_mbir"):
        sigma, sigma_next = levels[i], levels[i + 1]
        x0_hat = D3(x, sigma_b[i])
        report(callback, i, x, sigma, sigma_next, x0_hat)
        x = reverse_diffusion_step(x, x0_hat, sigma, sigma_next, noise(x, generator) if sigma_next > 0 else None)
        for _ in range(n_corrector if sigma_next > 0 else 0):
            x = snr_corrector_step(x, D3(x, sigma_b[i + 1]), sigma_next, noise(x, generator), snr=snr)
        for _ in range(n_admm):
            x, z, w = admm_tv_z_step(op, y, x, z, w, lam=lam, rho=rho, n_iter_cg=n_iter_cg)
        x = guard(x, "diffusion_mbir", i, sigma, "lower snr, raise rho or use more steps")
    return normalised_step(op, y, x) if final_consistency else x


def dds_tv_z(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, lam: float = 0.04, rho: float = 10.0,
             gamma: float = 1.0, eta: float = 0.85, n_cg: int = 5, generator: torch.Generator | None = None,
             callback=None, progress: bool = False) -> torch.Tensor:
    """DDS for volumes (Chung, Lee & Ye, ICLR 2024, Alg. 1 with the 3-D data step of the official
    ``solver_3d.py``): per level, Tweedie's x̂0 = D(x, σ) on every axial slice, one ADMM iteration of
    min 1/2 ||y - A x||² + λ ||D_z x||₁ + 1/(2γ) ||x - x̂0||² from x̂0 (:func:`~diffcourse.posterior.tv3d.
    prox_tv_z_step`, ``n_cg`` CG steps; z and w kept across levels from 0, as in DiffusionMBIR), then
    the DDIM-type re-noising x' = x̂0' + σ'(η z + √(1 - η²) ε̂) of :func:`~.closed_form.dds`.

    With λ = 0 and ρ → 0 every slice gets :func:`~.closed_form.dds`'s data step (but CG's step sizes
    are per volume, not per slice); with one slice, D_z = 0 and this is ``dds`` itself. γ is dropped
    (plain CG on the data) when σ_y = 0, as in ``dds``. Defaults: λ = 0.04, ρ = 10 (DiffusionMBIR's),
    η = 0.85, 5 CG steps (DDS's). x: (n, C, D, H, W), ``lik.op`` a ``SliceWise``; returns (n, C, D, H, W).
    """
    eta = check_nonnegative(eta, "eta")
    if eta > 1:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    levels, sigma_b, y = _setup_volume(D, x, sigmas, lik, generator, "dds_tv_z")
    op = linear_op(lik, "dds_tv_z")
    gamma_used = gamma if bool((sigma_y2(lik, x, "dds_tv_z") > 0).any()) else None
    D3 = slice_denoiser(D)
    z = torch.zeros_like(diff_z_circ(x))  # (n, 1, C, D, H, W)
    w = torch.zeros_like(z)
    for i in steps(len(levels) - 1, progress, "dds_tv_z"):
        sigma, sigma_next = levels[i], levels[i + 1]
        with torch.no_grad():
            x0_hat = D3(x, sigma_b[i])
        report(callback, i, x, sigma, sigma_next, x0_hat)
        x0_dc, z, w = prox_tv_z_step(op, y, x0_hat, z, w, lam=lam, rho=rho, gamma=gamma_used, n_iter_cg=n_cg)
        fresh = noise(x, generator) if eta > 0 and sigma_next > 0 else None
        x = x0_dc if sigma_next == 0 else renoise_step(x, x0_hat, x0_dc, sigma, sigma_next, fresh, eta=eta)
        x = guard(x, "dds_tv_z", i, sigma, "lower rho or use more steps")
    return x


def primary_turns(n: int, K=2.7, generator: torch.Generator | None = None) -> list[bool]:
    """TPDM's schedule of the two priors over ``n`` steps (Lee et al., ICCV 2023, Sec. 3; official
    ``is_primary_tern``): True where the primary model steps, False where the auxiliary one does.

    An int K >= 2 is deterministic, K - 1 primary steps then one auxiliary step; a float K > 1 is
    random, the auxiliary model with probability 1/K at each step (drawn here from ``generator``,
    all at once); ``math.inf`` never uses the auxiliary model (and draws nothing).

    >>> primary_turns(6, 3)
    [True, True, False, True, True, False]
    """
    n = check_int(n, "n", 0)
    if isinstance(K, int) and not isinstance(K, bool):
        if K < 2:
            raise ValueError(f"an integer K must be >= 2 (K - 1 primary steps per auxiliary step), got {K}")
        return [i % K != K - 1 for i in range(n)]
    if not isinstance(K, float) or not K > 1:
        raise ValueError(f"K must be an int >= 2 or a float > 1 (K <= 1 would never use the primary model, "
                         f"which carries the data), got {K!r}")
    if math.isinf(K):
        return [True] * n
    device = generator.device if generator is not None else "cpu"
    return (torch.rand(n, generator=generator, device=device, dtype=torch.float64) > 1 / K).tolist()


def _pc_step(D3, x, sigma_b, sigma, sigma_next, pull, *, snr, n_corrector, predictor_noise, generator):
    """Corrector(s) then predictor at σ (official TPDM order), each followed by ``pull``'s data step.

    ``pull(x) -> (x̂0, step)``; returns (new x, the predictor's input, its x̂0)."""
    for _ in range(n_corrector):
        x0_hat, step = pull(D3, x, sigma_b)
        x = snr_corrector_step(x, x0_hat, sigma, noise(x, generator), snr=snr) - step
    x0_hat, step = pull(D3, x, sigma_b)
    z = noise(x, generator) if predictor_noise and sigma_next > 0 else torch.zeros_like(x)
    return reverse_diffusion_step(x, x0_hat, sigma, sigma_next, z) - step, x, x0_hat


def tpdm(D, x: torch.Tensor, sigmas: torch.Tensor, lik, *, D_aux, K=2.7, w: float = 0.025,
         aux_dim: int = CORONAL, snr: float = 0.16, n_corrector: int = 1, predictor_noise: bool = False,
         generator: torch.Generator | None = None, callback=None, progress: bool = False) -> torch.Tensor:
    """TPDM (Lee, Chung, Park, Park, Ryu & Ye, ICCV 2023, Alg. 1): two perpendicular 2-D priors.

    At each level, as :func:`primary_turns` (K) says, either the primary prior ``D`` on the axial
    slices (the measured ones) takes a VE predictor-corrector step, each of its corrector and
    predictor updates followed by the DPS-type step x ← x - w ∇_x ||y - A x̂0(x)||₂ (non-squared norm,
    x̂0 = D(x, σ) at that update's input; cf. Chung et al., ICLR 2023), or the auxiliary prior
    ``D_aux`` on the slices normal to ``aux_dim`` (coronal by default) takes an unconditional one.
    As in the official code the corrector runs first, and the state kept after the predictor is
    its mean (``predictor_noise=False``; True adds score-SDE's predictor noise).

    Defaults from the official sparse-view CT script (36 views, images in [0, 1]): K = 2.7
    (random schedule), w = 0.025, snr = 0.16, one corrector step. The official norm runs over a
    minibatch of slices (6 by default; its README: the best w depends on the batch size), here over
    each whole volume, so w needs retuning. ``D_aux`` gets slices (n S, C, D, ·) whose rows run
    along D (inferior → superior for the course's volumes): wrap it to flip them if it was trained
    the other way up. x: (n, C, D, H, W), ``lik.op`` a ``SliceWise``; returns (n, C, D, H, W).
    """
    w, snr = check_nonnegative(w, "w"), check_nonnegative(snr, "snr")
    n_corrector = check_int(n_corrector, "n_corrector", 0)
    if not callable(D_aux):
        raise TypeError(f"D_aux must be a callable D_aux(x, sigma) -> x0_hat, got {type(D_aux).__name__}")
    levels, sigma_b, _ = _setup_volume(D, x, sigmas, lik, generator, "tpdm")
    turns = primary_turns(len(levels) - 1, K, generator)
    D_pri, D_sec = slice_denoiser(D), slice_denoiser(D_aux, aux_dim)
    misfit = dps_misfit(lik)

    def norm_r(x0):
        return misfit(x0).clamp_min(torch.finfo(x0.dtype).tiny).sqrt()  # ||y - A x0||, per volume

    def data_pull(D3, x, s):
        grad, x0_hat, _ = tweedie_grad(D3, x, s, norm_r)
        return x0_hat, w * grad

    def no_pull(D3, x, s):
        with torch.no_grad():
            return D3(x, s), 0.0
    for i in steps(len(levels) - 1, progress, "tpdm"):
        sigma, sigma_next = levels[i], levels[i + 1]
        D3, pull = (D_pri, data_pull) if turns[i] else (D_sec, no_pull)
        x, x_in, x0_hat = _pc_step(D3, x, sigma_b[i], sigma, sigma_next, pull, snr=snr, n_corrector=n_corrector,
                                   predictor_noise=predictor_noise, generator=generator)
        report(callback, i, x_in, sigma, sigma_next, x0_hat, primary=turns[i])
        x = guard(x.detach(), "tpdm", i, sigma, "lower w, lower snr or use more steps")
    return x
