"""The study's verdict, computed from the measurements with explicit criteria.

Every training error read here is ``final_train_error``: the error with the BatchNorm
statistics that ``criteria.TRAIN_ERROR`` names (precise statistics, recomputed with the
final weights; see :mod:`reskeras.study.measures.training_error`).

- **degradation** (per family: plain/residual, with and without BN): per seed, the
  deepest net's final training error minus the shallowest's (same seed, or the shallow
  seeds' mean) in points, each at its final budget; degraded when the 95% interval over
  seeds (:mod:`reskeras.study.judgment.intervals`) is wholly above
  ``DEGRADATION_POINTS``. A diverged deepest net counts as error 1.0; a shallowest net
  that hit the cap without converging leaves the flag inconclusive;
- **vanishing gradients** (per family): the interval of log10 of the deepest net's
  first/last conv ratio of *relative* gradient norms ``||g|| / ||w||`` (median over
  logged steps) wholly below log10(``VANISHING_RATIO``); the raw-norm ratio, whose
  neutral value is not 1 (a layer's norm grows with its number of weights), is reported
  beside;
- **exploding at initialization**: the interval of log10 of that relative ratio at step 0
  wholly above log10(``EXPLODING_RATIO``);
- **failed to start** (per cell): its full-pass training loss at the final budget within
  ``FAILED_TO_START`` of ln(classes);
- **convergence** (per cell): the budget it stopped at, whether it converged, and its
  full-pass training error at every budget read;
- **BN statistics gap** (per cell): EMA minus precise training error in points; the
  answer says so when it exceeds ``DEGRADATION_POINTS`` for a cell a flag reads.

A flag is ``True``/``False`` only when its interval lies wholly on one side of the
threshold, else ``"inconclusive"`` (with ``why_inconclusive``); one seed gives no
interval. Only the unmodified twins (``variant == "he"``) count; the interventions are
judged as ``hypotheses`` (``reskeras.study.judgment.hypotheses``).

The answer paragraph is assembled from these flags, the hypotheses and their
numbers; nothing in it is written in advance of the data.
"""

from __future__ import annotations

import numpy as np

from reskeras.study.cells import VARIANTS, is_twin
from reskeras.study.criteria import (CONFIDENCE, DEGRADATION_POINTS, EXPLODING_RATIO,
                                     FAILED_TO_START, IDENTITY_LEARNED, TRAIN_ERROR,
                                     VANISHING_RATIO, criteria)
from reskeras.study.judgment import hypotheses as hyp
from reskeras.study.judgment.intervals import decide, interval, log10
from reskeras.study.judgment.depth_trend import depth_trends
from reskeras.study.judgment.symptoms import symptoms

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


def _error_or_diverged(cell: dict) -> float | None:
    """A cell's final training error; a diverged cell counts as 1.0 (it trained to nothing)."""
    if cell["status"] == "diverged":
        return 1.0
    return cell.get("final_train_error")


def _unconverged(cells: list[dict]) -> list[str]:
    """The cells that hit the cap without converging (cells without a budget curve, as in
    studies before convergence was measured, are taken as they are)."""
    return [c["name"] for c in cells
            if c["status"] == "finished" and (c.get("convergence") or {}).get("converged") is False]


def degradation(results: dict) -> dict:
    """Per family: the deepest net's training error minus the shallowest's, per seed (the
    shallow net of the same seed, or the shallow seeds' mean), in points; the flag is
    read from the interval over seeds against ``DEGRADATION_POINTS``. A shallow
    reference that hit the cap without converging leaves the flag inconclusive."""
    verdict, numbers = {}, {}
    for family, (residual, bn) in FAMILIES.items():
        by_depth = _cells(results, residual, bn)
        if len(by_depth) < 2:
            continue
        shallow, deep = min(by_depth), max(by_depth)
        low, high = _mean_error(by_depth[shallow]), _mean_error(by_depth[deep])
        deep_diverged = any(c["status"] == "diverged" for c in by_depth[deep])
        shallow_by_seed = {c["seed"]: _error_or_diverged(c) for c in by_depth[shallow]}
        shallow_mean = _mean([v for v in shallow_by_seed.values() if v is not None])
        gaps = {}
        for c in by_depth[deep]:
            reference = shallow_by_seed.get(c["seed"], shallow_mean)
            error = _error_or_diverged(c)
            gaps[c["seed"]] = None if reference is None or error is None \
                else (error - reference) * 100
        per_seed = {seed: None if gap is None else round(gap, 9) > DEGRADATION_POINTS
                    for seed, gap in gaps.items()}
        bounds = interval(gaps.values())
        why = None
        stuck = _unconverged(by_depth[shallow])
        if stuck:
            flag, why = "inconclusive", (f"the shallow reference hit the cap without "
                                         f"converging ({', '.join(stuck)})")
        elif bounds is None:
            flag = "inconclusive"
            why = "fewer than two seeds with both nets measured: no interval"
        else:
            flag = decide(bounds, DEGRADATION_POINTS)
            if flag == "inconclusive":
                why = (f"the interval straddles {DEGRADATION_POINTS:g} points")
        verdict[family] = flag
        numbers[family] = {"shallow_depth": shallow, "deep_depth": deep,
                           "shallow_train_error": low, "deep_train_error": high,
                           "deep_diverged": deep_diverged,
                           "points": None if low is None or high is None else (high - low) * 100,
                           "gap_points": {str(k): v for k, v in gaps.items()},
                           "interval": bounds["interval"] if bounds else None,
                           "interval_method": bounds["method"] if bounds else None,
                           "deep_unconverged": _unconverged(by_depth[deep]),
                           "deep_curves": {c["name"]: (c.get("convergence") or {})
                                           .get("train_errors") for c in by_depth[deep]},
                           "deep_train_errors": {str(c["seed"]): c["final_train_error"]
                                                 for c in by_depth[deep]},
                           "per_seed": {str(k): v for k, v in per_seed.items()},
                           "why_inconclusive": why}
    return {**verdict, "numbers": numbers}


def _mean(values) -> float | None:
    return float(np.mean(values)) if values else None


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
        medians = [c["gradient"]["first_last_ratio_median"] for c in cells]
        # the flags read ||g||/||w|| per layer (the raw norms grow with a layer's size)
        relative = [c["gradient"].get("relative_first_last_ratio_median") for c in cells]
        relative_init = [c["gradient"].get("relative_first_last_ratio_init") for c in cells]
        vanishing_by_seed = {str(c["seed"]): None if log10(r) is None else r < VANISHING_RATIO
                             for c, r in zip(cells, relative)}
        exploding_by_seed = {str(c["seed"]): None if log10(r) is None else r > EXPLODING_RATIO
                             for c, r in zip(cells, relative_init)}
        # read in log10 over seeds: vanishing when the whole interval is below the threshold
        during, at_init = _log10_interval(medians), _log10_interval(init)
        relative_during = _log10_interval(relative)
        relative_at_init = _log10_interval(relative_init)
        vanishing[key] = _from_interval(relative_during, relative, log10(VANISHING_RATIO),
                                        above=False)
        exploding[key] = _from_interval(relative_at_init, relative_init,
                                        log10(EXPLODING_RATIO), above=True)
        numbers[key] = {"depth": cells[0]["depth"], "states": states,
                        "first_last_ratio_init": _median(init),
                        "first_last_ratio_median": _median(medians),
                        "log10_ratio_interval": _bounds(during),
                        "log10_ratio_init_interval": _bounds(at_init),
                        "relative_first_last_ratio_init": _median(relative_init),
                        "relative_first_last_ratio_median": _median(relative),
                        "log10_relative_ratio_interval": _bounds(relative_during),
                        "log10_relative_ratio_init_interval": _bounds(relative_at_init),
                        "per_seed": {"vanishing": vanishing_by_seed,
                                     "exploding_at_init": exploding_by_seed}}
    return vanishing, exploding, numbers


def _log10_interval(ratios) -> dict | None:
    """The interval over seeds of log10 of positive ratios (``None`` ones left out)."""
    return interval([log10(r) for r in ratios])


def _bounds(found: dict | None) -> list | None:
    return found["interval"] if found else None


def _from_interval(bounds, values, threshold: float, *, above: bool):
    """The decision of an interval; ``None`` when no value is finite (nothing measured),
    ``"inconclusive"`` for a single seed."""
    if all(log10(v) is None for v in values):
        return None
    found = decide(bounds, threshold, above=above)
    return "inconclusive" if found is None else found


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


def _interval_words(numbers: dict) -> str:
    """``+84.1 points, 95% t-interval [80.2, 88.0] over 3 seeds`` (or one seed's gap)."""
    gaps = [v for v in numbers["gap_points"].values() if v is not None]
    if numbers["interval"] is None:
        return (f"{gaps[0]:+.1f} points in one seed, no interval" if len(gaps) == 1
                else "no seed measured")
    lo, hi = numbers["interval"]
    return (f"{np.mean(gaps):+.1f} points, {CONFIDENCE:.0%} {numbers['interval_method']}-"
            f"interval [{lo:+.1f}, {hi:+.1f}] over {len(gaps)} seeds")


def _degradation_words(flag, numbers: dict) -> str:
    """``degradation (+84.1 points, 95% t-interval [...] over 3 seeds)``, ``no
    degradation (...)`` or ``inconclusive (why; ...)``."""
    if flag is True:
        return f"degradation ({_interval_words(numbers)})"
    if flag is False:
        return f"no degradation ({_interval_words(numbers)})"
    # every inconclusive degradation flag says why (degradation() sets it)
    return f"inconclusive ({numbers['why_inconclusive']}; {_interval_words(numbers)})"


def _steps(value: int) -> str:
    return f"{value:,}"


def _curve_words(numbers: dict, cells: dict, subject: str = "It") -> str:
    """What the deep net's budget curves say: where its seeds converged, which hit the cap
    (with their last errors, the mean over those seeds at each budget), which diverged, and
    how many failed to start."""
    curves = {name: curve for name, curve in numbers["deep_curves"].items()
              if curve and name in cells}
    if not curves:
        return ""
    n = len(curves)
    of = (lambda k: f" in {k} of {n} seeds") if n > 1 else (lambda k: "")
    diverged = [name for name in curves if cells[name]["status"] == "diverged"]
    capped = [name for name in numbers["deep_unconverged"] if name in curves]
    converged = [name for name in curves if name not in diverged and name not in capped]
    parts = []
    if converged:
        reached = sorted({cells[name]["convergence"]["steps"] for name in converged})
        where = _steps(reached[0]) if len(reached) == 1 else \
            f"{_steps(reached[0])}-{_steps(reached[-1])}"
        parts.append(f"converged{of(len(converged))} ({where} steps)")
    if capped:
        cap = cells[capped[0]]["convergence"].get("cap")
        budgets = sorted({int(k) for name in capped for k in curves[name]})[-3:]
        means = [np.mean([curves[name][str(b)] for name in capped if str(b) in curves[name]])
                 for b in budgets]
        parts.append(f"hit the {_steps(cap) + '-step ' if cap else ''}cap without "
                     f"converging{of(len(capped))} (training error at "
                     + ", ".join(_steps(b) for b in budgets) + " steps: "
                     + ", ".join(_pct(m) for m in means) + ")")
    if diverged:
        parts.append(f"diverged{of(len(diverged))}")
    words = f" {subject} " + "; it ".join(parts)
    failed = [name for name in curves if cells[name]["convergence"].get("failed_to_start")]
    if failed:
        words += (f"; its training loss stayed within {FAILED_TO_START:.0%} of ln(classes), "
                  f"so it failed to start{of(len(failed))}")
    return words + "."


# "inconclusive": the interval over seeds straddles the threshold, or one seed gave none
_STATE_WORDS = {True: "vanished", False: "did not vanish",
                "inconclusive": "neither clearly vanished nor clearly did not"}


def _vanishing_part(degraded: dict, vanishing: dict, exploding: dict,
                    grad_numbers: dict, cells: dict | None = None) -> list[str]:
    parts, cells = [], cells or {}
    for bn, label in ((True, "With BatchNorm"), (False, "Without BatchNorm")):
        plain, residual = ("plain", "residual") if bn else ("plain_no_bn", "residual_no_bn")
        g_plain = "plain_bn" if bn else "plain_no_bn"
        g_res = "residual_bn" if bn else "residual_no_bn"
        if plain not in degraded["numbers"]:
            continue
        n = degraded["numbers"][plain]
        d = degraded.get(plain)
        depth_words = f"the {n['deep_depth']}-layer plain net"
        seeds = len(n["gap_points"])
        if n["deep_diverged"]:
            result = f"{depth_words} diverged"
        else:
            result = (f"{depth_words} ended at {_pct(n['deep_train_error'])} training error "
                      f"against {_pct(n['shallow_train_error'])} for the "
                      f"{n['shallow_depth']}-layer one"
                      + (f" (means of {seeds} seeds)" if seeds > 1 else ""))
        sentence = f"{label}, {result}: {_degradation_words(d, n)}." + _curve_words(n, cells)
        g = grad_numbers.get(g_plain)
        if g and vanishing.get(g_plain) is None:
            sentence += " Its gradient flow could not be classified (no finite ratios)."
        elif g:
            sentence += (f" Its gradients {_STATE_WORDS[vanishing[g_plain]]} (first/last conv "
                         f"ratio of relative gradient norms ||g||/||w|| "
                         f"{_ratio(g['relative_first_last_ratio_median'])}, median over "
                         f"training; vanishing means below {VANISHING_RATIO:g}; raw norms "
                         f"{_ratio(g['first_last_ratio_median'])})")
            if exploding.get(g_plain) is True:
                sentence += (f", and at initialization they grew "
                             f"{_ratio(g['relative_first_last_ratio_init'])} towards the input "
                             "(exploding)")
            sentence += "."
        if residual in degraded:
            r = degraded["numbers"][residual]
            deep = "diverged" if r["deep_diverged"] else _pct(r["deep_train_error"])
            words = {True: "also degraded", False: "did not degrade"}.get(
                degraded[residual], "were inconclusive")
            sentence += (f" The residual twins {words} ("
                         f"{_pct(r['shallow_train_error'])} at depth {r['shallow_depth']}, "
                         f"{deep} at depth {r['deep_depth']}; {_interval_words(r)}"
                         # an inconclusive flag always says why (degradation() sets it)
                         + (f"; {r['why_inconclusive']}" if degraded[residual] == "inconclusive"
                            else "") + ")"
                         + (", with vanishing gradients." if vanishing.get(g_res) is True else ".")
                         + _curve_words(r, cells, subject="The deep residual net"))
        parts.append(sentence)
    if not parts:
        return ["The grid has fewer than two finished depths per family, so degradation (deep "
                "against shallow at the same budget) cannot be measured; the gradient-flow "
                "numbers of each cell are in the report."]
    bn_plain_degraded = degraded.get("plain")
    bn_plain_vanishing = vanishing.get("plain_bn")
    if bn_plain_degraded is True and bn_plain_vanishing is False \
            and degraded.get("residual") is False:
        parts.append("So in these runs, with BatchNorm, residual connections removed a "
                     "degradation that vanishing gradients do not explain, as He et al. (2015, "
                     "§4.1) argue.")
    elif bn_plain_degraded is True and bn_plain_vanishing is True:
        parts.append("So in these runs, with BatchNorm, the degraded plain net also had "
                     "vanishing gradients: the measurement does not separate the two "
                     "explanations.")
    elif bn_plain_degraded is False:
        parts.append("So at these depths and this budget the plain nets did not degrade; "
                     "a deeper grid or longer training is needed to test the claim.")
    elif bn_plain_degraded == "inconclusive" or bn_plain_vanishing == "inconclusive":
        why = degraded["numbers"]["plain"]["why_inconclusive"] \
            if bn_plain_degraded == "inconclusive" else "the seeds' gradient ratios straddle " \
            f"{VANISHING_RATIO:g}"
        parts.append(f"So these runs do not settle the question ({why}).")
    if degraded.get("plain_no_bn") is True and vanishing.get("plain_no_bn") in (True, False):
        parts.append("Without BatchNorm, the degraded plain net's gradients "
                     + ("vanished: there, vanishing gradients remain an explanation."
                        if vanishing["plain_no_bn"] else
                        "did not vanish either: vanishing gradients do not explain that "
                        "degradation."))
    return parts


def _start(per_seed: dict) -> str:
    """How far the identity-initialized net started from the identity, when that was measured."""
    found = [v["start_distance"] for v in per_seed.values() if "start_distance" in v]
    if not found:
        return ""
    if any(v is None for v in found):
        return "; some blocks started with all-zero inputs"
    return f"; it started at median block distance {np.median(found):.2f} from the identity"


_START_WORDS = {"diracperm": "the identity with permuted channels",
                "deltaorth": "delta-orthogonal", "tat": "TAT's shaped net without BN"}


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
            "with BN"
            + ("" if (branch.get("fixup") or {}).get("error") is None else
               f"; Fixup gave {_pct(branch['fixup']['error'])}"))))
    starts = (m.get("near_identity") or {}).get("starts") or {}
    controls = [(v, starts[v]) for v in ("diracperm", "deltaorth", "tat")
                if (starts.get(v) or {}).get("error") is not None]
    if controls:
        easier.append(said("conditioning", (
            "Started isometric but far from the identity, it gave "
            + " and ".join(f"{_pct(part['error'])} ({_START_WORDS[v]}"
                           + (f", median block distance {np.median(part['start_distance']):.2f}"
                              if part.get("start_distance") else "") + ")"
                           for v, part in controls)))[:-2]
            + f"; near identity: {by_id['near_identity']['verdict']}).")
    rate = m.get("learning_rate", {})
    rates = rate.get("rates") or {}
    if rates:
        gap.append(said("learning_rate", (
            "at " + ", ".join(f"{part['factor']:g}x" for part in rates.values())
            + " the recipe's learning rate the plain net ended at "
            + ", ".join(_pct(part["error"]) for part in rates.values())
            + f" (from {_pct(rate['plain'])})")))
    shaped = {recipe: part for recipe, part in
              ((m.get("kernel_shaping") or {}).get("recipes") or {}).items()
              if part.get("plain_tat") is not None}
    if shaped:
        gap.append(said("kernel_shaping", (
            "with its kernel shaped by TAT (no shortcut, no BN, at the rate its own sweep "
            "picked) the plain net ended at "
            + "; ".join(f"{_pct(part['plain_tat'])} under {recipe} (rate "
                        f"{part['picked_rate']:.3g}), against {_pct(part['residual_bn'])} for "
                        f"the BN residual twin and {_pct(part['plain_bn'])} for the BN plain net"
                        for recipe, part in shaped.items()))))
    land = m.get("landscape", {})
    if land.get("plain_invariant_sharpness_final") is not None:
        gap.append(said("landscape", (
            f"after training its scale-invariant top Hessian eigenvalue was "
            f"{land['plain_invariant_sharpness_final']:.3g} against "
            f"{_num(land.get('residual_invariant_sharpness_final'))} for the residual twin "
            f"(raw {_num(land.get('plain_sharpness_final'))} against "
            f"{_num(land.get('residual_sharpness_final'))})")))
    responses = m.get("small_responses", {})
    if responses.get("plain_median_std") is not None:
        easier.append(said("small_responses", (
            f"After training, the median response std of the plain net's layers was "
            f"{responses['plain_median_std']:.3g}, of the residual branches "
            f"{_num(responses.get('residual_median_std'))}")))
    shatter = m.get("shattering", {})
    if shatter.get("plain_init") is not None:
        gap.append(said("shattering", (
            f"at initialization its input gradients' neighbour correlation was "
            f"{shatter['plain_init']:.2f} against {_num(shatter.get('residual_init'))}")))
    ensemble = m.get("ensemble", {})
    if ensemble.get("residual_median_damage") is not None:
        plain_damage = ensemble.get("plain_median_damage")
        trained = ensemble.get("plain_identity_median_damage")
        gap.append(said("ensemble", (
            f"deleting one block took the residual net a median "
            f"{_pct(ensemble['residual_median_damage'])} of the way to chance, "
            + ("the plain twin, already near chance, nothing measurable" if plain_damage is None
               else f"the plain twin {_pct(plain_damage)}")
            + ("" if trained is None else
               f", the identity-initialized plain net that trained {_pct(trained)}"))))
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
           statistics: list[str] | None = None, cells: dict | None = None) -> str:
    """One paragraph in plain words, from the flags, the hypotheses and their numbers:
    do the gradients vanish, why is a residual mapping easier, why no closing the gap
    (``statistics``: the sentence on BatchNorm statistics, when it has one)."""
    return " ".join(_vanishing_part(degraded, vanishing, exploding, grad_numbers, cells)
                    + (statistics or []) + _why_part(rows or [], seeds))


def verdict(results: dict) -> dict:
    """``{"degradation", "vanishing_gradients", "depth_trends", "exploding_at_init",
    "gradient_numbers", "hypotheses", "hypothesis_seeds", "symptoms", "errors", "bn_statistics_gap", "criteria", "answer"}``
    from a study's results; ``errors`` are every cell's training and test errors with
    each kind of BatchNorm statistics (``criteria["train_error"]`` names the one read)."""
    degraded = degradation(results)
    vanishing, exploding, numbers = gradients(results)
    rows, seeds = hyp.hypotheses(results, {"degraded": degraded, "vanishing": vanishing,
                                           "gradient_numbers": numbers})
    gaps = statistics_gaps(results)
    trends = depth_trends(results, degradation)
    return {"degradation": degraded, "vanishing_gradients": vanishing, "depth_trends": trends,
            "exploding_at_init": exploding, "gradient_numbers": numbers,
            "hypotheses": rows, "hypothesis_seeds": seeds, "symptoms": symptoms(results),
            "errors": {c["name"]: c.get("errors") for c in results["cells"]},
            "bn_statistics_gap": gaps, "criteria": {**criteria(), **budget_criteria(results)},
            "convergence": convergence(results), "failed_to_start": failed(results),
            "answer": answer(degraded, vanishing, exploding, numbers, rows, seeds,
                             _statistics_part(results, gaps) + _trend_part(trends),
                             {c["name"]: c for c in results["cells"]})}


def _trend_part(trends: dict) -> list[str]:
    """One sentence on the inits run at every depth: does each remove the depth trend?"""
    said = []
    for variant, entry in trends.items():
        for family, words in (("bn", "with BN"), ("no_bn", "without BN")):
            part = entry.get(family)
            if not part or part["removes_trend"] is None:
                continue
            said.append(f"from the {VARIANTS[variant][0]} the plain nets {words} "
                        + ("no longer degraded" if part["removes_trend"] else "still degraded")
                        + f" from depth {part['shallow_depth']} to {part['deep_depth']} "
                        f"({part['points']:+.1f} points)")
    return ["Across depths, " + "; ".join(said) + "."] if said else []


def budget_criteria(results: dict) -> dict:
    """The study's budgets: ``base_steps`` and ``cap_steps`` (base x 2 ** doublings)."""
    base, doublings = results.get("base_steps"), results.get("max_doublings")
    return {"base_steps": base,
            "cap_steps": None if base is None or doublings is None else base * 2 ** doublings}


def convergence(results: dict) -> dict:
    """``{cell: {"steps", "converged", "train_errors": {"88": e, ...}}}`` of every cell
    trained at doubling budgets (the budget it stopped at, whether by the rule)."""
    return {c["name"]: {"steps": c["convergence"]["steps"],
                        "converged": c["convergence"]["converged"],
                        "train_errors": c["convergence"]["train_errors"]}
            for c in results["cells"] if c.get("convergence")}


def failed(results: dict) -> dict:
    """``{cell: bool | None}``: full-pass training loss at the final budget still within
    ``FAILED_TO_START`` of ln(classes) (``None``: not measured, e.g. diverged)."""
    return {c["name"]: c["convergence"].get("failed_to_start")
            for c in results["cells"] if c.get("convergence")}
