"""The study's verdict, computed from the measurements with explicit criteria.

Every training error read here is ``final_train_error``: the error with the BatchNorm
statistics that ``criteria.TRAIN_ERROR`` names (precise statistics, recomputed with the
final weights; see :mod:`reskeras.study.measures.training_error`).

- **degradation** (per family: plain/residual, with and without BN): the deepest
  net's final training error exceeds the shallowest's by more than
  ``DEGRADATION_POINTS`` percentage points at the same step count (per seed,
  against the shallowest net of the same seed or the shallow seeds' mean; a
  diverged deepest net counts as degraded, a diverged shallowest one leaves it
  undecided);
- **vanishing gradients** (per family): the deepest net's gradient-flow state is
  ``vanishing`` (first/last conv gradient-norm ratio, median over logged steps,
  below 1/100; see ``gradient_flow``);
- **exploding at initialization**: that ratio at step 0 above 100;
- **BN statistics gap** (per cell): EMA minus precise training error in points; the
  answer says so when it exceeds ``DEGRADATION_POINTS`` for a cell a flag reads.

Each flag is decided per seed first (``numbers[...]["per_seed"]``) and is
yes/no only when every seed agrees, else ``"inconclusive"``. Only the
unmodified twins (``variant == "he"``) count; the interventions are judged as
``hypotheses`` (``reskeras.study.judgment.hypotheses``).

The answer paragraph is assembled from these flags, the hypotheses and their
numbers; nothing in it is written in advance of the data.
"""

from __future__ import annotations

import numpy as np

from reskeras.study.cells import is_twin
from reskeras.study.criteria import (DEGRADATION_POINTS, EXPLODING_RATIO, IDENTITY_LEARNED,
                                     TRAIN_ERROR, VANISHING_RATIO, criteria)
from reskeras.study.judgment import hypotheses as hyp
from reskeras.study.judgment.hypotheses import combine

FAMILIES = {"plain": (False, True), "residual": (True, True),
            "plain_no_bn": (False, False), "residual_no_bn": (True, False)}


def _cells(results: dict, residual: bool, batch_norm: bool) -> dict[int, list[dict]]:
    by_depth: dict[int, list[dict]] = {}
    for cell in results["cells"]:
        if cell["residual"] == residual and cell["batch_norm"] == batch_norm \
                and is_twin(cell):
            by_depth.setdefault(cell["depth"], []).append(cell)
    return dict(sorted(by_depth.items()))


def _mean_error(cells: list[dict]) -> float | None:
    errors = [c["final_train_error"] for c in cells if c["final_train_error"] is not None]
    return float(np.mean(errors)) if len(errors) == len(cells) and errors else None


def _degraded(cell: dict, shallow_error: float | None) -> bool | None:
    """One seed's degradation: its deepest net against the shallowest (same seed, or mean)."""
    if shallow_error is None:
        return None
    if cell["status"] == "diverged":
        return True
    if cell.get("final_train_error") is None:
        return None
    return round((cell["final_train_error"] - shallow_error) * 100, 9) > DEGRADATION_POINTS


def degradation(results: dict) -> dict:
    verdict, numbers = {}, {}
    for family, (residual, bn) in FAMILIES.items():
        by_depth = _cells(results, residual, bn)
        if len(by_depth) < 2:
            continue
        shallow, deep = min(by_depth), max(by_depth)
        low, high = _mean_error(by_depth[shallow]), _mean_error(by_depth[deep])
        deep_diverged = any(c["status"] == "diverged" for c in by_depth[deep])
        shallow_by_seed = {c["seed"]: c["final_train_error"] for c in by_depth[shallow]}
        per_seed = {c["seed"]: _degraded(c, shallow_by_seed.get(c["seed"], low)
                                         if low is not None else None)
                    for c in by_depth[deep]}
        verdict[family] = combine(per_seed.values())
        numbers[family] = {"shallow_depth": shallow, "deep_depth": deep,
                           "shallow_train_error": low, "deep_train_error": high,
                           "deep_diverged": deep_diverged,
                           "points": None if low is None or high is None else (high - low) * 100,
                           "deep_train_errors": {str(c["seed"]): c["final_train_error"]
                                                 for c in by_depth[deep]},
                           "per_seed": {str(k): v for k, v in per_seed.items()}}
    return {**verdict, "numbers": numbers}


def _deepest(results: dict, family: str) -> list[dict]:
    residual, bn = FAMILIES[family]
    by_depth = _cells(results, residual, bn)
    return by_depth[max(by_depth)] if by_depth else []


def gradients(results: dict) -> tuple[dict, dict, dict]:
    vanishing, exploding, numbers = {}, {}, {}
    for family in FAMILIES:
        key = {"plain": "plain_bn", "residual": "residual_bn"}.get(family, family)
        cells = _deepest(results, family)
        if not cells:
            continue
        states = [c["gradient"]["state"] for c in cells]
        init = [c["gradient"]["first_last_ratio_init"] for c in cells]
        vanishing_by_seed = {str(c["seed"]): None if state == "unknown" else state == "vanishing"
                             for c, state in zip(cells, states)}
        exploding_by_seed = {str(c["seed"]): None if ratio is None else ratio > EXPLODING_RATIO
                             for c, ratio in zip(cells, init)}
        vanishing[key] = combine(vanishing_by_seed.values())
        exploding[key] = combine(exploding_by_seed.values())
        medians = [c["gradient"]["first_last_ratio_median"] for c in cells]
        numbers[key] = {"depth": cells[0]["depth"], "states": states,
                        "first_last_ratio_init": _median(init),
                        "first_last_ratio_median": _median(medians),
                        "per_seed": {"vanishing": vanishing_by_seed,
                                     "exploding_at_init": exploding_by_seed}}
    return vanishing, exploding, numbers


def statistics_gaps(results: dict) -> dict:
    """EMA minus precise training error (points) of every cell, and those a flag reads
    that exceed ``DEGRADATION_POINTS``: the moving averages alone would move such a
    cell's error by more than the degradation threshold."""
    points = {c["name"]: (c.get("errors") or {}).get("bn_statistics_gap")
              for c in results["cells"]}
    read = []  # the shallowest and deepest twins of each family: what degradation compares
    for residual, bn in FAMILIES.values():
        by_depth = _cells(results, residual, bn)
        if len(by_depth) >= 2:
            read += by_depth[min(by_depth)] + by_depth[max(by_depth)]
    above = sorted({c["name"] for c in read
                    if points.get(c["name"]) is not None
                    and round(points[c["name"]], 9) > DEGRADATION_POINTS})
    return {"points": points, "above_threshold": above}


def _statistics_part(results: dict, gaps: dict) -> list[str]:
    """The sentence on BN statistics, when the moving averages would have moved a flag's
    cell by more than the degradation threshold."""
    if not gaps["above_threshold"]:
        return []
    cells = {c["name"]: c for c in results["cells"]}
    worst = max(gaps["above_threshold"], key=lambda name: gaps["points"][name])
    train = cells[worst]["errors"]["train"]
    others = len(gaps["above_threshold"]) - 1
    return [f"BatchNorm's moving averages would have added {gaps['points'][worst]:.1f} points "
            f"to the training error of {worst} ({_pct(train['ema'])} with them, "
            f"{_pct(train['precise'])} with precise statistics)"
            + (f", and more than {DEGRADATION_POINTS:g} points to {others} other cell"
               f"{'s' if others > 1 else ''} that the flags read" if others else "")
            + f"; every error here uses {TRAIN_ERROR} statistics."]


def _median(values) -> float | None:
    finite = [v for v in values if v is not None]
    return float(np.median(finite)) if finite else None


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _ratio(value) -> str:
    return "n/a" if value is None else f"{value:.3g}x"


def _degradation_words(flag, per_seed: dict, subject: str = "") -> str:
    """``degradation in 3 of 3 seeds``, ``no degradation in any of 3 seeds``,
    ``inconclusive: 2 of 3 seeds degraded``; without seed counts for one seed."""
    values = [v for v in per_seed.values() if v is not None]
    k, n = sum(bool(v) for v in values), len(values)
    if flag is None:
        return "undecided"
    if n < 2:
        return {True: "degradation", False: "no degradation"}.get(flag, "inconclusive")
    if flag is True:
        return f"degradation in {k} of {n} seeds"
    if flag is False:
        return f"no degradation in any of {n} seeds"
    return f"inconclusive: {k} of {n} seeds degraded"


_STATE_WORDS = {True: "vanished", False: "did not vanish",
                "inconclusive": "vanished in some seeds only"}


def _vanishing_part(degraded: dict, vanishing: dict, exploding: dict,
                    grad_numbers: dict) -> list[str]:
    parts = []
    for bn, label in ((True, "With BatchNorm"), (False, "Without BatchNorm")):
        plain, residual = ("plain", "residual") if bn else ("plain_no_bn", "residual_no_bn")
        g_plain = "plain_bn" if bn else "plain_no_bn"
        g_res = "residual_bn" if bn else "residual_no_bn"
        if plain not in degraded.get("numbers", {}):
            continue
        n = degraded["numbers"][plain]
        d = degraded.get(plain)
        depth_words = f"the {n['deep_depth']}-layer plain net"
        if n["deep_diverged"]:
            result = f"{depth_words} diverged"
        else:
            result = (f"{depth_words} ended at {_pct(n['deep_train_error'])} training error "
                      f"against {_pct(n['shallow_train_error'])} for the "
                      f"{n['shallow_depth']}-layer one")
        sentence = f"{label}, {result}: {_degradation_words(d, n.get('per_seed', {}))}."
        g = grad_numbers.get(g_plain)
        if g and vanishing.get(g_plain) is None:
            sentence += " Its gradient flow could not be classified (no finite ratios)."
        elif g:
            sentence += (f" Its gradients {_STATE_WORDS[vanishing[g_plain]]} (first/last conv "
                         f"gradient-norm ratio {_ratio(g['first_last_ratio_median'])}, median "
                         f"over training; vanishing means below {VANISHING_RATIO:g})")
            if exploding.get(g_plain) is True:
                sentence += (f", and at initialization they grew "
                             f"{_ratio(g['first_last_ratio_init'])} towards the input (exploding)")
            sentence += "."
        if residual in degraded:
            r = degraded["numbers"][residual]
            deep = "diverged" if r["deep_diverged"] else _pct(r["deep_train_error"])
            words = {True: "also degraded", False: "did not degrade"}.get(
                degraded[residual], "were inconclusive")
            values = [v for v in r.get("per_seed", {}).values() if v is not None]
            count = (f"{sum(map(bool, values))} of {len(values)} seeds degraded; "
                     if len(values) > 1 else "")
            sentence += (f" The residual twins {words} ({count}"
                         f"{_pct(r['shallow_train_error'])} at depth {r['shallow_depth']}, "
                         f"{deep} at depth {r['deep_depth']})"
                         + (", with vanishing gradients." if vanishing.get(g_res) is True else "."))
        parts.append(sentence)
    if not parts:
        return ["The grid has fewer than two finished depths per family, so degradation (deep "
                "against shallow at the same budget) cannot be measured; the gradient-flow "
                "numbers of each cell are in the report."]
    bn_plain_degraded = degraded.get("plain")
    bn_plain_vanishing = vanishing.get("plain_bn")
    if bn_plain_degraded is True and bn_plain_vanishing is False \
            and degraded.get("residual") is False:
        parts.append("So in these runs residual connections removed a degradation that "
                     "vanishing gradients do not explain, as He et al. (2015, §4.1) argue.")
    elif bn_plain_degraded is True and bn_plain_vanishing is True:
        parts.append("So in these runs the degraded plain net also had vanishing gradients: "
                     "the measurement does not separate the two explanations.")
    elif bn_plain_degraded is False:
        parts.append("So at these depths and this budget the plain nets did not degrade; "
                     "a deeper grid or longer training is needed to test the claim.")
    elif bn_plain_degraded == "inconclusive" or bn_plain_vanishing == "inconclusive":
        parts.append("The seeds disagree, so this budget does not settle the question.")
    return parts


def _start(per_seed: dict) -> str:
    """How far the identity-initialized net started from the identity, when that was measured."""
    found = [v["start_distance"] for v in per_seed.values() if "start_distance" in v]
    if not found:
        return ""
    if any(v is None for v in found):
        return "; some blocks started with all-zero inputs"
    return f"; it started at median block distance {np.median(found):.2f} from the identity"


def _why_part(rows: list[dict], seeds: dict | None = None) -> list[str]:
    """Sentences for "why easier?" and "why no closing the gap?", from the hypotheses."""
    by_id = {row["id"]: row for row in rows}
    seeds = seeds or {}

    def said(key: str, text: str) -> str:
        return f"{text} ({key.replace('_', ' ')}: {by_id[key]['verdict']})."

    m = {key: row["measured"] or {} for key, row in by_id.items()}
    easier, gap = [], []
    task = m.get("identity_task", {})
    if task.get("plain_kept_depth") is not None:
        easier.append(said("identity_task", (
            f"Trained to copy their own input, plain conv-BN-ReLU stacks kept it (error below "
            f"{IDENTITY_LEARNED:g}) up to depth {task['plain_kept_depth']}, residual stacks "
            f"up to depth {task['residual_kept_depth']}; at depth {task['deepest_depth']} the errors "
            f"were {_num(task['plain_at_deepest'])} and {_num(task['residual_at_deepest'])} "
            "(a constant output scores 0.68)")))
    ident = m.get("identity_init", {})
    if ident.get("plain_identity") is not None:
        easier.append(said("identity_init", (
            f"Starting the deepest plain BN net at the identity gave {_pct(ident['plain_identity'])} "
            f"training error, against {_pct(ident['plain'])} from He init and "
            f"{_pct(ident['residual'])} for the residual twin"
            + _start(seeds.get("identity_init", {})))))
    ident = m.get("identity_init_no_bn", {})
    if ident.get("plain_no_bn_identity") is not None:
        easier.append(said("identity_init_no_bn", (
            f"Without BN it gave {_pct(ident['plain_no_bn_identity'])}, against "
            f"{_pct(ident['plain_no_bn'])} from He init and {_pct(ident['residual_no_bn'])} "
            "for the no-BN residual twin" + _start(seeds.get("identity_init_no_bn", {})))))
    branch = m.get("branch_scale", {})
    if branch.get("residual_no_bn_skipinit") is not None:
        easier.append(said("branch_scale", (
            f"Without BN, residual branches that start at 0 (SkipInit) gave "
            f"{_pct(branch['residual_no_bn_skipinit'])}, against "
            f"{_pct(branch['residual_no_bn'])} with He init and {_pct(branch['residual_bn'])} "
            "with BN")))
    rate = m.get("learning_rate", {})
    if rate.get("plain_lr0.1") is not None:
        gap.append(said("learning_rate", (
            f"a 10x smaller learning rate left the plain net at {_pct(rate['plain_lr0.1'])} "
            f"(from {_pct(rate['plain'])})")))
    land = m.get("landscape", {})
    if land.get("plain_sharpness_final") is not None:
        gap.append(said("landscape", (
            f"after training its top Hessian eigenvalue was {land['plain_sharpness_final']:.3g} "
            f"against {_num(land.get('residual_sharpness_final'))} for the residual twin")))
    shatter = m.get("shattering", {})
    if shatter.get("plain_init") is not None:
        gap.append(said("shattering", (
            f"at initialization its input gradients' neighbour correlation was "
            f"{shatter['plain_init']:.2f} against {_num(shatter.get('residual_init'))}")))
    ensemble = m.get("ensemble", {})
    if ensemble.get("residual_median_damage") is not None:
        plain_damage = ensemble.get("plain_median_damage")
        gap.append(said("ensemble", (
            f"deleting one block took the residual net a median "
            f"{_pct(ensemble['residual_median_damage'])} of the way to chance, "
            + ("the plain net, already near chance, nothing measurable" if plain_damage is None
               else f"the plain net {_pct(plain_damage)}"))))
    parts = []
    if easier:
        parts.append("Why is a residual mapping easier? " + " ".join(easier))
    if gap:
        parts.append("Why does the plain net not close the gap? In these runs "
                     + "; ".join(s[:-1] for s in gap) + ".")
    verdicts = {v: [row["id"].replace("_", " ") for row in rows if row["verdict"] == v]
                for v in ("supported", "refuted", "inconclusive")}
    if rows:
        parts.append("In short, " + "; ".join(f"{v}: {', '.join(ids)}"
                                              for v, ids in verdicts.items() if ids) + ".")
    return parts


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def answer(degraded: dict, vanishing: dict, exploding: dict, grad_numbers: dict,
           rows: list[dict] | None = None, seeds: dict | None = None,
           statistics: list[str] | None = None) -> str:
    """One paragraph in plain words, from the flags, the hypotheses and their numbers:
    do the gradients vanish, why is a residual mapping easier, why no closing the gap
    (``statistics``: the sentence on BatchNorm statistics, when it has one)."""
    return " ".join(_vanishing_part(degraded, vanishing, exploding, grad_numbers)
                    + (statistics or []) + _why_part(rows or [], seeds))


def verdict(results: dict) -> dict:
    """``{"degradation", "vanishing_gradients", "exploding_at_init", "gradient_numbers",
    "hypotheses", "hypothesis_seeds", "errors", "bn_statistics_gap", "criteria", "answer"}``
    from a study's results; ``errors`` are every cell's training and test errors with
    each kind of BatchNorm statistics (``criteria["train_error"]`` names the one read)."""
    degraded = degradation(results)
    vanishing, exploding, numbers = gradients(results)
    per_seed = (degraded.get("numbers", {}).get("plain") or {}).get("per_seed", {})
    rows, seeds = hyp.hypotheses(results, {"degradation_per_seed": {
        int(seed): value for seed, value in per_seed.items()}})
    gaps = statistics_gaps(results)
    return {"degradation": degraded, "vanishing_gradients": vanishing,
            "exploding_at_init": exploding, "gradient_numbers": numbers,
            "hypotheses": rows, "hypothesis_seeds": seeds,
            "errors": {c["name"]: c.get("errors") for c in results["cells"]},
            "bn_statistics_gap": gaps, "criteria": criteria(),
            "answer": answer(degraded, vanishing, exploding, numbers, rows, seeds,
                             _statistics_part(results, gaps))}
