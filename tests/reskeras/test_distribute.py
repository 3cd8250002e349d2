"""Strategy resolution, logical CPU replicas, TF_CONFIG, and a real 2-process MultiWorker run.

Logical devices and collective ops are fixed once per process when TensorFlow
starts, so everything that needs them runs in a fresh Python subprocess which
prints one JSON line of facts; each subprocess checks several facts because
each costs ~6 s of TensorFlow import here.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import tensorflow as tf

from reskeras import distribute
from reskeras.distribute import (STRATEGIES, cluster_from_tf_config, configure_cpu_replicas,
                                 describe_strategy, is_chief, num_replicas, resolve_strategy,
                                 strategy_kind, task_info)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CLUSTER_VARS = ("TF_CONFIG", "COLAB_TPU_ADDR", "TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS",
                 "TPU_CONFIG")


@pytest.fixture
def no_cluster(monkeypatch):
    for var in _CLUSTER_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def no_accelerators(monkeypatch):
    """The machine as CI sees it, whatever this one has: no TPU hint, CPUs only."""
    real = tf.config.list_physical_devices
    monkeypatch.setattr(distribute, "find_tpu_target",
                        lambda tpu_address=None: tpu_address or None)
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: [] if kind in ("GPU", "TPU") else real(kind))


def _child_env(tf_config=None):
    env = {k: v for k, v in os.environ.items() if k not in _CLUSTER_VARS}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _start(code, tf_config=None, argv=()):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *argv], cwd=ROOT,
                            env=_child_env(tf_config), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _facts(processes, timeout=120):
    """The JSON line each child printed last; kills them all if one hangs."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if process.returncode != 0:
                pytest.fail(f"child exited {process.returncode}:\n{err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- in process


def test_cpu_strategy_is_one_cpu_device(no_cluster):
    strategy = resolve_strategy("cpu")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert (strategy_kind(strategy), num_replicas(strategy)) == ("cpu", 1)
    assert describe_strategy(strategy) == "OneDeviceStrategy on /cpu:0"
    assert is_chief(strategy)


def test_auto_without_cluster_or_accelerators(no_cluster, no_accelerators):
    strategy = resolve_strategy("auto")
    assert strategy is tf.distribute.get_strategy()
    assert (strategy_kind(strategy), num_replicas(strategy)) == ("default", 1)
    assert describe_strategy(strategy).startswith("default strategy: 1 replica")


def test_unknown_strategy_lists_the_choices():
    with pytest.raises(ValueError, match=r"`strategy` must be one of 'auto', 'cpu', 'gpu', "
                                         r"'mirrored', 'multiworker', 'tpu'\. "
                                         r"Received: strategy='horovod'"):
        resolve_strategy("horovod")
    assert STRATEGIES == ("auto", "cpu", "gpu", "mirrored", "multiworker", "tpu")


@pytest.mark.parametrize("name, replicas, message", [
    ("cpu", 0, r"`cpu_replicas` must be a positive integer\. Received: cpu_replicas=0"),
    ("cpu", 2, r"needs strategy 'mirrored' .* Received: cpu_replicas=2, strategy='cpu'"),
    ("gpu", 2, r"needs strategy 'mirrored' .* Received: cpu_replicas=2, strategy='gpu'"),
])
def test_cpu_replicas_are_checked(name, replicas, message):
    with pytest.raises(ValueError, match=message):
        resolve_strategy(name, cpu_replicas=replicas)
    with pytest.raises(ValueError, match=r"Received: cpu_replicas=-1"):
        configure_cpu_replicas(-1)


def test_gpu_without_gpu_is_refused(no_accelerators):
    with pytest.raises(ValueError, match=r"strategy 'gpu' needs a GPU, but no GPU visible"):
        resolve_strategy("gpu")


def test_tpu_without_tpu_fails_fast(no_cluster, no_accelerators):
    # A closed port: TensorFlow's own gRPC connect would retry for minutes (measured > 40 s).
    dead = f"grpc://127.0.0.1:{_free_port()}"
    for address, message in [(None, r"no TPU found \(looked at tpu_address, COLAB_TPU_ADDR"),
                             (dead, r"no TPU found \(the TPU at 127\.0\.0\.1:\d+ does not answer")]:
        start = time.monotonic()
        with pytest.raises(ValueError, match=message):
            resolve_strategy("tpu", tpu_address=address)
        assert time.monotonic() - start < 6.0


def test_multiworker_needs_tf_config(no_cluster):
    with pytest.raises(ValueError, match=r"strategy 'multiworker' needs TF_CONFIG .* "
                                         r"Received: TF_CONFIG unset"):
        resolve_strategy("multiworker")


def _tf_config(cluster, task_type="worker", index=0):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


TWO_WORKERS = {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}


@pytest.mark.parametrize("text, message", [
    ("{not json", r"TF_CONFIG must be JSON .* Received: TF_CONFIG='\{not json'"),
    ('["worker"]', r"TF_CONFIG must be JSON"),
    ('{"task": {"type": "worker", "index": 0}}', r"TF_CONFIG has no 'cluster'"),
    ('{"cluster": {"worker": ["h0:1", "h1:1"]}}',
     r"TF_CONFIG 'task' must have 'type' .* and 'index' .* Received: task=None"),
    ('{"cluster": {"worker": ["h0:1"]}, "task": {"type": "worker"}}',
     r"TF_CONFIG 'task' must have 'type' .* Received: task=\{'type': 'worker'\}"),
    ('{"cluster": {"worker": ["h0:1", "h1:1"]}, "task": {"type": "worker", "index": 3}}',
     r"TF_CONFIG task index 3 out of range for 2 workers"),
    ('{"cluster": {"worker": ["h0:1"]}, "task": {"type": "ps", "index": 0}}',
     r"TF_CONFIG task type 'ps' is not a job of the cluster \(worker\)"),
    ('{"cluster": {"worker": ["h0"]}, "task": {"type": "worker", "index": 0}}',
     r"TF_CONFIG 'cluster' job 'worker' must be a non-empty list of 'host:port'"),
    ('{"cluster": {"chief": ["h0:1", "h1:1"]}, "task": {"type": "chief", "index": 0}}',
     r"TF_CONFIG 'cluster' may have one chief"),
])
def test_bad_tf_config_names_the_field(text, message):
    with pytest.raises(ValueError, match=message):
        cluster_from_tf_config({"TF_CONFIG": text})


def test_tf_config_parses():
    assert cluster_from_tf_config({}) is None
    assert cluster_from_tf_config({"TF_CONFIG": "  "}) is None
    config = cluster_from_tf_config(_tf_config(TWO_WORKERS, index=1))
    assert config == {"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 1}}


@pytest.mark.parametrize("cluster, task_type, index, chief", [
    ({"chief": ["c:1"], "worker": ["w0:1", "w1:1"]}, "chief", 0, True),
    ({"chief": ["c:1"], "worker": ["w0:1", "w1:1"]}, "worker", 0, False),
    ({"chief": ["c:1"], "worker": ["w0:1", "w1:1"]}, "evaluator", 0, False),
    (TWO_WORKERS, "worker", 0, True),
    (TWO_WORKERS, "worker", 1, False),
])
def test_chief_rules_under_tf_config(monkeypatch, cluster, task_type, index, chief):
    monkeypatch.setenv("TF_CONFIG", _tf_config(cluster, task_type, index)["TF_CONFIG"])
    assert is_chief() is chief
    assert task_info() == {"type": task_type, "index": index, "num_workers": 2 + ("chief" in cluster),
                           "is_chief": chief}


def test_single_process_is_chief(no_cluster):
    assert task_info() == {"type": None, "index": 0, "num_workers": 1, "is_chief": True}


# ---------------------------------------------------------------- subprocesses

MIRRORED_ON_TWO_CPUS = """
    import json, os, time
    import keras, numpy as np, tensorflow as tf
    from reskeras.distribute import *

    facts = {}
    configure_cpu_replicas(2)
    strategy = resolve_strategy("mirrored", cpu_replicas=2)
    configure_cpu_replicas(2)  # already initialized with 2: nothing to do
    facts["mirrored"] = [strategy_kind(strategy), num_replicas(strategy), describe_strategy(strategy),
                         list(strategy.extended.worker_devices), is_chief(strategy)]
    auto = resolve_strategy("auto", cpu_replicas=2)
    facts["auto"] = [strategy_kind(auto), num_replicas(auto)]

    def replica_value():
        return tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.float32) + 1.0
    facts["sum"] = float(strategy.reduce("SUM", strategy.run(replica_value), axis=None))

    # One SGD step with the global batch split over two replicas equals one step on one device.
    x = np.arange(32, dtype="float32").reshape(8, 4) / 32.0
    y = np.ones((8, 1), "float32")
    def make():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, kernel_initializer="zeros")])
        return model, keras.optimizers.SGD(0.1)
    def sgd_step(model, optimizer, xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum((model(xb, training=True) - yb) ** 2) / 8.0  # / global batch
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss
    with strategy.scope():
        model, optimizer = make()
    @tf.function
    def distributed_step(batch):
        losses = strategy.run(sgd_step, args=(model, optimizer) + tuple(batch))
        return strategy.reduce("SUM", losses, axis=None)
    batches = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(8))
    facts["loss"] = [float(distributed_step(batch)) for batch in batches]
    facts["kernels"] = [v.numpy().ravel().tolist() for v in model.trainable_variables[0].value.values]
    reference, reference_optimizer = make()
    facts["reference_loss"] = float(sgd_step(reference, reference_optimizer, x, y))
    facts["reference"] = reference.trainable_variables[0].numpy().ravel().tolist()

    try:
        configure_cpu_replicas(3)
    except RuntimeError as error:
        facts["late"] = str(error)
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                          "task": {"type": "worker", "index": 0}})
    try:
        resolve_strategy("multiworker")
    except ValueError as error:
        facts["late_multiworker"] = str(error)
    start = time.monotonic()
    try:
        resolve_strategy("tpu", tpu_address="local")
    except ValueError as error:
        facts["tpu_local"] = [str(error), time.monotonic() - start]
    print(json.dumps(facts))
"""


def test_mirrored_over_two_logical_cpus():
    (facts,) = _facts([_start(MIRRORED_ON_TWO_CPUS)])
    kind, replicas, description, devices, chief = facts["mirrored"]
    assert (kind, replicas, chief) == ("mirrored", 2, True)
    assert description == "MirroredStrategy over 2 devices (/cpu:0, /cpu:1)"
    assert [d.rsplit("/", 1)[-1] for d in devices] == ["device:CPU:0", "device:CPU:1"]
    assert facts["auto"] == ["mirrored", 2]
    assert facts["sum"] == 3.0  # replica ids 0 and 1, plus one each
    assert facts["loss"] == pytest.approx([facts["reference_loss"]])
    assert facts["kernels"][0] == facts["kernels"][1]
    assert facts["kernels"][0] == pytest.approx(facts["reference"])
    assert facts["reference"] != [0.0] * 4
    assert facts["late"].startswith("configure_cpu_replicas(3) must run before any TensorFlow op")
    assert "already initialized 2 logical CPU(s)" in facts["late"] and "\n" not in facts["late"]
    assert "must be resolved before any TensorFlow op" in facts["late_multiworker"]
    message, seconds = facts["tpu_local"]
    assert message.startswith("no TPU found (") and seconds < 5.0


MULTIWORKER = """
    import json, time
    start = time.monotonic()
    import sys
    import tensorflow as tf
    from reskeras.distribute import *
    strategy = resolve_strategy(sys.argv[1])
    started = time.monotonic() - start
    def replica_value():
        return tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.float32) + 1.0
    total = strategy.reduce("SUM", strategy.run(replica_value), axis=None)
    print(json.dumps({"kind": strategy_kind(strategy), "replicas": num_replicas(strategy),
                      "sum": float(total), "info": task_info(strategy), "chief": is_chief(strategy),
                      "describe": describe_strategy(strategy), "seconds": started}))
"""


def test_multiworker_on_two_local_processes():
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    # Worker 0 asks for "auto", which must pick MultiWorkerMirroredStrategy from TF_CONFIG.
    facts = _facts([_start(MULTIWORKER, {"cluster": cluster, "task": {"type": "worker", "index": i}},
                           argv=[name]) for i, name in enumerate(["auto", "multiworker"])])
    for index, worker in enumerate(facts):
        assert (worker["kind"], worker["replicas"], worker["sum"]) == ("multiworker", 2, 3.0)
        assert worker["info"] == {"type": "worker", "index": index, "num_workers": 2,
                                  "is_chief": index == 0}
        assert worker["chief"] is (index == 0)
        assert worker["describe"].startswith("MultiWorkerMirroredStrategy: 2 replicas on 2 workers")
