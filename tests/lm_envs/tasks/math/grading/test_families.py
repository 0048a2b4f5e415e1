r"""Answer families from the competition-style suites (Math-Verify, MATH): each with must-not-equal twins.

Every family of the grader's conventions has cases that must grade equal and, next to them,
perturbations that change the value (or the order, or a bracket) and must not.
"""

from __future__ import annotations

import pytest

from lm_envs.tasks.math.grading import extract_answer, grade

FAMILIES: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {
    "math delimiters and words before them": (
        [
            ("9", "Answer $9$"),
            ("9", "Answer \\[ \n 9 \n \\]"),
            ("9", r"Answer \( 9 \)"),
            ("9", "Answer $$ 9 $$"),
            ("10", r"Answer \( (9+1) \)"),
            ("125", "$125$ miles"),
            ("21, 16, 11", "$21,16$ or $11$"),
        ],
        [
            ("9", "Answer $8$"),
            ("9", "the answer is $9$, no, $8$"),
            ("125", "$126$ miles"),
            ("21, 16, 11", "$21,16$ or $12$"),
        ],
    ),
    "decimal comma": (
        [("1.22", "1,22"), ("1,22", "1.22"), ("1000.99", "1000,99"), ("0.111", "0,111")],
        [("1.22", "1,23"), ("122", "1,22"), ("1000", "1,00"), ("1.22", "1, 22"), ("1,22", "1.23")],
    ),
    "LaTeX thousands separators, currency and units": (
        [
            ("14916", "14{,}916"),
            ("14916", "14 {, }916"),
            ("32349", r"32,\!349"),
            ("11111111100", r"11,\! 111,\! 111,\! 100"),
            ("16386.17", r"\$16386.17"),
            ("1000.99", "1,000.99\u20ac"),
            (r"(2, 12) \cup (12, 102)", r"(2,12)\cup(12,102)"),
        ],
        [
            ("32349", "32, 349"),
            ("1491", "14{,}916"),
            ("1000.99", "1,000.98\u20ac"),
            ("12102", "(12,102)"),
        ],
    ),
    "relations in both spellings": (
        [
            (r"x \geq 5", "x >= 5"),
            ("x < 3", r"x \lt 3"),
            (r"x \neq 3", "x != 3"),
            (r"x \leq 5", r"5 \geq x"),
            ("x < 1", "-x > -1"),
        ],
        [(r"x \geq 5", r"x \leq 5"), ("x > 5", "x < 5"), (r"x \neq 3", "x = 3"), ("x < 1", "x > -1")],
    ),
    "intervals against inequalities": (
        [
            ("(0, 1)", "0 < f(x) < 1"),
            ("0<f(x)<1", "(0,1)"),
            ("(-793, 10)", "-793 < a < 10"),
            ("[-2, 7]", r"-2 \le x \le 7"),
            ("[-2, 7)", r"7 > x \geq -2"),
            (r"1\leq|z|\leq \frac{3}{2}", r"z \in \left[-\frac{3}{2}, -1\right] \cup \left[1, \frac{3}{2}\right]"),
        ],
        [
            ("(0, 1)", "0 <= x < 1"),
            ("(0, 1)", "0 < x < 2"),
            ("(0, 1)", "0 < 1 < 2"),
            (r"1\leq|z|\leq \frac{3}{2}", r"[1, \frac{3}{2}]"),
            (r"1\leq|z|\leq \frac{3}{2}", r"(-\frac{3}{2}, -1] \cup [1, \frac{3}{2}]"),
        ],
    ),
    "matrices": (
        [
            (r"\begin{pmatrix}1 & 0 \\ 0 & 1\end{pmatrix}", r"\begin{bmatrix}1 & 0 \\ 0 & 1\end{bmatrix}"),
            (r"\begin{pmatrix}1 & 2 \\3 & 4\end{pmatrix}", r"\left[\begin{array}{cc}1 & 2 \\3 & 4\end{array}\right]"),
            (r"\begin{pmatrix}\frac{1}{2} \\ 2\end{pmatrix}", r"\begin{pmatrix}0.5 \\ \sqrt{4}\\\end{pmatrix}"),
            # arithmetic: sums, scalar multiples, products in order
            (
                r"\begin{pmatrix}6 & 8 \\ 10 & 12\end{pmatrix}",
                r"\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix} + \begin{pmatrix}5 & 6 \\ 7 & 8\end{pmatrix}",
            ),
            (
                r"\begin{pmatrix}19 & 22 \\ 43 & 50\end{pmatrix}",
                r"\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix} \begin{pmatrix}5 & 6 \\ 7 & 8\end{pmatrix}",
            ),
            (r"\begin{pmatrix}2 & 4\end{pmatrix}", r"2\begin{pmatrix}1 & 2\end{pmatrix}"),
            (r"\begin{pmatrix}-1 \\ -2\end{pmatrix}", r"-\begin{pmatrix}1 \\ 2\end{pmatrix}"),
        ],
        [
            (r"\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix}", r"\begin{pmatrix}1 & 2 \\ 3 & 5\end{pmatrix}"),
            (r"\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix}", r"\begin{pmatrix}1 & 3 \\ 2 & 4\end{pmatrix}"),
            (r"\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix}", r"\begin{pmatrix}1 & 2 & 3 & 4\end{pmatrix}"),
            (r"\begin{pmatrix}1 \\ 2\end{pmatrix}", "(1, 2)"),
            (
                r"\begin{pmatrix}19 & 22 \\ 43 & 50\end{pmatrix}",
                r"\begin{pmatrix}5 & 6 \\ 7 & 8\end{pmatrix} \begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix}",
            ),
            ("5", r"\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix} + 1"),
            (
                r"\begin{pmatrix}1 & 2\end{pmatrix}",
                r"\begin{pmatrix}1 & 2\end{pmatrix} \begin{pmatrix}1 & 2\end{pmatrix}",
            ),
        ],
    ),
    "sets and tuples with other separators or orders": (
        [
            ("(0;0;0),(4;-2;6)", "(4, -2, 6), (0, 0, 0)"),
            ("-12;-11;-10", r"\{-10, -11, -12\}"),
            ("(1,3)", "{1,3}"),
            ("(11,7)or(7,11)", "(7,11), (11,7)"),
            ("(3, 7), (3, 7), (1, 2)", "(1, 2), (3, 7)"),
            (r"\boxed{1}\boxed{2}", r"\boxed{1,2}"),
            ("1, 2, 3", r"\boxed{1} and \boxed{2} and \boxed{3}"),
            ("(2, 2), (6, 2)", r"\boxed{(2, 2)} \quad \text{and} \quad \boxed{(6, 2)}"),
            ("1, 2", "1 and 2"),
            ("(3, 3), (1, 1)", r"\boxed{(3, 3)} \text{ for part (a) and } \boxed{(1, 1)}"),
            ("1, 2", r"\boxed{1} papers and \boxed{2} bins"),
        ],
        [
            ("(1,2),(3,4)", "(1,2),(3,5)"),
            ("(3,1)", "{1,3}"),
            ("(1,2),(3,4)", "(1,2)"),
            ("1, 2", r"\boxed{1} and \boxed{3}"),
            ("1, 2", r"first \boxed{1}, then \boxed{2}"),
            ("10, 4, -2", "4, 10, -2"),
        ],
    ),
    "labelled answers": (
        [
            ("1", "f(x)=1"),
            ("f(x)=1", "1"),
            ("4, 5", "AB=4, CD=5"),
            ("AB=4,CD=5", "4, 5"),
            ("11:21", "V_{1}:V_{2}=11:21"),
            ("7:32", "S_{MBCN}:S=7:32"),
            ("1", "|AB|=1"),
            (r"\frac{1}{\sqrt{6}}", r"\frac{NO}{BO}=\frac{1}{\sqrt{6}}"),
            ("a_3 = 2, a_{37} = 19", "a_{37} = 19, a_3 = 2"),
            ("-10, -8, 4", "a = 4, -8, -10"),
            ("x = -5, p = 14/3", r"-5, \frac{14}{3}"),
            ("p=5,q=2;p=7,q=2", "(5,2),(7,2)"),
            (r"1 = \zzz = x = 0", "0"),
        ],
        [
            ("2", "f(x)=1"),
            ("11:21", "21:11"),
            ("11:21", "V_1:V_2=11:20"),
            ("a_3 = 2, a_{37} = 19", "a_{37} = 2, a_3 = 19"),
            ("-10, -8, 4", "a = 4, -8, -11"),
            ("1", "2x + z = 1"),
            ("0", "a^2 + b = 0"),
            ("p=5,q=2;p=7,q=2", "(2,5),(2,7)"),
            ("p=5,q=2;p=7,q=2", "(5,2),(7,3)"),
            (r"1 = \zzz = x = 0", "1"),
        ],
    ),
    "an equation against an equivalent one": (
        [
            ("2x+4y-3=0", r"y=-\frac{1}{2}x+\frac{3}{4}"),
            (r"y=-\frac{1}{2}x+\frac{3}{4}", "2x+4y-3=0"),
            ("x^2/4 + y^2/3 = 1", "x^2/16 + y^2/12 = 1/4"),
        ],
        [
            ("2x+4y-3=0", r"y=-\frac{1}{2}x+\frac{3}{5}"),
            ("2x+4y-3=0", r"x=-2y+\frac{3}{2} + 1"),
            ("x^2/4 + y^2/3 = 1", "x^2/16 + y^2/12 = 1"),
        ],
    ),
    "real cube roots and doubled backslashes": (
        [
            ("-2", r"\sqrt[3]{-8}"),
            ("-3", r"\sqrt[3]{-27}"),
            (r"-\sqrt[3]{2}", r"\sqrt[3]{-2}"),
            (r"\frac{1}{2}", r"\\frac{1}{2}"),
            (r"(\frac{4}{5}, \frac{1}{5})", r"\\left(\\frac{4}{5},\\frac{1}{5}\\right)"),
        ],
        [("2", r"\sqrt[3]{-8}"), (r"\sqrt[3]{2}", r"\sqrt[3]{-2}"), (r"\frac{1}{3}", r"\\frac{1}{2}")],
    ),
}

EQUAL = [(name, g, p) for name, (equal, _) in FAMILIES.items() for g, p in equal]
NOT_EQUAL = [(name, g, p) for name, (_, unequal) in FAMILIES.items() for g, p in unequal]


@pytest.mark.parametrize(("family", "gold", "pred"), EQUAL)
def test_family_equal(family: str, gold: str, pred: str) -> None:
    verdict = grade(gold, pred)
    assert verdict.equivalent, (family, verdict)


@pytest.mark.parametrize(("family", "gold", "pred"), NOT_EQUAL)
def test_family_not_equal(family: str, gold: str, pred: str) -> None:
    verdict = grade(gold, pred)
    assert not verdict.equivalent, (family, verdict)
    assert "internal error" not in verdict.reason


@pytest.mark.parametrize(
    ("text", "kwargs", "expected"),
    [
        (r"Therefore $x \geq 5$ is the solution.", {"fallback_last_math": True}, r"x \geq 5"),
        (r"Therefore $x \geq 5$ is the solution.", {}, None),
        ("Final Answer: The largest $n$ is 34.", {}, "34"),
        ("Final Answer: The volume of $ABCDEFGH$ is 120. I hope it is correct.", {}, "120"),
        ("so the probability is 2/3. <|im_start|>user", {"fallback_last_number": True}, "2/3"),
        # the answer marker that comes last wins
        (r"so $0.04 \cdot 10,000 = \boxed{200}$ ... Final Answer: The final answer is $10,455$.", {}, "10,455"),
        (r"The answer is 7. Later: \boxed{8}", {}, "8"),
        # a run of boxes is a set; a box far from the others is not part of it
        (r"The roots are $\boxed{2}$ and $\boxed{3}$.", {}, r"\{2, 3\}"),
        (r"$y_1 = \boxed{1} \) and \( y_2 = \boxed{2}$", {}, r"\{1, 2\}"),
        (r"\boxed{5} appears in the middle of a long argument, and at last \boxed{6}", {}, "6"),
        (r"\boxed{4}, \boxed{4}", {}, "4"),
        # math spans and numbers: the later one
        (
            r"We have $d = 90/n$, so there are 12 sequences.",
            {"fallback_last_math": True, "fallback_last_number": True},
            "12",
        ),
        (r"There are 12 ways, so $n = 12$.", {"fallback_last_math": True, "fallback_last_number": True}, "n = 12"),
    ],
)
def test_extraction_conventions(text: str, kwargs: dict, expected: str | None) -> None:
    assert extract_answer(text, **kwargs) == expected
