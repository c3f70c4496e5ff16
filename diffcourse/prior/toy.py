"""Gaussian mixtures: the course's exact testbed (denoiser, score, posterior and p(y | x_t)).

For a prior p(x0) = sum_k w_k N(x0; mu_k, C_k) every quantity a diffusion solver approximates has a
closed form, so samplers and guidance terms can be tested against the truth:

* the noisy marginal p_sigma(x) = sum_k w_k N(x; mu_k, C_k + sigma^2 I)  (VE: x = x0 + sigma z);
* the component posteriors of x0 given x: responsibilities r_k(x) (log-sum-exp), means
  m_k = mu_k + C_k (C_k + sigma^2 I)^-1 (x - mu_k), covariances P_k = C_k - C_k (C_k + sigma^2 I)^-1 C_k;
* the denoiser E[x0 | x] = sum_k r_k m_k and the score (E[x0 | x] - x) / sigma^2 (Tweedie);
* the posterior p(x0 | y) of y = A x0 + sigma_y n, again a Gaussian mixture (Bishop 2006, eq. 2.116);
* the exact likelihood p(y | x_t) = sum_k r_k(x_t) N(y; A m_k(x_t), A P_k A^T + sigma_y^2 I).

Each covariance is diagonalised once, C_k = U_k diag(lam_k) U_k^T, so C_k + sigma^2 I costs nothing
for any sigma, including a different sigma per sample. All arithmetic runs in float64; results come
back in the dtype of the input ``x`` (``sample`` and the parameters in the dtype given at
construction). A state x may be (N, d) or image-shaped (N, *shape) with d values per sample.
"""
from __future__ import annotations

import math

import torch

from .._validate import as_sigma, check_int, check_nonnegative, check_positive, check_tensor

__all__ = ["GaussianMixture"]

_F64 = torch.float64


class GaussianMixture:
    """Mixture sum_k w_k N(mu_k, C_k) in R^d; weights (K,), means (K, d), covs (K, d, d).

    >>> gm = GaussianMixture.ring(4, radius=2.0, std=0.3)
    >>> gm.sample(5, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([5, 2])
    >>> gm.denoiser(torch.zeros(3, 2), 0.5).shape
    torch.Size([3, 2])
    """

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor):
        check_tensor(weights, "weights", ndim=1)
        check_tensor(means, "means", ndim=2)
        check_tensor(covs, "covs", ndim=3)
        K, d = means.shape
        if weights.shape[0] != K or covs.shape != (K, d, d):
            raise ValueError(f"weights must be (K,), means (K, d), covs (K, d, d) with one K and d; got "
                             f"{tuple(weights.shape)}, {tuple(means.shape)}, {tuple(covs.shape)}")
        if not (weights.device == means.device == covs.device):
            raise ValueError("weights, means and covs must live on one device, got "
                             f"{weights.device}, {means.device}, {covs.device}")
        w = weights.to(_F64)
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or w.sum() <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all zero, got {weights.tolist()}")
        C = covs.to(_F64)
        tol = max(1e-10, 1e3 * torch.finfo(covs.dtype).eps) * float(C.abs().amax())
        if not bool(torch.isfinite(C).all()) or float((C - C.mT).abs().amax()) > tol:
            raise ValueError("covs must be finite and symmetric: covs[k] == covs[k].T")
        C = 0.5 * (C + C.mT)
        lam, U = torch.linalg.eigh(C)                                   # (K, d), (K, d, d)
        if bool((lam <= 0).any()):
            raise ValueError("covs must be positive definite; smallest eigenvalue "
                             f"{lam.min().item():.3g}")
        if not bool(torch.isfinite(means).all()):
            raise ValueError("means must be finite")
        self.dtype, self.device = means.dtype, means.device
        self._w, self._mu, self._C, self._lam, self._U = w / w.sum(), means.to(_F64), C, lam, U

    # ---- parameters -------------------------------------------------------------------------
    @property
    def weights(self) -> torch.Tensor:
        return self._w.to(self.dtype)

    @property
    def means(self) -> torch.Tensor:
        return self._mu.to(self.dtype)

    @property
    def covs(self) -> torch.Tensor:
        return self._C.to(self.dtype)

    @property
    def dim(self) -> int:
        return self._mu.shape[1]

    @property
    def mean(self) -> torch.Tensor:
        """Mixture mean sum_k w_k mu_k, shape (d,)."""
        return (self._w @ self._mu).to(self.dtype)

    @property
    def cov(self) -> torch.Tensor:
        """Mixture covariance sum_k w_k (C_k + mu_k mu_k^T) - mean mean^T, shape (d, d)."""
        m = self._w @ self._mu
        outer = self._mu[:, :, None] * self._mu[:, None, :]             # (K, d, d)
        second = torch.einsum("k,kij->ij", self._w, self._C + outer)
        return (second - torch.outer(m, m)).to(self.dtype)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self._w.shape[0]}, d={self.dim}, dtype={self.dtype})"

    def to(self, device) -> "GaussianMixture":
        """The same mixture with its parameters on ``device``."""
        return _from64(self._w.to(device), self._mu.to(device), self._C.to(device), self.dtype)

    def marginal(self, sigma: float) -> "GaussianMixture":
        """The noisy mixture p_sigma = sum_k w_k N(mu_k, C_k + sigma^2 I) (VE, x = x0 + sigma z)."""
        s2 = check_nonnegative(sigma, "sigma") ** 2
        eye = torch.eye(self.dim, dtype=_F64, device=self.device)
        return _from64(self._w, self._mu, self._C + s2 * eye, self.dtype)

    # ---- the noisy prior ------------------------------------------------------------------------
    def _flat(self, x, name="x") -> torch.Tensor:
        check_tensor(x, name)
        if x.ndim < 2 or x[0].numel() != self.dim:
            raise ValueError(f"{name} must be (N, {self.dim}) or (N, ...) with {self.dim} values per "
                             f"sample, got shape {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1).to(_F64)                     # (N, d)

    def _parts(self, x, sigma):
        """Per-sample, per-component pieces in float64 for x (N, d) float64 and sigma."""
        s2 = as_sigma(sigma, x).reshape(-1, 1, 1) ** 2                 # (N, 1, 1)
        dev = x.device
        w, mu, lam, U = (t.to(dev) for t in (self._w, self._mu, self._lam, self._U))
        diff = x[:, None, :] - mu[None]                                 # (N, K, d)
        proj = torch.einsum("nkd,kde->nke", diff, U)                    # eigen-coordinates
        lam_s = lam[None] + s2                                          # (N, K, d) spectrum of C + s2 I
        maha = (proj ** 2 / lam_s).sum(-1)                              # (N, K)
        log_n = -0.5 * (maha + lam_s.log().sum(-1) + self.dim * math.log(2 * math.pi))
        log_joint = w.log()[None] + log_n                               # (N, K)
        log_p = torch.logsumexp(log_joint, dim=1)                       # (N,)
        return dict(U=U, mu=mu, lam=lam, lam_s=lam_s, s2=s2, proj=proj,
                    log_r=log_joint - log_p[:, None], log_p=log_p)

    @staticmethod
    def _rotate(U, coords):
        """U_k @ coords[n, k] for every n, k: (K, d, d), (N, K, d) -> (N, K, d)."""
        return torch.einsum("kde,nke->nkd", U, coords)

    def log_prob(self, x: torch.Tensor, *, sigma=0.0) -> torch.Tensor:
        """log p_sigma(x) of the mixture convolved with N(0, sigma^2 I); x (N, d) -> (N,)."""
        x64 = self._flat(x)
        return self._parts(x64, sigma)["log_p"].to(x.dtype)

    def component_posteriors(self, x: torch.Tensor, sigma):
        """Posterior of x0 given x = x0 + sigma z, component by component.

        Returns (r, m, P): responsibilities r (N, K) summing to 1, means m (N, K, d) and covariances
        P (N, K, d, d), so that p(x0 | x) = sum_k r_k N(x0; m_k, P_k).
        """
        x64 = self._flat(x)
        p = self._parts(x64, sigma)
        m = p["mu"][None] + self._rotate(p["U"], p["lam"] / p["lam_s"] * p["proj"])
        P = torch.einsum("kde,nke,kfe->nkdf", p["U"], p["lam"] * p["s2"] / p["lam_s"], p["U"])
        return tuple(t.to(x.dtype) for t in (p["log_r"].exp(), m, P))

    def denoiser(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Exact D(x, sigma) = E[x0 | x0 + sigma z = x] = sum_k r_k(x) m_k(x); shape of x."""
        x64 = self._flat(x)
        p = self._parts(x64, sigma)
        m = p["mu"][None] + self._rotate(p["U"], p["lam"] / p["lam_s"] * p["proj"])  # (N, K, d)
        out = (p["log_r"].exp()[:, :, None] * m).sum(1)
        return out.reshape(x.shape).to(x.dtype)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Exact grad_x log p_sigma(x) = -sum_k r_k (C_k + sigma^2 I)^-1 (x - mu_k); sigma = 0 allowed.

        Equals (denoiser(x, sigma) - x) / sigma^2 for sigma > 0 (Tweedie; Efron 2011, eq. 2.8).
        """
        x64 = self._flat(x)
        p = self._parts(x64, sigma)
        comp = -self._rotate(p["U"], p["proj"] / p["lam_s"])          # (N, K, d)
        out = (p["log_r"].exp()[:, :, None] * comp).sum(1)
        return out.reshape(x.shape).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n independent draws, shape (n, d), on the mixture's device and dtype."""
        check_int(n, "n", 0)
        k = torch.multinomial(self._w, n, replacement=True, generator=generator) if n else \
            torch.zeros(0, dtype=torch.long, device=self.device)
        z = torch.randn(n, self.dim, generator=generator, dtype=_F64, device=self.device)
        L = self._U * self._lam.sqrt()[:, None, :]                      # C_k = L_k L_k^T
        return (self._mu[k] + torch.einsum("nde,ne->nd", L[k], z)).to(self.dtype)

    # ---- measurements y = A x0 + sigma_y n ------------------------------------------------------
    def _measurement(self, A, sigma_y, y):
        check_tensor(A, "A", ndim=2)
        if A.shape[1] != self.dim:
            raise ValueError(f"A must be (m, {self.dim}), got {tuple(A.shape)}")
        check_tensor(y, "y", ndim=(1, 2))
        if y.shape[-1] != A.shape[0]:
            raise ValueError(f"y must be (m,) or (B, m) with m = {A.shape[0]} (rows of A), "
                             f"got {tuple(y.shape)}")
        return A.to(_F64), check_positive(sigma_y, "sigma_y"), y.to(_F64)

    def posterior(self, A: torch.Tensor, sigma_y: float, y: torch.Tensor):
        """Exact p(x0 | y) for y = A x0 + sigma_y n (Bishop 2006, eqs. 2.113-2.117), per component.

        Gain G_k = C_k A^T S_k^-1 with S_k = A C_k A^T + sigma_y^2 I; means mu_k + G_k (y - A mu_k);
        covariances (I - G_k A) C_k (Joseph form); weights proportional to w_k N(y; A mu_k, S_k).
        A (m, d); y (m,) -> a GaussianMixture; y (B, m) -> a list of B GaussianMixtures.
        """
        A, sy, y = self._measurement(A, sigma_y, y)
        dev, A = y.device, A.to(y.device)
        w, mu, C = self._w.to(dev), self._mu.to(dev), self._C.to(dev)
        S = A @ C @ A.T + sy ** 2 * torch.eye(A.shape[0], dtype=_F64, device=dev)  # (K, m, m)
        G = torch.linalg.solve(S, A @ C).mT                             # C A^T S^-1, (K, d, m)
        IGA = torch.eye(self.dim, dtype=_F64, device=dev) - G @ A
        P = IGA @ C @ IGA.mT + sy ** 2 * G @ G.mT                        # (K, d, d)
        yb = y.reshape(-1, A.shape[0])                                  # (B, m)
        resid = yb[:, None, :] - mu @ A.T                               # (B, K, m)
        post_mu = mu[None] + torch.einsum("kdm,bkm->bkd", G, resid)
        L = torch.linalg.cholesky(S)
        log_w = w.log()[None] + _log_normal(resid, L)                   # (B, K)
        out = [_from64(torch.softmax(lw, 0), m, P, self.dtype) for lw, m in zip(log_w, post_mu)]
        return out[0] if y.ndim == 1 else out

    def likelihood_score(self, x: torch.Tensor, sigma, A: torch.Tensor, sigma_y: float,
                         y: torch.Tensor) -> torch.Tensor:
        """Exact grad_{x_t} log p(y | x_t), x_t = x0 + sigma z, y = A x0 + sigma_y n.

        p(y | x_t) = sum_k r_k(x_t) N(y; A m_k(x_t), S_k), S_k = A P_k A^T + sigma_y^2 I, so the gradient
        is sum_k rho_k [g_k + M_k A^T S_k^-1 (y - A m_k)] - sum_k r_k g_k with g_k the component score,
        M_k = C_k (C_k + sigma^2 I)^-1 and rho_k the responsibilities given (x_t, y).
        x (N, d) (or (N, ...)), y (m,) or (N, m); returns the shape and dtype of x.
        """
        x64 = self._flat(x)
        A, sy, y = self._measurement(A, sigma_y, y)
        A, y = A.to(x64.device), y.to(x64.device)
        if y.ndim == 2 and y.shape[0] != x64.shape[0]:
            raise ValueError(f"y must be (m,) or (N, m) with N = {x64.shape[0]}, got {tuple(y.shape)}")
        p = self._parts(x64, sigma)
        U, lam, lam_s = p["U"], p["lam"], p["lam_s"]
        m = p["mu"][None] + self._rotate(U, lam / lam_s * p["proj"])   # (N, K, d)
        P = torch.einsum("kde,nke,kfe->nkdf", U, lam * p["s2"] / lam_s, U)
        S = A @ P @ A.T + sy ** 2 * torch.eye(A.shape[0], dtype=_F64, device=x64.device)
        L = torch.linalg.cholesky(S)                                    # (N, K, m, m)
        resid = y.reshape(-1, 1, A.shape[0]) - m @ A.T                  # (N, K, m)
        sol = torch.cholesky_solve(resid[..., None], L)[..., 0]         # S^-1 resid
        g = -self._rotate(U, p["proj"] / lam_s)                         # component scores
        pull = self._rotate(U, lam / lam_s * torch.einsum("nkm,md,kde->nke", sol, A, U))
        rho = torch.softmax(p["log_r"] + _log_normal(resid, L), dim=1)  # (N, K)
        r = p["log_r"].exp()
        out = (rho[..., None] * (g + pull)).sum(1) - (r[..., None] * g).sum(1)
        return out.reshape(x.shape).to(x.dtype)

    # ---- presets ------------------------------------------------------------------------------
    @classmethod
    def gaussian(cls, mean: torch.Tensor, cov) -> "GaussianMixture":
        """One Gaussian N(mean, cov); cov a (d, d) tensor or a number c meaning c * I."""
        check_tensor(mean, "mean", ndim=1)
        if not isinstance(cov, torch.Tensor):
            eye = torch.eye(mean.shape[0], dtype=mean.dtype, device=mean.device)
            cov = check_positive(cov, "cov") * eye
        return cls(torch.ones(1, dtype=mean.dtype, device=mean.device), mean[None], cov[None])

    @classmethod
    def ring(cls, k: int = 8, radius: float = 1.0, std: float = 0.1, *, dtype=None, device=None):
        """k equal-weight isotropic 2-D Gaussians (std) on a circle of the given radius."""
        angle = 2 * math.pi * torch.arange(k, dtype=_F64) / k
        means = check_positive(radius, "radius") * torch.stack([angle.cos(), angle.sin()], 1)
        return _isotropic(means, check_positive(std, "std"), dtype, device)

    @classmethod
    def moons(cls, k: int = 6, std: float = 0.1, *, dtype=None, device=None):
        """Two interleaved half-moons (as in scikit-learn's make_moons), each a chain of k Gaussians."""
        theta = torch.linspace(0, math.pi, k, dtype=_F64)
        upper = torch.stack([theta.cos(), theta.sin()], 1)
        lower = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], 1)
        return _isotropic(torch.cat([upper, lower]) - torch.tensor([0.5, 0.25], dtype=_F64),
                          check_positive(std, "std"), dtype, device)


def _from64(w, mu, C, dtype) -> GaussianMixture:
    """A mixture built from float64 parameters that reports ``dtype`` (no precision lost)."""
    gm = GaussianMixture(w, mu, C)
    gm.dtype = dtype
    return gm


def _isotropic(means, std, dtype, device) -> GaussianMixture:
    K, d = means.shape
    dtype = dtype or torch.get_default_dtype()
    covs = std ** 2 * torch.eye(d, dtype=_F64).expand(K, d, d)
    return _from64(torch.full((K,), 1.0 / K, dtype=_F64, device=device), means.to(device),
                   covs.to(device), dtype)


def _log_normal(resid: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """log N(resid; 0, L L^T) for resid (..., m) and Cholesky factors L (..., m, m) -> (...)."""
    half = torch.linalg.solve_triangular(L, resid[..., None], upper=False)[..., 0]
    logdet = 2 * torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * ((half ** 2).sum(-1) + logdet + resid.shape[-1] * math.log(2 * math.pi))
