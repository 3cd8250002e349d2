"""The leaderboard of a search: ``leaderboard.json`` (a contract), ``.csv`` and ``.png``.

``TUNE_DIR/leaderboard.json`` is what ``reskeras export --tuner TUNE_DIR`` reads::

    {"objective": {"name": "val_accuracy", "direction": "max"},
     "search": {...},                      # search.json's identity plus progress
     "trials": [entry, ...]}               # best first

Trials are sorted best first: completed trials by score (ties by trial id),
then the others by trial id. Each entry has exactly these keys:

``trial_id`` (str), ``status`` ("COMPLETED", "FAILED", "INVALID", "RUNNING"),
``score`` (the objective's value at the final epoch of the trial's run; float,
null unless COMPLETED), ``metrics`` (final-epoch val_accuracy, val_loss,
accuracy, loss), ``hyperparameters`` (the Keras Tuner values, ``tuner/*``
included), ``arch`` (``ArchSpec.to_config()``), ``params`` (trainable
parameters, int), ``seconds`` (training seconds of the run, float),
``gradients`` (``first_last_ratio_init``, ``first_last_ratio_median``,
``state``, ``nonfinite``), ``run_dir`` (the reskeras run directory, relative to
TUNE_DIR; null when no run exists, e.g. a sample rejected by the budget),
``weights`` (the ``model.keras`` whose weights produced ``score``, relative to
TUNE_DIR; null unless COMPLETED) and ``failure`` (reason or null).

Score and weights agree: the score is the final epoch's validation value and
``model.keras`` is written by the trainer after that epoch.
"""

from __future__ import annotations

import csv
import io
import json
import math

import tensorflow as tf

from reskeras import rundir

LEADERBOARD = "leaderboard.json"
LEADERBOARD_CSV = "leaderboard.csv"
LEADERBOARD_PNG = "leaderboard.png"
ENTRY_KEYS = ("trial_id", "status", "score", "metrics", "hyperparameters", "arch", "params",
              "seconds", "gradients", "run_dir", "weights", "failure")
GRADIENT_KEYS = ("first_last_ratio_init", "first_last_ratio_median", "state", "nonfinite")
STATUSES = ("COMPLETED", "FAILED", "INVALID", "RUNNING")
_CSV_COLUMNS = ("rank", "trial_id", "status", "score", "model_name", "depth", "width",
                "residual", "params", "seconds", "gradient_state", "first_last_ratio_init",
                "first_last_ratio_median", "nonfinite", "val_accuracy", "val_loss", "accuracy",
                "loss", "run_dir", "weights", "failure", "hyperparameters")


def sort_entries(entries: list[dict], direction: str) -> list[dict]:
    """Completed trials by score (best first, ties by id), then the others by id."""
    sign = -1.0 if direction == "max" else 1.0
    done = [e for e in entries if e["status"] == "COMPLETED" and e["score"] is not None]
    rest = [e for e in entries if e not in done]
    done.sort(key=lambda e: (sign * e["score"], e["trial_id"]))
    rest.sort(key=lambda e: e["trial_id"])
    return done + rest


def make_entry(**values) -> dict:
    """An entry with exactly :data:`ENTRY_KEYS`; missing ones get their empty value."""
    unknown = sorted(set(values) - set(ENTRY_KEYS))
    if unknown:
        raise ValueError(f"Unknown leaderboard entry keys {unknown}. Expected: {ENTRY_KEYS}")
    gradients = values.get("gradients") or {}
    entry = {
        "trial_id": str(values["trial_id"]),
        "status": values.get("status", "RUNNING"),
        "score": _float_or_none(values.get("score")),
        "metrics": {k: float(v) for k, v in (values.get("metrics") or {}).items()},
        "hyperparameters": dict(values.get("hyperparameters") or {}),
        "arch": values["arch"],
        "params": int(values["params"]),
        "seconds": float(values.get("seconds") or 0.0),
        "gradients": {"first_last_ratio_init": _float_or_none(
                          gradients.get("first_last_ratio_init")),
                      "first_last_ratio_median": _float_or_none(
                          gradients.get("first_last_ratio_median")),
                      "state": gradients.get("state", "unknown"),
                      "nonfinite": bool(gradients.get("nonfinite", False))},
        "run_dir": values.get("run_dir"),
        "weights": values.get("weights"),
        "failure": values.get("failure"),
    }
    if entry["status"] not in STATUSES:
        raise ValueError(f"`status` must be one of {STATUSES}. "
                         f"Received: status={entry['status']!r}")
    return entry


def _float_or_none(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def write_leaderboard(tune_dir: str, *, objective: dict, search: dict, entries: list[dict],
                      figure: bool = True) -> dict:
    """Writes ``leaderboard.json``, ``leaderboard.csv`` and (``figure``) ``leaderboard.png``.

    Args:
        tune_dir: the tuner directory (local or ``gs://``).
        objective: ``{"name": ..., "direction": "max" | "min"}``.
        search: the search description (``search.json``'s identity and progress).
        entries: entries made with :func:`make_entry` (any order).

    Returns:
        The leaderboard dict as written.
    """
    if objective.get("direction") not in ("max", "min") or not objective.get("name"):
        raise ValueError("`objective` must be {'name': str, 'direction': 'max' or 'min'}. "
                         f"Received: objective={objective!r}")
    board = {"objective": {"name": str(objective["name"]), "direction": objective["direction"]},
             "search": search,
             "trials": sort_entries([make_entry(**e) for e in entries], objective["direction"])}
    from tuning.tuner import write_json_atomic
    tf.io.gfile.makedirs(tune_dir)
    # entries keep the contract's key order (rundir.write_json would sort them)
    write_json_atomic(rundir.path(tune_dir, LEADERBOARD), board, indent=2)
    _write_csv(tune_dir, board)
    if figure:
        from tuning.figure import plot_leaderboard
        plot_leaderboard(board, rundir.path(tune_dir, LEADERBOARD_PNG))
    return board


def read_leaderboard(tune_dir: str) -> dict:
    """The leaderboard of a tuner directory; ValueError naming the directory when absent."""
    file = rundir.path(tune_dir, LEADERBOARD)
    if not tf.io.gfile.exists(file):
        raise ValueError(f"`tune_dir` must be a reskeras tuner directory with {LEADERBOARD} "
                         f"(written by `reskeras tune`). Received: tune_dir={tune_dir!r}")
    board = rundir.read_json(file)
    if not (isinstance(board, dict) and {"objective", "search", "trials"} <= set(board)):
        raise ValueError(f"`tune_dir` holds a {LEADERBOARD} without objective, search and "
                         f"trials. Received: tune_dir={tune_dir!r}")
    return board


def _write_csv(tune_dir: str, board: dict) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for rank, entry in enumerate(board["trials"], start=1):
        arch, grads, metrics = entry["arch"], entry["gradients"], entry["metrics"]
        writer.writerow({
            "rank": rank, "trial_id": entry["trial_id"], "status": entry["status"],
            "score": entry["score"], "model_name": _model_name(arch),
            "depth": _depth(arch), "width": arch["widths"][0], "residual": arch["residual"],
            "params": entry["params"], "seconds": round(entry["seconds"], 3),
            "gradient_state": grads["state"],
            "first_last_ratio_init": grads["first_last_ratio_init"],
            "first_last_ratio_median": grads["first_last_ratio_median"],
            "nonfinite": grads["nonfinite"],
            **{k: metrics.get(k) for k in ("val_accuracy", "val_loss", "accuracy", "loss")},
            "run_dir": entry["run_dir"], "weights": entry["weights"],
            "failure": (entry["failure"] or "").splitlines()[0] if entry["failure"] else None,
            "hyperparameters": json.dumps(entry["hyperparameters"], sort_keys=True)})
    file = rundir.path(tune_dir, LEADERBOARD_CSV)
    with tf.io.gfile.GFile(file + ".tmp", "w") as handle:
        handle.write(buffer.getvalue())
    tf.io.gfile.rename(file + ".tmp", file, overwrite=True)


def _depth(arch: dict) -> int:
    from reskeras.specs import ArchSpec
    return ArchSpec.from_config(arch).depth


def _model_name(arch: dict) -> str:
    from reskeras.specs import ArchSpec
    return ArchSpec.from_config(arch).name
