"""Measure a brain prior (the ``brain64`` preset): Tweedie-denoiser PSNR gain over the noisy input and
its margin over the best-tuned TV denoiser, on held-out brain slices and on out-of-family images.

Held out: axial slices centred in ``diffcourse.data.HELD_OUT_SLAB`` (``split="test"``; training never
samples a point there), drawn from generator seeds from 20000 on (training uses seed + 1 of its
config, a small integer), in each of the four training contrasts. Out of family: Shepp-Logan, the CT
slice ``CT_small.dcm`` shipped with pydicom (Hounsfield units, windowed 40 / 400, resized to 64 x 64),
coronal slices (an orientation never trained on) and an inverted-T1 contrast (no training contrast
looks like it). Targets of the brain prior: gain >= 11 dB at sigma = 0.1, >= 3 dB over TV at 0.2, 0.5.

    python tools/eval_brain.py --run-dir /work/runs/brain64          # a training run (EMA weights)
    python tools/eval_brain.py --weights diffcourse/prior/weights/brain64.pt
    python tools/eval_brain.py --weights diffcourse/prior/weights/brain64_coronal.pt --orientation coronal
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_prior import denoising_table, load_run  # noqa: E402  (the sibling script's table)

from diffcourse import data, phantoms  # noqa: E402
from diffcourse.prior.nets import UNetConfig, build_denoiser  # noqa: E402

SEED = 20_000


def load_weights(path: str):
    """An exported ``.pt`` with its ``.json`` provenance (for the network settings)."""
    meta = json.loads(Path(path).with_suffix(".json").read_text())
    D = build_denoiser(UNetConfig.from_dict(meta["config"]["net"]))
    D.load_state_dict(torch.load(path, weights_only=True))
    return D.eval().requires_grad_(False), meta["steps"]


def ct_small(size: int = 64) -> torch.Tensor:
    """pydicom's CT_small.dcm in HU, windowed (40, 400) and area-resized: (1, 1, size, size)."""
    from pydicom.data import get_testdata_file

    hu = data.read_dicom(get_testdata_file("CT_small.dcm"))
    return F.interpolate(data.window(hu, 40, 400)[None, None], size=(size, size), mode="area")


def test_sets(n: int, size: int = 64, orientation: str = "axial") -> dict[str, torch.Tensor]:
    """Held-out slices in ``orientation`` (the prior's own), and out-of-family images, among them
    slices in the perpendicular orientation (coronal for an axial prior, axial for a coronal one)."""
    other = "coronal" if orientation == "axial" else "axial"
    sets = {}
    for i, contrast in enumerate(data.CONTRASTS):
        g = torch.Generator().manual_seed(SEED + i)
        sets[f"held-out {contrast}"] = data.brain_slices(n, size, g, contrast=contrast, split="test",
                                                         orientation=orientation)
    g = torch.Generator().manual_seed(SEED + 10)
    sets["held-out mixed"] = data.brain_slices(n, size, g, contrast="mixed", split="test", orientation=orientation)
    g = torch.Generator().manual_seed(SEED + 11)
    t1 = data.brain_slices(n, size, g, contrast="t1", split="test", orientation=orientation)
    sets["out: inverted t1"] = torch.where(t1 > 0.02, 1.05 - t1, torch.zeros(())).clamp(0, 1)
    g = torch.Generator().manual_seed(SEED + 12)
    sets[f"out: {other} t2"] = data.brain_slices(n, size, g, contrast="t2", orientation=other, split="all")
    sets["out: shepp-logan"] = phantoms.shepp_logan(size)
    sets["out: CT_small.dcm"] = ct_small(size)
    return sets


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", help="a training run's folder (its checkpoint.pt)")
    source.add_argument("--weights", help="exported weights (.pt next to its .json)")
    parser.add_argument("--n", type=int, default=8, help="images per held-out set")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="only the held-out mixed set")
    parser.add_argument("--orientation", default="axial", choices=["axial", "coronal"],
                        help="the prior's own orientation (brain64_coronal: coronal)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    D, step = load_run(args.run_dir) if args.run_dir else load_weights(args.weights)
    print(f"checkpoint: step {step}; PSNR in dB, mean over images")
    t0 = time.perf_counter()
    for name, x0 in test_sets(args.n, orientation=args.orientation).items():
        if args.quick and name != "held-out mixed":
            continue
        for r in denoising_table(D, x0):
            print(f"{name:20s} sigma={r['sigma']:.2f}  noisy {r['noisy']:6.2f}  tweedie {r['tweedie']:6.2f} "
                  f"(gain {r['tweedie'] - r['noisy']:+6.2f})  best TV {r['tv']:6.2f} "
                  f"(tweedie - TV {r['tweedie'] - r['tv']:+6.2f})")
    print(f"evaluated in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
