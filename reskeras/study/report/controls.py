"""The report's controls: the identity init beside its isometric controls, and the symptoms.

Two tables, rendered from ``verdict.json`` (no judgment here):

- **starts**: the deepest plain net's starts (He, identity, permuted identity,
  delta-orthogonal) with their start distance from the identity, training error, the
  95% interval of the fraction of the gap to the residual twin they close and its
  decision (:mod:`reskeras.study.judgment.rivals`), BN and no-BN;
- **symptoms**: for each chaotic symptom of the plain net at initialization, the twins'
  values, each start's value, how far it moved towards the residual twin's and whether
  that removed it, and whether the symptom counts as a cause
  (:mod:`reskeras.study.judgment.symptoms`).

Example:

>>> control_blocks({"hypotheses": []})
[]
"""

from __future__ import annotations

import numpy as np

from reskeras.study.cells import VARIANTS
from reskeras.study.report.text import value_text

_DECISIONS = {True: "closes", False: "does not close", "inconclusive": "inconclusive",
              None: "not run"}


def _interval(bounds) -> str:
    return "—" if not bounds else f"[{bounds[0]:.0%}, {bounds[1]:.0%}]"


def _distance(found) -> str:
    if not found:
        return "—"
    finite = [d for d in found if d is not None and np.isfinite(d)]
    return f"{np.median(finite):.2f}" if finite else "all-zero inputs"


def _starts_rows(verdict: dict) -> list[list[str]]:
    by_id = {h["id"]: h for h in verdict.get("hypotheses") or []}
    starts = ((by_id.get("near_identity") or {}).get("measured") or {}).get("starts") or {}
    no_bn = ((by_id.get("conditioning") or {}).get("measured") or {}).get("no_bn") or {}
    plain = ((by_id.get("near_identity") or {}).get("measured") or {}).get("plain")
    rows = [["He (the twin)", "BN", "—", value_text(plain, True), "—", "—"]] \
        if plain is not None else []
    for family, parts in (("BN", starts), ("no BN", no_bn)):
        for variant, part in parts.items():
            if part.get("error") is None:
                continue
            decision = part.get("decision")
            # TAT's net has no BN; in the BN section it is tested against the BN twins' gap
            where = "no BN, BN twins' gap" if family == "BN" and variant == "tat" else family
            rows.append([VARIANTS[variant][0], where, _distance(part.get("start_distance")),
                         value_text(part["error"], True), _interval(part.get("closed_interval")),
                         _DECISIONS.get(decision, str(decision))
                         + (f" ({part['why_inconclusive']})"
                            if part.get("why_inconclusive") and decision != "inconclusive"
                            else "")])
    return rows


def _value(value, in_logs: bool) -> str:
    if value is None:
        return "—"
    return f"10^{value:.2f}" if in_logs else f"{value:.2f}"


def _symptom_rows(found: dict) -> list[list[str]]:
    summary = found.get("symptoms") or {}
    rows = []
    for row in found.get("rows") or []:
        about = summary.get(row["symptom"]) or {}
        in_logs = about.get("log10", False)
        rows.append([about.get("what", row["symptom"]), row["label"],
                     _DECISIONS.get(row["trains"], str(row["trains"])),
                     _value(row["plain"], in_logs), _value(row["start_value"], in_logs),
                     _value(row["residual"], in_logs),
                     "—" if row["moved"] is None else f"{row['moved']:.0%}",
                     {True: "yes", False: "no", None: "—"}[row["removed"]]])
    return rows


def control_blocks(verdict: dict) -> list[tuple]:
    """Report blocks: the starts table and the symptoms table, where measured."""
    blocks = []
    starts = _starts_rows(verdict)
    if len(starts) > 1:
        blocks += [("p", "**The identity init and its conditioning controls.** Each start of "
                    "the deepest plain net: its median block distance "
                    "from the identity at initialization, its training error, the 95% "
                    "interval of the fraction of the gap to the residual twin it closes, and "
                    "whether it closes at least half (`conditioning`, `near_identity`)."),
                   ("table", ["start", "family", "distance from the identity", "training error",
                              "gap closed (95%)", "decision"], starts, ())]
    found = verdict.get("symptoms") or {}
    rows = _symptom_rows(found)
    if rows:
        causes = "; ".join(f"{about['what']}: "
                           + {True: "a candidate cause", False: "not a cause",
                              None: "undecided"}[about["counts_as_cause"]]
                           + f" ({about['why']})"
                           for about in (found.get("symptoms") or {}).values())
        causes = causes[:1].upper() + causes[1:]
        blocks += [("p", "**Does the start that trains remove the chaotic symptoms?** A "
                    "symptom of the deep plain BN net at initialization counts as a "
                    "cause only if the start that makes the net train removes it: moves at "
                    f"least {found.get('removed_at', 0.5):.0%} of the way from the plain "
                    f"twin's value to the residual twin's. {causes}."),
                   ("table", ["symptom", "start", "closes the gap", "plain twin", "the start",
                              "residual twin", "moved", "removed"], rows, (0,))]
    return blocks


__all__ = ["control_blocks"]
