"""The study report: ``report.md``, a self-contained ``report.html`` and ``summary.csv``.

Both reports render one list of blocks, so they say the same thing: the question
and the answer (``verdict["answer"]``), the verdict and its criteria, the *why*
(``verdict["hypotheses"]``: each explanation, its test and verdict, with the
figures of :mod:`reskeras.analysis.why_plots`), degradation, gradient flow, layer
responses, lesions, shattering, the loss landscape, the groups (seeds pooled),
the cells, the caveats and how to reproduce. ``report.md`` references the figures
by relative path (``figures/*.png``); ``report.html`` embeds them as base64 data
URIs with inline CSS, so it opens offline as one file. Files go through
``tf.io.gfile`` (or ``gs://``). Results from before issue 18 (no ``variant``,
seeds, measures or hypotheses) render too: every cell reads as ``"he"`` and the
*why* says "Not measured".

Example:

>>> from reskeras.analysis.study_plots import write_study_figures
>>> figures = write_study_figures(results, "study/figures")   # doctest: +SKIP
>>> write_report(results, "study", figures)["report_html"]    # doctest: +SKIP
'study/report.html'
"""

from __future__ import annotations

import base64
import csv
import html
import math
import re
import shlex

import numpy as np
import tensorflow as tf

from reskeras import rundir
from reskeras.analysis.cells import INTERVENTION_TWINS, VARIANTS, cell_of, group_cells
from reskeras.analysis.study_plots import FAMILIES, diverged_label

_GRADIENT_COLUMNS = ("first_last_ratio_init", "first_last_ratio_median", "log10_slope_init")
SUMMARY_COLUMNS = ("name", "residual", "depth", "batch_norm", "seed", "variant", "status",
                   "params", "seconds", "final_train_error", "final_test_error", "final_loss",
                   *_GRADIENT_COLUMNS, "gradient_state")
CAPTIONS = {
    "degradation": "Training error (top) and loss (bottom, log) against step, one color per "
                   "depth, plain dashed, residual solid (He et al. 2015, Fig. 6); x: a "
                   "diverged cell's last finite point.",
    "gradient_ratio": "First/last conv gradient-norm ratio against depth, at step 0 and median "
                      "over the logged steps; shaded: the vanishing and exploding zones.",
    "gradient_profiles_init": "Gradient norm of each conv and dense layer at initialization "
                              "against relative depth (0 = input side), one curve per cell.",
    "grad_norm_heatmap": "log10 gradient norm of every layer (rows, input at the top) at every "
                         "logged step, deepest plain and residual BatchNorm twins.",
    "responses": "Std of the 3x3 conv responses after BatchNorm, by layer and sorted "
                 "(He et al. 2015, Fig. 7), deepest plain and residual BatchNorm twins.",
    "lesion": "Test error after deleting one block; dotted: the intact nets.",
    "shattering": "Correlation of input gradients at neighbouring points of a line through "
                  "test images, at initialization and after training.",
    "landscape": "Training loss along one filter-normalized random direction (log scale).",
    "interventions": "Training error against step of the deepest nets: the He-initialized "
                     "plain (dashed) and residual (solid) twins and every intervention, mean "
                     "over seeds; shaded: lowest to highest seed.",
    "identity_distance": "||block(x) − x|| / ||x|| of every shape-preserving block of the "
                         "deepest BatchNorm nets: dotted at initialization, dashed (plain) or "
                         "solid (residual) after training; log scale.",
    "distance_travelled": "Relative distance ||W_end − W_init|| / ||W_init|| each conv and "
                          "dense layer of the same nets moved during training (log scale); "
                          "shaded: lowest to highest seed.",
    "sharpness": "Top eigenvalue of the training loss's Hessian at initialization and after "
                 "training (log scale); dots: single seeds.",
    "identity_task": "Relative reconstruction error of stacks trained to reproduce their input, "
                     "against the number of blocks: plain dashed, residual solid, dotted at "
                     "initialization; mean over seeds, dots: single seeds.",
}
_NOT_MEASURED = "Not measured: the analysis was skipped or had no finished cells to run on."
_CSS = """
body{font-family:system-ui,sans-serif;color:#1d2330;margin:0;background:#f6f7f9;line-height:1.5}
main{max-width:1216px;margin:0 auto;padding:24px 32px;background:#fff}
h2{border-bottom:2px solid #e3e6ea;padding-bottom:.2em;margin-top:1.8em}.meta{color:#5a6270}
.answer{background:#eef5ff;border-left:6px solid #2f6fdb;padding:14px 18px;font-size:1.1em}
.table{overflow-x:auto}table{border-collapse:collapse;font-size:.9em;margin:.6em 0}
th,td{border:1px solid #d5d9df;padding:4px 7px;text-align:left;white-space:nowrap}
td{vertical-align:top}
th{white-space:normal;vertical-align:bottom}td:first-child{white-space:normal;min-width:9.5em}
th{background:#f0f2f5}tr:nth-child(even) td{background:#fafbfc}figure{margin:1em 0}
td.wrap{white-space:normal;min-width:6em}
img{max-width:100%;height:auto;border:1px solid #e3e6ea}figcaption{color:#5a6270;font-size:.9em}
code{background:#f0f2f5;padding:0 3px}pre{background:#f0f2f5;padding:12px;overflow-x:auto}
"""


def _pct(value) -> str:
    return "—" if not _finite(value) else f"{100 * float(value):.1f}%"


def _num(value) -> str:
    return "—" if not _finite(value) else f"{float(value):.3g}"


def _finite(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _flag(flags: dict | None, key: str, per_seed: dict | None = None, pick: str = "") -> str:
    """``**yes**``, ``no``, ``inconclusive`` (seeds disagree) or ``undecided``, with the
    seeds behind it: ``yes (3/3 seeds)`` for per-seed flags, else each seed's value."""
    if key not in (flags or {}):
        return "not measured"
    value = flags[key]
    text = ("**yes**" if value is True else "no" if value is False
            else "inconclusive" if value == "inconclusive" else "undecided")
    per_seed = per_seed or {}
    if pick in per_seed:  # {"vanishing": {seed: flag}, "exploding_at_init": {seed: flag}}
        per_seed = per_seed[pick] or {}
    values = {seed: v.get(pick, v) if isinstance(v, dict) else v for seed, v in per_seed.items()}
    if not values:
        return text
    if all(v is None or isinstance(v, bool) for v in values.values()):
        return f"{text} ({sum(v is True for v in values.values())}/{len(values)} seeds)"
    return f"{text} ({', '.join(f's{seed} {_value(v)}' for seed, v in values.items())})"


def _value(value, percent: bool = False) -> str:
    """A number (``percent``: a fraction as %), a flag, a text or ``—``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_value(v, percent)}" for k, v in value.items())
    if percent and _finite(value) and 0 < abs(value) < 0.0095:  # 0.06%, not 0.1%
        return f"{100 * value:.2g}%"
    return _pct(value) if percent else _num(value)


def _mean(values) -> float | None:
    finite = [v for v in values if _finite(v)]
    return float(np.mean(finite)) if finite else None


def _figures(figures: dict, keys, used: set) -> list[tuple]:
    found = [key for key in keys if key in figures]
    used.update(found)
    return [("figure", figures[k], CAPTIONS.get(k, k.replace("_", " "))) for k in found]


def _section(title: str, text: str, figures: dict, keys, used: set) -> list[tuple]:
    """A heading, its explanation, then the section's figures that exist."""
    return [("h2", title), ("p", text)] + _figures(figures, keys, used)


def _seed_values(verdict: dict, kind: str, key: str) -> dict | None:
    """``numbers[key]["per_seed"]`` behind the flag ``verdict[kind][key]``."""
    numbers = (verdict.get(kind) or {}).get("numbers") or verdict.get("gradient_numbers") or {}
    return (numbers.get(key) or {}).get("per_seed")


def _verdict_blocks(results: dict) -> list[tuple]:
    verdict = results.get("verdict") or {}
    criteria = {"degradation_points": 2.0, "vanishing_ratio": 0.01, "exploding_ratio": 100.0,
                **(verdict.get("criteria") or {}), **(results.get("criteria") or {})}
    degradation = verdict.get("degradation") or {}
    gradient_key = {"plain": "plain_bn", "residual": "residual_bn"}  # verdict's key names
    rows = [[question] + [_flag(verdict.get(kind), key, _seed_values(verdict, kind, key), pick)
                          for key in (gradient_key.get(f[0], f[0]) if pick else f[0]
                                      for f in FAMILIES)]
            for question, kind, pick in (
                ("degradation (deepest vs shallowest net)", "degradation", ""),
                ("vanishing gradients (deepest net)", "vanishing_gradients", "vanishing"),
                ("exploding gradients at initialization (deepest net)", "exploding_at_init",
                 "exploding_at_init"))]
    header = ["question"] + [title for *_, title in FAMILIES]
    blocks = [("h2", "Verdict"), ("table", header, rows), ("p", "The criteria, fixed before the "
              "runs and applied by `reskeras.analysis.verdict`:"), ("list", [
        f"**Degradation**: the deepest net's final training error exceeds the shallowest's by "
        f"more than {criteria['degradation_points']:g} percentage points at the same step "
        f"count ({results.get('steps')} steps; mean over seeds; a deepest net that diverged "
        "counts as degraded).",
        f"**Vanishing gradients**: the first conv layer's gradient norm is below "
        f"{criteria['vanishing_ratio']:g} times the last conv layer's (median over the logged "
        "steps), in the majority of the deepest net's seeds.",
        f"**Exploding at initialization**: that ratio at step 0 is above "
        f"{criteria['exploding_ratio']:g}."])]
    numbers = degradation.get("numbers") or {}
    if numbers:
        titles = {key: title for key, _, _, title in FAMILIES}
        rows = [[titles.get(key, key), str(n["shallow_depth"]), _pct(n["shallow_train_error"]),
                 str(n["deep_depth"]),
                 "diverged" if n.get("deep_diverged") else _pct(n["deep_train_error"]),
                 "—" if not _finite(n.get("points")) else f"{n['points']:+.1f}",
                 _flag(degradation, key, n.get("per_seed"))] for key, n in numbers.items()]
        blocks.append(("table", ["nets", "shallowest", "training error", "deepest",
                                 "training error", "difference (points)", "degraded"], rows))
    return blocks


# hypotheses whose "measured" numbers are fractions (errors, gap closed, lesion damage: shown
# as %), except keys naming something else; elsewhere only "*error*" and "*damage*" keys are
_FRACTION_HYPOTHESES = ("identity_init", "identity_init_no_bn", "branch_scale", "learning_rate",
                        "identity_task", "ensemble")
_NOT_FRACTIONS = re.compile(
    r"ratio|factor|depth|step|points|seed|below|distance|eigen|sharp|curvature|rough")
WHY_FIGURES = ("interventions", "identity_distance", "distance_travelled", "sharpness",
               "identity_task")


def _measured(hypothesis: str, measured) -> str:
    """``key: value`` pairs; error fractions as %."""
    if not isinstance(measured, dict):
        return _value(measured)

    def percent(key: str) -> bool:
        return "error" in key or "damage" in key or (
            hypothesis in _FRACTION_HYPOTHESES and not _NOT_FRACTIONS.search(key))
    return ", ".join(f"{key}: " + (_measured(hypothesis, value) if isinstance(value, dict)
                                   else _value(value, percent(key)))
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
    text = (f"{_seeds(seeds)} of every cell" if set(deep) == set(seeds) else
            f"{_seeds(deep)} of the depth-{deepest} BatchNorm cells, {_seeds(seeds)} of the "
            "others")
    if "interventions" in results:
        names = [VARIANTS[v][0] if v in VARIANTS else v for v in results["interventions"] or ()]
        text += (f"; interventions ({', '.join(names)}) at depth {deepest} only" if names
                 else "; no interventions")
    return text


def _why_blocks(results: dict, figures: dict, used: set) -> list[tuple]:
    verdict = results.get("verdict") or {}
    hypotheses = verdict.get("hypotheses") or []
    blocks = [("h2", "Why"), ("p", "The verdict raises three questions. Do the gradients of "
               "the deep plain net vanish after all? Why is a residual mapping easier to "
               "learn than the plain one? And why can the plain net not close the gap, "
               "given the same data and steps? Each explanation below is tested by an "
               "intervention or a measurement with a prediction fixed before the runs "
               "(`reskeras.analysis.verdict`); *inconclusive* means the seeds disagree."),
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
        blocks.append(("p", f"Identity task: stacks of {', '.join(map(str, depths))} "
                       f"plain or residual blocks (width {task.get('width')}, "
                       f"{task.get('size')}x{task.get('size')} inputs) trained for "
                       f"{task.get('steps')} steps to reproduce their input, "
                       f"{_seeds(task.get('seeds') or [])}."))
    if not hypotheses:
        return blocks + [("p", "Not measured: these results test no hypotheses "
                          "(`verdict[\"hypotheses\"]`).")] + _figures(figures, WHY_FIGURES, used)
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
        ("list", lines)] + _figures(figures, WHY_FIGURES, used)


def _spread(stats: dict | None, seeds: list, with_range: bool) -> str:
    """``mean ± std% (min–max%)`` over seeds, a single value for one seed, ``—`` for none."""
    if not stats:
        return "—"
    mean, std, low, high = (100 * stats[k] for k in ("mean", "std", "min", "max"))
    text = f"{mean:.1f}%" if stats["n"] == 1 else f"{mean:.1f} ± {std:.1f}%"
    notes = [f"{low:.1f}–{high:.1f}%"] if with_range and stats["n"] > 1 else []
    notes += [f"{stats['n']} of {len(seeds)} seeds"] if stats["n"] < len(seeds) else []
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _group_blocks(results: dict) -> list[tuple]:
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
             "(`reskeras.analysis.cells.group_cells`): mean ± standard deviation over the "
             "seeds that finished, and their range."),
            ("table", ["configuration", "seeds", "status", "train error: mean ± std (min–max)",
                       "test error: mean ± std"], rows)]


def _he(cell: dict) -> bool:
    return cell.get("variant", "he") == "he"


def _degradation_blocks(results: dict, figures: dict, used: set) -> list[tuple]:
    blocks = _section("Degradation", "Final training error (training split, no augmentation) "
                      "and test error after the same number of steps, mean over seeds. A deeper "
                      "net with a higher *training* error is the degradation problem: "
                      "overfitting cannot explain it.", figures, ("degradation",), used)
    twins = [c for c in results["cells"] if _he(c)]  # the interventions are in "Why"
    present = [f for f in FAMILIES if any(c["residual"] == f[1] and c["batch_norm"] == f[2]
                                          for c in twins)]
    rows = []
    for depth in sorted({c["depth"] for c in twins}):
        row = [str(depth)]
        for _, residual, batch_norm, _ in present:
            cells = [c for c in twins if c["depth"] == depth
                     and c["residual"] == residual and c["batch_norm"] == batch_norm]
            diverged = [f"s{c['seed']} {diverged_label(c)}" for c in cells
                        if c["status"] == "diverged"]
            train = _mean([c.get("final_train_error") for c in cells])
            test = _mean([c.get("final_test_error") for c in cells])
            parts = [f"{_pct(train)} / {_pct(test)}"] if train is not None else []
            row.append("; ".join(parts + diverged) or "—")
        rows.append(row)
    blocks.append(("table", ["depth"] + [f"{title}: train / test error"
                                         for *_, title in present], rows))
    return blocks


def _gradient_blocks(results: dict, figures: dict, used: set) -> list[tuple]:
    blocks = _section("Gradient flow", "Per-layer gradient norms were logged during training. "
                      "The first/last ratio compares the first conv layer's gradient norm with "
                      "the last conv layer's: far below 1 the input side learns slowly "
                      "(vanishing), far above 1 it gets the larger updates (exploding).",
                      figures, ("gradient_ratio", "gradient_profiles_init", "grad_norm_heatmap"),
                      used)
    return blocks + [("p", "The ratios of every cell are in the cells table below.")]


def _lesion_blocks(lesion: dict, figures: dict, used: set) -> list[tuple]:
    blocks = [("p", "Each block of the trained deepest twins deleted in turn (the shortcut "
               "kept in the residual net). Ensembles of shallow paths (Veit et al. 2016) "
               "barely notice one missing block; a plain chain breaks.")]
    by_index: dict[int, dict] = {}
    for kind in ("residual", "plain"):
        for block in (lesion.get(kind) or {}).get("blocks", []):
            by_index.setdefault(block["index"], {"block": block["block"]})[kind] = block
    names = [(lesion.get(k) or {}).get("cell", k) for k in ("residual", "plain")]
    rows = [["intact", "—"] + [_pct((lesion.get(k) or {}).get("baseline_error"))
                               for k in ("residual", "plain")]]
    rows += [[entry["block"], str(index)]
             + [_pct(entry[k]["error"]) if k in entry else "not deletable"
                for k in ("residual", "plain")] for index, entry in sorted(by_index.items())]
    return blocks + _figures(figures, ("lesion",), used) + [
        ("table", ["block deleted", "index"] + [f"{n}: test error" for n in names], rows)]


def _shattering_blocks(rows: list[dict], figures: dict, used: set) -> list[tuple]:
    return _figures(figures, ("shattering",), used) + [
        ("table", ["cell", "depth", "when", "neighbour correlation",
                   "decorrelation length (points)"],
         [[r["cell"], str(r["depth"]), r["when"], _num(r["neighbour_correlation"]),
           "not reached" if r.get("decorrelation_length") is None
           else _num(r["decorrelation_length"])] for r in rows])]


def _landscape_blocks(landscape: dict, figures: dict, used: set) -> list[tuple]:
    keys = [k for k in ("curvature", "roughness", "local_minima", "sharpness")
            if any(k in entry for entry in landscape.values())]
    return _figures(figures, ("landscape",), used) + [
        ("table", ["cell", "net"] + [k.replace("_", " ") for k in keys],
         [[name, "residual" if e.get("residual") else "plain"] + [_num(e.get(k)) for k in keys]
          for name, e in landscape.items()])]


def _analysis_blocks(results: dict, figures: dict, used: set) -> list[tuple]:
    responses = _figures(figures, ("responses",), used)
    blocks = [("h2", "Layer responses")] + (responses or [("p", _NOT_MEASURED)])
    for title, key, build in (("Lesions", "lesion", _lesion_blocks),
                              ("Gradient shattering", "shattering", _shattering_blocks),
                              ("Loss landscape", "landscape", _landscape_blocks)):
        found = results.get(key)
        blocks += [("h2", title)] + (build(found, figures, used) if found
                                     else [("p", _NOT_MEASURED)])
    return blocks


def _cell_rows(results: dict) -> list[list[str]]:
    rows = []
    for c in results["cells"]:
        g = c.get("gradient") or {}
        rows.append([c["name"], "residual" if c["residual"] else "plain", str(c["depth"]),
                     "yes" if c["batch_norm"] else "no", str(c["seed"]), cell_of(c).variant,
                     diverged_label(c) if c["status"] == "diverged" else c["status"],
                     "—" if c.get("params") is None else f"{c['params']:,}",
                     _num(c.get("seconds")), _pct(c.get("final_train_error")),
                     _pct(c.get("final_test_error")), _num(c.get("final_loss")),
                     *(_num(g.get(k)) for k in _GRADIENT_COLUMNS), g.get("state", "unknown")])
    return rows


def _reproduce(results: dict) -> str:
    cells, preset = results["cells"], results["preset"]
    depths = " ".join(str(d) for d in sorted({c["depth"] for c in cells}))
    seeds = results.get("seeds") or sorted({c["seed"] for c in cells})
    # --seeds N sets every cell's seeds: more seeds of the deepest BN cells is the preset's
    same = set(results.get("deep_seeds") or seeds) == set(seeds)
    interventions = results.get("interventions")
    grid = (f"reskeras study --preset {preset} --dataset {results['dataset']} --depths {depths}"
            + (f" --seeds {len(seeds)}" if same else "")
            + ("" if interventions is None else " --interventions " + " ".join(interventions))
            + (f" --steps {results['steps']}" if results.get("steps") else "")
            + ("" if any(not c["batch_norm"] for c in cells) else " --no-bn-cells"))
    return (f"reskeras study --preset {preset} --out {shlex.quote(str(results['study_dir']))}\n"
            f"# the grid of this report, spelled out:\n{grid} --out NEW_STUDY_DIR")


def report_blocks(results: dict, figures: dict) -> list[tuple]:
    """The report as blocks: ``("h1" | "h2" | "p" | "meta" | "answer", text)``,
    ``("list", items)``, ``("table", header, rows[, indices of the columns that wrap])``,
    ``("figure", path, caption)``, ``("code", text)``. Every key of ``figures`` appears
    exactly once."""
    cells, seconds = results["cells"], results.get("seconds")
    meta = (f"Preset `{results['preset']}` on `{results['dataset']}`: {len(cells)} cells "
            f"(depths {', '.join(str(d) for d in sorted({c['depth'] for c in cells}))}), "
            f"{results.get('steps')} steps of the `{results.get('recipe')}` recipe at batch "
            f"{results.get('batch_size')}" + (f", {seconds:.0f} s in all" if _finite(seconds)
                                               else "") + f". Seeds: {budget(results)}.")
    used: set = set()
    blocks = [("h1", "Do ResNets solve the vanishing-gradient problem?"), ("meta", meta),
              ("p", "He et al. (2015, §4.1) argue that deeper plain nets train worse (the "
               "degradation problem) although BatchNorm keeps their gradients healthy, and "
               "that residual connections remove the degradation. This study trains plain "
               "and residual twins that differ only in their shortcuts, at several depths, "
               "with and without BatchNorm, and measures both."),
              ("answer", (results.get("verdict") or {}).get("answer") or "No verdict.")]
    blocks += _verdict_blocks(results)
    blocks += _why_blocks(results, figures, used)
    blocks += _degradation_blocks(results, figures, used)
    blocks += _gradient_blocks(results, figures, used)
    blocks += _analysis_blocks(results, figures, used)
    others = [key for key in figures if key not in used]
    if others:
        blocks += [("h2", "Other figures")] + _figures(figures, others, used)
    blocks += _group_blocks(results)
    blocks += [("h2", "Cells"),
               ("table", ["cell", "net", "depth", "BN", "seed", "variant", "status", "params",
                          "seconds", "train error", "test error", "loss", "ratio at step 0",
                          "ratio, median", "log10 slope at step 0", "gradient state"],
                _cell_rows(results), (6,)),  # the status ("diverged at step N") wraps
               ("h2", "What this measurement can and cannot show"),
               ("list", list(results.get("notes") or []) or ["No notes."]),
               ("h2", "How to reproduce"),
               ("p", "Re-running the same command in the same directory reuses the finished "
                     "cells and remakes this report; `study.json` holds the exact settings."),
               ("code", _reproduce(results))]
    return blocks


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def render_markdown(blocks: list[tuple]) -> str:
    """The blocks as Markdown; figures as ``![caption](relative path)``."""
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(("# " if kind == "h1" else "## ") + rest[0])
        elif kind in ("p", "meta"):
            out.append(rest[0])
        elif kind == "answer":
            out.append(f"> **Answer.** {rest[0]}")
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in rest[0]))
        elif kind == "table":
            out.append("\n".join([_md_row(rest[0]), "|" + " --- |" * len(rest[0])]
                                 + [_md_row(row) for row in rest[1]]))
        elif kind == "figure":
            out.append(f"![{rest[0].rsplit('/', 1)[-1][:-4]}]({rest[0]})\n\n*{rest[1]}*")
        elif kind == "code":
            out.append(f"```bash\n{rest[0]}\n```")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escaped HTML with Markdown's `code`, **bold** and *italic*."""
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", text)


def render_html(blocks: list[tuple], images: dict[str, bytes], title: str) -> str:
    """The blocks as one HTML page; ``images`` maps a figure path to its PNG bytes."""
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{_inline(rest[0])}</{kind}>")
        elif kind in ("p", "meta", "answer"):
            css = {"p": "", "meta": ' class="meta"', "answer": ' class="answer"'}[kind]
            lead = "<strong>Answer.</strong> " if kind == "answer" else ""
            out.append(f"<p{css}>{lead}{_inline(rest[0])}</p>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in rest[0]) + "</ul>")
        elif kind == "table":  # long text columns (rest[2]) wrap, so the table fits 1280 px
            head = "".join(f"<th>{_inline(h)}</th>" for h in rest[0])
            wrap = set(rest[2]) if len(rest) > 2 else set()
            body = "".join("<tr>" + "".join(
                ('<td class="wrap">' if i in wrap else "<td>") + f"{_inline(c)}</td>"
                for i, c in enumerate(row)) + "</tr>" for row in rest[1])
            out.append(f'<div class="table"><table><thead><tr>{head}</tr></thead>'
                       f"<tbody>{body}</tbody></table></div>")
        elif kind == "figure":
            data = base64.b64encode(images[rest[0]]).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{data}" '
                       f'alt="{html.escape(rest[1])}"><figcaption>{_inline(rest[1])}'
                       "</figcaption></figure>")
        elif kind == "code":
            out.append(f"<pre><code>{html.escape(rest[0])}</code></pre>")
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            "<main>\n" + "\n".join(out) + "\n</main>\n</body>\n</html>\n")


def write_summary_csv(results: dict, path: str) -> str:
    """Writes one row per cell (``SUMMARY_COLUMNS``); ``None`` is an empty field.

    Floats are written with ``str`` (they round-trip exactly), booleans as
    ``True``/``False``. Returns ``path``.
    """
    with tf.io.gfile.GFile(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(SUMMARY_COLUMNS)
        for cell in results["cells"]:
            gradient = cell.get("gradient") or {}
            row = {**{k: cell.get(k) for k in SUMMARY_COLUMNS}, "variant": cell_of(cell).variant,
                   **{k: gradient.get(k) for k in _GRADIENT_COLUMNS},
                   "gradient_state": gradient.get("state")}
            writer.writerow(["" if row[k] is None else str(row[k]) for k in SUMMARY_COLUMNS])
    return path


def write_report(results: dict, study_dir: str, figures: dict) -> dict:
    """Writes ``report.md``, ``report.html`` and ``summary.csv`` into ``study_dir``.

    Args:
        results: the study results (with ``verdict``, ``criteria`` and ``notes``).
        study_dir: the study directory (local or ``gs://``).
        figures: ``{key: path relative to study_dir}``, e.g. from
            :func:`reskeras.analysis.study_plots.write_study_figures` plus
            ``"grad_norm_heatmap"`` and ``"responses"``; each is shown in both reports.

    Returns:
        ``{"report_md", "report_html", "summary_csv"}``: the paths written.

    Raises:
        ValueError: a figure path does not name a file under ``study_dir``.
    """
    images = {}
    for key, relative in figures.items():
        file = rundir.path(study_dir, relative)
        if not tf.io.gfile.exists(file):
            raise ValueError("each path in `figures` must name a PNG under `study_dir`. "
                             f"Received: {key}={relative!r} ({file} does not exist)")
        with tf.io.gfile.GFile(file, "rb") as handle:
            images[relative] = handle.read()
    blocks = report_blocks(results, figures)
    paths = {"report_md": rundir.path(study_dir, "report.md"),
             "report_html": rundir.path(study_dir, "report.html"),
             "summary_csv": rundir.path(study_dir, "summary.csv")}
    tf.io.gfile.makedirs(study_dir)
    for key, text in (("report_md", render_markdown(blocks)),
                      ("report_html", render_html(blocks, images, blocks[0][1]))):
        with tf.io.gfile.GFile(paths[key], "w") as handle:
            handle.write(text)
    write_summary_csv(results, paths["summary_csv"])
    return paths
