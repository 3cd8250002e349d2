"""Run-level records and figures: what ``reskeras plot RUN_DIR ...`` reads and draws.

:mod:`~reskeras.analysis.records` reads the gradient-norm and activation records
that the callbacks leave in a run directory; :mod:`~reskeras.analysis.plots`
draws them. ``reskeras plot RUN_DIR ...`` writes every figure; from a notebook,
each is one call returning a ``matplotlib.figure.Figure`` (docs/figures.md). The
study's measures, judgment and report live in :mod:`reskeras.study`.

Example:

>>> from reskeras.analysis import grad_norm_matrix, load_run, plot_grad_norm_heatmap
>>> runs = [load_run("runs/plain20"), load_run("runs/resnet20")]      # doctest: +SKIP
>>> names, steps, log_norms = grad_norm_matrix(runs[0]["grad_norms"])  # doctest: +SKIP
>>> fig = plot_grad_norm_heatmap(runs, "heatmap.png")                  # doctest: +SKIP
"""

from reskeras.analysis.plots import (DPI, FIGURE_SIZES, figure_size, plot_grad_norm_heatmap,
                                     plot_grad_norm_profile, plot_layer_responses,
                                     plot_residual_ratio, save_figure, write_figures)
from reskeras.analysis.records import (ACTIVATIONS, GRAD_NORMS, activation_series,
                                       grad_norm_matrix, load_run, nearest_steps, read_jsonl)

__all__ = [
    "ACTIVATIONS",
    "DPI",
    "FIGURE_SIZES",
    "GRAD_NORMS",
    "activation_series",
    "figure_size",
    "grad_norm_matrix",
    "load_run",
    "nearest_steps",
    "plot_grad_norm_heatmap",
    "plot_grad_norm_profile",
    "plot_layer_responses",
    "plot_residual_ratio",
    "read_jsonl",
    "save_figure",
    "write_figures",
]
