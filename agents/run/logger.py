"""Run metrics: one JSON line per logged step, TensorBoard events beside it, PNG plots at the end."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Appends ``{"step": .., "time": .., **metrics}`` to ``metrics.jsonl`` and to TensorBoard.

    Non-finite values are written as ``null`` (JSON has no NaN) and skipped in TensorBoard.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self.start = time.time()
        self.lines = self._repair()  # complete records in the file (checkpoints save it: a resume cuts back to it)
        self.torn = False
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def _repair(self) -> int:
        """Cut a torn last line (a run killed mid-write, a full disk) so the next record starts a line; the count."""
        if not self.path.is_file():
            return 0
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(end)
        return data.count(b"\n")

    def keep_first(self, lines: int) -> None:
        """Drop the records after the first ``lines`` (those a resumed run is about to write again)."""
        if lines >= self.lines:
            return
        data = self.path.read_bytes()
        cut = 0
        for _ in range(lines):
            cut = data.index(b"\n", cut) + 1
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_bytes(data[:cut])
        tmp.replace(self.path)
        self.lines = lines

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        clean = {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}
        record = {"step": int(step), "time": round(time.time() - self.start, 3), **clean}
        try:
            if self.torn:  # the last write failed part-way: its half line must not swallow this record
                self._repair()
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as err:  # a full or read-only disk: name the file (write errors carry no path)
            self.torn = True
            raise OSError(err.errno, err.strerror or str(err), str(self.path)) from err
        self.torn = False
        self.lines += 1
        if self.writer is not None:
            for k, v in clean.items():
                if v is not None:
                    self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (a torn last line from a killed run is ignored)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


#: Curves drawn by :func:`plot_curves`, each a (title, [metric keys]) panel.
PANELS = [
    ("episode reward", ["rollout/return_mean"]),
    ("success rate (train rollouts)", ["rollout/success"]),
    ("held-out accuracy", ["eval/accuracy"]),
    ("held-out honesty (abstention envs)", ["eval/known/accuracy", "eval/unknown/hallucination_rate"]),
    ("KL to reference (per episode)", ["ppo/kl_ref", "reinforce/kl_ref"]),
    ("SFT loss", ["sft/loss"]),
    ("curriculum success by stage", ["curriculum/"]),
]


def plot_curves(metrics_path: str | Path, out_path: str | Path) -> Path | None:
    """Draw the run's curves into one PNG (panels with no data are skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    panels = []
    for title, keys in PANELS:
        series = {}
        for r in records:
            for k, v in r.items():
                if v is not None and any(k == key or (key.endswith("/") and k.startswith(key)) for key in keys):
                    series.setdefault(k, []).append((r["step"], v))
        if series:
            panels.append((title, series))
    if not panels:
        return None
    cols = 2
    rows = (len(panels) + 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(11, 3.2 * rows), squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels):
        for name, points in sorted(series.items()):
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(xs) < 15 else None, ms=3, label=name)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path
