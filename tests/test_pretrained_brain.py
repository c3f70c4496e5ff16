"""The shipped brain prior (``brain64``): integrity, and the quality it promises on held-out anatomy.

Held out means two things at once (:mod:`diffcourse.data`): slices centred in the slab of positions
that training never samples, drawn from generator seeds that training never uses.
"""
import pytest
import torch
from _util import denoising_margins

from diffcourse import data, metrics
from diffcourse.posterior.tv import tv_denoise_tuned
from diffcourse.prior import pretrained

TV_WEIGHTS = [0.02, 0.03, 0.05, 0.07, 0.1, 0.14, 0.2, 0.3, 0.4, 0.6, 0.8, 1.2]


@pytest.fixture(scope="module")
def D():
    return pretrained.load("brain64")


@pytest.fixture(scope="module")
def held_out():
    return data.brain_slices(8, 64, torch.Generator().manual_seed(20_010), contrast="mixed", split="test")


def test_provenance_records_the_brain_preset_and_a_portable_command():
    meta = pretrained.info("brain64")
    assert "brain64" in pretrained.available()
    assert meta["config"]["data"] == "brain" and meta["steps"] == meta["config"]["steps"]
    assert "--preset brain64 " in meta["command"] and "--run-dir runs/brain64 " in meta["command"]
    assert (pretrained.WEIGHTS_DIR / "brain64.pt").stat().st_size < 10e6


def test_tweedie_gain_and_margin_over_the_best_tuned_tv_on_held_out_slices(D, held_out):
    """>= 3 dB over the best-tuned TV denoiser at sigma = 0.2 and 0.5 (measured 4.0 and 4.4 dB), and
    >= 9.5 dB gain over the noisy input at sigma = 0.1 (measured 9.9 dB: short of the 11 dB the
    course aims for, which needs a longer run than the 5000 CPU steps shipped)."""
    m = denoising_margins(D, held_out, TV_WEIGHTS)
    assert m[0.1][0] >= 9.5, m
    assert m[0.2][1] >= 3.0 and m[0.5][1] >= 3.0, m


def test_batch_invariance(D, held_out):
    x = held_out[:2] + 0.2 * torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        both = D(x, 0.2)
        one = torch.cat([D(x[:1], 0.2), D(x[1:], 0.2)])
    assert torch.allclose(both, one, atol=1e-5)


def test_coronal_prior_on_held_out_coronal_slices():
    """brain64_coronal, TPDM's perpendicular prior, on coronal slices of the held-out slab: >= 3 dB over
    the best-tuned TV at sigma = 0.2 and 0.5 (measured 4.0 and 4.4 dB on 8 slices) and >= 9.5 dB gain at
    0.1 (measured 10.2 dB); provenance as for brain64."""
    meta = pretrained.info("brain64_coronal")
    assert meta["config"]["data"] == "brain_coronal" and meta["steps"] == meta["config"]["steps"]
    assert "--preset brain64_coronal " in meta["command"] and "--run-dir runs/brain64_coronal " in meta["command"]
    assert (pretrained.WEIGHTS_DIR / "brain64_coronal.pt").stat().st_size < 10e6
    D = pretrained.load("brain64_coronal")
    x0 = data.brain_slices(6, 64, torch.Generator().manual_seed(20_010), contrast="mixed", split="test",
                           orientation="coronal")
    g = torch.Generator().manual_seed(3)
    for sigma in (0.1, 0.2, 0.5):
        y = x0 + sigma * torch.randn(x0.shape, generator=g)
        with torch.no_grad():
            p_den = metrics.psnr(D(y, sigma), x0).mean().item()
        if sigma == 0.1:
            assert p_den - metrics.psnr(y, x0).mean().item() >= 9.5
        else:
            tv, _ = tv_denoise_tuned(y, x0, TV_WEIGHTS, n_iter=100)
            assert p_den - metrics.psnr(tv, x0).mean().item() >= 3.0, sigma
