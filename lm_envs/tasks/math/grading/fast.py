"""Exact fast path: canonical polynomials over Q in variables, pi and square roots of square-free ints."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from .common import (
    ALGEBRAIC,
    EXPONENT_TOO_LARGE,
    FACTORIAL_TOO_LARGE,
    MAX_FACTORIAL,
    MAX_POLY_POWER,
    MAX_POLY_TERMS,
    MAX_RESULT_BITS,
    MAX_SYMBOLIC_EXPONENT,
    NUMBER_TOO_LARGE,
    NUMERIC,
    REL_TOL,
    TOLERANCE,
    UNDEFINED,
    _Refused,
    _Syntax,
)

# A polynomial is a dict {(radical, ((name, exponent), ...)): Fraction} without zero coefficients.
# radical = m is a square-free integer, possibly negative, meaning sqrt(m) (1 = none, -1 = i).
# These square roots are linearly independent over Q, and pi and e are transcendental, so the
# form is unique. Exponents may be negative (Laurent monomials). pi, e and infinity are variables
# named "\pi", "e" and "\infty"; the imaginary unit i is the radical -1.

_Poly = dict[tuple[int, tuple[tuple[str, int], ...]], Fraction]
_ONE_KEY: tuple[int, tuple[tuple[str, int], ...]] = (1, ())


class _NotPolyType:
    """Marker: the value has no canonical polynomial form (the symbolic path decides)."""

    def __repr__(self) -> str:
        return "NOT_POLY"


_NOT = _NotPolyType()


def _const(q: Fraction) -> _Poly:
    return {_ONE_KEY: q} if q else {}


def _rational(p: _Poly | _NotPolyType) -> Fraction | None:
    if isinstance(p, _NotPolyType):
        return None
    if not p:
        return Fraction(0)
    if len(p) == 1 and _ONE_KEY in p:
        return p[_ONE_KEY]
    return None


def _check_size(q: Fraction) -> Fraction:
    if q.numerator.bit_length() > MAX_RESULT_BITS or q.denominator.bit_length() > MAX_RESULT_BITS:
        raise _Refused(f"{NUMBER_TOO_LARGE}: an intermediate value exceeds {MAX_RESULT_BITS} bits")
    return q


def _padd(a: _Poly, b: _Poly) -> _Poly | _NotPolyType:
    out = dict(a)
    for k, v in b.items():
        s = _check_size(out.get(k, 0) + v)
        if s:
            out[k] = s
        else:
            out.pop(k, None)
    return out if len(out) <= MAX_POLY_TERMS else _NOT


def _mul_keys(
    k1: tuple[int, tuple[tuple[str, int], ...]], k2: tuple[int, tuple[tuple[str, int], ...]]
) -> tuple[int, tuple[int, tuple[tuple[str, int], ...]]]:
    m1, v1 = k1
    m2, v2 = k2
    g = math.gcd(m1, m2)
    radical = (m1 // g) * (m2 // g)
    if m1 < 0 and m2 < 0:  # sqrt(-a) sqrt(-b) = -sqrt(ab)
        g = -g
    if not v1 or not v2:
        variables = v1 or v2
    else:
        exps = dict(v1)
        for name, e in v2:
            exps[name] = exps.get(name, 0) + e
        for name, e in exps.items():
            if abs(e) > MAX_SYMBOLIC_EXPONENT:
                raise _Refused(f"{EXPONENT_TOO_LARGE}: {name}^{_show(e)}")
        variables = tuple(sorted((n, e) for n, e in exps.items() if e))
    return g, (radical, variables)


def _pmul(a: _Poly, b: _Poly) -> _Poly | _NotPolyType:
    if len(a) * len(b) > 4 * MAX_POLY_TERMS:
        return _NOT
    out: _Poly = {}
    for k1, c1 in a.items():
        for k2, c2 in b.items():
            factor, key = _mul_keys(k1, k2)
            s = _check_size(out.get(key, 0) + c1 * c2 * factor)
            if s:
                out[key] = s
            else:
                out.pop(key, None)
    return out if len(out) <= MAX_POLY_TERMS else _NOT


def _pinv(p: _Poly) -> _Poly | _NotPolyType:
    if not p:
        raise _Refused(f"{UNDEFINED}: division by zero")
    if len(p) != 1:
        return _NOT
    (((radical, variables), c),) = p.items()
    # 1 / (c sqrt(m) v) = sqrt(m) / (c m v)
    return {(radical, tuple((n, -e) for n, e in variables)): _check_size(1 / (c * radical))}


def _iroot(n: int, k: int) -> int:
    """floor(n ** (1/k)) for n >= 0, exactly."""
    if n < 2:
        return n
    if k == 2:
        return math.isqrt(n)
    x = 1 << -(-n.bit_length() // k)
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x
        x = y


def _square_split(n: int) -> tuple[int, int] | None:
    """(s, m) with n = s^2 m and m square-free, or None when n is too large to factor quickly."""
    if n.bit_length() > 128:
        return None
    s, m, d = 1, 1, 2
    while d * d <= n and d < 2000:
        while n % (d * d) == 0:
            n //= d * d
            s *= d
        if n % d == 0:
            n //= d
            m *= d
        d += 1 if d == 2 else 2
    if n > 1:
        r = math.isqrt(n)
        if r * r == n:
            s *= r
        elif n < 2000**3 or d * d > n:  # at most two prime factors left, and not a square
            m *= n
        else:
            return None
    return s, m


def _psqrt(q: Fraction) -> _Poly | _NotPolyType:
    """The principal sqrt(q) of a rational q in canonical form: s/b sqrt(m) (m < 0 when q < 0)."""
    if not q:
        return {}
    split = _square_split(abs(q.numerator) * q.denominator)
    if split is None:
        return _NOT
    s, m = split
    return {(m if q > 0 else -m, ()): Fraction(s, q.denominator)}


def _exact_root(q: Fraction, k: int) -> Fraction | None:
    if q < 0:
        return None
    a, b = _iroot(q.numerator, k), _iroot(q.denominator, k)
    if a**k == q.numerator and b**k == q.denominator:
        return Fraction(a, b)
    return None


def _show(q: Fraction | int) -> str:
    """A number for a reason string: itself when short, else its size (str() of huge ints fails)."""
    q = Fraction(q)
    bits = max(q.numerator.bit_length(), q.denominator.bit_length())
    return str(q) if bits <= 64 else f"({bits}-bit number)"


def _power_bits(c: Fraction, radical: int) -> int:
    return max(c.numerator.bit_length(), c.denominator.bit_length()) + radical.bit_length()


def _ppow(base: _Poly, e: Fraction) -> _Poly | _NotPolyType:
    if e.denominator == 1:
        n = e.numerator
        if n == 0:
            return _const(Fraction(1))
        if not base:
            if n < 0:
                raise _Refused(f"{UNDEFINED}: division by zero")
            return {}
        if len(base) == 1:
            (((radical, variables), c),) = base.items()
            if not (radical == 1 and abs(c) == 1) and abs(n) * _power_bits(c, radical) > MAX_RESULT_BITS:
                raise _Refused(f"{EXPONENT_TOO_LARGE}: result would exceed {MAX_RESULT_BITS} bits")
            if any(abs(v * n) > MAX_SYMBOLIC_EXPONENT for _, v in variables):
                raise _Refused(f"{EXPONENT_TOO_LARGE}: exponent {_show(n)} on a variable")
            k = abs(n)
            coeff = c**k * radical ** (k // 2)
            key = (radical if k % 2 else 1, tuple((name, v * k) for name, v in variables))
            out: _Poly = {key: _check_size(coeff)}
            return out if n > 0 else _pinv(out)
        if abs(n) > MAX_SYMBOLIC_EXPONENT:
            raise _Refused(f"{EXPONENT_TOO_LARGE}: exponent {_show(n)}")
        if n < 0 or n > MAX_POLY_POWER:
            return _NOT
        result: _Poly | _NotPolyType = _const(Fraction(1))
        square: _Poly | _NotPolyType = base
        while n:
            if isinstance(result, _NotPolyType) or isinstance(square, _NotPolyType):
                return _NOT
            if n & 1:
                result = _pmul(result, square)
            n >>= 1
            if n:
                square = _pmul(square, square)
        return result
    if abs(e) > MAX_SYMBOLIC_EXPONENT:
        raise _Refused(f"{EXPONENT_TOO_LARGE}: exponent {_show(e)}")
    q = _rational(base)
    if q is None or e.denominator > 64 or (q < 0 and e.denominator != 2):
        return _NOT
    root = _exact_root(q, e.denominator)
    if root is not None:
        return _ppow(_const(root), Fraction(e.numerator))
    if e.denominator == 2:
        s = _psqrt(q)
        return _NOT if isinstance(s, _NotPolyType) else _ppow(s, Fraction(e.numerator))
    return _NOT


def _to_poly(node: tuple[Any, ...]) -> _Poly | _NotPolyType:
    """Canonical polynomial of a scalar tree, or ``_NOT``.

    Evaluates every subtree, so that every size limit is checked even where the result goes to
    sympy; raises :class:`_Refused`.
    """
    tag = node[0]
    if tag == "num":
        return _const(Fraction(node[1]) if node[2] == 1 else Fraction(node[1], node[2]))
    if tag == "sym":
        if node[1] == "i":
            return {(-1, ()): Fraction(1)}
        return {(1, ((node[1], 1),)): Fraction(1)}
    if tag == "inf":
        return {(1, (("\\infty", 1),)): Fraction(1)}
    if tag in ("add", "mul"):
        parts = [_to_poly(child) for child in node[1]]
        acc: _Poly | _NotPolyType = parts[0]
        for part in parts[1:]:
            if isinstance(acc, _NotPolyType) or isinstance(part, _NotPolyType):
                return _NOT
            acc = _padd(acc, part) if tag == "add" else _pmul(acc, part)
        return acc
    if tag == "neg":
        p = _to_poly(node[1])
        return p if isinstance(p, _NotPolyType) else {k: -v for k, v in p.items()}
    if tag == "inv":
        p = _to_poly(node[1])
        return p if isinstance(p, _NotPolyType) else _pinv(p)
    if tag == "pow":
        base, exponent = _to_poly(node[1]), _to_poly(node[2])
        e = _rational(exponent)
        if e is None:
            return _NOT
        if isinstance(base, _NotPolyType):
            if abs(e) > MAX_SYMBOLIC_EXPONENT:
                raise _Refused(f"{EXPONENT_TOO_LARGE}: exponent {_show(e)}")
            return _NOT
        return _ppow(base, e)
    if tag == "root":
        x = _to_poly(node[1])
        index = Fraction(2) if node[2] is None else _rational(_to_poly(node[2]))
        if index is None or index.denominator != 1 or not 2 <= index <= 64:
            return _NOT
        q = _rational(x)
        if q is None:
            return _NOT
        if index == 2:
            return _psqrt(q)
        if q < 0 and index % 2 == 1:  # \sqrt[3]{-8} is the real root -2
            root = _exact_root(-q, int(index))
            return _NOT if root is None else _const(-root)
        root = _exact_root(q, int(index))
        return _NOT if root is None else _const(root)
    if tag == "fact":
        n = _rational(_to_poly(node[1]))
        if n is None or n.denominator != 1:
            return _NOT
        if n < 0:
            raise _Refused(f"{UNDEFINED}: factorial of a negative integer")
        if n > MAX_FACTORIAL:
            raise _Refused(f"{FACTORIAL_TOO_LARGE}: {_show(n)}! (limit {MAX_FACTORIAL}!)")
        return _const(Fraction(math.factorial(int(n))))
    if tag == "binom":
        n, k = _rational(_to_poly(node[1])), _rational(_to_poly(node[2]))
        if n is not None and n > MAX_FACTORIAL:
            raise _Refused(f"{FACTORIAL_TOO_LARGE}: binomial of {_show(n)} (limit {MAX_FACTORIAL})")
        if n is None or k is None or n.denominator != 1 or k.denominator != 1 or n < 0:
            return _NOT
        return _const(Fraction(math.comb(int(n), int(k)) if 0 <= k <= n else 0))
    if tag == "abs":
        q = _rational(_to_poly(node[1]))
        return _NOT if q is None else _const(abs(q))
    if tag == "func":
        _to_poly(node[2])
        return _NOT
    if tag == "log":
        _to_poly(node[1])
        if node[2] is not None:
            _to_poly(node[2])
        return _NOT
    raise _Syntax(f"unexpected node {tag}")


_CONSTANTS = {"\\pi": math.pi, "e": math.e}


def _float_groups(p: _Poly) -> dict[tuple[tuple[str, int], ...], complex] | None:
    """Sum of the numeric parts (coefficient, radical, powers of pi and e) per other monomial."""
    out: dict[tuple[tuple[str, int], ...], complex] = {}
    try:
        for (radical, variables), c in p.items():
            value = float(c) * (math.sqrt(radical) if radical > 0 else 1j * math.sqrt(-radical))
            rest = []
            for name, e in variables:
                if name in _CONSTANTS:
                    value *= _CONSTANTS[name] ** e
                else:
                    rest.append((name, e))
            key = tuple(rest)
            out[key] = out.get(key, 0.0) + value
    except (OverflowError, ZeroDivisionError):
        return None
    if not all(math.isfinite(v.real) and math.isfinite(v.imag) for v in out.values()):
        return None
    return out


def _close(a: complex, b: complex) -> bool:
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def _poly_equal(a: _Poly, b: _Poly, tolerant: bool) -> str | None:
    """The reason they are equal, or None."""
    if a == b:
        if all(k == _ONE_KEY for k in a) and all(k == _ONE_KEY for k in b):
            return NUMERIC
        return ALGEBRAIC
    if not tolerant:
        return None
    fa, fb = _float_groups(a), _float_groups(b)
    if fa is None or fb is None:
        return None
    if all(_close(fa.get(k, 0.0), fb.get(k, 0.0)) for k in fa.keys() | fb.keys()):
        return TOLERANCE
    return None


def _poly_proportional(a: _Poly, b: _Poly, positive: bool) -> bool:
    """Whether a == c * b for a rational constant c != 0 (c > 0 when ``positive``)."""
    if not a or not b:
        return not a and not b
    if a.keys() != b.keys():
        return False
    key = next(iter(b))
    ratio = a[key] / b[key]
    if positive and ratio <= 0:
        return False
    return all(a[k] == ratio * v for k, v in b.items())


def _has_decimal(node: Any) -> bool:
    """Whether a tree holds a decimal literal (an explicit stack: trees are shallow but wide)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if item.__class__ is tuple and item:
            if item[0] == "num":
                if item[3]:
                    return True
            else:
                stack.extend(item)
    return False


def _is_int_literal(node: tuple[Any, ...]) -> bool:
    if node[0] == "neg":
        node = node[1]
    return node[0] == "num" and node[2] == 1 and not node[3]
