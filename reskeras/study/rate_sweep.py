"""The learning-rate sweeps that pick the rate of the swept cells (TAT's net, the tuned BN net).

Each sweep trains one net of the deepest depth at every factor of ``SHAPING_FACTORS`` times
the recipe's rate, from every held-out seed (``StudyConfig.sweep_seeds``, 100-102 by
default: never the seeds the verdict reads), for ``RATE_SWEEP_BUDGET`` x the base budget,
and reads each run's full-pass training loss. :func:`reskeras.study.judgment.rates.pick`
then picks the rate (the rule is in the criteria table). Each run is an ordinary run
directory, ``runs/[RECIPE/]NAME-STEPSsteps`` (``plain56-nobn-tat-x0.03-s100-352steps``), and
each loss read is kept in ``STUDY_DIR/rate_sweeps/RECIPE/NAME.json``, so a re-run reuses
them.
"""

from __future__ import annotations

from reskeras import rundir
from reskeras.recipes import scaled_lr
from reskeras.study.cells import SHAPING_FACTORS, SHAPING_SWEEPS, SWEPT_RATE, Cell
from reskeras.study.criteria import RATE_SWEEP_BUDGET
from reskeras.study.judgment.rates import pick
from reskeras.study.training import base_steps, cell_results, train_cell

SWEEPS_DIR = "rate_sweeps"


def needed(interventions) -> tuple[str, ...]:
    """The sweeps (keys of ``SHAPING_SWEEPS``) that the study's interventions train at."""
    wanted = {SWEPT_RATE[v] for v in interventions if v in SWEPT_RATE}
    return tuple(name for name in SHAPING_SWEEPS if name in wanted)


def _record_file(config, recipe: str, cell: Cell) -> str:
    folder = rundir.path(rundir.path(config.out, SWEEPS_DIR), recipe)
    return rundir.path(folder, f"{cell.group.rsplit('-x', 1)[0]}.json")


def budget_steps(config, data) -> int:
    """The steps each run of a sweep trains: ``RATE_SWEEP_BUDGET`` x the base budget."""
    return base_steps(config, data) * RATE_SWEEP_BUDGET


def sweep(config, data, recipe: str, name: str, depth: int, *, trace_cache=None,
          log=print, verbose: int = 0) -> dict:
    """Runs (or reuses) one sweep and returns its record.

    Returns:
        ``{"sweep", "net", "label", "recipe", "base_rate", "factors", "seeds",
        "budget_steps", "losses": {factor: {seed: loss or None}}, "train_errors": {...},
        "diverged", "mean_loss", "picked", "picked_rate"}`` (factors and seeds as strings,
        as JSON keeps them).
    """
    import tensorflow as tf

    residual, batch_norm, variant = SHAPING_SWEEPS[name]
    budget = budget_steps(config, data)
    first = Cell(residual, depth, batch_norm, config.sweep_seeds[0], variant, SHAPING_FACTORS[0])
    record_file = _record_file(config, recipe, first)
    saved = rundir.read_json(record_file) if tf.io.gfile.exists(record_file) else {}
    losses = {f: {} for f in SHAPING_FACTORS}
    errors = {f: {} for f in SHAPING_FACTORS}
    for factor in SHAPING_FACTORS:
        for seed in config.sweep_seeds:
            cell = Cell(residual, depth, batch_norm, seed, variant, factor)
            key = f"{factor:g}", str(seed)
            if key[0] in saved.get("losses", {}) and key[1] in saved["losses"][key[0]] \
                    and saved.get("budget_steps") == budget:
                losses[factor][seed] = saved["losses"][key[0]][key[1]]
                errors[factor][seed] = saved["train_errors"][key[0]][key[1]]
                continue
            log(f"[{recipe} sweep {name}] {cell.name}: training {budget} steps", end="",
                flush=True)
            status, trained = train_cell(config, cell, verbose, trace_cache=trace_cache,
                                         steps=budget, recipe=recipe)
            entry = cell_results(config, cell, status, data, trained, recipe=recipe,
                                 steps=budget)
            finished = status == "finished"
            losses[factor][seed] = entry["errors"]["train_loss"] if finished else None
            errors[factor][seed] = entry["final_train_error"] if finished else None
            log(f" -> {status}" + (f", loss {losses[factor][seed]:.4f}" if finished else ""))
            _write(record_file, _record(config, data, recipe, name, first, budget, losses,
                                        errors))
    record = _record(config, data, recipe, name, first, budget, losses, errors)
    _write(record_file, record)
    return record


def _record(config, data, recipe, name, cell: Cell, budget, losses, errors) -> dict:
    done = {f: v for f, v in losses.items() if len(v) == len(config.sweep_seeds)}
    picked, reading = pick(done) if done else (None, {"diverged": [], "mean_loss": {}})
    base_rate = scaled_lr(recipe, config.batch_size)
    return {"sweep": name, "net": cell.group.rsplit("-x", 1)[0],
            "label": cell.label.rsplit(" (", 1)[0], "recipe": recipe, "base_rate": base_rate,
            "factors": list(SHAPING_FACTORS), "seeds": list(config.sweep_seeds),
            "budget_steps": budget,
            "losses": {f"{f:g}": {str(s): v for s, v in by.items()} for f, by in losses.items()},
            "train_errors": {f"{f:g}": {str(s): v for s, v in by.items()}
                             for f, by in errors.items()},
            "diverged": reading["diverged"], "mean_loss": reading["mean_loss"],
            "picked": picked, "picked_rate": None if picked is None else picked * base_rate}


def _write(path: str, record: dict) -> None:
    import tensorflow as tf

    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    rundir.write_json(path, record)


__all__ = ["SWEEPS_DIR", "budget_steps", "needed", "sweep"]
