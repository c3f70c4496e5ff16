"""Lesson 13's exercise checks: the references are the library's (the positional channels of
diffcourse.prior.patches and its assembled denoiser), correct answers written differently pass, and
typical mistakes fail with a message that names them.

(tests/test_checks.py already runs every check on its reference, the stub and its listed wrong answers.)
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _util import verdict

from diffcourse.checks import lesson13 as L
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.noise import GaussianNoise
from diffcourse.posterior.solvers import padis
from diffcourse.prior.patches import _tiles, assemble, geometry, positions

F64 = torch.float64


# ---------------------------------------------------------------- the references are the library's
@pytest.mark.parametrize("size, P, shift", [(20, 6, (1, 3)), (64, 14, (5, 0)), (9, 4, (2, 1))])
def test_positions_reference_is_the_library_tiling(size, P, shift):
    """The reference equals the library's positions(S) cut by its own tiling (row-major patches)."""
    K, M = geometry(size, P)
    pos = positions(size + 2 * M, dtype=F64)[:, shift[0]:shift[0] + K * P, shift[1]:shift[1] + K * P]
    torch.testing.assert_close(L.check_patch_positions.reference(size, P, shift), _tiles(pos[None], K, P),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed, B, N, P, shift, sigma", L._SCORE_CASES)
def test_score_reference_is_the_library_assembled_denoiser(seed, B, N, P, shift, sigma):
    """(assemble(D_patch, x, σ, shift) - x)/σ² of diffcourse.prior.patches (zero padding) is the reference."""
    x = L._score_case(seed, B, N)
    d = assemble(L._toy_patch_denoiser, x, torch.full((B,), sigma, dtype=F64), torch.tensor([shift] * B), P)
    ref = L.check_assemble_score.reference(L._toy_patch_denoiser, x, sigma, shift, P)
    torch.testing.assert_close(ref, (d - x) / sigma ** 2, rtol=1e-12, atol=1e-12)


def test_assembled_score_of_a_per_pixel_gaussian_is_exact():
    """With the exact denoiser of independent per-pixel Gaussians (mean and std depending on the canvas
    position), the assembled score is the exact whole-image score -(x - μ)/(τ² + σ²) for every shift."""
    N, P = 12, 5
    K, M = geometry(N, P)
    mu = lambda px, py: 0.4 + 0.3 * px - 0.2 * py                                  # noqa: E731
    tau = lambda px, py: 0.2 + 0.1 * (px + 1) + 0.05 * (py + 1) ** 2                # noqa: E731

    def D(v, s, pos):
        t2, s2 = tau(pos[:, 0:1], pos[:, 1:2]) ** 2, torch.as_tensor(s).reshape(-1, 1, 1, 1) ** 2
        return (t2 * v + s2 * mu(pos[:, 0:1], pos[:, 1:2])) / (t2 + s2)
    pos = positions(N + 2 * M, dtype=F64)[:, M:M + N, M:M + N]
    x = torch.randn(2, 1, N, N, generator=torch.Generator().manual_seed(0), dtype=F64)
    exact = (mu(pos[0], pos[1]) - x) / (tau(pos[0], pos[1]) ** 2 + 0.49)
    for r in range(M):
        for c in range(M):
            torch.testing.assert_close(L.check_assemble_score.reference(D, x, 0.7, (r, c), P), exact)


class _Matrix:
    """y = W x (flattened), as a forward model for a Likelihood."""

    def __init__(self, A):
        self.fn = A

    def A(self, x):
        return self.fn(x)


@pytest.mark.parametrize("seed, B, n, sigma, zeta, eps, noisy", L._STEP_CASES)
def test_padis_step_reference_is_one_step_of_the_library_solver(seed, B, n, sigma, zeta, eps, noisy):
    """solvers.padis with one inner step: at a level with noise (the state after the first of the levels
    [σ, σ/2, 0], the same z from the same generator) and at the last level (levels [σ, 0], no noise)."""
    A, x, y, _ = L._step_case(seed, B, n, False)
    lik = Likelihood(_Matrix(A), GaussianNoise(0.1), y)
    D = lambda v, s: L._toy_image_denoiser(v, float(s[0]))                        # noqa: E731
    if noisy:
        seen = {}
        padis(D, x, torch.tensor([sigma, sigma / 2, 0.0], dtype=F64), lik, zeta=zeta, eps=eps, n_inner=1,
              generator=torch.Generator().manual_seed(7), callback=lambda d: seen.setdefault(d["i"], d["x"]))
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=F64)
        got = seen[1]
    else:
        got = padis(D, x, torch.tensor([sigma, 0.0], dtype=F64), lik, zeta=zeta, eps=eps, n_inner=1)
        z = None
    ref = L.check_padis_step.reference(L._toy_image_denoiser, x, sigma, A, y, zeta, eps, z)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- correct answers written differently
def test_positions_accepts_unfold(capsys):
    def mine(size, patch_size, shift):
        K = size // patch_size + 1
        S = 2 * K * patch_size - size
        ramp = torch.arange(S, dtype=F64) * (2 / (S - 1)) - 1
        canvas = torch.stack([ramp.expand(S, S), ramp[:, None].expand(S, S)])   # (2, S, S)
        r, c = shift
        win = canvas[None, :, r:r + K * patch_size, c:c + K * patch_size]
        cols = F.unfold(win, patch_size, stride=patch_size)                      # (1, 2 P², K²)
        return cols[0].T.reshape(K * K, 2, patch_size, patch_size)
    ok, out = verdict(L.check_patch_positions, mine, capsys)
    assert ok, out


def test_assemble_score_accepts_fold_with_the_library_positions(capsys):
    def mine(D_patch, x, sigma, shift, patch_size):
        B, C, N, _ = x.shape
        K, M = geometry(N, patch_size)
        S, P, (r, c) = N + 2 * M, patch_size, shift
        canvas = torch.cat([F.pad(x, (M,) * 4), positions(S, dtype=x.dtype).expand(B, -1, -1, -1)], 1)
        win = canvas[:, :, r:r + K * P, c:c + K * P]
        cols = F.unfold(win, P, stride=P)                                        # (B, (C+2) P², K²)
        v = cols.transpose(1, 2).reshape(B * K * K, C + 2, P, P)
        s = (D_patch(v[:, :C], sigma, v[:, C:]) - v[:, :C]) / sigma ** 2
        back = F.fold(s.reshape(B, K * K, C * P * P).transpose(1, 2), (K * P, K * P), P, stride=P)
        full = F.pad(back, (c, S - c - K * P, r, S - r - K * P))
        return full[:, :, M:M + N, M:M + N]
    ok, out = verdict(L.check_assemble_score, mine, capsys)
    assert ok, out


# ---------------------------------------------------------------- mistakes are named
def test_positions_names_the_image_coordinates_mistake(capsys):
    ok, out = verdict(L.check_patch_positions, L._pos_of_image, capsys)
    assert not ok and "padded canvas" in out


def test_score_names_the_missing_positions(capsys):
    ok, out = verdict(L.check_assemble_score, L._no_positions, capsys)
    assert not ok and "positional channels" in out


def test_score_rejects_a_crop_of_the_wrong_size(capsys):
    def mine(D_patch, x, sigma, shift, patch_size):
        return L._assemble_score(D_patch, x, sigma, shift, patch_size)[..., 1:, :]
    ok, out = verdict(L.check_assemble_score, mine, capsys)
    assert not ok and "shape of x" in out


def test_padis_step_accepts_the_squared_norm_route(capsys):
    """∇||r|| = ∇||r||² / (2||r||): an answer through the squared norm is the same step."""
    def mine(D, x, sigma, A, y, zeta, eps, z):
        with torch.enable_grad():
            xg = x.clone().requires_grad_()
            d = D(xg, sigma)
            r2 = (y - A(d)).pow(2).sum(1)
            g = torch.autograd.grad((r2 / (2 * r2.detach().sqrt())).sum(), xg)[0]
        alpha = eps * sigma ** 2
        new = x - zeta * g + 0.5 * alpha * (d.detach() - x) / sigma ** 2
        return new if z is None else new + alpha ** 0.5 * z
    ok, out = verdict(L.check_padis_step, mine, capsys)
    assert ok, out


def test_padis_step_names_the_missing_chain_rule(capsys):
    ok, out = verdict(L.check_padis_step, L._padis_not_through, capsys)
    assert not ok and "through the denoiser" in out
