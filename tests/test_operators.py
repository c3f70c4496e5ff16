"""Linear operators: adjointness, dense-matrix oracles, SVD and pseudo-inverse identities, scipy /
scikit-image oracles, batch invariance, dtype and device handling."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import scipy.linalg
import scipy.ndimage
import scipy.signal
import torch
from skimage.transform import downscale_local_mean

from diffcourse.physics.cs import dct_matrix, fwht
from diffcourse.physics.linear import inner
from diffcourse.physics.operators import (Blur, Colorize, Downsample, GaussianCS, Identity,
                                          Inpaint, SubsampledDCT, SubsampledHadamard, ValidBlur,
                                          ZeroBlur, box_mask, gaussian_kernel, motion_kernel,
                                          random_mask)

from _util import gen

F64 = torch.float64


def _kernel(seed, shape=(5, 3)):
    return torch.rand(shape, generator=gen(seed), dtype=F64) + 0.1


# name -> (factory of a float64 operator, input shape (B, ...))
CASES = {
    "identity": (lambda: Identity(), (2, 3, 6, 5)),
    "inpaint": (lambda: Inpaint(random_mask((6, 5), 0.5, gen(1))), (2, 3, 6, 5)),
    "inpaint_per_sample": (lambda: Inpaint(random_mask((6, 5), 0.5, gen(2)).expand(2, 1, 6, 5)),
                           (2, 1, 6, 5)),
    "blur": (lambda: Blur(_kernel(3)), (2, 2, 7, 6)),
    "blur_even_kernel": (lambda: Blur(_kernel(4, (4, 2))), (2, 1, 6, 8)),
    "blur_per_sample": (lambda: Blur(torch.rand(2, 3, 3, generator=gen(5), dtype=F64)),
                        (2, 2, 6, 6)),
    "zero_blur": (lambda: ZeroBlur(_kernel(6)), (2, 2, 7, 6)),
    "zero_blur_per_sample": (lambda: ZeroBlur(torch.rand(2, 3, 5, generator=gen(7), dtype=F64)),
                             (2, 3, 6, 7)),
    "valid_blur": (lambda: ValidBlur(_kernel(8)), (2, 1, 8, 7)),
    "downsample2": (lambda: Downsample(2), (2, 3, 6, 8)),
    "downsample3": (lambda: Downsample(3), (2, 1, 9, 6)),
    "colorize": (lambda: Colorize((0.299, 0.587, 0.114)), (2, 3, 5, 4)),
    "gaussian_cs": (lambda: GaussianCS((2, 4, 3), 10, gen(9)), (2, 2, 4, 3)),
    "dct": (lambda: SubsampledDCT((2, 4, 5), 17, gen(10)), (2, 2, 4, 5)),
    "hadamard": (lambda: SubsampledHadamard((2, 4, 4), 12, gen(11)), (2, 2, 4, 4)),
}


def make(name):
    factory, shape = CASES[name]
    return factory().to(F64), shape


def dense(fn, shape, dtype=F64):
    """Per-sample matrices (B, m, n) of a linear map on inputs of ``shape`` (B, ...): column j of
    sample b is fn(x)[b] for x with every sample equal to the basis vector e_j."""
    B, n = shape[0], math.prod(shape[1:])
    cols = []
    for j in range(n):
        e = torch.zeros(n, dtype=dtype)
        e[j] = 1
        cols.append(fn(e.reshape(1, *shape[1:]).expand(shape).contiguous()).reshape(B, -1))
    return torch.stack(cols, -1)


def out_shape(op, shape):
    return op.A(torch.zeros(shape, dtype=F64)).shape


def _svd(op, shape):
    return op.svd(torch.zeros(shape, dtype=F64))


SVD_CASES = [n for n in CASES if _svd(*make(n)) is not None]


@pytest.mark.parametrize("name", CASES)
def test_adjointness(name):
    op, shape = make(name)
    g = gen(100)
    x = torch.randn(shape, generator=g, dtype=F64)
    y = torch.randn(out_shape(op, shape), generator=g, dtype=F64)
    lhs, rhs = inner(op.A(x), y), inner(x, op.AT(y))
    assert ((lhs - rhs).abs() / rhs.abs()).max() < 1e-10


@pytest.mark.parametrize("name", CASES)
def test_dense_matrix_of_AT_is_transpose_of_A(name):
    op, shape = make(name)
    M = dense(op.A, shape)
    MT = dense(op.AT, out_shape(op, shape))
    assert M.abs().max() > 0
    torch.testing.assert_close(MT, M.transpose(1, 2), rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", SVD_CASES)
def test_svd_reconstructs_A_and_has_orthonormal_factors(name):
    op, shape = make(name)
    svd = _svd(op, shape)
    x = torch.randn(shape, generator=gen(3), dtype=F64)
    torch.testing.assert_close(svd.U(svd.s * svd.VT(x)), op.A(x), rtol=0, atol=1e-12)
    c = torch.randn(svd.VT(x).shape, generator=gen(4), dtype=F64)
    torch.testing.assert_close(svd.VT(svd.V(c)), c, rtol=0, atol=1e-12)  # V^T V = I
    cu = torch.randn(svd.UT(op.A(x)).shape, generator=gen(5), dtype=F64)
    torch.testing.assert_close(svd.UT(svd.U(cu)), cu, rtol=0, atol=1e-12)  # U^T U = I
    assert bool((svd.s >= 0).all())


@pytest.mark.parametrize("name", SVD_CASES)
def test_svd_singular_values_match_dense_matrix(name):
    op, shape = make(name)
    svd = _svd(op, shape)
    s = (svd.s * torch.ones_like(svd.VT(torch.zeros(shape, dtype=F64)))).reshape(shape[0], -1)
    ref = torch.linalg.svdvals(dense(op.A, shape))  # (B, min(m, n))
    s = s.sort(1, descending=True).values
    k = min(s.shape[1], ref.shape[1])
    torch.testing.assert_close(s[:, :k], ref[:, :k], rtol=0, atol=1e-12)
    assert bool((s[:, k:] == 0).all()) and bool((ref[:, k:] < 1e-12).all())


@pytest.mark.parametrize("name", CASES)
def test_pinv_matches_dense_pseudo_inverse(name):
    op, shape = make(name)
    y = torch.randn(out_shape(op, shape), generator=gen(6), dtype=F64)
    ref = torch.linalg.pinv(dense(op.A, shape), rtol=1e-10) @ y.reshape(shape[0], -1, 1)
    p = op.pinv(y, tol=1e-13, n_iter=2000)
    torch.testing.assert_close(p.reshape(shape[0], -1), ref[..., 0], rtol=0, atol=1e-8)
    x = torch.randn(shape, generator=gen(7), dtype=F64)
    torch.testing.assert_close(op.A(op.pinv(op.A(x), tol=1e-13, n_iter=2000)), op.A(x),
                               rtol=0, atol=1e-8)  # A A^+ A = A


@pytest.mark.parametrize("name", ["blur", "gaussian_cs", "dct", "downsample2", "colorize"])
def test_pinv_by_cg_equals_pinv_by_svd(name):
    op, shape = make(name)
    y = torch.randn(out_shape(op, shape), generator=gen(8), dtype=F64)
    torch.testing.assert_close(op.pinv_cg(y, tol=1e-14, n_iter=3000), op.pinv(y),
                               rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", CASES)
def test_norm_is_largest_singular_value(name):
    op, shape = make(name)
    ref = torch.linalg.svdvals(dense(op.A, shape))[:, 0]
    est = op.norm(torch.zeros(shape, dtype=F64), n_iter=300, generator=gen(9))
    torch.testing.assert_close(est, ref, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", [n for n in CASES if not n.endswith("per_sample")])
def test_batch_of_two_equals_two_batches_of_one(name):
    """(The per_sample operators hold one operator per sample, so a batch of one does not fit them;
    test_per_sample_operators_equal_their_single_sample_parts covers them.)"""
    op, shape = make(name)
    x = torch.randn(shape, generator=gen(10), dtype=F64)
    y = op.A(x)
    for fn, v in ((op.A, x), (op.AT, y), (lambda t: op.pinv_cg(t, n_iter=7), y)):
        both = fn(v)
        torch.testing.assert_close(torch.cat([fn(v[:1]), fn(v[1:])]), both, rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", CASES)
def test_float32_operator_converts_with_to(name):
    factory, shape = CASES[name]
    op = factory().to(torch.float32)
    x = torch.randn(shape, generator=gen(11))
    y32 = op.A(x)
    assert y32.dtype == torch.float32
    y64 = op.to(F64).A(x.to(F64))
    assert y64.dtype == F64
    torch.testing.assert_close(y32.to(F64), y64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["inpaint", "blur", "zero_blur", "downsample2", "colorize",
                                  "gaussian_cs", "dct", "hadamard"])
def test_device_is_taken_from_the_inputs(name):
    op, shape = make(name)
    op = op.to("meta")
    y = op.A(torch.zeros(shape, dtype=F64, device="meta"))
    assert y.device.type == "meta" and y.shape == out_shape(make(name)[0], shape)
    assert op.AT(y).device.type == "meta"
    if list(op.buffers()):  # (Downsample stores nothing that could sit on another device)
        with pytest.raises(ValueError, match="x"):
            op.A(torch.zeros(shape, dtype=F64))  # operator on meta, input on cpu


def test_per_sample_operators_equal_their_single_sample_parts():
    k = _kernel(30, (3, 3))
    kernels = torch.stack([k, 1e-14 * k.flip(0)])  # very different scales: no shared threshold
    x = torch.randn(2, 2, 6, 7, generator=gen(31), dtype=F64)
    for cls in (Blur, ZeroBlur):
        op = cls(kernels)
        y = op.A(x)
        for i in range(2):
            single = cls(kernels[i])
            torch.testing.assert_close(single.A(x[i:i + 1]), y[i:i + 1], rtol=1e-12, atol=0)
            torch.testing.assert_close(single.AT(y[i:i + 1]), op.AT(y)[i:i + 1], rtol=1e-12, atol=0)
            torch.testing.assert_close(single.pinv(y[i:i + 1], tol=1e-12, n_iter=50),
                                       op.pinv(y, tol=1e-12, n_iter=50)[i:i + 1],
                                       rtol=1e-9, atol=0)


# ---------------------------------------------------------------- oracles for single operators
def test_circular_blur_matches_scipy_wrap_convolution():
    k = _kernel(12, (5, 3)).numpy()
    x = torch.randn(2, 3, 9, 8, generator=gen(12), dtype=F64)
    ref = np.stack([[scipy.ndimage.convolve(c, k, mode="wrap") for c in im] for im in x.numpy()])
    np.testing.assert_allclose(Blur(torch.from_numpy(k)).A(x).numpy(), ref, atol=1e-12)


def test_zero_blurs_match_scipy_convolve2d():
    k = _kernel(13, (5, 3)).numpy()
    x = torch.randn(1, 2, 9, 8, generator=gen(13), dtype=F64)
    kt = torch.from_numpy(k)
    for op, mode in ((ZeroBlur(kt), "same"), (ValidBlur(kt), "valid")):
        ref = np.stack([[scipy.signal.convolve2d(c, k, mode=mode) for c in im] for im in x.numpy()])
        np.testing.assert_allclose(op.A(x).numpy(), ref, atol=1e-12)


def test_circular_and_zero_blur_agree_away_from_the_border():
    k = motion_kernel(7, gen(14)).to(F64)
    x = torch.randn(1, 1, 20, 20, generator=gen(15), dtype=F64)
    a, b = Blur(k).A(x), ZeroBlur(k).A(x)
    torch.testing.assert_close(a[..., 3:-3, 3:-3], b[..., 3:-3, 3:-3], rtol=0, atol=1e-12)
    assert (a - b).abs().max() > 1e-3  # ... and differ at the border


def test_blur_is_differentiable_in_the_kernel():
    x = torch.randn(1, 1, 8, 8, generator=gen(16), dtype=F64)
    w = torch.randn(1, 1, 8, 8, generator=gen(17), dtype=F64)
    for cls in (Blur, ZeroBlur):
        k = _kernel(18, (3, 3)).requires_grad_()
        assert torch.autograd.gradcheck(lambda k: (cls(k).A(x) * w).sum(), (k,))


def test_downsample_matches_skimage_local_mean():
    x = torch.rand(2, 3, 12, 9, generator=gen(19), dtype=F64)
    ref = downscale_local_mean(x.numpy(), (1, 1, 3, 3))
    np.testing.assert_allclose(Downsample(3).A(x).numpy(), ref, atol=1e-14)
    # the pseudo-inverse of average pooling is nearest-neighbour upsampling
    y = Downsample(3).A(x)
    torch.testing.assert_close(Downsample(3).pinv(y), y.repeat_interleave(3, -2).repeat_interleave(3, -1))


def test_colorize_averages_channels():
    x = torch.rand(2, 3, 4, 5, generator=gen(20), dtype=F64)
    torch.testing.assert_close(Colorize().to(F64).A(x), x.mean(1, keepdim=True))


def test_inpaint_minimum_norm_solution_is_the_measurement():
    op = Inpaint(box_mask(8, (2, 3, 4, 2))).to(F64)
    x = torch.rand(2, 1, 8, 8, generator=gen(21), dtype=F64)
    y = op.A(x)
    assert torch.equal(op.pinv(y), y) and torch.equal(op.AT(y), y)
    assert int((y[0, 0, 2:6, 3:5] != 0).sum()) == 0


def test_dct_matrix_matches_scipy():
    x = torch.randn(3, 6, 5, generator=gen(22), dtype=F64)
    op = SubsampledDCT((3, 6, 5), 90, gen(23)).to(F64)  # all rows: the full 2D DCT, permuted
    full = scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho").reshape(-1)
    np.testing.assert_allclose(op.A(x[None])[0].numpy(), full[op.rows.numpy()], atol=1e-12)
    C = dct_matrix(7)
    torch.testing.assert_close(C @ C.T, torch.eye(7, dtype=F64))


def test_fwht_matches_scipy_hadamard():
    x = torch.randn(2, 16, generator=gen(24), dtype=F64)
    H = torch.from_numpy(scipy.linalg.hadamard(16).astype(np.float64)) / 4
    torch.testing.assert_close(fwht(x), x @ H.T)


def test_row_orthogonal_cs_matrices():
    for op in (SubsampledDCT((1, 8, 8), 20, gen(25)), SubsampledHadamard((1, 8, 8), 20, gen(26))):
        op = op.to(F64)
        AAT = dense(op.AAT, (1, 20))[0]
        torch.testing.assert_close(AAT, torch.eye(20, dtype=F64), rtol=0, atol=1e-12)


def test_gaussian_cs_entries_have_variance_one_over_m():
    op = GaussianCS(400, 100, gen(27))
    assert abs(op.matrix.var().item() * 100 - 1) < 0.02  # 40 000 entries: std of the estimate 0.007
    assert abs(op.matrix.mean().item()) < 0.002


def test_gaussian_kernel_is_a_normalised_sampled_gaussian():
    k = gaussian_kernel(7, 1.5).to(F64)
    w = scipy.signal.windows.gaussian(7, 1.5)
    ref = np.outer(w, w) / np.outer(w, w).sum()
    np.testing.assert_allclose(k.numpy(), ref, atol=1e-7)


def test_motion_kernel_is_a_seeded_normalised_path():
    k1, k2, k3 = motion_kernel(11, gen(28)), motion_kernel(11, gen(28)), motion_kernel(11, gen(29))
    assert torch.equal(k1, k2) and not torch.equal(k1, k3)
    assert bool((k1 >= 0).all()) and abs(k1.sum().item() - 1) < 1e-6
    assert int((k1 > 0).sum()) >= 11  # a path, not a point
    assert k1.max() < 0.5


def test_masks():
    m = random_mask((100, 50), 0.3, gen(30))
    assert m.shape == (100, 50) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert abs(m.mean().item() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 5000)
    assert torch.equal(m, random_mask((100, 50), 0.3, gen(30)))
    b = box_mask((6, 7), (1, 2, 3, 4))
    assert int(b.sum()) == 42 - 12 and int(b[1:4, 2:6].sum()) == 0
