"""Real anatomy: brain slices and volumes from the MNI ICBM152 template, and DICOM / NIfTI reading.

The anatomy is the ICBM 2009a nonlinear symmetric template (Fonov et al., "Unbiased nonlinear average
age-appropriate brain templates from birth to adulthood", NeuroImage 47 S102, 2009; Fonov et al.,
"Unbiased average age-appropriate atlases for pediatric studies", NeuroImage 54(1) 313-327, 2011): a
skull-stripped T1-weighted average of 152 adults at 1 mm, with grey- and white-matter probability
maps, as shipped inside nilearn's wheel (nothing is downloaded). Only the T1 image is measured; the
"t2", "pd" and "ct" contrasts are SYNTHETIC mixtures of the tissue maps (CSF = brain mask minus grey
and white matter; a skull and scalp shell grown from the smoothed brain mask for CT), with plausible
tissue values, not scans.

Every image is a fresh random view of the template: an in-plane rotation, scaling (slightly
anisotropic), shift, a small out-of-plane tilt and a smooth elastic deformation (a coarse random
displacement field, interpolated trilinearly), all folded into one 3-D sampling grid per batch, so a
slice of the deformed volume is read directly by one trilinear ``grid_sample`` call.

Coordinates. Points are in MNI millimetres (RAS: +x right, +y anterior, +z superior). A slice's
position ``t`` in [0, 1] is measured along its normal (+z axial, +y coronal, +x sagittal) across the
brain's extent. Held-out policy: ``split="train"`` never returns a slice with any sampled point inside
:data:`HELD_OUT_SLAB` (rejection on the exact deformed grid), ``split="test"`` puts the slice centre
inside the slab only; evaluate on ``split="test"`` with generator seeds that training never uses.
Images are displayed anterior / superior up, patient right on the image right (neurological).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["HELD_OUT_SLAB", "TRAIN_RANGE", "CONTRASTS", "ORIENTATIONS", "brain_slices", "brain_volumes",
           "slice_coordinate", "template", "read_dicom", "read_nifti", "window"]

#: Held-out band of the slice coordinate t (along the slice normal, 0 = lowest brain voxel, 1 = highest):
#: for axial slices z in [0.55, 0.65] of the brain's extent, about 15 mm at the level of the lateral
#: ventricles' bodies. Training slices never touch it; test slices are centred inside it.
HELD_OUT_SLAB = (0.55, 0.65)
#: Range of slice positions drawn outside the slab (the extreme ends hold little brain).
TRAIN_RANGE = (0.05, 0.95)
CONTRASTS = ("t1", "t2", "pd", "ct")
ORIENTATIONS = ("axial", "coronal", "sagittal")

# (column, row, normal) directions in RAS for each orientation: anterior / superior at the top
_AXES = {"axial": ((1., 0., 0.), (0., -1., 0.), (0., 0., 1.)),
         "coronal": ((1., 0., 0.), (0., 0., -1.), (0., 1., 0.)),
         "sagittal": ((0., 1., 0.), (0., 0., -1.), (1., 0., 0.))}
_NORMAL_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
# augmentation ranges: rotation (deg), scale, anisotropy, shift (mm), tilt (deg), elastic (mm, grid)
_ROT, _SCALE, _ANISO, _SHIFT, _TILT, _ELASTIC, _ELASTIC_GRID = 12.0, (0.9, 1.15), 0.06, 6.0, 3.0, 3.0, 5
# tissue channels: t1, grey matter, white matter, CSF, skull, scalp
_MR = {"t2": (0.0, 0.58, 0.38, 1.0, 0.0, 0.0), "pd": (0.0, 0.78, 0.62, 0.9, 0.0, 0.0)}
_CT_HU = (0.0, 40.0, 25.0, 5.0, 1100.0, 20.0)           # HU of each tissue; air -1000
_CT_WINDOW = (40.0, 100.0)                              # brain window (center, width)


def _smooth(v: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (1, 1, D, H, W) with std ``sigma`` voxels, zero padding."""
    r = int(3 * sigma + 0.5)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=v.dtype) / sigma) ** 2)
    k = k / k.sum()
    for dim in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + dim] = 2 * r + 1
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = r
        v = F.conv3d(F.pad(v, pad), k.reshape(shape))
    return v


def _ramp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return ((x - lo) / (hi - lo)).clamp(0, 1)


@functools.lru_cache(maxsize=2)
def template(spacing: int = 1) -> dict:
    """The template's tissue channels on a ``spacing`` mm grid (1 or 2; 2 averages 2x2x2 voxels).

    Returns a dict: ``volume`` (1, 6, D, H, W) float32 in [0, 1] with channels T1, grey matter, white
    matter, CSF, skull, scalp, indexed (z, y, x) so ``grid_sample``'s (x, y, z) are RAS; ``origin``
    (3,) mm of voxel (0, 0, 0) in (x, y, z); ``spacing``; ``lo``, ``hi`` (3,) the brain's extent in mm.
    Cached (do not modify it): building it takes a few seconds.

    >>> template(2)["volume"].shape
    torch.Size([1, 6, 94, 116, 98])
    """
    from nilearn import datasets

    def load(img):
        return torch.from_numpy(img.get_fdata(dtype="float32")).permute(2, 1, 0)[None, None]  # (1,1,z,y,x)

    t1_img = datasets.load_mni152_template(resolution=1)
    t1 = load(t1_img)
    gm = load(datasets.load_mni152_gm_template(resolution=1))
    wm = load(datasets.load_mni152_wm_template(resolution=1))
    t1, gm, wm = (v / v.max() for v in (t1, gm, wm))
    mask = (t1 > 0).float()
    gm, wm = gm * mask, wm * mask
    csf = (mask - gm - wm).clamp(0, 1)
    origin = torch.tensor(t1_img.affine[:3, 3], dtype=torch.float32)
    idx = mask[0, 0].nonzero()                                          # (k, 3) as (z, y, x)
    lo = origin + idx.min(0).values.flip(0).float()
    hi = origin + idx.max(0).values.flip(0).float()
    vol = torch.cat([t1, gm, wm, csf], 1)
    if spacing == 2:
        vol = F.avg_pool3d(vol, 2)
        origin = origin + 0.5
    elif spacing != 1:
        raise ValueError(f"spacing must be 1 or 2 (mm), got {spacing!r}")
    # skull and scalp: shells around the smoothed brain (levels of a 6 mm Gaussian blur of the mask:
    # about 3-10 mm outside the brain for bone, 10-14 mm for scalp); the gap in between is CSF
    s = _smooth(vol[:, 1:4].sum(1, keepdim=True).clamp(0, 1), 6.0 / spacing)
    outside = 1 - vol[:, 1:4].sum(1, keepdim=True).clamp(0, 1)
    gap = outside * _ramp(s, 0.25, 0.35)
    skull = outside * _ramp(s, 0.04, 0.06) * (1 - _ramp(s, 0.25, 0.35))
    scalp = outside * _ramp(s, 0.008, 0.012) * (1 - _ramp(s, 0.04, 0.06))
    vol[:, 3:4] += gap
    vol = torch.cat([vol, skull, scalp], 1).contiguous()
    return {"volume": vol, "origin": origin, "spacing": float(spacing), "lo": lo, "hi": hi}


def _spacing_for(size: int) -> int:
    return 2 if size <= 100 else 1            # about 3 mm pixels at 64: the 2 mm grid avoids aliasing


def _frame(orientation: str, lo: torch.Tensor, hi: torch.Tensor):
    """Axes (3, 3) with columns (col, row, normal) in RAS, brain centre (3,), half field of view (mm)
    and the brain's extent along the normal (mm)."""
    if orientation not in _AXES:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    axes = torch.tensor(_AXES[orientation]).T
    half = (hi - lo) / 2
    ax = _NORMAL_AXIS[orientation]
    half_fov = float(max(half[i] for i in range(3) if i != ax)) + 12.0
    return axes, (hi + lo) / 2, half_fov, float(hi[ax] - lo[ax])


def _rotation(angle: torch.Tensor, axis: int) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    R = torch.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def _draw_pose(generator, augment: bool) -> dict:
    """One image's pose: 8 uniforms and a coarse displacement field, in a fixed order."""
    if not augment:
        return {"linear": torch.eye(3), "shift": torch.zeros(3), "field": None}
    u = torch.rand(8, generator=generator)
    field = (2 * torch.rand(1, 3, *(3 * [_ELASTIC_GRID]), generator=generator) - 1) * _ELASTIC
    scale = _SCALE[0] + (_SCALE[1] - _SCALE[0]) * u[1]
    aniso = 1 + _ANISO * (2 * u[2:4] - 1)
    inplane = _rotation(math.radians(_ROT) * (2 * u[0] - 1), 2) @ torch.diag(
        torch.cat([1 / (scale * aniso), torch.ones(1)]))
    tilt = _rotation(math.radians(_TILT) * (2 * u[6] - 1), 0) @ _rotation(math.radians(_TILT) * (2 * u[7] - 1), 1)
    shift = torch.cat([_SHIFT * (2 * u[4:6] - 1), torch.zeros(1)])
    return {"linear": tilt @ inplane, "shift": tilt @ shift, "field": field}


def _points(pose: dict, frame, t: torch.Tensor, size: int) -> torch.Tensor:
    """MNI mm points (len(t), size, size, 3) of the posed planes at positions ``t`` (k,)."""
    axes, centre, half_fov, extent = frame
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1           # pixel centres in [-1, 1]
    v, u = torch.meshgrid(c, c, indexing="ij")
    w = (2 * t - 1).reshape(-1, 1, 1).expand(-1, size, size)
    uvw = torch.stack([u.expand_as(w), v.expand_as(w), w], -1)                     # (k, size, size, 3)
    local = uvw * torch.tensor([half_fov, half_fov, extent / 2])                   # oriented frame, mm
    local = local @ pose["linear"].T + pose["shift"]
    if pose["field"] is not None:
        disp = F.grid_sample(pose["field"], uvw[None], align_corners=True)          # (1, 3, k, size, size)
        local = local + disp[0].permute(1, 2, 3, 0)
    return centre + local @ axes.T


def _to_grid(points: torch.Tensor, tpl: dict) -> torch.Tensor:
    shape = torch.tensor(tpl["volume"].shape[2:][::-1], dtype=torch.float32)        # (x, y, z) sizes
    return (2 * (points - tpl["origin"]) / tpl["spacing"] + 1) / shape - 1


def _draw_contrast(contrast: str, generator) -> tuple[str, torch.Tensor]:
    """(contrast, 7 uniforms): a random contrast for "mixed", then jitter values, in a fixed order."""
    if contrast == "mixed":
        contrast = CONTRASTS[int(torch.randint(len(CONTRASTS), (1,), generator=generator))]
    elif contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {CONTRASTS} or 'mixed', got {contrast!r}")
    return contrast, torch.rand(7, generator=generator)


def _mix(channels: torch.Tensor, contrast: str, jitter: torch.Tensor) -> torch.Tensor:
    """(6, ...) tissue channels -> (...) image in [0, 1] of one (synthetic) contrast."""
    if contrast == "t1":
        return (channels[0] * (0.9 + 0.15 * jitter[0])).clamp(0, 1)
    if contrast == "ct":
        hu = torch.tensor(_CT_HU) + (2 * jitter[:6] - 1) * torch.tensor([0.0, 5.0, 5.0, 5.0, 100.0, 10.0])
        frac = channels[1:].sum(0).clamp(max=1)
        image = torch.einsum("c...,c->...", channels[1:], hu[1:]) - 1000 * (1 - frac)
        return window(image, *_CT_WINDOW)
    w = torch.tensor(_MR[contrast]) * (0.9 + 0.2 * jitter[:6])
    return torch.einsum("c...,c->...", channels, w).clamp(0, 1)


def slice_coordinate(points: torch.Tensor, orientation: str = "axial") -> torch.Tensor:
    """The slice coordinate t of MNI mm points (..., 3): position along the orientation's normal,
    0 at the brain's lowest and 1 at its highest voxel (as in :data:`HELD_OUT_SLAB`)."""
    tpl = template(2)
    ax = _NORMAL_AXIS[orientation]
    return (points[..., ax] - tpl["lo"][ax]) / (tpl["hi"][ax] - tpl["lo"][ax])


def _in_slab(t: torch.Tensor) -> bool:
    """Whether the connected set of slice coordinates ``t`` meets the held-out slab."""
    return not (float(t.max()) < HELD_OUT_SLAB[0] or float(t.min()) > HELD_OUT_SLAB[1])


def _slice_points(pose, frame, size, split, position, orientation, generator) -> torch.Tensor:
    if position is not None:
        if split != "all":
            raise ValueError(f"position= needs split='all' (the held-out policy draws positions), got {split!r}")
        return _points(pose, frame, torch.tensor([float(position)]), size)
    if split == "test":
        t = HELD_OUT_SLAB[0] + (HELD_OUT_SLAB[1] - HELD_OUT_SLAB[0]) * torch.rand(1, generator=generator)
        return _points(pose, frame, t, size)
    if split not in ("train", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    for _ in range(1000):
        t = TRAIN_RANGE[0] + (TRAIN_RANGE[1] - TRAIN_RANGE[0]) * torch.rand(1, generator=generator)
        points = _points(pose, frame, t, size)
        if split == "all" or not _in_slab(slice_coordinate(points, orientation)):
            return points
    raise RuntimeError("could not draw a training slice outside the held-out slab")


def _check(n, size, contrast: str, split: str) -> None:
    for value, name in ((n, "n"), (size, "size")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if contrast not in CONTRASTS + ("mixed",):
        raise ValueError(f"contrast must be one of {CONTRASTS} or 'mixed', got {contrast!r}")
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")


def brain_slices(n: int, size: int = 64, generator: torch.Generator | None = None, *,
                 orientation: str = "axial", contrast: str = "t1", split: str = "train",
                 lesions: bool = False, augment: bool = True, position: float | None = None,
                 return_coords: bool = False):
    """Random slices of the MNI ICBM152 2009a template (Fonov et al. 2009, 2011): (n, 1, size, size)
    float32 in [0, 1]; with ``return_coords`` also their MNI mm points (n, size, size, 3).

    ``contrast``: "t1" (the template), synthetic "t2", "pd", "ct" (Hounsfield units shown in a 40 / 100
    brain window: bright skull, dark CSF, little grey-white contrast) or "mixed" (a random one per
    image). ``split``: "train" (no point in :data:`HELD_OUT_SLAB`), "test" (centred in the slab) or
    "all". ``position`` fixes t (needs ``split="all"``); ``augment=False`` gives the unposed template;
    ``lesions`` adds 1-3 small ellipsoid lesions (dark in T1 and CT, bright in T2 and PD) in grey or
    white matter. Each image draws its own random numbers in turn, so a batch of two equals two
    batches of one from the same generator. A batch of 16 at 64 x 64 takes about 20 ms.

    >>> x = brain_slices(2, 32, torch.Generator().manual_seed(0), contrast="mixed")
    >>> x.shape, bool(x.min() >= 0), bool(x.max() <= 1)
    (torch.Size([2, 1, 32, 32]), True, True)
    """
    _check(n, size, contrast, split)
    tpl = template(_spacing_for(size))
    frame = _frame(orientation, tpl["lo"], tpl["hi"])
    points, looks = [], []
    for _ in range(n):
        pose = _draw_pose(generator, augment)
        points.append(_slice_points(pose, frame, size, split, position, orientation, generator))
        looks.append(_draw_contrast(contrast, generator) +
                     (_draw_lesions(points[-1], tpl, generator) if lesions else None,))
    points = torch.cat(points)                                                  # (n, size, size, 3)
    images = _render(points[:, None], looks, tpl)[:, :, 0]                       # (n, 1, size, size)
    return (images, points) if return_coords else images


def brain_volumes(n: int, size: int = 64, depth: int = 32, generator: torch.Generator | None = None, *,
                  orientation: str = "axial", contrast: str = "t1", lesions: bool = False,
                  augment: bool = True, return_coords: bool = False):
    """Random posed volumes of the template (Fonov et al. 2009, 2011): (n, 1, depth, size, size) in [0, 1].

    Slice k lies at t = (k + 0.5) / depth across the whole brain (held-out slab included: volumes are
    for 3-D lessons, not for training 2-D priors). The same generator state gives the same pose as
    :func:`brain_slices`, whose slice at ``position=(k + 0.5) / depth, split="all"`` equals slice k.

    >>> brain_volumes(1, 32, 8, torch.Generator().manual_seed(0)).shape
    torch.Size([1, 1, 8, 32, 32])
    """
    _check(n, size, contrast, "all")
    _check(depth, 1, contrast, "all")
    tpl = template(_spacing_for(size))
    frame = _frame(orientation, tpl["lo"], tpl["hi"])
    t = (torch.arange(depth, dtype=torch.float32) + 0.5) / depth
    points, looks = [], []
    for _ in range(n):
        pose = _draw_pose(generator, augment)
        points.append(_points(pose, frame, t, size))
        looks.append(_draw_contrast(contrast, generator) +
                     (_draw_lesions(points[-1], tpl, generator) if lesions else None,))
    points = torch.stack(points)                                                # (n, depth, size, size, 3)
    images = _render(points, looks, tpl)
    return (images, points) if return_coords else images


def _render(points: torch.Tensor, looks: list, tpl: dict) -> torch.Tensor:
    """Points (n, k, size, size, 3) -> images (n, 1, k, size, size): one trilinear grid_sample call."""
    n, k, h, w, _ = points.shape
    grid = _to_grid(points, tpl).reshape(1, n * k, h, w, 3)
    channels = F.grid_sample(tpl["volume"], grid, align_corners=False)          # (1, 6, n k, h, w)
    channels = channels[0].reshape(6, n, k, h, w)
    out = torch.empty(n, 1, k, h, w)
    for i, (contrast, jitter, lesion) in enumerate(looks):
        out[i, 0] = _mix(channels[:, i], contrast, jitter)
        if lesion is not None:                        # lesions replace grey and white matter only
            frac = _lesion_fraction(points[i], lesion) * channels[1:3, i].sum(0).clamp(max=1)
            out[i, 0] = torch.lerp(out[i, 0], torch.full_like(frac, _LESION_VALUE[contrast]), frac)
    return out


_LESION_VALUE = {"t1": 0.3, "t2": 0.95, "pd": 0.9, "ct": 0.25}     # ct: about 15 HU in the brain window


def _draw_lesions(points: torch.Tensor, tpl: dict, generator) -> torch.Tensor:
    """1-3 ellipsoids centred on random brain points among ``points`` (..., 3): rows of (centre in MNI
    mm (3), semi-axes in mm (3), strength); a centre outside grey or white matter is redrawn (20 tries)."""
    flat = points.reshape(-1, 3)
    count = 1 + int(torch.randint(3, (1,), generator=generator))
    rows = []
    for _ in range(20 * count):
        u = torch.rand(5, generator=generator)
        centre = flat[min(int(u[0] * len(flat)), len(flat) - 1)]
        grid = _to_grid(centre, tpl).reshape(1, 1, 1, 1, 3)
        if F.grid_sample(tpl["volume"][:, 1:3], grid, align_corners=False).sum() > 0.5:
            rows.append(torch.cat([centre, 2 + 5 * u[1:4], 0.6 + 0.4 * u[4:]]))
        if len(rows) == count:
            break
    return torch.stack(rows) if rows else torch.zeros(0, 7)


def _lesion_fraction(points: torch.Tensor, lesion: torch.Tensor) -> torch.Tensor:
    """Fraction (...) of lesion at MNI mm ``points`` (..., 3): soft-edged ellipsoids, max over lesions."""
    frac = torch.zeros(points.shape[:-1])
    for row in lesion:
        r = (((points - row[:3]) / row[3:6]) ** 2).sum(-1).sqrt()
        frac = torch.maximum(frac, row[6] * ((1 - r) * 4).clamp(0, 1))
    return frac


def window(x: torch.Tensor, center: float, width: float) -> torch.Tensor:
    """Display window: maps [center - width/2, center + width/2] (e.g. HU) linearly onto [0, 1], clamped.

    >>> window(torch.tensor([-1000., 40., 1000.]), 40, 80).tolist()
    [0.0, 0.5, 1.0]
    """
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return ((x - (center - width / 2)) / width).clamp(0, 1)


def read_dicom(path) -> torch.Tensor:
    """A DICOM image as float32 (H, W) in modality units: Hounsfield units for CT (RescaleSlope and
    RescaleIntercept applied, as pydicom's ``apply_modality_lut``), scanner units otherwise."""
    import pydicom

    ds = pydicom.dcmread(str(path))
    pixels = torch.from_numpy(ds.pixel_array.astype("float64"))
    slope = float(getattr(ds, "RescaleSlope", 1.0))
    intercept = float(getattr(ds, "RescaleIntercept", 0.0))
    return (pixels * slope + intercept).float()


def read_nifti(path) -> torch.Tensor:
    """A NIfTI image's data as a float32 tensor in the file's voxel order (x, y, z[, ...])."""
    import nibabel

    return torch.from_numpy(nibabel.load(str(Path(path))).get_fdata(dtype="float32"))
