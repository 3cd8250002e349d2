"""The run directory: what a training run leaves behind, and how it is read back.

Layout (DESIGN.md)::

    RUN_DIR/config.json       everything needed to rebuild the model and resume
    RUN_DIR/checkpoints/      tf.train.CheckpointManager files (model, optimizer, progress)
    RUN_DIR/tensorboard/      train/ and validation/ scalars: loss, accuracy, learning_rate
    RUN_DIR/metrics.jsonl     one record per epoch
    RUN_DIR/summary.json      status ("finished" or "diverged"), last step and metrics, and
                              with precise BN the test metrics of its statistics
    RUN_DIR/model.keras       the trained model, written when the run finishes (with precise
                              BN statistics when the run asked for them; the checkpoints
                              keep the moving averages)

Paths go through ``tf.io.gfile`` so a run directory can live on ``gs://``. Only
the chief writes; JSON files are written to a temporary name and renamed, so a
kill never leaves half a file.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
MODEL = "model.keras"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"

# config.json entries that must match for a run to resume in the same directory
IDENTITY_KEYS = ("arch", "input_shape", "classes", "dataset", "training")
# training entries that may change between a run and its resume
RESUMABLE_CHANGES = ("strategy", "cpu_replicas", "steps_per_execution", "jit_compile",
                     "grad_norms_every", "activations_every", "verbose", "precise_bn",
                     "checkpoint_every")


def path(run_dir: str, name: str) -> str:
    return os.path.join(run_dir, name) if "://" not in run_dir else f"{run_dir.rstrip('/')}/{name}"


def write_json(file: str, data) -> None:
    """Writes ``data`` atomically (temporary file, then rename)."""
    tmp = file + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tf.io.gfile.rename(tmp, file, overwrite=True)


def read_json(file: str):
    with tf.io.gfile.GFile(file) as handle:
        return json.load(handle)


def read_config(run_dir: str) -> dict:
    """The ``config.json`` of a run; ValueError naming the directory when absent."""
    file = path(run_dir, CONFIG)
    if not tf.io.gfile.exists(file):
        raise ValueError(f"`run_dir` must be a reskeras run directory with {CONFIG}. "
                         f"Received: run_dir={run_dir!r}")
    return read_json(file)


def read_metrics(run_dir: str) -> list[dict]:
    """The epoch records of ``metrics.jsonl`` (empty when the run has none yet)."""
    file = path(run_dir, METRICS)
    if not tf.io.gfile.exists(file):
        return []
    with tf.io.gfile.GFile(file) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def append_metrics(run_dir: str, record: dict) -> None:
    # gfile has no append mode on every filesystem: rewrite the (small) file atomically
    records = read_metrics(run_dir) + [record]
    _write_records(run_dir, records)


def truncate_metrics(run_dir: str, last_step: int) -> None:
    """Drops records written after the checkpoint a run resumes from."""
    records = read_metrics(run_dir)
    kept = [r for r in records if r["step"] <= last_step]
    if len(kept) != len(records):
        _write_records(run_dir, kept)


def _write_records(run_dir: str, records: list[dict]) -> None:
    file = path(run_dir, METRICS)
    tmp = file + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as handle:
        handle.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    tf.io.gfile.rename(tmp, file, overwrite=True)


def read_summary(run_dir: str) -> dict | None:
    file = path(run_dir, SUMMARY)
    return read_json(file) if tf.io.gfile.exists(file) else None


def served_metrics(summary: dict | None) -> dict:
    """The final metrics of the model that ``model.keras`` holds (what an export serves).

    A run trained with precise BatchNorm statistics saved its model with them, so its
    test loss and accuracy are those of ``summary["precise_bn"]``; the moving averages'
    numbers stay beside them as ``moving_average_val_loss`` / ``_val_accuracy``.

    >>> served_metrics({"final": {"val_accuracy": 0.8, "val_loss": 0.5},
    ...                 "precise_bn": {"val_accuracy": 0.9, "val_loss": 0.3}})["val_accuracy"]
    0.9
    """
    final = dict((summary or {}).get("final") or {})
    precise = (summary or {}).get("precise_bn")
    if precise:
        final.update(moving_average_val_loss=final.get("val_loss"),
                     moving_average_val_accuracy=final.get("val_accuracy"),
                     val_loss=precise["val_loss"], val_accuracy=precise["val_accuracy"],
                     bn_statistics="precise")
    return final


def is_finished(run_dir: str) -> bool:
    summary = read_summary(run_dir)
    return bool(summary and summary.get("status") == "finished"
                and tf.io.gfile.exists(path(run_dir, MODEL)))


def check_writable(run_dir: str) -> None:
    """Creates ``run_dir`` if needed; ValueError naming it when that is impossible."""
    try:
        tf.io.gfile.makedirs(run_dir)
        probe = path(run_dir, ".write-probe")
        with tf.io.gfile.GFile(probe, "w") as handle:
            handle.write("ok")
        tf.io.gfile.remove(probe)
    except (tf.errors.OpError, OSError) as error:
        reason = getattr(error, "message", None) or getattr(error, "strerror", None) or error
        raise ValueError(f"`out` must be a writable directory. Received: out={run_dir!r} "
                         f"({reason})") from None


def config_mismatch(saved: dict, new: dict) -> str | None:
    """The first identity entry where two configs differ, as ``key: saved -> new``."""
    for key in IDENTITY_KEYS:
        old_value, new_value = saved.get(key), new.get(key)
        if key == "training":
            old_value = {k: v for k, v in (old_value or {}).items() if k not in RESUMABLE_CHANGES}
            new_value = {k: v for k, v in (new_value or {}).items() if k not in RESUMABLE_CHANGES}
            for sub in sorted(set(old_value) | set(new_value)):
                if old_value.get(sub) != new_value.get(sub):
                    return f"training.{sub}: {old_value.get(sub)!r} -> {new_value.get(sub)!r}"
        elif old_value != new_value:
            return f"{key}: {_short(old_value)} -> {_short(new_value)}"
    return None


# what a run extended to a larger budget may change (``TrainConfig.extend``)
BUDGET_FIELDS = ("epochs", "total_steps")


def extension_mismatch(saved: dict, new: dict) -> str | None:
    """Why ``new`` cannot continue the run of ``saved`` to a larger budget, or ``None``.

    A run extends when only its budget grows and its learning rate does not depend on
    the budget: no step decay (its boundaries are fractions of the total) and the same
    warmup. Its first steps are then those of the longer run, so one run can be read at
    several budgets.

    >>> plan = {"boundaries": [], "warmup_steps": 0, "total_steps": 88}
    >>> old = {"training": {"epochs": 8, "total_steps": 88, "plan": plan}}
    >>> new = {"training": {"epochs": 16, "total_steps": 176,
    ...                     "plan": {**plan, "total_steps": 176}}}
    >>> extension_mismatch(old, new) is None, extension_mismatch(new, old)
    (True, 'training.total_steps: 176 -> 88 (a run extends to a larger budget only)')
    """
    def budgetless(config: dict) -> dict:
        training = {k: v for k, v in (config.get("training") or {}).items()
                    if k not in BUDGET_FIELDS}
        training["plan"] = {k: v for k, v in (training.get("plan") or {}).items()
                            if k != "total_steps"}
        return {**config, "training": training}

    if (new["training"].get("plan") or {}).get("boundaries"):
        return (f"training.plan.boundaries: {new['training']['plan']['boundaries']} "
                "(a step-decay schedule depends on the budget; train each budget anew)")
    difference = config_mismatch(budgetless(saved), budgetless(new))
    if difference:
        return difference
    old_total, new_total = saved["training"]["total_steps"], new["training"]["total_steps"]
    if new_total <= old_total:
        return (f"training.total_steps: {old_total} -> {new_total} "
                "(a run extends to a larger budget only)")
    return None


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."
