"""Shattered gradients: exact gradients of a linear softmax model, correlation facts on
constructed arrays, determinism, and plain vs residual at initialization on digits."""

import keras
import numpy as np
import pytest

from reskeras import build_plain, build_resnet
from reskeras.study.criteria import SHATTERING_GAP
from reskeras.study.measures.shattering import (gradient_correlation, input_gradients_along_line,
                                          shattering_study)
from reskeras.data import load_dataset
from reskeras.preprocessing import normalize


def linear_model(classes=10):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def image(seed=0):
    return np.random.default_rng(seed).normal(size=(8, 8, 1)).astype("float32")


def digits(n):
    data = load_dataset("digits")
    images, _ = data.arrays("test")
    return normalize(images[:n], data.info.preprocessing).numpy()


def test_linear_softmax_gradients_are_exact_and_smooth():
    model = linear_model()
    kernel, bias = model.get_layer("predictions").get_weights()
    center = image()
    direction = image(1)
    gradients = input_gradients_along_line(model, center, direction, points=64, span=1.0)
    assert gradients.shape == (64, 64) and gradients.dtype == np.float32
    target = int(np.argmax(center.reshape(-1) @ kernel + bias))
    for t, row in zip(np.linspace(-1, 1, 64), gradients):
        x = (center + t * direction).reshape(-1).astype(np.float64)
        logits = x @ kernel + bias
        p = np.exp(logits - logits.max())
        p /= p.sum()
        # d log p_c / dx = W[:, c] - W p, with the class fixed at the line's center
        np.testing.assert_allclose(row, kernel[:, target] - kernel @ p, rtol=1e-4, atol=1e-5)
    measures = gradient_correlation(input_gradients_along_line(model, center))
    assert measures["neighbour_correlation"] > 0.99
    assert measures["decorrelation_length"] is None


def test_softmax_head_and_logits_head_give_the_same_gradients():
    probabilities = build_resnet(8, input_shape=(8, 8, 1), classes=10)
    logits = build_resnet(8, input_shape=(8, 8, 1), classes=10, classifier_activation=None)
    logits.set_weights(probabilities.get_weights())
    a = input_gradients_along_line(probabilities, image(), points=16)
    b = input_gradients_along_line(logits, image(), points=16)
    assert a.shape == (16, 64) and np.all(np.isfinite(a)) and np.abs(a).max() > 0
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_default_direction_is_seeded_unit_rms_normal():
    model = build_resnet(8, input_shape=(8, 8, 1), classes=10)
    default = input_gradients_along_line(model, image(), points=8, seed=3)
    direction = np.random.default_rng(3).standard_normal((8, 8, 1))
    direction /= np.sqrt(np.mean(direction ** 2))
    np.testing.assert_array_equal(
        default, input_gradients_along_line(model, image(), direction, points=8))
    np.testing.assert_array_equal(
        default, input_gradients_along_line(model, image()[None], points=8, seed=3))
    assert not np.allclose(default, input_gradients_along_line(model, image(), points=8, seed=4))


def test_bn_statistics_are_not_touched():
    model = build_plain(8, input_shape=(8, 8, 1), classes=10)
    before = [np.array(w) for w in model.get_weights()]
    input_gradients_along_line(model, image(), points=8)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_correlation_of_identical_gradients_is_one():
    row = np.random.default_rng(0).normal(size=50)
    measures = gradient_correlation(np.tile(row, (20, 1)))
    assert measures["neighbour_correlation"] == pytest.approx(1.0)
    assert measures["autocorrelation"] == pytest.approx([1.0] * 6)
    assert measures["decorrelation_length"] is None


def test_white_noise_gradients_decorrelate_at_lag_one():
    noise = np.random.default_rng(0).normal(size=(128, 256))
    measures = gradient_correlation(noise)
    assert abs(measures["neighbour_correlation"]) < 0.05
    assert len(measures["autocorrelation"]) == 128 // 4 + 1
    assert measures["autocorrelation"][0] == pytest.approx(1.0)
    assert max(abs(v) for v in measures["autocorrelation"][1:]) < 0.05
    assert measures["decorrelation_length"] == 1


def test_zero_gradients_have_no_correlation():
    gradients = np.random.default_rng(0).normal(size=(8, 16))
    gradients[::2] = 0.0  # every pair of neighbours has one constant row
    measures = gradient_correlation(gradients)
    assert np.isnan(measures["neighbour_correlation"])
    assert measures["autocorrelation"][0] == pytest.approx(1.0)


def test_plain20_shatters_more_than_resnet20_at_initialization():
    keras.utils.set_random_seed(0)
    models = {"plain20": build_plain(20, input_shape=(8, 8, 1), classes=10),
              "resnet20": build_resnet(20, input_shape=(8, 8, 1), classes=10)}
    rows = shattering_study(models, digits(2), points=64)
    assert [row["model"] for row in rows] == ["plain20", "resnet20"]
    plain, residual = rows
    # by at least the gap the study's shattering rule needs (measured: 0.72 against 0.91)
    assert plain["neighbour_correlation"] <= residual["neighbour_correlation"] - SHATTERING_GAP
    for row in rows:
        assert [r["image"] for r in row["per_image"]] == [0, 1]
        assert row["neighbour_correlation"] == pytest.approx(
            np.mean([r["neighbour_correlation"] for r in row["per_image"]]))
        assert len(row["autocorrelation"]) == 64 // 4 + 1
        assert row["decorrelated_images"] == sum(
            r["decorrelation_length"] is not None for r in row["per_image"])


def test_study_uses_the_same_lines_for_every_model():
    model = build_resnet(8, input_shape=(8, 8, 1), classes=10)
    rows = shattering_study({"a": model, "b": model}, np.stack([image(0), image(1)]), points=16,
                            seed=5)
    assert rows[0]["per_image"] == rows[1]["per_image"]
    second = gradient_correlation(input_gradients_along_line(model, image(1), points=16, seed=6))
    assert rows[0]["per_image"][1] == {"image": 1, **second}


def test_errors_name_the_argument_and_value():
    model = linear_model()
    with pytest.raises(ValueError, match=r"^`points` must be an integer >= 3\. "
                                         r"Received: points=1$"):
        input_gradients_along_line(model, image(), points=1)
    with pytest.raises(ValueError, match=r"^`span` must be a finite number > 0\. "
                                         r"Received: span=0$"):
        input_gradients_along_line(model, image(), span=0)
    with pytest.raises(ValueError, match=r"^`image` must have the model's input shape"):
        input_gradients_along_line(model, np.zeros((4, 4, 1)))
    with pytest.raises(ValueError, match=r"^`direction` must have the shape of `image`"):
        input_gradients_along_line(model, image(), direction=np.ones(3))
    with pytest.raises(ValueError, match=r"^`gradients` must be \[points, D\].*"
                                         r"Received: gradients.shape=\(5,\)$"):
        gradient_correlation(np.ones(5))
    with pytest.raises(ValueError, match=r"^`models` must be a non-empty dict"):
        shattering_study({}, np.zeros((1, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"^`seed` must be an integer >= 0\. Received: seed=-1$"):
        shattering_study({"m": model}, np.zeros((1, 8, 8, 1)), seed=-1)
