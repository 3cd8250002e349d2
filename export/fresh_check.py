"""Checks an export the way a serving host would see it: a fresh Python, TensorFlow only.

Run as ``python -I export/fresh_check.py EXPORT_DIR`` (``-I``: no script dir,
no user site, no PYTHON* variables, so nothing of this repository is on the
path). This file imports nothing but the standard library, numpy and
TensorFlow. It loads the SavedModel, runs both signatures on the stored
reference batch (PNG-encoded for ``serve_bytes``: lossless), feeds a wrong
dtype and a wrong shape, scans the graph for Python ops, and records which
modules were imported. It prints one JSON object on its last stdout line;
``export.verify`` judges it.

When ``serve_bytes`` resizes every image (``assets/reskeras.json``:
``signatures.serve_bytes.resize.every_image``, e.g. torchvision's resize to
256 + central 224 crop), the reference images sent as PNG are resized too, so
its output is compared with the Keras probabilities of the images resized the
same way, which the exporter stored beside the others (``bytes_probabilities``).

Measured (TF 2.21): ``import tensorflow`` alone imports ~500 ``keras``
modules (TF binds ``tf.keras`` at import time), so "keras not in
sys.modules" cannot hold for any TensorFlow program. What this script records
instead is the set of keras modules loading and calling the model *adds*
(must be empty), whether ``reskeras`` was imported (must not be), and the
user-object identifiers in the SavedModel's object graph (must all be TF's
generic ones, no Keras or reskeras classes to revive).
"""

import io
import json
import os
import sys

PY_OPS = ("PyFunc", "PyFuncStateless", "EagerPyFunc")


def _modules(prefix):
    return {m for m in sys.modules if m.split(".")[0] == prefix}


def _graph_facts(export_dir, tf):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(export_dir, "saved_model.pb"), "rb") as handle:
        proto.ParseFromString(handle.read())
    ops, identifiers = set(), set()
    for meta in proto.meta_graphs:
        ops.update(node.op for node in meta.graph_def.node)
        for function in meta.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
        for node in meta.object_graph_def.nodes:
            if node.WhichOneof("kind") == "user_object":
                identifiers.add(node.user_object.identifier)
    return sorted(ops.intersection(PY_OPS)), sorted(identifiers), len(ops)


def _rejects(call):
    try:
        call()
    except Exception as error:  # the message is what a serving client would see
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        useful = [line for line in lines if "assertion failed" in line or "expected" in line
                  or "Unknown image" in line or "must be" in line]
        return True, f"{type(error).__name__}: {(useful or lines or [''])[0][:300]}"
    return False, "accepted"


def main(export_dir, reference_file):
    keras_at_start = _modules("keras")
    import numpy as np
    import tensorflow as tf

    keras_after_tf = _modules("keras")
    report = {"export_dir": export_dir, "tensorflow": tf.__version__,
              "keras_modules_before_tensorflow": len(keras_at_start),
              "keras_modules_after_import_tensorflow": len(keras_after_tf)}
    with tf.io.gfile.GFile(reference_file, "rb") as handle:
        with np.load(io.BytesIO(handle.read())) as data:
            images, expected = data["images"], data["probabilities"]
            expected_ids = data["class_ids"]
            resized = ((data["bytes_probabilities"], data["bytes_class_ids"])
                       if "bytes_probabilities" in data.files else None)
    loaded = tf.saved_model.load(export_dir)
    report["signatures"] = sorted(loaded.signatures)
    results = {}
    default = loaded.signatures["serving_default"]
    outputs = default(images=tf.constant(images))
    results["serving_default"] = outputs
    encoded = tf.stack([tf.io.encode_png(tf.constant(image)) for image in images])
    results["serve_bytes"] = loaded.signatures["serve_bytes"](image_bytes=encoded)
    targets = {name: (expected, expected_ids, "keras") for name in results}
    if resized is not None:
        targets["serve_bytes"] = (*resized, "keras_resized")
    for name, out in results.items():
        probs, ids = out["probabilities"].numpy(), out["class_ids"].numpy()
        want, want_ids, compared_to = targets[name]
        report[name] = {"max_abs_diff": float(np.max(np.abs(probs - want))),
                        "class_ids_equal": bool(np.array_equal(ids, want_ids)),
                        "compared_to": compared_to,
                        "probabilities_dtype": str(probs.dtype), "class_ids_dtype": str(ids.dtype),
                        "probabilities_shape": list(probs.shape)}
    wrong_dtype = tf.constant(images.astype(np.float32))
    wrong_shape = tf.constant(np.zeros((1, *[d + 1 for d in images.shape[1:3]], images.shape[3]),
                                       np.uint8))
    report["rejects_float32"] = _rejects(lambda: default(images=wrong_dtype))
    report["rejects_wrong_shape"] = _rejects(lambda: default(images=wrong_shape))
    report["rejects_bad_bytes"] = _rejects(
        lambda: loaded.signatures["serve_bytes"](image_bytes=tf.constant([b"not an image"])))
    report["python_ops"], report["object_identifiers"], report["op_types"] = _graph_facts(
        export_dir, tf)
    report["keras_modules_added_by_load_and_call"] = sorted(_modules("keras") - keras_after_tf)
    report["reskeras_imported"] = sorted(_modules("reskeras") | _modules("export"))
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
