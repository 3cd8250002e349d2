"""``reskeras export --model FILE.keras``: a model file with its sidecar, ImageNet-style serving."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

import reskeras
from reskeras.cli import main
from reskeras.model_file import write_model_file
from reskeras.preprocessing import imagenet_preprocessing
from tests.export import tree_bytes

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def _tiny_model():
    # logits out (no softmax): the export appends one
    return reskeras.build_resnet(8, width=4, input_shape=(64, 64, 3), classes=5,
                                 classifier_activation=None, name="tiny64")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.keras"
    write_model_file(_tiny_model(), path, preprocessing=imagenet_preprocessing(resize=80),
                     source={"kind": "test"}, arch=None)
    return str(path)


@pytest.fixture(scope="module")
def exported(model_path, tmp_path_factory):
    """``reskeras export --model m.keras`` with verification: (exit code, stdout, stderr, base)."""
    base = str(tmp_path_factory.mktemp("exports"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["export", "--model", model_path, "--base", base, "--name", "tiny"])
    return code, out.getvalue(), err.getvalue(), base


def test_export_of_a_model_file_is_verified_and_published(exported):
    code, out, err, base = exported
    path = os.path.join(base, "tiny", "1")
    assert (code, out) == (0, path + "\n")
    assert err.strip().splitlines()[-1] == f"reskeras export: verified {path} (12 checks passed)"
    assert sorted(os.listdir(os.path.join(base, "tiny"))) == [".export.lock", "1"]


def _torchvision_like(image: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """Shorter side to ``resize`` (bilinear, antialiased), central ``crop``, uint8."""
    height, width = image.shape[:2]
    new_h, new_w = (resize, round(width * resize / height)) if height <= width else (
        round(height * resize / width), resize)
    resized = tf.image.resize(image, [new_h, new_w], method="bilinear", antialias=True).numpy()
    top, left = (new_h - crop) // 2, (new_w - crop) // 2
    return np.clip(np.round(resized[top:top + crop, left:left + crop]), 0, 255).astype(np.uint8)


def test_serve_bytes_resizes_every_image_then_crops_like_torchvision(exported, model_path):
    from reskeras._backend import keras

    loaded = tf.saved_model.load(os.path.join(exported[3], "tiny", "1"))
    rng = np.random.default_rng(5)
    photos = [rng.integers(0, 256, shape, dtype=np.uint8)
              for shape in ((90, 120, 3), (120, 90, 3), (64, 64, 3))]  # 64x64 is resized too
    encoded = tf.constant([tf.io.encode_png(photo).numpy() for photo in photos])
    got = loaded.signatures["serve_bytes"](image_bytes=encoded)
    prepared = np.stack([_torchvision_like(photo, 80, 64) for photo in photos])
    normalized = ((prepared / 255.0 - MEAN) / STD).astype(np.float32)
    model = keras.saving.load_model(model_path, safe_mode=True)
    expected = tf.nn.softmax(model(normalized, training=False), axis=-1).numpy()
    assert got["probabilities"].shape == (3, 5)
    assert np.max(np.abs(got["probabilities"].numpy() - expected)) <= 1e-5
    np.testing.assert_array_equal(got["class_ids"].numpy(), expected.argmax(-1))
    direct = loaded.signatures["serving_default"](images=tf.constant(prepared))
    assert np.max(np.abs(direct["probabilities"].numpy() - expected)) <= 1e-5


def test_metadata_records_the_sidecar_facts(exported, model_path):
    with open(os.path.join(exported[3], "tiny", "1", "assets", "reskeras.json")) as handle:
        metadata = json.load(handle)
    assert metadata["preprocessing"] == imagenet_preprocessing(resize=80)
    assert metadata["preprocessing"]["std"] == [0.229, 0.224, 0.225]
    assert metadata["source"] == {"kind": "model_file", "model_file": os.path.abspath(model_path),
                                  "converted_from": {"kind": "test"}}
    assert (metadata["arch"], metadata["model_name"]) == (None, "tiny64")
    assert (metadata["input_shape"], metadata["classes"]) == ([64, 64, 3], 5)
    assert metadata["class_names"] == ["0", "1", "2", "3", "4"]
    assert metadata["reference"]["kind"] == "random" and metadata["metrics"] == {}
    assert metadata["signatures"]["serve_bytes"]["resize"] == {
        "shorter_side": 80, "crop": [64, 64], "interpolation": "bilinear", "every_image": True}


@pytest.mark.slow  # a second fresh-process verification (6 s); the export itself verified
def test_verify_compares_serve_bytes_on_resized_images(exported, capsys):
    path = os.path.join(exported[3], "tiny", "1")
    assert main(["export", "--verify", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"verified: {path}" and len(lines) == 13
    assert any(line.startswith("ok   serving_default parity: max |SavedModel - Keras| = ")
               for line in lines)
    assert any(line.startswith("ok   serve_bytes parity: max |SavedModel - Keras on "
                               "the images resized and cropped as serve_bytes does| = ")
               for line in lines)


def _sidecar_with(model_path, target_dir, **changes):
    """A copy of the model file whose sidecar has ``changes``; returns the new .keras path."""
    target_dir.mkdir(exist_ok=True)
    name = "_".join(changes) + ".keras"
    shutil.copy(model_path, target_dir / name)
    with open(model_path[:-len(".keras")] + ".reskeras.json") as handle:
        facts = json.load(handle)
    for key, value in changes.items():
        facts[key] = value
    with open(target_dir / name.replace(".keras", ".reskeras.json"), "w") as handle:
        json.dump(facts, handle)
    return str(target_dir / name)


def test_bad_model_files_are_one_line_exit_2_and_touch_nothing(model_path, exported, tmp_path,
                                                               capsys):
    base = exported[3]
    before = tree_bytes(base)
    common = ["--base", base, "--name", "tiny"]
    missing = str(tmp_path / "nope.keras")
    lonely = tmp_path / "lonely.keras"
    shutil.copy(model_path, lonely)
    sidecar = model_path[:-len(".keras")] + ".reskeras.json"
    small = imagenet_preprocessing(resize=48)
    cases = [
        (["--model", missing, *common],
         r"`model` must be an existing \.keras file\. Received: model='.*nope\.keras'$"),
        (["--model", str(lonely), *common],
         r"`model` needs lonely\.reskeras\.json beside it .* Received: model='.*lonely\.keras'$"),
        (["--model", sidecar, *common],
         r"`model` must be a path ending in \.keras\. Received: model='.*m\.reskeras\.json'$"),
        (["--model", _sidecar_with(model_path, tmp_path / "c", classes=7), *common],
         r"`model` must match its classes\.reskeras\.json \(input_shape \[64, 64, 3\], classes "
         r"7\)\. Received: input_shape=\[64, 64, 3\], classes=5"),
        (["--model", _sidecar_with(model_path, tmp_path / "p", preprocessing=small), *common],
         r"`preprocessing` must have resize >= the model's input height and width \(64x64: .*"
         r"Received: resize=48$"),
        (["--model", _sidecar_with(model_path, tmp_path / "s",
                                   preprocessing={**small, "std": [1.0]}), *common],
         r"`preprocessing` must have std None or a list of 3 positive numbers .* "
         r"Received: std=\[1\.0\]$"),
        (["--model", model_path, "--top", "2", *common],
         r"--top needs --tuner\. Received: --top 2 with --model$"),
        (["--model", model_path, "--name", "tiny"], r"--base is required with --run and --tuner "
                                                    r"and --model$"),
        (["--model", model_path, "--run", base, *common],
         r"argument --run: not allowed with argument --model$"),
        (["--model", model_path, "--base", base, "--name", "tiny", "--version", "1"],
         r"`version` must not exist already \(exports are never overwritten\)\. Received: "
         r"version=1"),
    ]
    for argv, pattern in cases:
        try:
            code = main(["export", *argv])
        except SystemExit as exit:  # argparse: the same one line and exit 2
            code = exit.code
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        assert err.count("\n") == 1, err
        assert re.match(r"reskeras export: error: " + pattern, err), err
    assert tree_bytes(base) == before
    assert sorted(os.listdir(os.path.join(base, "tiny"))) == [".export.lock", "1"]
