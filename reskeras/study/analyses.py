"""The study's analyses of its trained cells, then its verdict, figures and report.

After training, :func:`analyse` runs each analysis the config names: lesions
(Veit et al. 2016) and a loss-landscape slice (Li et al. 2018) on the deepest
BatchNorm twins of the first seed, gradient shattering (Balduzzi et al. 2017) on
every BatchNorm depth of the first seed, per-cell measures, and the identity task.
Each measurement lives in :mod:`reskeras.study.measures`; this module picks the
cells, loads their nets and hands the numbers to :mod:`reskeras.study.judgment`
and :mod:`reskeras.study.report`.

Per-cell measures, for every finished cell (``"distances"``):

- ``travelled``: ``||w_T - w_0|| / ||w_0||`` of each conv and dense layer
  (:func:`reskeras.study.measures.distances.distance_travelled`);
- ``identity``: ``||block(x) - x|| / ||x||`` of each shape-preserving block at
  initialization and after training, on test images
  (:func:`reskeras.study.measures.distances.distance_from_identity`).

For the deepest BatchNorm plain and residual twins and the identity-initialized
plain net, on the first ``sharpness_seeds`` deep seeds (``"sharpness"``): the top
eigenvalue of the training loss's Hessian at initialization and after training
(:func:`reskeras.study.measures.sharpness.top_hessian_eigenvalue`, power iteration).

``w_0`` is rebuilt from the run's ``config.json`` and seed exactly as the
trainer built it (tested: the weights are bit-identical). At initialization
BatchNorm's moving statistics are those of no data (mean 0, variance 1), which
makes every inference-mode measure meaningless (sharpness 0.0 for plain-20,
665 for resnet-20, measured); they are first set from training images by
training-mode passes that change no weight, as the shattering analysis does.
"""

from __future__ import annotations

import time

import numpy as np

from reskeras import rundir
from reskeras.study.cells import CONDITIONING, SHAPING_NETS, group_cells, is_twin
from reskeras.study.judgment.verdict import verdict

LANDSCAPE_EXAMPLES = 256
SHATTERING_IMAGES = 2
SHATTERING_POINTS = 64
MEASURE_IMAGES = 256  # test images for the distance from the identity
SHARPNESS_EXAMPLES = 128  # training examples the Hessian's loss averages over
SHARPNESS_ITERATIONS = 20
SHARPNESS_TOLERANCE = 0.01  # 1%: the comparisons are between orders of magnitude
# (residual, batch_norm, variant) of the deepest cells whose Hessian is measured: the BN
# twins, the plain net's isometric starts (the symptoms an intervention must remove, issue
# 27) and TAT's shaped plain net (its symptoms beside the BN plain net's, issue 30)
SHARPNESS_VARIANTS = {(False, True, "he"), (True, True, "he"), (False, True, "dirac"),
                      (False, True, "diracperm"), (False, True, "deltaorth"),
                      (False, False, "tat")}

NOTES = [
    "Training error is measured on the training split without augmentation, after the last "
    "step, in inference mode with BatchNorm statistics recomputed with the final weights "
    "(precise BN; the moving averages lag the weights, and their error is in the cells "
    "table); the curves show the running training error of each epoch (with augmentation, "
    "batch statistics).",
    "The gradient-flow criterion compares two layers (the first and the last conv); a "
    "healthy ratio does not rule out problems in between: the heatmaps and profiles show "
    "every layer.",
    "Every cell trains until it converges by the stated rule or reaches the cap; a net "
    "still improving at the cap might close more of its gap with longer training, and the "
    "verdict names every such net with its last errors. A plateau away from the starting "
    "loss that a net would leave after the next doubling reads as converged.",
    "With few seeds and a small dataset, differences of a few points are within the noise "
    "of a single run.",
    "Lesion, shattering and loss-landscape numbers are measured on the deepest BN twins "
    "(lesion, landscape; the lesions also on the identity-initialized plain net, a plain net "
    "that trained) and on every BN depth (shattering, plus the deepest plain net's isometric "
    "starts) of the first seed only; the Hessian on the first `sharpness_seeds` seeds of the "
    "deepest BN twins and the plain net's isometric starts.",
    "The interventions (identity init and its isometric controls, SkipInit, Fixup, the "
    "learning rates) run at the deepest depth (in `full` and `paper` the inits at every "
    "depth, and the whole learning-rate sweep; `quick` runs 0.1x only, so it cannot refute "
    "`learning_rate`), with the same step budget as the twins; an intervention that fails "
    "here might work with its own tuned recipe (DiracNets and SkipInit papers tune theirs).",
    "Layer responses are read from the last logged record of training (BatchNorm's moving "
    "statistics, every `activations_every` steps), not after precise statistics; after BN "
    "their std mostly reads |gamma|, which Adam moves little in these budgets.",
    "A flag or a hypothesis is yes/no (supported/refuted) only when the 95% interval over "
    "seeds lies wholly on one side of its threshold and none of its measured inputs is "
    "missing; otherwise it reads 'inconclusive', with why. The identity task is decided from "
    "per-seed agreement, ensemble and shattering from the first seed.",
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


def initial_model(config, cell: dict, calibration: np.ndarray):
    """The cell's network at initialization, its BN statistics set from the data.

    With the initial moving statistics (mean 0, variance 1) inference-mode BN is
    nearly the identity and a deep residual stream grows until the softmax
    saturates. Each layer's statistics are set to those of ``calibration`` as it
    reaches the layer in training mode (:func:`reskeras.precise_bn.population_statistics`
    over one batch), without any weight update; afterwards the model computes the same
    function in inference and in training mode on that batch.
    """
    from reskeras._backend import keras
    from reskeras.precise_bn import assign_statistics, population_statistics
    from reskeras.train import build_run_model
    keras.utils.set_random_seed(cell["seed"])
    model = build_run_model(rundir.read_config(rundir.path(config.out, cell["run_dir"])))
    if cell["batch_norm"]:
        assign_statistics(model, population_statistics(model, [calibration]))
    return model


def trained_model(config, cell: dict):
    import reskeras  # noqa: F401
    from reskeras._backend import keras
    return keras.models.load_model(
        rundir.path(rundir.path(config.out, cell["run_dir"]), rundir.MODEL), compile=False)


def _identity_plain(results: dict, twins: dict) -> dict | None:
    """The identity-initialized plain BN cell of the twins' depth and seed, when it finished:
    a plain net that trained, for the ensemble test to compare with."""
    plain = twins["plain"]
    return next((c for c in results["cells"]
                 if c.get("variant") == "dirac" and not c["residual"] and c["batch_norm"]
                 and c["depth"] == plain["depth"] and c["seed"] == plain["seed"]
                 and c["status"] == "finished"), None)


def lesions(config, results: dict, data) -> dict | None:
    """Lesions of the deepest BN twins of the first seed and of the identity-initialized
    plain net of the same depth and seed (``"plain_identity"``), when it ran."""
    from reskeras.study.measures.lesion import lesion_study
    twins = _twins(results)
    if not twins:
        return None
    identity = _identity_plain(results, twins)
    if identity is not None:
        twins = {**twins, "plain_identity": identity}
    images, labels = split_arrays(data, "test", 10**9)
    return {kind: {"cell": cell["name"],
                   **lesion_study(trained_model(config, cell), images, labels)}
            for kind, cell in twins.items()}


def _shattering_rows(config, cells: list[dict], data) -> list[dict]:
    from reskeras.study.measures.shattering import shattering_study
    images, _ = split_arrays(data, "test", SHATTERING_IMAGES)
    calibration, _ = split_arrays(data, "train", 256)
    rows = []
    for cell in cells:
        for when, model in (("init", initial_model(config, cell, calibration)),
                            ("trained", trained_model(config, cell))):
            row = shattering_study({cell["name"]: model}, images, points=SHATTERING_POINTS)[0]
            rows.append({"cell": cell["name"], "residual": cell["residual"],
                         "batch_norm": cell["batch_norm"], "depth": cell["depth"], "when": when,
                         "neighbour_correlation": row["neighbour_correlation"],
                         "decorrelation_length": row["decorrelation_length"],
                         "variant": cell.get("variant", "he")})
    return rows


def shattering(config, results: dict, data) -> list[dict] | None:
    """Shattering of every BN twin of the first seed, at initialization and trained."""
    seed = min(c["seed"] for c in results["cells"])
    cells = [c for c in results["cells"] if c["batch_norm"] and c["seed"] == seed
             and c["status"] == "finished" and is_twin(c)]
    return _shattering_rows(config, cells, data) if cells else None


def shattering_controls(config, results: dict, data) -> list[dict] | None:
    """Shattering of the deepest plain BN net's isometric starts (identity, permuted
    identity, delta-orthogonal) and of TAT's shaped plain net, of the first seed: does the
    start that trains remove it?"""
    seed = min(c["seed"] for c in results["cells"])
    deepest = max(c["depth"] for c in results["cells"])
    cells = [c for c in results["cells"] if c["seed"] == seed
             and c["status"] == "finished" and c["depth"] == deepest and not c["residual"]
             and (c["batch_norm"], c.get("variant", "he")) in _STARTS]
    return _shattering_rows(config, cells, data) if cells else None


# the deepest plain starts whose symptoms at initialization are measured (batch_norm, variant)
_STARTS = {(True, v) for v in CONDITIONING} | {(False, "tat")}
# the deepest nets whose kernel (C map) is measured at initialization: (residual, bn, variant)
KERNEL_MAP_NETS = tuple(SHAPING_NETS.values())
KERNEL_MAP_IMAGES = 256


def kernel_maps(config, results: dict, data) -> list[dict] | None:
    """The C map at initialization (:mod:`reskeras.study.measures.kernel_map`) of the
    deepest BN twins, the plain net without BN and TAT's net, first seed."""
    from reskeras.study.measures.kernel_map import kernel_map

    seed = min(c["seed"] for c in results["cells"])
    deepest = max(c["depth"] for c in results["cells"])
    images, _ = split_arrays(data, "test", KERNEL_MAP_IMAGES)
    rows = []
    for residual, batch_norm, variant in KERNEL_MAP_NETS:
        for cell in results["cells"]:
            if (cell["residual"], cell["batch_norm"], cell.get("variant", "he"), cell["depth"],
                    cell["seed"], cell["status"]) == (residual, batch_norm, variant, deepest,
                                                      seed, "finished"):
                layers = kernel_map(initial_model(config, cell, images), images)
                rows.append({"cell": cell["name"], "group": cell["group"],
                             "residual": residual, "batch_norm": batch_norm,
                             "variant": variant, "depth": deepest, "seed": seed,
                             "images": len(images),
                             "layers": layers, "final": layers[-1]["mean_cosine"]})
    return rows or None


def landscape(config, results: dict, data) -> dict | None:
    from reskeras.study.measures.landscape import landscape_study
    twins = _twins(results)
    if not twins:
        return None
    images, labels = split_arrays(data, "train", LANDSCAPE_EXAMPLES)
    models = {cell["name"]: trained_model(config, cell) for cell in twins.values()}
    found = landscape_study(models, images, labels, alphas=np.linspace(-1, 1, 21))
    return {name: {key: found[name][key] for key in ("alphas", "loss", "accuracy", "curvature",
                                                      "roughness", "local_minima", "sharpness",
                                                      "residual")}
            for name in found}


def _weighted_layers(model) -> set[str]:
    from reskeras._backend import keras
    return {layer.name for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))}


def _travelled(initial, final) -> list[dict]:
    from reskeras.study.measures.distances import distance_travelled
    kept = _weighted_layers(final)
    return [{"layer": row["layer"], "relative": row["relative"]}
            for row in distance_travelled(initial, final) if row["layer"] in kept]


def _identity(initial, final, images) -> list[dict]:
    from reskeras.study.measures.distances import distance_from_identity
    start = {row["block"]: row["distance"] for row in distance_from_identity(initial, images)}
    return [{"block": row["block"], "init": start.get(row["block"]), "final": row["distance"]}
            for row in distance_from_identity(final, images)]


def _sharpness(model, images, labels, when: str) -> dict:
    """``{when: raw top eigenvalue, when_converged, when_invariant, when_invariant_converged}``
    (an eigenvalue that is not finite is ``None``; a net without BN has no scale-invariant
    value: ``None``, and its raw eigenvalue is the one to read)."""
    from reskeras.study.measures.sharpness import (bn_preceded_kernels,
                                                   scale_invariant_sharpness,
                                                   top_hessian_eigenvalue)
    found = {}
    for key, measure in ((when, top_hessian_eigenvalue),
                         (f"{when}_invariant", scale_invariant_sharpness)):
        if measure is scale_invariant_sharpness and not bn_preceded_kernels(model):
            found[key], found[f"{key}_converged"] = None, None
            continue
        value = measure(model, images, labels, iterations=SHARPNESS_ITERATIONS,
                        tolerance=SHARPNESS_TOLERANCE)
        found[key] = value["eigenvalue"] if np.isfinite(value["eigenvalue"]) else None
        found[f"{key}_converged"] = bool(value["converged"])
    return found


def sharpness_cells(config, cells: list[dict]) -> set[str]:
    """Names of the cells whose Hessian is measured (see the module docstring)."""
    deepest = max(config.depths)
    seeds = sorted(config.deep_seeds)[:config.sharpness_seeds]
    return {c["name"] for c in cells
            if c["depth"] == deepest and c["seed"] in seeds
            and (c["residual"], c["batch_norm"], c.get("variant", "he")) in SHARPNESS_VARIANTS}


def cell_measures(config, results: dict, data) -> None:
    """Sets ``cell["measures"]`` of every finished cell (``None`` for the others)."""
    measure_images, _ = split_arrays(data, "test", MEASURE_IMAGES)
    train_images, train_labels = split_arrays(data, "train", SHARPNESS_EXAMPLES)
    hessian = sharpness_cells(config, results["cells"]) if "sharpness" in config.analyses \
        else set()
    for cell in results["cells"]:
        if cell["status"] != "finished" or not ("distances" in config.analyses
                                                or cell["name"] in hessian):
            continue
        initial = initial_model(config, cell, train_images)
        final = trained_model(config, cell)
        measures = {"travelled": None, "identity": None, "sharpness": None}
        if "distances" in config.analyses:
            measures["travelled"] = _travelled(initial, final)
            measures["identity"] = _identity(initial, final, measure_images)
        if cell["name"] in hessian:
            measures["sharpness"] = {
                **_sharpness(initial, train_images, train_labels, "init"),
                **_sharpness(final, train_images, train_labels, "final")}
        if any(value is not None for value in measures.values()):
            cell["measures"] = measures


def _start_key(cell: dict) -> tuple:
    """What fixes a cell's start: its net and seed (not its recipe or learning rate)."""
    return (cell["residual"], cell["depth"], cell["batch_norm"], cell.get("variant", "he"),
            cell["seed"])


def _start_distances(cell: dict) -> list[dict] | None:
    """A cell's distances from the identity at initialization only (``final`` left out)."""
    rows = (cell.get("measures") or {}).get("identity")
    return [{"block": r["block"], "init": r["init"], "final": None} for r in rows] \
        if rows else None


def identity_task_study(config) -> dict | None:
    """The identity task at the preset's depths and seeds (``None`` when skipped)."""
    if "identity_task" not in config.analyses:
        return None
    from reskeras.study.measures.identity_task import identity_task
    settings = dict(config.identity_task)
    return identity_task(depths=tuple(settings.pop("depths")),
                         seeds=tuple(settings.pop("seeds")), **settings)


def analyse(config, results: dict, data, log=print, timings: dict | None = None) -> dict:
    """Fills ``results`` with the analyses and the verdict, writes figures and the report.

    ``timings`` receives the seconds of each analysis, by name.
    """
    timings = {} if timings is None else timings

    def timed(label: str, function, *args):
        started = time.perf_counter()
        value = function(*args)
        timings[label] = time.perf_counter() - started
        log(f"  {label}: {timings[label]:.0f} s")
        return value

    for name, function in (("lesion", lesions), ("shattering", shattering),
                           ("landscape", landscape)):
        results[name] = timed(name, function, config, results, data) \
            if name in config.analyses else None
    results["shattering_controls"] = timed(
        "shattering of the controls", shattering_controls, config, results, data) \
        if "shattering" in config.analyses else None
    results["kernel_map"] = timed("kernel map", kernel_maps, config, results, data) \
        if "kernel_map" in config.analyses else None
    if {"distances", "sharpness"} & set(config.analyses):
        timed("distances and sharpness", cell_measures, config, results, data)
    results["identity_task"] = timed("identity task", identity_task_study, config) \
        if "identity_task" in config.analyses else None
    return judge(config, results, timings)


def judge(config, results: dict, timings: dict | None = None) -> dict:
    """The verdict, the recipes' comparison, the figures and the report of measured
    ``results``; writes ``results.json``, ``verdict.json``, ``figures/`` and the report."""
    from reskeras.analysis import plots
    from reskeras.study.report.writer import write_report
    from reskeras.study.report.figures import write_study_figures

    timings = {} if timings is None else timings
    results["groups"] = group_cells(results["cells"])
    results["verdict"] = verdict(results)
    compared = results.get("compared") or {}
    if compared:
        from reskeras.study.judgment.recipes import decisions, differences

        verdicts = {results["recipe"]: results["verdict"]}
        starts = {_start_key(c): _start_distances(c) for c in results["cells"]}
        for recipe, part in compared.items():
            for cell in part["cells"]:  # the same init and seed under every recipe
                if not cell.get("measures") and starts.get(_start_key(cell)):
                    cell["measures"] = {"travelled": None, "sharpness": None,
                                        "identity": starts[_start_key(cell)]}
            # the analyses that reload nets ran on the first recipe only
            part["verdict"] = verdicts[recipe] = verdict({
                **results, "cells": part["cells"], "recipe": recipe, "lesion": None,
                "shattering": None, "landscape": None, "identity_task": None})
            part["groups"] = group_cells(part["cells"])
        results["verdict"]["recipes"] = {r: decisions(v) for r, v in verdicts.items()}
        results["verdict"]["recipe_differences"] = differences(verdicts)
    results["criteria"] = results["verdict"]["criteria"]
    results["notes"] = NOTES
    figures_dir = rundir.path(config.out, "figures")
    started = time.perf_counter()
    figures = write_study_figures(results, figures_dir)
    twins = _twins(results)
    if twins:
        runs = [rundir.path(config.out, twins[k]["run_dir"]) for k in ("plain", "residual")]
        for key, function in (("grad_norm_heatmap", plots.plot_grad_norm_heatmap),
                              ("responses", plots.plot_layer_responses)):
            function(runs, rundir.path(figures_dir, f"{key}.png"))
            figures[key] = f"figures/{key}.png"
    timings["figures"] = time.perf_counter() - started
    write_report(results, config.out, figures)
    rundir.write_json(rundir.path(config.out, "results.json"), results)
    rundir.write_json(rundir.path(config.out, "verdict.json"), results["verdict"])
    return results

