"""One process or several under torchrun: rank, device, process group, and the few collectives train needs.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them (or with WORLD_SIZE=1) every helper
here is a no-op, so the single-process path runs no distributed code at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist

from imdb_rnn.device import resolve_device
from imdb_rnn.errors import UserError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that validates, logs and writes."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of `values` over all ranks."""
        if not self.is_distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def broadcast_from_main(self, obj: Any) -> Any:
        """Rank 0's `obj`, on every rank."""
        if not self.is_distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()


def from_env() -> Dist:
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise UserError(f"RANK/LOCAL_RANK/WORLD_SIZE must be integers ({e}); launch with torchrun") from e
    return Dist(rank, local_rank, world_size)


def start(ctx: Dist, device_spec: str) -> torch.device:
    """Join the process group (gloo on CPU, nccl on CUDA) and pick this rank's device."""
    device = resolve_device(device_spec)
    if not ctx.is_distributed:
        return device
    if device.type == "cuda":
        if ctx.local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {ctx.local_rank} has no GPU (this machine has {torch.cuda.device_count()}); "
                            "use --nproc_per_node at most the GPU count")
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        store = _attempt_store(ctx)
        if store is None:
            dist.init_process_group(backend)
        else:
            dist.init_process_group(backend, store=store, rank=ctx.rank, world_size=ctx.world_size)
    return device


def _attempt_store(ctx: Dist) -> Optional[dist.Store]:
    """Under torchrun's agent store, a view of it private to this restart attempt, else None.

    The agent's store outlives the workers, so after a restart (--max-restarts) it still holds the
    dead workers' addresses: a new rank that reads a key before its peer rewrites it connects to a
    process that is gone (seen here: gloo "Connection refused" in the restarted job). A prefix per
    attempt (TORCHELASTIC_RESTART_COUNT) keeps each attempt's keys apart.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "TORCHELASTIC_RESTART_COUNT" not in os.environ:
        return None
    from torch.distributed.constants import default_pg_timeout

    agent = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), ctx.world_size, is_master=False,
                          timeout=default_pg_timeout)
    return dist.PrefixStore(f"imdb-rnn/attempt_{os.environ['TORCHELASTIC_RESTART_COUNT']}", agent)


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
