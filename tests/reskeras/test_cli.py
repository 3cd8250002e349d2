"""The command line: help, listing, one-line errors with exit code 2."""


import pytest

from reskeras import list_models
from reskeras.cli import main


def _exit_code(argv) -> int:
    """``main(argv)``'s exit code, also when argparse exits with its own errors."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def test_help_lists_commands(capsys):
    # the quiet start of the console script itself: test_train_distributed
    assert _exit_code(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("models", "summary", "train", "plot", "study", "tune", "export"):
        assert f"    {command} " in out


def test_models_lists_the_whole_registry(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == list_models()


@pytest.mark.slow  # builds every ImageNet model: about 25 s
def test_models_params_counts_by_building(capsys):
    # The CIFAR rows include ResNet-1202 and -1001 (minutes to build); ImageNet is enough here.
    assert main(["models", "--family", "imagenet", "--params"]) == 0
    rows = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["resnet18"] == "11,689,512" and rows["resnet50"] == "25,557,032"


def test_summary_prints_the_trainable_count(capsys):
    assert main(["summary", "resnet20", "--input-shape", "8,8,1"]) == 0
    assert capsys.readouterr().out.strip().endswith("trainable parameters: 269,434")


@pytest.mark.parametrize("args, message", [
    (["summary", "resnet21"], "reskeras summary: error: `name` must be a registry name"),
    (["summary", "resnet20", "--width", "0"], "reskeras summary: error: `width` must be an "
                                              "integer >= 1. Received: width=0"),
    (["summary", "resnet20", "--input-shape", "8,8"], "argument --input-shape: must be "
                                                      "HEIGHT,WIDTH,CHANNELS"),
    (["summary", "resnet20", "--version", "v3"], "argument --version: invalid choice: 'v3'"),
    (["nonsense"], "argument COMMAND: invalid choice: 'nonsense'"),
])
def test_bad_input_is_one_line_exit_2_no_traceback(args, message, capsys):
    assert _exit_code(args) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert captured.out == ""
