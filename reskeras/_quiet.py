"""Keeps TensorFlow's start-up log lines off the screen: ``import reskeras`` prints nothing.

TensorFlow prints C++ log lines while it is imported ("All log messages before
absl::InitializeLog()", oneDNN, CUDA probing, CPU features) and an error line
("failed call to cuInit") when the first op probes for GPUs on a CPU-only
machine. absl writes the import lines before any log level applies, so no
environment variable hides them (measured with TF 2.21): the only way is to
point file descriptor 2 elsewhere while TensorFlow is imported and its devices
are listed (which runs that probe once, so it does not print later). The
``reskeras`` package imports TensorFlow, so this runs before that import:

- as a library (``import reskeras``): TensorFlow is imported and its devices
  listed with stderr muted; log levels are left as they are, so warnings and
  errors that come later still show. Nothing is muted when TensorFlow was
  imported first, when ``TF_CPP_MIN_LOG_LEVEL`` is set (the user chose) or when
  ``RESKERAS_VERBOSE=1`` (to see why a GPU is not used, say);
- as a command (the ``reskeras`` console script or ``python -m
  reskeras|tuning|export``) without ``--verbose``: the same, and TensorFlow's
  later C++ and Python log levels are raised to errors-only as well.
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
    """Imports TensorFlow and lists its devices with stderr muted; errors still propagate."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to protect
        saved = None
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(devnull, 2)
        import tensorflow

        tensorflow.config.list_physical_devices()  # the GPU probe, once, while muted
    finally:
        if saved is not None:
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


def mutes_library_import(environ, modules) -> bool:
    """Whether ``import reskeras`` mutes TensorFlow's start-up (see the module docstring)."""
    return not ("tensorflow" in modules or "TF_CPP_MIN_LOG_LEVEL" in environ
                or environ.get("RESKERAS_VERBOSE", "") not in ("", "0"))


def quiet_library_import() -> None:
    """A plain ``import reskeras`` prints nothing (see the module docstring for the opt-outs)."""
    if mutes_library_import(os.environ, sys.modules):
        import_tensorflow_quietly()


if running_as_command():
    quiet_tensorflow()
else:
    quiet_library_import()
