"""Versions, no overwrite, atomic publishing (kill -9 mid-write), failure cleanup, Keras models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from export import existing_versions, export_savedmodel, verify
from export import exporter as exporter_lib
from export.layout import lock_path, name_lock, next_version, publish, remove_stale_temps
from export.reference import read_reference
from reskeras import rundir
from reskeras.builders import build_resnet
from tests.export import trained_run, tree_bytes

FAST = {"verify": False, "warmup_batch_sizes": (1,)}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def run_dir():
    return trained_run()


def test_versions_auto_increment_and_never_overwrite(run_dir, tmp_path):
    base = str(tmp_path / "exports")
    assert export_savedmodel(run_dir, base, "digits", **FAST).version == 1
    before = tree_bytes(base)
    with pytest.raises(ValueError, match=r"`version` must not exist already .* version=1"):
        export_savedmodel(run_dir, base, "digits", version=1, **FAST)
    assert tree_bytes(base) == before
    os.makedirs(os.path.join(base, "digits", "6"))  # e.g. written by another tool
    os.makedirs(os.path.join(base, "digits", "notes"))  # TF Serving ignores non-integer dirs
    with pytest.raises(ValueError, match=r"`version` must not exist already .* version=6"):
        export_savedmodel(run_dir, base, "digits", version=6, **FAST)
    assert existing_versions(os.path.join(base, "digits")) == [1, 6]
    assert next_version(os.path.join(base, "digits")) == 7  # as the tuner test exports 1, 2
    assert tree_bytes(os.path.join(base, "digits", "1")) == {
        name[len("digits/1/"):]: data for name, data in before.items()
        if name.startswith("digits/1/")}


def test_kill_mid_write_leaves_no_version(run_dir, tmp_path):
    base = tmp_path / "exports"
    script = (f"import sys; sys.path.insert(0, {REPO!r}); import reskeras; "
              f"from export import export_savedmodel; "
              f"export_savedmodel({run_dir!r}, {str(base)!r}, 'digits')")
    child = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    model_dir = base / "digits"
    staged, deadline = None, time.monotonic() + 120
    while staged is None and time.monotonic() < deadline and child.poll() is None:
        temps = list(model_dir.glob(".tmp-1-*/saved_model.pb")) if model_dir.is_dir() else []
        staged = temps[0].parent if temps else None
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)  # the exporter and its verification subprocesses
    child.wait()
    assert staged is not None, "the exporter never staged a version"
    assert child.returncode == -signal.SIGKILL
    assert existing_versions(str(model_dir)) == []
    assert [p.name for p in model_dir.iterdir() if p.name.isdigit()] == []
    assert staged.is_dir()  # left behind by the dead process, invisible to TF Serving
    result = export_savedmodel(run_dir, str(base), "digits", **FAST)
    assert result.version == 1
    assert sorted(p.name for p in model_dir.iterdir()) == [".export.lock", "1"]  # stale temp gone


def _fake_savedmodel(source, directory):
    with open(os.path.join(directory, "saved_model.pb"), "wb") as handle:
        handle.write(b"not really a graph")


def test_failed_verification_publishes_nothing(run_dir, tmp_path, monkeypatch):
    failing = verify.VerificationReport("staged")
    failing.add("serving_default parity", False, "max |SavedModel - Keras| = 0.5")
    monkeypatch.setattr(exporter_lib, "write_savedmodel", _fake_savedmodel)
    monkeypatch.setattr(exporter_lib, "verify_export", lambda *a, **k: failing)
    with pytest.raises(verify.VerificationError, match="serving_default parity: max"):
        export_savedmodel(run_dir, str(tmp_path), "digits", warmup_batch_sizes=(1,))
    assert sorted(os.listdir(tmp_path / "digits")) == [".export.lock"]


def test_error_while_writing_removes_the_staging_dir(run_dir, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(exporter_lib, "write_savedmodel", _fake_savedmodel)
    monkeypatch.setattr(exporter_lib, "write_warmup", broken)
    with pytest.raises(OSError, match="disk full"):
        export_savedmodel(run_dir, str(tmp_path), "digits", **FAST)
    assert sorted(os.listdir(tmp_path / "digits")) == [".export.lock"]


def test_publish_refuses_an_existing_version(tmp_path):
    staged = tmp_path / "m" / ".tmp-3-h-1-ab"
    staged.mkdir(parents=True)
    (tmp_path / "m" / "3").mkdir()
    with pytest.raises(ValueError, match="`version` must not exist already"):
        publish(str(staged), str(tmp_path / "m"), 3)
    assert staged.is_dir() and list((tmp_path / "m" / "3").iterdir()) == []


def test_name_lock_serializes_exporters(tmp_path):
    import threading

    model_dir, order = str(tmp_path / "digits"), []

    def second():
        with name_lock(model_dir):
            order.append("second")

    with name_lock(model_dir) as lock_file:
        waiting = threading.Thread(target=second)
        waiting.start()
        waiting.join(timeout=0.5)
        blocked = waiting.is_alive()
        order.append("first")
    waiting.join(timeout=10)
    assert blocked and order == ["first", "second"]
    assert lock_file == os.path.join(model_dir, ".export.lock")


def test_stale_temp_of_a_live_process_is_kept(tmp_path):
    import socket
    host = "".join(c if c.isalnum() or c in "_." else "_" for c in socket.gethostname())[:40]
    live = tmp_path / f".tmp-1-{host}-{os.getpid()}-aa"
    dead = tmp_path / f".tmp-1-{host}-{2**22 + 12345}-bb"
    other_host = tmp_path / ".tmp-1-elsewhere-1-cc"
    for path in (live, dead, other_host):
        path.mkdir()
    assert remove_stale_temps(str(tmp_path)) == [dead.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other_host.name])


def test_keras_model_to_a_remote_base(run_dir, monkeypatch):
    # ram:// stands in for gs://: no atomic directory rename, files are uploaded one by one
    config = rundir.read_config(run_dir)
    model = build_resnet(8, width=4, input_shape=(8, 8, 1), classes=10,
                         classifier_activation=None)
    base = f"ram://reskeras-export-test-{os.getpid()}"
    with pytest.raises(ValueError, match=r"`preprocessing` is required .* preprocessing=None"):
        export_savedmodel(model, base, "bare", **FAST)
    assert not tf.io.gfile.exists(base)
    copied, copy = [], tf.io.gfile.copy
    monkeypatch.setattr(tf.io.gfile, "copy", lambda src, dst, overwrite=False: (
        copied.append(dst), copy(src, dst, overwrite)))
    try:
        result = export_savedmodel(model, base, "bare", preprocessing=config["preprocessing"],
                                   class_names=list("abcdefghij"), **FAST)
        assert result.path == f"{base}/bare/1"
        assert existing_versions(f"{base}/bare") == [1]
        assert tf.io.gfile.listdir(f"{base}/bare") == ["1"]  # staged locally, not here
        assert copied[-1] == f"{base}/bare/1/saved_model.pb"  # TF Serving can't load before
        assert {f"{base}/bare/1/{f}" for f in ("assets/reskeras.json", "variables/variables.index",
                                                "assets.extra/tf_serving_warmup_requests")} \
            <= set(copied[:-1])
        metadata = result.metadata
        assert metadata["source"] == {"kind": "model", "model_name": model.name}
        assert metadata["arch"] is None and metadata["class_names"] == list("abcdefghij")
        assert metadata["reference"]["kind"] == "random" and metadata["user"] == {}
        reference = read_reference(f"{result.path}/assets/reskeras_reference.npz")
        loaded = tf.saved_model.load(result.path)
        probs = loaded.signatures["serving_default"](images=tf.constant(reference["images"]))
        probs = probs["probabilities"].numpy()
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)  # softmax appended
        assert np.max(np.abs(probs - reference["probabilities"])) <= 1e-5
    finally:
        for root, _, files in list(tf.io.gfile.walk(base)):  # ram:// has no recursive delete
            for name in files:  # and lists assets.extra/* as assets/.extra too
                if tf.io.gfile.exists(f"{root}/{name}"):
                    tf.io.gfile.remove(f"{root}/{name}")
        if os.path.exists(lock_path(f"{base}/bare")):
            os.remove(lock_path(f"{base}/bare"))


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "a/b"}, r"`name` must be a non-empty model name .* name='a/b'"),
    ({"name": ".hidden"}, r"`name` must be .* name='.hidden'"),
    ({"version": 0}, r"`version` must be a positive integer .* version=0"),
    ({"version": "3"}, r"`version` must be a positive integer .* version='3'"),
    ({"warmup_batch_sizes": (0,)}, r"`warmup_batch_sizes` must be .*=\(0,\)"),
    ({"formats": ("coreml",)}, r"`formats` must be distinct entries of .*=\('coreml',\)"),
    ({"metadata": {"k": object}}, r"`metadata` must be a JSON-serializable dict"),
])
def test_bad_arguments_touch_nothing(run_dir, tmp_path, kwargs, message):
    args = {"name": "digits", **kwargs}
    with pytest.raises(ValueError, match=message):
        export_savedmodel(run_dir, str(tmp_path / "base"), **args)
    assert not (tmp_path / "base").exists()
