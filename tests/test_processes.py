"""VE, VP and flow as one family x_t = s(t) (x0 + sigma(t) z): bijections, inverses, schedules."""
import math

import pytest
import torch

from diffcourse.prior.processes import (DDPM, VE, Flow, VPCosine, VPLinear, alpha_bar_from_sigma,
                                        flow_sigmas, karras_sigmas, sigma_from_alpha_bar, ve_sigmas,
                                        vp_sigmas)

F64 = torch.float64
T_GRID = torch.linspace(0.02, 0.98, 49, dtype=F64)
VP_PROCESSES = [VPLinear(), VPCosine(), DDPM.linear(), DDPM.cosine(), DDPM.linear(T=50)]
ALL = [VE(), VE(0.002, 80.0), Flow()] + VP_PROCESSES


def times(p):
    """A time grid inside the process' domain (DDPM time is the step index)."""
    return T_GRID * (p.T - 1) if isinstance(p, DDPM) else T_GRID


@pytest.mark.parametrize("p", ALL, ids=lambda p: type(p).__name__)
def test_monotone_and_round_trip(p):
    t = times(p)
    s, sig = p.s(t), p.sigma(t)
    assert bool((s[1:] <= s[:-1]).all()) and bool((sig[1:] > sig[:-1]).all())
    assert torch.allclose(p.t_of_sigma(sig), t, rtol=1e-10, atol=1e-10)
    assert torch.allclose(p.sigma(p.t_of_sigma(sig)), sig, rtol=1e-10)
    assert torch.allclose(p.scale(sig), s, rtol=1e-12)                # s as a function of sigma


@pytest.mark.parametrize("p", VP_PROCESSES, ids=lambda p: type(p).__name__)
def test_vp_bijection(p):
    """x_vp = sqrt(abar) x0 + sqrt(1 - abar) z = s (x0 + sigma z) with s = 1/sqrt(1 + sigma^2)."""
    t = times(p)
    abar, s, sig = p.alpha_bar(t), p.s(t), p.sigma(t)
    assert torch.allclose(abar, 1 / (1 + sig ** 2), rtol=1e-12)
    assert torch.allclose(s, abar.sqrt(), rtol=1e-12)
    assert torch.allclose(s * sig, (1 - abar).sqrt(), rtol=1e-10)
    g = torch.Generator().manual_seed(0)
    x0, z = torch.randn(2, 49, generator=g, dtype=F64)
    assert torch.allclose(abar.sqrt() * x0 + (1 - abar).sqrt() * z, s * (x0 + sig * z), atol=1e-12)


def test_vp_and_ve_scores_of_gaussian_data():
    """Card 11 test (1): s_VE(x / sqrt(abar), sigma) = sqrt(abar) s_VP(x, t) for data N(0, tau^2)."""
    tau2, p = 0.3, VPLinear()
    t = T_GRID
    abar, sig = p.alpha_bar(t), p.sigma(t)
    x = torch.linspace(-3, 3, 49, dtype=F64)
    score_vp = -x / (abar * tau2 + 1 - abar)              # VP marginal N(0, abar tau^2 + 1 - abar)
    score_ve = -(x / abar.sqrt()) / (tau2 + sig ** 2)     # VE marginal N(0, tau^2 + sigma^2)
    assert torch.allclose(score_ve, abar.sqrt() * score_vp, rtol=1e-12)


def test_flow_is_the_rescaled_ve_state():
    p, t = Flow(), T_GRID
    assert torch.allclose(p.s(t) * p.sigma(t), p.b(t)) and torch.allclose(p.s(t), p.a(t))
    assert torch.allclose(p.t_of_sigma(p.sigma(t)), t)
    g = torch.Generator().manual_seed(1)
    x0, z = torch.randn(2, 49, generator=g, dtype=F64)
    x_ve = x0 + p.sigma(t) * z
    assert torch.allclose((1 - t) * x0 + t * z, x_ve / (1 + p.sigma(t)), atol=1e-12)


def test_ve_endpoints_and_geometry():
    p = VE(0.01, 50.0)
    ends = p.sigma(torch.tensor([0.0, 1.0], dtype=F64))
    assert torch.allclose(ends, torch.tensor([0.01, 50.0], dtype=F64))
    sig = p.sigma(T_GRID)
    ratio = sig[1:] / sig[:-1]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio))             # geometric in t
    assert torch.equal(p.s(T_GRID), torch.ones_like(T_GRID))


@pytest.mark.parametrize("p", [VPLinear(), VPCosine()], ids=["linear", "cosine"])
def test_vp_alpha_bar_is_exp_of_minus_integral_of_beta(p):
    t = T_GRID.clone().requires_grad_(True)
    (dlog,) = torch.autograd.grad(p.alpha_bar(t).log().sum(), t)
    assert torch.allclose(dlog, -p.beta(T_GRID), rtol=1e-10)          # d/dt log abar = -beta(t)
    fine = torch.linspace(0, 0.7, 20001, dtype=F64)
    assert math.isclose(float(p.alpha_bar(0.7)), math.exp(-float(torch.trapezoid(p.beta(fine), fine))),
                        rel_tol=1e-8)                                   # trapezoid error O(h^2)
    assert float(p.sigma(0.0)) == 0.0 and float(p.alpha_bar(0.0)) == 1.0


def test_ddpm_alpha_bar_from_betas():
    p = DDPM.linear()
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
    prod, ref = 1.0, []
    for b in betas:
        prod *= 1 - b
        ref.append(prod)
    assert torch.allclose(p.alpha_bars, torch.tensor(ref, dtype=F64), rtol=1e-10)
    assert torch.allclose(p.betas, torch.tensor(betas, dtype=F64), rtol=1e-9)
    assert p.T == 1000 and math.isclose(float(p.betas[0]), 1e-4)
    assert math.isclose(float(p.betas[-1]), 0.02)
    steps = torch.arange(1000)
    assert torch.allclose(p.sigma(steps), sigma_from_alpha_bar(p.alpha_bars), rtol=1e-12)
    assert torch.allclose(p.t_of_sigma(p.sigma(steps)), steps.to(F64), atol=1e-9)
    # Ho's chain with T = 1000 discretises the continuous VP SDE (beta_min = 0.1, beta_max = 20)
    cont = VPLinear().alpha_bar((steps.to(F64) + 1) / 1000)
    assert (p.alpha_bars / cont - 1).abs().max() < 0.08                # 6.6 % at the last step


def test_ddpm_cosine_follows_nichol_dhariwal():
    p = DDPM.cosine(T=200)
    assert bool((p.betas <= 0.999 + 1e-12).all())
    t = (torch.arange(200, dtype=F64) + 1) / 200
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    unclipped = p.betas < 0.999 - 1e-9
    assert torch.allclose(p.alpha_bars[:150], f[:150], rtol=1e-9) and bool(unclipped[:150].all())
    assert float(VPCosine().alpha_bar(0.0)) == 1.0 and float(VPCosine().alpha_bar(1.0)) < 1e-30


def test_ddpm_rescaled_linear_betas():
    p = DDPM.linear(T=100)
    assert math.isclose(float(p.betas[0]), 1e-3, rel_tol=1e-9) and math.isclose(float(p.betas[-1]), 0.2)
    assert float(p.t_of_sigma(0.0)) == 0.0 and float(p.t_of_sigma(1e9)) == 99.0   # clamped


def test_alpha_bar_sigma_helpers_are_inverse():
    abar = torch.linspace(0.01, 1.0, 30, dtype=F64)
    assert torch.allclose(alpha_bar_from_sigma(sigma_from_alpha_bar(abar)), abar, rtol=1e-12)


@pytest.mark.parametrize("build, first, last", [
    (lambda n, **k: ve_sigmas(n, 0.01, 50.0, **k), 50.0, 0.01),
    (lambda n, **k: karras_sigmas(n, 0.002, 80.0, **k), 80.0, 0.002),
    (lambda n, **k: vp_sigmas(n, **k), float(DDPM.linear().sigma(999)), float(DDPM.linear().sigma(0))),
    (lambda n, **k: flow_sigmas(n, **k), 999.0, float(Flow().sigma(0.999 / 10))),
])
def test_schedule_endpoints(build, first, last):
    s = build(10)
    assert s.shape == (11,) and s.dtype == F64 and float(s[-1]) == 0.0
    assert math.isclose(float(s[0]), first, rel_tol=1e-9)
    assert math.isclose(float(s[-2]), last, rel_tol=1e-9)
    assert bool((s[1:] < s[:-1]).all())
    short = build(10, append_zero=False, dtype=torch.float32)
    assert short.shape == (10,) and short.dtype == torch.float32
    assert torch.allclose(short.double(), s[:-1])


def test_schedule_shapes():
    ve = ve_sigmas(5, 0.1, 10.0, append_zero=False)
    assert torch.allclose(ve[1:] / ve[:-1], torch.full((4,), 0.1 ** 0.5, dtype=F64))
    lin = karras_sigmas(5, 1.0, 5.0, rho=1.0, append_zero=False)
    assert torch.allclose(lin, torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0], dtype=F64))
    t = Flow().t_of_sigma(flow_sigmas(4, eps=0.2))
    assert torch.allclose(t, torch.tensor([0.8, 0.6, 0.4, 0.2, 0.0], dtype=F64))
    steps = DDPM.linear().t_of_sigma(vp_sigmas(4, append_zero=False))
    assert torch.allclose(steps, torch.tensor([999.0, 666.0, 333.0, 0.0], dtype=F64), atol=1e-9)


def test_dtype_follows_tensor_input():
    t32 = torch.tensor([0.1, 0.5], dtype=torch.float32)
    for p in (VE(), VPLinear(), VPCosine(), Flow()):
        assert p.sigma(t32).dtype == torch.float32 and p.s(t32).dtype == torch.float32
    assert DDPM.linear().sigma(torch.tensor([3, 10])).dtype == F64


def test_bad_input():
    with pytest.raises(ValueError, match="sigma_min"):
        VE(1.0, 0.5)
    with pytest.raises(ValueError, match="sigma_max"):
        VE(0.1, -1.0)
    with pytest.raises(ValueError, match="alpha_bars"):
        DDPM(torch.tensor([0.5, 0.9], dtype=F64))
    with pytest.raises(ValueError, match="betas"):
        DDPM.from_betas(torch.tensor([0.1, 1.5]))
    with pytest.raises(TypeError, match="t must be"):
        VE().sigma("0.5")
    with pytest.raises(ValueError, match="n must be"):
        ve_sigmas(0)
    with pytest.raises(ValueError, match="n must be"):
        vp_sigmas(2000)
    with pytest.raises(ValueError, match="eps"):
        flow_sigmas(5, eps=1.5)
