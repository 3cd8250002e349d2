"""Helpers shared by the export tests: one tiny trained run per process, a fake tuner dir.

Fixtures cannot live in a conftest here, so the expensive facts are cached at
module level: every test module asking for the digits run gets the same
directory, trained once (depth 8, width 4, one epoch: ~8 s on 2 cores).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile

import tensorflow as tf

_RUNS: dict = {}
_ROOT = None


def _root() -> str:
    global _ROOT
    if _ROOT is None:
        _ROOT = tempfile.mkdtemp(prefix="reskeras-export-tests-")
        atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
    return _ROOT


def trained_run(width: int = 4, seed: int = 0) -> str:
    """A finished 1-epoch digits run of a depth-8 ResNet (trained once per process), with
    precise BN statistics in its model.keras: what an export serves."""
    from reskeras.train import TrainConfig, train

    key = (width, seed)
    if key not in _RUNS:
        out = os.path.join(_root(), f"runs/resnet8_w{width}_s{seed}")
        result = train(TrainConfig(out=out, depth=8, width=width, dataset="digits", epochs=1,
                                   recipe="adam", seed=seed, jit_compile=False,
                                   precise_bn=True, verbose=0))
        assert result.status == "finished"
        _RUNS[key] = out
    return _RUNS[key]


def verified_export():
    """The trained run exported (and verified) once per process as ``BASE/digits/1``."""
    from export import export_savedmodel

    if "verified" not in _RUNS:
        run_dir, cwd = trained_run(), os.getcwd()
        os.chdir(_root())  # relative paths, as users type them
        try:
            result = export_savedmodel(os.path.relpath(run_dir), "exports", "digits",
                                       metadata={"owner": "tests"})
        finally:
            os.chdir(cwd)
        assert result.path == os.path.join("exports", "digits", "1")
        result.path = result.report.path = os.path.join(_root(), result.path)
        _RUNS["verified"] = result
    return _RUNS["verified"]


def tree_bytes(path: str) -> dict[str, bytes]:
    """Every file under ``path`` and its bytes (to prove nothing was touched)."""
    files = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                files[os.path.relpath(full, path)] = handle.read()
    return files


def make_tuner_dir(path: str, runs: list[tuple[str, str, float]]) -> str:
    """A tuner dir per the leaderboard contract from finished runs ``(trial_id, run, score)``.

    Each run is copied to ``path/trials/<trial_id>``; two more trials (FAILED,
    RUNNING) without runs are added; trials are sorted best first.
    """
    trials = []
    for trial_id, run_dir, score in runs:
        target = os.path.join(path, "trials", trial_id)
        shutil.copytree(run_dir, target)
        with open(os.path.join(target, "config.json")) as handle:
            config = json.load(handle)
        with open(os.path.join(target, "summary.json")) as handle:
            final = json.load(handle)["final"]
        trials.append({
            "trial_id": trial_id, "status": "COMPLETED", "score": score,
            "metrics": {k: final[k] for k in ("val_accuracy", "val_loss", "accuracy", "loss")},
            "hyperparameters": {"depth": 8, "width": config["arch"]["widths"][0]},
            "arch": config["arch"], "params": 0, "seconds": final["seconds"],
            "gradients": {"state": "healthy"}, "run_dir": f"trials/{trial_id}",
            "weights": f"trials/{trial_id}/model.keras"})
    trials.sort(key=lambda t: -t["score"])
    for trial_id, status in (("t_failed", "FAILED"), ("t_running", "RUNNING")):
        trials.append({"trial_id": trial_id, "status": status, "score": None, "metrics": {},
                       "hyperparameters": {}, "arch": None, "params": 0, "seconds": 0.0,
                       "gradients": {}, "run_dir": None, "weights": None})
    tf.io.gfile.makedirs(path)
    with open(os.path.join(path, "leaderboard.json"), "w") as handle:
        json.dump({"objective": {"name": "val_accuracy", "direction": "max"},
                   "trials": trials}, handle)
    return path
