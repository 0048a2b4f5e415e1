"""Rerun the seed papers' claims and rebuild the README's results table from their JSON.

    python -m experiments.run_all                          # all seven claims, seeds 0 1 2, then the table
    python -m experiments.run_all --only reverse_curriculum easy_to_hard
    python -m experiments.run_all --table-only             # rebuild the table from experiments/results/*.json
    python -m experiments.run_all --quick --out /tmp/claims --readme /tmp/README.md   # seconds-scale check

Each claim is ``experiments/claim_<name>.py`` with ``run(seeds, out_dir, quick) -> dict`` (the contract in the
package docstring); it writes ``<out>/<name>.json`` and ``<name>.png``. Training arms go through ``lm-envs train``
and their run directories live under ``runs/claims/`` (a finished one is reused, so a killed rerun continues).
A claim that fails is reported and the others still run; the table then shows its last JSON, or "pending".
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script path: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import RESULTS, ROOT, readme_table, replace_between_markers

#: Every claim, in the README table's order: the three done first, then the four of #27.
CLAIMS = (
    "rl_vs_sft_few_demos",
    "abstention",
    "rft_vs_sft",
    "reverse_curriculum",
    "overoptimization",
    "weak_to_strong",
    "easy_to_hard",
)


def load_driver(name: str):
    """The module ``experiments.claim_<name>``.

    Raises:
        ValueError: For a name that is not a claim, or a claim whose driver file is missing.
    """
    if name not in CLAIMS:
        raise ValueError(f"unknown claim {name!r}; choose from {', '.join(CLAIMS)}.")
    try:
        return importlib.import_module(f"experiments.claim_{name}")
    except ModuleNotFoundError as e:
        if e.name != f"experiments.claim_{name}":
            raise
        raise ValueError(f"experiments/claim_{name}.py does not exist (not written or not merged yet).") from None


def rebuild_table(results_dir: Path, readme: Path) -> str:
    """Write the table of ``results_dir``'s JSONs between the README's claims markers; returns the table."""
    table = readme_table(results_dir, CLAIMS)
    text = readme.read_text()
    new = replace_between_markers(text, table)
    if new != text:
        readme.write_text(new)
    return table


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); 0 when every claim ran, 1 when one failed, 2 on bad input."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", nargs="+", metavar="CLAIM", help=f"a subset of: {' '.join(CLAIMS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG go")
    p.add_argument("--quick", action="store_true", help="seconds-scale versions (tiny models, a few steps)")
    p.add_argument("--table-only", action="store_true", help="rebuild the README table without running anything")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = p.parse_args(argv)
    names = list(args.only or CLAIMS)
    try:
        drivers = {} if args.table_only else {n: load_driver(n) for n in names}
    except ValueError as e:
        print(f"run_all: {e}", file=sys.stderr)
        return 2
    failed = []
    for name, driver in drivers.items():
        started = time.time()
        print(f"== {name} (seeds {' '.join(map(str, args.seeds))})", flush=True)
        try:
            doc = driver.run(args.seeds, args.out, quick=args.quick)
        except Exception:  # one claim's failure does not cost the others their run
            traceback.print_exc()
            failed.append(name)
            continue
        print(f"== {name}: {doc['verdict']} in {time.time() - started:.0f} s. {doc['summary']}", flush=True)
    try:
        rebuild_table(args.out, args.readme)
    except ValueError as e:
        print(f"run_all: {e}", file=sys.stderr)
        return 2
    print(f"README table rebuilt from {args.out}: {args.readme}")
    if failed:
        print(f"run_all: these claims failed (traceback above): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
