"""The study's judgment: pure functions from measured numbers to flags, hypotheses and words.

- :mod:`~reskeras.study.judgment.verdict`: the degradation, vanishing and
  exploding flags per family, and the answer paragraph;
- :mod:`~reskeras.study.judgment.hypotheses`: each explanation of degradation,
  its test and its verdict, assembled from
  :mod:`~reskeras.study.judgment.interventions` (the gap test every intervention
  shares), :mod:`~reskeras.study.judgment.rivals` (conditioning, near the identity,
  the learning-rate sweep), :mod:`~reskeras.study.judgment.identity_task`,
  :mod:`~reskeras.study.judgment.landscape` and :mod:`~reskeras.study.judgment.responses`;
- :mod:`~reskeras.study.judgment.symptoms`: does the start that trains remove the
  plain net's chaotic symptoms; :mod:`~reskeras.study.judgment.depth_trend`: does an
  init run at every depth remove the depth trend;
- :mod:`~reskeras.study.judgment.intervals`, ``convergence``, ``recipes``: intervals
  over seeds, the budget rule, the decisions two recipes reach.

Every threshold is in :mod:`reskeras.study.criteria`. Nothing here imports
TensorFlow, Keras, the measures or the report (import-linter contracts in
pyproject.toml): a verdict can be recomputed from a ``results.json`` alone.
"""
