"""The study's core number, checked independently: each cell's recorded training and test error.

Every verdict reads ``final_train_error`` / ``final_test_error`` from results.json. Here they
are recomputed without the study's error code (:mod:`reskeras.study.measures.training_error`,
:mod:`reskeras.precise_bn`): the saved ``model.keras`` is loaded with plain Keras, the digits
split is rebuilt from scikit-learn, and mistakes are counted with a NumPy argmax.
"""

import itertools
import json
import pathlib

import numpy as np
import pytest

import reskeras  # noqa: F401  (registers the package's layers for load_model)
import keras
from reskeras.data import load_dataset

BN_CELL, PLAIN_CELL = "plain14-bn-s0", "resnet14-nobn-s0"


@pytest.fixture
def tiny_study(tat_study):
    """The suite's tiny TAT study (tests/reskeras/conftest.py): Adam cells with and without
    BatchNorm, read back from results.json, the file the judgment reads."""
    config, _, _ = tat_study
    out = pathlib.Path(config.out)
    recorded = json.loads((out / "results.json").read_text())
    return out, {cell["name"]: cell for cell in recorded["cells"]}


def digits_split():
    """scikit-learn's digits as the study splits them: uint8, stratified 80/20, seed 0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, bunch.target, test_size=0.2, stratify=bunch.target, random_state=0)
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def moments(model, batches) -> dict:
    """Each BatchNorm layer's input mean and biased variance per batch, averaged over batches.

    Plain Keras training-mode passes (so each layer sees inputs normalized by the batch
    statistics of the layers before it), the moments taken in float64 NumPy.
    """
    layers = [layer for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    sums = {layer.name: [0.0, 0.0] for layer in layers}
    for images in batches:
        for layer, x in zip(layers, probe(images, training=True)):
            x = np.asarray(x, np.float64)
            mean = x.mean(axis=(0, 1, 2))
            sums[layer.name][0] += mean
            sums[layer.name][1] += ((x - mean) ** 2).mean(axis=(0, 1, 2))
    return {name: (mean / len(batches), variance / len(batches))
            for name, (mean, variance) in sums.items()}


@pytest.mark.parametrize("name, batch_norm_layers", [(BN_CELL, 13), (PLAIN_CELL, 0)])
def test_recorded_errors_equal_mistakes_of_the_saved_model_counted_here(
        tiny_study, name, batch_norm_layers):
    """The recorded errors are the saved model's mistakes over each whole split, exactly.

    The training error is taken with "precise" BatchNorm statistics (criteria TRAIN_ERROR):
    after training, each BN layer's mean and variance are recomputed with the final weights
    as the average of its per-batch moments over ``precise_bn.batches`` training batches,
    and ``model.keras`` holds those (the checkpoint keeps the moving averages). Reading
    them back from ``model.keras`` would take the study's word for them, so they are
    recomputed here: the batches are the run's own (``data.train`` at its seed and the
    epoch after its last, as the trainer draws them, augmentation included), while the
    moments, their averages and the evaluation are plain Keras and NumPy. The
    recomputed statistics must match the saved ones, and the model evaluated with them
    must reproduce the recorded errors to the example.
    """
    out, cells = tiny_study
    cell = cells[name]
    run = out / cell["run_dir"]
    config = json.loads((run / "config.json").read_text())
    training = config["training"]
    model = keras.models.load_model(run / "model.keras", compile=False)
    layers = [layer for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(layers) == batch_norm_layers
    if layers:
        # the premise: the statistics matter here (the moving averages err otherwise)
        assert cell["errors"]["train"]["ema"] != cell["final_train_error"]
        saved = {layer.name: (layer.moving_mean.numpy().copy(),
                              layer.moving_variance.numpy().copy()) for layer in layers}
        drawn = training["precise_bn"]
        assert drawn == {"batches": 4, "batch_size": 64}
        data = load_dataset("digits")
        epochs = (data.train(drawn["batch_size"], seed=training["seed"], epoch=epoch)
                  for epoch in itertools.count(training["epochs"]))
        batches = [images for images, _ in itertools.islice(itertools.chain.from_iterable(epochs),
                                                            drawn["batches"])]
        statistics = moments(model, batches)
        for layer in layers:
            mean, variance = statistics[layer.name]
            np.testing.assert_allclose(mean, saved[layer.name][0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(variance, saved[layer.name][1], rtol=1e-5, atol=1e-6)
            layer.moving_mean.assign(mean.astype(np.float32))
            layer.moving_variance.assign(variance.astype(np.float32))
    split = digits_split()
    # normalized as the study does: x * (1/255) - the per-pixel mean of the training images
    mean = np.mean(split["train"][0], axis=0, dtype=np.float64) / 255.0
    np.testing.assert_allclose(config["preprocessing"]["mean"], mean, rtol=0, atol=1e-12)
    for part, recorded in (("train", cell["final_train_error"]),
                           ("test", cell["final_test_error"])):
        images, labels = split[part]
        x = images.astype(np.float32) * np.float32(1 / 255) - mean.astype(np.float32)
        predicted = np.argmax(model.predict(x, batch_size=512, verbose=0), axis=-1)
        mistakes = int(np.sum(predicted != labels))
        assert abs(recorded - mistakes / len(labels)) < 0.5 / len(labels), (part, mistakes)


def test_train_and_test_errors_are_different_quantities(tiny_study):
    """Two splits of different sizes, and the recorded errors differ for some cell."""
    _, cells = tiny_study
    split = digits_split()
    assert (len(split["train"][1]), len(split["test"][1])) == (1437, 360)
    assert any(c["final_train_error"] != c["final_test_error"] for c in cells.values())
    for cell in cells.values():  # each a whole number of mistakes on its own split
        for key, count in (("final_train_error", 1437), ("final_test_error", 360)):
            assert abs(cell[key] * count - round(cell[key] * count)) < 1e-6
