"""Checks for lesson 13 (patch priors): the positional channels of the patches of a shifted grid, the
whole-image score assembled from patch scores, and one step of the PaDIS solver (Hu, Song, Xu, Shen &
Fessler, NeurIPS 2024; the official code's ``dps`` routine).

Conventions (:mod:`diffcourse.prior.patches`): images (B, C, N, N); patches of side P; K = 1 + N // P
patches per side; the image is zero-padded by M = K P - N on every side into a canvas of side
S = N + 2M; for a shift (r, c), 0 <= r, c < M, the K² patches start at canvas pixel (r + P j, c + P l),
j, l = 0..K-1, in row-major order (j the slower index). Positional channels: channel 0 is the column
(x) and channel 1 the row (y) of each canvas pixel, linear from -1 at the first to +1 at the last.
Patch denoisers: D_patch(v, sigma, pos) with v (n, C, P, P), pos (n, 2, P, P); the patch score is
(D_patch(v) - v)/sigma², and the image score is the sum of the patch scores put back in place:
s(x) = Σ_k G_kᵀ s_patch(G_k x), G_k the k-th patch of the zero-padded canvas.
PaDIS step at level σ: d = D(x, σ) (once), x' = x - ζ ∇_x ||y - A d(x)||₂ (per sample, through D)
+ (α/2)(d - x)/σ² + √α z, α = ε σ², without the noise at the last level (z None).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._core import close, diagnose, exercise

__all__ = ["check_patch_positions", "check_assemble_score", "check_padis_step"]

F64 = torch.float64
_TOL = {"rtol": 1e-9, "atol": 1e-12}


def _geometry(N: int, P: int) -> tuple[int, int]:
    K = 1 + N // P
    return K, K * P - N


def _ramp_positions(S: int, lo: float = -1.0, hi: float = 1.0, dtype=F64) -> torch.Tensor:
    c = torch.linspace(lo, hi, S, dtype=dtype)
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x, y])                                       # (2, S, S): x = column, y = row


# ---------------------------------------------------------------- exercise 1: positional channels
def _positions_of(pos: torch.Tensor, K: int, P: int, shift, order: str = "row") -> torch.Tensor:
    r, c = shift
    corners = [(j, l) for j in range(K) for l in range(K)]          # noqa: E741  (row-major)
    if order == "column":
        corners = [(j, l) for l, j in corners]                      # noqa: E741
    return torch.stack([pos[:, r + P * j:r + P * j + P, c + P * l:c + P * l + P] for j, l in corners])


def _patch_positions(size, patch_size, shift):
    K, M = _geometry(size, patch_size)
    return _positions_of(_ramp_positions(size + 2 * M), K, patch_size, shift)


def _pos_of_image(size, patch_size, shift):                          # coordinates of the image, not the canvas
    K, M = _geometry(size, patch_size)
    S = size + 2 * M
    c = torch.linspace(-1.0, 1.0, size, dtype=F64)
    c = torch.cat([torch.full((M,), -1.0, dtype=F64), c, torch.full((M,), 1.0, dtype=F64)])
    y, x = torch.meshgrid(c, c, indexing="ij")
    assert x.shape == (S, S)
    return _positions_of(torch.stack([x, y]), K, patch_size, shift)


def _swapped(size, patch_size, shift):
    return _patch_positions(size, patch_size, shift).flip(1)


def _unit_interval(size, patch_size, shift):
    K, M = _geometry(size, patch_size)
    return _positions_of(_ramp_positions(size + 2 * M, 0.0, 1.0), K, patch_size, shift)


def _no_shift(size, patch_size, shift):
    return _patch_positions(size, patch_size, (0, 0))


def _column_major(size, patch_size, shift):
    K, M = _geometry(size, patch_size)
    return _positions_of(_ramp_positions(size + 2 * M), K, patch_size, shift, order="column")


def _step_over_s(size, patch_size, shift):                          # 2 i / S - 1: never reaches +1
    K, M = _geometry(size, patch_size)
    S = size + 2 * M
    return _positions_of(_ramp_positions(S, -1.0, 1.0 - 2.0 / S), K, patch_size, shift)


_POSITION_MISTAKES = {
    _pos_of_image: "the coordinates run over the padded canvas (side S = N + 2M), -1 at its first and +1 at "
                   "its last pixel, not over the N × N image",
    _swapped: "channel 0 is the column (x), channel 1 the row (y): you have them the other way round",
    _unit_interval: "the coordinates are scaled to [-1, 1], not [0, 1]",
    _no_shift: "the patches start at (r + P j, c + P l): the grid moves with the shift (r, c)",
    _column_major: "the patches come in row-major order: k = j K + l, with j (the row of the patch) the slower index",
    _step_over_s: "linear from -1 at the first to +1 at the last pixel: the step is 2/(S - 1), not 2/S "
                  "(torch.linspace(-1, 1, S))",
}


@exercise(_patch_positions, *_POSITION_MISTAKES)
def check_patch_positions(fn):
    """fn(size, patch_size, shift) = the (K², 2, P, P) positional channels of the patches at this shift."""
    for size, P, shift in ((20, 6, (1, 3)), (64, 14, (5, 0)), (9, 4, (2, 1)), (12, 5, (0, 2))):
        out = fn(size, P, shift)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        expected = _patch_positions(size, P, shift)
        if not close(out, expected, rtol=1e-6, atol=1e-6):
            raise AssertionError(f"size {size}, patch {P}, shift {shift}: "
                                 + diagnose(out, expected, (size, P, shift), _POSITION_MISTAKES,
                                            rtol=1e-6, atol=1e-6))


# ---------------------------------------------------------------- exercise 2: the image score
def _toy_patch_denoiser(v, sigma, pos):
    """A nonlinear, position-dependent patch denoiser that mixes pixels inside a patch (a wrong tiling,
    wrong positions or a wrong noise level all change its output)."""
    s2 = torch.as_tensor(sigma, dtype=v.dtype).reshape(-1, 1, 1, 1) ** 2
    a = 1 / (1 + s2)
    px, py = pos[:, :1], pos[:, 1:]
    mean = 0.3 + 0.2 * px - 0.15 * py + 0.1 * px * py
    return a * (v + 0.2 * torch.tanh(v.roll(1, -1) - v.roll(1, -2))) + (1 - a) * mean


def _assemble(D_patch, x, sigma, shift, patch_size, *, positions=None, crop=None, power=2, score=True,
              sign=1.0):
    B, C, N = x.shape[0], x.shape[1], x.shape[-1]
    K, M = _geometry(N, patch_size)
    P, S = patch_size, N + 2 * M
    r, c = shift
    canvas = F.pad(x, (M, M, M, M))
    pos = _ramp_positions(S, dtype=x.dtype) if positions is None else positions(S, x.dtype)
    out = torch.zeros_like(canvas)
    for j in range(K):
        for l in range(K):                                          # noqa: E741
            rows, cols = slice(r + P * j, r + P * j + P), slice(c + P * l, c + P * l + P)
            v = canvas[:, :, rows, cols]
            p = pos[:, rows, cols].expand(B, -1, -1, -1)
            d = D_patch(v, sigma, p)
            out[:, :, rows, cols] += sign * (d - v) / sigma ** power if score else d
    if crop == "shifted":
        return out[:, :, r:r + N, c:c + N]
    return out[:, :, M:M + N, M:M + N]


def _assemble_score(D_patch, x, sigma, shift, patch_size):
    return _assemble(D_patch, x, sigma, shift, patch_size)


def _no_positions(D_patch, x, sigma, shift, patch_size):
    return _assemble(D_patch, x, sigma, shift, patch_size, positions=lambda S, dt: torch.zeros(2, S, S, dtype=dt))


def _sigma_not_squared(D_patch, x, sigma, shift, patch_size):
    return _assemble(D_patch, x, sigma, shift, patch_size, power=1)


def _denoiser_not_score(D_patch, x, sigma, shift, patch_size):
    return _assemble(D_patch, x, sigma, shift, patch_size, score=False)


def _wrong_sign(D_patch, x, sigma, shift, patch_size):
    return _assemble(D_patch, x, sigma, shift, patch_size, sign=-1.0)


def _crop_at_shift(D_patch, x, sigma, shift, patch_size):
    return _assemble(D_patch, x, sigma, shift, patch_size, crop="shifted")


def _ignore_shift(D_patch, x, sigma, shift, patch_size):
    return _assemble(D_patch, x, sigma, (0, 0), patch_size)


_SCORE_MISTAKES = {
    _no_positions: "pass each patch its positional channels (the canvas coordinates of its pixels, "
                   "positions(S) cut like the patch): the patch denoiser needs to know where the patch lies",
    _sigma_not_squared: "the score is (D(v) - v)/σ², not /σ (Tweedie's formula)",
    _denoiser_not_score: "return the score, the sum of the patch scores (D(v) - v)/σ², not the denoised patches",
    _wrong_sign: "the score points from the noisy patch towards its denoised version: (D(v) - v)/σ², "
                 "not (v - D(v))/σ²",
    _crop_at_shift: "the image sits at rows and columns M .. M + N - 1 of the canvas whatever the shift: crop "
                    "the assembled canvas there (the shift moves the patches, not the image)",
    _ignore_shift: "the patches start at (r + P j, c + P l): use the shift you are given",
}


def _score_case(seed: int, B: int, N: int):
    g = torch.Generator().manual_seed(seed)
    return 0.5 + 0.4 * torch.randn(B, 1, N, N, generator=g, dtype=F64)


_SCORE_CASES = [(40, 2, 20, 6, (1, 3), 0.3), (41, 1, 9, 4, (2, 1), 1.5), (42, 3, 16, 5, (3, 0), 0.05)]


@exercise(_assemble_score, *_SCORE_MISTAKES)
def check_assemble_score(fn):
    """fn(D_patch, x, sigma, shift, patch_size) = Σ_k G_kᵀ (D_patch(G_k x, σ, pos_k) - G_k x)/σ², (B, C, N, N)."""
    for seed, B, N, P, shift, sigma in _SCORE_CASES:
        x = _score_case(seed, B, N)
        args = (_toy_patch_denoiser, x, sigma, shift, P)
        out = fn(_toy_patch_denoiser, x.clone(), sigma, shift, P)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == x.shape, f"the score has the shape of x {tuple(x.shape)}, got {tuple(out.shape)}"
        expected = _assemble_score(*args)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"N = {N}, P = {P}, shift {shift}, σ = {sigma}: "
                                 + diagnose(out, expected, args, _SCORE_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 3: one PaDIS step
def _toy_image_denoiser(x, sigma):
    """A smooth, nonlinear stand-in for D(x, σ) whose Jacobian is not a multiple of I."""
    a = 1 / (1 + sigma ** 2)
    return a * (x + 0.3 * torch.tanh(x.roll(1, -1) - x)) + (1 - a) * 0.4


def _misfit_grad(D, x, sigma, A, y, *, squared=False, batch_norm=False, through_denoiser=True):
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        d = D(xg, sigma)
        target = d if through_denoiser else d.detach().requires_grad_(True)
        r = (y - A(target)).flatten(1)
        if squared:
            F_ = r.square().sum(1)
        elif batch_norm:
            F_ = r.norm().expand(r.shape[0])
        else:
            F_ = r.norm(dim=1)
        (g,) = torch.autograd.grad(F_.sum(), xg if through_denoiser else target)
    return g, d.detach()


def _step(D, x, sigma, A, y, zeta, eps, z, *, alpha_power=2, half=True, score_sign=1.0, noise=True,
          denoise_after=False, **grad_kw):
    g, d = _misfit_grad(D, x, sigma, A, y, **grad_kw)
    alpha = eps * sigma ** alpha_power
    x_data = x - zeta * g
    if denoise_after:
        d = D(x_data, sigma)
    out = x_data + (alpha / 2 if half else alpha) * score_sign * (d - x) / sigma ** 2
    if z is not None and noise:
        out = out + alpha ** 0.5 * z
    return out


def _padis_step(D, x, sigma, A, y, zeta, eps, z):
    return _step(D, x, sigma, A, y, zeta, eps, z)


def _padis_squared(D, x, sigma, A, y, zeta, eps, z):
    return _step(D, x, sigma, A, y, zeta, eps, z, squared=True)


def _padis_batch_norm(D, x, sigma, A, y, zeta, eps, z):
    return _step(D, x, sigma, A, y, zeta, eps, z, batch_norm=True)


def _padis_not_through(D, x, sigma, A, y, zeta, eps, z):
    return _step(D, x, sigma, A, y, zeta, eps, z, through_denoiser=False)


def _padis_alpha_sigma(D, x, sigma, A, y, zeta, eps, z):
    return _step(D, x, sigma, A, y, zeta, eps, z, alpha_power=1)


def _padis_no_half(D, x, sigma, A, y, zeta, eps, z):
    return _step(D, x, sigma, A, y, zeta, eps, z, half=False)


def _padis_score_sign(D, x, sigma, A, y, zeta, eps, z):
    return _step(D, x, sigma, A, y, zeta, eps, z, score_sign=-1.0)


def _padis_no_noise(D, x, sigma, A, y, zeta, eps, z):
    return _step(D, x, sigma, A, y, zeta, eps, z, noise=False)


def _padis_denoise_after(D, x, sigma, A, y, zeta, eps, z):
    return _step(D, x, sigma, A, y, zeta, eps, z, denoise_after=True)


_STEP_MISTAKES = {
    _padis_squared: "PaDIS descends the norm ||y - A d(x)||₂ itself, not its square (the official code's "
                    "non-squared residual)",
    _padis_batch_norm: "one norm per sample: flatten(1).norm(dim=1), not one norm over the whole batch",
    _padis_not_through: "the data gradient is taken with respect to x, through the denoiser: "
                        "∇_x ||y - A D(x, σ)|| (autograd from an x that requires grad)",
    _padis_alpha_sigma: "the Langevin step size is α = ε σ², not ε σ",
    _padis_no_half: "the score step is (α/2)·score, half the step of the noise's variance α",
    _padis_score_sign: "the score points towards the denoised image: (D(x) - x)/σ², not (x - D(x))/σ²",
    _padis_no_noise: "add √α z (the z you are given) except at the last level, where z is None",
    _padis_denoise_after: "evaluate the denoiser once, at the current x, and use that d for the score too "
                          "(the official code takes the score before the data step)",
}

_STEP_CASES = [(50, 2, 8, 0.7, 0.3, 0.5, True), (51, 1, 6, 0.05, 1.0, 0.5, False), (52, 3, 5, 2.0, 0.1, 0.8, True)]


def _step_case(seed: int, B: int, n: int, noise: bool):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n * n // 2, n * n, generator=g, dtype=F64) / n
    x = 0.5 + 0.5 * torch.randn(B, 1, n, n, generator=g, dtype=F64)
    y = torch.randn(B, n * n // 2, generator=g, dtype=F64)
    z = torch.randn(B, 1, n, n, generator=g, dtype=F64) if noise else None
    return (lambda v: v.flatten(1) @ W.T), x, y, z


@exercise(_padis_step, *_STEP_MISTAKES)
def check_padis_step(fn):
    """fn(D, x, sigma, A, y, zeta, eps, z) = x - ζ ∇_x||y - A D(x)|| + (α/2)(D(x) - x)/σ² + √α z, α = ε σ²."""
    for seed, B, n, sigma, zeta, eps, noisy in _STEP_CASES:
        A, x, y, z = _step_case(seed, B, n, noisy)
        args = (_toy_image_denoiser, x, sigma, A, y, zeta, eps, z)
        out = fn(_toy_image_denoiser, x.clone(), sigma, A, y.clone(), zeta, eps, None if z is None else z.clone())
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == x.shape, f"the new state has the shape of x {tuple(x.shape)}, got {tuple(out.shape)}"
        expected = _padis_step(*args)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"σ = {sigma}, ζ = {zeta}, ε = {eps}, {'with' if noisy else 'without'} noise: "
                                 + diagnose(out, expected, args, _STEP_MISTAKES, **_TOL))
