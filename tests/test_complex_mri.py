"""Complex MR images with a real prior: the smooth phase, the (Re, Im) and phase-modulated operators
(adjointness against dense matrices, pseudo-inverse), the channel-split denoiser, the centre phase
estimate, and the SENSE consistency step."""
from __future__ import annotations

import math

import pytest
import torch

from diffcourse.physics.linear import inner
from diffcourse.physics.mri import MultiCoilMRI, SingleCoilMRI, cartesian_mask, coil_sensitivities, smooth_phase
from diffcourse.posterior.complex_mri import (PhaseModulated, RealImag, centre_phase, from_complex, real_images,
                                              sense_dc, split_denoiser, to_complex)
from diffcourse.posterior.consistency import kspace_replace

from _util import gen

F64, C128 = torch.float64, torch.complex128


def crandn(*shape, seed=0):
    g = gen(seed)
    return torch.complex(torch.randn(shape, generator=g, dtype=F64), torch.randn(shape, generator=g, dtype=F64))


def single(size=8, seed=1):
    return SingleCoilMRI(cartesian_mask(size, 4, 0.25, generator=gen(seed))).to(F64)


def multi(size=8, coils=3, seed=2):
    mask = cartesian_mask(size, 2, 0.25, generator=gen(seed))
    return MultiCoilMRI(mask, coil_sensitivities(coils, size, dtype=C128)).to(F64)


# ---------------------------------------------------------------- the smooth random phase
def test_smooth_phase_range_band_and_determinism():
    phi = smooth_phase(3, 32, max_freq=2, amplitude=2.0, generator=gen(0))
    assert phi.shape == (3, 1, 32, 32) and phi.dtype == torch.get_default_dtype()
    torch.testing.assert_close(phi.abs().flatten(1).amax(1), torch.full((3,), 2.0))
    spec = torch.fft.fft2(phi.double()).abs()                               # only |k| <= 2 cycles per FOV
    k = torch.fft.fftfreq(32) * 32
    inside = (k.abs() <= 2)[:, None] & (k.abs() <= 2)[None, :]
    assert spec[..., ~inside].max() < 1e-6 * spec.max()                     # float32 rounding only
    assert phi.diff(dim=-1).abs().max() <= 2 * math.pi * 2 * 2.0 / 32        # Bernstein: degree 2, amplitude 2
    assert torch.equal(phi, smooth_phase(3, 32, max_freq=2, amplitude=2.0, generator=gen(0)))
    assert not torch.equal(phi, smooth_phase(3, 32, max_freq=2, amplitude=2.0, generator=gen(1)))
    g = gen(0)                                                                # a batch of 3 = 3 batches of 1
    one_by_one = torch.cat([smooth_phase(1, 32, max_freq=2, amplitude=2.0, generator=g) for _ in range(3)])
    torch.testing.assert_close(one_by_one, phi, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kwargs, words", [({"max_freq": 16}, "max_freq"), ({"amplitude": 0.0}, "amplitude"),
                                           ({"max_freq": -1}, "max_freq")])
def test_smooth_phase_rejects_bad_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        smooth_phase(1, 32, **kwargs)


# ---------------------------------------------------------------- operators on real parametrisations
def dense_real(fn, shape):
    """The real matrix of a real-linear map from real inputs of ``shape`` to (complex) outputs, as R^2m."""
    n = math.prod(shape[1:])
    basis = torch.eye(n, dtype=F64).reshape(n, *shape[1:])
    out = fn(basis).reshape(n, -1)
    return (torch.cat([out.real, out.imag], 1) if out.is_complex() else out).T


@pytest.mark.parametrize("make", [single, multi])
def test_real_imag_is_the_complex_operator_and_its_adjoint(make):
    op = make()
    wrapped = RealImag(op)
    z = crandn(2, 1, 8, 8, seed=3)
    torch.testing.assert_close(wrapped.A(from_complex(z)), op.A(z))
    torch.testing.assert_close(to_complex(from_complex(z)), z)
    y = op.A(crandn(2, 1, 8, 8, seed=4))
    x2 = torch.randn(2, 2, 8, 8, generator=gen(5), dtype=F64)
    lhs, rhs = inner(wrapped.A(x2), y), inner(x2, wrapped.AT(y))        # real inner products
    assert ((lhs - rhs).abs() / rhs.abs()).max() < 1e-12
    M = dense_real(wrapped.A, (1, 2, 8, 8))
    yy = y[:1]
    ref = torch.linalg.pinv(M) @ torch.cat([yy.real.flatten(), yy.imag.flatten()])
    torch.testing.assert_close(wrapped.pinv(yy, tol=1e-14, n_iter=500).flatten(), ref, rtol=0, atol=1e-8)


@pytest.mark.parametrize("make", [single, multi])
def test_phase_modulated_adjoint_and_exactness_with_the_true_phase(make):
    op = make()
    phase = smooth_phase(2, 8, max_freq=1, generator=gen(6)).to(F64)
    mod = PhaseModulated(op, phase)
    rho = torch.rand(2, 1, 8, 8, generator=gen(7), dtype=F64)
    torch.testing.assert_close(mod.A(rho), op.A(rho * torch.exp(1j * phase)))  # x = rho e^{i phi}
    y = op.A(crandn(2, 1, 8, 8, seed=8))
    lhs, rhs = inner(mod.A(rho), y), inner(rho, mod.AT(y))
    assert ((lhs - rhs).abs() / rhs.abs()).max() < 1e-12
    assert mod.AT(y).dtype == F64
    one = PhaseModulated(op, phase[0, 0])                                     # (H, W) phase, one sample
    torch.testing.assert_close(one.A(rho[:1]), mod.A(rho)[:1])
    first = PhaseModulated(op, phase[:1])
    M = dense_real(first.A, (1, 1, 8, 8))                                    # its real matrix, (2m, n)
    y0 = y[:1]
    torch.testing.assert_close(first.AT(y0).flatten(), M.T @ torch.cat([y0.real.flatten(), y0.imag.flatten()]))


def test_real_images_adjoint_is_the_real_part():
    op = multi()
    x = torch.randn(2, 1, 8, 8, generator=gen(9), dtype=F64)
    y = crandn(2, 3, 8, 8, seed=10)
    r = real_images(op)
    assert ((inner(r.A(x), y) - inner(x, r.AT(y))).abs() < 1e-10).all() and r.AT(y).dtype == F64


# ---------------------------------------------------------------- the channel-split prior
def test_split_denoiser_denoises_each_channel_with_its_images_sigma():
    seen = []

    def D(x, sigma):  # a per-image shrinkage that depends on sigma: x / (1 + sigma^2)
        seen.append((x.shape, sigma))
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
        return x / (1 + s ** 2) + x.mean((1, 2, 3), keepdim=True)
    x = torch.randn(3, 2, 4, 4, generator=gen(11), dtype=F64)
    sigma = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    out = split_denoiser(D)(x, sigma)
    assert seen[0][0] == (6, 1, 4, 4) and torch.equal(seen[0][1], sigma.repeat_interleave(2))
    for b in range(3):
        for c in range(2):
            seen.clear()
            torch.testing.assert_close(out[b, c], D(x[b:b + 1, c:c + 1], sigma[b:b + 1])[0, 0])
    torch.testing.assert_close(split_denoiser(D)(x, 0.7)[:, :1], D(x[:, :1], 0.7))     # a scalar sigma


# ---------------------------------------------------------------- the phase from the k-space centre
def test_centre_phase_recovers_a_smooth_phase_where_the_image_is_bright():
    size = 32
    t = torch.linspace(-1, 1, size, dtype=F64)
    mag = torch.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / 0.3)[None, None]   # a smooth blob
    phase = smooth_phase(1, size, max_freq=1, amplitude=2.0, generator=gen(12)).to(F64)
    x = mag * torch.exp(1j * phase)
    mask = cartesian_mask(size, 4, 0.25, generator=gen(13))
    op = MultiCoilMRI(mask, coil_sensitivities(4, size, dtype=C128)).to(F64)
    est = centre_phase(op, op.A(x), n_center=8)
    err = torch.angle(torch.exp(1j * (est - phase)))
    bright = mag > 0.3
    assert err[bright].abs().max() < 0.1
    wrong = centre_phase(op, op.A(x), n_center=1)                            # DC only: a blurred phase
    assert torch.angle(torch.exp(1j * (wrong - phase)))[bright].abs().max() > err[bright].abs().max()
    with pytest.raises(ValueError, match="n_center"):
        centre_phase(op, op.A(x), n_center=size + 1)


# ---------------------------------------------------------------- the SENSE consistency step
def test_sense_dc_is_kspace_replacement_for_one_coil_and_reduces_the_residual():
    op = single()
    x = torch.randn(2, 1, 8, 8, generator=gen(14), dtype=F64)
    y = op.A(crandn(2, 1, 8, 8, seed=15))
    torch.testing.assert_close(sense_dc(op)(x, y), kspace_replace(x, y, op.mask))
    mop = multi()
    y = mop.A(torch.rand(2, 1, 8, 8, generator=gen(16), dtype=F64))
    step = sense_dc(mop, lam=1.0)(x, y)
    res = lambda v: (y - mop.A(v)).abs().flatten(1).norm(dim=1)  # noqa: E731
    assert bool((res(step) < res(x)).all())
    full = MultiCoilMRI(torch.ones(8, 8), coil_sensitivities(3, 8, dtype=C128)).to(F64)  # A^H A = I
    torch.testing.assert_close(sense_dc(full)(x, full.A(2 * x)), 2 * x)
    with pytest.raises(ValueError, match="lam"):
        sense_dc(op, lam=0.0)
