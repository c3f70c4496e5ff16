"""BlindDPS: blind deblurring by two reverse diffusions, one over images and one over blur kernels.

Chung, Kim, Kim & Ye (CVPR 2023) put independent priors p(x0) p(k0) on the image and on the kernel and
run both reverse chains side by side. They meet only in the likelihood y = k0 ∗ x0 + n, through the
DPS approximation p(y | x_σ, k_σ) ≈ p(y | x̂0(x_σ), k̂0(k_σ)) (Chung et al., ICLR 2023, Eq. 16). Each
step is the DDPM step of both chains followed by one gradient step of

    F(x_σ, k_σ) = ||y - k̂0 ∗ x̂0||₂ + λ ||k̃0||₁,     k̂0 = max(k̃0, 0) / Σ max(k̃0, 0),

through both denoisers (the non-squared norm of the official code), with k̃0 = D_k(k_σ, σ) the kernel
*image* (kernels stored as k / max k in [0, 1]) and k̂0 the kernel it stands for: non-negative, summing
to one. The paper maps its [-1, 1] kernel image by (k̃0 + 1)/2 and divides by the sum without a clip;
here the clip makes k̂0 a kernel after every step. On such a kernel ||k̂0||₁ = 1 whatever it is, so the
sparsity penalty acts on the image k̃0, whose background is 0 (on the paper's unclipped k̂0 the same
norm is 1 + 2 × its negative mass: it only penalises negative lobes).

Two step-size rules (VP coordinates, carried to VE by the factor √((1+σ²)(1+σ'²)) of :mod:`.guided`):

* :func:`blind_dps` — the paper's constant scale ζ_t = ζ;
* :func:`blind_dps_code` — the official code's ζ_t = ζ √ᾱ_t = ζ/√(1 + σ²), growing along the chain
  (its comment: more stable than the constant scale reported in the paper).

Defaults: the official code takes ζ = 1 on [-1, 1] images and 64-px kernels (0.5 for our [0, 1] range);
our 64-px images, 16-px kernels and fewer steps (100, not 1000) move the optimum, so the defaults were
tuned on two phantoms of a separate seed, each blurred by a motion and a Gaussian kernel, 100 steps:
constant rule ζ ∈ {0.5, 1, 1.5, 2} × ζ_k ∈ {0.3, 0.5, 1, 3}, code rule ζ ∈ {1, 2, 3, 5} × ζ_k ∈ {1, 3}.
The penalty λ ∈ {0.003, 0.01} did not help (0.01 broke Gaussian kernel estimates, whose images are wide):
λ = 0 by default. ``benchmarks/blind_table.py`` prints the results on held-out phantoms.

>>> from diffcourse.physics.noise import GaussianNoise
>>> from diffcourse.prior.processes import karras_sigmas
>>> D = lambda u, s: 0.2 + (u - 0.2) / (1 + s.reshape(-1, 1, 1, 1) ** 2)   # the exact denoiser of N(0.2, I)
>>> g = torch.Generator().manual_seed(0)
>>> y = torch.rand(2, 1, 16, 16, generator=g)
>>> x, k = blind_dps(D, D, 5 * torch.randn(2, 1, 16, 16, generator=g), 5 * torch.randn(2, 1, 8, 8, generator=g),
...                  karras_sigmas(5, 0.01, 5.0), y, noise=GaussianNoise(0.02), generator=g)
>>> x.shape, k.shape, bool((k >= 0).all()), torch.allclose(k.sum((-2, -1)), torch.ones(2))
(torch.Size([2, 1, 16, 16]), torch.Size([2, 8, 8]), True, True)
"""
from __future__ import annotations

import math

import torch

from ..._validate import check_nonnegative, check_tensor
from ...physics.blur import Blur
from ...physics.likelihood import Likelihood
from ...prior.samplers.loop import guard, noise as draw, prepare, report, steps
from ...prior.samplers.steps import ddpm_step
from ..guidance import dps_misfit
from ._common import per_sample, setup
from .guided import _ve_factor

__all__ = ["normalize_kernel", "kernel_l1", "blind_objective", "blind_grad", "blind_dps", "blind_dps_code"]

_HINT = "lower zeta or zeta_k (the guidance scales) or use more steps"


def normalize_kernel(k_image: torch.Tensor) -> torch.Tensor:
    """Kernel image (B, 1, s, s) -> kernel (B, s, s): max(k̃, 0)/Σ max(k̃, 0) (BlindDPS, CVPR 2023, with a clip).

    Non-negative and summing to one; an image with no positive pixel gives the uniform kernel.

    >>> normalize_kernel(torch.tensor([[[[2.0, -1.0], [0.0, 2.0]]]]))
    tensor([[[0.5000, 0.0000],
             [0.0000, 0.5000]]])
    """
    check_tensor(k_image, "k_image", ndim=4)
    w = k_image[:, 0].clamp_min(0)                                  # (B, s, s)
    total = w.sum((-2, -1), keepdim=True)
    uniform = torch.full_like(w, 1.0 / w[0].numel())
    return torch.where(total > 0, w / torch.where(total > 0, total, torch.ones_like(total)), uniform)


def kernel_l1(k_image: torch.Tensor) -> torch.Tensor:
    """Sparsity penalty ||k̃||₁ of kernel images (B, 1, s, s) -> (B,) (BlindDPS, ℓ1 regulariser)."""
    return k_image.abs().flatten(1).sum(1)


def blind_objective(y: torch.Tensor, noise, lam: float = 0.0):
    """F(x̂0, k̃0) = ||y - k̂0 ∗ x̂0|| + λ ||k̃0||₁ per sample, (B, C, H, W), (B, 1, s, s) -> (B,).

    The misfit is the square root of DPS's (:func:`diffcourse.posterior.guidance.dps_misfit`): the
    Euclidean norm for Gaussian noise, the shot-noise weighted one for Poisson noise. The blur is
    circular (:class:`diffcourse.physics.blur.Blur`), with k̂0 = :func:`normalize_kernel` (k̃0).
    """
    lam = check_nonnegative(lam, "lam")

    def F(x0_hat, k_image):
        k0_hat = normalize_kernel(k_image)
        misfit = dps_misfit(Likelihood(Blur(k0_hat), noise, y))(x0_hat)
        value = misfit.clamp_min(torch.finfo(misfit.dtype).tiny).sqrt()
        return value + lam * kernel_l1(k_image) if lam else value
    return F


def blind_grad(D_x, D_k, x: torch.Tensor, k: torch.Tensor, sigma_x, sigma_k, F):
    """(∇_x F, ∇_k F, x̂0, k̃0, F) with x̂0 = D_x(x, σ), k̃0 = D_k(k, σ): one forward and one backward
    pass through each denoiser (a denoiser that ignores its input gets a zero gradient)."""
    with torch.enable_grad():
        xg, kg = x.detach().requires_grad_(True), k.detach().requires_grad_(True)
        x0_hat, k_image = D_x(xg, sigma_x), D_k(kg, sigma_k)
        value = F(x0_hat, k_image)
        gx, gk = torch.autograd.grad(value.sum(), (xg, kg), allow_unused=True)
    gx = torch.zeros_like(x) if gx is None else gx
    gk = torch.zeros_like(k) if gk is None else gk
    return gx, gk, x0_hat.detach(), k_image.detach(), value.detach()


def _blind_loop(D_x, D_k, x, k, sigmas, y, noise, zeta_t, zeta_k_t, lam, x0_clip, generator, generator_k,
                callback, progress, name):
    """Both DDPM steps, then x -= c ζ_t ∇_x F and k -= c ζ_k,t ∇_k F, with c the VP -> VE factor."""
    check_tensor(k, "k", ndim=4)
    if k.shape[0] != x.shape[0]:
        raise ValueError(f"k must hold one kernel image per image of x, got {k.shape[0]} and {x.shape[0]}")
    first = torch.full((1, k.shape[-2], k.shape[-1]), 1.0 / k[0].numel(), dtype=x.dtype, device=x.device)
    levels, sigma_b, _ = setup(D_x, x, sigmas, Likelihood(Blur(first), noise, y), generator)
    _, sigma_k = prepare(D_k, k, sigmas, generator_k)
    F = blind_objective(y, noise, lam)
    for i in steps(len(levels) - 1, progress, name):
        sigma, sigma_next = levels[i], levels[i + 1]
        gx, gk, x0_hat, k_image, _ = blind_grad(D_x, D_k, x, k, sigma_b[i], sigma_k[i], F)
        report(callback, i, x, sigma, sigma_next, x0_hat, k=k, k_image=k_image, k0_hat=normalize_kernel(k_image))
        x0_step = x0_hat if x0_clip is None else x0_hat.clamp(*x0_clip)
        x_next = ddpm_step(x, x0_step, sigma, sigma_next, draw(x, generator))
        k_next = ddpm_step(k, k_image, sigma, sigma_next, draw(k, generator_k))
        c = _ve_factor(sigma, sigma_next)
        x = guard(x_next - c * zeta_t(sigma) * gx, name, i, sigma, _HINT)
        k = guard(k_next - c * zeta_k_t(sigma) * gk, name, i, sigma, _HINT)
    return x, normalize_kernel(k)


def blind_dps(D_x, D_k, x: torch.Tensor, k: torch.Tensor, sigmas: torch.Tensor, y: torch.Tensor, *, noise,
              zeta: float = 1.5, zeta_k: float = 1.0, lam: float = 0.0, x0_clip=None,
              generator: torch.Generator | None = None, generator_k: torch.Generator | None = None,
              callback=None, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """BlindDPS with the paper's constant step (Chung, Kim, Kim & Ye, CVPR 2023): both chains take a DDPM
    step, then u -= ζ_u ∇_u [||y - k̂0 ∗ x̂0|| + λ ||k̃0||₁] for u = x (ζ) and u = k (ζ_k).

    ``D_x(x, sigma)`` the image denoiser, ``D_k(k, sigma)`` the kernel-image denoiser (e.g.
    ``pretrained.load("kernel")``); x (B, C, H, W) and k (B, 1, s, s) the starts (σ_max z each);
    ``sigmas`` shared by both chains, decreasing to 0; y (B, C, H, W) a circular blur of the images plus
    noise from ``noise`` (e.g. ``GaussianNoise(0.02)``). ``generator`` draws the image chain's noise,
    ``generator_k`` (default: ``generator``) the kernel chain's. The callback's dict has, besides the
    usual keys, "k" (the kernel state), "k_image" (k̃0) and "k0_hat" (k̂0, (B, s, s)). Returns
    (x (B, C, H, W), kernels (B, s, s), non-negative, each summing to one). With a ``D_k`` that returns
    the true kernel image whatever its input (and a ``generator_k`` of its own), the image chain is
    :func:`dps_code` with that kernel. Blind deblurring cannot see a shift: x rolled by d and the kernel
    by -d give the same y, and the result may be so shifted.
    """
    zeta, zeta_k = check_nonnegative(zeta, "zeta"), check_nonnegative(zeta_k, "zeta_k")
    return _blind_loop(D_x, D_k, x, k, sigmas, y, noise, lambda s: zeta, lambda s: zeta_k, lam, x0_clip,
                       generator, generator if generator_k is None else generator_k, callback, progress,
                       "blind_dps")


def blind_dps_code(D_x, D_k, x: torch.Tensor, k: torch.Tensor, sigmas: torch.Tensor, y: torch.Tensor, *,
                   noise, zeta: float = 3.0, zeta_k: float = 1.0, lam: float = 0.0, x0_clip=None,
                   generator: torch.Generator | None = None, generator_k: torch.Generator | None = None,
                   callback=None, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """BlindDPS with the official code's step ζ_t = ζ √ᾱ_t = ζ/√(1 + σ²) (BlindDPS code, "gradually
    increasing scale"; its ζ = 1 on [-1, 1] images is 0.5 here, our tuned defaults are larger). In VE
    coordinates the step is ζ √(1 + σ'²) ∇F. Arguments as :func:`blind_dps`.
    """
    zeta, zeta_k = check_nonnegative(zeta, "zeta"), check_nonnegative(zeta_k, "zeta_k")
    return _blind_loop(D_x, D_k, x, k, sigmas, y, noise, lambda s: zeta / math.sqrt(1 + s ** 2),
                       lambda s: zeta_k / math.sqrt(1 + s ** 2), lam, x0_clip, generator,
                       generator if generator_k is None else generator_k, callback, progress, "blind_dps_code")
