"""``kernel_shaping``: does a plain net whose kernel is shaped at initialization train as well
as its residual twin, with no shortcut and no normalization?

TAT (Zhang, Botev & Martens 2022) shapes the deepest plain net without BN
(``kernel_shaping="tat"``, :mod:`reskeras.kernel_shaping`). Its cells train at the rate
their own sweep picked (:mod:`reskeras.study.judgment.rates`), under every recipe the study
sweeps (the main one, the compared ones, and the shaping-only ones: ``results["shaping"]``).
Under each recipe, the gap test of :mod:`reskeras.study.judgment.interventions` asks how
much of the gap between the plain BN net and its BN residual twin TAT's net closes:

- **supported** when under every recipe it closes at least ``GAP_CLOSED`` (interval wholly
  above), **refuted** when under every recipe it does not (wholly below), else
  inconclusive;
- **inconclusive**, naming the reason, when a recipe's sweep found no rate (every rate
  diverged), a TAT seed diverged (a diverged run is reported as such, never counted as a
  high training error), or any input of a gap test is missing.

Beside it, ``tuned``: the same gap test for the plain BN net at the rate its own sweep
picked, the same chance TAT gets (when the pick is the recipe's rate, the plain net's own
cells are that net); and ``no_augmentation``: the deepest BN twins and TAT's net trained on
data they can memorize, with training and test errors and the steps each needed, so that a
reader can tell a gap in the ability to fit from a gap in speed and test error.

Example:

>>> measured, per_seed, verdict = kernel_shaping({"cells": [], "recipe": "adam"})
>>> verdict, measured["why_inconclusive"]
('inconclusive', 'no rate sweep ran (the study has no TAT cells)')
"""

from __future__ import annotations

from reskeras.study.cells import SHAPING_NETS, deepest_depth
from reskeras.study.criteria import GAP_CLOSED
from reskeras.study.judgment.interventions import intervention, mean, verdict_word

_PLAIN_BN, _RESIDUAL_BN, _PLAIN_NO_BN = (False, True), (True, True), (False, False)

TEXT_ROW = (
    "A plain net whose kernel is shaped at initialization trains as well as its residual "
    "twin, with no shortcut and no normalization.",
    "Martens et al. 2021 (Deep Kernel Shaping); Zhang, Botev & Martens 2022 (TAT)",
    "the deepest plain net without BN shaped by TAT (delta scaled-orthogonal kernels, a leaky "
    "ReLU shaped for the depth by dks, per-location normalized input), at the rate its own "
    "sweep picked on held-out seeds, under each swept recipe",
    f"under every recipe it closes at least {GAP_CLOSED:.0%} of the training-error gap between "
    "the plain BN net and its BN residual twin")


def parts(results: dict) -> dict[str, dict]:
    """``{recipe: {"cells": [...]}}`` of every recipe that has a rate sweep."""
    found = {}
    for recipe in results.get("rate_sweeps") or {}:
        if recipe == results.get("recipe"):
            found[recipe] = results
        else:
            part = (results.get("compared") or {}).get(recipe) or \
                (results.get("shaping") or {}).get(recipe)
            found[recipe] = part if part is not None else {"cells": []}
    return found


def _diverged(part: dict, residual: bool, batch_norm: bool, variant: str) -> list[str]:
    depth = deepest_depth(part)
    return [c["name"] for c in part["cells"]
            if (c["residual"], c["batch_norm"], c.get("variant", "he"), c["depth"]) ==
            (residual, batch_norm, variant, depth) and c["status"] == "diverged"]


def _one_recipe(results: dict, recipe: str, part: dict) -> tuple[dict, dict]:
    sweeps = results["rate_sweeps"][recipe]
    sweep = sweeps.get("tat")
    found = {"sweep_picked": None if sweep is None else sweep["picked"],
             "picked_rate": None if sweep is None else sweep["picked_rate"]}
    if sweep is None or sweep["picked"] is None:
        why = "TAT's rate sweep did not run" if sweep is None else \
            "every rate of TAT's sweep diverged"
        return {**found, "decision": "inconclusive", "why_inconclusive": why}, {}
    measured, per_seed, _, test = intervention(
        part, _PLAIN_BN, "tat", _RESIDUAL_BN, ("plain_bn", "plain_tat", "residual_bn"),
        treated_net=_PLAIN_NO_BN)
    found.update(measured)
    decision, why = test.decision, measured["why_inconclusive"]
    diverged = _diverged(part, *_PLAIN_NO_BN, "tat")
    if diverged:
        decision, why = "inconclusive", f"TAT diverged ({', '.join(diverged)})"
    elif decision is None:
        decision = "inconclusive"
    found.update({"decision": decision, "why_inconclusive": why if decision not in
                  (True, False) else None, "tuned": _tuned(part, sweeps.get("tuned"))})
    return found, per_seed


def _tuned(part: dict, sweep: dict | None) -> dict | None:
    """The plain BN net at its own swept rate against the same gap."""
    if sweep is None:
        return None
    picked = sweep["picked"]
    if picked is None:
        return {"picked": None, "why_inconclusive": "every rate of its sweep diverged"}
    if picked == 1.0:
        return {"picked": 1.0, "verdict": "refuted", "closed_interval": None,
                "why_inconclusive": None,
                "note": "its sweep picked the recipe's own rate: it is the plain net"}
    measured, _, verdict, _ = intervention(part, _PLAIN_BN, "tuned", _RESIDUAL_BN,
                                           ("plain_bn", "plain_tuned", "residual_bn"))
    return {"picked": picked, "picked_rate": sweep["picked_rate"],
            "error": measured["plain_tuned"], "verdict": verdict,
            "closed_interval": measured["closed_interval"],
            "why_inconclusive": measured["why_inconclusive"]}


def no_augmentation(results: dict) -> dict | None:
    """Training and test errors of the deepest nets trained without augmentation (mean over
    seeds) and the steps each read its error at, beside the same nets with augmentation."""
    depth = deepest_depth(results)
    nets = {"plain_bn": (False, True, "he", "noaug"), "residual_bn": (True, True, "he", "noaug"),
            "plain_tat": (False, False, "tat", "tat-noaug")}
    found = {}
    for key, (residual, batch_norm, augmented, plain) in nets.items():
        rows = {}
        for label, variant in (("augmented", augmented), ("not_augmented", plain)):
            cells = [c for c in results["cells"] if c["status"] == "finished" and
                     (c["residual"], c["batch_norm"], c.get("variant", "he"), c["depth"]) ==
                     (residual, batch_norm, variant, depth)]
            rows[label] = None if not cells else {
                "train_error": mean(c.get("final_train_error") for c in cells),
                "test_error": mean(c.get("final_test_error") for c in cells),
                "steps": [(c.get("convergence") or {}).get("steps")
                          for c in sorted(cells, key=lambda c: c["seed"])],
                "seeds": sorted(c["seed"] for c in cells)}
        found[key] = rows
    return found if any(r["not_augmented"] for r in found.values()) else None


# the deepest nets whose start is described beside TAT's: (residual, batch_norm, variant)
START_NETS = SHAPING_NETS


def _batch_norm(row: dict) -> bool:
    """A row's BN; shattering rows written before they recorded it are of BN nets."""
    return row.get("batch_norm", row.get("variant", "he") != "tat")


def start_symptoms(results: dict) -> dict:
    """At initialization, for the deepest BN twins, the plain net without BN and TAT's:
    ``gradient_growth`` (the first/last conv ratio of relative gradient norms at step 0,
    mean over seeds), ``sharpness`` (the raw top Hessian eigenvalue, mean over the measured
    seeds; the scale-invariant one needs BN), ``shattering`` (neighbour input-gradient
    correlation, first seed), and the C map (mean cosine similarity between the
    representations of different inputs, first seed) at the last block (``c_last_block``)
    and at the pooled features (``c_pooled``), with the spread of the pooled features'
    pair cosines (``c_spread``) and their rank correlation with the input's
    (``c_rank_correlation``); ``None`` where not measured."""
    depth = deepest_depth(results)
    found = {}
    for key, (residual, batch_norm, variant) in START_NETS.items():
        def same(row):
            return (row["residual"], _batch_norm(row), row.get("variant", "he"),
                    row["depth"]) == (residual, batch_norm, variant, depth)

        cells = [c for c in results["cells"] if same(c) and c["status"] == "finished"]
        shattered = [r for r in (results.get("shattering") or []) +
                     (results.get("shattering_controls") or []) if r["when"] == "init" and same(r)]
        kernel = [r for r in results.get("kernel_map") or [] if same(r)]
        layers = kernel[0]["layers"] if kernel else []
        found[key] = {
            "gradient_growth": mean((c.get("gradient") or {}).get(
                "relative_first_last_ratio_init") for c in cells),
            "sharpness": mean(((c.get("measures") or {}).get("sharpness") or {}).get("init")
                              for c in cells),
            "shattering": mean(r.get("neighbour_correlation") for r in shattered),
            "c_last_block": layers[-2]["mean_cosine"] if len(layers) >= 2 else None,
            "c_pooled": layers[-1]["mean_cosine"] if layers else None,
            "c_spread": ((layers[-1].get("c_map") or {}) if layers else {}).get("spread"),
            "c_rank_correlation": ((layers[-1].get("c_map") or {}) if layers else {}).get(
                "rank_correlation")}
    return found


def kernel_shaping(results: dict) -> tuple[dict, dict, str]:
    """``(measured, per_seed, verdict)`` of ``kernel_shaping`` (see the module docstring)."""
    by_recipe, per_seed = {}, {}
    for recipe, part in parts(results).items():
        by_recipe[recipe], seeds = _one_recipe(results, recipe, part)
        per_seed.update({f"{recipe} {k}": v for k, v in seeds.items()})
    measured = {"recipes": by_recipe, "no_augmentation": no_augmentation(results),
                "symptoms_at_init": start_symptoms(results) if results["cells"] else None,
                "sweeps": results.get("rate_sweeps") or {}}
    decisions = [r["decision"] for r in by_recipe.values()]
    if not by_recipe:
        decision, why = "inconclusive", "no rate sweep ran (the study has no TAT cells)"
    elif all(d is True for d in decisions):
        decision, why = True, None
    elif all(d is False for d in decisions):
        decision, why = False, None
    else:
        decision = "inconclusive"
        why = "; ".join(f"{recipe}: " + (r["why_inconclusive"] or
                                         ("closes the gap" if r["decision"] is True
                                          else "does not close the gap"))
                        for recipe, r in by_recipe.items())
    measured["why_inconclusive"] = why
    return measured, per_seed, verdict_word(decision)


__all__ = ["START_NETS", "TEXT_ROW", "kernel_shaping", "no_augmentation", "parts",
           "start_symptoms"]
