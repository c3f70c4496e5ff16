"""Properties every posterior solver must have: determinism, per-sample independence, dtype and device
agnosticism, clear errors on bad input, FloatingPointError on divergence, no host round trips."""
from __future__ import annotations

import pytest
import torch

from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.matrix import Matrix
from diffcourse.physics.noise import GaussianNoise, PoissonNoise
from diffcourse.physics.operators import Inpaint, random_mask
from diffcourse.posterior import solvers as V
from diffcourse.prior.processes import karras_sigmas, ve_sigmas

from _util import gen

F64, F32 = torch.float64, torch.float32
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) \
    + (["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else [])
K = karras_sigmas(6, 0.01, 5.0)
L = ve_sigmas(4, 0.05, 5.0)
SOLVERS = {
    "dps": (V.dps, K, {}),
    "dps_code": (V.dps_code, K, {}),
    "mcg": (V.mcg, K, {}),
    "score_pocs": (V.score_pocs, K, {}),
    "song2022": (V.song2022, K, {}),
    "ilvr": (V.ilvr, K, {}),
    "jalal": (V.jalal, L, {"eps": 1e-3, "n_steps_each": 2}),
    "guided_sbim": (V.guided_sbim, L, {"eps": 1e-3}),
    "guided_sbim_ddim": (V.guided_sbim, L, {"eps": 1e-3, "exact_ddim": True, "mse": None, "gamma": 1.0}),
}


def D(x, s):
    """Exact denoiser of N(0.5, I), any shape, dtype and device."""
    return 0.5 + (x - 0.5) / (1 + s.reshape(-1, *([1] * (x.ndim - 1))) ** 2)


def image_problem(dtype=F64, device="cpu", B=2):
    mask = random_mask(8, 0.5, generator=gen(0)).to(dtype)
    y = Inpaint(mask).A(torch.rand(1, 1, 8, 8, generator=gen(1), dtype=dtype))
    lik = Likelihood(Inpaint(mask).to(device), GaussianNoise(0.05), y.to(device))
    x = 5 * torch.randn(B, 1, 8, 8, generator=gen(2), dtype=dtype).to(device)
    return x, lik


def run(name, x, lik, seed=3, **extra):
    solver, sig, kw = SOLVERS[name]
    g = torch.Generator(device=x.device).manual_seed(seed)
    return solver(D, x, sig.to(x.device), lik, generator=g, **{**kw, **extra})


@pytest.mark.parametrize("name", list(SOLVERS))
def test_deterministic_under_a_generator(name):
    x, lik = image_problem()
    torch.testing.assert_close(run(name, x, lik), run(name, x, lik), rtol=0, atol=0)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_each_sample_ignores_its_neighbours(name):
    """A batch [a, b] and a batch [a, 100 b] give the same result for a: every norm and step is per sample."""
    x, lik = image_problem()
    other = torch.cat([x[:1], 100 * x[1:]])
    torch.testing.assert_close(run(name, x, lik)[0], run(name, other, lik)[0])


def vector_problem(dtype, device="cpu"):
    """3 samples in R^4 (12 numbers: CPU randn then draws the same values in float32 and float64)."""
    A = torch.tensor([[1.0, 0.5, 0.0, -0.3], [0.0, 1.0, 0.2, 0.1]], dtype=dtype)
    lik = Likelihood(Matrix(A).to(device), GaussianNoise(0.1), torch.tensor([[0.3, -0.2]], dtype=dtype).to(device))
    return (3 * torch.randn(3, 4, generator=gen(4), dtype=dtype)).to(device), lik


@pytest.mark.parametrize("name", list(SOLVERS))
def test_float32_agrees_with_float64(name):
    x64, lik64 = vector_problem(F64)
    x32, lik32 = vector_problem(F32)
    out32 = run(name, x32, lik32)
    assert out32.dtype == F32
    torch.testing.assert_close(out32.double(), run(name, x64, lik64), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["dps", "mcg", "song2022", "jalal"])
def test_runs_where_the_inputs_live(name, device):
    x, lik = vector_problem(F32, device)
    out = run(name, x, lik)
    assert out.device.type == device
    x_cpu, lik_cpu = vector_problem(F32)
    if device == "cpu":
        torch.testing.assert_close(out, run(name, x_cpu, lik_cpu))
    else:  # another generator stream: the values differ, the run must still be finite
        assert torch.isfinite(out).all()


def test_callback_gets_the_loop_dict():
    x, lik = image_problem()
    seen = []
    V.dps(D, x, K, lik, generator=gen(0), callback=seen.append)
    assert len(seen) == len(K) - 1
    assert set(seen[0]) >= {"i", "x", "sigma", "sigma_next", "x0_hat"}
    assert seen[0]["sigma"] == pytest.approx(5.0) and seen[-1]["sigma_next"] == 0.0


@pytest.mark.parametrize("name", list(SOLVERS))
def test_no_host_round_trip_in_the_loop(name, monkeypatch):
    x, lik = image_problem()

    def forbidden(self):
        raise AssertionError(".item() called inside a solver loop")
    monkeypatch.setattr(torch.Tensor, "item", forbidden)
    run(name, x, lik)


# ------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", list(SOLVERS))
def test_schedule_errors(name):
    x, lik = image_problem()
    solver, _, kw = SOLVERS[name]
    with pytest.raises(ValueError, match="sigmas"):
        solver(D, x, torch.tensor([1.0, 2.0, 0.0], dtype=F64), lik, **kw)
    with pytest.raises(ValueError, match="end at 0"):
        solver(D, x, torch.tensor([3.0, 2.0, 1.0], dtype=F64), lik, **kw)


def test_measurement_errors():
    x, lik = image_problem()
    bad_shape = Likelihood(lik.op, lik.noise, torch.zeros(1, 1, 4, 4, dtype=F64))
    with pytest.raises(ValueError, match="y has shape"):
        V.dps(D, x, K, bad_shape)
    nan = Likelihood(lik.op, lik.noise, lik.y.clone())
    nan.y[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="lik.y must be finite"):
        V.mcg(D, x, K, nan)
    poisson = Likelihood(lik.op, PoissonNoise(100.0), lik.y.clone())
    poisson.y[0, 0, 0, 0] = -1.0
    with pytest.raises(ValueError, match="lik.y must be >= 0"):
        V.dps(D, x, K, poisson)
    with pytest.raises(ValueError, match="x is on meta but lik.y is on cpu"):
        V.dps(D, x.to("meta"), K, lik)
    with pytest.raises(TypeError, match="lik must be"):
        V.song2022(D, x, K, lik.y)


class Square:
    """A nonlinear forward model A(x) = x² (no adjoint)."""

    def A(self, x):
        return x ** 2


def test_nonlinear_operators_work_with_dps_and_are_refused_by_projections():
    x, _ = image_problem()
    lik = Likelihood(Square(), GaussianNoise(0.05), torch.full((1, 1, 8, 8), 0.25, dtype=F64))
    out = V.dps(D, x, karras_sigmas(20, 0.01, 5.0), lik, zeta=0.1, generator=gen(5))
    assert torch.isfinite(out).all()
    for solver in (V.mcg, V.score_pocs, V.song2022, V.ilvr, V.jalal, V.guided_sbim):
        with pytest.raises(TypeError, match="linear operator"):
            solver(D, x, K, lik)


def test_poisson_dps_runs():
    x, lik = image_problem()
    pois = Likelihood(lik.op, PoissonNoise(50.0), lik.y.clamp_min(0))
    assert torch.isfinite(V.dps(D, x, K, pois, generator=gen(6))).all()


def test_divergence_names_the_step_and_sigma():
    """An absurd Langevin step size overflows; a denoiser returning NaN stops DPS at once. (DPS's own step
    ζ'∇||r||²/||r|| is scale-free: an absurd ζ' sends x far away but never to Inf.)"""
    x, lik = image_problem()
    with pytest.raises(FloatingPointError, match=r"jalal at step \d+ \(sigma="):
        V.jalal(D, x, L, lik, eps=1e6, n_steps_each=50, generator=gen(7))
    with pytest.raises(FloatingPointError, match=r"dps at step 0 \(sigma=5\)"):
        V.dps(lambda x, s: D(x, s) * float("nan"), x, K, lik, generator=gen(7))
