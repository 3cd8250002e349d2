"""Does the start that makes the deep plain net train remove its chaotic symptoms?

At initialization the deepest plain BN net shows three symptoms its residual twin does
not: its gradients grow towards the input (the first/last conv ratio of *relative*
gradient norms ``||g|| / ||w||`` at step 0), its loss is sharp (the scale-invariant top
Hessian eigenvalue at initialization, :mod:`reskeras.study.measures.sharpness`), and its
input gradients are shattered (the neighbour gradient correlation at initialization,
first seed, Balduzzi et al. 2017). A symptom counts as a cause only if the fix removes
it: for each isometric start (identity, permuted identity, delta-orthogonal; see
:mod:`reskeras.study.judgment.rivals`), ``moved`` is the fraction of the way from the
plain twin's value to the residual twin's that the start's value went (log10 for the
ratio and the eigenvalue), and the symptom is *removed* when ``moved`` is at least
``SYMPTOM_REMOVED``.

Per symptom, ``counts_as_cause`` is

- ``False`` when some start that trains (its gap test closes ``GAP_CLOSED`` of the gap)
  leaves the symptom in place: the net trained with it;
- ``True`` when every start that trains removes it (a candidate cause, not a proof);
- ``None`` (with ``why``) when no start trains, the symptom is not measured for a start
  that trains, or the twins do not differ in it (no symptom to remove).

Example:

>>> found = symptoms({"cells": []})
>>> found["symptoms"]["gradient_growth"]["counts_as_cause"], found["rows"]
(None, [])
"""

from __future__ import annotations

import math

from reskeras.study.cells import CONDITIONING, VARIANTS, deepest_depth
from reskeras.study.criteria import SYMPTOM_REMOVED
from reskeras.study.judgment.interventions import intervention, mean

# symptom -> (what it is, read in log10)
SYMPTOMS = {
    "gradient_growth": ("first/last conv relative gradient-norm ratio at step 0", True),
    "sharpness": ("scale-invariant top Hessian eigenvalue at initialization", True),
    "shattering": ("neighbour input-gradient correlation at initialization", False),
}


def _log(value):
    return math.log10(value) if value is not None and math.isfinite(value) and value > 0 \
        else None


def _deep_bn(results: dict, residual: bool, variant: str) -> list[dict]:
    depth = deepest_depth(results)
    return [c for c in results["cells"]
            if (c["residual"], c["batch_norm"], c.get("variant", "he"), c["depth"]) ==
            (residual, True, variant, depth) and c["status"] == "finished"]


def _value(results: dict, symptom: str, residual: bool, variant: str) -> float | None:
    """The symptom's value (log10 where it is read so), mean over the measured seeds."""
    if symptom == "shattering":
        rows = [r for r in (results.get("shattering") or []) + (
                results.get("shattering_controls") or [])
                if r["when"] == "init" and r["depth"] == deepest_depth(results)
                and bool(r["residual"]) == residual and r.get("variant", "he") == variant]
        return mean(r.get("neighbour_correlation") for r in rows)
    cells = _deep_bn(results, residual, variant)
    if symptom == "gradient_growth":
        values = [(c.get("gradient") or {}).get("relative_first_last_ratio_init")
                  for c in cells]
    else:
        values = [((c.get("measures") or {}).get("sharpness") or {}).get("init_invariant")
                  for c in cells]
    return mean(_log(v) for v in values)


def symptoms(results: dict) -> dict:
    """``{"rows": [...], "symptoms": {name: {...}}}`` (see the module docstring).

    Each row: ``{"start", "trains", "symptom", "plain", "start_value", "residual",
    "moved", "removed"}``; values are log10 where the symptom is read so.
    """
    if deepest_depth(results) is None:
        return {"rows": [], "symptoms": {name: {"counts_as_cause": None, "why": "no cells"}
                                        for name in SYMPTOMS}}
    rows = []
    trains = {}
    for variant in CONDITIONING:
        if not _deep_bn(results, False, variant):
            continue
        test = intervention(results, (False, True), variant, (True, True),
                            ("plain", variant, "residual"))[3]
        trains[variant] = test.decision
    summary = {}
    for name, (what, in_logs) in SYMPTOMS.items():
        plain, residual = _value(results, name, False, "he"), _value(results, name, True, "he")
        gap = None if plain is None or residual is None else residual - plain
        for variant, decision in trains.items():
            value = _value(results, name, False, variant)
            moved = None if value is None or not gap else (value - plain) / gap
            rows.append({"start": variant, "label": VARIANTS[variant][0],
                         "trains": decision, "symptom": name, "plain": plain,
                         "start_value": value, "residual": residual, "moved": moved,
                         "removed": None if moved is None else bool(moved >= SYMPTOM_REMOVED)})
        mine = [r for r in rows if r["symptom"] == name and r["trains"] is True]
        if gap is None:
            cause, why = None, "not measured on both twins"
        elif abs(gap) < 1e-12:
            cause, why = None, "the twins do not differ in it"
        elif not mine:
            cause, why = None, "no isometric start closes the gap"
        elif any(r["removed"] is False for r in mine):
            cause, why = False, "a start that trains leaves it in place: " + ", ".join(
                r["start"] for r in mine if r["removed"] is False)
        elif any(r["removed"] is None for r in mine):
            cause, why = None, "not measured for a start that trains: " + ", ".join(
                r["start"] for r in mine if r["removed"] is None)
        else:
            cause, why = True, "every start that trains removes it"
        summary[name] = {"what": what, "log10": in_logs, "plain": plain, "residual": residual,
                         "counts_as_cause": cause, "why": why}
    return {"rows": rows, "symptoms": summary, "removed_at": SYMPTOM_REMOVED,
            "starts_train": {v: d for v, d in trains.items()}}


__all__ = ["SYMPTOMS", "symptoms"]
