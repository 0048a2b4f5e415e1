"""Procedural multi-step arithmetic word problems with checkable gold solutions.

:class:`ArithmeticWordProblems` generates seeded, deterministic word problems (shopping, travel,
sharing, ages, areas, percentages, number puzzles and linear equations, running totals). Each
gold solution is one arithmetic claim per step, written ``12 * 3 = 36``, followed by a final
answer line ``#### 36``, so every step can be verified by
:func:`lm_envs.tasks.math.steps.check_step` and the answer by an outcome grader.

Difficulty is set by the number of steps, the number range, the operations (``+ - * /``) and
whether non-integer values (fractions, decimals) may appear. ``train`` is effectively unlimited;
``test`` is a fixed held-out set that never shares a problem with ``train``: every problem has
a canonical key (template, variant and numbers, not the names or wording), a fixed 1/16 of the
key space is reserved for ``test`` by a hash of the key, and ``train`` redraws any problem whose
key falls there. The reserved partition depends on the key only, so no seed or difficulty
setting can leak a test problem into any training stream. By default ``test`` redraws its whole
problem until the key is a test key, so its mix of templates follows how many test keys each one
has; ``stratified_test=True`` picks step count, template and variant as ``train`` does and
redraws only the numbers, so ``test`` has ``train``'s mix (``LMEnv/Math-v1``).

Example:
    >>> task = ArithmeticWordProblems.from_preset("easy", seed=0)
    >>> p = task.problem("train", 0)
    >>> p.prompt.endswith("\\nSolution:\\n"), p.steps[-1] == f"#### {p.answer}"
    (True, True)
    >>> task.problem("train", 0) == p
    True
    >>> task.stops(p.steps[-1]), task.stops(p.steps[0])
    (True, False)
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any

from lm_envs.core.problem import Problem
from lm_envs.core.task import Task
from lm_envs.tasks.math.steps import format_value

__all__ = [
    "FINAL_ANSWER_PREFIX",
    "OPERATIONS",
    "PRESETS",
    "PROMPT_TEMPLATE",
    "TEMPLATES",
    "ArithmeticWordProblems",
    "render_prompt",
]

PROMPT_TEMPLATE = "{question}\nSolution:\n"
"""Prompt of every math problem (generated or loaded): the question, then ``Solution:``."""
FINAL_ANSWER_PREFIX = "####"
"""The final answer line of a solution starts with this (GSM8K convention)."""
OPERATIONS = ("+", "-", "*", "/")
"""The arithmetic operations a generator may use."""
TEMPLATES = ("inventory", "shopping", "travel", "sharing", "ages", "area", "percent", "equation")
"""Problem templates, each with several variants of different lengths."""
MAX_STEPS = 8
"""Largest supported number of arithmetic steps per problem."""
TEST_MODULUS = 16
"""One key in ``TEST_MODULUS`` (by hash) is reserved for the test split."""

PRESETS: dict[str, dict[str, Any]] = {
    "basic": {"min_steps": 1, "max_steps": 2, "max_value": 20, "operations": ("+", "-", "*"), "test_size": 300},
    "easy": {"min_steps": 1, "max_steps": 2, "max_value": 99, "operations": ("+", "-", "*")},
    "medium": {"min_steps": 2, "max_steps": 4, "max_value": 1000, "operations": OPERATIONS},
    "hard": {
        "min_steps": 3,
        "max_steps": 6,
        "max_value": 10000,
        "operations": OPERATIONS,
        "fractions": True,
        "decimals": True,
    },
}
"""Named difficulty settings for :meth:`ArithmeticWordProblems.from_preset`. ``easy`` (1-2 steps,
numbers below 100, ``+ - *``) is ``LMEnv/Math-v0``'s. ``basic`` (numbers up to 20) is for quick
experiments; its key space is small (about 3,500 train and 400 test keys, hence 300 test problems),
so a model trained for long on it can memorise the train problems instead of learning arithmetic."""

_MAX_ATTEMPTS = 2000
_PROBE_ATTEMPTS = 1000
"""Number draws per variant that must yield a test key when ``stratified_test`` (checked at construction)."""
_STRATIFIED_ATTEMPTS = 20 * _PROBE_ATTEMPTS
"""Number draws a ``stratified_test`` problem may take to land in the test partition before giving up."""


def render_prompt(question: str) -> str:
    """Apply :data:`PROMPT_TEMPLATE` to a question (shared by the generator and the loaders).

    Example:
        >>> render_prompt("What is 2 + 3?")
        'What is 2 + 3?\\nSolution:\\n'
    """
    return PROMPT_TEMPLATE.format(question=question.strip())


# --------------------------------------------------------------------------------------------
# Drawing numbers and recording the gold steps of one problem.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Config:
    ops: frozenset[str]
    min_value: int
    max_value: int
    fractions: bool
    decimals: bool


class _Redraw(Exception):
    """The current draw violates a constraint; draw again."""


_PEOPLE = (
    ("Mia", "she"),
    ("Liam", "he"),
    ("Ava", "she"),
    ("Noah", "he"),
    ("Zoe", "she"),
    ("Omar", "he"),
    ("Lena", "she"),
    ("Ravi", "he"),
    ("Sofia", "she"),
    ("Kenji", "he"),
    ("Emma", "she"),
    ("Diego", "he"),
    ("Priya", "she"),
    ("Tom", "he"),
    ("Nora", "she"),
    ("Ali", "he"),
    ("Hana", "she"),
    ("Ben", "he"),
    ("Chloe", "she"),
    ("Sam", "he"),
)
_PRONOUNS = {"she": ("she", "her", "her"), "he": ("he", "him", "his")}


@dataclass(frozen=True)
class _Person:
    name: str
    subj: str  # she / he
    obj: str  # her / him
    pos: str  # her / his

    @property
    def Subj(self) -> str:  # noqa: N802 - reads like the capitalised pronoun it is
        return self.subj.capitalize()


class _Draw:
    """Random choices, formatting and the recorded gold steps of one problem."""

    def __init__(self, rng: random.Random, cfg: _Config) -> None:
        self.rng = rng
        self.cfg = cfg
        self.steps: list[str] = []
        self.used: set[str] = set()
        self.money_story = False  # set by money stories: non-integers only as cents, never as 7/3 dollars
        self._names: list[str] = []

    # random choices --------------------------------------------------------------------------
    def randint(self, lo: float | Fraction, hi: float | Fraction) -> int:
        lo_i, hi_i = math.ceil(lo), math.floor(hi)
        if lo_i > hi_i:
            raise _Redraw
        return self.rng.randint(lo_i, hi_i)

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.rng.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def person(self) -> _Person:
        """A person not yet used in this problem."""
        while True:
            name, pronoun = self.choice(_PEOPLE)
            if name not in self._names:
                self._names.append(name)
                return _Person(name, *_PRONOUNS[pronoun])

    def base(self, hi: float | Fraction, lo: int = 1) -> int:
        """A base quantity (start amount, total): in ``[max(lo, min_value), hi]``."""
        return self.randint(max(lo, self.cfg.min_value), min(hi, self.cfg.max_value))

    def small(self, lo: int = 2, hi: int = 9) -> int:
        """A small count or factor (quantities, multipliers, hours, divisors)."""
        return self.randint(lo, min(hi, self.cfg.max_value))

    def amount(self, hi: float | Fraction, lo: int = 1, decimal: bool | None = None) -> Fraction:
        """A quantity in ``[lo, hi]``; with decimals enabled, often in quarters or tenths."""
        if decimal is None:
            decimal = self.cfg.decimals and self.chance(0.6)
        if decimal:
            denominator = self.choice((2, 4, 10))
            value = Fraction(self.randint(lo * denominator, math.floor(hi * denominator)), denominator)
            if value.denominator == 1:  # keep it visibly decimal
                value += Fraction(1, denominator) if value + Fraction(1, denominator) <= hi else 0
            return value
        return Fraction(self.randint(lo, hi))

    # formatting ------------------------------------------------------------------------------
    def fmt(self, value: Fraction | int) -> str:
        return format_value(Fraction(value), decimals=self.cfg.decimals)

    def count(self, value: Fraction | int, plural: str) -> str:
        """``"3 marbles"``, ``"1 marble"``."""
        return f"{self.fmt(value)} {plural if value != 1 else _singular(plural)}"

    def operand(self, value: Fraction | int) -> str:
        text = self.fmt(value)
        return f"({text})" if "/" in text or text.startswith("-") else text

    def money(self, value: Fraction | int) -> str:
        value = Fraction(value)
        if value.denominator == 1:
            return f"${value.numerator}"
        return f"${float(value):.2f}" if (value * 100).denominator == 1 else f"${self.fmt(value)}"

    # checked arithmetic ----------------------------------------------------------------------
    def check(self, value: Fraction, integer: bool = False) -> Fraction:
        if value < 0 or value > self.cfg.max_value:
            raise _Redraw
        if value.denominator != 1:
            decimal_ok = self.cfg.decimals and (value * 100).denominator == 1
            fraction_ok = self.cfg.fractions and value.denominator <= 12 and not self.money_story
            if integer or not (decimal_ok or fraction_ok):
                raise _Redraw
        return value

    def calc(self, a: Fraction | int, op: str, b: Fraction | int, integer: bool = False) -> Fraction:
        """Compute ``a op b``, check it against the limits and record the step ``a op b = v``."""
        a, b = Fraction(a), Fraction(b)
        if op == "+":
            value = a + b
        elif op == "-":
            value = a - b
        elif op == "*":
            value = a * b
        elif op == "/":
            if b == 0:
                raise _Redraw
            value = a / b
        else:  # pragma: no cover - programming error
            raise ValueError(f"unknown operation {op!r}")
        self.check(value, integer)
        self.steps.append(f"{self.operand(a)} {op} {self.operand(b)} = {self.fmt(value)}")
        self.used.add(op)
        return value

    def percent_of(self, value: Fraction | int, percent: int) -> Fraction:
        """Record ``value * percent / 100 = v``."""
        result = self.check(Fraction(value) * percent / 100)
        self.steps.append(f"{self.operand(value)} * {percent} / 100 = {self.fmt(result)}")
        self.used.update(("*", "/"))
        return result


# A template variant builds the question and records the steps; it returns the question, the
# answer and the numbers that (with template and variant names) form the problem's key.
_Build = Callable[[_Draw], tuple[str, Fraction, tuple[Any, ...]]]


@dataclass(frozen=True)
class _Variant:
    template: str
    name: str
    steps: int
    needs: frozenset[str]
    build: _Build
    any_of: frozenset[str] = frozenset()

    def feasible(self, ops: frozenset[str]) -> bool:
        return self.needs <= ops and (not self.any_of or bool(self.any_of & ops))


_VARIANTS: list[_Variant] = []


def _variant(template: str, name: str, steps: int, needs: str = "", any_of: str = "") -> Callable[[_Build], _Build]:
    def register(build: _Build) -> _Build:
        _VARIANTS.append(_Variant(template, name, steps, frozenset(needs), build, frozenset(any_of)))
        return build

    return register


def _singular(plural: str) -> str:
    """The singular of the plural nouns used here (``pairs of shoes`` -> ``pair of shoes``)."""
    head, sep, tail = plural.partition(" of ")
    for suffix, replacement in (("ies", "y"), ("ches", "ch"), ("s", "")):
        if head.endswith(suffix):
            return head[: -len(suffix)] + replacement + sep + tail
    return plural


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# --------------------------------------------------------------------------------------------
# Template: inventory (a running total over 1..MAX_STEPS events).
# --------------------------------------------------------------------------------------------
_COLLECTIONS = (
    "marbles",
    "stickers",
    "stamps",
    "books",
    "trading cards",
    "shells",
    "apples",
    "pencils",
    "beads",
    "toy cars",
    "balloons",
    "seashells",
)
_THEN = ("", "Then ", "After that, ", "Next, ", "Later, ")


def _inventory(d: _Draw, n: int) -> tuple[str, Fraction, tuple[Any, ...]]:
    cfg = d.cfg
    who, friend = d.person(), d.person()
    money = cfg.decimals and bool({"+", "-"} & cfg.ops) and d.chance(0.5)
    allowed = [op for op in OPERATIONS if op in cfg.ops and (not money or op in "+-")]
    d.money_story = money
    things = "" if money else d.choice(_COLLECTIONS)
    current = d.amount(cfg.max_value // 2 if n > 1 else cfg.max_value, lo=max(2, cfg.min_value), decimal=money)
    if money:
        sentences = [f"{who.name} has {d.money(current)} in {who.pos} piggy bank."]
    else:
        sentences = [f"{who.name} has {d.count(current, things)}."]
    numbers: list[Any] = [current]
    for i in range(n):
        feasible = []
        for op in allowed:
            if (
                (op == "+" and current + 1 <= cfg.max_value)
                or (op == "-" and current >= 2)
                or (op == "*" and current * 2 <= cfg.max_value and current.denominator == 1)
                or (op == "/" and current.denominator == 1 and any(current % k == 0 for k in range(2, 10)))
            ):
                feasible.append(op)
        if not feasible:
            raise _Redraw
        op = d.choice(feasible)
        if op == "+":
            k = d.amount(min(cfg.max_value - current, max(10, cfg.max_value // 2)), decimal=money)
            if money:
                text = d.choice(
                    (
                        f"{who.name} earns {d.money(k)} for helping a neighbor.",
                        f"{who.name} gets {d.money(k)} from {friend.name}.",
                        f"{who.name} saves another {d.money(k)}.",
                    )
                )
            else:
                text = d.choice(
                    (
                        f"{who.name} buys {d.count(k, 'more ' + things)}.",
                        f"{friend.name} gives {who.name} {d.count(k, things)}.",
                        f"{who.name} finds {d.count(k, 'more ' + things)}.",
                        f"{who.name} wins {d.count(k, things)} in a game.",
                    )
                )
        elif op == "-":
            k = d.amount(current - 1, decimal=money)
            if money:
                text = d.choice(
                    (
                        f"{who.name} spends {d.money(k)}.",
                        f"{who.name} pays {d.money(k)} for a present.",
                        f"{who.name} gives {d.money(k)} to {friend.name}.",
                    )
                )
            else:
                text = d.choice(
                    (
                        f"{who.name} gives {d.count(k, things)} to {friend.name}.",
                        f"{who.name} loses {d.count(k, things)}.",
                        f"{who.name} trades away {d.count(k, things)}.",
                        f"{who.name} sells {d.count(k, things)}.",
                    )
                )
        elif op == "*":
            k = Fraction(d.small(2, min(9, cfg.max_value // int(current))))
            text = {
                2: f"The number of {things} {who.name} has doubles.",
                3: f"The number of {things} {who.name} has triples.",
            }.get(int(k), f"{who.name} ends up with {d.fmt(k)} times as many {things} as before.")
        else:
            k = Fraction(d.choice([k for k in range(2, 10) if current % k == 0]))
            text = f"{who.name} splits {who.pos} {things} into {d.fmt(k)} equal groups and keeps one group."
        current = d.calc(current, op, k, integer=not money)
        numbers += [op, k]
        if i and text.startswith(who.name + " ") and d.chance(0.5):
            text = who.Subj + text[len(who.name) :]
        then = d.choice(_THEN) if i else ""
        if then and text.startswith(who.Subj + " "):
            text = who.subj + text[len(who.Subj) :]
        sentences.append(then + text)
    question = f"How much money does {who.name} have now?" if money else f"How many {things} does {who.name} have now?"
    return " ".join([*sentences, question]), current, tuple(numbers)


for _n in range(1, MAX_STEPS + 1):
    _variant("inventory", f"chain{_n}", _n, any_of="+-*/")(partial(_inventory, n=_n))


# --------------------------------------------------------------------------------------------
# Template: shopping (quantities times prices, a total, optionally change from a bill).
# --------------------------------------------------------------------------------------------
_GOODS = (  # singular, plural, price range in dollars
    ("notebook", "notebooks", 1, 9),
    ("pen", "pens", 1, 5),
    ("apple", "apples", 1, 3),
    ("cupcake", "cupcakes", 1, 6),
    ("comic", "comics", 2, 10),
    ("toy car", "toy cars", 2, 15),
    ("sandwich", "sandwiches", 3, 12),
    ("plant", "plants", 3, 20),
    ("ticket", "tickets", 4, 25),
    ("book", "books", 5, 30),
    ("board game", "board games", 15, 60),
    ("pair of shoes", "pairs of shoes", 25, 120),
    ("bicycle", "bicycles", 80, 400),
    ("phone", "phones", 150, 900),
    ("laptop", "laptops", 300, 1500),
    ("sofa", "sofas", 400, 2500),
)


def _goods(d: _Draw, count: int, budget: float | Fraction) -> list[tuple[str, str, int, int]]:
    """``count`` distinct goods whose cheapest price fits ``budget`` for a few of each."""
    affordable = [g for g in _GOODS if 2 * g[2] <= budget]
    if len(affordable) < count:
        raise _Redraw
    return d.rng.sample(affordable, count)


_BILLS = (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def _shopping(d: _Draw, kinds: int, change: bool) -> tuple[str, Fraction, tuple[Any, ...]]:
    d.money_story = True
    cfg = d.cfg
    who = d.person()
    budget = cfg.max_value / kinds
    parts, numbers, costs = [], [], []
    for _, plural, lo, hi in _goods(d, kinds, budget):
        qty = d.small(2, 9)
        price = d.amount(min(hi, budget / qty), lo=lo)
        parts.append(f"{qty} {plural} for {d.money(price)} each")
        numbers += [qty, price]
        costs.append(d.calc(qty, "*", price))
    total = costs[0]
    for cost in costs[1:]:
        total = d.calc(total, "+", cost)
    question = f"{who.name} buys {_join(parts)}."
    if change:
        bills = [b for b in _BILLS if total < b <= cfg.max_value]
        if not bills:
            raise _Redraw
        bill = d.choice(bills[:3])
        numbers.append(bill)
        answer = d.calc(bill, "-", total)
        question += f" {who.Subj} pays with a ${bill} bill. How much change does {who.subj} get, in dollars?"
    else:
        answer = total
        question += f" How many dollars does {who.name} spend in total?"
    return question, answer, tuple(numbers)


for _k in range(1, 5):
    for _c in (False, True):
        _steps = 2 * _k - 1 + _c
        if _steps <= MAX_STEPS:
            _variant("shopping", f"items{_k}{'_change' if _c else ''}", _steps, "*" + "+" * (_k > 1) + "-" * _c)(
                partial(_shopping, kinds=_k, change=_c)
            )


# --------------------------------------------------------------------------------------------
# Template: travel (speed, time and distance).
# --------------------------------------------------------------------------------------------
_MOVERS = (  # who moves (None: a person), verb, speed range
    ("A train", "travels", 40, 120),
    ("A bus", "travels", 20, 60),
    ("A boat", "sails", 8, 30),
    (None, "drives", 30, 90),
    (None, "cycles", 8, 25),
    (None, "runs", 5, 12),
)


def _speed(d: _Draw, lo: int, hi: int, cap: float | Fraction) -> Fraction:
    """A speed in the mover's range, lowered to fit ``cap`` when the number range is small."""
    top = min(hi, cap)
    return d.amount(top, lo=max(1, min(lo, math.floor(top))))


def _mover(d: _Draw) -> tuple[str, str, int, int, str]:
    """Subject, verb, speed range and distance unit of a trip."""
    subject, verb, lo, hi = d.choice(_MOVERS)
    return subject or d.person().name, verb, lo, hi, d.choice(("km", "miles"))


@_variant("travel", "distance", 1, "*")
def _travel_distance(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    subject, verb, lo, hi, unit = _mover(d)
    hours = d.small(2, 8)
    speed = _speed(d, lo, hi, d.cfg.max_value / hours)
    dist = d.calc(speed, "*", hours)
    q = f"{subject} {verb} at {d.fmt(speed)} {unit} per hour for {hours} hours. How many {unit} does that cover?"
    return q, dist, (speed, hours)


@_variant("travel", "time", 1, "/")
def _travel_time(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    subject, _, lo, hi, unit = _mover(d)
    speed = d.randint(min(lo, d.cfg.max_value // 4), min(hi, d.cfg.max_value // 2))
    if d.cfg.fractions or d.cfg.decimals:
        dist = d.base(d.cfg.max_value, lo=speed)
    else:
        dist = speed * d.small(2, min(12, d.cfg.max_value // speed))
    hours = d.calc(dist, "/", speed)
    q = (
        f"{subject} needs to cover {dist} {unit} at a steady {speed} {unit} per hour. "
        f"How many hours does the trip take?"
    )
    return q, hours, (dist, speed)


@_variant("travel", "extra", 2, "*+")
def _travel_extra(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    subject, verb, lo, hi, unit = _mover(d)
    hours = d.small(2, 6)
    speed = _speed(d, lo, hi, d.cfg.max_value / hours / 2)
    extra = d.amount(d.cfg.max_value / 3)
    first = d.calc(speed, "*", hours)
    total = d.calc(first, "+", extra)
    q = (
        f"{subject} {verb} at {d.fmt(speed)} {unit} per hour for {hours} hours, and then another "
        f"{d.fmt(extra)} {unit}. How many {unit} is the whole trip?"
    )
    return q, total, (speed, hours, extra)


@_variant("travel", "left", 2, "*-")
def _travel_left(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    subject, verb, lo, hi, unit = _mover(d)
    hours = d.small(2, 6)
    speed = _speed(d, lo, hi, d.cfg.max_value / hours / 2)
    first = d.calc(speed, "*", hours)
    trip = d.amount(min(d.cfg.max_value, 3 * first + 20), lo=math.floor(first) + 1)
    left = d.calc(trip, "-", first)
    q = (
        f"A trip is {d.fmt(trip)} {unit} long. {subject} {verb} at {d.fmt(speed)} {unit} per hour "
        f"for {hours} hours. How many {unit} are left?"
    )
    return q, left, (trip, speed, hours)


def _two_legs(d: _Draw) -> tuple[str, str, list[Any]]:
    subject, verb, lo, hi, unit = _mover(d)
    h1, h2 = d.small(1, 5), d.small(1, 5)
    s1 = _speed(d, lo, hi, d.cfg.max_value / (2 * h1))
    s2 = _speed(d, lo, hi, d.cfg.max_value / (2 * h2))
    hours = lambda h: "1 hour" if h == 1 else f"{h} hours"  # noqa: E731
    text = (
        f"{subject} {verb} at {d.fmt(s1)} {unit} per hour for {hours(h1)}, then at "
        f"{d.fmt(s2)} {unit} per hour for {hours(h2)}."
    )
    return text, unit, [s1, h1, s2, h2]


@_variant("travel", "legs", 3, "*+")
def _travel_legs(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    text, unit, (s1, h1, s2, h2) = _two_legs(d)
    total = d.calc(d.calc(s1, "*", h1), "+", d.calc(s2, "*", h2))
    return f"{text} How many {unit} does the trip cover in total?", total, (s1, h1, s2, h2)


@_variant("travel", "legs_left", 4, "*+-")
def _travel_legs_left(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    text, unit, (s1, h1, s2, h2) = _two_legs(d)
    d1, d2 = d.calc(s1, "*", h1), d.calc(s2, "*", h2)
    done = d.calc(d1, "+", d2)
    trip = d.amount(min(d.cfg.max_value, 3 * done + 20), lo=math.floor(done) + 1)
    left = d.calc(trip, "-", done)
    q = f"A journey is {d.fmt(trip)} {unit} long. {text} How many {unit} of the journey are left?"
    return q, left, (trip, s1, h1, s2, h2)


@_variant("travel", "average", 5, "*+/")
def _travel_average(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    text, unit, (s1, h1, s2, h2) = _two_legs(d)
    d1, d2 = d.calc(s1, "*", h1), d.calc(s2, "*", h2)
    dist = d.calc(d1, "+", d2)
    time = d.calc(h1, "+", h2)
    avg = d.calc(dist, "/", time)
    return f"{text} What is the average speed for the whole trip, in {unit} per hour?", avg, (s1, h1, s2, h2)


# --------------------------------------------------------------------------------------------
# Template: sharing (equal division).
# --------------------------------------------------------------------------------------------
_COUNTABLE = ("cookies", "stickers", "marbles", "grapes", "cards", "candies", "crayons", "coins")
_DIVISIBLE = (
    ("pizzas", "pizza"),
    ("cakes", "cake"),
    ("liters of juice", "liters"),
    ("meters of ribbon", "meters"),
)


@_variant("sharing", "split", 1, "/")
def _sharing_split(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    who = d.person()
    people = d.small(2, 9)
    if (d.cfg.fractions or d.cfg.decimals) and d.chance(0.5):
        things, unit = d.choice(_DIVISIBLE)
        total = d.base(min(d.cfg.max_value, 40), lo=people // 2 + 1)
        each = d.calc(total, "/", people)
        q = f"{who.name} shares {total} {things} equally among {people} friends. How many {unit} does each friend get?"
    else:
        things = d.choice(_COUNTABLE)
        each_i = d.base(d.cfg.max_value / people)
        total = people * each_i
        each = d.calc(total, "/", people, integer=True)
        q = (
            f"{who.name} has {total} {things} and shares them equally among {people} friends. "
            f"How many {things} does each friend get?"
        )
    return q, each, (total, people)


@_variant("sharing", "batches", 2, "*/")
def _sharing_batches(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    who = d.person()
    boxes = d.small(2, 9)
    per_box = d.randint(1, d.cfg.max_value // boxes)
    total = boxes * per_box
    divisors = [t for t in range(2, 13) if total % t == 0 and total // t >= 2]
    if not divisors:
        raise _Redraw
    trays = d.choice(divisors)
    per_tray = total // trays
    made = d.calc(trays, "*", per_tray, integer=True)
    each = d.calc(made, "/", boxes, integer=True)
    q = (
        f"{who.name} bakes {trays} trays of {per_tray} cookies each and packs all the cookies equally into "
        f"{boxes} boxes. How many cookies go in each box?"
    )
    return q, each, (trays, per_tray, boxes)


@_variant("sharing", "keep_first", 2, "-/")
def _sharing_keep(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    who = d.person()
    things = d.choice(_COUNTABLE)
    people = d.small(2, 8)
    each = d.randint(1, (d.cfg.max_value - 1) // people)
    kept = d.randint(1, min(20, d.cfg.max_value - people * each))
    total = people * each + kept
    rest = d.calc(total, "-", kept, integer=True)
    share = d.calc(rest, "/", people, integer=True)
    q = (
        f"{who.name} has {total} {things}. {who.Subj} keeps {kept} for {who.obj}self and shares the rest "
        f"equally among {people} friends. How many {things} does each friend get?"
    )
    return q, share, (total, kept, people)


@_variant("sharing", "bags", 3, "*+/")
def _sharing_bags(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    who = d.person()
    things = d.choice(_COUNTABLE)
    people = d.small(2, 6)
    share = d.randint(2, d.cfg.max_value // people)
    total = people * share
    bags = d.small(2, 5)
    per_bag = d.randint(1, (total - 1) // bags)
    loose = total - bags * per_bag
    in_bags = d.calc(bags, "*", per_bag, integer=True)
    everything = d.calc(in_bags, "+", loose, integer=True)
    answer = d.calc(everything, "/", people, integer=True)
    q = (
        f"{who.name} has {bags} bags with {per_bag} {things} in each bag and {loose} more loose {things}. "
        f"{who.Subj} shares all of them equally among {people} friends. "
        f"How many {things} does each friend get?"
    )
    return q, answer, (bags, per_bag, loose, people)


@_variant("sharing", "cartons", 3, "/-*")
def _sharing_cartons(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    d.money_story = True
    who = d.person()
    size = d.choice((6, 10, 12))
    cartons = d.randint(3, d.cfg.max_value // size)
    kept = d.randint(1, min(cartons - 1, 5))
    price = d.amount(min(9, d.cfg.max_value / (cartons - kept)), lo=1)
    eggs = cartons * size
    packed = d.calc(eggs, "/", size, integer=True)
    sold = d.calc(packed, "-", kept, integer=True)
    money = d.calc(sold, "*", price)
    q = (
        f"{who.name} packs {eggs} eggs into cartons of {size}. {who.Subj} keeps {d.count(kept, 'cartons')} "
        f"and sells the rest for {d.money(price)} per carton. How many dollars does {who.subj} get?"
    )
    return q, money, (eggs, size, kept, price)


# --------------------------------------------------------------------------------------------
# Template: ages.
# --------------------------------------------------------------------------------------------
def _relation(d: _Draw, age: Fraction, who: _Person, other: _Person) -> tuple[Fraction, str, tuple[Any, ...]]:
    """Derive ``other``'s age from ``age`` by an allowed operation; record the step."""
    top = min(d.cfg.max_value, 99)
    options = [op for op in ("+", "-", "*") if op in d.cfg.ops]
    if not options:
        raise _Redraw
    op = d.choice(options)
    if op == "+":
        diff = d.randint(1, min(40, top - age))
        new = d.calc(age, "+", diff, integer=True)
        text = f"{other.name} is {d.count(diff, 'years')} older than {who.name}."
    elif op == "-":
        diff = d.randint(1, min(40, age - 1))
        new = d.calc(age, "-", diff, integer=True)
        text = f"{other.name} is {d.count(diff, 'years')} younger than {who.name}."
    else:
        diff = d.randint(2, min(5, top // age))
        new = d.calc(age, "*", diff, integer=True)
        word = {2: "twice", 3: "three times", 4: "four times", 5: "five times"}[diff]
        text = f"{other.name} is {word} as old as {who.name}."
    return new, text, (op, diff)


def _age_start(d: _Draw) -> Fraction:
    return Fraction(d.randint(max(2, min(d.cfg.min_value, 30)), min(45, d.cfg.max_value // 2)))


@_variant("ages", "relate", 1, any_of="+-*")
def _ages_relate(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    a, b = d.person(), d.person()
    age = _age_start(d)
    other, text, rel = _relation(d, age, a, b)
    return f"{a.name} is {age} years old. {text} How old is {b.name}?", other, (age, *rel)


@_variant("ages", "future", 2, "+", any_of="+-*")
def _ages_future(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    a, b = d.person(), d.person()
    age = _age_start(d)
    other, text, rel = _relation(d, age, a, b)
    years = d.randint(2, 20)
    then = d.calc(other, "+", years, integer=True)
    q = f"{a.name} is {age} years old. {text} How old will {b.name} be in {years} years?"
    return q, then, (age, *rel, years)


@_variant("ages", "past", 2, "-", any_of="+-*")
def _ages_past(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    a, b = d.person(), d.person()
    age = _age_start(d)
    other, text, rel = _relation(d, age, a, b)
    years = d.randint(1, min(20, int(other) - 1))
    then = d.calc(other, "-", years, integer=True)
    q = f"{a.name} is {age} years old. {text} How old was {b.name} {d.count(years, 'years')} ago?"
    return q, then, (age, *rel, years)


@_variant("ages", "sum", 2, "+", any_of="+-*")
def _ages_sum(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    a, b = d.person(), d.person()
    age = _age_start(d)
    other, text, rel = _relation(d, age, a, b)
    total = d.calc(age, "+", other, integer=True)
    return f"{a.name} is {age} years old. {text} What is the sum of their ages?", total, (age, *rel)


@_variant("ages", "chain_future", 3, "+", any_of="+-*")
def _ages_chain(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    a, b, c = d.person(), d.person(), d.person()
    age = _age_start(d)
    age_b, text_b, rel_b = _relation(d, age, a, b)
    age_c, text_c, rel_c = _relation(d, age_b, b, c)
    years = d.randint(2, 15)
    then = d.calc(age_c, "+", years, integer=True)
    q = f"{a.name} is {age} years old. {text_b} {text_c} How old will {c.name} be in {years} years?"
    return q, then, (age, *rel_b, *rel_c, years)


@_variant("ages", "sum3", 4, "+", any_of="+-*")
def _ages_sum3(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    a, b, c = d.person(), d.person(), d.person()
    age = _age_start(d)
    age_b, text_b, rel_b = _relation(d, age, a, b)
    age_c, text_c, rel_c = _relation(d, age_b, b, c)
    total = d.calc(d.calc(age, "+", age_b, integer=True), "+", age_c, integer=True)
    q = f"{a.name} is {age} years old. {text_b} {text_c} What is the sum of the three ages?"
    return q, total, (age, *rel_b, *rel_c)


# --------------------------------------------------------------------------------------------
# Template: areas and perimeters of rectangles.
# --------------------------------------------------------------------------------------------
_PLACES = ("garden", "room", "field", "playground", "patio", "classroom floor", "parking lot", "rug")


def _sides(d: _Draw, area_limit: float | Fraction) -> tuple[Fraction, Fraction]:
    width = d.amount(min(30, math.isqrt(max(1, math.floor(area_limit)))), lo=2)
    length = d.amount(min(60, area_limit / width), lo=math.ceil(width))
    return length, width


@_variant("area", "area", 1, "*")
def _area_area(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    place, unit = d.choice(_PLACES), d.choice(("meters", "feet"))
    length, width = _sides(d, d.cfg.max_value)
    area = d.calc(length, "*", width)
    q = (
        f"A rectangular {place} is {d.fmt(length)} {unit} long and {d.fmt(width)} {unit} wide. "
        f"What is its area in square {unit}?"
    )
    return q, area, (length, width)


@_variant("area", "perimeter", 2, "+*")
def _area_perimeter(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    place, unit = d.choice(_PLACES[:4]), d.choice(("meters", "feet"))
    width = d.amount(min(40, d.cfg.max_value / 4), lo=2)
    length = d.amount(min(80, d.cfg.max_value / 2 - width), lo=math.ceil(width))
    half = d.calc(length, "+", width)
    fence = d.calc(half, "*", 2)
    q = (
        f"A rectangular {place} is {d.fmt(length)} {unit} long and {d.fmt(width)} {unit} wide. "
        f"How many {unit} of fence are needed to go all the way around it?"
    )
    return q, fence, (length, width)


@_variant("area", "cost", 2, "*")
def _area_cost(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    d.money_story = True
    place, unit = d.choice(_PLACES), d.choice(("meters", "feet"))
    price = d.amount(9, lo=2)
    length, width = _sides(d, d.cfg.max_value / price)
    area = d.calc(length, "*", width)
    cost = d.calc(area, "*", price)
    q = (
        f"A rectangular {place} is {d.fmt(length)} {unit} long and {d.fmt(width)} {unit} wide. Covering it "
        f"costs {d.money(price)} per square {unit[:-1] if unit == 'meters' else 'foot'}. "
        f"How many dollars does it cost to cover the whole {place}?"
    )
    return q, cost, (length, width, price)


@_variant("area", "two_rooms", 3, "*+")
def _area_two_rooms(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    who = d.person()
    l1, w1 = _sides(d, d.cfg.max_value / 2)
    l2, w2 = _sides(d, d.cfg.max_value / 2)
    total = d.calc(d.calc(l1, "*", w1), "+", d.calc(l2, "*", w2))
    q = (
        f"{who.name}'s flat has two rectangular rooms: one is {d.fmt(l1)} by {d.fmt(w1)} meters and the "
        f"other is {d.fmt(l2)} by {d.fmt(w2)} meters. What is their total floor area in square meters?"
    )
    return q, total, (l1, w1, l2, w2)


@_variant("area", "pond", 3, "*-")
def _area_pond(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    length, width = _sides(d, d.cfg.max_value)
    if length * width < 4:
        raise _Redraw
    pl = d.amount(math.floor(length) - 1 if length > 1 else 0, lo=1)
    pw = d.amount(math.floor(width) - 1 if width > 1 else 0, lo=1)
    area = d.calc(length, "*", width)
    pond = d.calc(pl, "*", pw)
    grass = d.calc(area, "-", pond)
    q = (
        f"A rectangular garden is {d.fmt(length)} meters long and {d.fmt(width)} meters wide. A rectangular "
        f"pond in it is {d.fmt(pl)} meters by {d.fmt(pw)} meters, and the rest is grass. How many square "
        f"meters of grass are there?"
    )
    return q, grass, (length, width, pl, pw)


@_variant("area", "fence_cost", 3, "+*")
def _area_fence_cost(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    d.money_story = True
    price = d.small(2, 9)
    width = d.amount(min(30, d.cfg.max_value / (4 * price)), lo=2)
    length = d.amount(min(60, d.cfg.max_value / (2 * price) - width), lo=math.ceil(width))
    half = d.calc(length, "+", width)
    fence = d.calc(half, "*", 2)
    cost = d.calc(fence, "*", price)
    q = (
        f"A rectangular field is {d.fmt(length)} meters long and {d.fmt(width)} meters wide. Fencing costs "
        f"${price} per meter. How many dollars does it cost to fence the whole field?"
    )
    return q, cost, (length, width, price)


@_variant("area", "fence_budget", 4, "+*-")
def _area_fence_budget(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    d.money_story = True
    who = d.person()
    price = d.small(2, 9)
    width = d.amount(min(30, d.cfg.max_value / (8 * price)), lo=2)
    length = d.amount(min(60, d.cfg.max_value / (4 * price) - width), lo=math.ceil(width))
    half = d.calc(length, "+", width)
    fence = d.calc(half, "*", 2)
    cost = d.calc(fence, "*", price)
    budget = d.randint(math.floor(cost) + 1, min(d.cfg.max_value, 2 * cost + 50))
    left = d.calc(budget, "-", cost)
    q = (
        f"{who.name} has ${budget} to fence a rectangular garden that is {d.fmt(length)} meters long and "
        f"{d.fmt(width)} meters wide. Fencing costs ${price} per meter. "
        f"How many dollars will {who.subj} have left after fencing the garden?"
    )
    return q, left, (budget, length, width, price)


# --------------------------------------------------------------------------------------------
# Template: percentages.
# --------------------------------------------------------------------------------------------
_PERCENTS = (5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 80)


def _percent_base(d: _Draw, hi: float | Fraction, lo: int = 1, whole: bool = False) -> tuple[Fraction, int]:
    """A base value and a percentage of it that the configuration allows (whole: an integer)."""
    percent = d.choice(_PERCENTS)
    step = 100 // math.gcd(percent, 100)  # the base must be a multiple of this for an integer result
    if not whole and (d.cfg.decimals or d.cfg.fractions):
        step = 1
    base = Fraction(step * d.randint(math.ceil(max(lo, d.cfg.min_value) / step), hi // step))
    return base, percent


@_variant("percent", "of", 1, "*/")
def _percent_of(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    total, percent = _percent_base(d, d.cfg.max_value, lo=10, whole=True)
    q = d.choice(
        (
            "A school has {n} students. {p}% of them walk to school. How many students walk to school?",
            "A survey asks {n} people. {p}% of them prefer tea. How many people prefer tea?",
            "A park has {n} trees. {p}% of them are oaks. How many oaks are in the park?",
            "A library has {n} books. {p}% of them are novels. How many novels does it have?",
        )
    ).format(n=d.fmt(total), p=percent)
    return q, d.percent_of(total, percent), (total, percent)


@_variant("percent", "discount", 2, "*/-")
def _percent_discount(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    d.money_story = True
    item = d.choice(("jacket", "bicycle", "lamp", "backpack", "board game", "pair of shoes"))
    price, percent = _percent_base(d, d.cfg.max_value, lo=10)
    off = d.percent_of(price, percent)
    sale = d.calc(price, "-", off)
    q = f"A {item} costs {d.money(price)}. It is on sale for {percent}% off. What is the sale price in dollars?"
    return q, sale, (price, percent)


@_variant("percent", "increase", 2, "*/+")
def _percent_increase(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    what = d.choice(("trees in a park", "members in a club", "books in a library", "visitors to a museum"))
    count, percent = _percent_base(d, d.cfg.max_value * 100 // 180, lo=10, whole=True)
    more = d.percent_of(count, percent)
    now = d.calc(count, "+", more, integer=True)
    q = f"Last year there were {d.fmt(count)} {what}. This year the number grew by {percent}%. How many are there now?"
    return q, now, (count, percent)


@_variant("percent", "bulk", 3, "*/-")
def _percent_bulk(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    d.money_story = True
    who = d.person()
    _, plural, lo, hi = _goods(d, 1, d.cfg.max_value)[0]
    qty = d.small(2, 9)
    percent = d.choice(_PERCENTS)
    price = d.amount(min(hi, d.cfg.max_value / qty), lo=lo)
    total = d.calc(qty, "*", price)
    off = d.percent_of(total, percent)
    pay = d.calc(total, "-", off)
    q = (
        f"{who.name} buys {qty} {plural} at {d.money(price)} each and gets {percent}% off the total. "
        f"How many dollars does {who.subj} pay?"
    )
    return q, pay, (qty, price, percent)


@_variant("percent", "tip", 3, "*/+")
def _percent_tip(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    d.money_story = True
    who = d.person()
    people = d.small(2, 6)
    percent = d.choice((10, 15, 20, 25))
    price = d.amount(min(30, d.cfg.max_value / people / 2), lo=3)
    bill = d.calc(people, "*", price)
    tip = d.percent_of(bill, percent)
    total = d.calc(bill, "+", tip)
    q = (
        f"{who.name} and friends order {people} meals at {d.money(price)} each and add a {percent}% tip. "
        f"How many dollars do they pay in total?"
    )
    return q, total, (people, price, percent)


# --------------------------------------------------------------------------------------------
# Template: linear equations and number puzzles.
# --------------------------------------------------------------------------------------------
def _unknown(d: _Draw, coefficient: int, room: int) -> Fraction:
    """A positive solution x such that ``coefficient * x`` fits in ``room``."""
    if d.cfg.fractions and d.chance(0.4):
        x = Fraction(d.randint(1, room), coefficient)
        if x.denominator == 1:
            raise _Redraw
        return x
    return Fraction(d.randint(1, room // coefficient))


def _puzzle(d: _Draw, symbolic: str, story: str) -> str:
    if d.chance(0.5):
        return f"Solve for x: {symbolic}"
    who = d.person()
    return f"{who.name} thinks of a number. {story.format(Subj=who.Subj)} What is the number?"


@_variant("equation", "add", 1, "-")
def _equation_add(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    b = d.randint(1, d.cfg.max_value // 2)
    x = Fraction(d.randint(1, d.cfg.max_value - b))
    c = x + b
    answer = d.calc(c, "-", b)
    q = _puzzle(d, f"x + {b} = {d.fmt(c)}", f"{{Subj}} adds {b} to it and gets {d.fmt(c)}.")
    return q, answer, (b, c)


@_variant("equation", "subtract", 1, "+")
def _equation_subtract(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    b = d.randint(1, d.cfg.max_value // 2)
    c = d.randint(1, d.cfg.max_value - b)
    answer = d.calc(c, "+", b)
    q = _puzzle(d, f"x - {b} = {c}", f"{{Subj}} subtracts {b} from it and gets {c}.")
    return q, answer, (b, c)


@_variant("equation", "multiply", 1, "/")
def _equation_multiply(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    a = d.small(2, 9)
    x = _unknown(d, a, d.cfg.max_value)
    c = a * x
    answer = d.calc(c, "/", a)
    q = _puzzle(d, f"{a}x = {d.fmt(c)}", f"{{Subj}} multiplies it by {a} and gets {d.fmt(c)}.")
    return q, answer, (a, c)


@_variant("equation", "linear", 2, "-/")
def _equation_linear(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    a = d.small(2, 9)
    b = d.randint(1, d.cfg.max_value // 3)
    x = _unknown(d, a, d.cfg.max_value - b)
    c = a * x + b
    r = d.calc(c, "-", b)
    answer = d.calc(r, "/", a)
    q = _puzzle(d, f"{a}x + {b} = {d.fmt(c)}", f"{{Subj}} multiplies it by {a}, then adds {b}, and gets {d.fmt(c)}.")
    return q, answer, (a, b, c)


@_variant("equation", "linear_minus", 2, "+/")
def _equation_linear_minus(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    a = d.small(2, 9)
    b = d.randint(1, d.cfg.max_value // 3)
    x = _unknown(d, a, d.cfg.max_value)
    c = a * x - b
    if c <= 0:
        raise _Redraw
    r = d.calc(c, "+", b)
    answer = d.calc(r, "/", a)
    q = _puzzle(
        d,
        f"{a}x - {b} = {d.fmt(c)}",
        f"{{Subj}} multiplies it by {a}, then subtracts {b}, and gets {d.fmt(c)}.",
    )
    return q, answer, (a, b, c)


@_variant("equation", "bracket", 2, "/-")
def _equation_bracket(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    a = d.small(2, 9)
    b = d.randint(1, d.cfg.max_value // (2 * a))
    c = a * (_unknown(d, a, d.cfg.max_value - a * b) + b)
    r = d.calc(c, "/", a)
    answer = d.calc(r, "-", b)
    if answer <= 0:
        raise _Redraw
    q = _puzzle(d, f"{a}(x + {b}) = {d.fmt(c)}", f"{{Subj}} adds {b} to it, multiplies by {a}, and gets {d.fmt(c)}.")
    return q, answer, (a, b, c)


@_variant("equation", "both_sides", 3, "-/")
def _equation_both_sides(d: _Draw) -> tuple[str, Fraction, tuple[Any, ...]]:
    c = d.small(1, 5)
    a = d.small(c + 1, c + 6)
    gap = a - c
    x = _unknown(d, gap, d.cfg.max_value // 2)
    b = d.randint(1, d.cfg.max_value // 4)
    dd = gap * x + b
    if dd > d.cfg.max_value or a * x + b > d.cfg.max_value:
        raise _Redraw
    r = d.calc(dd, "-", b)
    g = d.calc(a, "-", c)
    answer = d.calc(r, "/", g)
    cx = "x" if c == 1 else f"{c}x"
    q = _puzzle(
        d,
        f"{a}x + {b} = {cx} + {d.fmt(dd)}",
        f"{{Subj}} notices that {a} times it plus {b} equals {'the number' if c == 1 else f'{c} times it'} "
        f"plus {d.fmt(dd)}.",
    )
    return q, answer, (a, b, c, dd)


# --------------------------------------------------------------------------------------------
# The task.
# --------------------------------------------------------------------------------------------
def _key_text(template: str, variant: str, numbers: Iterable[Any]) -> str:
    parts = [format_value(x) if isinstance(x, (int, Fraction)) else str(x) for x in numbers]
    return f"{template}/{variant}:" + ",".join(parts)


def _in_test(key: str) -> bool:
    """Whether a problem key belongs to the reserved test partition (independent of any seed)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"lmenv-arith").digest()
    return int.from_bytes(digest, "big") % TEST_MODULUS == 0


#: Distinct test splits drawn so far, by task settings (drawing one takes up to seconds; envs are made often).
_DISTINCT_TEST_CACHE: dict[tuple[str, int, str], list[Problem]] = {}


def _rng(seed: int, split: str, index: int) -> random.Random:
    text = f"lm_envs.math.arithmetic/{seed}/{split}/{index}".encode()
    return random.Random(int.from_bytes(hashlib.blake2b(text, digest_size=16).digest(), "big"))


class ArithmeticWordProblems(Task):
    """Seeded multi-step arithmetic word problems with one checkable claim per gold step.

    Each :class:`~lm_envs.core.problem.Problem` has:

    * ``prompt``: the word problem in :data:`PROMPT_TEMPLATE` (question, ``Solution:``, newline);
    * ``steps``: the gold solution, one claim per step like ``12 * 3 = 36``, then ``#### 36``;
    * ``answer``: the canonical answer, e.g. ``36``, ``7/2`` or (with ``decimals``) ``2.5``;
    * ``metadata``: ``template``, ``variant``, ``n_steps``, ``operations`` (those used),
      ``key`` (canonical identity, see below) and ``difficulty`` (the knobs).

    ``problem(split, index)`` draws from a private RNG seeded by ``(seed, split, index)``
    (``test_seed`` for ``test``) through a stable hash, so it is the same in every process.
    ``test`` has ``test_size`` problems, ``train`` has ``train_size`` (effectively unlimited).
    The two splits never share a key: a problem's key is its template, variant and numbers
    (names, objects and wording are not part of it), and a fixed hash bucket of the key space
    (1 in :data:`TEST_MODULUS`) belongs to ``test`` only, whatever the seeds or knobs.

    Args:
        seed: Seed of the ``train`` stream.
        min_steps: Fewest arithmetic steps in a gold solution (final answer line not counted).
        max_steps: Most arithmetic steps, at most :data:`MAX_STEPS`.
        min_value: Smallest base quantity (start amounts, totals) where a template has one.
        max_value: Bound on every number in the problem and solution (operands, intermediate
            results and the answer all lie in ``[0, max_value]``). Counts and multipliers stay
            small (2-9) whatever the range.
        operations: Allowed operations, a non-empty subset of :data:`OPERATIONS`.
        fractions: Allow non-integer rational values (answers like ``7/2``; denominators <= 12).
        decimals: Allow decimal quantities (prices like ``$2.50``, lengths like ``2.5``; at most
            two decimal places) and write non-integer results as decimals.
        templates: The templates to draw from (default: all of :data:`TEMPLATES`); each needs
            some operations (e.g. ``percent`` needs ``*`` and ``/``).
        test_size: Number of test problems.
        test_seed: Seed of the ``test`` split (kept apart from ``seed`` so that runs with
            different training seeds evaluate on the same test set).
        train_size: Nominal size of ``train``.
        distinct_test: Make the ``test`` problems pairwise distinct (no two share a key: template,
            variant and numbers). Each is drawn from its own stream as without it, skipping keys
            already used by earlier test problems, so the split is drawn in order once and cached.
            ``False`` reproduces ``LMEnv/Math-v0``'s test split, which repeats some problems.
        stratified_test: Give ``test`` the mix of step counts, templates and variants of ``train``.
            Each test problem picks its variant as a ``train`` draw from its stream does, then
            redraws only the numbers of that variant until the key is in the test partition (the
            partition itself is unchanged, so ``train`` never sees a test key). ``False`` (the
            default, ``LMEnv/Math-v0``'s split) redraws the whole problem instead, so a template
            with few test keys (e.g. one-step ``area`` or ``travel`` at small ``max_value``) gets a
            smaller share of ``test`` than of ``train``, or none. A variant with so few keys that
            none falls in the test partition is an error at construction.
        name: Task name used in logs.

    Raises:
        ValueError: If a knob is invalid, no enabled template can produce some step count
            in ``[min_steps, max_steps]`` with the given operations and range, or (with
            ``stratified_test``) some enabled variant cannot produce a test problem.

    Example:
        >>> task = ArithmeticWordProblems(seed=1, min_steps=2, max_steps=2, operations=("+", "-"))
        >>> p = task.problem("test", 3)
        >>> len(p.steps), p.metadata["n_steps"]
        (3, 2)
        >>> task.size("test"), task.size("train") > 10**8
        (500, True)
    """

    splits = ("train", "test")

    def __init__(
        self,
        *,
        seed: int = 0,
        min_steps: int = 1,
        max_steps: int = 3,
        min_value: int = 1,
        max_value: int = 100,
        operations: Iterable[str] = OPERATIONS,
        fractions: bool = False,
        decimals: bool = False,
        templates: Iterable[str] | None = None,
        test_size: int = 500,
        test_seed: int = 0,
        train_size: int = 10**9,
        distinct_test: bool = True,
        stratified_test: bool = False,
        name: str = "arithmetic",
    ) -> None:
        for knob, value in (
            ("seed", seed),
            ("test_seed", test_seed),
            ("min_steps", min_steps),
            ("max_steps", max_steps),
            ("min_value", min_value),
            ("max_value", max_value),
            ("test_size", test_size),
            ("train_size", train_size),
        ):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{knob} must be an int, got {value!r}.")
        if seed < 0 or test_seed < 0:
            raise ValueError(f"seeds must be >= 0, got seed={seed}, test_seed={test_seed}.")
        if not 1 <= min_steps <= max_steps <= MAX_STEPS:
            raise ValueError(
                f"need 1 <= min_steps <= max_steps <= {MAX_STEPS}, got min_steps={min_steps}, max_steps={max_steps}."
            )
        if not 10 <= max_value <= 10**6:
            raise ValueError(f"max_value must be in [10, 1000000], got {max_value}.")
        if not 0 <= min_value <= max_value // 10:
            raise ValueError(
                f"min_value must be in [0, max_value // 10] = [0, {max_value // 10}] so that products of "
                f"amounts and small counts fit under max_value; got {min_value}."
            )
        if isinstance(operations, str):  # "+-*" or "+, -, *"
            operations = [c for c in operations if c not in " ,"]
        ops = tuple(operations)
        unknown = sorted(set(ops) - set(OPERATIONS))
        if unknown or not ops:
            raise ValueError(f"operations must be a non-empty subset of {list(OPERATIONS)}, got {list(ops)}.")
        if isinstance(templates, str):
            templates = [t for t in templates.replace(",", " ").split() if t]
        chosen = tuple(TEMPLATES if templates is None else templates)
        bad = sorted(set(chosen) - set(TEMPLATES))
        if bad or not chosen:
            raise ValueError(f"templates must be a non-empty subset of {list(TEMPLATES)}, got {list(chosen)}.")
        if not 1 <= test_size <= 10**6:
            raise ValueError(f"test_size must be in [1, 1000000], got {test_size}.")
        if train_size < 1:
            raise ValueError(f"train_size must be >= 1, got {train_size}.")
        for knob, flag in (
            ("fractions", fractions),
            ("decimals", decimals),
            ("distinct_test", distinct_test),
            ("stratified_test", stratified_test),
        ):
            if not isinstance(flag, bool):
                raise ValueError(f"{knob} must be a bool, got {flag!r}.")

        self.name = name
        self.seed, self.test_seed = seed, test_seed
        self.min_steps, self.max_steps = min_steps, max_steps
        self.min_value, self.max_value = min_value, max_value
        self.operations = tuple(op for op in OPERATIONS if op in ops)
        self.fractions, self.decimals = fractions, decimals
        self.templates = tuple(t for t in TEMPLATES if t in chosen)
        self.test_size, self.train_size = test_size, train_size
        self.distinct_test = distinct_test
        self.stratified_test = stratified_test
        self._cfg = _Config(frozenset(self.operations), min_value, max_value, fractions, decimals)

        # (n_steps) -> {template: [variants]} for the enabled templates and operations.
        self._by_steps: dict[int, dict[str, list[_Variant]]] = {}
        for n in range(min_steps, max_steps + 1):
            table: dict[str, list[_Variant]] = {}
            for v in _VARIANTS:
                if v.steps == n and v.template in self.templates and v.feasible(self._cfg.ops):
                    table.setdefault(v.template, []).append(v)
            if not table:
                raise ValueError(
                    f"no enabled template makes a {n}-step problem with operations {list(self.operations)}; "
                    f"enable more operations or templates, or change min_steps/max_steps."
                )
            self._by_steps[n] = table
        self._probe()
        if stratified_test:
            self._probe_test_keys()

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> ArithmeticWordProblems:
        """Build a task from a named difficulty in :data:`PRESETS`, with knobs overridden.

        Example:
            >>> ArithmeticWordProblems.from_preset("easy").operations
            ('+', '-', '*')
        """
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[preset], "name": f"arithmetic-{preset}", **overrides})

    def config(self) -> dict[str, Any]:
        """The difficulty knobs, JSON-serialisable (also stored in each problem's metadata)."""
        return {
            "min_steps": self.min_steps,
            "max_steps": self.max_steps,
            "min_value": self.min_value,
            "max_value": self.max_value,
            "operations": list(self.operations),
            "fractions": self.fractions,
            "decimals": self.decimals,
            "templates": list(self.templates),
        }

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}(seed={self.seed}, test_seed={self.test_seed}, {knobs})"

    def size(self, split: str) -> int:
        self.check_split(split)
        return self.test_size if split == "test" else self.train_size

    def stops(self, step: str) -> bool:
        """True for the final answer line (``#### X``)."""
        return step.strip().startswith(FINAL_ANSWER_PREFIX)

    def format_only(self, problem: Problem, rng: random.Random) -> str:
        """The final answer line alone, with an integer drawn uniformly from ``[0, max_value]``.

        The format a solution must have (``#### <number>``) and the range every answer lies in,
        without reading the question: what guessing earns.

        Example:
            >>> task = ArithmeticWordProblems.from_preset("easy")
            >>> task.format_only(task.problem("test", 0), random.Random(0))
            '#### 49'
        """
        return f"{FINAL_ANSWER_PREFIX} {rng.randint(0, self.max_value)}"

    def problem(self, split: str, index: int) -> Problem:
        self.check_index(split, index)
        test = split == "test"
        if test and self.distinct_test:
            return self._distinct_test_split(index + 1)[index]
        return self._draw_problem(split, index, set())

    def documents(self) -> Iterator[str]:
        """Arithmetic drills for pre-training: every integer fact of the task's range, as gold steps write them.

        One document per fact ``a op b = c`` with ``a``, ``b`` and ``c`` in ``[0, max_value]`` (``/``
        only when exact), for the enabled operations, in a seeded shuffled order. Short documents, so
        ``pretrain.packing=shuffle`` can pack them in a fresh random order every row.
        A model pre-trained on them knows the arithmetic before SFT teaches it the word problems, as
        a pre-trained LM would; without them a tiny model from scratch must pick up every fact from
        the few that each word problem holds. Above 200, each ``a`` is paired with 200 sampled ``b``.

        Example:
            >>> docs = list(ArithmeticWordProblems(max_value=10, operations="+").documents())
            >>> len(docs), "3 + 4 = 7" in docs
            (66, True)
        """
        rng = random.Random(f"lm_envs.math.documents/{self.max_value}/{''.join(self.operations)}")
        top = self.max_value
        facts: list[str] = []
        for a in range(top + 1):
            bs = range(top + 1) if top <= 200 else rng.sample(range(top + 1), 200)
            for b in bs:
                for op, c in (("+", a + b), ("-", a - b), ("*", a * b), ("/", a // b if b and a % b == 0 else -1)):
                    if op in self.operations and 0 <= c <= top:
                        facts.append(f"{a} {op} {b} = {c}")
        rng.shuffle(facts)
        yield from facts

    def _distinct_test_split(self, n: int) -> list[Problem]:
        """The first ``n`` distinct test problems, drawn in index order and shared by equal tasks."""
        key = (repr(self), self.test_size, self.name, self.stratified_test)
        drawn = _DISTINCT_TEST_CACHE.setdefault(key, [])
        seen = {q.metadata["key"] for q in drawn}
        while len(drawn) < n:
            problem = self._draw_problem("test", len(drawn), seen)
            seen.add(problem.metadata["key"])
            drawn.append(problem)
        return drawn

    def _draw_problem(self, split: str, index: int, exclude: set[str]) -> Problem:
        """Draw problem ``index`` of ``split`` from its own seeded stream, skipping keys in ``exclude``."""
        test = split == "test"
        rng = _rng(self.test_seed if test else self.seed, split, index)
        if test and self.stratified_test:
            return self._problem(split, index, self._draw_stratified_test(rng, index, exclude))
        for _ in range(_MAX_ATTEMPTS):
            drawn = self._draw(rng)
            if drawn is None:
                continue
            if _in_test(drawn[4]) != test or drawn[4] in exclude:
                continue
            return self._problem(split, index, drawn)
        raise RuntimeError(
            f"could not draw a {'new ' if exclude else ''}{split} problem for index {index} in {_MAX_ATTEMPTS} "
            f"attempts with {self!r}; widen max_value, allow more operations, lower test_size or set "
            f"distinct_test=False."
        )

    def _draw_stratified_test(
        self, rng: random.Random, index: int, exclude: set[str]
    ) -> tuple[_Variant, _Draw, str, Fraction, str]:
        """A test draw whose variant is chosen as a ``train`` draw chooses it; only its numbers are redrawn."""
        for _ in range(_MAX_ATTEMPTS):  # the variant of the train problem this stream would give
            drawn = self._draw(rng)
            if drawn is not None and not _in_test(drawn[4]):
                break
        else:  # pragma: no cover - _probe makes every step count drawable
            raise RuntimeError(f"could not draw a problem for test index {index} with {self!r}.")
        variant = drawn[0]
        for _ in range(_STRATIFIED_ATTEMPTS):
            drawn = self._build(rng, variant)
            if drawn is not None and _in_test(drawn[4]) and drawn[4] not in exclude:
                return drawn
        raise RuntimeError(
            f"could not draw a {'new ' if exclude else ''}{variant.template}/{variant.name} test problem for "
            f"index {index} in {_STRATIFIED_ATTEMPTS} attempts with {self!r} (stratified_test=True); its test keys "
            f"are {'used up: set distinct_test=False, lower test_size or ' if exclude else 'too rare: '}widen "
            f"max_value, drop the template {variant.template!r} or set stratified_test=False."
        )

    def _problem(self, split: str, index: int, drawn: tuple[_Variant, _Draw, str, Fraction, str]) -> Problem:
        variant, draw, question, answer, key = drawn
        answer_text = draw.fmt(answer)
        return Problem(
            id=f"{split}/{index}",
            prompt=render_prompt(question),
            answer=answer_text,
            steps=(*draw.steps, f"{FINAL_ANSWER_PREFIX} {answer_text}"),
            metadata={
                "template": variant.template,
                "variant": variant.name,
                "n_steps": variant.steps,
                "operations": [op for op in OPERATIONS if op in draw.used],
                "key": key,
                "difficulty": self.config(),
            },
        )

    def _draw(self, rng: random.Random, n: int | None = None) -> tuple[_Variant, _Draw, str, Fraction, str] | None:
        if n is None:
            n = rng.randint(self.min_steps, self.max_steps)
        table = self._by_steps[n]
        templates = [t for t in TEMPLATES if t in table]
        variants = table[templates[rng.randrange(len(templates))]]
        return self._build(rng, variants[rng.randrange(len(variants))])

    def _build(self, rng: random.Random, variant: _Variant) -> tuple[_Variant, _Draw, str, Fraction, str] | None:
        """Draw the numbers (and names, wording) of one ``variant``; ``None`` if a constraint failed."""
        draw = _Draw(rng, self._cfg)
        try:
            question, answer, numbers = variant.build(draw)
        except _Redraw:
            return None
        if len(draw.steps) != variant.steps:  # pragma: no cover - template bug guard
            raise AssertionError(f"{variant.template}/{variant.name} made {len(draw.steps)} steps")
        return variant, draw, question, answer, _key_text(variant.template, variant.name, numbers)

    def _probe(self) -> None:
        """Fail early if some step count can (almost) never be drawn under these knobs."""
        for n in range(self.min_steps, self.max_steps + 1):
            rng = _rng(0, "probe", n)
            if not any(self._draw(rng, n) is not None for _ in range(400)):
                raise ValueError(
                    f"could not generate any {n}-step problem with operations {list(self.operations)}, "
                    f"max_value={self.max_value}, min_value={self.min_value}; raise max_value, lower "
                    f"min_value or max_steps, or allow more operations."
                )

    def _probe_test_keys(self) -> None:
        """With ``stratified_test``: fail early if some enabled variant (almost) never makes a test key."""
        for n, table in self._by_steps.items():
            for variants in table.values():
                for variant in variants:
                    rng = _rng(0, f"probe-test/{variant.template}/{variant.name}", n)
                    built = False
                    for _ in range(_PROBE_ATTEMPTS):
                        drawn = self._build(rng, variant)
                        if drawn is not None and _in_test(drawn[4]):
                            break
                        built = built or drawn is not None
                    else:
                        if not built:
                            continue  # never drawn under these knobs, in train or test
                        raise ValueError(
                            f"stratified_test=True, but the {n}-step variant {variant.template}/{variant.name} made "
                            f"no test problem in {_PROBE_ATTEMPTS} draws with max_value={self.max_value}, "
                            f"operations {list(self.operations)}: its key space is too small for the test "
                            f"partition (1 key in {TEST_MODULUS}); widen max_value, drop the template "
                            f"{variant.template!r} (templates=...) or set stratified_test=False."
                        )
