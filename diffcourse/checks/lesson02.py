"""Checks for lesson 02 (score matching): the DSM loss, the exact mixture score, sliced score matching.

Conventions (as in :mod:`diffcourse.prior.losses`): losses are per sample, summed over all but the
batch dimension, shape (B,); DSM carries the NCSN weighting lambda(sigma) = sigma^2 and the 1/2,
``1/2 ||sigma s(x0 + sigma z, sigma) + z||^2`` (Song & Ermon 2019, Eq. 2).
"""
from __future__ import annotations

import torch

from ..prior import losses
from ..prior.toy import GaussianMixture
from ._core import close, diagnose, exercise

__all__ = ["check_dsm_loss", "check_mixture_score", "check_ssm_vr"]

F64 = torch.float64
_TOL = {"rtol": 1e-8, "atol": 1e-10}   # float64 answers: rounding slack only


def _value(t):
    return t.detach() if isinstance(t, torch.Tensor) else t


def _sum(t):
    return t.flatten(1).sum(1)


def _fmt(t) -> list:
    return [round(v, 4) for v in _value(t).flatten()[:4].tolist()]


def _mixture(seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(3, 2, 2, generator=g, dtype=F64)
    covs = 0.2 * A @ A.mT + 0.05 * torch.eye(2, dtype=F64)              # anisotropic, positive definite
    return GaussianMixture(torch.tensor([0.2, 0.5, 0.3], dtype=F64),
                           2 * torch.randn(3, 2, generator=g, dtype=F64), covs)


# ---------------------------------------------------------------- exercise 1: DSM loss
def _dsm(score, x0, sigma, z):
    return losses.dsm_loss(score, x0, sigma, z=z)


def _unweighted(score, x0, sigma, z):
    return 0.5 * _sum((score(x0 + sigma * z, sigma) + z / sigma) ** 2)


def _target_sign(score, x0, sigma, z):
    return 0.5 * _sum((sigma * score(x0 + sigma * z, sigma) - z) ** 2)


def _at_clean_point(score, x0, sigma, z):
    return 0.5 * _sum((sigma * score(x0, sigma) + z) ** 2)


def _mean_over_values(score, x0, sigma, z):
    return 0.5 * ((sigma * score(x0 + sigma * z, sigma) + z) ** 2).flatten(1).mean(1)


def _batch_mean(score, x0, sigma, z):
    return _dsm(score, x0, sigma, z).mean()


_DSM_MISTAKES = {
    _unweighted: "that is the unweighted loss 1/2 ||s + z/sigma||^2; the NCSN weighting lambda = sigma^2 "
                 "makes it 1/2 ||sigma s + z||^2",
    _target_sign: "the target score of the kernel is -(x - x0)/sigma^2 = -z/sigma, so sigma s + z, not sigma s - z",
    _at_clean_point: "evaluate the score at the noisy point x0 + sigma z, not at x0",
    _mean_over_values: "sum the squares over the values of each sample (the lesson's d tau^2 / (2 (tau^2 + sigma^2)))",
    _batch_mean: "return one value per sample, shape (B,), not the batch mean",
}


@exercise(_dsm, *_DSM_MISTAKES)
def check_dsm_loss(fn):
    """fn(score, x0, sigma, z) = 1/2 ||sigma score(x0 + sigma z, sigma) + z||^2 per sample, shape (B,)."""
    g = torch.Generator().manual_seed(1)
    gm = _mixture()
    gaussian_image = lambda x, sigma: -(x - 0.5) / (0.1 + sigma ** 2)     # N(0.5, 0.1 I) images
    for score, shape, sigma in [(gm.score, (6, 2), 0.4), (gaussian_image, (2, 1, 3, 3), 1.7)]:
        x0 = torch.randn(shape, generator=g, dtype=F64)
        z = torch.randn(shape, generator=g, dtype=F64)
        out = fn(score, x0.clone(), sigma, z.clone())
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        expected = _dsm(score, x0, sigma, z)
        assert out.shape == expected.shape, (f"return one value per sample, shape {tuple(expected.shape)}, "
                                             f"got {tuple(out.shape)}")
        if not close(out, expected, **_TOL):
            raise AssertionError(f"x0 of shape {shape}, sigma = {sigma}: expected {_fmt(expected)}..., got "
                                 f"{_fmt(out)}...; " + diagnose(out, expected, (score, x0, sigma, z), _DSM_MISTAKES,
                                                                **_TOL))


# ---------------------------------------------------------------- exercise 2: exact mixture score
def _mixture_score(x, sigma, weights, means, covs):
    return GaussianMixture(weights, means, covs).score(x, sigma)


def _clean_score(x, sigma, weights, means, covs):
    return _mixture_score(x, 0.0, weights, means, covs)


def _sigma_not_squared(x, sigma, weights, means, covs):
    return _mixture_score(x, sigma ** 0.5, weights, means, covs)


def _prior_weights(x, sigma, weights, means, covs):  # weights instead of responsibilities r_k(x)
    eye = torch.eye(means.shape[1], dtype=x.dtype)
    comp = torch.linalg.solve(covs + sigma ** 2 * eye, (x[:, None, :] - means)[..., None])[..., 0]
    return -(weights[None, :, None] * comp).sum(1)


def _wrong_sign(x, sigma, weights, means, covs):
    return -_mixture_score(x, sigma, weights, means, covs)


def _densities_not_logs(x, sigma, weights, means, covs):  # r_k from exp(log N_k): 0/0 far from the means
    cov = covs + sigma ** 2 * torch.eye(means.shape[1], dtype=x.dtype)
    diff = x[:, None, :] - means[None]
    sol = torch.linalg.solve(cov[None], diff[..., None])[..., 0]
    dens = weights * torch.exp(-0.5 * (diff * sol).sum(-1)) / torch.det(cov).sqrt()
    r = dens / dens.sum(1, keepdim=True)
    return -(r[..., None] * sol).sum(1)


_MIXTURE_MISTAKES = {
    _clean_score: "the noisy marginal has covariances C_k + sigma^2 I: the noise adds sigma^2 to every component",
    _sigma_not_squared: "add the variance sigma^2 (not sigma) to each covariance",
    _prior_weights: "weight each component by its responsibility r_k(x) = w_k N_k(x) / p(x), not by w_k",
    _wrong_sign: "the score points towards the means: -(C_k + sigma^2 I)^-1 (x - mu_k)",
    _densities_not_logs: "far from the means every density underflows to 0 and r_k = 0/0: compute the "
                         "responsibilities from log-densities with torch.softmax (or logsumexp)",
}


@exercise(_mixture_score, *_MIXTURE_MISTAKES)
def check_mixture_score(fn):
    """fn(x, sigma, weights, means, covs) = grad_x log sum_k w_k N(x; mu_k, C_k + sigma^2 I), x (N, d)."""
    g = torch.Generator().manual_seed(2)
    gm = _mixture()
    far = torch.tensor([[60.0, 60.0], [-80.0, 50.0]], dtype=F64)          # where densities underflow
    x = torch.cat([3 * torch.randn(20, 2, generator=g, dtype=F64), far])
    for sigma in (0.3, 1.5):
        args = (x.clone(), sigma, gm.weights.clone(), gm.means.clone(), gm.covs.clone())
        out = fn(*args)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == x.shape, f"the score has the shape of x {tuple(x.shape)}, got {tuple(out.shape)}"
        expected = gm.score(x, sigma)
        assert bool(torch.isfinite(_value(out)).all()), (
            "non-finite values far from the means, e.g. at x = (60, 60): "
            + _MIXTURE_MISTAKES[_densities_not_logs])
        if not close(out, expected, **_TOL):
            raise AssertionError(f"sigma = {sigma}: " + diagnose(out, expected, args, _MIXTURE_MISTAKES, **_TOL))


# ---------------------------------------------------------------- exercise 3: sliced score matching
def _ssm_vr(score, x, v):
    return losses.ssm_vr_loss(score, x, v=v[None])


def _jac_term(score, x, v):
    x = x.detach().requires_grad_(True)
    s = score(x)
    Jv = torch.autograd.grad(_sum(s * v).sum(), x, create_graph=True)[0]
    return s, Jv


def _plain_ssm(score, x, v):
    s, Jv = _jac_term(score, x, v)
    return _sum(Jv * v) + 0.5 * _sum(s * v) ** 2


def _no_half(score, x, v):
    s, Jv = _jac_term(score, x, v)
    return _sum(Jv * v) + _sum(s ** 2)


def _trace_sign(score, x, v):
    s, Jv = _jac_term(score, x, v)
    return -_sum(Jv * v) + 0.5 * _sum(s ** 2)


def _gradient_not_projected(score, x, v):
    s, Jv = _jac_term(score, x, v)
    return _sum(Jv) + 0.5 * _sum(s ** 2)


def _no_create_graph(score, x, v):  # right value, but the Jacobian term does not train the network
    x = x.detach().requires_grad_(True)
    s = score(x)
    Jv = torch.autograd.grad(_sum(s * v).sum(), x)[0]
    return _sum(Jv * v) + 0.5 * _sum(s ** 2)


_SSM_MISTAKES = {
    _plain_ssm: "that is plain SSM with 1/2 (v.s)^2; the variance-reduced form replaces it by its mean over "
                "v, 1/2 ||s||^2",
    _no_half: "the norm term is 1/2 ||s(x)||^2",
    _trace_sign: "the Jacobian term enters with a + sign: v^T (grad_x s) v estimates tr(grad_x s)",
    _gradient_not_projected: "after grad_x (v . s) = J^T v, take the inner product with v again: v^T J v",
    _no_create_graph: "the value is right but the loss cannot train the network: pass create_graph=True to "
                      "torch.autograd.grad so that v^T J v stays differentiable in the network's weights",
}


@exercise(_ssm_vr, *_SSM_MISTAKES)
def check_ssm_vr(fn):
    """fn(score, x, v) = v^T grad_x s(x) v + 1/2 ||s(x)||^2 per sample, x and v (B, d), shape (B,)."""
    g = torch.Generator().manual_seed(3)
    W = torch.randn(3, 3, generator=g, dtype=F64).requires_grad_(True)  # the "network's" weights
    score = lambda t: -torch.tanh(t @ W.T) - 0.5 * t ** 3                  # non-symmetric Jacobian
    for n in (4, 1):
        x = torch.randn(n, 3, generator=g, dtype=F64)
        v = torch.randn(n, 3, generator=g, dtype=F64)
        out = fn(score, x.clone(), v.clone())
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        expected = _ssm_vr(score, x, v)
        assert out.shape == expected.shape, (f"return one value per sample, shape {tuple(expected.shape)}, "
                                             f"got {tuple(out.shape)}")
        if not close(out, expected, **_TOL):
            raise AssertionError(f"B = {n}: expected {_fmt(expected)}, got {_fmt(out)}; "
                                 + diagnose(out, expected, (score, x, v), _SSM_MISTAKES, **_TOL))
        want = torch.autograd.grad(expected.sum(), W)[0]
        assert out.requires_grad, ("the loss must stay differentiable in the network's weights (do not "
                                   "detach it; use create_graph=True)")
        hint = ("the value is right but its gradient in the network's weights is not: pass "
                "create_graph=True to torch.autograd.grad so that v^T J v trains the network too")
        try:
            got = torch.autograd.grad(out.sum(), W, allow_unused=True)[0]
        except RuntimeError as err:                      # the graph was freed by a grad without it
            raise AssertionError(hint) from err
        assert got is not None and torch.allclose(got, want, rtol=1e-6, atol=1e-9), hint
