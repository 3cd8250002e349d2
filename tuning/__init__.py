"""Keras Tuner searches over depth and width of reskeras specs.

Public API (imported lazily, so ``reskeras --help`` does not load Keras Tuner):

- :class:`ResNetHyperModel` (``tuning.hypermodel``): the search space; a sample
  becomes an ``ArchSpec``, ``build()`` calls the reskeras builder and ``fit()``
  the reskeras trainer. Works with stock ``keras_tuner`` tuners too.
- :class:`ReskerasTuner` (``tuning.tuner``): one ``keras_tuner.Tuner`` with the
  oracle chosen by name (hyperband, bayesian, random, grid), per-trial run
  directories, budget rejection before training, resumable.
- :class:`SearchConfig`, :func:`run_search` (``tuning.search``): what
  ``reskeras tune`` runs.
- :func:`read_leaderboard`, :func:`write_leaderboard` (``tuning.leaderboard``):
  the ``leaderboard.json`` contract the exporter reads.
- :class:`Budget` (``tuning.budget``): ``max_params`` / ``max_flops``.

Example:

>>> from tuning import SearchConfig, run_search
>>> board = run_search(SearchConfig(out="tune-digits", max_trials=4, depths=(8, 14),
...                                 widths=(4, 8)))  # doctest: +SKIP
"""

import importlib

_EXPORTS = {
    "ResNetHyperModel": "tuning.hypermodel",
    "ReskerasTuner": "tuning.tuner",
    "TUNERS": "tuning.tuner",
    "SearchConfig": "tuning.search",
    "run_search": "tuning.search",
    "read_leaderboard": "tuning.leaderboard",
    "write_leaderboard": "tuning.leaderboard",
    "Budget": "tuning.budget",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tuning' has no attribute {name!r}")
