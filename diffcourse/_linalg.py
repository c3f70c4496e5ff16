"""Per-sample linear algebra shared by ``physics/`` and ``posterior/``: inner products and CG.

Every tensor here has a leading batch axis (B, ...), and every reduction is per sample: the inner
product ``<a, b> = Re sum conj(a) * b`` is taken over all but the batch axis, so real and complex
(MRI) data are served by the same code, and each sample of a batch runs its own conjugate-gradient
iteration with its own step sizes and its own stopping test. A sample that has stopped is left
untouched, so a batch of two gives exactly the result of two batches of one.

This module sits beside ``prior/`` and ``physics/`` (which never import each other) so that both
they and ``posterior/`` can use one CG.

>>> M = torch.tensor([[4., 1.], [1., 3.]])
>>> cg(lambda x: x @ M, torch.tensor([[1., 2.]]))
tensor([[0.0909, 0.6364]])
"""
from __future__ import annotations

from typing import Callable

import torch

from ._validate import check_int, check_nonnegative, check_positive, check_tensor

__all__ = ["inner", "per_sample", "cg", "cgls"]

Op = Callable[[torch.Tensor], torch.Tensor]


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample real inner product ``Re <a, b> = Re sum(conj(a) * b)``: (B, ...) x (B, ...) -> (B,).

    >>> inner(torch.tensor([[1., 2.], [3., 4.]]), torch.tensor([[1., 1.], [0., 1.]]))
    tensor([3., 4.])
    """
    return (a.conj() * b).real.flatten(1).sum(1)


def per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1), broadcastable against ``like`` (B, ...).

    >>> per_sample(torch.ones(2), torch.zeros(2, 3, 4)).shape
    torch.Size([2, 1, 1])
    """
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def cg(M: Op, b: torch.Tensor, x0: torch.Tensor | None = None, *, n_iter: int = 100,
       tol: float = 1e-6) -> torch.Tensor:
    """Conjugate gradients for ``M x = b``, M symmetric positive (semi)definite (Hestenes & Stiefel 1952).

    Each sample runs its own CG from ``x0`` (default 0) and stops once ``||b - M x|| <= tol ||b||`` or
    after ``n_iter`` iterations; b, x0 (B, ...) -> (B, ...). Started at 0 on a consistent singular
    system, CG returns the minimum-norm solution. ``tol = 0`` runs ``n_iter`` iterations unless a
    sample's residual reaches rounding level (``||r|| <= eps ||b||``, eps of the dtype) or its
    curvature ``<p, M p>`` stops being positive: past that point the recursion divides rounding
    noise by rounding noise, and in float32 it would throw a converged solution away.

    >>> M = torch.tensor([[2., 0.], [0., 4.]])
    >>> cg(lambda x: x @ M, torch.tensor([[2., 2.], [4., 0.]]))
    tensor([[1.0000, 0.5000],
            [2.0000, 0.0000]])
    """
    check_tensor(b, "b", complex_ok=True)
    check_int(n_iter, "n_iter", 0)
    tol = check_nonnegative(tol, "tol")
    if x0 is not None and check_tensor(x0, "x0", complex_ok=True).shape != b.shape:
        raise ValueError(f"x0 must have the shape of b {tuple(b.shape)}, got {tuple(x0.shape)}")
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - M(x) if x0 is not None else b.clone()
    p, rr = r.clone(), inner(r, r)
    eps = torch.finfo(rr.dtype).eps
    stop = max(tol, eps) ** 2 * inner(b, b)
    for _ in range(n_iter):
        active = rr > stop  # (B,)
        if not bool(active.any()):
            break
        Mp = M(p)
        pMp = inner(p, Mp)
        active = active & (pMp > 0)                      # no curvature left: converged (or M not PSD)
        alpha = torch.where(active, rr / torch.where(active, pMp, 1.0), 0.0)
        x = x + per_sample(alpha, x) * p
        r = r - per_sample(alpha, r) * Mp
        rr_next = inner(r, r)
        beta = torch.where(active, rr_next / torch.where(active, rr, 1.0), 0.0)
        p, rr = r + per_sample(beta, p) * p, rr_next
    return x


def cgls(A: Op, AT: Op, y: torch.Tensor, *, n_iter: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Least squares ``min ||A x - y||`` by CGLS, CG on ``A^T A x = A^T y`` without forming ``A^T A``.

    Hestenes & Stiefel (1952); Paige & Saunders, ACM TOMS 8 (1982), the CGLS recursion beside
    LSQR; Björck, *Numerical Methods for Least Squares Problems* (SIAM 1996).
    Started from 0 the iterates stay in the range of ``A^T``, so the limit is the minimum-norm
    solution ``A^+ y``. Every sample has its own step sizes and stops on its own once
    ``||A^T r|| <= tol * ||A^T y||`` (a stopped sample is left untouched, so a batch of two equals
    two batches of one). y (B, ...) -> x (B, ...) of the shape of ``AT(y)``.

    >>> A = torch.tensor([[1., 0., 0.], [0., 2., 0.]])  # keep and scale the first two entries
    >>> x = cgls(lambda x: x @ A.T, lambda y: y @ A, torch.tensor([[1., 2.]]))
    >>> torch.allclose(x, torch.tensor([[1., 1., 0.]]))
    True
    """
    check_tensor(y, "y", complex_ok=True)
    check_int(n_iter, "n_iter", 0)
    check_positive(tol, "tol")
    r = y.clone()
    s = AT(r)
    x = torch.zeros_like(s)
    p = s.clone()
    gamma = inner(s, s)  # (B,)
    tiny = torch.finfo(gamma.dtype).tiny
    stop = (tol * gamma.sqrt()).clamp_min(tiny)
    for _ in range(n_iter):
        active = gamma.sqrt() > stop
        if not bool(active.any()):
            break
        q = A(p)
        qq = inner(q, q)
        alpha = torch.where(active & (qq > 0), gamma / qq.clamp_min(tiny), torch.zeros_like(qq))
        x = x + per_sample(alpha, x) * p
        r = r - per_sample(alpha, r) * q
        s = AT(r)
        gamma_new = inner(s, s)
        beta = gamma_new / gamma.clamp_min(tiny)
        p = torch.where(per_sample(active, p), s + per_sample(beta, p) * p, p)
        gamma = torch.where(active, gamma_new, gamma)
    return x
