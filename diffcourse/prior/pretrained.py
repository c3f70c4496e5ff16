"""Shipped checkpoints with provenance: small trained priors that every lesson can load offline.

Each checkpoint ``weights/NAME.pt`` holds EMA weights only (a plain state dict, loaded with
``weights_only=True``) and ``weights/NAME.json`` its provenance: the training settings, the code
revision, the number of steps, the final loss, the torch version, the command that reproduces it and
the SHA-256 of the ``.pt`` file, which :func:`load` verifies before it trusts the file.

Shipped:

* ``phantom64`` -- a 2 M-parameter UNet denoiser for (B, 1, 64, 64) phantoms in [0, 1]: 10000 steps on
  head-like slices and random ellipses (:mod:`diffcourse.phantoms`, ``--preset phantom64``), then
  1500 steps of fine-tuning on a mix that adds sharp-edged families (ellipses without antialiasing,
  random Shepp-Logan relatives; ``--preset phantom64_sharp``), so that it fails gracefully on
  piecewise-constant images: on Shepp-Logan its Tweedie denoiser beats the best-tuned TV denoiser by
  9.4 / 9.2 / 9.0 dB at sigma = 0.1 / 0.2 / 0.5 (before the fine-tuning: -3.7 / -0.9 / +2.9 dB), and
  it keeps a 19.7 dB gain at sigma = 0.1 on held-out head phantoms (``tools/eval_prior.py``). Both
  commands and the first prior's SHA-256 are in the JSON.
* ``brain64`` -- the same network trained on 64 x 64 axial slices of the MNI ICBM152 2009a template
  (Fonov et al., NeuroImage 2011) in random poses and T1/T2/PD/CT-like contrasts
  (:func:`diffcourse.data.brain_slices`), 5000 steps of batch 16 on a CPU thread
  (``--preset brain64``). On held-out slices (the slab of slice positions training never saw) its
  Tweedie denoiser gains 9.9 / 12.7 / 16.8 dB at sigma = 0.1 / 0.2 / 0.5 and beats the best-tuned TV
  denoiser by 3.6 / 4.0 / 4.4 dB; outside its family (Shepp-Logan, pydicom's CT_small.dcm) TV wins
  by 1.4-3.1 dB (``tools/eval_brain.py`` prints the table).
* ``brain64_coronal`` -- the same network on coronal 64 x 64 slices (``--preset brain64_coronal``, 3000
  steps): the second, perpendicular prior of TPDM (Lee et al., ICCV 2023). On held-out coronal slices
  it gains 10.2 / 12.9 / 17.0 dB at sigma = 0.1 / 0.2 / 0.5 and beats the best-tuned TV by 3.6 / 4.0 /
  4.4 dB; on axial slices, which it never saw, still by 2.9 / 3.1 / 2.9 dB; on Shepp-Logan and
  CT_small.dcm TV wins by 0.5-3.4 dB (``tools/eval_brain.py --orientation coronal``).
* ``kernel`` -- a 270 k-parameter UNet over 16 x 16 blur-kernel images (each kernel divided by its
  maximum; half camera-shake kernels, half Gaussians of width 0.5-3 px; ``--preset kernel``, 3000 steps
  of batch 32, final loss 0.218), the kernel prior of BlindDPS (Chung et al., CVPR 2023). Its samples
  (20 DDPM steps from sigma = 80), after clipping at 0 and dividing by the sum, are kernels that look
  like the training kernels (half round Gaussian blobs of various widths, half thin curved camera-shake
  strokes, as drawn from seed 0), 99 % of the mass in
  the 15 x 15 support, the 25 largest pixels holding a median 85 % of it (training kernels: 84 %; a
  uniform kernel: 10 %). On held-out kernels its Tweedie denoiser gains 11.9 / 14.6 dB at sigma = 0.05 /
  0.2 (``tests/test_blind.py``).
* ``patch`` -- PaDIS's patch prior (Hu et al., NeurIPS 2024): a two-level UNet (32, 64 channels) with two
  positional input channels over 14 x 14 patches of zero-padded (6 px) 64 x 64 brain slices, 6000 steps
  of batch 64 (``--preset patch``, final loss 0.100), loaded assembled into a whole-image denoiser
  (:class:`~diffcourse.prior.patches.PatchDenoiser`, a random grid shift per call). On the held-out
  slices it gains 9.0 / 11.5 / 15.1 dB at sigma = 0.1 / 0.2 / 0.5 and beats the best-tuned TV by
  2.4 / 2.8 / 2.8 dB (averaging 8 shifts adds about 0.4 dB); ``brain64``, the whole-image prior, is
  1.0-1.8 dB better (``tools/eval_patch.py``).
* ``noise_level_phantom64`` (kind "noise_level", :func:`load_noise_level`) -- not a denoiser: a
  13 k-parameter noise-level classifier p(σ | x) on 64 levels from 0.002 to 80 for ``phantom64``'s
  training images, the σ-step of Denoising MCMC (Kim & Ye, ICML 2023; :mod:`.noise_level`), 2000
  steps of batch 32 (``python -m diffcourse.prior.noise_level``). On held-out phantoms at levels
  uniform over its grid its estimate is off by 1.4 % on average (mean |log σ̂ - log σ| = 0.0136).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .nets import EDMDenoiser, UNetConfig, build_denoiser

__all__ = ["available", "info", "load", "load_noise_level", "WEIGHTS_DIR"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def available(kind: str = "denoiser") -> list[str]:
    """Names of the shipped checkpoints of ``kind``: "denoiser" (:func:`load`) or "noise_level"
    (:func:`load_noise_level`); a record without a "kind" field is a denoiser."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json")
                  if json.loads(p.read_text()).get("kind", "denoiser") == kind)


def info(name: str = "phantom64") -> dict:
    """The provenance record of checkpoint ``name`` (settings, revision, steps, loss, SHA-256)."""
    path = WEIGHTS_DIR / f"{name}.json"
    if not path.exists():
        raise ValueError(f"name must be one of the shipped checkpoints "
                         f"{available() + available('noise_level')}, got {name!r}")
    return json.loads(path.read_text())


def load(name: str = "phantom64", device: str | torch.device | None = None,
         dtype: torch.dtype = torch.float32) -> EDMDenoiser:
    """Load shipped checkpoint ``name`` as a denoiser ``D(x, sigma)`` in eval mode, with frozen
    parameters (gradients still flow to ``x``, as guidance methods such as DPS need).

    A patch prior (``patch``) comes assembled into a whole-image denoiser, a
    :class:`~diffcourse.prior.patches.PatchDenoiser` (its patch network is ``D.net``; it draws its
    random shifts from ``D.generator``, None: torch's global generator).

    >>> D = load("phantom64")
    >>> D(torch.zeros(1, 1, 64, 64), 0.1).shape
    torch.Size([1, 1, 64, 64])
    """
    meta = _checked(name, "denoiser")
    denoiser = build_denoiser(UNetConfig.from_dict(meta["config"]["net"]))
    denoiser.load_state_dict(_weights(name))
    if meta["config"].get("patch_size"):                  # a patch prior (PaDIS): assembled
        from .patches import PatchDenoiser
        denoiser = PatchDenoiser(denoiser, meta["config"]["patch_size"])
    denoiser.requires_grad_(False).eval()
    return denoiser.to(device=device, dtype=dtype)


def load_noise_level(name: str = "noise_level_phantom64", device: str | torch.device | None = None,
                     dtype: torch.dtype = torch.float32):
    """Load a shipped noise-level classifier (:class:`~diffcourse.prior.noise_level.NoiseLevelNet`,
    the p(σ | x) of Denoising MCMC, Kim & Ye, ICML 2023) in eval mode with frozen parameters.

    >>> net = load_noise_level()
    >>> net(torch.zeros(1, 1, 64, 64)).shape == (1, net.config.levels)
    True
    """
    from .noise_level import NoiseLevelConfig, NoiseLevelNet

    meta = _checked(name, "noise_level")
    net = NoiseLevelNet(NoiseLevelConfig.from_dict(meta["config"]["net"]))
    net.load_state_dict(_weights(name))
    net.requires_grad_(False).eval()
    return net.to(device=device, dtype=dtype)


def _checked(name: str, kind: str) -> dict:
    """The provenance of ``name``, after checking its kind and the SHA-256 of its weights."""
    meta = info(name)
    if meta.get("kind", "denoiser") != kind:
        loader = "load_noise_level" if meta.get("kind") == "noise_level" else "load"
        raise ValueError(f"{name!r} is a {meta.get('kind', 'denoiser')} checkpoint, not a {kind}; "
                         f"use pretrained.{loader}({name!r})")
    path = WEIGHTS_DIR / f"{name}.pt"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != meta["sha256"]:
        raise RuntimeError(f"{path} is corrupt or was changed: SHA-256 {digest[:16]}... does not match "
                           f"the recorded {meta['sha256'][:16]}...; restore it from the repository")
    return meta


def _weights(name: str) -> dict:
    return torch.load(WEIGHTS_DIR / f"{name}.pt", map_location="cpu", weights_only=True)
