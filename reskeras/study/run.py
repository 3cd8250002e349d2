"""The study: plain and residual twins x depths x {BN, no BN} x seeds, then the analyses.

Every cell is a normal reskeras run directory under ``STUDY_DIR/runs/`` (so
``reskeras plot``, TensorBoard and resume work on it), trained with the same
recipe and step budget, logging per-layer gradient norms and layer responses.
Re-running the same study reuses finished (and diverged) cells and resumes a
killed one from its last checkpoint.

Presets (every preset runs the same interventions at its deepest depth:
identity init for the plain twins, SkipInit for the no-BN residual twin, a 10x
smaller learning rate for the plain BN twin; see ``reskeras.study.cells``):

- ``quick`` (default): the embedded digits data, depths 8/20/56, BN and no BN,
  8 epochs with Adam; 3 seeds of the depth-56 BatchNorm twins (the cells the
  verdict's flags and every intervention are compared with), 1 seed of the
  other cells, of the interventions and of the identity task (depths 1-16):
  what fits in 10 minutes on 2 cores.
- ``full``: the same data and recipe at 16 epochs, depths 8/20/32/44/56, 3
  seeds of every cell, the identity task to depth 32, every analysis on every
  seed it supports. About an hour on 2 cores.
- ``paper``: CIFAR-10 through TFDS, depths 20/32/44/56/110, BN and no BN,
  3 seeds, the paper's 64k iterations at batch 128: for a GPU or a TPU
  (``--strategy``); only data and time differ from ``full``.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np

from reskeras import rundir
from reskeras.analysis.records import read_jsonl
from reskeras.preprocessing import check_int
from reskeras.recipes import scaled_lr
from reskeras.study.analyses import analyse, trained_model
from reskeras.study.cells import INTERVENTION_TWINS, INTERVENTIONS, Cell
from reskeras.study.criteria import TRAIN_ERROR
from reskeras.study.measures.gradient_flow import gradient_summary
from reskeras.study.measures.training_error import Predictors, model_errors

ANALYSES = ("lesion", "shattering", "landscape", "distances", "sharpness", "identity_task")
_QUICK = {"dataset": "digits", "depths": (8, 20, 56), "batch_norm": (True, False),
          "seeds": (0,), "deep_seeds": (0, 1, 2), "interventions": INTERVENTIONS,
          "intervention_seeds": (0,),
          # Adam, because the paper's SGD schedule (lr /10 at 50% and 75%) needs far more than
          # 176 steps: ResNet-56 ended at 62% training error with it, 3% with Adam (measured).
          # 8 epochs (88 steps): 20 cells of 16 epochs took 14:29 and of 10 epochs over 11
          # minutes on a slow 2-core day
          "recipe": "adam", "epochs": 8, "steps": None, "batch_size": 128,
          "grad_norms_every": 11, "activations_every": 44, "sharpness_seeds": 1,
          # a checkpoint costs 0.3 s against 1.2 s for an 11-step epoch of plain-56: every
          # 8 epochs and at the last step (a killed study redoes at most 8 epochs of a cell)
          "checkpoint_every": 88,
          # depth 32 doubles the task's time and, at this budget, neither stack keeps its input
          "identity_task": {"depths": (1, 2, 4, 8, 16), "seeds": (0,)}}
PRESETS = {
    "quick": _QUICK,
    "full": {**_QUICK, "depths": (8, 20, 32, 44, 56), "seeds": (0, 1, 2), "epochs": 16,
             "grad_norms_every": 16, "intervention_seeds": (0, 1, 2), "sharpness_seeds": 3,
             "identity_task": {"depths": (1, 2, 4, 8, 16, 32), "seeds": (0, 1, 2)}},
    "paper": {"dataset": "cifar10", "depths": (20, 32, 44, 56, 110),
              "batch_norm": (True, False), "seeds": (0, 1, 2), "deep_seeds": (0, 1, 2),
              "interventions": INTERVENTIONS, "intervention_seeds": (0, 1, 2), "recipe": "paper",
              "epochs": None, "steps": 64000, "batch_size": 128, "grad_norms_every": 500,
              "activations_every": 2000, "sharpness_seeds": 3,
              "identity_task": {"depths": (1, 2, 4, 8, 16, 32), "seeds": (0, 1, 2)}},
}


@dataclasses.dataclass
class StudyConfig:
    """What one study runs. ``from_preset`` fills it; any field can be overridden."""

    out: str
    preset: str = "quick"
    dataset: str = "digits"
    depths: tuple[int, ...] = (8, 20, 56)
    batch_norm: tuple[bool, ...] = (True, False)
    seeds: tuple[int, ...] = (0,)
    deep_seeds: tuple[int, ...] | None = None  # None: ``seeds``
    interventions: tuple[str, ...] = INTERVENTIONS
    intervention_seeds: tuple[int, ...] = (0,)
    recipe: str = "paper"
    epochs: int | None = 16
    steps: int | None = None
    batch_size: int = 128
    grad_norms_every: int = 16
    activations_every: int = 44
    data_dir: str | None = None
    image_size: int | None = None
    strategy: str = "auto"
    analyses: tuple[str, ...] = ANALYSES
    sharpness_seeds: int = 1  # how many of ``deep_seeds`` the Hessian is measured on
    checkpoint_every: int | None = None  # steps between a cell's checkpoints (None: one epoch)
    # batches precise BN statistics average over (None: one epoch, at most 200)
    precise_bn_batches: int | None = None
    identity_task: dict = dataclasses.field(
        default_factory=lambda: {"depths": (1, 2, 4, 8, 16, 32), "seeds": (0,)})

    def __post_init__(self):
        from reskeras.data import canonical_name

        self.dataset = canonical_name(self.dataset)  # folder:DIR recorded absolute
        self.seeds = tuple(self.seeds)
        # the deepest BN cells run at least every seed of the others
        self.deep_seeds = tuple(sorted(set(self.seeds) | set(self.deep_seeds or ())))
        self.interventions = tuple(self.interventions)
        self.intervention_seeds = tuple(self.intervention_seeds)

    @classmethod
    def from_preset(cls, preset: str, out: str, **overrides) -> "StudyConfig":
        if preset not in PRESETS:
            raise ValueError(f"`preset` must be one of {', '.join(map(repr, PRESETS))}. "
                             f"Received: preset={preset!r}")
        values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        if overrides.get("steps") is not None:
            values["epochs"] = None
        for key in ("deep_seeds", "intervention_seeds"):  # --seeds N: N seeds of every cell
            if overrides.get("seeds") is not None and overrides.get(key) is None:
                values[key] = overrides["seeds"]
        values["identity_task"] = dict(values["identity_task"])
        config = cls(out=out, preset=preset, **values)
        config.validate()
        return config

    def validate(self) -> None:
        from reskeras.specs import resolve_spec
        if not self.depths or len(set(self.depths)) != len(self.depths):
            raise ValueError(f"`depths` must be distinct CIFAR depths (6n+2). "
                             f"Received: depths={list(self.depths)}")
        for depth in self.depths:
            resolve_spec(depth, family="cifar")  # one-line ValueError for a bad depth
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"`seeds` must be non-negative integers. "
                             f"Received: seeds={list(self.seeds)}")
        for key in ("deep_seeds", "intervention_seeds"):
            seeds = getattr(self, key)
            if (key == "intervention_seeds" and not seeds and self.interventions) or any(
                    not isinstance(s, int) or s < 0 for s in seeds):
                raise ValueError(f"`{key}` must be non-negative integers. "
                                 f"Received: {key}={list(seeds)}")
        check_int("batch_size", self.batch_size, 1)
        check_int("sharpness_seeds", self.sharpness_seeds, 1)
        if self.checkpoint_every is not None:
            check_int("checkpoint_every", self.checkpoint_every, 1)
        if self.precise_bn_batches is not None:
            check_int("precise_bn_batches", self.precise_bn_batches, 1)
        if self.image_size is not None:
            check_int("image_size", self.image_size, 1)
        unknown = sorted(set(self.analyses) - set(ANALYSES))
        if unknown:
            raise ValueError(f"`analyses` must be among {', '.join(map(repr, ANALYSES))}. "
                             f"Received: analyses={list(self.analyses)}")
        wrong = sorted(set(self.interventions) - set(INTERVENTIONS))
        if wrong or len(set(self.interventions)) != len(self.interventions):
            raise ValueError(f"`interventions` must be distinct, among "
                             f"{', '.join(map(repr, INTERVENTIONS))}. "
                             f"Received: interventions={list(self.interventions)}")


def grid(config: StudyConfig) -> list[Cell]:
    """The cells, shallow first, so partial studies have complete small depths.

    The deepest depth's BatchNorm twins run ``deep_seeds``, the other twins
    ``seeds``; the intervention cells (deepest depth only) ``intervention_seeds``,
    after the twins of their BN setting.
    """
    deepest = max(config.depths)
    cells = []
    for depth in sorted(config.depths):
        for bn in config.batch_norm:
            seeds = config.deep_seeds if depth == deepest and bn else config.seeds
            cells += [Cell(residual, depth, bn, seed) for seed in seeds
                      for residual in (False, True)]
            if depth == deepest:
                cells += [Cell(residual, depth, bn, seed, variant)
                          for seed in config.intervention_seeds
                          for variant in config.interventions
                          for residual, twin_bn in INTERVENTION_TWINS[variant] if twin_bn == bn]
    return cells


def training_order(cells: list[Cell]) -> list[Cell]:
    """The cells with every seed of a configuration in a row, groups in grid order.

    Cells of one group share their architecture and recipe, so consecutive ones reuse
    the first one's model and traced steps (:class:`reskeras.trace_cache.TraceCache`).
    """
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.group, []).append(cell)
    return [cell for group in groups.values() for cell in group]


def cell_dir(config: StudyConfig, cell: Cell) -> str:
    return rundir.path(rundir.path(config.out, "runs"), cell.name)


def train_cell(config: StudyConfig, cell: Cell, verbose: int = 0, *, trace_cache=None):
    """Trains (or resumes, or reuses) one cell.

    Returns:
        ``(status, result)``: the :class:`reskeras.train.TrainResult` of a run that
        trained now (its model in memory), ``None`` for a diverged or reused cell.
    """
    from reskeras.train import TrainConfig, TrainingDiverged, train

    out = cell_dir(config, cell)
    summary = rundir.read_summary(out) if _exists(out) else None
    if summary and summary.get("status") == "diverged":
        return "diverged", None
    fields = cell.train_fields()
    if "lr_factor" in fields:
        fields["lr"] = fields.pop("lr_factor") * scaled_lr(config.recipe, config.batch_size)
    try:
        result = train(TrainConfig(
            out=out, depth=cell.depth, family="cifar", plain=not cell.residual,
            batch_norm=cell.batch_norm, dataset=config.dataset, data_dir=config.data_dir,
            image_size=config.image_size, recipe=config.recipe, epochs=config.epochs,
            steps=config.steps, batch_size=config.batch_size, seed=cell.seed,
            strategy=config.strategy,
            grad_norms_every=config.grad_norms_every,
            activations_every=config.activations_every, precise_bn=True,
            precise_bn_batches=config.precise_bn_batches, checkpoint_every=config.checkpoint_every,
            verbose=verbose, **fields), trace_cache=trace_cache)
    except TrainingDiverged:
        return "diverged", None
    status = "finished" if result.status in ("finished", "already finished") else result.status
    return status, (result if result.model is not None else None)


def _exists(out: str) -> bool:
    import tensorflow as tf
    return tf.io.gfile.exists(rundir.path(out, rundir.CONFIG))


def cell_results(config: StudyConfig, cell: Cell, status: str, data, trained=None) -> dict:
    """The numbers of one trained cell (see the report schema).

    ``trained``: the cell's :class:`reskeras.train.TrainResult` when it trained in this
    process; its errors are then measured on the model in memory, else on
    ``model.keras`` and the checkpoint's moving averages (the same numbers).
    """
    out = cell_dir(config, cell)
    metrics = rundir.read_metrics(out) if _exists(out) else []
    grads_file = rundir.path(out, "grad_norms.jsonl")
    import tensorflow as tf
    records = read_jsonl(grads_file) if tf.io.gfile.exists(grads_file) else []
    entry = {"name": cell.name, "group": cell.group, "label": cell.label,
             "residual": cell.residual, "depth": cell.depth,
             "batch_norm": cell.batch_norm, "seed": cell.seed, "variant": cell.variant,
             "run_dir": f"runs/{cell.name}", "status": status,
             "params": None, "seconds": float(sum(r["seconds"] for r in metrics)),
             "final_train_error": None, "final_test_error": None, "final_loss": None,
             "curve": [{"step": r["step"], "train_error": 1.0 - r["accuracy"], "loss": r["loss"],
                        "test_error": 1.0 - r["val_accuracy"]} for r in metrics],
             "gradient": gradient_summary(records), "measures": None, "errors": None,
             "precise_bn": None}
    if status == "finished":
        drawn = rundir.read_config(out)["training"]["precise_bn"]
        if trained is not None:
            model, moving = trained.model, trained.moving_statistics or {}
            kept = trained.functions if trained.functions is not None else {}
            if "predictors" not in kept:  # traced once per cached model
                kept["predictors"] = Predictors(model)
            predictors = kept["predictors"]
        else:
            from reskeras.precise_bn import moving_statistics
            from reskeras.train import checkpoint_model

            model = trained_model(config, entry)  # model.keras: precise BN statistics
            moving, predictors = moving_statistics(checkpoint_model(out)), None
        errors = model_errors(model, moving, data, batch_size=drawn["batch_size"],
                              predictors=predictors)
        entry["params"] = int(sum(np.prod(v.shape) for v in model.trainable_weights))
        entry["errors"] = {"steps": metrics[-1]["step"] if metrics else None, **errors}
        entry["precise_bn"] = rundir.read_summary(out)["precise_bn"]
        entry["final_train_error"] = errors["train"][TRAIN_ERROR]
        entry["final_test_error"] = errors["test"][TRAIN_ERROR]
        entry["final_loss"] = metrics[-1]["loss"] if metrics else None
    return entry


STUDY_FILE = "study.json"
# may change when a study is re-run: they decide how cells run and what is measured afterwards
_EXECUTION = ("strategy", "analyses", "sharpness_seeds", "identity_task", "checkpoint_every")
TIMINGS_FILE = "timings.json"


def check_study_dir(config: StudyConfig) -> None:
    """ValueError (nothing written) when ``out`` holds another study or other files."""
    import tensorflow as tf
    saved_file = rundir.path(config.out, STUDY_FILE)
    if tf.io.gfile.exists(saved_file):
        saved = rundir.read_json(saved_file)
        new = json.loads(json.dumps(dataclasses.asdict(config)))
        # a key only one side has (a study of another reskeras version) differs too
        changed = sorted(k for k in set(saved) | set(new) if k not in _EXECUTION
                         and (k not in saved or k not in new or saved[k] != new[k]))
        if changed:
            key = changed[0]
            raise ValueError(f"`out` holds another study ({key}: {saved.get(key, 'missing')!r}"
                             f" -> {new.get(key, 'missing')!r}); re-run it with the same "
                             f"settings or choose another directory. Received: "
                             f"out={config.out!r}")
    elif tf.io.gfile.isdir(config.out) and tf.io.gfile.listdir(config.out):
        raise ValueError("`out` must be a new or empty directory, or a study to continue. "
                         f"Received: out={config.out!r}")
    else:
        rundir.check_writable(config.out)


def run_study(config: StudyConfig, *, log=print, verbose: int = 0) -> dict:
    """Trains every cell (reusing finished ones), analyses them and writes the report.

    Returns:
        The results dict (also written as ``STUDY_DIR/results.json``).
    """
    from reskeras.data import load_dataset

    config.validate()
    started = time.perf_counter()
    # a bad dataset (or a TFDS one not prepared under data_dir) stops here, before `out` exists
    data = load_dataset(config.dataset, data_dir=config.data_dir, image_size=config.image_size)
    check_study_dir(config)
    record = json.loads(json.dumps(dataclasses.asdict(config)))
    rundir.write_json(rundir.path(config.out, STUDY_FILE), record)
    from reskeras.trace_cache import TraceCache

    cells = grid(config)
    entries, timings = {}, {"cells": {}, "analyses": {}}
    cache = TraceCache(max_entries=1)  # the cells of one group train in a row
    try:
        for number, cell in enumerate(training_order(cells), 1):
            begun = time.perf_counter()
            log(f"[{number}/{len(cells)}] {cell.name}: training", end="", flush=True)
            status, trained = train_cell(config, cell, verbose=verbose, trace_cache=cache)
            evaluated = time.perf_counter()
            entries[cell] = cell_results(config, cell, status, data, trained)
            timings["cells"][cell.name] = cell_timing(
                trained, time.perf_counter() - begun, time.perf_counter() - evaluated)
            log(f" -> {status} ({time.perf_counter() - begun:.0f} s)")
    finally:
        cache.clear()
    results = {"preset": config.preset, "dataset": config.dataset, "recipe": config.recipe,
               "steps": None, "batch_size": config.batch_size, "classes": data.info.classes,
               "seeds": list(config.seeds), "deep_seeds": list(config.deep_seeds),
               "interventions": list(config.interventions),
               "intervention_seeds": list(config.intervention_seeds),
               "study_dir": config.out, "cells": []}
    results["cells"] = [entries[cell] for cell in cells]
    finished = [c for c in results["cells"] if c["curve"]]
    results["steps"] = max((c["curve"][-1]["step"] for c in finished), default=0)
    log("analysing: " + ", ".join(("gradient flow", "degradation",
                                    *(a.replace("_", " ") for a in config.analyses))))
    results["timings"] = timings
    timings["training_seconds"] = time.perf_counter() - started
    analyse(config, results, data, log=log, timings=timings["analyses"])
    results["seconds"] = timings["seconds"] = time.perf_counter() - started
    rundir.write_json(rundir.path(config.out, TIMINGS_FILE), timings)
    return results


def cell_timing(trained, seconds: float, evaluation: float) -> dict:
    """Where one cell's wall time went (``timings.json``).

    ``training_seconds`` are the compiled training calls after a first one that traced;
    ``overhead_seconds`` everything else of the cell: building, tracing, per-epoch test
    passes, logging, checkpoints, precise BN statistics, saving and the error
    measurements (``evaluation_seconds``). A cell reused from an earlier run trained
    no step now.
    """
    spent = trained.seconds if trained is not None else {"steps": 0.0, "trace": 0.0}
    return {"steps": trained.step if trained is not None else 0, "reused": trained is None,
            "seconds": seconds, "training_seconds": spent["steps"],
            "trace_seconds": spent["trace"], "evaluation_seconds": evaluation,
            "overhead_seconds": seconds - spent["steps"]}
