"""The run loop and what it owns: config schemas, checkpoints, metrics logging, the distributed set-up.

``from agents.run import run`` is the loop (:func:`agents.run.loop.run`); it is imported on first use,
since the learners import :mod:`agents.run.distributed` and the loop imports the learners.
"""

from typing import Any

__all__ = ["run", "to_run_config"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from agents.run import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'agents.run' has no attribute {name!r}")
