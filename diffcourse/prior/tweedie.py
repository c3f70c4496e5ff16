"""Tweedie's formula for exponential-family noise: Noise2Score (Kim & Ye, NeurIPS 2021; Efron 2011).

If ``p(y | eta) = p0(y) exp(eta^T T(y) - phi(eta))`` then the posterior mean of the natural parameter
satisfies ``E[eta | y]^T T'(y) = l'(y) - l0'(y)`` with ``l = log p`` the log-density of the *noisy*
marginal (Kim & Ye 2021, Eq. 6). So one score estimate of the noisy data gives a denoiser for every
family below; each function turns ``y`` and the score ``l'(y)`` (a tensor of the same shape) into the
estimate ``x_hat``. All work elementwise on tensors of any shape and device.

=============  ==========================  =====================================================
noise          estimator                   what it is
=============  ==========================  =====================================================
Gaussian       y + sigma^2 l'(y)           the posterior mean E[x | y], exactly
Poisson        (y + zeta/2) exp(zeta l')   approx. exp E[log x | y]: biased low (see poisson())
Gamma (k)      k y / ((k-1) - y l'(y))     1 / E[1/x | y], exactly (not E[x | y])
Bernoulli      sigmoid(l'(y))              sigmoid(E[logit x | y]) (plug-in)
Exponential    -l'(y)                      the posterior mean E[x | y], exactly
=============  ==========================  =====================================================

A version of this table that circulates in talks lists ``T(y) = [log y, -y]`` for the Gamma row;
with ``eta = [alpha-1, -beta/x]`` that has the wrong sign (carried through Tweedie it gives
-k y / ((k-1) - y l'(y)) < 0), so the estimator is derived here with ``T(y) = [log y, y]``, which
is what its estimator column (and the official Noise2Score code) uses.
"""
from __future__ import annotations

from typing import Callable

import torch

from diffcourse._validate import as_sigma, check_positive, check_tensor

__all__ = ["gaussian", "poisson", "gamma", "bernoulli", "exponential", "ardae_loss"]


def _check_pair(y, score) -> None:
    check_tensor(y, "y")
    check_tensor(score, "score")
    if score.shape != y.shape:
        raise ValueError(f"score must have the shape of y {tuple(y.shape)}, got {tuple(score.shape)}")


def gaussian(y: torch.Tensor, score: torch.Tensor, sigma) -> torch.Tensor:
    """Gaussian Tweedie (Efron 2011, Eq. 2.8): x_hat = y + sigma^2 l'(y) for y = x + sigma n.

    ``y``, ``score``: (B, ...); ``sigma``: number or (B,). Exact posterior mean E[x | y].

    >>> y = torch.tensor([[2.0]]); tweedie_x = gaussian(y, -(y - 0.0) / 2.0, 1.0)  # x ~ N(0, 1)
    >>> tweedie_x.item()   # (tau^2 y + sigma^2 mu) / (tau^2 + sigma^2)
    1.0
    """
    _check_pair(y, score)
    return y + as_sigma(sigma, y) ** 2 * score


def poisson(y: torch.Tensor, score: torch.Tensor, zeta: float = 1.0) -> torch.Tensor:
    """Poisson Tweedie (Kim & Ye 2021, Table 1): x_hat = (y + zeta/2) exp(zeta l'(y)) for y = zeta Poisson(x/zeta).

    ``score`` is ``d/dy log p(y)`` of the observed (scaled) ``y``; with counts ``c = y / zeta`` this
    reads ``zeta (c + 1/2) exp(l_c'(c))``, the form of the paper's code. It approximates
    ``exp E[log x | y]`` (``-psi(c+1)`` replaced by ``-log(c+1/2)``), which lies *below* the posterior
    mean by about a factor ``1 - 1/(2 (c + a))`` for a Gamma(a, .) prior. Shapes: any, elementwise.

    >>> round(poisson(torch.tensor([3.0]), torch.tensor([0.0])).item(), 3)
    3.5
    """
    _check_pair(y, score)
    zeta = check_positive(zeta, "zeta")
    if bool((y < 0).any()):
        raise ValueError("y must be >= 0 for Poisson noise (counts times zeta)")
    return (y + 0.5 * zeta) * torch.exp(zeta * score)


def gamma(y: torch.Tensor, score: torch.Tensor, k: float) -> torch.Tensor:
    """Gamma Tweedie (Kim & Ye 2021, Table 1, T(y) = [log y, y]): x_hat = k y / ((k - 1) - y l'(y)).

    Multiplicative noise ``y | x ~ Gamma(shape k, rate k/x)`` (mean x, variance x^2/k), the
    ``alpha = beta = k`` case of ``beta y / ((alpha - 1) - y l'(y))``. Exactly ``1 / E[1/x | y]``.
    ``y`` > 0, any shape.

    >>> gamma(torch.tensor([2.0]), torch.tensor([0.0]), k=5.0)   # flat marginal: k y / (k - 1)
    tensor([2.5000])
    """
    _check_pair(y, score)
    k = check_positive(k, "k")
    if bool((y <= 0).any()):
        raise ValueError("y must be > 0 for Gamma noise")
    return k * y / ((k - 1.0) - y * score)


def bernoulli(score: torch.Tensor) -> torch.Tensor:
    """Bernoulli Tweedie (Kim & Ye 2021, Table 1): x_hat = e^{l'} / (1 + e^{l'}) = sigmoid(l'(y)).

    ``l'`` is the derivative of a continuous extension of ``log p(y)``, y in {0, 1}; it equals
    ``E[logit x | y]``, so this is the plug-in ``sigmoid(E[logit x | y])``, not ``E[x | y]``.

    >>> bernoulli(torch.tensor([0.0]))
    tensor([0.5000])
    """
    check_tensor(score, "score")
    return torch.sigmoid(score)


def exponential(score: torch.Tensor) -> torch.Tensor:
    """Exponential Tweedie (Kim & Ye 2021, Table 1): x_hat = -l'(y) for y | x ~ x e^{-x y}.

    The natural parameter is ``eta = -x`` with ``T(y) = y``, so ``-l'(y) = E[x | y]`` exactly (rate x).

    >>> exponential(torch.tensor([-2.0]))
    tensor([2.])
    """
    check_tensor(score, "score")
    return -score


def ardae_loss(score: Callable, y: torch.Tensor, sigma_a, *, u: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """AR-DAE loss (Kim & Ye 2021, Eq. 11; Lim et al. 2020): || sigma_a s(y + sigma_a u) + u ||^2, u ~ N(0, I).

    Learns the score ``s(y) ~ l'(y)`` of the *noisy* data from noisy data alone; its minimiser is the
    score of ``p_y * N(0, sigma_a^2)``, so ``sigma_a`` is annealed towards 0 and ``s`` is evaluated at
    ``y`` itself. ``score``: callable ``s(y)``; ``y``: (B, ...); ``sigma_a``: number or (B,);
    ``u``: optional fixed noise of ``y``'s shape. Returns (B,): sum over all but the batch dimension.
    """
    check_tensor(y, "y")
    sigma_a = as_sigma(sigma_a, y, "sigma_a")
    if u is None:
        u = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    elif u.shape != y.shape:
        raise ValueError(f"u must have the shape of y {tuple(y.shape)}, got {tuple(u.shape)}")
    return (sigma_a * score(y + sigma_a * u) + u).flatten(1).pow(2).sum(1)
