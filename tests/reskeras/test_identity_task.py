"""The identity task: exact stack layouts, hand-set weights that are exactly the identity, the
zero-gamma control, the results.json schema, the doubling of the budget, reproducibility,
argument errors and a tiny training run."""

import itertools

import numpy as np
import pytest

from reskeras import Dirac
from reskeras.study.measures import identity_task as measure
from reskeras.study.measures.identity_task import (KINDS, _initial_error, _train_step,
                                             build_identity_stack, identity_task,
                                             identity_task_summary, relative_error)
from reskeras.blocks import BN_EPSILON, BN_MOMENTUM

TINY = dict(steps=3, batch_size=4, width=4, size=4, max_doublings=1)


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


def test_zero_gamma_stack_starts_as_the_identity_map():
    model = build_identity_stack(4, residual=True, zero_gamma=True)
    per_layer = ["conv", "bn", "add", "relu"]
    assert [layer.name for layer in model.layers] == ["input"] + [
        f"layer{i}_{part}" for i in range(1, 5) for part in per_layer]
    assert model.name == "residual_zero_gamma4_identity"
    assert all(np.array_equal(model.get_layer(f"layer{i}_bn").gamma, np.zeros(16))
               for i in range(1, 5))
    assert model.count_params() == 4 * (2304 + 64)
    # each layer is ReLU(x + BN(conv x)) = ReLU(x + beta) = ReLU(x): the stack is ReLU, so on
    # the task's non-negative inputs the identity, relative error exactly 0 as for f(x) = x
    signed = np.random.default_rng(2).standard_normal((8, 8, 8, 16)).astype("float32")
    x = non_negative()
    for training in (False, True):
        assert np.array_equal(model(signed, training=training), np.maximum(signed, 0))
        assert np.array_equal(model(x, training=training), x)
    assert _initial_error(model, x) == relative_error(x, x) == 0.0
    # the He-initialized residual stack is not: each branch adds a unit-variance BN output
    assert _initial_error(build_identity_stack(4, residual=True), x) > 1.0


def test_zero_gamma_control_starts_from_the_residual_stacks_kernels():
    from reskeras._backend import keras
    keras.utils.set_random_seed(4)
    residual = build_identity_stack(3, residual=True)
    keras.utils.set_random_seed(4)
    control = build_identity_stack(3, residual=True, zero_gamma=True)
    kernels = [f"layer{i}_conv" for i in range(1, 4)]
    assert all(np.array_equal(residual.get_layer(k).kernel, control.get_layer(k).kernel)
               for k in kernels)


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


def test_result_schema_has_a_row_for_every_kind_depth_and_seed(monkeypatch):
    monkeypatch.setattr(measure, "IDENTITY_CONVERGED", 0.0)  # never converged: the cap
    result = identity_task(depths=(1, 3), seeds=(0, 5), **TINY)
    assert set(result) == {"depths", "seeds", "steps", "base_steps", "max_doublings",
                           "budgets", "width", "size", "rows"}
    assert (result["depths"], result["seeds"], result["steps"], result["base_steps"],
            result["max_doublings"], result["budgets"], result["width"], result["size"]) == \
        ([1, 3], [0, 5], 6, 3, 1, [3, 6], 4, 4)
    assert KINDS == ("plain", "residual", "residual_zero_gamma")
    assert [(r["kind"], r["depth"], r["seed"]) for r in result["rows"]] == [
        (k, d, s) for s, k, d in itertools.product((0, 5), KINDS, (1, 3))]
    for row in result["rows"]:
        assert set(row) == {"kind", "depth", "seed", "initial_error", "error", "errors",
                            "converged"}
        assert len(row["errors"]) == 2 and row["error"] == row["errors"][-1]
        assert all(type(e) is float and np.isfinite(e) for e in row["errors"])
        assert type(row["initial_error"]) is float and row["converged"] is False
        if row["kind"] == "residual_zero_gamma":
            # starts at the exact identity, where every gradient is zero: it stays there
            assert row["initial_error"] == row["error"] == 0.0
        else:
            assert row["initial_error"] > 0 and row["error"] > 0
    summary = identity_task_summary(result)
    assert set(summary) == set(KINDS) and all(list(v) == [1, 3] for v in summary.values())
    assert summary["residual_zero_gamma"] == {1: 0.0, 3: 0.0}
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


def test_doubling_continues_training_exactly_as_one_longer_run(monkeypatch):
    monkeypatch.setattr(measure, "IDENTITY_CONVERGED", 0.0)  # never converged: to the cap
    doubled = identity_task(depths=(2,), steps=4, max_doublings=2, batch_size=4, width=4,
                            size=4)
    assert (doubled["budgets"], doubled["steps"]) == ([4, 8, 16], 16)
    for steps, read in ((4, 0), (8, 1), (16, 2)):
        once = identity_task(depths=(2,), steps=steps, max_doublings=0, batch_size=4, width=4,
                             size=4)
        assert once["budgets"] == [steps]
        assert [r["errors"][read] for r in doubled["rows"]] == [r["error"] for r in once["rows"]]
        assert all(r["converged"] is None for r in once["rows"])


def test_budget_doubles_until_the_shallowest_stacks_converge_then_every_depth_trains_to_it(
        monkeypatch):
    moved = {}

    def converged(self):  # the depth-1 residual stack is the last to converge, at 3 readings
        moved.setdefault((self.kind, self.depth), []).append(len(self.errors))
        return len(self.errors) >= (3 if self.kind == "residual" else 2)

    monkeypatch.setattr(measure._Stack, "converged", converged)
    result = identity_task(depths=(2, 1), steps=2, max_doublings=4, batch_size=4, width=4,
                           size=4)
    assert (result["budgets"], result["steps"], result["max_doublings"]) == ([2, 4, 8], 8, 4)
    # only the shallowest stacks were asked while the budget grew
    assert {key for key, calls in moved.items() if len(calls) > 1} == {
        (kind, 1) for kind in KINDS}
    assert all(len(r["errors"]) == 3 for r in result["rows"])
    assert [(r["kind"], r["depth"]) for r in result["rows"]] == [
        (k, d) for k in KINDS for d in (2, 1)]


def test_budget_stops_at_the_cap_and_at_the_first_convergence(monkeypatch):
    monkeypatch.setattr(measure, "IDENTITY_CONVERGED", 0.0)
    capped = identity_task(depths=(1,), **dict(TINY, max_doublings=2))
    assert capped["budgets"] == [3, 6, 12] and capped["steps"] == 12
    assert all(r["converged"] is False for r in capped["rows"])
    monkeypatch.setattr(measure, "IDENTITY_CONVERGED", 1e9)
    first = identity_task(depths=(1,), **dict(TINY, max_doublings=2))
    assert first["budgets"] == [3, 6] and all(r["converged"] is True for r in first["rows"])
    assert measure.DEFAULT_MAX_DOUBLINGS == 3 and measure.DEFAULT_STEPS == 150


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
    (dict(max_doublings=-1), "`max_doublings` must be an integer >= 0. Received: "
                             "max_doublings=-1"),
    (dict(max_doublings=1.0), "`max_doublings` must be an integer >= 0. Received: "
                              "max_doublings=1.0"),
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
    (dict(depth=2, residual=True, zero_gamma=1), "`zero_gamma` must be True or False. "
                                                 "Received: zero_gamma=1"),
    (dict(depth=2, residual=False, zero_gamma=True),
     "`zero_gamma` needs a residual stack with BatchNorm (a plain stack would output a "
     "constant). Received: zero_gamma=True, residual=False, batch_norm=True"),
    (dict(depth=2, residual=True, batch_norm=False, zero_gamma=True),
     "`zero_gamma` needs a residual stack with BatchNorm (a plain stack would output a "
     "constant). Received: zero_gamma=True, residual=True, batch_norm=False"),
])
def test_bad_stack_arguments_raise_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
                       + "$"):
        build_identity_stack(**kwargs)


@pytest.mark.slow
def test_default_task_plain_stacks_lose_their_input_where_residual_stacks_keep_it():
    result = identity_task()
    check_default_task(result)


def check_default_task(result):
    # the shallowest stacks converged at 600 steps (seed 0), well below the 1,200-step cap
    assert result["budgets"] == [150, 300, 600] and result["steps"] == 600
    assert all(r["converged"] for r in result["rows"] if r["depth"] == 1)
    summary = identity_task_summary(result)
    # a constant output (the input's mean) scores 1 - 1/pi = 0.68
    assert all(summary["plain"][d] > 0.5 for d in (8, 16, 32))
    assert summary["plain"][1] < 0.01 and summary["plain"][4] < 0.05
    assert all(summary["residual"][d] < summary["plain"][d] for d in (2, 4, 8, 16, 32))
    assert summary["residual"][16] < 0.05 < 0.5 < summary["residual"][32]
    assert summary["residual_zero_gamma"] == {d: 0.0 for d in (1, 2, 4, 8, 16, 32)}
