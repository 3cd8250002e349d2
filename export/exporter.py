"""Writing one verified version: stage, fill, verify, publish; or remove everything.

The steps for each version (see :mod:`export.layout` for where the staging
directory lives and how it is published):

1. under the name's lock, pick the version (highest + 1, or the one asked for,
   which must be free) and remove temp dirs of dead exporters;
2. write the SavedModel (:mod:`export.savedmodel`), the reference batch and its
   Keras probabilities (:mod:`export.reference`), the warmup records
   (:mod:`export.warmup`), optional formats (:mod:`export.formats`) and
   ``assets/reskeras.json`` (:mod:`export.metadata`) into the staging dir;
3. verify the staged copy (:mod:`export.verify`); on failure raise
   :class:`export.verify.VerificationError`;
4. publish it as ``BASE/NAME/VERSION``.

Any exception (including ``KeyboardInterrupt``) removes the staging dir, so no
unverified version ever becomes visible to TF Serving.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from export import formats as formats_lib
from export import layout, sources
from export.metadata import METADATA_FILE, build_metadata, check_user_metadata, write_metadata
from export.reference import (REFERENCE_FILE, bytes_probabilities, keras_probabilities,
                              reference_images, write_reference)
from export.savedmodel import describe_signatures, write_savedmodel
from export.serving import serving_resize
from export.verify import TOLERANCE, VerificationError, VerificationReport, verify_export
from export.warmup import WARMUP_DIR, WARMUP_FILE, check_batch_sizes, warmup_logs, write_warmup


@dataclasses.dataclass
class ExportResult:
    """One exported version.

    Attributes:
        path: ``BASE/NAME/VERSION``.
        name: the model name (``NAME``).
        version: the integer version.
        metadata: the contents of ``assets/reskeras.json``.
        report: the :class:`export.verify.VerificationReport` (``None`` with ``verify=False``).
    """

    path: str
    name: str
    version: int
    metadata: dict
    report: VerificationReport | None


@dataclasses.dataclass(frozen=True)
class _Options:
    warmup_batch_sizes: tuple
    formats: tuple
    user: dict
    verify: bool
    verbose: bool


def check_options(base_dir, name, version, *, warmup_batch_sizes, formats, metadata,
                  verify=True, verbose=False) -> _Options:
    """Validates everything that needs no model (so bad input touches nothing)."""
    if not isinstance(base_dir, (str, os.PathLike)) or not str(base_dir):
        raise ValueError(f"`base_dir` must be a directory path. Received: base_dir={base_dir!r}")
    layout.check_name(name)
    if version is not None:
        layout.check_version(version)
    return _Options(check_batch_sizes(warmup_batch_sizes), formats_lib.check_formats(formats),
                    check_user_metadata(metadata), bool(verify), bool(verbose))


def check_free(base_dir: str, name: str, versions) -> None:
    model_dir = layout.join(str(base_dir), name)
    taken = [v for v in versions if tf.io.gfile.exists(layout.join(model_dir, str(v)))]
    if taken:
        raise ValueError(f"`version` must not exist already (exports are never overwritten). "
                         f"Received: version={taken[0]} ({layout.join(model_dir, str(taken[0]))} "
                         "exists)")


def _fill(staged: str, source, name: str, version: int, options: _Options,
          reference_cache: dict) -> dict:
    write_savedmodel(source, staged)
    key = repr(source.dataset)
    if key not in reference_cache:
        reference_cache[key] = reference_images(source)
    images, origin = reference_cache[key]
    probabilities = keras_probabilities(source.model, images, source.preprocessing)
    tf.io.gfile.makedirs(layout.join(staged, "assets"))
    write_reference(layout.join(staged, "assets", REFERENCE_FILE), images, probabilities,
                    bytes_probabilities(source, images))
    reference = {"images": images, "probabilities": probabilities,
                 "class_ids": probabilities.argmax(-1)}
    logs = warmup_logs(name, images, options.warmup_batch_sizes)
    write_warmup(layout.join(staged, WARMUP_DIR, WARMUP_FILE), logs)
    extra = formats_lib.write_formats(staged, options.formats, reference, TOLERANCE)
    metadata = build_metadata(
        source, name=name, version=version,
        signatures=describe_signatures(source.input_shape, source.classes,
                                       source.preprocessing),
        reference={"file": f"assets/{REFERENCE_FILE}", **origin},
        warmup={"file": f"{WARMUP_DIR}/{WARMUP_FILE}", "records": len(logs),
                "batch_sizes": list(options.warmup_batch_sizes),
                "signatures": sorted({log.predict_log.request.model_spec.signature_name
                                      for log in logs})},
        formats=extra, user=options.user)
    write_metadata(layout.join(staged, "assets", METADATA_FILE), metadata)
    return metadata


def export_source(source, base_dir: str, name: str, version: int | None, options: _Options,
                  reference_cache: dict | None = None) -> ExportResult:
    """Exports one :class:`export.sources.ExportSource` as a new verified version."""
    serving_resize(source.preprocessing, source.input_shape)  # refuses before writing anything
    base_dir = str(base_dir)
    layout.check_base_writable(base_dir)
    model_dir = layout.join(base_dir, name)
    with layout.name_lock(model_dir):
        layout.remove_stale_temps(model_dir)
        if version is None:
            version = layout.next_version(model_dir)
        check_free(base_dir, name, [version])
        staged = layout.staging_dir(model_dir, version)
        try:
            metadata = _fill(staged, source, name, version, options,
                             {} if reference_cache is None else reference_cache)
            report = None
            if options.verify:
                report = verify_export(staged, version=version, verbose=options.verbose)
                if not report.ok:
                    raise VerificationError(report)
            final = layout.publish(staged, model_dir, version)
        except BaseException:
            layout.remove_tree(staged)
            raise
    if report is not None:
        report.path = final
    return ExportResult(final, name, version, metadata, report)


def export_savedmodel(model_or_run_dir, base_dir, name, version=None, *, preprocessing=None,
                      class_names=None, metadata=None, verify=True,
                      warmup_batch_sizes=(1, 8, 64), formats=(), verbose=False) -> ExportResult:
    """Exports a finished run, a model file or a Keras model as ``BASE/NAME/VERSION``.

    Args:
        model_or_run_dir: a reskeras run directory whose run finished
            (``summary.json`` status ``finished`` and ``model.keras``), a
            ``.keras`` file with its ``.reskeras.json`` sidecar
            (``reskeras.model_file.write_model_file``, e.g. written by
            ``reskeras convert``), or a ``keras.Model`` taking ``[None, H, W, C]``
            images.
        base_dir: TF Serving's model base path (local or ``gs://``).
        name: the model name, one directory level (``BASE/NAME``).
        version: a positive integer that must not exist yet; default: highest
            existing version + 1 (1 for a new name).
        preprocessing: the normalization record (a run's ``config.json``
            ``preprocessing``); required for a Keras model, ignored for a run
            dir or a model file (their records are used).
        class_names: one name per class (default: the run's or the sidecar's,
            or ``"0"``, ``"1"``, ...).
        metadata: a JSON-serializable dict stored under ``"user"`` in
            ``assets/reskeras.json``.
        verify: verify the staged export before publishing (default True).
        warmup_batch_sizes: batch sizes of the warmup requests (default ``(1, 8, 64)``).
        formats: extra formats among ``("tflite", "onnx")``.
        verbose: keep TensorFlow's log lines in verification subprocesses.

    Returns:
        An :class:`ExportResult`.

    Raises:
        ValueError: bad input (nothing is written).
        ImportError: ``"onnx"`` asked without tf2onnx/onnxruntime installed.
        export.verify.VerificationError: the export failed verification (removed).

    Example:

    >>> from export import export_savedmodel
    >>> result = export_savedmodel("runs/r8", "exports", "digits")  # doctest: +SKIP
    >>> result.path, result.report.ok  # doctest: +SKIP
    ('exports/digits/1', True)
    >>> export_savedmodel("resnet50.keras", "exports", "resnet50").path  # doctest: +SKIP
    'exports/resnet50/1'
    """
    options = check_options(base_dir, name, version, warmup_batch_sizes=warmup_batch_sizes,
                            formats=formats, metadata=metadata, verify=verify, verbose=verbose)
    if version is not None:
        check_free(base_dir, name, [version])
    if isinstance(model_or_run_dir, (str, os.PathLike)) and str(model_or_run_dir).endswith(
            ".keras"):
        source = sources.from_model_file(model_or_run_dir, class_names=class_names)
    elif isinstance(model_or_run_dir, (str, os.PathLike)):
        source = sources.from_run_dir(model_or_run_dir, class_names=class_names)
    else:
        source = sources.from_model(model_or_run_dir, preprocessing=preprocessing,
                                    class_names=class_names)
    return export_source(source, base_dir, name, version, options)


def export_tuner(tuner_dir, base_dir, name, top: int = 1, *, version=None, class_names=None,
                 metadata=None, verify=True, warmup_batch_sizes=(1, 8, 64), formats=(),
                 verbose=False) -> list[ExportResult]:
    """Exports the ``top`` best COMPLETED trials of a tuner directory, one version each.

    Each trial's model is rebuilt from its ``arch`` and its run's config.json
    and loaded from its ``weights``. Versions are assigned worst first, so the
    best trial gets the highest version: the one TF Serving serves by default.

    Args:
        tuner_dir: a directory holding ``leaderboard.json`` (see :mod:`export.sources`).
        base_dir, name, class_names, metadata, verify, warmup_batch_sizes, formats,
        verbose: as for :func:`export_savedmodel`.
        top: how many of the best COMPLETED trials to export (fewer if fewer exist).
        version: the first version to write (each further trial takes the next
            integer); default: highest existing + 1.

    Returns:
        The :class:`ExportResult` of each trial, best first.
    """
    options = check_options(base_dir, name, version, warmup_batch_sizes=warmup_batch_sizes,
                            formats=formats, metadata=metadata, verify=verify, verbose=verbose)
    board, trials = sources.completed_trials(str(tuner_dir), top)
    for trial in trials:  # every trial is checked before the first version is written
        sources.check_trial(str(tuner_dir), trial)
    if version is not None:
        check_free(base_dir, name, range(version, version + len(trials)))
    results, cache = [], {}
    for offset, trial in enumerate(reversed(trials)):
        source = sources.from_trial(str(tuner_dir), board, trial, class_names=class_names)
        results.append(export_source(source, base_dir, name,
                                     None if version is None else version + offset, options,
                                     reference_cache=cache))
    return results[::-1]


__all__ = ["ExportResult", "export_savedmodel", "export_source", "export_tuner"]
