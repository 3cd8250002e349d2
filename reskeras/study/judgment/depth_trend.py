"""Does an init remove the depth trend, or only speed up every net? (interventions across depths)

The ``full`` and ``paper`` presets run the identity init and its isometric controls at
every depth (``sweep_depths``). For each such init, its plain nets form a family of their
own, and its degradation flag is read exactly as the twins' (the deepest net's training
error minus the shallowest's, per seed, its 95% interval against ``DEGRADATION_POINTS``,
inconclusive while the shallow reference did not converge): the verdict's own
``degradation`` function, applied to the init's cells. Then, per BN setting:

- ``removes_trend`` is ``True`` when the He-initialized plain family degraded and the
  init's family did not: the init removes the depth trend;
- ``False`` when both degraded: the init may lower every error, but the deep net still
  trains worse than the shallow one;
- ``None`` otherwise (the twins did not degrade, or either flag is inconclusive), with
  ``why``.

An init that runs at the deepest depth only has no trend to read (``quick``).

Example:

>>> depth_trends({"cells": []}, lambda results: {"numbers": {}})
{}
"""

from __future__ import annotations

from reskeras.study.cells import CONDITIONING, VARIANTS

_FAMILY = {True: "plain", False: "plain_no_bn"}


def depth_trends(results: dict, degradation) -> dict:
    """``{variant: {"bn" | "no_bn": {...}}}`` for every init of ``CONDITIONING`` run at two
    depths or more; ``degradation`` is :func:`reskeras.study.judgment.verdict.degradation`.

    Each entry: ``{"degraded", "points", "interval", "twin_degraded", "removes_trend",
    "why"}``.
    """
    twins = degradation(results)
    found = {}
    for variant in CONDITIONING:
        cells = [dict(c, variant="he") for c in results["cells"]
                 if c.get("variant") == variant and not c["residual"]]
        if len({c["depth"] for c in cells}) < 2:
            continue
        mine = degradation({**results, "cells": cells})
        entry = {}
        for batch_norm, family in _FAMILY.items():
            if family not in mine["numbers"]:
                continue
            numbers, twin = mine["numbers"][family], twins.get(family)
            flag = mine[family]
            if twin is True and flag is False:
                removes, why = True, None
            elif twin is True and flag is True:
                removes, why = False, None
            else:
                removes = None
                why = (f"the {VARIANTS[variant][0]} family's degradation is inconclusive"
                       f" ({numbers['why_inconclusive']})" if flag == "inconclusive" else
                       "the He-initialized plain nets did not degrade" if twin is False else
                       "the He-initialized plain nets' degradation is not decided")
            entry["bn" if batch_norm else "no_bn"] = {
                "degraded": flag, "points": numbers["points"], "interval": numbers["interval"],
                "shallow_depth": numbers["shallow_depth"], "deep_depth": numbers["deep_depth"],
                "twin_degraded": twin, "removes_trend": removes, "why": why}
        found[variant] = entry
    return found


__all__ = ["depth_trends"]
