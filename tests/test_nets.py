"""UNet and EDM preconditioning: the preconditioning formulas, limits, batch invariance, size."""
import math

import pytest
import torch

from diffcourse.prior.nets import EDMDenoiser, UNet, UNetConfig, build_denoiser
from diffcourse.prior.train import PRESETS

SMALL = UNetConfig(channels=(8, 16), groups=4, emb_dim=16)


def test_untrained_denoiser_is_the_preconditioned_skip():
    """The output layer starts at zero, so D(x, s) = m + c_skip(s)(x - m) exactly (Karras Eq. 7)."""
    D = build_denoiser(SMALL)
    x = torch.rand(3, 1, 8, 8)
    s = torch.tensor([0.05, 0.5, 5.0])
    sd, m = SMALL.sigma_data, SMALL.data_mean
    c_skip = (sd**2 / (s**2 + sd**2))[:, None, None, None]
    assert torch.allclose(D(x, s), m + c_skip * (x - m), atol=1e-6)


def test_small_sigma_limit_and_sigma_forms():
    torch.manual_seed(0)
    D = build_denoiser(SMALL)
    for p in D.parameters():                                # a non-trivial network
        p.data.normal_(0, 0.2)
    x = torch.rand(2, 1, 8, 8)
    assert torch.allclose(D(x, 1e-6), x, atol=1e-4)          # c_skip -> 1, c_out -> 0
    assert torch.allclose(D(x, 0.3), D(x, torch.tensor([0.3, 0.3])), atol=1e-6)
    assert torch.allclose(D(x, 0.3), D(x, torch.tensor(0.3)), atol=1e-6)
    # scaling of the raw network output: D - c_skip x is c_out * F
    s = torch.tensor([0.2, 2.0])
    sd = SMALL.sigma_data
    c_in = 1 / (s**2 + sd**2).sqrt()
    F_raw = D.net(c_in[:, None, None, None] * (x - 0.5), s.log() / 4)
    c_out = (s * sd / (s**2 + sd**2).sqrt())[:, None, None, None]
    c_skip = (sd**2 / (s**2 + sd**2))[:, None, None, None]
    assert torch.allclose(D(x, s), 0.5 + c_skip * (x - 0.5) + c_out * F_raw, atol=1e-5)


def test_batch_invariance():
    torch.manual_seed(1)
    D = build_denoiser(SMALL)
    for p in D.parameters():
        p.data.normal_(0, 0.2)
    x, s = torch.rand(3, 1, 8, 8), torch.tensor([0.1, 1.0, 3.0])
    together = D(x, s)
    apart = torch.cat([D(x[i:i + 1], s[i:i + 1]) for i in range(3)])
    assert torch.allclose(together, apart, atol=1e-5)


def test_gradients_flow_to_the_input():
    D = build_denoiser(SMALL).requires_grad_(False)
    x = torch.rand(1, 1, 8, 8, requires_grad=True)
    D(x, 0.5).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_shipped_architecture_size():
    n = sum(p.numel() for p in build_denoiser(PRESETS["phantom64"].net).parameters())
    assert 1_000_000 <= n <= 3_000_000, n
    out = UNet(PRESETS["phantom64"].net)(torch.zeros(1, 1, 64, 64), torch.zeros(1))
    assert out.shape == (1, 1, 64, 64)


@pytest.mark.parametrize("x, sigma, err", [
    (torch.zeros(8, 8), 0.1, ValueError),
    (torch.zeros(1, 1, 8, 8, dtype=torch.int64), 0.1, TypeError),
    (torch.zeros(2, 1, 8, 8), torch.tensor([0.1, 0.2, 0.3]), ValueError),
    (torch.zeros(1, 1, 8, 8), -0.1, ValueError),
])
def test_bad_input(x, sigma, err):
    with pytest.raises(err, match="x|sigma"):
        build_denoiser(SMALL)(x, sigma)


@pytest.mark.parametrize("x, sigma, err, words", [
    (torch.zeros(1, 1, 8, 8, dtype=torch.float64), 0.1, TypeError, "x has dtype torch.float64 but the network's weights are torch.float32"),
    (torch.zeros(1, 1, 7, 8), 0.1, ValueError, "x's height and width must be multiples of 2"),
    (torch.zeros(1, 3, 8, 8), 0.1, ValueError, "x must have 1 channel"),
    (torch.zeros(1, 1, 8, 8), float("nan"), ValueError, "sigma must be a finite number >= 0.*nan"),
    (torch.zeros(1, 1, 8, 8), math.inf, ValueError, "sigma must be a finite number >= 0.*inf"),
    (torch.zeros(2, 1, 8, 8), torch.tensor([0.1, math.nan]), ValueError, "sigma.*nan at index 1"),
])
def test_bad_input_gets_a_message_naming_the_argument(x, sigma, err, words):
    with pytest.raises(err, match=words):
        build_denoiser(SMALL)(x, sigma)


def test_shipped_architecture_needs_multiples_of_8_and_says_so():
    D = build_denoiser(PRESETS["phantom64"].net)
    with pytest.raises(ValueError, match="multiples of 8 for this 4-level UNet, got \\(60, 64\\)"):
        D(torch.zeros(1, 1, 60, 64), 0.5)
    assert D(torch.zeros(1, 1, 40, 48), 0.5).shape == (1, 1, 40, 48)  # any multiple of 8 works
    assert D.double()(torch.zeros(1, 1, 8, 8, dtype=torch.float64), 0.5).dtype == torch.float64
