"""TF Serving warmup records: ``assets.extra/tf_serving_warmup_requests``.

TF Serving replays this file when it loads a version, before the version
serves traffic, so the first real request does not pay for lazy
initialization (graph optimization, kernel selection, allocator growth). The
format is TF Serving's: a TFRecord file of ``tensorflow_serving.apis``
``PredictionLog`` protos, each a ``predict_log`` whose ``PredictRequest``
names the model and signature (at most 1000 records).

Records here: ``serving_default`` at every batch size in ``batch_sizes`` and
``serve_bytes`` (PNG-encoded) at those up to 8, filled with the reference
images (real test images when available), because warmup data should look
like the traffic.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving's limit
BYTES_MAX_BATCH = 8


def check_batch_sizes(batch_sizes) -> tuple[int, ...]:
    sizes = tuple(batch_sizes) if isinstance(batch_sizes, (list, tuple)) else None
    if not sizes or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1
                        for b in sizes):
        raise ValueError("`warmup_batch_sizes` must be a non-empty list of positive integers. "
                         f"Received: warmup_batch_sizes={batch_sizes!r}")
    return tuple(sorted({int(b) for b in sizes}))


def _batch(images: np.ndarray, size: int) -> np.ndarray:
    reps = -(-size // len(images))
    return np.concatenate([images] * reps)[:size]


def _request(name: str, signature: str, key: str, proto):
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    request.inputs[key].CopyFrom(proto)
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))


def warmup_logs(name: str, images: np.ndarray, batch_sizes) -> list:
    """The ``PredictionLog`` records for model ``name`` built from uint8 ``images``."""
    logs = []
    for size in check_batch_sizes(batch_sizes):
        logs.append(_request(name, "serving_default", "images",
                             tf.make_tensor_proto(_batch(images, size))))
    for size in sorted({min(b, BYTES_MAX_BATCH) for b in check_batch_sizes(batch_sizes)}):
        encoded = [tf.io.encode_png(image).numpy() for image in _batch(images, size)]
        logs.append(_request(name, "serve_bytes", "image_bytes",
                             tf.make_tensor_proto(encoded, dtype=tf.string, shape=[size])))
    return logs[:MAX_RECORDS]


def write_warmup(path: str, logs) -> None:
    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())


def read_warmup(path: str) -> list:
    """Parses every record as a ``PredictionLog`` (raises on a record that is not one)."""
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record)
        logs.append(log)
    return logs


def describe_logs(logs) -> list[dict]:
    """One ``{"model", "signature", "inputs": {key: {"dtype", "shape"}}}`` per record."""
    described = []
    for log in logs:
        request = log.predict_log.request
        inputs = {key: {"dtype": tf.dtypes.as_dtype(value.dtype).name,
                        "shape": [d.size for d in value.tensor_shape.dim]}
                  for key, value in request.inputs.items()}
        described.append({"kind": log.WhichOneof("log_type"), "model": request.model_spec.name,
                          "signature": request.model_spec.signature_name, "inputs": inputs})
    return described


__all__ = ["WARMUP_DIR", "WARMUP_FILE", "check_batch_sizes", "describe_logs", "read_warmup",
           "warmup_logs", "write_warmup"]
