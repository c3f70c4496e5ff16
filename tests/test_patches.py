"""Patch priors (PaDIS, Hu et al., NeurIPS 2024): tiling, positions, the assembled whole-image denoiser,
the training patches, the conditioning channels of the network and of the EDM loss."""
import pytest
import torch

from diffcourse.prior.losses import edm_loss
from diffcourse.prior.nets import UNetConfig, build_denoiser
from diffcourse.prior.patches import PatchDenoiser, assemble, geometry, positions, random_patches

N, P = 20, 6                                  # small images: K = 4 patches per side, M = 4
K, M = geometry(N, P)
S = N + 2 * M


def all_shifts(B=1):
    return [torch.tensor([[r, c]] * B) for r in range(M) for c in range(M)]


def test_geometry_follows_the_paper():
    """K = 1 + floor(N/P), M = KP - N: the paper's CT setting (256 px, 56-px patches) pads by 24."""
    assert geometry(256, 56) == (5, 24) and geometry(64, 14) == (5, 6) and geometry(64, 16) == (5, 16)
    assert (K, M) == (4, 4)
    with pytest.raises(ValueError, match="patch_size"):
        geometry(8, 9)


def test_every_interior_pixel_is_covered_exactly_once_for_every_shift():
    """With D(v) = v + 1, d(x) = x + (number of patches holding each pixel): the count map must be 1."""
    x = torch.rand(2, 1, N, N)
    for shifts in all_shifts(2):
        counts = assemble(lambda v, s, pos: v + 1, x, 0.3, shifts, P) - x
        assert torch.allclose(counts, torch.ones_like(x), atol=1e-6), shifts[0].tolist()


def test_positional_channels_are_plus_minus_one_at_the_padded_corners():
    pos = positions(S)
    assert pos.shape == (2, S, S)
    assert pos[:, 0, 0].tolist() == [-1, -1] and pos[:, -1, -1].tolist() == [1, 1]
    assert pos[:, 0, -1].tolist() == [1, -1] and pos[:, -1, 0].tolist() == [-1, 1]   # (x, y): x = column
    ramp = torch.linspace(-1, 1, S)
    assert torch.allclose(pos[0, 3], ramp) and torch.allclose(pos[1, :, 5], ramp)


def _gaussian_prior():
    """An independent Gaussian per pixel whose mean and std depend on the pixel's canvas position."""
    mu = lambda px, py: 0.4 + 0.3 * px - 0.2 * py + 0.1 * px * py                # noqa: E731
    tau = lambda px, py: 0.2 + 0.1 * (px + 1) + 0.05 * (py + 1) ** 2              # noqa: E731
    return mu, tau


def _gaussian_patch_denoiser(mu, tau):
    """The exact posterior mean of each patch pixel, knowing only the patch and its positions."""
    def D(v, s, pos):
        px, py = pos[:, :1], pos[:, 1:]
        t2, s2 = tau(px, py) ** 2, s.reshape(-1, 1, 1, 1) ** 2
        return (t2 * v + s2 * mu(px, py)) / (t2 + s2)
    return D


def test_assembled_gaussian_score_is_the_exact_whole_image_score_for_every_shift():
    """Card test: with the exact denoiser of an i.i.d. per-pixel Gaussian, d(x) is the exact whole-image
    denoiser and (d - x)/sigma^2 the exact score, for any shift. Position-dependent mean and std make
    a transposed, flipped or misaligned positional channel fail."""
    mu, tau = _gaussian_prior()
    pos = positions(S, dtype=torch.float64)[:, M:M + N, M:M + N]                  # the interior pixels
    m_img, t_img = mu(pos[0], pos[1]), tau(pos[0], pos[1])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, N, N, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.3, 1.7], dtype=torch.float64)
    s2 = sigma.reshape(-1, 1, 1, 1) ** 2
    exact_score = (m_img - x) / (t_img ** 2 + s2)
    border = torch.randn(2, 1, S, S, generator=g, dtype=torch.float64)           # any padding: ignored
    for shifts in all_shifts(2):
        d = assemble(_gaussian_patch_denoiser(mu, tau), x, sigma, shifts, P, border)
        assert torch.allclose((d - x) / s2, exact_score, atol=1e-12), shifts[0].tolist()
    # and through the module with random shifts and a noisy padding
    D = PatchDenoiser(_gaussian_patch_denoiser(mu, tau), P, generator=g)
    assert torch.allclose((D(x, sigma) - x) / s2, exact_score, atol=1e-12)


def test_assembled_denoiser_is_differentiable_with_the_exact_jacobian():
    """d(x) of the Gaussian prior is affine with Jacobian diag(tau^2/(tau^2 + sigma^2)): autograd agrees."""
    mu, tau = _gaussian_prior()
    pos = positions(S, dtype=torch.float64)[:, M:M + N, M:M + N]
    t2 = tau(pos[0], pos[1]) ** 2
    x = torch.randn(1, 1, N, N, dtype=torch.float64, requires_grad=True)
    D = PatchDenoiser(_gaussian_patch_denoiser(mu, tau), P, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(D(x, 0.5).sum(), x)
    assert torch.allclose(grad[0, 0], t2 / (t2 + 0.25), atol=1e-12)


def test_shifts_are_random_and_cover_the_range_and_a_batch_equals_its_items():
    torch.manual_seed(0)
    net = build_denoiser(UNetConfig(channels=(8, 16), groups=4, emb_dim=16, cond_channels=2))
    for p in net.parameters():                                    # a non-trivial network
        p.data.normal_(0, 0.2)
    D = PatchDenoiser(net, P, generator=torch.Generator().manual_seed(3))
    seen = {tuple(D.draw(torch.zeros(1, 1, N, N), 0.1)[0][0].tolist()) for _ in range(400)}
    assert seen == {(r, c) for r in range(M) for c in range(M)}
    x = torch.rand(2, 1, N, N)
    with torch.no_grad():
        D.generator = torch.Generator().manual_seed(5)
        both = D(x, torch.tensor([0.2, 0.7]))
        D.generator = torch.Generator().manual_seed(5)
        apart = torch.cat([D(x[:1], 0.2), D(x[1:], 0.7)])
        again = D(x[:1], 0.2)
    assert torch.allclose(both, apart, atol=1e-6)
    assert not torch.allclose(again, apart[:1], atol=1e-4)      # another call, another shift


def test_noisy_padding_has_the_current_noise_level():
    seen = []

    def D_patch(v, s, pos):
        idx = ((pos + 1) / 2 * (S - 1)).round()                        # canvas (column, row) of each pixel
        seen.append(v[((idx < M) | (idx >= M + N)).any(1, keepdim=True)])   # the padding's pixels
        return v
    D = PatchDenoiser(D_patch, P, generator=torch.Generator().manual_seed(0))
    D(torch.zeros(1, 1, N, N), 1e-3)
    D(torch.zeros(8, 1, N, N), 2.0)
    assert seen[0].abs().max() < 0.01 and 1.8 < seen[1].std() < 2.2
    assert PatchDenoiser(D_patch, P, noisy_border=False)(torch.zeros(1, 1, N, N), 2.0).abs().max() == 0


def test_training_patches_hold_the_padded_image_at_their_positions():
    """Each patch's image channel is the zero-padded image at the canvas pixels its positional channels
    name, and the corners are uniform over the canvas (every corner of a small canvas is drawn)."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 1, N, N, generator=g) + 1            # > 0 inside, so the padding shows
    out = random_patches(images, P, 50, g)
    assert out.shape == (150, 3, P, P)
    canvas = torch.nn.functional.pad(images, (M, M, M, M))
    col = ((out[:, 1] + 1) / 2 * (S - 1)).round().long()        # canvas indices from the positions
    row = ((out[:, 2] + 1) / 2 * (S - 1)).round().long()
    img = torch.arange(3).repeat_interleave(50)[:, None, None]
    assert torch.equal(out[:, 0], canvas[img, 0, row, col])
    assert torch.equal(col[:, 0, 1:] - col[:, 0, :-1], torch.ones(150, P - 1, dtype=torch.long))
    corners = {(int(r), int(c)) for r, c in zip(row[:, 0, 0], col[:, 0, 0])}
    many = random_patches(images[:1], P, 6000, g)               # 529 corners: all drawn
    rc = ((many[:, 1:, 0, 0] + 1) / 2 * (S - 1)).round().long()
    assert {tuple(v) for v in rc.tolist()} == {(c, r) for r in range(S - P + 1) for c in range(S - P + 1)}
    assert len(corners) > 100


def test_conditioning_channels_of_the_network():
    """cond_channels enter the input convolution only; the output and the preconditioning are the
    image's: an untrained network is D = m + c_skip (x - m) whatever cond is."""
    cfg = UNetConfig(channels=(8, 16), groups=4, emb_dim=16, cond_channels=2)
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg and "cond_channels" not in UNetConfig().to_dict()
    D = build_denoiser(cfg)
    assert D.net.inp.weight.shape[1] == 3 and D.net.out.weight.shape[0] == 1
    x, cond = torch.rand(2, 1, 8, 8), torch.rand(2, 2, 8, 8)
    c_skip = 0.25 / (0.09 + 0.25)
    assert torch.allclose(D(x, 0.3, cond), 0.5 + c_skip * (x - 0.5), atol=1e-6)
    for p in D.parameters():
        p.data.normal_(0, 0.2)
    assert not torch.allclose(D(x, 0.3, cond), D(x, 0.3, torch.zeros_like(cond)), atol=1e-4)
    with pytest.raises(ValueError, match="cond is required"):
        D(x, 0.3)
    with pytest.raises(ValueError, match="cond must have shape"):
        D(x, 0.3, cond[:, :1])
    with pytest.raises(ValueError, match="cond must be None"):
        build_denoiser(UNetConfig(channels=(8, 16), groups=4, emb_dim=16))(x, 0.3, cond)


def test_edm_loss_leaves_the_conditioning_channels_clean_and_out_of_the_error():
    calls = []

    def D(x, sigma, cond):
        calls.append(cond)
        return x[:, :1] * 0 + 0.5

    x0 = torch.cat([torch.rand(4, 1, 6, 6), torch.randn(4, 2, 6, 6)], 1)
    loss = edm_loss(D, x0, torch.Generator().manual_seed(0), cond_channels=2)
    assert torch.equal(calls[0], x0[:, 1:])
    g = torch.Generator().manual_seed(0)                      # the same draws as an image-only loss
    plain = edm_loss(lambda x, s: x * 0 + 0.5, x0[:, :1].contiguous(), g)
    assert torch.allclose(loss, plain)
    with pytest.raises(ValueError, match="cond_channels"):
        edm_loss(D, x0, cond_channels=3)


def test_patch_preset_and_the_fixed_training_set():
    """The ``patch`` preset records its new fields (left out when default), trains on 3-channel patch
    batches, and ``n_images`` draws every training image from one fixed set of slices, the same set for
    a patch prior and a whole-image prior (the data-efficiency comparison of Hu et al. 2024, Table 4)."""
    import dataclasses

    from diffcourse.prior.train import PRESETS, TrainConfig, fixed_brain_slices, training_batch

    cfg = PRESETS["patch"]
    d = cfg.to_dict()
    assert d["patch_size"] == 14 and d["net"]["cond_channels"] == 2 and "n_images" not in d
    assert TrainConfig.from_dict(d) == cfg and "patch_size" not in PRESETS["brain64"].to_dict()
    assert geometry(cfg.size, cfg.patch_size) == (5, 6)
    with pytest.raises(ValueError, match="patch_size"):
        TrainConfig(data="brain", patch_size=14)
    with pytest.raises(ValueError, match="n_images"):
        TrainConfig(n_images=4)                                   # phantoms are not a finite set
    small = dataclasses.replace(cfg, size=32, batch_size=12, n_images=3)
    whole = dataclasses.replace(PRESETS["brain64"], size=32, batch_size=5, n_images=3)
    pool = fixed_brain_slices(3, 32, 0)
    g = torch.Generator().manual_seed(0)
    images = training_batch(whole, g)
    assert images.shape == (5, 1, 32, 32)
    assert all(any(torch.equal(im, p) for p in pool) for im in images)
    patches = training_batch(small, g)
    assert patches.shape == (12, 3, 14, 14)
    _, m = geometry(32, 14)
    canvas = torch.nn.functional.pad(pool, (m, m, m, m))
    s = 32 + 2 * m
    col = ((patches[:, 1] + 1) / 2 * (s - 1)).round().long()
    row = ((patches[:, 2] + 1) / 2 * (s - 1)).round().long()
    assert all(any(torch.equal(p[0], c[0, r, k]) for c in canvas) for p, r, k in zip(patches, row, col))
