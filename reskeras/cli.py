"""The ``reskeras`` console script: one dispatcher for every subcommand.

Each subcommand lives in a module that exposes ``add_parser(subparsers, name)``;
it calls :func:`add_command` with its ``run(args) -> int``. This file only wires them and turns
bad input into one line and exit code 2 (TensorFlow's start-up noise is quieted
by ``reskeras._quiet`` before TensorFlow is imported, unless ``--verbose``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from reskeras import __version__

USAGE_ERROR = 2
_COMMANDS = {
    "models": "reskeras.commands.models",
    "summary": "reskeras.commands.models",
    "train": "reskeras.commands.train",
    "plot": "reskeras.commands.plot",
    "study": "reskeras.commands.study",
    "convert": "reskeras.commands.convert",
    "tune": "tuning.command",
    "export": "export.command",
}


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand accepts (``parents=[common_options()]``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow's log messages")
    return common


def add_command(subparsers, name: str, run, *, help: str, description: str,
                epilog: str | None = None) -> argparse.ArgumentParser:
    """Adds subcommand ``name`` (with the common options) whose ``run(args) -> int`` runs it.

    Every command module's ``add_parser(subparsers, name)`` starts here, then adds
    its own arguments to the parser this returns.
    """
    parser = subparsers.add_parser(name, parents=[common_options()], help=help,
                                   description=description, epilog=epilog)
    parser.set_defaults(handler=run)  # not `run`: an option may well be called --run
    return parser


def parse_shape(text: str) -> tuple[int, ...]:
    """``"32,32,3"`` -> ``(32, 32, 3)``, for argparse ``type=``."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"must be HEIGHT,WIDTH,CHANNELS with positive integers, e.g. 32,32,3. Received: {text!r}")
    return shape


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reskeras",
        description="Plain and residual twins in Keras: build, train, study, tune, export.")
    parser.add_argument("--version", action="version", version=f"reskeras {__version__}")
    parser.add_argument("--verbose", action="store_true", help=argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name, module in _COMMANDS.items():
        importlib.import_module(module).add_parser(subparsers, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = make_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (UsageError, ValueError) as error:
        print(f"reskeras {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
