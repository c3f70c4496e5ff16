"""Training under ``torchrun``: W processes with DistributedDataParallel (gloo on the CPU) take the steps
one process takes on the combined batch, and resume exactly from rank 0's checkpoint.

The command-line trainer runs as students would launch it, ``python -m torch.distributed.run
--standalone --nproc_per_node=2 -m diffcourse.prior.train --preset tiny ...``, on localhost only.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import torch

from diffcourse.prior import distributed
from diffcourse.prior.losses import edm_loss
from diffcourse.prior.nets import build_denoiser
from diffcourse.prior.train import PRESETS, train

STEPS = 4
TINY = dataclasses.replace(PRESETS["tiny"], steps=STEPS)     # batch 8: 4 images per process
ATOL = 1e-5


def _torchrun(run_dir, steps: int, nproc: int = 2) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "diffcourse.prior.train", "--preset", "tiny", "--steps", str(steps), "--run-dir", str(run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=run_dir.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _checkpoint(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Checkpoints of: 2 processes for STEPS steps; 2 processes for 2 steps, then resumed by 2 processes
    to STEPS; and one process in this interpreter, on the combined batch."""
    root = tmp_path_factory.mktemp("ddp")
    _torchrun(root / "ddp", STEPS)
    _torchrun(root / "ddp_resumed", 2)
    interrupted = _checkpoint(root / "ddp_resumed")
    _torchrun(root / "ddp_resumed", STEPS)
    train(TINY, root / "single")
    return {"ddp": _checkpoint(root / "ddp"), "interrupted": interrupted,
            "ddp_resumed": _checkpoint(root / "ddp_resumed"), "single": _checkpoint(root / "single")}


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_two_processes_equal_one_process_on_the_combined_batch(runs):
    ddp, single = runs["ddp"], runs["single"]
    assert ddp["step"] == single["step"] == STEPS
    assert _max_diff(ddp["model"], single["model"]) < ATOL
    assert _max_diff(ddp["ema"], single["ema"]) < ATOL
    # the comparison has teeth: the weights moved by far more than the tolerance
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY.seed)
        initial = build_denoiser(TINY.net).state_dict()
    assert _max_diff(single["model"], initial) > 50 * ATOL
    # the logged loss is the whole batch's (all-reduced), and both consumed the same random numbers
    assert ddp["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert torch.equal(ddp["g_data"], single["g_data"]) and torch.equal(ddp["g_noise"], single["g_noise"])


def test_a_distributed_run_resumes_exactly(runs):
    assert runs["interrupted"]["step"] == 2
    resumed, whole = runs["ddp_resumed"], runs["ddp"]
    assert resumed["step"] == STEPS and resumed["losses"] == whole["losses"]
    for key in ("model", "ema"):
        for name, value in whole[key].items():
            assert torch.equal(resumed[key][name], value), (key, name)


def test_a_distributed_checkpoint_resumes_in_one_process(runs, tmp_path):
    """Rank 0's checkpoint continues in a single process (the run does not depend on the number of
    processes): 2 steps on two processes + 2 in one equal 4 in one, up to float rounding."""
    (tmp_path / "run").mkdir()
    torch.save(runs["interrupted"], tmp_path / "run" / "checkpoint.pt")
    train(TINY, tmp_path / "run")
    assert _max_diff(_checkpoint(tmp_path / "run")["model"], runs["single"]["model"]) < ATOL


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_the_parts_of_a_batch_make_up_the_whole_batch_loss(world_size):
    """Each process runs the network on its B / W images only, yet the parts' losses are one process's
    loss on the whole batch, with the same noise, and the generator ends in the same state."""
    x0 = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    seen = []

    def D(x, sigma):
        seen.append(x.shape[0])
        return 0.8 * x + 0.1

    g_whole = torch.Generator().manual_seed(2)
    whole = edm_loss(D, x0, g_whole)
    seen.clear()
    parts = []
    for rank in range(world_size):
        g = torch.Generator().manual_seed(2)
        parts.append(distributed.part_loss(D, x0, g, distributed.part(8, rank, world_size)))
        assert torch.equal(g.get_state(), g_whole.get_state())
    assert seen == [8 // world_size] * world_size
    torch.testing.assert_close(torch.cat(parts), whole, rtol=1e-6, atol=0)


def test_the_batch_must_split_evenly():
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        distributed.part(10, 0, 4)
    with pytest.raises(ValueError, match="rank"):
        distributed.part(8, 2, 2)
