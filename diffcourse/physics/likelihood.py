"""The likelihood p(y | x) of a measurement: a forward model, a noise model and the data y.

``Likelihood(op, noise, y)`` is the physics half of Bayes' rule, ∇ log p(x | y) = ∇ log p(x) +
∇ log p(y | x): ``log_prob(x)`` = log p(y | x) per sample and ``grad(x)`` = ∇_x log p(y | x), for
any operator (linear or not: anything with ``A(x)``) and any noise model with ``log_likelihood(y,
Ax)`` (:mod:`diffcourse.physics.noise`: Gaussian, Poisson, quantized). The gradient is closed form
for a linear operator with Gaussian noise, Aᵀ(y - A x)/σ_y², and autograd otherwise.

>>> import torch
>>> from diffcourse.physics.matrix import Matrix
>>> from diffcourse.physics.noise import GaussianNoise
>>> lik = Likelihood(Matrix(torch.eye(2)), GaussianNoise(0.5), torch.tensor([[1.0, 0.0]]))
>>> lik.grad(torch.zeros(1, 2))                    # Aᵀ(y - A x)/σ_y²
tensor([[4., 0.]])
"""
from __future__ import annotations

import torch

from .._validate import as_sigma, check_same_device, check_tensor
from .noise import GaussianNoise, PoissonNoise

__all__ = ["Likelihood"]


class Likelihood:
    """p(y | x) = noise(y | op.A(x)), with ``op``, ``noise`` and ``y`` kept as attributes.

    ``y`` has a batch dimension first; a batch of one is shared by every sample of x (one
    measurement, many posterior samples). ``y`` must be finite; Poisson counts must be >= 0.
    """

    def __init__(self, op, noise, y: torch.Tensor):
        if not callable(getattr(op, "A", None)):
            raise TypeError(f"op must be a forward model with a method A(x), got {type(op).__name__}")
        if not callable(getattr(noise, "log_likelihood", None)):
            raise TypeError(f"noise must be a noise model with log_likelihood(y, Ax) "
                            f"(diffcourse.physics.noise), got {type(noise).__name__}")
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
        if y.ndim < 1:
            raise ValueError("y must have a batch dimension first, got a 0-d tensor")
        if (y.is_floating_point() or y.is_complex()) and not bool(torch.isfinite(y).all()):
            raise ValueError("y must be finite: it holds NaN or Inf")
        if isinstance(noise, PoissonNoise) and bool((y < 0).any()):
            raise ValueError(f"y must be >= 0 for a Poisson likelihood (counts / scale), "
                             f"got min {y.min().item():.3g}")
        self.op, self.noise, self.y = op, noise, y

    def __repr__(self) -> str:
        return f"Likelihood(op={type(self.op).__name__}, noise={type(self.noise).__name__}, y={tuple(self.y.shape)})"

    @property
    def linear(self) -> bool:
        """Whether the operator is linear (has an adjoint ``AT``)."""
        return callable(getattr(self.op, "AT", None))

    @property
    def sigma_y(self):
        """The Gaussian noise level σ_y (None for other noise models)."""
        return getattr(self.noise, "sigma_y", None)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """The noise-free measurement A(x)."""
        return self.op.A(x)

    def y_for(self, Ax: torch.Tensor) -> torch.Tensor:
        """``y`` broadcast to the batch of ``Ax``; raises ValueError naming y on a shape mismatch."""
        check_same_device(Ax, self.y, "x", "y")
        y = self.y
        if y.shape[0] == 1 and Ax.shape[0] != 1:
            y = y.expand(Ax.shape[0], *y.shape[1:])
        if y.shape != Ax.shape:
            raise ValueError(f"y has shape {tuple(self.y.shape)} but the operator gives A(x) of shape "
                             f"{tuple(Ax.shape)}: y must be (B, ...) or (1, ...) with A(x)'s sample shape")
        return y

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """y - A(x) (linear measurements; for quantized y use ``log_prob``)."""
        Ax = self.A(x)
        return self.y_for(Ax) - Ax

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(y | x) per sample: (B, ...) -> (B,)."""
        check_tensor(x, "x", complex_ok=True)
        Ax = self.A(x)
        return self.noise.log_likelihood(self.y_for(Ax), Ax)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """∇_x log p(y | x), shaped like x: Aᵀ(y - A x)/σ_y² for linear-Gaussian, else autograd."""
        check_tensor(x, "x", complex_ok=True)
        if self.linear and isinstance(self.noise, GaussianNoise):
            return self._gaussian_grad(x)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.log_prob(xg).sum(), xg)
        return g

    def _gaussian_grad(self, x: torch.Tensor) -> torch.Tensor:
        r = self.residual(x)
        g = self.op.AT(r)
        if g.is_complex() and not x.is_complex():
            g = g.real
        return g / as_sigma(self.noise.sigma_y, g.real if g.is_complex() else g, "sigma_y") ** 2

    @classmethod
    def measure(cls, op, noise, x: torch.Tensor, *, generator: torch.Generator | None = None) -> "Likelihood":
        """Simulate y = noise(A x) for clean images x and return the likelihood of that y.

        Entries that the operator does not measure (outside an inpainting mask, unsampled k-space)
        stay zero, as a scanner records nothing there: ``op.measured(y)`` keeps the measured ones.
        """
        with torch.no_grad():
            y = noise.sample(op.A(x), generator=generator)
            keep = getattr(op, "measured", None)
            if callable(keep):
                y = keep(y)
        return cls(op, noise, y)

    def to(self, device) -> "Likelihood":
        """The same likelihood with the operator, the noise model and y on ``device``."""
        return Likelihood(self.op.to(device), self.noise.to(device), self.y.to(device))
