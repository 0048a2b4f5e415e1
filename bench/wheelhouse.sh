#!/usr/bin/env bash
# Build a wheelhouse of the Python packages that the training stack needs and that the rented CUDA
# machine lacks (it reaches no package registry), for bench/cuda_check.sh to install there.
#
#   bash bench/wheelhouse.sh [DIR]          # default DIR: bench/.whl (git-ignored by .gitignore's ".whl/")
#   PY_VERSIONS="3.12 3.11" bash bench/wheelhouse.sh   # CPython versions of the one binary wheel (rpds-py)
#
# The CUDA image already holds torch, transformers, tokenizers, safetensors, sympy, numpy, matplotlib,
# tensorboard, tqdm, jinja2, pyyaml, cloudpickle, attrs, packaging and typing-extensions (see the device
# tool's KINDS.md). What is missing, and needed on import by agents/, lm_envs/ and leaderboard/:
#   gymnasium (+ farama-notifications)                    lm_envs, every env
#   hydra-core, omegaconf, antlr4-python3-runtime          agents.run.config, composing conf/
#   jsonschema (+ jsonschema-specifications, referencing,  agents.evaluate -> leaderboard.hashing ->
#     rpds-py: the one compiled wheel)                       leaderboard/__init__ -> leaderboard.validate
#   stable-baselines3                                      agents.sb3 only (pure Python, small)
# Not shipped: the leaderboard's store and server (sqlalchemy, fastapi, uvicorn: loaded on first use,
# never by training) and anything torch or nvidia. Each package is fetched with --no-deps at the version
# installed here (so the GPU runs what the CPU tests ran), or unpinned where this machine lacks it.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${1:-bench/.whl}"
PYTHON="${PYTHON:-python3}"
LOCAL_PY="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
# The CUDA image's python3 is 3.12 (KINDS.md); the local version lets the same folder install here too.
PY_VERSIONS="${PY_VERSIONS:-3.12 $LOCAL_PY}"
MAX_MIB="${MAX_MIB:-60}"

PURE=(gymnasium farama-notifications hydra-core omegaconf stable-baselines3 jsonschema jsonschema-specifications
    referencing)
SDIST=(antlr4-python3-runtime)  # 4.9.3 (what omegaconf 2.3 pins) is published as a source archive only
BINARY=(rpds-py)

pinned() {  # NAME==VERSION as installed here, else NAME
    "$PYTHON" - "$1" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    print(f"{sys.argv[1]}=={version(sys.argv[1])}")
except PackageNotFoundError:
    print(sys.argv[1])
EOF
}

rm -rf "$DIR"
mkdir -p "$DIR"
pip_q() {  # quiet pip, without the warnings about this machine's absent file:// indexes
    "$PYTHON" -m pip -q --disable-pip-version-check "$@" 2> >(grep -v 'is ignored: it is neither a file' >&2)
}
for name in "${PURE[@]}"; do
    pip_q download --no-deps --only-binary=:all: -d "$DIR" "$(pinned "$name")"
done
for name in "${SDIST[@]}"; do  # a py3-none-any wheel built here from the source archive
    pip_q wheel --no-deps -w "$DIR" "$(pinned "$name")"
done
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
for name in "${BINARY[@]}"; do
    for py in $PY_VERSIONS; do
        pip_q download --no-deps --only-binary=:all: --implementation cp --python-version "$py" \
            "${platforms[@]}" -d "$DIR" "$(pinned "$name")"
    done
done

# what bench/cuda_check.sh installs (by name: pip picks the wheel that fits the python there)
printf '%s\n' "${PURE[@]}" "${SDIST[@]}" "${BINARY[@]}" >"$DIR/packages.txt"

if ls "$DIR" | grep -Eiq '^(torch|nvidia|triton)'; then
    echo "error: torch/nvidia/triton wheels in $DIR; they must come from the CUDA image" >&2
    exit 1
fi
bytes=$(du -sb "$DIR" | cut -f1)
echo "wheelhouse $DIR: $(ls "$DIR"/*.whl | wc -l) wheels, $((bytes / 1024)) KiB"
ls -l "$DIR" | awk 'NR > 1 {printf "  %8d KiB  %s\n", $5 / 1024, $9}'
if ((bytes > MAX_MIB * 1024 * 1024)); then
    echo "error: the wheelhouse is over ${MAX_MIB} MiB (the device tool carries 64 MiB in all)" >&2
    exit 1
fi
