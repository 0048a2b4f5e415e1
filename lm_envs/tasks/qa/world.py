"""A seeded synthetic knowledge world that a model can partly know, and the QA task over it.

:class:`KnowledgeWorld` draws fictional **people** (birthplace, birth year, occupation, mentor) and
**places** (country, founding year) with invented names, deterministically from a seed (``random``
seeded from a SHA-256 of the seed, never Python's salted ``hash()``, so every process draws the
same world). Each entity belongs to one of three groups:

* ``known``: its facts are in the pre-training corpus (:meth:`KnowledgeWorld.documents`: every fact
  in four paraphrases, so a tiny model can memorise it);
* ``unknown_train``: never in the corpus; its questions appear in the QA training split;
* ``unknown_test``: never in the corpus nor in any training split: test questions only.

Relation values point only at ``known`` entities (a birthplace or mentor is always a known place or
person; without known entities, an ``unknown_train`` one), so no ``unknown_test`` name appears
anywhere in training text.

:class:`KnowledgeQATask` turns the world into questions, ``"Question: Where was Ilo Venrik
born?\\nAnswer:"`` with the answer and its aliases, in the splits

* ``train``: the known entities' facts except ``held_out`` relations of each (QA-SFT teaches the
  format on these; pre-training holds the knowledge), and every ``unknown_train`` question, whose
  gold solution is the abstention ``" I don't know."`` (a share ``1 - abstain_fraction`` of them
  get the true answer instead, by a hash of the question: ``abstain_fraction=0`` is SFT on answers,
  which teaches a model to make answers up);
* ``sft``: the known entities' training questions and those about a share ``sft_unknown_fraction``
  of the ``unknown_train`` entities (by a hash of the entity); ``train`` then holds the known
  questions and the *other* unknown entities (all of them when ``sft_unknown_fraction=1``). An SFT
  stage on ``sft`` (``sft.split=sft``) thus leaves RL (on ``train``) unknown entities the model was
  never taught anything about; SFT answers about an entity would make it known to the model;
* ``test_known``: the held-out facts of known entities: in the documents, never in QA training;
* ``test_unknown``: every question about ``unknown_test`` entities;
* ``test``: ``test_known`` and ``test_unknown`` interleaved in a fixed order.

:meth:`KnowledgeQATask.documents` (the pre-training text) is the fact corpus plus, by default
(``mix_qa=True``), the known entities' QA-training pairs in the prompt format, as in Allen-Zhu and
Li's "mixed training": that is what lets a small model answer *held-out* facts in question form.
The ``test_known`` questions never appear in question form, only as statements.

Every problem's ``metadata`` holds ``known`` (bool), ``group``, ``kind``, ``relation``, ``entity``,
``aliases`` and ``gold`` (``"answer"`` or ``"abstain"``), so metrics can be split by known/unknown.

Example:
    >>> task = KnowledgeQATask(seed=0)
    >>> p = task.problem("test_known", 0)
    >>> p.prompt.startswith("Question: "), p.metadata["known"], p.steps == (" " + p.answer,)
    (True, True, True)
    >>> q = task.problem("test_unknown", 0)
    >>> q.metadata["known"], q.steps
    (False, (" I don't know.",))
    >>> any(q.metadata["entity"] in doc for doc in task.documents())
    False
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from lm_envs.core.problem import Problem
from lm_envs.core.task import Task
from lm_envs.tasks.qa.matching import DEFAULT_ABSTENTION

__all__ = [
    "GROUPS",
    "PROMPT_TEMPLATE",
    "RELATIONS",
    "Entity",
    "KnowledgeQATask",
    "KnowledgeWorld",
    "V1_WORLD",
    "Question",
    "V2_WORLD",
    "V3_WORLD",
    "knowledge_qa_v1",
    "knowledge_qa_v2",
    "knowledge_qa_v3",
    "stable_unit",
]

PROMPT_TEMPLATE = "Question: {question}\nAnswer:"
"""Prompt of every QA problem (generated or loaded)."""

GROUPS = ("known", "unknown_train", "unknown_test")
"""Entity groups: in the corpus; unknown with training questions; unknown and test-only."""


@dataclass(frozen=True)
class _Relation:
    kind: str  # the subject's kind: person | place
    question: str  # QA question template over {s}
    documents: tuple[str, ...]  # corpus paraphrases over {s} and {o}


RELATIONS: dict[str, _Relation] = {
    "born_in": _Relation(
        "person",
        "Where was {s} born?",
        (
            "{s} was born in {o}.",
            "The birthplace of {s} is {o}.",
            "{s} comes from the city of {o}.",
            "{o} is the hometown of {s}.",
        ),
    ),
    "birth_year": _Relation(
        "person",
        "In what year was {s} born?",
        (
            "{s} was born in the year {o}.",
            "The birth year of {s} is {o}.",
            "In {o}, {s} was born.",
            "{s} has {o} as year of birth.",
        ),
    ),
    "occupation": _Relation(
        "person",
        "What was the occupation of {s}?",
        (
            "{s} worked as a {o}.",
            "The occupation of {s} was {o}.",
            "By trade, {s} was a {o}.",
            "{s} earned a living as a {o}.",
        ),
    ),
    "mentor": _Relation(
        "person",
        "Who was the mentor of {s}?",
        (
            "{s} was mentored by {o}.",
            "The mentor of {s} was {o}.",
            "{o} taught {s}.",
            "{s} learned the trade from {o}.",
        ),
    ),
    "country": _Relation(
        "place",
        "In which country is {s}?",
        (
            "{s} is a city in {o}.",
            "The country of {s} is {o}.",
            "{s} lies in {o}.",
            "{o} is home to the city of {s}.",
        ),
    ),
    "founded": _Relation(
        "place",
        "In what year was {s} founded?",
        (
            "{s} was founded in {o}.",
            "The founding year of {s} is {o}.",
            "In {o}, the city of {s} was founded.",
            "{s} was established in the year {o}.",
        ),
    ),
}
"""The relations, their QA question and their corpus paraphrases."""

_FIRST = ("a", "e", "i", "o", "u", "ka", "lo", "mi", "ta", "re", "sa", "no", "vi", "da", "be", "ro")
_SYLLABLES = (
    "ba", "dar", "el", "fen", "gor", "hal", "ir", "jas", "kel", "lin", "mor", "nav", "ost", "pel", "quin", "ras",
    "sel", "tor", "ul", "ven", "wyn", "xan", "yel", "zor", "bri", "cal", "dun", "esk", "fal", "grim", "har", "isk",
    "jor", "kar", "lum", "mar", "nor", "orn", "pra", "rik", "sten", "tav", "ur", "val", "wen", "yr", "zel", "thal",
)  # fmt: skip
_PLACE_ENDINGS = ("ford", "mere", "holm", "dale", "wick", "stead", "port", "gard", "ton", "vale")
_COUNTRIES = ("Drennia", "Ostavar", "Quellan", "Vireth", "Kalosia", "Marrowind", "Tessaly", "Ublund")
_OCCUPATIONS = (
    "baker", "painter", "sailor", "doctor", "farmer", "poet", "teacher", "miner",
    "weaver", "judge", "singer", "builder", "merchant", "soldier", "scholar", "potter",
)  # fmt: skip
_OCCUPATION_ALIASES = {
    "doctor": ("physician",),
    "sailor": ("seaman", "mariner"),
    "poet": ("poetess",),
    "teacher": ("schoolteacher",),
    "merchant": ("trader",),
    "builder": ("mason",),
}


def stable_unit(*parts: object) -> float:
    """A number in ``[0, 1)`` from SHA-256 of the parts: the same in every process and Python build.

    Example:
        >>> stable_unit("a", 1) == stable_unit("a", 1), 0 <= stable_unit("x") < 1
        (True, True)
    """
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _rng(*parts: object) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big"))


@dataclass(frozen=True)
class Entity:
    """One fictional entity.

    Attributes:
        id: ``"person/3"`` or ``"place/1"``.
        kind: ``"person"`` or ``"place"``.
        name: Its invented name (unique in the world).
        group: One of :data:`GROUPS`.
        facts: ``(relation, value)`` pairs in :data:`RELATIONS` order.
        aliases: Other accepted names when this entity is an answer (a person's surname).
    """

    id: str
    kind: str
    name: str
    group: str
    facts: tuple[tuple[str, str], ...]
    aliases: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        """Whether the entity's facts are in the pre-training corpus."""
        return self.group == "known"


@dataclass(frozen=True)
class Question:
    """A question about one fact of one entity.

    Attributes:
        id: ``"{entity id}/{relation}"``.
        entity: The subject entity.
        relation: A key of :data:`RELATIONS`.
        text: The question (without the prompt template).
        answer: The canonical answer.
        aliases: Other accepted answers.
    """

    id: str
    entity: Entity
    relation: str
    text: str
    answer: str
    aliases: tuple[str, ...]

    @property
    def known(self) -> bool:
        """Whether the fact is in the pre-training corpus."""
        return self.entity.known


class KnowledgeWorld:
    """A seeded world of fictional people and places (see the module docstring).

    Args:
        seed: World seed: the same seed gives the same world in every process.
        num_people: Number of people.
        num_places: Number of places (cities).
        known_fraction: Share of each kind's entities whose facts are in the corpus.
        unknown_test_fraction: Share of the remaining (unknown) entities kept for test only.

    Raises:
        ValueError: On sizes or fractions that leave a group empty (with the setting to change).

    Example:
        >>> w = KnowledgeWorld(seed=3, num_people=10, num_places=4)
        >>> [e.group for e in w.entities].count("known"), len(w.entities)
        (7, 14)
        >>> w.entities[0].name == KnowledgeWorld(seed=3, num_people=10, num_places=4).entities[0].name
        True
    """

    def __init__(
        self,
        seed: int = 0,
        num_people: int = 40,
        num_places: int = 10,
        known_fraction: float = 0.5,
        unknown_test_fraction: float = 0.5,
    ) -> None:
        for name, value in (("num_people", num_people), ("num_places", num_places)):
            if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 5000:
                raise ValueError(f"{name} must be an int in [2, 5000], got {value!r}.")
        for name, value in (("known_fraction", known_fraction), ("unknown_test_fraction", unknown_test_fraction)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}.")
        self.seed = seed
        self.num_people, self.num_places = num_people, num_places
        self.known_fraction, self.unknown_test_fraction = float(known_fraction), float(unknown_test_fraction)
        self.entities = self._draw()
        counts = {g: sum(e.group == g for e in self.entities) for g in GROUPS}
        if counts["known"] == 0:
            raise ValueError(
                f"known_fraction={known_fraction} leaves no known entities, so the known questions (test_known and "
                "the known part of train) and the documents would be empty; use known_fraction > 0 (e.g. 0.5) or "
                "more entities (num_people=..., num_places=...)."
            )
        settings = (("unknown_train", "unknown_test_fraction < 1"), ("unknown_test", "unknown_test_fraction > 0"))
        for group, setting in settings:
            if counts[group] == 0:
                raise ValueError(
                    f"known_fraction={known_fraction}, unknown_test_fraction={unknown_test_fraction} leave no "
                    f"{group} entities, so the unknown-entity questions of "
                    f"{'train' if group == 'unknown_train' else 'test_unknown'} would be empty; use known_fraction < 1 "
                    f"(e.g. 0.5), {setting}, or more entities (num_people=...)."
                )

    # ------------------------------------------------------------------ drawing

    def _split_groups(self, n: int, kind: str) -> list[str]:
        order = list(range(n))
        _rng("qa-world-groups", self.seed, kind).shuffle(order)
        n_known = round(self.known_fraction * n)
        n_test = round(self.unknown_test_fraction * (n - n_known))
        groups = [""] * n
        for rank, i in enumerate(order):
            groups[i] = "known" if rank < n_known else "unknown_test" if rank < n_known + n_test else "unknown_train"
        return groups

    def _draw(self) -> tuple[Entity, ...]:
        rng = _rng("qa-world", self.seed)
        used: set[str] = set()

        def word(lo: int, hi: int, ending: str = "") -> str:
            while True:
                w = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(lo, hi))) + ending
                if w not in used and len(w) >= 4:
                    used.add(w)
                    return w.capitalize()

        place_names = [word(1, 2, rng.choice(_PLACE_ENDINGS)) for _ in range(self.num_places)]
        surnames = [word(2, 2) for _ in range(self.num_people)]
        firsts = [(rng.choice(_FIRST) + rng.choice(_SYLLABLES)).capitalize() for _ in range(self.num_people)]
        place_groups = self._split_groups(self.num_places, "place")
        person_groups = self._split_groups(self.num_people, "person")

        def pool(names: Sequence[str], groups: Sequence[str]) -> list[int]:
            for allowed in ("known", "unknown_train"):  # never an unknown_test name as a value
                idx = [i for i, g in enumerate(groups) if g == allowed]
                if idx:
                    return idx
            return []

        place_pool = pool(place_names, place_groups)
        person_pool = pool(surnames, person_groups)
        entities: list[Entity] = []
        for i, name in enumerate(place_names):
            facts = (("country", rng.choice(_COUNTRIES)), ("founded", str(rng.randint(1000, 1699))))
            entities.append(Entity(f"place/{i}", "place", name, place_groups[i], facts))
        for i in range(self.num_people):
            name = f"{firsts[i]} {surnames[i]}"
            mentors = [j for j in person_pool if j != i]
            birthplace = place_names[rng.choice(place_pool)] if place_pool else ""
            mentor = rng.choice(mentors) if mentors else None
            facts = [
                ("born_in", birthplace),
                ("birth_year", str(rng.randint(1700, 1899))),
                ("occupation", rng.choice(_OCCUPATIONS)),
            ]
            if mentor is not None:
                facts.append(("mentor", f"{firsts[mentor]} {surnames[mentor]}"))
            facts = [(r, v) for r, v in facts if v]
            entities.append(Entity(f"person/{i}", "person", name, person_groups[i], tuple(facts), (surnames[i],)))
        return tuple(entities)

    # ------------------------------------------------------------------ access

    @cached_property
    def by_name(self) -> dict[str, Entity]:
        """Entities by name."""
        return {e.name: e for e in self.entities}

    def group(self, group: str) -> list[Entity]:
        """The entities of one group, in world order."""
        if group not in GROUPS:
            raise ValueError(f"unknown entity group {group!r}; choose one of {GROUPS}.")
        return [e for e in self.entities if e.group == group]

    def question(self, entity: Entity, relation: str) -> Question:
        """The question about ``relation`` of ``entity``, with its answer and aliases."""
        facts = dict(entity.facts)
        if relation not in facts:
            raise ValueError(f"{entity.name!r} has no fact {relation!r}; it has {sorted(facts)}.")
        value = facts[relation]
        aliases: tuple[str, ...] = ()
        if relation in ("birth_year", "founded"):
            aliases = (f"in {value}", f"the year {value}", f"in the year {value}")
        elif relation == "occupation":
            aliases = _OCCUPATION_ALIASES.get(value, ())
        elif relation == "mentor":
            aliases = self.by_name[value].aliases if value in self.by_name else ()
        elif relation == "born_in":
            aliases = (f"the city of {value}", f"in {value}")
        elif relation == "country":
            aliases = (f"in {value}",)
        text = RELATIONS[relation].question.format(s=entity.name)
        return Question(f"{entity.id}/{relation}", entity, relation, text, value, tuple(aliases))

    def questions(self, entity: Entity) -> list[Question]:
        """Every question about ``entity``, in :data:`RELATIONS` order."""
        return [self.question(entity, r) for r, _ in entity.facts]

    def documents(self, passes: int | None = None) -> Iterator[str]:
        """The fact corpus: short biographies of the known entities only.

        Pass ``r`` writes every known entity once, its facts in a shuffled order, each fact in
        paraphrase ``r`` of its relation (so ``passes`` = number of paraphrases covers each fact in
        every phrasing once). Entities come in a shuffled order per pass. Deterministic.

        Args:
            passes: Number of passes (default: the number of paraphrases per relation, 4).
        """
        n = len(next(iter(RELATIONS.values())).documents) if passes is None else passes
        known = self.group("known")
        for r in range(n):
            rng = _rng("qa-docs", self.seed, r)
            order = list(known)
            rng.shuffle(order)
            for entity in order:
                facts = list(entity.facts)
                rng.shuffle(facts)
                templates = [RELATIONS[rel].documents for rel, _ in facts]
                yield " ".join(
                    t[r % len(t)].format(s=entity.name, o=v) for t, (_, v) in zip(templates, facts, strict=True)
                )

    def __repr__(self) -> str:
        counts = {g: sum(e.group == g for e in self.entities) for g in GROUPS}
        return f"KnowledgeWorld(seed={self.seed}, {counts})"


class KnowledgeQATask(Task):
    """Short-answer questions over a :class:`KnowledgeWorld` (see the module docstring).

    Args:
        seed: World seed.
        num_people: Number of people in the world.
        num_places: Number of places in the world.
        known_fraction: Share of entities whose facts are in the corpus.
        unknown_test_fraction: Share of unknown entities kept for test only.
        held_out: Relations of each known entity held out of QA training for ``test_known``
            (chosen per entity by a seeded draw; at most all but one of the entity's facts, so every
            known entity keeps a fact in QA training).
        abstain_fraction: Share of the ``unknown_train`` questions whose gold solution is the
            abstention; the others' gold is the true answer (``0``: SFT on answers).
        abstention: The abstention text of gold solutions.
        sft_unknown_fraction: Share of the ``unknown_train`` entities whose questions are in the
            ``sft`` split; the others' are in ``train`` (below 1, the two splits share only the
            known questions; at 1, ``train`` has every unknown_train entity too).
        sft_known_fraction: Share of the known entities' training questions in the ``sft`` split
            (by a hash of the question). At 1 (v0, v1), ``sft`` and ``train`` hold the same known
            questions; below 1, ``train`` holds only the *other* ones, so RL meets known facts SFT
            never drilled, recalled as weakly as ``test_known``'s. (Measured on v1, seed 0, at 0.5:
            SFT then keeps less recall, and RL learns to abstain on known questions too; the
            ``qa_abstain`` experiment keeps the default.)
        mix_qa: Whether :meth:`documents` also holds the QA-training questions about known entities
            with their answers (Allen-Zhu and Li's "mixed training", Physics of Language Models 3.1:
            without QA examples among the pre-training text, a small model memorises statements but
            cannot extract held-out facts in question form). Held-out (``test_known``) facts stay in
            statement form only (unless ``mix_held_out``); unknown entities never appear.
        balance_train: Whether ``train`` alternates known and unknown questions, cycling the shorter
            side, so RL meets both equally often however many unknown entities the world has (off:
            each training question once, in a shuffled order).
        mix_held_out: Whether :meth:`documents` also holds the held-out (``test_known``) questions
            with their answers, so *known* means "in the pre-training text in question form" (what
            the model can recall) rather than "extractable from statements" (which a tiny model does
            for about half the facts). SFT and RL never see these questions either way.
        answer_on_new_line: Whether the prompt ends with a newline and the answer (or the
            abstention) starts the next line (``"...\\nAnswer:\\nVelmora"``), so the first generated
            token is where every question's answer-or-abstain choice is made. Off (v0-v2), the
            answer follows ``"Answer:"`` after a space, and with the default tokenizer the space is
            its own token before rare words (names, years, ``"I"``) but part of the first token of
            common ones (``" s"`` of ``" scholar"``): the choice then falls on the second token for
            most relations and on the first for occupations. The documents' QA pairs follow the
            same format, so they tokenize exactly as prompt plus answer do.

    Raises:
        ValueError: On bad settings, or a world with an empty group (naming the setting to change).
    """

    name = "knowledge_qa"
    splits = ("train", "sft", "test", "test_known", "test_unknown")

    def __init__(
        self,
        seed: int = 0,
        num_people: int = 40,
        num_places: int = 10,
        known_fraction: float = 0.5,
        unknown_test_fraction: float = 0.5,
        held_out: int = 2,
        abstain_fraction: float = 1.0,
        abstention: str = DEFAULT_ABSTENTION,
        sft_unknown_fraction: float = 0.5,
        sft_known_fraction: float = 1.0,
        mix_qa: bool = True,
        mix_held_out: bool = False,
        balance_train: bool = False,
        answer_on_new_line: bool = False,
    ) -> None:
        if not isinstance(held_out, int) or isinstance(held_out, bool) or held_out < 1:
            raise ValueError(
                f"held_out must be an int >= 1 (relations per known entity kept for test), got {held_out!r}."
            )
        if not isinstance(abstain_fraction, (int, float)) or not 0.0 <= abstain_fraction <= 1.0:
            raise ValueError(f"abstain_fraction must be a number in [0, 1], got {abstain_fraction!r}.")
        for name, value in (("sft_unknown_fraction", sft_unknown_fraction), ("sft_known_fraction", sft_known_fraction)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}.")
        if sft_known_fraction == 0.0 and sft_unknown_fraction == 0.0:
            raise ValueError(
                "sft_known_fraction=0 and sft_unknown_fraction=0 leave the sft split empty; raise either (e.g. 0.5)."
            )
        if not isinstance(abstention, str) or not abstention.strip():
            raise ValueError('abstention must be a non-empty text such as "I don\'t know.".')
        self.world = KnowledgeWorld(seed, num_people, num_places, known_fraction, unknown_test_fraction)
        self.held_out = held_out
        self.abstain_fraction = float(abstain_fraction)
        self.abstention = abstention.strip()
        self.mix_qa = bool(mix_qa)
        self.mix_held_out = bool(mix_held_out)
        self.sft_unknown_fraction = float(sft_unknown_fraction)
        self.sft_known_fraction = float(sft_known_fraction)
        self.balance_train = bool(balance_train)
        self.answer_on_new_line = bool(answer_on_new_line)
        self._splits = self._build_splits()

    def _build_splits(self) -> dict[str, tuple[Question, ...]]:
        seed = self.world.seed
        train: list[Question] = []
        test_known: list[Question] = []
        for entity in self.world.group("known"):
            qs = self.world.questions(entity)
            order = list(range(len(qs)))
            _rng("qa-held-out", seed, entity.id).shuffle(order)
            test_idx = set(order[: min(self.held_out, len(qs) - 1)])
            for i, q in enumerate(qs):
                (test_known if i in test_idx else train).append(q)
        for entity in self.world.group("unknown_train"):
            train.extend(self.world.questions(entity))
        test_unknown = [q for e in self.world.group("unknown_test") for q in self.world.questions(e)]
        _rng("qa-train-order", seed).shuffle(train)
        _rng("qa-test-known-order", seed).shuffle(test_known)
        _rng("qa-test-unknown-order", seed).shuffle(test_unknown)
        test = _interleave(test_known, test_unknown)
        self._known_train = tuple(q for q in train if q.known)  # pre-training's QA pairs (mix_qa)
        sft = [q for q in train if self.question_in_sft(q)]
        # RL (train) meets the questions SFT never showed, per kind where the fraction is below 1
        train = [
            q
            for q in train
            if not self.question_in_sft(q)
            or (q.known and self.sft_known_fraction == 1.0)
            or (not q.known and self.sft_unknown_fraction == 1.0)
        ]
        if self.balance_train:
            train = _alternate([q for q in train if q.known], [q for q in train if not q.known])
        return {
            "train": tuple(train),
            "sft": tuple(sft),
            "test": tuple(test),
            "test_known": tuple(test_known),
            "test_unknown": tuple(test_unknown),
        }

    def questions(self, split: str) -> tuple[Question, ...]:
        """The questions of ``split`` in index order."""
        self.check_split(split)
        return self._splits[split]

    def size(self, split: str) -> int:
        return len(self.questions(split))

    def in_sft(self, entity: Entity) -> bool:
        """Whether the questions about ``entity`` are in the ``sft`` split (known and a share of unknown_train)."""
        if entity.group == "unknown_test":
            return False
        return entity.known or stable_unit("qa-sft", self.world.seed, entity.id) < self.sft_unknown_fraction

    def question_in_sft(self, question: Question) -> bool:
        """Whether ``question`` is in the ``sft`` split (by :meth:`in_sft` and ``sft_known_fraction``)."""
        if not self.in_sft(question.entity):
            return False
        return not question.known or stable_unit("qa-sft-known", self.world.seed, question.id) < self.sft_known_fraction

    def gold_abstains(self, question: Question) -> bool:
        """Whether the gold solution of ``question`` is the abstention (unknown entities, by ``abstain_fraction``)."""
        if question.known:
            return False
        if question.entity.group == "unknown_test":
            return True
        return stable_unit("qa-gold", self.world.seed, question.id) < self.abstain_fraction

    def problem(self, split: str, index: int) -> Problem:
        self.check_index(split, index)
        q = self._splits[split][index]
        abstain = self.gold_abstains(q)
        return Problem(
            id=f"{split}/{index}",
            prompt=self._prompt(q),
            answer=q.answer,
            steps=(self._answer_text(self.abstention if abstain else q.answer),),
            metadata={
                "known": q.known,
                "group": q.entity.group,
                "kind": q.entity.kind,
                "relation": q.relation,
                "entity": q.entity.name,
                "question_id": q.id,
                "aliases": list(q.aliases),
                "gold": "abstain" if abstain else "answer",
            },
        )

    def _prompt(self, question: Question) -> str:
        prompt = PROMPT_TEMPLATE.format(question=question.text)
        return prompt + "\n" if self.answer_on_new_line else prompt

    def _answer_text(self, text: str) -> str:
        """``text`` as it follows the prompt: after a space, or alone on the new line."""
        return text if self.answer_on_new_line else " " + text

    def stops(self, step: str) -> bool:
        return True  # one line: the answer

    def format_only(self, problem: Problem, rng: random.Random) -> str:
        """The abstention, on every question: the one well-formed answer that needs no knowledge.

        Under :class:`~lm_envs.tasks.qa.rewards.AbstentionReward` it earns 0 per question; a random
        entity's name would earn about the wrong-answer penalty, so abstaining is the stronger
        knowledge-free reference (a score below it is worse than saying "I don't know" to everything).
        """
        return self._answer_text(self.abstention)

    def documents(self) -> Iterator[str]:
        """Pre-training text: the fact corpus over the known entities, then (``mix_qa``) their QA-training pairs."""
        yield from self.world.documents()
        if self.mix_qa:
            for q in self._known_train:
                yield self._prompt(q) + self._answer_text(q.answer)
        if self.mix_held_out:
            for q in self._splits["test_known"]:
                yield self._prompt(q) + self._answer_text(q.answer)

    def corpus(self) -> Iterator[str]:
        """Tokenizer text: the fact corpus, then the training prompts and gold answers."""
        yield from self.documents()
        yield from super().corpus()

    def __repr__(self) -> str:
        sizes = {s: self.size(s) for s in ("train", "test_known", "test_unknown")}
        return f"KnowledgeQATask(seed={self.world.seed}, {sizes}, abstain_fraction={self.abstain_fraction})"


V1_WORLD: dict[str, Any] = {
    "num_people": 120,
    "num_places": 20,
    "known_fraction": 0.3,
    "mix_held_out": True,
}
"""The world of ``LMEnv/KnowledgeQA-v1``: 140 entities, 42 known; RL meets 25 unknown entities (v0: 6)."""


def knowledge_qa_v1(**overrides: Any) -> KnowledgeQATask:
    """The task of ``LMEnv/KnowledgeQA-v1``: :data:`V1_WORLD` with ``overrides`` on top.

    A factory rather than registered ``task_kwargs``, so ``gym.make(..., task_kwargs={"abstain_fraction":
    0.5})`` changes one knob and keeps the v1 world (Gymnasium replaces a registered kwarg wholesale).

    Example:
        >>> task = knowledge_qa_v1(abstain_fraction=0.5)
        >>> task.abstain_fraction, len(task.world.group("known")), task.size("test_known"), task.size("test_unknown")
        (0.5, 42, 78, 182)
    """
    return KnowledgeQATask(**{**V1_WORLD, **overrides})


V2_WORLD: dict[str, Any] = {
    "num_people": 600,
    "num_places": 86,
    "known_fraction": 0.07,
    "unknown_test_fraction": 0.2,
    "sft_unknown_fraction": 0.05,
    "mix_held_out": True,
    "balance_train": True,
}
"""The world of ``LMEnv/KnowledgeQA-v2``: as many known entities as v1 (42 people, 6 places), ten times
the unknown ones, so RL meets hundreds of unknown entities about once each instead of 25 about twenty
times each; ``train`` alternates known and unknown questions."""


def knowledge_qa_v2(**overrides: Any) -> KnowledgeQATask:
    """The task of ``LMEnv/KnowledgeQA-v2``: :data:`V2_WORLD` with ``overrides`` on top.

    Example:
        >>> task = knowledge_qa_v2(abstain_fraction=0.5)
        >>> len(task.world.group("known")), task.size("test_known"), task.size("test_unknown")
        (48, 90, 480)
    """
    return KnowledgeQATask(**{**V2_WORLD, **overrides})


V3_WORLD: dict[str, Any] = {**V2_WORLD, "answer_on_new_line": True}
"""The settings of ``LMEnv/KnowledgeQA-v3``: the v2 world with the answer on the line after ``"Answer:"``, so
every question's answer-or-abstain choice falls on the first generated token (see ``answer_on_new_line``)."""


def knowledge_qa_v3(**overrides: Any) -> KnowledgeQATask:
    """The task of ``LMEnv/KnowledgeQA-v3``: :data:`V3_WORLD` with ``overrides`` on top.

    Example:
        >>> task = knowledge_qa_v3(abstain_fraction=0.5)
        >>> p = task.problem("test_known", 0)
        >>> p.prompt.endswith("Answer:\\n"), p.steps == (p.answer,), task.size("test_unknown")
        (True, True, 480)
    """
    return KnowledgeQATask(**{**V3_WORLD, **overrides})


def _alternate(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    """``a[0], b[0], a[1], b[1], ...`` for as long as the longer list, cycling the shorter one.

    Example:
        >>> _alternate([1, 2], "abcd")
        [1, 'a', 2, 'b', 1, 'c', 2, 'd']
    """
    if not a or not b:
        return [*a, *b]
    return [x for i in range(max(len(a), len(b))) for x in (a[i % len(a)], b[i % len(b)])]


def _interleave(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    """Merge two lists keeping each one's order, spreading the shorter one evenly."""
    out: list[Any] = []
    i = j = 0
    while i < len(a) or j < len(b):
        if j >= len(b) or (i < len(a) and (i + 1) * len(b) <= (j + 1) * len(a)):
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out
