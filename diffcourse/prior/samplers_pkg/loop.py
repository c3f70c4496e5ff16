"""What every sampler shares: the prior start and the loop plumbing (checks, noise, callback, NaN guard).

Conventions (variance exploding, VE): a state at noise level σ is ``x = x0 + σ z``; a denoiser
``D(x, sigma)`` returns ``E[x0 | x]``; the score is ``s = (D(x, σ) - x) / σ²``. A schedule
``sigmas`` is a 1-D tensor, strictly decreasing, usually ending at 0 (build one with
:func:`diffcourse.prior.processes.karras_sigmas` or ``ve_sigmas``). Every sampler receives ``D``
with ``sigma`` as a tensor of shape (B,), one value per batch element, so any network can use it.

The callback of every sampler is called once per step, before the update, with one dict::

    {"i": step index, "x": state at sigma (VE coordinates), "sigma": float,
     "sigma_next": float, "x0_hat": D(x, sigma)}

Divergence (NaN/Inf) stops a sampler with ``FloatingPointError`` naming the step, σ and a hint.
"""
from __future__ import annotations

import torch

from diffcourse._validate import check_finite, check_positive, check_tensor

__all__ = ["prior_sample_init"]


def prior_sample_init(shape, sigma_max: float, *, generator: torch.Generator | None = None,
                      dtype=torch.float32, device=None) -> torch.Tensor:
    """Start of a VE sampler: x ~ N(0, σ_max² I), the large-σ limit of p_σ = p_0 * N(0, σ² I).

    ``device`` defaults to the generator's device (else CPU).

    >>> prior_sample_init((2, 3), 10.0, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([2, 3])
    """
    sigma_max = check_positive(sigma_max, "sigma_max")
    if device is None:
        device = generator.device if generator is not None else "cpu"
    return sigma_max * torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------- plumbing

def _check_count(n, name: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return n


def _prepare(D, x, sigmas, generator, *, positive: bool = False):
    """Validate a sampler's inputs; return (sigmas as Python floats, (n, B) tensor for D's sigma)."""
    if not callable(D):
        raise TypeError(f"D must be a callable D(x, sigma) -> x0_hat, got {type(D).__name__}")
    check_tensor(x, "x")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x must have a batch dimension first, got shape {tuple(x.shape)}")
    check_tensor(sigmas, "sigmas", ndim=1)
    s = sigmas.detach().to("cpu", torch.float64)
    if s.numel() < (1 if positive else 2):
        raise ValueError(f"sigmas needs at least {1 if positive else 2} values, got {s.numel()}")
    if not bool(torch.isfinite(s).all()) or bool((s[:-1] <= s[1:]).any()):
        raise ValueError(f"sigmas must be finite and strictly decreasing, got {s.tolist()[:6]}...")
    if (positive and s[-1] <= 0) or s[-1] < 0:
        need = "> 0 (Langevin needs a noise level)" if positive else ">= 0"
        raise ValueError(f"the last sigma must be {need}, got {s[-1].item()}")
    _check_generator(generator, x)
    sig = sigmas.detach().to(device=x.device, dtype=x.dtype)[:, None].expand(-1, x.shape[0])  # (n, B)
    return s.tolist(), sig


def _check_generator(generator, x: torch.Tensor) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device} but x is on {x.device}; "
                         f"create it with torch.Generator(device=x.device)")


def _noise(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _steps(n: int, progress: bool, desc: str):
    if not progress:
        return range(n)
    from tqdm import tqdm  # plain text bar: works in a terminal and in a notebook without ipywidgets
    return tqdm(range(n), desc=desc)


def _report(callback, i: int, x, sigma: float, sigma_next: float, x0_hat) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "x0_hat": x0_hat})


def _guard(x: torch.Tensor, name: str, i: int, sigma: float, hint: str) -> torch.Tensor:
    """Stop on NaN/Inf, saying where and what to change."""
    return check_finite(x, f"{name} at step {i} (sigma={sigma:.4g})",
                        hint + "; also check that D(x, sigma) is finite at this sigma")
