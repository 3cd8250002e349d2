"""Keras Tuner's distributed mode: the CLI's chief/worker flags and a chief + 2 workers run."""

import json
import os
import subprocess
import sys

import pytest

from tuning import distributed

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
for _name in (distributed.ENV_ID, distributed.ENV_IP, distributed.ENV_PORT):
    ENV.pop(_name, None)


def test_addresses_ids_and_roles():
    assert distributed.parse_address("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert distributed.parse_address("[::1]:9") == ("::1", 9)
    for bad in ("8000", "host:", "host:0", "host:70000", ""):
        with pytest.raises(ValueError, match="`oracle_address` must be HOST:PORT"):
            distributed.parse_address(bad)
    assert distributed.worker_id(3) == "tuner3" and distributed.worker_id("gpu-a") == "gpu-a"
    with pytest.raises(ValueError, match="without 'chief'"):
        distributed.worker_id("chief1")
    assert distributed.role_from_environment({}) is None
    assert distributed.role_from_environment({distributed.ENV_IP: "h", distributed.ENV_PORT: "1",
                                              distributed.ENV_ID: "chief"}) == "chief"
    assert distributed.role_from_environment({distributed.ENV_IP: "h", distributed.ENV_PORT: "1",
                                              distributed.ENV_ID: "tuner1"}) == "worker"
    with pytest.raises(ValueError, match="KERASTUNER_ORACLE_PORT and KERASTUNER_TUNER_ID"):
        distributed.role_from_environment({distributed.ENV_IP: "h"})


def test_tuner_environment_is_restored(monkeypatch):
    monkeypatch.setenv(distributed.ENV_ID, "before")
    monkeypatch.delenv(distributed.ENV_IP, raising=False)
    monkeypatch.delenv(distributed.ENV_PORT, raising=False)
    with distributed.tuner_environment("tuner2", "10.0.0.2:8123"):
        assert (os.environ[distributed.ENV_ID], os.environ[distributed.ENV_IP],
                os.environ[distributed.ENV_PORT]) == ("tuner2", "10.0.0.2", "8123")
    assert os.environ[distributed.ENV_ID] == "before"
    assert distributed.ENV_IP not in os.environ and distributed.ENV_PORT not in os.environ


def _tune(out, *role):
    return [sys.executable, "-m", "tuning", "--dataset", "digits", "--tuner", "random",
            "--max-trials", "4", "--max-epochs", "1", "--depths", "8", "--widths", "2", "3", "4",
            "5", "6", "7", "--no-xla", "--seed", "1", "--out", str(out), *role]


@pytest.mark.slow  # about 45 s: three TensorFlow start-ups sharing 2 cores
def test_chief_and_two_workers_run_each_trial_once(tmp_path):
    out = tmp_path / "tune"
    address = f"127.0.0.1:{distributed.free_port()}"
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("chief", "w1", "w2")}
    processes = {"chief": subprocess.Popen(_tune(out, "--chief", "--oracle-address", address),
                                           env=ENV, stdout=logs["chief"],
                                           stderr=subprocess.STDOUT)}
    for name, worker in (("w1", "1"), ("w2", "2")):
        processes[name] = subprocess.Popen(
            _tune(out, "--worker", worker, "--oracle-address", address), env=ENV,
            stdout=logs[name], stderr=subprocess.STDOUT)
    try:
        codes = {name: process.wait(timeout=600) for name, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
        for handle in logs.values():
            handle.close()
    tails = {name: (tmp_path / f"{name}.log").read_text()[-2000:] for name in processes}
    assert codes == {"chief": 0, "w1": 0, "w2": 0}, tails
    with open(out / "leaderboard.json") as handle:
        board = json.load(handle)
    trials = board["trials"]
    assert sorted(t["trial_id"] for t in trials) == ["0", "1", "2", "3"]
    assert [t["status"] for t in trials] == ["COMPLETED"] * 4
    samples = [json.dumps(t["hyperparameters"], sort_keys=True) for t in trials]
    assert len(set(samples)) == 4
    assert sorted(os.listdir(out / "runs")) == ["0", "1", "2", "3"]
    workers = set()
    for entry in trials:
        with open(out / entry["run_dir"] / "metrics.jsonl") as handle:
            assert len(handle.read().splitlines()) == 1  # one epoch, trained once
        with open(out / "trials" / f"{entry['trial_id']}.json") as handle:
            workers.add(json.load(handle)["tuner_id"])
    assert workers <= {"tuner1", "tuner2"}
    assert "4 of 4 trials completed" in tails["chief"]
    assert "worker finished" in tails["w1"] and "worker finished" in tails["w2"]
