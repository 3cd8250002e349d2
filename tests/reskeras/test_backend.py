import os
import subprocess
import sys

import pytest

from reskeras import require_tensorflow_backend
from reskeras._quiet import mutes_library_import


def test_tensorflow_backend_is_accepted():
    require_tensorflow_backend()  # raises on failure
    assert require_tensorflow_backend("tensorflow") is None


@pytest.mark.parametrize("backend", ["jax", "torch", "numpy"])
def test_other_backends_are_refused_with_the_fix(backend):
    with pytest.raises(ImportError, match=rf"set KERAS_BACKEND=tensorflow .* "
                                          rf"Received: backend='{backend}'"):
        require_tensorflow_backend(backend)


def _python(code, **env):
    base = {k: v for k, v in os.environ.items()
            if k not in ("TF_CPP_MIN_LOG_LEVEL", "RESKERAS_VERBOSE")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**base, **env})


def test_import_reskeras_prints_nothing_even_when_tensorflow_runs_ops():
    # TensorFlow 2.21 alone writes 4-8 lines to stderr here (absl, oneDNN, CPU features,
    # cuInit on a CPU-only machine); a plain Python session must see none of them
    result = _python("import numpy as np, reskeras\n"
                     "model = reskeras.build_resnet(8, input_shape=(8, 8, 1), classes=10)\n"
                     "print(model(np.zeros((2, 8, 8, 1), 'float32')).shape)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (result.stdout, result.stderr) == ("(2, 10)\n", "")


@pytest.mark.parametrize("environ, modules, mutes", [
    ({}, {}, True),
    ({"RESKERAS_VERBOSE": "0"}, {}, True),
    ({"RESKERAS_VERBOSE": "1"}, {}, False),            # the user wants TensorFlow's lines
    ({"TF_CPP_MIN_LOG_LEVEL": "0"}, {}, False),        # the user chose TensorFlow's level
    ({}, {"tensorflow": object()}, False),             # imported before reskeras: too late
])
def test_who_keeps_tensorflows_start_up_lines(environ, modules, mutes):
    assert mutes_library_import(environ, modules) is mutes
