"""The study's hypotheses: each explanation of degradation, its test, and a verdict from data.

Every hypothesis is a dict with exactly the keys ``id, claim, source, test,
prediction, measured, verdict``; ``verdict`` is ``"supported"``, ``"refuted"`` or
``"inconclusive"``, and ``measured["why_inconclusive"]`` says why a hypothesis is not
decided. The per-seed values come beside the list (``per_seed``). No hypothesis is
supported or refuted while one of its measured inputs is missing. The criteria
(docs/study.md, "Why: the hypotheses") are constants of the one criteria table,
:mod:`reskeras.study.criteria`:

- **intervention tests** (``identity_init``, ``identity_init_no_bn``,
  ``branch_scale``): the gap test of :mod:`reskeras.study.judgment.interventions`
  (the fraction of the training-error gap to a reference that trained, an interval
  over seeds against ``GAP_CLOSED``, the start-distance premise of an identity init);
  ``branch_scale`` is decided by SkipInit, with Fixup's gap test reported beside.
- **rivals** (``conditioning``, ``near_identity``, ``learning_rate``):
  :mod:`reskeras.study.judgment.rivals`; ``kernel_shaping`` (TAT's plain net without
  shortcut or BN): :mod:`reskeras.study.judgment.shaping`.
- ``vanishing_gradients`` (BN) and ``vanishing_gradients_no_bn``: in the family whose
  deepest plain net degraded (the verdict's flag), supported when its vanishing flag
  (the interval of the relative first/last ratio) is yes, refuted when no; inconclusive
  when the family did not degrade or either flag is undecided.
- ``identity_task``: :mod:`reskeras.study.judgment.identity_task` (kept depth, with a
  zero-gamma residual control, and inconclusive when both stacks fail at the deepest
  depth or the shallowest stacks did not converge).
- ``ensemble`` (first seed only): a lesion's damage is its error increase as a
  fraction of the way from the intact error to chance (not measurable for a net
  within ``MIN_HEADROOM`` of chance). The residual net is compared with a plain net of
  its depth that trained, the identity-initialized one: supported when the residual
  net's median damage is below ``ENSEMBLE_DAMAGE`` and below half that plain net's,
  refuted when it is at least 3x ``ENSEMBLE_DAMAGE`` or not below it; inconclusive
  when either damage is not measurable.
- ``shattering`` (first seed only): supported when at initialization the deepest
  plain net's neighbour gradient correlation is at least ``SHATTERING_GAP``
  below the residual twin's, refuted when it is not below it at all.
- ``landscape``: :mod:`reskeras.study.judgment.landscape` (scale-invariant sharpness,
  a margin, an interval over seeds).
- ``small_responses``: :mod:`reskeras.study.judgment.responses` (He et al. 2015,
  Fig. 7: response std of the residual branches against the plain net's layers).

Example:

>>> rows, per_seed = hypotheses({"cells": []})
>>> [(row["id"], row["verdict"]) for row in rows][:3]
[('vanishing_gradients', 'inconclusive'), ('vanishing_gradients_no_bn', 'inconclusive'), \
('identity_init', 'inconclusive')]
"""

from __future__ import annotations

import numpy as np

from reskeras.study.cells import deepest_depth
from reskeras.study.judgment import identity_task as identity_rule
from reskeras.study.judgment import landscape as landscape_rule
from reskeras.study.judgment import responses as responses_rule
from reskeras.study.judgment import shaping as shaping_rule
from reskeras.study.judgment.interventions import intervention, verdict_word
from reskeras.study.judgment.rivals import conditioning, learning_rate, near_identity
from reskeras.study.criteria import (ENSEMBLE_DAMAGE, GAP_CLOSED, IDENTITY_PREMISE,
                                     LR_SWEEP_RATES, LR_SWEEP_SPAN, MIN_HEADROOM,
                                     SHATTERING_GAP, VANISHING_RATIO)

VERDICTS = ("supported", "refuted", "inconclusive")


def combine(values) -> bool | str | None:
    """``True``/``False`` when every decided value agrees, ``"inconclusive"`` when they
    disagree, ``None`` when none decided.

    >>> combine([True, True, None]), combine([True, False]), combine([None])
    (True, 'inconclusive', None)
    """
    known = {bool(v) for v in values if v is not None}
    if not known:
        return None
    return known.pop() if len(known) == 1 else "inconclusive"


def _vanishing(results: dict, flags: dict, batch_norm: bool) -> tuple[dict, dict, str]:
    """``vanishing_gradients`` (BN) or ``vanishing_gradients_no_bn``: in the family whose
    deepest plain net degraded, supported when its vanishing flag (the interval of log10 of
    the relative first/last ratio, median over training) is yes, refuted when no."""
    degraded_key, gradient_key = ("plain", "plain_bn") if batch_norm else \
        ("plain_no_bn", "plain_no_bn")
    degraded = (flags.get("degraded") or {}).get(degraded_key)
    vanishing = (flags.get("vanishing") or {}).get(gradient_key)
    numbers = (flags.get("gradient_numbers") or {}).get(gradient_key) or {}
    per_seed = {f"seed {c['seed']}": {
        "relative_first_last_ratio_median":
            (c.get("gradient") or {}).get("relative_first_last_ratio_median"),
        "first_last_ratio_median": (c.get("gradient") or {}).get("first_last_ratio_median")}
        for c in results["cells"] if (c["residual"], c["batch_norm"], c.get("variant", "he"),
                                      c["depth"]) == (False, batch_norm, "he",
                                                      deepest_depth(results))}
    why = None
    if degraded is not True:
        decision = "inconclusive"
        why = {None: "degradation not measured", False: "the plain net did not degrade: "
               "nothing to explain"}.get(degraded, "the plain net's degradation is inconclusive")
    elif vanishing in (True, False):
        decision = vanishing
    else:
        decision = "inconclusive"
        why = "the gradient ratio was not measured" if vanishing is None else \
            f"the interval of the relative ratio straddles {VANISHING_RATIO:g}"
    measured = {"relative_first_last_ratio_median":
                numbers.get("relative_first_last_ratio_median"),
                "log10_relative_ratio_interval": numbers.get("log10_relative_ratio_interval"),
                "first_last_ratio_median": numbers.get("first_last_ratio_median"),
                "vanishing_below": VANISHING_RATIO, "plain_degraded": degraded,
                "why_inconclusive": why}
    return measured, per_seed, verdict_word(decision)


def _median_damage(study: dict, chance: float) -> float | None:
    headroom = chance - study["baseline_error"]
    if not study.get("blocks") or headroom < MIN_HEADROOM:
        return None
    return float(np.median([min(1.0, max(0.0, b["error_increase"] / headroom))
                            for b in study["blocks"]]))


def _ensemble(results: dict) -> tuple[dict, dict, str]:
    """Lesions of the deepest BN twins and of the identity-initialized plain net (a plain net
    that trained): supported when the residual net's median damage is below
    ``ENSEMBLE_DAMAGE`` and below half the trained plain net's, refuted when it is at least
    3x ``ENSEMBLE_DAMAGE`` or not below the trained plain net's; inconclusive when either is
    not measurable (within ``MIN_HEADROOM`` of chance, or not run)."""
    lesion = results.get("lesion") or {}
    chance = 1.0 - 1.0 / results.get("classes", 10)
    damage = {kind: _median_damage(lesion[kind], chance) if kind in lesion else None
              for kind in ("plain", "residual", "plain_identity")}
    measured = {"plain_median_damage": damage["plain"],
                "residual_median_damage": damage["residual"],
                "plain_identity_median_damage": damage["plain_identity"],
                **{f"{kind}_intact_error": (lesion.get(kind) or {}).get("baseline_error")
                   for kind in ("plain", "residual", "plain_identity")}}
    residual, trained = damage["residual"], damage["plain_identity"]
    why = None
    if "residual" not in lesion:
        why = "the lesion study did not run"
    elif residual is None:
        why = f"the residual net is within {MIN_HEADROOM:g} of chance: no damage to measure"
    elif "plain_identity" not in lesion:
        why = "no plain net that trained was lesioned (the identity-initialized one did not run)"
    elif trained is None:
        why = (f"the identity-initialized plain net is within {MIN_HEADROOM:g} of chance: it did "
               "not train")
    if why:
        verdict = "inconclusive"
    elif residual < ENSEMBLE_DAMAGE and residual < 0.5 * trained:
        verdict = "supported"
    elif residual >= 3 * ENSEMBLE_DAMAGE or residual >= trained:
        verdict = "refuted"
    else:
        verdict, why = "inconclusive", (
            f"the residual net's damage {residual:.3f} is neither below {ENSEMBLE_DAMAGE:g} and "
            f"half the trained plain net's ({trained:.3f}) nor at least "
            f"{3 * ENSEMBLE_DAMAGE:g} or the plain net's")
    measured["why_inconclusive"] = why
    return measured, {"first seed": damage} if lesion else {}, verdict


def _shattering(results: dict) -> tuple[dict, dict, str]:
    rows = [r for r in results.get("shattering") or []
            if r["when"] == "init" and r.get("variant", "he") == "he"]
    if not rows:
        return {}, {}, "inconclusive"
    deep = max(r["depth"] for r in rows)
    found = {r["residual"]: r["neighbour_correlation"] for r in rows if r["depth"] == deep}
    shallow = [r["neighbour_correlation"] for r in rows
               if not r["residual"] and r["depth"] == min(x["depth"] for x in rows)]
    measured = {"plain_init": found.get(False), "residual_init": found.get(True),
                "plain_shallowest_init": shallow[0] if shallow else None}
    if found.get(False) is None or found.get(True) is None:
        return measured, {}, "inconclusive"
    gap = found[True] - found[False]
    verdict = ("supported" if gap >= SHATTERING_GAP
               else "refuted" if gap <= 0 else "inconclusive")
    return measured, {"first seed": {"correlation_gap": gap}}, verdict


# id -> (claim, source, test, prediction)
TEXT = {
    "vanishing_gradients": (
        "Deep plain nets with BatchNorm train worse because their gradients vanish.",
        "the common explanation; questioned by He et al. 2015 §4.1",
        "first/last conv ratio of relative gradient norms ||g||/||w|| of the deepest plain BN "
        "net (median over training), over seeds",
        f"where the plain BN net degraded, the ratio's interval lies below {VANISHING_RATIO:g}"),
    "vanishing_gradients_no_bn": (
        "Deep plain nets without normalization train worse because their gradients vanish.",
        "Glorot & Bengio 2010; Hochreiter 1991",
        "the same ratio for the deepest plain net without BN",
        f"where the plain no-BN net degraded, the ratio's interval lies below "
        f"{VANISHING_RATIO:g}"),
    "identity_init": (
        "The plain net fails because its conv-BN-ReLU layers must learn near-identity maps "
        "from a random start; a residual block starts near the identity.",
        "He et al. 2015 §3.1; DiracNets (Zagoruyko & Komodakis 2017)",
        "the deepest plain BN net trained from an identity (Dirac) init plus 0.1x He noise",
        f"it starts near the identity and closes at least {GAP_CLOSED:.0%} of the "
        "training-error gap to the residual twin"),
    "identity_init_no_bn": (
        "The same claim without BatchNorm, where identity convs do make near-identity layers "
        "on non-negative inputs.",
        "DiracNets (Zagoruyko & Komodakis 2017)",
        "the deepest plain net without BN trained from an identity (Dirac) init plus 0.1x He "
        "noise",
        f"it closes at least {GAP_CLOSED:.0%} of the training-error gap to the no-BN residual "
        "twin (which must have trained)"),
    "conditioning": (
        "A start with dynamical isometry is enough: the deep plain net trains from any "
        "well-conditioned start, near the identity or not.",
        "Xiao et al. 2018 (delta-orthogonal); Saxe et al. 2014; Pennington et al. 2017",
        "the deepest plain net from three well-conditioned starts far from the identity: "
        "with BN, the identity with its output channels permuted and delta-orthogonal; "
        "without BN, TAT's shaped net",
        f"all three close at least {GAP_CLOSED:.0%} of the gap between the plain BN net and "
        "its residual twin"),
    "near_identity": (
        "The start must be near the identity: an isometric start far from it does not "
        "train the deep plain net.",
        "He et al. 2015 §3.1; Hardt & Ma 2017",
        "the identity init against the three far well-conditioned starts (permuted identity, "
        "delta-orthogonal, TAT), deepest plain net, with the measured start distance from "
        "the identity",
        f"the identity init (started within {IDENTITY_PREMISE:g} of the identity) closes "
        f"{GAP_CLOSED:.0%} of the gap and no far start (at least {IDENTITY_PREMISE:g} "
        "away) does"),
    "branch_scale": (
        "What a deep residual net needs at initialization is a small residual branch (BN "
        "provides one); with the branch scaled to 0 it trains without BN.",
        "SkipInit (De & Smith 2020); Fixup (Zhang et al. 2019)",
        "the deepest residual net without BN, each branch scaled by a learnable scalar "
        "starting at 0 (SkipInit; Fixup reported beside)",
        f"it closes at least {GAP_CLOSED:.0%} of the gap between the no-BN and the BN "
        "residual net"),
    "learning_rate": (
        "The deep plain net is badly conditioned: a step size that suits its residual twin "
        "does not suit it.",
        "Cohen et al. 2021 (sharpness); Li et al. 2018 (landscapes)",
        "the deepest plain BN net at each rate of a sweep around the recipe's (0.1x to 10x; "
        "quick runs 0.1x only)",
        f"some rate closes at least {GAP_CLOSED:.0%} of the gap to the residual twin; refuted "
        f"only when none of at least {LR_SWEEP_RATES} rates spanning {LR_SWEEP_SPAN:g}x does"),
    "kernel_shaping": shaping_rule.TEXT_ROW,
    "identity_task": identity_rule.TEXT_ROW,
    "ensemble": (
        "A residual net behaves like an ensemble of shallow paths: no single block is "
        "essential, while a plain net needs every layer.",
        "Veit et al. 2016",
        "delete one block at a time from the trained deepest BN residual net and from a plain "
        "net of that depth that trained (identity init), test error",
        f"the residual net's median damage (fraction of the way to chance) is below "
        f"{ENSEMBLE_DAMAGE:g} and below half the trained plain net's"),
    "shattering": (
        "Gradients of deep plain nets shatter into white noise over the input, residual "
        "nets' stay correlated.",
        "Balduzzi et al. 2017",
        "correlation of input gradients at neighbouring points, at initialization, deepest "
        "BN twins",
        f"the plain net's correlation is at least {SHATTERING_GAP:g} below the residual twin's"),
    "landscape": landscape_rule.TEXT_ROW,
    "small_responses": responses_rule.TEXT_ROW,
}


def _branch_scale(results: dict) -> tuple[dict, dict, str]:
    """SkipInit decides; Fixup's gap test is reported beside (``fixup``)."""
    measured, per_seed, verdict, _ = intervention(
        results, (True, False), "skipinit", (True, True),
        ("residual_no_bn", "residual_no_bn_skipinit", "residual_bn"))
    fixup, fixup_seeds, fixup_verdict, _ = intervention(
        results, (True, False), "fixup", (True, True),
        ("residual_no_bn", "residual_no_bn_fixup", "residual_bn"))
    measured["fixup"] = {"error": fixup["residual_no_bn_fixup"], "verdict": fixup_verdict,
                         "closed_interval": fixup["closed_interval"],
                         "why_inconclusive": fixup["why_inconclusive"]}
    return measured, {**per_seed, **{f"fixup {k}": v for k, v in fixup_seeds.items()}}, verdict


def hypotheses(results: dict, flags: dict | None = None) -> tuple[list[dict], dict]:
    """``(rows, per_seed)``: the hypothesis rows in ``TEXT`` order, and the per-seed
    values behind each verdict (``{id: {"seed 0": ..., ...}}``).

    Args:
        results: the study's results (cells, lesion, shattering, landscape,
            identity_task).
        flags: ``{"degraded", "vanishing", "gradient_numbers"}``: the verdict's
            degradation and vanishing flags per family and its gradient numbers.
    """
    flags = flags or {}
    computed = {
        "vanishing_gradients": _vanishing(results, flags, True),
        "vanishing_gradients_no_bn": _vanishing(results, flags, False),
        "identity_init": intervention(
            results, (False, True), "dirac", (True, True),
            ("plain", "plain_identity", "residual"), premise="near")[:3],
        "identity_init_no_bn": intervention(
            results, (False, False), "dirac", (True, False),
            ("plain_no_bn", "plain_no_bn_identity", "residual_no_bn"), premise="near")[:3],
        "conditioning": conditioning(results),
        "near_identity": near_identity(results),
        "branch_scale": _branch_scale(results),
        "learning_rate": learning_rate(results),
        "kernel_shaping": shaping_rule.kernel_shaping(results),
        "identity_task": identity_rule.identity_task(results),
        "ensemble": _ensemble(results),
        "shattering": _shattering(results),
        "landscape": landscape_rule.landscape(results),
        "small_responses": responses_rule.small_responses(results),
    }
    rows, per_seed = [], {}
    for key, (claim, source, test, prediction) in TEXT.items():
        measured, seeds, verdict = computed[key]
        rows.append({"id": key, "claim": claim, "source": source, "test": test,
                     "prediction": prediction, "measured": measured, "verdict": verdict})
        per_seed[key] = seeds
    return rows, per_seed


__all__ = ["TEXT", "VERDICTS", "combine", "hypotheses"]
