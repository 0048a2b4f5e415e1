"""The embedded default tokenizer and Hugging Face tokenizers behind TextCodec."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import lm_envs
from lm_envs.core import tokenizer as tk

CORPUS = ["Tom has 12 apples and buys 345 more.\n12 + 345 = 357\n#### 357\n"] * 20 + ["Repeat the word: apple\n"] * 5


def test_training_is_deterministic_and_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("LM_ENVS_CACHE", str(tmp_path))
    a = tk.train_bpe(CORPUS, vocab_size=300).to_str()
    b = tk.train_bpe(CORPUS, vocab_size=300).to_str()
    assert a == b
    path = tk.default_tokenizer_path(CORPUS, vocab_size=300)
    assert path.is_relative_to(tmp_path) and path.read_text() == a
    assert tk.default_tokenizer_path(CORPUS, vocab_size=300) == path  # cache hit: same file
    assert tk.default_tokenizer_path(CORPUS + ["more text"], vocab_size=300) != path  # versioned by corpus


def test_training_is_identical_in_a_fresh_process(tmp_path):
    code = (
        "import sys, json; from lm_envs.core.tokenizer import train_bpe;"
        "print(train_bpe(json.loads(sys.argv[1]), vocab_size=300).to_str())"
    )
    out = subprocess.run([sys.executable, "-c", code, json.dumps(CORPUS)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == tk.train_bpe(CORPUS, vocab_size=300).to_str()


def test_default_codec_splits_digits_and_round_trips():
    codec = lm_envs.load_codec()
    assert codec.token_bytes[codec.eos_token_id] == b"" and codec.eos_token_id != codec.pad_token_id
    ids = codec.encode("345 + 12")
    assert [codec.decode([i]) for i in ids[:3]] == ["3", "4", "5"]
    rng = np.random.default_rng(0)
    for text in ["Tom has 12 apples.\n#### 12", "naïve café — ∑ 🙂", "\t  x\n\ny"]:
        assert codec.decode(codec.encode(text)) == text
    for _ in range(50):  # table decoding equals the library's decode on arbitrary id sequences
        ids = rng.integers(len(tk.SPECIAL_TOKENS), codec.vocab_size, size=30).tolist()
        assert codec.decode(ids) == codec.backend.decode(ids)


def test_saved_codec_loads_through_transformers_and_back(tmp_path):
    codec = lm_envs.load_codec()
    tk.save_codec(codec, tmp_path / "tok")
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tmp_path / "tok")
    text = "Sam pays 3.50 dollars for 4 pens.\n#### 14"
    assert hf.encode(text, add_special_tokens=False) == codec.encode(text)
    assert hf.eos_token_id == codec.eos_token_id
    again = lm_envs.load_codec(str(tmp_path / "tok"))  # a Hugging Face directory goes through AutoTokenizer
    assert again.hf_tokenizer is not None and again.token_bytes == codec.token_bytes
    assert again.encode(text) == codec.encode(text)
    env = lm_envs.TokenEnv(
        "lm_envs.tasks.target_word:TargetWordTask", lambda p, c: 0.0, tokenizer=str(tmp_path / "tok")
    )
    assert env.action_space.n == codec.vocab_size


def test_generation_config_end_tokens_end_episodes_and_travel_with_the_tokenizer(tmp_path):
    codec = lm_envs.load_codec()
    tk.save_codec(codec, tmp_path / "tok")
    end_of_turn = codec.pad_token_id + 1 if codec.pad_token_id + 1 != codec.eos_token_id else codec.pad_token_id + 2
    # a chat model that ends its turns with another token than eos_token (Llama 3's <|eot_id|>)
    (tmp_path / "tok" / "generation_config.json").write_text(json.dumps({"eos_token_id": [end_of_turn]}))
    chat = lm_envs.load_codec(str(tmp_path / "tok"))
    assert chat.stop_token_ids == {chat.eos_token_id, end_of_turn} and chat.token_bytes[end_of_turn] == b""
    env = lm_envs.TokenEnv(
        "lm_envs.tasks.target_word:TargetWordTask", lambda p, c: 1.0, tokenizer=str(tmp_path / "tok")
    )
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(end_of_turn)
    assert terminated and not truncated and reward == 1.0 and info["completion"] == ""
    tk.save_codec(chat, tmp_path / "again")  # a run directory's tokenizer/ keeps the end tokens
    assert lm_envs.load_codec(str(tmp_path / "again")).stop_token_ids == chat.stop_token_ids
    for bad, message in (("[1.5]", "must be an int or a list of ints"), ("{", "not a JSON object")):
        (tmp_path / "tok" / "generation_config.json").write_text(bad if bad == "{" else f'{{"eos_token_id": {bad}}}')
        with pytest.raises(ValueError, match=message):
            tk.generation_stop_ids(tmp_path / "tok")


def test_sentencepiece_style_vocab_decodes_by_table():
    from tokenizers import Tokenizer, decoders, models, normalizers

    vocab = {"<unk>": 0, "</s>": 1, "<0x0A>": 2, "▁Hello": 3, "▁world": 4, "!": 5}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    table = tk.token_bytes_table(backend, 8, special_ids=[0, 1])
    assert table[:6] == [b"", b"", b"\n", b" Hello", b" world", b"!"] and table[7] == b""


def test_a_missing_tokenizer_path_says_it_does_not_exist(tmp_path):
    for missing in (tmp_path / "nope", "./no/such/dir", "~/no-such-tokenizer-dir"):
        with pytest.raises(ValueError, match=r"does not exist: give an existing tokenizer.json or tokenizer directory"):
            lm_envs.load_codec(str(missing))


def test_bad_tokenizer_specs_raise(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no tokenizer files"):
        lm_envs.load_codec(str(tmp_path / "empty"))
    with pytest.raises(TypeError, match="tokenizer must be"):
        lm_envs.load_codec(42)


def test_import_is_light():
    code = "import sys, lm_envs; print('torch' in sys.modules, 'transformers' in sys.modules, 'sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
