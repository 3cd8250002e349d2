"""Resume: the oracles' reload (grid search included) and a real kill -9 of a search."""

import json
import os
import signal
import subprocess
import sys
import time

import keras_tuner as kt
import pytest

from tuning.tuner import GridOracle, RandomOracle

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}


def _space():
    hp = kt.HyperParameters()
    hp.Choice("depth", [8, 14, 20])
    hp.Choice("width", [2, 4])
    return hp


def _drive(oracle_class, directory, stop_after=None):
    """Runs trials against the oracle alone (no training); returns (oracle, values tried).

    With ``stop_after``, the process "dies" while trial number ``stop_after`` runs.
    """
    oracle = oracle_class(objective=kt.Objective("score", "max"), max_trials=20,
                          hyperparameters=_space(), seed=3)
    oracle._set_project_dir(str(directory), "p")
    if os.path.exists(os.path.join(directory, "p", "oracle.json")):
        oracle.reload()
    tried = []
    while True:
        trial = oracle.create_trial("tuner0")
        if trial.status == "STOPPED":
            return oracle, tried
        assert trial.status == "RUNNING"
        values = trial.hyperparameters.values
        tried.append((values["depth"], values["width"]))
        if stop_after is not None and len(tried) == stop_after:
            return oracle, tried
        oracle.update_trial(trial.trial_id, {"score": float(values["depth"])})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)


def test_grid_search_resumes_where_it_stopped(tmp_path):
    """Keras Tuner 1.4.8 loses the grid oracle's ordering on reload (keras-tuner#1055):
    the stock oracle raises KeyError in the first trial after a resume."""
    _, before = _drive(GridOracle, tmp_path, stop_after=3)
    oracle, after = _drive(GridOracle, tmp_path)
    assert before[-1] == after[0]  # the interrupted trial runs again, first
    assert sorted(set(before) | set(after)) == [(d, w) for d in (8, 14, 20) for w in (2, 4)]
    assert len(before) + len(after) == 6 + 1
    assert sorted(t.status for t in oracle.trials.values()) == ["COMPLETED"] * 6
    stock = tmp_path / "stock"
    _drive(kt.oracles.GridSearchOracle, stock, stop_after=3)
    with pytest.raises(KeyError):
        _drive(kt.oracles.GridSearchOracle, stock)


def test_a_trial_file_without_oracle_state_is_run_again(tmp_path):
    """A kill between create_trial's trial.json and oracle.json leaves a RUNNING trial the
    oracle state does not list: it is queued again instead of being lost."""
    oracle, tried = _drive(RandomOracle, tmp_path, stop_after=2)
    state_file = os.path.join(tmp_path, "p", "oracle.json")
    with open(state_file) as handle:
        state = json.load(handle)
    running = state["ongoing_trials"].pop("tuner0")
    state["start_order"].remove(running)
    with open(state_file, "w") as handle:
        json.dump(state, handle)
    resumed, after = _drive(RandomOracle, tmp_path)
    assert after[0] == tried[-1]
    assert sorted(resumed.trials) == sorted(set(resumed.trials))
    assert all(t.status == "COMPLETED" for t in resumed.trials.values())
    assert len(resumed.trials) == 6


def _tune(out):
    return [sys.executable, "-m", "tuning", "--dataset", "digits", "--tuner", "random",
            "--max-trials", "3", "--max-epochs", "3", "--depths", "8", "14", "--widths", "2",
            "4", "--no-xla", "--out", str(out)]


def _wait_for(path, process, timeout=300.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.slow  # about 45 s: two TensorFlow start-ups and three short trials
def test_killed_search_resumes_its_interrupted_trial_and_redoes_no_finished_one(tmp_path):
    out = tmp_path / "tune"
    first = subprocess.Popen(_tune(out), env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        reached = (_wait_for(out / "trials" / "0.json", first)
                   and _wait_for(out / "runs" / "1" / "checkpoints" / "checkpoint", first))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert reached, "the search ended before trial 1 wrote its first checkpoint"
    assert not (out / "runs" / "1" / "summary.json").exists()  # killed inside trial 1
    finished = out / "runs" / "0" / "summary.json"
    kept = (finished.read_bytes(), finished.stat().st_mtime_ns)
    with open(out / "runs" / "1" / "metrics.jsonl") as handle:
        epochs_before = [json.loads(line) for line in handle]
    assert [r["epoch"] for r in epochs_before] == [1]
    second = subprocess.run(_tune(out), env=ENV, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "3 of 3 trials completed" in second.stdout
    assert (finished.read_bytes(), finished.stat().st_mtime_ns) == kept
    with open(out / "runs" / "1" / "metrics.jsonl") as handle:
        epochs_after = [json.loads(line) for line in handle]
    assert [r["epoch"] for r in epochs_after] == [1, 2, 3]
    assert epochs_after[0] == epochs_before[0]  # epoch 1 came from the checkpoint
    with open(out / "leaderboard.json") as handle:
        board = json.load(handle)
    trials = board["trials"]
    assert sorted(t["trial_id"] for t in trials) == ["0", "1", "2"]
    assert [t["status"] for t in trials] == ["COMPLETED"] * 3
    samples = [(t["hyperparameters"]["depth"], t["hyperparameters"]["width"]) for t in trials]
    assert len(set(samples)) == 3
    assert sorted(os.listdir(out / "runs")) == ["0", "1", "2"]
