"""The study figures and report, from a fake ``results`` dict (no training)."""

import copy
import csv
import re
import struct

import numpy as np
import pytest
from matplotlib.figure import Figure

from reskeras.analysis.plots import save_figure
from reskeras.analysis.report import SUMMARY_COLUMNS, write_report, write_summary_csv
from reskeras.analysis.study_plots import write_study_figures

ANSWER = ("With BatchNorm, the 20-layer plain net ended at 30.0% training error against 5.0% "
          "for the 8-layer one: degradation. Its gradients did not vanish (ratio 1.2x).")
FULL_SIZES = {"degradation": (1500, 700), "gradient_ratio": (1100, 450),
              "gradient_profiles_init": (1500, 450), "lesion": (800, 450),
              "shattering": (700, 450), "landscape": (700, 450)}


def _cell(residual, depth, batch_norm, diverged=False):
    kind = "resnet" if residual else "plain"
    name = f"{kind}{depth}-{'bn' if batch_norm else 'nobn'}-s0"
    final = 0.01 if residual else 0.05 + 0.0125 * depth
    steps = [16 * (i + 1) for i in range(3 if diverged else 10)]
    curve = [{"step": s, "train_error": 0.9 - (0.9 - final) * i / 9,
              "loss": 2.3 * (0.6 ** i), "test_error": 0.92 - (0.9 - final) * i / 9}
             for i, s in enumerate(steps)]
    layers = ["stem_conv", "stem_bn"] + [f"stage1_block{b}_conv{k}" for b in range(1, depth // 6)
                                         for k in (1, 2)] + ["predictions"]
    profile = [{"layer": layer, "index": i, "grad_norm": 1.0 + (0.1 if residual else 0.5) * i}
               for i, layer in enumerate(layers)]
    gradient = {"first_last_ratio_init": 1.5 if residual else 0.2 * depth,
                "first_last_ratio_median": 1.1 if residual else 0.9, "log10_slope_init": -0.02,
                "state": "healthy", "profile_init": profile}
    cell = {"name": name, "residual": residual, "depth": depth, "batch_norm": batch_norm,
            "seed": 0, "run_dir": f"runs/{name}", "status": "finished",
            "params": 1000 * depth + 18, "seconds": 12.5, "final_train_error": final,
            "final_test_error": final + 0.02, "final_loss": 0.0123, "curve": curve,
            "gradient": gradient}
    if diverged:
        curve[-1]["loss"] = None
        curve[-1]["train_error"] = None
        cell.update(status="diverged", params=None, final_train_error=None,
                    final_test_error=None, final_loss=None)
        gradient.update(first_last_ratio_median=None, state="unknown")
    return cell


def fake_results(analyses=True, no_bn=True):
    cells = [_cell(r, d, bn, diverged=(not r and d == 20 and not bn))
             for bn in ((True, False) if no_bn else (True,)) for r in (False, True)
             for d in (8, 20)]
    results = {
        "preset": "quick", "dataset": "digits", "recipe": "paper", "steps": 160,
        "batch_size": 128, "study_dir": "/tmp/study", "seconds": 512.3,
        "criteria": {"degradation_points": 2.0, "vanishing_ratio": 0.01,
                     "exploding_ratio": 100.0},
        "cells": cells, "lesion": None, "shattering": None, "landscape": None,
        "verdict": {"degradation": {"plain": True, "residual": False, "plain_no_bn": True,
                                    "numbers": {"plain": {
                                        "shallow_depth": 8, "deep_depth": 20,
                                        "shallow_train_error": 0.15, "deep_train_error": 0.3,
                                        "deep_diverged": False, "points": 15.0}}},
                    "vanishing_gradients": {"plain_bn": False, "residual_bn": False},
                    "exploding_at_init": {"plain_bn": False}, "answer": ANSWER},
        "notes": ["One step budget for every depth.", "Few seeds."]}
    if analyses:
        results["lesion"] = {
            kind: {"cell": f"{kind if kind == 'plain' else 'resnet'}20-bn-s0",
                   "baseline_error": 0.02,
                   "blocks": [{"block": f"stage1_block{i + 1}", "kind": kind, "index": i,
                               "error": 0.03 if kind == "residual" else 0.8,
                               "error_increase": 0.01 if kind == "residual" else 0.78}
                              for i in range(3) if kind == "residual" or i != 1]}
            for kind in ("residual", "plain")}
        results["shattering"] = [
            {"cell": f"x{d}", "residual": r, "depth": d, "when": w,
             "neighbour_correlation": 0.9 if r else 0.9 - d / 40,
             "decorrelation_length": None if r else 3}
            for r in (False, True) for d in (8, 20) for w in ("init", "trained")]
        alphas = np.linspace(-1, 1, 21).tolist()
        results["landscape"] = {
            name: {"alphas": alphas, "loss": [0.1 + k * a * a for a in alphas],
                   "curvature": 2 * k, "roughness": 0.0, "residual": name.startswith("resnet")}
            for name, k in (("plain20-bn-s0", 30.0), ("resnet20-bn-s0", 3.0))}
    return results


def png_size(file) -> tuple[int, int]:
    with open(file, "rb") as handle:
        return struct.unpack(">II", handle.read(24)[16:24])


@pytest.fixture(scope="module")
def full_study(tmp_path_factory):
    study = tmp_path_factory.mktemp("study")
    results = fake_results()
    figures = write_study_figures(results, str(study / "figures"))
    extra = Figure(figsize=(3, 2), dpi=100)
    save_figure(extra, str(study / "figures" / "responses.png"))
    figures_with_extra = {**figures, "responses": "figures/responses.png"}
    paths = write_report(results, str(study), figures_with_extra)
    return study, results, figures, figures_with_extra, paths


def test_study_figures_have_exact_pixel_sizes(full_study):
    study, _, figures, _, _ = full_study
    assert figures == {key: f"figures/{key}.png" for key in FULL_SIZES}
    assert list(figures) == list(FULL_SIZES)
    for key, size in FULL_SIZES.items():
        assert png_size(study / figures[key]) == size, key


def test_html_embeds_every_figure_and_shows_the_answer(full_study):
    study, results, _, figures, paths = full_study
    assert paths == {"report_md": str(study / "report.md"),
                     "report_html": str(study / "report.html"),
                     "summary_csv": str(study / "summary.csv")}
    page = (study / "report.html").read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == len(figures) == 7
    assert '<p class="answer"><strong>Answer.</strong> ' + ANSWER + "</p>" in page
    assert "figures/" not in page  # self-contained: nothing loaded from disk
    assert "diverged at step 48" in page
    assert "Not measured" not in page
    for heading in ("Verdict", "Degradation", "Gradient flow", "Layer responses", "Lesions",
                    "Gradient shattering", "Loss landscape", "Cells",
                    "What this measurement can and cannot show", "How to reproduce"):
        assert f"<h2>{heading}</h2>" in page
    assert "more than 2 percentage points" in page and "below 0.01 times" in page
    assert "above 100." in page
    assert "reskeras study --preset quick --out /tmp/study" in page
    assert all(note in page for note in results["notes"])


def test_markdown_references_every_figure(full_study):
    study, _, _, figures, _ = full_study
    text = (study / "report.md").read_text(encoding="utf-8")
    referenced = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(referenced) == sorted(figures.values())
    assert f"> **Answer.** {ANSWER}" in text
    assert "| plain20-nobn-s0 | plain | 20 | no | 0 | diverged at step 48 | — |" in text
    assert "| degradation (deepest vs shallowest net) | **yes** | no | **yes** | not measured |" \
        in text


def test_summary_csv_has_one_exact_row_per_cell(full_study):
    study, results, _, _, _ = full_study
    with open(study / "summary.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(SUMMARY_COLUMNS)
    assert [row[0] for row in rows[1:]] == [cell["name"] for cell in results["cells"]]
    by_name = {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert by_name["plain20-bn-s0"] == {
        "name": "plain20-bn-s0", "residual": "False", "depth": "20", "batch_norm": "True",
        "seed": "0", "status": "finished", "params": "20018", "seconds": "12.5",
        "final_train_error": "0.3", "final_test_error": "0.32", "final_loss": "0.0123",
        "first_last_ratio_init": "4.0", "first_last_ratio_median": "0.9",
        "log10_slope_init": "-0.02", "gradient_state": "healthy"}
    diverged = by_name["plain20-nobn-s0"]
    assert (diverged["status"], diverged["params"], diverged["final_train_error"],
            diverged["first_last_ratio_median"], diverged["gradient_state"]) == \
        ("diverged", "", "", "", "unknown")


def test_skipped_analyses_are_not_drawn_and_say_not_measured(tmp_path):
    results = fake_results(analyses=False, no_bn=False)
    figures = write_study_figures(results, str(tmp_path / "figures"))
    assert list(figures) == ["degradation", "gradient_ratio", "gradient_profiles_init"]
    assert png_size(tmp_path / figures["degradation"]) == (800, 700)  # two columns: BN only
    assert png_size(tmp_path / figures["gradient_profiles_init"]) == (800, 450)
    write_report(results, str(tmp_path), figures)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == 3
    # layer responses, lesions, shattering, landscape
    assert page.count("Not measured") == text.count("Not measured") == 4
    assert "--no-bn-cells" in text
    with open(tmp_path / "summary.csv") as handle:
        assert len(handle.read().splitlines()) == 1 + 4


def test_write_report_rejects_a_missing_figure(tmp_path):
    results = fake_results(analyses=False)
    with pytest.raises(ValueError, match="must name a PNG under `study_dir`"):
        write_report(results, str(tmp_path), {"degradation": "figures/degradation.png"})
    assert not (tmp_path / "report.html").exists()


def test_summary_csv_alone(tmp_path):
    results = copy.deepcopy(fake_results(analyses=False))
    results["cells"][0]["gradient"] = {}
    write_summary_csv(results, str(tmp_path / "s.csv"))
    first = (tmp_path / "s.csv").read_text().splitlines()[1].split(",")
    assert first[-4:] == ["", "", "", ""]


_OVERFLOW_PROBE = """<script>
const boxes = [...document.querySelectorAll('.table')];
const over = boxes.filter(b => b.scrollWidth > b.clientWidth + 1)
  .map(b => b.querySelector('tr').textContent.trim().slice(0, 40));
document.title = 'overflow:' + JSON.stringify({over: over, tables: boxes.length,
  page: document.documentElement.scrollWidth > window.innerWidth});
</script></body>"""


@pytest.mark.slow
def test_every_table_fits_a_1280_px_window_in_a_real_browser(full_study, tmp_path):
    """Headless Chromium lays the report out at 1280 px: no table scrolls sideways."""
    import json
    import shutil
    import subprocess

    browser = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    # no skip: without a browser the layout is unchecked, which must not read as a pass
    assert browser is not None, ("needs a real browser on PATH: apt-get install -y "
                                 "chromium-headless-shell")
    study, *_ = full_study
    html = (study / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", _OVERFLOW_PROBE))
    shutil.copytree(study / "figures", tmp_path / "figures")  # referenced relative to the page
    dom = subprocess.run([browser, "--no-sandbox", "--disable-gpu", "--window-size=1280,4000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    layout = json.loads(re.search(r"<title>overflow:(.*?)</title>", dom).group(1))
    assert layout["tables"] >= 3
    assert layout == {"over": [], "tables": layout["tables"], "page": False}
