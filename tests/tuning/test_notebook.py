"""tuning/colab_tpu.ipynb: a valid nbformat-4 notebook that papermill can parametrize, whose
command the CLI accepts, and that runs end to end on CPU from a wheel (slow test)."""

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

import reskeras
from reskeras.cli import make_parser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "tuning" / "colab_tpu.ipynb"


def _notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def _cell(cell_id):
    [cell] = [c for c in _notebook().cells if c.get("id") == cell_id]
    return cell


def _parameters(**overrides):
    namespace = {}
    exec(_cell("parameters").source, namespace)
    namespace.update(overrides)
    return namespace


def _tune_args(namespace):
    """Evaluates the search cell's `TUNE_ARGS = [...]` with the given parameters (no run)."""
    tree = ast.parse(_cell("search").source)
    [value] = [node.value for node in tree.body if isinstance(node, ast.Assign)
               and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["TUNE_ARGS"]]
    return eval(compile(ast.Expression(value), "search cell", "eval"), dict(namespace))


def _install_functions(**names):
    """The install cell's function definitions (not its pip calls), with `names` as globals."""
    tree = ast.parse(_cell("install").source)
    tree.body = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    namespace = {"os": os, "sys": sys, **names}
    exec(compile(tree, "install cell", "exec"), namespace)
    return namespace


def test_notebook_is_nbformat_4_with_well_formed_cells():
    notebook = _notebook()
    nbformat.validate(notebook)
    assert notebook.nbformat == 4 and notebook.nbformat_minor >= 5
    assert notebook.metadata["kernelspec"]["language"] == "python"
    assert notebook.metadata["accelerator"] == "TPU" and "colab" in notebook.metadata
    ids = [cell["id"] for cell in notebook.cells]
    assert len(ids) == len(set(ids))
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code[0].id == "parameters" and code[0].metadata["tags"] == ["parameters"]
    assert [c.id for c in code] == ["parameters", "setup", "auth", "install", "tpu", "search",
                                    "results", "exports"]
    with open(NOTEBOOK) as handle:
        raw = json.load(handle)
    for cell in raw["cells"]:
        assert cell["cell_type"] in ("markdown", "code")
        assert isinstance(cell["source"], list) and all(isinstance(s, str) for s in cell["source"])
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
            # plain Python: no IPython `!` or `%` lines, so every cell runs in any kernel
            compile("".join(cell["source"]), f"cell {cell['id']}", "exec")


def test_parameters_default_to_a_tpu_search_on_gcs_from_an_uploaded_wheel():
    values = _parameters()
    with open(ROOT / "pyproject.toml", "rb") as handle:
        version = tomllib.load(handle)["project"]["version"]
    assert values["RESKERAS_SOURCE"] == f"reskeras-{version}-py3-none-any.whl"
    assert "YOUR_ORG" not in NOTEBOOK.read_text()
    assert values["STRATEGY"] == "tpu"
    assert values["TUNE_DIR"].startswith("gs://") and values["EXPORT_BASE"].startswith("gs://")


def test_documented_papermill_commands_set_existing_parameters():
    names = set(_parameters())
    for text in (_notebook().cells[0].source, (ROOT / "docs" / "tuning.md").read_text()):
        documented = re.findall(r"-p (\w+) ", text) + [
            key for block in re.findall(r'-y "\{(.*?)\}"', text)
            for key in re.findall(r"(\w+):", block)]
        assert len(documented) == 14 and set(documented) <= names


def test_search_cell_runs_a_tune_command_the_cli_accepts():
    values = _parameters()
    args = make_parser().parse_args(_tune_args(values))
    assert args.command == "tune" and args.strategy == "tpu" and args.dataset == "cifar10"
    assert args.tuner == "hyperband" and args.batch_size == 1024 and args.recipe == "paper"
    assert args.out == values["TUNE_DIR"] and args.export_top == 1
    assert args.export_base == values["EXPORT_BASE"] and args.export_name == "reskeras-cifar10"
    assert args.subprocess_per_trial and args.data_dir == values["DATA_DIR"]
    assert args.depths == [20, 32, 44, 56] and args.widths == [16, 32, 64]
    assert args.max_trials == 20 and args.max_epochs == 27
    search = _cell("search").source
    assert 'run([sys.executable, "-m", "reskeras", *TUNE_ARGS])' in search
    assert "TPUClusterResolver" in _cell("tpu").source

    local = make_parser().parse_args(_tune_args(_parameters(
        STRATEGY="cpu", DATASET="digits", DATA_DIR="", EXPORT_TOP=0, SUBPROCESS_PER_TRIAL=False,
        TUNE_DIR="/tmp/tune")))
    assert local.strategy == "cpu" and local.dataset == "digits" and local.data_dir is None
    assert local.export_top is None and not local.subprocess_per_trial


def test_setup_cell_stops_with_one_line_errors_naming_the_setting():
    setup = _cell("setup").source
    with pytest.raises(ValueError, match=r"^Set RESKERAS_SOURCE .*Received: RESKERAS_SOURCE=''$"):
        exec(setup, _parameters(RESKERAS_SOURCE=""))
    with pytest.raises(ValueError, match=r"^Set BUCKET .*Received: TUNE_DIR='gs://YOUR_BUCKET/"):
        exec(setup, _parameters())
    namespace = _parameters(TUNE_DIR="/tmp/t", EXPORT_BASE="/tmp/e", DATA_DIR="")
    exec(setup, namespace)
    assert namespace["IN_COLAB"] is False and callable(namespace["run"])


def test_install_source_forms(tmp_path):
    pip_requirement = _install_functions(run=None)["pip_requirement"]
    git = "git+https://example.invalid/owner/reskeras.git@v0.1.0"
    assert pip_requirement(git) == git
    assert pip_requirement("https://example.invalid/o/reskeras.git") == (
        "git+https://example.invalid/o/reskeras.git")
    url = "https://example.invalid/reskeras-0.1.0-py3-none-any.whl"
    assert pip_requirement(url) == url
    wheel = tmp_path / "reskeras-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert pip_requirement(str(wheel)) == str(wheel)
    assert pip_requirement(str(ROOT)) == str(ROOT)  # a checkout: the directory itself
    with pytest.raises(FileNotFoundError, match="upload it .* Received: RESKERAS_SOURCE="):
        pip_requirement(str(tmp_path / "missing-0.1.0-py3-none-any.whl"))
    with pytest.raises(ValueError, match="a reskeras checkout directory"):
        pip_requirement(str(tmp_path))


def test_colab_and_tpu_cells_skip_themselves_elsewhere(capsys):
    values = _parameters(IN_COLAB=False, STRATEGY="cpu", run=None)
    exec(_cell("auth").source, values)
    exec(_cell("tpu").source, values)
    assert capsys.readouterr().out.splitlines() == [
        "Not on Colab: Google sign-in skipped", "STRATEGY = 'cpu': TPU probe skipped"]


def _stream_text(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.slow
def test_notebook_runs_end_to_end_on_cpu_from_a_wheel(tmp_path):
    # Measured on 2 shared cores: 42-61 s, most of it the 2-trial search with the export and
    # its verification in a fresh process; the wheel builds in about 2 s.
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    from tests.test_packaging import build_distributions, make_venv

    [wheel] = build_distributions(tmp_path / "dist", "--wheel")
    python = make_venv(tmp_path / "venv")
    kernels = tmp_path / "kernels"
    (kernels / "reskeras-venv").mkdir(parents=True)
    (kernels / "reskeras-venv" / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "reskeras test venv", "language": "python"}))
    work, tune_dir, export_base = tmp_path / "work", tmp_path / "tune", tmp_path / "exports"
    work.mkdir()

    notebook = _notebook()
    index = [c.get("id") for c in notebook.cells].index("parameters")
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(
        "\n".join(f"{name} = {value!r}" for name, value in {
            "RESKERAS_SOURCE": str(wheel), "STRATEGY": "cpu", "DATASET": "digits",
            "DATA_DIR": "", "TUNER": "grid", "DEPTHS": [8], "WIDTHS": [2, 4], "MAX_TRIALS": 2,
            "MAX_EPOCHS": 1, "BATCH_SIZE": 128, "RECIPE": "adam",
            "SUBPROCESS_PER_TRIAL": False, "TUNE_DIR": str(tune_dir),
            "EXPORT_BASE": str(export_base), "EXPORT_NAME": "digits", "EXPORT_TOP": 1}.items()),
        metadata={"tags": ["injected-parameters"]}))
    manager = KernelManager(kernel_name="reskeras-venv",
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    NotebookClient(notebook, km=manager, timeout=900,
                   resources={"metadata": {"path": str(work)}}).execute(env=env)
    cells = {cell.get("id"): cell for cell in notebook.cells}

    site = tmp_path / "venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    installed = re.search(rf"reskeras {re.escape(reskeras.__version__)} installed at (\S+)",
                          _stream_text(cells["install"]))
    assert installed and Path(installed[1]) == site / "site-packages" / "reskeras"
    assert "Not on Colab: Google sign-in skipped" in _stream_text(cells["auth"])
    assert "STRATEGY = 'cpu': TPU probe skipped" in _stream_text(cells["tpu"])

    board = json.loads((tune_dir / "leaderboard.json").read_text())
    assert [e["status"] for e in board["trials"]] == ["COMPLETED", "COMPLETED"]
    assert sorted(e["arch"]["widths"][0] for e in board["trials"]) == [2, 4]
    assert any("image/png" in o.get("data", {}) for o in cells["results"].outputs)
    versions = [p for p in (export_base / "digits").iterdir() if p.name.isdigit()]
    assert [p.name for p in versions] == ["1"] and (versions[0] / "saved_model.pb").is_file()
    assert f"{versions[0]}/saved_model.pb" in _stream_text(cells["exports"])

    where = subprocess.run([str(python), "-c", "import reskeras; print(reskeras.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()) == site / "site-packages" / "reskeras" / "__init__.py"
