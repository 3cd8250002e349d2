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


# A full garbage collection after every test that created Keras objects cost 0.23 s each
# (291 tests, 68 s of a default run, 2026-12-08: it walks every model the session's
# fixtures keep alive). One after every COLLECT_EVERY such tests frees the same cycles a
# few tests later; Python's own collector runs in between as usual.
COLLECT_EVERY = 8
_keras_tests = [0]


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield
    # the tests that create no Keras object (the judgment's, most of them) leave no model
    # behind and count for nothing
    created = _created_keras_objects()
    _keras_tests[0] += created
    keras.backend.clear_session(free_memory=created and _keras_tests[0] % COLLECT_EVERY == 0)


# Modules that share what a process computes once (a session fixture, a per-process cache)
# run in one pytest-xdist process, so it is computed once: each group's modules, by what
# they share (split over two processes, the Hyperband search ran twice: +46 s).
SHARED_PROCESS_GROUPS = {
    "the tiny TAT study (tests/reskeras/conftest.py)": (
        "reskeras/test_study_shaping", "reskeras/test_core_number"),
    "the Hyperband search (hyperband_search)": ("tuning/test_search", "export/test_tuner"),
    "the trained digits run and its export (tests/export/__init__.py)": (
        "export/test_savedmodel", "export/test_formats", "export/test_layout", "export/test_cli"),
}
# module -> the first module of its group, which names the group's scope
SHARED_PROCESS = {f"tests/{module}.py": f"tests/{modules[0]}.py"
                  for modules in SHARED_PROCESS_GROUPS.values() for module in modules}
# Modules whose tests share no fixture and may run in separate processes: the slow stage's
# two memory tests (8 and 2.3 minutes) ran one after the other in one process.
PER_TEST = {"tests/tuning/test_memory.py"}

# The longest modules go first, so that the two processes of `pytest -n 2 --dist loadfile`
# finish together: xdist's own order (most tests first) started the tiny TAT study's 7
# tests (250 s) near the end. Over 35 s each in a default run on 2 cores, 2026-12-08.
LONGEST_FIRST = tuple(f"tests/{module}.py" for module in (
    "tuning/test_memory",  # the slow stage's longest (the default run deselects it)
    "reskeras/test_study_shaping", "reskeras/test_core_number", "reskeras/test_study",
    "reskeras/test_builders", "reskeras/test_train", "reskeras/test_reference_equivalence",
    "export/test_formats", "tuning/test_search", "reskeras/test_trace_cache",
    "reskeras/test_train_distributed", "reskeras/test_weights", "reskeras/test_precise_bn",
    "reskeras/test_padding", "reskeras/test_kernel_shaping"))


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(items):
    """Runs the modules of :data:`LONGEST_FIRST` first, in that order; the rest as collected."""
    rank = {module: index for index, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_module(item.nodeid), len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with :data:`SHARED_PROCESS` and :data:`PER_TEST`, modules in the
    collection's order (:func:`pytest_collection_modifyitems`)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = _module(nodeid)
            return nodeid if module in PER_TEST else SHARED_PROCESS.get(module, module)

    config.option.loadscopereorder = False  # keep pytest_collection_modifyitems' order
    return Scheduling(config, log)


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
