"""Figures from fake run directories: exact PNG sizes, plotted data, the `plot` command."""

import json
import os
import sys

import matplotlib
import numpy as np
import pytest

from reskeras.analysis import (activation_series, figure_size, grad_norm_matrix, load_run,
                               nearest_steps, plot_grad_norm_heatmap, plot_grad_norm_profile,
                               plot_layer_responses, plot_residual_ratio, write_figures)
from reskeras.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = ["grad_norm_heatmap.png", "grad_norm_profile.png", "layer_responses.png",
           "residual_ratio.png"]
# ResNet-8 naming: stem, 3 stages of 1 block, head
LAYERS = (["stem_conv", "stem_bn"]
          + [f"stage{s}_block1_{kind}{i}" for s in (1, 2, 3) for i in (1, 2)
             for kind in ("conv", "bn")]
          + ["predictions"])
STEPS = [0, 10, 20, 30]


def grad_norm(index, step, residual):
    """Plain nets: norms shrink towards the input and over time; residual nets stay level."""
    depth_factor = 1.0 if residual else 0.5 ** (len(LAYERS) - 1 - index)
    return 10.0 ** (index / 10) * depth_factor / (1 + step)


def write_run(root, name, *, residual=True, grads=True, acts=True, extra_config=None):
    """A run directory with config.json and records in shuffled line order."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    config = {"model_name": f"{'resnet' if residual else 'plain'}8",
              "arch": {"residual": residual, "depth": 8}, **(extra_config or {})}
    (run_dir / "config.json").write_text(json.dumps(config))
    if grads:
        records = [{"step": step, "layer": layer, "index": index,
                    "grad_norm": grad_norm(index, step, residual), "weight_norm": 1.0,
                    "ratio": grad_norm(index, step, residual)}
                   for step in STEPS for index, layer in enumerate(LAYERS)]
        records.reverse()  # order comes from `index`, not from the lines
        (run_dir / "grad_norms.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if acts:
        records = []
        bns = [layer for layer in LAYERS if "_bn" in layer and layer != "stem_bn"]
        for step in (0, 30):
            records += [{"step": step, "kind": "response", "layer": bn, "index": i,
                         "value": (step + 1) * (i + 1) / 10} for i, bn in enumerate(bns)]
            records += [{"step": step, "kind": "dead_relu", "layer": f"relu{i}", "index": i,
                         "value": 0.1} for i in range(3)]
            if residual:
                records += [{"step": step, "kind": "residual_ratio",
                             "layer": f"stage{s}_block1", "index": s - 1, "value": 0.2 * s}
                            for s in (1, 2, 3)]
        records.reverse()
        (run_dir / "activations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(run_dir)


def png_size(path):
    """(width, height) from the IHDR chunk of a PNG file."""
    with open(path, "rb") as handle:
        head = handle.read(24)
    assert head[:8] == PNG_SIGNATURE
    assert head[12:16] == b"IHDR"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@pytest.fixture
def twins(tmp_path):
    return (write_run(tmp_path / "runs", "plain8", residual=False),
            write_run(tmp_path / "runs", "resnet8", residual=True))


def test_grad_norm_matrix_orders_layers_by_index_and_takes_log10():
    records = [
        {"step": 10, "layer": "a_last", "index": 2, "grad_norm": 1000.0},
        {"step": 0, "layer": "z_first", "index": 0, "grad_norm": 0.01},
        {"step": 10, "layer": "z_first", "index": 0, "grad_norm": None},   # non-finite
        {"step": 0, "layer": "m_mid", "index": 1, "grad_norm": 1.0},
        {"step": 0, "layer": "a_last", "index": 2, "grad_norm": 10.0},
    ]
    names, steps, array = grad_norm_matrix(records)
    assert names == ["z_first", "m_mid", "a_last"]
    assert steps == [0, 10]
    assert array.shape == (3, 2)
    np.testing.assert_array_equal(array, [[-2.0, np.nan], [0.0, np.nan], [1.0, 3.0]])
    _, _, raw = grad_norm_matrix(records, log10=False)
    assert raw[2, 1] == 1000.0


def test_fake_run_matrix_matches_the_records(twins):
    names, steps, array = grad_norm_matrix(load_run(twins[0])["grad_norms"])
    assert names == LAYERS and steps == STEPS
    expected = [[np.log10(grad_norm(i, s, False)) for s in STEPS] for i in range(len(LAYERS))]
    np.testing.assert_allclose(array, expected)


def test_nearest_steps_and_activation_series():
    assert nearest_steps([0, 10, 20, 30]) == [0, 20, 30]
    assert nearest_steps([0, 10, 20, 30], [12, 29, 100, 5]) == [10, 30, 0]
    assert nearest_steps([7]) == [7]
    records = [{"step": s, "kind": "response", "layer": f"l{i}", "index": i, "value": s + i}
               for s in (0, 50) for i in (2, 0, 1)]
    step, names, values = activation_series(records, "response")
    assert (step, names, values.tolist()) == (50, ["l0", "l1", "l2"], [50.0, 51.0, 52.0])
    assert activation_series(records, "response", step=20)[0] == 0
    assert activation_series(records, "residual_ratio")[0] is None
    with pytest.raises(ValueError, match="`kind` must be one of"):
        activation_series(records, "responses")


def test_load_run_labels_and_residual_flag(twins):
    run = load_run(twins[0])
    assert run["label"] == "plain8" and run["residual"] is False
    assert len(run["grad_norms"]) == len(LAYERS) * len(STEPS)
    assert len(run["activations"]) == 2 * (6 + 3)


def test_load_run_refuses_a_malformed_line(tmp_path):
    run_dir = write_run(tmp_path, "r", acts=False)
    with open(os.path.join(run_dir, "grad_norms.jsonl"), "a") as handle:
        handle.write('{"step": 1, "layer": "x"}\n')
    bad_line = len(LAYERS) * len(STEPS) + 1
    with pytest.raises(ValueError, match=f"keys step, layer, index. Received: line {bad_line} "):
        load_run(run_dir)


@pytest.mark.parametrize("plot, name, per_run", [
    (plot_grad_norm_heatmap, "grad_norm_heatmap", True),
    (plot_grad_norm_profile, "grad_norm_profile", True),
    (plot_layer_responses, "layer_responses", False),
    (plot_residual_ratio, "residual_ratio", False),
])
def test_each_figure_has_its_exact_pixel_size(twins, tmp_path, plot, name, per_run):
    for runs in ([twins[1]], list(twins)):
        path = str(tmp_path / f"{name}_{len(runs)}.png")
        plot(runs, path)
        assert png_size(path) == figure_size(name, len(runs) if per_run else 1)
    assert figure_size("grad_norm_heatmap", 1) == (650, 600)
    assert figure_size("grad_norm_heatmap", 2) == (1200, 600)
    assert figure_size("grad_norm_profile", 2) == (1100, 450)
    assert figure_size("layer_responses") == (800, 700)
    assert figure_size("residual_ratio") == (700, 450)


def test_heatmap_draws_the_matrix_with_one_shared_color_scale(twins):
    figure = plot_grad_norm_heatmap(list(twins))
    panels, colorbar = figure.axes[:2], figure.axes[2]
    assert len(figure.axes) == 3 and colorbar.get_ylabel() == "log10 gradient norm"
    meshes = [ax.collections[0] for ax in panels]
    assert meshes[0].get_clim() == meshes[1].get_clim()
    all_logs = np.log10([grad_norm(i, s, r) for i in range(len(LAYERS)) for s in STEPS
                         for r in (False, True)])
    np.testing.assert_allclose(meshes[0].get_clim(), (all_logs.min(), all_logs.max()))
    _, _, plain = grad_norm_matrix(load_run(twins[0])["grad_norms"])
    np.testing.assert_allclose(np.asarray(meshes[0].get_array()).reshape(plain.shape), plain)
    top = figure.axes[0]
    assert top.get_ylim() == (len(LAYERS) - 0.5, -0.5)  # input layer at the top
    assert top.get_yticklabels()[0].get_text() == "stem_conv"


def test_profile_draws_the_nearest_logged_steps(twins):
    figure = plot_grad_norm_profile([twins[0]], steps=[12, 29])
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["step 10", "step 30"]
    # conv and dense layers only: BatchNorm rows are in the heatmap, not in the profile
    kernels = [i for i, name in enumerate(LAYERS) if "_bn" not in name]
    assert len(kernels) == len(LAYERS) - 7
    np.testing.assert_allclose(lines[0].get_ydata(), [grad_norm(i, 10, False) for i in kernels])


def test_layer_responses_top_in_order_bottom_sorted(twins):
    top, bottom = plot_layer_responses(list(twins)).axes
    plain_top, plain_bottom = top.get_lines()[0], bottom.get_lines()[0]
    expected = [31 * (i + 1) / 10 for i in range(6)]  # last logged step: 30
    np.testing.assert_allclose(plain_top.get_ydata(), expected)
    np.testing.assert_allclose(plain_bottom.get_ydata(), sorted(expected, reverse=True))
    assert plain_top.get_linestyle() == "--" and top.get_lines()[1].get_linestyle() == "-"


def test_write_figures_leaves_out_what_the_data_does_not_allow(tmp_path):
    plain_only = write_run(tmp_path, "plain8", residual=False, acts=True, grads=False)
    written, skipped = write_figures([plain_only], str(tmp_path / "out"))
    assert [os.path.basename(p) for p in written] == ["layer_responses.png"]
    assert "grad_norm_heatmap.png: no run has grad_norms.jsonl" in skipped
    assert any(note.startswith("residual_ratio.png: no run has") for note in skipped)


def test_figures_leave_matplotlib_global_state_alone(twins, tmp_path):
    backend = matplotlib.get_backend()
    write_figures(list(twins), str(tmp_path / "out"))
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_plot_command_writes_into_run_dir_figures(tmp_path, capsys):
    run_dir = write_run(tmp_path, "resnet8")
    assert main(["plot", run_dir]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [os.path.join(run_dir, "figures", name) for name in FIGURES]
    assert png_size(out[0]) == (650, 600)


def test_plot_command_twins_side_by_side(twins, tmp_path, capsys):
    out_dir = tmp_path / "figures"
    assert main(["plot", *twins, "--out", str(out_dir), "--steps", "0", "30"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [str(out_dir / name) for name in FIGURES]
    assert png_size(out_dir / "grad_norm_heatmap.png") == (1200, 600)
    assert png_size(out_dir / "grad_norm_profile.png") == (1100, 450)
    assert captured.err == ""


def test_plot_command_says_what_it_skipped(tmp_path, capsys):
    run_dir = write_run(tmp_path, "plain8", residual=False, acts=False)
    assert main(["plot", run_dir]) == 0
    captured = capsys.readouterr()
    assert [os.path.basename(p) for p in captured.out.splitlines()] == FIGURES[:2]
    assert "reskeras plot: skipped layer_responses.png: no run has" in captured.err


@pytest.mark.parametrize("case, message", [
    ("not_a_run", "`run_dir` must be a reskeras run directory with config.json"),
    ("no_records", "each RUN_DIR must hold grad_norms.jsonl or activations.jsonl"),
    ("out_is_file", "--out must be a directory, not an existing file"),
    ("two_runs_no_out", "--out is required with several run directories"),
    ("negative_step", "--steps must be integers >= 0. Received: steps=[-5]"),
])
def test_plot_command_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, case,
                                                                 message):
    good = write_run(tmp_path, "good")
    (tmp_path / "empty").mkdir()
    no_records = write_run(tmp_path, "bare", grads=False, acts=False)
    (tmp_path / "file.png").write_text("x")
    out = str(tmp_path / "out")
    argv = {"not_a_run": [good, str(tmp_path / "empty"), "--out", out],
            "no_records": [good, no_records, "--out", out],
            "out_is_file": [good, "--out", str(tmp_path / "file.png")],
            "two_runs_no_out": [good, good],
            "negative_step": [good, "--out", out, "--steps", "-5"]}[case]
    assert main(["plot", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("reskeras plot: error: ")
    assert message in captured.err
    assert not os.path.exists(out) and not os.path.exists(os.path.join(good, "figures"))


def test_plot_error_is_one_line_naming_the_directory(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"reskeras plot: error: `run_dir` must be a reskeras run directory with config.json. "
        f"Received: run_dir={str(tmp_path)!r}"]


def test_residual_ratio_draws_residual_runs_only_by_block(twins):
    (ax,) = plot_residual_ratio(list(twins)).axes
    (line,) = ax.get_lines()
    assert line.get_label() == "resnet8, step 30"
    np.testing.assert_allclose(line.get_ydata(), [0.2, 0.4, 0.6])
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "stage1_block1", "stage2_block1", "stage3_block1"]
