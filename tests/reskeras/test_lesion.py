"""Lesion study: exact block lists, lesioned outputs equal hand computations, shared weights,
no side effects on the model."""

import re

import keras
import numpy as np
import pytest

from reskeras import build_plain, build_resnet
from reskeras.study.measures.lesion import lesion_blocks, lesion_study, lesioned_model
from reskeras.data import load_dataset
from reskeras.preprocessing import normalize


def tiny(depth=8, residual=True, **kwargs):
    kwargs.setdefault("input_shape", (8, 8, 1))
    return build_resnet(depth, residual=residual, classes=10, **kwargs)


def randomize_bn(model, seed=0):
    """Non-trivial BN (at init inference-mode BN is nearly the identity)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape),
                               rng.normal(0, 0.3, beta.shape),
                               rng.normal(0, 0.3, mean.shape),
                               rng.uniform(0.5, 2.0, variance.shape)])


def images(n=6, shape=(8, 8, 1), seed=1):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


def predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_block_lists_of_resnet8_resnet14_plain14():
    assert lesion_blocks(tiny(8)) == [
        {"block": "stage1_block1", "kind": "residual", "index": 0},
        {"block": "stage2_block1", "kind": "residual", "index": 1},
        {"block": "stage3_block1", "kind": "residual", "index": 2}]
    assert [b["block"] for b in lesion_blocks(tiny(14))] == [
        "stage1_block1", "stage1_block2", "stage2_block1", "stage2_block2",
        "stage3_block1", "stage3_block2"]
    # plain: only blocks whose input and output shapes agree (not the downsampling ones)
    assert lesion_blocks(tiny(14, residual=False)) == [
        {"block": "stage1_block1", "kind": "plain", "index": 0},
        {"block": "stage1_block2", "kind": "plain", "index": 1},
        {"block": "stage2_block2", "kind": "plain", "index": 3},
        {"block": "stage3_block2", "kind": "plain", "index": 5}]
    assert [b["block"] for b in lesion_blocks(tiny(14, residual=False, version="v2"))] == [
        "stage1_block1", "stage1_block2", "stage2_block2", "stage3_block2"]


def _zero_branch(model, prefix):
    """Makes the residual branch of ``prefix`` output exactly zero."""
    last = max(int(match.group(1)) for match in (
        re.match(rf"^{prefix}_conv(\d+)$", layer.name) for layer in model.layers) if match)
    bn = [layer for layer in model.layers if layer.name == f"{prefix}_bn{last}"]
    if bn and model.get_layer(f"{prefix}_conv{last}").output is bn[0].input:  # v1 with BN
        gamma, beta, mean, variance = bn[0].get_weights()
        bn[0].set_weights([0 * gamma, 0 * beta, mean, variance])
    else:
        conv = model.get_layer(f"{prefix}_conv{last}")
        conv.set_weights([0 * w for w in conv.get_weights()])


@pytest.mark.parametrize("kwargs", [
    dict(depth=8),                                        # v1, option A, BN
    dict(depth=8, version="v2"),
    dict(depth=8, shortcut="B", batch_norm=False),
    dict(depth=8, shortcut="C", version="v2"),
    dict(depth=18, width=4, input_shape=(32, 32, 3)),      # ImageNet, basic, option B
    dict(depth=50, width=2, version="v2", input_shape=(32, 32, 3)),  # ImageNet bottleneck
], ids=["v1-A", "v2-A", "v1-B-noBN", "v2-C", "imagenet18", "imagenet50-v2"])
def test_deleting_a_residual_block_equals_zeroing_its_branch(kwargs):
    depth = kwargs.pop("depth")
    model = tiny(depth, **kwargs)
    randomize_bn(model)
    x = images(4, model.input_shape[1:])
    blocks = [b["block"] for b in lesion_blocks(model)]
    blocks = blocks if depth < 50 else [blocks[0], blocks[3]]  # identity and projection blocks
    for prefix in blocks:
        lesioned = predict(lesioned_model(model, prefix), x)
        saved = model.get_weights()
        _zero_branch(model, prefix)
        zeroed = predict(model, x)
        model.set_weights(saved)
        np.testing.assert_allclose(lesioned, zeroed, rtol=1e-5, atol=1e-6, err_msg=prefix)
        assert not np.allclose(lesioned, predict(model, x), atol=1e-6), prefix


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_deleting_a_plain_block_equals_skipping_its_layers(version):
    model = tiny(14, residual=False, version=version)
    randomize_bn(model)
    x = images()
    for prefix in ("stage1_block1", "stage2_block2"):
        y = x
        for layer in model.layers[1:]:  # a plain net is a chain
            if layer.name.startswith(prefix + "_") and layer.name != f"{prefix}_out":
                continue
            y = layer(y, training=False)
        lesioned = predict(lesioned_model(model, prefix), x)
        np.testing.assert_allclose(lesioned, keras.ops.convert_to_numpy(y), rtol=1e-5, atol=1e-6)
        assert not np.allclose(lesioned, predict(model, x), atol=1e-6)


def test_lesioned_models_share_the_trained_layers():
    model = tiny(8)
    ids = {id(v) for v in model.weights}
    for entry in lesion_blocks(model):
        lesioned = lesioned_model(model, entry)
        assert lesioned.name == f"resnet8_minus_{entry['block']}"
        assert all(id(v) in ids for v in lesioned.weights)
        # conv1 + bn1 (gamma, beta, mean, variance) + conv2 + bn2: 10 variables leave
        assert len(lesioned.weights) == len(model.weights) - 10
        assert lesioned.get_layer("predictions") is model.get_layer("predictions")
        assert f"{entry['block']}_conv1" not in [layer.name for layer in lesioned.layers]
    # the full model is untouched by the lesioned twins built on its layers
    # 29 layers + the two pad layers before the strided convs of stages 2 and 3
    assert len(model.layers) == 31 and model.get_layer("stage1_block1_add").output is \
        model.get_layer("stage1_block1_out").input


def test_lesion_study_on_digits_changes_nothing_in_the_model():
    data = load_dataset("digits")
    x_train, y_train = data.arrays("train")
    x_test, y_test = data.arrays("test")
    x_train = normalize(x_train, data.info.preprocessing).numpy()
    x_test = normalize(x_test, data.info.preprocessing).numpy()
    model = tiny(8)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, batch_size=64, epochs=3, verbose=0)
    before = [np.array(w) for w in model.get_weights()]

    study = lesion_study(model, x_test, y_test, batch_size=100)

    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # BN moving stats included
    accuracy = np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test)
    assert study["baseline_error"] == pytest.approx(1 - accuracy)
    assert study["baseline_error"] < 0.5  # it learned something: the errors mean something
    assert [b["block"] for b in study["blocks"]] == [b["block"] for b in lesion_blocks(model)]
    for entry in study["blocks"]:
        assert 0.0 <= entry["error"] <= 1.0
        assert entry["error_increase"] == pytest.approx(entry["error"] - study["baseline_error"])
        assert entry["error"] * len(y_test) == pytest.approx(round(entry["error"] * len(y_test)))


def test_lesion_study_of_a_plain_net_covers_only_same_shape_blocks():
    model = tiny(14, residual=False)
    study = lesion_study(model, images(8), np.arange(8) % 10, batch_size=3)
    assert [(b["block"], b["kind"]) for b in study["blocks"]] == [
        ("stage1_block1", "plain"), ("stage1_block2", "plain"),
        ("stage2_block2", "plain"), ("stage3_block2", "plain")]
    one_hot = lesion_study(model, images(8), np.eye(10)[np.arange(8) % 10])
    assert one_hot == study


def test_errors_name_the_argument_and_value():
    plain = tiny(14, residual=False)
    with pytest.raises(ValueError, match=r"^`block` must be one of the lesionable blocks .*"
                                         r"Received: block='stage2_block1'$"):
        lesioned_model(plain, "stage2_block1")
    with pytest.raises(ValueError, match=r"Received: block='stage9_block1'$"):
        lesioned_model(tiny(8), "stage9_block1")
    inputs = keras.Input((4,))
    other = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
    with pytest.raises(ValueError, match=r"^`model` must have blocks named"):
        lesion_blocks(other)
    with pytest.raises(ValueError, match=r"^`model` must be a functional keras.Model"):
        lesion_blocks("resnet8")
    with pytest.raises(ValueError, match=r"^`batch_size` must be a positive integer\. "
                                         r"Received: batch_size=0$"):
        lesion_study(plain, images(2), [0, 1], batch_size=0)
    with pytest.raises(ValueError, match=r"^`labels` must hold one label per image"):
        lesion_study(plain, images(2), [0, 1, 2])
