"""Trace reuse: cached runs equal uncached ones bit for bit; the cache's rules; seeding."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import tensorflow as tf

import reskeras  # noqa: F401
from reskeras._backend import keras
from reskeras.trace_cache import TraceCache
from reskeras.train import TrainConfig, set_random_seed, train

SEEDS = (0, 1)
# the second seed also trains at another rate for another budget, so another warmup and other
# rate drops: all of them are variables that the one trace reads
PLANS = {0: {}, 1: {"lr": 0.03, "steps": 33}}


def _config(out, seed, **overrides):
    values = dict(out=str(out), depth=8, family="cifar", plain=True, batch_norm=True,
                  dataset="digits", steps=22, batch_size=128, recipe="paper", seed=seed,
                  verbose=0, grad_norms_every=11, activations_every=11, precise_bn=True,
                  precise_bn_batches=3)
    return TrainConfig(**{**values, **overrides})


def _run_files(run):
    """What a run leaves that must not depend on the cache (seconds aside)."""
    metrics = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
               for line in open(run / "metrics.jsonl")]
    logs = {name: (run / name).read_text() for name in ("grad_norms.jsonl", "activations.jsonl")}
    summary = json.loads((run / "summary.json").read_text())
    summary["precise_bn"].pop("seconds")
    return metrics, logs, summary["precise_bn"]


@pytest.fixture(scope="module")
def cached_and_plain(tmp_path_factory):
    """Two seeds (and two plans) through one TraceCache, then the same two without it."""
    root = tmp_path_factory.mktemp("trace-cache")
    cache = TraceCache()
    runs = {}
    for seed in SEEDS:
        result = train(_config(root / f"cached{seed}", seed, **PLANS[seed]), trace_cache=cache)
        runs["cached", seed] = result.model.get_weights(), result.moving_statistics, \
            result.seconds, _run_files(root / f"cached{seed}")
    entry = cache.get(next(iter(cache._entries)))
    tracings = entry.steps.train_chunk.experimental_get_tracing_count()
    hits, misses = cache.hits - 1, cache.misses  # the get() above counted a hit
    cache.clear()
    for seed in SEEDS:
        result = train(_config(root / f"plain{seed}", seed, **PLANS[seed]))
        runs["plain", seed] = result.model.get_weights(), result.moving_statistics, \
            result.seconds, _run_files(root / f"plain{seed}")
    return runs, tracings, hits, misses, root


def test_cached_runs_end_with_bitwise_the_weights_logs_and_metrics_of_uncached_runs(
        cached_and_plain):
    runs, tracings, hits, misses, root = cached_and_plain
    assert (hits, misses, tracings) == (1, 1, 1)  # one trace served both seeds
    for seed in SEEDS:
        cached, plain = runs["cached", seed], runs["plain", seed]
        assert len(cached[0]) == len(plain[0]) > 0
        assert all(np.array_equal(a, b) for a, b in zip(cached[0], plain[0]))
        assert cached[1].keys() == plain[1].keys() and all(
            np.array_equal(a, b) for name in cached[1]
            for a, b in zip(cached[1][name], plain[1][name]))
        assert cached[3] == plain[3]  # metrics, gradient norms, layer responses, precise BN
        # and model.keras, the run's product, holds the same weights
        saved = [keras.models.load_model(root / f"{kind}{seed}" / "model.keras",
                                         compile=False).get_weights()
                 for kind in ("cached", "plain")]
        assert all(np.array_equal(a, b) for a, b in zip(*saved))
    # different seeds really are different runs
    assert not np.array_equal(runs["cached", 0][0][0], runs["cached", 1][0][0])


def test_only_the_first_run_of_a_shape_traces(cached_and_plain):
    runs = cached_and_plain[0]
    assert runs["cached", 0][2]["trace"] > 0
    assert [runs["cached", seed][2]["trace"] for seed in SEEDS[1:]] == [0.0]
    assert all(runs["plain", seed][2]["trace"] > 0 for seed in SEEDS)
    assert all(0 < runs[kind, seed][2]["steps"] < runs[kind, seed][2]["total"]
               for kind in ("cached", "plain") for seed in SEEDS)


def test_other_shapes_or_recipes_get_their_own_entry_and_the_oldest_is_released(tmp_path):
    cache = TraceCache(max_entries=1)
    first = train(_config(tmp_path / "a", 0), trace_cache=cache)
    kept = first.model
    train(_config(tmp_path / "b", 0, recipe="adam"), trace_cache=cache)  # another optimizer
    assert (cache.hits, cache.misses, len(cache)) == (0, 2, 1)
    third = train(_config(tmp_path / "c", 0), trace_cache=cache)  # released: built again
    assert (cache.hits, cache.misses) == (0, 3) and third.model is not kept
    # another budget, seed and rate: the same trace
    fourth = train(_config(tmp_path / "d", 1, steps=11, lr=1e-4), trace_cache=cache)
    assert (cache.hits, cache.misses) == (1, 3) and fourth.model is third.model
    cache.clear()
    assert len(cache) == 0


def test_a_run_that_fails_leaves_no_entry_behind(tmp_path, monkeypatch):
    from reskeras import train as train_module

    cache = TraceCache()
    original = train_module._Run._epoch

    def failing_epoch(self, *args):
        original(self, *args)
        raise RuntimeError("boom")

    monkeypatch.setattr(train_module._Run, "_epoch", failing_epoch)
    with pytest.raises(RuntimeError, match="boom"):
        train(_config(tmp_path / "a", 0), trace_cache=cache)
    assert (cache.misses, len(cache)) == (1, 0)


def test_runs_given_callbacks_do_not_use_the_cache(tmp_path):
    # a user's callback may hook into the traced step, as the gradient-norm logger does
    from reskeras.callbacks import GradientNormLogger

    cache = TraceCache()
    train(_config(tmp_path / "a", 0), trace_cache=cache,
          callbacks=[GradientNormLogger(5, log_dir=str(tmp_path / "logs"))])
    assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0)


def test_a_schedule_moves_only_when_mutable_and_to_as_many_rate_drops():
    from reskeras.recipes import WarmupStepDecay

    with pytest.raises(ValueError, match=r"^assign\(\) needs a schedule built with "
                                         r"`mutable=True`$"):
        WarmupStepDecay(0.1, 2, (5, 8)).assign(0.1, 2, (5, 8))
    held = WarmupStepDecay(0.1, 2, (5, 8), mutable=True)
    with pytest.raises(ValueError, match=r"^`boundaries` must hold 2 steps, as this schedule "
                                         r"was built with\. Received: boundaries=\[5\]$"):
        held.assign(0.1, 2, (5,))
    assert (held.base_lr, held.warmup_steps, held.boundaries) == (0.1, 2, [5, 8])  # unchanged
    held.assign(0.3, 0, (6, 9))
    assert held.get_config() == {"base_lr": 0.3, "warmup_steps": 0, "boundaries": [6, 9]}


@pytest.mark.parametrize("value", [0, -1, 1.5, True, None])
def test_bad_max_entries(value):
    with pytest.raises(ValueError, match=rf"`max_entries` must be a positive integer\. "
                                         rf"Received: max_entries={value!r}$"):
        TraceCache(max_entries=value)


def test_set_random_seed_seeds_as_keras_does_and_keeps_tensorflow_kernels(monkeypatch):
    from tensorflow.python import pywrap_tfe
    from tensorflow.python.framework import random_seed

    def draws():
        return (random.random(), np.random.random(), random_seed.get_seed(7),
                keras.random.normal((3,)).numpy().tolist())

    (tf.zeros(2) + 1).numpy()  # an initialized eager context (its caches exist)
    cleared = []
    original = pywrap_tfe.TFE_ContextClearCaches
    monkeypatch.setattr(pywrap_tfe, "TFE_ContextClearCaches",
                        lambda handle: (cleared.append(handle), original(handle)))
    keras.utils.set_random_seed(5)
    expected = draws()
    assert len(cleared) == 1  # Keras's call empties TensorFlow's kernel cache
    set_random_seed(5)
    assert draws() == expected  # the same Python, NumPy, TensorFlow and Keras draws
    assert len(cleared) == 1  # ours keeps every instantiated function
    set_random_seed(6)
    assert random_seed.get_seed(7)[0] == 6 and len(cleared) == 1


def test_checkpoints_every_n_steps_longer_than_an_epoch_and_at_the_last_step(tmp_path):
    out = tmp_path / "run"
    train(_config(out, 0, steps=33, checkpoint_every=22, grad_norms_every=None,
                  activations_every=None))  # 3 epochs of 11 steps
    saved = sorted(int(name.split("-")[1].split(".")[0])
                   for name in os.listdir(out / "checkpoints") if name.endswith(".index"))
    assert saved == [22, 33]
    assert [json.loads(line)["step"] for line in open(out / "metrics.jsonl")] == [11, 22, 33]
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["checkpoint_every"] == 22
    # the interval may change on a resume (it changes no number)
    from reskeras import rundir
    other = dict(config, training={**config["training"], "checkpoint_every": 11})
    assert rundir.config_mismatch(config, other) is None
