"""One verified export of a trained digits run: parity, signatures, metadata, warmup."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from export import METADATA_KEYS
from reskeras import rundir
from reskeras._backend import keras
from reskeras.data import load_dataset
from reskeras.preprocessing import normalize, resize_square
from tests.export import trained_run, verified_export


@pytest.fixture(scope="module")
def run_dir():
    return trained_run()


@pytest.fixture(scope="module")
def exported(run_dir):
    return verified_export()


@pytest.fixture(scope="module")
def keras_model(run_dir):
    return keras.saving.load_model(rundir.path(run_dir, rundir.MODEL), safe_mode=True)


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported.path)


def test_export_is_verified_and_published(exported):
    model_dir = os.path.dirname(exported.path)
    assert (exported.version, os.path.basename(exported.path)) == (1, "1")
    assert sorted(os.listdir(model_dir)) == [".export.lock", "1"]  # no temp dir left
    assert sorted(os.listdir(exported.path)) == ["assets", "assets.extra", "fingerprint.pb",
                                                 "saved_model.pb", "variables"]
    report = exported.report
    assert report.ok and report.path == exported.path and report.skipped == []
    assert [c["name"] for c in report.checks] == [
        "files", "metadata", "warmup records", "fresh process load", "serving_default parity",
        "serve_bytes parity", "refuses float32 images", "refuses wrongly shaped images",
        "refuses undecodable image_bytes", "no Python in the graph",
        "no reskeras or Keras needed", "saved_model_cli show --all"]


def test_fresh_process_needs_no_reskeras_or_extra_keras(exported):
    fresh = exported.report.measured["fresh_process"]
    assert fresh["reskeras_imported"] == []
    assert fresh["keras_modules_added_by_load_and_call"] == []
    assert fresh["python_ops"] == []
    assert not any("keras" in i.lower() for i in fresh["object_identifiers"])
    assert sorted(fresh["signatures"]) == ["serve_bytes", "serving_default"]
    for name in ("serving_default", "serve_bytes"):
        assert fresh[name]["max_abs_diff"] <= 1e-5 and fresh[name]["class_ids_equal"]
        assert fresh[name]["probabilities_shape"] == [8, 10]


def test_every_weight_is_stored_once(exported, keras_model):
    # keras-team/keras#23553: ExportArchive.track(model) would store each weight twice
    stored = [(name, shape) for name, shape in
              tf.train.list_variables(os.path.join(exported.path, "variables", "variables"))
              if name.endswith("VARIABLE_VALUE")]
    assert len(stored) == len(keras_model.weights)
    assert sum(int(np.prod(shape)) for _, shape in stored) == keras_model.count_params()


def test_both_signatures_match_keras(loaded, keras_model, run_dir):
    config = rundir.read_config(run_dir)
    images = load_dataset("digits").arrays("test")[0][:16]
    expected = keras_model(normalize(images, config["preprocessing"]), training=False).numpy()
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    assert out["probabilities"].dtype == tf.float32 and out["class_ids"].dtype == tf.int64
    assert np.max(np.abs(out["probabilities"].numpy() - expected)) <= 1e-5
    np.testing.assert_array_equal(out["class_ids"].numpy(), expected.argmax(-1))
    png = tf.stack([tf.io.encode_png(image) for image in images])
    by_bytes = loaded.signatures["serve_bytes"](image_bytes=png)
    assert np.max(np.abs(by_bytes["probabilities"].numpy() - expected)) <= 1e-5
    np.testing.assert_array_equal(by_bytes["class_ids"].numpy(), expected.argmax(-1))


def test_what_is_served_is_what_the_metrics_measured(loaded, exported):
    images, labels = load_dataset("digits").arrays("test")
    served = loaded.signatures["serving_default"](images=tf.constant(images))["class_ids"]
    accuracy = float(np.mean(served.numpy() == labels))
    assert accuracy == pytest.approx(exported.metadata["metrics"]["val_accuracy"], abs=1e-9)


def test_serve_bytes_resizes_like_the_trainer(loaded):
    rng = np.random.default_rng(1)
    photos = [rng.integers(0, 256, (20, 13, 1), dtype=np.uint8),
              rng.integers(0, 256, (8, 8, 1), dtype=np.uint8)]
    encoded = tf.constant([tf.io.encode_png(p).numpy() for p in photos])
    got = loaded.signatures["serve_bytes"](image_bytes=encoded)["probabilities"].numpy()
    prepared = np.stack([resize_square(photos[0], 8).numpy(), photos[1]])
    direct = loaded.signatures["serving_default"](images=tf.constant(prepared))
    np.testing.assert_allclose(got, direct["probabilities"].numpy(), atol=1e-6)


def test_signature_refuses_wrong_dtype_and_shape(loaded):
    serve = loaded.signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor"):
        serve(images=tf.zeros((2, 8, 8, 1), tf.float32))
    shape_message = r"`images` must be uint8 \[batch, 8, 8, 1\] \(height, width, channels\)"
    with pytest.raises(tf.errors.InvalidArgumentError, match=shape_message + r".*\[2 9 8 1\]"):
        serve(images=tf.zeros((2, 9, 8, 1), tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=shape_message):
        serve(images=tf.zeros((2, 8, 8, 3), tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=shape_message + r".*\[8 8 1\]"):
        serve(images=tf.zeros((8, 8, 1), tf.uint8))  # one image without the batch axis
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a string tensor"):
        loaded.signatures["serve_bytes"](image_bytes=tf.zeros((2,), tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        loaded.signatures["serve_bytes"](image_bytes=tf.constant([b"GIF? no"]))


def test_metadata_is_complete(exported, run_dir):
    with open(os.path.join(exported.path, "assets", "reskeras.json")) as handle:
        metadata = json.load(handle)
    config = rundir.read_config(run_dir)
    summary = rundir.read_summary(run_dir)
    assert set(metadata) == set(METADATA_KEYS) == {
        "format", "name", "version", "arch", "model_name", "input_shape", "classes",
        "class_names", "preprocessing", "source", "metrics", "versions", "exported_at",
        "signatures", "reference", "warmup", "formats", "user"}
    assert metadata == exported.metadata
    assert (metadata["name"], metadata["version"], metadata["format"]) == ("digits", 1, 1)
    assert metadata["arch"] == config["arch"] and metadata["model_name"] == "resnet8_w4"
    assert (metadata["input_shape"], metadata["classes"]) == ([8, 8, 1], 10)
    assert metadata["class_names"] == [str(c) for c in range(10)]
    assert metadata["preprocessing"] == config["preprocessing"]
    assert metadata["source"] == {"kind": "run_dir", "run_dir": os.path.abspath(run_dir),
                                  "step": summary["step"]}
    # model.keras holds precise BN statistics: the metrics are theirs, the moving averages' beside
    assert metadata["metrics"] == {
        **summary["final"], "val_loss": summary["precise_bn"]["val_loss"],
        "val_accuracy": summary["precise_bn"]["val_accuracy"], "bn_statistics": "precise",
        "moving_average_val_loss": summary["final"]["val_loss"],
        "moving_average_val_accuracy": summary["final"]["val_accuracy"]}
    assert set(metadata["versions"]) == {"reskeras", "tensorflow", "keras", "python"}
    assert metadata["versions"]["tensorflow"] == tf.__version__
    assert metadata["signatures"]["serving_default"]["inputs"] == {
        "images": {"dtype": "uint8", "shape": [None, 8, 8, 1]}}
    assert metadata["signatures"]["serve_bytes"]["inputs"] == {
        "image_bytes": {"dtype": "string", "shape": [None]}}
    assert metadata["reference"] == {"file": "assets/reskeras_reference.npz", "kind": "dataset",
                                     "dataset": "digits", "split": "test", "examples": 8}
    assert metadata["warmup"] == {"file": "assets.extra/tf_serving_warmup_requests",
                                  "records": 5, "batch_sizes": [1, 8, 64],
                                  "signatures": ["serve_bytes", "serving_default"]}
    assert metadata["formats"] == {} and metadata["user"] == {"owner": "tests"}


def test_reference_batch_is_real_test_images(exported, keras_model, run_dir):
    with np.load(os.path.join(exported.path, "assets", "reskeras_reference.npz")) as data:
        images, probabilities = data["images"], data["probabilities"]
    np.testing.assert_array_equal(images, load_dataset("digits").arrays("test")[0][:8])
    pre = rundir.read_config(run_dir)["preprocessing"]
    expected = keras_model(normalize(images, pre), training=False).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)


def test_warmup_records_are_prediction_logs(exported):
    path = os.path.join(exported.path, "assets.extra", "tf_serving_warmup_requests")
    requests = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        assert log.WhichOneof("log_type") == "predict_log"
        requests.append(log.predict_log.request)
    assert [(r.model_spec.name, r.model_spec.signature_name, sorted(r.inputs)) for r in requests] \
        == [("digits", "serving_default", ["images"])] * 3 + \
           [("digits", "serve_bytes", ["image_bytes"])] * 2
    arrays = [tf.make_ndarray(r.inputs["images"]) for r in requests[:3]]
    assert [(a.dtype, a.shape) for a in arrays] == [(np.uint8, (b, 8, 8, 1)) for b in (1, 8, 64)]
    with np.load(os.path.join(exported.path, "assets", "reskeras_reference.npz")) as data:
        np.testing.assert_array_equal(arrays[1], data["images"])
    encoded = [tf.make_ndarray(r.inputs["image_bytes"]) for r in requests[3:]]
    assert [e.shape for e in encoded] == [(1,), (8,)]
    np.testing.assert_array_equal(tf.io.decode_png(encoded[1][3]).numpy(), arrays[1][3])
