"""The study's hypotheses: each explanation of degradation, its test, and a verdict from data.

Every hypothesis is a dict with exactly the keys ``id, claim, source, test,
prediction, measured, verdict``; ``verdict`` is ``"supported"``, ``"refuted"`` or
``"inconclusive"``. The per-seed values come beside the list (``per_seed``). The
intervention tests are decided from the 95% interval over seeds of the fraction of the
gap closed (:mod:`reskeras.study.judgment.intervals`): supported when it lies wholly
above ``GAP_CLOSED``, refuted when wholly below, inconclusive when it straddles or fewer
than two seeds could decide. The other hypotheses are supported or refuted only when
every seed that could decide agrees; disagreeing seeds, or none able to decide, give
``inconclusive``.
The criteria (docs/study.md, "Why: the hypotheses") are constants of the one criteria
table, :mod:`reskeras.study.criteria`:

- **intervention tests** (``identity_init``, ``branch_scale``, ``learning_rate``):
  the gap is the training-error difference between the failing net and its
  reference (the residual twin, or the BN residual twin for ``branch_scale``);
  a seed's value is the fraction of that gap the intervention closes (its
  ``decided`` says whether it closed at least ``GAP_CLOSED``); a gap below
  ``MIN_GAP_POINTS`` percentage points leaves the seed out (nothing to close). A
  diverged cell counts as training error 1.0. ``identity_init`` (and
  ``identity_init_no_bn``) also need their premise: the identity-initialized net
  must start near the identity, its median block distance
  ``||block(x) - x|| / ||x||`` at initialization below ``IDENTITY_PREMISE``
  (a block fed all zeros counts as infinitely far); a seed whose net did not is
  undecided. With BatchNorm, identity convs do not make identity layers: BN
  re-centres each layer's input and the ReLU cuts what falls below the mean.
- ``vanishing_gradients``: in each seed whose deepest plain BN net degraded,
  supported when its gradients vanished (``gradient_flow``), refuted when not.
- ``identity_task``: a stack *keeps its input* up to depth k when every stack
  of depth <= k ends with relative reconstruction error below
  ``IDENTITY_LEARNED`` (a constant output scores 1 - 1/pi = 0.68 on these
  inputs). Supported in a seed when residual stacks keep it at least
  ``IDENTITY_FACTOR`` times as deep as plain ones, refuted when not deeper.
- ``ensemble`` (first seed only): a lesion's damage is its error increase as a
  fraction of the way from the intact error to chance (not measurable for a net
  within ``MIN_HEADROOM`` of chance); supported when the residual net's median
  damage is below ``ENSEMBLE_DAMAGE`` and below half the plain net's (when that
  is measurable), refuted when it is at least 3x ``ENSEMBLE_DAMAGE`` or not
  below the plain net's.
- ``shattering`` (first seed only): supported when at initialization the deepest
  plain net's neighbour gradient correlation is at least ``SHATTERING_GAP``
  below the residual twin's, refuted when it is not below it at all.
- ``landscape``: per measured seed, supported when the plain net's top Hessian
  eigenvalue after training exceeds the residual twin's, refuted otherwise.

Example:

>>> rows, per_seed = hypotheses({"cells": []})
>>> [(row["id"], row["verdict"]) for row in rows][:2]
[('vanishing_gradients', 'inconclusive'), ('identity_init', 'inconclusive')]
"""

from __future__ import annotations

import numpy as np

from reskeras.study.cells import deepest_depth
from reskeras.study.judgment.intervals import decide, interval
from reskeras.study.criteria import (ENSEMBLE_DAMAGE, GAP_CLOSED, IDENTITY_FACTOR,
                                     IDENTITY_LEARNED, IDENTITY_PREMISE, MIN_GAP_POINTS,
                                     MIN_HEADROOM, SHATTERING_GAP, VANISHING_RATIO)

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


def _verdict(values) -> str:
    return {True: "supported", False: "refuted"}.get(combine(values), "inconclusive")


def _mean(values) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def errors(results: dict, residual: bool, batch_norm: bool, variant: str = "he",
           depth: int | None = None) -> dict[int, float]:
    """Final training error per seed of one configuration (default: the deepest depth);
    a diverged cell counts as 1.0, unfinished cells are left out."""
    depth = deepest_depth(results) if depth is None else depth
    found = {}
    for c in results["cells"]:
        if (c["residual"], c["batch_norm"], c.get("variant", "he"), c["depth"]) != \
                (residual, batch_norm, variant, depth):
            continue
        if c["status"] == "diverged":
            found[c["seed"]] = 1.0
        elif c.get("final_train_error") is not None:
            found[c["seed"]] = float(c["final_train_error"])
    return found


def _gap_test(baseline: dict, treated: dict, reference: dict) -> tuple[dict, dict]:
    """Per seed ``{"closed": fraction, "decided": bool | None}`` of an intervention."""
    per_seed, decided = {}, {}
    reference_mean = _mean(reference.values())
    for seed in sorted(treated):
        if seed not in baseline:
            continue
        target = reference.get(seed, reference_mean)
        if target is None:
            continue
        gap = baseline[seed] - target
        closed = (baseline[seed] - treated[seed]) / gap if gap > 0 else None
        ok = None if gap * 100 < MIN_GAP_POINTS else closed >= GAP_CLOSED
        per_seed[f"seed {seed}"] = {"gap_points": gap * 100, "closed": closed, "decided": ok}
        decided[seed] = ok
    return per_seed, decided


def start_distance(results: dict, residual: bool, batch_norm: bool, variant: str
                   ) -> dict[int, float]:
    """Per seed, the median over blocks of ``||block(x) - x|| / ||x||`` at initialization of
    the deepest cell (a block whose input is all zero counts as infinitely far); only cells
    whose distances were measured."""
    depth = deepest_depth(results)
    found = {}
    for c in results["cells"]:
        rows = ((c.get("measures") or {}).get("identity")) or []
        if rows and (c["residual"], c["batch_norm"], c.get("variant", "he"), c["depth"]) == \
                (residual, batch_norm, variant, depth):
            found[c["seed"]] = float(np.median([np.inf if r["init"] is None else r["init"]
                                                for r in rows]))
    return found


def unconverged(results: dict, residual: bool, batch_norm: bool, variant: str = "he"
                ) -> list[str]:
    """The cells of one configuration at the deepest depth that hit the cap without
    converging (cells without budget readings count as they are)."""
    depth = deepest_depth(results)
    return [c["name"] for c in results["cells"]
            if (c["residual"], c["batch_norm"], c.get("variant", "he"), c["depth"]) ==
            (residual, batch_norm, variant, depth) and c["status"] == "finished"
            and (c.get("convergence") or {}).get("converged") is False]


def _intervention(results, baseline, treated, reference, keys, premise=None,
                  reference_stuck=()) -> tuple[dict, dict, str]:
    """An intervention's gap test; ``premise`` (per seed: the treated net's median distance
    from the identity at init) undecides the seeds where the net did not start near it;
    a reference that hit the cap without converging (``reference_stuck``) leaves it
    inconclusive: its gap was still moving."""
    per_seed, decided = _gap_test(baseline, treated, reference)
    for seed in list(decided):
        if premise is not None and seed in premise:
            near = premise[seed] < IDENTITY_PREMISE
            per_seed[f"seed {seed}"]["start_distance"] = \
                premise[seed] if np.isfinite(premise[seed]) else None
            per_seed[f"seed {seed}"]["started_near_identity"] = near
            if not near:
                decided[seed] = per_seed[f"seed {seed}"]["decided"] = None
    for seed in decided:
        per_seed[f"seed {seed}"]["change_points"] = (treated[seed] - baseline[seed]) * 100
    closed = interval(per_seed[f"seed {seed}"]["closed"] for seed, ok in decided.items()
                      if ok is not None)
    change = interval(per_seed[f"seed {seed}"]["change_points"] for seed in decided)
    found = decide(closed, GAP_CLOSED)
    why = None
    if reference_stuck:
        found = "inconclusive"
        why = (f"the reference hit the cap without converging "
               f"({', '.join(reference_stuck)})")
    elif closed is None:
        why = (f"fewer than two seeds with a gap of at least {MIN_GAP_POINTS:g} points"
               + (" and a start near the identity" if premise is not None else "")
               + ": no interval")
    elif found == "inconclusive":
        why = f"the interval of the fraction closed straddles {GAP_CLOSED:g}"
    measured = {keys[0]: _mean(baseline.values()), keys[1]: _mean(treated.values()),
                keys[2]: _mean(reference.values()),
                "closed_interval": closed["interval"] if closed else None,
                "change_points_interval": change["interval"] if change else None,
                "interval_method": (closed or change or {}).get("method"),
                "why_inconclusive": why}
    return measured, per_seed, {True: "supported", False: "refuted"}.get(found, "inconclusive")


def _vanishing(results: dict, flags: dict) -> tuple[dict, dict, str]:
    deep = deepest_depth(results)
    per_seed, decided = {}, {}
    degraded = (flags.get("degradation_per_seed") or {})
    ratios = []
    for c in results["cells"]:
        if (c["residual"], c["batch_norm"], c.get("variant", "he"), c["depth"]) != \
                (False, True, "he", deep):
            continue
        gradient = c.get("gradient") or {}
        state = gradient.get("state", "unknown")
        ratios.append(gradient.get("first_last_ratio_median"))
        was_degraded = degraded.get(c["seed"])
        ok = None if not was_degraded or state == "unknown" else state == "vanishing"
        per_seed[f"seed {c['seed']}"] = {"degraded": was_degraded, "state": state,
                                         "first_last_ratio_median":
                                             gradient.get("first_last_ratio_median")}
        decided[c["seed"]] = ok
    measured = {"first_last_ratio_median": _mean(ratios), "vanishing_below": VANISHING_RATIO,
                "plain_degraded": combine(degraded.values()) if degraded else None}
    return measured, per_seed, _verdict(decided.values())


def kept_depth(errors: dict[int, float]) -> int:
    """The deepest k such that every stack of depth <= k has error below ``IDENTITY_LEARNED``
    (0 when even the shallowest does not).

    >>> kept_depth({1: 0.01, 2: 0.06, 4: 0.3, 8: 0.1})
    2
    """
    kept = 0
    for depth in sorted(errors):
        if errors[depth] >= IDENTITY_LEARNED:
            break
        kept = depth
    return kept


def _identity_task(results: dict) -> tuple[dict, dict, str]:
    task = results.get("identity_task")
    if not task or not task.get("rows"):
        return {}, {}, "inconclusive"
    deep = max(r["depth"] for r in task["rows"])
    table: dict = {}
    for r in task["rows"]:
        table.setdefault((r["kind"], r["seed"]), {})[r["depth"]] = r["error"]
    per_seed, decided, kept = {}, {}, {"plain": [], "residual": []}
    for seed in sorted({r["seed"] for r in task["rows"]}):
        if ("plain", seed) not in table or ("residual", seed) not in table:
            continue
        plain, residual = kept_depth(table["plain", seed]), kept_depth(table["residual", seed])
        kept["plain"].append(plain)
        kept["residual"].append(residual)
        ok = None if residual > plain and residual < IDENTITY_FACTOR * max(plain, 1) \
            else residual > plain
        per_seed[f"seed {seed}"] = {"plain_kept_depth": plain, "residual_kept_depth": residual,
                                    "decided": ok}
        decided[seed] = ok

    def at_deepest(kind):
        return _mean(errors[deep] for (k, _), errors in table.items() if k == kind)
    measured = {"plain_kept_depth": min(kept["plain"], default=None),
                "residual_kept_depth": min(kept["residual"], default=None),
                "deepest_depth": deep, "plain_at_deepest": at_deepest("plain"),
                "residual_at_deepest": at_deepest("residual")}
    return measured, per_seed, _verdict(decided.values()) if decided else "inconclusive"


def _median_damage(study: dict, chance: float) -> float | None:
    headroom = chance - study["baseline_error"]
    if not study.get("blocks") or headroom < MIN_HEADROOM:
        return None
    return float(np.median([min(1.0, max(0.0, b["error_increase"] / headroom))
                            for b in study["blocks"]]))


def _ensemble(results: dict) -> tuple[dict, dict, str]:
    lesion = results.get("lesion") or {}
    if "plain" not in lesion or "residual" not in lesion:
        return {}, {}, "inconclusive"
    chance = 1.0 - 1.0 / results.get("classes", 10)
    plain = _median_damage(lesion["plain"], chance)
    residual = _median_damage(lesion["residual"], chance)
    measured = {"plain_median_damage": plain, "residual_median_damage": residual,
                "plain_intact_error": lesion["plain"]["baseline_error"],
                "residual_intact_error": lesion["residual"]["baseline_error"]}
    if residual is None:
        return measured, {}, "inconclusive"
    if residual < ENSEMBLE_DAMAGE and (plain is None or residual < 0.5 * plain):
        verdict = "supported"
    elif residual >= 3 * ENSEMBLE_DAMAGE or (plain is not None and residual >= plain):
        verdict = "refuted"
    else:
        verdict = "inconclusive"
    return measured, {"first seed": {"plain": plain, "residual": residual}}, verdict


def _shattering(results: dict) -> tuple[dict, dict, str]:
    rows = [r for r in results.get("shattering") or [] if r["when"] == "init"]
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


def _sharpness(results: dict) -> dict[tuple[bool, str], dict[int, dict]]:
    found: dict = {}
    for c in results["cells"]:
        sharp = (c.get("measures") or {}).get("sharpness")
        if sharp and c["batch_norm"]:
            found.setdefault((c["residual"], c.get("variant", "he")), {})[c["seed"]] = sharp
    return found


def _landscape(results: dict) -> tuple[dict, dict, str]:
    sharp = _sharpness(results)
    plain, residual = sharp.get((False, "he"), {}), sharp.get((True, "he"), {})
    per_seed, decided = {}, {}
    for seed in sorted(set(plain) & set(residual)):
        p, r = plain[seed].get("final"), residual[seed].get("final")
        ok = None if p is None or r is None else p > r
        per_seed[f"seed {seed}"] = {"plain": p, "residual": r, "decided": ok}
        decided[seed] = ok
    slices = results.get("landscape") or {}
    roughness = {("residual" if entry.get("residual") else "plain"): entry.get("roughness")
                 for entry in slices.values()}
    measured = {"plain_sharpness_final": _mean(v.get("final") for v in plain.values()),
                "residual_sharpness_final": _mean(v.get("final") for v in residual.values()),
                "plain_sharpness_init": _mean(v.get("init") for v in plain.values()),
                "residual_sharpness_init": _mean(v.get("init") for v in residual.values()),
                "plain_roughness": roughness.get("plain"),
                "residual_roughness": roughness.get("residual")}
    return measured, per_seed, _verdict(decided.values()) if decided else "inconclusive"


# id -> (claim, source, test, prediction)
TEXT = {
    "vanishing_gradients": (
        "Deep plain nets train worse because their gradients vanish.",
        "the common explanation; questioned by He et al. 2015 §4.1",
        "first/last conv gradient-norm ratio of the deepest plain BN net (median over training)",
        f"in every seed where the plain net degraded, the ratio is below {VANISHING_RATIO:g}"),
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
        "twin"),
    "branch_scale": (
        "What a deep residual net needs at initialization is a small residual branch (BN "
        "provides one); with the branch scaled to 0 it trains without BN.",
        "SkipInit (De & Smith 2020); Fixup (Zhang et al. 2019)",
        "the deepest residual net without BN, each branch scaled by a learnable scalar "
        "starting at 0",
        f"it closes at least {GAP_CLOSED:.0%} of the gap between the no-BN and the BN "
        "residual net"),
    "learning_rate": (
        "The deep plain net is badly conditioned: a step size that suits its residual twin "
        "is too large for it.",
        "Cohen et al. 2021 (sharpness); Li et al. 2018 (landscapes)",
        "the deepest plain BN net trained with a 10x smaller learning rate",
        f"it closes at least {GAP_CLOSED:.0%} of the gap to the residual twin"),
    "identity_task": (
        "Stacked conv-BN-ReLU layers struggle to represent the identity; residual layers "
        "reach it by zeroing their branch.",
        "He et al. 2015 §3.1",
        "stacks of k conv-BN-ReLU layers trained to reproduce their own non-negative input, "
        "plain vs residual",
        f"residual stacks keep their input (error below {IDENTITY_LEARNED:g}) at least "
        f"{IDENTITY_FACTOR:g}x as deep as plain stacks"),
    "ensemble": (
        "A residual net behaves like an ensemble of shallow paths: no single block is "
        "essential, while a plain net needs every layer.",
        "Veit et al. 2016",
        "delete one block at a time from the trained deepest BN twins (test error)",
        f"the residual net's median damage (fraction of the way to chance) is below "
        f"{ENSEMBLE_DAMAGE:g} and below half the plain net's"),  # see the module docstring
    "shattering": (
        "Gradients of deep plain nets shatter into white noise over the input, residual "
        "nets' stay correlated.",
        "Balduzzi et al. 2017",
        "correlation of input gradients at neighbouring points, at initialization, deepest "
        "BN twins",
        f"the plain net's correlation is at least {SHATTERING_GAP:g} below the residual twin's"),
    "landscape": (
        "The deep plain net sits in a sharper, more chaotic region of its loss landscape "
        "than the residual twin.",
        "Li et al. 2018; Cohen et al. 2021",
        "top Hessian eigenvalue of the training loss after training (power iteration), "
        "deepest BN twins",
        "the plain net's top eigenvalue exceeds the residual twin's in every measured seed"),
}


def hypotheses(results: dict, flags: dict | None = None) -> tuple[list[dict], dict]:
    """``(rows, per_seed)``: the hypothesis rows in ``TEXT`` order, and the per-seed
    values behind each verdict (``{id: {"seed 0": ..., ...}}``).

    Args:
        results: the study's results (cells, lesion, shattering, landscape,
            identity_task).
        flags: ``{"degradation_per_seed": {seed: bool | None}}`` of the deepest
            plain BN net (from the verdict).
    """
    flags = flags or {}
    computed = {
        "vanishing_gradients": _vanishing(results, flags),
        "identity_init": _intervention(
            results, errors(results, False, True), errors(results, False, True, "dirac"),
            errors(results, True, True), ("plain", "plain_identity", "residual"),
            start_distance(results, False, True, "dirac"), unconverged(results, True, True)),
        "identity_init_no_bn": _intervention(
            results, errors(results, False, False), errors(results, False, False, "dirac"),
            errors(results, True, False),
            ("plain_no_bn", "plain_no_bn_identity", "residual_no_bn"),
            start_distance(results, False, False, "dirac"), unconverged(results, True, False)),
        "branch_scale": _intervention(
            results, errors(results, True, False), errors(results, True, False, "skipinit"),
            errors(results, True, True),
            ("residual_no_bn", "residual_no_bn_skipinit", "residual_bn"),
            reference_stuck=unconverged(results, True, True)),
        "learning_rate": _intervention(
            results, errors(results, False, True), errors(results, False, True, "lr0.1"),
            errors(results, True, True), ("plain", "plain_lr0.1", "residual"),
            reference_stuck=unconverged(results, True, True)),
        "identity_task": _identity_task(results),
        "ensemble": _ensemble(results),
        "shattering": _shattering(results),
        "landscape": _landscape(results),
    }
    rows, per_seed = [], {}
    for key, (claim, source, test, prediction) in TEXT.items():
        measured, seeds, verdict = computed[key]
        rows.append({"id": key, "claim": claim, "source": source, "test": test,
                     "prediction": prediction, "measured": measured, "verdict": verdict})
        per_seed[key] = seeds
    return rows, per_seed


__all__ = ["TEXT", "VERDICTS", "combine", "errors", "hypotheses", "unconverged"]
