"""SavedModel export of reskeras models for TF Serving: verified, atomic, with warmup.

``export_savedmodel`` turns a finished run directory (or a Keras model) into
``BASE/NAME/VERSION/``: a SavedModel with two signatures (``serving_default``
on uint8 pixels, ``serve_bytes`` on PNG/JPEG bytes) that apply the run's
normalization inside the graph, ``assets/reskeras.json`` metadata, a stored
reference batch, and TF Serving warmup records. Every version is verified in
a fresh TensorFlow-only process before it becomes visible. ``export_tuner``
does the same for the best trials of a tuner directory. See docs/export.md.

Example:

>>> from export import export_savedmodel, verify_export
>>> result = export_savedmodel("runs/r8", "exports", "digits")  # doctest: +SKIP
>>> result.path, result.version, result.report.ok  # doctest: +SKIP
('exports/digits/1', 1, True)
>>> verify_export("exports/digits/1").ok  # doctest: +SKIP
True
"""

import importlib

# Loaded on first use, so `reskeras --help` (which imports export.command) stays light.
_LAZY = {"ExportResult": "export.exporter", "export_savedmodel": "export.exporter",
         "export_tuner": "export.exporter", "existing_versions": "export.layout",
         "METADATA_KEYS": "export.metadata", "VerificationError": "export.verify",
         "VerificationReport": "export.verify", "verify_export": "export.verify"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


__all__ = ["METADATA_KEYS", "ExportResult", "VerificationError", "VerificationReport",
           "existing_versions", "export_savedmodel", "export_tuner", "verify_export"]
