"""The reskeras trainer: one loop for every strategy, checkpoints that survive a kill.

Example (about a minute on 2 CPU cores):

>>> from reskeras.train import TrainConfig, train
>>> result = train(TrainConfig(out="runs/resnet20-digits", model="resnet20",
...                            dataset="digits", epochs=3, recipe="adam"))  # doctest: +SKIP
>>> result.status, sorted(result.history[-1])  # doctest: +SKIP
('finished', ['accuracy', 'epoch', 'loss', 'lr', 'seconds', 'step', 'val_accuracy', 'val_loss'])

The run directory (``reskeras.rundir``) holds everything needed to resume:
re-running the same command after a crash or ``kill -9`` continues from the last
checkpoint; with ``deterministic=True`` the resumed run ends with bitwise the
same weights as an uninterrupted one. Data order and augmentation are functions
of (seed, epoch, position), so a resume mid-epoch sees exactly the batches the
uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
import tensorflow as tf

from reskeras import __version__, distribute, rundir
from reskeras._backend import keras
from reskeras.builders import build
from reskeras.callbacks import ActivationStatsLogger, GradientNormLogger
from reskeras.callbacks._logging import summary_scalar
from reskeras.callbacks.activation_stats import PROBE_EXAMPLES
from reskeras.data import load_dataset
from reskeras.recipes import (RECIPES, WarmupStepDecay, learning_rate_at, make_optimizer,
                              make_plan)
from reskeras.steps import StepFunctions
from reskeras.trace_cache import CachedRun, TraceCache
from reskeras.train_config import TrainConfig

__all__ = ["TrainConfig", "TraceCache", "TrainResult", "TrainingDiverged", "build_run_model",
           "checkpoint_model", "train"]

# training-record fields that do not enter a traced function: runs differing only in
# these share a TraceCache entry (the plan's total_steps is not in its schedule)
_PER_RUN_FIELDS = ("seed", "epochs", "total_steps", "checkpoint_every", "precise_bn",
                   "steps_per_execution", "strategy", "cpu_replicas", "deterministic")


class TrainingDiverged(RuntimeError):
    """A non-finite loss stopped the run; the last good checkpoint is kept."""

    def __init__(self, step: int, last_checkpoint_step: int, run_dir: str):
        self.step, self.last_checkpoint_step, self.run_dir = step, last_checkpoint_step, run_dir
        super().__init__(f"non-finite loss or gradient at step {step}; training stopped. "
                         f"The last good checkpoint (step {last_checkpoint_step}) is kept in "
                         f"{run_dir}")


@dataclasses.dataclass
class TrainResult:
    """What a run returns.

    ``model`` is the trained model (``None`` for a run that had already finished);
    under a ``trace_cache`` it is the cache's model, which the next run of the same
    shapes resets. ``moving_statistics`` holds the BatchNorm moving averages
    training kept (``{layer: (mean, variance)}``) when ``precise_bn`` replaced them
    in ``model``; ``seconds`` the wall time of the run's parts:
    ``{"total", "steps", "trace"}``: ``trace`` is the first compiled training call
    of a run that traced its step (mostly tracing), ``steps`` every other one.
    ``functions`` is where callers keep traced functions of ``model`` for later
    runs (the trace cache entry's; ``None`` without a cache). ``initial_step`` is the
    step this call began at (a resumed or extended run's last checkpoint).
    """

    run_dir: str
    status: str  # "finished", "stopped" (a callback asked) or "already finished"
    step: int
    history: list[dict]
    model: keras.Model | None
    moving_statistics: dict | None = None
    seconds: dict | None = None
    functions: dict | None = None
    initial_step: int = 0  # where this call began: a resumed or extended run's checkpoint


def build_run_model(config: dict) -> keras.Model:
    """Rebuilds the (untrained) model of a run from its ``config.json`` contents."""
    from reskeras.specs import ArchSpec
    return build(ArchSpec.from_config(config["arch"]), input_shape=tuple(config["input_shape"]),
                 classes=config["classes"])


def checkpoint_model(run_dir: str) -> keras.Model:
    """The run's model as its last checkpoint holds it: weights and BN moving averages.

    ``model.keras`` holds the same weights; with ``precise_bn`` its BatchNorm
    statistics are the precise ones, while the checkpoint keeps the moving averages
    that training maintained (the training state a resumed run continues from).

    Raises:
        ValueError: ``run_dir`` holds no checkpoint.
    """
    config = rundir.read_config(run_dir)
    latest = tf.train.latest_checkpoint(rundir.path(run_dir, rundir.CHECKPOINTS))
    if latest is None:
        raise ValueError(f"`run_dir` must hold a checkpoint in {rundir.CHECKPOINTS}/. "
                         f"Received: run_dir={run_dir!r}")
    holder = build_run_model(config)
    restored = tf.train.Checkpoint(model=holder).restore(latest).expect_partial()
    restored.assert_existing_objects_matched()
    # a fresh model: ``holder`` keeps deferred restorations (the checkpoint's optimizer)
    # that would land in any optimizer a later compile() attaches
    model = build_run_model(config)
    model.set_weights(holder.get_weights())
    return model


def _dataset_config(config: TrainConfig) -> dict:
    entry = {"name": config.dataset, "data_dir": config.data_dir,
             "image_size": config.image_size, "augment": config.augment}
    if config.dataset == "synthetic":
        entry.update(shape=list(config.synthetic_shape), classes=config.synthetic_classes,
                     examples=config.synthetic_examples, seed=config.seed)
    return entry


def _load_data(config: TrainConfig):
    return load_dataset(config.dataset, data_dir=config.data_dir, image_size=config.image_size,
                        seed=config.seed, synthetic_shape=tuple(config.synthetic_shape),
                        synthetic_classes=config.synthetic_classes,
                        synthetic_examples=config.synthetic_examples)


class _Run:
    """State of one training run (kept out of the public API)."""

    def __init__(self, config: TrainConfig, callbacks, strategy, initial_weights=None,
                 trace_cache: TraceCache | None = None):
        config.validate()
        self.config = config
        self.trace_cache = trace_cache
        self.cached: CachedRun | None = None
        self.started = time.perf_counter()
        self.step_seconds = self.trace_seconds = 0.0
        self.traced = False
        self.initial_weights = _check_initial_weights(initial_weights)
        self.spec = config.resolve_arch()
        if config.precision == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
            raise ValueError("`precision` 'mixed_float16' needs a GPU (none is visible); use "
                             "mixed_bfloat16 or float32. Received: precision='mixed_float16'")
        if config.cpu_replicas and config.cpu_replicas > 1 and strategy is None:
            distribute.configure_cpu_replicas(config.cpu_replicas)
        self.strategy = strategy or _strategy_for(config)
        self.replicas = distribute.num_replicas(self.strategy)
        self.chief = distribute.is_chief(self.strategy)
        self.batch = config.batch_size or RECIPES[config.recipe].batch_size
        if self.batch % self.replicas:
            raise ValueError(f"`batch_size` must be divisible by the {self.replicas} replicas of "
                             f"the strategy. Received: batch_size={self.batch}")
        self.data = _load_data(config)
        self.imported = None
        if config.weights is not None:
            if initial_weights is not None:
                raise ValueError("`weights` and `initial_weights` exclude each other. Received: "
                                 f"weights={config.weights!r}, initial_weights={initial_weights!r}")
            self.data, self.imported = _imported_weights(config, self.data)
        self.steps_per_epoch = self.data.steps_per_epoch(self.batch)
        total = config.steps or config.epochs * self.steps_per_epoch
        self.total_steps = total
        self.epochs = math.ceil(total / self.steps_per_epoch)
        self.plan = make_plan(config.recipe, global_batch_size=self.batch, total_steps=total,
                              steps_per_epoch=self.steps_per_epoch, lr=config.lr,
                              weight_decay=config.weight_decay)
        self.callbacks = list(callbacks or [])
        self.run_dir = config.out
        # through JSON once, so it compares equal to what config.json holds
        self.record = json.loads(json.dumps(self._record()))
        if self.imported is not None:
            self._check_imported_weights()

    def _check_imported_weights(self) -> None:
        """Matches the weights file against the run's net now, before anything is written."""
        from reskeras.weights import loader

        state, entry = self.imported
        file_classes = state["fc.weight"].shape[0] if "fc.weight" in state else None
        entry["classifier"] = "loaded" if file_classes == self.data.info.classes else "new"
        model = build_run_model(self.record)
        try:
            loader.plan_assignments(model, state, source=entry["source"],
                                    skip_classifier=entry["classifier"] == "new",
                                    origin=self.config.weights)
        finally:
            del model
        self.record["weights"] = dict(entry)

    def _record(self) -> dict:
        info = self.data.info
        config = self.config
        return {
            "reskeras_version": __version__,
            "arch": self.spec.to_config(),
            "model_name": self.spec.name,
            "input_shape": list(info.input_shape),
            "classes": info.classes,
            "class_names": list(info.class_names),
            "dataset": _dataset_config(config),
            "preprocessing": info.preprocessing,
            "training": {
                "batch_size": self.batch, "epochs": self.epochs, "total_steps": self.total_steps,
                "steps_per_epoch": self.steps_per_epoch, "plan": dataclasses.asdict(self.plan),
                "precision": config.precision, "seed": config.seed,
                "deterministic": config.deterministic, "sync_bn": config.sync_bn,
                "jit_compile": config.jit_compile, "checkpoint_every": self._checkpoint_every(),
                "grad_norms_every": config.grad_norms_every,
                "activations_every": config.activations_every,
                "strategy": config.strategy, "cpu_replicas": config.cpu_replicas,
                "steps_per_execution": config.steps_per_execution,
                "precise_bn": self._precise_bn_record(),
            },
            "environment": {"tensorflow": tf.__version__, "keras": keras.__version__,
                            "replicas": self.replicas,
                            "strategy": distribute.describe_strategy(self.strategy)},
        }

    def _precise_bn_record(self) -> dict | None:
        """How precise BN statistics are drawn (``None`` when off): batches and their size."""
        if not self.config.precise_bn:
            return None
        from reskeras import precise_bn

        # the batch each BatchNorm layer normalized in training: one replica's share
        size = self.batch if self.config.sync_bn else self.batch // self.replicas
        batches = self.config.precise_bn_batches or precise_bn.default_batches(
            self.data.steps_per_epoch(size))
        return {"batches": batches, "batch_size": size}

    def _checkpoint_every(self) -> int:
        return self.config.checkpoint_every or self.steps_per_epoch

    # -- run directory -----------------------------------------------------
    def prepare_dir(self) -> str:
        """``"new"``, ``"resume"`` or ``"finished"``; bad input raises before anything is written."""
        run_dir = self.run_dir
        config_file = rundir.path(run_dir, rundir.CONFIG)
        if tf.io.gfile.exists(config_file):
            saved = rundir.read_json(config_file)
            difference = rundir.config_mismatch(saved, self.record)
            if difference and self.config.extend:
                reason = rundir.extension_mismatch(saved, self.record)
                if reason:
                    raise ValueError(f"`extend` cannot continue the run in `out` ({reason}). "
                                     f"Received: out={run_dir!r}")
                if self.chief:
                    self._extend_dir(saved)
                return "resume"
            if difference:
                raise ValueError(f"`out` holds a different run ({difference}); resume it with the "
                                 f"same arguments or choose another directory. Received: out={run_dir!r}")
            return "finished" if rundir.is_finished(run_dir) else "resume"
        if self.config.resume:
            raise ValueError(f"`resume` needs a run directory holding {rundir.CONFIG}. "
                             f"Received: out={run_dir!r}")
        if tf.io.gfile.isdir(run_dir) and tf.io.gfile.listdir(run_dir):
            raise ValueError("`out` must be a new or empty directory, or a reskeras run to resume "
                             f"(it has files but no {rundir.CONFIG}). Received: out={run_dir!r}")
        if self.chief:
            rundir.check_writable(run_dir)
        return "new"

    def _extend_dir(self, saved: dict) -> None:
        """Makes the run in ``run_dir`` one of the larger budget, resumable from its last
        checkpoint: the new ``config.json`` (keeping the saved environment entries), and
        the old ``summary.json`` kept as ``summary.step<N>.json``."""
        summary = rundir.read_summary(self.run_dir)
        if summary is not None:
            kept = rundir.path(self.run_dir, f"summary.step{summary.get('step')}.json")
            tf.io.gfile.rename(rundir.path(self.run_dir, rundir.SUMMARY), kept, overwrite=True)
        self.record["environment"] = {**saved.get("environment", {}),
                                      **self.record["environment"]}
        rundir.write_json(rundir.path(self.run_dir, rundir.CONFIG), self.record)

    # -- model, optimizer, checkpoint --------------------------------------
    def build(self) -> None:
        config = self.config
        set_random_seed(config.seed)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()  # undone by train() at the end
        # callbacks may hook into the traced step (as the gradient-norm logger does): a run
        # given some neither reads nor fills the cache
        key = self._cache_key() if self.trace_cache is not None and not self.callbacks else None
        entry = self.trace_cache.get(key) if key is not None else None
        if entry is not None:
            # the weights this seed draws, from a model built as an uncached run builds it
            fresh = self._build_model()
            entry.model.set_weights(fresh.get_weights())
            del fresh
            for variable, value in zip(entry.optimizer.variables, entry.optimizer_state):
                variable.assign(value)
            # this run's rate, warmup and rate drops, read by the same trace
            entry.schedule.assign(self.plan.base_lr, self.plan.warmup_steps, self.plan.boundaries)
            self.model, self.optimizer, self.steps = entry.model, entry.optimizer, entry.steps
        else:
            self.model = self._build_model()
            with self.strategy.scope():
                schedule = None
                if key is not None:  # held in variables, for the next run of this key
                    schedule = WarmupStepDecay(self.plan.base_lr, self.plan.warmup_steps,
                                               self.plan.boundaries, mutable=True)
                optimizer = make_optimizer(self.plan, schedule)
                if config.precision == "mixed_float16":
                    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
                optimizer.build(self.model.trainable_variables)
            self.optimizer = optimizer
            self.steps = StepFunctions(
                self.model, self.optimizer, self.strategy, global_batch_size=self.batch,
                weight_decay=self.plan.weight_decay, jit_compile=config.jit_compile,
                is_tpu=distribute.strategy_kind(self.strategy) == "tpu")
            self.traced = True  # this run's first train call traces the step
            if key is not None:
                entry = CachedRun(self.model, optimizer, [v.numpy() for v in optimizer.variables],
                                  self.steps, schedule)
                self.trace_cache.put(key, entry)
        self.cached = entry
        # as after compile(): callbacks find the optimizer (saved model files do not change)
        self.model.optimizer = self.optimizer
        # loss sum, hits, steps and seconds of the current epoch, so a resumed epoch reports
        # the same averages as an uninterrupted one
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.epoch_sums = tf.Variable(np.zeros(4), dtype=tf.float64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              step=self.step, epoch_sums=self.epoch_sums)
        self.checkpoint_dir = rundir.path(self.run_dir, rundir.CHECKPOINTS)
        write_dir = self.checkpoint_dir if self.chief else _scratch_dir()
        self.manager = tf.train.CheckpointManager(self.checkpoint, write_dir, max_to_keep=3)
        self.record["environment"]["xla"] = self.steps.xla

    def _build_model(self) -> keras.Model:
        """The run's untrained model, under the strategy and the precision policy."""
        previous_policy = keras.mixed_precision.dtype_policy()
        with self.strategy.scope():
            keras.mixed_precision.set_dtype_policy(self.config.precision)
            try:
                model = build_run_model(self.record)
            finally:
                keras.mixed_precision.set_dtype_policy(previous_policy)
        if self.config.sync_bn:
            for layer in model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        return model

    def _cache_key(self) -> str:
        """What the traced functions depend on (see :mod:`reskeras.trace_cache`)."""
        training = {k: v for k, v in self.record["training"].items() if k not in _PER_RUN_FIELDS}
        # the rate, warmup and rate drops are variables the trace reads (WarmupStepDecay's
        # mutable schedule): one trace serves a rate sweep and every budget of a recipe
        plan = training["plan"]
        training["plan"] = {k: v for k, v in plan.items()
                            if k not in ("total_steps", "base_lr", "warmup_steps", "boundaries")}
        training["plan"]["rate_drops"] = len(plan["boundaries"])
        return json.dumps([self.record["arch"], self.record["input_shape"], self.record["classes"],
                           training, id(self.strategy), self.replicas], sort_keys=True)

    def check_xla(self, new_run: bool) -> None:
        """The XLA lowering check (``--xla auto`` on CPUs), recorded in a new run's config.json.

        Runs after the callbacks' ``on_train_begin``: on one replica the check traces
        the step the training loop then calls, and callbacks such as the gradient-norm
        logger hook into the step there (as under ``fit``, whose first call traces).
        """
        share = self.batch // self.replicas
        failure = self.steps.check_xla(
            tf.TensorSpec((share, *self.record["input_shape"]), tf.float32),
            tf.TensorSpec((share,), tf.int32))
        if self.steps.xla == "check" and new_run and self.chief:
            self.record["environment"]["xla_check"] = failure or "lowers to XLA HLO"
            rundir.write_json(rundir.path(self.run_dir, rundir.CONFIG), self.record)

    def restore(self) -> int:
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        elif self.imported is not None:
            from reskeras.weights import loader

            state, entry = self.imported
            loader.load_state(self.model, state, source=entry["source"],
                              skip_classifier=entry["classifier"] == "new",
                              origin=self.config.weights)
        elif self.initial_weights is not None:
            self._load_initial_weights(self.initial_weights)
        self.last_checkpoint_step = int(self.step.numpy())
        return self.last_checkpoint_step

    def _load_initial_weights(self, source) -> None:
        """Copies ``source``'s weights into the run's model (a run starting at step 0)."""
        if isinstance(source, str) and source.endswith(".weights.h5"):
            source_model = build_run_model(self.record)
            source_model.load_weights(source)
        elif isinstance(source, str):
            source_model = keras.saving.load_model(source, compile=False)
        else:
            source_model = source
        given = [tuple(v.shape) for v in source_model.weights]
        expected = [tuple(v.shape) for v in self.model.weights]
        if given != expected:
            raise ValueError(f"`initial_weights` must hold the weights of the run's model "
                             f"{self.spec.name} ({len(expected)} weights with matching shapes). "
                             f"Received: initial_weights={source!r} ({len(given)} weights)")
        self.model.set_weights(source_model.get_weights())

    def save_checkpoint(self, step: int, sums) -> None:
        self.steps.sync_moving_statistics()
        self.step.assign(np.int64(step))  # not a Python int: see _summaries
        self.epoch_sums.assign(np.asarray(sums, dtype=np.float64))
        self.manager.save(checkpoint_number=step)  # every worker saves; non-chiefs to scratch
        self.last_checkpoint_step = step

    # -- the loop ----------------------------------------------------------
    def fit(self) -> TrainResult:
        state = self.prepare_dir()
        if state == "finished":
            summary = rundir.read_summary(self.run_dir)
            return TrainResult(self.run_dir, "already finished", summary["step"],
                               rundir.read_metrics(self.run_dir), None)
        self.build()
        step = initial_step = self.restore()
        if self.chief:
            if state == "new":
                rundir.write_json(rundir.path(self.run_dir, rundir.CONFIG), self.record)
            rundir.truncate_metrics(self.run_dir, step)
        verbose = self.config.verbose
        if verbose is None:
            verbose = 1 if sys.stdout.isatty() else 2
        if not self.chief:
            verbose = 0
        probe = next(iter(self.data.evaluation(PROBE_EXAMPLES)))[0].numpy()
        callbacks = keras.callbacks.CallbackList(
            self._all_callbacks(), add_history=True, add_progbar=verbose > 0, model=self.model,
            verbose=verbose, epochs=self.epochs, steps=self.steps_per_epoch,
            run_dir=self.run_dir, initial_step=step, probe_images=probe)
        eval_data = self.strategy.experimental_distribute_dataset(self.data.evaluation(
            self.batch, pad=distribute.strategy_kind(self.strategy) == "tpu"))
        self.model.stop_training = False
        callbacks.on_train_begin()
        self.check_xla(new_run=state == "new")
        while step < self.total_steps and not self.model.stop_training:
            step = self._epoch(step, callbacks, eval_data)
        if self.last_checkpoint_step != step:  # checkpoint_every longer than the epoch
            self.save_checkpoint(step, np.zeros(4))
        status = "finished" if step >= self.total_steps else "stopped"
        precise = self._apply_precise_bn(eval_data, step) if self.config.precise_bn else None
        if self.chief:
            self._finish(status, step, precise)
        callbacks.on_train_end()
        seconds = {"total": time.perf_counter() - self.started, "steps": self.step_seconds,
                   "trace": self.trace_seconds}
        return TrainResult(self.run_dir, status, step, rundir.read_metrics(self.run_dir)
                           if self.chief else [], self.model,
                           getattr(self, "moving_statistics", None), seconds,
                           self.cached.functions if self.cached is not None else None,
                           initial_step)

    def _all_callbacks(self) -> list:
        config, extra = self.config, []
        if config.grad_norms_every:
            extra.append(self._logger(GradientNormLogger, config.grad_norms_every))
        if config.activations_every:
            extra.append(self._logger(ActivationStatsLogger, config.activations_every))
        self.own_loggers = extra  # released with the run, however it ends
        return self.callbacks + extra

    def _logger(self, kind, every: int):
        """A new logger, or the cache entry's (hooked into its traced step)."""
        if self.cached is None:
            return kind(every)
        key = (kind.__name__, every)
        if key not in self.cached.loggers:
            self.cached.loggers[key] = kind(every)
            self.cached.loggers[key].persistent = True
        return self.cached.loggers[key]

    def _epoch(self, step: int, callbacks, eval_data) -> int:
        spe, batch = self.steps_per_epoch, self.batch
        epoch = step // spe
        epoch_end = min((epoch + 1) * spe, self.total_steps)
        every = self._checkpoint_every()
        sums = self.epoch_sums.numpy().copy() if step % spe else np.zeros(4)
        for callback in callbacks.callbacks:  # a last, shorter epoch of a --steps run
            if isinstance(callback, keras.callbacks.ProgbarLogger):
                callback.target = epoch_end - epoch * spe
        callbacks.on_epoch_begin(epoch)
        started = time.perf_counter() - sums[3]
        dataset = self.data.train(batch, seed=self.config.seed, epoch=epoch,
                                  skip_batches=step - epoch * spe, augment=self.config.augment)
        iterator = iter(self.strategy.experimental_distribute_dataset(dataset))
        logs = {}
        while step < epoch_end and not self.model.stop_training:
            count = min(self.config.steps_per_execution, epoch_end - step, every - step % every,
                        *(c.record_boundary(step) - step for c in callbacks.callbacks
                          if hasattr(c, "record_boundary")))
            callbacks.on_train_batch_begin(step - epoch * spe)
            begun = time.perf_counter()
            losses, hits = self.steps.train_chunk(iterator, tf.constant(count))
            losses = losses.numpy()
            if self.traced:  # the first call of new steps: mostly tracing
                self.trace_seconds, self.traced = time.perf_counter() - begun, False
            else:
                self.step_seconds += time.perf_counter() - begun
            if not np.all(np.isfinite(losses)):
                bad = step + int(np.argmin(np.isfinite(losses))) + 1
                callbacks.on_train_batch_end(step + count - epoch * spe - 1, {"loss": np.nan})
                self._diverged(bad)
            step += count
            sums[:3] += (losses.sum(), float(hits), count)
            logs = {"loss": sums[0] / sums[2], "accuracy": sums[1] / (sums[2] * batch)}
            callbacks.on_train_batch_end(step - epoch * spe - 1, logs)
            if step % every == 0 and step < epoch_end:
                sums[3] = time.perf_counter() - started
                self.save_checkpoint(step, sums)
        self.steps.sync_moving_statistics()
        val_loss, val_hits, val_count = (float(t) for t in self.steps.evaluate(iter(eval_data)))
        record = {"epoch": epoch + 1, "step": step, "loss": logs.get("loss", float("nan")),
                  "accuracy": logs.get("accuracy", float("nan")),
                  "val_loss": val_loss / val_count, "val_accuracy": val_hits / val_count,
                  "lr": learning_rate_at(self.plan, step - 1),
                  "seconds": time.perf_counter() - started}
        if self.chief:
            rundir.append_metrics(self.run_dir, record)
            self._summaries(record)
        if every <= spe or step % every == 0:  # the last step is saved by fit()
            self.save_checkpoint(step, np.zeros(4))
        callbacks.on_epoch_end(epoch, {"loss": record["loss"], "accuracy": record["accuracy"],
                                       "val_loss": record["val_loss"],
                                       "val_accuracy": record["val_accuracy"],
                                       "learning_rate": record["lr"]})
        return step

    _TRAIN_TAGS = (("loss", "loss"), ("accuracy", "accuracy"), ("learning_rate", "lr"))
    _VALIDATION_TAGS = (("loss", "val_loss"), ("accuracy", "val_accuracy"))

    def _summaries(self, record: dict, *, train=_TRAIN_TAGS, validation=_VALIDATION_TAGS) -> None:
        if not hasattr(self, "_writers"):
            board = rundir.path(self.run_dir, rundir.TENSORBOARD)
            self._writers = {part: tf.summary.create_file_writer(rundir.path(board, part))
                             for part in ("train", "validation")}
        # arrays, not Python numbers: TF's scalar cache keeps every Python number it
        # converts for the rest of the process (see callbacks._logging.summary_scalar)
        step = np.int64(record["step"])
        for part, tags in (("train", train), ("validation", validation)):
            with self._writers[part].as_default():
                for tag, key in tags:
                    tf.summary.scalar(tag, summary_scalar(record[key]), step=step)
        for writer in self._writers.values():
            writer.flush()

    def _apply_precise_bn(self, eval_data, step: int) -> dict:
        """Recomputes the BN statistics with the final weights, then evaluates with them.

        Runs after the last checkpoint, which keeps the moving averages: the
        training state (weights, optimizer, moving averages) is untouched, and a
        resumed or extended run continues from it as if precise BN had not run.
        """
        from reskeras import precise_bn

        started = time.perf_counter()
        drawn = self.record["training"]["precise_bn"]
        functions = self.cached.functions if self.cached is not None else {}
        if "moments" not in functions:
            functions["moments"] = precise_bn.moments_function(self.model)
        self.moving_statistics = precise_bn.moving_statistics(self.model)
        statistics = precise_bn.population_statistics(self.model, precise_bn.training_batches(
            self.data, drawn["batch_size"], seed=self.config.seed, epoch=self.epochs,
            count=drawn["batches"], augment=self.config.augment), moments=functions["moments"])
        precise_bn.assign_statistics(self.model, statistics)
        val_loss, val_hits, val_count = (float(t) for t in self.steps.evaluate(iter(eval_data)))
        entry = {**drawn, "layers": len(statistics), "val_loss": val_loss / val_count,
                 "val_accuracy": val_hits / val_count,
                 "seconds": time.perf_counter() - started}
        if self.chief:
            self._summaries({"step": step, "precise_bn_loss": entry["val_loss"],
                             "precise_bn_accuracy": entry["val_accuracy"]},
                            validation=(("precise_bn_loss", "precise_bn_loss"),
                                        ("precise_bn_accuracy", "precise_bn_accuracy")),
                            train=())
        return entry

    def _finish(self, status: str, step: int, precise: dict | None = None) -> None:
        # Keras insists on the .keras suffix; write beside, then rename into place
        final = rundir.path(self.run_dir, rundir.MODEL)
        partial = rundir.path(self.run_dir, "model.partial.keras")
        self.model.save(partial)
        tf.io.gfile.rename(partial, final, overwrite=True)
        metrics = rundir.read_metrics(self.run_dir)
        summary = {"status": status, "step": step, "final": metrics[-1] if metrics else None,
                   "seconds": sum(r["seconds"] for r in metrics), "model": rundir.MODEL}
        if precise is not None:
            summary["precise_bn"] = precise
        rundir.write_json(rundir.path(self.run_dir, rundir.SUMMARY), summary)

    def release(self) -> None:
        """Drops everything the run built for itself; the run object is spent afterwards.

        Its traced functions (``StepFunctions`` holds them through bound methods, a
        reference cycle), checkpoint manager, data pipelines and summary writers would
        otherwise live until a full garbage collection, or as long as anything holds
        the run (a kept exception's traceback does). The model stays with the caller
        (``TrainResult.model``) and with the callbacks, as after ``fit``.
        """
        for writer in getattr(self, "_writers", {}).values():
            writer.close()
        for logger in getattr(self, "own_loggers", []):
            logger.release()  # already done by on_train_end unless an exception skipped it
        steps = getattr(self, "steps", None)
        if steps is not None and getattr(self, "cached", None) is None:
            steps.release()  # a cache entry's steps stay with the cache
        self.__dict__.clear()

    def _diverged(self, bad_step: int) -> None:
        if self.chief:
            rundir.write_json(rundir.path(self.run_dir, rundir.SUMMARY), {
                "status": "diverged", "step": bad_step,
                "last_checkpoint_step": self.last_checkpoint_step})
        raise TrainingDiverged(bad_step, self.last_checkpoint_step, self.run_dir)


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed``, without emptying TensorFlow's kernel cache.

    ``tf.random.set_seed`` also clears the eager context's cache of instantiated
    functions, so every traced function (a 56-layer net's train step: 6-7 s on 2
    cores) is optimized and instantiated again at its next call, even with its
    trace kept (measured, TF 2.21). The clearing only restarts stateful random
    kernels created before; nothing the trainer runs holds one (data order and
    augmentation are functions of the seed and epoch). So the Python, NumPy and
    Keras seeds are set as Keras sets them and TensorFlow's global seed in its
    eager context's fields, where TensorFlow has them; otherwise Keras's own call.
    """
    from tensorflow.python.eager import context as tf_context

    context = tf_context.context()
    if not (tf_context.executing_eagerly() and hasattr(context, "_seed")
            and hasattr(context, "_rng")):
        keras.utils.set_random_seed(seed)
        return
    handle = context._context_handle
    context._context_handle = None  # _set_global_seed clears the caches only with a handle
    try:
        keras.utils.set_random_seed(seed)
        return
    except Exception:  # noqa: BLE001  (a TensorFlow that needs the handle there: the public way)
        pass
    finally:
        context._context_handle = handle
    keras.utils.set_random_seed(seed)


_RESOLVED_STRATEGIES: dict = {}


def _strategy_for(config: TrainConfig):
    """One strategy object per name in a process, reused by later runs (tuner trials).

    A second MirroredStrategy in the same process reuses the first one's collective
    instance keys, and its all-reduces then fail with shape mismatches (measured,
    TF 2.21); MultiWorkerMirroredStrategy can only be created once anyway.
    """
    key = (config.strategy, config.cpu_replicas)
    if key not in _RESOLVED_STRATEGIES:
        _RESOLVED_STRATEGIES[key] = distribute.resolve_strategy(
            config.strategy, cpu_replicas=config.cpu_replicas)
    return _RESOLVED_STRATEGIES[key]


def _scratch_dir() -> str:
    import tempfile
    return tempfile.mkdtemp(prefix="reskeras-worker-checkpoints-")


def _imported_weights(config: TrainConfig, data):
    """The data normalized as the weights expect, and ``(state dict, record entry)``."""
    from reskeras.preprocessing import IMAGENET_MEAN, IMAGENET_STD
    from reskeras.weights import files, loader

    channels = data.info.input_shape[-1]
    if channels != 3:
        raise ValueError(f"`weights` from torchvision/timm need RGB images (3 channels). "
                         f"Received: dataset={config.dataset!r} with {channels} channel(s)")
    state = files.read_state_dict(config.weights)
    entry = {"file": config.weights, "sha256": files.sha256(config.weights),
             "source": loader.check_source(config.weights_source)}
    return data.with_normalization(IMAGENET_MEAN, IMAGENET_STD), (state, entry)


def _check_initial_weights(source):
    if source is None or isinstance(source, keras.Model):
        return source
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if (isinstance(source, str) and source.endswith((".keras", ".weights.h5"))
            and tf.io.gfile.exists(source)):
        return source
    raise ValueError("`initial_weights` must be a Keras model or an existing .keras or "
                     f".weights.h5 file. Received: initial_weights={source!r}")


def train(config: TrainConfig, *, callbacks=None, strategy=None,
          initial_weights=None, trace_cache: TraceCache | None = None) -> TrainResult:
    """Trains (or resumes) the run ``config`` describes.

    Args:
        config: a :class:`TrainConfig`.
        callbacks: Keras callbacks; they receive the usual hooks (one batch hook per
            compiled call of ``steps_per_execution`` steps) and logs, plus
            ``params["run_dir"]``.
        strategy: an existing ``tf.distribute.Strategy`` (default: resolved from
            ``config.strategy``).
        initial_weights: a Keras model of the same architecture, or a ``.keras`` or
            ``.weights.h5`` file (local or ``gs://``), whose weights replace the seeded
            initialization before step 0 (Hyperband continues a trial this way). Only a
            run that starts at step 0 uses it; a run that resumes from a checkpoint
            restores the checkpoint instead.
        trace_cache: a :class:`reskeras.trace_cache.TraceCache` whose model, optimizer
            and traced steps this run reuses when an earlier run had the same shapes,
            and keeps for the next one (bitwise the same results as without it). A run
            given ``callbacks`` does not use it (a callback may hook into the step).

    Returns:
        A :class:`TrainResult`; a run directory whose run already finished is not
        touched and gives ``status="already finished"``.

    Raises:
        ValueError: bad arguments, a dataset that cannot be loaded, ``out`` holding
            another run, or ``initial_weights`` of another architecture (nothing is written).
        TrainingDiverged: a non-finite loss (the last good checkpoint is kept).
    """
    from tensorflow.python.framework import config as tf_config  # no public "disable"

    deterministic_before = tf_config.is_op_determinism_enabled()
    run = None
    try:
        run = _Run(config, callbacks, strategy, initial_weights, trace_cache)
        return run.fit()
    except BaseException as error:
        if run is not None and run.cached is not None and not isinstance(error, TrainingDiverged):
            trace_cache.discard(run.cached)  # a trace an error interrupted is not reused
        _clear_trainer_frames(error.__traceback__)
        raise
    finally:
        if run is not None:
            run.release()
        # op determinism is process-wide: leave the process as it was (notebooks, tuner trials)
        if not deterministic_before and tf_config.is_op_determinism_enabled():
            tf_config.disable_op_determinism()


def _clear_trainer_frames(trace) -> None:
    """Clears the local variables of this module's finished frames in ``trace``.

    The training loop's frames hold the epoch's iterator and dataset, the
    evaluation pipeline and the callback list; an exception the caller keeps
    (``TrainingDiverged`` in a tuner, ``pytest.raises``) would keep them alive
    through its traceback. The traceback still prints every line; frames of other
    modules (a callback that raised) keep their locals for debugging.
    """
    while trace is not None:
        frame = trace.tb_frame
        if frame.f_code.co_filename == __file__:
            try:
                frame.clear()
            except RuntimeError:  # still executing (train() itself)
                pass
        trace = trace.tb_next
