"""The study's report: ``report.md``, a self-contained ``report.html``, ``summary.csv``, figures.

- :mod:`~reskeras.study.report.writer` writes the three files from one list of blocks;
- :mod:`~reskeras.study.report.text` formats numbers, flags, captions;
- :mod:`~reskeras.study.report.render` renders the blocks as Markdown and HTML;
- :mod:`~reskeras.study.report.why` builds the *why* section;
- :mod:`~reskeras.study.report.figures` draws every figure:
  :mod:`~reskeras.study.report.twin_figures` (the He-initialized twins) and
  :mod:`~reskeras.study.report.why_figures` (interventions, measures, identity
  task), on the shared helpers of :mod:`~reskeras.study.report.figure_style`;
  :mod:`~reskeras.study.report.landscape_figures` draws loss-landscape slices.

The report only renders what the results and the verdict hold: it never imports
the measures or the judgment (an import-linter contract in pyproject.toml).
"""
