"""``ReskerasTuner``: one Keras Tuner ``Tuner`` whose oracle is chosen by name.

Each trial is a reskeras run directory ``TUNE_DIR/runs/<trial_id>`` (re-running
a killed search resumes its interrupted trial from the last checkpoint) and a
record ``TUNE_DIR/trials/<trial_id>.json`` (score, parameters, multiply-adds,
training seconds, gradient flow, failure reason). Keras Tuner's own state lives
in ``TUNE_DIR/keras_tuner/`` (``oracle.json``, ``trial_*/trial.json``).

What this adds to the stock oracles (all four are Keras Tuner 1.4.8's):

- a sample over the budget fails before any training (``OverBudget``, a
  ``FailedTrialError``: status FAILED, never retried) and does not count towards
  ``max_consecutive_failed_trials``, so rejections never stop a search;
- oracle and trial files are written atomically (temporary file + rename), so a
  ``kill -9`` never leaves half a JSON file that would stop the resume;
- a trial file that says RUNNING but is not in ``oracle.json`` (a kill between
  the two writes of ``create_trial``) is run again on resume, like the ongoing
  trials Keras Tuner re-queues itself;
- GridSearch resumes where it was: Keras Tuner 1.4.8 does not save the grid
  oracle's ordering, so a reloaded grid search stopped after the interrupted
  trial; the ordering is rebuilt from the trials on reload;
- Hyperband honours ``max_trials`` (its oracle has no such argument) and keeps
  starting brackets until ``max_trials`` or an exhausted space stops it;
- an oracle that ends a trial calls ``after_end_trial`` (the leaderboard is
  rewritten after every trial, by the process that owns the oracle).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import json
import math
import os
import time

import keras_tuner as kt
import tensorflow as tf
from keras_tuner.src.engine import trial as trial_module
from keras_tuner.src.tuners.gridsearch import LinkedList

from reskeras.preprocessing import check_int
from reskeras import distribute, rundir
from tuning.budget import Budget, OverBudget, model_cost

TUNERS = ("hyperband", "bayesian", "random", "grid")
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min", "accuracy": "max", "loss": "min"}
PROJECT = "keras_tuner"
RUNS = "runs"
TRIALS = "trials"


def write_json_atomic(file: str, data, **dumps) -> None:
    tmp = f"{file}.tmp"
    with tf.io.gfile.GFile(tmp, "w") as handle:
        handle.write(json.dumps(data, **dumps))
    tf.io.gfile.rename(tmp, file, overwrite=True)


class _ReskerasOracle:
    """Mixed into each stock oracle (see the module docstring)."""

    rejection = None  # callable(HyperParameters) -> reason or None
    after_end_trial = None  # callable(oracle) -> None

    def _rejected(self, trial) -> bool:
        return bool(self.rejection and self.rejection(trial.hyperparameters))

    def _check_consecutive_failures(self):
        failures = 0
        for trial_id in self.end_order:
            trial = self.trials[trial_id]
            if trial.status == trial_module.TrialStatus.FAILED:
                if self._rejected(trial):
                    continue  # a budget rejection says nothing about the search's health
                failures += 1
            else:
                failures = 0
            if failures == self.max_consecutive_failed_trials:
                raise RuntimeError("Number of consecutive failures exceeded the limit of "
                                   f"{self.max_consecutive_failed_trials}.\n"
                                   + (trial.message or ""))

    def save(self):
        write_json_atomic(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        write_json_atomic(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"),
                          trial.get_state())

    def reload(self):
        super().reload()
        # killed between create_trial's trial.json and oracle.json: run it again
        queued = set(self._retry_queue)
        for trial_id in sorted(self.trials):
            trial = self.trials[trial_id]
            if trial.status == trial_module.TrialStatus.RUNNING and trial_id not in queued:
                self._retry_queue.append(trial_id)
                if trial_id not in self.start_order:
                    self.start_order.append(trial_id)

    @kt.synchronized
    def end_trial(self, trial):
        super().end_trial(trial)
        if self.after_end_trial is not None:
            self.after_end_trial(self)


class HyperbandOracle(_ReskerasOracle, kt.oracles.HyperbandOracle):
    pass


class BayesianOracle(_ReskerasOracle, kt.oracles.BayesianOptimizationOracle):
    pass


class RandomOracle(_ReskerasOracle, kt.oracles.RandomSearchOracle):
    pass


class GridOracle(_ReskerasOracle, kt.oracles.GridSearchOracle):
    def set_state(self, state):
        super().set_state(state)
        # Keras Tuner 1.4.8 keeps these two only in memory: rebuild them from the trials
        started = [t for t in self.start_order if t in self.trials]
        order = sorted(started, key=functools.cmp_to_key(
            lambda a, b: self._compare(self.trials[a].hyperparameters.values,
                                       self.trials[b].hyperparameters.values)))
        self._ordered_ids = LinkedList()
        for trial_id in order:
            self._ordered_ids.insert(trial_id)
        self._populate_next = [t for t in self.end_order if t in self.trials]


_ORACLES = {"hyperband": HyperbandOracle, "bayesian": BayesianOracle, "random": RandomOracle,
            "grid": GridOracle}


def check_tuner_name(name) -> str:
    if name not in TUNERS:
        raise ValueError(f"`tuner` must be one of {', '.join(map(repr, TUNERS))}. "
                         f"Received: tuner={name!r}")
    return name


def make_oracle(name: str, *, objective: str = "val_accuracy", max_trials: int = 10,
                max_epochs: int = 3, seed: int = 0, factor: int = 3):
    """The oracle of tuner ``name`` (hyperband, bayesian, random, grid) with reskeras' fixes."""
    check_tuner_name(name)
    if objective not in OBJECTIVES:
        raise ValueError(f"`objective` must be one of {', '.join(map(repr, OBJECTIVES))}. "
                         f"Received: objective={objective!r}")
    goal = kt.Objective(objective, OBJECTIVES[objective])
    # Keras Tuner draws seed 0 as "no seed" (`seed or random.randint`): shift by one
    common = dict(objective=goal, seed=seed + 1, max_consecutive_failed_trials=3)
    if name == "hyperband":
        oracle = HyperbandOracle(max_epochs=max_epochs, factor=factor,
                                 hyperband_iterations=None, **common)
        oracle.max_trials = max_trials
        return oracle
    return _ORACLES[name](max_trials=max_trials, **common)


def _plain_text_display() -> None:
    """Stops Keras Tuner from clearing a "notebook" that is a terminal or a log file.

    Keras Tuner 1.4.8 decides it runs in a notebook when IPython can be imported
    and ``get_ipython()``'s class name lacks "Terminal"; outside IPython that
    name is "NoneType", so each finished trial printed IPython's
    ``clear_output()`` escape (``ESC[2K``) into terminals and logs alike.
    """
    from keras_tuner.src import utils

    try:
        from IPython import get_ipython
    except ImportError:
        return
    if utils.IS_NOTEBOOK and get_ipython() is None:
        utils.IS_NOTEBOOK = False


class ReskerasTuner(kt.Tuner):
    """Keras Tuner over a :class:`tuning.ResNetHyperModel`, training with reskeras.

    Args:
        hypermodel: a :class:`tuning.ResNetHyperModel`.
        directory: the tuner directory ``TUNE_DIR`` (local or ``gs://``).
        tuner: ``"hyperband"`` (default), ``"bayesian"``, ``"random"`` or ``"grid"``.
        objective: ``"val_accuracy"`` (default, maximized) or ``"val_loss"``, ...
        max_trials: trials to run (fewer when the oracle exhausts the space).
        max_epochs: epochs of a trial (Hyperband: of its longest round).
        budget: a :class:`tuning.budget.Budget`; samples over it fail untrained.
        seed: the oracle's seed (the trainer's seed is the hypermodel's).
        factor: Hyperband's reduction factor.
        idle_wait: seconds a worker waits when the oracle has no trial for it yet.
        subprocess_per_trial: train each trial in a child process (``tuning.trial_process``),
            so every byte a trial allocated goes back to the system when it ends.
        **kwargs: ``kt.Tuner`` arguments (``overwrite``, ...).

    Example:

    >>> from tuning import ResNetHyperModel, ReskerasTuner
    >>> tuner = ReskerasTuner(ResNetHyperModel((8, 8, 1), 10, depths=[8, 14], widths=[4, 8]),
    ...                       directory="tune-digits", tuner="random", max_trials=4,
    ...                       max_epochs=2)  # doctest: +SKIP
    >>> tuner.search()  # doctest: +SKIP
    """

    def __init__(self, hypermodel, *, directory: str, tuner: str = "hyperband",
                 objective: str = "val_accuracy", max_trials: int = 10, max_epochs: int = 3,
                 budget: Budget | None = None, seed: int = 0, factor: int = 3,
                 idle_wait: float = 0.5, subprocess_per_trial: bool = False, **kwargs):
        for name, value in (("max_trials", max_trials), ("max_epochs", max_epochs)):
            check_int(name, value, 1)
        oracle = make_oracle(tuner, objective=objective, max_trials=max_trials,
                             max_epochs=max_epochs, seed=seed, factor=factor)
        self.tune_dir = directory
        self.tuner_name, self.max_epochs = tuner, max_epochs
        self.budget = budget or Budget()
        self.idle_wait = idle_wait
        self.subprocess_per_trial = bool(subprocess_per_trial)
        oracle.rejection = self.rejection
        _plain_text_display()  # the chief's oracle and the workers' tuners both print
        super().__init__(oracle, hypermodel, directory=directory, project_name=PROJECT,
                         **kwargs)
        strategy = hypermodel.train_values.get("strategy")
        if strategy == "multiworker":
            # the processes of one cluster share a tuner id; only its chief reports
            self.oracle.multi_worker = True
            self.oracle.should_report = distribute.is_chief()

    # -- budget ----------------------------------------------------------------------
    def cost(self, hp):
        model = self.hypermodel
        return model_cost(model.spec(hp), model.input_shape, model.classes)

    def rejection(self, hp) -> str | None:
        """Why the sample ``hp`` is over budget, or None."""
        if not self.budget.limited:
            return None
        reason = self.budget.violation(self.cost(hp))
        return f"over budget: {reason}" if reason else None

    # -- paths -------------------------------------------------------------------------
    def run_dir(self, trial_id: str) -> str:
        return rundir.path(rundir.path(self.tune_dir, RUNS), str(trial_id))

    def record_file(self, trial_id: str) -> str:
        return rundir.path(rundir.path(self.tune_dir, TRIALS), f"{trial_id}.json")

    def weights_file(self, trial_id: str) -> str:
        return rundir.path(self.run_dir(trial_id), rundir.MODEL)

    # -- one trial ---------------------------------------------------------------------
    def run_trial(self, trial, *args, **kwargs):
        if args:
            raise kt.errors.FatalValueError(
                "ReskerasTuner trains on the hypermodel's `dataset`; `search()` takes no data "
                f"arguments. Received: {len(args)} positional argument(s)")
        hp = trial.hyperparameters
        trial_id = trial.trial_id
        record = self._new_record(trial)
        reason = self.rejection(hp)
        if reason:
            self._write_record({**record, "status": "FAILED", "failure": reason})
            raise OverBudget(reason)
        values = hp.values
        epochs, initial = self.max_epochs, None
        if "tuner/epochs" in values:
            epochs = values["tuner/epochs"] - values.get("tuner/initial_epoch", 0)
            if values.get("tuner/trial_id") is not None:
                previous = values["tuner/trial_id"]
                initial = self.weights_file(previous)
                record["initial_weights"] = f"{RUNS}/{previous}/{rundir.MODEL}"
        run_dir = self.run_dir(trial_id)
        callbacks = self._trial_callbacks(kwargs.pop("callbacks", None) or [], trial)
        relative_run = f"{RUNS}/{trial_id}"
        from reskeras.train import TrainingDiverged
        from tuning.trial_process import TrialDiverged
        try:
            if self.subprocess_per_trial:
                self._train_in_subprocess(hp, run_dir, epochs, callbacks, initial)
            else:
                self.hypermodel.train_trial(hp, run_dir, epochs=epochs, callbacks=callbacks,
                                            initial_weights=initial)
        except (TrainingDiverged, TrialDiverged) as error:
            self._write_record({**record, **_run_facts(run_dir), "status": "FAILED",
                                "run_dir": relative_run, "failure": f"diverged: {error}"})
            raise kt.errors.FailedTrialError(f"diverged: {error}") from None
        except Exception as error:
            self._write_record({**record, "status": "FAILED", "run_dir": relative_run,
                                "failure": f"{type(error).__name__}: {error}"})
            raise
        finally:
            _release_memory()
        objective = self.oracle.objective.name
        facts = _run_facts(run_dir)
        metrics = facts["metrics"]
        if objective not in metrics:
            # a non-chief process of a multi-worker cluster: it does not report
            return {objective: float("nan")}
        record.update(facts, status="COMPLETED", run_dir=relative_run,
                      weights=f"{relative_run}/{rundir.MODEL}", score=metrics[objective],
                      epochs=epochs)
        self._write_record(record)
        return dict(metrics)

    def _new_record(self, trial) -> dict:
        hp = trial.hyperparameters
        spec = self.hypermodel.spec(hp)
        cost = self.cost(hp)
        return {"trial_id": trial.trial_id, "tuner_id": self.tuner_id,
                "hyperparameters": dict(hp.values), "arch": spec.to_config(),
                "model_name": spec.name, "params": cost.params, "flops": cost.flops,
                "status": "RUNNING", "score": None, "metrics": {}, "seconds": 0.0,
                "gradients": None, "run_dir": None, "weights": None, "failure": None}

    def _try_run_and_update_trial(self, trial, *fit_args, **fit_kwargs):
        # A rejection is settled here, as Keras Tuner settles a FailedTrialError (status
        # FAILED, the reason as message), without the traceback it prints for failures.
        reason = self.rejection(trial.hyperparameters)
        if reason is None:
            return super()._try_run_and_update_trial(trial, *fit_args, **fit_kwargs)
        self._write_record({**self._new_record(trial), "status": "FAILED", "failure": reason})
        print(f"Trial {trial.trial_id} rejected before training: {reason}")
        trial.status = trial_module.TrialStatus.FAILED
        trial.message = reason
        return None

    def _train_in_subprocess(self, hp, run_dir, epochs, callbacks, initial) -> None:
        import tempfile

        from tuning.trial_process import run_in_subprocess
        if callbacks:
            raise kt.errors.FatalValueError(
                "`callbacks` cannot be passed to trials that run in their own process "
                f"(subprocess_per_trial=True). Received: {len(callbacks)} callback(s)")
        job = {"hypermodel": self.hypermodel.get_config(), "hyperparameters": hp.get_config(),
               "run_dir": run_dir, "epochs": epochs, "initial_weights": initial}
        handle, job_file = tempfile.mkstemp(prefix="reskeras-trial-", suffix=".json")
        os.close(handle)
        run_in_subprocess(job, job_file)

    def _write_record(self, record: dict) -> None:
        if distribute.is_chief():
            tf.io.gfile.makedirs(rundir.path(self.tune_dir, TRIALS))
            write_json_atomic(self.record_file(record["trial_id"]), record, indent=2,
                              sort_keys=True)

    def _trial_callbacks(self, callbacks: list, trial) -> list:
        """Fresh copies per trial, each writing below its own ``<log_dir>/<trial_id>``.

        Keras Tuner deep-copies callbacks but re-routes only TensorBoard's ``log_dir``;
        here every callback with a ``log_dir`` (TensorBoard, the reskeras loggers, ...) is.
        """
        copies = self._deepcopy_callbacks(callbacks)
        for callback in copies:
            log_dir = getattr(callback, "log_dir", None)
            if isinstance(log_dir, (str, os.PathLike)) and os.fspath(log_dir):
                callback.log_dir = rundir.path(os.fspath(log_dir), str(trial.trial_id))
        return copies

    def load_model(self, trial):
        """The trained model of ``trial`` (its run's ``model.keras``)."""
        import reskeras  # noqa: F401  (registers the layers the file needs)
        from reskeras._backend import keras
        return keras.saving.load_model(self.weights_file(trial.trial_id), compile=False)

    # -- the loop ------------------------------------------------------------------------
    def search(self, *fit_args, **fit_kwargs):
        """Runs trials until the oracle stops (``max_trials`` reached or space exhausted).

        Keras Tuner's loop, except that a worker the oracle asks to wait sleeps
        ``idle_wait`` seconds instead of asking again at once (Hyperband and grid
        search wait for running trials), and the chief oracle is served by
        :func:`tuning.distributed.serve_oracle`.
        """
        if "verbose" in fit_kwargs:
            verbose = fit_kwargs.pop("verbose")
            if not self._is_worker():
                self.oracle.verbose = verbose
        if not self._is_worker():
            # Keras Tuner reloads a project only when its tuner file exists, and writes it
            # first at the end of trial 1: write it now, so a kill inside trial 1 resumes too
            self.save()
        self.on_search_begin()
        while True:
            self.pre_create_trial()
            trial = self.oracle.create_trial(self.tuner_id)
            if trial.status == trial_module.TrialStatus.STOPPED:
                break
            if trial.status == trial_module.TrialStatus.IDLE:
                time.sleep(self.idle_wait)
                continue
            self.on_trial_begin(trial)
            self._try_run_and_update_trial(trial, *fit_args, **fit_kwargs)
            self.on_trial_end(trial)
        self.on_search_end()

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        write_json_atomic(self._get_tuner_fname(), self.get_state())


def _release_memory() -> None:
    """After every trial: drop graphs and models, then hand freed heap pages back.

    ``clear_session`` and ``gc.collect`` are what Keras Tuner does before each build
    (keras-tuner#395); the trainer has already released its run (``reskeras.train``).
    glibc keeps the pages a trial freed inside its heap (only free space at the top
    of the heap goes back by itself), so the resident set of a search swung by 25-37
    MiB from trial to trial with nothing of the trials alive (docs/benchmarks.md);
    ``malloc_trim(0)`` hands every free page back (well under a millisecond).
    """
    from reskeras._backend import keras
    keras.backend.clear_session()
    gc.collect()
    _malloc_trim()


def _malloc_trim() -> None:
    """glibc's ``malloc_trim(0)``; nothing on other C libraries (macOS, musl)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no CDLL(None)
        return
    trim(0)


def _run_facts(run_dir: str) -> dict:
    """Final metrics, training seconds and gradient flow of a reskeras run directory."""
    from reskeras.study.measures.gradient_flow import gradient_summary
    from reskeras.analysis.records import read_jsonl

    records = rundir.read_metrics(run_dir)
    final = records[-1] if records else {}
    metrics = {k: final[k] for k in ("val_accuracy", "val_loss", "accuracy", "loss")
               if k in final and final[k] is not None and math.isfinite(final[k])}
    summary = rundir.read_summary(run_dir) or {}
    grads = read_jsonl(rundir.path(run_dir, "grad_norms.jsonl"))
    flow = gradient_summary(grads)
    nonfinite = (any(r.get("grad_norm") is None for r in grads)
                 or summary.get("status") == "diverged")
    gradients = {"first_last_ratio_init": flow["first_last_ratio_init"],
                 "first_last_ratio_median": flow["first_last_ratio_median"],
                 "state": flow["state"], "nonfinite": bool(nonfinite),
                 "logged_steps": len(flow["steps"])}
    seconds = float(sum(r.get("seconds", 0.0) for r in records))
    return {"metrics": metrics, "seconds": seconds, "gradients": gradients,
            "epochs_trained": len(records), "steps": final.get("step", 0)}


__all__ = ["ReskerasTuner", "TUNERS", "OBJECTIVES", "make_oracle", "write_json_atomic"]
