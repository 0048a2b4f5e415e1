"""Data parallelism on torch.distributed: process-group set-up, reductions, the DDP wrapper.

``torchrun --nproc-per-node N -m agents.train ...`` (or ``lm-envs train --nproc-per-node N ...``)
starts ``N`` processes; :func:`init_distributed` joins them into one process group (gloo on CPU,
NCCL on CUDA) from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``). A plain ``lm-envs train`` is rank 0 of a world of 1 and never
touches torch.distributed.

Who does what under ``N`` processes (the learners and the run loop follow these rules):

- rollout groups are sharded by rank, whole groups each (a group is never split across ranks);
- the update runs under :class:`~torch.nn.parallel.DistributedDataParallel`, which averages
  gradients; losses are normalised by *global* token counts (all-reduced) and scaled by ``N``, so
  the averaged gradient is the one-process gradient of the whole batch;
- advantage statistics (whitening) and logged metrics are all-reduced;
- only rank 0 writes checkpoints, metrics, plots and evaluations; every rank reads them on resume.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Dist:
    """This process's place in the world: ``rank`` of ``world_size`` (one process: 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """Whether a torch.distributed process group is running (``torchrun``, even with one process)."""
        return torch.distributed.is_available() and torch.distributed.is_initialized()

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files."""
        return self.rank == 0

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce ``tensor`` in place by summing over ranks (no-op in one process); returns it."""
        if self.distributed:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def sum_floats(self, values: dict[str, float]) -> dict[str, float]:
        """Sum a dict of floats over ranks; a key missing on some ranks counts as 0 there."""
        if not self.distributed:
            return dict(values)
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, values)
        out: dict[str, float] = {}
        for part in gathered:
            for k, v in part.items():
                out[k] = out.get(k, 0.0) + float(v)
        return out

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
        if not self.distributed:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, obj)
        return gathered

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` under DDP when distributed (its forward then all-reduces gradients), else itself."""
        if not self.distributed:
            return module
        device = next(module.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def no_sync(self, module: torch.nn.Module, skip: bool) -> AbstractContextManager[Any]:
        """DDP's ``no_sync`` while ``skip`` (accumulating gradients before the last backward), else nothing."""
        if skip and isinstance(module, torch.nn.parallel.DistributedDataParallel):
            return module.no_sync()
        return nullcontext()


def init_distributed(device: str) -> tuple[Dist, str]:
    """Join torchrun's process group when its environment is set; returns ``(dist, device)``.

    The backend is NCCL for CUDA and gloo for CPU; on CUDA each process takes ``cuda:LOCAL_RANK``.

    Raises:
        ValueError: When ``device`` is CUDA and CUDA is not available, or the world is inconsistent.
    """
    check_device(device)
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return Dist(), device
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}; start the processes with torchrun.")
    cuda = device.startswith("cuda")
    if cuda:
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend="nccl" if cuda else "gloo", device_id=torch.device(device) if cuda else None
        )
    return Dist(rank=rank, world_size=world, local_rank=local), device


def check_device(device: str) -> None:
    """Fail before any work on a device this machine lacks, naming the fix."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"model.device={device!r} is not a torch device ({err}); use cpu, cuda or cuda:N.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"model.device={device!r} but this machine has no CUDA device; set model.device=cpu.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"model.device={device!r} but only {torch.cuda.device_count()} CUDA devices exist; pick one of them."
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"model.device={device!r} is not supported; use cpu or cuda.")


def close_distributed() -> None:
    """Leave the process group (end of a torchrun run).

    DDP wrappers sit in reference cycles, so they would outlive the group and be torn down at exit against a
    destroyed backend (an intermittent ``terminate called without an active exception`` abort): collect
    them first, and let every rank arrive before the group goes.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        import gc

        gc.collect()
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
