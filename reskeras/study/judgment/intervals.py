"""Intervals over seeds and the decisions read from them.

Every compared quantity (deep minus shallow training error, the fraction of a gap an
intervention closes, a gradient-norm ratio in log10) is measured once per seed. Its
95% interval over seeds (``CONFIDENCE``) is

- a Student t-interval of the mean below ``BOOTSTRAP_SEEDS`` seeds:
  mean +- t(0.975, n - 1) * s / sqrt(n), s the sample standard deviation;
- a percentile bootstrap of the mean from ``BOOTSTRAP_SEEDS`` seeds on: 10,000
  resamples of the seeds with replacement, generator seed 0 (so a verdict is
  reproducible), the 2.5th and 97.5th percentiles of the resampled means.

One seed gives no interval. A decision against a threshold is ``True`` when the whole
interval lies beyond it, ``False`` when the whole interval lies on the other side,
``"inconclusive"`` when it straddles it, and ``None`` without an interval.

Example:

>>> bounds = interval([3.0, 5.0, 4.0])
>>> bounds["method"], [round(b, 2) for b in bounds["interval"]]
('t', [1.52, 6.48])
>>> decide(bounds, 1.0), decide(bounds, 2.0), decide(bounds, 7.0)
(True, 'inconclusive', False)
>>> decide(interval([0.004, 0.002, 0.003]), 0.01, above=False)
True
"""

from __future__ import annotations

import math

import numpy as np

from reskeras.study.criteria import BOOTSTRAP_SEEDS, CONFIDENCE

RESAMPLES = 10_000


def interval(values, *, confidence: float | None = None) -> dict | None:
    """``{"mean", "interval": [lo, hi], "method": "t" | "bootstrap", "n"}`` of the
    finite ``values``, or ``None`` for fewer than two; ``confidence`` defaults to
    ``CONFIDENCE``, read at each call."""
    confidence = CONFIDENCE if confidence is None else confidence
    finite = np.array([float(v) for v in values if v is not None and math.isfinite(v)])
    n = len(finite)
    if n < 2:
        return None
    mean = float(finite.mean())
    if n < BOOTSTRAP_SEEDS:
        from scipy.stats import t

        half = float(t.ppf((1 + confidence) / 2, n - 1)) * float(finite.std(ddof=1)) / math.sqrt(n)
        bounds, method = [mean - half, mean + half], "t"
    else:
        picks = np.random.default_rng(0).integers(0, n, size=(RESAMPLES, n))
        means = finite[picks].mean(axis=1)
        tail = (1 - confidence) / 2 * 100
        bounds = [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]
        method = "bootstrap"
    return {"mean": mean, "interval": bounds, "method": method, "n": n}


def decide(bounds: dict | None, threshold: float, *, above: bool = True):
    """``True`` when the whole interval is beyond ``threshold`` (above it, or below it
    with ``above=False``), ``False`` when wholly on the other side, ``"inconclusive"``
    when it straddles, ``None`` without an interval."""
    if bounds is None:
        return None
    lo, hi = (round(b, 9) for b in bounds["interval"])
    threshold = round(threshold, 9)  # as the bounds: a bound at the threshold is not beyond it
    if not above:
        lo, hi, threshold = -hi, -lo, -threshold
    if lo > threshold:
        return True
    if hi <= threshold:
        return False
    return "inconclusive"


def decide_with_margin(bounds: dict | None, margin: float, floor: float = 0.0):
    """Like :func:`decide` with a margin: ``True`` when the whole interval lies above
    ``margin``, ``False`` when wholly at or below ``floor``, ``"inconclusive"`` otherwise
    (straddling either, or wholly between them), ``None`` without an interval.

    >>> bounds = {"interval": [0.1, 0.2]}
    >>> decide_with_margin(bounds, 0.3), decide_with_margin(bounds, 0.05), \\
    ...     decide_with_margin({"interval": [-0.2, -0.1]}, 0.3)
    ('inconclusive', True, False)
    """
    if bounds is None:
        return None
    lo, hi = (round(b, 9) for b in bounds["interval"])
    # rounded as the bounds are, so a bound exactly at the margin is not above it
    margin, floor = round(margin, 9), round(floor, 9)
    if lo > margin:
        return True
    if hi <= floor:
        return False
    return "inconclusive"


def log10(value) -> float | None:
    """``log10(value)`` for a positive finite value, else ``None`` (ratios read in logs)."""
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    return math.log10(value)


__all__ = ["RESAMPLES", "decide", "decide_with_margin", "interval", "log10"]
