"""Argument checks shared by the whole library.

Every public function validates its inputs with these helpers so that bad input fails early with a
message that names the argument and says what was expected (a ``TypeError`` for the wrong kind of
object or dtype, a ``ValueError`` for a wrong shape, size, device or value).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = [
    "check_tensor",
    "check_image",
    "check_positive",
    "check_nonnegative",
    "check_same_device",
    "as_sigma",
    "check_finite",
    "check_int",
    "check_mask",
    "check_op",
]


def check_tensor(x, name: str, *, ndim: int | Sequence[int] | None = None, floating: bool = True,
                 complex_ok: bool = False) -> torch.Tensor:
    """Raise unless ``x`` is a tensor with ``ndim`` dimensions and a floating (or complex) dtype."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimensions, "
                             f"got shape {tuple(x.shape)}")
    if floating:
        ok = x.is_floating_point() or (complex_ok and x.is_complex())
        if not ok:
            kinds = "a floating-point or complex" if complex_ok else "a floating-point"
            raise TypeError(f"{name} must have {kinds} dtype, got {x.dtype}")
    return x


def check_image(x, name: str = "x", *, size: tuple[int, int] | None = None,
                complex_ok: bool = False) -> torch.Tensor:
    """Raise unless ``x`` is a (B, C, H, W) float tensor, optionally with spatial size ``size``."""
    check_tensor(x, name, ndim=4, complex_ok=complex_ok)
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(f"{name} must have spatial size {tuple(size)}, got {tuple(x.shape[-2:])} "
                         f"(full shape {tuple(x.shape)})")
    return x


def check_positive(value, name: str) -> float:
    """Raise unless ``value`` is a finite number > 0."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        value = value.item()
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def check_nonnegative(value, name: str) -> float:
    """Raise unless ``value`` is a finite number >= 0."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        value = value.item()
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def check_same_device(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise unless two tensors live on the same device."""
    if a.device != b.device:
        raise ValueError(f"{name_a} is on {a.device} but {name_b} is on {b.device}; "
                         f"move both to one device (e.g. {name_b}.to({name_a}.device))")


def as_sigma(sigma, x: torch.Tensor, name: str = "sigma") -> torch.Tensor:
    """Return ``sigma`` as a tensor of shape (B, 1, ..., 1) broadcastable against ``x`` (B, ...).

    Accepts a Python number, a 0-d tensor or a tensor of shape (B,). Negative, NaN and infinite
    values are refused (a NaN noise level would otherwise turn the whole output into NaN).

    >>> as_sigma(0.5, torch.zeros(2, 1, 4, 4)).shape
    torch.Size([2, 1, 1, 1])
    >>> as_sigma(float("nan"), torch.zeros(2, 3))
    Traceback (most recent call last):
    ...
    ValueError: sigma must be a finite number >= 0 (a noise level), got nan
    """
    real_dtype = x.real.dtype if x.is_complex() else x.dtype
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        sigma = torch.full((x.shape[0],), float(sigma), dtype=real_dtype, device=x.device)
    elif isinstance(sigma, torch.Tensor):
        sigma = sigma.to(device=x.device, dtype=real_dtype)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        sigma = sigma.reshape(-1)
        if sigma.numel() == 1 and x.shape[0] != 1:
            sigma = sigma.expand(x.shape[0])
        if sigma.numel() != x.shape[0]:
            raise ValueError(f"{name} must be a number or a tensor of shape ({x.shape[0]},) "
                             f"(one value per batch element), got {sigma.numel()} values")
    else:
        raise TypeError(f"{name} must be a number or a torch.Tensor, got {type(sigma).__name__}")
    bad = ~torch.isfinite(sigma) | (sigma < 0)
    if bool(bad.any()):
        raise ValueError(f"{name} must be a finite number >= 0 (a noise level), got "
                         f"{sigma[bad][0].item():.3g}" + (f" at index {int(bad.nonzero()[0])}"
                                                        if sigma.numel() > 1 and not bool(bad.all()) else ""))
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


def check_finite(x: torch.Tensor, where: str, hint: str = "") -> torch.Tensor:
    """Raise ``FloatingPointError`` if ``x`` holds NaN or Inf, saying where and what to change."""
    if not bool(torch.isfinite(x).all()):
        msg = f"non-finite values (NaN/Inf) appeared in {where}"
        if hint:
            msg += f"; {hint}"
        raise FloatingPointError(msg)
    return x


def check_int(value, name: str, minimum: int = 1) -> int:
    """Raise unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_mask(mask, name: str = "mask") -> torch.Tensor:
    """Raise unless ``mask`` is a (H, W) or (B|1, C|1, H, W) tensor of zeros and ones; -> float."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        mask = mask.to(torch.get_default_dtype())
    check_tensor(mask, name, ndim=(2, 4))
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{name} must contain only zeros and ones")
    return mask if mask.ndim == 4 else mask[None, None]


def check_op(op, name: str = "op"):
    """Raise unless ``op`` is a linear operator: an object with callable methods ``A`` and ``AT``."""
    if not (callable(getattr(op, "A", None)) and callable(getattr(op, "AT", None))):
        raise TypeError(f"{name} must be a linear operator with methods A(x) and AT(y), got {type(op).__name__}")
    return op
