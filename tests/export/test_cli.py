"""``reskeras export``: output, --verify, and every bad input as one line with exit code 2."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

from reskeras.cli import main
from tests.export import trained_run, tree_bytes, verified_export


@pytest.fixture(scope="module")
def run_dir():
    return trained_run()


def _one_line_error(capsys, argv, pattern):
    import re

    try:
        code = main(argv)
    except SystemExit as exit:  # argparse rejects a value: the same one line and exit 2
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err
    assert re.match(r"reskeras export: error: " + pattern, err), err
    return err


@pytest.fixture(scope="module")
def cli_export(run_dir, tmp_path_factory):
    """``reskeras export --run ... --version 3 --no-verify``: exit code, stdout, base dir."""
    import contextlib
    import io

    base = str(tmp_path_factory.mktemp("cli") / "exports")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["export", "--run", run_dir, "--base", base, "--name", "digits",
                     "--version", "3", "--no-verify"])
    return code, out.getvalue(), base


def test_cli_exports_and_prints_version_dirs(cli_export):
    code, out, base = cli_export
    assert (code, out) == (0, os.path.join(base, "digits", "3") + "\n")
    with open(os.path.join(base, "digits", "3", "assets", "reskeras.json")) as handle:
        assert json.load(handle)["version"] == 3


@pytest.mark.slow
def test_cli_verify_reports_each_check(capsys):
    exported = verified_export()
    assert main(["export", "--verify", exported.path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"verified: {exported.path}"
    assert len(lines) == 13 and all(line.startswith("ok   ") for line in lines[:-1])
    assert any(line.startswith("ok   serve_bytes parity: max |SavedModel - Keras| = ")
               for line in lines)


def test_cli_verify_fails_on_a_tampered_export(tmp_path, capsys):
    copy = tmp_path / "digits" / "1"
    shutil.copytree(verified_export().path, copy)
    os.remove(copy / "assets.extra" / "tf_serving_warmup_requests")
    assert main(["export", "--verify", str(copy)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == ["FAIL files: missing ['assets.extra/tf_serving_warmup_requests']",
                   f"FAILED: {copy}"]


def _unfinished_run(tmp_path, run_dir):
    target = tmp_path / "unfinished"
    shutil.copytree(run_dir, target)
    with open(target / "summary.json", "w") as handle:
        json.dump({"status": "diverged", "step": 3, "last_checkpoint_step": 0}, handle)
    return str(target)


def _tuner_dir(tmp_path, statuses):
    target = tmp_path / "tune"
    target.mkdir()
    trials = [{"trial_id": f"t{i}", "status": s, "score": None} for i, s in enumerate(statuses)]
    with open(target / "leaderboard.json", "w") as handle:
        json.dump({"objective": {"name": "val_accuracy", "direction": "max"},
                   "trials": trials}, handle)
    return str(target)


def test_bad_inputs_are_one_line_exit_2_and_touch_nothing(run_dir, cli_export, tmp_path,
                                                          capsys):
    base = Path(cli_export[2])
    before = tree_bytes(str(base))
    common = ["--base", str(base), "--name", "digits"]
    missing = str(tmp_path / "nope")
    cases = [
        (["--run", missing, *common], r"`run_dir` must be an existing reskeras run directory\. "
                                      r"Received: run_dir='.*nope'"),
        (["--run", str(tmp_path), *common], r"`run_dir` must be a reskeras run directory with "
                                            r"config\.json"),
        (["--run", _unfinished_run(tmp_path, run_dir), *common],
         r"`run_dir` must hold a finished run .* \(status: diverged\)"),
        (["--tuner", missing, *common], r"`tuner_dir` must be a tuner directory holding "
                                        r"leaderboard\.json"),
        (["--tuner", _tuner_dir(tmp_path, ["FAILED", "RUNNING"]), *common],
         r"`tuner_dir` must have at least one COMPLETED trial .* statuses \['FAILED', 'RUNNING'\]"),
        (["--tuner", missing, "--top", "0", *common], r"argument --top: must be a positive "
                                                      r"integer\. Received: '0'"),
        (["--run", run_dir, "--top", "2", *common], r"--top needs --tuner"),
        (["--run", run_dir, "--version", "abc", *common], r"argument --version: must be a "
                                                          r"positive integer\. Received: 'abc'"),
        (["--run", run_dir, "--version", "0", *common], r"argument --version: must be a positive"),
        (["--run", run_dir, "--version", "-3", *common], r"argument --version: .*"),
        (["--run", run_dir, "--version", "3", *common],
         r"`version` must not exist already \(exports are never overwritten\)\. Received: "
         r"version=3"),
        (["--run", run_dir, "--base", str(tmp_path / "afile" / "sub"), "--name", "digits"],
         r"`base_dir` must be a writable directory\. Received: base_dir='.*afile/sub'"),
        (["--run", run_dir, "--base", str(base), "--name", "a/b"],
         r"`name` must be a non-empty model name without path separators .* name='a/b'"),
        (["--run", run_dir, "--base", str(base), "--name", ".."], r"`name` must be .*name='\.\.'"),
        (["--run", run_dir, "--name", "digits"], r"--base is required with --run and --tuner"),
        (["--base", str(base), "--name", "digits"], r"one of the arguments --run --tuner "
                                                    r"--model --verify is required"),
        (["--verify", missing], r"--verify must be an existing export version directory"),
        (["--verify", str(base / "digits" / "3"), "--name", "x"], r"--verify takes only a "
                                                                  r"directory; drop --name"),
    ]
    (tmp_path / "afile").write_text("a file, not a directory")
    for argv, pattern in cases:
        _one_line_error(capsys, ["export", *argv], pattern)
    assert tree_bytes(str(base)) == before
    assert sorted(os.listdir(base / "digits")) == [".export.lock", "3"]


@pytest.mark.skipif(importlib.util.find_spec("tf2onnx") is not None
                    and importlib.util.find_spec("onnxruntime") is not None,
                    reason="tf2onnx and onnxruntime are installed: --onnx works here")
def test_onnx_without_its_extra_says_what_to_install(run_dir, tmp_path, capsys):
    _one_line_error(capsys, ["export", "--run", run_dir, "--base", str(tmp_path), "--name", "d",
                             "--onnx"], r"ONNX export needs .*: pip install reskeras\[onnx\]")
    assert os.listdir(tmp_path) == []
