"""The study: do plain and residual twins degrade with depth, and why?

``reskeras study`` trains plain and residual twins over depths, with and without
BatchNorm, plus interventions at the deepest depth, measures them and writes a
report with a verdict (docs/study.md). One job per part:

- :mod:`reskeras.study.run` trains the cells (one reskeras run directory each)
  and :mod:`reskeras.study.cells` names them;
- :mod:`reskeras.study.analyses` runs the measurements on the trained cells and
  hands their numbers to the judgment and the report;
- :mod:`reskeras.study.measures`: one module per measurement of a trained or
  initial net (gradient flow, lesion, landscape, sharpness, shattering,
  distances, the identity task);
- :mod:`reskeras.study.judgment`: pure functions from measured numbers to flags,
  hypotheses and the answer (no TensorFlow), with their thresholds in the one
  criteria table, :mod:`reskeras.study.criteria`;
- :mod:`reskeras.study.report`: ``report.md``, ``report.html``, ``summary.csv``
  and the study's figures.

Example:

>>> from reskeras.study import StudyConfig, run_study
>>> config = StudyConfig.from_preset("quick", "study-quick", depths=(8, 20))  # doctest: +SKIP
>>> results = run_study(config)                                              # doctest: +SKIP
>>> results["verdict"]["answer"]                                             # doctest: +SKIP
"""

from reskeras.study.judgment.verdict import verdict
from reskeras.study.run import ANALYSES, PRESETS, StudyConfig, run_study

__all__ = ["ANALYSES", "PRESETS", "StudyConfig", "run_study", "verdict"]
