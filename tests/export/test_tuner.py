"""``--tuner TUNE_DIR --top K``: the K best COMPLETED trials of a leaderboard, one version each.

The tuner directory is the suite's one real Hyperband search (tests/conftest.py), exactly as
``reskeras tune`` leaves it: its leaderboard, run directories and ``model.keras`` files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from export import export_tuner
from reskeras.cli import main
from reskeras.data import load_dataset
from reskeras.preprocessing import normalize
from reskeras._backend import keras


@pytest.fixture(scope="module")
def tuner_dir(hyperband_search):
    return str(hyperband_search[1])


def _metadata(path):
    with open(os.path.join(path, "assets", "reskeras.json")) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def top_two(tuner_dir, tmp_path_factory):
    """``reskeras export --tuner ... --top 2 --no-verify``: exit code and printed paths."""
    import contextlib
    import io

    base = tmp_path_factory.mktemp("exports")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["export", "--tuner", tuner_dir, "--top", "2", "--base", str(base),
                     "--name", "digits", "--no-verify"])
    return code, out.getvalue().splitlines(), base


def test_top_k_exports_best_as_highest_version(tuner_dir, top_two):
    code, paths, base = top_two
    assert code == 0
    assert paths == [str(base / "digits" / "2"), str(base / "digits" / "1")]  # best first
    with open(os.path.join(tuner_dir, "leaderboard.json")) as handle:
        board = json.load(handle)
    best, second = board["trials"][:2]
    for path, trial in zip(paths, (best, second)):
        metadata = _metadata(path)
        assert metadata["source"] == {
            "kind": "tuner", "tuner_dir": tuner_dir, "trial_id": trial["trial_id"],
            "score": trial["score"], "objective": {"name": "val_accuracy", "direction": "max"},
            "hyperparameters": trial["hyperparameters"], "run_dir": trial["run_dir"],
            "weights": trial["weights"]}
        assert metadata["arch"] == trial["arch"] and metadata["metrics"] == trial["metrics"]
    # each version is rebuilt from its own trial's arch (depth and width as sampled)
    for path, trial in zip(paths, (best, second)):
        arch = _metadata(path)["arch"]
        assert (sum(arch["depths"]) * 2 + 2, arch["widths"][0]) == (
            trial["hyperparameters"]["depth"], trial["hyperparameters"]["width"])


def test_exported_trials_have_their_weights(tuner_dir, top_two):
    images = load_dataset("digits").arrays("test")[0][:32]
    for path in top_two[1]:
        metadata = _metadata(path)
        trained = keras.saving.load_model(os.path.join(tuner_dir, metadata["source"]["weights"]))
        expected = trained(normalize(images, metadata["preprocessing"]), training=False)
        served = tf.saved_model.load(path).signatures["serving_default"](
            images=tf.constant(images))
        assert np.max(np.abs(served["probabilities"].numpy() - expected.numpy())) <= 1e-5


def test_top_must_be_positive_and_trials_complete(tuner_dir, tmp_path):
    with pytest.raises(ValueError, match=r"`top` must be a positive integer\. Received: top=0"):
        export_tuner(tuner_dir, str(tmp_path), "digits", top=0)
    with open(os.path.join(tuner_dir, "leaderboard.json")) as handle:
        board = json.load(handle)
    second = board["trials"][1]["trial_id"]
    board["trials"][1]["weights"] = f"runs/{second}/missing.keras"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "leaderboard.json").write_text(json.dumps(board))
    (broken / "runs").symlink_to(os.path.join(tuner_dir, "runs"))
    message = (r"each COMPLETED trial must point to an existing weights file\. "
               rf"Received: weights='runs/{second}/missing")
    with pytest.raises(ValueError, match=message):
        export_tuner(str(broken), str(tmp_path / "base"), "digits", top=2)
    assert sorted(os.listdir(tmp_path)) == ["broken"]  # the best trial was not exported either
