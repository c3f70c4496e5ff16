"""Checks for lesson 08 (MCG and geometry): the normal fraction of a gradient, one MCG inpainting step.

Conventions: a state or gradient is (B, ...) with d values per sample; a tangent space is given by a
basis (d, k) whose columns span it (not necessarily orthonormal). The MCG inpainting step follows the
official inpainting code of Chung, Sim, Ryu & Ye (NeurIPS 2022): gradient step, then replacement of
the measured pixels by the measurement noised to the new level σ'.
"""
from __future__ import annotations

import torch

from ._core import close, diagnose, exercise

__all__ = ["check_normal_fraction", "check_mcg_inpaint_step"]

F64 = torch.float64
_TOL = {"rtol": 1e-9, "atol": 1e-9}           # float64 answers: rounding slack only


# ---------------------------------------------------------------- exercise 1: normal fraction
def _tangent_part(g: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    Q, _ = torch.linalg.qr(basis)                                     # orthonormal basis of span(basis)
    return g @ Q @ Q.T


def _normal_fraction(g, basis):
    gf = g.flatten(1)                                                 # (B, d)
    return (gf - _tangent_part(gf, basis)).norm(dim=1) / gf.norm(dim=1)


def _not_orthonormalised(g, basis):  # B Bᵀ is a projector only for orthonormal columns
    gf = g.flatten(1)
    return (gf - gf @ basis @ basis.T).norm(dim=1) / gf.norm(dim=1)


def _tangent_fraction(g, basis):
    gf = g.flatten(1)
    return _tangent_part(gf, basis).norm(dim=1) / gf.norm(dim=1)


def _not_relative(g, basis):
    gf = g.flatten(1)
    return (gf - _tangent_part(gf, basis)).norm(dim=1)


def _squared(g, basis):
    return _normal_fraction(g, basis) ** 2


def _whole_batch(g, basis):  # one norm over the batch: each sample's answer depends on the others
    gf = g.flatten(1)
    ratio = (gf - _tangent_part(gf, basis)).norm() / gf.norm()
    return ratio.expand(gf.shape[0]).clone()


_FRACTION_MISTAKES = {
    _not_orthonormalised: "the columns of the basis are not orthonormal: the projector onto their span is "
                          "Q Qᵀ with Q from a QR decomposition of the basis (or B (BᵀB)⁻¹ Bᵀ), not B Bᵀ",
    _tangent_fraction: "that is the tangent part ||Π g||/||g||; the normal part is g - Π g",
    _not_relative: "divide by ||g||: the fraction must not depend on the length of the gradient",
    _squared: "return the ratio of norms, not of squared norms",
    _whole_batch: "one value per sample: take the norms over each sample's d values (.flatten(1)), not the batch",
}


def _fraction_cases():
    g = torch.Generator().manual_seed(8)
    cases = []
    for d, k, B, shape in [(12, 3, 4, (4, 12)), (16, 5, 3, (3, 1, 4, 4)), (30, 2, 5, (5, 30))]:
        basis = torch.randn(d, k, generator=g, dtype=F64) * torch.linspace(0.5, 2.0, k, dtype=F64)
        Q, _ = torch.linalg.qr(basis)
        tangent = torch.randn(B, k, generator=g, dtype=F64) @ Q.T      # (B, d) in the span
        normal = torch.randn(B, d, generator=g, dtype=F64)
        normal = normal - normal @ Q @ Q.T
        weights = torch.linspace(0.0, 2.0, B, dtype=F64)[:, None]      # first sample: exactly tangent
        gs = (3.0 * tangent + weights * normal).reshape(shape)
        cases.append((gs, basis))
    Q, _ = torch.linalg.qr(torch.randn(10, 4, generator=g, dtype=F64))  # an orthonormal basis too
    cases.append((torch.randn(3, 10, generator=g, dtype=F64), Q))
    return cases


@exercise(_normal_fraction, *_FRACTION_MISTAKES)
def check_normal_fraction(fn):
    """fn(g, basis) = ||g - Π g|| / ||g|| per sample, Π the orthogonal projector onto span(basis)."""
    for g, basis in _fraction_cases():
        out = fn(g.clone(), basis.clone())
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == (g.shape[0],), f"return one value per sample, shape ({g.shape[0]},), got {tuple(out.shape)}"
        expected = _normal_fraction(g, basis)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"g of shape {tuple(g.shape)}, basis {tuple(basis.shape)}: "
                                 + diagnose(out, expected, (g, basis), _FRACTION_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 2: one MCG inpainting step
def _mcg_inpaint_step(x_next, grad, y, mask, sigma_next, z, alpha):
    y_noisy = y + sigma_next * mask * z                               # the measurement at level σ'
    return (1 - mask) * (x_next - alpha * grad) + mask * y_noisy


def _gradient_ascent(x_next, grad, y, mask, sigma_next, z, alpha):
    return (1 - mask) * (x_next + alpha * grad) + mask * (y + sigma_next * mask * z)


def _clean_measurement(x_next, grad, y, mask, sigma_next, z, alpha):  # score-SDE's / POCS's replacement
    return (1 - mask) * (x_next - alpha * grad) + mask * y


def _mask_swapped(x_next, grad, y, mask, sigma_next, z, alpha):
    return mask * (x_next - alpha * grad) + (1 - mask) * (y + sigma_next * mask * z)


def _variance_as_std(x_next, grad, y, mask, sigma_next, z, alpha):
    return (1 - mask) * (x_next - alpha * grad) + mask * (y + sigma_next ** 2 * mask * z)


def _no_replacement(x_next, grad, y, mask, sigma_next, z, alpha):  # DPS-like: gradient only
    return x_next - alpha * (1 - mask) * grad


def _gradient_after_replacement(x_next, grad, y, mask, sigma_next, z, alpha):
    return (1 - mask) * x_next + mask * (y + sigma_next * mask * z) - alpha * grad


_STEP_MISTAKES = {
    _gradient_ascent: "grad is the gradient of the misfit ||y - A x̂0||²: step against it, x' - α grad",
    _clean_measurement: "replace the measured pixels by the measurement noised to the new level, y + σ' P z "
                        "(the state is noisy at σ'; a clean y steps off the noisy manifold)",
    _mask_swapped: "the mask is 1 on measured pixels: those take the measurement, the others keep x' - α grad",
    _variance_as_std: "the noise added to y has standard deviation σ', not σ'²",
    _no_replacement: "after the gradient step, project: the measured pixels become y + σ' P z",
    _gradient_after_replacement: "take the gradient step first, then replace: the measured pixels must equal the "
                                 "noisy measurement exactly",
}


@exercise(_mcg_inpaint_step, *_STEP_MISTAKES)
def check_mcg_inpaint_step(fn):
    """fn(x_next, grad, y, mask, sigma_next, z, alpha) = (1-P)(x' - α grad) + P (y + σ' P z)."""
    g = torch.Generator().manual_seed(9)
    for B, H, sigma_next, alpha in [(3, 6, 0.7, 0.5), (2, 8, 0.05, 2.0), (1, 5, 0.0, 1.0), (4, 4, 3.0, 0.0)]:
        mask = (torch.rand(H, H, generator=g) < 0.6).to(F64)
        x_next, grad, z = (torch.randn(B, 1, H, H, generator=g, dtype=F64) for _ in range(3))
        y = mask * torch.randn(1, 1, H, H, generator=g, dtype=F64)        # one masked measurement, shared
        args = (x_next, grad, y, mask, sigma_next, z, alpha)
        out = fn(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == x_next.shape, f"the new state has the shape of x_next {tuple(x_next.shape)}, got " \
                                          f"{tuple(out.shape)}"
        expected = _mcg_inpaint_step(*args)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"σ' = {sigma_next}, α = {alpha}: "
                                 + diagnose(out, expected, args, _STEP_MISTAKES, **_TOL))
