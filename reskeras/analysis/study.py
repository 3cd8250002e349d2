"""The study: plain and residual twins x depths x {BN, no BN} x seeds, then the analyses.

Every cell is a normal reskeras run directory under ``STUDY_DIR/runs/`` (so
``reskeras plot``, TensorBoard and resume work on it), trained with the same
recipe and step budget, logging per-layer gradient norms and layer responses.
Re-running the same study reuses finished (and diverged) cells and resumes a
killed one from its last checkpoint.

Presets:

- ``quick`` (default): the embedded digits data, depths 8/20/56, BN and no BN,
  one seed, 16 epochs with Adam: 12 cells, about 8 minutes on 2 cores.
- ``paper``: CIFAR-10 through TFDS, depths 20/32/44/56/110, BN and no BN,
  3 seeds, the paper's 64k iterations at batch 128: for a GPU or a TPU
  (``--strategy``); only data and time differ from ``quick``.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np

from reskeras import rundir
from reskeras.analysis.gradient_flow import gradient_summary
from reskeras.analysis.records import read_jsonl
from reskeras.preprocessing import check_int

PRESETS = {
    # quick: Adam, because the paper's SGD schedule (lr /10 at 50% and 75%) needs far more
    # than 176 steps: ResNet-56 ended at 62% training error with it, 3% with Adam (measured)
    "quick": {"dataset": "digits", "depths": (8, 20, 56), "batch_norm": (True, False),
              "seeds": (0,), "recipe": "adam", "epochs": 16, "steps": None,
              "batch_size": 128, "grad_norms_every": 16, "activations_every": 44},
    "paper": {"dataset": "cifar10", "depths": (20, 32, 44, 56, 110),
              "batch_norm": (True, False), "seeds": (0, 1, 2), "recipe": "paper",
              "epochs": None, "steps": 64000, "batch_size": 128, "grad_norms_every": 500,
              "activations_every": 2000},
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
    recipe: str = "paper"
    epochs: int | None = 16
    steps: int | None = None
    batch_size: int = 128
    grad_norms_every: int = 16
    activations_every: int = 44
    data_dir: str | None = None
    image_size: int | None = None
    strategy: str = "auto"
    analyses: tuple[str, ...] = ("lesion", "shattering", "landscape")

    def __post_init__(self):
        from reskeras.data import canonical_name

        self.dataset = canonical_name(self.dataset)  # folder:DIR recorded absolute

    @classmethod
    def from_preset(cls, preset: str, out: str, **overrides) -> "StudyConfig":
        if preset not in PRESETS:
            raise ValueError(f"`preset` must be one of {', '.join(map(repr, PRESETS))}. "
                             f"Received: preset={preset!r}")
        values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        if overrides.get("steps") is not None:
            values["epochs"] = None
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
        check_int("batch_size", self.batch_size, 1)
        if self.image_size is not None:
            check_int("image_size", self.image_size, 1)
        unknown = sorted(set(self.analyses) - {"lesion", "shattering", "landscape"})
        if unknown:
            raise ValueError("`analyses` must be among 'lesion', 'shattering', 'landscape'. "
                             f"Received: analyses={list(self.analyses)}")


@dataclasses.dataclass(frozen=True)
class Cell:
    residual: bool
    depth: int
    batch_norm: bool
    seed: int

    @property
    def name(self) -> str:
        kind = "resnet" if self.residual else "plain"
        return f"{kind}{self.depth}-{'bn' if self.batch_norm else 'nobn'}-s{self.seed}"


def grid(config: StudyConfig) -> list[Cell]:
    """The cells, shallow first, so partial studies have complete small depths."""
    return [Cell(residual, depth, bn, seed) for depth in sorted(config.depths)
            for bn in config.batch_norm for seed in config.seeds for residual in (False, True)]


def cell_dir(config: StudyConfig, cell: Cell) -> str:
    return rundir.path(rundir.path(config.out, "runs"), cell.name)


def train_cell(config: StudyConfig, cell: Cell, verbose: int = 0) -> str:
    """Trains (or resumes, or reuses) one cell; returns its status."""
    from reskeras.train import TrainConfig, TrainingDiverged, train

    out = cell_dir(config, cell)
    summary = rundir.read_summary(out) if _exists(out) else None
    if summary and summary.get("status") == "diverged":
        return "diverged"
    try:
        result = train(TrainConfig(
            out=out, depth=cell.depth, family="cifar", plain=not cell.residual,
            batch_norm=cell.batch_norm, dataset=config.dataset, data_dir=config.data_dir,
            image_size=config.image_size, recipe=config.recipe, epochs=config.epochs,
            steps=config.steps, batch_size=config.batch_size, seed=cell.seed, strategy=config.strategy,
            grad_norms_every=config.grad_norms_every,
            activations_every=config.activations_every, verbose=verbose))
    except TrainingDiverged:
        return "diverged"
    return "finished" if result.status in ("finished", "already finished") else result.status


def _exists(out: str) -> bool:
    import tensorflow as tf
    return tf.io.gfile.exists(rundir.path(out, rundir.CONFIG))


def evaluate_error(model, data, split: str, batch_size: int = 512) -> float:
    """1 - accuracy of ``model`` on a split, inference mode, no augmentation."""
    hits = total = 0
    for images, labels, weights in data.evaluation(batch_size, split=split):
        predicted = np.argmax(model(images, training=False), axis=-1)
        hits += float(np.sum((predicted == labels.numpy()) * weights.numpy()))
        total += float(np.sum(weights.numpy()))
    return 1.0 - hits / total


def cell_results(config: StudyConfig, cell: Cell, status: str, data) -> dict:
    """The numbers of one trained cell (see the report schema)."""
    out = cell_dir(config, cell)
    metrics = rundir.read_metrics(out) if _exists(out) else []
    grads_file = rundir.path(out, "grad_norms.jsonl")
    import tensorflow as tf
    records = read_jsonl(grads_file) if tf.io.gfile.exists(grads_file) else []
    entry = {"name": cell.name, "residual": cell.residual, "depth": cell.depth,
             "batch_norm": cell.batch_norm, "seed": cell.seed,
             "run_dir": f"runs/{cell.name}", "status": status,
             "params": None, "seconds": float(sum(r["seconds"] for r in metrics)),
             "final_train_error": None, "final_test_error": None, "final_loss": None,
             "curve": [{"step": r["step"], "train_error": 1.0 - r["accuracy"], "loss": r["loss"],
                        "test_error": 1.0 - r["val_accuracy"]} for r in metrics],
             "gradient": gradient_summary(records)}
    if status == "finished":
        model = load_cell_model(config, cell)
        entry["params"] = int(sum(np.prod(v.shape) for v in model.trainable_weights))
        entry["final_train_error"] = evaluate_error(model, data, "train")
        entry["final_test_error"] = evaluate_error(model, data, "test")
        entry["final_loss"] = metrics[-1]["loss"] if metrics else None
    return entry


def load_cell_model(config: StudyConfig, cell: Cell):
    import reskeras  # noqa: F401  (registers the custom layers)
    from reskeras._backend import keras
    return keras.models.load_model(rundir.path(cell_dir(config, cell), rundir.MODEL),
                                   compile=False)


STUDY_FILE = "study.json"
_EXECUTION = ("strategy", "analyses")  # may change when a study is re-run


def check_study_dir(config: StudyConfig) -> None:
    """ValueError (nothing written) when ``out`` holds another study or other files."""
    import tensorflow as tf
    saved_file = rundir.path(config.out, STUDY_FILE)
    if tf.io.gfile.exists(saved_file):
        saved = rundir.read_json(saved_file)
        new = json.loads(json.dumps(dataclasses.asdict(config)))
        changed = sorted(k for k in set(saved) | set(new)
                         if k not in _EXECUTION and saved.get(k) != new.get(k))
        if changed:
            key = changed[0]
            raise ValueError(f"`out` holds another study ({key}: {saved.get(key)!r} -> "
                             f"{new.get(key)!r}); re-run it with the same settings or choose "
                             f"another directory. Received: out={config.out!r}")
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
    from reskeras.analysis.study_analyses import analyse
    from reskeras.data import load_dataset

    config.validate()
    started = time.perf_counter()
    check_study_dir(config)
    record = json.loads(json.dumps(dataclasses.asdict(config)))
    rundir.write_json(rundir.path(config.out, STUDY_FILE), record)
    cells = grid(config)
    statuses = {}
    for number, cell in enumerate(cells, 1):
        begun = time.perf_counter()
        log(f"[{number}/{len(cells)}] {cell.name}: training", end="", flush=True)
        statuses[cell] = train_cell(config, cell, verbose=verbose)
        log(f" -> {statuses[cell]} ({time.perf_counter() - begun:.0f} s)")
    data = load_dataset(config.dataset, data_dir=config.data_dir, image_size=config.image_size)
    results = {"preset": config.preset, "dataset": config.dataset, "recipe": config.recipe,
               "steps": None, "batch_size": config.batch_size,
               "study_dir": config.out, "cells": []}
    for cell in cells:
        results["cells"].append(cell_results(config, cell, statuses[cell], data))
    finished = [c for c in results["cells"] if c["curve"]]
    results["steps"] = max((c["curve"][-1]["step"] for c in finished), default=0)
    log("analysing: " + ", ".join(("gradient flow", "degradation", *config.analyses)))
    analyse(config, results, data)
    results["seconds"] = time.perf_counter() - started
    return results
