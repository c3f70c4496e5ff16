"""Checks for lesson 12 (blind inverse problems): the kernel normalisation of BlindDPS and one update of
its kernel chain.

Conventions: kernel images k̃ (B, 1, s, s) (kernels stored as k / max k, background 0); kernels
(B, s, s), non-negative, summing to one; images (B, 1, H, W); circular blur
:class:`diffcourse.physics.blur.Blur`; VE states k = k0 + σ z.
Normalisation (BlindDPS, Chung, Kim, Kim & Ye, CVPR 2023, with a clip): k̂ = max(k̃, 0)/Σ max(k̃, 0) per
sample, the uniform kernel when no pixel is positive.
Kernel update (the same paper, VE form): k' = DDPM(k, k̃0; σ → σ', z) - c ζ_k ∇_k F,
F = ||y - k̂0 ⊛ x̂0||₂ + λ ||k̃0||₁ per sample, k̃0 = D_k(k, σ), k̂0 its normalisation,
c = √((1 + σ²)(1 + σ'²)), DDPM(k, k̃0) = r k + (1 - r) k̃0 + σ' √(1 - r) z with r = σ'²/σ².
"""
from __future__ import annotations

import math

import torch

from ..physics.blur import Blur
from ._core import close, diagnose, exercise

__all__ = ["check_normalize_kernel", "check_kernel_update"]

F64 = torch.float64
_TOL = {"rtol": 1e-7, "atol": 1e-10}


# ---------------------------------------------------------------- exercise 1: the kernel normalisation
def _normalize_kernel(k_image):
    w = k_image[:, 0].clamp_min(0)                                   # (B, s, s)
    total = w.sum((-2, -1), keepdim=True)
    uniform = torch.full_like(w, 1.0 / w[0].numel())
    return torch.where(total > 0, w / torch.where(total > 0, total, torch.ones_like(total)), uniform)


def _no_clip(k_image):
    w = k_image[:, 0]
    return w / w.sum((-2, -1), keepdim=True)


def _clip_after(k_image):                                            # divide first, then clip: no unit sum
    w = k_image[:, 0]
    return (w / w.sum((-2, -1), keepdim=True)).clamp_min(0)


def _abs_not_clip(k_image):
    w = k_image[:, 0].abs()
    return w / w.sum((-2, -1), keepdim=True)


def _by_max(k_image):                                                # the training scale, not a kernel
    w = k_image[:, 0].clamp_min(0)
    return w / w.amax((-2, -1), keepdim=True)


def _batch_sum(k_image):                                             # one sum over the whole batch
    w = k_image[:, 0].clamp_min(0)
    return w / w.sum()


def _keep_channel(k_image):
    w = k_image.clamp_min(0)
    return w / w.sum((-2, -1), keepdim=True)


_NORMALIZE_MISTAKES = {
    _no_clip: "clip the negative pixels first (max(k̃, 0)): a kernel is non-negative, and dividing by a sum "
              "that contains negative pixels can even make it larger than one",
    _clip_after: "clip before you divide: clipping after the division removes the negative pixels but then "
                 "the kernel no longer sums to one",
    _abs_not_clip: "|k̃| turns a negative lobe into a positive one; the kernel keeps only the positive part, "
                   "max(k̃, 0)",
    _by_max: "dividing by the maximum gives the kernel image (the prior's training scale, peak 1); a kernel "
             "sums to one: divide by the sum",
    _batch_sum: "each kernel is normalised on its own: sum over its s × s pixels (dims -2, -1), not over "
                "the whole batch (the official code's batch-wide sum only works for a batch of one)",
    _keep_channel: "return kernels of shape (B, s, s): drop the channel axis of the (B, 1, s, s) image",
}


def _kernel_images(seed: int, B: int, s: int, dead: bool = False) -> torch.Tensor:
    """Kernel images with negative pixels (as a denoiser's output has); with ``dead``, the last one has
    no positive pixel at all."""
    g = torch.Generator().manual_seed(seed)
    k = torch.rand(B, 1, s, s, generator=g, dtype=F64) ** 3 - 0.1 * torch.rand(B, 1, s, s, generator=g, dtype=F64)
    if dead:
        k[-1] = -k[-1].abs() - 0.01
    return k


@exercise(_normalize_kernel, *_NORMALIZE_MISTAKES)
def check_normalize_kernel(fn):
    """fn(k_image (B, 1, s, s)) = max(k̃, 0)/Σ max(k̃, 0) per sample (B, s, s); uniform if nothing is positive."""
    for seed, B, s, dead in ((0, 3, 5, False), (1, 2, 8, False), (2, 4, 4, True)):
        k = _kernel_images(seed, B, s, dead)
        out = fn(k.clone())
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        expected = _normalize_kernel(k)
        if dead and out.shape == expected.shape and not bool(torch.isfinite(out[-1]).all()):
            raise AssertionError("your kernel has NaN or Inf: the last image has no positive pixel, so the "
                                 "sum is 0; give the uniform kernel 1/(s·s) there (torch.where on the sum)")
        if not close(out, expected, **_TOL):
            raise AssertionError(f"{B} kernel images {s}×{s}: "
                                 + diagnose(out, expected, (k,), _NORMALIZE_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 2: one kernel update
def _toy_kernel_denoiser(k, sigma):
    """A smooth, nonlinear stand-in for D_k (its Jacobian is not a multiple of I)."""
    a = 1 / (1 + sigma ** 2)
    return a * (k + 0.3 * torch.tanh(k.roll(1, -1))) + (1 - a) * 0.1


def _objective(k_image, x0_hat, y, lam, norm, kernel):
    r = y - Blur(kernel(k_image)).A(x0_hat)
    return norm(r) + lam * k_image.abs().flatten(1).sum(1)


def _l2(r):
    return r.flatten(1).norm(dim=1)


def _update(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z, *, norm=_l2, kernel=_normalize_kernel,
            wrt_image=False, factor=True, noise=True, penalty_on_kernel=False):
    with torch.enable_grad():
        kg = k.detach().requires_grad_(True)
        k_image = D_k(kg, sigma)
        target = k_image.detach().requires_grad_(True) if wrt_image else k_image
        if penalty_on_kernel:
            F = norm(y - Blur(kernel(target)).A(x0_hat)) + lam * kernel(target).abs().flatten(1).sum(1)
        else:
            F = _objective(target, x0_hat, y, lam, norm, kernel)
        (g,) = torch.autograd.grad(F.sum(), target if wrt_image else kg)
    r = (sigma_next / sigma) ** 2
    k_next = r * k + (1 - r) * k_image.detach() + (sigma_next * math.sqrt(1 - r) * z if noise else 0)
    c = math.sqrt((1 + sigma ** 2) * (1 + sigma_next ** 2)) if factor else 1.0
    return k_next - c * zeta_k * g


def _kernel_update(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z):
    return _update(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z)


def _squared(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z):
    return _update(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z, norm=lambda r: r.square().flatten(1).sum(1))


def _batch_norm(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z):
    return _update(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z,
                   norm=lambda r: r.norm().expand(r.shape[0]) / r.shape[0])


def _no_factor(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z):
    return _update(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z, factor=False)


def _wrt_image(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z):
    return _update(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z, wrt_image=True)


def _unnormalised(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z):
    return _update(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z, kernel=lambda ki: ki[:, 0])


def _penalty_on_kernel(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z):
    return _update(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z, penalty_on_kernel=True)


def _no_noise(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z):
    return _update(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z, noise=False)


def _ascent(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z):
    return _update(D_k, k, sigma, sigma_next, x0_hat, y, -zeta_k, lam, z)


_UPDATE_MISTAKES = {
    _squared: "BlindDPS descends the norm ||y - k̂0 ⊛ x̂0||₂ itself, not its square (the official code's "
              "non-squared residual)",
    _batch_norm: "one norm per sample: flatten(1).norm(dim=1), not one norm over the whole batch",
    _no_factor: "the step is taken in the paper's VP coordinates: in VE coordinates it is multiplied by "
                "c = √((1 + σ²)(1 + σ'²))",
    _wrt_image: "that is the gradient with respect to the kernel image k̃0; the chain moves k, so "
                "differentiate through the denoiser: ∇_k F = Jᵀ ∇_k̃0 F (autograd from a k that requires grad)",
    _unnormalised: "blur with the kernel k̂0 = normalize_kernel(k̃0), not with the kernel image k̃0 (peak 1, "
                   "sum ≫ 1)",
    _penalty_on_kernel: "the ℓ1 penalty is on the kernel image k̃0: on the normalised kernel it is always 1 "
                        "(non-negative, unit sum) and has no gradient",
    _no_noise: "the DDPM step adds σ' √(1 - r) z with r = σ'²/σ² (use the z you are given)",
    _ascent: "wrong sign: subtract c ζ_k ∇_k F, a step downhill on the misfit",
}


def _update_case(seed: int, B: int, n: int, s: int):
    g = torch.Generator().manual_seed(seed)
    k_true = torch.rand(B, s, s, generator=g, dtype=F64) ** 4
    k_true = k_true / k_true.sum((-2, -1), keepdim=True)
    x = torch.rand(B, 1, n, n, generator=g, dtype=F64)
    y = Blur(k_true).A(x) + 0.02 * torch.randn(B, 1, n, n, generator=g, dtype=F64)
    x0_hat = x + 0.05 * torch.randn(B, 1, n, n, generator=g, dtype=F64)
    k = 0.3 + 0.5 * torch.randn(B, 1, s, s, generator=g, dtype=F64)
    z = torch.randn(B, 1, s, s, generator=g, dtype=F64)
    return k, x0_hat, y, z


_UPDATE_CASES = [(30, 2, 10, 4, 1.5, 0.8, 0.3, 0.2), (31, 1, 12, 6, 0.5, 0.1, 0.1, 0.05),
                 (32, 3, 8, 4, 4.0, 2.0, 0.05, 0.0)]                  # seed, B, n, s, σ, σ', ζ_k, λ


@exercise(_kernel_update, *_UPDATE_MISTAKES)
def check_kernel_update(fn):
    """fn(D_k, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z) = DDPM(k, k̃0) - c ζ_k ∇_k F, shaped like k."""
    for seed, B, n, s, sigma, sigma_next, zeta_k, lam in _UPDATE_CASES:
        k, x0_hat, y, z = _update_case(seed, B, n, s)
        args = (_toy_kernel_denoiser, k, sigma, sigma_next, x0_hat, y, zeta_k, lam, z)
        out = fn(_toy_kernel_denoiser, k.clone(), sigma, sigma_next, x0_hat.clone(), y.clone(), zeta_k, lam,
                 z.clone())
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == k.shape, f"the new state has the shape of k {tuple(k.shape)}, got {tuple(out.shape)}"
        expected = _kernel_update(*args)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"σ = {sigma} → {sigma_next}, ζ_k = {zeta_k}, λ = {lam}: "
                                 + diagnose(out, expected, args, _UPDATE_MISTAKES, **_TOL))
