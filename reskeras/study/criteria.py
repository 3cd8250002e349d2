"""The study's criteria: every threshold and measure a label or a rule reads, in one table.

The gradient-flow labels (:mod:`reskeras.study.measures.gradient_flow`) and the
rules of :mod:`reskeras.study.judgment` read their thresholds from here, and
``verdict.json["criteria"]`` records :func:`criteria`, so a study's verdict names
the rules it was judged by. docs/study.md explains each one; a changed threshold
goes in its rule history.

- ``TRAIN_ERROR``: which training (and test) error every rule reads: ``"precise"``,
  inference with BatchNorm statistics recomputed with the final weights
  (:mod:`reskeras.study.measures.training_error`; the moving averages lag the weights
  and compound over a deep net's layers). A net without BatchNorm gives equal numbers
  every way.
- ``CONVERGED_POINTS``: a cell has converged at a budget when its full-pass training
  error moved by less than this many percentage points since half that budget (the
  last doubling) and it has started (below); else it trains on to the next doubling,
  up to the study's cap (:mod:`reskeras.study.judgment.convergence`).
- ``FAILED_TO_START``: a cell *failed to start* when its full-pass training loss is
  still within this fraction of ln(classes), the loss of a uniform prediction.
- ``CONFIDENCE``: the coverage of every interval over seeds (a t-interval below
  ``BOOTSTRAP_SEEDS`` seeds, a percentile bootstrap from there on).
- ``DEGRADATION_POINTS``: the deepest net's training error exceeds the
  shallowest's by more than this many percentage points (degradation).
- ``VANISHING_RATIO`` / ``EXPLODING_RATIO``: the first/last conv gradient-norm
  ratio below / above which gradients vanish / explode.
- ``GAP_CLOSED``: the fraction of the gap to the reference net that an
  intervention must close to be supported.
- ``MIN_GAP_POINTS``: a gap below this many points leaves an intervention undecided.
- ``IDENTITY_PREMISE``: an identity-initialized net must start with median block
  distance from the identity below this.
- ``IDENTITY_LEARNED``: a stack keeps its input while its relative
  reconstruction error is below this.
- ``IDENTITY_FACTOR``: residual stacks must keep their input this many times as
  deep as plain ones.
- ``ENSEMBLE_DAMAGE``: the residual net's median lesion damage must be below this.
- ``MIN_HEADROOM``: a net within this of chance has no lesion damage to measure.
- ``SHATTERING_GAP``: the plain net's neighbour gradient correlation must be at
  least this far below the residual twin's.

Example:

>>> criteria()["degradation_points"], criteria()["vanishing_ratio"]
(2.0, 0.01)
"""

from __future__ import annotations

TRAIN_ERROR = "precise"
CONVERGED_POINTS = 0.5
FAILED_TO_START = 0.05
CONFIDENCE = 0.95
BOOTSTRAP_SEEDS = 5
DEGRADATION_POINTS = 2.0
VANISHING_RATIO = 0.01
EXPLODING_RATIO = 100.0
GAP_CLOSED = 0.5
MIN_GAP_POINTS = 2.0
IDENTITY_PREMISE = 0.5
IDENTITY_LEARNED = 0.2
IDENTITY_FACTOR = 2.0
ENSEMBLE_DAMAGE = 0.1
MIN_HEADROOM = 0.1
SHATTERING_GAP = 0.1


def criteria() -> dict:
    """The table as ``verdict.json`` records it: ``{name in lower case: threshold}``."""
    return {"train_error": TRAIN_ERROR, "converged_points": CONVERGED_POINTS,
            "failed_to_start": FAILED_TO_START, "confidence": CONFIDENCE,
            "bootstrap_seeds": BOOTSTRAP_SEEDS, "degradation_points": DEGRADATION_POINTS,
            "vanishing_ratio": VANISHING_RATIO,
            "exploding_ratio": EXPLODING_RATIO, "gap_closed": GAP_CLOSED,
            "min_gap_points": MIN_GAP_POINTS, "identity_factor": IDENTITY_FACTOR,
            "identity_learned": IDENTITY_LEARNED, "identity_premise": IDENTITY_PREMISE,
            "ensemble_damage": ENSEMBLE_DAMAGE, "min_headroom": MIN_HEADROOM,
            "shattering_gap": SHATTERING_GAP}


__all__ = ["BOOTSTRAP_SEEDS", "CONFIDENCE", "CONVERGED_POINTS", "DEGRADATION_POINTS",
           "FAILED_TO_START", "ENSEMBLE_DAMAGE", "EXPLODING_RATIO", "GAP_CLOSED",
           "IDENTITY_FACTOR", "IDENTITY_LEARNED", "IDENTITY_PREMISE", "MIN_GAP_POINTS",
           "MIN_HEADROOM", "SHATTERING_GAP", "TRAIN_ERROR", "VANISHING_RATIO", "criteria"]
