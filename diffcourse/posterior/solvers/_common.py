"""Input checks and small per-sample helpers shared by the posterior solvers."""
from __future__ import annotations

import torch

from ..._linalg import per_sample  # noqa: F401 (re-exported for the solvers)
from ..._validate import as_sigma, check_same_device
from ...physics.noise import PoissonNoise
from ...prior.samplers.loop import prepare

__all__ = ["setup", "linear_op", "sample_norm", "per_sample", "real_AT", "sigma_y2"]


def setup(D, x: torch.Tensor, sigmas: torch.Tensor, lik, generator):
    """Validate a solver's inputs before its loop; return (levels, sigma_b, y broadcast to x's batch).

    Raises ``TypeError``/``ValueError`` naming the argument: a schedule not strictly decreasing or
    not ending at 0, ``lik`` not a likelihood, x and y on different devices, NaN/Inf in y, negative
    Poisson counts, or y whose shape does not match A(x).
    """
    if not (callable(getattr(lik, "A", None)) and callable(getattr(lik, "y_for", None))
            and isinstance(getattr(lik, "y", None), torch.Tensor)):
        raise TypeError(f"lik must be a diffcourse.physics.likelihood.Likelihood, got {type(lik).__name__}")
    levels, sigma_b = prepare(D, x, sigmas, generator)
    if levels[-1] != 0:
        raise ValueError(f"sigmas must end at 0 (the solvers return a clean estimate), got last value "
                         f"{levels[-1]}; append a zero, e.g. karras_sigmas(n) does")
    check_same_device(x, lik.y, "x", "lik.y")
    y = lik.y
    if (y.is_floating_point() or y.is_complex()) and not bool(torch.isfinite(y).all()):
        raise ValueError("lik.y must be finite: it holds NaN or Inf")
    if isinstance(lik.noise, PoissonNoise) and bool((y < 0).any()):
        raise ValueError("lik.y must be >= 0 for a Poisson likelihood (counts / scale)")
    with torch.no_grad():
        y = lik.y_for(lik.A(x))  # ValueError naming y on a shape mismatch
    return levels, sigma_b, y


def linear_op(lik, name: str):
    """The operator of ``lik``, which ``name`` needs to be linear (with an adjoint ``AT``)."""
    if not (callable(getattr(lik.op, "AT", None)) and callable(getattr(lik.op, "pinv", None))):
        raise TypeError(f"{name} needs a linear operator with AT and pinv, got {type(lik.op).__name__}; "
                        f"for a nonlinear forward model use dps")
    return lik.op


def sigma_y2(lik, x: torch.Tensor, name: str) -> torch.Tensor:
    """σ_y² as a (B, 1, ..., 1) tensor, computed once before a loop."""
    if lik.sigma_y is None:
        raise TypeError(f"{name} needs Gaussian noise (lik.noise with sigma_y), got {type(lik.noise).__name__}")
    return as_sigma(lik.sigma_y, x, "sigma_y") ** 2


def sample_norm(v: torch.Tensor) -> torch.Tensor:
    """Per-sample Euclidean norm: (B, ...) -> (B,)."""
    return v.flatten(1).norm(dim=1)


def real_AT(op, r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Aᴴ r, its real part for a real state (the adjoint of A restricted to real images)."""
    g = op.AT(r)
    return g.real if g.is_complex() and not x.is_complex() else g
