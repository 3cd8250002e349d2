"""Keras Tuner's distributed mode: one chief oracle, workers that ask it for trials over gRPC.

Keras Tuner reads three environment variables (``keras_tuner/src/distribute``):
``KERASTUNER_TUNER_ID`` (``chief`` for the oracle process, any other unique id
for a worker), ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT``. The
chief only serves the oracle (it trains nothing); every worker runs the same
search command, pulls trials until the oracle says stop, and trains them with
the reskeras trainer into ``TUNE_DIR/runs/<trial_id>``. ``TUNE_DIR`` must be
one directory every process sees (``gs://`` or a shared file system): Hyperband
continues a trial from the run directory another worker wrote.

``reskeras tune --chief --oracle-address HOST:PORT`` and
``reskeras tune --worker ID --oracle-address HOST:PORT`` set the variables
(:func:`tuner_environment`); setting them by hand works the same.

The chief serves with :func:`serve_oracle` instead of Keras Tuner's
``start_server``: the same servicer, a thread pool and a 0.5 s poll for the end
(Keras Tuner sleeps 20 s between checks once the first worker has stopped), and
the leaderboard is rewritten after every trial.

Processes of one multi-worker training cluster (``--strategy multiworker``)
share one tuner id: Keras Tuner hands them the same trial and only the
cluster's chief reports.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time

ENV_ID = "KERASTUNER_TUNER_ID"
ENV_IP = "KERASTUNER_ORACLE_IP"
ENV_PORT = "KERASTUNER_ORACLE_PORT"
POLL_SECONDS = 0.5


def parse_address(address: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> ``(host, port)``; ValueError in the house style otherwise."""
    host, _, port = (address or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("`oracle_address` must be HOST:PORT with a port in 1..65535, e.g. "
                         f"127.0.0.1:8000. Received: oracle_address={address!r}")
    return host.strip("[]"), int(port)


def worker_id(value) -> str:
    """``--worker 1`` -> ``tuner1``; any other name is used as given (never ``chief``)."""
    text = str(value)
    if not text or "chief" in text:
        raise ValueError("`worker` must be a number or a name without 'chief' (Keras Tuner "
                         "treats any id containing 'chief' as the oracle). "
                         f"Received: worker={value!r}")
    return f"tuner{text}" if text.isdigit() else text


def role_from_environment(env=None) -> str | None:
    """``"chief"``, ``"worker"`` or None, from the ``KERASTUNER_*`` variables."""
    env = os.environ if env is None else env
    if ENV_IP not in env:
        return None
    missing = [name for name in (ENV_PORT, ENV_ID) if not env.get(name)]
    if missing:
        raise ValueError(f"`{ENV_IP}` is set, so {' and '.join(missing)} must be set too. "
                         f"Received: {ENV_IP}={env[ENV_IP]!r}")
    return "chief" if "chief" in env[ENV_ID] else "worker"


@contextlib.contextmanager
def tuner_environment(tuner_id: str, address: str):
    """Sets the three ``KERASTUNER_*`` variables for the block, then restores them."""
    host, port = parse_address(address)
    values = {ENV_ID: tuner_id, ENV_IP: host, ENV_PORT: str(port)}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for tests and single-host runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def serve_oracle(tuner, *, poll_seconds: float = POLL_SECONDS) -> None:
    """Serves ``tuner.oracle`` to the workers until the search is over.

    Over when a worker was told to stop and no trial runs and no worker is
    registered (Keras Tuner's own condition, ``oracle_chief.exit_chief``).
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    host, port = os.environ[ENV_IP], os.environ[ENV_PORT]
    tuner.save()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = oracle_chief.OracleServicer(tuner.oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise ValueError(f"`oracle_address` must be free to listen on. "
                         f"Received: oracle_address={host}:{port}")
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(tuner.oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=2.0).wait()
