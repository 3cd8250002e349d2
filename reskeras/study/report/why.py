"""The report's *why*: the hypotheses the study tested, their figures, and the seed groups.

The verdicts come from :mod:`reskeras.study.judgment.hypotheses`; this module only
renders them as report blocks: the three questions, what the budget allowed,
the interventions that ran, the hypothesis table (its text columns wrap to fit
a 1280 px window), the seeds each verdict rests on, the *why* figures of
:mod:`reskeras.study.report.why_figures`, and the groups table (each configuration
pooled over its seeds: mean, spread and range).
"""

from __future__ import annotations

import re

from reskeras.study.cells import INTERVENTION_TWINS, VARIANTS, cell_of, group_cells
from reskeras.study.report.controls import control_blocks
from reskeras.study.report.text import figure_blocks, value_text

# hypotheses whose "measured" numbers are fractions (errors, gap closed, lesion damage: shown
# as %), except keys naming something else; elsewhere only "*error*" and "*damage*" keys are
_FRACTION_HYPOTHESES = ("identity_init", "identity_init_no_bn", "conditioning", "near_identity",
                        "branch_scale", "learning_rate", "identity_task", "ensemble")
_NOT_FRACTIONS = re.compile(
    r"ratio|factor|depth|at_deepest|step|points|seed|below|distance|eigen|sharp|curvature|rough"
    r"|span|margin")
WHY_FIGURES = ("interventions", "identity_distance", "distance_travelled", "sharpness",
               "identity_task")


def _measured(hypothesis: str, measured) -> str:
    """``key: value`` pairs; error fractions as %."""
    if not isinstance(measured, dict):
        return value_text(measured)

    def percent(key: str) -> bool:
        return "error" in key or "damage" in key or (
            hypothesis in _FRACTION_HYPOTHESES and not _NOT_FRACTIONS.search(key))
    return ", ".join(f"{key}: " + (_measured(hypothesis, value) if isinstance(value, dict)
                                   else value_text(value, percent(key)))
                     for key, value in measured.items())


def _seeds(seeds) -> str:
    seeds = sorted(seeds)
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"


def budget(results: dict) -> str:
    """What the budget allowed: the seeds of the deepest BN cells and the others, the
    interventions, in words (old results: the seeds of the cells)."""
    cells = results["cells"]
    deepest = max((c["depth"] for c in cells), default=None)
    seeds = results.get("seeds") or sorted({c["seed"] for c in cells})
    deep = results.get("deep_seeds") or seeds
    text = (f"{_seeds(seeds)} of every twin" if set(deep) == set(seeds) else
            f"{_seeds(deep)} of the depth-{deepest} BatchNorm twins, {_seeds(seeds)} of the "
            "other twins")
    if "interventions" in results:
        names = [VARIANTS[v][0] if v in VARIANTS else v for v in results["interventions"] or ()]
        on = results.get("intervention_seeds")
        swept = [VARIANTS[v][0] for v in results.get("sweep_depths") or ()]
        text += (f"; interventions ({', '.join(names)}) at depth {deepest}"
                 + (f", of which {', '.join(swept)} at every depth" if swept else " only")
                 + (f", {_seeds(on)}" if on else "") if names else "; no interventions")
    return text


def why_blocks(results: dict, figures: dict, used: set) -> list[tuple]:
    verdict = results.get("verdict") or {}
    hypotheses = verdict.get("hypotheses") or []
    blocks = [("h2", "Why"), ("p", "The verdict raises three questions. Do the gradients of "
               "the deep plain net vanish after all? Why is a residual mapping easier to "
               "learn than the plain one? And why can the plain net not close the gap, "
               "given the same data and steps? Each explanation below is tested by an "
               "intervention or a measurement with a prediction fixed before the runs "
               "(`reskeras.study.judgment.hypotheses`); *inconclusive* means the interval "
               "over seeds straddles the threshold, or a measured input is missing (a seed "
               "with no gap to close, a premise not met, a reference that did not train, a "
               "measure skipped or unconverged): each row's `why_inconclusive` says which."),
              ("p", f"What the budget allowed: {budget(results)}.")]
    ran = {(c.variant, c.residual, c.batch_norm) for c in map(cell_of, results["cells"])}
    items = []
    for v in (v for v in results.get("interventions") or () if v in INTERVENTION_TWINS):
        twins = [f"{'residual' if r else 'plain'} {'BN' if bn else 'no-BN'}"
                 for r, bn in INTERVENTION_TWINS[v] if (v, r, bn) in ran]
        items.append(f"`{v}`: {VARIANTS[v][0]}, " + (f"on the {' and '.join(twins)} nets"
                                                      if twins else "no cell in this grid"))
    blocks += [("list", items)] if items else []
    task = results.get("identity_task")
    if task:
        depths = task.get("depths") or sorted({row["depth"] for row in task.get("rows") or []})
        budgets = task.get("budgets") or []
        blocks.append(("p", f"Identity task: stacks of {', '.join(map(str, depths))} "
                       f"plain or residual blocks (width {task.get('width')}, "
                       f"{task.get('size')}x{task.get('size')} inputs) trained for "
                       f"{task.get('steps')} steps to reproduce their input, "
                       f"{_seeds(task.get('seeds') or [])}"
                       + (f" (steps doubled from {budgets[0]} until the one-block stacks "
                          f"converged, at most {task['base_steps'] * 2 ** task['max_doublings']})"
                          if len(budgets) > 1 or task.get("max_doublings") else "")
                       + ("; a residual control whose branch BatchNorm gammas start at 0 "
                          "(every block exactly the identity at initialization) trained beside"
                          if any(r["kind"] == "residual_zero_gamma" for r in task.get("rows")
                                 or []) else "") + "."))
    if not hypotheses:
        return blocks + [("p", "Not measured: these results test no hypotheses "
                          "(`verdict[\"hypotheses\"]`).")] + figure_blocks(figures, WHY_FIGURES, used)
    rows = [[f"`{h['id']}`", h.get("claim", ""), h.get("source", ""), h.get("test", ""),
             h.get("prediction", ""), _measured(h["id"], h.get("measured")),
             f"**{h['verdict']}**" if h.get("verdict") in ("supported", "refuted")
             else str(h.get("verdict"))] for h in hypotheses]
    per_seed = verdict.get("hypothesis_seeds") or {}
    lines = []
    for h in hypotheses:
        seeds = per_seed.get(h["id"]) or {}
        lines.append(f"`{h['id']}` rests on " + ("; ".join(
            f"{seed} ({_measured(h['id'], value)})" for seed, value in seeds.items())
            if seeds else "no per-seed values"))
    return blocks + [
        ("table", ["hypothesis", "claim", "source", "test", "prediction", "measured", "verdict"],
         rows, (1, 2, 3, 4, 5)),
        ("p", "The seeds each verdict rests on (`verdict[\"hypothesis_seeds\"]`):"),
        ("list", lines)] + control_blocks(verdict) + figure_blocks(figures, WHY_FIGURES, used)


def _spread(stats: dict | None, seeds: list, with_range: bool) -> str:
    """``mean ± std% (min–max%)`` over seeds, a single value for one seed, ``—`` for none."""
    if not stats:
        return "—"
    mean, std, low, high = (100 * stats[k] for k in ("mean", "std", "min", "max"))
    text = f"{mean:.1f}%" if stats["n"] == 1 else f"{mean:.1f} ± {std:.1f}%"
    notes = [f"{low:.1f}–{high:.1f}%"] if with_range and stats["n"] > 1 else []
    notes += [f"{stats['n']} of {len(seeds)} seeds"] if stats["n"] < len(seeds) else []
    return text + (f" ({'; '.join(notes)})" if notes else "")


def group_blocks(results: dict) -> list[tuple]:
    rows = []
    for group in group_cells(results["cells"]):
        counts: dict[str, int] = {}
        for status in group["statuses"]:
            counts[str(status)] = counts.get(str(status), 0) + 1
        rows.append([group["label"], ", ".join(map(str, group["seeds"])),
                     ", ".join(f"{n} {status}" for status, n in counts.items()),
                     _spread(group["final_train_error"], group["seeds"], True),
                     _spread(group["final_test_error"], group["seeds"], False)])
    return [("h2", "Groups"), ("p", "Each configuration pooled over its seeds "
             "(`reskeras.study.cells.group_cells`): mean ± standard deviation over the "
             "seeds that finished, and their range."),
            ("table", ["configuration", "seeds", "status", "train error: mean ± std (min–max)",
                       "test error: mean ± std"], rows)]
