"""The study's judgment: pure functions from measured numbers to flags, hypotheses and words.

- :mod:`~reskeras.study.judgment.verdict`: the degradation, vanishing and
  exploding flags per family, and the answer paragraph;
- :mod:`~reskeras.study.judgment.hypotheses`: each explanation of degradation,
  its test and its verdict.

Every threshold is in :mod:`reskeras.study.criteria`. Nothing here imports
TensorFlow, Keras, the measures or the report (import-linter contracts in
pyproject.toml): a verdict can be recomputed from a ``results.json`` alone.
"""
