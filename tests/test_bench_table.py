"""The brain benchmark script (benchmarks/bench_solvers.py --table): its quick path runs end to end and
writes well-formed rows, its network counts follow the schedules, and its helpers measure what they say."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import brain_benchmark as bb  # noqa: E402

from diffcourse.physics.operators import Downsample  # noqa: E402


def test_quick_table_writes_well_formed_rows(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "benchmarks/bench_solvers.py", "--table", "--quick", "--n-images", "1",
                    "--tasks", "mri4", "--methods", "baseline", "ADMM-TV", "PnP-ADMM", "dds", "--out", str(out)],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    result = json.loads(out.read_text())
    assert {"cpu", "threads", "torch", "device", "date"} <= set(result["machine"])
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"baseline", "ADMM-TV", "PnP-ADMM", "dds", "dds, brain γ",
                         f"dds, mean of {bb.UQ_SAMPLES} samples ({bb.UQ_LEVELS} levels)"}
    for r in rows.values():
        assert r["task"] == "mri4" and 0 < r["psnr"] < 100 and -1 <= r["ssim"] <= 1 and r["seconds_per_image"] >= 0
    assert rows["baseline"]["nfe"] is None and rows["ADMM-TV"]["nfe"] is None
    assert rows["PnP-ADMM"]["nfe"] == bb.PNP_ITER            # one denoiser call per ADMM iteration
    assert rows["dds"]["nfe"] == 3 and rows["dds"]["nfe_grad"] == 0     # --quick: 3 levels, no backward pass
    uq = rows[f"dds, mean of {bb.UQ_SAMPLES} samples ({bb.UQ_LEVELS} levels)"]
    assert uq["nfe"] == 2 * bb.UQ_SAMPLES and uq["n_samples"] == bb.UQ_SAMPLES   # --quick: 2 levels per chain
    assert len(uq["coverage"]) == 3 and all(0 <= c <= 1 for c in uq["coverage"])
    assert uq["coverage"] == sorted(uq["coverage"])           # wider intervals cover more
    md = out.with_suffix(".md").read_text()
    assert md.count("| mri4 |") == len(rows) and "Machine:" in md


def test_op_norm2_matches_a_closed_form():
    # 4 x 4 average pooling: A Aᵀ = I / 16, so ||A||² = 1/16
    assert bb.op_norm2(Downsample(4), torch.zeros(2, 1, 16, 16)) == pytest.approx(1 / 16, rel=1e-5)


def test_peak_memory_sees_a_transient_allocation():
    """On Linux (/proc) the peak RSS sees a 64 MiB tensor that is gone by the end of the block; elsewhere
    the CPU measure is documented as unavailable (None), never a made-up number."""
    with bb.PeakMemory(torch.device("cpu")) as small:
        pass
    with bb.PeakMemory(torch.device("cpu")) as big:
        x = torch.ones(16 * 2**20)                             # 64 MiB, written so that it is resident
        del x
    if Path("/proc/self/clear_refs").exists():
        assert big.mib > 48 and small.mib < 16
    else:
        assert big.mib is None and small.mib is None


def test_brain_knobs_borrow_from_their_family():
    ct8, sr4 = bb.brain_knobs("ct8"), bb.brain_knobs("sr4")
    assert ct8["pnp_sigma"] == bb.BRAIN["ct20"]["pnp_sigma"] and sr4["red"] == bb.BRAIN["mri4"]["red"]
    assert sr4["dds_gamma"] == bb.tasks.settings("sr4", "dds")["gamma"]   # the task table's γ


def test_merge_replaces_rows_of_the_same_task_and_method_and_records_the_run():
    from brain_report import merge
    row = lambda task, method, psnr: {"task": task, "method": method, "psnr": psnr}
    head = {"images": "im", "prior": "brain64", "quick": False, "brain_knobs": {}, "budget": "b"}
    base = {**head, "rows": [row("ct20", "RED", 1.0), row("mri4", "RED", 2.0)], "seconds": 10.0,
            "runs": [{"run": "run1", "seconds": 10.0}]}
    run = {**head, "rows": [row("mri4", "RED", 3.0), row("mri4", "HQS", 4.0)], "seconds": 5.0,
           "machine": {"cpu": "x"}, "brain_knobs": {"k": 1}}
    out = merge(base, run, "RED again, HQS", "python ...")
    assert [(r["task"], r["method"], r["psnr"]) for r in out["rows"]] == \
        [("ct20", "RED", 1.0), ("mri4", "RED", 3.0), ("mri4", "HQS", 4.0)]
    assert out["runs"][-1] == {"run": "run2", "command": "python ...", "tasks": ["mri4"], "methods": "RED again, HQS",
                               "machine": {"cpu": "x"}, "seconds": 5.0, "rows": 2}
    assert out["seconds"] == 15.0 and out["brain_knobs"] == {"k": 1} and base["rows"][1]["psnr"] == 2.0
    with pytest.raises(ValueError, match="--merge: the run's images"):
        merge(base, {**run, "prior": "phantom64"}, "x", "y")
