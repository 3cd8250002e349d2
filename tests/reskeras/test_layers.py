import numpy as np
import pytest

from reskeras.layers import ZeroPadShortcut


@pytest.mark.parametrize("shape, filters, strides", [
    ((2, 8, 8, 16), 32, 2), ((2, 7, 9, 3), 8, 2), ((1, 4, 4, 4), 4, 1), ((1, 5, 5, 2), 6, 1)])
def test_matches_slicing_and_zero_padding(shape, filters, strides):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    expected = np.zeros((shape[0], -(-shape[1] // strides), -(-shape[2] // strides), filters),
                        np.float32)
    expected[..., :shape[3]] = x[:, ::strides, ::strides, :]
    layer = ZeroPadShortcut(filters, strides)
    out = layer(x)
    np.testing.assert_array_equal(out, expected)
    assert layer.compute_output_shape(shape) == expected.shape
    assert layer.count_params() == 0


def test_refuses_to_drop_channels():
    with pytest.raises(ValueError, match=r"`filters` must be >= 16 input channels. "
                                         r"Received: filters=8"):
        ZeroPadShortcut(8, 2)(np.zeros((1, 4, 4, 16), np.float32))


def test_config_round_trip():
    layer = ZeroPadShortcut(32, 2, name="stage2_block1_shortcut")
    clone = ZeroPadShortcut.from_config(layer.get_config())
    assert (clone.filters, clone.strides, clone.name) == (32, 2, "stage2_block1_shortcut")


def _bn_pair(**kwargs):
    import keras
    from reskeras.layers import FusedBatchNormalization
    keras_bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, **kwargs)
    fused_bn = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, **kwargs)
    for layer in (keras_bn, fused_bn):
        layer.build((None, 5, 6, 3))
    rng = np.random.default_rng(1)
    weights = [rng.normal(1, 0.3, 3), rng.normal(0, 0.3, 3), rng.normal(0, 0.1, 3),
               rng.uniform(0.5, 2, 3)]
    keras_bn.set_weights([w.astype(np.float32) for w in weights][-len(keras_bn.weights):])
    fused_bn.set_weights(keras_bn.get_weights())
    return keras_bn, fused_bn, weights[2:]


@pytest.mark.parametrize("kwargs", [{}, {"center": False}, {"scale": False}])
def test_fused_batch_norm_matches_keras_in_outputs_gradients_and_statistics(kwargs):
    import tensorflow as tf
    keras_bn, fused_bn, (moving_mean, moving_variance) = _bn_pair(**kwargs)
    x = tf.constant(np.random.default_rng(2).normal(3, 2, (4, 5, 6, 3)), tf.float32)
    results = []
    for layer in (keras_bn, fused_bn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.range(3, dtype=tf.float32))
        grads = tape.gradient(loss, [x, *layer.trainable_variables])
        results.append((y, grads, [v.numpy() for v in layer.non_trainable_variables]))
    (y1, g1, s1), (y2, g2, s2) = results
    np.testing.assert_allclose(y2, y1, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    for a, b in zip(s1, s2):  # moving mean and the biased batch variance, momentum 0.9
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    x = x.numpy()
    np.testing.assert_allclose(s2[0], 0.9 * moving_mean + 0.1 * x.mean(axis=(0, 1, 2)),
                               rtol=1e-5)
    np.testing.assert_allclose(s2[1], 0.9 * moving_variance + 0.1 * x.var(axis=(0, 1, 2)),
                               rtol=1e-5)
    ops = {op.type for op in tf.function(lambda v: fused_bn(v, training=True))
           .get_concrete_function(x).graph.get_operations()}
    assert "FusedBatchNormV3" in ops and "Rsqrt" not in ops
    # inference uses the moving statistics, as in Keras
    np.testing.assert_allclose(fused_bn(x, training=False), keras_bn(x, training=False),
                               rtol=1e-5, atol=1e-5)


def test_fused_batch_norm_round_trips_through_keras_files(tmp_path):
    import keras
    import reskeras  # noqa: F401
    inputs = keras.Input((5, 6, 3))
    model = keras.Model(inputs, _bn_pair()[1](inputs))
    model.save(tmp_path / "bn.keras")
    loaded = keras.models.load_model(tmp_path / "bn.keras", safe_mode=True)
    assert type(loaded.layers[-1]).__name__ == "FusedBatchNormalization"
    assert loaded.layers[-1].get_config() == model.layers[-1].get_config()
    x = np.random.default_rng(3).random((2, 5, 6, 3), dtype=np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))


def test_shortcut_gradient_routes_each_kept_value_back_to_its_pixel():
    import tensorflow as tf
    x = tf.constant(np.random.default_rng(3).random((2, 7, 9, 3), dtype=np.float32))
    weights = np.random.default_rng(4).random((2, 4, 5, 8), dtype=np.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(ZeroPadShortcut(8, 2)(x) * weights)
    expected = np.zeros((2, 7, 9, 3), np.float32)
    expected[:, ::2, ::2, :] = weights[..., :3]
    np.testing.assert_array_equal(tape.gradient(loss, x), expected)
