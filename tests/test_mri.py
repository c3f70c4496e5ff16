"""Cartesian MRI: centred FFT, complex adjointness, dense oracles, coil maps, masks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffcourse.physics.linear import inner
from diffcourse.physics.mri import (MultiCoilMRI, SingleCoilMRI, cartesian_mask,
                                    coil_sensitivities, fft2c, ifft2c, rss,
                                    variable_density_mask)

from _util import gen

F64, C128 = torch.float64, torch.complex128


def crandn(*shape, seed=0):
    g = gen(seed)
    return torch.complex(torch.randn(shape, generator=g, dtype=F64),
                         torch.randn(shape, generator=g, dtype=F64))


def cdot(a, b):  # complex per-sample inner product <a, b> = sum conj(a) b
    return (a.conj() * b).flatten(1).sum(1)


def make_single(size=8, seed=1):
    return SingleCoilMRI(cartesian_mask(size, 4, 0.25, generator=gen(seed))).to(F64)


def make_multi(size=8, coils=3, seed=2):
    mask = cartesian_mask(size, 2, 0.25, generator=gen(seed))
    return MultiCoilMRI(mask, coil_sensitivities(coils, size, dtype=C128)).to(F64)


def dense(fn, shape):
    n = math.prod(shape[1:])
    basis = torch.eye(n, dtype=C128).reshape(n, *shape[1:])
    return fn(basis).reshape(n, -1).T


def test_fft2c_is_the_unitary_centred_fft():
    x = crandn(2, 1, 6, 5, seed=3)
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1))),
                          axes=(-2, -1)) / math.sqrt(30)
    np.testing.assert_allclose(fft2c(x).numpy(), ref, atol=1e-13)
    torch.testing.assert_close(ifft2c(fft2c(x)), x)
    torch.testing.assert_close(fft2c(x).abs().pow(2).sum(), x.abs().pow(2).sum())  # Parseval
    # the DC coefficient sits in the centre
    k = fft2c(torch.ones(1, 1, 6, 5, dtype=F64))
    assert k[0, 0, 3, 2].real.item() == pytest.approx(math.sqrt(30)) and k.abs().sum() == pytest.approx(math.sqrt(30))


@pytest.mark.parametrize("make, y_channels", [(make_single, 1), (make_multi, 3)])
def test_complex_adjointness(make, y_channels):
    op = make()
    x, y = crandn(2, 1, 8, 8, seed=4), crandn(2, y_channels, 8, 8, seed=5)
    lhs, rhs = cdot(op.A(x), y), cdot(x, op.AT(y))
    assert ((lhs - rhs).abs() / rhs.abs()).max() < 1e-10  # real and imaginary parts


@pytest.mark.parametrize("make, y_channels", [(make_single, 1), (make_multi, 3)])
def test_real_image_adjoint_is_the_real_part(make, y_channels):
    op = make()
    x = torch.randn(2, 1, 8, 8, generator=gen(6), dtype=F64)
    y = crandn(2, y_channels, 8, 8, seed=7)
    lhs, rhs = inner(op.A(x), y), inner(x, op.AT_real(y))
    assert ((lhs - rhs).abs() / rhs.abs()).max() < 1e-10
    assert op.AT_real(y).dtype == F64


@pytest.mark.parametrize("make", [make_single, make_multi])
def test_dense_matrix_of_AT_is_conjugate_transpose_of_A(make):
    op = make(size=6)
    M = dense(op.A, (1, 1, 6, 6))
    MH = dense(op.AT, (1, op.A(torch.zeros(1, 1, 6, 6, dtype=C128)).shape[1], 6, 6))
    assert M.abs().max() > 0
    torch.testing.assert_close(MH, M.conj().T, rtol=0, atol=1e-13)


def test_single_coil_normal_operator_is_a_projection_and_svd_holds():
    op = make_single()
    x = crandn(2, 1, 8, 8, seed=8)
    P = op.ATA
    torch.testing.assert_close(P(P(x)), P(x), rtol=0, atol=1e-13)
    svd = op.svd()
    torch.testing.assert_close(svd.U(svd.s * svd.VT(x)), op.A(x), rtol=0, atol=1e-13)
    y = op.A(x)
    torch.testing.assert_close(op.pinv(y), op.AT(y), rtol=0, atol=1e-13)  # zero-filled = A^+ y
    assert op.norm(generator=gen(9)).item() == pytest.approx(1.0, abs=1e-6)


def test_multi_coil_fully_sampled_is_an_isometry():
    S = coil_sensitivities(4, 8, dtype=C128)
    op = MultiCoilMRI(torch.ones(8, 8), S).to(F64)
    x = crandn(2, 1, 8, 8, seed=10)
    torch.testing.assert_close(op.AT(op.A(x)), x, rtol=0, atol=1e-13)  # A^H A = sum |S_i|^2 = I
    # each coil image is S_i x, and their root sum of squares recovers |x|
    coil_images = ifft2c(op.A(x))
    torch.testing.assert_close(coil_images, S * x, rtol=0, atol=1e-13)
    torch.testing.assert_close(rss(coil_images), x.abs(), rtol=0, atol=1e-13)


def test_multi_coil_pinv_matches_dense_pseudo_inverse():
    op = make_multi(size=6, coils=2)
    y = op.A(crandn(1, 1, 6, 6, seed=11))
    ref = torch.linalg.pinv(dense(op.A, (1, 1, 6, 6))) @ y.reshape(-1)
    p = op.pinv(y, tol=1e-14, n_iter=500)
    torch.testing.assert_close(p.reshape(-1), ref, rtol=0, atol=1e-9)


def test_coil_sensitivities_are_normalised_smooth_and_distinct():
    S = coil_sensitivities(6, 32, dtype=C128)
    assert S.shape == (6, 32, 32) and S.dtype == C128
    torch.testing.assert_close(S.abs().pow(2).sum(0), torch.ones(32, 32, dtype=F64))
    assert S.diff(dim=-1).abs().max() < 0.25 and S.diff(dim=-2).abs().max() < 0.25  # smooth
    peaks = [divmod(int(s.abs().argmax()), 32) for s in S]
    assert len(set(peaks)) == 6  # each coil sees a different region


def test_to_float64_keeps_the_imaginary_part_of_the_coil_maps():
    mask = torch.ones(8, 8)
    S = coil_sensitivities(3, 8)  # complex64
    x = crandn(1, 1, 8, 8, seed=12)
    ref = MultiCoilMRI(mask, S.to(C128)).A(x)
    ours = MultiCoilMRI(mask, S).to(F64).A(x)
    assert ours.dtype == C128
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    assert MultiCoilMRI(mask, S).A(x.to(torch.complex64)).dtype == torch.complex64


def test_batch_invariance_and_per_sample_masks():
    masks = torch.stack([cartesian_mask(8, 4, 0.25, generator=gen(s)) for s in (13, 14)])[:, None]
    op = MultiCoilMRI(masks, coil_sensitivities(2, 8, dtype=C128)).to(F64)
    x = crandn(2, 1, 8, 8, seed=15)
    y = op.A(x)
    for i in range(2):
        single = MultiCoilMRI(masks[i, 0], coil_sensitivities(2, 8, dtype=C128)).to(F64)
        torch.testing.assert_close(single.A(x[i:i + 1]), y[i:i + 1], rtol=0, atol=1e-14)
        torch.testing.assert_close(single.AT(y[i:i + 1]), op.AT(y)[i:i + 1], rtol=0, atol=1e-14)


@pytest.mark.parametrize("kind", ["random", "equispaced"])
@pytest.mark.parametrize("R", [4, 8])
def test_cartesian_masks(kind, R):
    size = 64
    m = cartesian_mask(size, R, 0.08, kind=kind, generator=gen(16))
    assert m.shape == (size, size)
    assert torch.equal(m, m[:1].expand(size, size))  # whole lines (columns)
    assert int(m[0].sum()) == round(size / R)
    centre = round(size * 0.08)
    assert bool(m[0, size // 2 - centre // 2: size // 2 - centre // 2 + centre].all())
    again = cartesian_mask(size, R, 0.08, kind=kind, generator=gen(16))
    assert torch.equal(m, again)
    if kind == "random":
        other = cartesian_mask(size, R, 0.08, kind=kind, generator=gen(17))
        assert not torch.equal(m, other)
    else:  # evenly spread: the gaps between sampled lines outside the centre differ by at most 2
        cols = m[0].nonzero().squeeze(1)
        gaps = cols.diff()
        outside = gaps[gaps > 1]
        assert outside.max() - outside.min() <= 2


@pytest.mark.parametrize("R", [4, 8])
def test_variable_density_mask(R):
    size = 96
    m = variable_density_mask(size, R, generator=gen(18))
    n = size * size
    assert abs(m.mean().item() - 1 / R) < 4 * math.sqrt((1 / R) * (1 - 1 / R) / n)
    c = size // 2
    assert m[c, c] == 1 and bool(m[c - 2:c + 3, c].all())  # the centre is sampled
    t = torch.arange(size) - c
    r = (t[:, None] ** 2 + t[None, :] ** 2).sqrt()
    inner_ring, outer_ring = m[(r > 8) & (r < 20)].mean(), m[(r > 35) & (r < 48)].mean()
    assert inner_ring > 1.5 * outer_ring  # density falls off with the frequency
