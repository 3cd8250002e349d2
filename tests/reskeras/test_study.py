"""The study: criteria on constructed records, a tiny grid end to end, resume, bad input."""

import json
import os

import pytest

from reskeras.analysis.gradient_flow import classify, gradient_summary
from reskeras.analysis.study import Cell, StudyConfig, grid, run_study
from reskeras.analysis.verdict import verdict
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
            out.append({"step": step, "layer": name, "index": index, "grad_norm": norm})
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
            r["grad_norm"] = None
    assert gradient_summary(nan)["state"] == "unknown"


def cell(residual, depth, bn, error, ratio, status="finished"):
    summary = gradient_summary(records(ratio))
    return {"name": Cell(residual, depth, bn, 0).name, "residual": residual, "depth": depth,
            "batch_norm": bn, "seed": 0, "status": status,
            "final_train_error": None if status != "finished" else error,
            "gradient": summary}


def test_verdict_criteria_on_constructed_results():
    results = {"cells": [
        cell(False, 8, True, 0.01, 1.5), cell(False, 56, True, 0.86, 2.0),     # degrades
        cell(True, 8, True, 0.01, 1.0), cell(True, 56, True, 0.02, 1.2),       # +1 point: no
        cell(False, 8, False, 0.02, 0.5), cell(False, 56, False, None, 1e-4, "diverged"),
        cell(True, 8, False, 0.03, 1.0), cell(True, 56, False, 0.05, 1e3)]}
    found = verdict(results)
    assert {k: v for k, v in found["degradation"].items() if k != "numbers"} == \
        {"plain": True, "residual": False, "plain_no_bn": True, "residual_no_bn": False}
    assert found["degradation"]["numbers"]["plain"]["points"] == pytest.approx(85.0)
    assert found["vanishing_gradients"] == {"plain_bn": False, "residual_bn": False,
                                            "plain_no_bn": True, "residual_no_bn": False}
    assert found["exploding_at_init"]["residual_no_bn"] is True
    assert found["exploding_at_init"]["plain_bn"] is False
    assert "degradation that vanishing gradients do not explain" in found["answer"]
    assert "the 56-layer plain net diverged" in found["answer"]


def test_grid_and_presets():
    config = StudyConfig.from_preset("quick", "x")
    assert [c.name for c in grid(config)][:4] == ["plain8-bn-s0", "resnet8-bn-s0",
                                                  "plain8-nobn-s0", "resnet8-nobn-s0"]
    assert len(grid(config)) == 12
    paper = StudyConfig.from_preset("paper", "y")
    assert (paper.dataset, paper.depths, paper.steps, len(grid(paper))) == \
        ("cifar10", (20, 32, 44, 56, 110), 64000, 60)


@pytest.mark.parametrize("overrides, message", [
    ({"depths": (8, 21)}, "depth"),
    ({"seeds": (-1,)}, r"`seeds` must be non-negative integers. Received: seeds=\[-1\]"),
    ({"depths": (8, 8)}, r"`depths` must be distinct"),
])
def test_bad_study_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        StudyConfig.from_preset("quick", "x", **overrides)


def test_bad_cli_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["study", "--depths", "9", "--out", str(tmp_path / "s")]) == 2
    assert main(["study", "--dataset", "nope", "--depths", "8", "--epochs", "1",
                 "--out", str(tmp_path / "t")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "depth" in errors[0] and "nope" in errors[1]
    assert not (tmp_path / "s").exists()


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


def test_tiny_study_end_to_end_and_resume(tmp_path):
    out = tmp_path / "study"
    config = StudyConfig.from_preset("quick", str(out), depths=(8,), steps=8,
                                     batch_size=64, grad_norms_every=4, activations_every=4,
                                     batch_norm=(True,))
    lines = []
    results = run_study(config, log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    assert [c["name"] for c in results["cells"]] == [c.name for c in grid(config)]
    assert all(c["status"] == "finished" for c in results["cells"])
    assert sorted(os.listdir(out)) == ["figures", "report.html", "report.md", "results.json",
                                       "runs", "study.json", "summary.csv", "verdict.json"]
    saved = json.loads((out / "verdict.json").read_text())
    assert set(saved) >= {"degradation", "vanishing_gradients", "exploding_at_init", "answer"}
    assert saved["answer"] and saved == json.loads(json.dumps(results["verdict"]))
    html = (out / "report.html").read_text()
    for figure in os.listdir(out / "figures"):
        assert f"figures/{figure}" in (out / "report.md").read_text()
    assert html.count('src="data:image/png;base64,') == len(os.listdir(out / "figures"))
    assert {r["cell"] for r in results["lesion"].values()} == {"plain8-bn-s0", "resnet8-bn-s0"}
    assert [b["block"] for b in results["lesion"]["residual"]["blocks"]] == \
        ["stage1_block1", "stage2_block1", "stage3_block1"]
    # a second run reuses every cell: nothing retrained, same numbers
    mtimes = {p: p.stat().st_mtime for p in (out / "runs").glob("*/model.keras")}
    again = run_study(config, log=lambda *a, **k: None)
    assert {p: p.stat().st_mtime for p in (out / "runs").glob("*/model.keras")} == mtimes
    assert [c["final_train_error"] for c in again["cells"]] == \
        [c["final_train_error"] for c in results["cells"]]
    # the same directory with other settings is refused before anything is written
    other = StudyConfig.from_preset("quick", str(out), depths=(8, 20), steps=8,
                                    batch_size=64, grad_norms_every=4, activations_every=4,
                                    batch_norm=(True,))
    with pytest.raises(ValueError, match=r"`out` holds another study \(depths"):
        run_study(other, log=lambda *a, **k: None)
    # --export-base: the cell with the lowest test error becomes a verified SavedModel
    exported = _export_best(again, config, str(tmp_path / "exports"), "digits-study")
    best = min(again["cells"], key=lambda c: c["final_test_error"])
    assert exported.path == str(tmp_path / "exports" / "digits-study" / "1")
    assert exported.report.ok
    assert exported.metadata["user"] == {"study": str(out), "cell": best["name"],
                                         "final_test_error": best["final_test_error"]}


@pytest.mark.slow  # 22-34 s: the paper preset's grid, shrunk, on a CIFAR-10 made here
def test_paper_preset_runs_on_cifar10_prepared_by_tfds_real_builder(tmp_path, capsys):
    from tests.tfds_files import prepare_cifar10

    # the preset's batch is 128: 5 files of 26 images give 130 training images
    prepare_cifar10(tmp_path / "tfds", tmp_path / "files", train_per_file=26, test=20)
    out = tmp_path / "paper"
    assert main(["study", "--preset", "paper", "--data-dir", str(tmp_path / "tfds"),
                 "--depths", "8", "--seeds", "1", "--steps", "2", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    saved = json.loads((out / "study.json").read_text())
    assert (saved["preset"], saved["dataset"], saved["recipe"], saved["steps"]) == (
        "paper", "cifar10", "paper", 2)
    results = json.loads((out / "results.json").read_text())
    assert [c["name"] for c in results["cells"]] == [
        "plain8-bn-s0", "resnet8-bn-s0", "plain8-nobn-s0", "resnet8-nobn-s0"]
    assert all(c["status"] == "finished" for c in results["cells"])
    for cell in results["cells"]:
        config = json.loads((out / "runs" / cell["name"] / "config.json").read_text())
        assert config["dataset"]["data_dir"] == str(tmp_path / "tfds")
        assert config["input_shape"] == [32, 32, 3] and config["training"]["total_steps"] == 2
    assert set(results) >= {"lesion", "shattering", "landscape", "verdict"}
    assert (out / "report.html").is_file() and json.loads((out / "verdict.json").read_text())
