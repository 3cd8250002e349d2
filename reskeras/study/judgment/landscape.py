"""Hypothesis ``landscape``: the deep plain net ends in a sharper region than its residual twin.

Li et al. (2018) show that skip connections make the loss landscape of deep nets smooth
where plain nets are chaotic; Cohen et al. (2021) track its sharpness, the top Hessian
eigenvalue. Raw eigenvalues are not comparable across BatchNorm nets: scaling a kernel
that feeds BN (with BN's moving statistics) leaves the function unchanged but divides
that kernel's Hessian block by the square of the scale (Dinh et al. 2017). The study
therefore decides on the scale-invariant sharpness of
:func:`reskeras.study.measures.sharpness.scale_invariant_sharpness` (the Hessian over
the BN-preceded kernels in per-layer normalized coordinates) and reports the raw one
beside it. The 1-D slice's roughness is not used: it read 0.0 both for a net at chance
and for one that trained, so it cannot tell them apart.

Inputs. Each entry of ``results["cells"]`` may hold ``measures["sharpness"]``, filled by
the study: ``{"init", "final"}`` (raw top eigenvalue, or ``None``), ``"init_converged"``,
``"final_converged"``, ``"init_invariant"``, ``"final_invariant"`` (scale-invariant, or
``None``) and ``"init_invariant_converged"``, ``"final_invariant_converged"`` (whether
the power iteration converged). Extra keys are ignored.

Rule (``SHARPNESS_MARGIN`` of :mod:`reskeras.study.criteria`). The deepest BN twins
(variant ``"he"``, ``batch_norm`` true, depth :func:`deepest_depth`) are paired by
seed; a seed's value is ``log10(plain final_invariant / residual final_invariant)``. A
seed gives no value, and the hypothesis is then inconclusive, (its ``why_none`` says why) when either twin is not measured, its
``final_invariant`` is null, non-finite or not positive, or its power iteration did not
converge (``final_invariant_converged`` false). The 95% interval over the seeds' values
(:func:`interval`) is decided by ``decide_with_margin(bounds, log10(SHARPNESS_MARGIN),
0.0)``: *supported* when the whole interval lies above ``log10(SHARPNESS_MARGIN)``,
*refuted* when wholly at or below 0 (the plain net is no sharper), *inconclusive*
otherwise, with ``why_inconclusive``:

- no seed has both twins' sharpness;
- a seed gives no value (the unconverged and unusable cells are named): no verdict while
  a measured input is missing;
- fewer than two seeds;
- the interval straddles 0 or ``log10(SHARPNESS_MARGIN)``, or lies between them.

Example:

>>> def cell(residual, seed, final, converged=True):
...     sharpness = {"init": 10.0, "final": 3 * final, "init_invariant": 5.0,
...                  "final_invariant": final, "final_invariant_converged": converged}
...     return {"name": f"{'resnet' if residual else 'plain'}56-bn-s{seed}",
...             "residual": residual, "depth": 56, "batch_norm": True, "seed": seed,
...             "measures": {"sharpness": sharpness}}
>>> results = {"cells": [cell(r, s, v) for s in range(3)
...                      for r, v in ((False, 40.0 + s), (True, 4.0))]}
>>> measured, per_seed, verdict = landscape(results)
>>> verdict, measured["why_inconclusive"], round(per_seed["seed 0"]["log10_ratio"], 3)
('supported', None, 1.0)
>>> results["cells"][2] = cell(False, 1, 41.0, converged=False)
>>> measured, per_seed, verdict = landscape(results)
>>> verdict, measured["seeds"], per_seed["seed 1"]["why_none"]
('inconclusive', 2, 'plain56-bn-s1: power iteration did not converge')
>>> results["cells"][5] = cell(True, 2, float("nan"))
>>> print(landscape(results)[0]["why_inconclusive"])
a seed has no value (1 of 3 have one): plain56-bn-s1 (power iteration did not converge), \
resnet56-bn-s2 (final_invariant nan)
"""

from __future__ import annotations

import math

from reskeras.study.cells import bn_twin_name, deepest_depth
from reskeras.study.criteria import SHARPNESS_MARGIN
from reskeras.study.judgment.intervals import decide_with_margin, interval, log10

HYPOTHESIS = "landscape"

# (claim, source, test, prediction), as hypotheses.TEXT holds them
TEXT_ROW = (
    "The deep plain net sits in a sharper, more chaotic region of its loss landscape "
    "than the residual twin.",
    "Li et al. 2018; Cohen et al. 2021; Dinh et al. 2017 (scale invariance)",
    "scale-invariant top Hessian eigenvalue of the training loss after training (BN-preceded "
    "kernels, per-layer normalized coordinates, power iteration), deepest BN twins",
    f"the 95% interval over seeds of log10(plain / residual scale-invariant sharpness) lies "
    f"wholly above log10({SHARPNESS_MARGIN:g}); a seed whose power iteration did not "
    f"converge does not count")


def _twins(results: dict, depth: int | None) -> dict[int, dict[bool, dict]]:
    """``{seed: {residual: cell}}`` of the deepest BN twins (variant ``"he"``) whose
    sharpness was measured."""
    found: dict = {}
    for c in results.get("cells") or []:
        if ((c.get("measures") or {}).get("sharpness") and c["batch_norm"]
                and c.get("variant", "he") == "he" and c["depth"] == depth):
            found.setdefault(int(c["seed"]), {})[bool(c["residual"])] = c
    return found


def _invariant(cell: dict | None) -> tuple[float | None, str | None]:
    """The cell's scale-invariant sharpness after training, or ``None`` and why not."""
    if cell is None:
        return None, "not measured"
    sharpness = cell["measures"]["sharpness"]
    value = sharpness.get("final_invariant")
    if value is None or not math.isfinite(value) or value <= 0:
        return None, f"final_invariant {value}"
    if not sharpness.get("final_invariant_converged"):
        return None, "power iteration did not converge"
    return float(value), None


def _mean(cells: list[dict], key: str) -> float | None:
    values = [v for v in (c["measures"]["sharpness"].get(key) for c in cells)
              if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def _undecided(bounds: dict, margin: float) -> str:
    lo, hi = bounds["interval"]
    where = [name for name, at in (("0", 0.0), (f"log10({SHARPNESS_MARGIN:g})", margin))
             if round(lo, 9) <= round(at, 9) < round(hi, 9)]  # as decide_with_margin rounds
    place = f"straddles {' and '.join(where)}" if where else \
        f"lies between 0 and log10({SHARPNESS_MARGIN:g})"
    return (f"the interval [{lo:.3f}, {hi:.3f}] of log10(plain / residual) {place}: "
            f"supported needs it wholly above log10({SHARPNESS_MARGIN:g}) = {margin:.3f}, "
            f"refuted wholly at or below 0")


def landscape(results: dict) -> tuple[dict, dict, str]:
    """``(measured, per_seed, verdict)`` of ``landscape`` (the rule: module docstring).

    Args:
        results: the study's results; reads ``results["cells"]`` and each cell's
            ``measures["sharpness"]``.

    Returns:
        ``measured``: ``{"depth"``, the means over the measured seeds of the raw and the
        scale-invariant sharpness, ``"{plain,residual}_sharpness_{init,final}"`` and
        ``"{plain,residual}_invariant_sharpness_{init,final}"``, ``"seeds"`` (how many gave
        a value), ``"no_value"`` (the cells that gave none, with why),
        ``"log10_ratio_interval"`` (``[lo, hi]`` or ``None``),
        ``"interval_method"``, ``"margin"`` (``SHARPNESS_MARGIN``), ``"why_inconclusive"``
        (``None`` when decided)``}``; ``per_seed``: ``{"seed 0": {"plain", "residual"``
        (scale-invariant, final), ``"plain_raw", "residual_raw", "plain_converged",
        "residual_converged", "log10_ratio", "why_none"}}`` (``None`` where not measured);
        ``verdict``: ``"supported"``, ``"refuted"`` or ``"inconclusive"``.

    Example:

    >>> landscape({"cells": []})[0]["why_inconclusive"]
    'no seed has the sharpness of both deepest BN twins'
    """
    depth = deepest_depth(results) if results.get("cells") else None
    twins = _twins(results, depth)
    per_seed, values, unusable, cells = {}, [], [], {False: [], True: []}
    for seed in sorted(twins):
        found, reasons = {}, []
        for residual in (False, True):
            cell = twins[seed].get(residual)
            if cell is not None:
                cells[residual].append(cell)
            found[residual], why = _invariant(cell)
            if why is not None:
                name = bn_twin_name(cell, residual, depth, seed)
                reasons.append(f"{name}: {why}")
                unusable.append(f"{name} ({why})")
        ratio = None if reasons else log10(found[False] / found[True])
        if ratio is not None:
            values.append(ratio)
        elif not reasons:  # both positive and finite, their ratio is not
            reasons.append(f"seed {seed}: ratio not finite")
            unusable.append(f"seed {seed} (ratio not finite)")
        sharp = {r: (twins[seed].get(r) or {}).get("measures", {}).get("sharpness") or {}
                 for r in (False, True)}
        per_seed[f"seed {seed}"] = {
            "plain": found[False], "residual": found[True],
            "plain_raw": sharp[False].get("final"), "residual_raw": sharp[True].get("final"),
            "plain_converged": sharp[False].get("final_invariant_converged"),
            "residual_converged": sharp[True].get("final_invariant_converged"),
            "log10_ratio": ratio, "why_none": "; ".join(reasons) or None}
    bounds = interval(values)
    margin = log10(SHARPNESS_MARGIN)
    decision = decide_with_margin(bounds, margin, 0.0)
    if not any(len(pair) == 2 for pair in twins.values()):
        why = "no seed has the sharpness of both deepest BN twins"
    elif unusable:  # no verdict while a measured input is missing
        why = f"a seed has no value ({len(values)} of {len(twins)} have one): " \
            + ", ".join(unusable)
    elif bounds is None:
        why = f"fewer than two seeds ({len(values)}): no interval"
    elif decision == "inconclusive":
        why = _undecided(bounds, margin)
    else:
        why = None
    verdict = "inconclusive" if why else {True: "supported", False: "refuted"}[decision]
    measured = {"depth": depth}
    for net, residual in (("plain", False), ("residual", True)):
        for when in ("init", "final"):
            measured[f"{net}_sharpness_{when}"] = _mean(cells[residual], when)
            measured[f"{net}_invariant_sharpness_{when}"] = _mean(cells[residual],
                                                                  f"{when}_invariant")
    measured.update({"seeds": len(values), "no_value": unusable,
                     "log10_ratio_interval": bounds["interval"] if bounds else None,
                     "interval_method": bounds["method"] if bounds else None,
                     "margin": SHARPNESS_MARGIN, "why_inconclusive": why})
    return measured, per_seed, verdict


__all__ = ["HYPOTHESIS", "TEXT_ROW", "landscape"]
