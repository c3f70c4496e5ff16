"""Data-consistency steps: move a state x onto (or towards) the measurements, {x : A x = y}.

Each is a short pure function of the state ``x`` (B, ...), the measurement ``y`` and the operator
(or its mask); none calls a network. The solvers of :mod:`diffcourse.posterior.solvers` apply them
after (or before) a sampler step, usually with ``y`` replaced by a measurement noised to the current
level (:func:`noisy_measurement`), so that the state stays on the noisy data manifold.

For an operator whose rows are orthonormal up to a mask (inpainting, Cartesian MRI, block-average
downsampling up to a scale) all of these are the same orthogonal projection
x + A⁺(y - A x) = (I - A⁺A) x + A⁺ y, written in the domain where each paper writes it:

* :func:`hard_replace` — pixels, (1 - m) x + m y (inpainting);
* :func:`kspace_replace` — k-space, F⁻¹[(1 - M) F x + M y] (Chung & Ye, MedIA 2022);
* :func:`weighted_projection` — λ-weighted merge, x + λ A⁺(y - A x) (Song et al., ICLR 2022);
* :func:`low_pass_replace` — φ(y) + (I - φ) x, φ = A⁺A (ILVR, Choi et al., ICCV 2021);
* :func:`affine_projection` — onto {A x = y} (MCG, Chung et al., NeurIPS 2022);
* :func:`cg_projection` — the same for any linear operator, A⁺ by conjugate gradients (CGLS).

>>> import torch
>>> from diffcourse.physics.operators import Inpaint
>>> m = torch.tensor([[1.0, 0.0]])
>>> x, y = torch.zeros(1, 1, 1, 2), torch.full((1, 1, 1, 2), 5.0)
>>> hard_replace(x, y, m)
tensor([[[[5., 0.]]]])
>>> affine_projection(x, Inpaint(m).A(y), Inpaint(m))
tensor([[[[5., 0.]]]])
"""
from __future__ import annotations

import torch

from .._linalg import cgls
from .._validate import check_int, check_op, check_positive, check_tensor
from ..physics.mri import fft2c, ifft2c

__all__ = ["noisy_measurement", "hard_replace", "kspace_replace", "weighted_projection", "low_pass_replace",
           "affine_projection", "cg_projection"]


def _real_like(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Keep a real state real: Re(v) when x is real and v complex."""
    return v.real if v.is_complex() and not x.is_complex() else v


def noisy_measurement(op, y: torch.Tensor, sigma, z: torch.Tensor) -> torch.Tensor:
    """y_σ = y + σ A(z), z ~ N(0, I) in image space: the measurement of the noisy state x_σ = x0 + σ z.

    (Song et al., ICLR 2022, ŷ_t = ŷ + σ_t T(ξ); MCG's and ILVR's q_sample of y.) For a linear A,
    A x_σ = A x0 + σ A z, so y_σ has the distribution of A x_σ (plus the measurement noise of y).
    ``sigma``: a number or a tensor broadcastable against y. z: shaped like x.

    >>> from diffcourse.physics.operators import Identity
    >>> noisy_measurement(Identity(), torch.zeros(1, 2), 0.5, torch.ones(1, 2))
    tensor([[0.5000, 0.5000]])
    """
    return y + sigma * op.A(z)


def hard_replace(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pixel replacement (1 - m) x + m y: the projection onto {m x = m y} for a 0/1 mask m.

    Used for inpainting by score-SDE (Song et al., ICLR 2021, App. I), MCG's inpainting code and
    score-MRI's inpainting experiments. x, y (B, ...); mask broadcastable (e.g. (H, W) or (1, 1, H, W)).
    """
    m = mask.to(device=x.device, dtype=x.real.dtype if x.is_complex() else x.dtype)
    return (1 - m) * x + m * y


def kspace_replace(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """k-space POCS step x ← F⁻¹[(1 - M) F x + M y] (Chung & Ye, MedIA 2022, Eq. 11).

    F is the centred orthonormal 2-D FFT (:func:`diffcourse.physics.mri.fft2c`), M the sampling mask,
    y the measured k-space (zeros off the mask). For a complex x the result satisfies M F x = M y
    exactly. For a real x (the course's magnitude images) the real part is returned: it is the same
    step x + Re Aᴴ(y - A x) taken with the adjoint of A restricted to real images, and keeps the state
    real; M F x = y then holds exactly only when y is the k-space of a real image on a mask symmetric
    under k → -k, otherwise in the least-squares sense over real images.
    x (B, C, H, W) real or complex; y (B|1, C, H, W) complex; mask (H, W) or (B|1, 1, H, W).
    """
    m = mask.to(device=x.device, dtype=x.real.dtype if x.is_complex() else x.dtype)
    k = fft2c(x)
    return _real_like(ifft2c((1 - m) * k + m * y), x)


def weighted_projection(x: torch.Tensor, y: torch.Tensor, op, *, lam: float = 1.0) -> torch.Tensor:
    """λ-weighted data consistency x ← x + λ A⁺(y - A x) (Song, Shen, Xing & Ermon, ICLR 2022, Eq. 9).

    For A = P(Λ) T with T unitary (MRI: T = F; CT: the Fourier-slice transform) this is the paper's
    merge T⁻¹[λ Λ y + (1 - λ) Λ T x + (I - Λ) T x]: measured coefficients become the convex
    combination λ y + (1 - λ) T x, unmeasured ones are untouched. λ = 1 is the projection onto
    {A x = y}. A⁺ is ``op.pinv`` (exact through an SVD where the operator has one, else CGLS).
    """
    check_op(op)
    lam = check_positive(lam, "lam")
    return x + lam * _real_like(op.pinv(y - op.A(x)), x)


def low_pass_replace(x: torch.Tensor, y: torch.Tensor, op) -> torch.Tensor:
    """ILVR's refinement x ← φ(y) + (I - φ) x with φ = A⁺A (Choi et al., ICCV 2021, Eq. 8).

    The paper's φ_N = up_N ∘ down_N of a reference image; here the reference is the measurement y
    (e.g. ``Downsample(N)``'s low-resolution image) and φ(reference) = A⁺ y. With block-average A,
    A⁺ is nearest-neighbour upsampling, φ an orthogonal projector, and A x = y exactly after the
    update (with a bicubic resizer, as in the official code, φ is not idempotent and it holds only
    approximately). Equals :func:`affine_projection`.
    """
    check_op(op)
    return _real_like(op.pinv(y), x) + x - _real_like(op.pinv(op.A(x)), x)


def affine_projection(x: torch.Tensor, y: torch.Tensor, op) -> torch.Tensor:
    """Orthogonal projection onto {x : A x = y}, x + A⁺(y - A x) (MCG, Chung et al., NeurIPS 2022, Eq. 15).

    MCG applies it with y noised to the level of x (:func:`noisy_measurement`); with y in the range
    of A the result satisfies A x = y. A⁺ is ``op.pinv``.
    """
    return weighted_projection(x, y, op, lam=1.0)


def cg_projection(x: torch.Tensor, y: torch.Tensor, op, *, n_iter: int = 50, tol: float = 1e-6) -> torch.Tensor:
    """Least-squares data consistency x + A⁺(y - A x), A⁺ by CGLS (Paige & Saunders, ACM TOMS 1982).

    For any linear operator with ``A`` and ``AT`` (CT, multi-coil MRI, blur): the minimum-norm
    correction Δ = argmin ||A Δ - (y - A x)||, per sample, after ``n_iter`` iterations or at ``tol``.
    """
    check_op(op)
    check_tensor(x, "x", complex_ok=True)
    check_int(n_iter, "n_iter")
    return x + _real_like(cgls(op.A, op.AT, y - op.A(x), n_iter=n_iter, tol=tol), x)
