"""Reconstructing complex MR images with a prior trained on real magnitude images, and SENSE's pieces.

An MR image is complex, x = |x| exp(i φ), with a smooth phase φ; the course's priors were trained on
real magnitude images in [0, 1]. Two ways to use such a prior:

* **real and imaginary parts apart** (Chung & Ye, MedIA 2022): the state is the real
  2-channel image (Re x, Im x) (:class:`RealImag`) and the real prior denoises each channel as if it
  were an image of its own (:func:`split_denoiser`). The parts m cos φ and m sin φ lie in [-1, 1],
  outside the [0, 1] training range, and are brain images multiplied by smooth signed fields: the
  prior is applied as it is, without any remapping (an affine map to [0, 1] would turn the dark
  background into mid-grey, which the prior has never seen either).
* **phase first** (the phase-constrained reconstruction of partial-Fourier MRI, e.g. Noll, Nishimura
  & Macovski, IEEE TMI 1991): estimate φ from the fully sampled k-space centre (:func:`centre_phase`),
  then solve for a real image ρ with x = ρ exp(i φ̂) (:class:`PhaseModulated`), to which the prior
  applies as trained. Its error floor is the error of φ̂.

Also here: the adjoint of ``A`` for real images (:func:`real_images`, for CG and ADMM baselines) and
the multi-coil data-consistency step of Chung & Ye's hybrid sampler, x + λ Re Aᴴ(y - A x)
(:func:`sense_dc`).
"""
from __future__ import annotations

import torch

from .._validate import check_int, check_op, check_positive, check_tensor
from ..physics.linear import LinearOperator

__all__ = ["to_complex", "from_complex", "RealImag", "PhaseModulated", "split_denoiser", "centre_phase",
           "real_images", "sense_dc"]


def to_complex(x: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) real (Re, Im) -> (B, 1, H, W) complex."""
    check_tensor(x, "x")
    if x.ndim < 2 or x.shape[1] != 2:
        raise ValueError(f"x must have 2 channels (real, imaginary), got shape {tuple(x.shape)}")
    return torch.complex(x[:, :1], x[:, 1:])


def from_complex(z: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) complex (or real) -> (B, 2, H, W) real (Re, Im)."""
    z = check_tensor(z, "z", complex_ok=True)
    return torch.cat([z.real, z.imag if z.is_complex() else torch.zeros_like(z)], 1)


class RealImag(LinearOperator):
    """``op`` on complex images stored as real 2-channel images: A'(x) = op.A(x_re + i x_im), x (B, 2, H, W).

    A real-linear isometry J: (Re, Im) -> Re + i Im makes A' = A J, whose adjoint for the real inner
    product is A'ᵀ y = J⁻¹ Aᴴ y = (Re Aᴴ y, Im Aᴴ y), and A'⁺ = J⁻¹ A⁺ (``op.pinv``, exact where op
    has an SVD).

    >>> from diffcourse.physics.mri import SingleCoilMRI
    >>> op = RealImag(SingleCoilMRI(torch.ones(4, 4)))
    >>> x = torch.rand(1, 2, 4, 4)
    >>> bool(torch.allclose(op.AT(op.A(x)), x, atol=1e-6))
    True
    """

    settings = ("op",)

    def __init__(self, op):
        super().__init__()
        self.op = check_op(op)

    @property
    def in_shape(self):
        s = getattr(self.op, "in_shape", None)
        return None if s is None else (2, *s[1:])

    def A(self, x):
        return self.op.A(to_complex(x))

    def AT(self, y):
        return from_complex(self.op.AT(y))

    def pinv(self, y, **kwargs):
        return from_complex(self.op.pinv(y, **kwargs))

    def measured(self, y):
        return self.op.measured(y)


class PhaseModulated(LinearOperator):
    """A real image ρ (B, 1, H, W) seen through a known phase: A'(ρ) = op.A(ρ exp(i φ)).

    The adjoint for real ρ is A'ᵀ y = Re(exp(-i φ) Aᴴ y). ``phase`` φ: (H, W) or (B | 1, 1, H, W), real.

    >>> from diffcourse.physics.mri import SingleCoilMRI
    >>> op = PhaseModulated(SingleCoilMRI(torch.ones(4, 4)), torch.full((4, 4), 0.7))
    >>> rho = torch.rand(1, 1, 4, 4)
    >>> bool(torch.allclose(op.AT(op.A(rho)), rho, atol=1e-6))
    True
    """

    settings = ("op",)

    def __init__(self, op, phase: torch.Tensor):
        super().__init__()
        self.op = check_op(op)
        phase = check_tensor(phase, "phase", ndim=(2, 4))
        self.register_buffer("phase", phase.reshape(-1, 1, *phase.shape[-2:]))

    @property
    def in_shape(self):
        return getattr(self.op, "in_shape", None)

    def _rotation(self, t: torch.Tensor, name: str) -> torch.Tensor:
        """exp(i φ) in t's precision, on t's device (B | 1, 1, H, W)."""
        phase = self._match(self.phase, t, name)
        return torch.polar(torch.ones_like(phase), phase)

    def A(self, x):
        check_tensor(x, "x")
        return self.op.A(x * self._rotation(x, "x"))

    def AT(self, y):
        return (self._rotation(y, "y").conj() * self.op.AT(y)).real


def split_denoiser(D):
    """The real prior D on the real and imaginary channels separately (Chung & Ye, MedIA 2022).

    D2(x, σ) for x (B, C, H, W) runs D once on the (B C, 1, H, W) batch of single channels (a σ of
    shape (B,) is repeated per channel) and stacks the results back: (B, C, H, W).

    >>> D2 = split_denoiser(lambda x, sigma: 0.5 * x)
    >>> D2(torch.ones(3, 2, 4, 4), torch.ones(3)).shape
    torch.Size([3, 2, 4, 4])
    """
    def D2(x: torch.Tensor, sigma):
        b, c = x.shape[:2]
        if isinstance(sigma, torch.Tensor) and sigma.ndim > 0 and sigma.numel() == b:
            sigma = sigma.reshape(b).repeat_interleave(c)
        return D(x.reshape(b * c, 1, *x.shape[2:]), sigma).reshape(x.shape)
    return D2


def centre_phase(op, y: torch.Tensor, n_center: int) -> torch.Tensor:
    """φ̂ = angle of Aᴴ(y on the ``n_center`` central k-space columns): the low-resolution phase, (B, 1, H, W).

    The central columns (the auto-calibration lines, ``size // 2 - n_center // 2`` onwards, as
    :func:`diffcourse.physics.masks.cartesian_mask` places them) are fully sampled, so their
    zero-filled image is a blurred but alias-free x, whose phase is close to that of x wherever
    |x| is not small (Noll, Nishimura & Macovski, IEEE TMI 1991). Multi-coil: Aᴴ combines the coils.
    """
    check_op(op)
    check_tensor(y, "y", complex_ok=True)
    n_center = check_int(n_center, "n_center")
    W = y.shape[-1]
    if n_center > W:
        raise ValueError(f"n_center must be <= the number of columns {W}, got {n_center}")
    keep = torch.zeros(W, dtype=torch.bool, device=y.device)
    start = W // 2 - n_center // 2
    keep[start:start + n_center] = True
    return op.AT(y * keep).angle()


class _RealImages:
    def __init__(self, op):
        self.op = op

    def A(self, x):
        return self.op.A(x)

    def AT(self, y):
        return self.op.AT(y).real


def real_images(op):
    """``op`` restricted to real images: the same ``A``, adjoint Re Aᴴ (for CG and ADMM baselines)."""
    return _RealImages(check_op(op))


def sense_dc(op, lam: float = 1.0):
    """Chung & Ye's multi-coil consistency step (MedIA 2022: the SENSE step of their hybrid
    sampler): dc(x, y) = x + λ Aᵀ(y - A x), the real part of Aᴴ for a real state.

    With Σ|S_i|² = 1 the normal operator AᵀA is at most I, so λ <= 1 never overshoots; unlike the
    projection onto {A x = y} (which, for noisy multi-coil data with more equations than unknowns, is
    the least-squares SENSE image itself) it only moves x towards the data.
    """
    check_op(op)
    lam = check_positive(lam, "lam")

    def dc(x, y):
        g = op.AT(y - op.A(x))
        return x + lam * (g.real if g.is_complex() and not x.is_complex() else g)
    return dc
