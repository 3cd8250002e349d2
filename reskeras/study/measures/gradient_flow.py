"""Gradient flow of one run, from its ``grad_norms.jsonl``: vanishing, healthy or exploding.

The measure is the ratio of the first conv layer's gradient to the last conv layer's
(``stem_conv`` against the last ``..._conv{k}`` before the classifier; BatchNorm
layers, shortcut projections and the dense classifier are left out), in **relative**
norms ``||g|| / ||w||`` of each conv kernel (the records' ``ratio``: the fraction by
which a plain gradient step moves the layer). A raw norm grows with the layer's number
of weights (the digits' stem conv has 144, a last conv of width 64 has 36,864), so the
raw ratio's neutral value is not 1; the relative one's is. Criteria (the thresholds
are :mod:`reskeras.study.criteria`'s):

- **vanishing**: the relative ratio's median over the logged steps is below
  ``VANISHING_RATIO`` (1/100): the input side moves 100x slower;
- **exploding**: the median is above ``EXPLODING_RATIO`` (100);
- **exploding at initialization**: the relative ratio at step 0 is above
  ``EXPLODING_RATIO``;
- otherwise **healthy** (``unknown`` without finite relative norms).

The raw-norm ratio is reported beside (``first_last_ratio_init`` / ``_median``).

``log10_slope_init`` is the least-squares slope of ``log10(grad norm)`` against
the conv layer's position (0 = first, 1 = last) at step 0: below zero the norms
shrink towards the output, above zero towards the input (the vanishing direction).
"""

from __future__ import annotations

import math
import re

import numpy as np

from reskeras.study.criteria import EXPLODING_RATIO, VANISHING_RATIO

_CONV = re.compile(r"(^stem_conv$|_conv\d+$)")


def conv_layers(records: list[dict]) -> list[str]:
    """Conv layer names of the records, input to output."""
    order = {}
    for record in records:
        if _CONV.search(record["layer"]):
            order.setdefault(record["layer"], record["index"])
    return sorted(order, key=order.get)


def _norms_by_step(records: list[dict], layers: list[str],
                   field: str = "grad_norm") -> dict[int, list[float]]:
    position = {name: i for i, name in enumerate(layers)}
    steps: dict[int, list[float]] = {}
    for record in records:
        if record["layer"] in position:
            row = steps.setdefault(record["step"], [math.nan] * len(layers))
            value = record.get(field)
            row[position[record["layer"]]] = math.nan if value is None else float(value)
    return dict(sorted(steps.items()))


def _ratio(row: list[float]) -> float | None:
    first, last = row[0], row[-1]
    if not (math.isfinite(first) and math.isfinite(last)) or last <= 0:
        return None
    return first / last


def _first_last(by_step: dict[int, list[float]]) -> tuple[float | None, float | None]:
    """The first/last ratio's median over the steps, and at step 0 (``None`` if not logged)."""
    ratios = [_ratio(row) for row in by_step.values()]
    finite = [r for r in ratios if r is not None]
    median = float(np.median(finite)) if finite else None
    init = ratios[0] if by_step and next(iter(by_step)) == 0 else None
    return median, init


def classify(ratio: float | None) -> str:
    """``"vanishing"``, ``"exploding"``, ``"healthy"`` or ``"unknown"`` for a first/last ratio."""
    if ratio is None:
        return "unknown"
    if ratio < VANISHING_RATIO:
        return "vanishing"
    if ratio > EXPLODING_RATIO:
        return "exploding"
    return "healthy"


def gradient_summary(records: list[dict]) -> dict:
    """The gradient-flow numbers of one run.

    Args:
        records: its ``grad_norms.jsonl`` records.

    Returns:
        ``{"first_last_ratio_init", "first_last_ratio_median",
        "relative_first_last_ratio_init", "relative_first_last_ratio_median",
        "log10_slope_init", "state", "exploding_at_init", "profile_init", "steps"}``;
        ratios are ``None`` when not finite (a diverged run, or records without
        weight norms for the relative ones).

    Example:

    >>> records = [{"step": s, "layer": n, "index": i, "grad_norm": g}
    ...            for s in (0, 10) for i, (n, g) in enumerate(
    ...                [("stem_conv", 1e-4), ("stem_bn", 1.0), ("stage1_block1_conv1", 0.1)])]
    >>> for r in records:  # the stem's weights are 100x smaller than the last conv's
    ...     r["ratio"] = r["grad_norm"] / (0.01 if r["layer"] == "stem_conv" else 1.0)
    >>> summary = gradient_summary(records)
    >>> round(summary["first_last_ratio_median"], 6), summary["state"]  # raw, relative
    (0.001, 'healthy')
    >>> round(summary["relative_first_last_ratio_median"], 6)
    0.1
    """
    layers = conv_layers(records)
    empty = {"first_last_ratio_init": None, "first_last_ratio_median": None,
             "relative_first_last_ratio_init": None, "relative_first_last_ratio_median": None,
             "log10_slope_init": None, "state": "unknown", "exploding_at_init": None,
             "profile_init": [], "steps": []}
    if len(layers) < 2:
        return empty
    by_step = _norms_by_step(records, layers)
    steps = list(by_step)
    first_step = steps[0]
    init_row = by_step[first_step]
    median, init_ratio = _first_last(by_step)
    relative_median, relative_init = _first_last(_norms_by_step(records, layers, "ratio"))
    slope = None
    values = np.asarray(init_row, float)
    if first_step == 0 and np.all(np.isfinite(values)) and np.all(values > 0):
        position = np.linspace(0.0, 1.0, len(values))
        slope = float(np.polyfit(position, np.log10(values), 1)[0])
    profile = [{"layer": r["layer"], "index": r["index"], "grad_norm": r["grad_norm"]}
               for r in records if r["step"] == first_step]
    return {"first_last_ratio_init": init_ratio, "first_last_ratio_median": median,
            "relative_first_last_ratio_init": relative_init,
            "relative_first_last_ratio_median": relative_median,
            "log10_slope_init": slope, "state": classify(relative_median),
            "exploding_at_init": None if relative_init is None
            else relative_init > EXPLODING_RATIO,
            "profile_init": profile, "steps": steps}
