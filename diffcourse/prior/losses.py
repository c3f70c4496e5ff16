"""Score-matching and self-supervised denoising losses, one per paper, each returning a (B,) tensor.

Every loss sums over all but the batch dimension and never mixes samples, so a batch of two equals
two batches of one; average the result yourself (``loss.mean().backward()``). Noise comes from
``generator=`` or is passed in (``z=``, ``b=``, ``v=``) for common random numbers.

* explicit score matching (Hyvarinen 2005): ``esm_loss``  (needs the true score: a testbed only)
* implicit score matching (Hyvarinen 2005, Thm. 1): ``ism_loss``  (exact divergence by autograd)
* denoising score matching (Vincent 2011; NCSN weighting sigma^2): ``dsm_loss``, ``denoiser_loss``,
  ``eps_loss``; with EDM's noise levels and weighting (Karras et al. 2022): ``edm_loss``
* sliced score matching (Song et al. 2019): ``ssm_loss``, ``ssm_vr_loss``
* self-supervised denoising: ``sure_loss`` (Stein 1981; Soltanayev & Chun 2018) with the
  Monte-Carlo divergence ``mc_divergence``, and ``noise2noise_loss`` (Lehtinen et al. 2018)
"""
from __future__ import annotations

from typing import Callable

import torch

from diffcourse._validate import as_sigma, check_positive, check_tensor

__all__ = ["esm_loss", "divergence", "ism_loss", "dsm_loss", "denoiser_loss", "eps_loss", "ssm_loss",
           "ssm_vr_loss", "mc_divergence", "sure_loss", "noise2noise_loss", "edm_loss"]


def _sum(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(1)  # (B,)


def _noise(z, x: torch.Tensor, generator, name: str) -> torch.Tensor:
    if z is None:
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    check_tensor(z, name)
    if z.shape != x.shape:
        raise ValueError(f"{name} must have the shape of x {tuple(x.shape)}, got {tuple(z.shape)}")
    return z


def _probes(v, x: torch.Tensor, n: int, rademacher: bool, generator, names=("v", "n_particles")):
    if v is not None:
        check_tensor(v, names[0])
        if v.ndim != x.ndim + 1 or v.shape[1:] != x.shape:
            raise ValueError(f"{names[0]} must have shape (n, *{tuple(x.shape)}), got {tuple(v.shape)}")
        return v
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{names[1]} must be a positive int, got {n!r}")
    v = torch.randn((n, *x.shape), generator=generator, dtype=x.dtype, device=x.device)
    return v.sign() if rademacher else v  # Rademacher: sign of a symmetric draw


def _with_grad(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    check_tensor(x, name)
    return x if x.requires_grad else x.detach().requires_grad_(True)


def esm_loss(score: Callable, x: torch.Tensor, true_score: torch.Tensor) -> torch.Tensor:
    """Explicit score matching (Hyvarinen 2005, Eq. 2): 1/2 || s(x) - grad log p(x) ||^2, per sample (B,)."""
    check_tensor(true_score, "true_score")
    return 0.5 * _sum((score(x) - true_score) ** 2)


def _trace_jacobian(out: torch.Tensor, x: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """sum_i d out_i / d x_i per sample, one backward pass per dimension: (B,)."""
    div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(x[0].numel()):
        grad_i = torch.autograd.grad(out.flatten(1)[:, i].sum(), x, create_graph=create_graph,
                                     allow_unused=True)[0]
        div = div if grad_i is None else div + grad_i.flatten(1)[:, i]
    return div


def divergence(f: Callable, x: torch.Tensor, *, create_graph: bool = True) -> torch.Tensor:
    """Exact divergence div f(x) = sum_i d f_i / d x_i by autograd (d backward passes): (B,).

    For low-dimensional ``x`` (B, d, ...) and ``f`` acting on each sample separately.

    >>> divergence(lambda v: v ** 2, torch.tensor([[1.0, 3.0]])).tolist()   # 2 * 1 + 2 * 3
    [8.0]
    """
    x = _with_grad(x)
    return _trace_jacobian(f(x), x, create_graph)


def ism_loss(score: Callable, x: torch.Tensor) -> torch.Tensor:
    """Implicit score matching (Hyvarinen 2005, Thm. 1): 1/2 ||s(x)||^2 + tr(grad_x s(x)), per sample (B,).

    Equals ``esm_loss`` minus ``1/2 ||grad log p||^2`` in expectation, so needs no true score; the
    trace is exact (d backward passes), for low-dimensional ``x`` (B, d).

    >>> ism_loss(lambda v: -v, torch.tensor([[1.0, 2.0]])).item()   # 1/2 * 5 - 2
    0.5
    """
    x = _with_grad(x)
    s = score(x)
    return 0.5 * _sum(s ** 2) + _trace_jacobian(s, x, create_graph=True)


def dsm_loss(score: Callable, x0: torch.Tensor, sigma, *, z: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Denoising score matching, sigma^2-weighted (Vincent 2011; Song & Ermon 2019, Eq. 2): 1/2 ||sigma s(x0 + sigma z, sigma) + z||^2.

    ``score``: callable ``s(x, sigma)`` (``sigma`` passed on as given); ``x0``: (B, ...) clean data;
    ``sigma``: number or (B,); ``z``: optional noise (B, ...). Returns (B,). Its minimiser is the
    score of the noisy marginal p_sigma; for data N(mu, tau^2 I_d) the minimum is d tau^2 / (2 (tau^2 + sigma^2)).

    >>> x0 = torch.zeros(1, 2); z = torch.ones(1, 2)
    >>> dsm_loss(lambda x, s: -x / s**2, x0, 0.5, z=z)   # the kernel's own score: zero loss
    tensor([0.])
    """
    check_tensor(x0, "x0")
    s = as_sigma(sigma, x0)
    z = _noise(z, x0, generator, "z")
    return 0.5 * _sum((s * score(x0 + s * z, sigma) + z) ** 2)


def denoiser_loss(D: Callable, x0: torch.Tensor, sigma, *, z: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """DSM in denoiser form (Vincent 2011; Karras et al. 2022, Eq. 2 with lambda = 1/sigma^2): ||D(x0 + sigma z, sigma) - x0||^2 / (2 sigma^2).

    Identical to ``dsm_loss`` for the score ``(D(x, sigma) - x) / sigma^2`` and the same ``z``.
    Shapes as in ``dsm_loss``; returns (B,).
    """
    check_tensor(x0, "x0")
    s = as_sigma(sigma, x0)
    z = _noise(z, x0, generator, "z")
    return 0.5 * _sum((D(x0 + s * z, sigma) - x0) ** 2) / s.flatten() ** 2


def eps_loss(eps: Callable, x0: torch.Tensor, sigma, *, z: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise-prediction loss (Ho et al. 2020, Eq. 14, VE input): || eps(x0 + sigma z, sigma) - z ||^2.

    ``eps(x, sigma) = -sigma s(x, sigma)``, so this is twice ``dsm_loss``. A VP network
    ``eps_vp(x_t, t)`` enters through ``lambda x, s: eps_vp(x / (1 + s**2) ** 0.5, t_of(s))``.
    Shapes as in ``dsm_loss``; returns (B,).
    """
    check_tensor(x0, "x0")
    s = as_sigma(sigma, x0)
    z = _noise(z, x0, generator, "z")
    return _sum((eps(x0 + s * z, sigma) - z) ** 2)


def _ssm_terms(score: Callable, x: torch.Tensor, v: torch.Tensor):
    """Per probe: v^T (grad_x s) v (one extra backward pass) and v^T s, each (n, B)."""
    x = _with_grad(x)
    s = score(x)
    jac_terms, proj = [], []
    for vk in v:
        sv = _sum(s * vk)                                                      # (B,)
        grad = torch.autograd.grad(sv.sum(), x, create_graph=True)[0]          # (B, ...) = J^T v
        jac_terms.append(_sum(grad * vk))
        proj.append(sv)
    return torch.stack(jac_terms), torch.stack(proj), s


def ssm_loss(score: Callable, x: torch.Tensor, *, n_particles: int = 1, rademacher: bool = False,
             v: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sliced score matching (Song et al. 2019, Eq. 7): v^T grad_x s(x) v + 1/2 (v^T s(x))^2, mean over v.

    ``score``: callable ``s(x)``; ``x``: (B, ...); ``v``: optional probes (n, B, ...), else
    ``n_particles`` Gaussian (or Rademacher) draws. Returns (B,).
    """
    v = _probes(v, x, n_particles, rademacher, generator)
    jac, proj, _ = _ssm_terms(score, x, v)
    return (jac + 0.5 * proj ** 2).mean(0)


def ssm_vr_loss(score: Callable, x: torch.Tensor, *, n_particles: int = 1, rademacher: bool = False,
                v: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Variance-reduced SSM (Song et al. 2019, Eq. 8; needs E[v v^T] = I): v^T grad_x s v + 1/2 ||s(x)||^2.

    Same arguments as ``ssm_loss``; returns (B,).
    """
    v = _probes(v, x, n_particles, rademacher, generator)
    jac, _, s = _ssm_terms(score, x, v)
    return jac.mean(0) + 0.5 * _sum(s ** 2)


def mc_divergence(F: Callable, y: torch.Tensor, *, eps: float = 1e-3, n_probes: int = 1,
                  b: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Monte-Carlo divergence (Ramani et al. 2008; Soltanayev & Chun 2018, Eq. 7): b^T (F(y + eps b) - F(y)) / eps.

    Unbiased (as eps -> 0) for ``div F = tr(dF/dy)`` since ``E[b b^T] = I``, b ~ N(0, I); averages
    ``n_probes`` probes. ``F``: callable on (B, ...); ``b``: optional probes (n, B, ...). Returns (B,).
    """
    check_tensor(y, "y")
    eps = check_positive(eps, "eps")
    b = _probes(b, y, n_probes, False, generator, ("b", "n_probes"))
    Fy = F(y)
    return torch.stack([_sum(bk * (F(y + eps * bk) - Fy)) / eps for bk in b]).mean(0)


def sure_loss(F: Callable, y: torch.Tensor, sigma, *, eps: float = 1e-3, n_probes: int = 1,
              b: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Monte-Carlo SURE (Stein 1981; Soltanayev & Chun 2018, Eq. 6): ||y - F(y)||^2 - d sigma^2 + 2 sigma^2 div F(y).

    Unbiased for ``||F(y) - x||^2`` when ``y = x + sigma n`` (no clean ``x`` needed). ``F``: callable
    on (B, ...), e.g. ``lambda y: D(y, sigma)``; ``sigma``: number or (B,); divergence from
    ``mc_divergence``. Returns (B,).

    >>> y, b = torch.ones(1, 4), torch.ones(1, 1, 4)   # one probe b, so div F = b^T b / 2 = 2
    >>> round(sure_loss(lambda v: 0.5 * v, y, 1.0, b=b).item(), 3)   # 1 - 4 + 2 * 2
    1.0
    """
    check_tensor(y, "y")
    s2 = as_sigma(sigma, y).flatten() ** 2
    d = y[0].numel()
    div = mc_divergence(F, y, eps=eps, n_probes=n_probes, b=b, generator=generator)
    return _sum((y - F(y)) ** 2) - d * s2 + 2 * s2 * div


def noise2noise_loss(F: Callable, y: torch.Tensor, y_other: torch.Tensor) -> torch.Tensor:
    """Noise2Noise (Lehtinen et al. 2018, Eq. 2): ||F(y) - y'||^2 with y' an independent noisy copy.

    ``E ||F(y) - y'||^2 = E ||F(y) - x||^2 + E ||y' - x||^2`` for zero-mean noise, so it has the
    minimiser of the supervised loss. ``y``, ``y_other``: (B, ...). Returns (B,).
    """
    check_tensor(y, "y")
    check_tensor(y_other, "y_other")
    if y_other.shape != y.shape:
        raise ValueError(f"y_other must have the shape of y {tuple(y.shape)}, got {tuple(y_other.shape)}")
    return _sum((F(y) - y_other) ** 2)


def edm_loss(D: Callable, x0: torch.Tensor, generator: torch.Generator | None = None,
             P_mean: float = -1.2, P_std: float = 1.2, sigma_data: float = 0.5, *,
             cond_channels: int = 0) -> torch.Tensor:
    """EDM-weighted denoising score matching (Karras et al. 2022, Eq. 8 and Table 1), per sample (B,):
    lambda(sigma) mean_pixels (D(x0 + sigma z, sigma) - x0)^2 with ln sigma ~ N(P_mean, P_std^2) and
    lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2, so that every noise level weighs
    alike. Unlike the other losses here it averages over pixels (the training code's convention).

    ``cond_channels`` k > 0: the last k channels of ``x0`` are conditioning (e.g. the positional
    channels of patches, Hu et al., NeurIPS 2024): they are not noised, enter as
    ``D(x, sigma, cond)`` and are left out of the error; with k = 0 nothing changes.

    >>> edm_loss(lambda x, sigma: torch.zeros_like(x), torch.zeros(2, 1, 4, 4)).tolist()
    [0.0, 0.0]
    """
    cond = None
    if cond_channels and not 0 < cond_channels < x0.shape[1]:
        raise ValueError(f"cond_channels must be 0 or leave at least one image channel of x0 "
                         f"{tuple(x0.shape)}, got {cond_channels!r}")
    if cond_channels:
        x0, cond = x0[:, :-cond_channels], x0[:, -cond_channels:]
    B = x0.shape[0]
    ln_sigma = P_mean + P_std * torch.randn(B, generator=generator, device=x0.device, dtype=x0.dtype)
    sigma = ln_sigma.exp()
    z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    x = x0 + sigma[:, None, None, None] * z
    err = (D(x, sigma) if cond is None else D(x, sigma, cond)) - x0
    return weight * (err ** 2).flatten(1).mean(1)
