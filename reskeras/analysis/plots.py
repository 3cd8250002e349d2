"""Figures of per-layer gradient norms and layer responses, one PNG per question.

Every function takes runs (dicts from :func:`load_run`, or run directories),
returns a ``matplotlib.figure.Figure`` drawn on an Agg canvas, and writes a PNG
when given a ``path``. No pyplot: nothing changes matplotlib's global state, so
the functions are safe in notebooks, tests and servers alike. Sizes are fixed
(``FIGURE_SIZES``, inches at ``DPI``), so a figure of N runs is always the same
number of pixels.

Example:

>>> from reskeras.analysis import plot_grad_norm_heatmap
>>> fig = plot_grad_norm_heatmap(["runs/plain20", "runs/resnet20"],
...                              "figures/grad_norm_heatmap.png")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
import tensorflow as tf
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reskeras import rundir
from reskeras.analysis.records import (GRAD_NORMS, activation_series, grad_norm_matrix,
                                       has_kind, load_run, nearest_steps)

DPI = 100
# (width, height) in inches; "per_run" figures are base + per_run * runs wide
FIGURE_SIZES = {
    "grad_norm_heatmap": {"base": 1.0, "per_run": 5.5, "height": 6.0},
    "grad_norm_profile": {"base": 1.0, "per_run": 5.0, "height": 4.5},
    "layer_responses": (8.0, 7.0),
    "residual_ratio": (7.0, 4.5),
}
MAX_LAYER_TICKS = 24  # more layer names than this on one axis overlap at 7 pt
_MISSING_COLOR = "0.85"


def figure_size(name: str, runs: int = 1) -> tuple[int, int]:
    """Pixel size ``(width, height)`` of a figure for ``runs`` runs.

    Example:

    >>> figure_size("grad_norm_heatmap", runs=2)
    (1200, 600)
    """
    return pixel_size(FIGURE_SIZES[name], runs)


def pixel_size(size, count: int = 1) -> tuple[int, int]:
    """``(width, height)`` in pixels of a size-table entry: inches, or a dict growing with
    ``count`` panels (``{"base", "per_run" or "per_panel", "height"}``)."""
    if isinstance(size, dict):
        size = (size["base"] + size.get("per_run", size.get("per_panel", 0)) * count,
                size["height"])
    return round(size[0] * DPI), round(size[1] * DPI)


def blank_figure(width: int, height: int) -> Figure:
    """A ``width`` x ``height`` pixel figure on its own Agg canvas (no pyplot state)."""
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _new_figure(name: str, runs: int = 1) -> Figure:
    return blank_figure(*figure_size(name, runs))


def save_figure(figure: Figure, path: str) -> str:
    """Writes ``figure`` as a PNG of exactly its pixel size (local or ``gs://``)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())
    return path


def _as_runs(runs) -> list[dict]:
    if isinstance(runs, (str, dict)):
        runs = [runs]
    return [load_run(run) if isinstance(run, str) else run for run in runs]


def _finish(figure: Figure, path: str | None) -> Figure:
    if path is not None:
        save_figure(figure, path)
    return figure


def _line_style(run: dict) -> str:
    # as in the paper's figures: plain nets dashed, residual nets solid
    return "--" if run.get("residual") is False else "-"


def _thinned_layer_ticks(axis, names: list[str]) -> None:
    stride = max(1, math.ceil(len(names) / MAX_LAYER_TICKS))
    positions = list(range(0, len(names), stride))
    axis.set_ticks(positions, [names[i] for i in positions], fontsize=7)


def _require(runs: list[dict], what: str, has) -> list[dict]:
    kept = [run for run in runs if has(run)]
    if not kept:
        raise ValueError(f"`runs` must include a run with {what}. "
                         f"Received: {[run['run_dir'] for run in runs]}")
    return kept


def plot_grad_norm_heatmap(runs, path: str | None = None) -> Figure:
    """log10 gradient norm of every layer (rows, input at the top) at every logged step.

    One panel per run, side by side in the order given (plain twin next to its
    residual twin), one color scale shared by all panels. Gray cells have no
    finite value (``null``, zero, or not logged). Runs without gradient records
    are left out.

    Args:
        runs: run dicts from :func:`load_run` or run directories.
        path: where to write the PNG; ``None`` only returns the figure.

    Returns:
        The figure, ``figure_size("grad_norm_heatmap", panels)`` pixels.

    Example:

    >>> plot_grad_norm_heatmap(["runs/plain20", "runs/resnet20"], "heatmap.png")  # doctest: +SKIP
    """
    runs = _require(_as_runs(runs), GRAD_NORMS, lambda run: run["grad_norms"])
    matrices = [grad_norm_matrix(run["grad_norms"]) for run in runs]
    finite = np.concatenate([a[np.isfinite(a)] for _, _, a in matrices] + [np.zeros(0)])
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (-1.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    cmap = colormaps["viridis"].with_extremes(bad=_MISSING_COLOR)
    figure = _new_figure("grad_norm_heatmap", len(runs))
    axes = figure.subplots(1, len(runs), squeeze=False)[0]
    for ax, run, (names, steps, array) in zip(axes, runs, matrices):
        step_edges = _edges(steps)
        mesh = ax.pcolormesh(step_edges, np.arange(len(names) + 1) - 0.5,
                             np.ma.masked_invalid(array), cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_ylim(len(names) - 0.5, -0.5)  # input layer at the top
        _thinned_layer_ticks(ax.yaxis, names)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.set_xlabel("training step")
        ax.set_title(run["label"], fontsize=10)
    axes[0].set_ylabel("layer (input at top)")
    figure.colorbar(mesh, ax=list(axes), label="log10 gradient norm", fraction=0.05)
    figure.suptitle("Per-layer gradient norm (log10)", fontsize=11)
    return _finish(figure, path)


def _edges(steps: list[int]) -> np.ndarray:
    """Cell edges around each logged step, halfway to its neighbours."""
    centers = np.asarray(steps, dtype=float)
    if centers.size == 1:
        return np.array([centers[0] - 0.5, centers[0] + 0.5])
    middles = (centers[1:] + centers[:-1]) / 2
    return np.concatenate([[2 * centers[0] - middles[0]], middles,
                           [2 * centers[-1] - middles[-1]]])


def plot_grad_norm_profile(runs, path: str | None = None,
                           steps: list[int] | None = None) -> Figure:
    """Gradient norm (log scale) of conv and dense layers against depth, one panel per run.

    BatchNorm layers are left out here (their gamma/beta gradients sit on another
    scale and would zigzag the curve); the heatmap shows every layer.

    Args:
        runs: run dicts from :func:`load_run` or run directories.
        path: where to write the PNG; ``None`` only returns the figure.
        steps: steps to draw, each replaced by the nearest logged step of each run;
            default the first, middle and last logged steps.

    Returns:
        The figure, ``figure_size("grad_norm_profile", panels)`` pixels; panels
        share the y axis. Non-finite and zero norms leave gaps.

    Example:

    >>> plot_grad_norm_profile("runs/r20", "profile.png", steps=[0, 1000])  # doctest: +SKIP
    """
    runs = _require(_as_runs(runs), GRAD_NORMS, lambda run: run["grad_norms"])
    figure = _new_figure("grad_norm_profile", len(runs))
    axes = figure.subplots(1, len(runs), squeeze=False, sharey=True)[0]
    for ax, run in zip(axes, runs):
        names, logged, array = grad_norm_matrix(run["grad_norms"], log10=False,
                                                kernels_only=True)
        chosen = nearest_steps(logged, steps)
        colors = colormaps["plasma"](np.linspace(0.0, 0.8, max(2, len(chosen))))
        for color, step in zip(colors, chosen):
            values = array[:, logged.index(step)]
            values = np.where(values > 0, values, np.nan)  # log axis: gaps, not errors
            ax.plot(np.arange(len(names)), values, marker="o", markersize=3, linewidth=1.2,
                    color=color, label=f"step {step}")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("conv/dense layer (0 = input side)")
        ax.set_title(run["label"], fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("gradient norm")
    return _finish(figure, path)


def plot_layer_responses(runs, path: str | None = None) -> Figure:
    """Std of layer responses, as in Fig. 7 of He et al. (2016), at each run's last step.

    Top: the std of each 3x3 conv output after BatchNorm, by layer index. Bottom:
    the same values sorted by magnitude, descending. One curve per run; plain
    runs dashed, residual runs solid. Runs without ``response`` records are left out.

    Args:
        runs: run dicts from :func:`load_run` or run directories.
        path: where to write the PNG; ``None`` only returns the figure.

    Example:

    >>> plot_layer_responses(["runs/plain20", "runs/resnet20"], "responses.png")  # doctest: +SKIP
    """
    runs = _require(_as_runs(runs), "activation records of kind 'response'",
                    lambda run: has_kind(run, "response"))
    figure = _new_figure("layer_responses")
    top, bottom = figure.subplots(2, 1)
    for run in runs:
        step, _, values = activation_series(run["activations"], "response")
        label = f"{run['label']}, step {step}"
        x = np.arange(1, len(values) + 1)
        top.plot(x, values, _line_style(run), marker="o", markersize=3, label=label)
        ranked = np.sort(values[np.isfinite(values)])[::-1]
        bottom.plot(np.arange(1, len(ranked) + 1), ranked, _line_style(run), marker="o",
                    markersize=3, label=label)
    top.set_xlabel("layer index (original order, 1 = input side)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    for ax in (top, bottom):
        ax.set_ylabel("std")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    top.set_title("Std of 3x3 conv responses after BatchNorm (paper Fig. 7)", fontsize=11)
    return _finish(figure, path)


def plot_residual_ratio(runs, path: str | None = None) -> Figure:
    """``std(F(x)) / std(x)`` of every residual block at each run's last logged step.

    Small values mean the residual functions stay close to identity. Runs
    without ``residual_ratio`` records (plain nets) are left out.

    Args:
        runs: run dicts from :func:`load_run` or run directories.
        path: where to write the PNG; ``None`` only returns the figure.

    Example:

    >>> plot_residual_ratio("runs/resnet20", "residual_ratio.png")  # doctest: +SKIP
    """
    runs = _require(_as_runs(runs), "activation records of kind 'residual_ratio'",
                    lambda run: has_kind(run, "residual_ratio"))
    figure = _new_figure("residual_ratio")
    ax = figure.subplots()
    block_names = []
    for run in runs:
        step, blocks, values = activation_series(run["activations"], "residual_ratio")
        ax.plot(np.arange(len(values)), values, _line_style(run), marker="o", markersize=4,
                label=f"{run['label']}, step {step}")
        block_names.append(blocks)
    if all(blocks == block_names[0] for blocks in block_names):
        _thinned_layer_ticks(ax.xaxis, block_names[0])
        for label in ax.get_xticklabels():
            label.set(rotation=40, horizontalalignment="right", rotation_mode="anchor")
        ax.set_xlabel("residual block (input side first)")
    else:  # different depths: names of one run would mislabel the others
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("residual block index (0 = input side)")
    ax.set_ylabel("std(F(x)) / std(x)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Residual branch size relative to its input", fontsize=11)
    return _finish(figure, path)


def write_figures(runs, out_dir: str,
                  steps: list[int] | None = None) -> tuple[list[str], list[str]]:
    """Writes every figure the runs' records allow into ``out_dir``.

    Args:
        runs: run dicts from :func:`load_run` or run directories.
        out_dir: directory for the PNGs, created when there is a figure to write.
        steps: steps for the gradient-norm profile (see :func:`plot_grad_norm_profile`).

    Returns:
        ``(written, skipped)``: paths of the PNGs written, and one sentence for each
        figure or run left out and why.

    Example:

    >>> written, skipped = write_figures(["runs/r20"], "runs/r20/figures")  # doctest: +SKIP
    """
    runs = _as_runs(runs)
    plan = [
        ("grad_norm_heatmap", plot_grad_norm_heatmap, "grad_norms", GRAD_NORMS),
        ("grad_norm_profile", lambda r, p: plot_grad_norm_profile(r, p, steps), "grad_norms",
         GRAD_NORMS),
        ("layer_responses", plot_layer_responses, "response",
         "activation records of kind 'response'"),
        ("residual_ratio", plot_residual_ratio, "residual_ratio",
         "activation records of kind 'residual_ratio' (residual nets only)"),
    ]
    written, skipped = [], []
    for name, plot, needs, what in plan:
        def has(run, needs=needs):
            return bool(run["grad_norms"]) if needs == "grad_norms" else has_kind(run, needs)
        with_data = [run for run in runs if has(run)]
        if not with_data:
            skipped.append(f"{name}.png: no run has {what}")
            continue
        left_out = [os.path.basename(os.path.normpath(r["run_dir"])) for r in runs
                    if not has(r) and needs != "residual_ratio"]
        if left_out:
            skipped.append(f"{name}.png leaves out {', '.join(left_out)}: no {what}")
        tf.io.gfile.makedirs(out_dir)  # only once there is something to write
        file = rundir.path(out_dir, f"{name}.png")
        plot(with_data, file)
        written.append(file)
    return written, skipped
