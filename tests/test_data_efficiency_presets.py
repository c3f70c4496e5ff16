"""The data-efficiency presets (benchmarks/padis_data_efficiency.py): a patch prior and a whole-image prior of
about the same size, trained on the same fixed slices, with the same slices per step."""
import torch

from diffcourse.prior.nets import build_denoiser
from diffcourse.prior.patches import PATCHES_PER_IMAGE
from diffcourse.prior.train import PRESETS, fixed_brain_slices, training_batch

NAMES = [f"{kind}_n{n}" for kind in ("patch", "whole") for n in (16, 128)]


def n_parameters(name: str) -> int:
    return sum(p.numel() for p in build_denoiser(PRESETS[name].net).parameters())


def test_the_two_networks_are_of_comparable_size_and_see_the_same_slices_per_step():
    sizes = {name: n_parameters(name) for name in NAMES}
    assert sizes["patch_n16"] == sizes["patch_n128"] and sizes["whole_n16"] == sizes["whole_n128"]
    assert 0.85 < sizes["patch_n16"] / sizes["whole_n16"] < 1.15, sizes
    for n in (16, 128):
        patch, whole = PRESETS[f"patch_n{n}"], PRESETS[f"whole_n{n}"]
        assert patch.n_images == whole.n_images == n
        assert patch.steps == whole.steps
        assert patch.batch_size // PATCHES_PER_IMAGE == whole.batch_size      # slices rendered per step


def test_whole_image_batches_come_from_the_fixed_set_whose_first_16_are_the_small_set():
    small, large = fixed_brain_slices(16, 64, 0), fixed_brain_slices(128, 64, 0)
    assert torch.equal(small, large[:16])
    batch = training_batch(PRESETS["whole_n16"], torch.Generator().manual_seed(0))
    distance = (batch[:, None] - small[None]).flatten(2).abs().amax(-1)     # (batch, 16)
    assert bool((distance.amin(1) == 0).all())                            # every image is one of the 16
