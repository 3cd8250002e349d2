"""The identity task: exact stack layouts, hand-set weights that are exactly the identity, the
results.json schema, reproducibility, argument errors and a tiny training run."""

import itertools

import numpy as np
import pytest

from reskeras import Dirac
from reskeras.study.measures.identity_task import (KINDS, _initial_error, _train_step,
                                             build_identity_stack, identity_task,
                                             identity_task_summary, relative_error)
from reskeras.blocks import BN_EPSILON, BN_MOMENTUM

TINY = dict(steps=3, batch_size=4, width=4, size=4)


def non_negative(n=8, size=8, width=16, seed=0):
    rng = np.random.default_rng(seed)
    return np.maximum(rng.standard_normal((n, size, size, width)), 0).astype("float32")


@pytest.mark.parametrize("residual", [False, True])
def test_stack_layout_names_and_parameter_counts(residual):
    model = build_identity_stack(4, residual=residual)
    per_layer = ["conv", "bn", "add", "relu"] if residual else ["conv", "bn", "relu"]
    assert [layer.name for layer in model.layers] == ["input"] + [
        f"layer{i}_{part}" for i in range(1, 5) for part in per_layer]
    assert model.name == ("residual4_identity" if residual else "plain4_identity")
    assert model.input_shape == model.output_shape == (None, 8, 8, 16)
    # per layer: 3x3x16x16 kernel without bias, gamma+beta trainable, moving mean+variance not
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == 4 * (2304 + 32)
    assert model.count_params() == 4 * (2304 + 64)
    bns = [model.get_layer(f"layer{i}_bn") for i in range(1, 5)]
    assert all((bn.momentum, bn.epsilon) == (BN_MOMENTUM, BN_EPSILON) for bn in bns)
    assert all(not model.get_layer(f"layer{i}_conv").use_bias for i in range(1, 5))


def test_stack_without_batch_norm_has_conv_biases():
    model = build_identity_stack(3, residual=False, width=8, size=5, batch_norm=False)
    assert [layer.name for layer in model.layers] == ["input"] + [
        f"layer{i}_{part}" for i in range(1, 4) for part in ("conv", "relu")]
    assert model.count_params() == 3 * (9 * 8 * 8 + 8)
    assert model.output_shape == (None, 5, 5, 8)


def test_residual_stack_with_zero_gamma_is_exactly_the_identity():
    model = build_identity_stack(6, residual=True)
    for i in range(1, 7):
        model.get_layer(f"layer{i}_bn").gamma.assign(np.zeros(16, "float32"))
    x = non_negative()
    for training in (False, True):
        out = np.asarray(model(x, training=training))
        assert np.array_equal(out, x)
        assert relative_error(out, x) == 0.0


@pytest.mark.parametrize("depth", [1, 3])
def test_plain_stack_with_dirac_kernels_and_undoing_batch_norm_reproduces_its_input(depth):
    model = build_identity_stack(depth, residual=False)
    rng = np.random.default_rng(1)
    for i in range(1, depth + 1):
        model.get_layer(f"layer{i}_conv").kernel.assign(Dirac(noise=0.0)((3, 3, 16, 16)))
        bn = model.get_layer(f"layer{i}_bn")
        mean = rng.uniform(-1, 1, 16).astype("float32")
        variance = rng.uniform(0.2, 3, 16).astype("float32")
        bn.moving_mean.assign(mean)
        bn.moving_variance.assign(variance)
        bn.gamma.assign(np.sqrt(variance + BN_EPSILON))
        bn.beta.assign(mean)
    x = non_negative()
    out = np.asarray(model(x, training=False))
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-5)
    assert relative_error(out, x) < 1e-10
    # the He-initialized stack is far from it
    assert relative_error(build_identity_stack(depth, residual=False)(x, training=False), x) > 0.1


def test_train_step_is_traced_once_and_lowers_the_loss():
    from reskeras._backend import keras
    model = build_identity_stack(2, residual=True, width=4, size=4)
    optimizer = keras.optimizers.Adam(learning_rate=1e-2)
    optimizer.build(model.trainable_variables)
    step = _train_step(model, optimizer, batch_size=8)
    losses = [float(step(non_negative(n=8, size=4, width=4, seed=s))) for s in range(30)]
    assert step.experimental_get_tracing_count() == 1
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_initial_error_leaves_the_model_unchanged():
    model = build_identity_stack(2, residual=True)
    before = [np.array(v) for v in model.variables]
    x = non_negative(n=16)
    error = _initial_error(model, x)
    assert all(np.array_equal(a, np.array(v)) for a, v in zip(before, model.variables))
    assert error == relative_error(model(x, training=True), x)
    assert error > 1.0  # two unit-variance branches added to the input


def test_result_schema_has_a_row_for_every_kind_depth_and_seed():
    result = identity_task(depths=(1, 3), seeds=(0, 5), **TINY)
    assert set(result) == {"depths", "seeds", "steps", "width", "size", "rows"}
    assert (result["depths"], result["seeds"], result["steps"], result["width"],
            result["size"]) == ([1, 3], [0, 5], 3, 4, 4)
    assert [(r["kind"], r["depth"], r["seed"]) for r in result["rows"]] == [
        (k, d, s) for s, k, d in itertools.product((0, 5), KINDS, (1, 3))]
    for row in result["rows"]:
        assert set(row) == {"kind", "depth", "seed", "initial_error", "error"}
        assert all(type(row[key]) is float and np.isfinite(row[key]) and row[key] > 0
                   for key in ("initial_error", "error"))
    summary = identity_task_summary(result)
    assert set(summary) == set(KINDS) and all(list(v) == [1, 3] for v in summary.values())
    rows = {(r["kind"], r["depth"], r["seed"]): r["error"] for r in result["rows"]}
    assert summary["plain"][3] == pytest.approx((rows["plain", 3, 0] + rows["plain", 3, 5]) / 2)


def test_same_seed_gives_identical_numbers_and_another_seed_does_not():
    first = identity_task(depths=(2,), seeds=(7,), **TINY)
    assert identity_task(depths=(2,), seeds=(7,), **TINY) == first
    other = identity_task(depths=(2,), seeds=(8,), **TINY)
    assert [r["error"] for r in other["rows"]] != [r["error"] for r in first["rows"]]


def test_plain_and_residual_twins_start_from_the_same_kernels():
    keras_seed = 3
    from reskeras._backend import keras
    keras.utils.set_random_seed(keras_seed)
    plain = build_identity_stack(3, residual=False)
    keras.utils.set_random_seed(keras_seed)
    residual = build_identity_stack(3, residual=True)
    assert all(np.array_equal(a, b) for a, b in zip(plain.get_weights(), residual.get_weights()))


def test_short_training_brings_the_residual_error_below_its_initial_error():
    result = identity_task(depths=(2,), steps=40, batch_size=8, width=4, size=4, lr=1e-2)
    residual, = [r for r in result["rows"] if r["kind"] == "residual"]
    assert residual["error"] < 0.5 * residual["initial_error"]


def test_summary_averages_over_seeds():
    rows = [{"kind": k, "depth": d, "seed": s, "initial_error": 1.0, "error": e}
            for k, d, s, e in [("plain", 4, 0, 0.5), ("plain", 4, 1, 0.7), ("plain", 1, 0, 0.1),
                               ("residual", 4, 0, 0.25), ("residual", 4, 1, 0.75)]]
    assert identity_task_summary({"rows": rows}) == {"plain": {1: 0.1, 4: 0.6},
                                                     "residual": {4: 0.5}}


@pytest.mark.parametrize("kwargs, message", [
    (dict(depths=[0]), "`depths` must be a non-empty sequence of distinct positive integers. "
                       "Received: depths=[0]"),
    (dict(depths=()), "`depths` must be a non-empty sequence of distinct positive integers. "
                      "Received: depths=()"),
    (dict(depths=(2, 2)), "`depths` must be a non-empty sequence of distinct positive "
                          "integers. Received: depths=(2, 2)"),
    (dict(depths=4), "`depths` must be a non-empty sequence of distinct positive integers. "
                     "Received: depths=4"),
    (dict(seeds=(-1,)), "`seeds` must be a non-empty sequence of distinct non-negative "
                        "integers. Received: seeds=(-1,)"),
    (dict(seeds=(0.5,)), "`seeds` must be a non-empty sequence of distinct non-negative "
                         "integers. Received: seeds=(0.5,)"),
    (dict(steps=0), "`steps` must be a positive integer. Received: steps=0"),
    (dict(batch_size=2.0), "`batch_size` must be a positive integer. Received: batch_size=2.0"),
    (dict(width=0), "`width` must be a positive integer. Received: width=0"),
    (dict(size=True), "`size` must be a positive integer. Received: size=True"),
    (dict(lr=0), "`lr` must be a positive finite number. Received: lr=0"),
    (dict(lr=float("nan")), "`lr` must be a positive finite number. Received: lr=nan"),
    (dict(lr="0.1"), "`lr` must be a positive finite number. Received: lr='0.1'"),
])
def test_bad_task_arguments_raise_one_line_errors(kwargs, message):
    with pytest.raises(ValueError) as info:
        identity_task(**kwargs)
    assert str(info.value) == message and "\n" not in message


@pytest.mark.parametrize("kwargs, message", [
    (dict(depth=0, residual=True), "`depth` must be a positive integer. Received: depth=0"),
    (dict(depth=2, residual="yes"), "`residual` must be True or False. Received: residual='yes'"),
    (dict(depth=2, residual=True, batch_norm=None),
     "`batch_norm` must be True or False. Received: batch_norm=None"),
    (dict(depth=2, residual=False, width=-3), "`width` must be a positive integer. "
                                              "Received: width=-3"),
])
def test_bad_stack_arguments_raise_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
                       + "$"):
        build_identity_stack(**kwargs)


@pytest.mark.slow
def test_default_task_plain_stacks_lose_their_input_where_residual_stacks_keep_it():
    summary = identity_task_summary(identity_task())
    # a constant output (the input's mean) scores 1 - 1/pi = 0.68
    assert all(summary["plain"][d] > 0.6 for d in (8, 16, 32))
    assert summary["plain"][1] < 0.05
    assert all(summary["residual"][d] < summary["plain"][d] for d in (2, 4, 8, 16))
    assert summary["residual"][8] < 0.5 * summary["plain"][8]
