"""Rival explanations of why the identity init trains the deep plain net, and the rate sweep.

At initialization the deep plain BN net is chaotic (gradients grow towards the input,
a sharp Hessian, shattered input gradients), and the identity (Dirac) init that makes
it train is also *isometric*: it preserves norms. So "it starts near the identity"
and "it starts well-conditioned" (dynamical isometry, Xiao et al. 2018) make the same
prediction for that init. Two isometric starts far from the identity separate them:
the permuted identity (each conv's output channels permuted by one cycle) and the
delta-orthogonal init. Each is a gap test
(:mod:`reskeras.study.judgment.interventions`) on the deepest plain BN net against its
residual twin; the no-BN plain net gets the same tests, reported beside (``no_bn``).

- ``conditioning`` ("a start with dynamical isometry is enough"): **supported** when both
  isometric controls close at least ``GAP_CLOSED`` of the gap (interval wholly above),
  **refuted** when neither does (both intervals wholly below), else inconclusive.
- ``near_identity`` ("the start must be near the identity"): **supported** when the
  identity init, started near the identity, closes the gap and both controls, started
  far from it (median block distance at least ``IDENTITY_PREMISE``), do not;
  **refuted** when a control started far from the identity closes it (nearness was not
  needed); else inconclusive (for example when nothing closes the gap).
- ``learning_rate`` ("the plain net needs a smaller step"): one gap test per rate of the
  sweep (``LR_SWEEP``) that ran; **supported** when some rate closes the gap,
  **refuted** only when every rate of a sweep of at least ``LR_SWEEP_RATES`` rates
  spanning at least ``LR_SWEEP_SPAN`` x fails to, else inconclusive. Several rates mean
  several chances: a rate that closes the gap is a lead, the report names it.

Example:

>>> measured, per_seed, verdict = conditioning({"cells": []})
>>> verdict, measured["why_inconclusive"], per_seed
('inconclusive', 'not run', {})
"""

from __future__ import annotations

from reskeras.study.cells import LR_SWEEP, VARIANTS, lr_factor
from reskeras.study.criteria import GAP_CLOSED, LR_SWEEP_RATES, LR_SWEEP_SPAN
from reskeras.study.judgment.interventions import intervention, start_distance, verdict_word

# well-conditioned starts far from the identity: two isometric inits that keep BN, and TAT's
# shaped plain net without BN (issue 30: BN alone makes a deep plain net's gradients explode
# at initialization, so the BN controls alone could refute conditioning unfairly)
CONTROLS = ("diracperm", "deltaorth", "tat")
_PLAIN_BN, _RESIDUAL_BN = (False, True), (True, True)
_PLAIN_NO_BN, _RESIDUAL_NO_BN = (False, False), (True, False)
TREATED_NET = {"tat": _PLAIN_NO_BN}  # TAT's cells are plain nets without BN


def _control(results: dict, variant: str, failing=_PLAIN_BN, reference=_RESIDUAL_BN,
             premise: str | None = None):
    treated = TREATED_NET.get(variant, failing)
    measured, per_seed, _, test = intervention(
        results, failing, variant, reference, ("plain", variant, "residual"), premise=premise,
        treated_net=treated)
    distance = start_distance(results, *treated, variant)
    return {"error": measured[variant], "decision": test.decision,
            "start_distance": sorted(distance.values()) or None,
            "closed_interval": measured["closed_interval"],
            "why_inconclusive": measured["why_inconclusive"]}, per_seed, measured


def _why(parts: dict) -> str:
    reasons = {part["why_inconclusive"] for part in parts.values()}
    if len(reasons) == 1 and None not in reasons and parts:
        return reasons.pop()  # one reason for all (an untrained reference, say)
    return "; ".join(f"{VARIANTS[v][0]}: " + (part["why_inconclusive"] or
                                               ("closes the gap" if part["decision"] is True
                                                else "does not close the gap"))
                     for v, part in parts.items())


def conditioning(results: dict) -> tuple[dict, dict, str]:
    """``(measured, per_seed, verdict)`` of ``conditioning`` (see the module docstring)."""
    parts, per_seed, measured = {}, {}, {}
    for variant in CONTROLS:
        parts[variant], seeds, found = _control(results, variant)
        per_seed.update({variant: seeds} if seeds else {})
        measured.setdefault("plain", found["plain"])
        measured.setdefault("residual", found["residual"])
    decisions = [part["decision"] for part in parts.values()]
    decision = True if all(d is True for d in decisions) else \
        False if all(d is False for d in decisions) else "inconclusive"
    no_bn = {variant: _control(results, variant, _PLAIN_NO_BN, _RESIDUAL_NO_BN)[0]
             for variant in CONTROLS}
    measured.update({"controls": parts, "no_bn": no_bn,
                     "why_inconclusive": None if decision != "inconclusive" else _why(parts)})
    return measured, per_seed, verdict_word(decision)


def near_identity(results: dict) -> tuple[dict, dict, str]:
    """``(measured, per_seed, verdict)`` of ``near_identity`` (see the module docstring)."""
    parts, per_seed = {}, {}
    parts["dirac"], seeds, found = _control(results, "dirac", premise="near")
    per_seed.update({"dirac": seeds} if seeds else {})
    for variant in CONTROLS:
        parts[variant], seeds, _ = _control(results, variant, premise="far")
        per_seed.update({variant: seeds} if seeds else {})
    near = parts["dirac"]["decision"]
    far = [parts[v]["decision"] for v in CONTROLS]
    if any(d is True for d in far):
        decision, why = False, None
    elif near is True and all(d is False for d in far):
        decision, why = True, None
    else:
        decision = "inconclusive"
        why = ("neither the identity init nor a far isometric start closes the gap"
               if near is False and all(d is False for d in far) else _why(parts))
    measured = {"plain": found["plain"], "residual": found["residual"], "starts": parts,
                "why_inconclusive": why}
    return measured, per_seed, verdict_word(decision)


def learning_rate(results: dict, factors: dict[str, float] | None = None
                  ) -> tuple[dict, dict, str]:
    """``(measured, per_seed, verdict)`` of ``learning_rate`` (see the module docstring).

    ``factors``: the sweep's variants and the factor each scales the rate by (default: the
    study's ``LR_SWEEP``)."""
    factors = factors or {variant: lr_factor(variant) for variant in LR_SWEEP}
    rates, per_seed, measured = {}, {}, {}
    for variant, factor in factors.items():
        found, seeds, _, test = intervention(results, _PLAIN_BN, variant, _RESIDUAL_BN,
                                             ("plain", variant, "residual"))
        if test.decision is None:  # not run
            continue
        measured.setdefault("plain", found["plain"])
        measured.setdefault("residual", found["residual"])
        rates[variant] = {"factor": factor, "error": found[variant],
                          "decision": test.decision,
                          "closed_interval": found["closed_interval"],
                          "why_inconclusive": found["why_inconclusive"]}
        per_seed[variant] = seeds
    ran = [rate["factor"] for rate in rates.values()]
    span = max(ran) / min(ran) if ran else None
    decisions = [rate["decision"] for rate in rates.values()]
    why = None
    if any(d is True for d in decisions):
        decision = True
    elif not rates:
        decision, why = "inconclusive", "no learning-rate variant ran"
    elif all(d is False for d in decisions) and len(rates) >= LR_SWEEP_RATES \
            and span >= LR_SWEEP_SPAN:
        decision = False
    else:
        decision = "inconclusive"
        why = (f"no rate closes {GAP_CLOSED:.0%} of the gap, but the sweep has {len(rates)} "
               f"rate(s) spanning {span:g}x; refuting needs at least {LR_SWEEP_RATES} spanning "
               f"{LR_SWEEP_SPAN:g}x (the full preset runs them)"
               if all(d is False for d in decisions) else _why(rates))
    measured.update({"rates": rates, "span": span, "why_inconclusive": why})
    return measured, per_seed, verdict_word(decision)


__all__ = ["CONTROLS", "conditioning", "learning_rate", "near_identity"]
