"""The built-in environment ids, all under the ``LMEnv/`` namespace.

Bump ``-vN`` whenever the data, prompt, tokenizer, token budget or reward of an id changes,
because scores are tied to it. Each id's "Version History" is kept here.

``LMEnv/Math-v0``
    Generated multi-step arithmetic word problems (``word_problems("easy")``: 1-2 steps, numbers
    up to 100, ``+ - *``; 500 fixed test problems disjoint from train), gold solutions one claim per
    line then ``#### answer``. Outcome reward: 1 if the graded final answer is equivalent, else 0
    (``reward_kwargs`` change it: e.g. ``{"wrong": 0.2}`` for R3's partial credit). The episode
    stops on the ``####`` line. Budget: 160 prompt tokens, 96 new tokens. Its test split repeats some
    problems (found after release, kept for comparability: ``distinct_test=False``): 467 distinct
    prompts of 500, but only 294 distinct keys (template, variant and numbers; the rest differ in
    names or objects only). Its variant mix also differs from train's, because a variant with few
    keys gets whatever share of them hashes into the test bucket (e.g. ``travel/distance`` is 3% of
    test problems and 9% of train ones); re-weighting per-variant test accuracy to train's mix moved
    the accuracy of the ``math_few_demos`` models by 0.6-3.2 points.

    Version History:
        * v1: the test split has train's mix (``stratified_test=True``), see ``LMEnv/Math-v1``.
        * v0: initial release.

``LMEnv/Math-v1``
    ``LMEnv/Math-v0`` (same ``easy`` problems, prompt, reward, budgets and 500-problem test split
    evaluated by accuracy) with a test split stratified like train: each test problem picks its
    step count, template and variant as a train draw does and redraws only its numbers until its
    key falls in the test partition (``stratified_word_problems("easy", distinct_test=False)``,
    which sets ``stratified_test=True``, so ``task_kwargs`` passed to ``gym.make``, which replace
    the registered ones, keep the split stratified). v0 redraws the whole problem instead, so its test mix over-weights
    variants with many test keys and under-weights those with few (one-step ``travel`` is 3% of
    v0's test problems and 9% of train's, one-step ``area`` 14% of test and 9% of train); a task
    setting whose small variants get no test key at all (one-step problems of the ``basic``
    range) measured held-out accuracy on two templates of four. The partition is unchanged, so
    no test key is ever a train problem. Test problems still repeat (variants with few test keys,
    e.g. 4 for one-step ``travel``, are drawn as often as in train); a task setting with a
    variant that has no test key at all is an error naming the fix.

    Version History:
        * v1: test split with train's mix of steps, templates and variants.
        * v0: see ``LMEnv/Math-v0``.

``LMEnv/MathProcess-v0``
    ``LMEnv/Math-v0``'s problems with rule-based process rewards on top of the outcome: every
    step closed by a newline is checked with exact rational arithmetic and pays +0.1 if its claim
    holds, -0.5 if it is false, 0 if it has no checkable claim. Beware when optimising it: a
    negative reward for a wrong step also pays a policy for writing fewer steps (jumping straight to
    the ``####`` line); measured with GRPO on the tiny model, episode length fell from 20 to 4
    tokens. Pair it with an outcome weight that dominates, or use ``step_wrong=0``.

    Version History:
        * v0: initial release.

``LMEnv/MathTools-v0``
    ``LMEnv/Math-v0``'s problems, prompts and reward, with a calculator
    (:class:`~lm_envs.tasks.math.multi_turn.MathToolsTask`): ``</calc>`` ends the policy's turn, and
    the env appends `` = <value>`` of the expression after the last ``<calc>`` (exact arithmetic by
    the step verifier's safe parser, no ``eval``; an expression over 200 characters or one that
    does not parse gets `` = error: <why>``). The outcome is graded on the whole transcript (the
    ``####`` line). Budget: 160 prompt tokens, 160 tokens after the prompt (policy's and env's),
    96 per turn (a call never closed is truncated there, ``end_reason="max_turn_tokens"``), 8 turns.
    The prompt does not mention the tool: teach it by demonstrations or a system prompt.

    Version History:
        * v0: initial release.

``LMEnv/MathRetry-v0``
    Self-correction on ``LMEnv/Math-v0``'s problems (:class:`~lm_envs.tasks.math.multi_turn.MathRetryTask`,
    3 attempts): after a wrong final answer the env appends ``"Verifier: wrong answer. Try again."``
    and the policy answers again. Reward :class:`~lm_envs.tasks.math.multi_turn.RetryReward`: 1 if
    the final attempt is correct (``reward_kwargs={"attempt_discount": 0.5}`` discounts later
    attempts); evaluation adds ``first_attempt_accuracy``, ``accuracy_at_k`` and
    ``correct_to_wrong``. ``task_kwargs``: ``{"point_to_step": True}`` names the first step the step
    verifier flags; ``{"feedback": "always"}`` asks for a re-check after every attempt without
    saying whether it was right. Budget: 160 prompt tokens, 288 tokens after the prompt, 96 per
    attempt.

    Version History:
        * v0: initial release.

``LMEnv/Digits-v0``
    Write digits (:class:`~lm_envs.tasks.digits.DigitsTask`): each of the 8 generated tokens that
    is a digit earns 1/8. A trivially learnable env (the optimum is obvious and every token gets its
    own credit) for checking that agents learn, as SB3's identity envs do.

    Version History:
        * v0: initial release.

``LMEnv/DigitTurns-v0``
    The two-turn trivially learnable env (:class:`~lm_envs.tasks.digits.DigitTurnsTask`): a digit
    ends the policy's turn and pays 0.5; after the first the env appends ``" next:"``, after the
    second it ends the episode. Optimum 1.0 in two tokens. Checks that agents learn across env
    tokens without training on them. Budget: 16 prompt tokens, 16 tokens after the prompt.

    Version History:
        * v0: initial release.

``LMEnv/TargetWord-v0``
    Repeat a target word (:class:`~lm_envs.tasks.target_word.TargetWordTask`); reward
    :class:`~lm_envs.tasks.target_word.PrefixMatchReward` (0.8 x correct leading characters / length
    + 0.2 x exact match). Learnable from scratch with a little SFT; a first test of copying from the
    prompt. Budget: 32 prompt tokens, 8 new tokens.

    Version History:
        * v0: initial release.

``LMEnv/KnowledgeQA-v0``
    Abstention-aware short-answer QA over a synthetic knowledge world
    (:class:`~lm_envs.tasks.qa.world.KnowledgeQATask`, seed 0: 40 fictional people and 10 places,
    half of them *known*: their facts are in ``task.documents()``, the pre-training corpus, in four
    paraphrases each, with the known entities' QA-training pairs). ``train`` asks the known
    entities' facts except two held-out facts each (one for places), and every fact of half of the
    training-side unknown entities (gold answer ``" I don't know."``); ``sft`` has the same known
    questions and the other half (SFT and RL meet different unknown entities); ``test``
    interleaves the held-out known facts (45) with questions about unknown entities that appear in
    no training text (44); ``test_known`` / ``test_unknown`` serve each half. Reward
    :class:`~lm_envs.tasks.qa.rewards.AbstentionReward`: correct +1, abstain 0, wrong ``-t/(1-t)``
    with ``t = 0.5`` (-1); ``reward_kwargs`` change it (``{"threshold": 0.75}``). The episode stops
    after the first line. Evaluation adds the honesty metrics (accuracy, abstention, hallucination,
    precision, truthfulness per ``all/``, ``known/``, ``unknown/``; prudence, over-conservativeness,
    honesty). Budget: 64 prompt tokens, 16 new tokens.

    Version History:
        * v3: the answer (or abstention) starts the line after ``Answer:`` instead of following it
          after a space (:data:`~lm_envs.tasks.qa.world.V3_WORLD`: v2's world and questions), so the
          answer-or-abstain choice falls on the first generated token for every question. On v2 the
          default tokenizer makes the space its own token before names, years and ``"I"``, but part
          of the first token of an occupation (``" s"`` of ``" scholar"``): the choice fell on the
          second token for most relations and on the first for occupations, and RL learnt to abstain
          on unknown birthplaces, mentors and years but hardly on occupations (seed 0: the
          abstention's probability at T=0.5 rose 0.04 -> 0.49 on unknown birth years and 0.03 ->
          0.07 on unknown occupations). See ``LMEnv/KnowledgeQA-v3``.
        * v2: many more unknown entities and a balanced ``train`` (:data:`~lm_envs.tasks.qa.world.V2_WORLD`:
          600 people and 86 places, 7% known, so as many known entities as v1 and ten times the
          unknown ones; ``train`` alternates known and unknown questions). RL on v1 met 25 unknown
          entities about twenty times each and learnt to abstain on *those names* (training-set
          abstention 0.7-0.9, unseen entities 0.3); on v2 it meets about 490, each about once. Test:
          90 known and 480 unknown questions. See ``LMEnv/KnowledgeQA-v2``.
        * v1: a wider world (:data:`~lm_envs.tasks.qa.world.V1_WORLD`: 120 people and 20 places, 30%
          known), so RL meets 25 unknown entities instead of 6 and learns an abstention rule that
          transfers to unseen ones; and the held-out known facts are in the pre-training text in
          question form too (``mix_held_out``), so *known* means recallable (a tiny model extracts
          only about half of the statement-only facts, which made answering them a coin flip under
          the -1 penalty). Test: 78 known and 182 unknown questions. See ``LMEnv/KnowledgeQA-v1``.
        * v0: initial release.

``LMEnv/KnowledgeQA-v1``
    ``LMEnv/KnowledgeQA-v0`` with the v1 world above (task
    :func:`~lm_envs.tasks.qa.world.knowledge_qa_v1`; ``task_kwargs`` override single knobs and keep
    the rest of the v1 world).

    Version History:
        * v1: see ``LMEnv/KnowledgeQA-v0``'s history.

``LMEnv/KnowledgeQA-v2``
    ``LMEnv/KnowledgeQA-v0`` with the v2 world above (task
    :func:`~lm_envs.tasks.qa.world.knowledge_qa_v2`; ``task_kwargs`` override single knobs).

    Version History:
        * v2: see ``LMEnv/KnowledgeQA-v0``'s history.

``LMEnv/KnowledgeQA-v3``
    ``LMEnv/KnowledgeQA-v2`` with the answer on its own line (task
    :func:`~lm_envs.tasks.qa.world.knowledge_qa_v3`: prompt ``"Question: ...\\nAnswer:\\n"``, gold
    ``"Velmora"`` or ``"I don't know."``). The env of the ``qa_abstain`` experiment.

    Version History:
        * v3: see ``LMEnv/KnowledgeQA-v0``'s history.

``LMEnv/Chat-v0``
    Follow a short instruction (:class:`~lm_envs.tasks.chat.task.SyntheticInstructions`: a topic, a
    requested word count of 3-10, one or two keywords, no repeated words; 200 fixed test prompts),
    rendered with the plain ``User: ... Assistant:`` template. Reward
    :class:`~lm_envs.tasks.chat.reward.ChatReward`: a learned reward model's scalar score of
    (prompt, response) at the episode's end, all episodes that end in one vector step scored in one
    batched forward. The default RM is trained on first use (seconds, deterministic, cached under
    ``cache_dir()``) on the synthetic preference set whose order comes from a hidden gold rubric;
    the record holds the RM score (``rm_score``) and the rubric's ``gold`` score and parts, so reward
    over-optimisation is visible. ``reward_kwargs`` change it: ``{"reward_model": "<dir>"}`` (any
    one-output ``transformers`` sequence classifier), ``{"normalize": True}``,
    ``{"length_penalty": 0.01}``. Prompts from a messages JSONL:
    ``task="lm_envs.tasks.chat:load_chat_task"``. Budget: 128 prompt tokens, 32 new tokens.

    Version History:
        * v0: initial release. Since 2026-12-05 a reward model that ``lm-envs train-rm`` trained on
          prompts rendered through its own chat template scores the conversation rendered that way
          (before: the env's rendering); the default RM and every score without such a model are unchanged.
"""

from lm_envs.core.protocol import EvalProtocol
from lm_envs.core.registration import register

_MATH = {
    "task": "lm_envs.tasks.math:word_problems",
    "task_kwargs": {"preset": "easy", "distinct_test": False},
    "reward": "lm_envs.tasks.math.rewards:MathReward",
    "max_prompt_tokens": 160,
    "max_new_tokens": 96,
}

register("LMEnv/Math-v0", **_MATH, protocol=EvalProtocol(split="test", metric="accuracy"))
register(
    "LMEnv/Math-v1",
    **{**_MATH, "task": "lm_envs.tasks.math:stratified_word_problems"},
    protocol=EvalProtocol(split="test", metric="accuracy"),
)
register(
    "LMEnv/MathProcess-v0",
    **{**_MATH, "reward_kwargs": {"process": "rule"}},
    protocol=EvalProtocol(split="test", metric="accuracy"),
)
_MATH_TURNS = {**_MATH, "max_turn_tokens": 96, "protocol": EvalProtocol(split="test", metric="accuracy")}
register(
    "LMEnv/MathTools-v0",
    **{**_MATH_TURNS, "task": "lm_envs.tasks.math.multi_turn:MathToolsTask", "max_new_tokens": 160, "max_turns": 8},
)
register(
    "LMEnv/MathRetry-v0",
    **{
        **_MATH_TURNS,
        "task": "lm_envs.tasks.math.multi_turn:MathRetryTask",
        "reward": "lm_envs.tasks.math.multi_turn:RetryReward",
        "max_new_tokens": 288,
    },
)
register(
    "LMEnv/Digits-v0",
    task="lm_envs.tasks.digits:DigitsTask",
    reward="lm_envs.tasks.digits:DigitCountReward",
    max_prompt_tokens=16,
    max_new_tokens=8,
    reward_threshold=0.95,
    protocol=EvalProtocol(split="test", metric="mean_return", min_seeds=3, metric_range=(0, 1)),
)
register(
    "LMEnv/DigitTurns-v0",
    task="lm_envs.tasks.digits:DigitTurnsTask",
    reward="lm_envs.tasks.digits:ZeroReward",
    max_prompt_tokens=16,
    max_new_tokens=16,
    reward_threshold=0.95,
    protocol=EvalProtocol(split="test", metric="mean_return", min_seeds=3, metric_range=(0, 1)),
)
register(
    "LMEnv/TargetWord-v0",
    task="lm_envs.tasks.target_word:TargetWordTask",
    reward="lm_envs.tasks.target_word:PrefixMatchReward",
    max_prompt_tokens=32,
    max_new_tokens=8,
    reward_threshold=0.95,
    protocol=EvalProtocol(split="test", metric="mean_return", metric_range=(0, 1)),
)
_QA = {
    "reward": "lm_envs.tasks.qa.rewards:AbstentionReward",
    "max_prompt_tokens": 64,
    "max_new_tokens": 16,
    # correct +1, abstain 0, wrong -t/(1-t) = -1 at the default threshold t = 0.5
    "protocol": EvalProtocol(split="test", metric="mean_return", metric_range=(-1, 1)),
}
register("LMEnv/KnowledgeQA-v0", task="lm_envs.tasks.qa.world:KnowledgeQATask", **_QA)
register("LMEnv/KnowledgeQA-v1", task="lm_envs.tasks.qa.world:knowledge_qa_v1", **_QA)
register("LMEnv/KnowledgeQA-v2", task="lm_envs.tasks.qa.world:knowledge_qa_v2", **_QA)
register("LMEnv/KnowledgeQA-v3", task="lm_envs.tasks.qa.world:knowledge_qa_v3", **_QA)
register(
    "LMEnv/Chat-v0",
    task="lm_envs.tasks.chat:SyntheticInstructions",
    reward="lm_envs.tasks.chat.reward:ChatReward",
    max_prompt_tokens=128,
    max_new_tokens=32,
    protocol=EvalProtocol(split="test", metric="mean_return"),
)
