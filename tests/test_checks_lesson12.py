"""Lesson 12's exercise checks: the references are the library's (the kernel normalisation of
diffcourse.posterior.solvers.blind, one kernel step of blind_dps), correct answers written differently
pass, and typical mistakes fail with a message that names them.

(tests/test_checks.py already runs every check on its reference, the stub and its listed wrong answers.)
"""
from __future__ import annotations

import math

import pytest
import torch
from _util import verdict

from diffcourse.checks import lesson12 as L
from diffcourse.physics.blur import Blur
from diffcourse.physics.noise import GaussianNoise
from diffcourse.posterior.solvers import blind_dps
from diffcourse.posterior.solvers.blind import normalize_kernel

F64 = torch.float64


# ---------------------------------------------------------------- the references are the library's
def test_normalize_reference_is_the_library():
    k = L._kernel_images(5, 4, 6, dead=True)
    torch.testing.assert_close(L.check_normalize_kernel.reference(k), normalize_kernel(k), rtol=0, atol=0)


@pytest.mark.parametrize("seed, B, n, s, sigma, sigma_next, zeta_k, lam", L._UPDATE_CASES)
def test_kernel_update_reference_is_one_step_of_blind_dps(seed, B, n, s, sigma, sigma_next, zeta_k, lam):
    """blind_dps with an image denoiser that returns x̂0 whatever its input and ζ = 0: its kernel state
    after the first step is the reference's update, with the same noise z."""
    k, x0_hat, y, _ = L._update_case(seed, B, n, s)
    D_k = lambda kk, sig: L._toy_kernel_denoiser(kk, float(sig[0]))      # noqa: E731
    seen = {}
    sigmas = torch.tensor([sigma, sigma_next, 0.0], dtype=F64)
    blind_dps(lambda x, sig: x0_hat, D_k, torch.zeros_like(x0_hat), k, sigmas, y, noise=GaussianNoise(0.02), zeta=0.0,
              zeta_k=zeta_k, lam=lam, generator=torch.Generator().manual_seed(1),
              generator_k=torch.Generator().manual_seed(2), callback=lambda d: seen.setdefault(d["i"], d["k"]))
    z = torch.randn(k.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
    ref = L.check_kernel_update.reference(L._toy_kernel_denoiser, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z)
    torch.testing.assert_close(seen[1], ref, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- correct answers written differently
def test_normalize_accepts_relu_and_nan_to_num(capsys):
    def mine(k_image):
        w = torch.relu(k_image.squeeze(1))
        out = w / w.sum(dim=(1, 2), keepdim=True)
        bad = ~torch.isfinite(out).all(dim=(1, 2))
        out[bad] = 1.0 / (w.shape[-1] * w.shape[-2])
        return out
    ok, out = verdict(L.check_normalize_kernel, mine, capsys)
    assert ok, out


def test_kernel_update_accepts_the_squared_norm_route_and_a_library_blur(capsys):
    """∇||r|| = ∇||r||² / (2||r||): an answer through the squared norm is the same update."""
    def mine(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z):
        with torch.enable_grad():
            kg = k.clone().requires_grad_()
            img = D_k(kg, sigma)
            r2 = (y - Blur(normalize_kernel(img)).A(x0_hat)).pow(2).sum(dim=(1, 2, 3))
            F = r2 / (2 * r2.detach().sqrt()) + lam * img.abs().sum(dim=(1, 2, 3))
            g = torch.autograd.grad(F.sum(), kg)[0]
        ratio = sigma_next ** 2 / sigma ** 2
        step = ratio * k + (1 - ratio) * img.detach() + sigma_next * (1 - ratio) ** 0.5 * z
        return step - zeta_k * ((1 + sigma ** 2) * (1 + sigma_next ** 2)) ** 0.5 * g
    ok, out = verdict(L.check_kernel_update, mine, capsys)
    assert ok, out


# ---------------------------------------------------------------- typical mistakes, pointed messages
@pytest.mark.parametrize("fn, words", [
    (L._no_clip, "clip the negative pixels"),
    (L._by_max, "divide by the sum"),
    (L._batch_sum, "not over the whole batch"),
    (L._keep_channel, "(B, s, s)"),
    (lambda k: k[:, 0].clamp_min(0) / k[:, 0].clamp_min(0).sum((-2, -1), keepdim=True), "uniform kernel"),
    (lambda k: 2 * L._normalize_kernel(k), "2 times the expected value"),
])
def test_normalize_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_normalize_kernel, fn, capsys)
    assert not ok and words in out, out


def _update_with(**change):
    def fn(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z):
        return L._update(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z, **change)
    return fn


@pytest.mark.parametrize("fn, words", [
    (L._squared, "not its square"),
    (L._no_factor, "√((1 + σ²)(1 + σ'²))"),
    (L._wrt_image, "through the denoiser"),
    (L._unnormalised, "not with the kernel image"),
    (L._penalty_on_kernel, "on the kernel image"),
    (L._no_noise, "σ' √(1 - r) z"),
    (L._ascent, "wrong sign"),
    (_update_with(norm=lambda r: r.abs().flatten(1).sum(1)), "max error"),          # ℓ1 misfit: not listed
    (lambda D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z: k[:, 0], "shape of k"),
])
def test_kernel_update_mistakes(fn, words, capsys):
    ok, out = verdict(L.check_kernel_update, fn, capsys)
    assert not ok and words in out, out


def test_penalty_on_the_normalised_kernel_has_no_gradient():
    """Why the penalty sits on the kernel image: ||k̂0||₁ = 1 for every normalised kernel."""
    k = L._kernel_images(7, 2, 5).requires_grad_(True)
    (g,) = torch.autograd.grad(normalize_kernel(k).abs().sum(), k)
    assert g.abs().max() < 1e-12 and math.isclose(normalize_kernel(k).abs().sum().item(), 2.0)
