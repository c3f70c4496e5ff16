"""Classical baselines against dense closed forms and oracles (algorithms card 29).

The operators here are small dense matrices acting on flattened images, so every claim can be
checked against torch.linalg: CG = solve, least squares = pinv, Tikhonov = its normal equations,
ADMM-TV with lam = 0 = least squares, PnP-ADMM with a quadratic prox = Tikhonov, PnP-HQS (DPIR) at a
fixed level = Tikhonov and at decreasing levels = its recursion solved densely, RED with a linear
symmetric denoiser = quadratic regularisation. TV is checked against scikit-image and autograd.
"""
import pytest
import torch
from skimage.restoration import denoise_tv_chambolle

from diffcourse.posterior.classical import (SliceWise, admm_l1, admm_step, admm_tv, admm_tv_z, cg,
                                            dpir_sigmas, least_squares, pnp_admm, pnp_hqs, red,
                                            tikhonov)
from diffcourse.posterior.tv import (diff_z, diff_z_T, grad_2d, grad_2d_T, group_shrink, soft_threshold,
                                     tv, tv_denoise, tv_denoise_tuned)

from _util import gen

F64 = torch.float64


class Dense:
    """y = M x.flatten(1) for images x (B, C, H, W); y (B, m)."""

    def __init__(self, M, shape):
        self.M, self.shape = M, shape

    def A(self, x):
        return x.flatten(1) @ self.M.T

    def AT(self, y):
        return (y @ self.M).reshape(-1, *self.shape)


def dense_problem(m, size=6, b=2, seed=0):
    n = size * size
    M = torch.randn(m, n, generator=gen(seed), dtype=F64) / n ** 0.5
    x = torch.rand(b, 1, size, size, generator=gen(seed + 1), dtype=F64)
    y = x.flatten(1) @ M.T + 0.01 * torch.randn(b, m, generator=gen(seed + 2), dtype=F64)
    return Dense(M, (1, size, size)), M, x, y


def solve(Q, r):
    """Dense solve Q x = r for a batch of right-hand sides r (B, n)."""
    return torch.linalg.solve(Q, r.T).T


# ---------------------------------------------------------------- conjugate gradients
def test_cg_matches_dense_solve_per_sample():
    n = 20
    G = torch.randn(n, n, generator=gen(0), dtype=F64)
    Q = G @ G.T + 0.5 * torch.eye(n, dtype=F64)
    b = torch.randn(3, n, generator=gen(1), dtype=F64)
    x = cg(lambda v: v @ Q, b, n_iter=200, tol=1e-12)
    assert torch.allclose(x, solve(Q, b), atol=1e-9)


def test_cg_stops_per_sample_and_batches_do_not_interact():
    n = 12
    Q = torch.diag(torch.arange(1.0, n + 1, dtype=F64))
    easy = torch.zeros(1, n, dtype=F64)
    easy[0, 3] = 1.0  # an eigenvector: solved exactly after one step
    hard = torch.randn(1, n, generator=gen(2), dtype=F64)
    calls = []
    M = lambda v: calls.append(v.shape[0]) or v @ Q
    both = cg(M, torch.cat([easy, hard]), n_iter=5, tol=1e-10)
    assert torch.allclose(both[0], easy[0] / 4.0, atol=1e-14)  # exact, then frozen
    for i, b in enumerate([easy, hard]):
        assert torch.equal(both[i:i + 1], cg(M, b, n_iter=5, tol=1e-10))
    calls.clear()
    cg(M, easy, n_iter=50, tol=1e-10)
    assert len(calls) == 1  # stopped as soon as the residual vanished


def test_cg_from_the_solution_does_not_move_and_handles_zero_rhs():
    Q = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=F64)
    b = torch.tensor([[1.0, -1.0], [0.0, 0.0]], dtype=F64)
    x_star = solve(Q, b)
    assert torch.allclose(cg(lambda v: v @ Q, b, x0=x_star, n_iter=10), x_star, atol=1e-14)
    assert torch.equal(cg(lambda v: v @ Q, b[1:], n_iter=10), torch.zeros(1, 2, dtype=F64))


def test_cg_with_tol_zero_in_float32_keeps_its_converged_solution():
    """tol = 0 asks for n_iter iterations; far past convergence (400 on a 40-unknown system with
    condition number 1e3) float32 CG must stop at rounding level instead of dividing rounding noise
    by rounding noise (which gave NaN before the stop on eps ||b|| and <p, M p> > 0 existed)."""
    n = 40
    Qr, _ = torch.linalg.qr(torch.randn(n, n, generator=gen(5), dtype=F64))
    Q = (Qr * torch.logspace(0, -3, n, dtype=F64)) @ Qr.T
    b = torch.randn(3, n, generator=gen(6), dtype=F64)
    x = cg(lambda v: v @ Q.float(), b.float(), n_iter=400, tol=0.0)
    assert torch.isfinite(x).all()
    x_ref = solve(Q, b)
    assert ((x.double() - x_ref).norm(dim=1) / x_ref.norm(dim=1)).max() < 1e-3


def test_cg_complex_hermitian():
    n = 8
    G = torch.randn(n, n, generator=gen(3), dtype=torch.complex128)
    Q = G @ G.conj().T + torch.eye(n, dtype=torch.complex128)
    b = torch.randn(2, n, generator=gen(4), dtype=torch.complex128)
    x = cg(lambda v: v @ Q.T, b, n_iter=100, tol=1e-12)
    assert torch.allclose(x @ Q.T, b, atol=1e-9)


# ---------------------------------------------------------------- least squares and Tikhonov
def test_least_squares_tall_equals_lstsq_and_wide_equals_minimum_norm():
    op, M, _, y = dense_problem(m=50)  # 36 unknowns, overdetermined
    x = least_squares(op, y, n_iter=200, tol=1e-12)
    assert torch.allclose(x.flatten(1), y @ torch.linalg.pinv(M).T, atol=1e-8)
    op, M, _, y = dense_problem(m=20)  # underdetermined: CG from 0 stays in range(A^T)
    x = least_squares(op, y, n_iter=200, tol=1e-12)
    assert torch.allclose(x.flatten(1), y @ torch.linalg.pinv(M).T, atol=1e-8)


def test_tikhonov_equals_dense_closed_form():
    op, M, _, y = dense_problem(m=20)
    lam = 0.3
    x = tikhonov(op, y, lam, n_iter=200, tol=1e-12)
    expected = solve(M.T @ M + lam * torch.eye(36, dtype=F64), y @ M)
    assert torch.allclose(x.flatten(1), expected, atol=1e-9)


# ---------------------------------------------------------------- finite differences and TV
@pytest.mark.parametrize("D, DT, shape", [(grad_2d, grad_2d_T, (2, 3, 5, 7)),
                                          (diff_z, diff_z_T, (2, 1, 4, 3, 5))])
def test_difference_operators_adjoint_equals_autograd_vjp(D, DT, shape):
    x = torch.randn(shape, generator=gen(5), dtype=F64, requires_grad=True)
    p = torch.randn(D(x).shape, generator=gen(6), dtype=F64)
    (vjp,) = torch.autograd.grad(D(x), x, p)
    assert torch.allclose(DT(p), vjp, atol=1e-12)
    assert torch.allclose((D(x) * p).sum(), (x * DT(p)).sum())


def test_tv_closed_form_on_a_step_and_a_ramp():
    step = torch.zeros(1, 1, 6, 6, dtype=F64)
    step[..., 3:] = 1.0  # one jump of height 1 across 6 rows
    assert tv(step).item() == pytest.approx(6.0)
    ramp = torch.arange(6, dtype=F64).repeat(6, 1)[None, None] * torch.ones(1, 1, 1, 1, dtype=F64)
    ramp = ramp + ramp.transpose(-1, -2)  # gradient (1, 1) on the 5x5 interior
    assert tv(ramp).item() == pytest.approx(25 * 2 ** 0.5 + 10.0)
    assert tv(ramp, isotropic=False).item() == pytest.approx(60.0)


def test_shrinkage_operators_are_proximal_maps():
    grid = torch.linspace(-4, 4, 80001, dtype=F64)
    for v in [-2.5, -0.3, 0.0, 0.7, 3.1]:
        brute = grid[torch.argmin(0.8 * grid.abs() + 0.5 * (grid - v) ** 2)]
        assert soft_threshold(torch.tensor([v], dtype=F64), 0.8).item() == pytest.approx(brute.item(), abs=2e-4)
    v = torch.tensor([[3.0], [4.0]], dtype=F64)  # a 2-vector of norm 5
    assert torch.allclose(group_shrink(v, 1.0, dim=0), v * 0.8)
    assert torch.equal(group_shrink(v, 6.0, dim=0), torch.zeros_like(v))
    z = torch.tensor([3 + 4j], dtype=torch.complex128)
    assert torch.allclose(soft_threshold(z, 1.0), z * 0.8)


def _noisy_square(b=2, size=24, noise=0.2, seed=7):
    ref = torch.zeros(b, 1, size, size, dtype=F64)
    ref[..., size // 4:3 * size // 4, size // 3:] = 1.0
    return ref, ref + noise * torch.randn(ref.shape, generator=gen(seed), dtype=F64)


def test_tv_denoise_matches_scikit_image_and_its_objective():
    _, y = _noisy_square(b=1)
    lam = 0.15
    objective = lambda x: 0.5 * ((x - y) ** 2).flatten(1).sum(1) + lam * tv(x)
    theirs = torch.from_numpy(denoise_tv_chambolle(y[0, 0].numpy(), weight=lam, eps=1e-12,
                                                   max_num_iter=3000))[None, None]
    ours = tv_denoise(y, lam, n_iter=1000)
    assert (ours - theirs).abs().max() < 1e-3
    assert objective(ours).item() <= objective(theirs).item() * (1 + 1e-7)  # at least as good
    assert objective(ours) < objective(tv_denoise(y, lam, n_iter=10))


def test_tv_denoise_per_sample_weights_and_zero_weight():
    _, y = _noisy_square()
    both = tv_denoise(y, torch.tensor([0.05, 0.2], dtype=F64), n_iter=50)
    for i, lam in enumerate([0.05, 0.2]):
        assert torch.allclose(both[i:i + 1], tv_denoise(y[i:i + 1], lam, n_iter=50), atol=1e-12)
    assert torch.equal(tv_denoise(y, 0.0, n_iter=5), y)


def test_tv_denoise_tuned_picks_the_best_weight_per_image():
    from diffcourse.metrics import psnr
    ref, y = _noisy_square()
    y[0] = ref[0] + 0.02 * (y[0] - ref[0]) / 0.2  # nearly clean: wants little smoothing
    lams = [0.0, 0.02, 0.1, 0.3]
    x, lam = tv_denoise_tuned(y, ref, lams, n_iter=50)
    table = torch.stack([psnr(tv_denoise(y, l, n_iter=50), ref) for l in lams])  # (L, B)
    best = table.argmax(0)
    assert torch.equal(lam, torch.tensor(lams, dtype=F64)[best])
    assert lam[0] < lam[1]
    assert torch.allclose(psnr(x, ref), table.max(0).values)


# ---------------------------------------------------------------- ADMM
def _objective(op, y, lam, isotropic=True):
    return lambda x: 0.5 * (op.A(x) - y).square().sum(1) + lam * tv(x, isotropic)


def test_admm_tv_with_zero_weight_is_least_squares():
    op, M, _, y = dense_problem(m=50)
    x = admm_tv(op, y, lam=0.0, rho=0.05, n_iter=60, n_iter_cg=40)
    assert torch.allclose(x.flatten(1), y @ torch.linalg.pinv(M).T, atol=1e-7)


def test_admm_tv_with_identity_is_the_tv_denoiser():
    class Identity:
        A = staticmethod(lambda x: x)
        AT = staticmethod(lambda y: y)
    _, y = _noisy_square(size=16)
    x = admm_tv(Identity(), y, lam=0.1, rho=1.0, n_iter=150)
    assert (x - tv_denoise(y, 0.1, n_iter=300)).abs().max() < 1e-4


@pytest.mark.parametrize("isotropic", [True, False])
def test_admm_tv_is_a_minimiser_of_its_objective(isotropic):
    op, _, _, y = dense_problem(m=24)
    x = admm_tv(op, y, lam=0.05, rho=0.5, n_iter=300, isotropic=isotropic)
    f = _objective(op, y, 0.05, isotropic)
    for seed in range(5):
        d = torch.randn(x.shape, generator=gen(20 + seed), dtype=F64)
        for eps in [1e-2, 1e-3]:
            assert (f(x + eps * d) >= f(x) - 1e-9).all()
    assert (f(x) < f(least_squares(op, y))).all()


def test_admm_l1_satisfies_the_lasso_optimality_conditions():
    op, M, _, _ = dense_problem(m=20)
    x_sparse = torch.zeros(2, 1, 6, 6, dtype=F64)
    x_sparse[0, 0, 1, 2], x_sparse[0, 0, 4, 4], x_sparse[1, 0, 3, 0] = 1.0, -0.7, 0.5
    y = op.A(x_sparse)
    lam = 0.02
    x = admm_l1(op, y, lam, rho=0.2, n_iter=300)
    g = op.AT(y - op.A(x))  # KKT: g = lam sign(x) where x != 0, |g| <= lam where x = 0
    on = x.abs() > 1e-8
    assert torch.allclose(g[on], lam * x[on].sign(), atol=1e-6)
    assert (g[~on].abs() <= lam + 1e-6).all()
    assert on.any() and (~on).any()
    x_min_norm = least_squares(op, y)  # sparsity beats the minimum-norm solution on a sparse image
    assert (x - x_sparse).norm() < 0.2 * (x_min_norm - x_sparse).norm()


def test_admm_step_is_the_loop_body_and_batches_do_not_interact():
    op, _, _, y = dense_problem(m=24)
    x = torch.zeros_like(op.AT(y))
    z, u = grad_2d(x), torch.zeros_like(grad_2d(x))
    for _ in range(3):
        x, z, u = admm_step(op, y, x, z, u, lam=0.05, rho=0.5)
    assert torch.equal(x, admm_tv(op, y, lam=0.05, rho=0.5, n_iter=3))
    single = torch.cat([admm_tv(op, y[i:i + 1], 0.05, 0.5, n_iter=3) for i in range(2)])
    assert torch.allclose(x, single, atol=1e-13)


def test_admm_tv_z_with_identity_is_one_dimensional_tv_along_z():
    class Identity:
        A = staticmethod(lambda x: x)
        AT = staticmethod(lambda y: y)
    b, d, h, w = 2, 6, 3, 4
    vol = torch.rand(b, 1, d, h, w, generator=gen(9), dtype=F64)
    y = vol.transpose(1, 2).reshape(b * d, 1, h, w)  # slices stacked along the batch axis
    x = admm_tv_z(Identity(), y, depth=d, lam=0.1, rho=1.0, n_iter=150)
    columns = vol.permute(0, 3, 4, 1, 2).reshape(b * h * w, 1, d, 1)  # every (h, w) as a 1-D signal
    oracle = tv_denoise(columns, 0.1, n_iter=300).reshape(b, h, w, 1, d).permute(0, 3, 4, 1, 2)
    assert (x - oracle).abs().max() < 1e-4
    assert (diff_z(x).abs().sum() < diff_z(vol).abs().sum())


def test_admm_tv_z_leaves_slices_alone_when_they_agree():
    class Identity:
        A = staticmethod(lambda x: x)
        AT = staticmethod(lambda y: y)
    slice_ = torch.rand(1, 1, 1, 5, 5, generator=gen(10), dtype=F64)
    vol = slice_.expand(1, 1, 4, 5, 5)  # rough in-plane, constant along z
    y = vol.transpose(1, 2).reshape(4, 1, 5, 5)
    x = admm_tv_z(Identity(), y, depth=4, lam=1.0, rho=1.0, n_iter=20)
    assert torch.allclose(x, vol, atol=1e-12)  # in-plane TV is not what it penalises


def test_admm_tv_z_with_a_slicewise_operator_minimises_its_objective():
    op, M, _, _ = dense_problem(m=20, size=4)
    b, d = 2, 5
    vol = torch.rand(b, 1, d, 4, 4, generator=gen(11), dtype=F64)
    vol_op = SliceWise(op, d)
    y = vol_op.A(vol)  # (B, D, m)
    assert y.shape == (b, d, 20)
    lam = 0.05
    x = admm_tv_z(op, y.flatten(0, 1), depth=d, lam=lam, rho=0.5, n_iter=300)  # y as (B*D, m)
    f = lambda v: 0.5 * (vol_op.A(v) - y).square().sum() + lam * diff_z(v).abs().sum()
    for seed in range(5):
        dv = torch.randn(x.shape, generator=gen(30 + seed), dtype=F64)
        assert f(x + 1e-3 * dv) >= f(x) - 1e-9


# ---------------------------------------------------------------- PnP-ADMM and RED
def test_pnp_admm_with_a_quadratic_prox_is_tikhonov():
    op, M, _, y = dense_problem(m=20)
    lam = 0.4
    prox = lambda v, sigma: v / (1 + lam * sigma ** 2)  # prox of sigma^2 lam/2 ||.||^2
    x = pnp_admm(op, y, prox, rho=0.5, n_iter=200)  # default sigma = 1 / sqrt(rho)
    assert torch.allclose(x, tikhonov(op, y, lam, n_iter=200, tol=1e-13), atol=1e-8)


def test_pnp_admm_with_the_tv_prox_is_admm_tv():
    op, _, _, y = dense_problem(m=24)
    lam, rho = 0.05, 0.3
    prox = lambda v, sigma: tv_denoise(v, lam * sigma ** 2, n_iter=60)  # prox of lam/rho TV
    x_pnp = pnp_admm(op, y, prox, rho=rho, n_iter=60)
    x_admm = admm_tv(op, y, lam, rho=0.5, n_iter=300)
    assert (x_pnp - x_admm).abs().max() < 1e-3
    f = _objective(op, y, lam)
    assert torch.allclose(f(x_pnp), f(x_admm), rtol=1e-3)


def test_pnp_hqs_at_a_fixed_level_converges_to_tikhonov():
    """D = prox of mu s^2/2 ||.||^2: the fixed point x = (AᵀA + a I)⁻¹(Aᵀy + a x / (1 + mu s^2)) is
    Tikhonov with weight a mu s^2 / (1 + mu s^2), and HQS returns z = x / (1 + mu s^2)."""
    op, _, _, y = dense_problem(m=20)
    mu, s, sigma_y, lam = 2.0, 0.3, 0.05, 0.5
    prox = lambda v, sigma: v / (1 + mu * sigma ** 2)
    z = pnp_hqs(op, y, prox, [s] * 300, sigma_y=sigma_y, lam=lam, n_iter_cg=60)
    a = lam * sigma_y ** 2 / s ** 2
    expected = tikhonov(op, y, a * mu * s ** 2 / (1 + mu * s ** 2), n_iter=200, tol=1e-13) / (1 + mu * s ** 2)
    assert torch.allclose(z, expected, atol=1e-8)


def test_pnp_hqs_at_decreasing_levels_follows_its_recursion_solved_densely():
    """With the N(0, I) MMSE denoiser every step is linear: x_k = (MᵀM + a_k I)⁻¹(Mᵀy + a_k z_{k-1}),
    z_k = x_k / (1 + s_k²), a_k = lam σ_y² / s_k², from z_0 = x0. Dense solves are the oracle."""
    op, M, _, y = dense_problem(m=20)
    sigmas, sigma_y, lam = dpir_sigmas(6, 0.02, 0.5), 0.05, 0.23
    x0 = torch.rand(y.shape[0], 1, 6, 6, generator=gen(5), dtype=F64)
    z = pnp_hqs(op, y, lambda v, s: v / (1 + s ** 2), sigmas, sigma_y=sigma_y, lam=lam, x0=x0, n_iter_cg=60)
    ref = x0.flatten(1)
    for s in sigmas.tolist():
        a = lam * sigma_y ** 2 / s ** 2
        ref = solve(M.T @ M + a * torch.eye(36, dtype=F64), y @ M + a * ref) / (1 + s ** 2)
    assert torch.allclose(z.flatten(1), ref, atol=1e-9)


def test_pnp_hqs_is_batch_invariant_and_dpir_levels_are_log_uniform():
    op, _, _, y = dense_problem(m=20, b=3)
    D = lambda v, s: tv_denoise(v, 0.1 * s ** 2, n_iter=20)
    sig = dpir_sigmas(5, 0.01)
    whole = pnp_hqs(op, y, D, sig, sigma_y=0.05)
    parts = torch.cat([pnp_hqs(op, y[i:i + 1], D, sig, sigma_y=0.05) for i in range(3)])
    assert torch.allclose(whole, parts, atol=1e-10)
    assert sig[0].item() == pytest.approx(49 / 255) and sig[-1].item() == pytest.approx(0.01)
    ratios = sig[1:] / sig[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios)) and ratios[0] < 1


def test_pnp_hqs_reports_a_non_finite_result_with_a_hint():
    op, _, _, y = dense_problem(m=20)
    with pytest.raises(FloatingPointError, match="pnp_hqs.*raise sigma_min or lam"):
        pnp_hqs(op, y, lambda v, s: v / (s - 0.1), [0.2, 0.1], sigma_y=0.05)


def test_red_with_a_linear_symmetric_denoiser_is_quadratic_regularisation():
    op, M, _, y = dense_problem(m=20)
    n, tau = 36, 0.5
    G = torch.randn(n, n, generator=gen(12), dtype=F64)
    evals, V = torch.linalg.eigh(G + G.T)
    W = V @ torch.diag(torch.linspace(0.0, 0.8, n, dtype=F64)) @ V.T  # symmetric, spectrum in [0, 1)
    D = lambda x, sigma: (x.flatten(1) @ W).reshape(x.shape)
    x = red(op, y, D, tau=tau, step=0.5, n_iter=600, sigma=0.1)
    expected = solve(M.T @ M + tau * (torch.eye(n, dtype=F64) - W), y @ M)
    assert torch.allclose(x.flatten(1), expected, atol=1e-8)


def test_red_divergence_is_reported_with_a_hint():
    op, _, _, y = dense_problem(m=20)
    with pytest.raises(FloatingPointError, match="reduce step"):
        red(op, y, lambda x, s: 0 * x, tau=1.0, step=1e3, n_iter=500, sigma=0.1)


# ---------------------------------------------------------------- argument checks
def test_bad_arguments_are_refused_with_clear_messages():
    op, _, _, y = dense_problem(m=20)
    with pytest.raises(TypeError, match="op must be a linear operator"):
        least_squares(object(), y)
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        tikhonov(op, y.numpy(), 0.1)
    with pytest.raises(ValueError, match="lam"):
        tikhonov(op, y, -1.0)
    with pytest.raises(ValueError, match="rho"):
        admm_tv(op, y, 0.1, rho=0.0)
    with pytest.raises(ValueError, match="n_iter"):
        pnp_admm(op, y, lambda v, s: v, rho=1.0, n_iter=-1)
    with pytest.raises(ValueError, match="sigmas must be a non-empty sequence of positive"):
        pnp_hqs(op, y, lambda v, s: v, [0.1, 0.0], sigma_y=0.1)
    with pytest.raises(ValueError, match="sigma_y"):
        pnp_hqs(op, y, lambda v, s: v, [0.1], sigma_y=0.0)
    with pytest.raises(ValueError, match="sigma_min must be <= sigma_max"):
        dpir_sigmas(4, 0.5, 0.1)
    with pytest.raises(TypeError, match="n_iter"):
        cg(lambda v: v, y, n_iter=2.5)
    with pytest.raises(ValueError, match="lams"):
        tv_denoise_tuned(op.AT(y), op.AT(y), [])
    with pytest.raises(ValueError, match="x"):
        tv(y)
    with pytest.raises(ValueError, match="lam"):
        tv_denoise(op.AT(y), -0.1)
    with pytest.raises(ValueError, match=r"B \* 3 slices"):
        admm_tv_z(op, y, depth=3, lam=0.1, rho=1.0)  # 2 measurements are not B * 3 slices


# ---------------------------------------------------------------- quality on real operators
def test_admm_tv_beats_fbp_on_sparse_view_ct_and_zero_filling_on_cs_mri():
    """Shepp-Logan 64x64: 20-view CT (noise 0.2 % of the sinogram peak) and 4x variable-density
    CS-MRI (complex noise 0.01); fixed, tuned parameters; margins >= 6 dB (measured: about 9 and 9)."""
    from diffcourse.metrics import psnr
    from diffcourse.phantoms import shepp_logan
    from diffcourse.physics.ct import Radon, hann_window, sparse_view
    from diffcourse.physics.mri import SingleCoilMRI, variable_density_mask

    x = shepp_logan(64)
    ct = Radon(64, sparse_view(20))
    y = ct.A(x)
    y = y + 0.002 * y.max() * torch.randn(y.shape, generator=gen(0))
    fbp = max(psnr(ct.fbp(y), x).item(), psnr(ct.fbp(y, window=hann_window), x).item())
    tv_ct = psnr(admm_tv(ct, y, lam=0.3, rho=1.0, n_iter=40), x).item()
    assert tv_ct >= fbp + 6.0, (tv_ct, fbp)

    mri = SingleCoilMRI(variable_density_mask(64, 4, generator=gen(0)))
    y = mri.A(x)
    y = y + 0.01 * mri.mask * torch.randn(y.shape, dtype=y.dtype, generator=gen(1))
    zero_filled = psnr(mri.AT(y), x).item()
    tv_mri = psnr(admm_tv(mri, y, lam=0.01, rho=0.1, n_iter=40), x).item()
    assert tv_mri >= zero_filled + 6.0, (tv_mri, zero_filled)
