"""Every figure of a study report, drawn from the study's ``results`` dict.

The budget curves (:mod:`reskeras.study.report.budget_figures`) come first, then the
twins' figures (:mod:`reskeras.study.report.twin_figures`: degradation,
gradient ratio and profiles, lesion, shattering, landscape), then the
*why* figures (:mod:`reskeras.study.report.why_figures`: interventions,
per-cell measures, the identity task).

Example:

>>> from reskeras.study.report.figures import write_study_figures
>>> figures = write_study_figures(results, "study/figures")   # doctest: +SKIP
>>> figures["degradation"]                                    # doctest: +SKIP
'figures/degradation.png'
"""

from __future__ import annotations

from reskeras.study.report.budget_figures import write_budget_figures
from reskeras.study.report.twin_figures import write_twin_figures
from reskeras.study.report.why_figures import write_why_figures
from reskeras.study.report.shaping import write_shaping_figures


def write_study_figures(results: dict, figures_dir: str) -> dict[str, str]:
    """Writes every study figure the results allow into ``figures_dir``.

    A figure whose data is missing (:class:`~reskeras.study.report.figure_style.MissingData`:
    an analysis skipped, every cell diverged before logging) is not written and has no key.

    Args:
        results: the study results.
        figures_dir: directory for the PNGs (local or ``gs://``), created if absent.

    Returns:
        ``{key: "figures/KEY.png"}`` for the figures written, paths relative to
        the study directory, in the order the report shows them.
    """
    return {**write_budget_figures(results, figures_dir),
            **write_twin_figures(results, figures_dir),
            **write_why_figures(results, figures_dir),
            **write_shaping_figures(results, figures_dir)}


__all__ = ["write_study_figures"]
