"""Setup shared by the study's tests: one tiny study with TAT, trained once per process.

tests/conftest.py keeps the modules that use it in one process under pytest-xdist
(``SHARED_PROCESS``), so the suite trains it once.
"""

from __future__ import annotations

import pytest

# A quick-preset study at depth 14 (TAT needs 14 layers or more) with the BN twins, the
# no-BN twins and TAT under Adam, and the paper recipe's shaping-only comparison: a
# rate sweep of five rates per recipe on the held-out seed, each Adam cell extended from
# 8 to 16 steps, each paper cell trained at 8 and at 16 steps, and the kernel map.
TINY_TAT = dict(depths=(14,), steps=8, max_doublings=1, seeds=(0,), deep_seeds=(0,),
                intervention_seeds=(0,), sweep_seeds=(100,), batch_size=64,
                grad_norms_every=4, activations_every=4, precise_bn_batches=4,
                interventions=("tat",), shaping_recipes=("paper",), analyses=("kernel_map",))


@pytest.fixture(scope="session")
def tat_study(tmp_path_factory):
    """``(config, results, log lines)`` of the :data:`TINY_TAT` study (100-190 s on 2 cores).

    Tests read its directory and must not change it (a rerun copies it first).
    """
    from reskeras.study.run import StudyConfig, run_study

    out = tmp_path_factory.mktemp("tat_study") / "study"
    config = StudyConfig.from_preset("quick", str(out), **TINY_TAT)
    lines = []
    results = run_study(config, log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    return config, results, lines
