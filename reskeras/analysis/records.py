"""Reading what the gradient-norm and activation callbacks leave in a run directory.

Two JSON-lines files, one object per line (docs/figures.md)::

    grad_norms.jsonl   {"step": 0, "layer": "stem_conv", "index": 0, "grad_norm": 0.12,
                        "weight_norm": 3.4, "ratio": 0.035}
    activations.jsonl  {"step": 0, "kind": "response", "layer": "stage1_block1_bn1",
                        "index": 3, "value": 0.8}

``index`` orders layers (or entries of one ``kind``) from the input (0) to the
output; it, not the layer name or the line order, decides the order of rows in
every array built here. Values are ``null`` when they were not finite.

Example:

>>> run = load_run("runs/r20")                                    # doctest: +SKIP
>>> names, steps, log_norms = grad_norm_matrix(run["grad_norms"])  # doctest: +SKIP
>>> log_norms.shape == (len(names), len(steps))                   # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import tensorflow as tf

from reskeras import rundir

GRAD_NORMS = "grad_norms.jsonl"
ACTIVATIONS = "activations.jsonl"
ACTIVATION_KINDS = ("response", "residual_ratio", "dead_relu")

_GRAD_KEYS = ("step", "layer", "index")
_ACTIVATION_KEYS = ("step", "kind", "layer", "index", "value")


def read_jsonl(file: str, required: tuple[str, ...] = ()) -> list[dict]:
    """The records of a JSON-lines file; ``[]`` when the file does not exist.

    Args:
        file: local path or ``gs://`` URL.
        required: keys every record must have.

    Raises:
        ValueError: a line is not a JSON object holding the ``required`` keys.
    """
    if not tf.io.gfile.exists(file):
        return []
    records = []
    with tf.io.gfile.GFile(file) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict) or any(key not in record for key in required):
                raise ValueError(
                    f"each line of {os.path.basename(file)} must be a JSON object with keys "
                    f"{', '.join(required)}. Received: line {number} of {file!r}: "
                    f"{line.strip()[:80]!r}")
            records.append(record)
    return records


def run_label(config: dict, run_dir: str) -> str:
    """``"resnet20 (r20)"``: the model name and the directory, once when they agree."""
    base = os.path.basename(os.path.normpath(run_dir)) or run_dir
    model_name = config.get("model_name")
    if not model_name or model_name == base:
        return base
    return f"{model_name} ({base})"


def load_run(run_dir: str) -> dict:
    """Reads a run directory's config and its gradient-norm and activation records.

    Args:
        run_dir: a directory written by ``reskeras train`` (local or ``gs://``).

    Returns:
        A dict with ``run_dir``, ``label`` (for legends and titles), ``model_name``,
        ``residual`` (``config["arch"]["residual"]``, ``None`` when absent),
        ``config``, ``grad_norms`` and ``activations`` (lists of records, empty when
        the file is absent).

    Raises:
        ValueError: ``run_dir`` has no ``config.json``, or a record is malformed.

    Example:

    >>> run = load_run("runs/r20")                 # doctest: +SKIP
    >>> run["label"], run["residual"], len(run["grad_norms"]) > 0  # doctest: +SKIP
    ('resnet20 (r20)', True, True)
    """
    config = rundir.read_config(run_dir)
    if not isinstance(config, dict):
        raise ValueError(f"`config.json` must hold a JSON object. Received: run_dir={run_dir!r}")
    arch = config.get("arch") if isinstance(config.get("arch"), dict) else {}
    residual = arch.get("residual")
    return {
        "run_dir": run_dir,
        "label": run_label(config, run_dir),
        "model_name": config.get("model_name"),
        "residual": None if residual is None else bool(residual),
        "config": config,
        "grad_norms": read_jsonl(rundir.path(run_dir, GRAD_NORMS), _GRAD_KEYS),
        "activations": read_jsonl(rundir.path(run_dir, ACTIVATIONS), _ACTIVATION_KEYS),
    }


def _finite(value) -> float:
    """``float(value)``, NaN for ``null``, strings and other non-numbers."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def is_batch_norm(layer: str) -> bool:
    """Whether a stable layer name is a BatchNorm (``stem_bn``, ``..._bn2``, ``..._shortcut_bn``)."""
    return re.search(r"_bn\d*$", layer) is not None


def grad_norm_matrix(records: list[dict], *, key: str = "grad_norm", log10: bool = True,
                     kernels_only: bool = False) -> tuple[list[str], list[int], np.ndarray]:
    """Layers x logged steps array of one field of the ``grad_norms.jsonl`` records.

    Args:
        records: the records (``load_run(...)["grad_norms"]``).
        key: ``"grad_norm"`` (default), ``"weight_norm"`` or ``"ratio"``.
        log10: take ``log10`` of the values (zero gives ``-inf``).
        kernels_only: keep conv and dense layers, drop BatchNorm layers (whose
            gamma/beta gradients are on another scale than kernels').

    Returns:
        ``(layer_names, steps, array)``: names ordered by ``index`` (input first),
        sorted logged steps, and a float array of shape ``(len(layer_names),
        len(steps))``; NaN where a value is ``null`` or was not logged.

    Example:

    >>> records = [{"step": 0, "layer": "dense", "index": 1, "grad_norm": 100.0},
    ...            {"step": 0, "layer": "conv", "index": 0, "grad_norm": 0.1}]
    >>> names, steps, array = grad_norm_matrix(records)
    >>> names, steps, array.ravel().tolist()
    (['conv', 'dense'], [0], [-1.0, 2.0])
    """
    if kernels_only:
        records = [r for r in records if not is_batch_norm(str(r["layer"]))]
    names_by_index: dict[int, str] = {}
    for record in records:
        names_by_index.setdefault(int(record["index"]), str(record["layer"]))
    indices = sorted(names_by_index)
    steps = sorted({int(record["step"]) for record in records})
    row = {index: i for i, index in enumerate(indices)}
    column = {step: j for j, step in enumerate(steps)}
    array = np.full((len(indices), len(steps)), np.nan)
    for record in records:
        array[row[int(record["index"])], column[int(record["step"])]] = _finite(record.get(key))
    if log10:
        with np.errstate(divide="ignore", invalid="ignore"):
            array = np.log10(array)
    return [names_by_index[i] for i in indices], steps, array


def nearest_steps(logged: list[int], wanted: list[int] | None = None) -> list[int]:
    """The logged steps nearest to ``wanted`` (default: first, middle and last), deduplicated.

    Ties go to the earlier step. Example:

    >>> nearest_steps([0, 10, 20, 30], [12, 29, 100])
    [10, 30]
    >>> nearest_steps([0, 10, 20, 30])
    [0, 20, 30]
    """
    logged = sorted(logged)
    if not logged:
        return []
    if wanted is None:
        wanted = [logged[0], logged[len(logged) // 2], logged[-1]]
    chosen = []
    for step in wanted:
        nearest = min(logged, key=lambda s: (abs(s - step), s))
        if nearest not in chosen:
            chosen.append(nearest)
    return chosen


def activation_series(records: list[dict], kind: str,
                      step: int | None = None) -> tuple[int | None, list[str], np.ndarray]:
    """One ``kind`` of ``activations.jsonl`` records at one step, ordered by ``index``.

    Args:
        records: the records (``load_run(...)["activations"]``).
        kind: ``"response"``, ``"residual_ratio"`` or ``"dead_relu"``.
        step: the logged step nearest to this one; default the last logged step.

    Returns:
        ``(step, layer_names, values)``; ``(None, [], empty array)`` when no record
        has this ``kind``. ``null`` values are NaN.

    Example:

    >>> records = [{"step": 5, "kind": "response", "layer": "b", "index": 1, "value": 0.5},
    ...            {"step": 5, "kind": "response", "layer": "a", "index": 0, "value": 2.0}]
    >>> step, names, values = activation_series(records, "response")
    >>> step, names, values.tolist()
    (5, ['a', 'b'], [2.0, 0.5])
    """
    if kind not in ACTIVATION_KINDS:
        raise ValueError(f"`kind` must be one of {', '.join(ACTIVATION_KINDS)}. "
                         f"Received: kind={kind!r}")
    of_kind = [record for record in records if record["kind"] == kind]
    if not of_kind:
        return None, [], np.zeros(0)
    logged = sorted({int(record["step"]) for record in of_kind})
    chosen = logged[-1] if step is None else nearest_steps(logged, [step])[0]
    entries = {int(r["index"]): r for r in of_kind if int(r["step"]) == chosen}
    ordered = [entries[i] for i in sorted(entries)]
    return (chosen, [str(r["layer"]) for r in ordered],
            np.array([_finite(r["value"]) for r in ordered], dtype=float))


def has_kind(run: dict, kind: str) -> bool:
    """Whether a loaded run has ``activations.jsonl`` records of this ``kind``."""
    return any(record["kind"] == kind for record in run["activations"])
