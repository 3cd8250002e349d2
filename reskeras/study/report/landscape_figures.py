"""Figures of loss-landscape slices (:mod:`reskeras.study.measures.landscape`).

Like :mod:`reskeras.analysis.plots`: ``matplotlib.figure.Figure`` on an Agg
canvas of its own (no pyplot, no global state), fixed pixel sizes, PNGs
written through :func:`reskeras.analysis.plots.save_figure` (local or ``gs://``).
As in Li et al. (2018), plain nets are drawn dashed and residual nets solid.

Example:

>>> from reskeras.study.measures.landscape import landscape_study
>>> from reskeras.study.report.landscape_figures import plot_loss_slices
>>> results = landscape_study({"plain20": plain, "resnet20": resnet}, x, y)  # doctest: +SKIP
>>> plot_loss_slices(results, "figures/loss_slices.png")                     # doctest: +SKIP
'figures/loss_slices.png'
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from reskeras.analysis.plots import blank_figure, pixel_size, save_figure

# (width, height) in inches at DPI
SLICE_FIGURE_SIZE = (7.0, 4.5)
SURFACE_FIGURE_SIZE = (6.0, 5.0)
SURFACE_LEVELS = 20


def _new_figure(size: tuple[float, float]) -> Figure:
    return blank_figure(*pixel_size(size))


def _is_residual(name: str, result: dict, residual: dict | None) -> bool:
    if residual is not None and name in residual:
        return bool(residual[name])
    if result.get("residual") is not None:
        return bool(result["residual"])
    return not name.lower().startswith("plain")


def plot_loss_slices(results: dict[str, dict], path: str, *,
                     residual: dict[str, bool] | None = None, log_scale: bool = True,
                     title: str | None = None) -> str:
    """Loss against alpha for each model, plain dashed and residual solid.

    Args:
        results: ``{name: loss_slice_1d result}``, e.g. from
            :func:`reskeras.study.measures.landscape.landscape_study`.
        path: where to write the PNG (700 x 450 pixels).
        residual: ``{name: bool}`` overriding the ``"residual"`` entry of a
            result (itself read from the model); a result without either is
            plain when its name starts with ``plain``.
        log_scale: log loss axis (default ``True``): a chaotic plain net's loss
            can be 100 times its residual twin's at the same alpha.
        title: figure title (default ``"Loss along a filter-normalized
            direction"``).

    Returns:
        ``path``.

    Example:

    >>> result = {"alphas": [-1, 0, 1], "loss": [2.0, 0.5, 2.5], "curvature": 3.5,
    ...           "roughness": 0.0}
    >>> plot_loss_slices({"resnet8": result}, "/tmp/slices.png")
    '/tmp/slices.png'
    """
    if not isinstance(results, dict) or not results:
        raise ValueError("`results` must be a non-empty dict of name -> loss_slice_1d result. "
                         f"Received: results={results!r}")
    figure = _new_figure(SLICE_FIGURE_SIZE)
    ax = figure.subplots()
    colors = colormaps["tab10"](np.arange(len(results)) % 10)
    for color, (name, result) in zip(colors, results.items()):
        missing = [key for key in ("alphas", "loss") if key not in result]
        if missing:
            raise ValueError(f"`results` must hold loss_slice_1d results with 'alphas' and "
                             f"'loss'. Received: results[{name!r}] without {missing}")
        label = name
        if "curvature" in result and "roughness" in result:
            label += f"  (curvature {result['curvature']:.3g}, roughness {result['roughness']:.2f})"
        ax.plot(result["alphas"], result["loss"], color=color, linewidth=1.6,
                linestyle="-" if _is_residual(name, result, residual) else "--", label=label)
    if log_scale:
        ax.set_yscale("log")
    ax.axvline(0.0, color="0.6", linewidth=0.8, zorder=0)
    ax.set_xlabel("alpha (step along the filter-normalized direction)")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title(title or "Loss along a filter-normalized direction", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, title="solid: residual, dashed: plain", title_fontsize=8)
    return save_figure(figure, path)


def plot_loss_surface_2d(result: dict, path: str, *, title: str | None = None) -> str:
    """Contour plot of a :func:`loss_slice_2d` result, log-spaced levels.

    Args:
        result: ``{"alphas", "betas", "loss", ...}`` from ``loss_slice_2d``.
        path: where to write the PNG (600 x 500 pixels).
        title: figure title (default: the model name, if known).

    Returns:
        ``path``.

    Example:

    >>> grid = {"alphas": [-1, 0, 1], "betas": [-1, 0, 1],
    ...         "loss": [[3, 2, 3], [2, 1, 2], [3, 2, 3]]}
    >>> plot_loss_surface_2d(grid, "/tmp/surface.png")
    '/tmp/surface.png'
    """
    missing = [key for key in ("alphas", "betas", "loss") if key not in (result or {})]
    if not isinstance(result, dict) or missing:
        raise ValueError("`result` must be a loss_slice_2d result with 'alphas', 'betas' and "
                         f"'loss'. Received: result without {missing}")
    alphas, betas = np.asarray(result["alphas"], float), np.asarray(result["betas"], float)
    loss = np.asarray(result["loss"], float)
    if loss.shape != (len(alphas), len(betas)):
        raise ValueError(f"`result['loss']` must have shape (len(alphas), len(betas)) = "
                         f"{(len(alphas), len(betas))}. Received: shape {loss.shape}")
    positive = loss[np.isfinite(loss) & (loss > 0)]
    low, high = (positive.min(), positive.max()) if positive.size else (1e-3, 1.0)
    high = max(high, low * 1.01)
    levels = np.geomspace(low, high, SURFACE_LEVELS)
    figure = _new_figure(SURFACE_FIGURE_SIZE)
    ax = figure.subplots()
    surface = np.clip(np.nan_to_num(loss, nan=high, posinf=high), low, high)
    # loss[i][j] sits at (alphas[i], betas[j]): alpha on x, so the grid is transposed
    filled = ax.contourf(alphas, betas, surface.T, levels=levels, norm=LogNorm(low, high),
                         cmap="viridis_r")
    ax.contour(alphas, betas, surface.T, levels=levels[::2], colors="k", linewidths=0.4,
               alpha=0.5)
    ax.plot([0.0], [0.0], marker="*", color="red", markersize=10, label="trained weights")
    figure.colorbar(filled, ax=ax, label="training loss (log levels)", format="%.3g")
    ax.set_xlabel("alpha (direction 1)")
    ax.set_ylabel("beta (direction 2)")
    ax.set_aspect("auto")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or f"Loss surface {result.get('model', '')}".strip(), fontsize=11)
    return save_figure(figure, path)


__all__ = ["SLICE_FIGURE_SIZE", "SURFACE_FIGURE_SIZE", "plot_loss_slices",
           "plot_loss_surface_2d"]
