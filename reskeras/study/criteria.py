"""The study's criteria: every threshold and measure a label or a rule reads, in one table.

:data:`TABLE` is the one source: each :class:`Criterion` has its key (as
``verdict.json["criteria"]`` records it), its value, the rule that reads it, the module
that applies it and the date of its last change (``None``: as first fixed). The
gradient-flow labels (:mod:`reskeras.study.measures.gradient_flow`) and the rules of
:mod:`reskeras.study.judgment` read the module constants below, which are the table's
values; :func:`criteria` is what a study's ``verdict.json`` records, so a verdict names the
rules it was judged by. docs/study.md shows :func:`markdown_table` word for word (a test
checks it), and every criterion with a ``changed`` date has a row of that date in the
rule history there (a test checks that too): a rule changes only visibly.

``python -c "from reskeras.study.criteria import markdown_table; print(markdown_table())"``
prints the table.

Example:

>>> criteria()["degradation_points"], criteria()["vanishing_ratio"]
(2.0, 0.01)
>>> [c.key for c in TABLE if c.changed]  # changed after the rules were first fixed
['train_error', 'converged_points', 'failed_to_start', 'confidence', 'bootstrap_seeds']
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Criterion:
    """One threshold or measure: ``key``, ``value``, the ``rule`` that reads it, where.

    ``changed`` is the date (``YYYY-MM-DD``) of the rule history row that gave the rule
    its present form, ``None`` while it is as first fixed.
    """

    key: str
    value: float | int | str
    rule: str
    applied_by: str
    changed: str | None = None


_JUDGMENT = "reskeras.study.judgment"
TABLE: tuple[Criterion, ...] = (
    Criterion("train_error", "precise",
              "which training and test error every rule reads: inference with BatchNorm "
              "statistics recomputed with the final weights (the moving averages lag the "
              "weights); a net without BatchNorm gives equal numbers every way",
              "reskeras.study.measures.training_error", "2026-12-07"),
    Criterion("converged_points", 0.5,
              "a cell has converged at a budget when its full-pass training error moved by "
              "less than this many percentage points over the last doubling and it has "
              "started (below); else it trains on to the next doubling, up to the cap",
              f"{_JUDGMENT}.convergence", "2026-12-07"),
    Criterion("failed_to_start", 0.05,
              "a cell failed to start when its full-pass training loss at the final budget is "
              "within this fraction of ln(classes), the loss of a uniform prediction",
              f"{_JUDGMENT}.convergence", "2026-12-07"),
    Criterion("confidence", 0.95,
              "the coverage of every interval over seeds; yes/no only when the whole "
              "interval is on one side of the threshold, inconclusive when it straddles",
              f"{_JUDGMENT}.intervals", "2026-12-07"),
    Criterion("bootstrap_seeds", 5,
              "from this many seeds on the interval is a percentile bootstrap of the mean "
              "(10,000 resamples); below it, a Student t-interval",
              f"{_JUDGMENT}.intervals", "2026-12-07"),
    Criterion("degradation_points", 2.0,
              "degradation: the deepest net's training error exceeds the shallowest's by more "
              "than this many percentage points",
              f"{_JUDGMENT}.verdict"),
    Criterion("vanishing_ratio", 0.01,
              "vanishing gradients: the first/last conv gradient-norm ratio (median over "
              "training) is below this",
              "reskeras.study.measures.gradient_flow"),
    Criterion("exploding_ratio", 100.0,
              "exploding gradients at initialization: that ratio at step 0 is above this",
              "reskeras.study.measures.gradient_flow"),
    Criterion("gap_closed", 0.5,
              "an intervention supports its hypothesis when it closes at least this fraction "
              "of the training-error gap to its reference net",
              f"{_JUDGMENT}.hypotheses"),
    Criterion("min_gap_points", 2.0,
              "a gap below this many percentage points leaves an intervention undecided "
              "(nothing to close)",
              f"{_JUDGMENT}.hypotheses"),
    Criterion("identity_factor", 2.0,
              "identity task: residual stacks must keep their input this many times as deep "
              "as plain ones",
              f"{_JUDGMENT}.hypotheses"),
    Criterion("identity_learned", 0.2,
              "identity task: a stack keeps its input while its relative reconstruction "
              "error is below this",
              f"{_JUDGMENT}.hypotheses"),
    Criterion("identity_premise", 0.5,
              "an identity-initialized net must start with median block distance from the "
              "identity below this",
              f"{_JUDGMENT}.hypotheses"),
    Criterion("ensemble_damage", 0.1,
              "ensemble: the residual net's median lesion damage (fraction of the way to "
              "chance) must be below this, and below half the plain net's",
              f"{_JUDGMENT}.hypotheses"),
    Criterion("min_headroom", 0.1,
              "a net within this of chance has no lesion damage to measure",
              f"{_JUDGMENT}.hypotheses"),
    Criterion("shattering_gap", 0.1,
              "shattering: the plain net's neighbour gradient correlation at initialization "
              "must be at least this far below the residual twin's",
              f"{_JUDGMENT}.hypotheses"),
)
_VALUES = {c.key: c.value for c in TABLE}

TRAIN_ERROR = _VALUES["train_error"]
CONVERGED_POINTS = _VALUES["converged_points"]
FAILED_TO_START = _VALUES["failed_to_start"]
CONFIDENCE = _VALUES["confidence"]
BOOTSTRAP_SEEDS = _VALUES["bootstrap_seeds"]
DEGRADATION_POINTS = _VALUES["degradation_points"]
VANISHING_RATIO = _VALUES["vanishing_ratio"]
EXPLODING_RATIO = _VALUES["exploding_ratio"]
GAP_CLOSED = _VALUES["gap_closed"]
MIN_GAP_POINTS = _VALUES["min_gap_points"]
IDENTITY_FACTOR = _VALUES["identity_factor"]
IDENTITY_LEARNED = _VALUES["identity_learned"]
IDENTITY_PREMISE = _VALUES["identity_premise"]
ENSEMBLE_DAMAGE = _VALUES["ensemble_damage"]
MIN_HEADROOM = _VALUES["min_headroom"]
SHATTERING_GAP = _VALUES["shattering_gap"]


def criteria() -> dict:
    """The table as ``verdict.json`` records it: ``{key: value}``, in table order."""
    return dict(_VALUES)


def markdown_table() -> str:
    """The table as docs/study.md shows it (one row per criterion, no trailing newline)."""
    rows = ["| key | value | rule | applied by | last changed |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| `{c.key}` | {c.value!r} | {c.rule} | `{c.applied_by}` | "
             f"{c.changed or 'as first fixed'} |" for c in TABLE]
    return "\n".join(rows)


__all__ = ["BOOTSTRAP_SEEDS", "CONFIDENCE", "CONVERGED_POINTS", "Criterion",
           "DEGRADATION_POINTS", "ENSEMBLE_DAMAGE", "EXPLODING_RATIO", "FAILED_TO_START",
           "GAP_CLOSED", "IDENTITY_FACTOR", "IDENTITY_LEARNED", "IDENTITY_PREMISE",
           "MIN_GAP_POINTS", "MIN_HEADROOM", "SHATTERING_GAP", "TABLE", "TRAIN_ERROR",
           "VANISHING_RATIO", "criteria", "markdown_table"]
