"""What every claim driver shares.

95% t-intervals over seeds, the result JSON's schema, the bar plot, training runs through the normal entry (``lm-
envs train``), and the README table built from the JSONs.

A claim driver (``experiments/claim_<name>.py``) writes ``<out>/<name>.json`` in the contract's shape::

    {"claim": name, "paper": "...", "setting": {...}, "seeds": [0, 1, 2],
     "arms": {"<arm>": {"metric": "...", "per_seed": [...], "mean": x, "ci95": [lo, hi]}, ...},
     "verdict": "held" | "did not hold" | "partly held", "summary": "...", "wall_s_per_seed": x}

and ``<out>/<name>.png``. :func:`readme_table` turns a folder of them into the README's results table.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
WORK = ROOT / "runs" / "claims"  # run directories of the claims' training arms (git-ignored)
VERDICTS = ("held", "did not hold", "partly held", "pending")
TABLE_START, TABLE_END = "<!-- claims:start -->", "<!-- claims:end -->"

# Two-sided 95% quantiles of Student's t for 1 .. 30 degrees of freedom (scipy.stats.t.ppf(0.975, df)).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (normal's 1.96 beyond 30)."""
    if df < 1:
        raise ValueError(f"a t-interval needs at least 2 values (df >= 1), got df={df}.")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval ``(mean, lo, hi)`` over seeds; one value gives ``(x, x, x)``.

    Example:
        >>> [round(v, 3) for v in ci95([1.0, 2.0, 3.0])]
        [2.0, -0.484, 4.484]
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("ci95 needs at least one value (one per seed).")
    if any(not math.isfinite(v) for v in xs):
        raise ValueError(f"ci95 got a non-finite value: {xs}.")
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in xs) / (len(xs) - 1))
    half = t_quantile(len(xs) - 1) * sd / math.sqrt(len(xs))
    return mean, mean - half, mean + half


def arm(metric: str, per_seed: Sequence[float], **extra: Any) -> dict[str, Any]:
    """One arm of a result: the metric's name, its per-seed values, mean and 95% CI (+ any extra fields)."""
    mean, lo, hi = ci95(per_seed)
    return {
        "metric": metric,
        "per_seed": [round(float(v), 4) for v in per_seed],
        "mean": round(mean, 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        **extra,
    }


def check_result(doc: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first field of a claim result that breaks the contract's schema."""
    for key, kind in (
        ("claim", str),
        ("paper", str),
        ("setting", dict),
        ("seeds", list),
        ("arms", dict),
        ("verdict", str),
        ("summary", str),
        ("wall_s_per_seed", (int, float)),
    ):
        if not isinstance(doc.get(key), kind):
            raise ValueError(f"claim result {doc.get('claim')!r}: field {key!r} is missing or not a {kind}.")
    if doc["verdict"] not in VERDICTS:
        raise ValueError(f"claim {doc['claim']!r}: verdict {doc['verdict']!r} is not one of {VERDICTS}.")
    for name, a in doc["arms"].items():
        for key in ("metric", "per_seed", "mean", "ci95"):
            if key not in a:
                raise ValueError(f"claim {doc['claim']!r}, arm {name!r}: field {key!r} is missing.")
        if len(a["per_seed"]) != len(doc["seeds"]) or len(a["ci95"]) != 2:
            raise ValueError(
                f"claim {doc['claim']!r}, arm {name!r}: {len(a['per_seed'])} per-seed values for "
                f"{len(doc['seeds'])} seeds (or a ci95 that is not [lo, hi])."
            )


def write_result(doc: dict[str, Any], out_dir: Path, plot: bool = True) -> Path:
    """Check ``doc`` and write ``<out_dir>/<claim>.json`` (and the bar plot ``<claim>.png``); returns the JSON path."""
    check_result(doc)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{doc['claim']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)  # never a half-written result
    if plot:
        bar_plot(doc, out_dir / f"{doc['claim']}.png")
    return path


def bar_plot(doc: dict[str, Any], path: Path, arms: Sequence[str] | None = None) -> None:
    """Bars of each arm's mean with its 95% CI and the per-seed values as dots, grouped by metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(arms or doc["arms"])
    metrics = list(dict.fromkeys(doc["arms"][n]["metric"] for n in names))
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(4.0, 1.1 * len(names) + 2), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        group = [n for n in names if doc["arms"][n]["metric"] == metric]
        for i, n in enumerate(group):
            a = doc["arms"][n]
            lo, hi = a["ci95"]
            ax.bar(i, a["mean"], color="C0" if i else "C7", alpha=0.6)
            ax.errorbar(i, a["mean"], yerr=[[a["mean"] - lo], [hi - a["mean"]]], color="k", capsize=4)
            ax.scatter([i] * len(a["per_seed"]), a["per_seed"], color="k", s=10, zorder=3)
        ax.set_xticks(range(len(group)), group, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
    fig.suptitle(f"{doc['claim']} ({doc['verdict']}; {len(doc['seeds'])} seeds, 95% t-CI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def train(overrides: Sequence[str], run_dir: Path, reuse: bool = True) -> dict[str, Any]:
    """One ``lm-envs train`` run (the normal Hydra entry, in this process) into ``run_dir``; its ``eval.json``.

    A finished run directory (``eval.json`` present) is reused as is when ``reuse``, so a driver killed
    part-way continues where it stopped, and the claims share their SFT starts.

    Raises:
        RuntimeError: If the run fails (its one-line error was printed by ``lm-envs train``).
    """
    from agents import train as train_entry

    run_dir = Path(run_dir)
    done = run_dir / "eval.json"
    if reuse and done.is_file():
        return json.loads(done.read_text())
    argv = [*overrides, f"hydra.run.dir={run_dir}", "train.progress=false"]
    code = train_entry.cli(argv)
    if code != 0 or not done.is_file():
        raise RuntimeError(f"lm-envs train {' '.join(argv)} failed (exit {code}); see its message above.")
    return json.loads(done.read_text())


def metrics_records(run_dir: Path) -> list[dict[str, Any]]:
    """The run's ``metrics.jsonl`` records (a torn last line is skipped)."""
    out = []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class Timer:
    """Wall time of a block, per seed: ``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.time() - self.start


# --- the README table ---------------------------------------------------------------------------------------
def _fmt(a: dict[str, Any]) -> str:
    lo, hi = a["ci95"]
    return f"{a['mean']:.3f} [{lo:.3f}, {hi:.3f}]"


def table_row(doc: dict[str, Any]) -> str:
    """One markdown row: claim, paper, verdict, the headline arms (``doc["headline"]`` or all) and the summary."""
    names = doc.get("headline") or list(doc["arms"])
    cells = "; ".join(f"{n}: {_fmt(doc['arms'][n])}" for n in names if n in doc["arms"])
    return f"| `{doc['claim']}` | {doc['paper']} | **{doc['verdict']}** | {cells} | {doc['summary']} |"


def readme_table(results_dir: Path, order: Sequence[str]) -> str:
    """The README's results table from ``<results_dir>/<claim>.json``; a claim with no JSON is listed as pending."""
    lines = [
        "| claim | paper | verdict | headline arms: mean [95% CI over seeds] | summary |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in order:
        path = Path(results_dir) / f"{name}.json"
        if not path.is_file():
            lines.append(
                f"| `{name}` | | **pending** | | no result yet: `python -m experiments.run_all --only {name}` |"
            )
            continue
        doc = json.loads(path.read_text())
        check_result(doc)
        lines.append(table_row(doc))
    return "\n".join(lines)


def replace_between_markers(text: str, body: str) -> str:
    """``text`` with everything between the claims markers replaced by ``body``.

    Raises:
        ValueError: If the markers are missing or out of order (add them to the README first).
    """
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < 0 or end < start:
        raise ValueError(
            f"the README needs the markers {TABLE_START} and {TABLE_END} (in that order) around the claims table; "
            "add them where the table should go."
        )
    return text[: start + len(TABLE_START)] + "\n" + body + "\n" + text[end:]


def claim_main(name: str, run: Any, doc: str | None, argv: list[str] | None = None) -> int:
    """The contract's command line of a claim driver: ``--seeds 0 1 2 --out experiments/results --quick``."""
    import argparse

    p = argparse.ArgumentParser(description=(doc or name).split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="a seconds-scale version (tiny model, few steps)")
    args = p.parse_args(argv)
    result = run(args.seeds, args.out, args.quick)
    print(f"{name}: {result['verdict']}. {result['summary']}")
    return 0


def pct(a: dict[str, Any], scale: float = 100.0, unit: str = "%") -> str:
    """``mean [lo, hi]`` of an arm, scaled (accuracy 0.53 -> ``53.0% [..]``)."""
    return f"{scale * a['mean']:.1f}{unit} [{scale * a['ci95'][0]:.1f}, {scale * a['ci95'][1]:.1f}]"


def seed_runs(overrides: list[str], run_name: str, seeds: Sequence[int], work: Path) -> list[dict[str, Any]]:
    """``eval.json`` of one training run per seed (``<work>/<run_name>/seed<s>``, reused when finished)."""
    return [train([*overrides, f"seed={s}"], Path(work) / run_name / f"seed{s}") for s in seeds]
