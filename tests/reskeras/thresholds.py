"""Threshold tables: every numeric criterion of the study pinned by rows on both sides of it.

Each rule's test module writes one *table* per criterion: a function, decorated with
:func:`pins`, that returns rows ``(label, found, expected)`` computed by the real judgment
code on inputs just on each side of the criterion's value. Its own test asserts that every
row holds (:func:`mismatches` is empty). tests/reskeras/test_threshold_moves.py then moves
each criterion by :func:`moves` (10% either way; one step either way for a count) in every
loaded ``reskeras`` module that holds it and asserts that some row of its table breaks: a
threshold that can move without a failing test is a test that cannot fail.

Example (the shape of a table):

>>> @pins("DEGRADATION_POINTS")            # doctest: +SKIP
... def degradation_points():
...     return [("2.1 points degrades", degraded(2.1), True),
...             ("1.9 points does not", degraded(1.9), False)]
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable

from reskeras.study import criteria

#: criterion constant name (as in :mod:`reskeras.study.criteria`) -> its tables
TABLES: dict[str, list[Callable[[], list[tuple]]]] = {}

#: the modules whose tables are registered; test_threshold_moves imports them all
TABLE_MODULES = (
    "tests.reskeras.test_thresholds_gaps",
    "tests.reskeras.test_thresholds_flags",
    "tests.reskeras.test_thresholds_measures",
)


def constant(key: str) -> str:
    """The module constant of criterion ``key``: ``"gap_closed"`` -> ``"GAP_CLOSED"``."""
    return key.upper()


def numeric_criteria() -> dict[str, float | int]:
    """Every criterion whose value is a number, by constant name."""
    return {constant(c.key): c.value for c in criteria.TABLE
            if isinstance(c.value, (int, float)) and not isinstance(c.value, bool)}


def pins(*names: str):
    """Register the decorated table as pinning the criteria ``names`` (constant names)."""
    known = set(numeric_criteria())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"names={unknown!r}: not numeric criteria of reskeras.study.criteria")

    def register(table):
        for name in names:
            TABLES.setdefault(name, []).append(table)
        return table
    return register


def mismatches(table) -> list[tuple]:
    """The rows of ``table()`` whose found value differs from the expected one."""
    return [(label, found, expected) for label, found, expected in table()
            if found != expected]


def moves(name: str, value: float | int) -> tuple:
    """The two moved values a criterion's table must notice: 10% down and up; one step
    down and up for a count (an int); for ``CONFIDENCE``, a probability below 1, 10% down
    and half way to 1 (10% up would leave [0, 1])."""
    if isinstance(value, int):
        return value - 1, value + 1
    if name == "CONFIDENCE":
        return value * 0.9, (1 + value) / 2
    return value * 0.9, value * 1.1


@contextlib.contextmanager
def moved(name: str, value):
    """Set constant ``name`` to ``value`` in every loaded ``reskeras`` module that holds it
    (the rules import it by name), and restore it after."""
    saved = []
    for module_name, module in list(sys.modules.items()):
        if module_name.split(".")[0] == "reskeras" and hasattr(module, name):
            saved.append((module, getattr(module, name)))
            setattr(module, name, value)
    if not saved:
        raise ValueError(f"name={name!r}: no loaded reskeras module holds it")
    try:
        yield
    finally:
        for module, old in saved:
            setattr(module, name, old)
