"""``leaderboard.png``: the objective against depth and width.

Left: the best score of each (depth, width, residual) over depth, one line per
width (plain nets dashed, residual solid, as in He et al. 2015). Right: the
best score per depth x width cell (residual and plain together), annotated;
cells whose samples were all rejected by the budget or failed show "x". The
figure is drawn on its own Agg canvas (no pyplot state) and has a fixed size.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps

from reskeras.analysis.plots import blank_figure, save_figure
from reskeras.specs import ArchSpec

SIZE = (1100, 450)  # pixels


def _cells(board: dict):
    better = max if board["objective"]["direction"] == "max" else min
    best, failed = {}, set()
    for entry in board["trials"]:
        spec = ArchSpec.from_config(entry["arch"])
        key = (spec.depth, spec.widths[0], spec.residual)
        if entry["status"] == "COMPLETED" and entry["score"] is not None:
            best[key] = better(best.get(key, entry["score"]), entry["score"])
        elif entry["status"] in ("FAILED", "INVALID"):
            failed.add(key)
    return best, failed


def plot_leaderboard(board: dict, path: str | None = None):
    """Draws (and with ``path``, writes) the figure of a leaderboard dict."""
    figure = blank_figure(*SIZE)
    left, right = figure.subplots(1, 2, width_ratios=(1.2, 1.0))
    objective = board["objective"]["name"]
    best, failed = _cells(board)
    depths = sorted({k[0] for k in best} | {k[0] for k in failed})
    widths = sorted({k[1] for k in best} | {k[1] for k in failed})
    colors = colormaps["viridis"]
    for index, width in enumerate(widths):
        color = colors(index / max(1, len(widths) - 1) * 0.9)
        for residual in (True, False):
            points = sorted((d, s) for (d, w, r), s in best.items() if w == width and r == residual)
            if points:
                xs, ys = zip(*points)
                left.plot(xs, ys, "-" if residual else "--", marker="o" if residual else "s",
                          color=color, label=f"width {width}{'' if residual else ' plain'}")
    left.set_xlabel("depth (weighted layers)")
    left.set_ylabel(objective)
    left.set_xticks(depths or [0])
    left.grid(alpha=0.3)
    if best:
        left.legend(fontsize=8, loc="best")
    left.set_title(f"{objective} against depth")

    grid = np.full((len(widths), len(depths)), np.nan)
    better = np.nanmax if board["objective"]["direction"] == "max" else np.nanmin
    for (depth, width, _), score in best.items():
        row, col = widths.index(width), depths.index(depth)
        grid[row, col] = score if math.isnan(grid[row, col]) else better([grid[row, col], score])
    cmap = colormaps["viridis" if board["objective"]["direction"] == "max" else "viridis_r"]
    if depths and widths:
        image = right.imshow(np.ma.masked_invalid(grid), cmap=cmap, origin="lower",
                             aspect="auto")
        figure.colorbar(image, ax=right, label=objective)
        for row, width in enumerate(widths):
            for col, depth in enumerate(depths):
                value = grid[row, col]
                if math.isnan(value):
                    text = "x" if any(k[:2] == (depth, width) for k in failed) else ""
                    color = "0.3"
                else:
                    text = f"{value:.3f}"
                    red, green, blue, _ = cmap(image.norm(value))
                    # dark text on light cells (relative luminance, ITU-R BT.709)
                    color = "black" if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.5 \
                        else "white"
                right.text(col, row, text, ha="center", va="center", fontsize=8, color=color)
    right.set_xticks(range(len(depths)), [str(d) for d in depths])
    right.set_yticks(range(len(widths)), [str(w) for w in widths])
    right.set_xlabel("depth")
    right.set_ylabel("width (base filters)")
    right.set_title("best per depth x width (x: failed or over budget)")
    done = [e for e in board["trials"] if e["status"] == "COMPLETED"]
    search = board.get("search", {})
    head = f"{search.get('tuner', 'search')} on {search.get('dataset', '?')}: {len(done)} of " \
           f"{len(board['trials'])} trials completed"
    if done:
        top = done[0]
        head += f"; best {ArchSpec.from_config(top['arch']).name} {objective}={top['score']:.4f}"
    figure.suptitle(head, fontsize=11)
    if path is not None:
        save_figure(figure, path)
    return figure
