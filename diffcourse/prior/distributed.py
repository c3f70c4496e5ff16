"""Data-parallel training over several processes: what :func:`diffcourse.prior.train.train` adds when
it runs under ``torchrun`` (PyTorch DistributedDataParallel, Li et al., PVLDB 13, 2020).

One run's mathematics does not depend on the number of processes W. Every process draws the *same*
global batch of ``config.batch_size`` images and the same noise levels and noise (Karras et al. 2022,
Eq. 8) from the run's seeded generators, and runs the network on its own contiguous part of B / W
images. DDP averages the W gradients of the part means, which is the gradient of the mean over the
whole batch; gradient clipping, Adam and the EMA then see what one process sees. So W processes take
the steps of one process on the whole batch (equal up to float rounding, ``tests/test_ddp.py``), and
since every process's generators stay in the same state, rank 0's checkpoint resumes the run exactly,
with the same or any other number of processes. The price is that each process draws the whole
batch of data and noise: cheap beside the network's forward and backward pass.

    torchrun --nproc_per_node=4 -m diffcourse.prior.train --preset brain64 --run-dir runs/brain64
"""
from __future__ import annotations

import os
from typing import Callable

import torch
import torch.distributed as dist

from .losses import edm_loss

__all__ = ["world", "init_from_env", "finish", "part", "part_loss", "wrap", "mean_over_processes"]


def world() -> tuple[int, int]:
    """(rank, number of processes) of this process; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1):
    NCCL with one GPU per process (``LOCAL_RANK``) where CUDA is available, else gloo on the CPU.
    Returns this process's device; the CPU, joining nothing, when not started by ``torchrun``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or world()[1] > 1:
        return torch.device("cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl")
        return device
    dist.init_process_group("gloo")
    return torch.device("cpu")


def finish() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def part(batch_size: int, rank: int, world_size: int) -> slice:
    """The images of a global batch that process ``rank`` of ``world_size`` trains on.

    >>> part(16, 1, 4)
    slice(4, 8, None)
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in 0 ... world_size - 1, got rank {rank} of {world_size}")
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} must be a multiple of the number of processes "
                         f"{world_size}: each trains on batch_size / processes images")
    n = batch_size // world_size
    return slice(rank * n, (rank + 1) * n)


def part_loss(D: Callable, x0: torch.Tensor, generator: torch.Generator, part: slice,
              device: torch.device | str = "cpu", **edm_kwargs) -> torch.Tensor:
    """The per-image EDM loss (:func:`~diffcourse.prior.losses.edm_loss`) of the images ``part`` of the
    global batch ``x0`` (B, C, H, W), with the network ``D`` run on ``device`` for those images only.

    The noise levels and noise are drawn for the whole batch, as one process training on all of ``x0``
    draws them, so that ``generator`` ends in the same state and the parts together give that
    process's loss. Outside the part the denoiser answers the clean image (zero error, no gradient).

    >>> x0, D = torch.rand(4, 1, 8, 8), lambda x, sigma: 0.5 * x
    >>> whole = edm_loss(D, x0, torch.Generator().manual_seed(0))
    >>> torch.allclose(torch.cat([part_loss(D, x0, torch.Generator().manual_seed(0), part(4, r, 2))
    ...                           for r in range(2)]), whole)
    True
    """
    def D_part(x, sigma, cond=None):                  # x, sigma of the whole batch; cond: conditioning
        out = x0[:, :x.shape[1]].clone()              # the clean images: zero error outside the part
        args = (x[part].to(device), sigma[part].to(device))
        if cond is not None:
            args += (cond[part].to(device),)
        out[part] = D(*args).to(out.device)
        return out

    return edm_loss(D_part, x0, generator, **edm_kwargs)[part]


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel: gradients averaged over the processes in ``backward``."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def mean_over_processes(value: float) -> float:
    """The mean of ``value`` over all processes (each process's part loss -> the global batch's)."""
    rank, world_size = world()
    if world_size == 1:
        return value
    backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor([value], dtype=torch.float64, device=backend_device)
    dist.all_reduce(total)
    return total.item() / world_size
