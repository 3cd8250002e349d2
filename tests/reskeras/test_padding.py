"""Padding of strided convs and the ImageNet stem pool: "symmetric" (default) and "tf_same".

Layout (exact pad layers, conv paddings, names), function (each padded layer checked against
raw TensorFlow ops), shapes, .keras round trips with safe_mode, spec configs (legacy dicts
without `padding` rebuild as tf_same), and the train/tune paths that carry the choice.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from reskeras import NegativeInfinityPadding2D, build_model, build_resnet, rundir
from reskeras.cli import main
from reskeras.specs import ArchSpec, resolve_spec, scale
from reskeras.train import TrainConfig, build_run_model, train
from tuning import ResNetHyperModel
from tuning.search import SEARCH, SearchConfig, check_tune_dir, search_identity

from tests.conftest import trainable_params

PADDING_ERROR = "`padding` must be one of 'symmetric', 'tf_same'. Received: padding='same'"
RESNET18_PADS = [("stem_conv_pad", ((3, 3), (3, 3))), ("stem_pool_pad", ((1, 1), (1, 1))),
                 ("stage2_block1_conv1_pad", ((1, 1), (1, 1))),
                 ("stage3_block1_conv1_pad", ((1, 1), (1, 1))),
                 ("stage4_block1_conv1_pad", ((1, 1), (1, 1)))]
RESNET18_STRIDED = ["stem_conv", "stage2_block1_conv1", "stage2_block1_shortcut",
                    "stage3_block1_conv1", "stage3_block1_shortcut",
                    "stage4_block1_conv1", "stage4_block1_shortcut"]


def _pads(model):
    return [(layer.name, layer.padding) for layer in model.layers
            if isinstance(layer, keras.layers.ZeroPadding2D)]


def _convs(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def _images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# -- layout -------------------------------------------------------------------------------------

def test_symmetric_resnet18_pads_every_strided_conv_and_the_stem_pool():
    model = build_resnet(18, input_shape=(64, 64, 3), classes=10)
    assert model.name == "resnet18"
    assert _pads(model) == RESNET18_PADS
    # v1 pools after a ReLU: plain zeros (not the -inf subclass) are exact there
    assert type(model.get_layer("stem_pool_pad")) is keras.layers.ZeroPadding2D
    strided = [c for c in _convs(model) if c.strides != (1, 1)]
    assert [c.name for c in strided] == RESNET18_STRIDED
    assert {c.name: c.padding for c in strided} == {name: "valid" for name in RESNET18_STRIDED}
    # each pad layer feeds exactly its conv (or pool); strided 1x1 shortcuts get no pad layer
    for pad, _ in RESNET18_PADS:
        target = model.get_layer(pad[:-len("_pad")])
        assert target.input is model.get_layer(pad).output
    assert {c.kernel_size for c in strided if c.name.endswith("shortcut")} == {(1, 1)}
    unstrided = [c for c in _convs(model) if c.strides == (1, 1)]
    assert len(_convs(model)) == 20 and len(unstrided) == 13  # 17 convs + 3 projections
    assert {c.padding for c in unstrided} == {"same"}
    pool = model.get_layer("stem_pool")
    assert isinstance(pool, keras.layers.MaxPooling2D)
    assert (pool.padding, pool.pool_size, pool.strides) == ("valid", (3, 3), (2, 2))
    assert pool.input is model.get_layer("stem_pool_pad").output
    assert model.get_layer("stem_pool_pad").input is model.get_layer("stem_relu").output


def test_v2_stem_pool_pads_with_negative_infinity():
    model = build_resnet(18, version="v2", input_shape=(64, 64, 3), classes=10)
    assert model.name == "resnet18_v2"
    assert _pads(model) == RESNET18_PADS
    pad = model.get_layer("stem_pool_pad")
    assert type(pad) is NegativeInfinityPadding2D
    # the only -inf pad: the conv pads are plain zeros
    assert [layer.name for layer in model.layers
            if isinstance(layer, NegativeInfinityPadding2D)] == ["stem_pool_pad"]
    assert pad.input is model.get_layer("stem_conv").output  # v2: no BN/ReLU before the pool
    assert model.get_layer("stem_pool").padding == "valid"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_tf_same_keeps_the_old_layout(version):
    model = build_resnet(18, version=version, padding="tf_same", input_shape=(64, 64, 3),
                         classes=10)
    assert model.name == ("resnet18_tfsame" if version == "v1" else "resnet18_v2_tfsame")
    assert _pads(model) == []
    assert not any(layer.name.endswith("_pad") for layer in model.layers)
    assert {c.padding for c in _convs(model)} == {"same"}
    assert model.get_layer("stem_pool").padding == "same"
    symmetric = build_resnet(18, version=version, input_shape=(64, 64, 3), classes=10)
    assert ([layer.name for layer in symmetric.layers if not layer.name.endswith("_pad")]
            == [layer.name for layer in model.layers])
    assert model.count_params() == symmetric.count_params()
    assert trainable_params(model) == trainable_params(symmetric)


def test_imagenet_resnet18_parameter_count_is_the_reference_in_both_paddings():
    for padding in ("symmetric", "tf_same"):
        model = build_resnet(18, padding=padding)
        assert trainable_params(model) == 11_689_512
        keras.backend.clear_session()


def test_cifar_option_a_pads_only_the_strided_3x3_convs():
    model = build_resnet(8, input_shape=(8, 8, 1), classes=10)
    assert _pads(model) == [("stage2_block1_conv1_pad", ((1, 1), (1, 1))),
                            ("stage3_block1_conv1_pad", ((1, 1), (1, 1)))]
    assert {c.name: c.padding for c in _convs(model) if c.strides != (1, 1)} == {
        "stage2_block1_conv1": "valid", "stage3_block1_conv1": "valid"}
    assert _pads(build_resnet(8, input_shape=(8, 8, 1), classes=10, padding="tf_same")) == []


# -- function, checked against raw TensorFlow ----------------------------------------------------

def _twins(version="v1", size=64):
    """A symmetric and a tf_same ResNet-18 at size x size x 3 with the same weights."""
    symmetric = build_resnet(18, version=version, input_shape=(size, size, 3), classes=10)
    tf_same = build_resnet(18, version=version, padding="tf_same",
                           input_shape=(size, size, 3), classes=10)
    tf_same.set_weights(symmetric.get_weights())
    return symmetric, tf_same


@pytest.mark.parametrize("conv, pad", [("stem_conv", 3), ("stage2_block1_conv1", 1),
                                       ("stage4_block1_conv1", 1)])
def test_strided_conv_is_tf_conv2d_with_explicit_symmetric_padding(conv, pad):
    symmetric, tf_same = _twins()
    x = _images((2, 64, 64, 3))
    sym_in, sym_out = keras.Model(symmetric.input, [symmetric.get_layer(f"{conv}_pad").input,
                                                    symmetric.get_layer(conv).output])(x)
    same_in, same_out = keras.Model(tf_same.input, [tf_same.get_layer(conv).input,
                                                    tf_same.get_layer(conv).output])(x)
    kernel = symmetric.get_layer(conv).kernel
    np.testing.assert_array_equal(kernel, tf_same.get_layer(conv).kernel)
    assert sym_in.shape[1] % 2 == 0  # an even input: where the two paddings part ways
    explicit = tf.nn.conv2d(sym_in, kernel, strides=2,
                            padding=[[0, 0], [pad, pad], [pad, pad], [0, 0]])
    np.testing.assert_allclose(sym_out, explicit, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(same_out, tf.nn.conv2d(same_in, kernel, strides=2,
                                                       padding="SAME"), rtol=1e-5, atol=1e-4)
    # the same kernel on the same input: TensorFlow's SAME (bottom/right) is another function
    assert sym_out.shape == same_out.shape
    assert not np.allclose(sym_out, tf.nn.conv2d(sym_in, kernel, strides=2, padding="SAME"),
                           atol=1e-3)


def test_even_input_gives_different_logits_odd_stem_conv_agrees():
    symmetric, tf_same = _twins()
    x = _images((2, 64, 64, 3))
    assert not np.allclose(symmetric.predict(x, verbose=0), tf_same.predict(x, verbose=0),
                           atol=1e-4)
    keras.backend.clear_session()
    # on 63 pixels TensorFlow's SAME pads the 7x7/2 stem 3 and 3: the same function there
    symmetric, tf_same = _twins(size=63)
    x = _images((2, 63, 63, 3), seed=1)
    sym_stem = keras.Model(symmetric.input, symmetric.get_layer("stem_conv").output)(x)
    same_stem = keras.Model(tf_same.input, tf_same.get_layer("stem_conv").output)(x)
    assert sym_stem.shape == (2, 32, 32, 64)
    np.testing.assert_allclose(sym_stem, same_stem, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("version, before", [("v1", "stem_relu"), ("v2", "stem_conv")])
def test_stem_pool_is_max_pool_over_negative_infinity_padding(version, before):
    model = build_resnet(18, version=version, input_shape=(64, 64, 3), classes=10)
    x = _images((2, 64, 64, 3))
    pool_in, pool_out = keras.Model(model.input, [model.get_layer(before).output,
                                                  model.get_layer("stem_pool").output])(x)
    padded = tf.pad(pool_in, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=float("-inf"))
    expected = tf.nn.max_pool2d(padded, ksize=3, strides=2, padding="VALID")
    assert pool_out.shape == (2, 16, 16, 64)
    np.testing.assert_array_equal(pool_out, expected)
    assert np.isfinite(pool_out).all()
    zero_padded = tf.nn.max_pool2d(tf.pad(pool_in, [[0, 0], [1, 1], [1, 1], [0, 0]]),
                                   ksize=3, strides=2, padding="VALID")
    if version == "v1":
        # after a ReLU nothing is negative: zeros pad exactly like -inf
        assert float(tf.reduce_min(pool_in)) >= 0.0
        np.testing.assert_array_equal(pool_out, zero_padded)
    else:
        # before one, zeros would win some border windows: the -inf layer is needed
        assert float(tf.reduce_min(pool_in)) < 0.0
        assert not np.array_equal(pool_out, zero_padded)


# -- shapes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("family, depth, sizes, channels", [
    ("imagenet", 18, (63, 64), 3), ("cifar", 8, (7, 8), 1)])
def test_odd_and_even_inputs_give_the_same_shapes_in_both_modes(family, depth, sizes, channels):
    shapes = {}
    for size in sizes:
        for padding in ("symmetric", "tf_same"):
            model = build_resnet(depth, family=family, padding=padding,
                                 input_shape=(size, size, channels), include_top=False)
            shapes[size, padding] = {layer.name: tuple(layer.output.shape)
                                     for layer in model.layers
                                     if not layer.name.endswith("_pad")}
            keras.backend.clear_session()
    for size in sizes:
        assert shapes[size, "symmetric"] == shapes[size, "tf_same"]
    final = {size: shapes[size, "symmetric"][list(shapes[size, "symmetric"])[-1]]
             for size in sizes}
    if family == "imagenet":
        assert final == {63: (None, 2, 2, 512), 64: (None, 2, 2, 512)}
    else:
        assert final == {7: (None, 2, 2, 64), 8: (None, 2, 2, 64)}


# -- serialization --------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["v1", "v2"])
def test_keras_file_round_trip_with_safe_mode(version, tmp_path):
    model = build_resnet(18, version=version, width=16, input_shape=(64, 64, 3), classes=10)
    x = _images((2, 64, 64, 3))
    expected = model.predict(x, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    keras.backend.clear_session()
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert _pads(loaded) == RESNET18_PADS
    pool_pad_type = NegativeInfinityPadding2D if version == "v2" else keras.layers.ZeroPadding2D
    assert type(loaded.get_layer("stem_pool_pad")) is pool_pad_type
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)


# -- specs ----------------------------------------------------------------------------------------

def test_spec_config_round_trip_and_legacy_configs():
    for padding in ("symmetric", "tf_same"):
        spec = resolve_spec(20, padding=padding)
        config = spec.to_config()
        assert config["padding"] == padding
        assert ArchSpec.from_config(json.loads(json.dumps(config))) == spec
    assert resolve_spec(20).padding == "symmetric"
    legacy = resolve_spec(20).to_config()
    del legacy["padding"]
    spec = ArchSpec.from_config(legacy)
    assert spec.padding == "tf_same" and spec.name == "resnet20_tfsame"
    assert spec == resolve_spec(20, padding="tf_same")


def test_bad_padding_is_a_one_line_value_error():
    spec = resolve_spec(20)
    config = {**spec.to_config(), "padding": "same"}
    for make in (lambda: ArchSpec.from_config(config),
                 lambda: build_resnet(20, padding="same", input_shape=(8, 8, 1)),
                 lambda: resolve_spec(20, padding="same"),
                 lambda: build_model("resnet20", padding="same", input_shape=(8, 8, 1))):
        with pytest.raises(ValueError) as error:
            make()
        assert str(error.value) == PADDING_ERROR


def test_scale_keeps_padding_and_build_model_reads_legacy_dicts():
    spec = resolve_spec(20, padding="tf_same")
    for scaled in (scale(spec, depth=32), scale(spec, width=8), scale(spec, depth=8, width=4)):
        assert scaled.padding == "tf_same" and scaled.name.endswith("_tfsame")
    assert scale(resolve_spec(20), depth=32).padding == "symmetric"
    legacy = resolve_spec(8).to_config()
    del legacy["padding"]
    model = build_model(legacy, input_shape=(8, 8, 1), classes=10)
    assert model.name == "resnet8_tfsame"
    assert _pads(model) == [] and {c.padding for c in _convs(model)} == {"same"}
    current = build_model(resolve_spec(8).to_config(), input_shape=(8, 8, 1), classes=10)
    assert [name for name, _ in _pads(current)] == ["stage2_block1_conv1_pad",
                                                    "stage3_block1_conv1_pad"]
    overridden = build_model(legacy, padding="symmetric", input_shape=(8, 8, 1), classes=10)
    assert overridden.name == "resnet8" and len(_pads(overridden)) == 2


# -- runs -----------------------------------------------------------------------------------------

def test_train_records_padding_and_rebuilds_it(tmp_path):
    assert TrainConfig(out=str(tmp_path / "x"), depth=8, steps=2).resolve_arch().padding == (
        "symmetric")
    out = tmp_path / "run"
    result = train(TrainConfig(out=str(out), depth=8, padding="tf_same", dataset="digits",
                               steps=2, batch_size=32, verbose=0))
    assert result.status == "finished" and result.step == 2
    config = rundir.read_config(str(out))
    assert config["arch"]["padding"] == "tf_same"
    assert _pads(result.model) == []
    rebuilt = build_run_model(config)
    assert rebuilt.name == "resnet8_tfsame"
    assert _pads(rebuilt) == [] and {c.padding for c in _convs(rebuilt)} == {"same"}
    assert [w.shape for w in rebuilt.get_weights()] == [w.shape for w in
                                                        result.model.get_weights()]


def test_cli_train_padding_flag(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--depth", "8", "--padding", "tf_same", "--steps", "2",
                 "--batch-size", "32", "--dataset", "digits", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    config = rundir.read_config(str(out))
    assert config["arch"]["padding"] == "tf_same"
    assert _pads(build_run_model(config)) == []
    capsys.readouterr()
    bad = tmp_path / "bad"
    with pytest.raises(SystemExit) as stop:
        main(["train", "--depth", "8", "--padding", "bad", "--steps", "2", "--dataset",
              "digits", "--out", str(bad)])
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert "argument --padding: invalid choice: 'bad'" in captured.err
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert not bad.exists()


# -- tuner ----------------------------------------------------------------------------------------

def _hypermodel(**kwargs):
    return ResNetHyperModel((8, 8, 1), 10, depths=[8], widths=[4], **kwargs)


def test_hypermodel_carries_padding():
    hypermodel = _hypermodel(padding="tf_same")
    config = hypermodel.get_config()
    assert config["padding"] == "tf_same"
    hp = hypermodel.default_hyperparameters()
    assert "padding" not in hp.values  # a fixed choice of the search, not a hyperparameter
    rebuilt = ResNetHyperModel.from_config(json.loads(json.dumps(config)))
    assert rebuilt.padding == "tf_same"
    model = rebuilt.build(rebuilt.default_hyperparameters())
    assert model.name == "resnet8_w4_tfsame"
    assert _pads(model) == []
    legacy = dict(config)
    del legacy["padding"]
    old = ResNetHyperModel.from_config(legacy)
    assert old.spec(old.default_hyperparameters()).name.endswith("_tfsame")
    assert old.spec(hp) == rebuilt.spec(hp) == resolve_spec(8, width=4, padding="tf_same")
    default = _hypermodel()
    assert default.get_config()["padding"] == "symmetric"
    spec = default.spec(default.default_hyperparameters())
    assert spec == resolve_spec(8, width=4) and spec.padding == "symmetric"
    assert len(_pads(default.build(default.default_hyperparameters()))) == 2
    trial = default.train_config(hp, "unused", epochs=1)
    assert trial.arch["padding"] == "symmetric"
    assert hypermodel.train_config(hp, "unused", epochs=1).arch["padding"] == "tf_same"


def test_hypermodel_and_search_config_reject_bad_padding(tmp_path):
    with pytest.raises(ValueError) as error:
        _hypermodel(padding="same")
    assert str(error.value) == PADDING_ERROR
    with pytest.raises(ValueError) as error:
        SearchConfig(out=str(tmp_path), padding="same").validate()
    assert str(error.value) == PADDING_ERROR


def test_search_identity_and_legacy_search_json(tmp_path):
    out = str(tmp_path / "tune")
    tf_same = search_identity(SearchConfig(out=out, depths=(8,), widths=(4,),
                                           padding="tf_same"), _hypermodel(padding="tf_same"))
    symmetric = search_identity(SearchConfig(out=out, depths=(8,), widths=(4,)), _hypermodel())
    assert tf_same["padding"] == "tf_same" and symmetric["padding"] == "symmetric"
    assert {k: v for k, v in tf_same.items() if k != "padding"} == {
        k: v for k, v in symmetric.items() if k != "padding"}
    assert check_tune_dir(out, tf_same) is False  # nothing there yet
    os.makedirs(out)
    legacy = {k: v for k, v in tf_same.items() if k != "padding"}
    with open(os.path.join(out, SEARCH), "w") as handle:
        json.dump(legacy, handle)
    assert check_tune_dir(out, tf_same) is True
    with pytest.raises(ValueError, match='padding: "tf_same" -> "symmetric"'):
        check_tune_dir(out, symmetric)
    # check_tune_dir reads the file; it does not rewrite it
    with open(os.path.join(out, SEARCH)) as handle:
        assert json.load(handle) == legacy
