"""Precise BatchNorm statistics: what they compute, what they leave alone, what they fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import reskeras  # noqa: F401  (registers the custom layers)
from reskeras import build_plain, build_resnet
from reskeras._backend import keras
from reskeras.data import load_dataset
from reskeras.precise_bn import (assign_statistics, batch_norm_layers, default_batches,
                                 moving_statistics, population_statistics, statistics_applied,
                                 training_batches)
from reskeras.study.measures.training_error import batch_error, inference_error, split_errors
from reskeras.train import TrainConfig, checkpoint_model, train


def _batches(count, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(1.0, 2.0, size=(size, 8, 8, 1)).astype("float32") for _ in range(count)]


def _variables(model):
    return [v.numpy().copy() for v in model.weights]


def test_statistics_change_no_variable_and_match_the_running_average_of_tf_fused_kernel():
    """The reference is pycls's way: a training-mode pass per batch with momentum set so that
    the moving average becomes the running mean of the batch statistics, here through
    TensorFlow's FusedBatchNormV3 kernel (the layers' own training path)."""
    model = build_resnet(14, input_shape=(8, 8, 1), classes=10)
    batches = _batches(4)
    before = _variables(model)
    found = population_statistics(model, batches)
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(before, model.weights))
    assert sorted(found) == sorted(layer.name for layer in batch_norm_layers(model))
    assert len(found) == 13  # stem + 2 per block, 6 blocks

    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    layers = batch_norm_layers(reference)
    for index, images in enumerate(batches):
        for layer in layers:
            layer.momentum = index / (index + 1)  # moving <- (index * moving + batch) / (index + 1)
        reference(images, training=True)
    for layer in layers:
        mean, variance = found[layer.name]
        np.testing.assert_allclose(mean, layer.moving_mean.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(variance, layer.moving_variance.numpy(), rtol=1e-4, atol=1e-5)


def test_the_first_layer_statistics_equal_numpy_moments_of_its_conv_output():
    model = build_plain(8, input_shape=(8, 8, 1), classes=10)
    batches = _batches(3)
    conv = keras.Model(model.inputs, model.get_layer("stem_conv").output)
    outputs = [np.asarray(conv(b), np.float64) for b in batches]
    mean, variance = population_statistics(model, batches)["stem_bn"]
    np.testing.assert_allclose(mean, np.mean([o.mean(axis=(0, 1, 2)) for o in outputs], 0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(variance, np.mean([o.var(axis=(0, 1, 2)) for o in outputs], 0),
                               rtol=1e-5, atol=1e-6)


def test_one_batch_of_statistics_makes_inference_equal_training_mode_on_it():
    model = build_plain(8, input_shape=(8, 8, 1), classes=10)
    images = np.random.default_rng(0).normal(2.0, 3.0, size=(64, 8, 8, 1)).astype("float32")
    weights = [w.numpy().copy() for w in model.trainable_weights]
    assign_statistics(model, population_statistics(model, [images]))
    with keras.StatelessScope():
        training = model(images, training=True)
    np.testing.assert_allclose(model(images, training=False), training, rtol=1e-5, atol=1e-6)
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(weights, model.trainable_weights))
    assert {layer.momentum for layer in batch_norm_layers(model)} == {0.9}


def test_statistics_applied_restores_the_moving_averages():
    model = build_plain(8, input_shape=(8, 8, 1), classes=10)
    kept = moving_statistics(model)
    found = population_statistics(model, _batches(2))
    with statistics_applied(model, found):
        assert np.array_equal(model.get_layer("stem_bn").moving_mean.numpy(), found["stem_bn"][0])
    assert all(np.array_equal(kept[name][0], model.get_layer(name).moving_mean.numpy())
               for name in kept)


def test_bad_input_names_the_argument():
    model = build_plain(8, input_shape=(8, 8, 1), classes=10)
    with pytest.raises(ValueError, match=r"`batches` must hold at least one batch"):
        population_statistics(model, [])
    with pytest.raises(ValueError, match=r"`statistics` must name exactly the model's "
                                         r"BatchNorm layers. Received: .*stage"):
        assign_statistics(model, {"stem_bn": (np.zeros(16), np.ones(16))})
    no_bn = build_plain(8, input_shape=(8, 8, 1), classes=10, batch_norm=False)
    assert population_statistics(no_bn, _batches(1)) == {}
    assert (default_batches(11), default_batches(200), default_batches(201)) == (11, 200, 200)


def test_training_batches_are_the_next_epochs_of_the_run():
    data = load_dataset("digits")
    drawn = list(training_batches(data, 128, seed=3, epoch=5, count=13))
    expected = [x for e in (5, 6) for x, _ in data.train(128, seed=3, epoch=e)][:13]
    assert len(drawn) == 13 and data.steps_per_epoch(128) == 11
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(drawn, expected))


def test_precise_statistics_recover_the_batch_error_that_a_lagging_average_loses():
    """A BN net whose moving averages barely move (momentum 0.999): after training, inference
    with them is near chance, training mode is not, and precise statistics agree with it."""
    keras.utils.set_random_seed(0)
    data = load_dataset("digits")
    model = build_plain(8, input_shape=(8, 8, 1), classes=10)
    for layer in batch_norm_layers(model):
        layer.momentum = 0.999
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    for epoch in range(4):
        model.fit(data.train(64, seed=0, epoch=epoch), verbose=0)
    ema = inference_error(model, data, "train")
    batch = batch_error(model, data, batch_size=64)
    kept = moving_statistics(model)
    found = population_statistics(model, training_batches(data, 64, seed=0, epoch=4, count=22))
    with statistics_applied(model, found):
        precise = inference_error(model, data, "train")
    assert all(np.array_equal(kept[n][1], model.get_layer(n).moving_variance.numpy())
               for n in kept)
    assert batch < 0.25 and ema > 0.6, (ema, batch, precise)
    assert abs(precise - batch) < 0.05, (ema, batch, precise)


def _run(tmp_path, name, **overrides):
    config = dict(out=str(tmp_path / name), model="plain8", dataset="digits", epochs=2,
                  recipe="adam", deterministic=True, verbose=0)
    config.update(overrides)
    return train(TrainConfig(**config))


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """plain-8, 2 epochs, deterministic, without precise BN: the reference training state."""
    root = tmp_path_factory.mktemp("runs")
    _run(root, "straight")
    return root / "straight"


def _checkpoint_tensors(run_dir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run_dir / "checkpoints")))
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if not key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def test_the_trainer_saves_precise_statistics_and_leaves_the_training_state_alone(
        tmp_path, straight_run):
    assert _run(tmp_path, "precise", precise_bn=True).status == "finished"
    # every tensor of the last checkpoint (weights, optimizer, moving averages) is the same
    a, b = _checkpoint_tensors(tmp_path / "precise"), _checkpoint_tensors(straight_run)
    assert a.keys() == b.keys() and len(a) > 40
    assert all(np.array_equal(a[k], b[k]) for k in a)
    saved = keras.models.load_model(tmp_path / "precise" / "model.keras", compile=False)
    moving = checkpoint_model(str(tmp_path / "precise"))
    assert all(np.array_equal(x.numpy(), y.numpy())
               for x, y in zip(saved.trainable_weights, moving.trainable_weights))
    # model.keras holds statistics recomputed as the summary says, not the moving averages
    summary = json.loads((tmp_path / "precise" / "summary.json").read_text())
    config = json.loads((tmp_path / "precise" / "config.json").read_text())
    entry = summary["precise_bn"]
    assert config["training"]["precise_bn"] == {"batches": 11, "batch_size": 128}
    assert {k: entry[k] for k in ("batches", "batch_size", "layers")} == {
        "batches": 11, "batch_size": 128, "layers": 7}
    data = load_dataset("digits")
    expected = population_statistics(moving, training_batches(data, 128, seed=0, epoch=2,
                                                              count=11))
    for name, (mean, variance) in expected.items():
        np.testing.assert_allclose(saved.get_layer(name).moving_mean.numpy(), mean, rtol=1e-6)
        np.testing.assert_allclose(saved.get_layer(name).moving_variance.numpy(), variance,
                                   rtol=1e-6)
    assert not np.array_equal(saved.get_layer("stem_bn").moving_mean.numpy(),
                              moving.get_layer("stem_bn").moving_mean.numpy())
    # the reported test accuracy is the saved model's, measured by Keras itself
    images, labels = data.arrays("test")
    pre = config["preprocessing"]
    x = images.astype(np.float32) * pre["scale"] - np.asarray(pre["mean"], np.float32)
    saved.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, accuracy = saved.evaluate(x, labels, batch_size=97, verbose=0)
    assert accuracy == pytest.approx(entry["val_accuracy"], abs=1e-6)
    assert summary["final"]["val_accuracy"] != entry["val_accuracy"]


def test_a_resumed_run_is_unaffected_by_precise_statistics_taken_when_it_stopped(
        tmp_path, straight_run):
    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    config = dict(out=str(tmp_path / "stopped"), model="plain8", dataset="digits", epochs=2,
                  recipe="adam", deterministic=True, verbose=0, precise_bn=True)
    stopped = train(TrainConfig(**config), callbacks=[StopAfterFirstEpoch()])
    assert (stopped.status, stopped.step) == ("stopped", 11)
    assert json.loads((tmp_path / "stopped" / "summary.json").read_text())["precise_bn"]
    resumed = train(TrainConfig(**config))
    assert (resumed.status, resumed.step) == ("finished", 22)
    a, b = _checkpoint_tensors(tmp_path / "stopped"), _checkpoint_tensors(straight_run)
    assert all(np.array_equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


def test_no_bn_nets_give_one_number_every_way(tmp_path):
    _run(tmp_path, "nobn", precise_bn=True, batch_norm=False, model=None, depth=8, plain=True)
    run_dir = tmp_path / "nobn"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["precise_bn"]["layers"] == 0
    assert summary["precise_bn"]["val_accuracy"] == summary["final"]["val_accuracy"]
    saved = keras.models.load_model(run_dir / "model.keras", compile=False)
    errors = split_errors(checkpoint_model(str(run_dir)), saved, load_dataset("digits"),
                          batch_size=128)
    assert len(set(errors["train"].values())) == 1 and len(set(errors["test"].values())) == 1
    assert errors["bn_statistics_gap"] == 0.0


def test_error_passes_traced_for_any_batch_size_give_the_numbers_of_per_shape_traces():
    """One trace for every batch size (``any_batch``) computes what a trace per input shape
    computes, to the bit: the last, smaller batch of each split included."""
    from reskeras.precise_bn import any_batch, moving_statistics
    from reskeras.study.measures.training_error import Predictors, model_errors

    model = build_plain(8, input_shape=(8, 8, 1), classes=10)
    assert any_batch(model) == tf.TensorSpec((None, 8, 8, 1), tf.float32)
    per_shape = Predictors.__new__(Predictors)
    per_shape.inference = tf.function(lambda images: model(images, training=False))

    @tf.function
    def batch_mode(images):
        with keras.StatelessScope():
            return model(images, training=True)

    per_shape.batch_mode = batch_mode
    data = load_dataset("digits")  # 1,437 and 360 examples: no batch size below divides them
    once = Predictors(model)
    found = [model_errors(model, moving_statistics(model), data, batch_size=64,
                          predictors=predictors) for predictors in (once, per_shape)]
    assert once.inference.experimental_get_tracing_count() == 1
    assert found[0] == found[1]
    # batches of 512: 512 and 413 training images, then the 360 test images
    assert per_shape.inference.experimental_get_tracing_count() == 3
