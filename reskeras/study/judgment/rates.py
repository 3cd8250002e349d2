"""The learning-rate sweep's pick: the rate a swept net trains its cells at.

A net without BatchNorm needs its own learning rate (TAT's plain net diverges at the
paper's 0.1), and a fair comparison gives the plain BN net the same chance. So before
their cells train, each is swept over ``SHAPING_FACTORS`` of the recipe's rate on the
held-out seeds, for ``RATE_SWEEP_BUDGET`` x the base budget
(:mod:`reskeras.study.rate_sweep`). The rule, fixed before the runs:

- a rate where any seed diverged (or ended with a non-finite loss, or did not finish) is
  out, and the report names it as diverged: a diverged run never counts as a high error;
- of the rest, the rate with the lowest mean full-pass training loss over the seeds wins;
- with none left there is no pick (``None``), and the cells that need it do not run.

Example:

>>> pick({1.0: {100: None, 101: 2.1}, 0.1: {100: 0.30, 101: 0.34}, 0.01: {100: 0.9, 101: 0.8}})
(0.1, {'diverged': [1.0], 'mean_loss': {'1': None, '0.1': 0.32, '0.01': 0.85}})
"""

from __future__ import annotations

import math


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pick(losses: dict[float, dict[int, float | None]]) -> tuple[float | None, dict]:
    """``(factor or None, {"diverged": [...], "mean_loss": {"factor": mean or None}})``.

    Args:
        losses: ``{factor: {seed: final full-pass training loss}}``; ``None`` for a seed
            that diverged or did not finish.
    """
    means, diverged = {}, []
    for factor, by_seed in losses.items():
        values = list(by_seed.values())
        if values and all(_finite(v) for v in values):
            means[f"{factor:g}"] = round(sum(values) / len(values), 12)
        else:
            means[f"{factor:g}"] = None
            diverged.append(factor)
    kept = [f for f in losses if means[f"{f:g}"] is not None]
    best = min(kept, key=lambda f: means[f"{f:g}"]) if kept else None
    return best, {"diverged": diverged, "mean_loss": means}


__all__ = ["pick"]
