"""The study's analyses after training: lesions, shattering, loss landscape, verdict, report."""

from __future__ import annotations

import time

import numpy as np

from reskeras import rundir
from reskeras.analysis.cells import is_twin
from reskeras.analysis.verdict import verdict

LANDSCAPE_EXAMPLES = 256
SHATTERING_IMAGES = 2
SHATTERING_POINTS = 64

NOTES = [
    "Training error is measured on the training split without augmentation, after the last "
    "step; the curves show the running training error of each epoch (with augmentation).",
    "The gradient-flow criterion compares two layers (the first and the last conv); a "
    "healthy ratio does not rule out problems in between: the heatmaps and profiles show "
    "every layer.",
    "One step budget for every depth: deeper nets might close the gap with longer "
    "training; degradation here means 'at this budget'.",
    "With few seeds and a small dataset, differences of a few points are within the noise "
    "of a single run.",
    "Lesion, shattering and loss-landscape numbers are measured on the deepest BN twins "
    "(lesion, landscape) and on every BN depth (shattering) of the first seed only; the "
    "Hessian on the first `sharpness_seeds` seeds of the deepest BN twins and the "
    "identity-initialized plain net.",
    "The interventions (identity init, SkipInit, a 10x smaller learning rate) run at the "
    "deepest depth only, with the same step budget as the twins; an intervention that "
    "fails here might work with its own tuned recipe (DiracNets and SkipInit papers tune "
    "theirs).",
    "A flag or hypothesis is yes/no (supported/refuted) only when every seed agrees; "
    "otherwise it reads 'inconclusive'.",
]


def split_arrays(data, split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` normalized images and labels of a split, in order."""
    images, labels = [], []
    for batch_images, batch_labels, _ in data.evaluation(min(count, 512), split=split):
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
        if sum(len(x) for x in images) >= count:
            break
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]


def _twins(results: dict) -> dict[str, dict] | None:
    """The deepest depth at which both BN twins of seed 0 finished."""
    done = {(c["residual"], c["depth"]): c for c in results["cells"]
            if c["batch_norm"] and c["seed"] == min(x["seed"] for x in results["cells"])
            and c["status"] == "finished" and is_twin(c)}
    depths = [d for d in sorted({d for _, d in done}, reverse=True)
              if (True, d) in done and (False, d) in done]
    return {"plain": done[(False, depths[0])], "residual": done[(True, depths[0])]} \
        if depths else None


def _initial_model(config, cell: dict, calibration: np.ndarray):
    """The cell's network at initialization, its BN moving statistics set from the data.

    With the initial moving statistics (mean 0, variance 1) inference-mode BN is
    nearly the identity and a deep residual stream grows until the softmax
    saturates. One training-mode pass with every BN momentum at 0 sets each
    layer's moving statistics to the batch statistics it sees (layer after layer,
    as inference will see them), without any weight update; afterwards the model
    computes the same function in inference and in training mode on that batch.
    """
    from reskeras._backend import keras
    from reskeras.train import build_run_model
    keras.utils.set_random_seed(cell["seed"])
    model = build_run_model(rundir.read_config(rundir.path(config.out, cell["run_dir"])))
    if cell["batch_norm"]:
        set_batch_norm_statistics(model, calibration)
    return model


def set_batch_norm_statistics(model, images: np.ndarray) -> None:
    """Sets every BatchNorm layer's moving statistics to those of ``images`` (one pass)."""
    from reskeras._backend import keras
    layers = [layer for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        model(images, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


def _model(config, cell: dict):
    import reskeras  # noqa: F401
    from reskeras._backend import keras
    return keras.models.load_model(
        rundir.path(rundir.path(config.out, cell["run_dir"]), rundir.MODEL), compile=False)


def lesions(config, results: dict, data) -> dict | None:
    from reskeras.analysis.lesion import lesion_study
    twins = _twins(results)
    if not twins:
        return None
    images, labels = split_arrays(data, "test", 10**9)
    return {kind: {"cell": cell["name"], **lesion_study(_model(config, cell), images, labels)}
            for kind, cell in twins.items()}


def shattering(config, results: dict, data) -> list[dict] | None:
    from reskeras.analysis.shattering import shattering_study
    seed = min(c["seed"] for c in results["cells"])
    cells = [c for c in results["cells"] if c["batch_norm"] and c["seed"] == seed
             and c["status"] == "finished" and is_twin(c)]
    if not cells:
        return None
    images, _ = split_arrays(data, "test", SHATTERING_IMAGES)
    calibration, _ = split_arrays(data, "train", 256)
    rows = []
    for cell in cells:
        for when, model in (("init", _initial_model(config, cell, calibration)),
                            ("trained", _model(config, cell))):
            row = shattering_study({cell["name"]: model}, images, points=SHATTERING_POINTS)[0]
            rows.append({"cell": cell["name"], "residual": cell["residual"],
                         "depth": cell["depth"], "when": when,
                         "neighbour_correlation": row["neighbour_correlation"],
                         "decorrelation_length": row["decorrelation_length"]})
    return rows


def landscape(config, results: dict, data) -> dict | None:
    from reskeras.analysis.landscape import landscape_study
    twins = _twins(results)
    if not twins:
        return None
    images, labels = split_arrays(data, "train", LANDSCAPE_EXAMPLES)
    models = {cell["name"]: _model(config, cell) for cell in twins.values()}
    found = landscape_study(models, images, labels, alphas=np.linspace(-1, 1, 21))
    return {name: {key: found[name][key] for key in ("alphas", "loss", "accuracy", "curvature",
                                                      "roughness", "local_minima", "sharpness",
                                                      "residual")}
            for name in found}


def _timed(log, label: str, function, *args):
    started = time.perf_counter()
    value = function(*args)
    log(f"  {label}: {time.perf_counter() - started:.0f} s")
    return value


def analyse(config, results: dict, data, log=print) -> dict:
    """Fills ``results`` with the analyses and the verdict, writes figures and the report."""
    from reskeras.analysis import plots
    from reskeras.analysis.report import write_report
    from reskeras.analysis.study_plots import write_study_figures

    from reskeras.analysis.cells import group_cells
    from reskeras.analysis.study_measures import cell_measures, identity_task_study

    for name, function in (("lesion", lesions), ("shattering", shattering),
                           ("landscape", landscape)):
        results[name] = _timed(log, name, function, config, results, data) \
            if name in config.analyses else None
    if {"distances", "sharpness"} & set(config.analyses):
        _timed(log, "distances and sharpness", cell_measures, config, results, data)
    results["identity_task"] = _timed(log, "identity task", identity_task_study, config) \
        if "identity_task" in config.analyses else None
    results["groups"] = group_cells(results["cells"])
    results["verdict"] = verdict(results)
    results["criteria"] = results["verdict"]["criteria"]
    results["notes"] = NOTES
    figures_dir = rundir.path(config.out, "figures")
    figures = write_study_figures(results, figures_dir)
    twins = _twins(results)
    if twins:
        runs = [rundir.path(config.out, twins[k]["run_dir"]) for k in ("plain", "residual")]
        for key, function in (("grad_norm_heatmap", plots.plot_grad_norm_heatmap),
                              ("responses", plots.plot_layer_responses)):
            function(runs, rundir.path(figures_dir, f"{key}.png"))
            figures[key] = f"figures/{key}.png"
    write_report(results, config.out, figures)
    rundir.write_json(rundir.path(config.out, "results.json"), results)
    rundir.write_json(rundir.path(config.out, "verdict.json"), results["verdict"])
    return results
