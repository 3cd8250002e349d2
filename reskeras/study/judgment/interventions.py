"""The gap test every intervention hypothesis shares: how much of a training-error gap it closes.

An intervention changes one thing about a failing net (its init, its branch scale, its
learning rate). Its *gap* is the training-error difference, per seed, between the
failing net (the *baseline*) and its *reference* (the net it should reach: the residual
twin, or the BN residual twin); a seed's value is the fraction of that gap the
intervention closes. The rules (constants of :mod:`reskeras.study.criteria`):

- a seed decides only with a gap of at least ``MIN_GAP_POINTS`` points (else nothing
  to close), its baseline, its reference and, where the test has a *premise* on the
  start (an identity init must start near the identity, ``IDENTITY_PREMISE``; a control
  meant to start far from it must start at least that far), the premise met;
- the hypothesis is decided from the 95% interval over seeds of the fraction closed
  (:mod:`reskeras.study.judgment.intervals`) against ``GAP_CLOSED``;
- it is **inconclusive** whenever a measured input is missing: any intervention seed
  that ran but cannot decide (no value, a gap below the minimum, an unmet premise), or a
  reference that did not train (``REFERENCE_TRAINED``: every seed converged, none failed
  to start, mean training error below 10%), since then the gap has no ceiling. The
  reason is in ``why_inconclusive``.

A diverged cell counts as training error 1.0; unfinished cells are missing.

Example:

>>> zero = {0: 0.0, 1: 0.0, 2: 0.0}
>>> test = gap_test({0: 0.5, 1: 0.6, 2: 0.5}, {0: 0.05, 1: 0.1, 2: 0.1}, zero)
>>> test.decision, [round(v, 3) for v in test.values], test.why
(True, [0.9, 0.833, 0.8], None)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from reskeras.study.cells import deepest_depth
from reskeras.study.criteria import (GAP_CLOSED, IDENTITY_PREMISE, MIN_GAP_POINTS,
                                     REFERENCE_TRAINED)
from reskeras.study.judgment.intervals import decide, interval


def mean(values) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _matches(cell: dict, residual: bool, batch_norm: bool, variant: str, depth: int) -> bool:
    return (cell["residual"], cell["batch_norm"], cell.get("variant", "he"), cell["depth"]) == \
        (residual, batch_norm, variant, depth)


def errors(results: dict, residual: bool, batch_norm: bool, variant: str = "he",
           depth: int | None = None) -> dict[int, float]:
    """Final training error per seed of one configuration (default: the deepest depth);
    a diverged cell counts as 1.0, unfinished cells are left out."""
    depth = deepest_depth(results) if depth is None else depth
    found = {}
    for c in results["cells"]:
        if not _matches(c, residual, batch_norm, variant, depth):
            continue
        if c["status"] == "diverged":
            found[c["seed"]] = 1.0
        elif c.get("final_train_error") is not None:
            found[c["seed"]] = float(c["final_train_error"])
    return found


def seeds_run(results: dict, residual: bool, batch_norm: bool, variant: str,
              depth: int | None = None) -> list[int]:
    """The seeds of one configuration that the study has a cell for, finished or not."""
    depth = deepest_depth(results) if depth is None else depth
    return sorted(c["seed"] for c in results["cells"]
                  if _matches(c, residual, batch_norm, variant, depth))


def start_distance(results: dict, residual: bool, batch_norm: bool, variant: str,
                   depth: int | None = None) -> dict[int, float]:
    """Per seed, the median over blocks of ``||block(x) - x|| / ||x||`` at initialization
    (a block whose input is all zero counts as infinitely far); only measured cells."""
    depth = deepest_depth(results) if depth is None else depth
    found = {}
    for c in results["cells"]:
        rows = ((c.get("measures") or {}).get("identity")) or []
        if rows and _matches(c, residual, batch_norm, variant, depth):
            found[c["seed"]] = float(np.median([np.inf if r["init"] is None else r["init"]
                                                for r in rows]))
    return found


def unconverged(results: dict, residual: bool, batch_norm: bool, variant: str = "he",
                depth: int | None = None) -> list[str]:
    """The finished cells of one configuration that hit the cap without converging."""
    depth = deepest_depth(results) if depth is None else depth
    return [c["name"] for c in results["cells"]
            if _matches(c, residual, batch_norm, variant, depth) and c["status"] == "finished"
            and (c.get("convergence") or {}).get("converged") is False]


def untrained_reference(results: dict, residual: bool, batch_norm: bool,
                        depth: int | None = None) -> str | None:
    """Why the reference twin (variant ``he``) did not train, or ``None`` when it did:
    every seed converged, none failed to start, mean training error below
    ``REFERENCE_TRAINED``."""
    depth = deepest_depth(results) if depth is None else depth
    cells = [c for c in results["cells"] if _matches(c, residual, batch_norm, "he", depth)]
    if not cells:
        return "the reference net was not run"
    stuck = unconverged(results, residual, batch_norm, "he", depth)
    if stuck:
        return f"the reference hit the cap without converging ({', '.join(stuck)})"
    failed = [c["name"] for c in cells
              if (c.get("convergence") or {}).get("failed_to_start") is True
              or c["status"] == "diverged"]
    if failed:
        return f"the reference failed to train ({', '.join(failed)})"
    error = mean(errors(results, residual, batch_norm, depth=depth).values())
    if error is None:
        return "the reference has no finished cell"
    if error >= REFERENCE_TRAINED:
        return (f"the reference did not train (mean training error {error:.1%}, not below "
                f"{REFERENCE_TRAINED:.0%})")
    return None


@dataclasses.dataclass
class GapTest:
    """One intervention's gap test: per-seed entries, the interval and the decision.

    ``decision`` is ``True``/``False`` (closes / does not close ``GAP_CLOSED``),
    ``"inconclusive"`` or ``None`` (nothing ran); ``why`` says why it is not a yes/no.
    """

    per_seed: dict
    closed: dict | None
    change: dict | None
    decision: bool | str | None
    why: str | None

    @property
    def values(self) -> list[float]:
        return [v["closed"] for v in self.per_seed.values() if v.get("decided") is not None]

    def measured(self) -> dict:
        """The interval fields every intervention hypothesis reports."""
        return {"closed_interval": self.closed["interval"] if self.closed else None,
                "change_points_interval": self.change["interval"] if self.change else None,
                "interval_method": (self.closed or self.change or {}).get("method"),
                "why_inconclusive": self.why}


def gap_test(baseline: dict, treated: dict, reference: dict, *, expected=None,
             premise: dict | None = None, far: bool = False,
             reference_why: str | None = None) -> GapTest:
    """The gap test of one intervention (see the module docstring).

    Args:
        baseline, treated, reference: ``{seed: training error}``.
        expected: the seeds the intervention ran (default: ``treated``'s); one missing
            from ``treated`` (unfinished) counts as a missing input.
        premise: ``{seed: median start distance from the identity}``: near when below
            ``IDENTITY_PREMISE`` (``far=True``: at least that far is required).
        reference_why: why the reference did not train (``untrained_reference``).
    """
    per_seed, undecided = {}, []
    expected = sorted(set(treated) | set(expected or ()))
    reference_mean = mean(reference.values())
    for seed in expected:
        entry = per_seed[f"seed {seed}"] = {}
        target = reference.get(seed, reference_mean)
        if seed not in treated or seed not in baseline or target is None:
            entry["decided"] = None
            entry["missing"] = [name for name, found in (
                ("treated", seed in treated), ("baseline", seed in baseline),
                ("reference", target is not None)) if not found]
            undecided.append(f"seed {seed} misses its {' and '.join(entry['missing'])} net")
            continue
        gap = baseline[seed] - target
        entry.update({"gap_points": gap * 100, "change_points": (treated[seed] - baseline[seed])
                      * 100, "closed": (baseline[seed] - treated[seed]) / gap if gap > 0 else None})
        entry["decided"] = None if gap * 100 < MIN_GAP_POINTS else entry["closed"] >= GAP_CLOSED
        if entry["decided"] is None:
            undecided.append(f"seed {seed} has a gap of {gap * 100:.1f} points (below "
                             f"{MIN_GAP_POINTS:g})")
        if premise is not None:
            distance = premise.get(seed)
            met = None if distance is None else (distance >= IDENTITY_PREMISE if far
                                                 else distance < IDENTITY_PREMISE)
            entry["start_distance"] = distance if distance is None or np.isfinite(distance) \
                else None
            entry["started_near_identity"] = None if distance is None \
                else distance < IDENTITY_PREMISE
            if not met and entry["decided"] is not None:
                entry["decided"] = None
                undecided.append(f"seed {seed} started "
                                 + ("at an unmeasured distance" if distance is None else
                                    f"{'near' if far else 'far from'} the identity "
                                    f"({distance:.2f})"))
    closed = interval(v["closed"] for v in per_seed.values() if v.get("decided") is not None)
    change = interval(v.get("change_points") for v in per_seed.values())
    decision = decide(closed, GAP_CLOSED) if expected else None
    why = None
    if not expected:
        why = "not run"
    elif reference_why:
        decision, why = "inconclusive", reference_why
    elif undecided:
        decision, why = "inconclusive", "; ".join(undecided)
    elif closed is None:
        decision, why = "inconclusive", "fewer than two seeds: no interval"
    elif decision == "inconclusive":
        why = f"the interval of the fraction closed straddles {GAP_CLOSED:g}"
    return GapTest(per_seed, closed, change, decision, why)


def verdict_word(decision) -> str:
    """``"supported"`` for ``True``, ``"refuted"`` for ``False``, else ``"inconclusive"``."""
    return {True: "supported", False: "refuted"}.get(decision, "inconclusive")


def intervention(results: dict, failing: tuple[bool, bool], variant: str,
                 reference: tuple[bool, bool], keys: tuple[str, str, str], *,
                 premise: str | None = None, depth: int | None = None,
                 treated_net: tuple[bool, bool] | None = None
                 ) -> tuple[dict, dict, str, GapTest]:
    """``(measured, per_seed, verdict, test)`` of ``variant`` applied to the ``failing``
    (residual, batch_norm) net against the ``reference`` twin; ``keys`` name the three
    mean errors in ``measured``; ``premise``: ``"near"`` or ``"far"`` from the identity;
    ``treated_net``: the (residual, batch_norm) the variant's cells have when it changes
    more than the failing net's start (TAT's plain net has no BN; default ``failing``)."""
    treated_net = treated_net or failing
    baseline = errors(results, *failing, depth=depth)
    treated = errors(results, *treated_net, variant, depth=depth)
    target = errors(results, *reference, depth=depth)
    test = gap_test(baseline, treated, target,
                    expected=seeds_run(results, *treated_net, variant, depth=depth),
                    premise=None if premise is None
                    else start_distance(results, *treated_net, variant, depth=depth),
                    far=premise == "far",
                    reference_why=untrained_reference(results, *reference, depth=depth))
    measured = {keys[0]: mean(baseline.values()), keys[1]: mean(treated.values()),
                keys[2]: mean(target.values()), **test.measured()}
    return measured, test.per_seed, verdict_word(test.decision), test


__all__ = ["GapTest", "errors", "gap_test", "intervention", "mean", "seeds_run",
           "start_distance", "unconverged", "untrained_reference", "verdict_word"]
