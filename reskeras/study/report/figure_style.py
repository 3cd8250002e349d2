"""What every study figure shares: missing-data errors, numbers for axes, line styles, titles.

The study's figures (:mod:`reskeras.study.report.twin_figures`,
:mod:`reskeras.study.report.why_figures`) follow :mod:`reskeras.analysis.plots`:
a ``Figure`` on an Agg canvas of its own, fixed pixel sizes, plain nets dashed and
residual nets solid, missing numbers (``None``) left as gaps. A figure whose data
is missing raises :class:`MissingData`, and :func:`write_each` then leaves it out.

Example:

>>> number(None), number("0.5"), line_style(residual=True)
(nan, 0.5, '-')
>>> diverged_label({"diverged_step": 40})
'diverged at step 40'
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from reskeras import rundir


class MissingData(ValueError):
    """The results lack what a figure draws (an analysis skipped, every cell diverged)."""


def number(value) -> float:
    """``float(value)``; NaN for ``None`` and non-numbers, so plots leave a gap."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def positive(values) -> np.ndarray:
    """Values for a log axis: NaN where not finite or not above zero."""
    array = np.array([number(v) for v in values], dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(array > 0, array, np.nan)


# one colour per configuration in every study figure: the He twins, then each intervention
HE_COLORS = {False: "tab:red", True: "tab:blue"}
VARIANT_COLORS = {"dirac": "tab:green", "diracperm": "tab:olive", "deltaorth": "tab:cyan",
                  "skipinit": "tab:purple", "fixup": "tab:pink", "lr0.1": "tab:orange",
                  "lr0.3": "#fdae6b", "lr3": "tab:brown", "lr10": "0.35", "tat": "tab:gray",
                  "tuned": "#e6550d", "noaug": "#9ecae1", "tat-noaug": "#bdbdbd"}


def color_of(residual: bool, variant: str) -> str:
    """The colour of a configuration in every study figure.

    >>> color_of(False, "he"), color_of(False, "deltaorth")
    ('tab:red', 'tab:cyan')
    """
    return HE_COLORS[residual] if variant == "he" else VARIANT_COLORS[variant]


def line_style(residual: bool) -> str:
    """Residual nets solid, plain nets dashed."""
    return "-" if residual else "--"


def diverged_label(cell: dict) -> str:
    """``"diverged at step N"`` (the cell's ``diverged_step``, else its last logged step)."""
    step = cell.get("diverged_step")
    if step is None and cell.get("curve"):
        step = cell["curve"][-1]["step"]
    return "diverged before the first logged step" if step is None else f"diverged at step {step}"


def has_curve(cell: dict) -> bool:
    """Whether the cell logged a finite training error."""
    return any(math.isfinite(number(p.get("train_error"))) for p in cell.get("curve") or [])


def decorate(ax, title: str, xlabel: str, ylabel: str | None = None, *,
             legend: int | None = 8, size: int = 11) -> None:
    """Axis labels, title, a light grid and (with ``legend``, a font size) a legend."""
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=size)
    ax.grid(True, which="major", alpha=0.3)
    if legend:
        ax.legend(fontsize=legend)


def require(found, what: str):
    """``found``, or :class:`MissingData` naming ``what`` when it is empty."""
    if not found:
        raise MissingData(f"`results` must hold {what} to draw this figure. Received: none")
    return found


def write_each(plots, results: dict, figures_dir: str) -> dict[str, str]:
    """Writes ``figures_dir/KEY.png`` with ``plot(results, path)`` for each ``(key, plot)``.

    Returns:
        ``{key: "figures/KEY.png"}`` for the figures written, in the order of
        ``plots``; a plot that raises :class:`MissingData` is left out.
    """
    written = {}
    for key, plot in plots:
        tf.io.gfile.makedirs(figures_dir)
        try:
            plot(results, rundir.path(figures_dir, f"{key}.png"))
        except MissingData:
            continue
        written[key] = f"figures/{key}.png"
    return written


__all__ = ["HE_COLORS", "MissingData", "VARIANT_COLORS", "color_of", "decorate", "diverged_label", "has_curve", "line_style", "number",
           "positive", "require", "write_each"]
