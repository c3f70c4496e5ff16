"""BlindDPS (Chung, Kim, Kim & Ye, CVPR 2023) and the shipped kernel prior.

The frozen-kernel reduction to DPS, the two step-size rules, the kernel normalisation after every
step, the ℓ1 penalty's gradient in closed form, the objective's gradient against finite differences,
per-sample independence, and the kernel prior: its checksum, its samples and its denoising gain.
"""
from __future__ import annotations

import math

import pytest
import torch

from diffcourse.physics.blur import Blur, gaussian_kernel, motion_kernel
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.noise import GaussianNoise
from diffcourse.posterior.solvers import blind_dps, blind_dps_code, dps_code
from diffcourse.posterior.solvers.blind import blind_grad, blind_objective, kernel_l1, normalize_kernel
from diffcourse.prior import pretrained
from diffcourse.prior.processes import karras_sigmas
from diffcourse.prior.samplers.steps import ddpm_step
from diffcourse.prior.train import kernel_batch

from _util import gen

F64 = torch.float64
SIGMAS = karras_sigmas(12, 0.01, 10.0).to(F64)
NOISE = GaussianNoise(0.02)


def D_x(x, s):
    """Exact denoiser of N(0.5, 0.1 I) images."""
    return 0.5 + (x - 0.5) * 0.1 / (0.1 + s.reshape(-1, 1, 1, 1) ** 2)


def D_k(k, s):
    """Exact denoiser of N(0.1, 0.04 I) kernel images: mostly positive, some pixels negative."""
    return 0.1 + (k - 0.1) * 0.04 / (0.04 + s.reshape(-1, 1, 1, 1) ** 2)


def problem(B=2, size=16, ks=8):
    """Images (B, 1, size, size), their kernel images (B, 1, ks, ks) and y = k ⊛ x + 0.02 n."""
    k_img = torch.zeros(B, 1, ks, ks, dtype=F64)
    for b in range(B):
        k = motion_kernel(ks - 1, gen(10 + b)).to(F64)
        k_img[b, 0, 1:, 1:] = k / k.max()
    x_true = torch.rand(B, 1, size, size, generator=gen(1), dtype=F64)
    y = Blur(normalize_kernel(k_img)).A(x_true) + 0.02 * torch.randn(B, 1, size, size, generator=gen(2), dtype=F64)
    x = 10 * torch.randn(B, 1, size, size, generator=gen(3), dtype=F64)
    k = 10 * torch.randn(B, 1, ks, ks, generator=gen(4), dtype=F64)
    return x, k, y, k_img


def test_normalize_kernel_is_a_kernel():
    k = torch.randn(3, 1, 5, 5, generator=gen(0), dtype=F64)
    k[2] = -k[2].abs()                                          # no positive pixel: the uniform kernel
    out = normalize_kernel(k)
    assert out.shape == (3, 5, 5) and bool((out >= 0).all())
    torch.testing.assert_close(out.sum((-2, -1)), torch.ones(3, dtype=F64))
    torch.testing.assert_close(out[2], torch.full((5, 5), 1 / 25, dtype=F64))
    torch.testing.assert_close(normalize_kernel(7 * k[:2].clamp_min(0)), out[:2])   # scale-free


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_frozen_kernel_chain_is_dps(lam):
    """A kernel denoiser that returns the true kernel image whatever its input freezes the kernel: the
    image chain is then DPS (code form, non-squared norm) with the true kernel; the penalty, which
    does not depend on x, changes nothing."""
    x, k, y, k_img = problem()
    frozen = lambda k_state, s: k_img                          # noqa: E731
    xb, kb = blind_dps(D_x, frozen, x, k, SIGMAS, y, noise=NOISE, zeta=0.3, lam=lam, generator=gen(5),
                       generator_k=gen(6))
    lik = Likelihood(Blur(normalize_kernel(k_img)), NOISE, y)
    xd = dps_code(D_x, x, SIGMAS, lik, zeta=0.3, generator=gen(5))
    torch.testing.assert_close(xb, xd, rtol=0, atol=1e-12)
    assert not torch.allclose(xd, dps_code(D_x, x, SIGMAS, lik, zeta=0.6, generator=gen(5)))


def test_code_rule_is_zeta_sqrt_alpha_bar():
    """One step from σ = 3 to 0: the code's rule is the constant rule with ζ/√(1 + σ²) = ζ √ᾱ."""
    x, k, y, _ = problem()
    sig = torch.tensor([3.0, 0.0], dtype=F64)
    xc, kc = blind_dps_code(D_x, D_k, x, k, sig, y, noise=NOISE, zeta=0.4, zeta_k=0.2, generator=gen(5))
    xp, kp = blind_dps(D_x, D_k, x, k, sig, y, noise=NOISE, zeta=0.4 / math.sqrt(10), zeta_k=0.2 / math.sqrt(10),
                       generator=gen(5))
    torch.testing.assert_close(xc, xp, rtol=0, atol=1e-12)
    torch.testing.assert_close(kc, kp, rtol=0, atol=1e-12)


def test_one_step_by_hand():
    """A step from σ to σ' = 0 lands on (x̂0, k̃0) minus c ζ ∇F, c = √((1 + σ²)(1 + σ'²))."""
    x, k, y, _ = problem()
    sigma = 2.0
    F = blind_objective(y, NOISE, lam=0.3)
    gx, gk, x0, k_image, _ = blind_grad(D_x, D_k, x, k, torch.full((2,), sigma, dtype=F64),
                                        torch.full((2,), sigma, dtype=F64), F)
    c = math.sqrt(1 + sigma ** 2)
    xs, ks = blind_dps(D_x, D_k, x, k, torch.tensor([sigma, 0.0], dtype=F64), y, noise=NOISE, zeta=0.2, zeta_k=0.1,
                       lam=0.3, generator=gen(0))
    torch.testing.assert_close(xs, ddpm_step(x, x0, sigma, 0.0, 0 * x) - c * 0.2 * gx)
    torch.testing.assert_close(ks, normalize_kernel(k_image - c * 0.1 * gk))


def test_kernel_estimate_is_a_kernel_after_every_step():
    x, k, y, _ = problem()
    seen = []

    def check(d):
        k0 = d["k0_hat"]
        seen.append(bool((k0 >= 0).all()) and torch.allclose(k0.sum((-2, -1)), torch.ones(2, dtype=F64)))
        seen.append(bool((d["k_image"] < 0).any()))            # the clip has work to do
    _, k_out = blind_dps(D_x, D_k, x, k, SIGMAS, y, noise=NOISE, lam=0.1, generator=gen(5), callback=check)
    assert all(seen[0::2]) and len(seen) == 2 * (len(SIGMAS) - 1) and any(seen[1::2])
    assert bool((k_out >= 0).all())
    torch.testing.assert_close(k_out.sum((-2, -1)), torch.ones(2, dtype=F64))


def test_l1_penalty_gradient_is_sign_through_the_jacobian():
    """For D_k(k, σ) = a k + b the penalty λ||k̃0||₁ adds λ a sign(a k + b) to ∇_k F (card: sign(k̂0)
    pulled back through the denoiser's Jacobian, here a I); nothing to ∇_x F."""
    x, k, y, _ = problem()
    a, b, lam = 0.3, 0.05, 0.7
    lin = lambda k_state, s: a * k_state + b                   # noqa: E731
    s = torch.full((2,), 1.0, dtype=F64)
    gx0, gk0, *_ = blind_grad(D_x, lin, x, k, s, s, blind_objective(y, NOISE, 0.0))
    gx1, gk1, _, k_image, val = blind_grad(D_x, lin, x, k, s, s, blind_objective(y, NOISE, lam))
    torch.testing.assert_close(gk1 - gk0, lam * a * torch.sign(a * k + b))
    torch.testing.assert_close(gx1, gx0)
    torch.testing.assert_close(val - blind_objective(y, NOISE, 0.0)(D_x(x, s), k_image), lam * kernel_l1(k_image))


def test_objective_gradient_against_finite_differences():
    """∇_x F and ∇_k F (through both denoisers, the blur and the normalisation) by central differences,
    where every kernel pixel is positive (the clip is smooth there)."""
    x, k, y, _ = problem(B=1, size=8, ks=4)
    k = 0.5 + 0.1 * k.abs()                                     # k̃0 > 0 everywhere
    s = torch.full((1,), 0.5, dtype=F64)
    F = blind_objective(y, NOISE, lam=0.2)
    gx, gk, *_ = blind_grad(D_x, D_k, x, k, s, s, F)
    value = lambda xx, kk: F(D_x(xx, s), D_k(kk, s)).item()     # noqa: E731
    h = 1e-6
    for idx in [(0, 0, 1, 2), (0, 0, 5, 7)]:
        e = torch.zeros_like(x)
        e[idx] = h
        assert abs((value(x + e, k) - value(x - e, k)) / (2 * h) - gx[idx].item()) < 1e-6
    for idx in [(0, 0, 0, 0), (0, 0, 2, 3)]:
        e = torch.zeros_like(k)
        e[idx] = h
        assert abs((value(x, k + e) - value(x, k - e)) / (2 * h) - gk[idx].item()) < 1e-6


def test_each_sample_ignores_its_neighbours():
    x, k, y, _ = problem()
    other_y = torch.cat([y[:1], 3 * y[1:]])
    out = blind_dps(D_x, D_k, x, k, SIGMAS, y, noise=NOISE, lam=0.1, generator=gen(5))
    alt = blind_dps(D_x, D_k, x, k, SIGMAS, other_y, noise=NOISE, lam=0.1, generator=gen(5))
    torch.testing.assert_close(out[0][0], alt[0][0])
    torch.testing.assert_close(out[1][0], alt[1][0])
    assert not torch.allclose(out[1][1], alt[1][1])


def test_errors_name_the_argument():
    x, k, y, _ = problem()
    with pytest.raises(ValueError, match="k must hold one kernel"):
        blind_dps(D_x, D_k, x, k[:1], SIGMAS, y, noise=NOISE)
    with pytest.raises(ValueError, match="y"):
        blind_dps(D_x, D_k, x, k, SIGMAS, y[..., :8], noise=NOISE)
    with pytest.raises(ValueError, match="sigmas"):
        blind_dps(D_x, D_k, x, k, SIGMAS[:-1], y, noise=NOISE)
    with pytest.raises(ValueError, match="zeta_k"):
        blind_dps(D_x, D_k, x, k, SIGMAS, y, noise=NOISE, zeta_k=-1.0)


# --- the shipped kernel prior ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def kernel_prior():
    return pretrained.load("kernel")


def test_kernel_prior_provenance(kernel_prior):
    meta = pretrained.info("kernel")
    assert "--preset kernel" in meta["command"] and meta["config"]["data"] == "kernels"
    assert meta["config"]["size"] == 16 and (pretrained.WEIGHTS_DIR / "kernel.pt").stat().st_size < 2e6


def test_kernel_prior_samples_are_kernels(kernel_prior):
    """20 DDPM steps from σ = 80: after the normalisation every sample is a kernel, and it looks like one:
    its mass sits inside the centre 15 × 15 support of the training kernels, and it is concentrated
    (a few pixels hold most of it, unlike the uniform kernel, whose 25 largest pixels hold 10 %)."""
    g = gen(0)
    sig = karras_sigmas(20)
    k = 80 * torch.randn(16, 1, 16, 16, generator=g)
    with torch.no_grad():
        for i in range(len(sig) - 1):
            k = ddpm_step(k, kernel_prior(k, sig[i].expand(16)), sig[i].item(), sig[i + 1].item(),
                          torch.randn(k.shape, generator=g))
    kn = normalize_kernel(k)
    assert bool((kn >= 0).all()) and torch.allclose(kn.sum((-2, -1)), torch.ones(16))
    assert kn[:, 1:, 1:].sum((-2, -1)).min() > 0.98
    top25 = kn.flatten(1).sort(1, descending=True).values[:, :25].sum(1)   # (16,)
    assert top25.median() > 0.7


def test_kernel_prior_denoises_held_out_kernels(kernel_prior):
    """Tweedie gains over the noisy kernel images on kernels from a seed training never drew."""
    k0 = kernel_batch(32, 16, gen(10_000))
    g = gen(1)
    for sigma, gain_db in ((0.05, 9.0), (0.2, 11.0)):
        noisy = k0 + sigma * torch.randn(k0.shape, generator=g)
        with torch.no_grad():
            den = kernel_prior(noisy, sigma)
        mse_noisy, mse_den = (noisy - k0).square().mean(), (den - k0).square().mean()
        assert 10 * torch.log10(mse_noisy / mse_den) > gain_db
