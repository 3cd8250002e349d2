"""The layering of reskeras, tuning and export: import-linter's contracts hold, and they bite.

`lint-imports` reads the contracts from pyproject.toml. The real tree keeps all of them;
a copy of the tree with one deliberate bad import breaks exactly the contract that
forbids it, with import-linter's own message. Zero import cycles between any two modules.
"""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reskeras", "tuning", "export")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the tree's packages before any installed
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def _layer_names(contract: dict) -> set[str]:
    return {name.strip() for layer in contract["layers"]
            for name in layer.replace(":", "|").split("|")}


def test_the_tree_keeps_every_contract():
    found = _lint(ROOT)
    assert found.returncode == 0, found.stdout + found.stderr
    assert "Contracts: 5 kept, 0 broken." in found.stdout
    assert set(_contracts()) == {"layers", "study-layers", "study-parts", "pure-judgment",
                                 "acyclic"}


# (file to change, the import added to it, the contracts that must break, a line of the message)
BAD_IMPORTS = [
    ("reskeras/specs.py", "import reskeras.study.cells", {"layers", "acyclic"},
     "reskeras.specs -> reskeras.study.cells"),
    ("reskeras/train.py", "import reskeras.analysis.records", {"layers"},
     "reskeras.train -> reskeras.analysis.records"),
    ("tuning/budget.py", "import export.layout", {"layers"},
     "tuning.budget -> export.layout"),
    ("reskeras/study/measures/lesion.py", "import reskeras.study.judgment.verdict",
     {"study-parts"}, "reskeras.study.measures.lesion -> reskeras.study.judgment.verdict"),
    ("reskeras/study/report/text.py", "import reskeras.study.measures.gradient_flow",
     {"study-parts"}, "reskeras.study.report.text -> reskeras.study.measures.gradient_flow"),
    ("reskeras/study/measures/gradient_flow.py", "import reskeras.study.analyses",
     {"study-layers", "study-parts", "acyclic"},
     "reskeras.study.measures.gradient_flow -> reskeras.study.analyses"),
    ("reskeras/study/judgment/hypotheses.py", "import tensorflow", {"pure-judgment"},
     "reskeras.study.judgment.hypotheses -> tensorflow"),
    ("reskeras/study/criteria.py", "import numpy, keras", {"pure-judgment"},
     "reskeras.study.criteria -> keras"),
    ("export/serving.py", "import export.savedmodel", {"acyclic"}, ".serving -> .savedmodel"),
]


@pytest.mark.parametrize("path, line, broken, message", BAD_IMPORTS,
                         ids=[f"{b[0]}:{b[1].split()[-1]}" for b in BAD_IMPORTS])
def test_a_bad_import_breaks_its_contract(tmp_path, path, line, broken, message):
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / path
    target.write_text(target.read_text() + f"\n{line}  # deliberate\n")
    found = _lint(tmp_path)
    assert found.returncode == 1, found.stdout + found.stderr
    report = " ".join(found.stdout.split())  # import-linter wraps long contract names
    states = {key: "BROKEN" if f"{contract['name']} BROKEN" in report else
              "KEPT" if f"{contract['name']} KEPT" in report else None
              for key, contract in _contracts().items()}
    assert states == {key: "BROKEN" if key in broken else "KEPT" for key in states}, \
        found.stdout
    assert message in found.stdout


def test_every_module_has_a_place_in_the_layers():
    contracts = _contracts()
    named = _layer_names(contracts["layers"])
    import reskeras
    import reskeras.study
    top = {f"reskeras.{m.name}" for m in pkgutil.iter_modules(reskeras.__path__)}
    assert top - named == set(), "add these modules to a layer in pyproject.toml"
    assert {"tuning", "export"} <= named
    study = {m.name for m in pkgutil.iter_modules(reskeras.study.__path__)}
    assert study == _layer_names(contracts["study-layers"])


def test_there_are_no_import_cycles():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                cycles.append((module, imported))
    assert cycles == []
