"""The denoiser contract and adapters between parameterizations (Karras et al. 2022, sec. 2-3).

**A denoiser is any callable ``D(x, sigma)``** returning E[x0 | x] for the variance-exploding state
x = x0 + sigma z (sigma a number or a (B,) tensor). Tweedie's formula (Efron 2011, eq. 2.8) links it
to the score of the noisy data: score(x, sigma) = (D(x, sigma) - x) / sigma^2.

Networks are often trained in another parameterization and another time variable. Every process in
:mod:`diffcourse.prior.processes` is the VE state seen at scale s: x_p = s(t) (x0 + sigma(t) z). An
adapter converts sigma to the model's own time t = process.t_of_sigma(sigma), feeds the model the
scaled state x_p = s x, and turns its output into D:

* noise eps, x_p = s x0 + s sigma eps:       D = x - sigma eps                (from_eps, to_eps)
* clean image x0:                            D = x0_model(s x, t)             (from_x0, to_x0)
* score grad_{x_p} log p_t(x_p) = s_VE / s:  D = x + sigma^2 s score          (from_score, to_score)
* velocity (rectified flow) v = z - x0:      D = x_t - t v, x_t = x/(1+sigma) (from_velocity_flow, ...)
* v-prediction v = a eps - b x0 with a = s, b = s sigma (Salimans & Ho 2022, eq. 17 and app. D):
                                             D = (a x_p - b v) / (a^2 + b^2)   (from_v, to_v)
  (for VP, a^2 + b^2 = 1 and this is their x0 = a x_p - b v; Stable Diffusion 2's "v" models)

With a VP process (``VPLinear()``, ``DDPM.linear()``, ...) ``from_eps`` is the usual DDPM eps-model
adapter (x_vp = x_ve / sqrt(1 + sigma^2)); with ``VE()`` it is an NCSN-style model in VE time.
Rectified flow here puts the data at t = 0 (as Esser et al., ICML 2024): x_t = (1 - t) x0 + t z, t = 1
noise, velocity v = dx_t/dt = z - x0, so E[v | x_t] = (x_t - E[x0 | x_t]) / t. (The RectifiedFlow
code runs t' = 1 - t and predicts x0 - z = -v.) Adapters need sigma > 0.
"""
from __future__ import annotations

from typing import Callable

import torch

from .._validate import as_sigma, check_tensor
from .processes import Flow

__all__ = ["score_from_denoiser", "denoiser_from_score", "from_eps", "to_eps", "from_x0", "to_x0",
           "from_score", "to_score", "from_velocity_flow", "to_velocity_flow", "from_v", "to_v",
           "from_eps_vp", "to_eps_vp", "from_x0_vp", "from_score_ve", "flip_average"]

Denoiser = Callable[[torch.Tensor, object], torch.Tensor]


def _check_callable(fn, name):
    if not callable(fn):
        raise TypeError(f"{name} must be a callable, got {type(fn).__name__}")


def _check_process(process):
    for attr in ("s", "sigma", "t_of_sigma", "scale"):
        if not callable(getattr(process, attr, None)):
            raise TypeError("process must be a process from diffcourse.prior.processes (with s, sigma, "
                            f"t_of_sigma and scale), got {type(process).__name__}")


def _positive_sigma(sigma, x):
    check_tensor(x, "x")
    sig = as_sigma(sigma, x)                                           # (B, 1, ..., 1)
    if bool((sig == 0).any()):
        raise ValueError("sigma must be > 0 here (the score and the adapters divide by sigma)")
    return sig


def _time_state(x_p, t, process):
    """VE state x = x_p / s, sigma and s (both (B, 1, ..., 1)) of a process state x_p at time t."""
    check_tensor(x_p, "x")
    t = torch.as_tensor(t, dtype=x_p.dtype, device=x_p.device)        # numbers straight to x's dtype
    t = t.expand(x_p.shape[0]) if t.ndim == 0 else t.reshape(-1)       # (B,)
    shape = (-1,) + (1,) * (x_p.ndim - 1)
    s = process.s(t).reshape(shape)
    return x_p / s, process.sigma(t).reshape(shape), s


def score_from_denoiser(D: Denoiser) -> Callable:
    """score(x, sigma) = (D(x, sigma) - x) / sigma^2 (Tweedie; Efron 2011, eq. 2.8); sigma > 0.

    >>> score = score_from_denoiser(lambda x, sigma: 0 * x)     # data = {0}
    >>> score(torch.ones(1, 2), 2.0)
    tensor([[-0.2500, -0.2500]])
    """
    _check_callable(D, "D")

    def score(x, sigma):
        sig = _positive_sigma(sigma, x)
        return (D(x, sigma) - x) / sig ** 2
    return score


def flip_average(D: Denoiser, dims=(-1,)) -> Denoiser:
    """D averaged over the mirror flips along ``dims`` (all 2^len(dims) combinations): a self-ensemble
    (Timofte, Rothe & Van Gool, CVPR 2016, sec. 2.2; DPIR's "x8" uses the 8 flips and rotations):

        D_avg(x, sigma) = mean over flips F of  F D(F x, sigma)

    If the data's distribution is invariant under the flips, the exact MMSE denoiser commutes with them
    and D_avg = D. For a learned D, E||D_avg - x0||^2 <= mean over F of E||F D(F x) - x0||^2 (convexity),
    and each term equals E||D(x) - x0||^2 under that invariance: the average is never worse in
    expectation and removes the part of D's error that is not equivariant. It costs 2^len(dims)
    evaluations. Brain slices are only roughly symmetric left to right (``dims=(-1,)``); upside-down
    slices are outside their family, so flips along H are not offered by default.

    >>> Dbar = flip_average(lambda x, sigma: x[..., :1].expand_as(x))      # copies the first column
    >>> Dbar(torch.tensor([[1.0, 2.0, 3.0]]), 0.1)                         # mean of first and last column
    tensor([[2., 2., 2.]])
    """
    _check_callable(D, "D")
    dims = tuple(dims)
    if not dims or len(set(dims)) != len(dims) or not all(isinstance(d, int) for d in dims):
        raise ValueError(f"dims must be distinct integer axes, at least one, got {dims}")
    subsets = [tuple(d for i, d in enumerate(dims) if mask >> i & 1) for mask in range(2 ** len(dims))]

    def flip(x, ds):
        return x.flip(ds) if ds else x

    def D_avg(x, sigma):
        return sum(flip(D(flip(x, ds), sigma), ds) for ds in subsets) / len(subsets)
    return D_avg


def denoiser_from_score(score: Callable) -> Denoiser:
    """D(x, sigma) = x + sigma^2 score(x, sigma) for a score model indexed by the VE sigma (NCSN)."""
    _check_callable(score, "score")

    def D(x, sigma):
        check_tensor(x, "x")
        return x + as_sigma(sigma, x) ** 2 * score(x, sigma)
    return D


def _adapter(model, process, name, combine):
    """D(x, sigma) = combine(x, sig, s, model(s x, t)) with t = t(sigma), s = s(t)."""
    _check_callable(model, name)
    _check_process(process)

    def D(x, sigma):
        sig = _positive_sigma(sigma, x)
        s = process.scale(sig)                                         # (B, 1, ..., 1)
        t = process.t_of_sigma(sig.reshape(-1))                        # (B,) in the model's time
        return combine(x, sig, s, model(s * x, t))
    return D


def from_eps(eps_model: Callable, process) -> Denoiser:
    """D from eps_model(x_p, t), x_p = s (x0 + sigma eps): D = x - sigma eps (Ho et al. 2020, eq. 15)."""
    return _adapter(eps_model, process, "eps_model", lambda x, sig, s, eps: x - sig * eps)


def from_x0(x0_model: Callable, process) -> Denoiser:
    """D from x0_model(x_p, t) predicting E[x0 | x_p]: D(x, sigma) = x0_model(s x, t)."""
    return _adapter(x0_model, process, "x0_model", lambda x, sig, s, x0: x0)


def from_score(score_model: Callable, process) -> Denoiser:
    """D from score_model(x_p, t) = grad log p_t(x_p): D = x + sigma^2 s score (s_VE = s s_p; Karras et al. 2022, Eq. 4).
    """
    return _adapter(score_model, process, "score_model", lambda x, sig, s, sc: x + sig ** 2 * s * sc)


def to_eps(D: Denoiser, process) -> Callable:
    """eps_model(x_p, t) = (x - D(x, sigma)) / sigma with x = x_p / s(t), sigma = sigma(t)."""
    _check_callable(D, "D")
    _check_process(process)

    def eps_model(x_p, t):
        x, sig, _ = _time_state(x_p, t, process)
        return (x - D(x, sig.reshape(-1))) / sig
    return eps_model


def to_x0(D: Denoiser, process) -> Callable:
    """x0_model(x_p, t) = D(x_p / s(t), sigma(t))."""
    _check_callable(D, "D")
    _check_process(process)

    def x0_model(x_p, t):
        x, sig, _ = _time_state(x_p, t, process)
        return D(x, sig.reshape(-1))
    return x0_model


def to_score(D: Denoiser, process) -> Callable:
    """score_model(x_p, t) = grad_{x_p} log p_t(x_p) = (D(x, sigma) - x) / (s sigma^2), x = x_p / s."""
    _check_callable(D, "D")
    _check_process(process)

    def score_model(x_p, t):
        x, sig, s = _time_state(x_p, t, process)
        return (D(x, sig.reshape(-1)) - x) / (s * sig ** 2)
    return score_model


def from_v(v_model: Callable, process) -> Denoiser:
    """D from a v-prediction model v_model(x_p, t) ~ E[a eps - b x0 | x_p] (Salimans & Ho 2022, eq. 17).

    With x_p = a x0 + b eps, a = s(t), b = s(t) sigma(t): a x_p - b v = (a^2 + b^2) x0, so
    D = (a x_p - b v) / (a^2 + b^2) (the conditional mean passes through because v is linear in
    (x0, eps)). For VP processes a^2 + b^2 = 1.
    """
    def combine(x, sig, s, v):
        a, b = s, s * sig
        return (a * (s * x) - b * v) / (a ** 2 + b ** 2)
    return _adapter(v_model, process, "v_model", combine)


def to_v(D: Denoiser, process) -> Callable:
    """v_model(x_p, t) = a eps_hat - b D with a = s, b = s sigma, eps_hat = (x - D) / sigma, x = x_p / s."""
    _check_callable(D, "D")
    _check_process(process)

    def v_model(x_p, t):
        x, sig, s = _time_state(x_p, t, process)
        x0_hat = D(x, sig.reshape(-1))
        return s * (x - x0_hat) / sig - s * sig * x0_hat
    return v_model


def from_velocity_flow(v_model: Callable) -> Denoiser:
    """D from a rectified-flow velocity v_model(x_t, t) ~ E[z - x0 | x_t]: D = x_t - t v (Liu et al. 2023).

    Here t = sigma / (1 + sigma) and x_t = x / (1 + sigma) (t = 0 data, t = 1 noise).
    """
    return _adapter(v_model, Flow(), "v_model", lambda x, sig, s, v: s * x - sig / (1 + sig) * v)


def to_velocity_flow(D: Denoiser) -> Callable:
    """v_model(x_t, t) = (x_t - D(x_t / (1 - t), t / (1 - t))) / t = E[z - x0 | x_t], t in (0, 1)."""
    _check_callable(D, "D")
    flow = Flow()

    def v_model(x_t, t):
        x, sig, _ = _time_state(x_t, t, flow)
        return (x_t - D(x, sig.reshape(-1))) * (1 + sig) / sig         # divide by t = sig / (1 + sig)
    return v_model


# The names used in the course brief: the VP and VE cases of the generic adapters.
from_eps_vp, to_eps_vp, from_x0_vp = from_eps, to_eps, from_x0
from_score_ve = denoiser_from_score
