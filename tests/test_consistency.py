"""Data-consistency steps: the identities each paper's step must satisfy, exactly."""
from __future__ import annotations

import pytest
import torch

from diffcourse.physics.matrix import Matrix
from diffcourse.physics.mri import SingleCoilMRI, fft2c
from diffcourse.physics.operators import Downsample, Inpaint, random_mask
from diffcourse.posterior import consistency as C

from _util import gen

F64, C128 = torch.float64, torch.complex128


def mri(seed=0, n=8):
    mask = (torch.rand(n, n, generator=gen(seed)) < 0.4).to(F64)
    return SingleCoilMRI(mask), mask


def test_hard_replace_is_the_inpainting_projection():
    mask = random_mask(6, 0.5, generator=gen(0)).to(F64)
    op = Inpaint(mask)
    x, y = torch.randn(2, 1, 6, 6, generator=gen(1), dtype=F64), torch.randn(2, 1, 6, 6, generator=gen(2), dtype=F64)
    out = C.hard_replace(x, op.A(y), mask)
    torch.testing.assert_close(op.A(out), op.A(y))                       # measured pixels = y
    torch.testing.assert_close(out * (1 - mask), x * (1 - mask))          # the rest untouched
    torch.testing.assert_close(out, C.affine_projection(x, op.A(y), op))


def test_kspace_replacement_is_exact_and_equals_the_unit_gradient_step():
    """Chung & Ye 2022: after DC M F x = y exactly; with orthonormal F it equals x + Aᴴ(y - A x)."""
    op, mask = mri()
    x = torch.randn(2, 1, 8, 8, generator=gen(1), dtype=C128)
    y = op.A(torch.randn(2, 1, 8, 8, generator=gen(2), dtype=C128))
    out = C.kspace_replace(x, y, mask)
    torch.testing.assert_close(mask * fft2c(out), y)
    torch.testing.assert_close(out, x + op.AT(y - op.A(x)))
    torch.testing.assert_close(out, C.affine_projection(x, y, op))


def test_kspace_replacement_of_a_real_image_is_the_real_adjoint_step():
    op, mask = mri()
    x = torch.randn(1, 1, 8, 8, generator=gen(3), dtype=F64)
    y = op.A(torch.randn(1, 1, 8, 8, generator=gen(4), dtype=F64))
    out = C.kspace_replace(x, y, mask)
    assert not out.is_complex()
    torch.testing.assert_close(out, x + op.AT(y - op.A(x)).real)


@pytest.mark.parametrize("lam", [0.3, 0.7])
def test_weighted_projection_is_a_convex_combination_on_measured_coefficients(lam):
    """Song et al. 2022: measured k-space becomes λ y + (1 - λ) F x; unmeasured coefficients are untouched."""
    op, mask = mri(5)
    x = torch.randn(2, 1, 8, 8, generator=gen(6), dtype=C128)
    y = op.A(torch.randn(2, 1, 8, 8, generator=gen(7), dtype=C128))
    k_old, k_new = fft2c(x), fft2c(C.weighted_projection(x, y, op, lam=lam))
    torch.testing.assert_close(mask * k_new, lam * y + (1 - lam) * mask * k_old)
    torch.testing.assert_close((1 - mask) * k_new, (1 - mask) * k_old)


def test_ilvr_low_pass_replacement_with_block_average_is_exact():
    """Choi et al. 2021 with φ = A⁺A (block average, nearest up): φ(x) = φ(y) after the update."""
    op = Downsample(2)
    x = torch.randn(2, 1, 8, 8, generator=gen(8), dtype=F64)
    y = torch.randn(2, 1, 4, 4, generator=gen(9), dtype=F64)
    out = C.low_pass_replace(x, y, op)
    torch.testing.assert_close(op.A(out), y)
    torch.testing.assert_close(op.pinv(op.A(out)), op.pinv(y))
    torch.testing.assert_close(out - op.pinv(op.A(out)), x - op.pinv(op.A(x)))   # high-pass part kept


def test_affine_projection_is_orthogonal_and_cg_agrees():
    A = torch.randn(3, 5, generator=gen(10), dtype=F64)
    op = Matrix(A)
    x, y = torch.randn(4, 5, generator=gen(11), dtype=F64), torch.randn(4, 3, generator=gen(12), dtype=F64)
    out = C.affine_projection(x, y, op)
    torch.testing.assert_close(op.A(out), y)
    null = torch.linalg.svd(A).Vh[3:]                                     # (2, 5) null-space basis
    torch.testing.assert_close((out - x) @ null.T, torch.zeros(4, 2, dtype=F64))
    torch.testing.assert_close(C.affine_projection(out, y, op), out)      # idempotent
    torch.testing.assert_close(C.cg_projection(x, y, op, n_iter=20, tol=1e-12), out)


def test_noisy_measurement_is_the_measurement_of_the_noisy_state():
    op = Matrix(torch.randn(2, 3, generator=gen(13), dtype=F64))
    x0, z = torch.randn(5, 3, generator=gen(14), dtype=F64), torch.randn(5, 3, generator=gen(15), dtype=F64)
    torch.testing.assert_close(C.noisy_measurement(op, op.A(x0), 0.7, z), op.A(x0 + 0.7 * z))


def test_consistency_rejects_a_nonlinear_operator():
    with pytest.raises(TypeError, match="op"):
        C.affine_projection(torch.zeros(1, 2), torch.zeros(1, 2), object())
