"""The suite's real 4-trial Hyperband search on digits (tests/conftest.py), the leaderboard
contract, per-trial callbacks, budget rejection before training, re-runs, and bad input (exit 2)."""

import json
import os

import keras
import numpy as np
import pytest

import reskeras  # noqa: F401  (registers the layers model.keras files need)
from reskeras import rundir
from reskeras.cli import main
from reskeras.data import load_dataset
from tuning import read_leaderboard
from tuning.budget import model_cost
from tests.tuning.documented import ENTRY_KEYS, FIGURE_SIZE, GRADIENT_KEYS
from tuning.search import run_search
from tests.conftest import SEARCH_ARGS, search_config

def test_trial_tables_are_plain_text_outside_a_notebook(hyperband_search):
    # Keras Tuner 1.4.8 took any process that can import IPython for a notebook and
    # wrote IPython's clear_output() escape after every trial (only where IPython is
    # installed: Colab, most workstations; without it the tables were plain already)
    shown = (hyperband_search[0] / "display.txt").read_text()
    assert [f"Trial {n} Complete" in shown for n in (1, 2, 3, 4)] == [True] * 4
    assert "\x1b" not in shown


def _snapshot(folder):
    files = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, folder)] = (handle.read(), os.stat(path).st_mtime_ns)
    return files


def test_leaderboard_is_complete_and_sorted_best_first(hyperband_search):
    _, tune, result, _ = hyperband_search
    board = read_leaderboard(str(tune))
    assert board == result
    assert list(board) == ["objective", "search", "trials"]
    assert board["objective"] == {"name": "val_accuracy", "direction": "max"}
    assert board["search"]["tuner"] == "hyperband" and board["search"]["max_trials"] == 4
    assert board["search"]["completed"] == 4 and board["search"]["dataset"] == "digits"
    trials = board["trials"]
    assert len(trials) == 4 and sorted(t["trial_id"] for t in trials) == ["0", "1", "2", "3"]
    scores = [t["score"] for t in trials]
    assert scores == sorted(scores, reverse=True)
    for entry in trials:
        assert tuple(entry) == ENTRY_KEYS and tuple(entry["gradients"]) == GRADIENT_KEYS
        assert entry["status"] == "COMPLETED" and entry["failure"] is None
        assert entry["run_dir"] == f"runs/{entry['trial_id']}"
        assert entry["weights"] == f"runs/{entry['trial_id']}/model.keras"
        assert os.path.isfile(tune / entry["weights"])
        run = str(tune / entry["run_dir"])
        assert rundir.read_config(run)["arch"] == entry["arch"]
        spec = reskeras.ArchSpec.from_config(entry["arch"])
        assert (spec.depth, spec.widths[0]) == (entry["hyperparameters"]["depth"],
                                                entry["hyperparameters"]["width"])
        assert entry["params"] == model_cost(spec, (8, 8, 1), 10).params
        final = rundir.read_metrics(run)[-1]
        assert entry["score"] == final["val_accuracy"] == entry["metrics"]["val_accuracy"]
        assert entry["seconds"] == pytest.approx(sum(r["seconds"] for r in
                                                     rundir.read_metrics(run)))
        assert entry["gradients"]["state"] == "healthy"
        assert entry["gradients"]["nonfinite"] is False
        assert entry["gradients"]["first_last_ratio_init"] > 0
    with open(tune / "leaderboard.csv") as handle:
        rows = handle.read().splitlines()
    assert [row.split(",")[1] for row in rows[1:]] == [t["trial_id"] for t in trials]
    with open(tune / "leaderboard.png", "rb") as handle:
        header = handle.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    size = (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big"))
    assert size == FIGURE_SIZE
    assert sorted(os.listdir(tune)) == ["keras_tuner", "leaderboard.csv", "leaderboard.json",
                                        "leaderboard.png", "runs", "search.json", "trials"]


def test_hyperband_continues_the_best_first_round_trial_from_its_weights(hyperband_search):
    _, tune, result, _ = hyperband_search
    entries = {t["trial_id"]: t for t in result["trials"]}
    first_round = [t for t in entries.values() if t["hyperparameters"]["tuner/round"] == 0]
    continued = [t for t in entries.values() if t["hyperparameters"]["tuner/round"] == 1]
    assert len(first_round) == 3 and len(continued) == 1
    child = continued[0]
    parent_id = child["hyperparameters"]["tuner/trial_id"]
    assert parent_id == max(first_round, key=lambda t: t["score"])["trial_id"]
    assert [r["epoch"] for r in rundir.read_metrics(str(tune / child["run_dir"]))] == [1, 2]
    parent = keras.saving.load_model(tune / entries[parent_id]["weights"])
    expected = {layer.name: float(np.sqrt(sum(np.sum(np.square(w.numpy().astype(np.float64)))
                                              for w in layer.trainable_weights)))
                for layer in parent.layers if layer.trainable_weights}
    with open(tune / child["run_dir"] / "grad_norms.jsonl") as handle:
        at_start = {r["layer"]: r["weight_norm"] for r in map(json.loads, handle)
                    if r["step"] == 0}
    assert at_start.keys() == expected.keys()
    for name, norm in expected.items():
        assert at_start[name] == pytest.approx(norm, rel=1e-5), name


def test_score_is_the_accuracy_of_the_recorded_weights(hyperband_search):
    _, tune, result, _ = hyperband_search
    data = load_dataset("digits").evaluation(128)
    for entry in result["trials"]:
        model = keras.saving.load_model(tune / entry["weights"])
        hits = total = 0
        for images, labels, _ in data:
            predicted = np.argmax(model(images, training=False).numpy(), axis=-1)
            hits += int(np.sum(predicted == labels.numpy()))
            total += len(labels)
        assert hits / total == pytest.approx(entry["score"], abs=1e-9)


def test_callbacks_are_copied_per_trial_and_write_below_their_trial(hyperband_search):
    root, _, result, logger = hyperband_search
    ids = sorted(t["trial_id"] for t in result["trials"])
    assert logger.history == [] and logger.model is None  # the original never trained
    assert sorted(os.listdir(root / "grads")) == ids
    assert sorted(os.listdir(root / "board")) == ids
    for trial_id in ids:
        with open(root / "grads" / trial_id / "grad_norms.jsonl") as handle:
            steps = sorted({json.loads(line)["step"] for line in handle})
        epochs = len(rundir.read_metrics(str(root / "tune" / "runs" / trial_id)))
        assert steps == list(range(0, 11 * epochs, 4))
        assert os.listdir(root / "board" / trial_id / "train")


def _cli(capsys, *args):
    try:
        code = main(["tune", *args])
    except SystemExit as stop:  # argparse's own errors (also one line, exit 2)
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_rerunning_the_finished_search_trains_nothing_and_exports_the_best(
        hyperband_search, capsys, tmp_path):
    _, tune, result, _ = hyperband_search
    before = _snapshot(tune / "runs")
    code, out, err = _cli(capsys, *SEARCH_ARGS, "--out", str(tune), "--export-top", "1",
                          "--export-base", str(tmp_path / "models"))
    assert code == 0, err
    assert "4 of 4 trials completed" in out
    assert _snapshot(tune / "runs") == before
    # `reskeras export --tuner TUNE_DIR --top 1 --base DIR --name reskeras-digits`
    assert os.listdir(tmp_path / "models") == ["reskeras-digits"]
    assert (tmp_path / "models" / "reskeras-digits" / "1" / "saved_model.pb").is_file()
    board = read_leaderboard(str(tune))
    assert [t["trial_id"] for t in board["trials"]] == [t["trial_id"] for t in result["trials"]]
    assert [t["score"] for t in board["trials"]] == [t["score"] for t in result["trials"]]


@pytest.mark.parametrize("args, message", [
    (["--depths", "8", "21"], "`depth` must be 6n+2 (basic) or 9n+2 (bottleneck)"),
    (["--max-trials", "0"], "`max_trials` must be a positive integer. Received: max_trials=0"),
    (["--tuner", "annealing"], "`tuner` must be one of 'hyperband', 'bayesian', 'random', "
                               "'grid'. Received: tuner='annealing'"),
    (["--widths", "2", "8"], "`out` holds a different search (space:"),
    (["--max-params", "1000"], "`out` holds a different search (budget:"),
    (["--widths"], "expected at least one argument"),
    (["--depths", "8", "--stage-blocks", "1"], "--depths and --stage-blocks exclude"),
    (["--chief"], "--chief and --worker need --oracle-address"),
    (["--export-top", "1"], "--export-top and --export-base go together"),
])
def test_bad_input_is_one_line_exit_2_and_leaves_the_tuner_dir_untouched(
        hyperband_search, capsys, args, message):
    _, tune, _, _ = hyperband_search
    before = _snapshot(tune)
    code, _, err = _cli(capsys, *_replace(SEARCH_ARGS, args), "--out", str(tune))
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err
    assert _snapshot(tune) == before


def _replace(argv, args):
    """``argv`` with the flag ``args`` starts with (and its values) replaced by ``args``."""
    flag, kept, skipping = args[0], [], False
    for arg in argv:
        if arg.startswith("--"):
            skipping = arg == flag
        if not skipping:
            kept.append(arg)
    return kept + list(args)


def test_empty_space_and_unaffordable_budget_are_refused_before_any_write(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"`depths` must not be empty"):
        run_search(search_config(tmp_path / "empty", depths=()))
    fresh = tmp_path / "fresh"
    code, _, err = _cli(capsys, *SEARCH_ARGS, "--max-params", "1000", "--out", str(fresh))
    assert code == 2 and len(err.splitlines()) == 1
    assert ("the budget must admit at least one candidate; the smallest, resnet8_w2, has 1,320 "
            "params") in err and "Received: max_params=1000" in err
    assert not fresh.exists() and not (tmp_path / "empty").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, _, err = _cli(capsys, *SEARCH_ARGS, "--out", str(foreign))
    assert code == 2 and "no search.json" in err
    assert os.listdir(foreign) == ["notes.txt"]


def test_samples_over_budget_fail_before_training_without_stopping_the_search(tmp_path):
    """Random search, seed 5: widths 32, 48, 64 come first and are over max_params, then
    width 2 trains (Keras Tuner alone stops a search after 3 consecutive failed trials)."""
    allowed = model_cost(reskeras.resolve_spec(8, width=2), (8, 8, 1), 10)
    board = run_search(search_config(tmp_path, tuner="random", seed=5, depths=(8,),
                                     widths=(2, 32, 48, 64), max_trials=4, max_epochs=1,
                                     max_params=allowed.params), display=False)
    trials = sorted(board["trials"], key=lambda t: t["trial_id"])
    assert [(t["trial_id"], t["hyperparameters"]["width"], t["status"]) for t in trials] == [
        ("0", 32, "FAILED"), ("1", 48, "FAILED"), ("2", 64, "FAILED"), ("3", 2, "COMPLETED")]
    assert [t["trial_id"] for t in board["trials"]] == ["3", "0", "1", "2"]  # best first
    assert sorted(os.listdir(tmp_path / "runs")) == ["3"]  # nothing else was trained
    for entry in trials[:3]:
        width = entry["hyperparameters"]["width"]
        params = model_cost(reskeras.resolve_spec(8, width=width), (8, 8, 1), 10).params
        assert entry["params"] == params
        assert entry["failure"] == (f"over budget: params {params:,} > max_params "
                                    f"{allowed.params:,}")
        assert entry["score"] is None and entry["run_dir"] is None and entry["weights"] is None
        assert entry["seconds"] == 0.0
        with open(tmp_path / "trials" / f"{entry['trial_id']}.json") as handle:
            assert json.load(handle)["failure"] == entry["failure"]
