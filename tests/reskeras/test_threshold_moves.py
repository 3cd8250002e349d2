"""Moving any numeric criterion of the study fails a test (issue 31).

For each criterion of :mod:`reskeras.study.criteria` with a number for a value, its tables
(tests/reskeras/thresholds.py) hold at the real value and break when the value moves 10%
either way (one step for a count) in every module that reads it.
"""

import importlib

import pytest

from tests.reskeras.thresholds import (TABLE_MODULES, TABLES, mismatches, moved, moves,
                                       numeric_criteria)

for _module in TABLE_MODULES:
    importlib.import_module(_module)

NUMERIC = numeric_criteria()


def test_every_numeric_criterion_has_a_table():
    assert sorted(n for n in NUMERIC if not TABLES.get(n)) == []


@pytest.mark.parametrize("name", sorted(NUMERIC))
def test_its_tables_hold_at_the_real_value(name):
    for table in TABLES.get(name, []):
        assert mismatches(table) == [], table.__name__


@pytest.mark.parametrize("direction", ["down", "up"])
@pytest.mark.parametrize("name", sorted(NUMERIC))
def test_moving_it_breaks_a_row(name, direction):
    value = moves(name, NUMERIC[name])[direction == "up"]
    tables = TABLES.get(name, [])
    assert tables, f"{name} has no table"
    with moved(name, value):
        broken = [row for table in tables for row in mismatches(table)]
    assert broken, f"{name} moved to {value!r}: every row still holds"


def test_moved_restores_the_value_in_every_module():
    from reskeras.study.judgment import interventions

    before = interventions.GAP_CLOSED
    with moved("GAP_CLOSED", 0.25):
        assert interventions.GAP_CLOSED == 0.25
    assert interventions.GAP_CLOSED == before == NUMERIC["GAP_CLOSED"]


def test_moves_are_ten_percent_or_one_step():
    assert moves("GAP_CLOSED", 0.5) == pytest.approx((0.45, 0.55))
    assert moves("LR_SWEEP_RATES", 4) == (3, 5)
    assert moves("CONFIDENCE", 0.95) == pytest.approx((0.855, 0.975))
