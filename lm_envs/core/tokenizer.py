"""Tokenizers for the token-level environments: the embedded default and any Hugging Face one.

The environments need four things from a tokenizer: encode a prompt, the exact bytes each token id
stands for (so decoding is incremental: a token's text is a table lookup, never a re-decode of the
whole episode), the EOS id and a pad id. :class:`TextCodec` holds exactly that, built from

* ``None``: the **embedded default**, a byte-level BPE trained locally (``tokenizers`` library,
  deterministic) on the built-in tasks' own text, with digits split one per token so that a tiny
  model can learn arithmetic. It is cached under :func:`cache_dir` keyed by a hash of its corpus
  and settings, so a changed corpus gives a new tokenizer instead of a silently different one.
* a path to a ``tokenizer.json`` file (a ``tokenizers`` tokenizer), or
* any Hugging Face tokenizer name or local directory (loaded with ``transformers.AutoTokenizer``;
  ``transformers`` is imported only in that case).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Special tokens of the embedded default tokenizer, in id order (ids 0..3).
SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>")
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
#: Vocabulary size of the embedded default (a multiple of 64 keeps the logits matmul aligned).
DEFAULT_VOCAB_SIZE = 1024
#: Bumped whenever the training recipe below changes; part of the cache key.
DEFAULT_RECIPE_VERSION = 1


def cache_dir() -> Path:
    """Where lm-envs caches built artifacts (the default tokenizer).

    ``$LM_ENVS_CACHE`` if set, else ``$XDG_CACHE_HOME/lm_envs``, else ``~/.cache/lm_envs``.
    """
    if os.environ.get("LM_ENVS_CACHE"):
        return Path(os.environ["LM_ENVS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lm_envs"


def train_bpe(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE) -> Any:
    """Train a byte-level BPE tokenizer (``tokenizers.Tokenizer``) on ``texts``, deterministically.

    Digits are split one per token before BPE (``345`` -> ``3``, ``4``, ``5``); every byte is in the
    initial alphabet, so any text encodes. The special tokens :data:`SPECIAL_TOKENS` get ids 0..3.

    Args:
        texts: Training text, iterated once.
        vocab_size: Target vocabulary size including special tokens and the 256 byte tokens.

    Returns:
        A ``tokenizers.Tokenizer``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def default_tokenizer_path(corpus: Sequence[str], vocab_size: int = DEFAULT_VOCAB_SIZE) -> Path:
    """Train (once) and cache the default tokenizer for ``corpus``; return its ``tokenizer.json``.

    The cache key hashes the recipe version, the vocabulary size and every corpus text, so the file
    name says exactly what the tokenizer was trained on. Writes are atomic (temp file + rename),
    so concurrent processes never see a half-written file.
    """
    h = hashlib.sha256(f"recipe={DEFAULT_RECIPE_VERSION};vocab={vocab_size};".encode())
    for text in corpus:
        h.update(text.encode("utf-8"))
        h.update(b"\x00")
    key = h.hexdigest()[:16]
    path = cache_dir() / "tokenizers" / f"default-{key}" / "tokenizer.json"
    if not path.exists():
        tok = train_bpe(corpus, vocab_size=vocab_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(tok.to_str())
        os.replace(tmp, path)
    return path


@functools.cache
def _gpt2_byte_decoder() -> dict[str, int]:
    """Inverse of the byte-to-printable-character map that byte-level BPE vocabularies use."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: b for b in printable}
    shift = 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + shift
            shift += 1
    return {chr(c): b for b, c in chars.items()}


_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _decoder_kinds(decoder: dict[str, Any] | None) -> set[str]:
    if not decoder:
        return set()
    if decoder.get("type") == "Sequence":
        return {d.get("type", "") for d in decoder.get("decoders", [])}
    return {decoder.get("type", "")}


def token_bytes_table(backend: Any, vocab_size: int, special_ids: Iterable[int]) -> list[bytes]:
    """The bytes each token id decodes to, for incremental decoding by table lookup.

    Handles byte-level BPE vocabularies (GPT-2, Llama 3, Qwen, the embedded default) and
    SentencePiece-style ones (``▁`` for space, ``<0xNN>`` byte fallback). For any other decoder it
    falls back to decoding each id alone, which is exact for most but not all tokenizers. Special
    tokens, and ids past the vocabulary (padding in a model's logits width), decode to ``b""``.

    Args:
        backend: A ``tokenizers.Tokenizer``.
        vocab_size: Number of table entries (the action space size).
        special_ids: Ids to map to ``b""``.
    """
    spec = json.loads(backend.to_str())
    kinds = _decoder_kinds(spec.get("decoder"))
    table: list[bytes] = [b""] * vocab_size
    special = set(special_ids)
    byte_decoder = _gpt2_byte_decoder()
    n = min(backend.get_vocab_size(with_added_tokens=True), vocab_size)
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    for i in range(n):
        if i in special or (i in added and added[i].get("special")):
            continue
        piece = backend.id_to_token(i)
        if piece is None:
            continue
        if i in added:  # added (non-special) tokens are stored as plain text
            table[i] = piece.encode("utf-8")
        elif "ByteLevel" in kinds and all(c in byte_decoder for c in piece):
            table[i] = bytes(byte_decoder[c] for c in piece)
        elif "ByteFallback" in kinds or "Metaspace" in kinds or "Replace" in kinds:
            m = _BYTE_FALLBACK.match(piece)
            table[i] = bytes([int(m.group(1), 16)]) if m else piece.replace("\u2581", " ").encode("utf-8")
        else:
            table[i] = backend.decode([i], skip_special_tokens=False).encode("utf-8")
    return table


class TextCodec:
    """What a token-level environment needs from a tokenizer, with incremental decoding.

    Build one with :func:`load_codec`. ``decode`` joins per-token byte strings from a table, so
    decoding ``k`` new tokens costs ``O(k)`` regardless of what came before.

    Attributes:
        name: Where the tokenizer came from (``"default:<hash>"``, a path or a hub name).
        vocab_size: Number of token ids the tokenizer defines.
        eos_token_id: The id that ends an episode (and the one a demonstration ends with).
        stop_token_ids: Every id that ends an episode: ``eos_token_id`` plus the model's other end
            tokens (``generation_config.json``'s ``eos_token_id`` list, e.g. Llama 3's ``<|eot_id|>``
            beside ``<|end_of_text|>``), so a chat model's end of turn ends its episode.
        pad_token_id: The id that fills unused positions of observation buffers.
        token_bytes: ``token_bytes[i]`` is the UTF-8 bytes token ``i`` stands for.
    """

    def __init__(
        self,
        backend: Any,
        name: str,
        eos_token_id: int,
        pad_token_id: int,
        hf_tokenizer: Any = None,
        special_ids: Iterable[int] = (),
        stop_token_ids: Iterable[int] = (),
    ) -> None:
        self.backend = backend
        self.hf_tokenizer = hf_tokenizer
        self.name = name
        self.vocab_size = (
            len(hf_tokenizer) if hf_tokenizer is not None else backend.get_vocab_size(with_added_tokens=True)
        )
        self.eos_token_id = int(eos_token_id)
        self.pad_token_id = int(pad_token_id)
        self.stop_token_ids = frozenset(int(i) for i in stop_token_ids) | {self.eos_token_id}
        bad = sorted(i for i in self.stop_token_ids if not 0 <= i < self.vocab_size)
        if bad:
            raise ValueError(
                f"stop token ids {bad} of tokenizer {name!r} are outside its {self.vocab_size} ids; fix eos_token_id "
                "in the model's generation_config.json."
            )
        self.special_ids = (
            frozenset(int(i) for i in special_ids) | {self.eos_token_id, self.pad_token_id} | self.stop_token_ids
        )
        self.token_bytes: list[bytes] = token_bytes_table(backend, self.vocab_size, self.special_ids)
        self._chat_checked: tuple[str, str | None] | None = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``. ``add_special_tokens`` adds e.g. a BOS token for HF tokenizers."""
        if self.hf_tokenizer is not None:
            return list(self.hf_tokenizer.encode(text, add_special_tokens=add_special_tokens))
        return list(self.backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of ``ids`` by table lookup (ids past the table decode to nothing)."""
        table, n = self.token_bytes, len(self.token_bytes)
        return b"".join(table[i] if 0 <= i < n else b"" for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; invalid UTF-8 (a split multi-byte character) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    @property
    def chat_template(self) -> str | None:
        """The tokenizer's chat template (a Jinja string), or ``None`` when it has none."""
        template = getattr(self.hf_tokenizer, "chat_template", None) if self.hf_tokenizer is not None else None
        return template if isinstance(template, str) and template else None

    def render_chat(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """``messages`` (``{"role", "content"}`` dicts) rendered through the chat template, as text.

        Raises:
            ValueError: When the tokenizer has no chat template.
        """
        if self.chat_template is None:
            raise ValueError(
                f"tokenizer {self.name!r} has no chat template; use chat_template=False (plain prompts) or a model "
                "directory whose tokenizer_config.json or chat_template.jinja defines one."
            )
        return str(
            self.hf_tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
            )
        )

    def check_chat_template(self, system_prompt: str | None = None) -> None:
        """Check that the template renders a reply as plain text appended to the generation prompt.

        A token-level env appends the policy's tokens to the rendered prompt and ends the turn on EOS,
        so the template must render ``[..., user, assistant(reply)]`` as the generation prompt of
        ``[..., user]`` followed by the reply. Templates that rewrite earlier turns (e.g. drop reasoning
        from them) or wrap replies in extra markup break that. Checked once per codec.

        Raises:
            ValueError: When the template has no generation prompt that the reply extends.
        """
        key = ("chat_checked", system_prompt)
        if getattr(self, "_chat_checked", None) == key:
            return
        head = [{"role": "system", "content": system_prompt}] if system_prompt is not None else []
        user = {"role": "user", "content": "What is 1+1?"}
        prompt = self.render_chat([*head, user])
        reply = "It is 2."
        full = self.render_chat([*head, user, {"role": "assistant", "content": reply}], add_generation_prompt=False)
        if not full.startswith(prompt + reply):
            raise ValueError(
                f"the chat template of tokenizer {self.name!r} does not render a reply as text appended to its "
                f"generation prompt (prompt {prompt[-40:]!r}, conversation {full[-60:]!r}): it rewrites earlier "
                "turns or wraps replies, so token-level episodes cannot follow it; use chat_template=False or a "
                "template whose assistant turn is the generation prompt followed by the reply."
            )
        self._chat_checked = key

    def lookup_table(self, width: int, predicate: Any) -> np.ndarray:
        """A boolean table over ``width`` action ids: ``predicate(token_bytes)`` for each id."""
        out = np.zeros(width, dtype=bool)
        for i, b in enumerate(self.token_bytes[:width]):
            out[i] = bool(predicate(b))
        return out

    def __repr__(self) -> str:
        return f"TextCodec({self.name!r}, vocab_size={self.vocab_size}, eos={self.eos_token_id})"


def codec_from_tokenizers_file(path: str | os.PathLike[str], name: str | None = None) -> TextCodec:
    """Build a :class:`TextCodec` from a ``tokenizers`` ``tokenizer.json`` file."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(str(path))
    eos, pad = backend.token_to_id(EOS_TOKEN), backend.token_to_id(PAD_TOKEN)
    if eos is None:
        raise ValueError(
            f"tokenizer file {path} has no {EOS_TOKEN!r} token; use a Hugging Face tokenizer directory "
            "(with eos_token set) or pass eos_token_id= to the environment."
        )
    specials = [i for i, t in backend.get_added_tokens_decoder().items() if t.special]
    return TextCodec(backend, name or str(path), eos, pad if pad is not None else eos, special_ids=specials)


def codec_from_pretrained(name_or_path: str) -> TextCodec:
    """Build a :class:`TextCodec` from any Hugging Face tokenizer name or local directory."""
    try:
        from transformers import AutoTokenizer
    except ImportError as e:  # pragma: no cover - transformers is a dependency
        raise ImportError("loading a tokenizer by name needs `transformers`: pip install transformers") from e
    path = Path(name_or_path)
    if path.is_dir() and not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(
            f"directory {name_or_path} holds no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...); copy the "
            "tokenizer that belongs to the model into it (tokenizer.save_pretrained(dir)) or pass tokenizer=PATH "
            "(env.kwargs.tokenizer=PATH for lm-envs train)."
        )
    try:
        hf = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as e:
        raise ValueError(
            f"could not load tokenizer {name_or_path!r}: {e}. Give a local directory holding a Hugging Face "
            "tokenizer, a tokenizer.json file, or None for the embedded default (no model hub is reachable "
            "offline)."
        ) from e
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(
            f"tokenizer {name_or_path!r} is a slow (Python) tokenizer; lm-envs needs a fast one "
            "(AutoTokenizer.from_pretrained(..., use_fast=True) must succeed)."
        )
    if hf.eos_token_id is None:
        raise ValueError(f"tokenizer {name_or_path!r} defines no EOS token; set tokenizer.eos_token before use.")
    pad = hf.pad_token_id if hf.pad_token_id is not None else hf.eos_token_id
    stops = generation_stop_ids(path) if path.is_dir() else []
    return TextCodec(
        backend,
        name_or_path,
        hf.eos_token_id,
        pad,
        hf_tokenizer=hf,
        special_ids=hf.all_special_ids,
        stop_token_ids=stops,
    )


def generation_stop_ids(directory: str | os.PathLike[str]) -> list[int]:
    """The end-of-sequence ids a model directory's ``generation_config.json`` lists (``[]`` without one).

    Chat models often end a turn with a token other than the tokenizer's ``eos_token`` (Llama 3:
    ``eos_token_id: [128001, 128008, 128009]``); transformers' ``generate`` stops on any of them, and so
    does the env.

    Raises:
        ValueError: When the file is not JSON or its ``eos_token_id`` is not an int or a list of ints.
    """
    path = Path(directory) / "generation_config.json"
    if not path.is_file():
        return []
    try:
        ids = json.loads(path.read_text()).get("eos_token_id")
    except (json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"{path} is not a JSON object ({e}); fix or delete it.") from None
    ids = [ids] if isinstance(ids, int) and not isinstance(ids, bool) else ids
    if ids is None:
        return []
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"{path}: eos_token_id must be an int or a list of ints, got {ids!r}; fix or delete it.")
    return ids


#: Files of which a Hugging Face tokenizer directory holds at least one.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "spiece.model",
    "vocab.txt",
)


def save_codec(codec: TextCodec, directory: str | os.PathLike[str]) -> None:
    """Save the tokenizer beside a checkpoint so a model always finds its own tokenizer.

    Writes a Hugging Face tokenizer directory (``tokenizer.json`` plus configs) that both
    :func:`load_codec` and ``transformers.AutoTokenizer`` load.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    extra = sorted(codec.stop_token_ids - {codec.eos_token_id})
    if extra and not (directory / "generation_config.json").is_file():  # the end tokens travel with the tokenizer
        stops = {"eos_token_id": [codec.eos_token_id, *extra]}
        (directory / "generation_config.json").write_text(json.dumps(stops, indent=2))
    if codec.hf_tokenizer is not None:
        codec.hf_tokenizer.save_pretrained(directory)
        return
    codec.backend.save(str(directory / "tokenizer.json"))
    special = {
        "eos_token": codec.backend.id_to_token(codec.eos_token_id),
        "pad_token": codec.backend.id_to_token(codec.pad_token_id),
    }
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1 << 20, **special}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2))


@functools.cache
def _default_codec(corpus_key: str, vocab_size: int) -> TextCodec:
    from lm_envs.tasks.corpus import default_corpus

    path = default_tokenizer_path(default_corpus(), vocab_size)
    return codec_from_tokenizers_file(path, name=f"default:{path.parent.name.removeprefix('default-')}")


def load_codec(tokenizer: str | os.PathLike[str] | TextCodec | None = None) -> TextCodec:
    """Resolve a tokenizer spec into a :class:`TextCodec`.

    Args:
        tokenizer: ``None`` for the embedded default; a :class:`TextCodec`; a path to a
            ``tokenizer.json`` file; or a Hugging Face tokenizer name or local directory.

    Returns:
        The codec. The default codec, and that of a Hugging Face tokenizer directory (until its files
        change), is built once per process and shared.
    """
    if tokenizer is None:
        from lm_envs.tasks.corpus import CORPUS_VERSION

        return _default_codec(CORPUS_VERSION, DEFAULT_VOCAB_SIZE)
    if isinstance(tokenizer, TextCodec):
        return tokenizer
    if not isinstance(tokenizer, (str, os.PathLike)):
        raise TypeError(
            f"tokenizer must be None (embedded default), a path or a Hugging Face name; got {type(tokenizer).__name__}."
        )
    path = Path(tokenizer)
    if not path.exists() and (path.is_absolute() or str(tokenizer).startswith((".", "~"))):
        raise ValueError(
            f"tokenizer {str(tokenizer)!r} does not exist: give an existing tokenizer.json or tokenizer directory "
            "(a run's tokenizer/ or model/), a Hugging Face name, or None for the embedded default."
        )
    if path.is_file():
        return codec_from_tokenizers_file(path)
    if path.is_dir() and (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        return codec_from_tokenizers_file(path / "tokenizer.json", name=str(path))
    return _cached_pretrained(str(tokenizer), _stamp(path))


def _stamp(path: Path) -> tuple[tuple[str, int], ...]:
    """Names and modification times of a tokenizer directory's files: a changed directory is loaded anew."""
    if not path.is_dir():
        return ()
    return tuple((name, (path / name).stat().st_mtime_ns) for name in TOKENIZER_FILES if (path / name).is_file())


@functools.lru_cache(maxsize=8)
def _cached_pretrained(name_or_path: str, stamp: tuple[tuple[str, int], ...]) -> TextCodec:
    # every env of a run loads the same tokenizer: a 49k-token one costs seconds to load and tabulate
    return codec_from_pretrained(name_or_path)
