"""Strategy names -> ``tf.distribute`` strategies, plus who-am-I in a cluster.

One name picks where training runs: ``"cpu"`` and ``"gpu"`` (one device),
``"mirrored"`` (every GPU of this host, or logical CPUs split off with
:func:`configure_cpu_replicas` so data parallelism can be tested on a laptop),
``"multiworker"`` (several processes or hosts described by ``TF_CONFIG``),
``"tpu"`` and ``"auto"``. Bad input fails fast with a one-line ``ValueError``;
a missing TPU too (see :func:`find_tpu_target`): no probe waits on a dead address.

Example:

>>> from reskeras.distribute import num_replicas, resolve_strategy, strategy_kind, task_info
>>> strategy = resolve_strategy("cpu")
>>> strategy_kind(strategy), num_replicas(strategy)
('cpu', 1)
>>> task_info()["is_chief"]  # no TF_CONFIG: a single process is the chief
True
"""

from __future__ import annotations

import glob
import importlib.util
import json
import logging
import os
import socket
from typing import Any, Mapping

import tensorflow as tf

STRATEGIES = ("auto", "cpu", "gpu", "mirrored", "multiworker", "tpu")
KINDS = ("default", "cpu", "gpu", "mirrored", "multiworker", "tpu")
# Jobs whose tasks hold replicas under MultiWorkerMirroredStrategy.
_REPLICA_JOBS = ("chief", "worker")
# Seconds to wait for a TCP answer before declaring a TPU address dead: gRPC
# itself retries for minutes (measured: > 40 s on a closed port, no error).
_PROBE_TIMEOUT_S = 5.0
# Variables TensorFlow's Cloud TPU client reads to find a TPU by name.
_TPU_ENV_VARS = ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG")
_EXAMPLE_TF_CONFIG = ('{"cluster": {"worker": ["host0:2222", "host1:2222"]}, '
                      '"task": {"type": "worker", "index": 0}}')
_log = logging.getLogger(__name__)


def configure_cpu_replicas(n: int) -> None:
    """Splits the first physical CPU into ``n`` logical CPU devices.

    MirroredStrategy then places one replica on each (``/cpu:0`` ... ``/cpu:{n-1}``),
    so multi-replica code runs on any machine. TensorFlow fixes its devices the
    first time it needs them, so call this before any TensorFlow op.

    Args:
        n: number of logical CPUs (``--cpu-replicas``), at least 1.

    Raises:
        ValueError: if ``n`` is not a positive integer.
        RuntimeError: if TensorFlow already initialized a different number of
            logical CPUs. The same number is accepted and changes nothing.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`cpu_replicas` must be a positive integer. Received: cpu_replicas={n!r}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError:  # "Virtual devices cannot be modified after being initialized"
        current = len(tf.config.list_logical_devices("CPU"))
        if current != n:
            raise RuntimeError(
                f"configure_cpu_replicas({n}) must run before any TensorFlow op: this process "
                f"already initialized {current} logical CPU(s); call it first or start a new "
                f"process. Received: cpu_replicas={n}") from None


def cluster_from_tf_config(env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """Parses and validates ``TF_CONFIG``; ``None`` when it is unset or blank.

    Args:
        env: the environment to read (default ``os.environ``).

    Returns:
        ``{"cluster": {job: [address, ...]}, "task": {"type": str, "index": int}, ...}``.

    Raises:
        ValueError: one line naming the missing or bad field.

    Example:

    >>> cluster_from_tf_config({"TF_CONFIG": '{"cluster": {"worker": ["h0:2222", "h1:2222"]},'
    ...                                       ' "task": {"type": "worker", "index": 1}}'})["task"]
    {'type': 'worker', 'index': 1}
    """
    text = (os.environ if env is None else env).get("TF_CONFIG", "")
    if not text.strip():
        return None
    shown = text if len(text) <= 200 else text[:200] + "..."
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        config = None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be JSON like {_EXAMPLE_TF_CONFIG}. "
                         f"Received: TF_CONFIG={shown!r}")
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError("TF_CONFIG has no 'cluster' (a mapping of job names to lists of "
                         f"'host:port'). Received: TF_CONFIG={shown!r}")
    for job, addresses in cluster.items():
        if (not isinstance(addresses, list) or not addresses
                or not all(_is_address(address) for address in addresses)):
            raise ValueError(f"TF_CONFIG 'cluster' job {job!r} must be a non-empty list of "
                             f"'host:port' addresses. Received: {job}={addresses!r}")
    if not any(job in cluster for job in _REPLICA_JOBS):
        raise ValueError("TF_CONFIG 'cluster' must have a 'chief' or 'worker' job. "
                         f"Received: jobs={sorted(cluster)}")
    if len(cluster.get("chief", [])) > 1:
        raise ValueError("TF_CONFIG 'cluster' may have one chief. "
                         f"Received: chief={cluster['chief']!r}")
    task = config.get("task")
    if (not isinstance(task, dict) or not isinstance(task.get("type"), str)
            or isinstance(task.get("index"), bool) or not isinstance(task.get("index"), int)):
        raise ValueError("TF_CONFIG 'task' must have 'type' (a job name) and 'index' (an integer), "
                         f"e.g. {{\"type\": \"worker\", \"index\": 0}}. Received: task={task!r}")
    task_type, index = task["type"], task["index"]
    # An evaluator watches checkpoints from outside the cluster, so it is not listed there.
    if task_type != "evaluator" and task_type not in cluster:
        raise ValueError(f"TF_CONFIG task type {task_type!r} is not a job of the cluster "
                         f"({', '.join(cluster)}). Received: task={task!r}")
    size = len(cluster[task_type]) if task_type in cluster else 1
    if not 0 <= index < size:
        plural = "s" if size != 1 else ""
        raise ValueError(f"TF_CONFIG task index {index} out of range for {size} "
                         f"{task_type}{plural} (indices 0..{size - 1}). Received: task={task!r}")
    return {**config, "task": {**task, "type": task_type, "index": index}}


def resolve_strategy(name: str = "auto", *, cpu_replicas: int | None = None,
                     tpu_address: str | None = None) -> tf.distribute.Strategy:
    """Returns the ``tf.distribute`` strategy that the name asks for.

    * ``"cpu"``: ``OneDeviceStrategy("/cpu:0")``.
    * ``"gpu"``: ``OneDeviceStrategy("/gpu:0")``.
    * ``"mirrored"``: MirroredStrategy over the ``cpu_replicas`` logical CPUs when
      ``cpu_replicas > 1``, else over every visible GPU, else over the CPU.
    * ``"multiworker"``: MultiWorkerMirroredStrategy; needs a valid ``TF_CONFIG``
      and must run before any TensorFlow op in the process. It returns only once
      every worker of the cluster has started: a worker that never comes blocks
      the others (TensorFlow has no timeout there; SIGTERM does not stop it).
    * ``"tpu"``: TPUStrategy; see :func:`find_tpu_target` for where it looks.
    * ``"auto"``: a TPU when one is signalled, else MultiWorkerMirroredStrategy
      when ``TF_CONFIG`` lists more than one chief/worker task, else
      MirroredStrategy when ``cpu_replicas > 1`` or more than one GPU is visible,
      else the default strategy (``tf.distribute.get_strategy()``).

    Args:
        name: one of :data:`STRATEGIES`.
        cpu_replicas: logical CPUs for MirroredStrategy (see
            :func:`configure_cpu_replicas`). Values above 1 are accepted only with
            ``"mirrored"`` and ``"auto"``: the other strategies use one CPU per process.
        tpu_address: ``"local"`` (TPU VM, Colab TPU), a Cloud TPU name or
            ``grpc://host:8470``. Default: found from the environment.

    Raises:
        ValueError: unknown name, a requested device that is not there, or a bad
            ``TF_CONFIG``; the message is one line.
        RuntimeError: from :func:`configure_cpu_replicas` when it comes too late.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {', '.join(map(repr, STRATEGIES))}. "
                         f"Received: strategy={name!r}")
    if cpu_replicas is not None and (isinstance(cpu_replicas, bool)
                                     or not isinstance(cpu_replicas, int) or cpu_replicas < 1):
        raise ValueError("`cpu_replicas` must be a positive integer. "
                         f"Received: cpu_replicas={cpu_replicas!r}")
    if (cpu_replicas or 1) > 1 and name not in ("mirrored", "auto"):
        raise ValueError(f"`cpu_replicas` > 1 needs strategy 'mirrored' (or 'auto'): strategy "
                         f"{name!r} runs one CPU replica per process. "
                         f"Received: cpu_replicas={cpu_replicas}, strategy={name!r}")
    if name == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "gpu":
        if not tf.config.list_physical_devices("GPU"):
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            raise ValueError("strategy 'gpu' needs a GPU, but no GPU visible to TensorFlow "
                             "(tf.config.list_physical_devices('GPU') is empty). "
                             f"Received: CUDA_VISIBLE_DEVICES={visible!r}")
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if name == "mirrored":
        return _mirrored(cpu_replicas)
    if name == "multiworker":
        if cluster_from_tf_config() is None:
            raise ValueError("strategy 'multiworker' needs TF_CONFIG naming the cluster and this "
                             f"task, e.g. {_EXAMPLE_TF_CONFIG}. Received: TF_CONFIG unset")
        return _multiworker()
    if name == "tpu":
        target = find_tpu_target(tpu_address)
        if target is None:
            raise ValueError(
                "no TPU found (looked at tpu_address, COLAB_TPU_ADDR, TPU_NAME, "
                "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS, TPU_CONFIG, /dev/accel*, /dev/vfio with libtpu: "
                "none present). Pass tpu_address='local' on a TPU VM, a Cloud TPU name or "
                "grpc://host:8470. Received: tpu_address=None")
        return _connect_tpu(target)
    return _auto(cpu_replicas, tpu_address)


def _auto(cpu_replicas, tpu_address):
    target = find_tpu_target(tpu_address)
    if target is not None:
        try:
            return _connect_tpu(target)
        except ValueError as error:
            if tpu_address:  # asked for by the user: do not quietly train elsewhere
                raise
            _log.warning("auto strategy: a TPU was signalled but is not usable (%s); going on",
                         error)
    cluster = cluster_from_tf_config()
    if cluster is not None and _replica_task_count(cluster["cluster"]) > 1:
        if (cpu_replicas or 1) > 1:
            raise ValueError("`cpu_replicas` > 1 cannot be combined with a multi-worker TF_CONFIG "
                             f"(one CPU replica per worker). Received: cpu_replicas={cpu_replicas}")
        return _multiworker()
    if (cpu_replicas or 1) > 1 or len(tf.config.list_physical_devices("GPU")) > 1:
        return _mirrored(cpu_replicas)
    return tf.distribute.get_strategy()


def _mirrored(cpu_replicas):
    gpus = tf.config.list_logical_devices("GPU") if (cpu_replicas or 1) == 1 else []
    if gpus:
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
    if cpu_replicas is not None:
        configure_cpu_replicas(cpu_replicas)
    # MirroredStrategy() without GPUs takes /cpu:0 only, so the logical CPUs are named. Its
    # default CPU all-reduce (CollectiveAllReduce) gives the weights of one device (tested),
    # as ReductionToOneDevice and HierarchicalCopyAllReduce do (measured, TF 2.21).
    return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])


def _multiworker():
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        if "program startup" not in str(error):
            raise
        raise ValueError("strategy 'multiworker' must be resolved before any TensorFlow op runs in "
                         "the process (TensorFlow configures collective ops at start-up); call "
                         f"resolve_strategy first. Received: {error}") from None


def find_tpu_target(tpu_address: str | None = None) -> str | None:
    """What to pass to ``TPUClusterResolver(tpu=...)``, or ``None`` if nothing hints at a TPU.

    Order: ``tpu_address``; ``COLAB_TPU_ADDR`` (legacy Colab TPU nodes: ``grpc://ADDR``);
    ``TPU_NAME``, ``KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS`` or ``TPU_CONFIG`` (``""``: TensorFlow
    reads them); ``/dev/accel*``, or ``/dev/vfio`` with the ``libtpu`` package (TPU VMs,
    Colab TPU runtimes: ``"local"``). Looking costs no TensorFlow call and no network.
    """
    if tpu_address:
        return tpu_address
    if os.environ.get("COLAB_TPU_ADDR"):
        return "grpc://" + os.environ["COLAB_TPU_ADDR"]
    if any(os.environ.get(var) for var in _TPU_ENV_VARS):
        return ""
    vfio_with_libtpu = os.path.isdir("/dev/vfio") and importlib.util.find_spec("libtpu")
    if glob.glob("/dev/accel*") or vfio_with_libtpu:
        return "local"
    return None


def _connect_tpu(target: str) -> tf.distribute.Strategy:
    name = (target or os.environ.get("KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS")
            or os.environ.get("TPU_NAME", ""))
    if target != "local" and not name.startswith("grpc://"):
        # A TPU name is resolved through the GCE metadata server with no timeout.
        server = (os.environ.get("GCE_METADATA_HOST") or os.environ.get("GCE_METADATA_IP")
                  or "metadata.google.internal")
        host, _, port = server.rpartition(":") if ":" in server else (server, "", "80")
        _require_answer(host, int(port), f"the GCE metadata server {server} (needed to resolve "
                                         f"TPU {name!r})")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=target)
        if target != "local":
            master = resolver.master().removeprefix("grpc://")
            host, _, port = master.rpartition(":")
            _require_answer(host, int(port), f"the TPU at {master}")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, OSError, ImportError, tf.errors.OpError) as error:
        if str(error).startswith("no TPU found"):
            raise
        first_line = (str(error).splitlines() or [""])[0]
        if len(first_line) > 160:
            first_line = first_line[:160].rsplit(" ", 1)[0] + " ..."
        raise ValueError(f"no TPU found ({type(error).__name__}: {first_line}). "
                         f"Received: tpu_address={target!r}") from None
    return tf.distribute.TPUStrategy(resolver)


def _require_answer(host: str, port: int, what: str) -> None:
    try:
        socket.create_connection((host.strip("[]"), port), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise ValueError(f"no TPU found ({what} does not answer within {_PROBE_TIMEOUT_S:g} s: "
                         f"{error}). Received: address={host}:{port}") from None


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes files: True outside a cluster.

    In a cluster: the ``chief`` task, or worker 0 when the cluster has no chief.
    Other workers and evaluators return False. ``strategy.cluster_resolver``
    answers when the strategy has one, ``TF_CONFIG`` otherwise.
    """
    return task_info(strategy)["is_chief"]


def task_info(strategy: tf.distribute.Strategy | None = None) -> dict[str, Any]:
    """``{"type", "index", "num_workers", "is_chief"}`` of this process.

    ``type`` is None outside a cluster. ``num_workers`` counts the chief and
    worker tasks (the processes that hold replicas), 1 outside a cluster.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if strategy is not None and strategy_kind(strategy) == "tpu":
        # One client program drives every TPU host: it is the only writer.
        return {"type": None, "index": 0, "num_workers": 1, "is_chief": True}
    if resolver is not None and resolver.task_type is not None:
        cluster = resolver.cluster_spec().as_dict()
        task_type, index = resolver.task_type, resolver.task_id
    else:
        config = cluster_from_tf_config()
        if config is None:
            return {"type": None, "index": 0, "num_workers": 1, "is_chief": True}
        cluster = config["cluster"]
        task_type, index = config["task"]["type"], config["task"]["index"]
    first_worker = task_type == "worker" and index == 0
    chief = task_type == "chief" or (first_worker and "chief" not in cluster)
    return {"type": task_type, "index": int(index), "num_workers": _replica_task_count(cluster),
            "is_chief": chief}


def strategy_kind(strategy: tf.distribute.Strategy) -> str:
    """One of :data:`KINDS`, for config.json and logs."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multiworker"
    if isinstance(strategy, (tf.distribute.TPUStrategy, tf.distribute.experimental.TPUStrategy)):
        return "tpu"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    if isinstance(strategy, tf.distribute.OneDeviceStrategy):
        device = tf.DeviceSpec.from_string(strategy.extended.worker_devices[0])
        return "gpu" if device.device_type == "GPU" else "cpu"
    # The default strategy's class is private; its name is stable since TF 2.0.
    if type(strategy).__name__ == "_DefaultDistributionStrategy":
        return "default"
    raise ValueError("`strategy` must be the default, OneDevice, Mirrored, MultiWorkerMirrored or "
                     f"TPU strategy. Received: strategy={type(strategy).__name__}")


def num_replicas(strategy: tf.distribute.Strategy) -> int:
    """Replicas running each step in sync (they split the global batch)."""
    return int(strategy.num_replicas_in_sync)


def describe_strategy(strategy: tf.distribute.Strategy) -> str:
    """One human line, e.g. ``"MirroredStrategy over 2 devices (/cpu:0, /cpu:1)"``."""
    kind = strategy_kind(strategy)
    replicas = num_replicas(strategy)
    if kind == "default":
        gpus = len(tf.config.list_physical_devices("GPU"))
        return f"default strategy: 1 replica, TensorFlow places ops ({gpus} GPU(s) visible)"
    if kind == "tpu":
        return f"TPUStrategy over {replicas} TPU cores"
    devices = [_short_device(device) for device in strategy.extended.worker_devices]
    if kind in ("cpu", "gpu"):
        return f"OneDeviceStrategy on {devices[0]}"
    if kind == "mirrored":
        noun = "device" if replicas == 1 else "devices"
        return f"MirroredStrategy over {replicas} {noun} ({', '.join(devices)})"
    info = task_info(strategy)
    role = "chief" if info["is_chief"] else "not chief"
    return (f"MultiWorkerMirroredStrategy: {replicas} replicas on {info['num_workers']} workers; "
            f"this is {info['type']} {info['index']} ({role}) on {', '.join(devices)}")


def _short_device(name: str) -> str:
    spec = tf.DeviceSpec.from_string(name)
    return f"/{spec.device_type.lower()}:{spec.device_index}"


def _replica_task_count(cluster: Mapping[str, Any]) -> int:
    return sum(len(cluster.get(job, [])) for job in _REPLICA_JOBS)


def _is_address(value: Any) -> bool:
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    return bool(host) and port.isdigit()
