"""The loop toolkit every sampler and every posterior solver shares.

Conventions (variance exploding, VE): a state at noise level σ is ``x = x0 + σ z``; a denoiser
``D(x, sigma)`` returns ``E[x0 | x]``; the score is ``(D(x, σ) - x) / σ²`` (Tweedie, :func:`score`).
A schedule ``sigmas`` is a 1-D tensor, strictly decreasing, usually ending at 0 (build one with
:func:`diffcourse.prior.processes.karras_sigmas` or ``ve_sigmas``). Every sampler receives ``D``
with ``sigma`` as a tensor of shape (B,), one value per batch element, so any network can use it.

A loop is written with these pieces (a guided solver is the same loop plus a likelihood term)::

    levels, sigma_b = prepare(D, x, sigmas, generator)     # floats for arithmetic, (n, B) for D
    for i in steps(len(levels) - 1, progress, "name"):
        x0_hat = D(x, sigma_b[i])
        report(callback, i, x, levels[i], levels[i + 1], x0_hat)
        x = guard(ddpm_step(x, x0_hat, levels[i], levels[i + 1], noise(x, generator)),
                  "name", i, levels[i], "use more steps")

The callback of every sampler is called once per step, before the update, with one dict::

    {"i": step index, "x": state at sigma (VE coordinates), "sigma": float,
     "sigma_next": float, "x0_hat": D(x, sigma)}

Divergence (NaN/Inf) stops a sampler with ``FloatingPointError`` naming the step, σ and a hint.
"""
from __future__ import annotations

import torch

from diffcourse._validate import check_finite, check_int, check_positive, check_tensor

__all__ = ["prior_sample_init", "prepare", "check_generator", "noise", "steps", "report", "guard",
           "score", "check_int", "CountingDenoiser"]


class CountingDenoiser:
    """Wraps a denoiser D(x, sigma) and counts its network evaluations, for NFE tables and benchmarks.

    ``calls``: calls (a batched call counts once); ``evaluations``: the sum of their batch sizes
    (per-sample NFE of a run on B samples = ``evaluations / B``); ``with_grad``: calls whose output
    is differentiated (a graph to x: one forward + one backward pass, as DPS pays).

    >>> D = CountingDenoiser(lambda x, sigma: x)
    >>> _ = D(torch.zeros(3, 2), 1.0); D.calls, D.evaluations, D.with_grad
    (1, 3, 0)
    """

    def __init__(self, D):
        self.D = D
        self.reset()

    def reset(self) -> None:
        """Set every count back to zero."""
        self.calls = self.evaluations = self.with_grad = 0

    def __call__(self, x, sigma):
        self.calls += 1
        self.evaluations += x.shape[0]
        self.with_grad += int(torch.is_grad_enabled() and x.requires_grad)
        return self.D(x, sigma)


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


def score(x: torch.Tensor, x0_hat: torch.Tensor, sigma) -> torch.Tensor:
    """Tweedie's score of the noisy prior, ∇ log p_σ(x) = (x̂0 - x)/σ² (Efron 2011, eq. 2.8); σ > 0.

    >>> score(torch.zeros(1), torch.ones(1), 0.5)
    tensor([4.])
    """
    return (x0_hat - x) / sigma ** 2


def prepare(D, x, sigmas, generator, *, positive: bool = False):
    """Validate a sampler's inputs; return (the σ levels as Python floats, an (n, B) tensor for D).

    ``sigmas`` must be 1-D, finite and strictly decreasing, ending at 0 or above (``positive``:
    above 0, for Langevin); ``generator`` must live on ``x``'s device type.
    """
    if not callable(D):
        raise TypeError(f"D must be a callable D(x, sigma) -> x0_hat, got {type(D).__name__}")
    check_tensor(x, "x")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x must have a batch dimension first, got shape {tuple(x.shape)}")
    check_tensor(sigmas, "sigmas", ndim=1)
    levels = sigmas.detach().to("cpu", torch.float64)
    if levels.numel() < (1 if positive else 2):
        raise ValueError(f"sigmas needs at least {1 if positive else 2} values, got {levels.numel()}")
    if not bool(torch.isfinite(levels).all()) or bool((levels[:-1] <= levels[1:]).any()):
        raise ValueError(f"sigmas must be finite and strictly decreasing, got {levels.tolist()[:6]}...")
    if (positive and levels[-1] <= 0) or levels[-1] < 0:
        need = "> 0 (Langevin needs a noise level)" if positive else ">= 0"
        raise ValueError(f"the last sigma must be {need}, got {levels[-1].item()}")
    check_generator(generator, x)
    sigma_b = sigmas.detach().to(device=x.device, dtype=x.dtype)[:, None].expand(-1, x.shape[0])  # (n, B)
    return levels.tolist(), sigma_b


def check_generator(generator, x: torch.Tensor) -> None:
    """Raise unless ``generator`` is None or a ``torch.Generator`` on ``x``'s device type."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device} but x is on {x.device}; "
                         f"create it with torch.Generator(device=x.device)")


def noise(x: torch.Tensor, generator) -> torch.Tensor:
    """A standard normal draw shaped like ``x`` (same dtype and device)."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def steps(n: int, progress: bool, desc: str):
    """``range(n)``, with a tqdm bar when ``progress``."""
    if not progress:
        return range(n)
    from tqdm import tqdm  # plain text bar: works in a terminal and in a notebook without ipywidgets
    return tqdm(range(n), desc=desc)


def report(callback, i: int, x, sigma: float, sigma_next: float, x0_hat, **extra) -> None:
    """Call ``callback`` (if any) with {"i", "x", "sigma", "sigma_next", "x0_hat", **extra}."""
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "x0_hat": x0_hat, **extra})


def guard(x: torch.Tensor, name: str, i: int, sigma: float, hint: str) -> torch.Tensor:
    """Stop on NaN/Inf, saying where (``name``, step ``i``, σ) and what to change (``hint``)."""
    return check_finite(x, f"{name} at step {i} (sigma={sigma:.4g})",
                        hint + "; also check that D(x, sigma) is finite at this sigma")


# Old private names, kept for code written against the single-module samplers.
_prepare, _check_generator, _noise, _steps, _report, _guard = prepare, check_generator, noise, steps, report, guard


def _check_count(n, name: str) -> int:
    return check_int(n, name)
