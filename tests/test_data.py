"""Real anatomy (diffcourse.data): shapes and ranges, determinism and batch invariance, the held-out
slab, slices equal to cuts of volumes, orientation conventions, contrasts, DICOM / NIfTI reading."""
import dataclasses

import pytest
import torch

from diffcourse import data


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("contrast", ["t1", "t2", "pd", "ct", "mixed"])
@pytest.mark.parametrize("orientation", data.ORIENTATIONS)
def test_shapes_and_range(contrast, orientation):
    x = data.brain_slices(3, 32, gen(), contrast=contrast, orientation=orientation)
    assert x.shape == (3, 1, 32, 32) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1 and x.mean() > 0.02          # not empty


def test_seeded_and_batch_invariant():
    a = data.brain_slices(3, 32, gen(1), contrast="mixed", lesions=True)
    assert torch.equal(a, data.brain_slices(3, 32, gen(1), contrast="mixed", lesions=True))
    g = gen(1)
    one_by_one = torch.cat([data.brain_slices(1, 32, g, contrast="mixed", lesions=True) for _ in range(3)])
    assert torch.equal(a, one_by_one)
    assert not torch.equal(a, data.brain_slices(3, 32, gen(2), contrast="mixed", lesions=True))


def test_training_never_touches_the_held_out_slab():
    lo, hi = data.HELD_OUT_SLAB
    _, pts = data.brain_slices(200, 16, gen(3), split="train", return_coords=True)
    t = data.slice_coordinate(pts).flatten(1)                              # (n, pixels)
    assert ((t < lo) | (t > hi)).all()
    assert (t.max(1).values < lo).any() and (t.min(1).values > hi).any()   # both sides are used
    _, pts = data.brain_slices(50, 16, gen(4), split="test", return_coords=True)
    t = data.slice_coordinate(pts).flatten(1)
    assert ((t.min(1).values <= hi) & (t.max(1).values >= lo)).all()      # every test slice cuts it
    centre = data.slice_coordinate(pts[:, 8, 8])
    assert ((centre > lo - 0.03) & (centre < hi + 0.03)).all()


@pytest.mark.parametrize("orientation", data.ORIENTATIONS)
def test_slice_of_a_volume_equals_the_slice(orientation):
    depth, k = 8, 5
    v = data.brain_volumes(2, 32, depth, gen(5), orientation=orientation, contrast="mixed")
    assert v.shape == (2, 1, depth, 32, 32)
    s = data.brain_slices(2, 32, gen(5), orientation=orientation, contrast="mixed", split="all",
                          position=(k + 0.5) / depth)
    torch.testing.assert_close(v[:, :, k], s, atol=1e-6, rtol=0)


def test_orientation_conventions():
    """Unposed slices: axial rows run anterior -> posterior at fixed z, coronal and sagittal rows run
    superior -> inferior; columns run to the patient's right (axial, coronal) or anterior (sagittal)."""
    d = {o: data.brain_slices(1, 16, orientation=o, augment=False, split="all", position=0.5,
                              return_coords=True)[1][0] for o in data.ORIENTATIONS}
    ax, co, sa = d["axial"], d["coronal"], d["sagittal"]
    assert ax[..., 2].std() < 1e-4 and (ax[1:, :, 1] < ax[:-1, :, 1]).all() and (ax[:, 1:, 0] > ax[:, :-1, 0]).all()
    assert co[..., 1].std() < 1e-4 and (co[1:, :, 2] < co[:-1, :, 2]).all() and (co[:, 1:, 0] > co[:, :-1, 0]).all()
    assert sa[..., 0].std() < 1e-4 and (sa[1:, :, 2] < sa[:-1, :, 2]).all() and (sa[:, 1:, 1] > sa[:, :-1, 1]).all()
    # the three central planes meet at the brain's centre
    tpl = data.template(2)
    for pts in (ax, co, sa):
        assert torch.allclose(pts[7:9, 7:9].mean((0, 1)), (tpl["lo"] + tpl["hi"]) / 2, atol=1e-3)


def test_contrasts_follow_tissue_physics():
    """Same pose, four contrasts: CSF (dark in T1) is bright in T2; CT has a bone-bright skull ring."""
    x = {c: data.brain_slices(4, 64, gen(6), contrast=c, split="test") for c in data.CONTRASTS}
    brain = x["t1"] > 0.05
    csf, wm = brain & (x["t1"] < 0.35), x["t1"] > 0.8
    assert x["t2"][csf].mean() > x["t2"][wm].mean() + 0.3 and x["t1"][csf].mean() < x["t1"][wm].mean() - 0.4
    assert x["pd"][csf].mean() > x["pd"][wm].mean()
    assert (x["ct"][~brain] > 0.99).float().mean() > 0.02               # the skull
    assert abs(x["ct"][wm].mean() - x["ct"][brain & ~csf].mean()) < 0.15  # low grey / white contrast


def test_lesions_change_only_the_brain():
    plain = data.brain_slices(1, 64, gen(7), contrast="t2", split="test")
    with_lesions = data.brain_slices(1, 64, gen(7), contrast="t2", split="test", lesions=True)
    changed = (plain - with_lesions).abs() > 1e-6
    assert changed.any() and (plain[changed] > 0).all()


def test_bad_arguments():
    for kwargs in ({"contrast": "flair"}, {"orientation": "oblique"}, {"split": "val"},
                   {"position": 0.6}):                                   # position needs split="all"
        with pytest.raises(ValueError):
            data.brain_slices(1, 16, gen(), **kwargs)


def test_read_dicom_gives_hounsfield_units():
    import pydicom  # a dependency of the package: a missing one must fail, not skip
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut

    for name in ("CT_small.dcm", "MR_small.dcm"):
        path = get_testdata_file(name)
        ds = pydicom.dcmread(path)
        expected = torch.from_numpy(apply_modality_lut(ds.pixel_array, ds).astype("float32"))
        assert torch.equal(data.read_dicom(path), expected)
    hu = data.read_dicom(get_testdata_file("CT_small.dcm"))
    assert hu.min() < -800 and hu.max() > 1000                          # air and bone
    assert torch.equal(data.window(torch.tensor([-10.0, 40.0, 90.0]), 40, 100), torch.tensor([0.0, 0.5, 1.0]))


def test_read_nifti(tmp_path):
    import nibabel  # a dependency of the package: a missing one must fail, not skip
    import numpy as np

    volume = np.arange(4 * 5 * 3, dtype="float32").reshape(4, 5, 3)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    assert torch.equal(data.read_nifti(tmp_path / "v.nii.gz"), torch.from_numpy(volume))


def test_brain_training_config():
    """The brain64 preset draws brain slices; the phantom presets' records have no data field, and an
    old record without it loads as phantoms."""
    from diffcourse.prior.pretrained import info
    from diffcourse.prior.train import PRESETS, TrainConfig, training_batch

    assert "data" not in PRESETS["phantom64"].to_dict() and PRESETS["brain64"].to_dict()["data"] == "brain"
    shipped = info("phantom64")["config"]                # the fine-tuning stage of the shipped phantom64
    assert dataclasses.replace(PRESETS["phantom64_sharp"], steps=shipped["steps"]).to_dict() == shipped
    old = {k: v for k, v in PRESETS["phantom64"].to_dict().items()}      # a record from before the field
    assert "data" not in old and TrainConfig.from_dict(old).data == "phantoms"
    assert TrainConfig.from_dict(PRESETS["brain64"].to_dict()) == PRESETS["brain64"]
    assert TrainConfig.from_dict(PRESETS["tiny"].to_dict()).data == "phantoms"
    cfg = dataclasses.replace(PRESETS["brain64"], batch_size=2, size=32)
    assert torch.equal(training_batch(cfg, gen(8)),
                       data.brain_slices(2, 32, gen(8), contrast="mixed", split="train"))
    with pytest.raises(ValueError):
        TrainConfig(data="imagenet")
