"""What the diagnostic callbacks share: destinations, JSONL and TensorBoard writers, copies.

A logger writes to ``log_dir`` when given and, under the reskeras trainer, into
the run directory (``params["run_dir"]``). Only the chief writes; writers are
created on the first record. A resumed run drops the records at or after the
step it resumes from, so a killed and resumed run ends with the same records
as an uninterrupted one.
"""

from __future__ import annotations

import json
import math

import numpy as np
import tensorflow as tf

from reskeras import distribute, rundir
from reskeras._backend import keras


def check_every(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return value


def summary_scalar(value) -> np.ndarray:
    """``value`` as a 0-d float64 array, for ``tf.summary.scalar``.

    TensorFlow converts a Python ``float`` or ``int`` (``np.float64`` included, a
    ``float`` subclass) through a process-wide cache that keeps every distinct
    value, and its tensor, for the rest of the process (about 0.7 KB each; Keras's
    ``clear_session`` does not empty it). Summaries write fresh values every time,
    so each run left its values behind. Arrays are converted without the cache; the
    summary stores the same float32 value (``tf.summary.scalar`` casts either way).
    """
    return np.asarray(value, np.float64)


def scalars_summary(scalars: dict) -> bytes:
    """One serialized ``Summary`` holding every ``{tag: value}`` as ``tf.summary.scalar`` would.

    Each value is the float32 tensor with the scalars plugin's metadata that
    ``tf.summary.scalar`` writes, so TensorBoard and ``EventAccumulator`` read the
    same tags and values; written with one ``write_raw_pb`` per record instead of one
    eager op per tag (a 56-layer net logs 170 scalars per record: 0.2 s each time).
    """
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb

    summary = summary_pb2.Summary()
    for tag, value in scalars.items():
        summary.value.extend(scalar_pb(tag, np.float32(value)).value)
    return summary.SerializeToString()


def finite_or_none(value: float):
    """JSON has no NaN or infinity: non-finite values are written as null."""
    value = float(value)
    return value if math.isfinite(value) else None


class StepLogger(keras.callbacks.Callback):
    """Base of :class:`GradientNormLogger` and :class:`ActivationStatsLogger`.

    Subclasses set ``FILE`` (the JSONL name) and ``BOARD`` (the TensorBoard
    folder in a run directory) and call :meth:`write`.
    """

    FILE = ""
    BOARD = ""

    def __init__(self, every_n_steps: int, log_dir: str | None):
        super().__init__()
        self.every_n_steps = check_every("every_n_steps", every_n_steps)
        if log_dir is not None and not (isinstance(log_dir, str) and log_dir):
            raise ValueError(f"`log_dir` must be a directory path or None. "
                             f"Received: log_dir={log_dir!r}")
        self.log_dir = log_dir
        self.history: list[dict] = []
        # kept by a reskeras.trace_cache entry: release() keeps what was traced for the next run
        self.persistent = False
        self._reset()

    def _reset(self) -> None:
        self._targets: list[tuple[str, str]] | None = None  # (folder of the JSONL, board dir)
        self._writers: dict[str, tf.summary.SummaryWriter] = {}

    def _init_args(self) -> dict:
        return {"every_n_steps": self.every_n_steps, "log_dir": self.log_dir}

    def __deepcopy__(self, memo):
        # Keras Tuner copies callbacks per trial: a fresh logger with the same settings
        copy = type(self)(**self._init_args())
        memo[id(self)] = copy
        return copy

    # -- where to write ------------------------------------------------------
    def _chief(self) -> bool:
        strategy = getattr(self.model, "distribute_strategy", None)
        return distribute.is_chief(strategy)

    def open(self) -> None:
        """Resolves the destinations at the start of training (drops records to be redone)."""
        self.history = []
        self._close_writers()
        targets = []
        if self.log_dir:
            targets.append((self.log_dir, self.log_dir))
        run_dir = (self.params or {}).get("run_dir")
        if run_dir:
            board = rundir.path(rundir.path(run_dir, rundir.TENSORBOARD), self.BOARD)
            targets.append((run_dir, board))
        self._targets = targets if self._chief() else []
        initial_step = (self.params or {}).get("initial_step", 0) or 0
        for folder, _ in self._targets:
            _drop_records_from(rundir.path(folder, self.FILE), initial_step)

    def write(self, step: int, records: list[dict], scalars: dict[str, float],
              histograms: dict | None = None) -> None:
        """Appends ``records`` to every JSONL target and ``scalars`` to TensorBoard."""
        if self._targets is None:
            self.open()
        for folder, board in self._targets:
            tf.io.gfile.makedirs(folder)
            with tf.io.gfile.GFile(rundir.path(folder, self.FILE), "a") as handle:
                handle.write("".join(json.dumps(r) + "\n" for r in records))
            if board not in self._writers:
                self._writers[board] = tf.summary.create_file_writer(board)
            with self._writers[board].as_default():
                if scalars:
                    # an array, not bytes: see summary_scalar on TF's conversion cache
                    tf.summary.experimental.write_raw_pb(
                        np.array(scalars_summary(scalars), dtype=object), step=np.int64(step))
                for tag, value in (histograms or {}).items():
                    tf.summary.histogram(tag, value, step=np.int64(step))
            self._writers[board].flush()

    def _close_writers(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def release(self) -> None:
        """Closes the writers and drops what training set up (``on_train_end`` calls it).

        The reskeras trainer also calls it on the loggers it created itself when a
        run ends by an exception, which skips ``on_train_end``. A ``persistent``
        logger (kept by a :class:`reskeras.trace_cache.TraceCache`) keeps its traced
        functions and hooks for the next run of the same model.
        """
        self._close_writers()
        self._targets = None

    def on_train_end(self, logs=None):
        self.release()


def _drop_records_from(jsonl: str, step: int) -> None:
    if not tf.io.gfile.exists(jsonl):
        return
    with tf.io.gfile.GFile(jsonl) as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["step"] < step]
    if len(kept) != len(lines):
        with tf.io.gfile.GFile(jsonl, "w") as handle:
            handle.write("".join(line + "\n" for line in kept))
