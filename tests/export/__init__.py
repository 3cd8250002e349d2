"""Helpers shared by the export tests: one tiny trained run per process.

The expensive facts are cached at module level, so plain helpers (not only
fixtures) can ask for them: every test module asking for the digits run gets the
same directory, trained once (depth 8, width 4, one epoch: ~8 s on 2 cores).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


_RUNS: dict = {}
_ROOT = None


def _root() -> str:
    global _ROOT
    if _ROOT is None:
        _ROOT = tempfile.mkdtemp(prefix="reskeras-export-tests-")
        atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
    return _ROOT


def trained_run(width: int = 4, seed: int = 0) -> str:
    """A finished 1-epoch digits run of a depth-8 ResNet (trained once per process), with
    precise BN statistics in its model.keras: what an export serves."""
    from reskeras.train import TrainConfig, train

    key = (width, seed)
    if key not in _RUNS:
        out = os.path.join(_root(), f"runs/resnet8_w{width}_s{seed}")
        result = train(TrainConfig(out=out, depth=8, width=width, dataset="digits", epochs=1,
                                   recipe="adam", seed=seed, jit_compile=False,
                                   precise_bn=True, verbose=0))
        assert result.status == "finished"
        _RUNS[key] = out
    return _RUNS[key]


def verified_export():
    """The trained run exported (and verified) once per process as ``BASE/digits/1``."""
    from export import export_savedmodel

    if "verified" not in _RUNS:
        run_dir, cwd = trained_run(), os.getcwd()
        os.chdir(_root())  # relative paths, as users type them
        try:
            result = export_savedmodel(os.path.relpath(run_dir), "exports", "digits",
                                       metadata={"owner": "tests"})
        finally:
            os.chdir(cwd)
        assert result.path == os.path.join("exports", "digits", "1")
        result.path = result.report.path = os.path.join(_root(), result.path)
        _RUNS["verified"] = result
    return _RUNS["verified"]


def tree_bytes(path: str) -> dict[str, bytes]:
    """Every file under ``path`` and its bytes (to prove nothing was touched)."""
    files = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                files[os.path.relpath(full, path)] = handle.read()
    return files
