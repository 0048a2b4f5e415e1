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
- or, with ``train.strategy=fsdp``, under FSDP2 (:func:`torch.distributed.fsdp.fully_shard`, one unit
  per transformer block plus the model): every rank holds ``1/N`` of the weights, gradients and Adam
  state, for models that do not fit one device. Gradients are averaged as under DDP, so the same
  losses give the same update. Sampling runs inside :meth:`Dist.gathered` (the weights gathered
  once, no collective per token: ranks sample different numbers of tokens), and checkpoints hold the
  whole weights (:meth:`Dist.full_state`), so a run resumes under any world size;
- advantage statistics (whitening) and logged metrics are all-reduced;
- only rank 0 writes checkpoints, metrics, plots and evaluations; every rank reads them on resume.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

#: How :meth:`Dist.wrap` parallelises the update (``train.strategy``).
STRATEGIES = ("ddp", "fsdp")


@dataclass
class Dist:
    """This process's place in the world: ``rank`` of ``world_size`` (one process: 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    strategy: str = "ddp"  # ddp | fsdp (train.strategy): how wrap() shards the update

    @property
    def fsdp(self) -> bool:
        """Whether the update runs under FSDP2 (``train.strategy=fsdp`` under torchrun)."""
        return self.strategy == "fsdp" and self.distributed

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
        """``module`` under DDP when distributed (its forward then all-reduces gradients), else itself.

        Under FSDP (``train.strategy=fsdp``) ``module`` is sharded in place and returned: build its optimizer
        after this call. Wrapping a module already sharded returns it as it is.
        """
        if not self.distributed:
            return module
        if self.strategy == "fsdp":
            return shard(module)
        device = next(module.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def no_sync(self, module: torch.nn.Module, skip: bool) -> AbstractContextManager[Any]:
        """DDP's ``no_sync`` while ``skip`` (accumulating gradients before the last backward), else nothing."""
        if skip and isinstance(module, torch.nn.parallel.DistributedDataParallel):
            return module.no_sync()
        return nullcontext()

    @contextmanager
    def gathered(self, *modules: torch.nn.Module | None) -> Iterator[None]:
        """Under FSDP: ``modules``' whole weights on every rank for the block (no collective per forward).

        Sampling and evaluation run a different number of forwards on each rank (episodes end at different
        tokens); FSDP's per-forward all-gathers would then wait for each other forever. Gathering once
        before and re-sharding after costs one model's memory per rank for the duration, as an inference
        engine holding the weights would. Elsewhere (DDP, one process) it does nothing.
        """
        units = [m for module in modules if module is not None for m in module.modules() if _is_fsdp(m)]
        if not self.fsdp or not units:
            yield
            return
        for unit in units:
            unit.unshard()
            unit.set_reshard_after_forward(False, recurse=False)
        try:
            yield
        finally:
            for unit in units:
                unit.reshard()
                unit.set_reshard_after_forward(True, recurse=False)

    def full_state(self, module: torch.nn.Module, everywhere: bool = False) -> dict[str, torch.Tensor]:
        """``module``'s whole weights, on the CPU. Under FSDP a collective: every rank calls it.

        Args:
            module: The policy (or any module holding sharded units).
            everywhere: Under FSDP, give every rank the weights (else rank 0 only; the others get ``{}``).
        """
        if not self.fsdp:
            return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=not everywhere)
        return {k: v.detach().contiguous().cpu() for k, v in get_model_state_dict(module, options=options).items()}

    def load_full_state(self, module: torch.nn.Module, weights: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
        """Load whole weights (every rank passes them) into ``module``; returns ``(missing, unexpected)`` keys."""
        if not self.fsdp:
            missing, unexpected = module.load_state_dict(weights, strict=False)
            return list(missing), list(unexpected)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        options = StateDictOptions(full_state_dict=True, strict=False)
        missing, unexpected = set_model_state_dict(module, weights, options=options)
        return list(missing), list(unexpected)

    def optimizer_state(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer's whole state (rank 0's under FSDP, keyed by parameter name; a collective)."""
        if not self.fsdp:
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(module, optimizer, options=options)

    def load_optimizer_state(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, state: Any) -> None:
        """Load :meth:`optimizer_state`'s output (every rank passes it).

        Raises:
            ValueError: When the state was saved under the other strategy (DDP states are keyed by position,
                FSDP ones by parameter name).
        """
        by_name = any(isinstance(k, str) for k in state.get("state", {}))
        if by_name != self.fsdp and state.get("state"):
            saved, now = ("fsdp", "ddp") if by_name else ("ddp", "fsdp")
            raise ValueError(
                f"the checkpoint's optimizer state was saved under train.strategy={saved} and this run uses {now}; "
                f"resume with train.strategy={saved}, or start a new run directory."
            )
        if not self.fsdp:
            optimizer.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=True))

    def max_(self, value: float) -> float:
        """The largest ``value`` over ranks (itself in one process)."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return float(tensor.item())


def _is_fsdp(module: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def shard(module: torch.nn.Module) -> torch.nn.Module:
    """Shard ``module`` in place with FSDP2 and return it (already sharded: returned as it is).

    Each causal LM inside (``module`` itself, or a :class:`~agents.policy.actor_critic.Policy`'s
    backbones) gets one FSDP unit per transformer block (the classes its ``_no_split_modules`` names)
    and one for the rest of it; any other child with weights (a value head) becomes a unit of its own.
    The LM is its own root, so it also runs alone (the SFT warm start, sampling, evaluation).
    """
    from torch.distributed.fsdp import fully_shard

    if any(_is_fsdp(m) for m in module.modules()):
        return module
    lms = [m for m in module.modules() if hasattr(m, "config") and hasattr(m, "_no_split_modules")]
    lms = [m for m in lms if not any(m is not o and any(x is m for x in o.modules()) for o in lms)]  # outermost
    for lm in lms:
        blocks = set(lm._no_split_modules or ())
        for block in lm.modules():
            if type(block).__name__ in blocks:
                fully_shard(block)
        fully_shard(lm)
    if not any(lm is module for lm in lms):
        for child in module.children():
            if not any(child is lm for lm in lms) and any(True for _ in child.parameters()):
                fully_shard(child)
    return module


def init_distributed(device: str, strategy: str = "ddp") -> tuple[Dist, str]:
    """Join torchrun's process group when its environment is set; returns ``(dist, device)``.

    ``strategy`` (``train.strategy``): ``ddp`` or ``fsdp``, how :meth:`Dist.wrap` parallelises the update.

    The backend is NCCL for CUDA and gloo for CPU; on CUDA each process takes ``cuda:LOCAL_RANK``.

    Raises:
        ValueError: When ``device`` is CUDA and CUDA is not available, or the world is inconsistent.
    """
    check_device(device)
    if strategy not in STRATEGIES:
        raise ValueError(f"train.strategy={strategy!r} is not one of {STRATEGIES}; use ddp (default) or fsdp.")
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
    return Dist(rank=rank, world_size=world, local_rank=local, strategy=strategy), device


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
