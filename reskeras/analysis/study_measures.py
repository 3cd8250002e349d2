"""The study's per-cell measures behind the *why* (issue 18, item 3), and the identity task.

For every finished cell (``"distances"``):

- ``travelled``: ``||w_T - w_0|| / ||w_0||`` of each conv and dense layer
  (:func:`reskeras.analysis.distances.distance_travelled`);
- ``identity``: ``||block(x) - x|| / ||x||`` of each shape-preserving block at
  initialization and after training, on test images
  (:func:`reskeras.analysis.distances.distance_from_identity`).

For the deepest BatchNorm plain and residual twins and the identity-initialized
plain net, on the first ``sharpness_seeds`` deep seeds (``"sharpness"``): the top
eigenvalue of the training loss's Hessian at initialization and after training
(:func:`reskeras.analysis.sharpness.top_hessian_eigenvalue`, power iteration).

``w_0`` is rebuilt from the run's ``config.json`` and seed exactly as the
trainer built it (tested: the weights are bit-identical). At initialization
BatchNorm's moving statistics are those of no data (mean 0, variance 1), which
makes every inference-mode measure meaningless (sharpness 0.0 for plain-20,
665 for resnet-20, measured); they are first set from training images by
training-mode passes that change no weight, as the shattering analysis does.
"""

from __future__ import annotations

import numpy as np

from reskeras.analysis.study_analyses import _initial_model, _model, split_arrays

MEASURE_IMAGES = 256  # test images for the distance from the identity
SHARPNESS_EXAMPLES = 128  # training examples the Hessian's loss averages over
SHARPNESS_ITERATIONS = 20
SHARPNESS_TOLERANCE = 0.01  # 1%: the comparisons are between orders of magnitude
SHARPNESS_VARIANTS = {(False, "he"), (True, "he"), (False, "dirac")}  # (residual, variant), BN


def _weighted_layers(model) -> set[str]:
    from reskeras._backend import keras
    return {layer.name for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))}


def _travelled(initial, final) -> list[dict]:
    from reskeras.analysis.distances import distance_travelled
    kept = _weighted_layers(final)
    return [{"layer": row["layer"], "relative": row["relative"]}
            for row in distance_travelled(initial, final) if row["layer"] in kept]


def _identity(initial, final, images) -> list[dict]:
    from reskeras.analysis.distances import distance_from_identity
    start = {row["block"]: row["distance"] for row in distance_from_identity(initial, images)}
    return [{"block": row["block"], "init": start.get(row["block"]), "final": row["distance"]}
            for row in distance_from_identity(final, images)]


def _sharpness(model, images, labels) -> float | None:
    from reskeras.analysis.sharpness import top_hessian_eigenvalue
    value = top_hessian_eigenvalue(model, images, labels, iterations=SHARPNESS_ITERATIONS,
                                   tolerance=SHARPNESS_TOLERANCE)
    return value["eigenvalue"] if np.isfinite(value["eigenvalue"]) else None


def sharpness_cells(config, cells: list[dict]) -> set[str]:
    """Names of the cells whose Hessian is measured (see the module docstring)."""
    deepest = max(config.depths)
    seeds = sorted(config.deep_seeds)[:config.sharpness_seeds]
    return {c["name"] for c in cells
            if c["depth"] == deepest and c["batch_norm"] and c["seed"] in seeds
            and (c["residual"], c.get("variant", "he")) in SHARPNESS_VARIANTS}


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
        initial = _initial_model(config, cell, train_images)
        final = _model(config, cell)
        measures = {"travelled": None, "identity": None, "sharpness": None}
        if "distances" in config.analyses:
            measures["travelled"] = _travelled(initial, final)
            measures["identity"] = _identity(initial, final, measure_images)
        if cell["name"] in hessian:
            measures["sharpness"] = {
                "init": _sharpness(initial, train_images, train_labels),
                "final": _sharpness(final, train_images, train_labels)}
        if any(value is not None for value in measures.values()):
            cell["measures"] = measures


def identity_task_study(config) -> dict | None:
    """The identity task at the preset's depths and seeds (``None`` when skipped)."""
    if "identity_task" not in config.analyses:
        return None
    from reskeras.analysis.identity_task import identity_task
    settings = dict(config.identity_task)
    return identity_task(depths=tuple(settings.pop("depths")),
                         seeds=tuple(settings.pop("seeds")), **settings)


__all__ = ["cell_measures", "identity_task_study", "sharpness_cells"]
