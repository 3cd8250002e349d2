"""Distance travelled, distance from the identity and sharpness: the study's per-cell measures.

The sharpness check compares the power iteration with the full Hessian that TensorFlow's own
``GradientTape.jacobian`` computes of the gradient, diagonalized by NumPy.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from reskeras import build_plain, build_resnet
from reskeras.study.measures.distances import distance_from_identity, distance_travelled
from reskeras.study.measures.sharpness import top_hessian_eigenvalue


def _images(n=6, shape=(8, 8, 1), seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


def test_distance_travelled_is_exact_per_layer():
    keras.utils.set_random_seed(0)
    start = build_resnet(8, input_shape=(8, 8, 1))
    end = keras.models.clone_model(start)
    end.set_weights(start.get_weights())
    rows = distance_travelled(start, end)
    assert [r["layer"] for r in rows] == [layer.name for layer in start.layers
                                          if layer.trainable_weights]
    assert all(r["distance"] == 0.0 and r["relative"] == 0.0 for r in rows)
    kernel = end.get_layer("stage2_block1_conv2").kernel
    before = np.asarray(kernel.numpy(), np.float64)
    kernel.assign(kernel.numpy() * 1.5)  # moves it by half its norm
    moved = {r["layer"]: r for r in distance_travelled(start, end)}
    assert moved["stage2_block1_conv2"]["relative"] == pytest.approx(0.5, rel=1e-6)
    assert moved["stage2_block1_conv2"]["distance"] == pytest.approx(
        0.5 * np.linalg.norm(before), rel=1e-6)
    assert sum(r["distance"] > 0 for r in moved.values()) == 1
    with pytest.raises(ValueError, match=r"`initial` and `final` must be the same architecture"):
        distance_travelled(start, build_resnet(14, input_shape=(8, 8, 1)))


def test_a_skipinit_scale_starts_at_zero_so_its_relative_distance_is_none():
    start = build_resnet(8, branch_scale=0.0, input_shape=(8, 8, 1))
    end = keras.models.clone_model(start)
    end.set_weights(start.get_weights())
    end.get_layer("stage1_block1_scale").alpha.assign(0.25)
    row = {r["layer"]: r for r in distance_travelled(start, end)}["stage1_block1_scale"]
    assert (row["distance"], row["relative"]) == (0.25, None)


def test_distance_from_identity_lists_shape_preserving_blocks_exactly():
    images = _images()
    plain = distance_from_identity(build_plain(14, input_shape=(8, 8, 1)), images)
    assert [r["block"] for r in plain] == ["stage1_block1", "stage1_block2", "stage2_block2",
                                           "stage3_block2"]
    assert all(r["distance"] > 0.5 for r in plain)  # He-initialized plain blocks are far
    skip = distance_from_identity(build_resnet(14, branch_scale=0.0, input_shape=(8, 8, 1)),
                                  images)
    assert [r["distance"] for r in skip] == [0.0] * 4  # relu(0 * branch + x) = x, x >= 0
    dirac = distance_from_identity(build_plain(14, batch_norm=False, init="dirac",
                                               init_noise=0.0, input_shape=(8, 8, 1)), images)
    assert [r["distance"] for r in dirac] == [0.0] * 4
    # by hand for one block: ||out - in|| / ||in|| on the same images
    model = build_plain(14, input_shape=(8, 8, 1))
    probe = keras.Model(model.input, [model.get_layer("stage1_block1_out").output,
                                      model.get_layer("stage1_block2_out").output])
    x, y = (np.asarray(t, np.float64) for t in probe(images, training=False))
    expected = np.linalg.norm(y - x) / np.linalg.norm(x)
    got = {r["block"]: r["distance"] for r in distance_from_identity(model, images,
                                                                      batch_size=4)}
    assert got["stage1_block2"] == pytest.approx(expected, rel=1e-6)


def test_top_hessian_eigenvalue_matches_the_full_hessian():
    keras.utils.set_random_seed(4)
    model = build_resnet(8, width=1, batch_norm=False, input_shape=(4, 4, 1), classes=3,
                         classifier_activation=None)
    images, labels = _images(8, (4, 4, 1), seed=1), np.arange(8) % 3
    variables = model.trainable_weights
    before = [np.array(w.numpy()) for w in model.weights]
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                labels, model(images, training=False), from_logits=True))
        flat = tf.concat([tf.reshape(g, [-1]) for g in inner.gradient(loss, variables)], 0)
    hessian = np.concatenate([tf.reshape(block, [flat.shape[0], -1]).numpy()
                              for block in outer.jacobian(flat, variables)], axis=1)
    assert hessian.shape == (327, 327)
    eigenvalues = np.linalg.eigvalsh((hessian + hessian.T) / 2)
    expected = eigenvalues[np.argmax(np.abs(eigenvalues))]
    result = top_hessian_eigenvalue(model, images, labels, iterations=300, tolerance=1e-7)
    assert result["converged"] and result["iterations"] == len(result["history"])
    assert result["eigenvalue"] == pytest.approx(expected, rel=1e-4)
    for old, new in zip(before, model.weights):  # inference mode: nothing in the model moved
        np.testing.assert_array_equal(old, new.numpy())
    with pytest.raises(ValueError, match=r"`iterations` must be a positive integer"):
        top_hessian_eigenvalue(model, images, labels, iterations=0)


def test_sharpness_leaves_batch_norm_statistics_alone():
    model = build_plain(8, input_shape=(8, 8, 1))
    before = [np.array(w.numpy()) for w in model.non_trainable_weights]
    result = top_hessian_eigenvalue(model, _images(), np.arange(6) % 10, iterations=3)
    assert np.isfinite(result["eigenvalue"]) and len(result["history"]) <= 3
    for old, new in zip(before, model.non_trainable_weights):
        np.testing.assert_array_equal(old, new.numpy())
