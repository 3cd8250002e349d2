"""What can be exported: a finished run dir, a model file, a Keras model, or tuner trials.

Each becomes an :class:`ExportSource`: the Keras model plus everything the
SavedModel and its metadata need (input shape, classes, class names, the
``preprocessing`` record baked into the graph, where it came from, metrics).

The tuner contract (``TUNE_DIR/leaderboard.json``, written by ``tuning``)::

    {"objective": {"name": str, "direction": "max" | "min"},
     "trials": [{"trial_id", "status", "score", "metrics", "hyperparameters", "arch",
                 "params", "seconds", "gradients", "run_dir", "weights"}, ...]}

sorted best first; ``run_dir`` and ``weights`` are relative to ``TUNE_DIR``.

A model file is a ``.keras`` file with its ``.reskeras.json`` sidecar
(:mod:`reskeras.model_file`, written by ``reskeras convert``): the sidecar
holds the preprocessing record, class names, architecture and origin.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import tensorflow as tf

from export.layout import join
from reskeras.preprocessing import check_int
from reskeras import model_file, rundir
from reskeras._backend import keras
from reskeras.preprocessing import check_preprocessing

LEADERBOARD = "leaderboard.json"
COMPLETED = "COMPLETED"


@dataclasses.dataclass
class ExportSource:
    """A model and the facts its export records.

    Attributes:
        model: the Keras model (inference mode is used).
        input_shape: ``(H, W, C)`` of the uint8 images the model is fed.
        classes: number of outputs.
        class_names: one name per class.
        preprocessing: the normalization record (``reskeras.preprocessing``).
        arch: ``ArchSpec.to_config()`` or ``None`` for a foreign model.
        model_name: a short name of the architecture.
        source: where the weights came from
            (``{"kind": "run_dir" | "tuner" | "model" | "model_file", ...}``).
        metrics: final metrics of the run or trial (may be empty).
        dataset: the run's ``config.json`` dataset entry (``None`` for a bare model).
    """

    model: Any
    input_shape: tuple[int, int, int]
    classes: int
    class_names: list[str]
    preprocessing: dict
    arch: dict | None
    model_name: str
    source: dict
    metrics: dict
    dataset: dict | None = None


def _check_class_names(class_names, classes: int) -> list[str]:
    if (not isinstance(class_names, (list, tuple)) or len(class_names) != classes
            or not all(isinstance(c, str) for c in class_names)):
        raise ValueError(f"`class_names` must be a list of {classes} strings (one per class). "
                         f"Received: class_names={class_names!r}")
    return list(class_names)


def _shape_and_classes(model) -> tuple[tuple[int, int, int], int]:
    shape = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else ()
    classes = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    if len(shape) != 3 or None in shape or not isinstance(classes, int):
        raise ValueError("`model` must take one image batch [None, H, W, C] with a static "
                         "H, W, C and return [None, classes]. Received: input_shape="
                         f"{model.input_shape}, output_shape={model.output_shape}")
    return tuple(int(d) for d in shape), int(classes)


def from_model(model, *, preprocessing, class_names=None) -> ExportSource:
    """A Keras model; ``preprocessing`` (the run's normalization record) is required."""
    if not isinstance(model, keras.Model):
        raise ValueError("`model_or_run_dir` must be a reskeras run directory or a keras.Model. "
                         f"Received: model_or_run_dir={model!r}")
    if preprocessing is None:
        raise ValueError("`preprocessing` is required when exporting a Keras model (the "
                         "normalization record of its training data, e.g. the 'preprocessing' "
                         "entry of a run's config.json). Received: preprocessing=None")
    check_preprocessing(preprocessing)
    shape, classes = _shape_and_classes(model)
    names = _check_class_names(class_names if class_names is not None
                               else [str(c) for c in range(classes)], classes)
    return ExportSource(model, shape, classes, names, json.loads(json.dumps(preprocessing)),
                        None, model.name, {"kind": "model", "model_name": model.name}, {})


def from_model_file(path, *, class_names=None) -> ExportSource:
    """A ``.keras`` file and its sidecar (:func:`reskeras.model_file.write_model_file`).

    Args:
        path: the ``.keras`` file; ``NAME.reskeras.json`` must lie beside it.
        class_names: one name per class (default: the sidecar's, or ``"0"``, ``"1"``, ...).

    Returns:
        An :class:`ExportSource` with ``source = {"kind": "model_file", "model_file":
        absolute path, "converted_from": the sidecar's source}`` and no dataset
        (the reference batch is seeded random images).

    Raises:
        ValueError: not a ``.keras`` path, no such file, no or a malformed
            sidecar, or a model that does not match its sidecar.
    """
    path = model_file.check_model_path(path, "model")
    if not os.path.isfile(path):
        raise ValueError(f"`model` must be an existing .keras file. Received: model={path!r}")
    facts = model_file.read_sidecar(path)
    import reskeras  # noqa: F401  (registers the serializable layers before loading)
    model = keras.saving.load_model(path, safe_mode=True)
    if facts["arch"] is not None and "predictions" not in {layer.name for layer in model.layers}:
        raise ValueError("`model` must end in its classifier (`predictions`) to be served; a "
                         "feature extractor (`reskeras convert --no-top`) has no classes. "
                         f"Received: model={path!r}")
    shape, classes = _shape_and_classes(model)
    if list(shape) != list(facts["input_shape"]) or classes != facts["classes"]:
        raise ValueError(f"`model` must match its {os.path.basename(model_file.sidecar_path(path))}"
                         f" (input_shape {facts['input_shape']}, classes {facts['classes']}). "
                         f"Received: input_shape={list(shape)}, classes={classes} in {path!r}")
    names = _check_class_names(class_names if class_names is not None
                               else facts["class_names"] or [str(c) for c in range(classes)],
                               classes)
    source = {"kind": "model_file", "model_file": os.path.abspath(path),
              "converted_from": facts["source"]}
    return ExportSource(model, shape, classes, names, facts["preprocessing"], facts["arch"],
                        facts["model_name"] or model.name, source, {}, None)


def _run_facts(run_dir: str, config: dict, model, class_names, source: dict,
               metrics: dict) -> ExportSource:
    shape, classes = _shape_and_classes(model)
    if list(shape) != list(config["input_shape"]) or classes != config["classes"]:
        raise ValueError(f"`run_dir` must hold a model matching its config.json (input_shape "
                         f"{config['input_shape']}, classes {config['classes']}). Received: "
                         f"model input_shape={list(shape)}, classes={classes} in {run_dir!r}")
    check_preprocessing(config.get("preprocessing"))
    names = _check_class_names(class_names if class_names is not None
                               else config.get("class_names")
                               or [str(c) for c in range(classes)], classes)
    return ExportSource(model, shape, classes, names, config["preprocessing"], config.get("arch"),
                        config.get("model_name") or model.name, source, metrics,
                        config.get("dataset"))


def from_run_dir(run_dir: str, *, class_names=None) -> ExportSource:
    """A finished reskeras run: ``summary.json`` status ``finished`` and ``model.keras``."""
    if not isinstance(run_dir, (str, os.PathLike)) or not tf.io.gfile.isdir(str(run_dir)):
        raise ValueError(f"`run_dir` must be an existing reskeras run directory. "
                         f"Received: run_dir={run_dir!r}")
    run_dir = str(run_dir)
    config = rundir.read_config(run_dir)
    summary = rundir.read_summary(run_dir)
    if not rundir.is_finished(run_dir):
        status = (summary or {}).get("status", "no summary.json")
        raise ValueError(f"`run_dir` must hold a finished run (summary.json status 'finished' "
                         f"and {rundir.MODEL}). Received: run_dir={run_dir!r} (status: {status})")
    import reskeras  # noqa: F401  (registers the serializable layers before loading)
    model = keras.saving.load_model(rundir.path(run_dir, rundir.MODEL), safe_mode=True)
    source = {"kind": "run_dir", "run_dir": os.path.abspath(run_dir)
              if "://" not in run_dir else run_dir, "step": summary.get("step")}
    return _run_facts(run_dir, config, model, class_names, source,
                      rundir.served_metrics(summary))


def read_leaderboard(tuner_dir: str) -> dict:
    file = join(str(tuner_dir), LEADERBOARD)
    if not tf.io.gfile.exists(file):
        raise ValueError(f"`tuner_dir` must be a tuner directory holding {LEADERBOARD}. "
                         f"Received: tuner_dir={tuner_dir!r}")
    board = rundir.read_json(file)
    if not isinstance(board, dict) or not isinstance(board.get("trials"), list):
        raise ValueError(f"`tuner_dir` must hold a {LEADERBOARD} with a 'trials' list. "
                         f"Received: tuner_dir={tuner_dir!r}")
    return board


def completed_trials(tuner_dir: str, top: int) -> tuple[dict, list[dict]]:
    """The leaderboard and its ``top`` best COMPLETED trials (leaderboard order)."""
    check_int("top", top, 1)
    board = read_leaderboard(tuner_dir)
    trials = [t for t in board["trials"] if isinstance(t, dict) and t.get("status") == COMPLETED]
    if not trials:
        statuses = sorted({str(t.get("status")) for t in board["trials"] if isinstance(t, dict)})
        raise ValueError(f"`tuner_dir` must have at least one COMPLETED trial in {LEADERBOARD}. "
                         f"Received: tuner_dir={tuner_dir!r} ({len(board['trials'])} trials, "
                         f"statuses {statuses})")
    return board, trials[:top]


def check_trial(tuner_dir: str, trial: dict) -> tuple[str, str, dict]:
    """The run dir, weights file and run config of a trial; ValueError when one is missing."""
    tuner_dir = str(tuner_dir)
    trial_id = trial.get("trial_id")
    for key in ("run_dir", "weights", "arch"):
        if not trial.get(key):
            raise ValueError(f"each COMPLETED trial must have '{key}'. Received: trial "
                             f"{trial_id!r} in {join(tuner_dir, LEADERBOARD)!r}")
    run_dir, weights = join(tuner_dir, trial["run_dir"]), join(tuner_dir, trial["weights"])
    config = dict(rundir.read_config(run_dir))
    if not tf.io.gfile.exists(weights):
        raise ValueError(f"each COMPLETED trial must point to an existing weights file. "
                         f"Received: weights={trial['weights']!r} for trial {trial_id!r}")
    config["arch"] = trial["arch"]
    return run_dir, weights, config


def from_trial(tuner_dir: str, board: dict, trial: dict, *, class_names=None) -> ExportSource:
    """Rebuilds a trial's model from ``arch`` + its run's config.json and loads ``weights``."""
    from reskeras.train import build_run_model

    tuner_dir = str(tuner_dir)
    trial_id = trial.get("trial_id")
    run_dir, weights, config = check_trial(tuner_dir, trial)
    model = build_run_model(config)
    model.load_weights(weights)
    source = {"kind": "tuner", "tuner_dir": os.path.abspath(tuner_dir)
              if "://" not in tuner_dir else tuner_dir, "trial_id": trial_id,
              "score": trial.get("score"), "objective": board.get("objective"),
              "hyperparameters": trial.get("hyperparameters") or {},
              "run_dir": trial["run_dir"], "weights": trial["weights"]}
    return _run_facts(run_dir, config, model, class_names, source, trial.get("metrics") or {})


__all__ = ["ExportSource", "check_trial", "completed_trials", "from_model", "from_model_file",
           "from_run_dir", "from_trial", "read_leaderboard"]
