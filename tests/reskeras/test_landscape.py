"""Loss-landscape slices: filter-normalized directions, exact restores, curve summaries, figures."""

import struct

import keras
import numpy as np
import pytest

from reskeras import build_plain, build_resnet
from reskeras.study.measures.landscape import (landscape_study, loss_slice_1d, loss_slice_2d,
                                         random_direction, summarize)
from reskeras.study.report.landscape_figures import plot_loss_slices, plot_loss_surface_2d
from reskeras.data import load_dataset
from reskeras.preprocessing import normalize

FEW_ALPHAS = np.linspace(-1, 1, 5)


def tiny_resnet(residual=True):
    build = build_resnet if residual else build_plain
    return build(8, width=4, input_shape=(8, 8, 1), classes=10)


def digits(count=96):
    data = load_dataset("digits")
    images, labels = data.arrays("train")
    return normalize(images[:count], data.info.preprocessing).numpy(), labels[:count]


def all_weights(model):
    return [np.array(v.numpy(), copy=True) for v in model.weights]


def png_size(path):
    with open(path, "rb") as handle:
        header = handle.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def test_direction_matches_shapes_and_filter_norms():
    model = tiny_resnet()
    direction = random_direction(model, seed=3)
    weights = [v.numpy() for v in model.trainable_weights]
    assert [d.shape for d in direction] == [w.shape for w in weights]
    kernels = [(d, w) for d, w in zip(direction, weights) if w.ndim >= 2]
    assert len(kernels) == 7 + 1  # 7 convs of ResNet-8 and the dense classifier
    for d, w in kernels:
        axes = tuple(range(w.ndim - 1))
        assert np.allclose(np.linalg.norm(d.reshape(-1, d.shape[-1]), axis=0),
                           np.sqrt((w ** 2).sum(axis=axes)), rtol=1e-5)
        assert not np.allclose(d, w)  # a random draw, not the weights themselves
    one_axis = [d for d, w in zip(direction, weights) if w.ndim <= 1]
    assert len(one_axis) == 2 * 7 + 1  # BN gamma and beta of every conv, the dense bias
    assert all(not d.any() for d in one_axis)


def test_ignore_none_moves_biases_and_bn_along_the_weights():
    model = tiny_resnet()
    direction = random_direction(model, seed=0, ignore=None)
    for d, v in zip(direction, model.trainable_weights):
        if len(v.shape) <= 1:
            assert np.array_equal(d, v.numpy())


def test_direction_is_seeded():
    model = tiny_resnet()
    first, again = random_direction(model, seed=1), random_direction(model, seed=1)
    other = random_direction(model, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])


def test_slice_restores_weights_and_bn_statistics_bitwise():
    model = tiny_resnet()
    rng = np.random.default_rng(0)
    for v in model.non_trainable_weights:  # non-trivial moving statistics
        v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
    before, variables = all_weights(model), [id(v) for v in model.weights]
    images, labels = digits(40)
    result = loss_slice_1d(model, images, labels, alphas=FEW_ALPHAS, batch_size=16)
    assert [id(v) for v in model.weights] == variables  # no variable created or replaced
    assert all(np.array_equal(a, b) for a, b in zip(before, all_weights(model)))
    assert len(result["loss"]) == len(result["accuracy"]) == 5 and result["examples"] == 40


def test_slice_restores_weights_when_evaluation_fails():
    model = tiny_resnet()
    before = all_weights(model)
    wrong_channels = np.zeros((4, 8, 8, 2), "float32")
    with pytest.raises(Exception):
        loss_slice_1d(model, wrong_channels, np.zeros(4, "int32"), alphas=FEW_ALPHAS)
    assert all(np.array_equal(a, b) for a, b in zip(before, all_weights(model)))


def test_center_loss_equals_keras_evaluate_in_inference_mode():
    images, labels = digits(96)
    model = tiny_resnet()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=1, batch_size=32, verbose=0)  # moving stats != init
    loss, accuracy = model.evaluate(images, labels, batch_size=40, verbose=0)
    result = loss_slice_1d(model, images, labels, alphas=[-0.5, 0.0, 0.5], batch_size=40)
    assert result["center_loss"] == pytest.approx(loss, abs=1e-5)
    assert result["center_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert result["residual"] is True and result["model"] == model.name


def test_linear_softmax_slice_is_convex():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 0.5, (32, 2)), rng.normal(2, 0.5, (32, 2))])
    y = np.repeat([0, 1], 32)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.layers[0].set_weights([np.array([[-1.0, 1.0], [-1.0, 1.0]], "float32"),
                                 np.zeros(2, "float32")])
    result = loss_slice_1d(model, x, y, alphas=np.linspace(-1, 1, 21))
    assert result["curvature"] > 0
    assert np.all(np.diff(result["loss"], 2) > -1e-9)  # cross-entropy is convex in the weights
    assert result["roughness"] < 1e-6 and result["local_minima"] <= 1
    assert result["center_accuracy"] == 1.0 and result["residual"] is False


def test_summary_numbers_separate_a_basin_from_a_chaotic_curve():
    alphas = np.linspace(-1, 1, 41)
    bowl = summarize(alphas, 2.0 * alphas ** 2 + 0.1)
    assert bowl["curvature"] == pytest.approx(4.0)
    assert bowl["roughness"] == 0.0 and bowl["local_minima"] == 1
    assert bowl["sharpness"] == pytest.approx(2.0 * 0.04 / 1.1)
    flattening = summarize(alphas, 2.3 - 2.2 * np.exp(-4 * alphas ** 2))
    assert flattening["roughness"] == pytest.approx(0.0, abs=1e-12)
    chaotic = summarize(alphas, 2.0 * alphas ** 2 + 0.5 * np.sin(25 * alphas) + 1)
    assert chaotic["roughness"] > 1.0 and chaotic["local_minima"] >= 3


def test_2d_grid_shape_and_axis_agree_with_1d():
    model = tiny_resnet()
    images, labels = digits(32)
    directions = (random_direction(model, seed=0), random_direction(model, seed=1))
    grid = loss_slice_2d(model, images, labels, directions=directions,
                         alphas=[-1, 0, 1], betas=[-1, -0.5, 0, 1])
    assert np.shape(grid["loss"]) == np.shape(grid["accuracy"]) == (3, 4)
    line = loss_slice_1d(model, images, labels, direction=directions[0], alphas=[-1, 0, 1])
    assert np.allclose(np.asarray(grid["loss"])[:, 2], line["loss"], rtol=1e-12)
    assert grid["center_loss"] == line["center_loss"]


def test_study_uses_one_seed_and_tells_plain_from_residual(tmp_path):
    models = {"plain8": tiny_resnet(residual=False), "resnet8": tiny_resnet()}
    images, labels = digits(32)
    results = landscape_study(models, images, labels, alphas=FEW_ALPHAS, seed=5)
    assert list(results) == ["plain8", "resnet8"]
    assert [r["seed"] for r in results.values()] == [5, 5]
    assert [r["residual"] for r in results.values()] == [False, True]

    path = plot_loss_slices(results, str(tmp_path / "slices.png"))
    assert png_size(path) == (700, 450)
    grid = {"alphas": [-1, 0, 1], "betas": [-1, 0, 1],
            "loss": [[3.0, 2.0, 3.0], [2.0, 0.5, 2.0], [3.0, 2.0, 40.0]]}
    assert png_size(plot_loss_surface_2d(grid, str(tmp_path / "surface.png"))) == (600, 500)


@pytest.mark.parametrize("kwargs, message", [
    (dict(alphas=[-1.0, -0.5, 0.5, 1.0]), "`alphas` must contain 0"),
    (dict(alphas=[1.0, 0.0, -1.0]), "`alphas` must be an increasing"),
    (dict(alphas=[0.0, 1.0]), "`alphas` must be an increasing"),
    (dict(ignore="bn"), "`ignore` must be 'biasbn' or None"),
    (dict(seed=-1), "`seed` must be an integer >= 0"),
    (dict(batch_size=0), "`batch_size` must be a positive integer"),
    (dict(direction=[np.zeros(3)]), "`direction` must be one array per trainable weight"),
    (dict(labels=np.zeros(3, "int32")), "`labels` must be N=8 integer class labels"),
])
def test_bad_arguments_raise_one_line_value_errors(kwargs, message):
    model = tiny_resnet()
    arguments = dict(images=np.zeros((8, 8, 8, 1), "float32"), labels=np.zeros(8, "int32"))
    arguments.update(kwargs)
    before = all_weights(model)
    with pytest.raises(ValueError) as error:
        loss_slice_1d(model, **arguments)
    assert message in str(error.value) and "Received:" in str(error.value)
    assert "\n" not in str(error.value)
    assert all(np.array_equal(a, b) for a, b in zip(before, all_weights(model)))


def test_study_refuses_a_shared_direction():
    model = tiny_resnet()
    with pytest.raises(ValueError, match="`direction` cannot be shared"):
        landscape_study({"a": model}, np.zeros((2, 8, 8, 1)), np.zeros(2, "int32"),
                        direction=random_direction(model))
