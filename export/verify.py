"""Verification of an export: what TF Serving and a plain TensorFlow client will meet.

:func:`verify_export` runs, for one version directory (published or staged):

* files: ``saved_model.pb``, ``variables/``, ``assets/reskeras.json`` (exact
  key set), ``assets/reskeras_reference.npz``, the warmup file;
* a fresh ``python -I`` process importing only TensorFlow
  (``export/fresh_check.py``): loads the SavedModel, runs ``serving_default``
  and ``serve_bytes`` (PNG) on the reference batch and compares with the Keras
  probabilities stored at export time (max abs diff <= ``tolerance``, equal
  ``class_ids``; when ``serve_bytes`` resizes every image, it is compared with
  ``serving_default`` on the reference images resized and cropped alike),
  checks a float32 batch, a wrongly shaped batch and bad bytes are refused,
  that the graph has no Python ops, no Keras/reskeras objects to revive, and
  that loading and calling imported no reskeras and no Keras module beyond
  what ``import tensorflow`` itself loads;
* ``saved_model_cli show --dir DIR --all`` (run concurrently) lists both
  signatures;
* every warmup record parses as a ``PredictionLog`` naming this model and a
  signature with its exact input key, dtype and a compatible shape;
* extra formats found in ``assets.extra`` (``model.tflite``): same parity.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile

import tensorflow as tf

from export import formats
from export.layout import is_remote, join
from export.metadata import METADATA_FILE, check_metadata
from export.reference import REFERENCE_FILE, read_reference
from export.savedmodel import SIGNATURES
from export.warmup import WARMUP_DIR, WARMUP_FILE, describe_logs, read_warmup

TOLERANCE = 1e-5
FRESH_CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fresh_check.py")
_SUBPROCESS_TIMEOUT_S = 600


class VerificationError(RuntimeError):
    """An export failed verification (the version was removed or never published)."""

    def __init__(self, report: "VerificationReport"):
        self.report = report
        failed = "; ".join(f"{c['name']}: {c['detail']}" for c in report.checks if not c["ok"])
        super().__init__(f"export verification failed for {report.path}: {failed}")


@dataclasses.dataclass
class VerificationReport:
    """What was checked and measured.

    Attributes:
        path: the directory verified.
        checks: ``[{"name", "ok", "detail"}]`` in the order run.
        measured: numbers and facts behind the checks (diffs, module counts, ...).
        skipped: ``"name: reason"`` of checks that could not run here (they do not
            count as passed; ``ok`` ignores them).
    """

    path: str
    checks: list = dataclasses.field(default_factory=list)
    measured: dict = dataclasses.field(default_factory=dict)
    skipped: list = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check["ok"] for check in self.checks)

    def add(self, name: str, ok, detail: str) -> bool:
        self.checks.append({"name": name, "ok": bool(ok), "detail": str(detail)})
        return bool(ok)

    def lines(self) -> list[str]:
        return ([f"{'ok  ' if c['ok'] else 'FAIL'} {c['name']}: {c['detail']}"
                 for c in self.checks] + [f"skip {note}" for note in self.skipped])

    def to_json(self) -> dict:
        return {"path": self.path, "ok": self.ok, "checks": self.checks,
                "skipped": self.skipped, "measured": self.measured}


def _subprocess_env(verbose: bool) -> dict:
    env = dict(os.environ)
    if not verbose:
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _saved_model_cli(directory: str) -> list[str]:
    found = shutil.which("saved_model_cli")
    prefix = [found] if found else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    return [*prefix, "show", "--dir", directory, "--all"]


def _start(command: list[str], verbose: bool) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_subprocess_env(verbose), cwd=tempfile.gettempdir())


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=_SUBPROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


def _check_fresh(report: VerificationReport, result, tolerance: float) -> None:
    code, out, err = result
    lines = out.strip().splitlines()
    try:
        fresh = json.loads(lines[-1]) if code == 0 and lines else None
    except json.JSONDecodeError:
        fresh = None
    if fresh is None:
        tail = (err.strip().splitlines() or ["no output"])[-1][:300]
        report.add("fresh process load", False, f"exit {code}: {tail}")
        return
    report.measured["fresh_process"] = fresh
    report.add("fresh process load", set(SIGNATURES) <= set(fresh["signatures"]),
               f"tf.saved_model.load in `python -I` (TensorFlow {fresh['tensorflow']}): "
               f"signatures {fresh['signatures']}")
    for name in SIGNATURES:
        got = fresh[name]
        dtypes_ok = (got["probabilities_dtype"], got["class_ids_dtype"]) == ("float32", "int64")
        against = ("Keras on the images resized and cropped as serve_bytes does"
                   if got.get("compared_to") == "keras_resized" else "Keras")
        report.add(f"{name} parity",
                   got["max_abs_diff"] <= tolerance and got["class_ids_equal"] and dtypes_ok,
                   f"max |SavedModel - {against}| = {got['max_abs_diff']:.3g} "
                   f"(<= {tolerance:g}), "
                   f"class_ids equal: {got['class_ids_equal']}, dtypes "
                   f"{got['probabilities_dtype']}/{got['class_ids_dtype']}")
    for key, what in (("rejects_float32", "float32 images"),
                      ("rejects_wrong_shape", "wrongly shaped images"),
                      ("rejects_bad_bytes", "undecodable image_bytes")):
        refused, message = fresh[key]
        report.add(f"refuses {what}", refused, message)
    foreign = [i for i in fresh["object_identifiers"] if "keras" in i.lower()]
    report.add("no Python in the graph", not fresh["python_ops"] and not foreign,
               f"{fresh['op_types']} op types, Python ops {fresh['python_ops']}, "
               f"Keras objects {foreign}")
    added, ours = fresh["keras_modules_added_by_load_and_call"], fresh["reskeras_imported"]
    report.add("no reskeras or Keras needed", not added and not ours,
               f"reskeras modules imported: {ours}; keras modules added by load+call: "
               f"{added[:5]} ({len(added)}); `import tensorflow` itself imports "
               f"{fresh['keras_modules_after_import_tensorflow']} keras modules")


def _check_cli(report: VerificationReport, result) -> None:
    code, out, err = result
    listed = [name for name in SIGNATURES if f"signature_def['{name}']" in out]
    detail = (f"lists {listed}" if code == 0
              else f"exit {code}: {(err.strip().splitlines() or [''])[-1][:200]}")
    report.add("saved_model_cli show --all", code == 0 and len(listed) == len(SIGNATURES), detail)


def _check_warmup(report: VerificationReport, directory: str, metadata: dict) -> None:
    path = join(directory, WARMUP_DIR, WARMUP_FILE)
    try:
        described = describe_logs(read_warmup(path))
    except Exception as error:  # corrupt TFRecord or not a PredictionLog: the check fails
        report.add("warmup records", False, f"{path}: {type(error).__name__}: {error}")
        return
    report.measured["warmup"] = described
    inputs = {name: spec["inputs"] for name, spec in metadata["signatures"].items()}
    problems = []
    for record in described:
        expected = inputs.get(record["signature"])
        if record["kind"] != "predict_log" or record["model"] != metadata["name"] or not expected:
            problems.append(f"{record['kind']} {record['model']}/{record['signature']}")
            continue
        for key, spec in expected.items():
            got = record["inputs"].get(key)
            shape_ok = got and len(got["shape"]) == len(spec["shape"]) and all(
                want is None or want == have for want, have in zip(spec["shape"], got["shape"]))
            if set(record["inputs"]) != {key} or got["dtype"] != spec["dtype"] or not shape_ok:
                problems.append(f"{record['signature']} inputs {record['inputs']}")
    batches = sorted(r["inputs"]["images"]["shape"][0] for r in described
                     if r["signature"] == "serving_default" and "images" in r["inputs"])
    report.add("warmup records", described and not problems and len(described) <= 1000,
               f"{len(described)} PredictionLog records, serving_default batches {batches}"
               + (f"; wrong: {problems[:3]}" if problems else ""))


def verify_export(directory: str, *, tolerance: float = TOLERANCE, verbose: bool = False,
                  version: int | None = None) -> VerificationReport:
    """Verifies one export version directory; returns the report (never raises for failures).

    Args:
        directory: ``BASE/NAME/VERSION`` (or a staged copy of it).
        tolerance: allowed max abs difference of probabilities.
        verbose: keep TensorFlow's log lines in the subprocesses.
        version: the version the metadata must record (default: not checked).

    Returns:
        A :class:`VerificationReport`; ``report.ok`` tells whether all checks passed.

    Example:

    >>> report = verify_export("exports/digits/1")  # doctest: +SKIP
    >>> report.ok, report.lines()[0]  # doctest: +SKIP
    (True, 'ok   files: ...')
    """
    directory = str(directory)
    report = VerificationReport(directory)
    if not is_remote(directory):  # the subprocesses run elsewhere
        directory = os.path.abspath(directory)
    needed = ["saved_model.pb", "variables", join("assets", METADATA_FILE),
              join("assets", REFERENCE_FILE), join(WARMUP_DIR, WARMUP_FILE)]
    missing = [n for n in needed if not tf.io.gfile.exists(join(directory, n))]
    if not report.add("files", not missing, f"missing {missing}" if missing
                      else "saved_model.pb, variables/, assets/, assets.extra/"):
        return report
    reference_file = join(directory, "assets", REFERENCE_FILE)
    fresh = _start([sys.executable, "-I", FRESH_CHECK, directory, reference_file], verbose)
    cli = _start(_saved_model_cli(directory), verbose)
    try:
        with tf.io.gfile.GFile(join(directory, "assets", METADATA_FILE)) as handle:
            metadata = json.load(handle)
        problem = check_metadata(metadata, version=version)
        report.add("metadata", problem is None, problem or
                   f"assets/{METADATA_FILE}: {len(metadata)} keys, {metadata['name']} "
                   f"version {metadata['version']}")
        if problem is None:
            _check_warmup(report, directory, metadata)
            for name, ok, detail in formats.verify_formats(
                    directory, read_reference(reference_file), tolerance):
                if ok is None:
                    report.skipped.append(f"{name}: {detail}")
                else:
                    report.add(name, ok, detail)
    finally:
        fresh_result, cli_result = _finish(fresh), _finish(cli)
    if verbose:  # the subprocesses' TensorFlow logs, kept at their default level
        sys.stderr.write(fresh_result[2] + cli_result[2])
    _check_fresh(report, fresh_result, tolerance)
    _check_cli(report, cli_result)
    return report


__all__ = ["TOLERANCE", "VerificationError", "VerificationReport", "verify_export"]
