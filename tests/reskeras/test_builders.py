import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from reskeras import build_model, build_plain, build_resnet
from tests.conftest import trainable_params

# DESIGN.md reference numbers: conv without bias, BN gamma+beta, dense with bias.
CIFAR_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962,
                1202: 19_421_274}
IMAGENET_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160,
                   152: 60_192_808}

NAME_RE = re.compile(
    r"^(input|stem_(conv|bn|relu|pool|conv_pad|pool_pad)|head_(pool|bn|relu)|predictions"
    r"|stage\d+_block\d+_((conv|bn|relu)\d+|conv\d+_pad|shortcut|shortcut_bn|add|out))$")


@pytest.mark.parametrize("depth", [pytest.param(d, marks=pytest.mark.slow) if d > 1000 else d
                                   for d in sorted(CIFAR_PARAMS)])  # 1202: about 50 s
def test_cifar_parameter_counts_and_plain_twins(depth):
    residual = build_resnet(depth)
    assert trainable_params(residual) == CIFAR_PARAMS[depth]
    assert residual.output_shape == (None, 10)
    del residual
    keras.backend.clear_session()
    assert trainable_params(build_plain(depth)) == CIFAR_PARAMS[depth]


@pytest.mark.parametrize("depth", sorted(IMAGENET_PARAMS))
def test_imagenet_parameter_counts(depth):
    model = build_resnet(depth)
    assert trainable_params(model) == IMAGENET_PARAMS[depth]
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 1000)


def test_design_examples():
    assert build_resnet(50, family="cifar").name == "resnet50_cifar"
    assert trainable_params(build_resnet(50, family="cifar")) == \
        trainable_params(build_plain(50, family="cifar"))
    model = build_resnet(20, width=32, version="v2", shortcut="B", input_shape=(8, 8, 1),
                         classes=10)
    assert model.input_shape == (None, 8, 8, 1) and model.output_shape == (None, 10)
    assert model.get_layer("stage3_block1_conv1").filters == 128


def test_no_batch_norm_swaps_bn_for_conv_bias():
    model = build_resnet(20, batch_norm=False)
    assert not [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert all(l.use_bias for l in model.layers if isinstance(l, keras.layers.Conv2D))
    # Each conv loses 2c BN parameters and gains c biases: 688 output channels in ResNet-20.
    assert trainable_params(model) == 269_722 - 688


@pytest.mark.parametrize("kwargs, shape", [
    (dict(depth=20, include_top=False), (None, 8, 8, 64)),
    (dict(depth=20, include_top=False, pooling="avg"), (None, 64)),
    (dict(depth=20, include_top=False, pooling="max"), (None, 64)),
    (dict(depth=20, classes=100), (None, 100)),
    (dict(depth=164, include_top=False, input_shape=(16, 16, 3)), (None, 4, 4, 256)),
    (dict(depth=50, include_top=False, input_shape=(64, 96, 3)), (None, 2, 3, 2048)),
    (dict(depth=18, include_top=False, input_shape=(None, None, 3), pooling="avg"), (None, 512)),
    (dict(depth=20, input_shape=(7, 9, 1)), (None, 10)),
])
def test_output_shapes(kwargs, shape):
    assert build_resnet(**kwargs).output_shape == shape


def test_odd_input_sizes_run_with_zero_pad_shortcuts():
    model = build_resnet(8, input_shape=(7, 9, 1), include_top=False)
    assert model.output_shape == (None, 2, 3, 64)
    assert model(np.zeros((2, 7, 9, 1), "float32")).shape == (2, 2, 3, 64)


def test_classifier_activation_none_gives_logits_in_float32():
    model = build_resnet(8, input_shape=(8, 8, 1), classifier_activation=None)
    out = model(np.random.rand(4, 8, 8, 1).astype("float32"))
    assert out.dtype == tf.float32
    assert not np.allclose(np.sum(out, axis=-1), 1.0)


def test_input_tensor_is_used_as_the_model_input():
    tensor = keras.Input((8, 8, 1), name="images")
    model = build_resnet(8, input_tensor=tensor)
    assert model.inputs[0] is tensor and model.output_shape == (None, 10)


@pytest.mark.parametrize("build, kwargs", [
    (build_resnet, dict(depth=20)), (build_plain, dict(depth=20)),
    (build_resnet, dict(depth=20, version="v2", shortcut="B")),
    (build_resnet, dict(depth=29, shortcut="C", input_shape=(8, 8, 1))),
    (build_resnet, dict(depth=50, version="v2")),
    (build_plain, dict(depth=18, batch_norm=False)),
])
def test_layer_names_are_stable_and_never_auto_generated(build, kwargs):
    first = [layer.name for layer in build(**kwargs).layers]
    keras.backend.clear_session()
    build(**kwargs)  # a second model in the same session must not get suffixed names
    second = [layer.name for layer in build(**kwargs).layers]
    assert first == second
    assert len(set(first)) == len(first)
    assert [n for n in first if not NAME_RE.match(n)] == []


def test_plain_twin_has_the_residual_names_minus_shortcut_and_add():
    residual = [l.name for l in build_resnet(20).layers]
    plain = [l.name for l in build_plain(20).layers]
    assert plain == [n for n in residual if not n.endswith(("_shortcut", "_add"))]
    assert "stage2_block1_shortcut" in residual and "stage3_block3_add" in residual


def test_v1_basic_block_layout():
    names = [l.name for l in build_resnet(8, input_shape=(8, 8, 1)).layers]
    assert names == [
        "input", "stem_conv", "stem_bn", "stem_relu",
        "stage1_block1_conv1", "stage1_block1_bn1", "stage1_block1_relu1",
        "stage1_block1_conv2", "stage1_block1_bn2", "stage1_block1_add", "stage1_block1_out",
        "stage2_block1_conv1_pad", "stage2_block1_conv1", "stage2_block1_bn1",
        "stage2_block1_relu1",
        "stage2_block1_conv2", "stage2_block1_bn2", "stage2_block1_shortcut",
        "stage2_block1_add", "stage2_block1_out",
        "stage3_block1_conv1_pad", "stage3_block1_conv1", "stage3_block1_bn1",
        "stage3_block1_relu1",
        "stage3_block1_conv2", "stage3_block1_bn2", "stage3_block1_shortcut",
        "stage3_block1_add", "stage3_block1_out", "head_pool", "predictions"]


def test_v2_is_pre_activation_with_a_final_bn_relu():
    model = build_resnet(8, version="v2", shortcut="B", input_shape=(8, 8, 1))
    names = [l.name for l in model.layers]
    assert "stem_bn" not in names and names[-4:] == ["head_bn", "head_relu", "head_pool",
                                                     "predictions"]
    assert names[2:9] == ["stage1_block1_bn1", "stage1_block1_relu1", "stage1_block1_conv1",
                          "stage1_block1_bn2", "stage1_block1_relu2", "stage1_block1_conv2",
                          "stage1_block1_add"]
    # The projection reads the pre-activation; an identity reads the raw input.
    assert model.get_layer("stage2_block1_shortcut").input.name == \
        model.get_layer("stage2_block1_relu1").output.name
    add_inputs = {t.name for t in model.get_layer("stage1_block1_add").input}
    assert model.get_layer("stem_conv").output.name in add_inputs


def test_bottleneck_v1_puts_the_stride_on_the_3x3():
    model = build_resnet(50)
    assert model.get_layer("stage2_block1_conv1").strides == (1, 1)
    assert model.get_layer("stage2_block1_conv2").strides == (2, 2)
    assert model.get_layer("stage2_block1_conv3").filters == 512


@pytest.mark.parametrize("shortcut, projections", [
    ("A", []), ("B", ["stage2_block1", "stage3_block1"]),
    ("C", ["stage1_block1", "stage2_block1", "stage3_block1"])])
def test_shortcut_options(shortcut, projections):
    model = build_resnet(8, shortcut=shortcut, input_shape=(8, 8, 1))
    convs = sorted(l.name[:-len("_shortcut")] for l in model.layers
                   if l.name.endswith("_shortcut") and isinstance(l, keras.layers.Conv2D))
    assert convs == projections
    if shortcut == "A":
        assert [l.name for l in model.layers if "shortcut" in l.name] == \
            ["stage2_block1_shortcut", "stage3_block1_shortcut"]
        assert all(not l.weights for l in model.layers if "shortcut" in l.name)


def test_zero_init_residual_zeroes_the_last_bn_of_each_branch():
    model = build_resnet(14, zero_init_residual=True, version="v1", input_shape=(8, 8, 1))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            expected = 0.0 if layer.name.endswith("_bn2") else 1.0
            np.testing.assert_array_equal(layer.gamma.numpy(), expected, err_msg=layer.name)
    # Every residual branch starts at zero: each block passes its shortcut through a ReLU.
    probe = keras.Model(model.input, [model.get_layer("stage1_block2_add").output,
                                      model.get_layer("stage1_block1_out").output])
    added, previous = probe(np.random.rand(2, 8, 8, 1).astype("float32"), training=True)
    np.testing.assert_allclose(added, previous, atol=1e-6)


def test_width_scales_every_conv():
    model = build_resnet(20, width=8)
    assert model.get_layer("stem_conv").filters == 8
    assert [model.get_layer(f"stage{s}_block2_conv1").filters for s in (1, 2, 3)] == [8, 16, 32]


def test_build_model_from_name_spec_and_config():
    base = build_model("resnet20", input_shape=(8, 8, 1))
    modified = build_model("resnet20", width=32, version="v2", input_shape=(8, 8, 1))
    assert base.name == "resnet20" and modified.name == "resnet20_v2_w32"
    from reskeras.specs import get_spec
    config = get_spec("plain56").to_config()
    assert build_model(config, depth=20).name == "plain20"
    assert build_model(get_spec("resnet18"), shortcut="C").get_layer(
        "stage1_block1_shortcut").filters == 64


VARIANTS = [dict(version=v, shortcut=s) for v in ("v1", "v2") for s in ("A", "B", "C")]


def _digits_batch(n=16):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, n)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v['version']}{v['shortcut']}")
@pytest.mark.parametrize("depth", [8, 11])  # basic and bottleneck
def test_every_trainable_variable_gets_a_finite_nonzero_gradient(variant, depth):
    model = build_resnet(depth, input_shape=(8, 8, 1), **variant)
    x, y = _digits_batch()
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
        loss = tf.reduce_mean(loss)
    grads = tape.gradient(loss, model.trainable_variables)
    for var, grad in zip(model.trainable_variables, grads):
        assert grad is not None, var.path
        assert np.all(np.isfinite(grad)), var.path
        assert np.any(grad != 0), var.path


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v['version']}{v['shortcut']}")
def test_each_variant_trains_one_step(variant):
    for build in (build_resnet, build_plain):
        keras.backend.clear_session()
        model = build(8, input_shape=(8, 8, 1), **variant)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        before = [w.numpy().copy() for w in model.trainable_weights]
        x, y = _digits_batch()
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0]) and history.history["loss"][0] > 0
        changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
        assert all(changed)


@pytest.mark.parametrize("kwargs", [
    dict(depth=20), dict(depth=11, version="v2", shortcut="B"),
    dict(depth=8, shortcut="C", batch_norm=False), dict(depth=8, residual=False),
])
def test_keras_file_round_trip_in_safe_mode(tmp_path, kwargs):
    model = build_resnet(input_shape=(8, 8, 1), **kwargs)
    x, _ = _digits_batch(8)
    model(x, training=True)  # move BN statistics away from their initial values
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
