"""Bad input to the physics modules: each case raises a ValueError or TypeError whose message names
the offending argument (as a whole word)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from diffcourse.physics.ct import Radon, limited_angle, sparse_view
from diffcourse.physics.mri import (MultiCoilMRI, SingleCoilMRI, cartesian_mask,
                                    coil_sensitivities, variable_density_mask)
from diffcourse.physics.noise import GaussianNoise, PoissonNoise, QuantizedNoise
from diffcourse.physics.nonlinear import NeuralBlur, PhaseRetrieval, Quantizer
from diffcourse.physics.operators import (Blur, Colorize, Downsample, GaussianCS, Inpaint,
                                          SubsampledDCT, SubsampledHadamard, ZeroBlur, box_mask,
                                          random_mask)

M8 = torch.ones(8, 8)
K5 = torch.ones(5, 5) / 25


def img(*shape, **kw):
    return torch.zeros(*shape, **kw)


def S(n=3, size=8):
    return coil_sensitivities(n, size)


CASES = [
    # operators
    ("inpaint mask 3D", lambda: Inpaint(torch.ones(2, 8, 8)), ValueError, "mask"),
    ("inpaint mask not binary", lambda: Inpaint(M8 * 0.5), ValueError, "mask"),
    ("inpaint mask numpy", lambda: Inpaint(np.ones((8, 8))), TypeError, "mask"),
    ("inpaint wrong size", lambda: Inpaint(M8).A(img(1, 1, 7, 7)), ValueError, "x"),
    ("inpaint int image", lambda: Inpaint(M8).A(img(1, 1, 8, 8, dtype=torch.long)), TypeError, "x"),
    ("inpaint batch mismatch", lambda: Inpaint(torch.ones(3, 1, 8, 8)).A(img(2, 1, 8, 8)),
     ValueError, "x"),
    ("inpaint wrong device", lambda: Inpaint(M8).A(img(1, 1, 8, 8, device="meta")), ValueError, "x"),
    ("inpaint adjoint wrong size", lambda: Inpaint(M8).AT(img(1, 1, 8, 9)), ValueError, "y"),
    ("random mask p > 1", lambda: random_mask(8, 1.5), ValueError, "p"),
    ("box outside", lambda: box_mask(8, (6, 6, 4, 4)), ValueError, "box"),
    ("blur kernel 1D", lambda: Blur(torch.ones(5)), ValueError, "kernel"),
    ("blur kernel int", lambda: Blur(torch.ones(3, 3, dtype=torch.long)), TypeError, "kernel"),
    ("blur image smaller than kernel", lambda: Blur(K5).A(img(1, 1, 3, 3)), ValueError, "x"),
    ("blur kernel batch mismatch", lambda: Blur(torch.ones(3, 3, 3)).A(img(2, 1, 8, 8)),
     ValueError, "x"),
    ("blur 3D image", lambda: Blur(K5).A(img(1, 8, 8)), ValueError, "x"),
    ("same blur even kernel", lambda: ZeroBlur(torch.ones(4, 4)).A(img(1, 1, 8, 8)), ValueError,
     "kernel"),
    ("circular blur svd without size", lambda: Blur(K5).svd(), ValueError, "x"),
    ("downsample factor 0", lambda: Downsample(0), ValueError, "factor"),
    ("downsample factor float", lambda: Downsample(2.5), TypeError, "factor"),
    ("downsample indivisible", lambda: Downsample(2).A(img(1, 1, 5, 4)), ValueError, "x"),
    ("downsample norm without x", lambda: Downsample(2).norm(), ValueError, "x"),
    ("colorize gray input", lambda: Colorize().A(img(1, 1, 4, 4)), ValueError, "x"),
    ("colorize weights", lambda: Colorize((0.5, 0.5)), ValueError, "weights"),
    ("colorize adjoint rgb", lambda: Colorize().AT(img(1, 3, 4, 4)), ValueError, "y"),
    ("cs m > n", lambda: GaussianCS(16, 20), ValueError, "m"),
    ("cs wrong input shape", lambda: GaussianCS(16, 4).A(img(2, 15)), ValueError, "x"),
    ("cs wrong measurement size", lambda: GaussianCS(16, 4).AT(img(2, 5)), ValueError, "y"),
    ("hadamard size", lambda: SubsampledHadamard((3, 4, 4), 4), ValueError, "shape"),
    ("dct 1D shape", lambda: SubsampledDCT((16,), 4), ValueError, "shape"),
    ("cg negative tol", lambda: Blur(K5).pinv_cg(img(1, 1, 8, 8), tol=-1.0), ValueError, "tol"),
    # CT
    ("radon empty angles", lambda: Radon(16, []), ValueError, "angles"),
    ("radon angles not numbers", lambda: Radon(16, "abc"), TypeError, "angles"),
    ("radon angles 2D", lambda: Radon(16, torch.zeros(2, 3)), ValueError, "angles"),
    ("radon size 0", lambda: Radon(0, sparse_view(4)), ValueError, "image_size"),
    ("radon wrong image size", lambda: Radon(16, sparse_view(4)).A(img(1, 1, 15, 15)), ValueError,
     "x"),
    ("radon dtype mismatch", lambda: Radon(8, sparse_view(4)).A(img(1, 1, 8, 8,
                                                                     dtype=torch.float64)),
     TypeError, "x"),
    ("radon wrong sinogram", lambda: Radon(8, sparse_view(4)).AT(img(1, 1, 5, 12)), ValueError, "y"),
    ("radon wrong device", lambda: Radon(8, sparse_view(4)).A(img(1, 1, 8, 8, device="meta")),
     ValueError, "x"),
    ("sparse view 0", lambda: sparse_view(0), ValueError, "n_views"),
    ("limited angle > 180", lambda: limited_angle(5, 200), ValueError, "max_angle_deg"),
    # MRI
    ("mri wrong size", lambda: SingleCoilMRI(M8).A(img(1, 1, 4, 4)), ValueError, "x"),
    ("mri mask not binary", lambda: SingleCoilMRI(M8 * 2), ValueError, "mask"),
    ("mri sensitivities size", lambda: MultiCoilMRI(M8, S(3, 6)), ValueError, "sensitivities"),
    ("mri sensitivities 2D", lambda: MultiCoilMRI(M8, S(1, 8)[0]), ValueError, "sensitivities"),
    ("mri sensitivities int", lambda: MultiCoilMRI(M8, torch.ones(2, 8, 8, dtype=torch.long)),
     TypeError, "sensitivities"),
    ("mri two channels", lambda: MultiCoilMRI(M8, S()).A(img(1, 2, 8, 8)), ValueError, "x"),
    ("mri wrong coil count", lambda: MultiCoilMRI(M8, S()).AT(img(1, 2, 8, 8,
                                                                  dtype=torch.complex64)),
     ValueError, "y"),
    ("mask acceleration < 1", lambda: cartesian_mask(64, 0.5), ValueError, "acceleration"),
    ("mask kind", lambda: cartesian_mask(64, 4, kind="poisson"), ValueError, "kind"),
    ("mask centre fraction", lambda: cartesian_mask(64, 4, 1.5), ValueError, "center_fraction"),
    ("mask size", lambda: cartesian_mask(0, 4), ValueError, "size"),
    ("vd mask decay", lambda: variable_density_mask(64, 4, decay=-1.0), ValueError, "decay"),
    ("coil count", lambda: coil_sensitivities(0, 8), ValueError, "n_coils"),
    # nonlinear
    ("phase retrieval oversample", lambda: PhaseRetrieval(0.5), ValueError, "oversample"),
    ("phase retrieval 3D", lambda: PhaseRetrieval().A(img(1, 8, 8)), ValueError, "x"),
    ("quantizer decreasing", lambda: Quantizer([1.0, 0.0]), ValueError, "thresholds"),
    ("quantizer empty", lambda: Quantizer([]), ValueError, "thresholds"),
    ("quantizer levels", lambda: Quantizer([0.0], levels=[1.0]), ValueError, "levels"),
    ("quantizer bits", lambda: Quantizer.uniform(0, -1.0, 1.0), ValueError, "bits"),
    ("quantizer range", lambda: Quantizer.uniform(2, 1.0, -1.0), ValueError, "high"),
    ("quantizer float indices", lambda: Quantizer.sign().bounds(torch.zeros(3)), TypeError, "k"),
    ("quantizer index range", lambda: Quantizer.sign().bounds(torch.tensor([2])), ValueError, "k"),
    ("quantizer input", lambda: Quantizer.sign().A([0.1]), TypeError, "z"),
    ("neural blur seed", lambda: NeuralBlur(seed=-1), ValueError, "seed"),
    ("neural blur even size", lambda: NeuralBlur(size=4), ValueError, "size"),
    ("neural blur 3D", lambda: NeuralBlur().A(img(1, 8, 8)), ValueError, "x"),
    # noise
    ("gaussian negative", lambda: GaussianNoise(-0.1), ValueError, "sigma_y"),
    ("gaussian negative per sample", lambda: GaussianNoise(torch.tensor([0.1, -1.0])), ValueError,
     "sigma_y"),
    ("gaussian string", lambda: GaussianNoise("0.1"), TypeError, "sigma_y"),
    ("gaussian zero density", lambda: GaussianNoise(0.0).log_likelihood(img(1, 3), img(1, 3)),
     ValueError, "sigma_y"),
    ("gaussian per-sample count", lambda: GaussianNoise(torch.tensor([0.1, 0.2, 0.3])).sample(
        img(2, 3)), ValueError, "sigma_y"),
    ("gaussian shapes", lambda: GaussianNoise(0.1).log_likelihood(img(1, 3), img(1, 4)), ValueError,
     "y"),
    ("gaussian Ax list", lambda: GaussianNoise(0.1).sample([0.0]), TypeError, "Ax"),
    ("poisson negative scale", lambda: PoissonNoise(-1.0), ValueError, "scale"),
    ("poisson zero scale", lambda: PoissonNoise(0.0), ValueError, "scale"),
    ("poisson negative rate", lambda: PoissonNoise(1.0).sample(-torch.ones(1, 3)), ValueError, "Ax"),
    ("poisson negative counts", lambda: PoissonNoise(1.0).log_likelihood(-torch.ones(1, 3),
                                                                         torch.ones(1, 3)),
     ValueError, "y"),
    ("poisson negative rate ll", lambda: PoissonNoise(1.0).log_likelihood(torch.ones(1, 3),
                                                                          -torch.ones(1, 3)),
     ValueError, "Ax"),
    ("quantized noise quantizer", lambda: QuantizedNoise("sign", 0.1), TypeError, "quantizer"),
    ("quantized noise sigma", lambda: QuantizedNoise(Quantizer.sign(), -0.1), ValueError, "sigma_y"),
    ("quantized noise y shape", lambda: QuantizedNoise(Quantizer.sign(), 0.1).log_likelihood(
        torch.zeros(1, 2, dtype=torch.long), img(1, 3)), ValueError, "y"),
    ("quantized noise float y", lambda: QuantizedNoise(Quantizer.sign(), 0.1).log_likelihood(
        torch.zeros(1, 3), torch.zeros(1, 3)), TypeError, "y"),
]


@pytest.mark.parametrize("thunk, error, name", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_by_name(thunk, error, name):
    with pytest.raises(error) as info:
        thunk()
    assert type(info.value) is error  # exactly the documented kind, not a subclass surprise
    assert re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", str(info.value)), str(info.value)
