"""The course's inverse problems, named once, with the settings tuned for each solver in one table.

Lessons, tests and benchmarks call ``make("ct20", x, generator)`` for the likelihood of measuring
the clean images ``x`` (B, 1, 64, 64) in [0, 1], and ``settings("ct20", "dps")`` for the keyword
arguments of ``solvers.dps`` (the σ schedule and the paper parameters) tuned on that task, so
every place runs the same problem. The operator is built deterministically (masks from fixed
seeds); only the noise is drawn, from ``generator``.

=========  =====================================================================  ========
name       forward model                                                          σ_y
=========  =====================================================================  ========
ct20       parallel-beam CT, 20 views over 180°, 91 detector bins (Song et al.     0.7
           ICLR 2022 use 23 views); ray sums in pixel units (rms ≈ 14)
ct8        the same with 8 views                                                  0.7
mri4       single-coil Cartesian MRI, 16 of 64 k-space columns, 5 central         0.01
           (4×, centre fraction 0.08, fastMRI: Zbontar et al. 2018), orthonormal F
mri8       8 of 64 columns, 3 central (8×, centre fraction 0.04)                  0.01
box        inpainting of a 24 × 24 box in the middle                              0.025
inpaint92  inpainting with 92 % of the pixels missing at random (DPS, Chung et    0.025
           al. ICLR 2023)
sr4        4× super-resolution, 4 × 4 average pooling -> 16 × 16                  0.025
deblur     circular Gaussian blur, 13 × 13 kernel, std 2 px                       0.025
phase      Fourier phase retrieval |F pad(x)|, oversampling 2 -> 128 × 128        0.01
cnnblur    a fixed random two-layer CNN blur (NeuralBlur, seed 0)                 0.025
ct8_3d     volumes (B, 1, D, 64, 64), every axial slice by ct8's 8-view CT        0.7
la90_3d    volumes, every axial slice by limited-angle CT, 90 views over 0-90°     0.7
mri4_3d    volumes, every axial slice by mri4's 4x Cartesian MRI (one mask)       0.01
=========  =====================================================================  ========

The volume tasks (``names(volumes=True)``) measure each axial slice of x (B, 1, D, 64, 64) with a
2-D operator through :class:`~diffcourse.physics.volume.SliceWise` (y: (B, D, ...)), as in
DiffusionMBIR (Chung, Ryu, McCann, Klasky & Ye, CVPR 2023); their solvers are the 3-D ones
(``diffusion_mbir``, ``tpdm``) and 2-D ones run on every slice through
:func:`~diffcourse.posterior.solvers.volume.slice_by_slice`; their ADMM-TV is 3-D.

σ_y = 0.025 on [0, 1] images is the DPS paper's σ_y = 0.05 on [-1, 1]. The CT noise, 0.7 in ray-sum
units, is 5 % of the rms of a phantom's sinogram; the MRI noise is per real and imaginary part.

>>> import torch
>>> x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
>>> lik = make("sr4", x, torch.Generator().manual_seed(1))
>>> tuple(lik.y.shape), lik.sigma_y
((2, 1, 16, 16), 0.025)
"""
from __future__ import annotations

import torch

from .._validate import check_image, check_int
from ..physics.ct import Radon, hann_window, limited_angle, sparse_view
from ..physics.likelihood import Likelihood
from ..physics.masks import cartesian_mask
from ..physics.mri import SingleCoilMRI
from ..physics.noise import GaussianNoise
from ..physics.nonlinear import NeuralBlur, PhaseRetrieval
from ..physics.operators import Blur, Downsample, Inpaint, box_mask, gaussian_kernel, random_mask
from ..physics.volume import SliceWise
from ..prior.processes import karras_sigmas
from .classical import admm_tv
from .tv3d import admm_tv_3d

__all__ = ["SIZE", "TASKS", "names", "describe", "operator", "make", "settings", "tuned_solvers",
           "baseline", "admm_tv_tuned"]

SIZE = 64  #: image side of every task (the shipped prior's)


#: Seed of the random inpainting mask: a seed that no lesson, test or benchmark uses for noise. (With
#: seed 0 for both, the mask's uniforms and the noise's normals came from the same stream, and the
#: noise on the kept pixels was not white: its std was 0.81 sigma_y.)
INPAINT_MASK_SEED = 2**31 - 1


def _mask_generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)  # masks are part of the task, not of the noise


_OPERATORS = {
    "ct20": lambda: Radon(SIZE, sparse_view(20)),
    "ct8": lambda: Radon(SIZE, sparse_view(8)),
    "mri4": lambda: SingleCoilMRI(cartesian_mask(SIZE, 4, 0.08, generator=_mask_generator())),
    "mri8": lambda: SingleCoilMRI(cartesian_mask(SIZE, 8, 0.04, generator=_mask_generator())),
    "box": lambda: Inpaint(box_mask(SIZE, (20, 20, 24, 24))),
    "inpaint92": lambda: Inpaint(random_mask(SIZE, 0.08, _mask_generator(INPAINT_MASK_SEED))),
    "sr4": lambda: Downsample(4),
    "deblur": lambda: Blur(gaussian_kernel(13, 2.0)),
    "phase": lambda: PhaseRetrieval(2.0),
    "cnnblur": lambda: NeuralBlur(seed=0),
    # volume tasks: the 2-D operator of every axial slice (``operator`` wraps it in a SliceWise)
    "ct8_3d": lambda: Radon(SIZE, sparse_view(8)),
    "la90_3d": lambda: Radon(SIZE, limited_angle(90, 90)),
    "mri4_3d": lambda: SingleCoilMRI(cartesian_mask(SIZE, 4, 0.08, generator=_mask_generator())),
}

# A schedule is stored as the arguments of ``karras_sigmas`` (Karras et al. 2022, Eq. 5; defaults
# σ_min = 0.002, σ_max = 80, ρ = 7, then 0); the rest of each entry is the solver's keywords.
# Budget: about 100 network evaluations per image (DPS, MCG, ILVR: 100 levels; predictor-corrector
# solvers: 50 levels x 2; Jalal: 25 levels x 4 steps; guided SBIM: 32 predictor steps + 2 corrector
# steps each). Tuning: PSNR on one separate phantom (held_out_phantoms seed 20_000, never a test
# image), a few values around the paper's default: ζ (DPS) on every task but mri8 and ct8 (which
# reuse mri4's and ct20's); snr, λ, α, ε, γ on mri4, reused on mri8, box, inpaint92, sr4 and
# deblur; γ on ct20 (γ² ≈ ||A||² keeps Langevin stable), scaled for ct8. ADMM-TV: λ on a log grid and
# ρ in {3, 10, 30} λ, on two separate phantoms, 200 iterations.
# Projection solvers (score_pocs, song2022, ilvr, mcg) are left out of CT and deblurring: they
# apply A⁺ to the noisy y, and A⁺ of an ill-conditioned operator amplifies the noise (projecting
# the true image onto the ct20 data drops it to ~10 dB, on the deblur data to ~4 dB).
# Closed-form solvers (pgdm, ddnm, dmps, dmps_flow, dds; 100 levels, one network evaluation each,
# ΠGDM's with a backward pass): the main parameter at 2-5 values around the paper's default, on the
# same tuning phantom, on every linear task but mri8 and ct8 (which reuse mri4's and ct20's).
# ΠGDM ζ ∈ {0.5, 1, 3} on mri4 (16.8, 19.8, 38.9 dB: r² = σ²/(1 + σ²) is the posterior variance of
# unit-variance data, larger than the phantoms', so ζ > 1 makes up for a too weak guidance), {1, 3}
# on inpaint92, ζ = 1 only elsewhere. DDNM η ∈ {0.85, 1} (and 0.5 on mri4): η = 1 best on every
# task. DMPS λ ∈ {1.75, 3} (and 1 on mri4; 1.75 only on ct20). DDS (5 CG steps) γ ||A||² ∈ {1, 10,
# 100} on mri4 and deblur, {10, 100} on box, inpaint92 and sr4 (||A||² = 1/16); on ct20 γ ∈ {0.001,
# 0.003, 0.01, 0.1, 1} (||A||² ≈ 1240), a sharp optimum at 0.003. dmps_flow: λ = 1 only, on mri4
# and ct20. Left out: ddnm on CT (no SVD, so plain DDNM through the CGLS A⁺ of the noisy sinogram:
# 5.8 dB on the tuning phantom, and 100 CGLS iterations a step); dmps_flow on MRI (16.7 dB on mri4,
# below the zero-filled image); dmps_flow is untried on the other tasks.
# Volume tasks (benchmarks/volume_table.py --tune: one 64 x 64 x 16 slab, 2.75 mm slices, of a volume of
# seed 32 000, 50 levels): ct8_3d DDS γ ∈ {0.003, 0.01, 0.03, 0.09} -> 21.1, 22.5, 22.1, 21.6 dB (η = 0.5 at
# γ = 0.01: 21.9); DDS + TV_z with that γ, (λ, ρ) ∈ {(0.5, 50), (2, 50), (2, 200), (8, 200)} -> 23.9, 24.0,
# 23.9, 22.9 dB; 3-D ADMM-TV λ ∈ {0.45, 1.5, 4.5}, ρ ∈ {30, 90} λ -> best (1.5, 45), 22.6 dB. la90_3d
# (first values scaled from ct8 by ||A||²): ADMM-TV λ ∈ {1.5, 5, 15}, ρ ∈ {30, 90} λ -> (5, 150), 22.5 dB;
# DDS γ ∈ {0.00083, 0.0025, 0.0075} -> 22.7, 23.5, 22.9 (η = 0.5: 22.6); DDS + TV_z (λ, ρ) ∈ {(6, 600),
# (24, 600), (24, 2400), (96, 2400)} -> 24.8, 23.7, 23.4, 21.6 (the best at the grid's edge). mri4_3d:
# ADMM-TV λ ∈ {0.00015, 0.0005, 0.0015} x ρ/λ ∈ {3, 9} -> 22.9-23.0 dB (flat; best (0.0015, 0.0135)); DDS
# γ ∈ {3.3, 10, 30} -> 24.1, 24.6, 24.8 (η = 0.5: 23.9); DDS + TV_z at γ = 30, (λ, ρ) ∈ {(0.0025, 0.25),
# (0.01, 0.25), (0.01, 1), (0.04, 1)} -> 26.3, 25.4, 25.7, 24.5 (γ and λ best at the grids' edges);
# DiffusionMBIR (0.005, 0.01) 23.4, (0.0005, 0.001) 22.3. DiffusionMBIR's (λ, ρ) are not tuned on CT; TPDM's w
# (56-slice volumes, 20 levels, tuning volume): 0.15, 0.45, 1.35 -> 13.4, 16.6, 22.6 dB (FBP 19.5).

_MRI4 = {  # tuned on mri4; reused, but for the overrides in TASKS, on mri8, box, inpaint92, sr4, deblur
    "dps": {"sigmas": {"n": 100}, "zeta": 0.5},
    "mcg": {"sigmas": {"n": 100}, "alpha": 0.5},
    "song2022": {"sigmas": {"n": 50}, "lam": 1.0, "snr": 0.517},
    "score_pocs": {"sigmas": {"n": 50}, "snr": 0.4},
    "ilvr": {"sigmas": {"n": 100}},
    "jalal": {"sigmas": {"n": 25, "sigma_min": 0.01}, "eps": 2e-4, "n_steps_each": 4},
    "guided_sbim": {"sigmas": {"n": 33, "sigma_min": 0.01}, "exact_ddim": True, "mse": None, "gamma": 1.0},
    "pgdm": {"sigmas": {"n": 100}, "zeta": 3.0},
    "ddnm": {"sigmas": {"n": 100}, "eta": 1.0},
    "dmps": {"sigmas": {"n": 100}, "lam": 3.0},
    "dmps_flow": {"sigmas": {"n": 100}, "lam": 1.0},  # the default; tried on mri4 and ct20 only
    "dds": {"sigmas": {"n": 100}, "gamma": 10.0},
}
_PROJECTIONS = ("score_pocs", "song2022", "ilvr", "mcg")  # not on CT and deblurring (see above)


def _tuned(*, drop=(), **changes) -> dict:
    """A fresh copy of the mri4 settings without the solvers ``drop``, with ``changes`` merged in:
    ``_tuned(dps={"zeta": 0.125})`` is mri4's table with DPS's ζ = 0.125."""
    return {solver: {**kw, "sigmas": dict(kw["sigmas"]), **changes.get(solver, {})}
            for solver, kw in _MRI4.items() if solver not in drop}


TASKS: dict[str, dict] = {
    "ct20": {
        "about": "sparse-view CT, 20 views, sigma_y = 0.7 (5 % of the sinogram rms)",
        "sigma_y": 0.7,
        "admm_tv": {"lam": 1.5, "rho": 45.0, "n_iter": 200},
        "solvers": _tuned(drop=(*_PROJECTIONS, "ddnm"), dps={"zeta": 0.03}, jalal={"gamma": 35.0},
                          guided_sbim={"gamma": 35.0}, pgdm={"zeta": 1.0}, dmps={"lam": 1.75},
                          dds={"gamma": 0.003}),
    },
    "ct8": {
        "about": "sparse-view CT, 8 views, sigma_y = 0.7",
        "sigma_y": 0.7,
        "admm_tv": {"lam": 1.5, "rho": 45.0, "n_iter": 200},
        "solvers": _tuned(drop=(*_PROJECTIONS, "ddnm"), dps={"zeta": 0.03}, jalal={"gamma": 25.0},
                          guided_sbim={"gamma": 25.0}, pgdm={"zeta": 1.0}, dmps={"lam": 1.75},
                          dds={"gamma": 0.003}),
    },
    "mri4": {
        "about": "single-coil Cartesian MRI, 4x (16 of 64 columns, 5 central), sigma_y = 0.01",
        "sigma_y": 0.01,
        "admm_tv": {"lam": 0.0005, "rho": 0.0015, "n_iter": 200},
        "solvers": _tuned(drop=("dmps_flow",)),
    },
    "mri8": {
        "about": "single-coil Cartesian MRI, 8x (8 of 64 columns, 3 central), sigma_y = 0.01",
        "sigma_y": 0.01,
        "admm_tv": {"lam": 0.05, "rho": 0.5, "n_iter": 200},
        "solvers": _tuned(drop=("dmps_flow",)),
    },
    "box": {
        "about": "box inpainting, 24 x 24 hidden in the middle, sigma_y = 0.025",
        "sigma_y": 0.025,
        "admm_tv": {"lam": 0.005, "rho": 0.15, "n_iter": 200},
        "solvers": _tuned(drop=("dmps_flow",), dps={"zeta": 0.125}, pgdm={"zeta": 1.0}, dmps={"lam": 1.75}),
    },
    "inpaint92": {
        "about": "random inpainting, 92 % of the pixels missing, sigma_y = 0.025",
        "sigma_y": 0.025,
        "admm_tv": {"lam": 0.002, "rho": 0.006, "n_iter": 200},
        "solvers": _tuned(drop=("dmps_flow",), dds={"gamma": 100.0}),
    },
    "sr4": {
        "about": "4x super-resolution (4 x 4 average pooling), sigma_y = 0.025",
        "sigma_y": 0.025,
        "admm_tv": {"lam": 0.001, "rho": 0.03, "n_iter": 200},
        "solvers": _tuned(drop=("dmps_flow",), pgdm={"zeta": 1.0}, dds={"gamma": 160.0}),
    },
    "deblur": {
        "about": "Gaussian deblurring (13 x 13 kernel, std 2 px, circular), sigma_y = 0.025",
        "sigma_y": 0.025,
        "admm_tv": {"lam": 0.001, "rho": 0.03, "n_iter": 200},
        "solvers": _tuned(drop=(*_PROJECTIONS, "dmps_flow"), pgdm={"zeta": 1.0}, dds={"gamma": 1.0}),
    },
    "phase": {
        "about": "Fourier phase retrieval |F pad(x)|, oversampling 2, sigma_y = 0.01",
        "sigma_y": 0.01,
        "solvers": {"dps": {"sigmas": {"n": 100}, "zeta": 0.25}},
    },
    "cnnblur": {
        "about": "nonlinear blur by a fixed random two-layer CNN, sigma_y = 0.025",
        "sigma_y": 0.025,
        "solvers": {"dps": {"sigmas": {"n": 100}, "zeta": 0.5}},
    },
    # Volume tasks: diffusion_mbir, dds_tv_z and tpdm on volumes (solvers.volume), dds slice by slice
    # (volume.slice_by_slice). Tuned by benchmarks/volume_table.py --tune on one separate volume (seed
    # 32 000, a 16-slice slab), see the note at the end of the table.
    "ct8_3d": {
        "about": "volumes, 8-view sparse-view CT of every axial slice, sigma_y = 0.7",
        "sigma_y": 0.7, "volume": True,
        "admm_tv": {"lam": 1.5, "rho": 45.0, "n_iter": 200},
        "solvers": {"diffusion_mbir": {"sigmas": {"n": 50}, "lam": 0.5, "rho": 20.0},
                    "tpdm": {"sigmas": {"n": 50}, "w": 0.45},
                    "dds": {"sigmas": {"n": 50}, "gamma": 0.01},
                    "dds_tv_z": {"sigmas": {"n": 50}, "gamma": 0.01, "lam": 2.0, "rho": 50.0}},
    },
    "la90_3d": {
        "about": "volumes, limited-angle CT (90 views over 0-90 degrees) of every axial slice, sigma_y = 0.7",
        "sigma_y": 0.7, "volume": True,
        "admm_tv": {"lam": 5.0, "rho": 150.0, "n_iter": 200},
        "solvers": {"diffusion_mbir": {"sigmas": {"n": 50}, "lam": 0.5, "rho": 20.0},
                    "tpdm": {"sigmas": {"n": 50}, "w": 0.13},
                    "dds": {"sigmas": {"n": 50}, "gamma": 0.0025},
                    "dds_tv_z": {"sigmas": {"n": 50}, "gamma": 0.0025, "lam": 6.0, "rho": 600.0}},
    },
    "mri4_3d": {
        "about": "volumes, 4x Cartesian MRI of every axial slice (mri4's mask), sigma_y = 0.01",
        "sigma_y": 0.01, "volume": True,
        "admm_tv": {"lam": 0.0015, "rho": 0.0135, "n_iter": 200},
        "solvers": {"diffusion_mbir": {"sigmas": {"n": 50}, "lam": 0.005, "rho": 0.01},
                    "tpdm": {"sigmas": {"n": 50}, "w": 5.0},
                    "dds": {"sigmas": {"n": 50}, "gamma": 30.0},
                    "dds_tv_z": {"sigmas": {"n": 50}, "gamma": 30.0, "lam": 0.0025, "rho": 0.25}},
    },
}


def names(volumes: bool = False) -> list[str]:
    """The task names, in the order of the table: the image tasks, or with ``volumes`` the volume tasks."""
    return [name for name, row in TASKS.items() if bool(row.get("volume")) == volumes]


def _row(name: str) -> dict:
    if name not in TASKS:
        raise ValueError(f"name must be one of the tasks {list(TASKS)}, got {name!r}")
    return TASKS[name]


def describe(name: str) -> str:
    """One line on the task, for lessons: ``describe("mri4")``."""
    return _row(name)["about"]


def operator(name: str, depth: int | None = None):
    """A fresh forward operator of the task (deterministic), on the CPU in the default dtype; for a
    volume task the SliceWise operator on volumes of ``depth`` slices."""
    if not _row(name).get("volume"):
        return _OPERATORS[name]()
    if depth is None:
        raise ValueError(f"task {name!r} measures volumes: give their depth, operator({name!r}, depth)")
    return SliceWise(_OPERATORS[name](), check_int(depth, "depth"))


def make(name: str, x: torch.Tensor, generator: torch.Generator | None = None, *,
         sigma_y: float | None = None) -> Likelihood:
    """The likelihood of measuring clean images ``x`` (B, 1, 64, 64) with task ``name``.

    y = A(x) + σ_y n, n ~ N(0, I) drawn from ``generator``; the operator is built on x's device
    and dtype. ``sigma_y`` overrides the task's noise level (0: noise-free y = A(x)).
    """
    row = _row(name)
    if row.get("volume"):
        if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[-2:] != (SIZE, SIZE):
            raise ValueError(f"x must be volumes (B, 1, D, {SIZE}, {SIZE}) for task {name!r}, got shape "
                             f"{tuple(getattr(x, 'shape', ()))}")
    else:
        check_image(x, "x", size=(SIZE, SIZE))
    if x.shape[1] != 1:
        raise ValueError(f"x must have 1 channel, got shape {tuple(x.shape)}")
    op = operator(name, x.shape[2] if row.get("volume") else None).to(device=x.device, dtype=x.dtype)
    noise = GaussianNoise(row["sigma_y"] if sigma_y is None else sigma_y)
    return Likelihood.measure(op, noise, x, generator=generator)


def tuned_solvers(name: str) -> list[str]:
    """The solvers with tuned settings for task ``name``."""
    return list(_row(name)["solvers"])


def settings(name: str, solver) -> dict:
    """Keyword arguments of ``solver`` (a function of :mod:`diffcourse.posterior.solvers` or its
    name) tuned on task ``name``: ``sigmas`` (the schedule, ending at 0) and the paper parameters.

    >>> kw = settings("mri4", "dps")
    >>> float(kw["sigmas"][-1])
    0.0
    """
    solver = getattr(solver, "__name__", solver)
    table = _row(name)["solvers"]
    if solver not in table:
        raise ValueError(f"solver must be one of the solvers tuned on {name!r}, {sorted(table)}, "
                         f"got {solver!r}")
    kwargs = dict(table[solver])
    return {"sigmas": karras_sigmas(**kwargs.pop("sigmas")), **kwargs}


class _RealImages:
    """``A`` restricted to real images: adjoint Re(A^H y) for the real inner product (MRI)."""

    def __init__(self, op):
        self.op = op

    def A(self, x):
        return self.op.A(x)

    def AT(self, y):
        return self.op.AT(y).real


def _linear_op(name: str, lik: Likelihood):
    if not lik.linear:
        raise ValueError(f"task {name!r} has a nonlinear operator; ADMM-TV needs A and AT")
    return _RealImages(lik.op) if isinstance(lik.op, SingleCoilMRI) else lik.op


def admm_tv_tuned(name: str, lik: Likelihood) -> torch.Tensor:
    """ADMM-TV (Rudin, Osher & Fatemi 1992; ADMM: Boyd et al. 2011) with the λ, ρ of the table,
    tuned on a separate phantom: argmin_x ½||A x - y||² + λ TV(x) (isotropic). Linear tasks only."""
    params = _row(name).get("admm_tv")
    op = _linear_op(name, lik)
    if params is None:
        raise ValueError(f"no ADMM-TV settings for task {name!r}")
    if _row(name).get("volume"):
        return admm_tv_3d(op, lik.y, **params)  # isotropic TV over z, y and x
    return admm_tv(op, lik.y, **params)


def _phase_hio(lik: Likelihood, n_iter: int = 300, beta: float = 0.9,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Fienup's hybrid input-output (Appl. Opt. 1982) with support and positivity, then 50
    error-reduction steps; starts from a random image (generator seed 0 by default)."""
    op, y = lik.op, lik.y
    g = torch.Generator().manual_seed(0) if generator is None else generator
    x = torch.rand(y.shape, generator=g, dtype=y.dtype).to(y.device)  # (B, 1, 2H, 2W)
    support = op.pad(torch.ones_like(lik.y[..., :SIZE, :SIZE])) > 0
    for i in range(n_iter + 50):
        X = torch.fft.fft2(x, norm="ortho")
        x_new = torch.fft.ifft2(y * torch.exp(1j * X.angle()), norm="ortho").real
        ok = support & (x_new >= 0)
        x = torch.where(ok, x_new, x - beta * x_new if i < n_iter else torch.zeros_like(x))
    p = (y.shape[-1] - SIZE) // 2
    return x[..., p:p + SIZE, p:p + SIZE]


def _volume_baseline(lik: Likelihood) -> torch.Tensor:
    op, y = lik.op.op, lik.y.flatten(0, 1)  # the 2-D operator, the (B D, ...) slice data
    if isinstance(op, Radon):  # FBP's weight π/(2 n) assumes n angles over 180°
        step = float(op.angles[1] - op.angles[0]) if op.n_angles > 1 else 180.0
        x = op.fbp(y, window=hann_window) * (op.n_angles * step / 180)
    else:
        x = op.AT(y).real
    return x.reshape(-1, lik.op.depth, *x.shape[1:]).transpose(1, 2)  # (B D, C, H, W) -> (B, C, D, H, W)


def baseline(name: str, lik: Likelihood) -> torch.Tensor:
    """The classical reconstruction of task ``name``: FBP (Hann window) for CT, the zero-filled
    image Re(A^H y) for MRI, the pseudo-inverse A^+ y for inpainting and super-resolution, a
    truncated SVD (singular values ≥ 0.1) for deblurring, Fienup's HIO for phase retrieval, and
    y itself (no inversion) for the CNN blur. Volume tasks: the same, slice by slice (FBP weighted
    by the angular range, so that it is not twice too bright over 90°)."""
    if _row(name).get("volume"):
        return _volume_baseline(lik)
    y = lik.y
    if name.startswith("ct"):
        return lik.op.fbp(y, window=hann_window)
    if name.startswith("mri"):
        return lik.op.AT(y).real
    if name == "deblur":
        return lik.op.pinv(y, rcond=0.1)
    if name == "phase":
        return _phase_hio(lik)
    if name == "cnnblur":
        return y.clone()
    return lik.op.pinv(y)
