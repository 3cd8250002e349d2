"""Shared test setup: quiet TensorFlow, fresh Keras state and seeds per test."""

import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# With the torch extra, torchvision must be imported before TensorFlow: it imports torch._dynamo,
# which loads triton's bundled LLVM, and loaded after TensorFlow's LLVM that segfaults
# (measured: torch 2.14.1 / triton 3.8.0 / TF 2.21, `import tensorflow; import triton` exits
# 139). Plain `import torch` after TensorFlow is fine, which is all reskeras.weights needs.
try:
    import torchvision  # noqa: F401,E402
except ImportError:  # the extra is optional: the equivalence tests skip themselves
    pass

import reskeras  # noqa: F401,E402  (first TensorFlow import: oneDNN kernels, as users get them)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402,F401

# keras.backend.clear_session() runs gc.collect(), which walks the ~400k objects that
# importing TensorFlow creates: 0.3 s per call, twice per test (measured). Those objects
# live as long as the process anyway; freezing them moves them out of the collector's
# sight, and clear_session() drops to about 10 ms. Later garbage is collected as usual.
gc.freeze()


def _created_keras_objects() -> bool:
    """Whether Keras named any layer, model or variable since the last clear_session()
    (``True`` when a Keras without this private state cannot tell: collect, as before)."""
    try:
        from keras.src.backend.common import global_state
    except ImportError:
        return True
    return bool(global_state.get_global_attribute("object_name_uids"))


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield
    # clear_session()'s full garbage collection costs 0.15-0.2 s once a few dozen models are
    # alive in the session's fixtures (measured), twice per test: minutes over the suite. It
    # runs after the tests that created Keras objects; the others (the judgment's, most of
    # them) leave no model behind, and Python's own collector still runs as usual.
    keras.backend.clear_session(free_memory=_created_keras_objects())


def trainable_params(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


@pytest.fixture(scope="session")
def tiny_cifar10(tmp_path_factory):
    """A CIFAR-10 of 40 training and 10 test images, prepared by TFDS's real cifar10 builder.

    Returns ``(data_dir, images)`` with ``images`` as :func:`tests.tfds_files.write_cifar10_binary`
    returns them.
    """
    from tests.tfds_files import prepare_cifar10

    root = tmp_path_factory.mktemp("tiny_cifar10")
    images = prepare_cifar10(root / "tfds", root / "files")
    return str(root / "tfds"), images


# Hyperband(max_epochs=3, factor=3), bracket 1: three 1-epoch trials, then the best one
# continued for 2 more epochs; 4 samples of depth {8, 14} x width {2, 4}
SEARCH_ARGS = ["--dataset", "digits", "--tuner", "hyperband", "--max-trials", "4",
               "--max-epochs", "3", "--depths", "8", "14", "--widths", "2", "4", "--no-xla",
               "--seed", "0"]


def search_config(out, **overrides):
    """The :class:`tuning.search.SearchConfig` that :data:`SEARCH_ARGS` give."""
    from tuning.search import SearchConfig

    values = dict(out=str(out), dataset="digits", tuner="hyperband", max_trials=4, max_epochs=3,
                  depths=(8, 14), widths=(2, 4), jit_compile=False, seed=0)
    values.update(overrides)
    return SearchConfig(**values)


@pytest.fixture(scope="session")
def hyperband_search(tmp_path_factory):
    """The suite's one real Hyperband search (4 trials on digits), with a gradient-norm
    logger and TensorBoard per trial: ``(root, tune_dir, leaderboard, logger)``. Tests read
    it (tuning's and export's) and must not change it; ``root/display.txt`` is what it printed.
    """
    import contextlib
    import io

    from reskeras.callbacks import GradientNormLogger
    from tuning.search import run_search

    root = tmp_path_factory.mktemp("search")
    logger = GradientNormLogger(every_n_steps=4, log_dir=str(root / "grads"))
    board = keras.callbacks.TensorBoard(log_dir=str(root / "board"))
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        result = run_search(search_config(root / "tune"), callbacks=[logger, board])
    keras.backend.clear_session()
    (root / "display.txt").write_text(shown.getvalue())
    return root, root / "tune", result, logger
