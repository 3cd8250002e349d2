"""The search runner behind ``reskeras tune``: validate, resume, run, write the leaderboard.

``TUNE_DIR`` layout::

    TUNE_DIR/search.json          the search identity (a re-run must match it)
    TUNE_DIR/keras_tuner/         Keras Tuner's oracle.json and trial_*/trial.json
    TUNE_DIR/runs/<trial_id>/     one reskeras run directory per trial
    TUNE_DIR/trials/<trial_id>.json  what each trial measured (or why it failed)
    TUNE_DIR/leaderboard.json, leaderboard.csv, leaderboard.png

Everything is checked before anything is written: a bad search space, an
unknown tuner, ``max_trials < 1``, a budget below every candidate, or a
``TUNE_DIR`` holding a different search raise ``ValueError`` and leave the
directory as it was. Re-running the same search continues it: finished trials
are kept, the interrupted one resumes from its run's last checkpoint, and the
search ends with exactly ``max_trials`` trials (fewer only when the oracle
exhausts the space). ``max_trials`` may grow between runs; nothing else may change
except the execution settings (strategy, XLA, steps per execution, verbosity).

Example:

>>> from tuning.search import SearchConfig, run_search
>>> board = run_search(SearchConfig(out="tune-digits", tuner="random", max_trials=4,
...                                 max_epochs=2, depths=(8, 14), widths=(4, 8)))  # doctest: +SKIP
>>> board["trials"][0]["status"]  # doctest: +SKIP
'COMPLETED'
"""

from __future__ import annotations

import dataclasses
import json

import tensorflow as tf

from reskeras.preprocessing import check_int
from reskeras import rundir
from reskeras.specs import LEGACY_PADDING, PADDINGS
from tuning.budget import Budget, model_cost
from tuning.hypermodel import ResNetHyperModel
from tuning.leaderboard import write_leaderboard
from tuning.tuner import (OBJECTIVES, PROJECT, ReskerasTuner, check_tuner_name,
                          write_json_atomic)

SEARCH = "search.json"
# train options that may change between a search and its resume (as for run directories)
RESUMABLE_OPTIONS = ("strategy", "cpu_replicas", "jit_compile", "steps_per_execution",
                     "verbose")
ROLES = (None, "chief", "worker")


@dataclasses.dataclass
class SearchConfig:
    """One search. See ``reskeras tune --help`` for each field's flag.

    Args:
        out: the tuner directory ``TUNE_DIR`` (local or ``gs://``).
        dataset, data_dir, image_size: the data (``digits`` works offline).
        tuner: ``hyperband`` (default), ``bayesian``, ``random`` or ``grid``.
        objective: ``val_accuracy`` (default) or ``val_loss``.
        max_trials: trials to run; max_epochs: epochs of a trial (Hyperband: the most).
        family, block, depths, stage_blocks, widths, search_residual, residual,
        versions, shortcuts, inits, branch_scales, lrs, weight_decays, batch_norm, padding:
            the search space
            (:class:`tuning.ResNetHyperModel`).
        max_params, max_flops: the budget per sampled model.
        recipe, batch_size, seed, grad_norms_every: training of every trial.
        strategy, cpu_replicas, jit_compile, steps_per_execution: execution.
        subprocess_per_trial: train each trial in its own process (frees all its memory).
        factor: Hyperband's reduction factor.
    """

    out: str
    dataset: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    tuner: str = "hyperband"
    objective: str = "val_accuracy"
    max_trials: int = 10
    max_epochs: int = 3
    family: str = "cifar"
    block: str | None = None
    depths: tuple | None = None
    stage_blocks: tuple | None = None
    widths: tuple | None = None
    search_residual: bool = False
    residual: bool = True
    versions: tuple | None = None
    shortcuts: tuple | None = None
    inits: tuple | None = None
    branch_scales: tuple | None = None
    lrs: tuple | None = None
    weight_decays: tuple | None = None
    batch_norm: bool = True
    padding: str = "symmetric"
    max_params: int | None = None
    max_flops: int | None = None
    recipe: str = "adam"
    batch_size: int | None = None
    seed: int = 0
    grad_norms_every: int = 4
    strategy: str = "auto"
    cpu_replicas: int | None = None
    jit_compile: bool | str = "auto"
    steps_per_execution: int = 8
    factor: int = 3
    verbose: int = 0
    subprocess_per_trial: bool = False

    def __post_init__(self):
        from reskeras.data import canonical_name

        self.dataset = canonical_name(self.dataset)  # folder:DIR recorded absolute

    def validate(self) -> None:
        check_tuner_name(self.tuner)
        for name in ("max_trials", "max_epochs", "grad_norms_every", "factor",
                     "steps_per_execution"):
            check_int(name, getattr(self, name), 1)
        for name in ("batch_size", "cpu_replicas", "image_size", "max_params", "max_flops"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"`{name}` must be a positive integer or None. "
                                 f"Received: {name}={value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer. Received: seed={self.seed!r}")
        from reskeras.recipes import RECIPES
        if self.recipe not in RECIPES:
            raise ValueError(f"`recipe` must be one of {', '.join(map(repr, RECIPES))}. "
                             f"Received: recipe={self.recipe!r}")
        if self.factor < 2:
            raise ValueError(f"`factor` must be an integer >= 2. Received: factor={self.factor!r}")
        if self.padding not in PADDINGS:
            raise ValueError(f"`padding` must be one of {', '.join(map(repr, PADDINGS))}. "
                             f"Received: padding={self.padding!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"`objective` must be one of {', '.join(map(repr, OBJECTIVES))}. "
                             f"Received: objective={self.objective!r}")
        for name in ("depths", "stage_blocks", "widths", "versions", "shortcuts", "inits",
                     "branch_scales", "lrs", "weight_decays"):
            value = getattr(self, name)
            if value is not None and len(value) == 0:
                raise ValueError(f"`{name}` must not be empty (the search space would be "
                                 f"empty). Received: {name}=[]")
        if not self.out:
            raise ValueError(f"`out` must name a tuner directory. Received: out={self.out!r}")

    def budget(self) -> Budget:
        return Budget(max_params=self.max_params, max_flops=self.max_flops)

    def train_options(self) -> dict:
        options = {"cpu_replicas": self.cpu_replicas, "jit_compile": self.jit_compile,
                   "steps_per_execution": self.steps_per_execution,
                   "image_size": self.image_size}
        return {k: v for k, v in options.items() if v is not None}


def make_hypermodel(config: SearchConfig, info) -> ResNetHyperModel:
    return ResNetHyperModel(
        info.input_shape, info.classes, family=config.family, block=config.block,
        depths=config.depths, stage_blocks=config.stage_blocks, widths=config.widths,
        search_residual=config.search_residual, residual=config.residual,
        version=_choices(config.versions), shortcut=_choices(config.shortcuts),
        init=_choices(config.inits), branch_scale=_choices(config.branch_scales),
        lr=_choices(config.lrs), weight_decay=_choices(config.weight_decays),
        batch_norm=config.batch_norm, padding=config.padding, dataset=config.dataset, data_dir=config.data_dir,
        recipe=config.recipe, batch_size=config.batch_size, strategy=config.strategy,
        seed=config.seed, grad_norms_every=config.grad_norms_every,
        train_options=config.train_options(), verbose=config.verbose)


def _choices(values):
    return None if values is None else list(values)


def search_identity(config: SearchConfig, hypermodel: ResNetHyperModel) -> dict:
    """What must match for a re-run to continue a search (stored as ``search.json``)."""
    space = hypermodel.default_hyperparameters().get_config()["space"]
    options = {k: v for k, v in config.train_options().items() if k not in RESUMABLE_OPTIONS}
    identity = {
        "dataset": config.dataset, "data_dir": config.data_dir,
        "input_shape": list(hypermodel.input_shape), "classes": hypermodel.classes,
        "tuner": config.tuner, "objective": config.objective, "max_epochs": config.max_epochs,
        "factor": config.factor if config.tuner == "hyperband" else None,
        "seed": config.seed, "recipe": config.recipe, "batch_size": config.batch_size,
        "grad_norms_every": config.grad_norms_every, "family": config.family,
        "block": config.block, "batch_norm": config.batch_norm, "padding": config.padding,
        "budget": config.budget().to_config(), "space": space, "train_options": options,
    }
    return json.loads(json.dumps(identity))  # as config.json: compares equal once read back


def _difference(saved: dict, new: dict) -> str | None:
    for key in sorted(set(saved) | set(new)):
        if saved.get(key) != new.get(key):
            old_text, new_text = (json.dumps(v, sort_keys=True)[:160]
                                  for v in (saved.get(key), new.get(key)))
            return f"{key}: {old_text} -> {new_text}"
    return None


def check_tune_dir(out: str, identity: dict) -> bool:
    """True when ``out`` holds this search (a resume), False when it is new; else ValueError."""
    file = rundir.path(out, SEARCH)
    # list first: a chief writes search.json before anything else, so a listing without it
    # is empty unless the directory belongs to something else
    names = tf.io.gfile.listdir(out) if tf.io.gfile.isdir(out) else []
    if tf.io.gfile.exists(file):
        saved = rundir.read_json(file)
        # searches started before reskeras recorded `padding` built TensorFlow-"same" nets
        saved.setdefault("padding", LEGACY_PADDING)
        difference = _difference(saved, identity)
        if difference:
            raise ValueError(f"`out` holds a different search ({difference}); re-run it with "
                             f"the same arguments or choose another directory. "
                             f"Received: out={out!r}")
        return True
    if names:
        raise ValueError(f"`out` must be a new or empty directory, or a reskeras tuner "
                         f"directory to continue (it has files but no {SEARCH}). "
                         f"Received: out={out!r}")
    return False


def check_budget(config: SearchConfig, hypermodel: ResNetHyperModel) -> None:
    """ValueError when the budget rejects even the smallest candidates (nothing could run)."""
    budget = config.budget()
    if not budget.limited:
        return
    costs = [(spec, model_cost(spec, hypermodel.input_shape, hypermodel.classes))
             for spec in hypermodel.candidates()]
    if all(budget.violation(cost) for _, cost in costs):
        spec, cost = min(costs, key=lambda item: item[1].params)
        limits = ", ".join(f"{k}={v}" for k, v in budget.to_config().items() if v is not None)
        raise ValueError(f"the budget must admit at least one candidate; the smallest, "
                         f"{spec.name}, has {cost.params:,} params and {cost.flops:,} "
                         f"multiply-adds. Received: {limits}")


def collect_entries(tuner: ReskerasTuner) -> list[dict]:
    """Leaderboard entries of every trial the oracle knows, with what each trial recorded."""
    entries = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        record = {}
        file = tuner.record_file(trial_id)
        if tf.io.gfile.exists(file):
            record = rundir.read_json(file)
        hp = trial.hyperparameters
        status = trial.status if trial.status in ("COMPLETED", "FAILED", "INVALID") else "RUNNING"
        arch = record.get("arch") or tuner.hypermodel.spec(hp).to_config()
        params = record.get("params")
        if params is None:
            params = tuner.cost(hp).params
        run_dir = f"runs/{trial_id}"
        has_run = tf.io.gfile.exists(rundir.path(tuner.run_dir(trial_id), rundir.CONFIG))
        failure = record.get("failure")
        if failure is None and status in ("FAILED", "INVALID"):
            failure = _last_line(trial.message) or "failed (see the worker's log)"
        completed = status == "COMPLETED"
        score = trial.score if completed else None
        metrics = record.get("metrics") or {name: trial.metrics.get_last_value(name)
                                           for name in trial.metrics.metrics}
        entries.append(dict(
            trial_id=trial_id, status=status, score=score,
            metrics=metrics if completed or record else {},
            hyperparameters=dict(hp.values), arch=arch, params=params,
            seconds=record.get("seconds", 0.0), gradients=record.get("gradients"),
            run_dir=run_dir if has_run else None,
            weights=f"{run_dir}/{rundir.MODEL}" if completed else None,
            failure=None if completed else failure))
    return entries


def _last_line(message: str | None) -> str | None:
    lines = [line for line in (message or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


def update_leaderboard(tuner: ReskerasTuner, search: dict, figure: bool = True) -> dict:
    objective = tuner.oracle.objective
    entries = collect_entries(tuner)
    progress = {"max_trials": tuner.oracle.max_trials, "trials": len(entries),
                "completed": sum(e["status"] == "COMPLETED" for e in entries)}
    return write_leaderboard(tuner.tune_dir,
                             objective={"name": objective.name,
                                        "direction": objective.direction},
                             search={**search, **progress}, entries=entries, figure=figure)


def prepare(config: SearchConfig, role: str | None = None):
    """Validates everything and writes ``search.json``; returns (hypermodel, identity)."""
    from reskeras.data import load_dataset

    config.validate()
    if role not in ROLES:
        raise ValueError(f"`role` must be None, 'chief' or 'worker'. Received: role={role!r}")
    info = load_dataset(config.dataset, data_dir=config.data_dir,
                        image_size=config.image_size, seed=config.seed).info
    hypermodel = make_hypermodel(config, info)
    identity = search_identity(config, hypermodel)
    resumed = check_tune_dir(config.out, identity)
    check_budget(config, hypermodel)
    if not resumed:
        tf.io.gfile.makedirs(config.out)
        write_json_atomic(rundir.path(config.out, SEARCH), identity, indent=2, sort_keys=True)
    return hypermodel, identity


def make_tuner(config: SearchConfig, hypermodel: ResNetHyperModel) -> ReskerasTuner:
    return ReskerasTuner(hypermodel, directory=config.out, tuner=config.tuner,
                         objective=config.objective, max_trials=config.max_trials,
                         max_epochs=config.max_epochs, budget=config.budget(),
                         seed=config.seed, factor=config.factor,
                         subprocess_per_trial=config.subprocess_per_trial)


def run_search(config: SearchConfig, *, callbacks=None, role: str | None = None,
               figure: bool = True, display: bool = True) -> dict | None:
    """Runs (or continues) the search; returns the leaderboard (None on a worker).

    Args:
        config: the :class:`SearchConfig`.
        callbacks: Keras callbacks for every trial (deep-copied per trial; a
            ``log_dir`` becomes ``<log_dir>/<trial_id>``).
        role: ``None`` (one process), ``"chief"`` (serve the oracle; the
            ``KERASTUNER_*`` variables must be set) or ``"worker"``.
        figure: also write ``leaderboard.png``.
        display: Keras Tuner's per-trial tables on stdout.
    """
    hypermodel, identity = prepare(config, role)
    tuner = make_tuner(config, hypermodel)
    search = {**identity, "tune_dir": config.out}
    options = {"callbacks": list(callbacks or []), "verbose": 1 if display else 0}
    if role == "worker":
        tuner.search(**options)
        return None
    tuner.oracle.after_end_trial = lambda oracle: update_leaderboard(tuner, search, figure)
    try:
        if role == "chief":
            from tuning.distributed import serve_oracle
            tuner.oracle.verbose = options["verbose"]
            serve_oracle(tuner)
        else:
            tuner.search(**options)
    finally:  # also when Keras Tuner stops the search (consecutive failures) or on Ctrl-C
        board = update_leaderboard(tuner, search, figure)
    return board


__all__ = ["SearchConfig", "run_search", "prepare", "make_tuner", "search_identity",
           "collect_entries", "update_leaderboard", "SEARCH", "PROJECT"]
