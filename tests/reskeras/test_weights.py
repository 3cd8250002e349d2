"""reskeras.weights, build_resnet(weights=), `reskeras convert` and `train --weights` (no torch needed).

State dicts here come from reskeras nets through ``reskeras.weights.state_dict``
(PyTorch names and layouts) and are written with the real ``safetensors``
package; equivalence with torchvision's own code is tested in
test_reference_equivalence.py.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from safetensors.numpy import save_file

from reskeras import build_plain, build_resnet
from reskeras._backend import keras
from reskeras.cli import main
from reskeras.preprocessing import IMAGENET_MEAN, IMAGENET_STD, imagenet_preprocessing
from reskeras.weights import infer_spec, load_weights, read_state_dict, state_dict

SHAPE = (32, 32, 3)


def _weights(model) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in model.weights]


def _file(tmp_path, state, name="w.safetensors") -> str:
    path = str(tmp_path / name)
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in state.items()}, path)
    return path


@pytest.fixture(scope="module")
def resnet18_state():
    keras.utils.set_random_seed(18)
    return state_dict(build_resnet(18, input_shape=SHAPE, classes=7))


def test_round_trip_through_a_safetensors_file(tmp_path, resnet18_state):
    path = _file(tmp_path, resnet18_state)
    model = build_resnet(18, input_shape=SHAPE, weights=path)  # classes from the file: 7
    assert model.output_shape == (None, 7)
    assert {k: v.shape for k, v in state_dict(model).items()} == {
        k: v.shape for k, v in resnet18_state.items()}
    for key, value in state_dict(model).items():
        np.testing.assert_array_equal(value, resnet18_state[key])
    assert len(resnet18_state) == 102  # 20 convs + 20 BN x 4 + fc weight/bias
    features = build_resnet(18, input_shape=SHAPE, include_top=False, pooling="avg",
                            weights=path)
    assert features.output_shape == (None, 512)


def test_wrappers_and_prefixes_are_taken_off(tmp_path, resnet18_state):
    path = _file(tmp_path, {f"module.{k}": v for k, v in resnet18_state.items()})
    assert sorted(read_state_dict(path)) == sorted(resnet18_state)  # safetensors sorts names
    torch = pytest.importorskip("torch", reason="needs the torch extra for .pth files")
    pth = str(tmp_path / "checkpoint.pth")
    torch.save({"epoch": 3, "state_dict": {k: torch.from_numpy(v.copy())
                                           for k, v in resnet18_state.items()}}, pth)
    model = build_resnet(18, input_shape=SHAPE, classes=7)
    record = load_weights(model, pth, source="timm")
    assert (record["source"], record["tensors"], record["classifier"]) == ("timm", 102, "loaded")
    np.testing.assert_array_equal(state_dict(model)["fc.weight"], resnet18_state["fc.weight"])


def test_infer_spec_names_the_architecture(resnet18_state):
    assert infer_spec(resnet18_state)[0].name == "resnet18" and infer_spec(resnet18_state)[1] == 7
    assert infer_spec(state_dict(build_resnet(20)))[0].name == "resnet20"
    assert infer_spec(state_dict(build_resnet(20, shortcut="B")))[0].name == "resnet20_B"
    deep_stem = {"conv1.0.weight": np.zeros((32, 3, 3, 3), np.float32)}
    spec, _, text = infer_spec(deep_stem)
    assert spec is None and "deep 3-conv stem" in text


def _one_line_error(call, pattern: str) -> str:
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert re.search(pattern, message), message
    return message


@pytest.mark.parametrize("change, pattern", [
    (lambda s: s.pop("layer2.1.bn2.running_var"),
     r"tensor 'layer2\.1\.bn2\.running_var' \(for stage2_block2_bn2, shape \(128,\)\) is missing"),
    (lambda s: s.__setitem__("layer9.0.conv1.weight", np.zeros((1,), np.float32)),
     r"tensor 'layer9\.0\.conv1\.weight' \(shape \(1,\)\) in .* has no counterpart in the model"),
    (lambda s: s.__setitem__("layer3.0.conv2.weight", np.zeros((256, 256, 1, 1), np.float32)),
     r"tensor 'layer3\.0\.conv2\.weight' has shape \(256, 256, 1, 1\) in .* but "
     r"stage3_block1_conv2 needs \(256, 256, 3, 3\)"),
])
def test_every_mismatch_is_one_error_and_nothing_is_loaded(tmp_path, resnet18_state, change,
                                                             pattern):
    state = {k: v.copy() for k, v in resnet18_state.items()}
    change(state)
    path = _file(tmp_path, state)
    model = build_resnet(18, input_shape=SHAPE, classes=7)
    before = _weights(model)
    message = _one_line_error(lambda: load_weights(model, path), pattern)
    assert "Nothing was loaded" in message and "resnet18" in message
    for old, new in zip(before, _weights(model)):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("build, pattern", [
    (lambda: build_resnet(34, input_shape=SHAPE, classes=7),
     r"tensor 'layer1\.2\.conv1\.weight' \(for stage1_block3_conv1.*is missing.*blocks 2-2-2-2"),
    (lambda: build_resnet(18, input_shape=SHAPE, classes=10),
     r"^`classes` must match the classifier of the weights \(7 classes in fc\.weight\) unless "
     r"include_top=False\. Received: classes=10"),
    (lambda: build_resnet(18, input_shape=SHAPE, classes=7, padding="tf_same"),
     r"stem_conv pads with TensorFlow's 'same' \(built with padding='tf_same'\)"),
    (lambda: build_resnet(18, input_shape=SHAPE, classes=7, version="v2"),
     r"it is a v2 \(pre-activation\) net"),
    (lambda: build_plain(18, input_shape=SHAPE, classes=7),
     r"tensor 'layer2\.0\.downsample\.0\.weight' .* has no counterpart in the model"),
    (lambda: build_resnet(18, input_shape=SHAPE, classes=7, batch_norm=False),
     r"tensor 'conv1\.bias' \(for stem_conv, shape \(64,\)\) is missing"),
])
def test_other_architectures_are_refused(tmp_path, resnet18_state, build, pattern):
    path = _file(tmp_path, resnet18_state)
    model = build()
    before = _weights(model)
    _one_line_error(lambda: load_weights(model, path), pattern)
    for old, new in zip(before, _weights(model)):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("weights, pattern", [
    ("imagenet", r"`weights` must be the path of a local \.safetensors or \.pth file .*"
                 r"Received: weights='imagenet'"),
    ("missing.safetensors", r"`weights` must be an existing file"),
    ("garbage.safetensors", r"`weights` must be a readable safetensors file"),
])
def test_bad_weights_arguments(tmp_path, monkeypatch, weights, pattern):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.safetensors").write_bytes(os.urandom(64))
    _one_line_error(lambda: build_resnet(18, input_shape=SHAPE, weights=weights), pattern)
    _one_line_error(lambda: build_resnet(18, input_shape=SHAPE, weights_source="caffe",
                                         weights=str(tmp_path / "garbage.safetensors")),
                    r"`source` must be None \(infer\), 'torchvision' or 'timm'\. "
                    r"Received: source='caffe'")


def test_pth_without_torch_says_what_to_install(tmp_path, monkeypatch):
    import sys

    pth = tmp_path / "resnet18.pth"
    pth.write_bytes(b"PK\x03\x04 not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    _one_line_error(lambda: read_state_dict(str(pth)),
                    r"^\.pth files are PyTorch pickles and need torch to read: pip install torch, "
                    r"or convert the file to \.safetensors where torch is installed\.")


def test_a_failed_assignment_restores_every_variable(resnet18_state, monkeypatch):
    from reskeras.weights import loader

    model = build_resnet(18, input_shape=SHAPE, classes=7)
    before = _weights(model)
    plan = loader.plan_assignments(model, resnet18_state)
    broken = plan[50][0]

    def fail(value):
        raise RuntimeError("device lost")

    monkeypatch.setattr(broken, "assign", fail)
    with pytest.raises(RuntimeError, match="device lost"):
        loader.assign(plan)
    monkeypatch.undo()
    for old, new in zip(before, _weights(model)):
        np.testing.assert_array_equal(old, new)


# -- reskeras convert ----------------------------------------------------------------------
def _cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def _converted(tmp_path, state, capsys):
    """``reskeras convert`` of ``state`` (as timm) to r18.keras with --resize 73."""
    path = _file(tmp_path, state)
    out = str(tmp_path / "models" / "r18.keras")
    code, stdout, err = _cli(["convert", path, "--out", out, "--input-shape", "64,64,3",
                              "--resize", "73", "--from", "timm"], capsys)
    assert (code, err) == (0, ""), err
    return path, out, stdout


def test_convert_round_trip(tmp_path, resnet18_state, capsys):
    path, out, stdout = _converted(tmp_path, resnet18_state, capsys)
    sidecar = str(tmp_path / "models" / "r18.reskeras.json")
    assert stdout.split() == [out, sidecar]
    reloaded = keras.saving.load_model(out, safe_mode=True)
    direct = build_resnet(18, input_shape=(64, 64, 3), weights=path)
    images = np.random.default_rng(0).normal(size=(3, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(reloaded(images)), np.asarray(direct(images)))
    with open(sidecar) as handle:
        facts = json.load(handle)
    assert facts["preprocessing"] == imagenet_preprocessing(resize=73)
    assert facts["source"]["kind"] == "timm" and facts["source"]["tensors"] == 102
    assert facts["arch"]["padding"] == "symmetric" and facts["model_name"] == "resnet18"


@pytest.mark.slow  # 9-17 s; test_model_file's export test runs the same verification by default
def test_a_converted_model_exports_with_its_imagenet_preprocessing(tmp_path, resnet18_state,
                                                                   capsys):
    import tensorflow as tf

    _, out, _ = _converted(tmp_path, resnet18_state, capsys)
    reloaded = keras.saving.load_model(out, safe_mode=True)
    # the export carries the ImageNet preprocessing and is verified in a fresh TF-only process
    base = str(tmp_path / "exports")
    code, stdout, err = _cli(["export", "--model", out, "--base", base, "--name", "r18"], capsys)
    assert code == 0, err
    version = stdout.strip()
    with open(os.path.join(version, "assets", "reskeras.json")) as handle:
        meta = json.load(handle)
    assert meta["preprocessing"]["std"] == list(IMAGENET_STD)
    served = tf.saved_model.load(version).signatures["serving_default"]
    pixels = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    expected = reloaded((pixels / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD))
    np.testing.assert_allclose(served(images=tf.constant(pixels))["probabilities"].numpy(),
                               np.asarray(expected), atol=1e-5)


def test_convert_bad_inputs_are_one_line_and_write_nothing(tmp_path, resnet18_state, capsys):
    path = _file(tmp_path, resnet18_state)
    unknown = _file(tmp_path, {"encoder.weight": np.zeros((2, 2), np.float32)}, "odd.safetensors")
    taken = tmp_path / "taken.keras"
    taken.write_bytes(b"keep me")
    cases = [
        ([path, "--out", str(taken)], r"--out must not exist"),
        ([path, "--out", str(tmp_path / "x.h5")], r"`out` must be a path ending in \.keras"),
        ([path, "--out", str(tmp_path / "a.keras"), "--model", "resnet34"],
         r"tensor 'layer1\.2\.conv1\.weight'"),
        ([path, "--out", str(tmp_path / "a.keras"), "--resize", "100"],
         r"--resize must be at least the input height and width"),
        ([str(tmp_path / "nope.pth"), "--out", str(tmp_path / "a.keras")],
         r"`weights` must be an existing file"),
        ([unknown, "--out", str(tmp_path / "a.keras")], r"--model is needed"),
        ([path, "--out", str(tmp_path / "a.keras"), "--from", "caffe"], r"invalid choice"),
    ]
    for argv, pattern in cases:
        code, _, err = _cli(["convert", *argv], capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert re.search(r"reskeras convert: error: .*" + pattern, err), err
    assert taken.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.safetensors", "taken.keras",
                                                          "w.safetensors"]
    # features only: converted, loadable, but not served as if they were class probabilities
    features = str(tmp_path / "features" / "r18.keras")
    code, _, err = _cli(["convert", path, "--out", features, "--no-top",
                         "--input-shape", "32,32,3", "--resize", "32"], capsys)
    assert code == 0, err
    assert keras.saving.load_model(features, safe_mode=True).output_shape == (None, 512)
    base = tmp_path / "exports"
    code, _, err = _cli(["export", "--model", features, "--base", str(base), "--name", "f"],
                        capsys)
    assert code == 2 and err.count("\n") == 1 and "must end in its classifier" in err, err
    assert not base.exists()


# -- reskeras train --weights --------------------------------------------------------------
def test_train_fine_tunes_from_a_weights_file(tmp_path, resnet18_state, capsys):
    from reskeras.train import TrainConfig, train

    path = _file(tmp_path, resnet18_state)
    seen = {}

    class FirstWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.update(state_dict(self.model))

    config = TrainConfig(out=str(tmp_path / "run"), model="resnet18", dataset="synthetic",
                         synthetic_shape=SHAPE, synthetic_examples=32, steps=2, batch_size=16,
                         weights=path, grad_norms_every=1, verbose=0)
    train(config, callbacks=[FirstWeights()])
    for key, value in resnet18_state.items():
        if not key.startswith("fc."):  # 7 classes in the file, 10 in the data: a new head
            np.testing.assert_array_equal(seen[key], value)
    assert seen["fc.weight"].shape == (10, 512)
    with open(tmp_path / "run" / "config.json") as handle:
        record = json.load(handle)
    assert record["weights"]["classifier"] == "new" and len(record["weights"]["sha256"]) == 64
    assert record["weights"]["file"] == path
    assert (record["preprocessing"]["mean"], record["preprocessing"]["std"]) == (
        list(IMAGENET_MEAN), list(IMAGENET_STD))
    with open(tmp_path / "run" / "grad_norms.jsonl") as handle:
        logged = [json.loads(line) for line in handle]
    weighted = {layer.name for layer in build_resnet(18, input_shape=SHAPE).layers
                if layer.trainable_weights}
    assert {r["layer"] for r in logged if r["step"] == 0} == weighted  # the callbacks as usual
    assert all(np.isfinite(r["grad_norm"]) and r["grad_norm"] > 0 for r in logged)
    # the CLI: bad inputs stop before a run directory exists
    for argv, pattern in [
        (["--dataset", "digits"], r"need RGB images \(3 channels\)"),
        (["--dataset", "synthetic", "--synthetic-shape", "32,32,3", "--padding", "tf_same"],
         r"built with padding='tf_same'"),
        (["--dataset", "synthetic", "--synthetic-shape", "32,32,3", "--weights-from", "x"],
         r"invalid choice"),
    ]:
        out = tmp_path / "refused"
        code, _, err = _cli(["train", "--model", "resnet18", "--weights", path, "--steps", "1",
                             "--out", str(out), *argv], capsys)
        assert code == 2 and err.count("\n") == 1 and re.search(pattern, err), err
        assert not out.exists()
