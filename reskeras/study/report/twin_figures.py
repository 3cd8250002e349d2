"""Figures of the study's He-initialized twins, drawn from the study's ``results`` dict.

Each ``plot_*(results, path)`` takes the results (the JSON-ready dict of
:func:`reskeras.study.run.run_study`), writes a PNG at ``path`` and returns
``path``; it raises :class:`~reskeras.study.report.figure_style.MissingData` (a
``ValueError``) when the results lack its data. As in :mod:`reskeras.analysis.plots`: a
``Figure`` on an Agg canvas of its own (no pyplot), fixed pixel sizes
(``study_figure_size``), plain nets dashed and residual nets solid, one color per depth,
BatchNorm and no-BatchNorm cells in separate panels. Diverged cells are drawn up to their last logged point and
labelled ``diverged at step N``; missing numbers (``None``) leave gaps.

Example:

>>> from reskeras.study.report.twin_figures import write_twin_figures
>>> figures = write_twin_figures(results, "study/figures")    # doctest: +SKIP
>>> figures["degradation"]                                    # doctest: +SKIP
'figures/degradation.png'
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reskeras.analysis.plots import blank_figure, pixel_size, save_figure
from reskeras.analysis.records import is_batch_norm
from reskeras.study.cells import is_twin
from reskeras.study.report.figure_style import (decorate, diverged_label, has_curve, line_style,
                                                number, positive, require, write_each)

# (width, height) in inches at DPI; panel figures are base + per_panel * panels wide
STUDY_FIGURE_SIZES = {"degradation": {"base": 1.0, "per_panel": 3.5, "height": 7.0},
                      "gradient_profiles_init": {"base": 1.0, "per_panel": 3.5, "height": 4.5},
                      "gradient_ratio": (11.0, 4.5), "lesion": (8.0, 4.5),
                      "shattering": (7.0, 4.5), "landscape": (7.0, 4.5)}
# (key, residual, batch_norm, panel title), in the order of the panels
FAMILIES = (("plain", False, True, "plain, BatchNorm"),
            ("residual", True, True, "residual, BatchNorm"),
            ("plain_no_bn", False, False, "plain, no BatchNorm"),
            ("residual_no_bn", True, False, "residual, no BatchNorm"))
# the ratio of relative norms ||g||/||w||, which the flags read (its neutral value is 1)
_RATIO_KEYS = {"relative_first_last_ratio_init": "at initialization (step 0)",
               "relative_first_last_ratio_median": "median over the logged steps"}


def study_figure_size(name: str, panels: int = 1) -> tuple[int, int]:
    """Pixel size ``(width, height)`` of a study figure with ``panels`` columns.

    Example:

    >>> study_figure_size("degradation", panels=4)
    (1500, 700)
    >>> study_figure_size("gradient_ratio")
    (1100, 450)
    """
    return pixel_size(STUDY_FIGURE_SIZES[name], panels)


def _new_figure(name: str, panels: int = 1) -> Figure:
    return blank_figure(*study_figure_size(name, panels))


def depth_colors(results: dict) -> dict[int, tuple]:
    """One color per depth of the study, shallow (dark) to deep (light), shared by figures."""
    depths = sorted({cell["depth"] for cell in results["cells"]})
    colors = colormaps["plasma"](np.linspace(0.0, 0.8, max(2, len(depths))))
    return {depth: tuple(colors[i]) for i, depth in enumerate(depths)}


def _family_cells(results: dict, residual: bool, batch_norm: bool) -> list[dict]:
    return sorted((c for c in results["cells"]
                   if c["residual"] == residual and c["batch_norm"] == batch_norm),
                  key=lambda c: (c["depth"], c["seed"]))


def _cell_label(cell: dict, labelled: set) -> str | None:
    """A legend entry once per (family, depth); diverged seeds get their own."""
    kind = "resnet" if cell["residual"] else "plain"
    if cell["status"] == "diverged":
        return f"{kind}-{cell['depth']} s{cell['seed']} ({diverged_label(cell)})"
    key = (cell["residual"], cell["batch_norm"], cell["depth"])
    if key in labelled:
        return None
    labelled.add(key)
    return f"{kind}-{cell['depth']}"


def _panels(results: dict, has) -> list[tuple[str, list[dict]]]:
    """``[(title, cells)]`` of the families with data, in ``FAMILIES`` order."""
    panels = [(title, [c for c in _family_cells(results, residual, batch_norm) if has(c)])
              for _, residual, batch_norm, title in FAMILIES]
    return [(title, cells) for title, cells in panels if cells]


def _has_profile(cell: dict) -> bool:
    return bool(_kernel_profile(cell)[1].size)


def plot_degradation(results: dict, path: str) -> str:
    """Training error (top) and loss (bottom, log) against step, as Fig. 6 of He et al. (2015).

    One column per family with curves (plain BN, residual BN, plain no-BN,
    residual no-BN), one color per depth; rows share their y axis. A diverged
    cell ends with an ``x`` at its last finite point.
    The PNG is ``study_figure_size("degradation", columns)`` pixels.
    """
    panels = require(_panels(results, has_curve), "a cell with a training curve")
    colors = depth_colors(results)
    figure = _new_figure("degradation", len(panels))
    axes = figure.subplots(2, len(panels), squeeze=False, sharex=True, sharey="row")
    for column, (title, cells) in enumerate(panels):
        top, bottom = axes[0, column], axes[1, column]
        labelled: set = set()
        for cell in cells:
            steps = [p["step"] for p in cell["curve"]]
            error = np.array([number(p.get("train_error")) for p in cell["curve"]]) * 100
            loss = positive(p.get("loss") for p in cell["curve"])
            style = dict(color=colors[cell["depth"]], linestyle=line_style(cell["residual"]),
                         linewidth=1.4)
            top.plot(steps, error, label=_cell_label(cell, labelled), **style)
            bottom.plot(steps, loss, **style)
            if cell["status"] == "diverged" and steps:
                for ax, values in ((top, error), (bottom, loss)):
                    finite = np.flatnonzero(np.isfinite(values))
                    if finite.size:
                        ax.plot(steps[finite[-1]], values[finite[-1]], "x", markersize=8,
                                markeredgewidth=2, color=colors[cell["depth"]])
        decorate(top, title, "", "training error (%)" if column == 0 else None, legend=7,
                  size=10)
        bottom.set_yscale("log")
        decorate(bottom, "", "training step", "training loss" if column == 0 else None,
                  legend=None)
    axes[0, 0].set_ylim(bottom=0)
    figure.suptitle("Degradation: training error of plain (dashed) and residual (solid) nets "
                    "by depth", fontsize=11)
    return save_figure(figure, path)


def _by_depth(pairs, positive: bool = False) -> dict[int, list[float]]:
    """``{depth: [values]}`` of ``(depth, value)`` pairs, keeping finite (positive) values."""
    points: dict[int, list[float]] = {}
    for depth, value in pairs:
        value = number(value)
        if math.isfinite(value) and (value > 0 or not positive):
            points.setdefault(depth, []).append(value)
    return points


def _plot_by_depth(ax, points: dict[int, list[float]], linestyle: str, **style) -> None:
    """The median over seeds against depth; each seed a dot when there are several."""
    x = sorted(points)
    ax.plot(x, [float(np.median(points[d])) for d in x], linestyle, **style)
    if any(len(values) > 1 for values in points.values()):
        ax.plot([d for d in x for _ in points[d]], [v for d in x for v in points[d]], ".",
                color=style.get("color"), alpha=0.5, markersize=4)


def plot_gradient_ratio(results: dict, path: str) -> str:
    """First/last conv ratio of relative gradient norms ``||g||/||w||`` against depth: at
    step 0, and median over training (the ratio the flags read).

    One line per family (plain dashed, residual solid; BatchNorm blue, no
    BatchNorm red) through the median over seeds, each seed a small dot. The
    shaded bands are the criteria of ``results["criteria"]``: below
    ``vanishing_ratio`` the gradients vanish, above ``exploding_ratio`` they explode.
    The PNG is 1100 x 450 pixels.
    """
    criteria = results.get("criteria") or {}
    vanishing = float(criteria.get("vanishing_ratio", 0.01))
    exploding = float(criteria.get("exploding_ratio", 100.0))
    found = {key: {family: _by_depth(((c["depth"], (c.get("gradient") or {}).get(key))
                                      for c in _family_cells(results, residual, batch_norm)),
                                     positive=True)
                   for family, residual, batch_norm, _ in FAMILIES} for key in _RATIO_KEYS}
    values = require([v for per_family in found.values() for points in per_family.values()
                       for seeds in points.values() for v in seeds],
                      "a finite first/last relative gradient-norm ratio")
    low = min(values + [vanishing]) / 5
    high = max(values + [exploding]) * 5
    figure = _new_figure("gradient_ratio")
    axes = figure.subplots(1, 2, sharey=True)
    depths = sorted({cell["depth"] for cell in results["cells"]})
    for ax, (key, title) in zip(axes, _RATIO_KEYS.items()):
        ax.axhspan(low, vanishing, color="tab:blue", alpha=0.08,
                   label=f"vanishing (< {vanishing:g})")
        ax.axhspan(exploding, high, color="tab:red", alpha=0.08,
                   label=f"exploding (> {exploding:g})")
        ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle=":")
        for family, residual, batch_norm, label in FAMILIES:
            if found[key][family]:
                _plot_by_depth(ax, found[key][family], line_style(residual), linewidth=1.6,
                               marker="o" if residual else "s", label=label,
                               color="tab:blue" if batch_norm else "tab:red")
        ax.set(yscale="log", ylim=(low, high), xticks=depths)
        decorate(ax, title, "depth (layers)", None if key != "relative_first_last_ratio_init"
                 else "first / last conv ||g|| / ||w||", legend=8 if ax is axes[1] else None,
                 size=10)
    figure.suptitle("Gradient flow: input-side against output-side relative gradient norm "
                    "||g|| / ||w||", fontsize=11)
    return save_figure(figure, path)


def _kernel_profile(cell: dict) -> tuple[np.ndarray, np.ndarray]:
    """Relative depth (0 = input, 1 = output) and gradient norm of the conv and dense layers."""
    profile = [p for p in (cell.get("gradient") or {}).get("profile_init") or []
               if not is_batch_norm(str(p["layer"]))]  # BN gradients sit on another scale
    profile.sort(key=lambda p: p["index"])
    norms = positive(p["grad_norm"] for p in profile)
    if not np.isfinite(norms).any():
        return np.zeros(0), np.zeros(0)
    return np.linspace(0.0, 1.0, len(norms)) if len(norms) > 1 else np.zeros(1), norms


def plot_gradient_profiles_init(results: dict, path: str) -> str:
    """Gradient norm of every conv and dense layer at initialization against relative depth.

    Panels as in :func:`plot_degradation`, one curve per cell (one color per
    depth); the y axis (log) is shared. A curve falling towards the input
    (left) is the vanishing pattern; rising, the exploding one.
    The PNG is ``study_figure_size("gradient_profiles_init", columns)`` pixels.
    """
    panels = require(_panels(results, _has_profile), "a gradient-norm profile at step 0")
    colors = depth_colors(results)
    figure = _new_figure("gradient_profiles_init", len(panels))
    axes = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for ax, (title, cells) in zip(axes, panels):
        labelled: set = set()
        for cell in cells:
            x, norms = _kernel_profile(cell)
            ax.plot(x, norms, line_style(cell["residual"]), color=colors[cell["depth"]],
                    marker="o", markersize=2, linewidth=1.2, label=_cell_label(cell, labelled))
        ax.set_yscale("log")
        decorate(ax, title, "relative depth (0 = input, 1 = output)",
                  "gradient norm at initialization" if ax is axes[0] else None, legend=7,
                  size=10)
    return save_figure(figure, path)


def plot_lesion(results: dict, path: str) -> str:
    """Test error after deleting each block of the deepest residual and plain BN twins.

    Blocks are placed by their index among all blocks of the net, so both twins
    share the x axis (a plain net can lose only the blocks whose output has
    the shape of their input). Dotted lines: the intact nets' test error.
    The PNG is 800 x 450 pixels.
    """
    lesion = require(results.get("lesion"), "lesion results")
    figure = _new_figure("lesion")
    ax = figure.subplots()
    for kind, color in (("residual", "tab:blue"), ("plain", "tab:red")):
        entry = lesion.get(kind)
        if not entry:
            continue
        blocks = sorted(entry["blocks"], key=lambda b: b["index"])
        ax.plot([b["index"] for b in blocks], [100 * number(b["error"]) for b in blocks],
                line_style(kind == "residual"), marker="o" if kind == "residual" else "s",
                color=color, markersize=4, label=f"{entry['cell']}, one block deleted")
        baseline = 100 * number(entry["baseline_error"])
        ax.axhline(baseline, color=color, linestyle=":", linewidth=1.2,
                   label=f"{entry['cell']} intact: {baseline:.1f}%")
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    decorate(ax, "Lesions: test error after deleting one block (Veit et al. 2016)",
              "deleted block (index among all blocks, input side first)", "test error (%)")
    return save_figure(figure, path)


def plot_shattering(results: dict, path: str) -> str:
    """Correlation of input gradients at neighbouring points against depth (Balduzzi et al. 2017).

    Plain dashed, residual solid; at initialization and after training in two
    colors; the median over seeds. Shattered gradients have correlations near zero.
    The PNG is 700 x 450 pixels.
    """
    rows = require(results.get("shattering"), "shattering results")
    figure = _new_figure("shattering")
    ax = figure.subplots()
    for residual in (False, True):
        for when, color in (("init", "tab:green"), ("trained", "tab:purple")):
            points = _by_depth((row["depth"], row.get("neighbour_correlation")) for row in rows
                               if bool(row["residual"]) == residual and row["when"] == when)
            if points:
                _plot_by_depth(ax, points, line_style(residual), marker="o" if residual else "s",
                               color=color, label=f"{'residual' if residual else 'plain'}, "
                               f"{'at initialization' if when == 'init' else 'trained'}")
    ax.set_xticks(sorted({row["depth"] for row in rows}))
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.05)
    decorate(ax, "Shattering: correlation of input gradients at neighbouring inputs",
              "depth (layers)", "neighbour gradient correlation")
    return save_figure(figure, path)


def plot_landscape(results: dict, path: str) -> str:
    """Training loss (log) along one filter-normalized random direction (Li et al. 2018).

    One curve per entry of ``results["landscape"]``; the PNG is 700 x 450 pixels.
    """
    landscape = require(results.get("landscape"), "loss-landscape results")
    figure = _new_figure("landscape")
    ax = figure.subplots()
    colors = {False: "tab:red", True: "tab:blue"}
    for name, entry in landscape.items():
        residual = bool(entry.get("residual", not name.startswith("plain")))
        curvature = number(entry.get("curvature"))
        label = name + (f" (curvature {curvature:.3g})" if math.isfinite(curvature) else "")
        ax.plot(entry["alphas"], positive(entry["loss"]), line_style(residual), marker="o",
                markersize=3, color=colors[residual], label=label)
    ax.set_yscale("log")
    decorate(ax, "Loss landscape: a 1D slice around the trained weights",
              "alpha (step along the direction, 0 = trained weights)", "training loss")
    return save_figure(figure, path)


TWIN_FIGURES = {"degradation": plot_degradation, "gradient_ratio": plot_gradient_ratio,
                "gradient_profiles_init": plot_gradient_profiles_init, "lesion": plot_lesion,
                "shattering": plot_shattering, "landscape": plot_landscape}


def write_twin_figures(results: dict, figures_dir: str) -> dict[str, str]:
    """Writes every figure of the He-initialized twins that the results allow.

    Only the twins are drawn (a cell's ``variant`` ``"he"``, or none); the
    interventions are :mod:`reskeras.study.report.why_figures`'.

    Returns:
        ``{key: "figures/KEY.png"}`` for the figures written (keys of
        ``TWIN_FIGURES``, in that order); a figure without data is left out.
    """
    twins = {**results, "cells": [c for c in results["cells"] if is_twin(c)]}
    return write_each(TWIN_FIGURES.items(), twins, figures_dir)
