"""ResNetHyperModel: the exact search space, samples -> specs -> reskeras models, the budget,
and the hypermodel under a stock Keras Tuner tuner (Hyperband continuing a trial)."""

import json
import re
import os

import keras_tuner as kt
import numpy as np
import pytest

import reskeras
from reskeras import rundir
from reskeras.specs import resolve_spec
from tuning import ResNetHyperModel
from tuning.budget import Budget, Cost, model_cost

from tests.conftest import trainable_params


def _space(hypermodel):
    return [(type(p).__name__, p.get_config()) for p in
            hypermodel.default_hyperparameters().space]


def test_search_space_is_exact():
    hypermodel = ResNetHyperModel((8, 8, 1), 10, depths=[14, 8], widths=[4, 2],
                                  search_residual=True, version=["v1", "v2"], shortcut="B",
                                  lr=[1e-3, 1e-2], weight_decay=0.0)
    assert _space(hypermodel) == [
        ("Choice", {"name": "depth", "default": 8, "conditions": [], "values": [8, 14],
                    "ordered": True}),
        ("Choice", {"name": "width", "default": 2, "conditions": [], "values": [2, 4],
                    "ordered": True}),
        ("Boolean", {"name": "residual", "default": True, "conditions": []}),
        ("Choice", {"name": "version", "default": "v1", "conditions": [],
                    "values": ["v1", "v2"], "ordered": False}),
        ("Fixed", {"name": "shortcut", "conditions": [], "value": "B"}),
        ("Choice", {"name": "lr", "default": 0.001, "conditions": [], "values": [0.001, 0.01],
                    "ordered": True}),
        ("Fixed", {"name": "weight_decay", "conditions": [], "value": 0.0}),
    ]


def test_default_and_stage_block_spaces():
    assert _space(ResNetHyperModel((32, 32, 3), 10)) == [
        ("Choice", {"name": "depth", "default": 8, "conditions": [],
                    "values": [8, 14, 20, 26, 32], "ordered": True}),
        ("Choice", {"name": "width", "default": 8, "conditions": [], "values": [8, 16, 32],
                    "ordered": True}),
        ("Fixed", {"name": "residual", "conditions": [], "value": True}),
    ]
    imagenet = ResNetHyperModel((64, 64, 3), 5, family="imagenet", residual=False)
    assert [(kind, c["name"], c.get("values", c.get("value"))) for kind, c in _space(imagenet)] \
        == [("Choice", "depth", [18, 34, 50]), ("Choice", "width", [32, 64]),
            ("Fixed", "residual", False)]
    staged = ResNetHyperModel((8, 8, 1), 10, stage_blocks=[3, 1, 2], widths=[4])
    assert [(kind, c["name"], c.get("values", c.get("value"))) for kind, c in _space(staged)] \
        == [("Choice", "stage1_blocks", [1, 2, 3]), ("Choice", "stage2_blocks", [1, 2, 3]),
            ("Choice", "stage3_blocks", [1, 2, 3]), ("Choice", "width", [4]),
            ("Fixed", "residual", True)]
    spec = staged.spec({"stage1_blocks": 3, "stage2_blocks": 1, "stage3_blocks": 2, "width": 4})
    assert spec.depths == (3, 1, 2) and spec.widths == (4, 8, 16) and spec.depth == 14


def test_samples_become_reskeras_specs_and_models():
    hypermodel = ResNetHyperModel((32, 32, 3), 10, depths=[8, 20], widths=[16, 32],
                                  search_residual=True, version=["v1", "v2"], shortcut="B")
    values = {"depth": 20, "width": 16, "residual": False, "version": "v2", "shortcut": "B"}
    assert hypermodel.spec(values) == resolve_spec(20, width=16, residual=False, version="v2",
                                                   shortcut="B")
    hp = hypermodel.default_hyperparameters()
    hp.values.update({"depth": 20, "width": 16, "version": "v1", "shortcut": "A"})
    hypermodel = ResNetHyperModel((32, 32, 3), 10, depths=[20], widths=[16],
                                  search_residual=True)
    model = hypermodel.build(hp)
    reference = reskeras.build_resnet(20)
    assert trainable_params(model) == 269_722  # DESIGN.md's ResNet-20
    assert [layer.name for layer in model.layers] == [layer.name for layer in reference.layers]
    hp.values["residual"] = False
    plain = hypermodel.build(hp)
    assert trainable_params(plain) == 269_722
    assert not any(layer.name.endswith("_add") for layer in plain.layers)


@pytest.mark.parametrize("kwargs, message", [
    ({"depths": [8, 21]}, "`depth` must be 6n+2"),
    ({"depths": []}, "`depths` must be a non-empty list"),
    ({"widths": [0, 4]}, "`widths` must be a non-empty list of positive integers"),
    ({"widths": [4, 4]}, "must not repeat"),
    ({"depths": [8], "stage_blocks": [1]}, "exclude each other"),
    ({"version": ["v1", "v3"]}, "`version` must hold values among"),
    ({"lr": [0.0, 0.1]}, "`lr` must hold positive numbers"),
    ({"family": "mobile"}, "`family` must be one of"),
    ({"train_options": {"arch": {}}}, "`train_options` must name TrainConfig fields"),
    ({"family": "imagenet", "depths": [18, 20]}, "`depth` must be one of 18, 34"),
])
def test_bad_hypermodel_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ResNetHyperModel((32, 32, 3), 10, **kwargs)


def test_cost_counts_parameters_and_multiply_adds_of_the_built_model():
    assert model_cost(resolve_spec(20), (32, 32, 3), 10).params == 269_722
    # ResNet-8 at width 2 on 8x8x1 (option A: no shortcut convs), multiply-adds by hand:
    # stem 8*8*9*1*2 + stage 1 2*(8*8*9*2*2) + stage 2 4*4*9*(2*4 + 4*4)
    # + stage 3 2*2*9*(4*8 + 8*8) + classifier 8*10
    expected = 1152 + 4608 + 3456 + 3456 + 80
    cost = model_cost(resolve_spec(8, width=2), (8, 8, 1), 10)
    assert cost == Cost(params=trainable_params(
        reskeras.build_resnet(8, width=2, input_shape=(8, 8, 1), classes=10)), flops=expected)
    budget = Budget(max_params=cost.params - 1, max_flops=expected)
    assert budget.violation(cost) == f"params {cost.params:,} > max_params {cost.params - 1:,}"
    assert Budget(max_flops=expected - 1).violation(cost).startswith("flops 12,752 >")
    assert Budget().violation(cost) is None
    with pytest.raises(ValueError, match="`max_params` must be a positive integer"):
        Budget(max_params=0)


def _layer_weight_norms(model):
    return {layer.name: float(np.sqrt(sum(np.sum(np.square(w.numpy().astype(np.float64)))
                                          for w in layer.trainable_weights)))
            for layer in model.layers if layer.trainable_weights}


def test_fit_continues_from_the_model_keras_tuner_loaded(tmp_path):
    """What stock Hyperband does for round 1: load the parent's weights into `model`, call
    fit(epochs=3, initial_epoch=2); the run trains 1 epoch starting from those weights."""
    hypermodel = ResNetHyperModel((8, 8, 1), 10, depths=[8], widths=[2], grad_norms_every=100,
                                  train_options={"jit_compile": False})
    hp = hypermodel.default_hyperparameters()
    model = hypermodel.build(hp)
    rng = np.random.default_rng(7)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    expected = _layer_weight_norms(model)
    hp.values.update({"tuner/trial_id": "0", "tuner/epochs": 3, "tuner/initial_epoch": 2})
    history = hypermodel.fit(hp, model, run_dir=str(tmp_path / "run"), epochs=3,
                             initial_epoch=2)
    assert history.epoch == [0] and set(history.history) == {"loss", "accuracy", "val_loss",
                                                              "val_accuracy"}
    with open(tmp_path / "run" / "grad_norms.jsonl") as handle:
        at_start = {r["layer"]: r["weight_norm"] for r in map(json.loads, handle)
                    if r["step"] == 0}
    assert at_start.keys() == expected.keys()
    for name, norm in expected.items():
        assert at_start[name] == pytest.approx(norm, rel=1e-5), name
    with pytest.raises(ValueError, match="`run_dir` must be given"):
        hypermodel.fit(hp, model, epochs=1)
    with pytest.raises(ValueError, match="`epochs` must be an integer above `initial_epoch`"):
        hypermodel.fit(hp, model, run_dir=str(tmp_path / "other"), epochs=2, initial_epoch=2)


@pytest.mark.slow  # about 30 s: four trials of stock Hyperband
def test_stock_hyperband_runs_the_reskeras_trainer_and_continues_trials(tmp_path):
    """kt.Hyperband(ResNetHyperModel(...)): every trial is a reskeras run, and the round-1
    trial starts from the weights Keras Tuner loaded from its parent's best epoch."""
    hypermodel = ResNetHyperModel((8, 8, 1), 10, depths=[8], widths=[2, 3, 4],
                                  grad_norms_every=100, train_options={"jit_compile": False})
    tuner = kt.Hyperband(hypermodel, objective="val_accuracy", max_epochs=3, factor=3,
                         directory=str(tmp_path), project_name="stock", seed=1)
    tuner.oracle.max_trials = 4  # bracket 1 of Hyperband(3, 3): 3 x 1 epoch, then 1 x 3
    tuner.search(verbose=0)
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    assert [t.status for t in trials] == ["COMPLETED"] * 4
    continued = [t for t in trials if "tuner/trial_id" in t.hyperparameters.values]
    assert len(continued) == 1
    child = continued[0]
    parent_id = child.hyperparameters.values["tuner/trial_id"]
    run = os.path.join(tuner.get_trial_dir(child.trial_id), "run")
    config = rundir.read_config(run)
    assert config["arch"] == hypermodel.spec(child.hyperparameters).to_config()
    # tuner/epochs 3 from tuner/initial_epoch 1: two more epochs
    assert [r["epoch"] for r in rundir.read_metrics(run)] == [1, 2]
    assert child.score == max(r["val_accuracy"] for r in rundir.read_metrics(run))
    parent = hypermodel.build(tuner.oracle.get_trial(parent_id).hyperparameters)
    parent.load_weights(os.path.join(tuner.get_trial_dir(parent_id), "checkpoint.weights.h5"))
    expected = _layer_weight_norms(parent)
    with open(os.path.join(run, "grad_norms.jsonl")) as handle:
        at_start = {r["layer"]: r["weight_norm"] for r in map(json.loads, handle)
                    if r["step"] == 0}
    assert at_start.keys() == expected.keys()
    for name, norm in expected.items():
        assert at_start[name] == pytest.approx(norm, rel=1e-5), name
