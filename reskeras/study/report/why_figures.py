"""Figures of the study's *why*: interventions, per-cell measures, the identity task.

Each ``plot_*(results, path)`` takes a study's results, writes a PNG at ``path``
and returns ``path``; it raises :class:`~reskeras.study.report.figure_style.MissingData`
when the results hold nothing it draws (old results, an analysis skipped). The
conventions are :mod:`reskeras.study.report.figure_style`'s: a ``Figure`` on its own
Agg canvas, fixed pixel sizes (``why_figure_size``), plain nets dashed and
residual nets solid. Colors name the configuration: the He-initialized plain
twin red, the residual twin blue, identity init green, SkipInit purple, the
0.1x learning rate orange. Several seeds of a configuration are pooled (mean,
with their spread), as :func:`reskeras.study.cells.group_cells` pools them.

Example:

>>> from reskeras.study.report.why_figures import write_why_figures
>>> write_why_figures(results, "study/figures")["interventions"]   # doctest: +SKIP
'figures/interventions.png'
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import (FixedLocator, FuncFormatter, LogLocator, MaxNLocator,
                               NullFormatter, NullLocator)

from reskeras.analysis.plots import blank_figure, pixel_size, save_figure
from reskeras.study.cells import INTERVENTIONS, cell_of, deepest_depth
from reskeras.study.report.figure_style import (HE_COLORS, color_of, decorate, diverged_label,
                                                has_curve, line_style, number, positive,
                                                require, write_each)

# (width, height) in inches at DPI; panel figures are base + per_panel * panels wide
WHY_FIGURE_SIZES = {"interventions": {"base": 1.0, "per_panel": 5.0, "height": 4.5},
                    "identity_distance": (9.0, 4.5), "distance_travelled": (9.0, 4.5),
                    "sharpness": (7.0, 4.5), "identity_task": (7.0, 4.5)}
# the deepest BatchNorm configurations whose per-layer measures are compared: (residual, variant)
# (the identity init beside its two isometric controls far from the identity, issue 27)
MEASURED_TWINS = ((False, "he"), (False, "dirac"), (False, "diracperm"), (False, "deltaorth"),
                  (True, "he"))


def why_figure_size(name: str, panels: int = 1) -> tuple[int, int]:
    """Pixel size ``(width, height)`` of a *why* figure with ``panels`` columns.

    Example:

    >>> why_figure_size("interventions", panels=2)
    (1100, 450)
    >>> why_figure_size("sharpness")
    (700, 450)
    """
    return pixel_size(WHY_FIGURE_SIZES[name], panels)


def _new_figure(name: str, panels: int = 1):
    return blank_figure(*why_figure_size(name, panels))


def _groups(results: dict, keep) -> list[tuple]:
    """``[(cell, [entries])]`` per configuration (seeds pooled) whose entries pass ``keep``;
    He twins (plain, residual) first, then the interventions in ``INTERVENTIONS`` order."""
    found: dict[str, tuple] = {}
    for entry in results["cells"]:
        if keep(entry):
            cell = cell_of(entry)
            found.setdefault(cell.group, (cell, []))[1].append(entry)
    order = {v: i for i, v in enumerate(("he",) + INTERVENTIONS)}
    return sorted(found.values(), key=lambda item: (order.get(item[0].variant, 99),
                                                    item[0].residual, not item[0].batch_norm))


def _pool(rows: list[list[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over the rows (seeds) of a matrix with NaN gaps, NaN where empty."""
    matrix = np.array(rows, dtype=float).reshape(len(rows), -1)
    counts = np.isfinite(matrix).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, np.nansum(matrix, axis=0) / counts, np.nan)
    return mean, np.fmin.reduce(matrix, axis=0), np.fmax.reduce(matrix, axis=0)


def _seeds(entries: list[dict]) -> str:
    return f"{len(entries)} seeds" if len(entries) > 1 else f"seed {entries[0]['seed']}"


def plot_interventions(results: dict, path: str) -> str:
    """Training error against step of the deepest twins and every intervention on them.

    One panel for the BatchNorm cells and one for the cells without (each
    drawn when it holds an intervention); in each, the He-initialized plain and
    residual twins and every intervention cell of that depth: the mean over
    seeds, shaded between the lowest and highest seed when there are several.
    The PNG is ``why_figure_size("interventions", panels)`` pixels.
    """
    depth = deepest_depth(results)
    panels = []
    for batch_norm in (True, False):
        groups = _groups(results, lambda c, bn=batch_norm: c["depth"] == depth
                         and c["batch_norm"] == bn and has_curve(c))
        if any(cell.variant != "he" for cell, _ in groups):
            panels.append((batch_norm, groups))
    require(panels, f"an intervention cell at the deepest depth ({depth}) with a curve")
    figure = _new_figure("interventions", len(panels))
    axes = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for ax, (batch_norm, groups) in zip(axes, panels):
        for cell, entries in groups:
            steps = sorted({p["step"] for e in entries for p in e["curve"]})
            rows = []
            for entry in entries:
                by_step = {p["step"]: 100 * number(p.get("train_error")) for p in entry["curve"]}
                rows.append([by_step.get(step, math.nan) for step in steps])
            mean, low, high = _pool(rows)
            color = color_of(cell.residual, cell.variant)
            diverged = [e for e in entries if e.get("status") == "diverged"]
            words = (diverged_label(diverged[0]) if len(entries) == 1
                     else f"{len(diverged)} diverged") if diverged else ""
            ax.plot(steps, mean, line_style(cell.residual), color=color, linewidth=1.6,
                    marker="o" if len(steps) <= 3 else None, markersize=4,  # a point shows
                    label=f"{cell.label} ({_seeds(entries)}{', ' + words if words else ''})")
            if len(entries) > 1:
                ax.fill_between(steps, low, high, color=color, alpha=0.15, linewidth=0)
            for entry, row in zip(entries, rows):  # a diverged seed ends with an x
                finite = np.flatnonzero(np.isfinite(row))
                if entry in diverged and finite.size:
                    ax.plot(steps[finite[-1]], row[finite[-1]], "x", color=color, markersize=7,
                            markeredgewidth=2)
        ax.set_ylim(0, 100)
        decorate(ax, f"depth {depth}, {'BatchNorm' if batch_norm else 'no BatchNorm'}",
                  "training step", "training error (%)" if ax is axes[0] else None, legend=7,
                  size=10)
    figure.suptitle("Interventions on the deepest nets (mean over seeds)", fontsize=11)
    return save_figure(figure, path)


def _measured(results: dict, what: str) -> list[tuple]:
    """The deepest BatchNorm ``MEASURED_TWINS`` groups, each with its entries holding ``what``."""
    depth = deepest_depth(results)
    return [(cell, entries) for cell, entries in _groups(
        results, lambda c: c["depth"] == depth and c["batch_norm"]
        and (c["residual"], c.get("variant", "he")) in MEASURED_TWINS
        and bool((c.get("measures") or {}).get(what)))]


def _per_name(entries: list[dict], what: str, name_key: str, value_keys) -> tuple[list, dict]:
    """Names in order of first appearance, and ``{value_key: (mean, low, high)}`` over seeds."""
    names: list[str] = []
    for entry in entries:
        names += [row[name_key] for row in entry["measures"][what] if row[name_key] not in names]
    pooled = {}
    for key in value_keys:
        rows = []
        for entry in entries:
            values = {row[name_key]: number(row.get(key)) for row in entry["measures"][what]}
            rows.append([values.get(name, math.nan) for name in names])
        pooled[key] = _pool(rows)
    return names, pooled


def _index_axis(ax, names: list[str]) -> None:
    """x = position in ``names``: the names themselves when few fit, else integer indices."""
    ax.set_xlim(-0.5, len(names) - 0.5)
    if len(names) <= 8:
        ax.set_xticks(range(len(names)), names, fontsize=8)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _log_axis(ax) -> None:
    """A log y axis labelled in plain numbers (0.3, 1, 30), call it after drawing: the minor
    ticks (2 and 5) are labelled only when the data span less than two decades."""
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.yaxis.set_minor_formatter(plain if high / low < 100 else NullFormatter())
    ax.yaxis.set_tick_params(which="both", labelsize=8)
    ax.grid(True, which="minor", axis="y", alpha=0.12)


def plot_identity_distance(results: dict, path: str) -> str:
    """``||block(x) - x|| / ||x||`` per block at initialization (dotted) and after training.

    The deepest BatchNorm plain net, its identity-initialized twin, its two isometric
    starts far from the identity (permuted identity, delta-orthogonal) and the
    residual net (``MEASURED_TWINS``), mean over the seeds with measures; x is
    the block's index among the shape-preserving blocks (input side first), y
    is logarithmic. The PNG is 900 x 450 pixels.
    """
    groups = require(_measured(results, "identity"), "per-block distances from the identity")
    figure = _new_figure("identity_distance")
    ax = figure.subplots()
    names = []
    for cell, entries in groups:
        names, pooled = _per_name(entries, "identity", "block", ("init", "final"))
        x = np.arange(len(names))
        color = color_of(cell.residual, cell.variant)
        ax.plot(x, positive(pooled["init"][0]), ":", color=color, alpha=0.6, linewidth=1.4,
                marker="o", markersize=3, markerfacecolor="none")
        ax.plot(x, positive(pooled["final"][0]), line_style(cell.residual), color=color,
                marker="o", markersize=3, linewidth=1.6,
                label=f"{cell.label}, trained ({_seeds(entries)})")
    _log_axis(ax)
    _index_axis(ax, names)
    decorate(ax, "Distance of each block from the identity, ||block(x) − x|| / ||x||",
              "block (index among the blocks that keep their input's shape, input side first)",
              "relative distance from the identity", legend=None)
    handles = ax.get_legend_handles_labels()[0] + [Line2D(
        [], [], linestyle=":", color="0.45", marker="o", markersize=3, markerfacecolor="none",
        label="dotted: the same net at initialization")]
    ax.legend(handles=handles, fontsize=8)
    return save_figure(figure, path)


def plot_distance_travelled(results: dict, path: str) -> str:
    """``||w_T - w_0|| / ||w_0||`` per conv and dense layer (log y), the cells of
    :func:`plot_identity_distance`, mean over the seeds with measures.

    The PNG is 900 x 450 pixels.
    """
    groups = require(_measured(results, "travelled"), "per-layer distances travelled")
    figure = _new_figure("distance_travelled")
    ax = figure.subplots()
    names = []
    for cell, entries in groups:
        names, pooled = _per_name(entries, "travelled", "layer", ("relative",))
        mean, low, high = pooled["relative"]
        x = np.arange(len(names))
        color = color_of(cell.residual, cell.variant)
        ax.plot(x, positive(mean), line_style(cell.residual), color=color, marker="o", markersize=3,
                linewidth=1.6, label=f"{cell.label} ({_seeds(entries)})")
        if len(entries) > 1:
            ax.fill_between(x, positive(low), positive(high), color=color, alpha=0.15,
                            linewidth=0)
    _log_axis(ax)
    _index_axis(ax, names)
    decorate(ax, "How far training moved each layer, ||W_end − W_init|| / ||W_init||",
              "conv or dense layer (index, input side first)", "relative distance travelled",
              legend=8)
    return save_figure(figure, path)


def _wrapped(label: str) -> str:
    return "\n".join(textwrap.wrap(label, 16))


def plot_sharpness(results: dict, path: str) -> str:
    """Top Hessian eigenvalue of the training loss at initialization and after training.

    Grouped bars (log y), one group per configuration whose
    ``measures["sharpness"]`` is set, the mean over its measured seeds (each
    seed a black dot when there are several). The PNG is 700 x 450 pixels.
    """
    groups = [(cell, [e["measures"]["sharpness"] for e in entries]) for cell, entries in _groups(
        results, lambda c: bool((c.get("measures") or {}).get("sharpness")))]
    values = [v for _, rows in groups for row in rows for v in positive(row.values())
              if math.isfinite(v)]
    require(values, "a top Hessian eigenvalue (`measures['sharpness']`)")
    figure = _new_figure("sharpness")
    ax = figure.subplots()
    width = 0.38
    for offset, (key, title, color) in enumerate((("init", "at initialization", "#9ecae1"),
                                                  ("final", "after training", "#2c6fb0"))):
        for index, (cell, rows) in enumerate(groups):
            seeds = positive(row.get(key) for row in rows)
            x = index + (offset - 0.5) * width
            finite = seeds[np.isfinite(seeds)]
            if finite.size:
                height = float(finite.mean())
                ax.bar(x, height, width, color=color, edgecolor="0.3", linewidth=0.6,
                       label=title if index == 0 else None)
                ax.annotate(f"{height:.3g}", (x, height), xytext=(0, 2),
                            textcoords="offset points", ha="center", fontsize=7)
                if finite.size > 1:
                    ax.plot([x] * finite.size, finite, ".", color="0.1", markersize=4)
    ax.set_yscale("log")
    ax.set_ylim(min(values) / 3, max(values) * 3)
    _log_axis(ax)
    ax.set_xticks(range(len(groups)), [_wrapped(cell.label) for cell, _ in groups], fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    decorate(ax, "Sharpness: top eigenvalue of the training loss's Hessian", "",
              "top Hessian eigenvalue", legend=8)
    ax.grid(False, axis="x")
    return save_figure(figure, path)


def plot_identity_task(results: dict, path: str) -> str:
    """Relative reconstruction error ``||f(x) - x||² / ||x||²`` against stack depth.

    Plain stacks dashed red, residual stacks solid blue; lines through the mean
    over seeds after training, one dot per seed, dotted: the mean at
    initialization. Both axes logarithmic. The PNG is 700 x 450 pixels.
    """
    task = require((results.get("identity_task") or {}).get("rows"), "identity-task results")
    figure = _new_figure("identity_task")
    ax = figure.subplots()
    drawn = []
    for residual, kind in ((False, "plain"), (True, "residual")):
        rows = [r for r in task if r["kind"] == kind]
        depths = sorted({r["depth"] for r in rows})
        if not depths:
            continue
        color = HE_COLORS[residual]
        for key, style in (("initial_error", ":"), ("error", line_style(residual))):
            by_depth = [positive(r.get(key) for r in rows if r["depth"] == d) for d in depths]
            mean = [float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else math.nan
                    for v in by_depth]
            trained = key == "error"
            ax.plot(depths, mean, style, color=color, linewidth=1.6 if trained else 1.2,
                    alpha=1.0 if trained else 0.6, marker="o" if trained else None, markersize=4,
                    label=f"{kind}, {'trained' if trained else 'at initialization'}")
            if trained and any(v.size > 1 for v in by_depth):
                ax.plot([d for d, v in zip(depths, by_depth) for _ in v],
                        np.concatenate(by_depth), ".", color=color, alpha=0.5, markersize=5)
            drawn += [v for v in mean if math.isfinite(v)]
    require(drawn, "a finite identity-task error")
    depths = sorted({r["depth"] for r in task})
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(depths))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(d) for d in depths])
    _log_axis(ax)
    steps = (results.get("identity_task") or {}).get("steps")
    decorate(ax, "Identity task: learn f(x) = x" + (f" ({steps} steps)" if steps else ""),
              "blocks in the stack", "relative error ||f(x) − x||² / ||x||²", legend=None)
    handles = ax.get_legend_handles_labels()[0]
    if len({r["seed"] for r in task}) > 1:
        handles.append(Line2D([], [], linestyle="", marker=".", color="0.4", label="one seed"))
    ax.legend(handles=handles, fontsize=8)
    return save_figure(figure, path)


WHY_FIGURES = {"interventions": plot_interventions,
               "identity_distance": plot_identity_distance,
               "distance_travelled": plot_distance_travelled,
               "sharpness": plot_sharpness, "identity_task": plot_identity_task}


def write_why_figures(results: dict, figures_dir: str) -> dict[str, str]:
    """Writes every *why* figure the results allow into ``figures_dir``.

    Returns:
        ``{key: "figures/KEY.png"}`` for the figures written (keys of
        ``WHY_FIGURES``, in that order); a figure without data is left out.
    """
    return write_each(WHY_FIGURES.items(), results, figures_dir)


__all__ = ["MEASURED_TWINS", "WHY_FIGURES", "WHY_FIGURE_SIZES", "plot_distance_travelled",
           "plot_identity_distance", "plot_identity_task", "plot_interventions",
           "plot_sharpness", "why_figure_size", "write_why_figures"]
