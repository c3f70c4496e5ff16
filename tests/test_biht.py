"""Classical quantized compressed sensing: the Haar wavelet, hard thresholding, BIHT (Jacques, Laska,
Boufounos & Baraniuk, IEEE Trans. Inf. Theory 2013) and its multi-bit, quantization-consistent form.

Checked: the wavelet is orthonormal (a dense matrix oracle) and sparsifies dyadic piecewise-constant
images; H_k against a sort; BIHT reaches sign consistency on exactly sparse signals (in the canonical
basis and in the Haar basis) and recovers the direction; its step size only scales the iterates, so
the unit-norm output is the paper's iteration for any τ; 1-bit data of x and 2x are the same. The
multi-bit iteration with zero-width bins is plain IHT, and from IHT's estimate of the dequantized data
it moves A x into its bins and nearer to x; with sign bins it cannot leave 0 (no scale).
"""
from __future__ import annotations

import math

import pytest
import torch

from diffcourse.physics.nonlinear import Quantizer
from diffcourse.posterior.classical import biht, hard_threshold, qiht
from diffcourse.posterior.wavelet import haar2d, ihaar2d, max_levels

from _util import gen

F64 = torch.float64


class Dense:
    """y = M x.flatten(1) for x (B, *shape)."""

    def __init__(self, M, shape):
        self.M, self.shape = M, shape

    def A(self, x):
        return x.flatten(1) @ self.M.T

    def AT(self, y):
        return (y @ self.M).reshape(-1, *self.shape)


def sparse_vectors(b, n, k, seed):
    x = torch.zeros(b, n, dtype=F64)
    for i in range(b):
        idx = torch.randperm(n, generator=gen(seed + i))[:k]
        x[i, idx] = torch.randn(k, generator=gen(seed + 100 + i), dtype=F64)
    return x


def unit(x):
    return x / x.flatten(1).norm(dim=1).reshape(-1, *([1] * (x.ndim - 1)))


# ---------------------------------------------------------------- the Haar wavelet
@pytest.mark.parametrize("H, W, levels", [(8, 8, None), (16, 8, 2), (4, 12, 1)])
def test_haar_is_orthonormal_and_inverted(H, W, levels):
    n = H * W
    E = torch.eye(n, dtype=F64).reshape(n, 1, H, W)
    Wm = haar2d(E, levels).reshape(n, n)                             # row i = coefficients of e_i
    torch.testing.assert_close(Wm @ Wm.T, torch.eye(n, dtype=F64))
    x = torch.randn(3, 2, H, W, generator=gen(1), dtype=F64)
    torch.testing.assert_close(ihaar2d(haar2d(x, levels), levels), x)
    c = torch.randn(3, 2, H, W, generator=gen(2), dtype=F64)
    torch.testing.assert_close((haar2d(x, levels) * c).sum(), (x * ihaar2d(c, levels)).sum())  # adjoint = inverse


def test_haar_sparsifies_dyadic_blocks():
    x = torch.zeros(1, 1, 16, 16, dtype=F64)
    x[..., :8, :8] = 1.0
    x[..., 8:12, 4:8] = -2.0
    x[..., 12:, 12:] = 0.5
    c = haar2d(x)
    assert int((c.abs() > 1e-12).sum()) <= 10                       # of 256
    torch.testing.assert_close(c[..., 0, 0], x.mean((-2, -1)) * 16)  # the coarsest average: sum / sqrt(n)
    assert max_levels(64, 64) == 6 and max_levels(12, 8) == 2
    with pytest.raises(ValueError, match="levels"):
        haar2d(x, 5)


def test_hard_threshold_keeps_the_k_largest_per_sample():
    c = torch.randn(4, 3, 5, generator=gen(3), dtype=F64)
    out = hard_threshold(c, 4)
    for i in range(4):
        flat, kept = c[i].flatten(), out[i].flatten()
        top = flat.abs().sort(descending=True).indices[:4]
        expected = torch.zeros_like(flat)
        expected[top] = flat[top]
        torch.testing.assert_close(kept, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="k must be <="):
        hard_threshold(c, 16)


# ---------------------------------------------------------------- BIHT
def biht_paper(op, y, k, tau, n_iter):
    """The paper's iteration with its step τ, no normalisation until the end."""
    x = torch.zeros_like(op.AT(y))
    for _ in range(n_iter):
        x = hard_threshold(x + tau / 2 * op.AT(y - torch.sign(op.A(x))), k)
    return unit(x)


def test_biht_reaches_sign_consistency_on_sparse_signals():
    n, m, k = 128, 500, 5
    M = torch.randn(m, n, generator=gen(4), dtype=F64)
    op = Dense(M, (n,))
    x = sparse_vectors(3, n, k, seed=10)
    y = torch.sign(op.A(x))
    est = biht(op, y, k, n_iter=80)
    assert bool((torch.sign(op.A(est)) == y).all())                 # every sign reproduced
    assert float((est - unit(x)).norm(dim=1).max()) < 0.05          # the direction, within the 1-bit cell
    torch.testing.assert_close(est.norm(dim=1), torch.ones(3, dtype=F64))
    torch.testing.assert_close(biht(op, y[1:2], k, n_iter=80), est[1:2])  # per sample
    torch.testing.assert_close(biht(op, torch.sign(op.A(2.0 * x)), k, n_iter=80), est)  # x and 2x: same data
    for tau in (1e-3, 7.0):                                         # τ only scales the iterates
        torch.testing.assert_close(biht_paper(op, y, k, tau, 80), est)


def test_biht_in_the_haar_basis():
    """Images 12-sparse in the Haar basis, 1-bit measured: BIHT with W = haar2d recovers them up to scale with
    at most 2 % of the signs wrong (BIHT need not settle on a consistent point); BIHT with 12 pixels cannot."""
    g = gen(7)
    c = torch.zeros(2, 1, 16, 16, dtype=F64)
    for i in range(2):
        idx = torch.randperm(256, generator=g)[:12]
        c[i].view(-1)[idx] = torch.randn(12, generator=g, dtype=F64)
    x = ihaar2d(c)
    op = Dense(torch.randn(1000, 256, generator=gen(6), dtype=F64), (1, 16, 16))
    y = torch.sign(op.A(x))
    est = biht(op, y, 12, n_iter=100, W=haar2d, WT=ihaar2d)
    assert int((torch.sign(op.A(est)) != y).sum(1).max()) <= 20
    err = float((est - unit(x)).flatten(1).norm(dim=1).max())
    pixels = biht(op, y, 12, n_iter=100)
    assert err < 0.1 and err < 0.5 * float((pixels - unit(x)).flatten(1).norm(dim=1).min()), err


def test_biht_rejects_non_signs():
    op = Dense(torch.eye(3, dtype=F64), (3,))
    with pytest.raises(ValueError, match="signs"):
        biht(op, torch.tensor([[1.0, 0.0, -1.0]], dtype=F64), 2)


# ---------------------------------------------------------------- multi-bit
def test_qiht_with_zero_width_bins_is_iht():
    """l = u = c: the clamp returns c, so the step is Blumensath & Davies' IHT on the values c."""
    M = torch.randn(30, 50, generator=gen(9), dtype=F64) / math.sqrt(30)
    op, c = Dense(M, (50,)), torch.randn(2, 30, generator=gen(10), dtype=F64)
    x = torch.zeros(2, 50, dtype=F64)
    for _ in range(20):
        x = hard_threshold(x + 0.3 * (c - x @ M.T) @ M, 4)
    torch.testing.assert_close(qiht(op, c, c, 4, n_iter=20, step=0.3), x)


def test_qiht_moves_iht_into_the_bins_and_nearer_the_signal():
    """3-bit data of 8 exactly 5-sparse signals: IHT on the bin centres, then the consistency iteration from
    there: the distance of A x to the bins drops by at least half and the error by a third on average."""
    n, m, k = 128, 300, 5
    M = torch.randn(m, n, generator=gen(7), dtype=F64) / math.sqrt(m)
    op = Dense(M, (n,))
    x = sparse_vectors(8, n, k, seed=20)
    z = op.A(x)
    quant = Quantizer.uniform(3, float(z.min()), float(z.max()))
    bins = quant.A(z)
    l, u = quant.bounds(bins, dtype=F64)
    c = quant.dequantize(bins, dtype=F64)
    step = 1 / float(torch.linalg.matrix_norm(M, 2)) ** 2
    start = qiht(op, c, c, k, n_iter=150, step=step)
    est = qiht(op, l, u, k, n_iter=150, step=step, x0=start)

    def outside(v):
        zv = op.A(v)
        return float((zv - torch.minimum(torch.maximum(zv, l), u)).norm(dim=1).mean())

    def error(v):
        return float(((v - x).norm(dim=1) / x.norm(dim=1)).mean())
    assert outside(est) < 0.5 * outside(start), (outside(est), outside(start))
    assert error(est) < 0.67 * error(start) and error(est) < 0.1, (error(est), error(start))


def test_qiht_with_sign_bins_stays_at_zero():
    """1-bit bins [0, ∞), (-∞, 0): x = 0 is consistent with every sign (the scale blindness); the iteration
    never leaves it, which is why BIHT normalises."""
    op = Dense(torch.randn(20, 10, generator=gen(8), dtype=F64), (10,))
    quant = Quantizer.sign()
    l, u = quant.bounds(torch.ones(1, 20, dtype=torch.long), dtype=F64)   # all signs +
    out = qiht(op, l, u, 3, n_iter=10)
    assert bool((out == 0).all())
