"""The embedded default reward model of the chat env: trained on first use, cached, no download.

A 2-layer, 48-wide GPT-2 sequence classifier (one output) over the embedded default tokenizer,
trained deterministically (seeded, one CPU thread) with the Bradley-Terry loss
``-log sigmoid(r_chosen - r_rejected)`` on the synthetic preference set
(:func:`~lm_envs.tasks.chat.preferences.synthetic_preferences`), whose order comes from the hidden
gold rubric. It is the same loss as :func:`agents.reward_models.train.bradley_terry_loss` with no margin
and no centering; ``lm_envs`` cannot import ``agents``, so the few lines of the loop live here.

The model is saved in ``transformers`` format (``save_pretrained`` plus the tokenizer) under
``cache_dir()/reward_models/default-<hash>``, where the hash covers the recipe below, the synthetic
data version and the tokenizer, so a changed recipe trains a new model instead of silently reusing
an old one. Its config records the held-out pair accuracy (``heldout_accuracy``) and the held-out
score statistics (``reward_mean``, ``reward_std``) that ``ChatReward(normalize=True)`` uses.
Training takes about 10-25 s on one CPU thread; concurrent processes are safe (write to a temporary
directory, then rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lm_envs.core.tokenizer import cache_dir, load_codec, save_codec
from lm_envs.tasks.chat.task import CHAT_DATA_VERSION

#: The default RM's training recipe; every field is part of the cache key.
DEFAULT_RM_RECIPE: dict[str, Any] = {
    "version": 1,
    "n_layer": 2,
    "n_embd": 48,
    "n_head": 2,
    "n_positions": 256,
    "train_pairs": 3200,
    "heldout_pairs": 200,
    "steps": 200,
    "batch_size": 16,
    "lr": 4e-3,
    "weight_decay": 0.01,
    "seed": 0,
}


def default_reward_model_path(recipe: dict[str, Any] | None = None) -> Path:
    """Train (once) and cache the default reward model; return its directory.

    Args:
        recipe: Overrides of :data:`DEFAULT_RM_RECIPE` (a different recipe is a different model).
    """
    recipe = {**DEFAULT_RM_RECIPE, **(recipe or {})}
    codec = load_codec(None)
    key = json.dumps({**recipe, "data": CHAT_DATA_VERSION, "tokenizer": codec.name}, sort_keys=True)
    path = cache_dir() / "reward_models" / f"default-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if not (path / "config.json").is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".tmp-"))
        try:
            train_default_reward_model(tmp, recipe)
            os.replace(tmp, path)
        except OSError:  # another process finished first: keep theirs
            if not (path / "config.json").is_file():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def train_default_reward_model(directory: Path, recipe: dict[str, Any]) -> dict[str, float]:
    """Train the default RM with ``recipe`` and save it (model, tokenizer) in ``directory``.

    Returns:
        ``{"heldout_accuracy": ..., "reward_mean": ..., "reward_std": ...}``.
    """
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    from lm_envs.tasks.chat.preferences import synthetic_preferences
    from lm_envs.tasks.chat.reward import prepare_tokenizer

    codec = load_codec(None)
    save_codec(codec, directory)  # the tokenizer first: training tokenizes exactly as scoring will
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic: the same floats in every process
    try:
        torch.manual_seed(recipe["seed"])
        config = GPT2Config(
            vocab_size=codec.vocab_size,
            n_layer=recipe["n_layer"],
            n_embd=recipe["n_embd"],
            n_head=recipe["n_head"],
            n_positions=recipe["n_positions"],
            num_labels=1,
            bos_token_id=codec.eos_token_id,
            eos_token_id=codec.eos_token_id,
            pad_token_id=codec.pad_token_id,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            summary_first_dropout=0.0,
        )
        model = GPT2ForSequenceClassification(config)
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(directory), model)
        train = synthetic_preferences(recipe["train_pairs"], seed=recipe["seed"], split="train")
        held = synthetic_preferences(recipe["heldout_pairs"], seed=recipe["seed"], split="test")

        def scores(pairs: list[Any]) -> torch.Tensor:
            # chosen and rejected of every pair in one forward: [c_1..c_B, r_1..r_B]
            texts = [p.prompt + p.chosen for p in pairs] + [p.prompt + p.rejected for p in pairs]
            enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=config.n_positions)
            return model(**enc).logits[:, 0]

        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
        rng = torch.Generator().manual_seed(recipe["seed"])
        b, steps = recipe["batch_size"], recipe["steps"]
        model.train()
        for step in range(steps):
            idx = torch.randint(len(train), (b,), generator=rng).tolist()
            r = scores([train[i] for i in idx])
            loss = -torch.nn.functional.logsigmoid(r[:b] - r[b:]).mean()  # Bradley-Terry
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            for group in optimizer.param_groups:  # linear decay to 10%: a stable end point
                group["lr"] = recipe["lr"] * (1 - 0.9 * step / steps)
            optimizer.step()
        model.eval()
        with torch.no_grad():
            r = scores(held)
        n = len(held)
        stats = {
            "heldout_accuracy": float((r[:n] > r[n:]).float().mean()),
            "reward_mean": float(r.mean()),
            "reward_std": float(r.std().clamp_min(1e-6)),
        }
        for k, v in stats.items():
            setattr(model.config, k, v)
        model.config.lm_envs_recipe = recipe
        model.save_pretrained(directory)
        return stats
    finally:
        torch.set_num_threads(threads)
