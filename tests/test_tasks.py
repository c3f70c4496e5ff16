"""The course's tasks: reproducible measurements, valid tuned settings, and solvers that beat the baselines."""
from __future__ import annotations

import inspect

import pytest
import torch

from diffcourse.metrics import psnr
from diffcourse.posterior import tasks
from diffcourse.prior.train import held_out_phantoms

NAMES = tasks.names()
SHAPES = {"ct20": (20, 91), "ct8": (8, 91), "phase": (128, 128), "sr4": (16, 16)}


@pytest.fixture(scope="module")
def x():
    return held_out_phantoms(2, 64, 10_000)


def test_names_are_the_course_tasks():
    assert set(NAMES) == {"ct20", "ct8", "mri4", "mri8", "box", "inpaint92", "sr4", "deblur", "phase",
                          "cnnblur"}
    for name in NAMES:
        assert isinstance(tasks.describe(name), str) and tasks.describe(name)


@pytest.mark.parametrize("name", NAMES)
def test_make_shapes_and_noise(name, x):
    lik = tasks.make(name, x, torch.Generator().manual_seed(0))
    assert lik.y.shape == (2, 1, *SHAPES.get(name, (64, 64)))
    assert lik.y.shape == lik.A(x).shape
    again = tasks.make(name, x, torch.Generator().manual_seed(0))
    assert torch.equal(lik.y, again.y)
    other = tasks.make(name, x, torch.Generator().manual_seed(1))
    assert not torch.equal(lik.y, other.y)
    # the noise has the task's level: (y - A x) / sigma_y is standard normal
    n = (lik.y - lik.A(x)) / lik.sigma_y
    if hasattr(lik.op, "measured"):              # masks: only the measured entries carry noise
        n = n[lik.op.measured(torch.ones_like(n)) != 0]
    n = torch.view_as_real(n) if n.is_complex() else n
    assert abs(n.std().item() - 1) < 0.1 and abs(n.mean().item()) < 0.1


@pytest.mark.parametrize("name", NAMES)
def test_make_noise_free_is_A_x(name, x):
    lik = tasks.make(name, x, sigma_y=0.0)
    assert torch.allclose(lik.y, lik.A(x))
    assert torch.equal(lik.A(x), tasks.operator(name).A(x))  # the operator is deterministic


def test_mri_masks_sample_the_centre():
    for name, lines, centre in (("mri4", 16, 5), ("mri8", 8, 3)):
        mask = tasks.operator(name).mask.reshape(64, 64)
        assert int(mask[0].sum()) == lines
        assert bool(mask[:, 32 - centre // 2: 32 - centre // 2 + centre].all())


def test_bad_names_raise_listing_the_valid_ones(x):
    for call in (lambda: tasks.make("ct21", x), lambda: tasks.describe("ct21"),
                 lambda: tasks.settings("ct21", "dps")):
        with pytest.raises(ValueError, match="mri4"):
            call()
    with pytest.raises(ValueError, match="dps"):
        tasks.settings("mri4", "no_such_solver")
    with pytest.raises(ValueError, match="nonlinear"):
        tasks.admm_tv_tuned("phase", tasks.make("phase", x))


def _pairs():
    return [(name, solver) for name in NAMES for solver in tasks.tuned_solvers(name)]


def test_every_task_has_dps():
    for name in NAMES:
        assert "dps" in tasks.tuned_solvers(name)


@pytest.mark.parametrize("name,solver", _pairs())
def test_settings_fit_the_solver(name, solver):
    solvers = pytest.importorskip("diffcourse.posterior.solvers")
    fn = getattr(solvers, solver)
    kw = tasks.settings(name, fn)
    sigmas = kw["sigmas"]
    assert sigmas.ndim == 1 and sigmas[-1] == 0 and bool((sigmas[:-1] > sigmas[1:]).all())
    assert 10 <= sigmas.numel() - 1 <= 100  # <= 100 levels
    params = inspect.signature(fn).parameters
    assert set(kw) <= set(params) - {"D", "x", "lik", "generator", "callback", "progress"}
    assert kw == {**tasks.settings(name, solver), "sigmas": kw["sigmas"]}  # name or function


@pytest.mark.parametrize("name", [n for n in NAMES if n != "phase"])
def test_baseline_and_admm_tv_improve_on_nothing(name, x):
    """The baseline beats an all-zero image; tuned ADMM-TV beats the baseline (linear tasks)."""
    lik = tasks.make(name, x, torch.Generator().manual_seed(0))
    base = tasks.baseline(name, lik).clamp(0, 1)
    assert base.shape == x.shape
    assert (psnr(base, x) > psnr(torch.zeros_like(x), x)).all()
    if lik.linear:
        tv = tasks.admm_tv_tuned(name, lik).clamp(0, 1)
        assert (psnr(tv, x) > psnr(base, x) + 0.3).all()


def test_phase_baseline_recovers_a_phantom_up_to_ambiguities():
    x = held_out_phantoms(4, 64, 10_000)[:1]
    lik = tasks.make("phase", x, torch.Generator().manual_seed(0))
    rec = tasks.baseline("phase", lik)
    assert rec.shape == x.shape
    # HIO is good but not perfect; the residual must fall far below that of an all-zero guess
    assert (lik.y - lik.A(rec)).norm() < 0.3 * lik.y.norm()


def _end_to_end(name, solver, margin):
    solvers = pytest.importorskip("diffcourse.posterior.solvers")
    from diffcourse.prior import pretrained
    D = pretrained.load("phantom64")
    x = held_out_phantoms(4, 64, 10_000)[:1]
    lik = tasks.make(name, x, torch.Generator().manual_seed(1))
    kw = tasks.settings(name, solver)
    g = torch.Generator().manual_seed(0)
    x_T = float(kw["sigmas"][0]) * torch.randn(x.shape, generator=g)
    out = getattr(solvers, solver)(D, x_T, kw.pop("sigmas").float(), lik, generator=g, **kw)
    gain = (psnr(out.clamp(0, 1), x) - psnr(tasks.baseline(name, lik).clamp(0, 1), x)).item()
    assert gain > margin, f"{solver} on {name}: {gain:.2f} dB over the baseline, expected > {margin}"


def test_song2022_on_mri4_beats_zero_filled():
    _end_to_end("mri4", "song2022", 6.0)


def test_dps_on_ct20_beats_fbp():
    _end_to_end("ct20", "dps", 3.0)
