"""Shipped checkpoints with provenance: small trained priors that every lesson can load offline.

Each checkpoint ``weights/NAME.pt`` holds EMA weights only (a plain state dict, loaded with
``weights_only=True``) and ``weights/NAME.json`` its provenance: the training settings, the code
revision, the number of steps, the final loss, the torch version, the command that reproduces it and
the SHA-256 of the ``.pt`` file, which :func:`load` verifies before it trusts the file.

Shipped:

* ``phantom64`` -- a 2 M-parameter UNet denoiser for (B, 1, 64, 64) phantoms in [0, 1] (head-like
  slices and random ellipses, see :mod:`diffcourse.phantoms`), trained with
  ``python -m diffcourse.prior.train --preset phantom64`` (settings in the JSON).
* ``brain64`` -- the same network trained on 64 x 64 axial slices of the MNI ICBM152 2009a template
  (Fonov et al., NeuroImage 2011) in random poses and T1/T2/PD/CT-like contrasts
  (:func:`diffcourse.data.brain_slices`), 5000 steps of batch 16 on a CPU thread
  (``--preset brain64``). On held-out slices (the slab of slice positions training never saw) its
  Tweedie denoiser gains 9.9 / 12.7 / 16.8 dB at sigma = 0.1 / 0.2 / 0.5 and beats the best-tuned TV
  denoiser by 3.6 / 4.0 / 4.4 dB; outside its family (Shepp-Logan, pydicom's CT_small.dcm) TV wins
  by 1.4-3.1 dB (``tools/eval_brain.py`` prints the table).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .nets import EDMDenoiser, UNetConfig, build_denoiser

__all__ = ["available", "info", "load", "WEIGHTS_DIR"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def available() -> list[str]:
    """Names of the shipped checkpoints."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))


def info(name: str = "phantom64") -> dict:
    """The provenance record of checkpoint ``name`` (settings, revision, steps, loss, SHA-256)."""
    path = WEIGHTS_DIR / f"{name}.json"
    if not path.exists():
        raise ValueError(f"name must be one of the shipped checkpoints {available()}, got {name!r}")
    return json.loads(path.read_text())


def load(name: str = "phantom64", device: str | torch.device | None = None,
         dtype: torch.dtype = torch.float32) -> EDMDenoiser:
    """Load shipped checkpoint ``name`` as a denoiser ``D(x, sigma)`` in eval mode, with frozen
    parameters (gradients still flow to ``x``, as guidance methods such as DPS need).

    >>> D = load("phantom64")
    >>> D(torch.zeros(1, 1, 64, 64), 0.1).shape
    torch.Size([1, 1, 64, 64])
    """
    meta = info(name)
    path = WEIGHTS_DIR / f"{name}.pt"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != meta["sha256"]:
        raise RuntimeError(f"{path} is corrupt or was changed: SHA-256 {digest[:16]}... does not match "
                           f"the recorded {meta['sha256'][:16]}...; restore it from the repository")
    denoiser = build_denoiser(UNetConfig.from_dict(meta["config"]["net"]))
    denoiser.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    denoiser.requires_grad_(False).eval()
    return denoiser.to(device=device, dtype=dtype)
