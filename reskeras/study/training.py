"""One cell of the study, trained: its run directory, its budgets, its numbers.

:func:`converge_cell` trains a cell at doubling budgets from the study's base budget
until it converges or reaches the cap (:mod:`reskeras.study.judgment.convergence`),
reading its full-pass training error after each budget: one run extended when the
learning rate does not depend on the budget (:func:`reskeras.recipes.budget_free`),
one run per budget (``runs/NAME-STEPSsteps``) otherwise. :func:`train_cell` trains one
budget, :func:`cell_results` measures a trained cell, :func:`cell_timing` says where
its time went. The runner (:mod:`reskeras.study.run`) calls these for every cell.
"""

from __future__ import annotations

import time

import numpy as np

from reskeras import rundir
from reskeras.analysis.records import read_jsonl
from reskeras.recipes import scaled_lr
from reskeras.study.analyses import trained_model
from reskeras.study.cells import Cell
from reskeras.study.criteria import TRAIN_ERROR
from reskeras.study.measures.gradient_flow import gradient_summary
from reskeras.study.measures.responses import response_summary
from reskeras.study.measures.training_error import Predictors, model_errors


def base_steps(config, data) -> int:
    """The base budget in optimizer steps: ``steps``, or ``epochs`` of the training split."""
    return config.steps or config.epochs * data.steps_per_epoch(config.batch_size)


def cell_dir(config, cell: Cell, recipe: str | None = None,
             steps: int | None = None) -> str:
    """``runs/NAME``; ``runs/RECIPE/NAME`` for a compared recipe; ``-STEPSsteps`` appended
    for one budget of a schedule that depends on the budget (each budget its own run)."""
    return rundir.path(config.out, _relative_dir(config, cell, recipe, steps))


def _relative_dir(config, cell: Cell, recipe: str | None = None,
                  steps: int | None = None) -> str:
    parts = ["runs"] + ([recipe] if recipe not in (None, config.recipe) else [])
    return "/".join(parts + [cell.name if steps is None else f"{cell.name}-{steps}steps"])


def train_cell(config, cell: Cell, verbose: int = 0, *, trace_cache=None,
               steps: int | None = None, recipe: str | None = None, extend: bool = False):
    """Trains (or resumes, extends, or reuses) one cell for one budget.

    Args:
        steps: the budget (default: the study's base budget, ``epochs`` or ``steps``).
        recipe: the recipe (default: the study's).
        extend: continue the cell's run to ``steps`` (a budget-free learning rate);
            otherwise a budget given is trained in ``runs/NAME-STEPSsteps``.

    Returns:
        ``(status, result)``: the :class:`reskeras.train.TrainResult` of a run that
        trained now (its model in memory), ``None`` for a diverged or reused cell.
    """
    from reskeras.train import TrainConfig, TrainingDiverged, train

    recipe = recipe or config.recipe
    out = cell_dir(config, cell, recipe, None if steps is None or extend else steps)
    summary = rundir.read_summary(out) if _exists(out) else None
    if summary and summary.get("status") == "diverged":
        return "diverged", None
    fields = cell.train_fields()
    if "lr_factor" in fields:
        fields["lr"] = fields.pop("lr_factor") * scaled_lr(recipe, config.batch_size)
    budget = {"epochs": config.epochs, "steps": config.steps} if steps is None \
        else {"epochs": None, "steps": steps}
    try:
        result = train(TrainConfig(
            out=out, depth=cell.depth, family="cifar", plain=not cell.residual,
            batch_norm=cell.batch_norm, dataset=config.dataset, data_dir=config.data_dir,
            image_size=config.image_size, recipe=recipe, **budget,
            batch_size=config.batch_size, seed=cell.seed, strategy=config.strategy,
            grad_norms_every=config.grad_norms_every,
            activations_every=config.activations_every, precise_bn=True,
            precise_bn_batches=config.precise_bn_batches, checkpoint_every=config.checkpoint_every,
            extend=extend, verbose=verbose, **fields), trace_cache=trace_cache)
    except TrainingDiverged:
        return "diverged", None
    status = "finished" if result.status in ("finished", "already finished") else result.status
    return status, (result if result.model is not None else None)


CONVERGENCE_DIR = "convergence"


def _convergence_file(config, cell: Cell, recipe: str) -> str:
    folder = rundir.path(config.out, CONVERGENCE_DIR)
    if recipe != config.recipe:
        folder = rundir.path(folder, recipe)
    return rundir.path(folder, f"{cell.name}.json")


def converge_cell(config, cell: Cell, data, *, recipe: str | None = None,
                  trace_cache=None, verbose: int = 0) -> tuple[str, dict, dict]:
    """Trains one cell at doubling budgets until it converges or reaches the cap.

    After each budget the cell's full-pass training error and loss are measured and
    kept in ``STUDY_DIR/convergence/NAME.json``, so a re-run reuses every budget read
    and a killed study continues the budget it was in. With a budget-free learning
    rate the cell is one run, extended; otherwise each budget is a run of its own.

    Returns:
        ``(status, entry, timing)``: the cell's results entry (:func:`cell_results`
        at its final budget, with ``convergence``) and where its time went.
    """
    from reskeras.recipes import budget_free
    from reskeras.study.judgment.convergence import budgets, state

    recipe = recipe or config.recipe
    base = base_steps(config, data)
    cap = base * 2 ** config.max_doublings
    readable = budget_free(recipe, global_batch_size=config.batch_size,
                           steps_per_epoch=data.steps_per_epoch(config.batch_size),
                           totals=(base, cap))
    record_file = _convergence_file(config, cell, recipe)
    import tensorflow as tf
    saved = rundir.read_json(record_file) if tf.io.gfile.exists(record_file) else {}
    curve = {int(k): v for k, v in saved.get("budgets", {}).items()}
    timing = {"steps": 0, "reused": True, "seconds": 0.0, "training_seconds": 0.0,
              "trace_seconds": 0.0, "evaluation_seconds": 0.0, "overhead_seconds": 0.0}
    status, entry, decision = "finished", None, state({}, classes=data.info.classes, cap=cap)
    for steps in budgets(base, config.max_doublings):
        if steps not in curve:
            begun = time.perf_counter()
            status, trained = train_cell(config, cell, verbose, trace_cache=trace_cache,
                                         steps=steps, recipe=recipe, extend=readable)
            evaluated = time.perf_counter()
            entry = cell_results(config, cell, status, data, trained, recipe=recipe,
                                 steps=None if readable else steps)
            _add_timing(timing, cell_timing(trained, time.perf_counter() - begun,
                                            time.perf_counter() - evaluated))
            if status != "finished":
                break
            curve[steps] = {"train_error": entry["final_train_error"],
                            "loss": entry["errors"]["train_loss"],
                            "test_error": entry["final_test_error"],
                            "run_dir": entry["run_dir"]}
            tf.io.gfile.makedirs(record_file.rsplit("/", 1)[0])
            rundir.write_json(record_file, {"recipe": recipe, "base": base, "cap": cap,
                                            "budgets": {str(k): v for k, v in
                                                        sorted(curve.items())}})
        else:
            entry = None
        decision = state({k: v for k, v in curve.items() if k <= steps},
                         classes=data.info.classes, cap=cap)
        if decision["done"]:
            break
    if entry is None:  # every budget was read before: the final one's numbers from disk
        status, trained = train_cell(config, cell, verbose, trace_cache=trace_cache,
                                     steps=steps, recipe=recipe, extend=readable)
        entry = cell_results(config, cell, status, data, trained, recipe=recipe,
                             steps=None if readable else steps)
    read = {k: v for k, v in sorted(curve.items()) if k <= steps}
    entry["convergence"] = {
        "steps": max(read, default=0), "converged": bool(decision["converged"]),
        "failed_to_start": decision["failed_to_start"] if status == "finished" else None,
        "base": base, "cap": cap, "one_run": readable,
        "train_errors": {str(k): v["train_error"] for k, v in read.items()},
        "train_losses": {str(k): v["loss"] for k, v in read.items()},
        "test_errors": {str(k): v["test_error"] for k, v in read.items()}}
    return status, entry, timing


def _add_timing(total: dict, part: dict) -> None:
    for key, value in part.items():
        total[key] = total[key] and value if key == "reused" else total[key] + value


def _exists(out: str) -> bool:
    import tensorflow as tf
    return tf.io.gfile.exists(rundir.path(out, rundir.CONFIG))


def cell_results(config, cell: Cell, status: str, data, trained=None, *,
                 recipe: str | None = None, steps: int | None = None) -> dict:
    """The numbers of one trained cell (see the report schema).

    ``trained``: the cell's :class:`reskeras.train.TrainResult` when it trained in this
    process; its errors are then measured on the model in memory, else on
    ``model.keras`` and the checkpoint's moving averages (the same numbers).
    ``recipe``/``steps`` name the run directory as :func:`cell_dir` does.
    """
    out = cell_dir(config, cell, recipe, steps)
    metrics = rundir.read_metrics(out) if _exists(out) else []
    grads_file = rundir.path(out, "grad_norms.jsonl")
    import tensorflow as tf
    records = read_jsonl(grads_file) if tf.io.gfile.exists(grads_file) else []
    entry = {"name": cell.name, "group": cell.group, "label": cell.label,
             "residual": cell.residual, "depth": cell.depth,
             "batch_norm": cell.batch_norm, "seed": cell.seed, "variant": cell.variant,
             "lr_factor": cell.lr_factor, "run_dir": _relative_dir(config, cell, recipe, steps), "status": status,
             "recipe": recipe or config.recipe,
             "params": None, "seconds": float(sum(r["seconds"] for r in metrics)),
             "final_train_error": None, "final_test_error": None, "final_loss": None,
             "curve": [{"step": r["step"], "train_error": 1.0 - r["accuracy"], "loss": r["loss"],
                        "test_error": 1.0 - r["val_accuracy"]} for r in metrics],
             "gradient": gradient_summary(records), "measures": None, "errors": None,
             "precise_bn": None, "responses": None}
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
        # He et al. 2015, Fig. 7: the block layers' response std at the last logged step
        entry["responses"] = response_summary(out)
    return entry


def cell_timing(trained, seconds: float, evaluation: float) -> dict:
    """Where one cell's wall time went (``timings.json``).

    ``training_seconds`` are the compiled training calls after a first one that traced;
    ``overhead_seconds`` everything else of the cell: building, tracing, per-epoch test
    passes, logging, checkpoints, precise BN statistics, saving and the error
    measurements (``evaluation_seconds``). ``steps`` are those trained now (an
    extended or resumed run began at its checkpoint); a reused cell trained none.
    """
    spent = trained.seconds if trained is not None else {"steps": 0.0, "trace": 0.0}
    return {"steps": trained.step - trained.initial_step if trained is not None else 0,
            "reused": trained is None,
            "seconds": seconds, "training_seconds": spent["steps"],
            "trace_seconds": spent["trace"], "evaluation_seconds": evaluation,
            "overhead_seconds": seconds - spent["steps"]}


__all__ = ["CONVERGENCE_DIR", "base_steps", "cell_dir", "cell_results", "cell_timing",
           "converge_cell", "train_cell"]
