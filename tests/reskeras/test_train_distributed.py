"""The trainer across processes: 2 logical CPUs, 2 workers on 127.0.0.1, kill -9 and resume.

Logical devices and TF_CONFIG are fixed per process, so each case runs in
subprocesses (about 7 s of TensorFlow start-up each).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import keras
import reskeras  # noqa: F401  (registers ZeroPadShortcut for load_model)

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}


def _python(code: str, *, env=None, timeout=300):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env or ENV, timeout=timeout)


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_two_replicas_train_through_the_reskeras_step_as_one_device(tmp_path):
    """The default run's multi-replica training (about 15 s): resnet8 with synchronized BN,
    3 steps of the reskeras trainer on one CPU and on 2 logical CPUs, the same global batch.
    The per-layer gradient norms the logger writes and the final weights agree."""
    result = _python(f"""
        from reskeras.distribute import configure_cpu_replicas
        configure_cpu_replicas(2)
        import json, keras, numpy as np, tensorflow as tf
        from reskeras.train import TrainConfig, train

        def trainer(name, use):
            keras.backend.clear_session()
            result = train(TrainConfig(out="{tmp_path}/" + name, model="resnet8",
                                       dataset="digits", steps=3, batch_size=64, sync_bn=True,
                                       jit_compile=False, grad_norms_every=1, verbose=0),
                           strategy=use)
            norms = [json.loads(l) for l in open("{tmp_path}/" + name + "/grad_norms.jsonl")]
            return result.status, [w.tolist() for w in result.model.get_weights()], norms

        one = trainer("one", tf.distribute.OneDeviceStrategy("/cpu:0"))
        two = trainer("two", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
        replicas = json.load(open("{tmp_path}/two/config.json"))["environment"]["replicas"]
        print(json.dumps({{"one": one, "two": two, "replicas": replicas}}))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    facts = _last_json(result.stdout)
    assert facts["replicas"] == 2 and facts["one"][0] == facts["two"][0] == "finished"
    gap = max(float(np.max(np.abs(np.subtract(a, b))))
              for a, b in zip(facts["one"][1], facts["two"][1]))
    assert gap < 1e-4  # the same weights up to float noise (see the slow test below)
    single, mirrored = facts["one"][2], facts["two"][2]
    assert len(single) == len(mirrored) == 3 * 15  # 3 steps x 15 layers
    for a, b in zip(single, mirrored):
        assert (a["step"], a["layer"]) == (b["step"], b["layer"])
        # the aggregated gradient, not one replica's (off by about sqrt(2)) nor a sum (2x);
        # after an update BN amplifies the weights' rounding differences (0.4% at step 1)
        tolerance = 1e-4 if a["step"] == 0 else 2e-2
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=tolerance), a


@pytest.mark.slow  # about 50 s; the default run trains BN on 2 replicas (the test above);
def test_mirrored_on_two_cpus_matches_one_device(tmp_path):  # this adds XLA, an odd batch
    result = _python(f"""
        from reskeras.distribute import configure_cpu_replicas
        configure_cpu_replicas(2)
        import json, keras, numpy as np, tensorflow as tf
        from reskeras.train import TrainConfig, build_run_model, train

        def weights(out, use=None, **kw):
            keras.backend.clear_session()
            values = dict(out=out, dataset="digits", steps=6, batch_size=64, seed=3, verbose=0)
            values.update(kw)
            config = TrainConfig(**values)
            result = train(config, strategy=use)
            return result.model.get_weights(), result

        def gap(a, b):
            return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))

        one = tf.distribute.OneDeviceStrategy("/cpu:0")
        bn = dict(model="resnet8", sync_bn=True, jit_compile=False)
        w1, _ = weights("{tmp_path}/bn1", one, **bn)
        w2, r2 = weights("{tmp_path}/bn2", strategy="mirrored", cpu_replicas=2, **bn)
        plain = dict(depth=8, batch_norm=False, jit_compile=True, recipe="adam")
        w3, _ = weights("{tmp_path}/xla1", one, **plain)
        w4, r4 = weights("{tmp_path}/xla2", strategy="mirrored", cpu_replicas=2, **plain)
        keras.utils.set_random_seed(3)
        initial = build_run_model(json.load(open("{tmp_path}/bn1/config.json"))).get_weights()
        try:
            weights("{tmp_path}/odd", strategy="mirrored", cpu_replicas=2, model="resnet8",
                    batch_size=63)
            odd = "no error"
        except ValueError as error:
            odd = str(error)
        print(json.dumps({{"bn_gap": gap(w1, w2), "xla_gap": gap(w3, w4),
                          "moved": gap(w1, weights("{tmp_path}/init", one, steps=1, **bn)[0]),
                          "replicas": json.load(open("{tmp_path}/bn2/config.json"))
                                      ["environment"]["replicas"],
                          "xla_modes": [r2.status, r4.status], "odd": odd}}))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    facts = _last_json(result.stdout)
    assert facts["replicas"] == 2 and facts["xla_modes"] == ["finished", "finished"]
    # same global batch, BN statistics over the global batch: same weights up to float noise,
    # far below what 5 more optimizer steps change
    assert facts["bn_gap"] < 1e-4 < facts["moved"]
    assert facts["xla_gap"] < 1e-4
    assert "batch_size" in facts["odd"] and "63" in facts["odd"] and "2 replicas" in facts["odd"]


@pytest.mark.slow  # 18 s; test_distribute's test_mirrored_over_two_logical_cpus runs by default
def test_mirrored_runs_evaluate_the_whole_test_split_and_leave_no_graph_behind(tmp_path):
    # ReplicaContext.all_reduce is a tf.custom_gradient: its entry in TensorFlow's global
    # gradient registry kept every multi-replica run's traced step (and its graphs) alive.
    # 360 test images in global batches of 64 end with 20 per replica: none lost or repeated.
    result = _python(f"""
        from reskeras.distribute import configure_cpu_replicas
        configure_cpu_replicas(2)
        import gc, json, keras, numpy as np
        from tensorflow.python.framework.func_graph import FuncGraph
        from reskeras.data import load_dataset
        from reskeras.preprocessing import normalize
        from reskeras.train import TrainConfig, train

        images, labels = load_dataset("digits").arrays("test")
        images = normalize(images, load_dataset("digits").info.preprocessing)

        def run(name):
            result = train(TrainConfig(out="{tmp_path}/" + name, model="resnet8",
                                       dataset="digits", steps=4, batch_size=64, verbose=0,
                                       strategy="mirrored", cpu_replicas=2, jit_compile=False))
            predicted = result.model(images, training=False).numpy().argmax(-1)
            accuracy = float(np.mean(predicted == labels))
            keras.backend.clear_session()
            gc.collect()
            return (result.status, result.history[-1]["val_accuracy"] - accuracy,
                    sum(isinstance(o, FuncGraph) for o in gc.get_objects()))

        print(json.dumps([run(name) for name in "abc"]))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = _last_json(result.stdout)
    assert [status for status, _, _ in runs] == ["finished"] * 3
    assert all(abs(gap) < 1e-9 for _, gap, _ in runs)
    first, second, third = (graphs for _, _, graphs in runs)
    assert first == second == third


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow  # 15 s; test_distribute's test_multiworker_on_two_local_processes runs by default
def test_two_workers_on_localhost_train_identical_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = tmp_path / "run"
    code = textwrap.dedent(f"""
        import sys, numpy as np
        from reskeras.train import TrainConfig, train
        result = train(TrainConfig(out="{out}", model="resnet8", dataset="digits", steps=6,
                                   batch_size=64, strategy="multiworker", verbose=0,
                                   grad_norms_every=3, activations_every=3))
        np.savez(sys.argv[1], *result.model.get_weights())
        print(result.status, result.step)
    """)
    workers = []
    for index in range(2):
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster,
                                               "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / f"w{index}.npz")], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=240))
    finally:
        for worker in workers:
            worker.kill()
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
        assert stdout.split()[-2:] == ["finished", "6"]
    first, second = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert len(first.files) == len(second.files) > 0
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])
    config = json.loads((out / "config.json").read_text())
    assert config["environment"]["replicas"] == 2
    # only the chief (worker 0) writes the run directory
    assert sorted(os.listdir(out)) == ["activations.jsonl", "checkpoints", "config.json",
                                       "grad_norms.jsonl", "metrics.jsonl", "model.keras",
                                       "summary.json", "tensorboard"]
    grads = [json.loads(line) for line in (out / "grad_norms.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in grads}) == [0, 3] and len(grads) == 2 * 15  # no duplicates
    assert all(r["grad_norm"] > 0 for r in grads)
    saved = keras.models.load_model(out / "model.keras").get_weights()
    for array, name in zip(saved, first.files):
        np.testing.assert_array_equal(array, first[name])


TRAIN = ["reskeras", "train", "--model", "resnet8", "--dataset", "digits", "--steps", "60",
         "--batch-size", "32", "--checkpoint-every", "4", "--steps-per-execution", "2",
         "--deterministic", "--seed", "7", "--grad-norms-every", "5", "--activations-every", "10"]


def _kill_after_checkpoint(out, step, timeout=240):
    """Starts training into ``out``, kill -9 once checkpoint ``step`` (or later) exists."""
    process = subprocess.Popen([*TRAIN, "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    folder = out / "checkpoints"
    while time.time() < deadline and process.poll() is None:
        done = [int(n.split("-")[1].split(".")[0]) for n in
                (os.listdir(folder) if folder.exists() else []) if n.endswith(".index")]
        if done and max(done) >= step:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait(timeout=60)
    return process.returncode


@pytest.mark.slow  # 21-32 s; the study's kill test (slow too) and test_train's resume tests
def test_killed_and_resumed_run_ends_bitwise_equal(tmp_path):
    reference = subprocess.Popen([*TRAIN, "--out", str(tmp_path / "reference")], env=ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "killed"
    assert _kill_after_checkpoint(out, 8) == -signal.SIGKILL
    assert _kill_after_checkpoint(out, 48) == -signal.SIGKILL  # second epoch starts at step 44
    assert not (out / "model.keras").exists()
    resumed = subprocess.run([*TRAIN, "--out", str(out)], env=ENV, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-3000:]
    a = keras.models.load_model(tmp_path / "reference" / "model.keras").get_weights()
    b = keras.models.load_model(out / "model.keras").get_weights()
    assert len(a) == len(b) == 37  # 7 convs, 7 BNs x 4 (gamma, beta, moving stats), dense x 2
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    reference_records = [json.loads(line) for line in
                         (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [44, 60]
    for name in ("grad_norms.jsonl", "activations.jsonl"):  # resumed: same records, no repeats
        assert (out / name).read_text() == (tmp_path / "reference" / name).read_text()
    steps = sorted({json.loads(line)["step"] for line in
                    (out / "grad_norms.jsonl").read_text().splitlines()})
    assert steps == list(range(0, 60, 5))
    for mine, theirs in zip(records, reference_records):
        assert {k: v for k, v in mine.items() if k != "seconds"} == \
            {k: v for k, v in theirs.items() if k != "seconds"}


def test_console_script_bad_input_is_one_quiet_line(tmp_path):
    result = subprocess.run(["reskeras", "train", "--model", "resnet8", "--dataset", "cifar10",
                             "--data-dir", str(tmp_path / "tfds"), "--epochs", "1",
                             "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items()
                                 if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cifar10" in lines[0] and "--data-dir" in lines[0]
    assert not (tmp_path / "run").exists()
