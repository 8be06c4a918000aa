"""Data-parallel training under ``torchrun``: rank set-up and the few collective decisions."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:
    from compressnet.train.loop import TrainConfig


class Ranks(NamedTuple):
    rank: int
    world: int

    @property
    def main(self) -> bool:
        """Rank 0 logs, validates and saves."""
        return self.rank == 0


def setup(device_name: str) -> tuple[Ranks, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; gloo on CPU, nccl on GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(0, 1), torch.device(device_name)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_name.startswith("cuda"):
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Ranks(dist.get_rank(), dist.get_world_size()), device


def any_rank(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """True on every rank if it is true on one (a batch skipped is skipped everywhere)."""
    if ranks.world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def same_on_all_ranks(cfg: TrainConfig, ranks: Ranks, device: torch.device) -> TrainConfig:
    """Rank 0's plan for everyone: ranks time their steps differently."""
    if ranks.world == 1:
        return cfg
    t = torch.tensor([cfg.steps, cfg.gan_start], device=device)
    dist.broadcast(t, 0)
    return dataclasses.replace(cfg, steps=int(t[0]), gan_start=int(t[1]))


def parameter_digest(module: nn.Module) -> str:
    """A hash of every parameter and buffer: equal on all ranks when DDP did its job."""
    digest = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def finish(model: nn.Module, ranks: Ranks) -> dict | None:
    """Compare the ranks' final weights and leave the process group; the log record, or None
    when the run was not distributed."""
    if ranks.world == 1:
        return None
    digests: list[str | None] = [None] * ranks.world
    dist.all_gather_object(digests, parameter_digest(model))
    dist.barrier()
    dist.destroy_process_group()
    return {"ranks": ranks.world, "ranks_identical": len(set(digests)) == 1}
