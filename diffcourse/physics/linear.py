"""The linear-operator base class: ``A``, ``AT``, ``pinv``, ``norm`` and (where cheap) ``svd``.

Every linear forward model of the course is a :class:`LinearOperator`: a ``torch.nn.Module`` whose
fixed data (masks, kernels, matrices) are buffers, so ``op.to(device)`` and ``op.to(torch.float64)``
work, acting on a batch ``(B, ...)`` one sample at a time. Inner products are per sample,
``<a, b> = Re sum conj(a) * b`` over all but the batch dimension, so the same code serves real and
complex (MRI) operators.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .._linalg import cgls, inner, per_sample
from .._validate import check_int, check_mask, check_same_device, check_tensor  # noqa: F401 (re-exported)
from .base import Operator

__all__ = ["SVD", "LinearOperator", "inner", "cgls"]


@dataclass(frozen=True)
class SVD:
    """A compact singular value decomposition ``A = U diag(s) V^T`` given by functions.

    ``VT(x)`` maps an input to its coefficients (shape ``c``), ``V`` maps coefficients back
    (``V^T V = I``), ``UT(y)`` maps a measurement to coefficients, ``U`` back (``U^T U = I``), and
    ``s`` (non-negative) broadcasts against the coefficients, so ``A x = U(s * VT(x))``. For complex
    operators (MRI) ``VT``/``UT`` are the conjugate transposes ``V^H``/``U^H``.
    """

    U: Callable[[torch.Tensor], torch.Tensor]
    UT: Callable[[torch.Tensor], torch.Tensor]
    V: Callable[[torch.Tensor], torch.Tensor]
    VT: Callable[[torch.Tensor], torch.Tensor]
    s: torch.Tensor

    def pinv(self, y: torch.Tensor, rcond: float | None = None) -> torch.Tensor:
        """Moore-Penrose pseudo-inverse ``V diag(1/s) U^T y``, dropping ``s <= rcond * max(s)``.

        ``rcond`` defaults to ``1000 * eps`` of ``y``'s precision (the numerical rank); the largest
        ``s`` is taken per sample.
        """
        c = self.UT(y)
        real = c.real.dtype if c.is_complex() else c.dtype
        if rcond is None:
            rcond = 1e3 * torch.finfo(real).eps
        s = self.s.to(device=c.device, dtype=real).expand(c.shape)
        smax = s.flatten(1).amax(1)  # per sample
        keep = s > rcond * per_sample(smax, s)
        s_inv = torch.where(keep, 1.0 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
        return self.V(s_inv * c)


class LinearOperator(Operator):
    """A linear forward model ``y = A x`` with its adjoint, pseudo-inverse and norm.

    Subclasses implement ``A(x)`` and ``AT(y)`` (the exact adjoint: ``<A x, y> = <x, AT y>``) and,
    where cheap, ``svd(x=None)``. ``in_shape`` is the shape of one input sample when the operator
    knows it (then ``norm()`` and ``svd()`` need no example input), else ``None``.

    >>> from diffcourse.physics.operators import Identity
    >>> x = torch.randn(2, 1, 4, 4)
    >>> bool(torch.equal(Identity().pinv(x), x))
    True
    """

    in_shape: tuple[int, ...] | None = None
    linear = True

    def AT(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def ATA(self, x: torch.Tensor) -> torch.Tensor:
        """``A^T A x`` (the normal operator)."""
        return self.AT(self.A(x))

    def AAT(self, y: torch.Tensor) -> torch.Tensor:
        """``A A^T y``."""
        return self.A(self.AT(y))

    def svd(self, x: torch.Tensor | None = None) -> SVD | None:
        """An exact :class:`SVD` where one is cheap, else ``None``. ``x``: an example input."""
        return None

    def pinv(self, y: torch.Tensor, *, tol: float = 1e-6, n_iter: int = 100) -> torch.Tensor:
        """Pseudo-inverse ``A^+ y``: through the SVD when there is one, else :meth:`pinv_cg`.

        Without an SVD (CT, multi-coil MRI, zero-padded blur) this is CGLS from 0 stopped after
        ``n_iter`` iterations or at ``tol``: it converges to ``A^+ y``, but slowly on
        ill-conditioned operators (sparse-view CT), and the default 100 iterations then return an
        early-stopped, regularised least-squares solution (Landweber/CG semi-convergence; Hansen,
        *Discrete Inverse Problems*, 2010, ch. 6), not ``A^+ y`` itself. Raise ``n_iter`` for the
        pseudo-inverse proper.
        """
        svd = self.svd()
        if svd is None:
            return self.pinv_cg(y, tol=tol, n_iter=n_iter)
        return svd.pinv(y)

    def pinv_cg(self, y: torch.Tensor, *, tol: float = 1e-6, n_iter: int = 100) -> torch.Tensor:
        """Minimum-norm least squares ``argmin ||x|| s.t. A^T A x = A^T y`` by CGLS from 0."""
        return cgls(self.A, self.AT, y, n_iter=n_iter, tol=tol)

    def norm(self, x: torch.Tensor | None = None, *, n_iter: int = 50,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Operator norm ``||A||_2`` per sample by power iteration on ``A^T A``: -> (B,).

        ``x`` is an example input (only its shape, dtype and device are used); it may be omitted
        when the operator knows ``in_shape``. Von Mises (1929).
        """
        x = self._example(x)
        v = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        for _ in range(int(n_iter)):
            v = v / per_sample(inner(v, v).sqrt().clamp_min(1e-30), v)
            v = self.ATA(v)
        v = v / per_sample(inner(v, v).sqrt().clamp_min(1e-30), v)
        Av = self.A(v)
        return inner(Av, Av).sqrt()

    def _example(self, x: torch.Tensor | None) -> torch.Tensor:
        """An example input: ``x`` itself, or zeros of ``(1, *in_shape)`` on the buffers' device."""
        if x is not None:
            return check_tensor(x, "x", complex_ok=True)
        if self.in_shape is None:
            raise ValueError(f"x: {type(self).__name__} does not know its input shape; pass an "
                             f"example input x (only its shape, dtype and device are used)")
        buffers = list(self.buffers())
        ref = next((b for b in buffers if b.is_floating_point()), None)
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        device = buffers[0].device if buffers else None
        return torch.zeros((1, *self.in_shape), dtype=dtype, device=device)

    def _match(self, t: torch.Tensor, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Buffer ``t`` on ``x``'s device check and cast to ``x``'s real dtype."""
        check_same_device(t, x, "the operator", name)
        real = x.real.dtype if x.is_complex() else x.dtype
        return t.to(real) if t.is_floating_point() else t
