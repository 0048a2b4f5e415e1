r"""Math answer grading: find a completion's final answer and decide whether it equals the gold one.

Model output is adversarial input, so everything here is bounded: no ``eval``/``exec``, no
``sympy.sympify`` on raw text, linear-time extraction, explicit limits on length, nesting, digits,
exponents and factorials, and every sympy call runs in a worker subprocess that is killed
(``SIGKILL``) when it overruns its time budget. Pathological strings get ``Verdict(False, reason)``;
:func:`grade` never raises on string input and never hangs.

Public API:
    * :func:`extract_answer` pulls the final answer out of a completion.
    * :func:`grade` compares a gold answer with a predicted one and says why (:class:`Verdict`);
      :func:`is_equivalent` is its boolean form.
    * :func:`close_workers` stops the symbolic worker processes (they restart on demand).

Example:
    >>> extract_answer(r"so the total is $\boxed{\frac{3}{4}}$.")
    '\\frac{3}{4}'
    >>> grade("0.75", r"\frac{3}{4}")
    Verdict(equivalent=True, reason='numeric')
    >>> grade("1000", r"\$1,000")
    Verdict(equivalent=True, reason='exact')
    >>> grade("2x+1", "1 + 2*x").reason
    'algebraic'
    >>> is_equivalent("(1, 2)", "(2, 1)")
    False

How a comparison runs:
    1. **Normalize** both answers (pure string rewriting, linear time): unicode cleanup, the
       answer region (the final run of ``\boxed{}``; else, when prose stands around math
       delimiters, as in ``Answer $9$`` or ``$125$ miles``, the final run of ``$...$``/``\(...\)``/
       ``\[...\]`` spans), ``$``/``\$`` signs, ``\left``/``\right``, spacing commands,
       ``\dfrac``/``\tfrac`` → ``\frac``, ``\cdot``/``\times`` → ``*``, degrees, percent signs,
       ``\text{}``/``\mathrm{}`` wrappers, trailing units, thousands separators, trailing period.
    2. **Exact path**: equal normalized strings (spaces ignored) → ``"exact"``; two decimal
       literals are compared right away, without the parser.
    3. **Parse** both with a small recursive-descent parser (no eval) into a tree of numbers,
       symbols, ``+ - * / ^ !``, ``\frac``, ``\sqrt``, functions, tuples, intervals, sets and
       relations, refusing input beyond the limits below.
    4. **Fast path** (in process, no sympy, no IPC): every scalar is put in a canonical form, a
       polynomial with rational coefficients (:class:`fractions.Fraction`) over the variables,
       ``π`` and square roots of square-free integers. These are algebraically independent, so the
       form is unique and equality is decided exactly: plain numbers (``"numeric"``), and radicals,
       ``π`` and polynomials such as ``2\sqrt{3}`` vs ``\sqrt{12}`` or ``2x+1`` vs ``1+2x``
       (``"algebraic"``). Most answers end here.
    5. **Symbolic path**: what the canonical form cannot hold (division by a sum, trigonometry,
       logarithms, roots of sums, symbolic exponents, ...) is sent to a persistent worker
       subprocess that builds sympy objects from the parsed tree (never from text) and tests
       ``simplify(a - b) == 0`` / ``(a - b).equals(0)`` (``"symbolic"``). One :func:`grade` call
       has ``timeout`` seconds for everything, waiting for a free worker included; past that the
       verdict is ``Verdict(False, "timeout: ...")`` and a worker that was computing is killed. A
       spare worker is kept started: a killed or lent worker is replaced by a background thread,
       so no caller pays for a restart. Only the very first worker of a process (importing sympy,
       about a second) is waited for beyond ``timeout``, like an import; :func:`start_workers`
       starts it ahead of time.

Conventions (gold always first; the reference graders are Math-Verify ``verify``, hendrycks MATH
``is_equiv`` and PRM800K ``grade_answer``):
    * **Not symmetric.** ``grade(gold, pred)``: the integer-gold rule and the set rule look at gold.
    * **Unreduced fractions** equal their value: ``2/4`` == ``1/2``. PRM800K rejects them (it
      compares ``a/b`` strings); we grade the value, like Math-Verify, because a reward for
      mathematical correctness should not depend on presentation. A task that wants reduced form
      must check it separately.
    * **Percent**: ``28\%`` == ``28`` and ``28\%`` != ``0.28`` (Math-Verify's tests; hendrycks and
      PRM800K also just delete ``%``). ``percent``/``pct`` words are units and are dropped too.
    * **Decimals**: exact comparison unless either side contains a decimal literal (``0.5``,
      ``1.5e3``); then values within a relative tolerance of ``1e-6`` are equal
      (``|a - b| <= 1e-6 * max(|a|, |b|)``), the relative analogue of Math-Verify's rounding to 6
      places. ``1/3`` vs ``0.333333`` is equal; ``1/3`` vs ``0.333`` is not.
    * **Integer gold** (an integer literal such as ``5`` or ``-1,000``): the answer must be exactly
      that integer, no tolerance: ``5`` vs ``5.0000001`` is not equivalent (PRM800K's rule).
    * **Thousands separators**: ``1,000``, ``1{,}000``, ``14 {, }916``, ``32,\!349``, ``1\,000`` and
      ``1 000`` are one thousand. A comma followed by exactly three digits is a separator, unless
      the group starts with 0 (``0,111``) or the number alone fills brackets: ``(12,102)`` is an
      interval (MATH writes those far more often than a bracketed thousand). ``32, 349`` (a space
      after a plain comma) is a list (Math-Verify's tests).
    * **Decimal comma** (Math-Verify): a lone ``digits,digits`` answer against an answer without
      a comma is also read with a decimal comma, ``1,22`` == ``1.22`` and ``0,111`` == ``0.111``;
      against a list it stays the list ``1, 22``.
    * **Mixed numbers**: ``7 3/4`` (PRM800K, Math-Verify) and ``7\frac{3}{4}`` are 31/4; an integer
      followed by a fraction of two integer literals is a mixed number, anything else multiplies.
    * **Scientific notation**: ``1.5e3``, ``1.5E+3``, ``1.5 \times 10^{3}`` are 1500. A digit
      followed by ``e`` and digits is always scientific notation.
    * **LaTeX**: ``\frac12`` follows LaTeX's one-character argument rule (1/2); ``\sqrt3`` is √3;
      ``\sqrt[n]{x}``; ``x^23`` reads the whole number as the exponent (plain-text habit);
      ``\pi`` is π, ``e`` is Euler's number and ``i`` the imaginary unit, so
      ``(1+i)^2`` == ``2i`` and ``\sqrt{-4}`` == ``2i``; ``x_i`` is a plain subscripted symbol.
      A function without parentheses takes the implicit product that follows, up to the next
      function: ``\sin 2x`` is sin(2x), ``\sin x \cos x`` is sin(x)·cos(x); ``\sin^2 x`` is
      (sin x)², but ``\sin^{-1} x`` (also ``\cos``, ``\tan``) is arcsin x.
    * **Implicit multiplication**: ``2x``, ``2(x+1)``, ``x y``; a run of up to three letters is a
      product of single-letter symbols (``xyz``); a longer word is text. Two adjacent numbers
      (``12 13``) are not multiplied: the answer is unparseable.
    * **Text answers**: a gold answer that is a single word (``Evelyn``, ``yes``) or that does not
      parse is compared as text, case-insensitively and ignoring spaces. Unsupported notation
      (``\sum``, unknown commands) falls back to this text comparison. Number words are text.
    * **Matrices**: ``pmatrix``, ``bmatrix``, ``Bmatrix``, ``matrix``, ``smallmatrix`` and
      ``array`` (also inside ``\left[...\right]``) are rows of scalars, equal entry by entry with
      the same shape; a matrix never equals a tuple. Sums of matrices, scalar multiples and
      products (in order) are evaluated entry by entry, like Math-Verify; a matrix plus a scalar
      is unparseable.
    * **Roots**: ``\sqrt[n]{x}`` of a negative number with odd ``n`` is the real root
      (``\sqrt[3]{-8}`` == ``-2``, as MATH means it); ``(-8)^{1/3}`` stays sympy's principal root.
    * **Doubly escaped commands** (``\\frac``, ``\\left``: text escaped twice) read as one
      backslash; a lone ``\\`` (a matrix row break) is left alone.
    * **Plus-minus**: ``a \pm b`` is the set ``\{a + b, a - b\}`` (so it matches a set, a list
      or the gold ``a \pm b``, see Containers).
    * **Equations**: when either side is ``symbol = value`` (or ``(x, y) = (1, 2)``, or
      ``x \in [1, 2]``), only the value is compared (Math-Verify; hendrycks strips ``k =`` when the
      left side has at most two characters). A chain ``a = b = c`` keeps the last value, and
      ``\approx`` keeps the exact value before it. Other equations and inequalities are compared as
      ``lhs - rhs`` up to a nonzero constant factor (positive for inequalities), so ``x < 1`` ==
      ``1 > x`` == ``2x < 2``; an assignment is also compared as the equation it is, so
      ``2x+4y-3=0`` == ``y=-\frac{1}{2}x+\frac{3}{4}``. Relations in either spelling: ``\geq``,
      ``\ge``, ``>=``, ``≥``; ``\lt``, ``<``; ``\neq``, ``!=``.
    * **Labels** (Math-Verify's numina cases): what names the answer is dropped like ``x =``: a
      symbol, a tuple of symbols, a product or ratio of symbols (``AB``, ``f(x)``, ``\frac{NO}{BO}``,
      ``V_1:V_2``), their absolute value (``|AB|``). Lists of labelled values are matched by label
      (``a_3 = 2, a_{37} = 19`` == ``a_{37} = 19, a_3 = 2``), a list that starts with one label
      (``a = 4, -8, -10``) is the set of that unknown's values, and ``AB=4, CD=5`` == ``4, 5``;
      ``p=5,q=2;p=7,q=2`` (";" between solutions) is ``(5, 2), (7, 2)``. A lone unknown command
      that is a whole operand (``1 = \zzz = x = 0``) is a symbol.
    * **Inequalities as intervals**: ``a < x <= b`` with constants around an expression in a
      variable is the interval ``(a, b]`` (``0<f(x)<1`` == ``(0,1)``, ``x \in [-2,7]`` ==
      ``-2 \le x \le 7``), and ``a <= |x| <= b`` with ``a > 0`` is ``[-b, -a] \cup [a, b]``. A single
      inequality is not an interval (``x > 5`` != ``(5, \infty)``).
    * **Ratios** ``a:b`` are ordered pairs: ``11:21`` != ``21:11`` and ``12:00`` is not ``12``.
    * **Containers**: tuples ``(1, 2)`` are ordered; intervals keep their bracket types
      (``[1, 3)`` != ``(1, 3)``; an open interval and a pair are the same thing); unions of
      intervals are unordered; sets ``\{1, 2\}`` (or ``{1, 2}``) are unordered with set semantics.
      A plain list ``1, 2`` is ordered against a plain list (hendrycks: ``10, 4, -2`` !=
      ``4, 10, -2``) and matches a parenthesized gold tuple in the same order; a list and a set
      compare as sets (Math-Verify: ``-12;-11`` == ``\{-11, -12\}``); a list of tuples is a set
      of solutions (``(1, 2), (3, 4)`` == ``(3, 4), (1, 2)``). ``{1, 3}`` with plain braces matches
      the tuple ``(1, 3)`` in order; ``\{1, 3\}`` never equals a tuple. ``;`` separates like ``,``,
      and so do "and"/"or" between answers (``(11,7)or(7,11)``). Several boxes separated only by
      commas, "and", "or", ``\quad`` or a one-letter label (``\boxed{1}$ and $y = \boxed{2}``)
      are one answer, the set of their contents; repeats of one box count once.
    * **Units** are dropped after a number: a trailing ``\text{...}``/``\mathrm{...}`` word, known
      unit words (``cm``, ``kg``, ``mph``, ...), and any word of three or more letters after a
      space (``18 apples``). Degrees (``^\circ``, ``°``) and currency signs are dropped.
    * **Infinity** ``\infty`` is a symbol that only equals itself (used in intervals).

Reasons (``Verdict.reason`` starts with one of these; details may follow a colon):
    ``exact``, ``numeric``, ``numeric (within 1e-6)``, ``algebraic``, ``symbolic``, ``exact text``
    (equivalent); ``not equivalent``, ``no answer``, ``empty answer``, ``input too long``,
    ``unparseable``, ``nesting too deep``, ``number too long``, ``number too large``, ``exponent too
    large``, ``factorial too large``, ``too many items``, ``too complex``, ``undefined``,
    ``timeout``, ``symbolic check unavailable`` (not equivalent). A problem with the gold answer is
    reported as e.g. ``exponent too large: gold``.

Modules (the stages above, in order): :mod:`.extract`, :mod:`.normalize`, :mod:`.parse`,
:mod:`.fast` (the exact fast path), :mod:`.compare` (structural comparison and :func:`grade`),
:mod:`.worker` (the pool of sympy subprocesses) and :mod:`.sympy_side` (what runs inside one);
:mod:`.common` holds the limits, the reasons and :class:`Verdict`.

Processes: the symbolic worker is a plain ``python -c ...`` subprocess talking JSON lines over
pipes (not ``multiprocessing``, so user scripts need no ``__main__`` guard), with a 2 GiB address
space limit. It is safe to call :func:`grade` from any thread; concurrent symbolic checks use
separate workers (at most :data:`MAX_WORKERS`; waiting for one is charged to ``timeout``).
Importing this module does not import sympy.
"""

from __future__ import annotations

# ruff: noqa: F401 (the package re-exports the names its modules define; tests use the private ones)
from .common import (
    ALGEBRAIC,
    EMPTY,
    EXACT,
    EXACT_TEXT,
    EXPONENT_TOO_LARGE,
    FACTORIAL_TOO_LARGE,
    MAX_ANSWER_CHARS,
    MAX_COMPLETION_CHARS,
    MAX_DEPTH,
    MAX_FACTORIAL,
    MAX_ITEMS,
    MAX_NUMBER_DIGITS,
    MAX_POLY_POWER,
    MAX_POLY_TERMS,
    MAX_RESULT_BITS,
    MAX_SYMBOLIC_EXPONENT,
    MAX_SYMBOLIC_JOBS,
    MAX_WORKERS,
    NO_ANSWER,
    NOT_EQUIVALENT,
    NUMBER_TOO_LARGE,
    NUMBER_TOO_LONG,
    NUMERIC,
    REL_TOL,
    SYMBOLIC,
    TIMEOUT,
    TOLERANCE,
    TOO_COMPLEX,
    TOO_DEEP,
    TOO_LONG,
    TOO_MANY_ITEMS,
    UNAVAILABLE,
    UNDEFINED,
    UNPARSEABLE,
    WORKER_MEMORY_BYTES,
    WORKER_START_TIMEOUT,
    Verdict,
)
from .compare import grade, is_equivalent
from .extract import extract_answer
from .normalize import _normalize, _squash
from .parse import _parse, _prepare
from .worker import _POOL, _STATS, _run_symbolic, _Timeout, _Unavailable, close_workers, start_workers

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_COMPLETION_CHARS",
    "MAX_DEPTH",
    "MAX_FACTORIAL",
    "MAX_NUMBER_DIGITS",
    "MAX_RESULT_BITS",
    "REL_TOL",
    "Verdict",
    "close_workers",
    "extract_answer",
    "grade",
    "is_equivalent",
    "start_workers",
]
