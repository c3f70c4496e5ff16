"""`repr` of a forward operator shows the settings it was built with, not just its class name."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import torch

import diffcourse.physics
from diffcourse.physics import blur, cs, ct, matrix, mri, nonlinear, operators, volume
from diffcourse.physics.base import Operator

MASK = torch.zeros(16, 16)
MASK[:, ::4] = 1

EXPECTED = [
    (lambda: ct.Radon(64, ct.sparse_view(20)), "Radon(image_size=64, n_angles=20, n_detectors=91)"),
    (lambda: operators.Identity(), "Identity()"),
    (lambda: operators.Inpaint(MASK), "Inpaint(mask=<mask (1, 1, 16, 16), 25.0% ones>)"),
    (lambda: operators.Downsample(4), "Downsample(factor=4)"),
    (lambda: operators.Colorize(), "Colorize(weights=[0.3333, 0.3333, 0.3333])"),
    (lambda: mri.SingleCoilMRI(MASK), "SingleCoilMRI(mask=<mask (1, 1, 16, 16), 25.0% ones>)"),
    (lambda: mri.MultiCoilMRI(MASK, mri.coil_sensitivities(4, 16)),
     "MultiCoilMRI(mask=<mask (1, 1, 16, 16), 25.0% ones>, n_coils=4)"),
    (lambda: cs.GaussianCS(64, 20), "GaussianCS(in_shape=(64,), m=20)"),
    (lambda: cs.SubsampledDCT((1, 8, 8), 20), "SubsampledDCT(in_shape=(1, 8, 8), m=20)"),
    (lambda: blur.Blur(torch.full((5, 5), 1 / 25)), "Blur(kernel=<tensor (1, 1, 5, 5) float32>)"),
    (lambda: matrix.Matrix(torch.full((5, 6), 0.5, dtype=torch.float64)), "Matrix(matrix=<tensor (5, 6) float64>)"),
    (lambda: nonlinear.PhaseRetrieval(), "PhaseRetrieval(oversample=2)"),
    (lambda: nonlinear.NeuralBlur(3, n_filters=2, size=5), "NeuralBlur(seed=3, n_filters=2, size=5)"),
    (lambda: volume.SliceWise(operators.Downsample(2), 8), "SliceWise(op=Downsample(factor=2), depth=8)"),
]


@pytest.mark.parametrize("make, text", EXPECTED, ids=[t.split("(")[0] for _, t in EXPECTED])
def test_repr_shows_the_settings(make, text):
    assert repr(make()) == text


def _operator_classes() -> list[type]:
    for info in pkgutil.iter_modules(diffcourse.physics.__path__):
        importlib.import_module(f"diffcourse.physics.{info.name}")
    found, todo = [], [Operator]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("diffcourse.physics") and not sub.__name__.startswith("_"):
                found.append(sub)
    return found


def test_every_operator_with_constructor_arguments_lists_its_settings():
    missing = []
    for cls in _operator_classes():
        params = [p for p in inspect.signature(cls.__init__).parameters.values()
                  if p.name not in ("self", "generator", "dtype") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if params and not cls.settings:
            missing.append(f"{cls.__module__}.{cls.__name__}{inspect.signature(cls.__init__)}")
    assert missing == [], "operators whose repr would hide their settings:\n" + "\n".join(missing)
