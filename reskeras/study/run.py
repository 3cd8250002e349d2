"""The study: plain and residual twins x depths x {BN, no BN} x seeds, then the analyses.

Every cell is a normal reskeras run directory under ``STUDY_DIR/runs/`` (so
``reskeras plot``, TensorBoard and resume work on it), trained with the same
recipe and budget rule, logging per-layer gradient norms and layer responses.
Re-running the same study reuses finished (and diverged) cells and resumes a
killed one from its last checkpoint; re-running it with more interventions (or more of
them swept over depths) trains only the new cells.

Every cell trains at doubling budgets from the preset's base budget until it converges
or reaches the cap (:func:`reskeras.study.training.converge_cell`,
:mod:`reskeras.study.judgment.convergence`):
one run extended when the learning rate does not depend on the budget, one run per
budget otherwise.

Presets (see ``reskeras.study.cells`` for the interventions; every one runs at the
deepest depth: the identity init and its two isometric controls (permuted identity,
delta-orthogonal) on the plain twins, SkipInit and Fixup on the no-BN residual twin, the
learning-rate variants on the plain BN twin):

- ``quick`` (default): the embedded digits data, depths 8/20/56, BN and no BN, Adam,
  from 8 epochs (88 steps) to convergence or 1,408 steps; 3 seeds of every cell, the
  interventions included (of the learning-rate sweep only 0.1x; TAT's shaped plain net and
  the tuned BN net at the rates their sweeps on the held-out seeds 100-102 picked, and the
  twins without augmentation), TAT's comparison under the paper's SGD too
  (``shaping_recipes``), 1 seed of the identity task (depths 1-16).
- ``full``: the same data, depths 8/20/32/44/56, 5 seeds of every cell, the cap at
  2,816 steps, the identity task to depth 32 on 3 seeds, the whole learning-rate sweep
  (0.1x to 10x), the identity and conditioning inits and TAT at every depth
  (``sweep_depths``; TAT from 14 layers), and the whole grid under both Adam and the
  paper's SGD recipe (``compare_recipes``).
- ``paper``: CIFAR-10 through TFDS, depths 20/32/44/56/110, BN and no BN, 3 seeds,
  the paper recipe from 4,000 steps to the paper's 64k iterations at batch 128, each
  budget its own run, the interventions as in ``full``: for a GPU or a TPU
  (``--strategy``).
"""

from __future__ import annotations

import dataclasses
import json
import time

from reskeras import rundir
from reskeras.preprocessing import check_int
from reskeras.study.analyses import analyse, judge
from reskeras.study.rate_sweep import needed, sweep
from reskeras.study.cells import (CONDITIONING, INTERVENTION_TWINS, INTERVENTIONS, LR_SWEEP,
                                  SWEPT_RATE, Cell)
# the cell-level steps, also importable from here (benchmarks/study_time.py runs older trees)
from reskeras.study.training import (base_steps, cell_dir, cell_results, cell_timing,
                                     converge_cell, train_cell)

# quick: every intervention but the rest of the learning-rate sweep (issue 27: the new cells
# count against the quick preset's time; the sweep and the depth sweep run in `full`)
QUICK_INTERVENTIONS = tuple(v for v in INTERVENTIONS if v not in LR_SWEEP[1:])
ANALYSES = ("lesion", "shattering", "landscape", "distances", "sharpness", "identity_task",
            "kernel_map")
_QUICK = {"dataset": "digits", "depths": (8, 20, 56), "batch_norm": (True, False),
          "seeds": (0, 1, 2), "deep_seeds": (0, 1, 2), "interventions": QUICK_INTERVENTIONS,
          "intervention_seeds": (0, 1, 2), "sweep_depths": (),
          # Adam, because the paper's SGD schedule (lr /10 at 50% and 75%) needs far more
          # steps: ResNet-56 ended at 62% training error with it after 176, 3% with Adam.
          # The base budget is 8 epochs (88 steps); every cell trains on, doubling, until
          # it converges or reaches 2 ** 4 x the base (1,408 steps; see convergence)
          "recipe": "adam", "epochs": 8, "steps": None, "max_doublings": 4,
          # TAT's comparison (and its rate sweep) also runs under the paper's SGD recipe
          "compare_recipes": (), "shaping_recipes": ("paper",), "sweep_seeds": (100, 101, 102),
          "batch_size": 128,
          "grad_norms_every": 11, "activations_every": 44, "sharpness_seeds": 3,
          # a checkpoint costs 0.3 s against 1.2 s for an 11-step epoch of plain-56: every
          # 8 epochs and at the last step (a killed study redoes at most 8 epochs of a cell)
          "checkpoint_every": 88,
          # depth 32 doubles the task's time and, at this budget, neither stack keeps its input
          "identity_task": {"depths": (1, 2, 4, 8, 16), "seeds": (0,)}}
PRESETS = {
    "quick": _QUICK,
    "full": {**_QUICK, "depths": (8, 20, 32, 44, 56), "seeds": (0, 1, 2, 3, 4),
             "deep_seeds": (0, 1, 2, 3, 4), "intervention_seeds": (0, 1, 2, 3, 4),
             "max_doublings": 5, "compare_recipes": ("paper",), "shaping_recipes": (),
             "grad_norms_every": 16, "interventions": INTERVENTIONS,
             "sweep_depths": CONDITIONING + ("tat",),
             "sharpness_seeds": 3,
             "identity_task": {"depths": (1, 2, 4, 8, 16, 32), "seeds": (0, 1, 2)}},
    "paper": {"dataset": "cifar10", "depths": (20, 32, 44, 56, 110),
              "batch_norm": (True, False), "seeds": (0, 1, 2), "deep_seeds": (0, 1, 2),
              "interventions": INTERVENTIONS, "intervention_seeds": (0, 1, 2),
              "sweep_depths": CONDITIONING + ("tat",), "recipe": "paper",
              # every budget of the paper's schedule is a run of its own: 4k, 8k, ... 64k
              "epochs": None, "steps": 4000, "max_doublings": 4, "compare_recipes": (),
              "shaping_recipes": ("adam",), "sweep_seeds": (100, 101, 102),
              "batch_size": 128, "grad_norms_every": 500,
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
    # interventions that also run at every shallower depth (does it remove the depth trend?)
    sweep_depths: tuple[str, ...] = ()
    recipe: str = "paper"
    # the base budget (epochs or steps); cells train on to base * 2 ** max_doublings
    epochs: int | None = 16
    steps: int | None = None
    max_doublings: int = 4
    compare_recipes: tuple[str, ...] = ()  # recipes whose whole grid also runs (runs/RECIPE/)
    # recipes under which only TAT's comparison at the deepest depth also runs (the twins
    # with BN, the tuned BN net and TAT's net), with its own rate sweeps
    shaping_recipes: tuple[str, ...] = ()
    # held-out seeds of the learning-rate sweeps (never read by the verdict's cells)
    sweep_seeds: tuple[int, ...] = (100, 101, 102)
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
        self.compare_recipes = tuple(self.compare_recipes)
        self.shaping_recipes = tuple(self.shaping_recipes)
        self.sweep_seeds = tuple(self.sweep_seeds)
        self.intervention_seeds = tuple(self.intervention_seeds)
        self.sweep_depths = tuple(self.sweep_depths)

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
        if overrides.get("interventions") is not None and overrides.get("sweep_depths") is None:
            # the preset's depth sweep, of the interventions asked for
            values["sweep_depths"] = tuple(v for v in values["sweep_depths"]
                                           if v in values["interventions"])
        if overrides.get("shaping_recipes") is None:  # a recipe that runs the whole grid
            whole = (values["recipe"], *values["compare_recipes"])  # covers TAT's comparison
            values["shaping_recipes"] = tuple(r for r in values["shaping_recipes"]
                                              if r not in whole)
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
        check_int("max_doublings", self.max_doublings, 0)
        from reskeras.recipes import RECIPES
        for recipe in (self.recipe, *self.compare_recipes):
            if recipe not in RECIPES:
                raise ValueError(f"`recipe` must be one of {', '.join(map(repr, RECIPES))}. "
                                 f"Received: recipe={recipe!r}")
        if self.recipe in self.compare_recipes or \
                len(set(self.compare_recipes)) != len(self.compare_recipes):
            raise ValueError(f"`compare_recipes` must be distinct recipes other than `recipe` "
                             f"({self.recipe!r}). Received: "
                             f"compare_recipes={list(self.compare_recipes)}")
        for recipe in self.shaping_recipes:
            if recipe not in RECIPES or recipe in (self.recipe, *self.compare_recipes) \
                    or self.shaping_recipes.count(recipe) > 1:
                raise ValueError(f"`shaping_recipes` must be distinct recipes among "
                                 f"{', '.join(map(repr, RECIPES))}, other than `recipe` and "
                                 f"`compare_recipes`. Received: "
                                 f"shaping_recipes={list(self.shaping_recipes)}")
        verdict_seeds = set(self.seeds) | set(self.deep_seeds) | set(self.intervention_seeds)
        if not self.sweep_seeds or len(set(self.sweep_seeds)) != len(self.sweep_seeds) or any(
                not isinstance(s, int) or isinstance(s, bool) or s < 0 or s in verdict_seeds
                for s in self.sweep_seeds):
            raise ValueError(f"`sweep_seeds` must be distinct non-negative integers that no "
                             f"other cell uses (held out). Received: "
                             f"sweep_seeds={list(self.sweep_seeds)}")
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
        outside = sorted(set(self.sweep_depths) - set(self.interventions))
        if outside or len(set(self.sweep_depths)) != len(self.sweep_depths):
            raise ValueError(f"`sweep_depths` must be distinct interventions the study runs "
                             f"({', '.join(map(repr, self.interventions)) or 'none'}). "
                             f"Received: sweep_depths={list(self.sweep_depths)}")


def grid(config: StudyConfig, picks: dict | None = None) -> list[Cell]:
    """The cells, shallow first, so partial studies have complete small depths.

    The deepest depth's BatchNorm twins run ``deep_seeds``, the other twins
    ``seeds``; the intervention cells ``intervention_seeds``, after the twins of their
    BN setting: every intervention at the deepest depth, those in ``sweep_depths`` at
    every depth. A swept variant (``SWEPT_RATE``) runs at the factor its sweep picked
    (``picks``: ``{"tat": 0.03, "tuned": 0.3}``) and not at all without a pick; the tuned
    BN net not when its pick is the recipe's own rate (its ``he`` cells are it); TAT not
    at a depth it cannot shape (:func:`shapeable`).
    """
    deepest = max(config.depths)
    picks = picks or {}
    cells = []
    for depth in sorted(config.depths):
        for bn in config.batch_norm:
            seeds = config.deep_seeds if depth == deepest and bn else config.seeds
            cells += [Cell(residual, depth, bn, seed) for seed in seeds
                      for residual in (False, True)]
            variants = config.interventions if depth == deepest else \
                [v for v in config.interventions if v in config.sweep_depths]
            variants = [v for v in variants if _runs(v, depth, picks)]
            cells += [Cell(residual, depth, bn, seed, variant,
                           picks[SWEPT_RATE[variant]] if variant in SWEPT_RATE else None)
                      for seed in config.intervention_seeds
                      for variant in variants
                      for residual, twin_bn in INTERVENTION_TWINS[variant] if twin_bn == bn]
    return cells


def _runs(variant: str, depth: int, picks: dict) -> bool:
    if variant not in SWEPT_RATE:
        return True
    factor = picks.get(SWEPT_RATE[variant])
    if factor is None or (variant == "tuned" and factor == 1.0):
        return False
    return shapeable(depth) if variant in ("tat", "tat-noaug") else True


def shapeable(depth: int) -> bool:
    """Whether TAT can shape the plain CIFAR net of ``depth`` (at least 13 activations)."""
    from reskeras.kernel_shaping import tat_leaky_relu
    from reskeras.specs import resolve_spec

    try:
        tat_leaky_relu(resolve_spec(depth, family="cifar", residual=False, kernel_shaping="tat"))
    except ValueError:
        return False
    return True


def shaping_grid(config: StudyConfig, picks: dict) -> list[Cell]:
    """The cells of a shaping-only recipe: at the deepest depth, the BN twins
    (``deep_seeds``), then the tuned BN net and TAT's net (``intervention_seeds``) where
    they run (see :func:`grid`)."""
    deepest = max(config.depths)
    cells = [Cell(residual, deepest, True, seed) for seed in config.deep_seeds
             for residual in (False, True)]
    for variant in ("tuned", "tat"):
        if variant in config.interventions and _runs(variant, deepest, picks):
            residual, bn = INTERVENTION_TWINS[variant][0]
            cells += [Cell(residual, deepest, bn, seed, variant, picks[SWEPT_RATE[variant]])
                      for seed in config.intervention_seeds]
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


STUDY_FILE = "study.json"
# may change when a study is re-run: they decide how cells run and what is measured afterwards
# (and where it lies: run directories are relative to ``out``, so a study copied or moved
# elsewhere, from a Colab drive to a laptop say, continues there)
_EXECUTION = ("strategy", "analyses", "sharpness_seeds", "identity_task", "checkpoint_every",
              "out")
# may grow when a study is re-run: more interventions train only their new cells (a saved
# study from before ``sweep_depths`` swept none); dropping one would drop cells from results
_GROWABLE = {"interventions": (), "sweep_depths": (), "shaping_recipes": (), "sweep_seeds": ()}
TIMINGS_FILE = "timings.json"


def check_study_dir(config: StudyConfig) -> None:
    """ValueError (nothing written) when ``out`` holds another study or other files."""
    import tensorflow as tf
    saved_file = rundir.path(config.out, STUDY_FILE)
    if tf.io.gfile.exists(saved_file):
        saved = rundir.read_json(saved_file)
        new = json.loads(json.dumps(dataclasses.asdict(config)))
        for key, before in _GROWABLE.items():
            if set(saved.get(key, before)) <= set(new[key]):
                saved[key] = new[key]
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

    entries, timings = {}, {"cells": {}, "analyses": {}}
    cache = TraceCache(max_entries=1)  # the cells of one group train in a row
    recipes = (config.recipe, *config.compare_recipes)
    # TAT cannot shape a plain net of fewer than 14 layers: no sweep and no cells of it then
    shaped = "tat" in config.interventions and shapeable(max(config.depths))
    if "tat" in config.interventions and not shaped:
        log(f"TAT skipped: it cannot shape the deepest plain net here (depth "
            f"{max(config.depths)}; it needs 14 layers or more, docs/kernel_shaping.md)")
    # the tuned BN net is TAT's comparison (the same chance): it goes with TAT's cells
    skipped = () if shaped or "tat" not in config.interventions else ("tat", "tuned")
    swept = tuple(name for name in needed(config.interventions) if name not in skipped)
    # the shaping-only recipes run TAT's comparison: nothing without TAT's cells
    everything = (*recipes, *(config.shaping_recipes if shaped else ()))
    sweeps, grids = {}, {}
    try:
        for recipe in everything:  # the rate sweeps first: their picks name the swept cells
            began = time.perf_counter()
            sweeps[recipe] = {name: sweep(config, data, recipe, name, max(config.depths),
                                          trace_cache=cache, log=log, verbose=verbose)
                              for name in swept}
            if sweeps[recipe]:
                timings.setdefault("rate_sweeps", {})[recipe] = time.perf_counter() - began
            picks = {name: record["picked"] for name, record in sweeps[recipe].items()}
            grids[recipe] = grid(config, picks) if recipe in recipes \
                else shaping_grid(config, picks)
        for recipe in everything:
            order = training_order(grids[recipe])
            for number, cell in enumerate(order, 1):
                begun = time.perf_counter()
                where = f"{recipe}: " if len(everything) > 1 else ""
                log(f"[{where}{number}/{len(order)}] {cell.name}:", end="", flush=True)
                status, entry, timing = converge_cell(config, cell, data, recipe=recipe,
                                                      trace_cache=cache, verbose=verbose)
                entries[recipe, cell] = entry
                timings["cells"][cell.name if recipe == config.recipe
                                 else f"{recipe}/{cell.name}"] = timing
                reading = entry["convergence"]
                # a cell whose every budget a previous run trained is only read back
                log(f" {'reused' if timing['reused'] else 'trained'} -> {status} at "
                    f"{reading['steps']} steps, "
                    f"{'converged' if reading['converged'] else 'not converged'} "
                    f"({time.perf_counter() - begun:.0f} s)")
    finally:
        cache.clear()
    cells = grids[config.recipe]
    results = {"preset": config.preset, "dataset": config.dataset, "recipe": config.recipe,
               "steps": None, "batch_size": config.batch_size, "classes": data.info.classes,
               "seeds": list(config.seeds), "deep_seeds": list(config.deep_seeds),
               "interventions": list(config.interventions),
               "intervention_seeds": list(config.intervention_seeds),
               "sweep_depths": list(config.sweep_depths),
               "shaping_recipes": list(config.shaping_recipes),
               "sweep_seeds": list(config.sweep_seeds),
               "rate_sweeps": {recipe: found for recipe, found in sweeps.items() if found},
               "study_dir": config.out, "cells": []}
    results["cells"] = [entries[config.recipe, cell] for cell in cells]
    results["base_steps"], results["max_doublings"] = base_steps(config, data), \
        config.max_doublings
    results["compared"] = {recipe: {"cells": [entries[recipe, cell] for cell in grids[recipe]]}
                           for recipe in config.compare_recipes}
    results["shaping"] = {recipe: {"cells": [entries[recipe, cell] for cell in grids[recipe]]}
                          for recipe in everything if recipe not in recipes}
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


JUDGMENTS_DIR = "judgments"
_JUDGMENT_FILES = ("results.json", "verdict.json", "report.md", "report.html")


def judge_again(out: str, *, log=print) -> dict:
    """Judges a finished study again with the installed rules: no training, no measurement.

    The study's ``results.json`` keeps every measured number; each cell's layer responses
    are read again from its run (a record that studies before them did not summarize),
    then :func:`reskeras.study.analyses.judge` writes the verdict, figures and report anew. The previous
    judgment files are kept, unchanged, under ``STUDY_DIR/judgments/<UTC time>/``. A
    measurement the study did not take leaves the hypotheses that need it inconclusive,
    with the reason.

    Raises:
        ValueError: ``out`` holds no finished study (no ``study.json`` or ``results.json``).
    """
    import tensorflow as tf
    from reskeras.study.measures.responses import response_summary

    files = {name: rundir.path(out, name) for name in ("study.json", "results.json")}
    missing = [name for name, path in files.items() if not tf.io.gfile.exists(path)]
    if missing:
        raise ValueError(f"`out` must hold a finished study (its {' and '.join(missing)} is "
                         f"missing). Received: out={out!r}")
    saved = rundir.read_json(files["study.json"])
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    config = StudyConfig(**{k: v for k, v in saved.items() if k in known})
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = rundir.path(rundir.path(out, JUDGMENTS_DIR), stamp)
    tf.io.gfile.makedirs(kept)
    for name in _JUDGMENT_FILES:
        if tf.io.gfile.exists(rundir.path(out, name)):
            tf.io.gfile.copy(rundir.path(out, name), rundir.path(kept, name))
    results = rundir.read_json(files["results.json"])
    for cell in results["cells"]:
        cell["responses"] = response_summary(rundir.path(out, cell["run_dir"])) \
            if cell["status"] == "finished" else None
    results.setdefault("sweep_depths", [])
    results.setdefault("kernel_map", None)
    for key, empty in (("shaping_recipes", []), ("sweep_seeds", []), ("rate_sweeps", {}),
                       ("shaping", {})):
        results.setdefault(key, empty)
    results.setdefault("shattering_controls", None)
    log(f"judged again; the previous judgment is kept in {kept}")
    return judge(config, results)


__all__ = ["ANALYSES", "JUDGMENTS_DIR", "PRESETS", "QUICK_INTERVENTIONS", "StudyConfig",
           "base_steps", "cell_dir", "cell_results", "cell_timing", "check_study_dir",
           "converge_cell", "grid", "judge_again", "run_study", "train_cell", "training_order"]
