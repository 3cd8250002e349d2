"""The budget curves: full-pass training error at every budget a cell was read at.

Each cell trains at doubling budgets until it converges or reaches the cap
(:mod:`reskeras.study.judgment.convergence`); after each budget its training error is
measured over the whole training split with precise BatchNorm statistics. This
figure draws those readings against steps on a log axis for the shallowest and
deepest twins and every intervention, one panel with BatchNorm and one without:
the mean over seeds, shaded between the lowest and highest seed, and each seed's
last reading marked ``o`` where it converged and ``x`` where it hit the cap.

Example:

>>> budget_figure_size(2)
(1300, 480)
"""

from __future__ import annotations

import numpy as np

from reskeras.analysis.plots import blank_figure, pixel_size, save_figure
from reskeras.study.cells import INTERVENTIONS, cell_of
from reskeras.study.report.figure_style import (color_of, decorate, line_style, number, require,
                                                write_each)

_SIZE = {"base": 0.5, "per_panel": 6.25, "height": 4.8}


def budget_figure_size(panels: int) -> tuple[int, int]:
    """Pixel size of the budget-curve figure with ``panels`` panels."""
    return pixel_size(_SIZE, panels)


def _drawn(results: dict, batch_norm: bool) -> list[tuple]:
    """``[(cell, entries, shallow)]``: the shallowest and deepest twins and the
    interventions of one BN setting, among cells read at budgets."""
    read = [c for c in results["cells"]
            if c.get("convergence", {}).get("train_errors") and c["batch_norm"] == batch_norm]
    if not read:
        return []
    depths = sorted({c["depth"] for c in read})
    groups: dict[str, tuple] = {}
    for entry in read:
        cell = cell_of(entry)
        if cell.variant == "he" and cell.depth not in (depths[0], depths[-1]):
            continue
        groups.setdefault(cell.group, (cell, [], cell.depth == depths[0] != depths[-1]))[1] \
            .append(entry)
    order = {v: i for i, v in enumerate(("he",) + INTERVENTIONS)}
    return sorted(groups.values(), key=lambda g: (not g[2], order.get(g[0].variant, 99),
                                                  g[0].residual))


def plot_budget_curves(results: dict, path: str) -> str:
    """Writes the budget-curve figure (``budget_figure_size(panels)`` pixels)."""
    panels = [(bn, groups) for bn in (True, False) if (groups := _drawn(results, bn))]
    require(panels, "cells read at doubling budgets (convergence)")
    figure = blank_figure(*budget_figure_size(len(panels)))
    axes = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    cap = None
    for ax, (batch_norm, groups) in zip(axes, panels):
        for cell, entries, shallow in groups:
            steps = sorted({int(k) for e in entries for k in e["convergence"]["train_errors"]})
            rows = [[100 * number(e["convergence"]["train_errors"].get(str(s))) for s in steps]
                    for e in entries]
            matrix = np.array(rows, dtype=float)
            counts = np.isfinite(matrix).sum(axis=0)
            with np.errstate(invalid="ignore"):
                mean = np.where(counts > 0, np.nansum(matrix, axis=0) / np.maximum(counts, 1),
                                np.nan)
            color = color_of(cell.residual, cell.variant)
            capped = sum(not e["convergence"]["converged"] for e in entries)
            label = (f"{cell.label} ({len(entries)} seed{'s' if len(entries) > 1 else ''}"
                     + (f", {capped} at the cap" if capped else "") + ")")
            ax.plot(steps, mean, line_style(cell.residual), color=color,
                    linewidth=1.0 if shallow else 1.8, alpha=0.55 if shallow else 1.0,
                    label=label)
            if len(entries) > 1:
                ax.fill_between(steps, np.fmin.reduce(matrix, axis=0),
                                np.fmax.reduce(matrix, axis=0), color=color, alpha=0.12,
                                linewidth=0)
            for entry, row in zip(entries, rows):
                reading = entry["convergence"]
                cap = reading.get("cap", cap)
                last = str(reading["steps"])
                if last in reading["train_errors"]:
                    ax.plot(reading["steps"], 100 * number(reading["train_errors"][last]),
                            "o" if reading["converged"] else "x", color=color, markersize=6,
                            markeredgewidth=2, fillstyle="none" if reading["converged"] else None)
        ax.set_xscale("log", base=2)
        ticks = sorted({int(k) for _, entries, _ in groups for e in entries
                        for k in e["convergence"]["train_errors"]})
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
        ax.set_ylim(0, 100)
        decorate(ax, "BatchNorm" if batch_norm else "no BatchNorm", "optimizer steps (log)",
                 "training error, full pass (%)" if ax is axes[0] else None, legend=7, size=10)
    figure.suptitle("Training error at each budget (mean over seeds; o converged, x hit the "
                    + (f"{cap:,}-step " if cap else "") + "cap)", fontsize=11)
    return save_figure(figure, path)


BUDGET_FIGURES = {"budget_curves": plot_budget_curves}


def write_budget_figures(results: dict, figures_dir: str) -> dict[str, str]:
    """Writes the budget-curve figure when the results hold readings at budgets."""
    return write_each(BUDGET_FIGURES.items(), results, figures_dir)


__all__ = ["BUDGET_FIGURES", "budget_figure_size", "plot_budget_curves",
           "write_budget_figures"]
