"""The study: criteria on constructed records, a tiny grid end to end, resume, bad input."""

import csv
import json
import os

import numpy as np
import pytest

from reskeras.study.measures.gradient_flow import classify, conv_layers, gradient_summary
from reskeras.study.cells import INTERVENTIONS
from reskeras.study.judgment.recipes import TRAINING_HYPOTHESES
from reskeras.study.run import Cell, StudyConfig, grid, run_study, shaping_grid
from reskeras.study.judgment.verdict import verdict
from reskeras.cli import main
from reskeras.commands.study import _export_best

CONVS = ["stem_conv"] + [f"stage{s}_block1_conv{k}" for s in (1, 2, 3) for k in (1, 2)]


def records(first_to_last, steps=(0, 10, 20)):
    """grad_norms.jsonl records whose conv norms fall geometrically by ``first_to_last``."""
    out = []
    for step in steps:
        index = 0
        for i, name in enumerate(CONVS):
            norm = first_to_last ** (1 - i / (len(CONVS) - 1))
            # unit weight norms: the relative norm ||g||/||w|| equals the raw one
            out.append({"step": step, "layer": name, "index": index, "grad_norm": norm,
                        "ratio": norm})
            out.append({"step": step, "layer": name.replace("conv", "bn"), "index": index + 1,
                        "grad_norm": 5.0})
            index += 2
        out.append({"step": step, "layer": "predictions", "index": index, "grad_norm": 9.0})
    return out


def test_constructed_records_read_as_vanishing_healthy_and_exploding():
    vanishing = gradient_summary(records(1e-3))
    assert vanishing["state"] == "vanishing"
    assert vanishing["first_last_ratio_median"] == pytest.approx(1e-3)
    assert vanishing["log10_slope_init"] == pytest.approx(3.0)  # norms grow towards the output
    exploding = gradient_summary(records(1e3))
    assert exploding["state"] == "exploding" and exploding["exploding_at_init"] is True
    assert gradient_summary(records(2.0))["state"] == "healthy"
    assert [classify(r) for r in (None, 0.009, 0.01, 100.0, 101.0)] == \
        ["unknown", "vanishing", "healthy", "healthy", "exploding"]
    nan = records(1.0)
    for r in nan:
        if r["layer"] == "stem_conv":
            r["ratio"] = None
    assert gradient_summary(nan)["state"] == "unknown"
    # the labels read the relative norms ||g||/||w||: raw norms alone classify nothing
    raw = records(1e-3)
    for r in raw:
        r.pop("ratio", None)
    assert (gradient_summary(raw)["state"], gradient_summary(raw)["exploding_at_init"]) == \
        ("unknown", None)
    assert gradient_summary(raw)["first_last_ratio_median"] == pytest.approx(1e-3)



def test_relative_ratio_divides_each_norm_by_its_weight_norm():
    """||g||/||w|| of the stem over the last conv's: a stem with 100x smaller weights
    has a 100x larger relative ratio than raw; records without weight norms give None."""
    constructed = records(1e-3, steps=(0, 8, 16))
    for r in constructed:
        weight_norm = 0.01 if r["layer"] == "stem_conv" else 1.0
        r["weight_norm"], r["ratio"] = weight_norm, r["grad_norm"] / weight_norm
    summary = gradient_summary(constructed)
    assert summary["first_last_ratio_median"] == pytest.approx(1e-3)
    assert summary["relative_first_last_ratio_median"] == pytest.approx(1e-1)
    assert summary["relative_first_last_ratio_init"] == pytest.approx(1e-1)
    # the labels read the relative ratio: 1e-3 raw is vanishing, 0.1 relative is not
    assert (summary["state"], summary["exploding_at_init"]) == ("healthy", False)
    late = [r for r in constructed if r["step"] > 0]  # step 0 not logged: no init value
    assert gradient_summary(late)["relative_first_last_ratio_init"] is None
    bare = gradient_summary([{k: v for k, v in r.items() if k != "ratio"}
                             for r in records(1e-3)])
    assert (bare["relative_first_last_ratio_init"], bare["relative_first_last_ratio_median"]) \
        == (None, None)

def cell(residual, depth, bn, error, ratio, status="finished", seed=0):
    summary = gradient_summary(records(ratio))
    return {"name": Cell(residual, depth, bn, seed).name, "residual": residual, "depth": depth,
            "batch_norm": bn, "seed": seed, "status": status,
            "final_train_error": None if status != "finished" else error,
            "gradient": summary}


def seeds3(residual, depth, bn, error, ratio, status="finished"):
    """Three seeds of one cell, errors 0.1 points apart (an interval of width ~0.5 points)."""
    return [cell(residual, depth, bn, None if error is None else error + 0.001 * (s - 1),
                 ratio * (1 + 0.01 * s), status, seed=s) for s in range(3)]


def test_verdict_criteria_on_constructed_results():
    results = {"cells": [
        *seeds3(False, 8, True, 0.01, 1.5), *seeds3(False, 56, True, 0.86, 2.0),  # degrades
        *seeds3(True, 8, True, 0.01, 1.0), *seeds3(True, 56, True, 0.02, 1.2),    # +1 point: no
        *seeds3(False, 8, False, 0.02, 0.5), *seeds3(False, 56, False, None, 1e-4, "diverged"),
        *seeds3(True, 8, False, 0.03, 1.0), *seeds3(True, 56, False, 0.05, 1e3)]}
    found = verdict(results)
    assert {k: v for k, v in found["degradation"].items() if k != "numbers"} == \
        {"plain": True, "residual": False, "plain_no_bn": True, "residual_no_bn": False}
    assert found["degradation"]["numbers"]["plain"]["points"] == pytest.approx(85.0)
    assert found["degradation"]["numbers"]["plain"]["interval_method"] == "t"
    # one seed gives no interval: every flag is inconclusive, and says why
    one = verdict({"cells": [c for c in results["cells"] if c["seed"] == 0]})
    assert {k: v for k, v in one["degradation"].items() if k != "numbers"} == \
        dict.fromkeys(("plain", "residual", "plain_no_bn", "residual_no_bn"), "inconclusive")
    assert one["degradation"]["numbers"]["plain"]["why_inconclusive"] == \
        "fewer than two seeds with both nets measured: no interval"
    assert found["vanishing_gradients"] == {"plain_bn": False, "residual_bn": False,
                                            "plain_no_bn": True, "residual_no_bn": False}
    assert found["exploding_at_init"]["residual_no_bn"] is True
    assert found["exploding_at_init"]["plain_bn"] is False
    assert "degradation that vanishing gradients do not explain" in found["answer"]
    assert "the 56-layer plain net diverged" in found["answer"]



def test_verdict_reports_the_relative_ratio_beside_the_raw_one():
    """gradient_numbers[family] holds the relative first/last ratio's median over seeds and
    the t-interval of its log10, next to the raw ratio's; the flags read the raw one."""
    cells = seeds3(False, 8, True, 0.01, 1.5) + seeds3(False, 56, True, 0.86, 2.0)
    for c, scale in zip(cells[3:], (10.0, 20.0, 40.0)):  # the stem's ||w||: 1/scale of the last
        rows = records(c["gradient"]["first_last_ratio_median"])
        for r in rows:
            r["ratio"] = r["grad_norm"] * (scale if r["layer"] == "stem_conv" else 1.0)
        c["gradient"] = gradient_summary(rows)
    numbers = verdict({"cells": cells})["gradient_numbers"]["plain_bn"]
    relative = [2.0 * 10, 2.02 * 20, 2.04 * 40]
    assert numbers["relative_first_last_ratio_median"] == pytest.approx(np.median(relative))
    logs = np.log10(relative)
    half = 4.302653 * logs.std(ddof=1) / np.sqrt(3)  # t(0.975, 2)
    assert numbers["log10_relative_ratio_interval"] == pytest.approx(
        [logs.mean() - half, logs.mean() + half], rel=1e-6)
    assert numbers["first_last_ratio_median"] == pytest.approx(2.02)
    # the constructed norms do not move with the step: the same interval at step 0
    assert numbers["log10_relative_ratio_init_interval"] == pytest.approx(
        numbers["log10_relative_ratio_interval"])

def _with_gap(entry, gap_points):
    precise = entry["final_train_error"]
    ema = precise + gap_points / 100
    return {**entry, "errors": {"steps": 88, "train": {"ema": ema, "batch": precise,
                                                       "precise": precise},
                                "test": {"ema": ema, "precise": precise},
                                "bn_statistics_gap": gap_points}}


@pytest.mark.parametrize("gap, above", [(1.8, False), (2.0, False), (2.2, True)])
def test_the_answer_names_a_statistics_gap_above_the_degradation_threshold(gap, above):
    """The moving averages' share is reported when it alone could move a flag: a gap above
    DEGRADATION_POINTS (2) in a cell a flag reads. 1.8 and 2.2 pin the threshold to 10%."""
    dirac = {**cell(False, 56, True, 0.05, 2.0), "name": "plain56-bn-dirac-s0",
             "variant": "dirac"}
    results = {"cells": [
        _with_gap(cell(False, 8, True, 0.01, 1.5), 0.0),
        _with_gap(cell(False, 56, True, 0.40, 2.0), gap),
        _with_gap(cell(True, 8, True, 0.01, 1.0), 0.5), _with_gap(cell(True, 56, True, 0.02, 1.2),
                                                                 1.0),
        _with_gap(dirac, 30.0)]}  # an intervention: no flag reads it
    found = verdict(results)
    assert found["bn_statistics_gap"]["points"] == {
        "plain8-bn-s0": 0.0, "plain56-bn-s0": gap, "resnet8-bn-s0": 0.5, "resnet56-bn-s0": 1.0,
        "plain56-bn-dirac-s0": 30.0}
    assert found["bn_statistics_gap"]["above_threshold"] == (["plain56-bn-s0"] if above else [])
    assert found["errors"]["plain56-bn-s0"]["train"]["ema"] == pytest.approx(0.40 + gap / 100)
    sentence = (f"BatchNorm's moving averages would have added {gap:.1f} points to the training "
                f"error of plain56-bn-s0 ({100 * (0.40 + gap / 100):.1f}% with them, 40.0% with "
                "precise statistics); every error here uses precise statistics.")
    assert (sentence in found["answer"]) is above
    assert found["criteria"]["train_error"] == "precise"


def test_grid_and_presets():
    config = StudyConfig.from_preset("quick", "x")
    names = [c.name for c in grid(config)]
    assert names[:4] == ["plain8-bn-s0", "resnet8-bn-s0", "plain8-bn-s1", "resnet8-bn-s1"]
    # 3 seeds of every cell, the interventions (at depth 56) included
    assert names[-10:] == [
        "plain56-nobn-dirac-s1", "plain56-nobn-diracperm-s1", "plain56-nobn-deltaorth-s1",
        "resnet56-nobn-skipinit-s1", "resnet56-nobn-fixup-s1",
        "plain56-nobn-dirac-s2", "plain56-nobn-diracperm-s2", "plain56-nobn-deltaorth-s2",
        "resnet56-nobn-skipinit-s2", "resnet56-nobn-fixup-s2"]
    # BN at depth 56: the identity init, its two isometric controls, 0.1x the rate and the
    # twins without augmentation; no BN: the three inits, SkipInit and Fixup (the rest of
    # the rate sweep: full only). TAT and the tuned BN net wait for their sweeps' picks
    assert len(names) == 3 * 4 * 3 + (4 + 2 + 5) * 3 == len(set(names))
    assert {c.variant for c in grid(config)} == {"he", "dirac", "diracperm", "deltaorth",
                                                 "skipinit", "fixup", "lr0.1", "noaug"}
    picked = grid(config, {"tat": 0.03, "tuned": 0.3})
    assert [c.name for c in picked if c.variant in ("tat", "tat-noaug", "tuned")] == [
        "plain56-bn-tuned-x0.3-s0", "plain56-bn-tuned-x0.3-s1", "plain56-bn-tuned-x0.3-s2",
        "plain56-nobn-tat-x0.03-s0", "plain56-nobn-tat-noaug-x0.03-s0",
        "plain56-nobn-tat-x0.03-s1", "plain56-nobn-tat-noaug-x0.03-s1",
        "plain56-nobn-tat-x0.03-s2", "plain56-nobn-tat-noaug-x0.03-s2"]
    # a tuned pick of the recipe's own rate is the plain net itself: no cells of its own
    assert not [c for c in grid(config, {"tat": 0.03, "tuned": 1.0}) if c.variant == "tuned"]
    # the shaping-only recipe (the paper's SGD in quick): the BN twins, the tuned net, TAT
    assert config.shaping_recipes == ("paper",) and config.sweep_seeds == (100, 101, 102)
    assert [c.name for c in shaping_grid(config, {"tat": 0.01, "tuned": 0.1})] == [
        "plain56-bn-s0", "resnet56-bn-s0", "plain56-bn-s1", "resnet56-bn-s1", "plain56-bn-s2",
        "resnet56-bn-s2", "plain56-bn-tuned-x0.1-s0", "plain56-bn-tuned-x0.1-s1",
        "plain56-bn-tuned-x0.1-s2", "plain56-nobn-tat-x0.01-s0", "plain56-nobn-tat-x0.01-s1",
        "plain56-nobn-tat-x0.01-s2"]
    # the base budget of 8 epochs (88 steps), doubled up to 4 times: the cap is 1,408 steps
    assert (config.recipe, config.epochs, config.max_doublings, config.compare_recipes) == \
        ("adam", 8, 4, ())
    full = StudyConfig.from_preset("full", "z")
    # full: the whole rate sweep at depth 56, the three inits at every depth, TAT at every
    # depth it can shape (not 8: 7 activations cannot reach C(0) = 0.9)
    assert (full.dataset, full.depths, full.seeds, full.deep_seeds, full.intervention_seeds,
            len(grid(full))) == ("digits", (8, 20, 32, 44, 56), (0, 1, 2, 3, 4),
                                 (0, 1, 2, 3, 4), (0, 1, 2, 3, 4),
                                 5 * 4 * 5 + (7 + 2 + 5) * 5 + 4 * 3 * 2 * 5)
    assert len(grid(full, {"tat": 0.1, "tuned": 0.3})) == len(grid(full)) + (1 + 1) * 5 + 4 * 5
    assert {c.depth for c in grid(full, {"tat": 0.1}) if c.variant == "tat"} == {20, 32, 44, 56}
    assert {c.depth for c in grid(full) if c.variant == "deltaorth"} == set(full.depths)
    assert {c.depth for c in grid(full) if c.variant in ("lr3", "fixup")} == {56}
    assert (full.recipe, full.compare_recipes, full.max_doublings) == ("adam", ("paper",), 5)
    paper = StudyConfig.from_preset("paper", "y")
    assert (paper.dataset, paper.depths, paper.steps, paper.max_doublings, len(grid(paper))) == \
        ("cifar10", (20, 32, 44, 56, 110), 4000, 4,
         5 * 4 * 3 + 14 * 3 + 4 * 3 * 2 * 3)
    assert paper.shaping_recipes == ("adam",)
    assert paper.steps * 2 ** paper.max_doublings == 64000  # the paper's budget is the cap
    assert {c.variant for c in grid(paper, {"tat": 0.1, "tuned": 0.3})} == {"he", *INTERVENTIONS}
    # --seeds N: N seeds of every cell; no interventions: the twins only
    two = StudyConfig.from_preset("quick", "w", seeds=(0, 1), interventions=())
    assert len(grid(two)) == 3 * 4 * 2


def test_intervention_cells_train_with_their_change(monkeypatch):
    from reskeras import train as train_module
    seen = {}

    def fake_train(config, **kwargs):
        seen[config.out.rsplit("/", 1)[-1]] = config
        raise train_module.TrainingDiverged("stop", 0, config.out)

    monkeypatch.setattr(train_module, "train", fake_train)
    config = StudyConfig.from_preset("quick", "/nonexistent/s", depths=(8,))
    from reskeras.study.run import train_cell
    for cell in grid(config):
        assert train_cell(config, cell) == ("diverged", None)
    assert (seen["plain8-bn-dirac-s0"].init, seen["plain8-bn-dirac-s0"].plain) == ("dirac", True)
    assert seen["plain8-nobn-dirac-s0"].batch_norm is False
    skip = seen["resnet8-nobn-skipinit-s0"]
    assert (skip.branch_scale, skip.plain, skip.batch_norm) == (0.0, False, False)
    assert seen["plain8-bn-lr0.1-s0"].lr == pytest.approx(1e-4)  # Adam's 1e-3 / 10
    assert [seen[f"plain8-{bn}-{v}-s1"].init for bn in ("bn", "nobn")
            for v in ("diracperm", "deltaorth")] == ["dirac_permuted", "delta_orthogonal"] * 2
    fixup = seen["resnet8-nobn-fixup-s2"]
    assert (fixup.init, fixup.plain, fixup.batch_norm, fixup.branch_scale) == \
        ("fixup", False, False, None)
    assert all(seen[name].lr is None and seen[name].init is None
               for name in ("plain8-bn-s0", "resnet8-bn-s2"))
    # TAT cannot shape 8 layers: no TAT cell there, whatever its sweep picked
    assert not [c for c in grid(config, {"tat": 0.1}) if c.variant.startswith("tat")]
    shaped = StudyConfig.from_preset("quick", "/nonexistent/t", depths=(20,))
    for cell in grid(shaped, {"tat": 0.03, "tuned": 0.3}):
        if cell.variant in ("tat", "tat-noaug", "tuned", "noaug"):
            assert train_cell(shaped, cell) == ("diverged", None)
    tat = seen["plain20-nobn-tat-x0.03-s0"]
    assert (tat.kernel_shaping, tat.plain, tat.batch_norm, tat.augment) == \
        ("tat", True, False, True)
    assert tat.resolve_arch().name == "plain20_tat" and tat.lr == pytest.approx(3e-5)
    assert seen["plain20-nobn-tat-noaug-x0.03-s1"].augment is False
    tuned = seen["plain20-bn-tuned-x0.3-s2"]
    assert (tuned.kernel_shaping, tuned.lr, tuned.resolve_arch().batch_norm) == \
        (None, pytest.approx(3e-4), True)
    assert [seen[f"{kind}20-bn-noaug-s0"].augment for kind in ("plain", "resnet")] == \
        [False, False]


@pytest.mark.parametrize("overrides, message", [
    ({"depths": (8, 21)}, "depth"),
    ({"seeds": (-1,)}, r"`seeds` must be non-negative integers. Received: seeds=\[-1\]"),
    ({"depths": (8, 8)}, r"`depths` must be distinct"),
    ({"interventions": ("dirac", "nope")}, r"`interventions` must be distinct, among 'dirac', "
                                          r"'diracperm', 'deltaorth', 'skipinit', 'fixup', "
                                          r"'lr0.1', 'lr0.3', 'lr3', 'lr10', 'tat', 'tuned', "
                                          r"'noaug', 'tat-noaug'. Received: interventions="),
    ({"sweep_seeds": (100, 0)}, r"^`sweep_seeds` must be distinct non-negative integers that "
                                r"no other cell uses \(held out\). Received: "
                                r"sweep_seeds=\[100, 0\]$"),
    ({"shaping_recipes": ("adam",)}, r"^`shaping_recipes` must be distinct recipes among "
                                     r"'paper', 'adam', other than `recipe` and "
                                     r"`compare_recipes`. Received: shaping_recipes=\['adam'\]$"),
    ({"interventions": ("dirac",), "sweep_depths": ("fixup",)},
     r"^`sweep_depths` must be distinct interventions the study runs \('dirac'\). Received: "
     r"sweep_depths=\['fixup'\]$"),
    ({"deep_seeds": (0, -2)}, r"`deep_seeds` must be non-negative integers"),
    ({"analyses": ("lesion", "hessian")}, r"`analyses` must be among 'lesion'"),
    ({"sharpness_seeds": 0}, r"`sharpness_seeds`"),
    ({"max_doublings": -1}, r"^`max_doublings` must be an integer >= 0. Received: "
                            r"max_doublings=-1$"),
    ({"recipe": "rmsprop"}, r"^`recipe` must be one of 'paper', 'adam'. Received: "
                            r"recipe='rmsprop'$"),
    ({"compare_recipes": ("adam",)}, r"^`compare_recipes` must be distinct recipes other than "
                                     r"`recipe` \('adam'\). Received: compare_recipes=\['adam'\]$"),
])
def test_bad_study_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        StudyConfig.from_preset("quick", "x", **overrides)


def test_bad_cli_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["study", "--depths", "9", "--out", str(tmp_path / "s")]) == 2
    assert main(["study", "--dataset", "nope", "--depths", "8", "--epochs", "1",
                 "--out", str(tmp_path / "t")]) == 2
    for argv in (["--interventions", "dirac", "nope"], ["--preset", "huge"]):  # argparse's exit
        with pytest.raises(SystemExit) as stopped:
            main(["study", *argv, "--out", str(tmp_path / "u")])
        assert stopped.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and "depth" in errors[0] and "nope" in errors[1]
    assert "--interventions" in errors[2] and "'nope'" in errors[2]
    assert "--preset" in errors[3] and "'huge'" in errors[3] and "'full'" in errors[3]
    assert not any((tmp_path / name).exists() for name in "stu")
    assert main(["study", "--max-doublings", "-2", "--out", str(tmp_path / "v")]) == 2
    assert capsys.readouterr().err.strip() == \
        "reskeras study: error: `max_doublings` must be an integer >= 0. Received: max_doublings=-2"
    with pytest.raises(SystemExit):
        main(["study", "--recipe", "sgd", "--out", str(tmp_path / "w")])
    assert "--recipe" in capsys.readouterr().err and not (tmp_path / "v").exists()


def test_first_seed_shifts_every_seed_set(monkeypatch, tmp_path, capsys):
    """Held-out seeds (docs/study.md, rule history): --first-seed 100 runs seeds 100-102."""
    import reskeras.study.run as run_module

    seen = []

    def fake_run(config, log):
        seen.append(config)
        raise ValueError("stopped before training")

    monkeypatch.setattr(run_module, "run_study", fake_run)
    assert main(["study", "--first-seed", "100", "--out", str(tmp_path / "a")]) == 2
    assert main(["study", "--seeds", "2", "--first-seed", "7", "--out", str(tmp_path / "b")]) == 2
    assert main(["study", "--first-seed", "-1", "--out", str(tmp_path / "c")]) == 2
    quick, two = seen
    assert (quick.seeds, quick.deep_seeds, quick.intervention_seeds) == (
        (100, 101, 102), (100, 101, 102), (100, 101, 102))
    assert tuple(quick.identity_task["seeds"]) == (100,)
    assert quick.identity_task["depths"] == (1, 2, 4, 8, 16)
    assert (two.seeds, two.deep_seeds, two.intervention_seeds) == ((7, 8), (7, 8), (7, 8))
    # the rate sweeps' held-out seeds move with them, never onto a seed the verdict reads
    assert (quick.sweep_seeds, two.sweep_seeds) == ((200, 201, 202), (107, 108, 109))
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[-1] == ("reskeras study: error: --first-seed must be a non-negative integer. "
                          "Received: first_seed=-1")


@pytest.mark.parametrize("extra, message", [
    (["--export-name", "m"], "reskeras study: error: --export-name needs --export-base. "
                             "Received: export_name='m'"),
    (["--export-base", "{tmp}/e", "--export-name", "a/b"],
     "reskeras study: error: `name` must be a non-empty model name without path separators"),
    (["--export-base", "{tmp}/file"], "reskeras study: error: `base_dir` must be a writable "
                                      "directory. Received: base_dir='{tmp}/file'"),
])
def test_bad_export_options_fail_before_training(tmp_path, capsys, extra, message):
    (tmp_path / "file").write_text("keep")
    argv = ["study", "--depths", "8", "--steps", "8", "--out", str(tmp_path / "s")]
    assert main(argv + [e.format(tmp=tmp_path) for e in extra]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(message.format(tmp=tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["file"] and (tmp_path / "file").read_text() == "keep"


# the Hessian is left to the paper-preset test (-m slow): it doubles this test's analysis time
TINY = dict(depths=(8,), steps=8, max_doublings=1, seeds=(0,), intervention_seeds=(0,),
            batch_size=64, grad_norms_every=4, activations_every=4,
            precise_bn_batches=4,
            batch_norm=(True,), deep_seeds=(0,), interventions=("dirac",),
            identity_task={"depths": (1, 3), "seeds": (0,), "steps": 5},
            analyses=("lesion", "shattering", "landscape", "distances", "identity_task"))


def test_tiny_study_end_to_end_and_resume(tmp_path):
    out = tmp_path / "study"
    config = StudyConfig.from_preset("quick", str(out), **TINY)
    lines = []
    results = run_study(config, log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    assert [c["name"] for c in results["cells"]] == \
        ["plain8-bn-s0", "resnet8-bn-s0", "plain8-bn-dirac-s0"] == [c.name for c in grid(config)]
    assert all(c["status"] == "finished" for c in results["cells"])
    assert sorted(os.listdir(out)) == ["convergence", "figures", "report.html", "report.md",
                                       "results.json",
                                       "runs", "study.json", "summary.csv", "timings.json",
                                       "verdict.json"]
    _check_timings(out, results)
    saved = json.loads((out / "verdict.json").read_text())
    assert set(saved) >= {"degradation", "vanishing_gradients", "exploding_at_init", "answer",
                          "hypotheses", "hypothesis_seeds"}
    assert saved["answer"] and saved == json.loads(json.dumps(results["verdict"]))
    assert [h["id"] for h in saved["hypotheses"]][:3] == [
        "vanishing_gradients", "vanishing_gradients_no_bn", "identity_init"]
    assert set(saved["hypotheses"][2]["measured"]) == {
        "plain", "plain_identity", "residual", "closed_interval", "change_points_interval",
        "interval_method", "why_inconclusive"}
    # one seed: no interval, so every flag and intervention verdict says why it is undecided
    assert saved["hypotheses"][2]["verdict"] == "inconclusive"
    assert set(saved["convergence"]) == set(saved["failed_to_start"]) == {
        "plain8-bn-s0", "resnet8-bn-s0", "plain8-bn-dirac-s0"}
    assert all(sorted(c["train_errors"]) == ["16", "8"] and c["steps"] == 16
               for c in saved["convergence"].values())
    assert (saved["criteria"]["base_steps"], saved["criteria"]["cap_steps"]) == (8, 16)
    dirac = json.loads((out / "runs" / "plain8-bn-dirac-s0" / "config.json").read_text())
    assert dirac["arch"]["init"] == "dirac"
    _check_errors_against_keras(out, results, saved)
    # the measures: every deepest cell (the Hessian is skipped here)
    for entry in results["cells"]:
        measures = entry["measures"]
        assert [row["layer"] for row in measures["travelled"]] == \
            ["stem_conv", "stage1_block1_conv1", "stage1_block1_conv2", "stage2_block1_conv1",
             "stage2_block1_conv2", "stage3_block1_conv1", "stage3_block1_conv2", "predictions"]
        assert all(row["relative"] > 0 for row in measures["travelled"])
        assert [row["block"] for row in measures["identity"]] == ["stage1_block1"]
        assert measures["sharpness"] is None
    task = results["identity_task"]
    assert [(r["kind"], r["depth"], r["seed"]) for r in task["rows"]] == \
        [(k, d, 0) for k in ("plain", "residual", "residual_zero_gamma") for d in (1, 3)]
    assert [g["group"] for g in results["groups"]] == ["plain8-bn", "resnet8-bn",
                                                       "plain8-bn-dirac"]
    html = (out / "report.html").read_text()
    for figure in os.listdir(out / "figures"):
        assert f"figures/{figure}" in (out / "report.md").read_text()
    assert html.count('src="data:image/png;base64,') == len(os.listdir(out / "figures"))
    # the identity-initialized plain net too: a plain net that trained, for the ensemble test
    assert {k: r["cell"] for k, r in results["lesion"].items()} == {
        "plain": "plain8-bn-s0", "residual": "resnet8-bn-s0",
        "plain_identity": "plain8-bn-dirac-s0"}
    assert [(r["cell"], r["variant"]) for r in results["shattering_controls"]] == \
        [("plain8-bn-dirac-s0", "dirac")] * 2
    assert [b["block"] for b in results["lesion"]["residual"]["blocks"]] == \
        ["stage1_block1", "stage2_block1", "stage3_block1"]
    # a second run reuses every cell: nothing retrained, same numbers (the analyses, which
    # are execution settings, not part of the study's identity, are not run again)
    mtimes = {p: p.stat().st_mtime for p in (out / "runs").glob("*/model.keras")}
    quick = {**TINY, "analyses": ()}
    again = run_study(StudyConfig.from_preset("quick", str(out), **quick),
                      log=lambda *a, **k: None)
    assert {p: p.stat().st_mtime for p in (out / "runs").glob("*/model.keras")} == mtimes
    # the errors measured on the nets in memory equal those of the saved files, exactly
    assert [c["errors"] for c in again["cells"]] == [c["errors"] for c in results["cells"]]
    assert [c["final_train_error"] for c in again["cells"]] == \
        [c["final_train_error"] for c in results["cells"]]
    assert all(t == {**t, "steps": 0, "reused": True, "training_seconds": 0.0,
                     "trace_seconds": 0.0} for t in again["timings"]["cells"].values())
    # the same directory with other settings is refused before anything is written
    other = StudyConfig.from_preset("quick", str(out), **{**TINY, "depths": (8, 20)})
    with pytest.raises(ValueError, match=r"`out` holds another study \(depths"):
        run_study(other, log=lambda *a, **k: None)
    # fewer interventions would drop cells from the results: refused too
    fewer = StudyConfig.from_preset("quick", str(out), **{**TINY, "interventions": ()})
    with pytest.raises(ValueError, match=r"`out` holds another study \(interventions: "
                                         r"\['dirac'\] -> \[\]\)"):
        run_study(fewer, log=lambda *a, **k: None)
    # more interventions: only the new cells train, the others are reused as they are
    more = StudyConfig.from_preset("quick", str(out), **{**quick,
                                                         "interventions": ("dirac", "deltaorth")})
    grown = run_study(more, log=lambda *a, **k: None)
    assert [c["name"] for c in grown["cells"]] == [
        "plain8-bn-s0", "resnet8-bn-s0", "plain8-bn-dirac-s0", "plain8-bn-deltaorth-s0"]
    assert {p: p.stat().st_mtime for p in (out / "runs").glob("*/model.keras")
            if "deltaorth" not in str(p)} == mtimes
    assert [t["reused"] for t in grown["timings"]["cells"].values()] == [True] * 3 + [False]
    assert json.loads((out / "study.json").read_text())["interventions"] == ["dirac", "deltaorth"]
    # judged again with the same rules: the same verdict; the previous judgment kept as it was
    before = (out / "verdict.json").read_text()
    assert main(["study", "--judge-again", "--out", str(out)]) == 0
    assert json.loads((out / "verdict.json").read_text()) == json.loads(before)
    kept = list((out / "judgments").iterdir())
    assert len(kept) == 1 and sorted(p.name for p in kept[0].iterdir()) == [
        "report.html", "report.md", "results.json", "verdict.json"]
    assert (kept[0] / "verdict.json").read_text() == before
    assert main(["study", "--judge-again", "--out", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()
    # --export-base: the cell with the lowest test error becomes a verified SavedModel
    exported = _export_best(again, config, str(tmp_path / "exports"), "digits-study")
    best = min(again["cells"], key=lambda c: c["final_test_error"])
    assert exported.path == str(tmp_path / "exports" / "digits-study" / "1")
    assert exported.report.ok
    assert exported.metadata["user"] == {"study": str(out), "cell": best["name"],
                                         "final_test_error": best["final_test_error"]}


def _check_timings(out, results):
    """timings.json: every cell (its steps and seconds), every analysis, and the report's table."""
    timings = json.loads((out / "timings.json").read_text())
    assert timings == json.loads(json.dumps(results["timings"]))
    cells = timings["cells"]
    assert sorted(cells) == ["plain8-bn-dirac-s0", "plain8-bn-s0", "resnet8-bn-s0"]
    for entry in cells.values():
        assert set(entry) == {"steps", "reused", "seconds", "training_seconds", "trace_seconds",
                              "evaluation_seconds", "overhead_seconds"}
        # 8 steps, then extended to 16: the base budget and one doubling (the cap)
        assert (entry["steps"], entry["reused"]) == (16, False)
        # each cell is the first of its group here: it traced its step
        assert 0 < entry["training_seconds"] < entry["seconds"]
        assert 0 < entry["trace_seconds"] < entry["overhead_seconds"]
        assert entry["overhead_seconds"] == pytest.approx(
            entry["seconds"] - entry["training_seconds"])
    assert set(timings["analyses"]) == {"lesion", "shattering", "shattering of the controls",
                                        "landscape", "distances and sharpness", "identity task",
                                        "figures"}
    assert timings["seconds"] >= timings["training_seconds"] + sum(timings["analyses"].values())
    report = (out / "report.md").read_text()
    assert report.index("## How to reproduce") < report.index("## Where the time went")
    assert "| training steps |" in report and "| identity task |" in report


def _keras_error(model, images, labels, preprocessing) -> float:
    x = images.astype(np.float32) * preprocessing["scale"] - np.asarray(preprocessing["mean"],
                                                                          np.float32)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return 1.0 - model.evaluate(x, labels, batch_size=97, verbose=0)[1]


def _check_errors_against_keras(out, results, saved):
    """Every error the verdict reads equals Keras's own evaluation of the saved nets:
    ``model.keras`` (precise BN statistics) and the last checkpoint (moving averages)."""
    import csv

    from reskeras._backend import keras
    from reskeras.data import load_dataset
    from reskeras.train import checkpoint_model

    assert saved["criteria"]["train_error"] == "precise"
    data = load_dataset("digits")
    rows = {row["name"]: row for row in csv.DictReader((out / "summary.csv").open())}
    for entry in results["cells"]:
        run = out / "runs" / entry["name"]
        config = json.loads((run / "config.json").read_text())
        pre = config["preprocessing"]
        assert config["training"]["precise_bn"] == {"batches": 4, "batch_size": 64}
        errors = saved["errors"][entry["name"]]
        assert errors == entry["errors"] and errors["steps"] == 16
        assert set(errors["train"]) == {"ema", "batch", "precise"}
        assert set(errors["test"]) == {"ema", "precise"}
        assert (entry["final_train_error"], entry["final_test_error"]) == (
            errors["train"]["precise"], errors["test"]["precise"])
        assert errors["bn_statistics_gap"] == pytest.approx(
            100 * (errors["train"]["ema"] - errors["train"]["precise"]))
        assert saved["bn_statistics_gap"]["points"][entry["name"]] == errors["bn_statistics_gap"]
        row = rows[entry["name"]]
        assert float(row["train_error_batch"]) == errors["train"]["batch"]
        assert float(row["test_error_ema"]) == errors["test"]["ema"]
        assert float(row["bn_statistics_gap"]) == errors["bn_statistics_gap"]
        # the relative ratio at step 0 is the raw one times the last/first conv weight norms
        logged = [json.loads(line) for line in (run / "grad_norms.jsonl").open()]
        at_init = {r["layer"]: r for r in logged if r["step"] == 0}
        last = conv_layers(logged)[-1]
        assert float(row["relative_first_last_ratio_init"]) == pytest.approx(
            float(row["first_last_ratio_init"]) * at_init[last]["weight_norm"]
            / at_init["stem_conv"]["weight_norm"], rel=1e-5)
        if entry["name"] == "plain8-bn-s0":  # one cell is enough for Keras's own evaluation
            for model, kind in ((keras.models.load_model(run / "model.keras", compile=False),
                                 "precise"), (checkpoint_model(str(run)), "ema")):
                for split in ("train", "test"):
                    # Keras counts in float32; 1e-6 is far below one example (1/1437)
                    assert errors[split][kind] == pytest.approx(
                        _keras_error(model, *data.arrays(split), pre), abs=1e-6)


@pytest.mark.slow  # 60-90 s: the paper preset's grid, shrunk, on a CIFAR-10 made here
def test_paper_preset_runs_on_cifar10_prepared_by_tfds_real_builder(tmp_path, capsys):
    from tests.tfds_files import prepare_cifar10

    # the preset's batch is 128: 5 files of 26 images give 130 training images
    prepare_cifar10(tmp_path / "tfds", tmp_path / "files", train_per_file=26, test=20)
    out = tmp_path / "paper"
    assert main(["study", "--preset", "paper", "--data-dir", str(tmp_path / "tfds"),
                 "--depths", "8", "--seeds", "1", "--steps", "2", "--max-doublings", "1",
                 "--skip", "identity_task", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    saved = json.loads((out / "study.json").read_text())
    assert (saved["preset"], saved["dataset"], saved["recipe"], saved["steps"],
            saved["max_doublings"]) == ("paper", "cifar10", "paper", 2, 1)
    results = json.loads((out / "results.json").read_text())
    # the paper grid's interventions, at its (here only) depth; TAT (and the tuned BN net, its
    # comparison) cannot shape plain-8, so they are left out
    assert [c["name"] for c in results["cells"]] == [
        "plain8-bn-s0", "resnet8-bn-s0", "plain8-bn-dirac-s0", "plain8-bn-diracperm-s0",
        "plain8-bn-deltaorth-s0", "plain8-bn-lr0.1-s0", "plain8-bn-lr0.3-s0", "plain8-bn-lr3-s0",
        "plain8-bn-lr10-s0", "resnet8-bn-noaug-s0", "plain8-bn-noaug-s0",
        "plain8-nobn-s0", "resnet8-nobn-s0", "plain8-nobn-dirac-s0",
        "plain8-nobn-diracperm-s0", "plain8-nobn-deltaorth-s0", "resnet8-nobn-skipinit-s0",
        "resnet8-nobn-fixup-s0"]
    assert all(c["status"] == "finished" for c in results["cells"])
    # the paper's step decay depends on the budget: each budget (2 and 4 steps) its own run
    for cell in results["cells"]:
        assert cell["run_dir"] == f"runs/{cell['name']}-4steps"
        assert sorted(cell["convergence"]["train_errors"]) == ["2", "4"]
        for steps in (2, 4):
            config = json.loads((out / "runs" / f"{cell['name']}-{steps}steps" /
                                 "config.json").read_text())
            assert config["dataset"]["data_dir"] == str(tmp_path / "tfds")
            assert config["input_shape"] == [32, 32, 3]
            assert config["training"]["total_steps"] == steps
    by_name = {c["name"]: c for c in results["cells"]}
    lr = json.loads((out / "runs" / "plain8-bn-lr0.1-s0-4steps" / "config.json").read_text())
    assert lr["training"]["plan"]["base_lr"] == pytest.approx(0.01)  # the paper's 0.1 / 10
    assert all(c["measures"]["identity"] for c in by_name.values())
    # the Hessian of the BN twins and the plain net's isometric starts, at init and the end,
    # raw and scale-invariant, each with its power iteration's convergence
    assert sorted(n for n, c in by_name.items() if c["measures"]["sharpness"]) == [
        "plain8-bn-deltaorth-s0", "plain8-bn-dirac-s0", "plain8-bn-diracperm-s0",
        "plain8-bn-s0", "resnet8-bn-s0"]
    assert all(set(by_name[n]["measures"]["sharpness"]) == {
        f"{when}{kind}" for when in ("init", "final")
        for kind in ("", "_converged", "_invariant", "_invariant_converged")}
        for n in ("plain8-bn-s0", "resnet8-bn-s0"))
    assert set(results) >= {"lesion", "shattering", "landscape", "verdict", "identity_task",
                            "groups"}
    assert [h["id"] for h in results["verdict"]["hypotheses"]] == [
        "vanishing_gradients", "vanishing_gradients_no_bn", "identity_init",
        "identity_init_no_bn", "conditioning", "near_identity", "branch_scale",
        "learning_rate", "kernel_shaping", "identity_task", "ensemble", "shattering",
        "landscape", "small_responses"]
    assert {r["cell"] for r in results["lesion"].values()} == {
        "plain8-bn-s0", "resnet8-bn-s0", "plain8-bn-dirac-s0"}
    assert [(r["cell"], r["when"]) for r in results["shattering_controls"]] == [
        (f"plain8-bn-{v}-s0", when) for v in ("dirac", "diracperm", "deltaorth")
        for when in ("init", "trained")]
    assert (out / "report.html").is_file() and json.loads((out / "verdict.json").read_text())


def test_initial_weights_are_rebuilt_exactly_from_the_run_config(tmp_path):
    """distance_travelled needs w_0: the study rebuilds it from config.json and the seed
    (a Dirac cell: identity plus seeded He noise, so both initializers' draws are checked)."""
    from reskeras.study.analyses import initial_model, trained_model
    from reskeras.train import TrainConfig, train

    cell = Cell(False, 8, True, 3, "dirac")
    config = StudyConfig.from_preset("quick", str(tmp_path), depths=(8,))
    # one Adam step of lr 1e-30 moves each weight by at most 1e-30: the saved model holds w_0
    train(TrainConfig(out=str(tmp_path / "runs" / cell.name), depth=8, plain=True,
                      dataset="digits", steps=1, batch_size=32, seed=3, lr=1e-30,
                      recipe="adam", **cell.train_fields()))
    entry = {"run_dir": f"runs/{cell.name}", "seed": 3, "batch_norm": True}
    rebuilt = initial_model(config, entry, np.zeros((4, 8, 8, 1), "float32"))
    saved = trained_model(config, entry)
    # 7 convs, 7 BN gammas and betas, the dense kernel and bias
    assert len(rebuilt.trainable_weights) == len(saved.trainable_weights) == 23
    for a, b in zip(rebuilt.trainable_weights, saved.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1.01e-30)


@pytest.mark.slow  # 40-70 s: three small cells in a subprocess, killed, then resumed
def test_a_killed_study_resumes_inside_its_intervention_cell(tmp_path):
    import signal
    import subprocess
    import time

    out = tmp_path / "study"
    command = ["reskeras", "study", "--depths", "8", "--epochs", "3", "--max-doublings", "0",
               "--no-bn-cells", "--seeds", "1", "--interventions", "dirac", "--skip", "lesion", "shattering",
               "landscape", "sharpness", "identity_task", "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    checkpoints = out / "runs" / "plain8-bn-dirac-s0" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if checkpoints.is_dir() and any(n.endswith(".index") for n in os.listdir(checkpoints)):
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    assert process.wait(timeout=60) == -signal.SIGKILL, process.stderr.read()[-2000:]
    assert not (out / "runs" / "plain8-bn-dirac-s0" / "model.keras").exists()
    twins = {p: p.stat().st_mtime for p in (out / "runs").glob("*/model.keras")}
    assert sorted(p.parent.name for p in twins) == ["plain8-bn-s0", "resnet8-bn-s0"]
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert {p: p.stat().st_mtime for p in twins} == twins  # the finished twins were reused
    metrics = [json.loads(line) for line in
               (out / "runs" / "plain8-bn-dirac-s0" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [11, 22, 33]  # resumed after step 11, no repeat
    results = json.loads((out / "results.json").read_text())
    assert [(c["name"], c["status"]) for c in results["cells"]] == [
        ("plain8-bn-s0", "finished"), ("resnet8-bn-s0", "finished"),
        ("plain8-bn-dirac-s0", "finished")]
    verdict_file = json.loads((out / "verdict.json").read_text())
    identity = next(h for h in verdict_file["hypotheses"] if h["id"] == "identity_init")
    assert identity["measured"]["plain_identity"] == results["cells"][2]["final_train_error"]


# 50-100 s; the default run trains the paper recipe's budgets as runs of their own in
# test_study_shaping's tiny study (CI runs this one in its second, slow stage)
@pytest.mark.slow
def test_a_study_under_two_recipes_reads_budgets_both_ways(tmp_path):
    """Adam (budget-free) is one run extended; the paper's step decay trains each budget
    anew under runs/paper/; the verdict lists each recipe's decisions and their differences."""
    out = tmp_path / "study"
    config = StudyConfig.from_preset(
        "quick", str(out), **{**TINY, "seeds": (0, 1), "deep_seeds": (0, 1), "interventions": (),
                              "intervention_seeds": (), "compare_recipes": ("paper",),
                              "analyses": ()})
    results = run_study(config, log=lambda *a, **k: None)
    assert sorted(os.listdir(out / "runs")) == [
        "paper", "plain8-bn-s0", "plain8-bn-s1", "resnet8-bn-s0", "resnet8-bn-s1"]
    assert sorted(os.listdir(out / "runs" / "paper")) == sorted(
        f"{kind}8-bn-s{seed}-{steps}steps" for kind in ("plain", "resnet") for seed in (0, 1)
        for steps in (8, 16))
    boundaries = [json.loads((out / "runs" / "paper" / f"plain8-bn-s0-{steps}steps" /
                              "config.json").read_text())["training"]["plan"]["boundaries"]
                  for steps in (8, 16)]
    assert boundaries == [[4, 6], [8, 12]]  # each budget its own schedule
    adam = json.loads((out / "runs" / "plain8-bn-s0" / "config.json").read_text())
    assert adam["training"]["total_steps"] == 16
    paper = results["compared"]["paper"]["cells"]
    assert [c["run_dir"] for c in paper] == [f"runs/paper/{c}-16steps" for c in (
        "plain8-bn-s0", "resnet8-bn-s0", "plain8-bn-s1", "resnet8-bn-s1")]
    assert all(c["recipe"] == "paper" and c["convergence"]["one_run"] is False for c in paper)
    assert all(c["recipe"] == "adam" and c["convergence"]["one_run"] is True
               for c in results["cells"])
    saved = json.loads((out / "verdict.json").read_text())
    assert set(saved["recipes"]) == {"adam", "paper"}
    assert set(saved["recipes"]["adam"]) == {
        "vanishing_gradients.plain_bn", "vanishing_gradients.residual_bn",
        "exploding_at_init.plain_bn", "exploding_at_init.residual_bn",
        *(f"hypothesis.{h}" for h in TRAINING_HYPOTHESES)}
    assert saved["recipe_differences"] == [
        d for d in saved["recipe_differences"]
        if saved["recipes"]["adam"][d["decision"]] != saved["recipes"]["paper"][d["decision"]]]
    report = (out / "report.md").read_text()
    assert "**Recipe `adam`**" in report and "**Recipe `paper`**" in report
    assert "Decisions that differ between the recipes: " in report
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["name"], r["recipe"]) for r in rows] == \
        [(c["name"], "adam") for c in results["cells"]] + [(c["name"], "paper") for c in paper]
    assert all(r["train_error_at_8"] and r["train_error_at_16"] for r in rows)
    timings = json.loads((out / "timings.json").read_text())["cells"]
    assert sorted(timings) == sorted([c["name"] for c in results["cells"]]
                                     + [f"paper/{c['name']}" for c in paper])
    # paper: 8 steps, then 16 from scratch; adam: 8, then 8 more
    assert {t["steps"] for name, t in timings.items() if name.startswith("paper/")} == {24}
    assert {t["steps"] for name, t in timings.items() if "/" not in name} == {16}
