"""The study report: ``report.md``, a self-contained ``report.html`` and ``summary.csv``.

Both reports render one list of blocks, so they say the same thing: the question
and the answer (``verdict["answer"]``), the verdict and its criteria, the *why*
(``verdict["hypotheses"]``: each explanation, its test and verdict, with the
figures of :mod:`reskeras.study.report.why_figures`), degradation, gradient flow, layer
responses, lesions, shattering, the loss landscape, the groups (seeds pooled),
the cells, the caveats, how to reproduce and where the time went. ``report.md`` references the figures
by relative path (``figures/*.png``); ``report.html`` embeds them as base64 data
URIs with inline CSS, so it opens offline as one file. Files go through
``tf.io.gfile`` (or ``gs://``). Results of studies that predate the interventions
(no ``variant``, seeds, measures or hypotheses) render too: every cell reads as
``"he"`` and the *why* says "Not measured".

Example:

>>> from reskeras.study.report.figures import write_study_figures
>>> figures = write_study_figures(results, "study/figures")   # doctest: +SKIP
>>> write_report(results, "study", figures)["report_html"]    # doctest: +SKIP
'study/report.html'
"""

from __future__ import annotations

import csv
import shlex

import tensorflow as tf

from reskeras import rundir
from reskeras.study.cells import cell_of, is_twin
from reskeras.study.report.text import (
    NOT_MEASURED, figure_blocks, finite, flag, mean, num, pct, section)
from reskeras.study.report.render import render_html, render_markdown
from reskeras.study.report.shaping import shaping_blocks
from reskeras.study.report.why import budget, group_blocks, why_blocks
from reskeras.study.report.figure_style import diverged_label
from reskeras.study.report.time_table import time_blocks
from reskeras.study.report.twin_figures import FAMILIES

_GRADIENT_COLUMNS = ("first_last_ratio_init", "first_last_ratio_median",
                     "relative_first_last_ratio_init", "relative_first_last_ratio_median",
                     "log10_slope_init")
# (column, key of the cell's "errors" entry, kind of statistics)
_ERROR_COLUMNS = (("train_error_ema", "train", "ema"), ("train_error_batch", "train", "batch"),
                  ("train_error_precise", "train", "precise"), ("test_error_ema", "test", "ema"),
                  ("test_error_precise", "test", "precise"))
SUMMARY_COLUMNS = ("name", "residual", "depth", "batch_norm", "seed", "variant", "recipe",
                   "status", "params", "seconds", "final_train_error", "final_test_error",
                   "final_loss", "steps", "converged", "failed_to_start", "train_loss",
                   *(column for column, _, _ in _ERROR_COLUMNS), "bn_statistics_gap",
                   *_GRADIENT_COLUMNS, "gradient_state")
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
    rows = [[question] + [flag(verdict.get(kind), key, _seed_values(verdict, kind, key), pick)
                          for key in (gradient_key.get(f[0], f[0]) if pick else f[0]
                                      for f in FAMILIES)]
            for question, kind, pick in (
                ("degradation (deepest vs shallowest net)", "degradation", ""),
                ("vanishing gradients (deepest net)", "vanishing_gradients", "vanishing"),
                ("exploding gradients at initialization (deepest net)", "exploding_at_init",
                 "exploding_at_init"))]
    header = ["question"] + [title for *_, title in FAMILIES]
    blocks = [("h2", "Verdict"), ("table", header, rows), ("p", "The criteria, fixed before the "
              "runs and applied by `reskeras.study.judgment.verdict`:"), ("list", [
        f"Every flag is read from the {criteria.get('confidence', 0.95):.0%} interval over "
        f"seeds of its per-seed value (a t-interval below {criteria.get('bootstrap_seeds', 5)} "
        "seeds, a percentile bootstrap from there on): *yes* when the whole interval is "
        "beyond the threshold, *no* when it is wholly on the other side, *inconclusive* "
        "when it straddles the threshold or one seed gives no interval. Only the "
        "unmodified twins count (the interventions are judged under Why).",
        f"**Budgets**: every cell trains at doubling budgets from "
        f"{_steps_text(criteria.get('base_steps'))} steps until its full-pass training error "
        f"moves by less than {criteria.get('converged_points', 0.5):g} points over the last "
        f"doubling while its loss has left ln(classes) (converged), or until the cap of "
        f"{_steps_text(criteria.get('cap_steps'))} steps. **Failed to start**: the training "
        f"loss at the final budget is within {criteria.get('failed_to_start', 0.05):.0%} of "
        "ln(classes).",
        f"**Degradation**: the deepest net's final training error minus the shallowest's "
        f"(same seed, or the mean of the shallow seeds), at each net's final budget, is above "
        f"{criteria['degradation_points']:g} percentage points (a deepest net that diverged "
        "counts as error 1.0); a shallow net that hit the cap leaves it inconclusive.",
        f"**Vanishing gradients**: the first conv layer's gradient norm is below "
        f"{criteria['vanishing_ratio']:g} times the last conv layer's (median over the logged "
        "steps; the interval is over log10 of the ratio).",
        f"**Exploding at initialization**: that ratio at step 0 is above "
        f"{criteria['exploding_ratio']:g}.",
        f"**Training error** is measured in inference mode on the training split with "
        f"{criteria.get('train_error', 'moving-average')} BatchNorm statistics (recomputed with "
        "the final weights over one epoch of training batches); the **BN statistics gap** is "
        "the error with the moving averages minus that, in points (the cells table gives "
        "both, and the error in training mode)."])]
    numbers = degradation.get("numbers") or {}
    if numbers:
        titles = {key: title for key, _, _, title in FAMILIES}
        rows = [[titles.get(key, key), str(n["shallow_depth"]), pct(n["shallow_train_error"]),
                 str(n["deep_depth"]),
                 "diverged" if n.get("deep_diverged") else pct(n["deep_train_error"]),
                 "—" if not finite(n.get("points")) else f"{n['points']:+.1f}",
                 _interval_text(n), flag(degradation, key, n.get("per_seed"))
                 + (f": {n['why_inconclusive']}" if n.get("why_inconclusive") else ""),
                 _deepest_gap(results, key, n["deep_depth"])] for key, n in numbers.items()]
        blocks.append(("table", ["nets", "shallowest", "training error", "deepest",
                                 "training error", "difference (points)",
                                 "95% interval (points)", "degraded",
                                 "BN statistics gap, deepest (points)"], rows, (7,)))
    return blocks


def _steps_text(value) -> str:
    return "—" if value is None else f"{value:,}"


def _interval_text(numbers: dict) -> str:
    """``[+80.1, +88.3] (t, 3 seeds)`` or ``—`` without an interval."""
    bounds = numbers.get("interval")
    if not bounds:
        return "—"
    seeds = len([v for v in (numbers.get("gap_points") or {}).values() if v is not None])
    return (f"[{bounds[0]:+.1f}, {bounds[1]:+.1f}] ({numbers.get('interval_method')}, "
            f"{seeds} seeds)")


def _recipe_blocks(results: dict) -> list[tuple]:
    """With compared recipes: one table per recipe (its groups' errors and where they
    stopped, and its decisions), and the decisions that differ between recipes."""
    compared = results.get("compared") or {}
    verdict = results.get("verdict") or {}
    if not compared or "recipes" not in verdict:
        return []
    blocks = [("h2", "Recipes"), ("p", "The whole grid trained under each recipe. The analyses "
               "that reload trained nets ran on the first recipe only, so the decisions compared "
               "are those the training errors and gradient norms decide.")]
    parts = {results.get("recipe"): results, **compared}
    for recipe, part in parts.items():
        found = verdict["recipes"].get(recipe, {})
        rows = [[g["group"], pct((g.get("final_train_error") or {}).get("mean")),
                 ", ".join(f"{c['convergence']['steps']:,}"
                           + ("" if c["convergence"]["converged"] else "*")
                           for c in part["cells"] if cell_of(c).group == g["group"]
                           and c.get("convergence"))]
                for g in part.get("groups") or []]
        blocks += [("p", f"**Recipe `{recipe}`**"),
                   ("table", ["group", "training error (mean over seeds)",
                              "stopped at (steps; * at the cap)"], rows),
                   ("table", ["decision", "value"],
                    [[name, _decision_text(value)] for name, value in found.items()])]
    differing = verdict.get("recipe_differences") or []
    blocks.append(("p", "Decisions that differ between the recipes: " + (
        "; ".join(f"{d['decision']} ("
                  + ", ".join(f"{r}: {_decision_text(v)}" for r, v in d["recipes"].items())
                  + ")" for d in differing) if differing else "none") + "."))
    return blocks


def _decision_text(value) -> str:
    return {True: "yes", False: "no", None: "not measured"}.get(value, str(value)) \
        if not isinstance(value, str) else value


def _convergence_blocks(results: dict, figures: dict, used: set) -> list[tuple]:
    """The budget curves and, per configuration, where its seeds stopped and their errors."""
    read = [c for c in results["cells"] if c.get("convergence")]
    if not read:
        return []
    blocks = section("Convergence", "Every cell trained at doubling budgets until it converged "
                     "or reached the cap; after each budget its training error was measured "
                     "over the whole training split (precise BatchNorm statistics). The table "
                     "gives the mean over seeds at each budget a seed reached, the budget each "
                     "seed stopped at (* at the cap without converging) and how many seeds "
                     "failed to start.", figures, ("budget_curves",), used)
    budgets = sorted({int(k) for c in read for k in c["convergence"]["train_errors"]})
    groups: dict[str, list] = {}
    for c in read:
        groups.setdefault(cell_of(c).group, []).append(c)
    rows = []
    for group, cells in groups.items():
        row = [group, ", ".join(f"{c['convergence']['steps']:,}"
                                + ("" if c["convergence"]["converged"] else "*") for c in cells),
               f"{sum(bool(c['convergence'].get('failed_to_start')) for c in cells)}"
               f"/{len(cells)}"]
        row += [pct(mean([c["convergence"]["train_errors"].get(str(b)) for c in cells]))
                for b in budgets]
        rows.append(row)
    return blocks + [("table", ["group", "stopped at (steps, per seed)",
                                "failed to start"] + [f"{b:,} steps" for b in budgets], rows)]


def _deepest_gap(results: dict, family: str, depth: int) -> str:
    """Mean EMA-minus-precise training error (points) of a family's deepest twins."""
    residual, batch_norm = next((r, b) for key, r, b, _ in FAMILIES if key == family)
    gaps = [(c.get("errors") or {}).get("bn_statistics_gap") for c in results["cells"]
            if is_twin(c) and c["depth"] == depth and c["residual"] == residual
            and c["batch_norm"] == batch_norm]
    found = mean(gaps)
    return "—" if found is None else f"{found:+.1f}"


_KINDS = ("ema", "batch", "precise")
_KIND_WORDS = {"ema": "EMA", "batch": "batch", "precise": "precise"}


def _error_header(split: str, measure: str) -> str:
    """``train error, precise (EMA / batch)``: the measure the rules read, then the others."""
    others = [_KIND_WORDS[k] for k in _KINDS if k != measure and (split == "train" or k != "batch")]
    return f"{split} error, {_KIND_WORDS.get(measure, measure)} ({' / '.join(others)})"


def _errors_text(cell: dict, split: str, measure: str) -> str:
    """A cell's error of a split as the rules read it, then the other kinds in brackets."""
    found = (cell.get("errors") or {}).get(split)
    decided = cell.get(f"final_{split}_error")
    if not found:
        return pct(decided)
    others = [pct(found[k]) for k in _KINDS if k != measure and k in found]
    return f"{pct(decided)} ({' / '.join(others)})"


def _degradation_blocks(results: dict, figures: dict, used: set) -> list[tuple]:
    blocks = section("Degradation", "Final training error (training split, no augmentation, "
                      "precise BatchNorm statistics) and test error at each net's final budget "
                      "(where it converged, or the cap: see Convergence), mean over seeds. A "
                      "deeper net with a higher *training* error is the degradation problem: "
                      "overfitting cannot explain it.", figures, ("degradation",), used)
    twins = [c for c in results["cells"] if is_twin(c)]  # the interventions are in "Why"
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
            train = mean([c.get("final_train_error") for c in cells])
            test = mean([c.get("final_test_error") for c in cells])
            parts = [f"{pct(train)} / {pct(test)}"] if train is not None else []
            row.append("; ".join(parts + diverged) or "—")
        rows.append(row)
    blocks.append(("table", ["depth"] + [f"{title}: train / test error"
                                         for *_, title in present], rows))
    return blocks


def _gradient_blocks(results: dict, figures: dict, used: set) -> list[tuple]:
    blocks = section("Gradient flow", "Per-layer gradient norms were logged during training. "
                      "The first/last ratio compares the first conv layer's gradient with the "
                      "last conv layer's, each relative to its weights (||g||/||w||, the "
                      "fraction a step moves the layer; raw norms grow with a layer's size): "
                      "far below 1 the input side learns slowly (vanishing), far above 1 it "
                      "gets the larger updates (exploding). The flags read the relative "
                      "ratio; the table gives both.",
                      figures, ("gradient_ratio", "gradient_profiles_init", "grad_norm_heatmap"),
                      used)
    rows = [[c["name"], *(num((c.get("gradient") or {}).get(k)) for k in _GRADIENT_COLUMNS),
             (c.get("gradient") or {}).get("state", "unknown")] for c in results["cells"]]
    return blocks + [("table", ["cell", "ratio at step 0", "ratio, median over training",
                                "relative ratio (||g||/||w||) at step 0",
                                "relative ratio, median over training",
                                "log10 slope at step 0", "gradient state"], rows)]


def _lesion_blocks(lesion: dict, figures: dict, used: set) -> list[tuple]:
    blocks = [("p", "Each block of the trained deepest twins deleted in turn (the shortcut "
               "kept in the residual net). Ensembles of shallow paths (Veit et al. 2016) "
               "barely notice one missing block; a plain chain breaks.")]
    by_index: dict[int, dict] = {}
    for kind in ("residual", "plain"):
        for block in (lesion.get(kind) or {}).get("blocks", []):
            by_index.setdefault(block["index"], {"block": block["block"]})[kind] = block
    names = [(lesion.get(k) or {}).get("cell", k) for k in ("residual", "plain")]
    rows = [["intact", "—"] + [pct((lesion.get(k) or {}).get("baseline_error"))
                               for k in ("residual", "plain")]]
    rows += [[entry["block"], str(index)]
             + [pct(entry[k]["error"]) if k in entry else "not deletable"
                for k in ("residual", "plain")] for index, entry in sorted(by_index.items())]
    return blocks + figure_blocks(figures, ("lesion",), used) + [
        ("table", ["block deleted", "index"] + [f"{n}: test error" for n in names], rows)]


def _shattering_blocks(rows: list[dict], figures: dict, used: set) -> list[tuple]:
    return figure_blocks(figures, ("shattering",), used) + [
        ("table", ["cell", "depth", "when", "neighbour correlation",
                   "decorrelation length (points)"],
         [[r["cell"], str(r["depth"]), r["when"], num(r["neighbour_correlation"]),
           "not reached" if r.get("decorrelation_length") is None
           else num(r["decorrelation_length"])] for r in rows])]


def _landscape_blocks(landscape: dict, figures: dict, used: set) -> list[tuple]:
    keys = [k for k in ("curvature", "roughness", "local_minima", "sharpness")
            if any(k in entry for entry in landscape.values())]
    return figure_blocks(figures, ("landscape",), used) + [
        ("table", ["cell", "net"] + [k.replace("_", " ") for k in keys],
         [[name, "residual" if e.get("residual") else "plain"] + [num(e.get(k)) for k in keys]
          for name, e in landscape.items()])]


def _analysis_blocks(results: dict, figures: dict, used: set) -> list[tuple]:
    responses = figure_blocks(figures, ("responses",), used)
    blocks = [("h2", "Layer responses")] + (responses or [("p", NOT_MEASURED)])
    for title, key, build in (("Lesions", "lesion", _lesion_blocks),
                              ("Gradient shattering", "shattering", _shattering_blocks),
                              ("Loss landscape", "landscape", _landscape_blocks)):
        found = results.get(key)
        blocks += [("h2", title)] + (build(found, figures, used) if found
                                     else [("p", NOT_MEASURED)])
    return blocks


def _cell_rows(results: dict) -> list[list[str]]:
    measure = _measure(results)
    rows = []
    for c in results["cells"]:
        rows.append([c["name"], "residual" if c["residual"] else "plain", str(c["depth"]),
                     "yes" if c["batch_norm"] else "no", str(c["seed"]), cell_of(c).variant,
                     diverged_label(c) if c["status"] == "diverged" else c["status"],
                     "—" if c.get("params") is None else f"{c['params']:,}",
                     num(c.get("seconds")),
                     _errors_text(c, "train", measure), _errors_text(c, "test", measure),
                     num(c.get("final_loss"))])
    return rows


def _measure(results: dict) -> str:
    """The kind of error the rules read (``criteria["train_error"]``; EMA before 0.3)."""
    criteria = {**((results.get("verdict") or {}).get("criteria") or {}),
                **(results.get("criteria") or {})}
    return criteria.get("train_error", "ema")


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
            + (f" --recipe {results['recipe']}" if results.get("recipe")
               and not results.get("compared") else "")
            + (f" --steps {results['base_steps']} --max-doublings {results['max_doublings']}"
               if results.get("base_steps") else
               f" --steps {results['steps']}" if results.get("steps") else "")
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
            + (f"from {results['base_steps']:,} steps to convergence or the cap of "
               f"{results['base_steps'] * 2 ** results['max_doublings']:,} steps"
               if results.get("base_steps") else f"{results.get('steps')} steps")
            + f" of the `{results.get('recipe')}` recipe at batch "
            f"{results.get('batch_size')}" + (f", {seconds:.0f} s in all" if finite(seconds)
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
    blocks += _convergence_blocks(results, figures, used)
    blocks += _recipe_blocks(results)
    blocks += why_blocks(results, figures, used)
    blocks += shaping_blocks(results, figures, used)
    blocks += _degradation_blocks(results, figures, used)
    blocks += _gradient_blocks(results, figures, used)
    blocks += _analysis_blocks(results, figures, used)
    others = [key for key in figures if key not in used]
    if others:
        blocks += [("h2", "Other figures")] + figure_blocks(figures, others, used)
    blocks += group_blocks(results)
    blocks += [("h2", "Cells"),
               ("table", ["cell", "net", "depth", "BN", "seed", "variant", "status", "params",
                          "seconds", _error_header("train", _measure(results)),
                          _error_header("test", _measure(results)), "loss"],
                _cell_rows(results), (6, 9, 10)),  # status ("diverged at step N"), errors wrap
               ("h2", "What this measurement can and cannot show"),
               ("list", list(results.get("notes") or []) or ["No notes."]),
               ("h2", "How to reproduce"),
               ("p", "Re-running the same command in the same directory reuses the finished "
                     "cells and remakes this report; `study.json` holds the exact settings."),
               ("code", _reproduce(results))]
    return blocks + time_blocks(results)


def write_summary_csv(results: dict, path: str) -> str:
    """Writes one row per cell (``SUMMARY_COLUMNS``, then ``train_error_at_STEPS`` for every
    budget a cell was read at; the compared recipes' cells follow, then those of the
    shaping-only recipes); ``None`` is an empty field.

    Floats are written with ``str`` (they round-trip exactly), booleans as
    ``True``/``False``. Returns ``path``.
    """
    cells = list(results["cells"]) + [
        c for key in ("compared", "shaping") for part in (results.get(key) or {}).values()
        for c in part["cells"]]
    budgets = sorted({int(k) for c in cells
                      for k in (c.get("convergence") or {}).get("train_errors", {})})
    columns = SUMMARY_COLUMNS + tuple(f"train_error_at_{b}" for b in budgets)
    with tf.io.gfile.GFile(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for cell in cells:
            gradient = cell.get("gradient") or {}
            errors = cell.get("errors") or {}
            reading = cell.get("convergence") or {}
            row = {**{k: cell.get(k) for k in SUMMARY_COLUMNS}, "variant": cell_of(cell).variant,
                   **{column: (errors.get(split) or {}).get(kind)
                      for column, split, kind in _ERROR_COLUMNS},
                   "bn_statistics_gap": errors.get("bn_statistics_gap"),
                   "train_loss": errors.get("train_loss"), "steps": reading.get("steps"),
                   "converged": reading.get("converged"),
                   "failed_to_start": reading.get("failed_to_start"),
                   **{k: gradient.get(k) for k in _GRADIENT_COLUMNS},
                   "gradient_state": gradient.get("state"),
                   **{f"train_error_at_{b}": reading.get("train_errors", {}).get(str(b))
                      for b in budgets}}
            writer.writerow(["" if row[k] is None else str(row[k]) for k in columns])
    return path


def write_report(results: dict, study_dir: str, figures: dict) -> dict:
    """Writes ``report.md``, ``report.html`` and ``summary.csv`` into ``study_dir``.

    Args:
        results: the study results (with ``verdict``, ``criteria`` and ``notes``).
        study_dir: the study directory (local or ``gs://``).
        figures: ``{key: path relative to study_dir}``, e.g. from
            :func:`reskeras.study.report.figures.write_study_figures` plus
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
