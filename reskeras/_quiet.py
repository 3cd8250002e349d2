"""Quiets TensorFlow's start-up log lines when reskeras runs as a command.

TensorFlow prints C++ log lines (CUDA probing, "All log messages before
absl::InitializeLog()") while it is imported. absl writes those before any
log level applies, so no environment variable hides them (measured with TF
2.21): the only way is to point file descriptor 2 elsewhere during the import.
The ``reskeras`` package imports TensorFlow, so the decision is taken before
that import: when the process is the ``reskeras`` console script or ``python
-m reskeras|tuning|export`` and ``--verbose`` is absent, TensorFlow is
imported with stderr muted and its later log levels raised. Library users
importing reskeras keep TensorFlow's defaults.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

COMMANDS = ("reskeras", "tuning", "export")


def running_as_command() -> bool:
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    orig = getattr(sys, "orig_argv", [])
    as_module = any(orig[i:i + 2] in (["-m", name] for name in COMMANDS)
                    for i in range(len(orig) - 1))
    return program == "reskeras" or as_module


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow with stderr muted; an ImportError still propagates."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_tensorflow() -> None:
    """Silences TF's C++ and Python logs unless ``--verbose`` was passed."""
    if "--verbose" in sys.argv:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import_tensorflow_quietly()
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    # TF/tf.data emit Python warnings about their own internals (e.g. tf.data options
    # in graph mode) that a command-line user can do nothing about
    warnings.filterwarnings("ignore", module=r"(tensorflow|tensorflow_datasets|tf_keras)\b")


if running_as_command():
    quiet_tensorflow()
