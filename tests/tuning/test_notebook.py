"""tuning/colab_tpu.ipynb: a valid nbformat-4 notebook whose commands the CLI accepts."""

import json
import re
import shlex
from pathlib import Path

from reskeras.cli import make_parser

NOTEBOOK = Path(__file__).resolve().parents[2] / "tuning" / "colab_tpu.ipynb"


def _notebook():
    with open(NOTEBOOK) as handle:
        return json.load(handle)


def _source(cell):
    return "".join(cell["source"])


def test_notebook_is_nbformat_4_with_well_formed_cells():
    notebook = _notebook()
    assert notebook["nbformat"] == 4 and notebook["nbformat_minor"] >= 4
    assert notebook["metadata"]["kernelspec"]["language"] == "python"
    assert notebook["metadata"]["accelerator"] == "TPU"
    ids = [cell["id"] for cell in notebook["cells"]]
    assert len(ids) == len(set(ids))
    for cell in notebook["cells"]:
        assert cell["cell_type"] in ("markdown", "code")
        assert isinstance(cell["source"], list) and all(isinstance(s, str) for s in cell["source"])
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
            python = "\n".join(line for line in _source(cell).splitlines()
                               if not line.lstrip().startswith("!"))
            compile(python, f"cell {cell['id']}", "exec")


def test_notebook_installs_finds_the_tpu_searches_on_gcs_and_exports():
    cells = [_source(c) for c in _notebook()["cells"] if c["cell_type"] == "code"]
    text = "\n".join(cells)
    assert 'pip install -q --no-deps "git+{REPO_URL}"' in text
    assert "TPUClusterResolver" in text
    variables = {}
    exec(cells[0], variables)  # the parameters cell
    assert variables["TUNE_DIR"].startswith("gs://") and variables["BUCKET"].startswith("gs://")
    [command] = [line for line in text.splitlines() if line.startswith("!reskeras tune")]
    filled = re.sub(r"\{(\w+)\}", lambda m: str(variables[m.group(1)]), command[1:])
    args = make_parser().parse_args(shlex.split(filled)[1:])
    assert args.command == "tune" and args.strategy == "tpu" and args.dataset == "cifar10"
    assert args.out == variables["TUNE_DIR"] and args.export_top == 1
    assert args.export_base.startswith("gs://") and args.subprocess_per_trial
    assert args.depths == [20, 32, 44, 56] and args.widths == [16, 32, 64]
