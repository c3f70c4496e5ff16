"""Phantoms: the images every lesson reconstructs, generated offline from a ``generator``.

* :func:`ellipses` -- random CT-like ellipse phantoms (a bright rim, inner structures).
* :func:`shepp_logan` -- the modified Shepp-Logan phantom (Shepp & Logan 1974; Toft 1996 contrast).
* :func:`shepp_logan_family` -- random relatives of it (every ellipse's intensity, axes, centre and
  angle jittered, random pose), sharp-edged by default: piecewise-constant images with hard edges.
* :func:`head` / :func:`head_volume` -- a head-like family with consistent anatomy: skull, brain
  tissue with smooth intensity variation (grey/white matter), roughly symmetric ventricles, random
  lesions, random pose and a mild smooth deformation. A 2-D head is an axial slice of a 3-D head,
  so a prior trained on 2-D heads serves slice-wise 3-D reconstruction. The smooth shading is
  there on purpose: piecewise-constant images are total variation's home ground, smooth anatomy
  is where a learned prior wins.
* :func:`rgb_images` -- colour test images (smooth backgrounds with coloured shapes).

All images are float32 in [0, 1], shaped (n, 1, size, size) (volumes (n, 1, depth, size, size)).
Coordinates: x to the right, y up, both in [-1, 1] across the field of view.
"""
from __future__ import annotations

import math

import torch

from ._validate import check_int

__all__ = ["ellipses", "shepp_logan", "shepp_logan_family", "head", "head_volume", "rgb_images", "HEAD_Z_RANGE"]


def _check_z_range(z_range):
    ok = isinstance(z_range, (tuple, list)) and len(z_range) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in z_range)
    if not ok or not -1 < z_range[0] <= z_range[1] < 1:
        raise ValueError(f"z_range must be a pair (low, high) with -1 < low <= high < 1 (heights in the "
                         f"head, whose top and bottom are at -1 and 1), got {z_range!r}")


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates (X, Y), each (size, size), x right and y up, in (-1, 1)."""
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    Y, X = torch.meshgrid(-c, c, indexing="ij")  # row 0 is the top of the image (y = +1)
    return X, Y


def _rand(generator, *shape, low=0.0, high=1.0):
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def _ellipse(X, Y, cx, cy, a, b, phi, soft=0.0):
    """Indicator of the ellipse ((x'/a)^2 + (y'/b)^2 <= 1) in coordinates rotated by ``phi`` rad.

    With ``soft > 0`` the edge is a smooth ramp of about ``soft`` in normalised radius (anti-aliasing
    and smooth tissue boundaries)."""
    c, s = math.cos(phi), math.sin(phi)
    xr = (X - cx) * c + (Y - cy) * s
    yr = -(X - cx) * s + (Y - cy) * c
    r = torch.sqrt((xr / a) ** 2 + (yr / b) ** 2)
    if soft <= 0:
        return (r <= 1).to(X.dtype)
    return torch.sigmoid((1 - r) / soft)


# ----------------------------------------------------------------------------------------------
# Random ellipses and Shepp-Logan
# ----------------------------------------------------------------------------------------------

def _one_ellipse_phantom(X, Y, g, soft):
    a0, b0 = float(_rand(g, low=0.6, high=0.85)), float(_rand(g, low=0.7, high=0.92))
    phi0 = float(_rand(g, low=-0.3, high=0.3))
    rim = float(_rand(g, low=0.03, high=0.07))
    tissue = float(_rand(g, low=0.2, high=0.45))
    img = _ellipse(X, Y, 0, 0, a0, b0, phi0, soft)  # bright rim
    inner = _ellipse(X, Y, 0, 0, a0 - rim, b0 - rim, phi0, soft)
    img = img - (1 - tissue) * inner
    for _ in range(int(torch.randint(3, 9, (1,), generator=g))):
        rad = float(_rand(g, low=0.0, high=0.6))
        ang = float(_rand(g, low=0.0, high=2 * math.pi))
        cx, cy = rad * math.cos(ang) * a0, rad * math.sin(ang) * b0
        a, b = float(_rand(g, low=0.04, high=0.3)), float(_rand(g, low=0.04, high=0.3))
        value = float(_rand(g, low=-0.2, high=0.45))
        img = img + value * _ellipse(X, Y, cx, cy, a, b, float(_rand(g, high=math.pi)), soft) * inner
    return img.clamp(0, 1)


def ellipses(n: int, size: int, generator: torch.Generator | None = None, *,
             antialias: bool = True) -> torch.Tensor:
    """Random CT-like ellipse phantoms (a bright rim and 3-8 inner ellipses), (n, 1, size, size).

    >>> x = ellipses(2, 32, generator=torch.Generator().manual_seed(0))
    >>> x.shape, bool(x.min() >= 0), bool(x.max() <= 1)
    (torch.Size([2, 1, 32, 32]), True, True)
    """
    check_int(n, "n")
    check_int(size, "size", 8)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    X, Y = _grid(size)
    soft = 1.0 / size if antialias else 0.0
    out = torch.stack([_one_ellipse_phantom(X, Y, g, soft) for _ in range(n)])
    return out.unsqueeze(1).float()


# (intensity, a, b, x0, y0, phi in degrees): the modified Shepp-Logan table (Toft 1996), which
# raises the contrast of the original (Shepp & Logan 1974) for display.
_SHEPP_LOGAN = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0),
    (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0.0),
    (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0.0),
    (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0.0),
    (0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
)


def shepp_logan(size: int) -> torch.Tensor:
    """The modified Shepp-Logan phantom (Shepp & Logan 1974, Toft 1996), (1, 1, size, size) in [0, 1].

    >>> shepp_logan(64).shape
    torch.Size([1, 1, 64, 64])
    """
    check_int(size, "size", 8)
    X, Y = _grid(size)
    img = torch.zeros_like(X)
    for value, a, b, x0, y0, phi in _SHEPP_LOGAN:
        img = img + value * _ellipse(X, Y, x0, y0, a, b, math.radians(phi))
    return img.clamp(0, 1)[None, None].float()


def shepp_logan_family(n: int, size: int, generator: torch.Generator | None = None, *,
                       antialias: bool = False, jitter: float = 0.3) -> torch.Tensor:
    """Random Shepp-Logan-like phantoms, (n, 1, size, size) in [0, 1].

    Each of the ten ellipses of the modified table (Toft 1996) gets its intensity scaled by
    ``1 + jitter U(-1, 1)`` (a quarter of that for the two outer ellipses), its axes by ``1 + jitter/2 U(-1, 1)``, its centre moved by up to
    ``jitter/5`` of the field of view and its angle turned by up to ``60 jitter`` degrees (the second
    ellipse, the brain, moves with the first, the skull, so the rim stays a rim); then the
    whole phantom is rotated, scaled (0.8-1.05) and shifted. Edges are hard unless ``antialias``.
    With ``jitter=0`` and the pose fixed this is :func:`shepp_logan` (tested).

    >>> x = shepp_logan_family(2, 32, torch.Generator().manual_seed(0))
    >>> x.shape, bool(x.min() >= 0), bool(x.max() <= 1)
    (torch.Size([2, 1, 32, 32]), True, True)
    """
    check_int(n, "n")
    check_int(size, "size", 8)
    if not 0 <= float(jitter) <= 1:
        raise ValueError(f"jitter must be in [0, 1], got {jitter!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    X, Y = _grid(size)
    soft = 1.0 / size if antialias else 0.0
    out = []
    for _ in range(n):
        turn = float(_rand(g, low=-0.5, high=0.5)) * jitter / 0.3
        scale = 1.0 + float(_rand(g, low=-0.2, high=0.05)) * jitter / 0.3
        sx, sy = (float(v) * jitter / 3 for v in _rand(g, 2, low=-1, high=1))
        c, s_ = math.cos(turn), math.sin(turn)                         # the pose of the whole phantom
        Xp = ((X - sx) * c + (Y - sy) * s_) / scale
        Yp = (-(X - sx) * s_ + (Y - sy) * c) / scale
        img = torch.zeros_like(X)
        for i, (value, a, b, x0, y0, phi) in enumerate(_SHEPP_LOGAN):
            u = _rand(g, 6, low=-1, high=1)
            if i < 2:                           # skull and brain vary less in intensity: the
                u[0] = u[0] / 4                 # brain's 1 - 0.8 stays between 0.07 and 0.33
            if i == 1:                          # the brain follows the skull: the rim stays a rim
                u[1:] = skull[1:]
            skull = u
            img = img + value * (1 + jitter * float(u[0])) * _ellipse(
                Xp, Yp, x0 + jitter / 5 * float(u[1]), y0 + jitter / 5 * float(u[2]),
                a * (1 + jitter / 2 * float(u[3])), b * (1 + jitter / 2 * float(u[4])),
                math.radians(phi + 60 * jitter * float(u[5])), soft)
        out.append(img.clamp(0, 1))
    return torch.stack(out).unsqueeze(1).float()


# ----------------------------------------------------------------------------------------------
# Head-like phantoms (2-D slices of 3-D heads)
# ----------------------------------------------------------------------------------------------

#: Heights (in units of the field of view) of the axial slices of the head family: :func:`head` draws
#: its slices from this range and :func:`head_volume` spans it, so 2-D and 3-D data agree.
HEAD_Z_RANGE = (-0.3, 0.35)


def _head_params(g: torch.Generator) -> dict:
    """Random anatomy and pose of one head; all lengths in field-of-view units."""
    p = {
        "scale": float(_rand(g, low=0.88, high=1.02)),
        "a": float(_rand(g, low=0.66, high=0.74)), "b": float(_rand(g, low=0.80, high=0.88)),
        "c": float(_rand(g, low=0.85, high=0.95)),                     # half height (z)
        "skull": float(_rand(g, low=0.05, high=0.08)),
        "rot": float(_rand(g, low=-0.3, high=0.3)),
        "shift": _rand(g, 2, low=-0.05, high=0.05).tolist(),
        "grey": float(_rand(g, low=0.35, high=0.45)), "white": float(_rand(g, low=0.5, high=0.6)),
        "vent_sep": float(_rand(g, low=0.07, high=0.12)), "vent_len": float(_rand(g, low=0.16, high=0.24)),
        "vent_w": float(_rand(g, low=0.04, high=0.07)), "vent_tilt": float(_rand(g, low=0.15, high=0.4)),
        "vent_asym": float(_rand(g, low=-0.02, high=0.02)),
        "shade_k": _rand(g, 4, 3, low=-1.6, high=1.6).tolist(),     # smooth shading frequencies
        "shade_phase": _rand(g, 4, low=0.0, high=2 * math.pi).tolist(),
        "shade_amp": float(_rand(g, low=0.04, high=0.09)),
        "warp": _rand(g, 4, low=-1.0, high=1.0).tolist(),
        "lesions": [],
    }
    for _ in range(int(torch.randint(0, 4, (1,), generator=g))):
        rad, ang = float(_rand(g, low=0.1, high=0.5)), float(_rand(g, high=2 * math.pi))
        p["lesions"].append({
            "center": (rad * math.cos(ang), rad * math.sin(ang), float(_rand(g, low=-0.3, high=0.3))),
            "r": float(_rand(g, low=0.025, high=0.08)),
            "value": float(_rand(g, low=0.68, high=0.85)) if bool(torch.rand(1, generator=g) < 0.6)
            else float(_rand(g, low=0.18, high=0.28)),
        })
    return p


def _ellipsoid(X, Y, Z, cx, cy, cz, a, b, c, phi, soft):
    """Soft indicator of an ellipsoid with in-plane rotation ``phi``."""
    co, si = math.cos(phi), math.sin(phi)
    xr = (X - cx) * co + (Y - cy) * si
    yr = -(X - cx) * si + (Y - cy) * co
    r = torch.sqrt((xr / a) ** 2 + (yr / b) ** 2 + ((Z - cz) / c) ** 2)
    return torch.sigmoid((1 - r) / soft)


def _head_intensity(X, Y, Z, p: dict, soft: float) -> torch.Tensor:
    """Intensity of head ``p`` at points (X, Y, Z) (any equal shapes)."""
    # pose: in-plane rotation, scale and shift, then a mild smooth warp
    co, si = math.cos(p["rot"]), math.sin(p["rot"])
    Xs, Ys = X - p["shift"][0], Y - p["shift"][1]
    Xr, Yr = (Xs * co + Ys * si) / p["scale"], (-Xs * si + Ys * co) / p["scale"]
    w = p["warp"]
    Xw = Xr + 0.025 * w[0] * torch.sin(math.pi * (Yr + w[1]))
    Yw = Yr + 0.025 * w[2] * torch.sin(math.pi * (Xr + w[3]))
    a, b, c, t = p["a"], p["b"], p["c"], p["skull"]
    head = _ellipsoid(Xw, Yw, Z, 0, 0, 0, a, b, c, 0, soft)
    brain = _ellipsoid(Xw, Yw, Z, 0, -0.01, 0, a - t, b - t, c - t, 0, soft)
    white = _ellipsoid(Xw, Yw, Z, 0, -0.02, 0.05, 0.72 * (a - t), 0.74 * (b - t), 0.6 * c, 0, 3 * soft)
    shade = sum(torch.cos(math.pi * (k[0] * Xw + k[1] * Yw + k[2] * Z) + ph)
                for k, ph in zip(p["shade_k"], p["shade_phase"])) / 4
    tissue = p["grey"] + (p["white"] - p["grey"]) * white + p["shade_amp"] * shade
    img = head * 1.0 + brain * (tissue - 1.0)              # bright skull, brain inside
    for side in (-1, 1):                                   # lateral ventricles (dark, symmetric)
        vent = _ellipsoid(Xw, Yw, Z, side * p["vent_sep"] + p["vent_asym"], 0.03, 0.1,
                          p["vent_w"], p["vent_len"], 0.22, -side * p["vent_tilt"], soft)
        img = img + vent * brain * (0.12 - img)
    third = _ellipsoid(Xw, Yw, Z, 0.0, -0.12, 0.0, 0.018, 0.05, 0.15, 0.0, soft)
    img = img + third * brain * (0.12 - img)
    for les in p["lesions"]:
        cx, cy, cz = les["center"]
        blob = _ellipsoid(Xw, Yw, Z, cx * (a - t), cy * (b - t), cz, les["r"], les["r"], les["r"], 0, 2 * soft)
        img = img + blob * brain * (les["value"] - img)
    return img.clamp(0, 1)


def head(n: int, size: int, generator: torch.Generator | None = None, *,
         z_range: tuple[float, float] = HEAD_Z_RANGE) -> torch.Tensor:
    """Head-like phantoms: axial slices of random 3-D heads at heights in ``z_range``, (n, 1, size, size).

    Each slice shows the skull, grey/white matter with smooth shading, the lateral (and third)
    ventricles where the slice cuts them, 0-3 lesions, a random pose and a mild deformation.

    >>> x = head(3, 64, generator=torch.Generator().manual_seed(0))
    >>> x.shape, bool(x.max() <= 1)
    (torch.Size([3, 1, 64, 64]), True)
    """
    check_int(n, "n")
    check_int(size, "size", 8)
    _check_z_range(z_range)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    X, Y = _grid(size)
    out = []
    for _ in range(n):
        p = _head_params(g)
        z = float(_rand(g, low=z_range[0], high=z_range[1]))
        out.append(_head_intensity(X, Y, torch.full_like(X, z), p, soft=1.0 / size))
    return torch.stack(out).unsqueeze(1).float()


def head_volume(n: int, size: int, depth: int, generator: torch.Generator | None = None, *,
                z_range: tuple[float, float] = HEAD_Z_RANGE) -> torch.Tensor:
    """3-D head phantoms (n, 1, depth, size, size); slice ``k`` is the axial plane at the k-th of
    ``depth`` heights evenly spanning ``z_range``. With the default range, the same as
    :func:`head`'s, every slice is an image of the 2-D family the shipped prior was trained on.

    >>> v = head_volume(1, 32, 8, generator=torch.Generator().manual_seed(0))
    >>> v.shape
    torch.Size([1, 1, 8, 32, 32])
    """
    check_int(n, "n")
    check_int(size, "size", 8)
    check_int(depth, "depth")
    _check_z_range(z_range)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    X, Y = _grid(size)
    zs = torch.linspace(z_range[0], z_range[1], depth, dtype=torch.float64)
    Xv, Yv = X.expand(depth, size, size), Y.expand(depth, size, size)
    Zv = zs[:, None, None].expand(depth, size, size)
    vols = [_head_intensity(Xv, Yv, Zv, _head_params(g), soft=1.0 / size) for _ in range(n)]
    return torch.stack(vols).unsqueeze(1).float()


def rgb_images(n: int, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Colour test images: a smooth colour gradient with 3-6 coloured ellipses, (n, 3, size, size).

    >>> rgb_images(2, 32).shape
    torch.Size([2, 3, 32, 32])
    """
    check_int(n, "n")
    check_int(size, "size", 8)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    X, Y = _grid(size)
    out = []
    for _ in range(n):
        c0, c1 = _rand(g, 3, 1, 1, low=0.1, high=0.6), _rand(g, 3, 1, 1, low=0.1, high=0.6)
        t = (0.5 + 0.5 * X * math.cos(float(_rand(g, high=6.3)))).clamp(0, 1)
        img = c0 * t + c1 * (1 - t)
        for _ in range(int(torch.randint(3, 7, (1,), generator=g))):
            m = _ellipse(X, Y, float(_rand(g, low=-0.6, high=0.6)), float(_rand(g, low=-0.6, high=0.6)),
                         float(_rand(g, low=0.1, high=0.4)), float(_rand(g, low=0.1, high=0.4)),
                         float(_rand(g, high=math.pi)), soft=1.0 / size)
            img = img * (1 - m) + _rand(g, 3, 1, 1) * m
        out.append(img.clamp(0, 1))
    return torch.stack(out).float()
