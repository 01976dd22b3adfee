"""Data-parallel processes: joining ``torchrun``'s process group, and this process's place in it.

The one home of rank and world size for training (``dictionaries.training``) and for anything
else that shards work over processes.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "rank_and_world"]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process: ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> tuple[int, int]:
    """Join the ``torchrun`` process group when launched by it (gloo on CPU, NCCL on CUDA,
    each rank on its ``LOCAL_RANK`` GPU); ``(rank, world)``. The group is left at exit: a
    process that ends with a live gloo group can abort in its teardown ("terminate called
    without an active exception"), failing a run that had finished."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        atexit.register(_leave_group)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return rank_and_world()


def _leave_group() -> None:
    """Every rank waits for the others before the group goes: a rank that tears its gloo
    connections down while a peer is still using them makes that peer abort."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
