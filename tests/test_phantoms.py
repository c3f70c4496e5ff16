"""Phantoms: ranges, determinism, the 2-D/3-D consistency of the head family, Shepp-Logan oracle."""
import pytest
import torch

from diffcourse import phantoms

from _util import gen


@pytest.mark.parametrize("make", [phantoms.ellipses, phantoms.head, phantoms.shepp_logan_family])
def test_shape_range_and_determinism(make):
    x = make(3, 48, generator=gen(1))
    assert x.shape == (3, 1, 48, 48) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1 and x.std() > 0.1
    assert torch.equal(x, make(3, 48, generator=gen(1)))
    assert not torch.equal(x, make(3, 48, generator=gen(2)))
    # drawing sequentially: the first image of a batch of 3 is the image of a batch of 1
    assert torch.equal(x[:1], make(1, 48, generator=gen(1)))
    # images of one batch differ from each other
    assert (x[0] - x[1]).abs().mean() > 1e-3


def test_head_anatomy():
    """Skull brighter than brain, ventricles darker than brain, background zero, roughly symmetric."""
    x = phantoms.head(16, 64, generator=gen(3), z_range=(0.0, 0.1))[:, 0]
    assert x[:, :2, :].max() < 0.05                                         # background at the top
    bright = (x > 0.75).float().mean()
    assert 0.03 < bright < 0.3                                             # a skull ring
    centre = x[:, 24:40, 24:40]
    assert (centre < 0.2).float().mean() > 0.02                            # dark ventricles
    mirrored = (x - x.flip(-1)).abs().mean() / x.mean()
    assert mirrored < 0.6


def test_volume_slices_are_head_slices():
    z = 0.1
    v = phantoms.head_volume(2, 40, 1, generator=gen(5), z_range=(z, z))
    h = phantoms.head(1, 40, generator=gen(5), z_range=(z, z))
    assert torch.allclose(v[0, :, 0], h[0], atol=1e-6)
    vol = phantoms.head_volume(1, 32, 9, generator=gen(6))
    assert vol.shape == (1, 1, 9, 32, 32)
    # neighbouring slices are similar (smooth along z), far slices differ more
    d_near = (vol[0, 0, 4] - vol[0, 0, 5]).abs().mean()
    d_far = (vol[0, 0, 0] - vol[0, 0, 8]).abs().mean()
    assert d_near < d_far


def test_shepp_logan_matches_scikit_image():
    skimage_data = pytest.importorskip("skimage.data")
    ref = torch.from_numpy(skimage_data.shepp_logan_phantom()).float()      # 400 x 400, modified SL
    ours = phantoms.shepp_logan(400)[0, 0]
    mismatch = ((ours - ref).abs() > 0.05).float().mean()
    assert mismatch < 0.01, f"{mismatch:.4f} of the pixels differ"


def test_shepp_logan_family_is_shepp_logan_without_jitter_and_sharp_edged():
    assert torch.equal(phantoms.shepp_logan_family(1, 64, gen(0), jitter=0.0), phantoms.shepp_logan(64))
    x = phantoms.shepp_logan_family(8, 64, gen(1))
    levels = torch.unique(x[0])                     # piecewise constant: few grey levels, no ramps
    assert len(levels) < 40, len(levels)
    soft = phantoms.shepp_logan_family(8, 64, gen(1), antialias=True)
    assert len(torch.unique(soft[0])) > 200         # antialiased edges make many levels
    assert (x - phantoms.shepp_logan(64)).abs().mean() > 0.01       # relatives, not copies
    brain = x[:, 0, 28:36, 28:36].amax((1, 2))      # the centre is inside the brain of every draw
    assert (brain > 0.03).all()


def test_rgb_images():
    x = phantoms.rgb_images(2, 32, generator=gen(0))
    assert x.shape == (2, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    assert (x[:, 0] - x[:, 1]).abs().mean() > 0.01                        # really coloured


@pytest.mark.parametrize("call, error, name", [
    (lambda: phantoms.ellipses(0, 32), ValueError, "n"),
    (lambda: phantoms.head(2, 4), ValueError, "size"),
    (lambda: phantoms.head(2.5, 32), TypeError, "n"),
    (lambda: phantoms.ellipses(2, 32.0), TypeError, "size"),
    (lambda: phantoms.head_volume(1, 32, 0), ValueError, "depth"),
    (lambda: phantoms.head(2, 32, z_range=(0.5, -0.5)), ValueError, "z_range"),
    (lambda: phantoms.head_volume(1, 32, 4, z_range=(-1.5, 0.0)), ValueError, "z_range"),
])
def test_bad_input(call, error, name):
    with pytest.raises(error, match=rf"^{name} must"):
        call()
