"""The symbolic worker's own side: runs in the subprocess, imports sympy."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from .common import MAX_FACTORIAL, MAX_RESULT_BITS, MAX_SYMBOLIC_EXPONENT, REL_TOL, WORKER_MEMORY_BYTES


def _worker_main() -> None:  # pragma: no cover - runs in the subprocess
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = WORKER_MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(WORKER_MEMORY_BYTES, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass
    parent = os.getppid()

    def watch_parent() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    import sympy

    x = sympy.Symbol("x")
    sympy.simplify((x + 1) ** 2 - x**2 - 2 * x - 1)  # warm the caches before saying READY
    out.write(b"READY\n")
    out.flush()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        results = _worker_jobs(request, sympy)
        out.write(json.dumps({"id": request.get("id"), "results": results}).encode() + b"\n")
        out.flush()


def _worker_jobs(request: dict[str, Any], sp: Any) -> list[Any]:
    nodes = request.get("nodes", [])
    built: dict[int, Any] = {}

    def get(i: int) -> Any:
        if i not in built:
            built[i] = _to_sympy(nodes[i], sp)
        return built[i]

    results: list[Any] = []
    for job in request.get("jobs", []):
        try:
            kind = job[0]
            if kind == "sleep":  # for tests of the timeout
                time.sleep(float(job[1]))
                result: Any = True
            elif kind == "eq":
                result = _sympy_equal(get(job[1]), get(job[2]), bool(job[3]), sp)
            elif kind in ("prop", "prop+"):
                result = _sympy_proportional(get(job[1]), get(job[2]), kind == "prop+", sp)
            else:
                result = f"error: unknown job {kind!r}"
        except Exception as exc:
            result = f"error: {type(exc).__name__}: {str(exc)[:200]}"
        results.append(result)
    return results


_SYMPY_FUNCS = {
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "cot": "cot",
    "sec": "sec",
    "csc": "csc",
    "arcsin": "asin",
    "arccos": "acos",
    "arctan": "atan",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "exp": "exp",
}


def _to_sympy(node: list[Any], sp: Any) -> Any:
    """Build a sympy object from a parsed tree (JSON lists), re-checking the size limits."""
    tag = node[0]
    if tag == "num":
        return sp.Rational(int(node[1]), int(node[2]))
    if tag == "sym":
        return {"\\pi": sp.pi, "e": sp.E, "i": sp.I}.get(node[1]) or sp.Symbol(node[1])
    if tag == "inf":
        return sp.oo
    if tag == "add":
        return sp.Add(*[_to_sympy(c, sp) for c in node[1]])
    if tag == "mul":
        return sp.Mul(*[_to_sympy(c, sp) for c in node[1]])
    if tag == "neg":
        return -_to_sympy(node[1], sp)
    if tag == "inv":
        x = _to_sympy(node[1], sp)
        if x == 0:
            raise ZeroDivisionError("division by zero")
        return sp.Pow(x, -1)
    if tag == "pow":
        base, e = _to_sympy(node[1], sp), _to_sympy(node[2], sp)
        if e.is_Rational and abs(e) > MAX_SYMBOLIC_EXPONENT:
            raise ValueError("exponent too large")
        if base.is_Rational and e.is_Integer and base not in (0, 1, -1):
            bits = max(int(base.p).bit_length(), int(base.q).bit_length())
            if abs(int(e)) * bits > MAX_RESULT_BITS:
                raise ValueError("exponent too large")
        return sp.Pow(base, e)
    if tag == "root":
        x = _to_sympy(node[1], sp)
        if node[2] is None:
            return sp.sqrt(x)
        index = _to_sympy(node[2], sp)
        if index.is_Integer and index % 2 == 1 and x.is_number and x.is_negative:
            return -sp.root(-x, index)  # \sqrt[3]{-8} is the real root -2
        return sp.root(x, index)
    if tag == "fact":
        x = _to_sympy(node[1], sp)
        if x.is_Integer and (x > MAX_FACTORIAL or x < 0):
            raise ValueError("factorial out of range")
        return sp.factorial(x)
    if tag == "binom":
        n, k = _to_sympy(node[1], sp), _to_sympy(node[2], sp)
        if n.is_Integer and n > MAX_FACTORIAL:
            raise ValueError("binomial out of range")
        return sp.binomial(n, k)
    if tag == "abs":
        return sp.Abs(_to_sympy(node[1], sp))
    if tag == "func":
        return getattr(sp, _SYMPY_FUNCS[node[1]])(_to_sympy(node[2], sp))
    if tag == "log":
        x = _to_sympy(node[1], sp)
        return sp.log(x) if node[2] is None else sp.log(x, _to_sympy(node[2], sp))
    raise ValueError(f"unexpected node {tag!r}")


def _sympy_equal(a: Any, b: Any, tolerant: bool, sp: Any) -> bool:
    if a == b:
        return True
    if any(v.has(sp.zoo, sp.nan) for v in (a, b)):
        return False
    if tolerant:
        return _sympy_close(a, b, sp)
    d = a - b
    if d == 0:
        return True
    d = sp.simplify(d)
    if d == 0:
        return True
    return d.equals(0) is True


def _sympy_close(a: Any, b: Any, sp: Any) -> bool:
    """Equal within REL_TOL at the exact value, or at three sample points if there are symbols."""
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    points = (
        [{}]
        if not symbols
        else [{s: sp.Rational(37 + 11 * k + 7 * i, 29 + 3 * i) for i, s in enumerate(symbols)} for k in range(3)]
    )
    for point in points:
        va = complex(sp.N(a.subs(point), 30))
        vb = complex(sp.N(b.subs(point), 30))
        if not abs(va - vb) <= REL_TOL * max(abs(va), abs(vb)):
            return False
    return True


def _sympy_proportional(a: Any, b: Any, positive: bool, sp: Any) -> bool:
    if sp.simplify(b) == 0:
        return bool(sp.simplify(a) == 0)
    ratio = sp.simplify(a / b)
    if ratio.free_symbols or not ratio.is_number or ratio.has(sp.zoo, sp.nan, sp.oo):
        return False
    if positive:
        return bool(ratio.is_positive)
    return ratio.is_zero is False
