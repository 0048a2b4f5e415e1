"""The leaderboard's docstring examples run (pytest collects doctests from lm_envs only)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import leaderboard

MODULES = ["leaderboard"] + [
    f"leaderboard.{m.name}" for m in pkgutil.iter_modules(leaderboard.__path__) if m.name != "__main__"
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name} (run python -m doctest -v)"


def test_every_module_has_examples():
    finder = doctest.DocTestFinder()
    without = [
        name
        for name in MODULES
        if not any(t.examples for t in finder.find(importlib.import_module(name))) and name not in ("leaderboard.cli",)
    ]
    assert without == []
