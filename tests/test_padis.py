"""PaDIS (Hu et al., NeurIPS 2024): the update rule in closed form for a linear denoiser, the stationary
variance of its Langevin steps, the non-squared per-sample data step, its starts, and a run with an
exact patch prior."""
import math

import pytest
import torch

from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.noise import GaussianNoise
from diffcourse.physics.operators import Identity, Inpaint, random_mask
from diffcourse.posterior.solvers import padis, padis_start_noise, padis_start_pinv
from diffcourse.prior.patches import PatchDenoiser, positions
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.samplers.loop import CountingDenoiser

F64 = torch.float64


def _lik(y, op=None, sigma_y=0.1):
    return Likelihood(Identity() if op is None else op, GaussianNoise(sigma_y), y)


def test_one_level_matches_the_closed_form_for_a_linear_denoiser():
    """D(x) = c x: the data step is ζ c r/||r|| (r = y - c x, gradient through D, norm not squared,
    per sample) and the Langevin drift (ε/2)(c - 1) x with the score at the pre-step x; no noise at
    the last level. Two images with residuals of different sizes each move by their own rule."""
    c, zeta, eps, n_inner = 0.8, 0.05, 0.5, 4
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 1, 5, 5, generator=g, dtype=F64)
    y = torch.stack([torch.rand(1, 5, 5, generator=g, dtype=F64), 10 * torch.rand(1, 5, 5, generator=g, dtype=F64)])
    out = padis(lambda x, s: c * x, x0, torch.tensor([0.3, 0.0], dtype=F64), _lik(y), zeta=zeta, eps=eps,
                n_inner=n_inner)
    x = x0.clone()
    for _ in range(n_inner):
        r = y - c * x
        x = x + zeta * c * r / r.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1) + (eps / 2) * (c - 1) * x
    assert torch.allclose(out, x, atol=1e-12)


def test_langevin_steps_have_the_stationary_variance_of_their_discretisation():
    """ζ = 0, Gaussian data N(0, τ²): at level σ the chain x' = (1 - a) x + √α z, α = ε σ², a = α/(2v),
    v = τ² + σ², has stationary variance α/(a (2 - a)) = 2v/(2 - a) (1.14 v for ε = 0.5, not v)."""
    tau, sigma, eps = 0.5, 2.0, 0.5
    v = tau ** 2 + sigma ** 2
    a = eps * sigma ** 2 / (2 * v)
    D = lambda x, s: tau ** 2 * x / (tau ** 2 + s.reshape(-1, 1, 1, 1) ** 2)       # noqa: E731
    states = []
    x = math.sqrt(v) * torch.randn(4, 1, 50, 50, generator=torch.Generator().manual_seed(1), dtype=F64)
    padis(D, x, torch.tensor([sigma, 0.01, 0.0], dtype=F64), _lik(torch.zeros_like(x)), zeta=0.0, eps=eps,
          n_inner=40, generator=torch.Generator().manual_seed(2),
          callback=lambda d: states.append(d["x"]) if d["i"] == 40 else None)
    var = states[0].var().item()
    expected = 2 * v / (2 - a)
    assert abs(var / expected - 1) < 0.04 and abs(var / v - 1) > 0.1, (var, expected, v)


def test_network_calls_and_the_edm_grid():
    """n_inner calls per positive level, each with a backward pass; the code's grid is Karras' (ρ = 7)."""
    sigmas = karras_sigmas(6, 0.003, 10.0, dtype=F64)
    i = torch.arange(6, dtype=F64)
    code = (10.0 ** (1 / 7) + i / 5 * (0.003 ** (1 / 7) - 10.0 ** (1 / 7))) ** 7
    assert torch.allclose(sigmas[:-1], code) and sigmas[-1] == 0
    D = CountingDenoiser(lambda x, s: 0.5 * x)
    x = torch.rand(2, 1, 4, 4, dtype=F64)
    padis(D, x, sigmas, _lik(torch.rand(2, 1, 4, 4, dtype=F64)), n_inner=3, generator=torch.Generator().manual_seed(0))
    assert D.calls == 18 and D.with_grad == 18 and D.evaluations == 36


def test_the_two_starts():
    mask = random_mask(8, 0.5, torch.Generator().manual_seed(0))
    y = 2 * torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1)) - 0.5
    lik = _lik(y * mask, Inpaint(mask))
    assert torch.equal(padis_start_pinv(lik), (y * mask).clamp(0, 1))
    assert torch.equal(padis_start_pinv(lik, pinv=lambda v: v + 2), torch.ones_like(y))
    x = padis_start_noise((4, 1, 32, 32), 10.0, generator=torch.Generator().manual_seed(0))
    assert abs(x.std().item() / 10 - 1) < 0.05


def test_inpainting_with_an_exact_patch_prior():
    """A per-pixel Gaussian prior with position-dependent mean, exact patch denoiser, assembled with
    random shifts: the data step brings the measured pixels to y (to the noise level; without it they
    are prior draws), the missing ones are prior draws around their mean (Langevin with ε = 0.5 on a
    short ladder over-disperses them: std about 1.4 τ here)."""
    N, P, tau = 20, 6, 0.1
    S = N + 2 * 4
    mu = lambda px, py: 0.5 + 0.3 * px * py                                   # noqa: E731

    def D_patch(v, s, pos):
        s2 = s.reshape(-1, 1, 1, 1) ** 2
        return (tau ** 2 * v + s2 * mu(pos[:, :1], pos[:, 1:])) / (tau ** 2 + s2)
    pos = positions(S, dtype=F64)[:, 4:4 + N, 4:4 + N]
    mean = mu(pos[0], pos[1])
    g = torch.Generator().manual_seed(0)
    x_true = mean + tau * torch.randn(4, 1, N, N, generator=g, dtype=F64)
    mask = random_mask(N, 0.5, torch.Generator().manual_seed(1)).to(F64)
    lik = Likelihood.measure(Inpaint(mask), GaussianNoise(0.01), x_true, generator=g)
    seen, missing = mask.bool().expand_as(x_true), ~mask.bool().expand_as(x_true)
    rms = {}
    for zeta in (0.2, 0.0):
        D = PatchDenoiser(D_patch, P, generator=torch.Generator().manual_seed(2))
        x = padis_start_noise(x_true.shape, 10.0, generator=torch.Generator().manual_seed(3), dtype=F64)
        out = padis(D, x, karras_sigmas(20, 0.003, 10.0, dtype=F64), lik, zeta=zeta, n_inner=4,
                    generator=torch.Generator().manual_seed(4))
        rms[zeta] = (out - x_true)[seen].pow(2).mean().sqrt().item()
        z = ((out - mean) / tau)[missing]
        assert abs(z.mean().item()) < 0.15 and 0.8 < z.std().item() < 1.8, (z.mean(), z.std())
    assert rms[0.2] < 0.025 and rms[0.0] > 0.1, rms


def test_seeded_and_batch_invariant():
    """Same generator, same output, bit for bit; another seed, another output; changing one image of the
    batch leaves the other's result unchanged (per-sample data norm, per-pixel noise)."""
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(5), dtype=F64)
    lik = _lik(torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(6), dtype=F64))
    sigmas = karras_sigmas(6, 0.01, 2.0, dtype=F64)

    def run(start, seed):
        return padis(lambda v, s: 0.7 * v + 0.15, start, sigmas, lik, zeta=0.1, n_inner=3,
                     generator=torch.Generator().manual_seed(seed))
    out = run(x, 3)
    assert torch.equal(run(x, 3), out) and (run(x, 4) - out).abs().max() > 1e-3
    other = torch.cat([x[:1], 100 * x[1:]])
    torch.testing.assert_close(run(other, 3)[0], out[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kw, err", [({"zeta": -1.0}, ValueError), ({"eps": 0.0}, ValueError),
                                     ({"n_inner": 0}, ValueError), ({"n_inner": 2.5}, TypeError)])
def test_bad_arguments(kw, err):
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(err, match=next(iter(kw))):
        padis(lambda v, s: v, x, karras_sigmas(3), _lik(x), **kw)
    with pytest.raises(TypeError, match="lik"):
        padis(lambda v, s: v, x, karras_sigmas(3), None)
