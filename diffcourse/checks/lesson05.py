"""Checks for lesson 05 (training a prior): EDM's loss weight, the noise prediction, EMA, one training step.

Conventions (as in :mod:`diffcourse.prior.train`): images in [0, 1], sigma_data = 0.5,
ln sigma ~ N(P_mean, P_std^2) with P_mean = -1.2, P_std = 1.2, and the per-sample loss
lambda(sigma) * mean over pixels of (D(x0 + sigma z, sigma) - x0)^2, averaged over the batch
(Karras et al. 2022, Eq. 8 and Table 1). ``ema_update`` is a pure function: it returns new tensors
and leaves its inputs alone.
"""
from __future__ import annotations

import copy

import torch

from .._validate import as_sigma
from ..prior.nets import UNetConfig, build_denoiser
from ..prior.train import edm_loss
from ._core import close, diagnose, exercise, known_mistake

__all__ = ["check_edm_weight", "check_eps_from_denoiser", "check_ema_update", "check_dsm_step"]

F64 = torch.float64
_TOL = {"rtol": 1e-9, "atol": 1e-12}          # float64 answers: rounding slack only
_EMA_DRIFT_TOL = {"rtol": 1e-8, "atol": 1e-12}   # twenty EMA updates accumulate rounding
_STEP_TOL = {"rtol": 1e-8, "atol": 1e-12}     # parameters after two Adam steps
_LOSS_TOL = {"rtol": 1e-9, "atol": 0.0}       # the loss values of those steps


def _fmt(t: torch.Tensor) -> list:
    return [float(f"{v:.4g}") for v in t.detach().flatten()[:4].tolist()]


def _show(sigma):
    return sigma.tolist() if isinstance(sigma, torch.Tensor) else sigma


# ---------------------------------------------------------------- exercise 1: EDM's loss weight
def _edm_weight(sigma, sigma_data=0.5):
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def _sigma_squared(sigma, sigma_data=0.5):       # the NCSN weight of the *score* loss
    return sigma**2 + 0 * sigma_data


def _inverse_sigma_squared(sigma, sigma_data=0.5):   # the small-sigma limit only
    return 1 / sigma**2 + 0 * sigma_data


def _square_missing(sigma, sigma_data=0.5):
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data)


_WEIGHT_MISTAKES = {
    _sigma_squared: "sigma^2 weights the *score* loss ||s + z/sigma||^2; for the denoiser loss "
                    "||D - x0||^2 the weight is (sigma^2 + sigma_data^2) / (sigma sigma_data)^2",
    _inverse_sigma_squared: "1/sigma^2 is only the small-sigma limit; the sigma_data^2 in the numerator keeps "
                            "the weight at 1/sigma_data^2 for large sigma",
    _square_missing: "the denominator is (sigma sigma_data)^2, squared",
}


@exercise(_edm_weight, *_WEIGHT_MISTAKES)
def check_edm_weight(fn):
    """fn(sigma, sigma_data) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2, elementwise on tensors."""
    cases = [(torch.tensor([0.002, 0.05, 0.3, 1.0, 7.0, 80.0], dtype=F64), 0.5),
             (torch.tensor([0.1, 0.6, 2.0], dtype=F64), 1.3)]
    for sigma, sigma_data in cases:
        out = fn(sigma.clone(), sigma_data)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == sigma.shape, f"one weight per sigma: shape {tuple(sigma.shape)}, got {tuple(out.shape)}"
        c_out = sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()     # EDM Table 1
        if not close(out * c_out**2, torch.ones_like(sigma), **_TOL):
            expected = _edm_weight(sigma, sigma_data)
            raise AssertionError(f"sigma = {_fmt(sigma)}, sigma_data = {sigma_data}: expected "
                                 f"{_fmt(expected)}, got {_fmt(out)} (the weight times c_out(sigma)^2 must be 1); "
                                 + diagnose(out, expected, (sigma, sigma_data), _WEIGHT_MISTAKES, **_TOL))
    assert close(fn(0.3, 0.5), _edm_weight(0.3, 0.5), rtol=0.0, atol=1e-9), \
        "sigma may also be a plain number (sigma = 0.3 gave a wrong weight)"


# ---------------------------------------------------------------- exercise 2: noise prediction
def _eps_from_denoiser(D, x, sigma):
    return (x - D(x, sigma)) / as_sigma(sigma, x)


def _eps_sign_flipped(D, x, sigma):
    return (D(x, sigma) - x) / as_sigma(sigma, x)


def _eps_over_sigma_squared(D, x, sigma):        # that is minus the score
    return (x - D(x, sigma)) / as_sigma(sigma, x) ** 2


def _eps_times_sigma(D, x, sigma):
    return (x - D(x, sigma)) * as_sigma(sigma, x)


_EPS_MISTAKES = {
    _eps_sign_flipped: "the sign is flipped: x = x0 + sigma eps, so eps = (x - D) / sigma",
    _eps_over_sigma_squared: "dividing by sigma^2 gives minus the score; eps is (x - D) / sigma",
    _eps_times_sigma: "divide by sigma, do not multiply",
}


def _gaussian_denoiser(mu: float, tau: float):
    """Exact E[x0 | x] for x0 ~ N(mu, tau^2) per pixel, sigma a number or a (B,) tensor."""
    def D(x, sigma):
        s = as_sigma(sigma, x)
        return mu + tau**2 / (tau**2 + s**2) * (x - mu)
    return D


@exercise(_eps_from_denoiser, *_EPS_MISTAKES)
def check_eps_from_denoiser(fn):
    """fn(D, x, sigma) = (x - D(x, sigma)) / sigma, sigma a number or a (B,) tensor; equals z for a point mass."""
    g = torch.Generator().manual_seed(5)
    x0 = torch.rand(3, 1, 4, 4, generator=g, dtype=F64)
    z = torch.randn(x0.shape, generator=g, dtype=F64)
    point_mass = lambda x, sigma: x0                  # data = {x0}: the exact denoiser returns x0
    for sigma in (0.7, torch.tensor([0.2, 1.0, 3.0], dtype=F64)):
        x = x0 + as_sigma(sigma, x0) * z
        out = fn(point_mass, x.clone(), sigma)
        assert isinstance(out, torch.Tensor) and out.shape == x.shape, \
            f"return a tensor of the shape of x {tuple(x.shape)}"
        if not close(out, z, **_TOL):
            raise AssertionError(f"for a single image x0 the exact denoiser is D = x0, so the noise "
                                 f"prediction must return the noise z exactly (sigma = {_show(sigma)}); "
                                 + diagnose(out, z, (point_mass, x, sigma), _EPS_MISTAKES, **_TOL))
    D = _gaussian_denoiser(0.4, 0.2)
    x = torch.randn(2, 2, 3, 3, generator=g, dtype=F64)
    for sigma in (0.3, torch.tensor([0.1, 2.0], dtype=F64)):
        out, expected = fn(D, x.clone(), sigma), _eps_from_denoiser(D, x, sigma)
        if not close(out, expected, **_TOL):
            raise AssertionError(f"Gaussian data, sigma = {_show(sigma)}: expected {_fmt(expected)}, got "
                                 f"{_fmt(out)}; " + diagnose(out, expected, (D, x, sigma), _EPS_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 3: EMA of the weights
def _ema_update(ema_params, params, decay):
    return [e.lerp(p, 1 - decay) for e, p in zip(ema_params, params)]


def _ema_swapped(ema_params, params, decay):
    return [(1 - decay) * e + decay * p for e, p in zip(ema_params, params)]


def _ema_in_place(ema_params, params, decay):
    return [e.mul_(decay).add_((1 - decay) * p) for e, p in zip(ema_params, params)]


def _ema_not_shrunk(ema_params, params, decay):
    return [e + (1 - decay) * p for e, p in zip(ema_params, params)]


_EMA_MISTAKES = {
    _ema_swapped: "decay and 1 - decay are swapped: the average keeps the fraction decay (close to 1) of "
                  "the old average and takes only 1 - decay of the new weights",
    _ema_not_shrunk: "the old average must be multiplied by decay before (1 - decay) theta is added",
}
_EMA_ONE = {(lambda e, p, decay, w=w: w([e], [p], decay)[0]): m for w, m in _EMA_MISTAKES.items()}


@exercise(_ema_update, *_EMA_MISTAKES, _ema_in_place)
def check_ema_update(fn):
    """fn(ema_params, params, decay) -> [decay e + (1 - decay) p for each pair], new tensors, inputs untouched."""
    g = torch.Generator().manual_seed(3)
    shapes = [(4, 3), (4,), (2, 1, 3, 3)]
    ema = [torch.randn(s, generator=g, dtype=F64) for s in shapes]
    params = [torch.randn(s, generator=g, dtype=F64) for s in shapes]
    for decay in (0.9, 0.999):
        ema_in, params_in = [e.clone() for e in ema], [p.clone() for p in params]
        out = fn(ema_in, params_in, decay)
        assert isinstance(out, (list, tuple)) and len(out) == len(ema), \
            f"return a list with one tensor per parameter ({len(ema)}), got {type(out).__name__}"
        assert all(torch.equal(a, b) for a, b in zip(ema_in + params_in, ema + params)), \
            "ema_update must not change its inputs: build new tensors (no mul_/add_/copy_ on them)"
        for e, p, o in zip(ema, params, out):
            expected = decay * e + (1 - decay) * p
            if not close(o, expected, **_TOL):
                raise AssertionError(f"decay = {decay}, parameter of shape {tuple(e.shape)}: expected "
                                     f"{_fmt(expected)}, got {_fmt(o) if isinstance(o, torch.Tensor) else o}; "
                                     + diagnose(o, expected, (e, p, decay), _EMA_ONE, **_TOL))
    theta, avg = params[0], ema[0]
    for _ in range(20):                               # constant weights: avg = theta + decay^n (e0 - theta)
        avg = fn([avg], [theta], 0.8)[0]
    assert close(avg, theta + 0.8**20 * (ema[0] - theta), **_EMA_DRIFT_TOL), \
        "twenty updates towards constant weights theta must give theta + decay^20 (ema - theta)"


# ---------------------------------------------------------------- exercise 4: one training step
def _dsm_step(D, opt, x0, generator, P_mean=-1.2, P_std=1.2, sigma_data=0.5):
    loss = edm_loss(D, x0, generator, P_mean, P_std, sigma_data).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def _step_with(D, opt, x0, generator, *, weighted=True, zero_grad=True, noise_first=False, pixel_sum=False,
               dtype=None):
    dtype = dtype or x0.dtype
    draw_sigma = lambda: (-1.2 + 1.2 * torch.randn(x0.shape[0], generator=generator, dtype=dtype)).exp()
    draw_z = lambda: torch.randn(x0.shape, generator=generator, dtype=dtype)
    if noise_first:
        z, sigma = draw_z(), draw_sigma()
    else:
        sigma, z = draw_sigma(), draw_z()
    err = (D(x0 + sigma[:, None, None, None] * z, sigma) - x0) ** 2
    err = err.flatten(1).sum(1) if pixel_sum else err.flatten(1).mean(1)
    loss = ((_edm_weight(sigma) if weighted else 1.0) * err).mean()
    if zero_grad:
        opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def _no_zero_grad(D, opt, x0, generator):
    return _step_with(D, opt, x0, generator, zero_grad=False)


def _unweighted(D, opt, x0, generator):
    return _step_with(D, opt, x0, generator, weighted=False)


def _noise_drawn_first(D, opt, x0, generator):
    return _step_with(D, opt, x0, generator, noise_first=True)


def _sum_over_pixels(D, opt, x0, generator):
    return _step_with(D, opt, x0, generator, pixel_sum=True)


def _float32_draws(D, opt, x0, generator):       # torch.randn's default dtype, not x0's (float64 here)
    return _step_with(D, opt, x0, generator, dtype=torch.float32)


_STEP_MISTAKES = {
    _no_zero_grad: "the parameters drift apart from the second step on: call opt.zero_grad() before "
                   "backward(), else the gradients of all earlier steps pile up",
    _unweighted: "the loss must carry EDM's weight lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2",
    _noise_drawn_first: "draw ln sigma (shape (B,)) first and z (shape of x0) second, as edm_loss does",
    _sum_over_pixels: "average the squared error over the pixels (then weight, then average over the batch)",
    _float32_draws: "draw sigma and z with dtype=x0.dtype (the check's x0 is float64): draws of another "
                    "dtype take other numbers from the generator",
}


def _setup(seed: int = 11):
    """A small float64 EDM denoiser with random weights, its Adam optimiser, a batch, a generator."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):          # leave the global random state alone
        D = build_denoiser(UNetConfig(channels=(8, 16), groups=4, emb_dim=16, attention_at_bottom=False))
    D = D.double()
    with torch.no_grad():
        for p in D.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g, dtype=F64))
    x0 = torch.rand(3, 1, 8, 8, generator=g, dtype=F64)
    return D, x0


def _run_two_steps(step, D, x0, seed: int = 21):
    D = copy.deepcopy(D)
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    losses = [step(D, opt, x0.clone(), g) for _ in range(2)]
    return D, losses, g


@exercise(_dsm_step, *_STEP_MISTAKES)
def check_dsm_step(fn):
    """fn(D, opt, x0, generator) takes one Adam step on the EDM loss; two steps match the reference's."""
    D0, x0 = _setup()
    D_ref, loss_ref, g_ref = _run_two_steps(_dsm_step, D0, x0)
    D_fn, loss_fn, g_fn = _run_two_steps(fn, D0, x0)
    for k, (a, b) in enumerate(zip(loss_fn, loss_ref), start=1):
        assert isinstance(a, (float, torch.Tensor)) and (not isinstance(a, torch.Tensor) or a.numel() == 1), \
            f"return the loss value (a number), got {type(a).__name__}"
        a = float(a.detach()) if isinstance(a, torch.Tensor) else a
        if not close(a, b, **_LOSS_TOL):
            losses_of = {(lambda w=w: _run_two_steps(w, D0, x0)[1][k - 1]): m for w, m in _STEP_MISTAKES.items()}
            raise AssertionError(f"step {k}: loss {a:.6g}, expected {b:.6g}; "
                                 + diagnose(a, b, (), losses_of, **_LOSS_TOL))
    assert torch.equal(g_fn.get_state(), g_ref.get_state()), \
        "use the generator for exactly two draws per step: ln sigma ~ N(P_mean, P_std^2) of shape (B,), then z"
    for (name, p), q in zip(D_fn.named_parameters(), D_ref.parameters()):
        if not close(p, q, **_STEP_TOL):
            params_of = {(lambda w=w: list(_run_two_steps(w, D0, x0)[0].parameters())): m
                         for w, m in _STEP_MISTAKES.items()}
            hint = known_mistake(list(D_fn.parameters()), (), params_of, **_STEP_TOL)
            raise AssertionError(f"after two steps the parameter {name} differs from the reference's by "
                                 f"{(p - q).abs().max().item():.3g}; "
                                 + (hint or "zero the gradients, backward, then opt.step()"))
