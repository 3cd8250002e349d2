"""TAT in the study (issue 30): the rate sweeps, the swept cells under two recipes, the C map,
the kernel_shaping hypothesis, end to end on a tiny study, and resumed without retraining."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest

from reskeras.study.cells import SHAPING_FACTORS
from reskeras.study.judgment.rates import pick
from reskeras.study.run import StudyConfig, run_study
from tests.reskeras.conftest import TINY_TAT


def test_each_recipe_sweeps_five_rates_on_the_held_out_seed_and_picks_the_lowest_loss(
        tat_study):
    config, results, lines = tat_study
    assert sorted(results["rate_sweeps"]) == ["adam", "paper"]
    for recipe, base_rate in (("adam", 1e-3), ("paper", 0.1 * 64 / 128)):
        record = results["rate_sweeps"][recipe]["tat"]
        assert (record["net"], record["seeds"], record["budget_steps"], record["factors"]) == (
            "plain14-nobn-tat", [100], 8 * 4, [1.0, 0.3, 0.1, 0.03, 0.01])
        assert record["base_rate"] == pytest.approx(base_rate)
        losses = {float(f): by_seed["100"] for f, by_seed in record["losses"].items()}
        assert sorted(losses) == sorted(SHAPING_FACTORS)
        finite = {f: v for f, v in losses.items() if v is not None and math.isfinite(v)}
        assert record["picked"] == min(finite, key=finite.get)  # the rule, recomputed here
        assert record["picked_rate"] == pytest.approx(record["picked"] * base_rate)
        swept = [line for line in lines if line.startswith(f"[{recipe} sweep tat]")]
        assert len(swept) == 5 and all("-s100: training 32 steps" in line for line in swept)
    # each cell trained now, each to the cap (16 steps): 5 under Adam, 3 under the paper's
    assert [line.split(" at ")[0] for line in lines if "->" in line and "steps" in line] == \
        [" trained -> finished"] * 8


def test_the_swept_cells_train_at_the_picked_rate_under_both_recipes(tat_study):
    config, results, _ = tat_study
    picked = {r: results["rate_sweeps"][r]["tat"]["picked"] for r in ("adam", "paper")}
    adam_tat = [c for c in results["cells"] if c["variant"] == "tat"]
    assert [c["name"] for c in adam_tat] == [f"plain14-nobn-tat-x{picked['adam']:g}-s0"]
    assert adam_tat[0]["lr_factor"] == picked["adam"]
    with open(os.path.join(config.out, adam_tat[0]["run_dir"], "config.json")) as handle:
        saved = json.load(handle)
    assert saved["arch"]["kernel_shaping"] == "tat" and saved["arch"]["batch_norm"] is False
    assert saved["training"]["plan"]["base_lr"] == pytest.approx(picked["adam"] * 1e-3)
    # the shaping-only recipe trains only the comparison: the BN twins and TAT's net
    assert [c["name"] for c in results["shaping"]["paper"]["cells"]] == [
        "plain14-bn-s0", "resnet14-bn-s0", f"plain14-nobn-tat-x{picked['paper']:g}-s0"]
    assert all(c["recipe"] == "paper" and c["run_dir"].startswith("runs/paper/")
               for c in results["shaping"]["paper"]["cells"])
    # the paper's step decay depends on the budget: each budget (8 and 16 steps) a run of its
    # own, where Adam's cells extend one run
    for c in results["shaping"]["paper"]["cells"]:
        assert c["run_dir"] == f"runs/paper/{c['name']}-16steps"
        assert sorted(c["convergence"]["train_errors"], key=int) == ["8", "16"]
        with open(os.path.join(config.out, "runs", "paper", f"{c['name']}-8steps",
                               "config.json")) as handle:
            assert json.load(handle)["training"]["total_steps"] == 8
    assert adam_tat[0]["run_dir"] == f"runs/{adam_tat[0]['name']}"


def test_the_c_map_and_the_hypothesis_are_in_the_verdict(tat_study):
    _, results, _ = tat_study
    rows = results["kernel_map"]
    assert [r["group"] for r in rows] == ["plain14-bn", "resnet14-bn", "plain14-nobn",
                                          f"plain14-nobn-tat-x{rows[3]['cell'].split('-x')[1][:-3]}"]
    assert all([layer["layer"] for layer in r["layers"]] == [
        "input", "stem_relu", *(f"stage{s}_block{b}_out" for s in (1, 2, 3) for b in (1, 2)),
        "head_pool"] for r in rows)
    assert all(-1 <= layer["mean_cosine"] <= 1 for r in rows for layer in r["layers"])
    assert {r["images"] for r in rows} == {256}  # test images (the digits' test split has 360)
    for r in rows:  # the C map, from the inputs to the pooled features
        found = r["layers"][-1]["c_map"]
        assert sorted(found) == ["input_cosine", "output_cosine", "rank_correlation", "spread"]
        assert -1 <= found["rank_correlation"] <= 1 and found["spread"] >= 0
        assert found["input_cosine"] == sorted(found["input_cosine"])  # quantile bins
    found = {row["id"]: row for row in results["verdict"]["hypotheses"]}["kernel_shaping"]
    assert sorted(found["measured"]["recipes"]) == ["adam", "paper"]
    # one seed gives no interval: undecided, and the reason says so
    assert found["verdict"] == "inconclusive"
    for part in found["measured"]["recipes"].values():
        assert part["why_inconclusive"]


def test_a_rerun_reuses_every_sweep_and_cell(tat_study, tmp_path):
    config, results, _ = tat_study
    lines = []
    # a copy of the study continues where it lies (its run directories are relative); the
    # analyses are execution settings, not part of the study's identity (the first run
    # checked them)
    shutil.copytree(config.out, tmp_path / "study")
    again = run_study(StudyConfig.from_preset("quick", str(tmp_path / "study"),
                                              **{**TINY_TAT, "analyses": ()}),
                      log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    assert not [line for line in lines if "sweep" in line]
    # each cell's line (logged in two parts): 5 Adam cells and the paper recipe's 3
    assert [line.split("]")[0] for line in lines if line.startswith("[")] == [
        f"[adam: {n}/5" for n in range(1, 6)] + [f"[paper: {n}/3" for n in range(1, 4)]
    outcomes = [line for line in lines if "->" in line]
    assert len(outcomes) == 8 and all(
        line.startswith(" reused -> finished at 16 steps") for line in outcomes)
    assert again["rate_sweeps"] == results["rate_sweeps"]
    assert [(c["name"], c["final_train_error"], c["final_test_error"]) for c in again["cells"]] \
        == [(c["name"], c["final_train_error"], c["final_test_error"]) for c in results["cells"]]
    assert [c["final_train_error"] for c in again["shaping"]["paper"]["cells"]] == \
        [c["final_train_error"] for c in results["shaping"]["paper"]["cells"]]


def test_pick_excludes_a_rate_with_any_diverged_seed_and_needs_one_left():
    assert pick({1.0: {100: 0.1, 101: None}, 0.1: {100: 0.5, 101: 0.6}})[0] == 0.1
    assert pick({1.0: {100: 0.1, 101: float("nan")}, 0.1: {100: 0.5, 101: 0.6}})[0] == 0.1
    assert pick({1.0: {100: float("inf")}, 0.3: {100: None}}) == (
        None, {"diverged": [1.0, 0.3], "mean_loss": {"1": None, "0.3": None}})
    # the lowest mean over seeds, not the lowest single seed
    assert pick({1.0: {100: 0.01, 101: 0.99}, 0.3: {100: 0.4, 101: 0.4}})[0] == 0.3


def test_the_report_shows_the_sweeps_the_gap_and_the_kernel_map(tat_study):
    config, results, _ = tat_study
    with open(os.path.join(config.out, "report.md")) as handle:
        report = handle.read()
    assert "## Kernel shaping: a plain net with no shortcut and no BatchNorm" in report
    for recipe in ("adam", "paper"):
        record = results["rate_sweeps"][recipe]["tat"]
        picked = f"{record['picked']:g}x"
        edge = record["picked"] in (1.0, 0.01)  # a pick at the sweep's edge says so
        mark = "**picked** (the edge of the sweep)" if edge else "**picked**"
        assert any(line.startswith(f"| {recipe} | plain-14, no BN, TAT kernel shaping | {picked} |")
                   and line.rstrip().endswith(f"| {mark} |") for line in report.splitlines())
    assert "| recipe | TAT rate | plain BN | TAT | plain BN, tuned rate | residual BN |" in report
    assert "figures/kernel_map.png" in report
    assert os.path.getsize(os.path.join(config.out, "figures", "kernel_map.png")) > 10_000
    start = [line for line in report.splitlines() if line.startswith("| plain, no BN, TAT |")]
    assert len(start) == 1 and start[0].count("—") < 5  # the start is measured


def test_a_study_too_shallow_for_tat_runs_without_it_and_says_so(tmp_path):
    # TAT cannot shape plain-8 (7 activations): no sweep, no TAT cell, no shaping-only
    # recipe, and no tuned BN net (TAT's comparison)
    config = StudyConfig.from_preset("quick", str(tmp_path / "study"), depths=(8,), steps=2,
                                     max_doublings=0, seeds=(0,), batch_norm=(True,),
                                     interventions=("tat", "tuned"), analyses=())
    lines = []
    results = run_study(config, log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    assert "TAT skipped: it cannot shape the deepest plain net here (depth 8; it needs 14 " \
        "layers or more, docs/kernel_shaping.md)" in lines
    assert not results["rate_sweeps"]
    assert [c["name"] for c in results["cells"]] == ["plain8-bn-s0", "resnet8-bn-s0"]
    assert not results.get("shaping")
    row = next(r for r in results["verdict"]["hypotheses"] if r["id"] == "kernel_shaping")
    assert (row["verdict"], row["measured"]["why_inconclusive"]) == (
        "inconclusive", "no rate sweep ran (the study has no TAT cells)")
