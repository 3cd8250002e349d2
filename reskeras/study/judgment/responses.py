"""Hypothesis ``small_responses``: residual branches respond with a smaller std than plain layers.

He et al. (2015, §4.1, Fig. 7) measure the std of every 3x3 conv layer's response (after
BN, before the ReLU or the addition) and find the residual net's responses generally
smaller than its plain twin's: residual functions are closer to zero than unreferenced
functions. The study reads that measure per cell
(:mod:`reskeras.study.measures.responses`) and decides it here.

Inputs. Each entry of ``results["cells"]`` may hold ``"responses"``, filled by the study:
``{"median_std": float | None, "layers": int, "step": int}`` (the median over the
blocks' 3x3 conv responses of the std at the run's last record, how many layers, and
the logged step), or ``None`` when the run recorded none. Extra keys are ignored.

Rule (``RESPONSE_MARGIN`` of :mod:`reskeras.study.criteria`). The deepest BN twins
(variant ``"he"``, ``batch_norm`` true, depth :func:`deepest_depth`) are paired by seed;
a seed's value is ``log10(plain median_std / residual median_std)``; its 95% interval
over seeds (:func:`interval`) is decided by ``decide_with_margin(bounds,
log10(RESPONSE_MARGIN), 0.0)``: *supported* when the whole interval lies above
``log10(RESPONSE_MARGIN)``, *refuted* when wholly at or below 0 (the residual branches
respond at least as strongly), *inconclusive* otherwise. No verdict comes from part of
the data: it is *inconclusive*, with ``why_inconclusive``, when

- no deepest BN twin recorded responses;
- any seed's input is null: a twin missing, not finished, without responses, or with a
  ``median_std`` that is null, non-finite or not positive (the cells are named), or the
  twins measured different numbers of layers;
- fewer than two seeds give a value (no interval);
- the interval straddles 0 or ``log10(RESPONSE_MARGIN)``, or lies between them.

``log10_ratio_interval`` is the interval over the seeds that gave a value, reported even
when a null elsewhere leaves the verdict inconclusive.

Example:

>>> def cell(residual, seed, std):
...     return {"name": f"{'resnet' if residual else 'plain'}56-bn-s{seed}",
...             "residual": residual, "depth": 56, "batch_norm": True, "variant": "he",
...             "seed": seed, "status": "finished",
...             "responses": {"median_std": std, "layers": 54, "step": 1408}}
>>> results = {"cells": [cell(r, s, std) for s in range(3)
...                      for r, std in ((False, 1.2 + 0.1 * s), (True, 0.4))]}
>>> measured, per_seed, verdict = small_responses(results)
>>> verdict, measured["why_inconclusive"], round(per_seed["seed 0"]["log10_ratio"], 3)
('supported', None, 0.477)
>>> results["cells"][3]["responses"] = None
>>> small_responses(results)[2], small_responses(results)[0]["why_inconclusive"]
('inconclusive', 'null or unusable inputs: resnet56-bn-s1 (no responses)')
"""

from __future__ import annotations

import math

from reskeras.study.cells import bn_twin_name, deepest_depth
from reskeras.study.criteria import RESPONSE_MARGIN
from reskeras.study.judgment.intervals import decide_with_margin, interval, log10

HYPOTHESIS = "small_responses"

# (claim, source, test, prediction), as hypotheses.TEXT holds them
TEXT_ROW = (
    "Residual functions are closer to zero than unreferenced ones: the residual net's "
    "branch layers respond with a smaller std than the plain net's layers.",
    "He et al. 2015 §4.1, Fig. 7",
    "std over a fixed probe batch of each block's 3x3 conv response after BN (before the "
    "ReLU or the addition), median over the layers, at the last record after training, "
    "deepest BN twins",
    f"the 95% interval over seeds of log10(plain / residual median std) lies wholly above "
    f"log10({RESPONSE_MARGIN:g})")


def _twins(results: dict, depth: int | None) -> dict[int, dict[bool, dict]]:
    """``{seed: {residual: cell}}`` of the deepest BN twins (variant ``"he"``)."""
    found: dict = {}
    for c in results.get("cells") or []:
        if (c.get("variant", "he"), bool(c["batch_norm"]), c["depth"]) == ("he", True, depth):
            found.setdefault(int(c["seed"]), {})[bool(c["residual"])] = c
    return found


def _median_std(cell: dict | None) -> tuple[float | None, str | None]:
    """The cell's median response std, or ``None`` and why it is not usable."""
    if cell is None:
        return None, "missing"
    if cell.get("status", "finished") != "finished":
        return None, f"status {cell.get('status')}"
    responses = cell.get("responses")
    if not responses:
        return None, "no responses"
    value = responses.get("median_std")
    if value is None or not math.isfinite(value) or value <= 0:
        return None, f"median_std {value}"
    return float(value), None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def small_responses(results: dict) -> tuple[dict, dict, str]:
    """``(measured, per_seed, verdict)`` of ``small_responses`` (the rule: module docstring).

    Args:
        results: the study's results; reads ``results["cells"]`` and each cell's
            ``"responses"`` (``{"median_std", "layers", "step"}`` or ``None``).

    Returns:
        ``measured``: ``{"depth", "plain_median_std", "residual_median_std"`` (means over
        the seeds with a usable value), ``"log10_ratio_interval"`` (``[lo, hi]`` or
        ``None``), ``"interval_method"``, ``"margin"`` (``RESPONSE_MARGIN``),
        ``"why_inconclusive"`` (``None`` when decided)``}``; ``per_seed``: ``{"seed 0":
        {"plain", "residual", "log10_ratio", "plain_step", "residual_step", "layers"}}``
        (``None`` where not measured); ``verdict``: ``"supported"``, ``"refuted"`` or
        ``"inconclusive"``.

    Example:

    >>> small_responses({"cells": []})[0]["why_inconclusive"]
    'no layer responses recorded for the deepest BN twins'
    """
    depth = deepest_depth(results) if results.get("cells") else None
    twins = _twins(results, depth)
    per_seed, values, problems = {}, [], []
    plain_stds, residual_stds = [], []
    recorded = False
    for seed in sorted(twins):
        cells = {residual: twins[seed].get(residual) for residual in (False, True)}
        stds, steps, layers = {}, {}, {}
        for residual, cell in cells.items():
            responses = (cell or {}).get("responses") or {}
            recorded = recorded or bool(responses)
            stds[residual], why = _median_std(cell)
            steps[residual], layers[residual] = responses.get("step"), responses.get("layers")
            if why is not None:
                problems.append(f"{bn_twin_name(cell, residual, depth, seed)} ({why})")
        ratio = None
        if stds[False] is not None and stds[True] is not None:
            if layers[False] != layers[True]:
                problems.append(f"seed {seed} (plain {layers[False]} layers, residual "
                                f"{layers[True]})")
            else:
                ratio = log10(stds[False] / stds[True])
                if ratio is None:  # the quotient under- or overflowed
                    problems.append(f"seed {seed} (plain / residual {stds[False] / stds[True]})")
                values.append(ratio)
        plain_stds += [stds[False]] if stds[False] is not None else []
        residual_stds += [stds[True]] if stds[True] is not None else []
        per_seed[f"seed {seed}"] = {"plain": stds[False], "residual": stds[True],
                                    "log10_ratio": ratio, "plain_step": steps[False],
                                    "residual_step": steps[True],
                                    "layers": layers[False] if layers[False] == layers[True]
                                    else None}
    bounds = interval(values)
    margin = log10(RESPONSE_MARGIN)
    found = decide_with_margin(bounds, margin, 0.0)
    if not recorded:
        why = "no layer responses recorded for the deepest BN twins"
    elif problems:
        why = f"null or unusable inputs: {', '.join(problems)}"
    elif bounds is None:
        why = "fewer than two seeds with both twins' responses: no interval"
    elif found == "inconclusive":
        lo, hi = bounds["interval"]
        why = (f"the interval [{lo:.3f}, {hi:.3f}] of log10(plain / residual) is neither "
               f"wholly above log10({RESPONSE_MARGIN:g}) = {margin:.3f} nor wholly at or "
               f"below 0")
    else:
        why = None
    verdict = "inconclusive" if why else {True: "supported", False: "refuted"}[found]
    measured = {"depth": depth, "plain_median_std": _mean(plain_stds),
                "residual_median_std": _mean(residual_stds),
                "log10_ratio_interval": bounds["interval"] if bounds else None,
                "interval_method": bounds["method"] if bounds else None,
                "margin": RESPONSE_MARGIN, "why_inconclusive": why}
    return measured, per_seed, verdict


__all__ = ["HYPOTHESIS", "TEXT_ROW", "small_responses"]
