"""When a cell has trained long enough: the convergence rule, read at doublings of a budget.

A cell trains for the study's base budget, then for 2x, 4x, ... that budget, up to
the cap (the base times 2 ** ``max_doublings``). After each budget its *full-pass*
training error is measured (inference mode over the whole training split, precise
BatchNorm statistics) together with its full-pass training loss. The cell has
**converged** at a budget when

- that error moved by less than ``CONVERGED_POINTS`` percentage points since half
  the budget (the last doubling), and
- it has started: a net whose loss is still within ``FAILED_TO_START`` of
  ln(classes) (a uniform prediction) sits on a plateau it may leave later, so a flat
  error there is not convergence.

A cell that has not converged at the cap *hit the cap*; the verdict names it. A
plateau away from the starting loss that a longer run would leave is read as
converged: the rule cannot see past the next doubling (docs/study.md says so).

With a learning rate that does not depend on the budget (Adam at the reference
batch), one run is read at every budget; with a step-decay schedule every budget
is a run of its own (``reskeras.study.run``).

Example:

>>> curve = {88: {"train_error": 0.40, "loss": 1.2}, 176: {"train_error": 0.10, "loss": 0.3},
...          352: {"train_error": 0.097, "loss": 0.29}}
>>> state(curve, classes=10, cap=1408)
{'steps': 352, 'converged': True, 'done': True, 'failed_to_start': False}
>>> budgets(88, 4)
[88, 176, 352, 704, 1408]
"""

from __future__ import annotations

import math

from reskeras.study.criteria import CONVERGED_POINTS, FAILED_TO_START


def budgets(base: int, max_doublings: int) -> list[int]:
    """The budgets a cell may be read at: ``base * 2 ** k`` for k = 0..max_doublings."""
    return [base * 2 ** k for k in range(max_doublings + 1)]


def failed_to_start(loss: float | None, classes: int) -> bool | None:
    """Whether a full-pass training loss is still within ``FAILED_TO_START`` of ln(classes).

    >>> failed_to_start(2.25, 10), failed_to_start(1.9, 10), failed_to_start(None, 10)
    (True, False, None)
    """
    if loss is None or not math.isfinite(loss):
        return None
    chance = math.log(classes)
    return abs(loss - chance) <= FAILED_TO_START * chance


def state(curve: dict, *, classes: int, cap: int) -> dict:
    """The convergence state of a cell from its readings so far.

    Args:
        curve: ``{steps: {"train_error": fraction, "loss": full-pass loss}}`` at the
            budgets read so far (consecutive doublings).
        classes: the dataset's classes (the starting loss is ln(classes)).
        cap: the largest budget.

    Returns:
        ``{"steps", "converged", "done", "failed_to_start"}`` at the last budget read:
        ``done`` when converged or at the cap (train no further).
    """
    steps = sorted(curve)
    if not steps:
        return {"steps": 0, "converged": False, "done": False, "failed_to_start": None}
    last = steps[-1]
    stuck = failed_to_start(curve[last].get("loss"), classes)
    converged = False
    if len(steps) >= 2 and steps[-2] * 2 == last and not stuck:
        now, before = curve[last]["train_error"], curve[steps[-2]]["train_error"]
        if now is not None and before is not None:
            converged = round(abs(now - before) * 100, 9) < CONVERGED_POINTS
    return {"steps": last, "converged": converged, "done": converged or last >= cap,
            "failed_to_start": stuck}


__all__ = ["budgets", "failed_to_start", "state"]
