"""Hypothesis ``identity_task``: plain stacks struggle to learn the identity, residual ones do not.

He et al. (2015, §3.1) explain degradation by the solver's "difficulties in approximating
identity mappings by multiple nonlinear layers", which a residual layer removes: it only
has to drive its branch to zero. The study tests that directly
(:mod:`reskeras.study.measures.identity_task`): stacks of k conv-BN-ReLU layers, plain and
residual, are trained to reproduce their own non-negative input, and a residual control
whose branch BN gamma starts at 0 (Goyal et al. 2017) starts at the exact identity.

Inputs. ``results["identity_task"]``: ``{"steps", "rows", ...}``, one row per kind, depth
and seed: ``{"kind", "depth", "seed", "error", "converged", ...}``; ``error`` the relative
reconstruction error ``sum ||f(x) - x||^2 / sum ||x||^2`` after training (a constant
output scores 1 - 1/pi = 0.68), ``converged`` whether it moved by less than
``IDENTITY_CONVERGED`` over the task's last doubling of steps. Extra keys are ignored.

Rule (``IDENTITY_LEARNED``, ``IDENTITY_FACTOR`` of :mod:`reskeras.study.criteria`). A
stack *keeps its input* up to depth k (:func:`kept_depth`) when every stack of its kind
and seed of depth <= k ends with error below ``IDENTITY_LEARNED``. Per seed:

- undecided when the plain and the residual stacks both fail (error at least
  ``IDENTITY_LEARNED``) at the deepest depth: that depth cannot separate them, and
  neither kept depth says how deep the other would have gone;
- otherwise *supported* when the residual stacks keep their input at least
  ``IDENTITY_FACTOR`` times as deep as the plain ones (a plain kept depth of 0 counts
  as 1), *refuted* when not deeper, undecided in between.

Seeds combine as the study's other per-seed rules: *supported* or *refuted* when every
deciding seed agrees. It is *inconclusive*, with a one-line ``why_inconclusive``, when

- (a) the task has no rows (it did not run);
- any seed's input is null: plain or residual rows missing, an error null or not
  finite, or the two kinds measured at different depths;
- (c) a shallowest plain or residual stack did not converge (``converged`` not true:
  the task hit its cap of steps, or recorded no convergence): the task did not have
  enough steps for even the easy case, so no depth is judged at it;
- (d) the deciding seeds disagree;
- no seed decides, (b) because both kinds fail at the deepest depth, or because the
  residual kept depth is deeper but less than ``IDENTITY_FACTOR`` times as deep.

``measured`` also reports the zero-gamma control (kind ``"residual_zero_gamma"``): its
kept depth and its error at the deepest depth. It is not part of the rule; it shows
whether the residual form can hold the identity at the deepest depth when it starts
there.

Example:

>>> def rows(kind, errors, seed=0):
...     return [{"kind": kind, "depth": d, "seed": seed, "error": e, "converged": True}
...             for d, e in zip((1, 2, 4, 8), errors)]
>>> task = {"steps": 600, "rows": rows("plain", (0.01, 0.05, 0.4, 0.68))
...         + rows("residual", (0.01, 0.02, 0.05, 0.15))}
>>> measured, per_seed, verdict = identity_task({"identity_task": task})
>>> verdict, measured["plain_kept_depth"], measured["residual_kept_depth"]
('supported', 2, 8)
>>> task["rows"][-1]["error"] = 0.6  # residual 8 fails too
>>> measured, per_seed, verdict = identity_task({"identity_task": task})
>>> verdict, per_seed["seed 0"]["decided"]
('inconclusive', None)
>>> print(measured["why_inconclusive"])  # doctest: +NORMALIZE_WHITESPACE
no seed decides: seed 0: both kinds fail at the deepest depth 8 (plain 0.68,
residual 0.6, both at least 0.2)
"""

from __future__ import annotations

import math
import numbers

from reskeras.study.criteria import IDENTITY_FACTOR, IDENTITY_LEARNED

HYPOTHESIS = "identity_task"
RULED = ("plain", "residual")  # the kinds the rule compares
CONTROL = "residual_zero_gamma"

# (claim, source, test, prediction), as hypotheses.TEXT holds them
TEXT_ROW = (
    "Stacked conv-BN-ReLU layers struggle to represent the identity; residual layers "
    "reach it by zeroing their branch.",
    "He et al. 2015 §3.1; Goyal et al. 2017 (zero-gamma control)",
    "stacks of k conv-BN-ReLU layers trained to reproduce their own non-negative input, "
    "plain vs residual (and a residual control whose branch BN gamma starts at 0), at a "
    "budget where the shallowest stacks converged",
    f"residual stacks keep their input (error below {IDENTITY_LEARNED:g}) at least "
    f"{IDENTITY_FACTOR:g}x as deep as plain stacks")


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


def _usable(error) -> bool:
    return isinstance(error, numbers.Real) and not isinstance(error, bool) \
        and math.isfinite(error)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _seed_decision(plain: dict, residual: dict, deep: int) -> tuple[bool | None, str | None]:
    """``(decided, why_undecided)`` of one seed from its ``{depth: error}`` tables."""
    if plain[deep] >= IDENTITY_LEARNED and residual[deep] >= IDENTITY_LEARNED:
        return None, (f"both kinds fail at the deepest depth {deep} (plain {plain[deep]:.3g}, "
                      f"residual {residual[deep]:.3g}, both at least {IDENTITY_LEARNED:g})")
    kept_plain, kept_residual = kept_depth(plain), kept_depth(residual)
    if kept_plain < kept_residual < IDENTITY_FACTOR * max(kept_plain, 1):
        return None, (f"residual stacks keep their input deeper ({kept_residual}) than plain "
                      f"ones ({kept_plain}) but less than {IDENTITY_FACTOR:g}x as deep")
    return kept_residual > kept_plain, None


def identity_task(results: dict) -> tuple[dict, dict, str]:
    """``(measured, per_seed, verdict)`` of ``identity_task`` (the rule: module docstring).

    Args:
        results: the study's results; reads ``results["identity_task"]`` (``None`` or
            missing when the task did not run).

    Returns:
        ``measured``: ``{"plain_kept_depth", "residual_kept_depth"`` (the least over
        seeds), ``"deepest_depth", "plain_at_deepest", "residual_at_deepest"`` (means
        over seeds), ``"zero_gamma_kept_depth", "zero_gamma_at_deepest"`` (the control,
        the same way; ``None`` without its rows), ``"steps"`` (the task's final budget),
        ``"shallowest_converged"`` (``{kind: True | False | None}``: every seed's
        shallowest stack converged, one did not, or a record is missing),
        ``"why_inconclusive"`` (``None`` when decided)``}``, ``{}`` without rows;
        ``per_seed``: ``{"seed 0": {"plain_kept_depth", "residual_kept_depth",
        "zero_gamma_kept_depth", "decided", "why_undecided"}}``; ``verdict``:
        ``"supported"``, ``"refuted"`` or ``"inconclusive"``.

    Example:

    >>> identity_task({"identity_task": None})
    ({'why_inconclusive': 'no identity-task rows: the task did not run'}, {}, 'inconclusive')
    """
    task = results.get("identity_task") or {}
    rows = task.get("rows") or []
    if not rows:
        return {"why_inconclusive": "no identity-task rows: the task did not run"}, {}, \
            "inconclusive"
    table: dict = {}
    for row in rows:
        table.setdefault((row["kind"], row["seed"]), {})[row["depth"]] = row
    seeds = sorted({row["seed"] for row in rows})
    ruled_depths = {row["depth"] for row in rows if row["kind"] in RULED}
    deep, shallow = (max(ruled_depths), min(ruled_depths)) if ruled_depths else (None, None)
    errors = {key: {d: row.get("error") for d, row in by_depth.items()}
              for key, by_depth in table.items()}

    problems, unconverged, per_seed, decided, undecided = [], [], {}, {}, []
    for seed in seeds:
        found = {kind: errors.get((kind, seed)) for kind in RULED}
        missing = [kind for kind, errs in found.items() if not errs]
        if missing:
            problems.append(f"seed {seed} has no {' or '.join(missing)} rows")
            continue
        if set(found["plain"]) != set(found["residual"]) or not {deep, shallow} <= set(
                found["plain"]):
            problems.append(f"seed {seed} measured plain at depths {sorted(found['plain'])}, "
                            f"residual at {sorted(found['residual'])} (the task's depths: "
                            f"{sorted(ruled_depths)})")
            continue
        nulls = [f"{kind} {d}" for kind in RULED for d, e in sorted(found[kind].items())
                 if not _usable(e)]
        if nulls:
            problems.append(f"seed {seed} has null or non-finite errors ({', '.join(nulls)})")
            continue
        flags = {kind: table[kind, seed][shallow].get("converged") for kind in RULED}
        unconverged += [f"{kind} (seed {seed}{'' if flag is False else ', no record'})"
                        for kind, flag in flags.items() if flag is not True]
        control = errors.get((CONTROL, seed))
        ok, why = _seed_decision(found["plain"], found["residual"], deep)
        per_seed[f"seed {seed}"] = {
            "plain_kept_depth": kept_depth(found["plain"]),
            "residual_kept_depth": kept_depth(found["residual"]),
            "zero_gamma_kept_depth": kept_depth(control) if control and all(
                _usable(e) for e in control.values()) else None,
            "decided": ok, "why_undecided": why}
        if ok is None:
            undecided.append(f"seed {seed}: {why}")
        else:
            decided[seed] = ok

    def at_deepest(kind):
        return _mean(errs.get(deep) for (k, _), errs in errors.items()
                     if k == kind and _usable(errs.get(deep)))

    def least(key):
        values = [s[key] for s in per_seed.values() if s[key] is not None]
        return min(values) if values else None

    def converged(kind):
        flags = [table.get((kind, seed), {}).get(shallow, {}).get("converged")
                 for seed in seeds]
        return None if any(f is None for f in flags) else all(flags)

    steps = task.get("steps")
    known = set(decided.values())
    if problems:
        why = f"null or unusable inputs: {'; '.join(problems)}"
    elif unconverged:
        why = (f"the shallowest (depth {shallow}) stacks did not converge within "
               f"{steps} steps: {', '.join(unconverged)}; the task needs more steps")
    elif len(known) > 1:
        why = "seeds disagree: " + ", ".join(
            f"seed {seed} {'supports' if ok else 'refutes'}" for seed, ok in decided.items())
    elif not known:
        why = f"no seed decides: {'; '.join(undecided)}"
    else:
        why = None
    verdict = "inconclusive" if why else {True: "supported", False: "refuted"}[known.pop()]
    measured = {"plain_kept_depth": least("plain_kept_depth"),
                "residual_kept_depth": least("residual_kept_depth"),
                "deepest_depth": deep, "plain_at_deepest": at_deepest("plain"),
                "residual_at_deepest": at_deepest("residual"),
                "zero_gamma_kept_depth": least("zero_gamma_kept_depth"),
                "zero_gamma_at_deepest": at_deepest(CONTROL), "steps": steps,
                "shallowest_converged": {kind: converged(kind) for kind in RULED + (CONTROL,)},
                "why_inconclusive": why}
    return measured, per_seed, verdict


__all__ = ["CONTROL", "HYPOTHESIS", "RULED", "TEXT_ROW", "identity_task", "kept_depth"]
