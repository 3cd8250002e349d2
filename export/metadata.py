"""``assets/reskeras.json``: everything needed to know what a served version is.

Keys (exactly :data:`METADATA_KEYS`): ``format`` (this file's schema version),
``name``, ``version``, ``arch`` (``ArchSpec.to_config()`` or null),
``model_name``, ``input_shape``, ``classes``, ``class_names``,
``preprocessing`` (the record baked into the graph: scale, mean, std, ...),
``source`` (run dir, tuner dir + trial id + hyperparameters + score, a model
file + the source its sidecar records, or a bare model), ``metrics`` (final
metrics of the run or trial), ``versions`` (reskeras, TensorFlow, Keras,
Python), ``exported_at`` (UTC, ISO 8601),
``signatures`` (inputs and outputs with dtypes and shapes; ``serve_bytes``
also how it resizes, see ``export.serving.serving_resize``), ``reference``
(where the stored reference batch came from), ``warmup`` (file and batch
sizes), ``formats`` (extra files, e.g. a TFLite model, with their parity),
``user`` (the ``metadata=`` dict passed to the exporter).
"""

from __future__ import annotations

import datetime
import json
import platform

import tensorflow as tf

from reskeras import __version__
from reskeras._backend import keras

METADATA_FILE = "reskeras.json"
FORMAT = 1
METADATA_KEYS = frozenset({
    "format", "name", "version", "arch", "model_name", "input_shape", "classes", "class_names",
    "preprocessing", "source", "metrics", "versions", "exported_at", "signatures", "reference",
    "warmup", "formats", "user"})


def build_metadata(source, *, name: str, version: int, signatures: dict, reference: dict,
                   warmup: dict, formats: dict, user: dict | None) -> dict:
    """The metadata dict of one export (JSON-ready; checked by :func:`check_metadata`)."""
    metadata = {
        "format": FORMAT, "name": name, "version": int(version), "arch": source.arch,
        "model_name": source.model_name, "input_shape": list(source.input_shape),
        "classes": source.classes, "class_names": list(source.class_names),
        "preprocessing": source.preprocessing, "source": source.source,
        "metrics": source.metrics,
        "versions": {"reskeras": __version__, "tensorflow": tf.__version__,
                     "keras": keras.__version__, "python": platform.python_version()},
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "signatures": signatures, "reference": reference, "warmup": warmup, "formats": formats,
        "user": dict(user or {}),
    }
    return json.loads(json.dumps(metadata))


def check_user_metadata(metadata) -> dict:
    if metadata is None:
        return {}
    try:
        ok = isinstance(metadata, dict) and json.loads(json.dumps(metadata)) == metadata
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError("`metadata` must be a JSON-serializable dict with string keys. "
                         f"Received: metadata={metadata!r}")
    return metadata


def check_metadata(metadata, *, version: int | None = None) -> str | None:
    """A description of what is wrong with ``metadata``, or None when it is complete."""
    if not isinstance(metadata, dict):
        return f"not a JSON object: {type(metadata).__name__}"
    keys = set(metadata)
    if keys != METADATA_KEYS:
        return (f"keys differ: missing {sorted(METADATA_KEYS - keys)}, "
                f"unexpected {sorted(keys - METADATA_KEYS)}")
    if version is not None and metadata["version"] != version:
        return f"records version {metadata['version']}, expected {version}"
    if len(metadata["class_names"]) != metadata["classes"]:
        return f"{len(metadata['class_names'])} class names for {metadata['classes']} classes"
    return None


def write_metadata(path: str, metadata: dict) -> None:
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


__all__ = ["METADATA_FILE", "METADATA_KEYS", "build_metadata", "check_metadata",
           "check_user_metadata", "write_metadata"]
