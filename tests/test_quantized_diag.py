"""QCS-SGM needs only diag(A Aᵀ): it must not pay QCS-SGM+'s O(M³) eigendecomposition (at M = 4096 that
is about a minute on one CPU thread, for a number QCS-SGM never reads)."""
from __future__ import annotations

import pytest
import torch

from diffcourse.physics.cs import SubsampledHadamard
from diffcourse.physics.cs_matrices import correlated
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.noise import QuantizedNoise
from diffcourse.physics.nonlinear import Quantizer
from diffcourse.posterior import guidance_quantized as G
from diffcourse.posterior.solvers.quantized import qcs_sgm, qcs_sgm_plus
from diffcourse.prior.processes import ve_sigmas

from _util import gen

F64 = torch.float64


class NoMatrix:
    """The same A without a ``matrix`` attribute: only A and AT (and pinv, as solvers ask)."""

    def __init__(self, M):
        self.M = M

    def A(self, x):
        return x @ self.M.T

    def AT(self, y):
        return y @ self.M

    def pinv(self, y):
        return y @ torch.linalg.pinv(self.M).T


def test_gram_diag_is_the_row_norms_with_or_without_a_matrix():
    op = correlated(9, 5, 0.6, generator=gen(1))
    expected = torch.diagonal(op.matrix @ op.matrix.T)
    torch.testing.assert_close(G.gram_diag(op, (5,)), expected)
    bare = NoMatrix(op.matrix)
    torch.testing.assert_close(G.gram_diag(bare, (5,)), expected)
    assert G.gram_diag(bare, (5,)) is G.gram_diag(bare, (5,))          # cached per operator
    torch.testing.assert_close(G.gram_diag(SubsampledHadamard((1, 4, 4), 6, gen(2)), (6,)),
                               torch.ones(6, dtype=F64))


def test_qcs_sgm_never_eigendecomposes_and_qcs_sgm_plus_does(monkeypatch):
    op = correlated(8, 6, 0.5, generator=gen(3))
    x0 = torch.randn(1, 8, generator=gen(4), dtype=F64)
    lik = Likelihood.measure(op, QuantizedNoise(Quantizer.uniform(2, -1.0, 1.0), 0.1), x0, generator=gen(5))
    x = torch.randn(2, 8, generator=gen(6), dtype=F64)
    expected = G.qcs_multibit_g(op.A(x), *lik.noise.quantizer.bounds(lik.y, dtype=F64),
                                (0.1 ** 2 + 0.5 ** 2 * (op.matrix ** 2).sum(1)).sqrt()) @ op.matrix
    calls = []
    eigh = torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda *a, **k: calls.append(1) or eigh(*a, **k))
    torch.testing.assert_close(G.qcs(x, 0.5, lik), expected)
    D = lambda v, s: v / (1 + s.reshape(-1, 1) ** 2)                # noqa: E731 (exact denoiser of N(0, I))
    qcs_sgm(D, x, ve_sigmas(3, 0.1, 1.0), lik, eps=1e-3, n_steps_each=1, generator=gen(7))
    assert calls == []
    qcs_sgm_plus(D, x, ve_sigmas(3, 0.1, 1.0), lik, eps=1e-3, n_steps_each=1, generator=gen(7))
    assert len(calls) == 1


@pytest.mark.parametrize("bits", [1, 2])
def test_qcs_agrees_with_and_without_a_matrix_attribute(bits):
    op = correlated(8, 6, 0.5, generator=gen(8))
    quant = Quantizer.sign() if bits == 1 else Quantizer.uniform(2, -1.0, 1.0)
    x0 = torch.randn(1, 8, generator=gen(9), dtype=F64)
    lik = Likelihood.measure(op, QuantizedNoise(quant, 0.2), x0, generator=gen(10))
    x = torch.randn(3, 8, generator=gen(11), dtype=F64)
    bare = Likelihood(NoMatrix(op.matrix), lik.noise, lik.y)
    torch.testing.assert_close(G.qcs(x, 0.7, bare), G.qcs(x, 0.7, lik), rtol=1e-12, atol=1e-12)
