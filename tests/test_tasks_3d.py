"""The course's volume tasks (ct8_3d, la90_3d, mri4_3d): SliceWise operators built from the image
tasks' operators, the stated noise, reproducible measurements, baselines slice by slice (FBP
weighted by the angular range), settings that fit the 3-D solvers, and the 3-D TV helpers they use
(the volume gradient's adjoint, 3-D ADMM-TV against the 2-D one on volumes constant along z)."""
from __future__ import annotations

import inspect
import math

import pytest
import torch

from diffcourse.physics.ct import Radon, limited_angle, sparse_view
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.noise import GaussianNoise
from diffcourse.physics.volume import SliceWise
from diffcourse.posterior import solvers, tasks
from diffcourse.posterior.classical import admm_tv, least_squares
from diffcourse.posterior.solvers import volume
from diffcourse.posterior.solvers.volume import slice_by_slice
from diffcourse.posterior.tv3d import admm_tv_3d, grad_3d, grad_3d_T

from _util import gen

F64 = torch.float64
VOLUME_NAMES = ["ct8_3d", "la90_3d", "mri4_3d"]
SLICE_DATA = {"ct8_3d": (8, 91), "la90_3d": (90, 91), "mri4_3d": (64, 64)}
IMAGE_TASK = {"ct8_3d": "ct8", "mri4_3d": "mri4"}      # same 2-D operator as these image tasks


@pytest.fixture(scope="module")
def x():
    """Two smooth random volumes (2, 1, 3, 64, 64) in [0, 1] (no template needed here)."""
    v = torch.rand(2, 1, 3, 8, 8, generator=gen(0))
    return torch.nn.functional.interpolate(v, size=(3, 64, 64), mode="trilinear", align_corners=False)


def test_volume_names_are_separate_from_the_image_tasks():
    assert tasks.names(volumes=True) == VOLUME_NAMES
    assert not set(VOLUME_NAMES) & set(tasks.names())
    for name in VOLUME_NAMES:
        assert "volume" in tasks.describe(name) or "volumes" in tasks.describe(name)


@pytest.mark.parametrize("name", VOLUME_NAMES)
def test_make_measures_every_slice_with_the_2d_operator(name, x):
    lik = tasks.make(name, x, gen(1))
    assert isinstance(lik.op, SliceWise) and lik.op.depth == 3
    assert lik.y.shape == (2, 3, 1, *SLICE_DATA[name])
    clean = tasks.make(name, x, sigma_y=0.0).y
    for d in range(3):                                      # slice d of volume k = the 2-D op on it
        torch.testing.assert_close(clean[:, d], lik.op.op.A(x[:, :, d]), rtol=0, atol=0)
    if name in IMAGE_TASK:
        image_op = tasks.operator(IMAGE_TASK[name])
        torch.testing.assert_close(clean[:, 1], image_op.A(x[:, :, 1]), rtol=0, atol=0)


def test_limited_angle_views_cover_the_first_90_degrees():
    op = tasks.operator("la90_3d", 2).op
    assert isinstance(op, Radon) and op.n_angles == 90
    torch.testing.assert_close(op.angles, torch.arange(90, dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", VOLUME_NAMES)
def test_noise_level_and_determinism(name, x):
    lik = tasks.make(name, x, gen(2))
    assert lik.sigma_y == tasks.TASKS[name]["sigma_y"]
    assert torch.equal(lik.y, tasks.make(name, x, gen(2)).y)
    assert not torch.equal(lik.y, tasks.make(name, x, gen(3)).y)
    n = (lik.y - lik.A(x)) / lik.sigma_y
    if hasattr(lik.op.op, "measured"):                       # MRI: the unmeasured k-space stays zero
        n = n[lik.op.op.measured(torch.ones_like(n.flatten(0, 1))).reshape(n.shape) != 0]
    n = torch.view_as_real(n) if n.is_complex() else n
    assert n.numel() > 4000 and abs(n.std().item() - 1) < 0.06 and abs(n.mean().item()) < 0.06


def test_make_refuses_images_and_operator_needs_a_depth(x):
    with pytest.raises(ValueError, match="volumes"):
        tasks.make("ct8_3d", x[:, :, 0])
    with pytest.raises(ValueError, match="depth"):
        tasks.operator("ct8_3d")
    with pytest.raises(ValueError, match="64"):
        tasks.make("ct8_3d", x[..., :32, :32])


def test_baseline_is_the_2d_baseline_slice_by_slice(x):
    for name in ("ct8_3d", "mri4_3d"):
        lik = tasks.make(name, x, gen(4))
        vol = tasks.baseline(name, lik)
        assert vol.shape == x.shape and not vol.is_complex()
        flat = Likelihood(tasks.operator(IMAGE_TASK[name]), lik.noise, lik.y.flatten(0, 1))
        ref = tasks.baseline(IMAGE_TASK[name], flat)                        # (2*3, 1, 64, 64)
        torch.testing.assert_close(vol[1, :, 2], ref[1 * 3 + 2], rtol=0, atol=1e-6)


def test_limited_angle_fbp_weights_each_view_as_a_full_scan_does(x):
    """FBP over [0, 90) plus FBP over [90, 180), each as the la90 baseline weights it, is the FBP of
    the 180 views together: every view carries the weight π/(2 · 180) of a full 1-degree scan."""
    halves = []
    for angles in (limited_angle(90, 90), 90 + limited_angle(90, 90)):
        op = SliceWise(Radon(64, angles), 3)
        halves.append(tasks.baseline("la90_3d", Likelihood(op, GaussianNoise(0.7), op.A(x))))
    full = Radon(64, sparse_view(180))
    ref = full.fbp(full.A(x[:, :, 0]), window=tasks.hann_window)
    torch.testing.assert_close((halves[0] + halves[1])[:, :, 0], ref, rtol=0, atol=1e-4)


def _solver(name):
    return getattr(volume, name, None) or getattr(solvers, name)


@pytest.mark.parametrize("name", VOLUME_NAMES)
def test_settings_fit_the_solvers(name):
    assert {"diffusion_mbir", "tpdm", "dds_tv_z", "dds"} <= set(tasks.tuned_solvers(name))
    for solver in tasks.tuned_solvers(name):
        kw = tasks.settings(name, solver)
        sigmas = kw["sigmas"]
        assert sigmas[-1] == 0 and bool((sigmas[:-1] > sigmas[1:]).all()) and sigmas.numel() - 1 <= 100
        params = inspect.signature(_solver(solver)).parameters
        assert set(kw) <= set(params) - {"D", "x", "lik", "generator", "callback", "progress", "D_aux"}


def test_settings_run_end_to_end_on_a_tiny_volume(x):
    """Every tuned row runs (here with a toy per-pixel denoiser and 3 levels) and returns a volume."""
    D = lambda v, s: (0.1 * v + s.reshape(-1, 1, 1, 1) ** 2 * 0.5) / (0.1 + s.reshape(-1, 1, 1, 1) ** 2)
    for name in VOLUME_NAMES:
        lik = tasks.make(name, x[:1], gen(5))
        for solver in tasks.tuned_solvers(name):
            kw = tasks.settings(name, solver)
            sigmas = torch.cat([kw.pop("sigmas")[:3], torch.zeros(1)])
            start = float(sigmas[0]) * torch.randn(x[:1].shape, generator=gen(6))
            if solver in ("diffusion_mbir", "tpdm", "dds_tv_z"):
                extra = {"D_aux": D} if solver == "tpdm" else {}
                out = _solver(solver)(D, start, sigmas, lik, generator=gen(7), **extra, **kw)
            else:
                out = slice_by_slice(_solver(solver), D, start, sigmas, lik, generator=gen(7), **kw)
            assert out.shape == x[:1].shape and torch.isfinite(out).all(), (name, solver)


# ---------------------------------------------------------------- 3-D TV
def test_grad_3d_is_the_adjoint_pair_of_its_transpose():
    shape = (1, 1, 3, 4, 5)
    n = math.prod(shape)
    M = torch.stack([grad_3d(torch.eye(n, dtype=F64)[j].reshape(shape)).reshape(-1) for j in range(n)], 1)
    MT = torch.stack([grad_3d_T(torch.eye(3 * n, dtype=F64)[j].reshape(1, 3, *shape[1:])).reshape(-1)
                      for j in range(3 * n)], 1)
    torch.testing.assert_close(MT, M.T, rtol=0, atol=0)
    v = torch.arange(60.0, dtype=F64).reshape(shape)
    assert grad_3d(v)[:, 0, :, -1].abs().max() == 0                     # Neumann: nothing leaves
    torch.testing.assert_close(grad_3d(v)[0, :, 0, 0, 0, 0], torch.tensor([20.0, 5.0, 1.0], dtype=F64))


def test_admm_tv_3d_on_volumes_constant_along_z_is_the_2d_admm_tv():
    """With the same data on every slice the z-differences stay 0 and the per-volume CG inner products
    are D times the per-slice ones: every iterate is the 2-D ADMM-TV's."""
    op2 = Radon(16, sparse_view(6), dtype=F64)
    img = torch.rand(2, 1, 16, 16, generator=gen(8), dtype=F64)
    y2 = op2.A(img) + 0.1 * torch.randn(2, 1, 6, op2.n_detectors, generator=gen(9), dtype=F64)
    ref = admm_tv(op2, y2, lam=0.3, rho=3.0, n_iter=30)
    vol = admm_tv_3d(SliceWise(op2, 4), y2.unsqueeze(1).expand(-1, 4, -1, -1, -1), lam=0.3, rho=3.0, n_iter=30)
    for d in range(4):
        torch.testing.assert_close(vol[:, :, d], ref, rtol=0, atol=1e-9)


def test_admm_tv_3d_without_tv_is_least_squares_and_tv_flattens_z():
    op = SliceWise(Radon(8, sparse_view(12), dtype=F64), 3)
    x0 = torch.rand(1, 1, 3, 8, 8, generator=gen(10), dtype=F64)
    y = op.A(x0) + 0.5 * torch.randn(op.A(x0).shape, generator=gen(11), dtype=F64)
    ls = least_squares(op, y, n_iter=500, tol=1e-14)
    fit = lambda v: (op.A(v) - y).square().sum()                        # A may have a null space
    lam0 = admm_tv_3d(op, y, lam=0.0, rho=0.01, n_iter=60, n_iter_cg=30)
    torch.testing.assert_close(fit(lam0), fit(ls), rtol=1e-5, atol=0)
    strong = admm_tv_3d(op, y, lam=50.0, rho=50.0, n_iter=100)
    assert grad_3d(strong).abs().mean() < 0.2 * grad_3d(ls).abs().mean()
