"""Sampler properties: determinism under a seed, batch invariance, callback, divergence, bad input."""
from __future__ import annotations

import pytest
import torch

from diffcourse._validate import as_sigma
from diffcourse.prior import samplers as S
from diffcourse.prior.processes import karras_sigmas, ve_sigmas

F64 = torch.float64
SIG = karras_sigmas(10, 0.01, 10.0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def D(x, sigma):
    """Exact denoiser of N(0.2, 0.3² I), any shape."""
    return 0.2 + 0.09 / (0.09 + as_sigma(sigma, x) ** 2) * (x - 0.2)


def _x(batch: int = 2, seed: int = 0, dtype=F64):
    return 10.0 * torch.randn(batch, 1, 4, 4, generator=gen(seed), dtype=dtype)


RUNS = {  # name -> f(x, generator)
    "langevin": lambda x, g: S.langevin(D, x, 0.5, alpha=0.01, n_steps=5, generator=g),
    "annealed_langevin": lambda x, g: S.annealed_langevin(D, x, ve_sigmas(4, 0.1, 10.0, append_zero=False),
                                                          eps=1e-3, n_steps_each=3, generator=g),
    "euler_maruyama": lambda x, g: S.euler_maruyama(D, x, SIG, generator=g),
    "predictor_corrector": lambda x, g: S.predictor_corrector(D, x, SIG, generator=g),
    "ddpm": lambda x, g: S.ddpm(D, x, SIG, generator=g),
    "ddim_eta0.5": lambda x, g: S.ddim(D, x, SIG, eta=0.5, generator=g),
    "ddim": lambda x, g: S.ddim(D, x, SIG, generator=g),
    "ddim_ve": lambda x, g: S.ddim_ve(D, x, SIG, generator=g),
    "heun": lambda x, g: S.heun(D, x, SIG, generator=g),
    "flow_euler": lambda x, g: S.flow_euler(D, x, SIG, generator=g),
    "sbim": lambda x, g: S.sbim(D, x, SIG, generator=g),
}
STOCHASTIC = ["langevin", "annealed_langevin", "euler_maruyama", "predictor_corrector", "ddpm", "ddim_eta0.5"]
DETERMINISTIC = [n for n in RUNS if n not in STOCHASTIC]


@pytest.mark.parametrize("name", STOCHASTIC)
def test_same_generator_same_result_other_seed_other_result(name):
    x = _x()
    a, b, c = RUNS[name](x, gen(1)), RUNS[name](x, gen(1)), RUNS[name](x, gen(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-3


@pytest.mark.parametrize("name", STOCHASTIC)
def test_a_sample_does_not_depend_on_its_batch_neighbours(name):
    """Same noise draws for row 0 (same generator, same shape) while row 1 changes: row 0 must not move."""
    x1, x2 = _x(seed=3), _x(seed=3)
    x2[1] = 5.0 * x2[1] + 1.0
    torch.testing.assert_close(RUNS[name](x1, gen(4))[0], RUNS[name](x2, gen(4))[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_a_batch_of_two_equals_two_batches_of_one(name):
    x = _x(seed=5)
    both = RUNS[name](x, None)
    torch.testing.assert_close(torch.cat([RUNS[name](x[:1], None), RUNS[name](x[1:], None)]), both,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(RUNS))
def test_dtype_and_shape_are_kept(name):
    x = _x(dtype=torch.float32)
    out = RUNS[name](x, gen(0))
    assert out.dtype == torch.float32 and out.shape == x.shape and bool(torch.isfinite(out).all())


def test_callback_sees_every_step_with_the_denoiser_output():
    seen = []
    out = S.heun(D, _x(), SIG, callback=seen.append)
    assert [d["i"] for d in seen] == list(range(len(SIG) - 1))
    assert [d["sigma"] for d in seen] == SIG[:-1].tolist() and seen[-1]["sigma_next"] == 0.0
    for d in seen:
        torch.testing.assert_close(d["x0_hat"], D(d["x"], d["sigma"]))
    torch.testing.assert_close(out, seen[-1]["x0_hat"])  # Euler to 0 from the last state


def test_annealed_langevin_callback_counts_inner_steps():
    seen = []
    S.annealed_langevin(D, _x(), ve_sigmas(3, 0.1, 1.0, append_zero=False), eps=1e-3, n_steps_each=4,
                        generator=gen(0), callback=seen.append)
    assert [d["i"] for d in seen] == list(range(12))
    assert [round(d["sigma"], 6) for d in seen[::4]] == [1.0, round(0.1 ** 0.5, 6), 0.1]


def test_progress_bar_does_not_change_the_result():
    x = _x()
    torch.testing.assert_close(S.ddpm(D, x, SIG, generator=gen(1), progress=True),
                               S.ddpm(D, x, SIG, generator=gen(1)), rtol=0, atol=0)


def test_divergence_stops_with_step_sigma_and_a_hint():
    with pytest.raises(FloatingPointError, match=r"langevin at step \d+ \(sigma=0\.5\).*step size"):
        S.langevin(D, _x(dtype=torch.float32), 0.5, alpha=1e4, n_steps=200, generator=gen(0))

    def D_nan(x, sigma):
        return torch.where(as_sigma(sigma, x) < 1.0, torch.nan, D(x, sigma))
    with pytest.raises(FloatingPointError, match=r"ddim_ve at step \d+ \(sigma=0\.[0-9]+\).*more steps"):
        S.ddim_ve(D_nan, _x(), SIG)


def test_prior_sample_init():
    x = S.prior_sample_init((20000, 3), 7.0, generator=gen(0))
    assert x.shape == (20000, 3) and x.dtype == torch.float32
    assert abs(x.std().item() / 7.0 - 1) < 0.02 and abs(x.mean().item()) < 0.1
    torch.testing.assert_close(S.prior_sample_init((2, 3), 7.0, generator=gen(0), dtype=F64),
                               7.0 * torch.randn(2, 3, generator=gen(0), dtype=F64))


def test_bad_input_is_refused_with_a_clear_message():
    x = _x()
    with pytest.raises(TypeError, match="D must be a callable"):
        S.ddpm("D", x, SIG)
    with pytest.raises(TypeError, match="x must"):
        S.ddpm(D, x.long(), SIG)
    with pytest.raises(ValueError, match="sigmas must have 1 dimensions"):
        S.ddpm(D, x, SIG[None])
    with pytest.raises(ValueError, match="strictly decreasing"):
        S.heun(D, x, SIG.flip(0))
    with pytest.raises(ValueError, match="last sigma must be > 0"):
        S.annealed_langevin(D, x, SIG)
    with pytest.raises(ValueError, match="eta must be a number in"):
        S.ddim(D, x, SIG, eta=1.5)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        S.ddpm(D, x, SIG, generator=0)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        S.langevin(D, x, 0.5, alpha=-1.0)
    with pytest.raises(ValueError, match="alphas_bar must be strictly increasing"):
        S.ddpm_vp(lambda v, a: v, x, torch.tensor([0.9, 0.5], dtype=F64))
    with pytest.raises(ValueError, match="n_corrector"):
        S.predictor_corrector(D, x, SIG, n_corrector=-1)
