"""Optional formats (TFLite, ONNX) and verification catching real damage (about 15 s each).

The ONNX test needs the `onnx` extra, which the README's test command installs."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from export import export_savedmodel, verify_export
from export.reference import read_reference
from tests.export import trained_run, verified_export

ONNX_MISSING = [m for m in ("tf2onnx", "onnxruntime") if importlib.util.find_spec(m) is None]


@pytest.fixture(scope="module")
def run_dir():
    return trained_run()


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_tflite_is_written_and_matches_keras(run_dir, tmp_path):
    result = export_savedmodel(run_dir, str(tmp_path), "digits", formats=("tflite",))
    assert result.report.ok
    assert "tflite parity" in [c["name"] for c in result.report.checks]
    entry = result.metadata["formats"]["tflite"]
    assert entry["file"] == "assets.extra/model.tflite" and entry["signature"] == "serving_default"
    assert entry["max_abs_diff"] <= 1e-5 and entry["class_ids_equal"]
    path = os.path.join(result.path, "assets.extra", "model.tflite")
    assert os.path.getsize(path) == entry["bytes"]
    reference = read_reference(os.path.join(result.path, "assets", "reskeras_reference.npz"))
    interpreter = tf.lite.Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("serving_default")
    out = runner(images=reference["images"])
    assert np.max(np.abs(out["probabilities"] - reference["probabilities"])) <= 1e-5
    np.testing.assert_array_equal(out["class_ids"], reference["class_ids"])


@pytest.mark.skipif(bool(ONNX_MISSING), reason=f"{ONNX_MISSING} not installed: "
                                                 "pip install reskeras[onnx]")
def test_onnx_is_written_and_matches_keras(run_dir, tmp_path):
    import onnxruntime

    result = export_savedmodel(run_dir, str(tmp_path), "digits", formats=("onnx",))
    assert result.report.ok and "onnx parity" in [c["name"] for c in result.report.checks]
    entry = result.metadata["formats"]["onnx"]
    assert entry["max_abs_diff"] <= 1e-5 and entry["class_ids_equal"]
    path = os.path.join(result.path, "assets.extra", "model.onnx")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("images", "tensor(uint8)")]
    reference = read_reference(os.path.join(result.path, "assets", "reskeras_reference.npz"))
    outputs = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, {"images": reference["images"]})))
    assert np.max(np.abs(outputs["probabilities"] - reference["probabilities"])) <= 1e-5
    with pytest.raises(Exception, match="(?i)type"):
        session.run(None, {"images": reference["images"].astype(np.float32)})


def test_verification_catches_wrong_reference_probabilities(tmp_path):
    copy = tmp_path / "digits" / "1"
    shutil.copytree(verified_export().path, copy)
    file = copy / "assets" / "reskeras_reference.npz"
    reference = read_reference(str(file))
    reference["probabilities"] = reference["probabilities"] + 1e-3  # a different model
    buffer = io.BytesIO()
    np.savez(buffer, **reference)
    file.write_bytes(buffer.getvalue())
    report = verify_export(str(copy), version=1)
    failed = [c["name"] for c in report.checks if not c["ok"]]
    assert not report.ok and failed == ["serving_default parity", "serve_bytes parity"]
