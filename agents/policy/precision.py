"""Mixed precision: fp32 master weights, a lower-precision compute dtype by autocast, a grad scaler for fp16.

``model.dtype`` is the *compute* dtype. The weights (and so Adam's state) always stay float32; with
``bfloat16`` or ``float16`` every forward runs under :func:`torch.autocast`, which casts the matmuls'
inputs, and the losses are computed in float32 from the logits (the learners call ``.float()``).
float16's narrow range needs loss scaling: a :class:`torch.amp.GradScaler` scales the loss before
backward, unscales before clipping, and skips a step whose gradients overflowed. bfloat16 has
float32's range and needs none. On CPU bfloat16 runs at about 1 GFLOP/s on these machines (no native
bf16): it is for CUDA; CPU runs default to float32, where autocast is off and nothing changes.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

#: ``model.dtype`` values.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of a ``model.dtype`` string; fails naming the choices."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown model.dtype {dtype!r}; choose one of {list(DTYPES)}.")
    return DTYPES[dtype]


@dataclass
class Precision:
    """Autocast, loss scaling and the optimizer step of one run.

    Args:
        dtype: The compute dtype (``float32``, ``bfloat16`` or ``float16``).
        device_type: ``cpu`` or ``cuda``.
    """

    dtype: str = "float32"
    device_type: str = "cpu"
    scaler: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        check_dtype(self.dtype)
        if self.dtype == "float16":
            self.scaler = torch.amp.GradScaler(self.device_type)

    @property
    def enabled(self) -> bool:
        return self.dtype != "float32"

    def autocast(self) -> AbstractContextManager[Any]:
        """Forwards inside run in the compute dtype (a no-op for float32)."""
        return torch.autocast(self.device_type, dtype=DTYPES[self.dtype], enabled=self.enabled)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled for float16."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(
        self, optimizer: torch.optim.Optimizer, params: Any, max_grad_norm: float, what: str = "the gradient"
    ) -> torch.Tensor:
        """Clip the gradient norm, step the optimizer; returns the pre-clip norm.

        A non-finite norm raises (naming ``what``) in float32 and bfloat16; in float16 the scaler skips
        that step and lowers its scale, as loss scaling expects from time to time.
        """
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
            return norm
        if not torch.isfinite(norm):
            raise FloatingPointError(f"{what} became non-finite; lower agent.lr.")
        optimizer.step()
        return norm

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
