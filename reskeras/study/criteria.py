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
>>> [c.key for c in TABLE if c.changed][:5]  # changed after the rules were first fixed
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
              "vanishing gradients: the first/last conv ratio of relative gradient norms "
              "||g||/||w|| (median over training) is below this (the interval over seeds of "
              "its log10, per family; the raw-norm ratio is reported beside)",
              "reskeras.study.measures.gradient_flow", "2026-12-07"),
    Criterion("exploding_ratio", 100.0,
              "exploding gradients at initialization: that relative ratio at step 0 is above "
              "this",
              "reskeras.study.measures.gradient_flow", "2026-12-07"),
    Criterion("gap_closed", 0.5,
              "an intervention supports its hypothesis when the interval over seeds of the "
              "fraction of the training-error gap to its reference net it closes lies wholly "
              "above this (wholly below: refuted); any seed that ran but cannot decide leaves "
              "it inconclusive",
              f"{_JUDGMENT}.interventions", "2026-12-07"),
    Criterion("min_gap_points", 2.0,
              "a gap below this many percentage points leaves an intervention undecided "
              "(nothing to close)",
              f"{_JUDGMENT}.interventions"),
    Criterion("identity_factor", 2.0,
              "identity task: residual stacks must keep their input this many times as deep "
              "as plain ones; a seed where both stacks fail at the deepest depth is undecided, "
              "and the task is inconclusive while its shallowest stacks have not converged",
              f"{_JUDGMENT}.identity_task", "2026-12-07"),
    Criterion("identity_learned", 0.2,
              "identity task: a stack keeps its input while its relative reconstruction "
              "error is below this",
              f"{_JUDGMENT}.identity_task", "2026-12-07"),
    Criterion("identity_premise", 0.5,
              "an identity-initialized net must start with median block distance from the "
              "identity below this; a control meant to start far from it (permuted identity, "
              "delta-orthogonal) must start at least this far; an unmeasured start decides "
              "nothing",
              f"{_JUDGMENT}.interventions", "2026-12-07"),
    Criterion("ensemble_damage", 0.1,
              "ensemble: the residual net's median lesion damage (fraction of the way to "
              "chance) must be below this, and below half that of a plain net of its depth "
              "that trained (the identity-initialized one); inconclusive when either is not "
              "measurable",
              f"{_JUDGMENT}.hypotheses", "2026-12-07"),
    Criterion("min_headroom", 0.1,
              "a net within this of chance has no lesion damage to measure",
              f"{_JUDGMENT}.hypotheses"),
    Criterion("shattering_gap", 0.1,
              "shattering: the plain net's neighbour gradient correlation at initialization "
              "must be at least this far below the residual twin's",
              f"{_JUDGMENT}.hypotheses"),
    Criterion("reference_trained", 0.1,
              "an intervention's reference net (the twin whose error it should reach) trained "
              "when every seed converged, none failed to start and its mean training error is "
              "below this; otherwise the fraction of the gap closed is not measured against a "
              "ceiling and the hypothesis is inconclusive",
              f"{_JUDGMENT}.interventions", "2026-12-07"),
    Criterion("symptom_removed", 0.5,
              "a symptom of the deep plain net at initialization (gradient growth, sharpness, "
              "shattering) is removed by an intervention when the intervention's value moved "
              "at least this fraction of the way from the plain twin's to the residual twin's "
              "(log10 scale for ratios and eigenvalues); a symptom counts as a cause only if "
              "the intervention that makes the net train removes it",
              f"{_JUDGMENT}.symptoms"),
    Criterion("lr_sweep_rates", 4,
              "learning_rate is refuted only by a sweep of at least this many rates (the "
              "recipe's excluded) of which none closes the gap; fewer rates give at most "
              "supported or inconclusive",
              f"{_JUDGMENT}.rivals", "2026-12-07"),
    Criterion("lr_sweep_span", 100.0,
              "... and spanning at least this factor between the smallest and largest rate",
              f"{_JUDGMENT}.rivals", "2026-12-07"),
    Criterion("sharpness_margin", 2.0,
              "landscape: supported when the 95% interval over seeds of log10(plain / residual "
              "scale-invariant sharpness after training) lies wholly above log10 of this, "
              "refuted when wholly at or below 0; inconclusive while a seed has no value (its "
              "power iteration did not converge, or a twin was not measured)",
              f"{_JUDGMENT}.landscape", "2026-12-07"),
    Criterion("response_margin", 1.5,
              "small_responses: supported when the 95% interval over seeds of log10(plain "
              "layer response std / residual branch response std) lies wholly above log10 of "
              "this, refuted when wholly below 0",
              f"{_JUDGMENT}.responses"),
    Criterion("identity_converged", 0.01,
              "identity task: a stack has converged when its relative reconstruction error "
              "moved by less than this over the last doubling of its steps; the task doubles "
              "its steps until the shallowest stacks of both kinds converged (or a cap)",
              "reskeras.study.measures.identity_task", "2026-12-07"),
    Criterion("rate_sweep_budget", 4,
              "a learning-rate sweep trains each of its rates (1, 0.3, 0.1, 0.03 and 0.01 x the "
              "recipe's) from each held-out seed (100, 101, 102) for this many times the base "
              "budget, and picks the rate with the lowest mean full-pass training loss over "
              "the seeds; a rate with a diverged or non-finite seed is out. TAT's net and "
              "the plain BN net (the same chance) each get one sweep per recipe; with no "
              "rate left, their cells do not run and the rules that need them are "
              "inconclusive", f"{_JUDGMENT}.rates"),
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
REFERENCE_TRAINED = _VALUES["reference_trained"]
SYMPTOM_REMOVED = _VALUES["symptom_removed"]
LR_SWEEP_RATES = _VALUES["lr_sweep_rates"]
LR_SWEEP_SPAN = _VALUES["lr_sweep_span"]
SHARPNESS_MARGIN = _VALUES["sharpness_margin"]
RESPONSE_MARGIN = _VALUES["response_margin"]
IDENTITY_CONVERGED = _VALUES["identity_converged"]
RATE_SWEEP_BUDGET = _VALUES["rate_sweep_budget"]


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
           "GAP_CLOSED", "IDENTITY_CONVERGED", "IDENTITY_FACTOR", "IDENTITY_LEARNED",
           "IDENTITY_PREMISE", "LR_SWEEP_RATES", "LR_SWEEP_SPAN", "MIN_GAP_POINTS",
           "MIN_HEADROOM", "RATE_SWEEP_BUDGET", "REFERENCE_TRAINED", "RESPONSE_MARGIN", "SHARPNESS_MARGIN",
           "SHATTERING_GAP", "SYMPTOM_REMOVED", "TABLE", "TRAIN_ERROR", "VANISHING_RATIO",
           "criteria", "markdown_table"]
