r"""Property tests: a perturbation that changes the value is never graded equal (the grader is a reward).

Values are rendered in the spellings the grader accepts (fractions, decimals, mixed numbers,
thousands separators, ``\boxed``, ``$...$``, "Answer", labels, ...). Two renderings of one value
must grade equal; renderings of different values, tuples with one element changed or two
swapped, other brackets, sets with one element replaced, matrices with one entry changed,
polynomials or equations with one coefficient changed must not.
"""

from __future__ import annotations

from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lm_envs.tasks.math.grading import extract_answer, grade

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Numerators and denominators small enough that two different values differ by more than the
# decimal tolerance (1e-6 relative): |p/q - r/s| >= 1/2500 while |values| <= 200.
values = st.builds(Fraction, st.integers(-200, 200), st.integers(1, 50))


def _terminates(q: Fraction) -> bool:
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _decimal(q: Fraction) -> str:
    sign = "-" if q < 0 else ""
    q = abs(q)
    whole, rest = divmod(q.numerator, q.denominator)
    digits = ""
    while rest and len(digits) < 12:
        rest *= 10
        digits += str(rest // q.denominator)
        rest %= q.denominator
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def _thousands(n: int) -> str:
    return f"{n:,}".replace(",", "{,}")


def spellings(q: Fraction) -> list[str]:
    """Spellings of the number ``q`` that the grader reads as ``q``."""
    a, b = abs(q.numerator), q.denominator
    sign = "-" if q < 0 else ""
    out = [f"{sign}{a}/{b}", rf"{sign}\frac{{{a}}}{{{b}}}", rf"{sign}\dfrac{{{a}}}{{{b}}}"]
    if b == 1:
        out += [str(q.numerator), f"{q.numerator}.0", rf"\${q.numerator}"]
        if abs(q.numerator) >= 1000:
            out.append(sign + _thousands(a))
    if _terminates(q):
        out.append(_decimal(q))
    if q > 1 and b > 1:
        whole, rest = divmod(a, b)
        out.append(f"{whole} {rest}/{b}")
    return out


def wrap(answer: str, how: int) -> str:
    """The same answer in a wrapper: as is, boxed, in math delimiters, after "Answer", labelled."""
    return [
        answer,
        rf"\boxed{{{answer}}}",
        f"${answer}$",
        f"Answer $ {answer} $",
        rf"\[ {answer} \]",
        f"x = {answer}",
    ][how]


spelling_index = st.integers(0, 20)
wrappers = st.integers(0, 5)


def pick(options: list[str], i: int) -> str:
    return options[i % len(options)]


@SETTINGS
@given(values, spelling_index, spelling_index, wrappers)
def test_same_value_in_any_spelling_is_equal(q: Fraction, i: int, j: int, w: int) -> None:
    gold, pred = pick(spellings(q), i), wrap(pick(spellings(q), j), w)
    assert grade(gold, pred).equivalent, (gold, pred, grade(gold, pred))


@SETTINGS
@given(values, values, spelling_index, spelling_index, wrappers)
def test_a_different_value_is_never_equal(q: Fraction, r: Fraction, i: int, j: int, w: int) -> None:
    if q == r:
        r = r + Fraction(1, 7)
    gold, pred = pick(spellings(q), i), wrap(pick(spellings(r), j), w)
    verdict = grade(gold, pred)
    assert not verdict.equivalent, (gold, pred, verdict)
    assert not grade(pred, gold).equivalent, (pred, gold)


def _render_all(items: list[Fraction], i: int) -> list[str]:
    return [pick(spellings(x), i + k) for k, x in enumerate(items)]


@SETTINGS
@given(st.lists(values, min_size=2, max_size=4), st.integers(0, 3), values, spelling_index, st.integers(0, 2))
def test_tuples_with_a_changed_or_moved_element_are_never_equal(
    items: list[Fraction], at: int, new: Fraction, i: int, kind: int
) -> None:
    at %= len(items)
    gold = "(" + ", ".join(_render_all(items, 0)) + ")"
    changed = list(items)
    if kind == 0:  # one element changed
        changed[at] = new if new != items[at] else new + 1
        pred = "(" + ", ".join(_render_all(changed, i)) + ")"
    elif kind == 1:  # two different elements swapped
        other = next((k for k in range(len(items)) if items[k] != items[at]), None)
        if other is None:
            return
        changed[at], changed[other] = changed[other], changed[at]
        pred = "(" + ", ".join(_render_all(changed, i)) + ")"
    else:  # another bracket
        pred = "[" + ", ".join(_render_all(items, i)) + ")"
    assert grade(gold, pred).equivalent is False, (gold, pred)
    assert grade(gold, "(" + ", ".join(_render_all(items, i)) + ")").equivalent  # the unchanged tuple


@SETTINGS
@given(st.sets(values, min_size=1, max_size=5), values, spelling_index, st.integers(0, 2))
def test_sets_with_a_replaced_element_are_never_equal(items: set[Fraction], new: Fraction, i: int, form: int) -> None:
    ordered = sorted(items)
    if new in items:
        new = max(items) + 1
    replaced = [*ordered[1:], new][::-1]
    gold = r"\{" + ", ".join(_render_all(ordered, 0)) + r"\}"
    pred = [r"\{" + ", ".join(_render_all(replaced, i)) + r"\}", ", ".join(_render_all(replaced, i))][form % 2]
    if form == 2:
        pred = " and ".join(rf"\boxed{{{x}}}" for x in _render_all(replaced, i))
    assert not grade(gold, pred).equivalent, (gold, pred)
    shuffled = r"\{" + ", ".join(_render_all(ordered[::-1], i)) + r"\}"
    assert grade(gold, shuffled).equivalent, (gold, shuffled)


@SETTINGS
@given(st.lists(st.integers(-20, 20), min_size=4, max_size=4), st.integers(0, 3), st.integers(1, 5))
def test_matrices_with_a_changed_entry_are_never_equal(entries: list[int], at: int, delta: int) -> None:
    def matrix(xs: list[int], env: str) -> str:
        return rf"\begin{{{env}}}{xs[0]} & {xs[1]} \\ {xs[2]} & {xs[3]}\end{{{env}}}"

    changed = list(entries)
    changed[at] += delta
    assert not grade(matrix(entries, "pmatrix"), matrix(changed, "bmatrix")).equivalent
    assert grade(matrix(entries, "pmatrix"), matrix(entries, "bmatrix")).equivalent


coefficients = st.integers(-9, 9)


@SETTINGS
@given(coefficients, coefficients, coefficients, st.integers(0, 2), st.integers(1, 4), st.integers(2, 5))
def test_polynomials_and_equations_with_a_changed_coefficient_are_never_equal(
    a: int, b: int, c: int, at: int, delta: int, k: int
) -> None:
    coeffs = [a, b, c]
    changed = list(coeffs)
    changed[at] += delta
    poly = "{}x^2 + ({})x + ({})"
    assert not grade(poly.format(*coeffs), poly.format(*changed)).equivalent
    if a or b:  # an equation, and k times it: equal; with one coefficient changed: not (unless proportional)
        equation = "{}x + ({})y = {}"
        assert grade(equation.format(a, b, c), equation.format(k * a, k * b, k * c)).equivalent
        minors = [coeffs[m] * changed[n] - coeffs[n] * changed[m] for m in range(3) for n in range(m + 1, 3)]
        if any(minors) and any(changed[:2]):
            assert not grade(equation.format(a, b, c), equation.format(*[k * x for x in changed])).equivalent


@SETTINGS
@given(values, values, st.sampled_from(["<", "<=", ">", ">="]), st.sampled_from(["<", "<="]))
def test_inequalities_and_intervals_with_a_changed_end_or_bracket_are_never_equal(
    low: Fraction, high: Fraction, op: str, other: str
) -> None:
    if low == high:
        high = low + 1
    low, high = min(low, high), max(low, high)
    lo, hi = pick(spellings(low), 1), pick(spellings(high), 1)
    gold = f"{lo} {other} x < {hi}"
    interval = ("(" if other == "<" else "[") + f"{lo}, {hi})"
    assert grade(gold, interval).equivalent, (gold, interval)
    wrong_bracket = ("[" if other == "<" else "(") + f"{lo}, {hi})"
    assert not grade(gold, wrong_bracket).equivalent, (gold, wrong_bracket)
    wrong_end = ("(" if other == "<" else "[") + f"{lo}, {pick(spellings(high + 1), 1)})"
    assert not grade(gold, wrong_end).equivalent, (gold, wrong_end)
    flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
    assert not grade(f"x {op} {lo}", f"x {flipped} {lo}").equivalent


@SETTINGS
@given(values, values, st.sampled_from(["f(x)", "AB", "|AB|", "V_1:V_2", "y"]))
def test_labelled_answers_are_equal_only_to_their_value(q: Fraction, r: Fraction, label: str) -> None:
    if q == r:
        r = r + 1
    value = pick(spellings(q), 1)
    assert grade(value, f"{label} = {value}").equivalent
    assert not grade(value, f"{label} = {pick(spellings(r), 1)}").equivalent
    assert not grade(f"{label} = {value}", pick(spellings(r), 2)).equivalent


@SETTINGS
@given(st.integers(0, 999), st.integers(1, 99), st.integers(1, 9))
def test_decimal_commas_equal_only_their_value(whole: int, frac: int, delta: int) -> None:
    digits = f"{frac:02d}"
    assert grade(f"{whole}.{digits}", f"{whole},{digits}").equivalent
    assert not grade(f"{whole}.{digits}", f"{whole},{int(digits) + delta:02d}").equivalent
    assert not grade(f"{whole}{digits}", f"{whole},{digits}").equivalent


@SETTINGS
@given(values, values, spelling_index, st.integers(0, 5))
def test_hedging_between_answers_never_pays(q: Fraction, r: Fraction, i: int, form: int) -> None:
    """Listing the right value beside a wrong one is not the right answer (a reward must not pay it)."""
    if q == r:
        r = r + 1
    a, b = pick(spellings(q), i), pick(spellings(r), i + 1)
    pred = [
        rf"\boxed{{{a}}} or \boxed{{{b}}}",
        rf"\boxed{{{b}}} and \boxed{{{a}}}",
        f"${a}$ or ${b}$",
        f"{a}, {b}",
        rf"\{{{a}, {b}\}}",
        f"x = {a} or x = {b}",
    ][form]
    gold = pick(spellings(q), i + 2)
    assert not grade(gold, pred).equivalent, (gold, pred)
    text = f"The answer is {pred}."
    found = extract_answer(text, fallback_last_math=True, fallback_last_number=True)
    assert not grade(gold, found).equivalent, (gold, text, found)
