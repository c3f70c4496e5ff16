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


def _show(value) -> str:
    """A short text for one setting: numbers as such, small tensors by value, others by shape."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, torch.Tensor):
        if value.numel() <= 4 and not value.is_complex():
            return str([round(v, 4) for v in value.detach().flatten().tolist()])
        shape = tuple(value.shape)
        if not value.is_complex() and bool(((value == 0) | (value == 1)).all()):
            return f"<mask {shape}, {value.float().mean().item():.1%} ones>"
        return f"<tensor {shape} {str(value.dtype).removeprefix('torch.')}>"
    return repr(value)


class Operator(nn.Module):
    """A forward model ``x -> A(x)``; subclasses implement ``A``. ``linear`` says whether it is linear.

    ``repr`` shows the operator's settings: each class lists, in ``settings``, the attributes (or
    properties) that describe how it was built, e.g. ``Radon(image_size=64, n_angles=20, ...)``.
    """

    linear: bool = False
    #: names of the attributes ``repr`` shows (the constructor's settings); empty: no arguments
    settings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={_show(getattr(self, name))}" for name in self.settings)
        return f"{type(self).__name__}({shown})"

    def A(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)
