"""3-D solvers with 2-D priors (DiffusionMBIR, TPDM, DDS with TV_z): the circular D_z and its adjoint,
the TV_z volume steps (noisy-state and proximal) against an exact solve of their objectives, slicing
round trips, the K schedule, TPDM without its auxiliary prior against a slice-wise DPS written out
here, DDS with TV_z on one slice against DDS, the slice-wise runner and the padded cut denoiser,
batch invariance, determinism and errors. Tiny volumes (n, 1, 4, 8, 8) and exact Gaussian priors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import torch

from diffcourse.physics.ct import Radon, sparse_view
from diffcourse.physics.likelihood import Likelihood
from diffcourse.physics.noise import GaussianNoise
from diffcourse.physics.operators import Downsample, Inpaint, random_mask
from diffcourse.physics.volume import SliceWise
from diffcourse.posterior.solvers.volume import (AXIAL, CORONAL, SAGITTAL, dds_tv_z, diffusion_mbir, from_slices,
                                                 padded_denoiser, primary_turns, slice_by_slice, slice_denoiser,
                                                 to_slices, tpdm)
from diffcourse.posterior.tv3d import admm_tv_z_step, diff_z_circ, diff_z_circ_T, normalised_step, prox_tv_z_step
from diffcourse.prior.processes import karras_sigmas

from _util import gen

F64 = torch.float64
DEPTH, SIZE = 4, 8
SHAPE = (1, 1, DEPTH, SIZE, SIZE)


class DenseSlices:
    """y = M vec(x) on slices (N, 1, H, W): a dense matrix acting on images."""

    def __init__(self, M: torch.Tensor):
        self.M = M

    def A(self, x):
        return x.flatten(1) @ self.M.T  # (N, H W) -> (N, m)

    def AT(self, y):
        return (y @ self.M).reshape(-1, 1, SIZE, SIZE)


def dense(fn, shape):
    """The matrix of a linear map on inputs of ``shape`` (1, ...): column j = fn(e_j)."""
    n = math.prod(shape)
    return torch.stack([fn(torch.eye(n, dtype=F64)[j].reshape(shape)).reshape(-1) for j in range(n)], 1)


def gaussian_D(mu, s=0.3):
    """Exact denoiser of the per-pixel prior N(mu, s²) at x = x0 + σ z: (s² x + σ² mu)/(s² + σ²)."""
    def D(x, sigma):
        sig2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
        return (s ** 2 * x + sig2 * mu) / (s ** 2 + sig2)
    return D


def volume_problem(m=96, B=1, sigma_y=0.05, seed=0):
    """Volumes whose slices nearly agree, seen by a (m x 64) matrix on every slice (m > 64: full rank)."""
    M = torch.randn(m, SIZE * SIZE, generator=gen(seed), dtype=F64) / math.sqrt(m)
    op = SliceWise(DenseSlices(M), DEPTH)
    base = torch.rand(B, 1, 1, SIZE, SIZE, generator=gen(seed + 1), dtype=F64)
    x0 = base.expand(-1, -1, DEPTH, -1, -1) + 0.05 * torch.randn(B, 1, DEPTH, SIZE, SIZE, generator=gen(seed + 2),
                                                                  dtype=F64)
    return op, Likelihood.measure(op, GaussianNoise(sigma_y), x0, generator=gen(seed + 3)), x0


def tv_z_least_squares(op, y, lam):
    """argmin 1/2 ||A x - y||² + lam ||D_z x||_1 for full-column-rank A, exactly, through the dual
    min_{|s| <= lam} 1/2 ||R^{-T}(A^T y - D_z^T s)||² (A = Q R), a bounded least-squares problem
    solved by BVLS (Stark & Parker 1995); then x = (A^T A)^{-1}(A^T y - D_z^T s)."""
    A = dense(op.A, SHAPE).numpy()
    K = dense(diff_z_circ, SHAPE).numpy()
    R = np.linalg.qr(A, mode="r")
    b = A.T @ y.reshape(-1).numpy()
    G = scipy.linalg.solve_triangular(R.T, K.T, lower=True)
    h = scipy.linalg.solve_triangular(R.T, b, lower=True)
    s = scipy.optimize.lsq_linear(G, h, bounds=(-lam, lam), method="bvls", tol=1e-15).x
    x = scipy.linalg.cho_solve((R, False), b - K.T @ s)
    kkt = A.T @ (A @ x - y.reshape(-1).numpy()) + K.T @ s                  # stationarity, should be ~0
    return torch.from_numpy(x).reshape(SHAPE), float(np.abs(kkt).max()), torch.from_numpy(K @ x), torch.from_numpy(s)


# ----------------------------------------------------------------------------------- D_z and TV_z
def test_circular_dz_is_the_adjoint_pair_and_wraps_around():
    x = torch.randn(2, 3, 5, 4, 6, generator=gen(0), dtype=F64)
    p = torch.randn(2, 1, 3, 5, 4, 6, generator=gen(1), dtype=F64)
    lhs = (diff_z_circ(x) * p).flatten(1).sum(1)
    rhs = (x * diff_z_circ_T(p)).flatten(1).sum(1)
    assert ((lhs - rhs).abs() / rhs.abs()).max() < 1e-13
    K = dense(diff_z_circ, (1, 1, 5, 2, 2))
    torch.testing.assert_close(dense(diff_z_circ_T, (1, 1, 1, 5, 2, 2)), K.T, rtol=0, atol=0)
    torch.testing.assert_close(diff_z_circ(x)[:, 0, :, -1], x[:, :, 0] - x[:, :, -1])       # last vs first
    assert diff_z_circ(x[:, :, :1].expand(-1, -1, 5, -1, -1)).abs().max() == 0               # constants in z
    assert torch.linalg.matrix_rank(K) == 4 * 5 - 4                                            # kernel: z-constants


def test_many_admm_steps_reach_the_exact_tv_z_least_squares_solution():
    op, lik, _ = volume_problem()
    lam, rho = 0.05, 1.0
    x_ref, kkt, Dx_ref, s = tv_z_least_squares(op, lik.y, lam)
    assert kkt < 1e-10                                           # the reference is a minimiser
    assert (s.abs() <= lam + 1e-12).all() and (Dx_ref.abs() < 1e-8).float().mean() > 0.1   # TV_z is active
    moving = Dx_ref.abs() > 1e-8                                 # and s = lam sign(D_z x) where D_z x != 0
    assert ((s - lam * Dx_ref.sign())[moving].abs() < 1e-9).all()
    x = torch.zeros(SHAPE, dtype=F64)
    z = torch.zeros_like(diff_z_circ(x))
    w = torch.zeros_like(z)
    for _ in range(300):
        x, z, w = admm_tv_z_step(op, lik.y, x, z, w, lam=lam, rho=rho, n_iter_cg=20)
    assert (x - x_ref).abs().max() < 1e-8


def test_diffusion_mbir_without_a_score_converges_to_the_tv_z_least_squares_solution():
    """The identity denoiser has score 0: what is left is the fast ADMM (one ADMM iteration, one CG
    step per level, z and w kept) on a schedule whose noise has died out."""
    op, lik, x0 = volume_problem()
    lam, rho = 0.05, 1.0
    x_ref = tv_z_least_squares(op, lik.y, lam)[0]
    sigmas = torch.cat([torch.logspace(-3, -8, 1500, dtype=F64), torch.zeros(1, dtype=F64)])
    x = 1e-3 * torch.randn(SHAPE, generator=gen(5), dtype=F64)
    out = diffusion_mbir(lambda v, s: v, x, sigmas, lik, lam=lam, rho=rho, n_corrector=0,
                         final_consistency=False, generator=gen(6))
    err = (out - x_ref).abs().max()
    assert err < 1e-6 < (x_ref - x0).abs().max()


def test_normalised_final_step_is_the_projection_when_A_At_is_scaled_identity():
    op = SliceWise(Downsample(2), DEPTH)                      # A Aᵀ = I/4, AᵀA1 = 1/4
    x = torch.rand(2, 1, DEPTH, SIZE, SIZE, generator=gen(0), dtype=F64)
    y = op.A(torch.rand(2, 1, DEPTH, SIZE, SIZE, generator=gen(1), dtype=F64))
    out = normalised_step(op, y, x)
    torch.testing.assert_close(op.A(out), y, rtol=0, atol=1e-13)
    torch.testing.assert_close(out, x + op.pinv(y - op.A(x)), rtol=0, atol=1e-13)
    mask = random_mask(SIZE, 0.5, generator=gen(2)).to(F64)  # unmeasured pixels (AᵀA1 = 0) stay
    inp = SliceWise(Inpaint(mask), DEPTH)
    out = normalised_step(inp, inp.A(torch.ones_like(x)), x)
    torch.testing.assert_close(out, torch.where(mask.bool(), torch.ones_like(x), x), rtol=0, atol=0)


# ---------------------------------------------------------------------------------- slicing
@pytest.mark.parametrize("dim", [AXIAL, CORONAL, SAGITTAL, -1])
def test_slices_round_trip_and_follow_the_slicewise_order(dim):
    x = torch.randn(2, 3, 4, 5, 6, generator=gen(0))
    s = to_slices(x, dim)
    assert s.shape[0] == 2 * x.shape[dim] and s.shape[1] == 3
    assert torch.equal(from_slices(s, dim, 2), x)
    assert torch.equal(to_slices(from_slices(s, dim, 2), dim), s)
    k, j = 1, 2                                                  # slice j of volume k
    assert torch.equal(s[k * x.shape[dim] + j], x.select(dim, j)[k])


def test_axial_slices_are_the_ones_slicewise_measures():
    op = SliceWise(Downsample(2), DEPTH)
    x = torch.randn(2, 1, DEPTH, SIZE, SIZE, generator=gen(0))
    torch.testing.assert_close(op.A(x).flatten(0, 1), Downsample(2).A(to_slices(x, AXIAL)), rtol=0, atol=0)


def test_slice_denoiser_batches_every_slice_with_its_volumes_sigma():
    seen = []

    def D(x, sigma):
        seen.append((tuple(x.shape), sigma.clone()))
        return x * sigma.reshape(-1, 1, 1, 1)
    x = torch.randn(2, 1, 3, 4, 5, generator=gen(0))
    sigma = torch.tensor([2.0, 3.0])
    out = slice_denoiser(D, CORONAL)(x, sigma)
    assert seen[0][0] == (8, 1, 3, 5) and seen[0][1].tolist() == [2.0] * 4 + [3.0] * 4
    torch.testing.assert_close(out, x * sigma.reshape(-1, 1, 1, 1, 1))


# ---------------------------------------------------------------------------------- K schedule
def test_primary_turns_follow_K():
    assert primary_turns(7, 2) == [True, False] * 3 + [True]
    assert primary_turns(5, 4) == [True, True, True, False, True]
    assert primary_turns(50, math.inf) == [True] * 50
    g = gen(0)
    before = g.get_state()
    primary_turns(10, math.inf, g)
    assert torch.equal(g.get_state(), before)                    # K = inf draws nothing
    turns = primary_turns(20000, 2.7, gen(1))
    assert abs(turns.count(False) / 20000 - 1 / 2.7) < 0.01
    assert turns[:50] == primary_turns(50, 2.7, gen(1))[:50]


# ---------------------------------------------------------------------------------- TPDM
def slicewise_dps_reference(D2, x, sigmas, lik, w, snr, g):
    """Primary-only TPDM written out: Langevin corrector (snr rule) and reverse-diffusion mean on
    every axial slice, each followed by x <- x - w grad_x ||y - A D(x)|| (per volume)."""
    def D3(v, s):                                                # (n, 1, D, H, W), slices through D2
        out = D2(v.transpose(1, 2).reshape(-1, 1, SIZE, SIZE), torch.full((v.shape[0] * DEPTH,), s, dtype=F64))
        return out.reshape(v.shape[0], DEPTH, 1, SIZE, SIZE).transpose(1, 2)

    def pull(v, s):
        v = v.detach().requires_grad_(True)
        x0 = D3(v, s)
        r = (lik.y - lik.A(x0)).flatten(1).norm(dim=1)
        (grad,) = torch.autograd.grad(r.sum(), v)
        return x0.detach(), w * grad
    levels = sigmas.tolist()
    for s, s_next in zip(levels[:-1], levels[1:]):
        x0, step = pull(x, s)
        z = torch.randn(x.shape, generator=g, dtype=F64)
        score = (x0 - x) / s ** 2
        eps = 2 * (snr * z.flatten(1).norm(dim=1) / score.flatten(1).norm(dim=1)) ** 2
        eps = eps.reshape(-1, 1, 1, 1, 1)
        x = x + eps * score + (2 * eps).sqrt() * z - step
        x0, step = pull(x, s)
        x = (x + (1 - s_next ** 2 / s ** 2) * (x0 - x) if s_next > 0 else x0) - step
    return x


def tpdm_problem(B=2):
    op = SliceWise(Downsample(2), DEPTH)
    mu = torch.rand(1, 1, SIZE, SIZE, generator=gen(7), dtype=F64)
    x0 = mu.unsqueeze(2) + 0.3 * torch.randn(1, 1, DEPTH, SIZE, SIZE, generator=gen(8), dtype=F64)
    lik = Likelihood.measure(op, GaussianNoise(0.02), x0, generator=gen(9))
    x = 3 * torch.randn(B, 1, DEPTH, SIZE, SIZE, generator=gen(10), dtype=F64)
    return gaussian_D(mu), lik, x


def never(x, sigma):
    raise AssertionError("the auxiliary prior was called")


def test_tpdm_without_the_auxiliary_prior_is_slice_wise_dps():
    D, lik, x = tpdm_problem()
    sigmas = karras_sigmas(12, 0.01, 3.0).to(F64)
    out = tpdm(D, x, sigmas, lik, D_aux=never, K=math.inf, w=0.05, generator=gen(11))
    ref = slicewise_dps_reference(D, x, sigmas, lik, 0.05, 0.16, gen(11))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert (out - tpdm(D, x, sigmas, lik, D_aux=never, K=math.inf, w=0.0, generator=gen(11))).abs().max() > 1e-3


def test_tpdm_aux_steps_use_perpendicular_slices_on_schedule():
    D, lik, x = tpdm_problem()
    sigmas = karras_sigmas(6, 0.01, 3.0).to(F64)
    calls, turns = [], []

    def D_aux(v, sigma):
        calls.append(tuple(v.shape))
        return v / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)          # the exact denoiser of N(0, 1)
    tpdm(D, x, sigmas, lik, D_aux=D_aux, K=3, aux_dim=SAGITTAL, generator=gen(0),
         callback=lambda d: turns.append(d["primary"]))
    assert turns == primary_turns(6, 3)
    assert calls == [(2 * SIZE, 1, DEPTH, SIZE)] * 2 * turns.count(False)   # corrector + predictor


def test_tpdm_with_one_per_pixel_prior_does_not_depend_on_the_slicing():
    """A per-pixel prior with the same law everywhere is the same volume denoiser whichever way the
    volume is cut: with w = 0 every schedule and every auxiliary plane gives the same result."""
    D = gaussian_D(0.4)
    _, lik, x = tpdm_problem()
    sigmas = karras_sigmas(8, 0.01, 3.0).to(F64)
    ref = tpdm(D, x, sigmas, lik, D_aux=never, K=math.inf, w=0.0, generator=gen(1))
    for K, aux_dim in [(2, CORONAL), (3, SAGITTAL)]:
        out = tpdm(D, x, sigmas, lik, D_aux=D, K=K, aux_dim=aux_dim, w=0.0, generator=gen(1))
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------- properties
SOLVERS = {
    "diffusion_mbir": lambda D, x, s, lik, g: diffusion_mbir(D, x, s, lik, lam=0.02, rho=1.0, generator=g),
    "tpdm": lambda D, x, s, lik, g: tpdm(D, x, s, lik, D_aux=gaussian_D(0.5), K=2.7, w=0.05, generator=g),
}


@pytest.mark.parametrize("name", SOLVERS)
def test_batch_invariance_and_determinism(name):
    D, lik, x = tpdm_problem()
    sigmas = karras_sigmas(8, 0.01, 3.0).to(F64)
    run = SOLVERS[name]
    out = run(D, x, sigmas, lik, gen(3))
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(run(D, x, sigmas, lik, gen(3)), out, rtol=0, atol=0)
    assert (run(D, x, sigmas, lik, gen(4)) - out).abs().max() > 1e-3
    other = torch.cat([x[:1], 100 * x[1:]])                      # a neighbour changes nothing
    torch.testing.assert_close(run(D, other, sigmas, lik, gen(3))[0], out[0], rtol=0, atol=1e-10)


def test_tv_z_removes_the_slice_to_slice_flicker_on_sparse_view_ct():
    """Volumes constant along z, 4-view CT of 8 x 8 slices, an exact Gaussian slice prior: the
    same loop without TV_z (lam = 0) flickers from slice to slice, with TV_z it does not and is closer."""
    op = SliceWise(Radon(SIZE, sparse_view(4), dtype=F64), DEPTH)       # ||A||² ≈ 31
    truth = torch.rand(1, 1, 1, SIZE, SIZE, generator=gen(0), dtype=F64).expand(-1, -1, DEPTH, -1, -1)
    lik = Likelihood.measure(op, GaussianNoise(0.01), truth, generator=gen(1))
    x = 3 * torch.randn(8, 1, DEPTH, SIZE, SIZE, generator=gen(2), dtype=F64)
    sigmas = karras_sigmas(50, 0.01, 3.0).to(F64)
    err, flicker = {}, {}
    for lam in (0.0, 0.2):
        out = diffusion_mbir(gaussian_D(0.5), x, sigmas, lik, lam=lam, generator=gen(3))
        err[lam] = (out - truth).abs().mean()
        flicker[lam] = (out[:, :, 1:] - out[:, :, :-1]).abs().mean()
    assert flicker[0.2] < 0.3 * flicker[0.0] and err[0.2] < 0.85 * err[0.0]


@pytest.mark.parametrize("name", SOLVERS)
def test_bad_input_is_refused_clearly(name):
    D, lik, x = tpdm_problem()
    sigmas = karras_sigmas(4, 0.01, 3.0).to(F64)
    run = SOLVERS[name]
    with pytest.raises(ValueError, match="volumes"):
        run(D, x[:, :, 0], sigmas, lik, None)
    flat = Likelihood(Downsample(2), lik.noise, lik.y[:, 0])
    with pytest.raises(TypeError, match="SliceWise"):
        run(D, x, sigmas, flat, None)
    with pytest.raises(ValueError, match="end at 0"):
        run(D, x, sigmas[:-1], lik, None)


def test_tpdm_argument_errors():
    D, lik, x = tpdm_problem()
    sigmas = karras_sigmas(4, 0.01, 3.0).to(F64)
    with pytest.raises(TypeError, match="D_aux"):
        tpdm(D, x, sigmas, lik, D_aux=None)
    for K in (1, 0.5, 1.0, "2"):
        with pytest.raises(ValueError, match="K"):
            tpdm(D, x, sigmas, lik, D_aux=D, K=K)
    with pytest.raises(ValueError, match="dim"):
        tpdm(D, x, sigmas, lik, D_aux=D, aux_dim=1)


# ---------------------------------------------------------------------------------- DDS + TV_z
def test_prox_tv_z_steps_reach_the_exact_minimiser_with_the_proximal_term():
    """min 1/2 ||A x - y||² + lam ||D_z x||₁ + 1/(2γ) ||x - x̂0||² is the TV_z least-squares problem of
    the stacked operator [A; I/√γ] with data [y; x̂0/√γ]: the exact reference above applies."""
    op, lik, x0 = volume_problem()
    lam, rho, gamma = 0.05, 1.0, 2.0
    anchor = x0 + 0.1 * torch.randn(SHAPE, generator=gen(12), dtype=F64)

    class Stacked:
        def A(self, v):
            return torch.cat([op.A(v).flatten(1), v.flatten(1) / math.sqrt(gamma)], 1)
    y_stacked = torch.cat([lik.y.flatten(1), anchor.flatten(1) / math.sqrt(gamma)], 1)
    x_ref = tv_z_least_squares(Stacked(), y_stacked, lam)[0]
    z = torch.zeros_like(diff_z_circ(anchor))
    w = torch.zeros_like(z)
    for _ in range(150):                                         # CG restarts at x̂0, runs to convergence
        x, z, w = prox_tv_z_step(op, lik.y, anchor, z, w, lam=lam, rho=rho, gamma=gamma, n_iter_cg=40)
    assert (x - x_ref).abs().max() < 1e-8 < (x_ref - anchor).abs().max()


def test_dds_tv_z_on_one_slice_is_dds():
    """With one slice the circular D_z is 0: the volume solver is the 2-D DDS on that slice."""
    from diffcourse.posterior.solvers import dds
    op = SliceWise(Downsample(2), 1)
    mu = torch.rand(1, 1, SIZE, SIZE, generator=gen(0), dtype=F64)
    truth = (mu + 0.3 * torch.randn(2, 1, SIZE, SIZE, generator=gen(1), dtype=F64)).unsqueeze(2)
    lik = Likelihood.measure(op, GaussianNoise(0.05), truth, generator=gen(2))
    x = 3 * torch.randn(truth.shape, generator=gen(3), dtype=F64)
    sigmas = karras_sigmas(10, 0.01, 3.0).to(F64)
    out = dds_tv_z(gaussian_D(mu), x, sigmas, lik, lam=0.3, rho=2.0, gamma=0.5, generator=gen(4))
    ref = slice_by_slice(dds, gaussian_D(mu), x, sigmas, lik, gamma=0.5, generator=gen(4))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)


def test_dds_tv_z_removes_the_flicker_that_slice_wise_dds_leaves():
    """Volumes constant along z, 4-view CT, an exact Gaussian slice prior: slice-wise DDS flickers
    from slice to slice, its TV_z version does not, and is closer to the truth."""
    from diffcourse.posterior.solvers import dds
    op = SliceWise(Radon(SIZE, sparse_view(4), dtype=F64), DEPTH)
    truth = torch.rand(1, 1, 1, SIZE, SIZE, generator=gen(0), dtype=F64).expand(-1, -1, DEPTH, -1, -1)
    lik = Likelihood.measure(op, GaussianNoise(0.01), truth, generator=gen(1))
    x = 3 * torch.randn(8, 1, DEPTH, SIZE, SIZE, generator=gen(2), dtype=F64)
    sigmas = karras_sigmas(30, 0.01, 3.0).to(F64)
    D = gaussian_D(0.5)
    plain = slice_by_slice(dds, D, x, sigmas, lik, gamma=0.1, generator=gen(3))
    coupled = dds_tv_z(D, x, sigmas, lik, lam=0.5, rho=5.0, gamma=0.1, generator=gen(3))
    flicker = {k: (v[:, :, 1:] - v[:, :, :-1]).abs().mean() for k, v in (("plain", plain), ("tv", coupled))}
    err = {k: (v - truth).abs().mean() for k, v in (("plain", plain), ("tv", coupled))}
    assert flicker["tv"] < 0.3 * flicker["plain"] and err["tv"] < 0.85 * err["plain"]


# ---------------------------------------------------------------------------------- helpers
def test_slice_by_slice_is_the_2d_solver_on_each_slice():
    """Every slice on its own: the volume result equals the 2-D solver run on each slice's data alone."""
    from diffcourse.posterior.solvers import dds
    D, lik, x = tpdm_problem(B=1)
    sigmas = karras_sigmas(6, 0.01, 3.0).to(F64)
    out = slice_by_slice(dds, D, x, sigmas, lik, eta=0.0, gamma=0.3)
    for d in range(DEPTH):
        one = Likelihood(lik.op.op, lik.noise, lik.y[:, d])
        torch.testing.assert_close(out[:, :, d], dds(D, x[:, :, d], sigmas, one, eta=0.0, gamma=0.3),
                                   rtol=0, atol=1e-12)
    with pytest.raises(TypeError, match="SliceWise"):
        slice_by_slice(dds, D, x, sigmas, Likelihood(Downsample(2), lik.noise, lik.y[:, 0]))


def test_padded_denoiser_places_flips_and_crops_the_cut():
    seen = {}

    def D(canvas, sigma):                                        # records its input, marks each row
        seen["canvas"] = canvas.clone()
        return canvas + torch.arange(canvas.shape[-2], dtype=canvas.dtype).reshape(-1, 1)
    cut = torch.randn(3, 1, 5, 8, generator=gen(0), dtype=F64)   # rows along D, inferior first
    out = padded_denoiser(D, size=8, background=0.25, generator=gen(1))(cut, torch.full((3,), 0.5, dtype=F64))
    canvas = seen["canvas"]
    top = (8 - 5) // 2
    torch.testing.assert_close(canvas[..., top:top + 5, :], cut.flip(-2), rtol=0, atol=0)   # superior up
    border = torch.cat([canvas[..., :top, :], canvas[..., top + 5:, :]], -2)
    assert abs(border.mean().item() - 0.25) < 0.15 and abs(border.std().item() - 0.5) < 0.15   # b + σ z
    rows = torch.arange(top, top + 5, dtype=F64).flip(0).reshape(-1, 1)   # the cut's rows, flipped back
    torch.testing.assert_close(out, cut + rows, rtol=0, atol=0)
    plain = padded_denoiser(lambda c, s: c, size=8, flip=False)(cut, 0.5)
    torch.testing.assert_close(plain, cut, rtol=0, atol=0)
    with pytest.raises(ValueError, match="at most 8 x 8"):
        padded_denoiser(D, size=8)(torch.zeros(1, 1, 9, 8), 0.5)
