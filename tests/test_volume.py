"""SliceWise (a 2-D operator on every slice of a volume) is a LinearOperator: adjointness and the
pseudo-inverse against dense matrices, norms, batch invariance; and the shared per-sample linear
algebra (diffcourse._linalg) is what physics and posterior re-export."""
from __future__ import annotations

import math

import pytest
import torch

import diffcourse._linalg as linalg
import diffcourse.physics.linear as physics_linear
import diffcourse.posterior.classical as classical
from diffcourse.physics.linear import inner
from diffcourse.physics.operators import Blur, Downsample, GaussianCS
from diffcourse.physics.volume import SliceWise

from _util import gen

F64 = torch.float64


def dense(fn, shape):
    """(m, n) matrix of a linear map on inputs of ``shape`` (1, ...), column j = fn(e_j)."""
    n = math.prod(shape[1:])
    return torch.stack([fn(torch.eye(n, dtype=F64)[j].reshape(shape)).reshape(-1) for j in range(n)], 1)


CASES = {
    "blur": (lambda: SliceWise(Blur(torch.rand(3, 3, generator=gen(1), dtype=F64) + 0.1), 3), (2, 2, 3, 5, 4)),
    "downsample": (lambda: SliceWise(Downsample(2), 4), (2, 1, 4, 4, 6)),
    "gaussian_cs": (lambda: SliceWise(GaussianCS((1, 3, 3), 5, gen(2)).to(F64), 2), (2, 1, 2, 3, 3)),
}


@pytest.mark.parametrize("name", CASES)
def test_slicewise_is_adjoint_and_block_diagonal(name):
    factory, shape = CASES[name]
    op = factory()
    x = torch.randn(shape, generator=gen(3), dtype=F64)
    y = op.A(x)
    assert y.shape[:2] == (shape[0], op.depth)                       # (B, D, ...): the batch is the volume's
    for d in range(op.depth):
        torch.testing.assert_close(y[:, d], op.op.A(x[:, :, d]), rtol=0, atol=0)
    v = torch.randn(y.shape, generator=gen(4), dtype=F64)
    lhs, rhs = inner(y, v), inner(x, op.AT(v))                        # (B,) each
    assert ((lhs - rhs).abs() / rhs.abs()).max() < 1e-12
    M = dense(op.A, (1, *shape[1:]))
    torch.testing.assert_close(dense(op.AT, (1, *y.shape[1:])), M.T, rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", CASES)
def test_slicewise_pinv_and_norm_match_the_dense_matrix(name):
    factory, shape = CASES[name]
    op = factory()
    M = dense(op.A, (1, *shape[1:]))
    y = op.A(torch.randn(shape, generator=gen(5), dtype=F64))
    y = y + 0.1 * torch.randn(y.shape, generator=gen(6), dtype=F64)   # not in the range of A
    ref = y.flatten(1) @ torch.linalg.pinv(M, rtol=1e-10).T
    for p in (op.pinv(y, tol=1e-13, n_iter=2000), op.pinv_cg(y, tol=1e-13, n_iter=2000)):
        torch.testing.assert_close(p.flatten(1), ref, rtol=0, atol=1e-8)
    est = op.norm(torch.zeros(shape, dtype=F64), n_iter=300, generator=gen(7))
    torch.testing.assert_close(est, torch.linalg.matrix_norm(M, ord=2).expand(shape[0]), rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", CASES)
def test_slicewise_batch_of_two_equals_two_batches_of_one(name):
    factory, shape = CASES[name]
    op = factory()
    x = torch.randn(shape, generator=gen(8), dtype=F64)
    y = op.A(x)
    for fn, v in ((op.A, x), (op.AT, y), (lambda t: op.pinv_cg(t, n_iter=5), y)):
        torch.testing.assert_close(torch.cat([fn(v[:1]), fn(v[1:])]), fn(v), rtol=0, atol=1e-13)


def test_slicewise_knows_its_input_shape_and_moves_with_to():
    op = SliceWise(GaussianCS((1, 3, 3), 5, gen(9)), 4)
    assert op.in_shape == (1, 4, 3, 3)
    assert op.to(F64).op.matrix.dtype == F64                         # the 2-D operator is a submodule
    assert op.norm(generator=gen(10)).shape == (1,)                   # no example input needed
    assert SliceWise(Downsample(2), 4).in_shape is None


def test_slicewise_accepts_any_object_with_A_and_AT():
    class Scale:
        A = staticmethod(lambda x: 2 * x)
        AT = staticmethod(lambda y: 2 * y)

    op = SliceWise(Scale(), 2)
    x = torch.randn(1, 1, 2, 3, 3, generator=gen(11), dtype=F64)
    torch.testing.assert_close(op.pinv(op.A(x), tol=1e-12), x)        # CGLS: Scale has no pinv


def test_slicewise_refuses_bad_input():
    op = SliceWise(Downsample(2), 3)
    with pytest.raises(TypeError, match="op must be a linear operator"):
        SliceWise(object(), 3)
    with pytest.raises(ValueError, match="depth"):
        SliceWise(Downsample(2), 0)
    with pytest.raises(ValueError, match="depth 3"):
        op.A(torch.zeros(1, 1, 4, 4, 4))
    with pytest.raises(ValueError, match="3 slices on dim 1"):
        op.AT(torch.zeros(1, 4, 1, 2, 2))


def test_one_home_per_helper_and_the_old_imports_still_work():
    assert physics_linear.inner is linalg.inner and physics_linear.cgls is linalg.cgls
    assert classical.cg is linalg.cg and classical.SliceWise is SliceWise


def test_inner_is_the_real_part_per_sample_and_cgls_stops_per_sample():
    a = torch.tensor([[1 + 2j, 3j], [1j, 0j]], dtype=torch.complex128)
    b = torch.tensor([[2 - 1j, 1 + 1j], [1j, 5 + 0j]], dtype=torch.complex128)
    torch.testing.assert_close(linalg.inner(a, b), (a.conj() * b).sum(1).real)
    A = torch.diag(torch.tensor([1.0, 1e-3, 5.0], dtype=F64))
    y = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=F64)   # sample 0 converges in one step
    solve = lambda t: linalg.cgls(lambda x: x @ A.T, lambda r: r @ A, t, n_iter=2, tol=1e-12)
    torch.testing.assert_close(solve(y)[:1], solve(y[:1]), rtol=0, atol=0)
    torch.testing.assert_close(solve(y)[:1], y[:1], rtol=0, atol=1e-15)
