"""Optional extra formats written beside the SavedModel, each checked for parity.

``tflite``: ``tf.lite.TFLiteConverter.from_saved_model`` on the
``serving_default`` signature (uint8 in, normalization inside) ->
``assets.extra/model.tflite``; parity with ``tf.lite.Interpreter``. Measured on
TF 2.21: conversion and the interpreter work; the interpreter warns that it is
deprecated in favour of LiteRT (``ai_edge_litert``), a warning silenced here.
``serve_bytes`` is not converted (TFLite has no image decoding op).

``onnx``: ``tf2onnx`` on the ``serving_default`` signature ->
``assets.extra/model.onnx`` (opset 17), parity with ``onnxruntime``. Both are
optional dependencies: ``pip install reskeras[onnx]``.

TF Serving ignores everything in ``assets.extra`` except its warmup file, so
these files ride along with the served version without affecting it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from export.layout import join

FORMATS = ("tflite", "onnx")
FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}
ONNX_OPSET = 17
_DIR = "assets.extra"


def check_formats(formats) -> tuple[str, ...]:
    """Validates ``formats``; ImportError telling what to install when ONNX is missing."""
    chosen = tuple(formats or ())
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or len(set(chosen)) != len(chosen):
        raise ValueError(f"`formats` must be distinct entries of {FORMATS}. "
                         f"Received: formats={formats!r}")
    if "onnx" in chosen:
        missing = [m for m in ("tf2onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise ImportError(f"ONNX export needs {' and '.join(missing)}: "
                              "pip install reskeras[onnx]")
    return chosen


@contextlib.contextmanager
def _quiet_native_logs():
    """Mutes file descriptor 2: TFLite's C++ prints "INFO: Created TensorFlow Lite XNNPACK
    delegate" there whatever TF_CPP_MIN_LOG_LEVEL says. Errors still raise in Python."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _tflite_outputs(blob: bytes, images: np.ndarray) -> dict:
    with warnings.catch_warnings(), _quiet_native_logs():
        warnings.simplefilter("ignore")  # "tf.lite.Interpreter is deprecated" (TF 2.21)
        interpreter = tf.lite.Interpreter(model_content=blob)
        runner = interpreter.get_signature_runner("serving_default")
        return runner(images=images)


def _onnx_outputs(path: str, images: np.ndarray) -> dict:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"images": images})))


def _parity(outputs: dict, reference: dict, tolerance: float) -> tuple[bool, float, bool]:
    diff = float(np.max(np.abs(outputs["probabilities"] - reference["probabilities"])))
    same_ids = bool(np.array_equal(outputs["class_ids"], reference["class_ids"]))
    return diff <= tolerance and same_ids, diff, same_ids


def _convert_tflite(export_dir: str, target: str) -> None:
    converter = tf.lite.TFLiteConverter.from_saved_model(export_dir,
                                                         signature_keys=["serving_default"])
    blob = converter.convert()
    with tf.io.gfile.GFile(target, "wb") as handle:
        handle.write(blob)


def _convert_onnx(export_dir: str, target: str) -> None:
    import tf2onnx

    loaded = tf.saved_model.load(export_dir)
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["images"]
    tf2onnx.convert.from_function(
        loaded.serving_default, input_signature=[tf.TensorSpec(spec.shape, spec.dtype, "images")],
        opset=ONNX_OPSET, output_path=target)


def write_formats(export_dir: str, formats, reference: dict, tolerance: float) -> dict:
    """Converts the SavedModel in ``export_dir`` to each format; returns their metadata."""
    written = {}
    for name in check_formats(formats):
        target = join(export_dir, _DIR, FILES[name])
        tf.io.gfile.makedirs(join(export_dir, _DIR))
        (_convert_tflite if name == "tflite" else _convert_onnx)(export_dir, target)
        ok, diff, same_ids = _check_file(name, target, reference, tolerance)
        written[name] = {"file": f"{_DIR}/{FILES[name]}", "signature": "serving_default",
                         "bytes": tf.io.gfile.stat(target).length,
                         "max_abs_diff": diff, "class_ids_equal": same_ids}
    return written


def _check_file(name: str, path: str, reference: dict, tolerance: float):
    with tf.io.gfile.GFile(path, "rb") as handle:
        blob = handle.read()
    if name == "tflite":
        return _parity(_tflite_outputs(blob, reference["images"]), reference, tolerance)
    with tempfile.TemporaryDirectory() as tmp:  # onnxruntime reads local files only
        local = os.path.join(tmp, FILES[name])
        with open(local, "wb") as handle:
            handle.write(blob)
        return _parity(_onnx_outputs(local, reference["images"]), reference, tolerance)


def verify_formats(export_dir: str, reference: dict, tolerance: float):
    """``(check name, ok, detail)`` for each extra format present; unverifiable ones are None."""
    for name in FORMATS:
        path = join(export_dir, _DIR, FILES[name])
        if not tf.io.gfile.exists(path):
            continue
        if name == "onnx" and importlib.util.find_spec("onnxruntime") is None:
            yield f"{name} parity", None, "not checked: onnxruntime is not installed " \
                                          "(pip install reskeras[onnx])"
            continue
        ok, diff, same_ids = _check_file(name, path, reference, tolerance)
        yield (f"{name} parity", ok,
               f"{_DIR}/{FILES[name]}: max |{name} - Keras| = {diff:.3g} (<= {tolerance:g}), "
               f"class_ids equal: {same_ids}")


__all__ = ["FILES", "FORMATS", "check_formats", "verify_formats", "write_formats"]
