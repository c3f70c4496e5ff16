"""The common base of every forward model: an ``nn.Module`` with ``A(x)`` (also its ``forward``).

Linear operators (:class:`~diffcourse.physics.linear.LinearOperator`) add ``AT``, ``pinv`` and
``svd``; nonlinear ones (phase retrieval, the neural blur) only have ``A`` and rely on autograd for
their Jacobians, as DPS does (Chung et al., ICLR 2023). A :class:`~diffcourse.physics.likelihood.Likelihood`
takes either kind.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["Operator"]


class Operator(nn.Module):
    """A forward model ``x -> A(x)``; subclasses implement ``A``. ``linear`` says whether it is linear."""

    linear: bool = False

    def A(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)
