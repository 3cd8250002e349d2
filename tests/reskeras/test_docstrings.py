"""The examples in the docstrings of the study's light modules run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ("reskeras.study.criteria", "reskeras.study.cells",
           "reskeras.study.measures.gradient_flow", "reskeras.study.measures.block_graph",
           "reskeras.study.judgment.hypotheses", "reskeras.study.report.figure_style",
           "reskeras.study.report.text", "reskeras.study.report.render", "export.serving",
           "reskeras.analysis.records", "reskeras.trace_cache", "reskeras.study.report.time_table",
           "reskeras.study.judgment.convergence", "reskeras.study.judgment.intervals",
           "reskeras.study.judgment.recipes", "reskeras.study.report.budget_figures",
           "reskeras.recipes", "reskeras.rundir", "reskeras.study.judgment.interventions",
           "reskeras.study.judgment.rivals", "reskeras.study.judgment.symptoms", "reskeras.study.judgment.depth_trend",
           "reskeras.study.judgment.landscape", "reskeras.study.judgment.identity_task", "reskeras.study.judgment.responses",
           "reskeras.study.measures.responses")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    found = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert found.attempted > 0
    assert found.failed == 0
