"""Metrics against scikit-image and closed forms; per-image reductions; argument checks."""
import math

import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from diffcourse.metrics import nmse, psnr, ssim


def _pair(b=2, c=1, size=32, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(b, c, size, size, generator=g, dtype=dtype)
    x = (ref + 0.1 * torch.randn(b, c, size, size, generator=g, dtype=dtype)).clamp(0, 1)
    return x, ref


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_ssim_matches_skimage(c, data_range):
    x, ref = _pair(b=2, c=c, size=40)
    x, ref = x * data_range, ref * data_range
    # a smooth reference too, so that the structure term is not dominated by noise
    ref[1] = torch.linspace(0, data_range, 40, dtype=ref.dtype).expand(c, 40, 40)
    ours = ssim(x, ref, data_range=data_range)
    for i in range(2):
        theirs = structural_similarity(
            x[i].numpy(), ref[i].numpy(), data_range=data_range, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, channel_axis=0)
        assert abs(ours[i].item() - theirs) < 1e-6


def test_ssim_float32_close_to_skimage():
    x, ref = _pair(b=1, size=64, dtype=torch.float32)
    theirs = structural_similarity(x[0, 0].double().numpy(), ref[0, 0].double().numpy(), data_range=1.0,
                                   gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert abs(ssim(x, ref).item() - theirs) < 1e-4


def test_ssim_of_identical_images_is_one_and_drops_with_noise():
    x, ref = _pair()
    assert torch.allclose(ssim(ref, ref), torch.ones(2, dtype=ref.dtype))
    noisier = (ref + 0.3 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(1),
                                       dtype=ref.dtype)).clamp(0, 1)
    assert (ssim(noisier, ref) < ssim(x, ref)).all()


def test_psnr_matches_skimage_and_closed_form():
    x, ref = _pair()
    ours = psnr(x, ref)
    for i in range(2):
        assert ours[i].item() == pytest.approx(
            peak_signal_noise_ratio(ref[i].numpy(), x[i].numpy(), data_range=1.0), abs=1e-10)
    # constant error e with range R: PSNR = 20 log10(R / e)
    ref = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    assert psnr(ref + 0.05, ref, data_range=2.0).item() == pytest.approx(20 * math.log10(2.0 / 0.05))


def test_nmse_closed_form():
    x, ref = _pair()
    expected = [((x[i] - ref[i]) ** 2).sum() / (ref[i] ** 2).sum() for i in range(2)]
    assert torch.allclose(nmse(x, ref), torch.stack(expected))
    assert torch.allclose(nmse(0.5 * ref, ref), torch.full((2,), 0.25, dtype=ref.dtype))


@pytest.mark.parametrize("metric", [psnr, ssim, nmse])
def test_batch_of_two_equals_two_batches_of_one(metric):
    x, ref = _pair()
    both = metric(x, ref)
    assert both.shape == (2,)
    single = torch.cat([metric(x[i:i + 1], ref[i:i + 1]) for i in range(2)])
    assert torch.allclose(both, single, rtol=0, atol=1e-12)
    assert both[0] != both[1]  # genuinely per image


@pytest.mark.parametrize("metric", [psnr, ssim, nmse])
def test_complex_inputs_use_the_magnitude(metric):
    x, ref = _pair()
    phase = torch.exp(1j * torch.rand(ref.shape, generator=torch.Generator().manual_seed(3),
                                      dtype=torch.float64))
    assert torch.allclose(metric(x * phase, ref * phase.conj()), metric(x, ref))


@pytest.mark.parametrize("metric", [psnr, ssim, nmse])
def test_bad_arguments_are_refused(metric):
    x, ref = _pair()
    with pytest.raises(TypeError, match="x"):
        metric(x.numpy(), ref)
    with pytest.raises(ValueError, match="same shape"):
        metric(x, ref[:1])
    with pytest.raises(ValueError, match="ref"):
        metric(x, ref[0])
    with pytest.raises(TypeError, match="floating"):
        metric(x, (ref * 255).to(torch.uint8))


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_data_range_must_be_positive(metric):
    x, ref = _pair()
    with pytest.raises(ValueError, match="data_range"):
        metric(x, ref, data_range=0.0)


def test_ssim_refuses_images_smaller_than_its_window():
    x, ref = _pair(size=8)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x, ref)
