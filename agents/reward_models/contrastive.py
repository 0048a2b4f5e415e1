"""A generative verifier from minimal contrastive steps: the policy fine-tuned to get its claimed results right.

:func:`~agents.reward_models.train.contrastive_step_pairs` gives ``(right, wrong)`` texts that share the policy's
own sampled prefix and claim step ``a op b = `` and differ only in the result. :func:`train_contrastive_verifier`
fine-tunes a copy of the policy (a causal LM) on them with

    L = -mean log p(c_right | prefix)  -  bt * mean log sigmoid(log p(c_right | prefix) - log p(c_wrong | prefix))

(the right result's tokens, ``\\n`` included, and a Bradley-Terry term between the two results). The verifier's
score of a whole solution is then its mean token log-probability under the fine-tuned model
(:func:`completion_logprobs`): the policy's own likelihood, sharpened on arithmetic. On Math-v0 this ranks one
problem's sampled solutions better than the policy's likelihood does, where one-logit classifiers trained on
the same pairs or on rule step labels do not (``bench/contrastive_prm.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lm_envs import TextCodec


def result_start(text: str) -> int:
    """Where the claimed result starts in a claim-step text: after its last ``"= "``.

    Example:
        >>> t = "Q?\\n12 * 6 = 72\\n"
        >>> t[result_start(t):]
        '72\\n'
    """
    return text.rstrip("\n").rfind("= ") + 2


def _batch(codec: TextCodec, ids: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(x) for x in ids)
    batch = torch.full((len(ids), width), codec.pad_token_id)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        batch[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return batch, mask


def _token_logprobs(lm: torch.nn.Module, batch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    device = next(lm.parameters()).device
    logits = lm(input_ids=batch.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
    return torch.log_softmax(logits, -1).gather(2, batch[:, 1:, None].to(device))[..., 0].cpu()


def result_logprobs(lm: torch.nn.Module, codec: TextCodec, texts: Sequence[str]) -> torch.Tensor:
    """Summed log-probability of each claim-step text's result tokens (:func:`result_start` to the end)."""
    ids, starts = [], []
    for text in texts:
        head = codec.encode(text[: result_start(text)])
        full = codec.encode(text)
        if full[: len(head)] != head:  # the result merged into the token before it: score from that token
            head = full[: len(head) - 1]
        ids.append(full)
        starts.append(len(head))
    batch, mask = _batch(codec, ids)
    lp = _token_logprobs(lm, batch, mask)
    pos = torch.arange(batch.shape[1] - 1)[None]
    target = (pos >= torch.tensor(starts)[:, None] - 1) & (mask[:, 1:] > 0)
    return (lp * target).sum(1)


@torch.no_grad()
def completion_logprobs(
    lm: torch.nn.Module, codec: TextCodec, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and min log-probability of each completion's tokens (and the closing EOS) after its prompt."""
    was_training = lm.training
    lm.eval()
    means, mins = [], []
    for s in range(0, len(prompts), batch_size):
        heads = [codec.encode(p) for p in prompts[s : s + batch_size]]
        tails = [codec.encode(c) + [codec.eos_token_id] for c in completions[s : s + batch_size]]
        batch, mask = _batch(codec, [h + t for h, t in zip(heads, tails, strict=True)])
        lp = _token_logprobs(lm, batch, mask)
        for i, (h, t) in enumerate(zip(heads, tails, strict=True)):
            row = lp[i, len(h) - 1 : len(h) - 1 + len(t)]
            means.append(float(row.mean()))
            mins.append(float(row.min()))
    lm.train(was_training)
    return np.asarray(means), np.asarray(mins)


def train_contrastive_verifier(
    lm: torch.nn.Module,
    codec: TextCodec,
    pairs: Sequence[tuple[str, str]],
    steps: int = 1000,
    batch_size: int = 32,
    lr: float = 1e-4,
    bt: float = 1.0,
    seed: int = 0,
    log_every: int = 0,
) -> list[dict[str, float]]:
    """Fine-tune ``lm`` in place on contrastive ``(right, wrong)`` claim-step pairs; returns the logged losses.

    AdamW, 50 warm-up steps then a cosine to 10% of ``lr``, gradient norm clipped at 1.

    Args:
        lm: A causal LM (a copy of the policy: it is changed).
        codec: Its tokenizer.
        pairs: From :func:`~agents.reward_models.train.contrastive_step_pairs`.
        steps: Optimiser steps.
        batch_size: Pairs per step.
        lr: Peak learning rate.
        bt: Weight of the Bradley-Terry term between the right and the wrong result (0: SFT on right results).
        seed: Seeds the pair draws.
        log_every: Record ``loss`` and ``pair_accuracy`` every this many steps (0: only the last).
    """
    if not pairs:
        raise ValueError("no contrastive pairs: the solutions hold no checkable claim step `a op b = c`.")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}.")
    opt = torch.optim.AdamW(lm.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * s / steps)))
    )
    rng = np.random.default_rng(seed)
    log = []
    lm.train()
    for step in range(steps):
        batch = [pairs[i] for i in rng.integers(len(pairs), size=batch_size)]
        r = result_logprobs(lm, codec, [t for p in batch for t in p]).view(-1, 2)
        loss = -r[:, 0].mean() - bt * torch.nn.functional.logsigmoid(r[:, 0] - r[:, 1]).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        sched.step()
        if (log_every and (step + 1) % log_every == 0) or step + 1 == steps:
            acc = float((r[:, 0] > r[:, 1]).float().mean())
            log.append({"step": step + 1, "loss": round(loss.item(), 4), "pair_accuracy": acc})
    lm.eval()
    return log


class LikelihoodStepScorer:
    """A causal LM's likelihood of a solution prefix as a step scorer (the contrastive verifier in search).

    The score of step ``t`` is ``exp(mean log p(tokens of steps 1..t | prompt))``, the geometric-mean token
    probability of the prefix so far: with ``aggregate="last"`` a finished row's value is the whole solution's
    likelihood, the score the contrastive verifier ranks best-of-N samples by (:func:`completion_logprobs`),
    and a partial row is ranked by the same quantity on its prefix. Usable by
    :func:`agents.search.tree.search` from text (``__call__``) or, when it shares the policy's tokenizer,
    from the policy's own token ids (:meth:`token_step_scores`: one forward per row, no re-encoding).

    Args:
        lm: The verifier (e.g. the policy fine-tuned by :func:`train_contrastive_verifier`); put in eval mode.
        codec: Its tokenizer.
        batch_size: Rows per forward.
        separator: The step separator that closes each step of the scored prefix.
    """

    def __init__(self, lm: torch.nn.Module, codec: TextCodec, batch_size: int = 64, separator: str = "\n") -> None:
        self.lm, self.codec, self.batch_size, self.separator = lm.eval(), codec, batch_size, separator

    def shares_tokenizer(self, codec: TextCodec) -> bool:
        """Whether ``codec``'s token ids mean the same text to this verifier."""
        from lm_envs.tasks.math.prm import same_tokenizer

        return same_tokenizer(self.codec, codec)

    def __call__(self, problems, histories, steps) -> list[float]:  # noqa: ANN001  (tree.StepScorer)
        """Score each ``(problem, history, step)`` from text: prompt and prefix encoded here."""
        contexts, starts, ends = [], [], []
        for problem, history, step in zip(problems, histories, steps, strict=True):
            head = self.codec.encode(problem.prompt)
            full = self.codec.encode(problem.prompt + "".join(s + self.separator for s in (*history, step)))
            start = len(head) if full[: len(head)] == head else len(head) - 1  # a merge across the prompt's end
            contexts.append(full)
            starts.append(max(1, start))
            ends.append([len(full)])
        return [v[0] for v in self.token_step_scores(contexts, starts, ends)]

    @torch.no_grad()
    def token_step_scores(
        self, contexts: Sequence[Sequence[int]], starts: Sequence[int], ends: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """Geometric-mean probability of tokens ``starts[i] .. e - 1`` for each end ``e`` in ``ends[i]``.

        ``contexts[i]`` holds prompt ids then solution ids (``starts[i]``: where the solution starts); one
        forward per context serves all its ends.
        """
        out: list[list[float]] = []
        for s in range(0, len(contexts), self.batch_size):
            ids = [list(c) for c in contexts[s : s + self.batch_size]]
            batch, mask = _batch(self.codec, ids)
            lp = _token_logprobs(self.lm, batch, mask)  # lp[:, j] = log p(token j + 1 | tokens <= j)
            for i, row_ends in enumerate(ends[s : s + self.batch_size]):
                start = starts[s + i]
                if start < 1:
                    raise ValueError("a scored context needs at least one prompt token before the solution.")
                cum = torch.cumsum(lp[i, start - 1 :], 0)
                out.append([float(torch.exp(cum[e - start - 1] / (e - start))) if e > start else 1.0 for e in row_ends])
        return out
