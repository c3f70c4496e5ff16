"""Every physics model follows its input's device and the dtype it is moved to.

``op.to(device)`` moves an operator's buffers; its outputs must then live on the input's device and
agree with the CPU result. The device list holds every accelerator this machine has (CUDA, MPS);
on a CPU-only machine it is the CPU alone, and the dtype round trips and the mismatch errors below
are what runs. ``meta`` tensors (shapes without data) exercise the device logic of the dense
operators everywhere; the Radon transform's sparse CSR matmul has no meta kernel, so for it the
mismatch error is checked instead.
"""
from __future__ import annotations

import pytest
import torch

from diffcourse import phantoms
from diffcourse.physics.ct import Radon, sparse_view
from diffcourse.physics.masks import cartesian_mask
from diffcourse.physics.mri import MultiCoilMRI, SingleCoilMRI, coil_sensitivities
from diffcourse.physics.noise import GaussianNoise, PoissonNoise, QuantizedNoise
from diffcourse.physics.nonlinear import NeuralBlur, PhaseRetrieval, Quantizer

from _util import gen

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) \
    + (["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else [])
N = 32


def models():
    mask = cartesian_mask(N, 4, 0.125, generator=gen(0))
    return {
        "radon": Radon(N, sparse_view(12)),
        "single_coil": SingleCoilMRI(mask),
        "multi_coil": MultiCoilMRI(mask, coil_sensitivities(4, N)),
        "phase_retrieval": PhaseRetrieval(2.0),
        "quantizer": Quantizer.uniform(3, -0.5, 1.5),
        "neural_blur": NeuralBlur(seed=3),
    }


NAMES = list(models())


@pytest.fixture(scope="module")
def x():
    return phantoms.ellipses(2, N, generator=gen(1))                     # (2, 1, N, N) float32


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_forward_model_runs_where_its_input_lives(name, device, x):
    ref_op, op = models()[name], models()[name].to(device)
    y_ref = ref_op.A(x)
    y = op.A(x.to(device))
    assert y.device.type == device and y.shape == y_ref.shape
    torch.testing.assert_close(y.cpu(), y_ref, rtol=1e-4, atol=1e-4)
    if hasattr(op, "AT"):
        back = op.AT(y)
        assert back.device.type == device
        torch.testing.assert_close(back.cpu(), ref_op.AT(y_ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["radon", "single_coil", "multi_coil", "neural_blur"])
def test_float64_copy_agrees_with_float32(name, x):
    op32, op64 = models()[name], models()[name].to(torch.float64)
    y32, y64 = op32.A(x), op64.A(x.double())
    assert y64.dtype in (torch.float64, torch.complex128)
    torch.testing.assert_close(y32.to(y64.dtype), y64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["single_coil", "multi_coil", "phase_retrieval", "neural_blur"])
def test_dense_models_propagate_meta_tensors(name, x):
    op = models()[name].to("meta")
    y = op.A(torch.zeros(x.shape, device="meta"))
    assert y.device.type == "meta" and y.shape == models()[name].A(x).shape


@pytest.mark.parametrize("name", ["radon", "single_coil", "multi_coil", "neural_blur"])
def test_input_on_another_device_than_the_operator_is_refused(name, x):
    op = models()[name]
    with pytest.raises(ValueError, match=r"\bx\b"):
        op.A(torch.zeros(x.shape, device="meta"))


@pytest.mark.parametrize("device", DEVICES)
def test_noise_models_sample_and_score_on_the_input_device(device, x):
    Ax = x.to(device)
    q = Quantizer.uniform(2, -0.5, 1.5).to(device)
    for noise in (GaussianNoise(0.05), PoissonNoise(100.0), QuantizedNoise(q, 0.05)):
        g = torch.Generator(device=device).manual_seed(2)
        y = noise.sample(Ax, generator=g)
        assert y.device.type == device and y.shape == Ax.shape
        Ax_var = Ax.clone().clamp_min(1e-3).requires_grad_(True)
        ll = noise.log_likelihood(y, Ax_var)
        assert ll.device.type == device and ll.shape == (Ax.shape[0],)
        (grad,) = torch.autograd.grad(ll.sum(), Ax_var)
        assert bool(torch.isfinite(grad).all())
        g_cpu = torch.Generator().manual_seed(2)                           # same draw on the CPU
        if device == "cpu":
            torch.testing.assert_close(noise.sample(x, generator=g_cpu), y)
