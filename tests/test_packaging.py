"""`python -m build` makes an sdist and a wheel that install and run outside the checkout.

Builds run without build isolation (`--no-isolation`): isolation would download setuptools
from PyPI at test time; the `test` extra installs the build backend (setuptools>=77, what
pyproject.toml's build-system requires) and `build` checks that requirement before building.
Installs go into throwaway `--system-site-packages` venvs with `pip --no-index`: TensorFlow and
the other requirements come from the system site-packages, nothing downloads, and the
developer's environment is not touched.

Measured on 2 shared cores: building both 2 s, the sdist install 10-13 s, the wheel's commands
42-48 s (each one imports TensorFlow; the train run takes about 15 s).
"""

import email.parser
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reskeras", "tuning", "export")


def checkout_copy(dest: Path) -> Path:
    """Copies what a clone of the checkout holds (tracked and not-ignored files) to `dest`.

    Building from a copy leaves no build/ or egg-info behind in the checkout and sees the
    files a clean clone would.
    """
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def build_distributions(outdir: Path, *build_args: str) -> list[Path]:
    """`python -m build --no-isolation [build_args]` of a checkout copy; the files it wrote."""
    source = checkout_copy(outdir.with_name(outdir.name + "-src"))
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                             str(outdir), *build_args, str(source)],
                            cwd=source, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return sorted(outdir.iterdir())


def make_venv(path: Path) -> Path:
    """A venv that sees the system site-packages (TensorFlow etc.); returns its python.

    `--without-pip`: the venv runs the system's pip and setuptools (its own, from ensurepip,
    would be Python 3.11's bundled setuptools 65, which cannot read pyproject.toml's SPDX
    license and would shadow the setuptools>=77 of the `test` extra); `python -m pip` in the
    venv still installs into the venv.
    """
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(path)], check=True)
    return path / "bin" / "python"


def _pip_install(python: Path, *args: str) -> None:
    result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-index",
                             *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _run(command, cwd):
    return subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True,
                          text=True, env=_env())


def _env():
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _runtime_requirements() -> set:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return {Requirement(line) for line in lines if line.strip() and not line.startswith("#")}


def _modules(tree: Path) -> set:
    return {p.relative_to(tree).as_posix() for package in PACKAGES
            for p in (tree / package).rglob("*.py") if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def distributions(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("packaging") / "dist"
    files = build_distributions(outdir)
    [sdist] = [f for f in files if f.name.endswith(".tar.gz")]
    [wheel] = [f for f in files if f.name.endswith(".whl")]
    assert len(files) == 2
    return {"sdist": sdist, "wheel": wheel, "source": outdir.with_name("dist-src")}


def test_sdist_carries_the_packages_and_the_files_the_build_reads(distributions):
    sdist = distributions["sdist"]
    assert sdist.name == "reskeras-0.3.0.tar.gz"
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
        pkg_info = archive.extractfile("reskeras-0.3.0/PKG-INFO").read().decode()
    assert {"pyproject.toml", "requirements.txt", "README.md"} <= names
    assert _modules(distributions["source"]) <= names
    metadata = email.parser.Parser().parsestr(pkg_info)
    runtime = {Requirement(r) for r in metadata.get_all("Requires-Dist") if "extra ==" not in r}
    assert runtime == _runtime_requirements()  # requirements.txt, read by the dynamic field
    assert sorted(metadata.get_all("Provides-Extra")) == ["onnx", "test", "torch"]
    assert metadata["License-Expression"] == "Apache-2.0"


def test_wheel_holds_the_three_packages_and_the_console_script(distributions):
    with zipfile.ZipFile(distributions["wheel"]) as archive:
        names = set(archive.namelist())
        entry_points = archive.read("reskeras-0.3.0.dist-info/entry_points.txt").decode()
    assert distributions["wheel"].name == "reskeras-0.3.0-py3-none-any.whl"
    assert {n.split("/")[0] for n in names} == {*PACKAGES, "reskeras-0.3.0.dist-info"}
    # nothing but the modules: no package reads a data file (the notebook stays in the sdist's
    # repository, not the wheel)
    assert {n for n in names if not n.startswith("reskeras-0.3.0.dist-info/")} == (
        _modules(distributions["source"]))
    assert "reskeras = reskeras.cli:main" in entry_points


@pytest.mark.slow
def test_sdist_installs_with_its_declared_requirements(distributions, tmp_path):
    python = make_venv(tmp_path / "venv")
    _pip_install(python, "--no-build-isolation", distributions["sdist"])
    shown = _run([python, "-c", "import importlib.metadata as m, reskeras; "
                  "print(reskeras.__file__); print(*m.requires('reskeras'), sep='\\n')"],
                 cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-3000:]
    where, *requires = shown.stdout.splitlines()
    assert Path(where).is_relative_to(tmp_path / "venv")
    assert {Requirement(r) for r in requires if "extra ==" not in r} == _runtime_requirements()


@pytest.mark.slow
def test_wheel_installs_and_its_commands_run_outside_the_checkout(distributions, tmp_path):
    python = make_venv(tmp_path / "venv")
    _pip_install(python, distributions["wheel"])
    work, script = tmp_path / "work", python.parent / "reskeras"
    work.mkdir()

    where = _run([python, "-c", "import reskeras, tuning, export; "
                  "print(reskeras.__file__, tuning.__file__, export.__file__)"], cwd=work)
    assert where.returncode == 0, where.stderr[-3000:]
    site = tmp_path / "venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert [Path(p).parent.parent for p in where.stdout.split()] == [site / "site-packages"] * 3

    helped = _run([script, "--help"], cwd=work)
    assert helped.returncode == 0 and "tune      search depth and width" in helped.stdout
    models = _run([script, "models"], cwd=work)
    assert models.returncode == 0 and {"resnet20", "plain56", "resnet50"} <= set(models.stdout.split())
    run_dir = work / "run"
    trained = _run([script, "train", "--model", "resnet8", "--dataset", "digits", "--steps", "2",
                    "--out", run_dir], cwd=work)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (run_dir / "config.json").is_file() and (run_dir / "model.keras").is_file()
    tune = _run([python, "-m", "tuning", "--help"], cwd=work)
    assert tune.returncode == 0 and tune.stdout.startswith("usage: reskeras tune")
    export = _run([python, "-m", "export", "--help"], cwd=work)
    assert export.returncode == 0 and export.stdout.startswith("usage: reskeras export")
