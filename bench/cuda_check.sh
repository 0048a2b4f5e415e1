#!/usr/bin/env bash
# The GPU check, on a machine that reaches no package registry: install the wheelhouse that
# bench/wheelhouse.sh built (gymnasium, hydra-core, omegaconf, jsonschema, ... into a private folder; the
# image's torch, transformers and the rest stay as they are), then run bench/cuda_check.py.
#
#   bash bench/wheelhouse.sh                  # here, once: builds bench/.whl (~2 MiB, git-ignored)
#   OUT=/some/dir bash bench/cuda_check.sh    # there; the device tool sets OUT and carries bench/.whl
#
# Writes $OUT/cuda_check.json (the results; rewritten after every step, so a killed call keeps what it
# had) and $OUT/cuda_check.log (install log, progress, a summary). Extra arguments go to cuda_check.py.
# No `pip install -e .`: the repo root goes on PYTHONPATH and cuda_check.py aliases conf/ as lm_envs_conf.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-$PWD/cuda_check_out}"
WHEELS="${WHEELS:-bench/.whl}"
SITE="${SITE:-/tmp/lm_envs_site}"
PYTHON="${PYTHON:-python3}"
LIMIT_S="${LIMIT_S:-500}"  # hard stop for the python check (its own --budget-s stops new work earlier)
mkdir -p "$OUT"
exec > >(tee -a "$OUT/cuda_check.log") 2>&1

echo "== cuda_check $(date -u +%FT%TZ) on $(hostname), $(nproc) cores, $("$PYTHON" --version 2>&1)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"

if [ -f "$WHEELS/packages.txt" ]; then
    mapfile -t names <"$WHEELS/packages.txt"
    t0=$SECONDS
    pip_install=("$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-index --no-deps --no-compile
        --no-cache-dir --upgrade --target "$SITE" --find-links "$WHEELS")
    if ! "${pip_install[@]}" "${names[@]}"; then
        echo "one install of all failed; installing one by one"
        for name in "${names[@]}"; do
            "${pip_install[@]}" "$name" || echo "warning: could not install $name from $WHEELS"
        done
    fi
    echo "installed ${#names[@]} packages from $WHEELS into $SITE in $((SECONDS - t0)) s"
    export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "no $WHEELS/packages.txt (run bench/wheelhouse.sh and carry $WHEELS): using the installed packages"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PYTHON" - <<'EOF' || true
from importlib.metadata import version

for name in ("torch", "transformers", "peft", "gymnasium", "hydra-core", "omegaconf", "jsonschema", "numpy"):
    try:
        print(f"  {name} {version(name)}")
    except Exception as err:
        print(f"  {name}: {err!r}")
EOF

# stdout (the same JSON as the file) is dropped: the log keeps the progress and the summary
timeout -k 10 "$LIMIT_S" "$PYTHON" bench/cuda_check.py --out "$OUT/cuda_check.json" "$@" >/dev/null
rc=$?
echo "== cuda_check.py exit $rc after ${SECONDS} s (0: all ok; 2: some step failed, see the JSON; 124: killed at ${LIMIT_S} s)"
ls -l "$OUT"
exit $rc
