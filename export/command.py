"""``reskeras export``: verified SavedModels for TF Serving from a run, a model file or a tuner.

Examples::

    reskeras export --run runs/r8 --base exports --name digits            # -> exports/digits/1
    reskeras export --run runs/r8 --base exports --name digits --tflite   # + model.tflite
    reskeras export --tuner tune/digits --top 3 --base exports --name digits
    reskeras export --model resnet50.keras --base exports --name resnet50
    reskeras export --verify exports/digits/1
"""

from __future__ import annotations

import argparse
import os
import sys

from reskeras.cli import UsageError, add_command


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer. Received: {text!r}")
    return int(text)


def add_parser(subparsers, name: str) -> None:
    parser = add_command(
        subparsers, name, run_export, help="export SavedModels for TF Serving, or verify one",
        description="Export a finished run (--run), a .keras model file with its "
                    ".reskeras.json sidecar (--model, e.g. from `reskeras convert`) or the best "
                    "COMPLETED trials of a tuner directory (--tuner) as BASE/NAME/VERSION: a "
                    "SavedModel with the signatures "
                    "serving_default (uint8 images) and serve_bytes (PNG/JPEG bytes), the "
                    "training normalization inside, assets/reskeras.json metadata and TF Serving "
                    "warmup records. Each version is verified in a fresh TensorFlow-only process "
                    "before it appears. Prints the version directories written, one per line. "
                    "--verify DIR re-runs the verification of an existing version.",
        epilog="See docs/export.md for TF Serving (docker, REST, gRPC) examples.")
    source = parser.add_mutually_exclusive_group(required=True)
    # dest run_dir, as in the rest of reskeras
    source.add_argument("--run", dest="run_dir", metavar="RUN_DIR",
                        help="a finished reskeras run directory")
    source.add_argument("--tuner", metavar="TUNE_DIR",
                        help="a tuner directory holding leaderboard.json")
    source.add_argument("--model", dest="model_file", metavar="FILE.keras",
                        help="a .keras model file with its .reskeras.json sidecar beside it "
                             "(written by `reskeras convert`)")
    source.add_argument("--verify", metavar="DIR",
                        help="verify an existing export version directory and exit")
    parser.add_argument("--top", type=_positive_int, metavar="K",
                        help="with --tuner: export the K best COMPLETED trials (default 1); the "
                             "best gets the highest version, which TF Serving serves by default")
    parser.add_argument("--base", metavar="EXPORT_BASE",
                        help="TF Serving model base path (local or gs://)")
    parser.add_argument("--name", help="model name: one directory level under --base")
    parser.add_argument("--version", type=_positive_int, metavar="V",
                        help="version to write (must not exist; default: highest + 1)")
    parser.add_argument("--tflite", action="store_true",
                        help="also write assets.extra/model.tflite (parity-checked)")
    parser.add_argument("--onnx", action="store_true",
                        help="also write assets.extra/model.onnx (needs reskeras[onnx])")
    parser.add_argument("--no-verify", action="store_true",
                        help="publish without the fresh-process verification")


def _run_verify(args: argparse.Namespace) -> int:
    import tensorflow as tf
    from export.verify import verify_export

    for flag in ("top", "base", "name", "version"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--verify takes only a directory; drop --{flag}. "
                             f"Received: --{flag} {getattr(args, flag)}")
    if not tf.io.gfile.isdir(args.verify):
        raise UsageError(f"--verify must be an existing export version directory. "
                         f"Received: {args.verify!r}")
    leaf = os.path.basename(args.verify.rstrip("/"))
    report = verify_export(args.verify, verbose=args.verbose,
                           version=int(leaf) if leaf.isdigit() else None)
    for line in report.lines():
        print(line)
    print(f"{'verified' if report.ok else 'FAILED'}: {args.verify}")
    return 0 if report.ok else 1


def run_export(args: argparse.Namespace) -> int:
    if args.verify is not None:
        return _run_verify(args)
    for flag in ("base", "name"):
        if getattr(args, flag) is None:
            raise UsageError(f"--{flag} is required with --run and --tuner and --model")
    if args.top is not None and args.tuner is None:
        given = "--run" if args.run_dir is not None else "--model"
        raise UsageError(f"--top needs --tuner. Received: --top {args.top} with {given}")
    from export.exporter import export_savedmodel, export_tuner
    from export.verify import VerificationError
    from reskeras.model_file import check_model_path

    formats = tuple(f for f in ("tflite", "onnx") if getattr(args, f))
    common = dict(version=args.version, verify=not args.no_verify, formats=formats,
                  verbose=args.verbose)
    try:
        if args.model_file is not None:
            check_model_path(args.model_file, "model")  # else it would be read as a run dir
            results = [export_savedmodel(args.model_file, args.base, args.name, **common)]
        elif args.run_dir is not None:
            results = [export_savedmodel(args.run_dir, args.base, args.name, **common)]
        else:
            results = export_tuner(args.tuner, args.base, args.name, args.top or 1, **common)
    except ImportError as error:
        raise UsageError(str(error)) from None
    except VerificationError as error:
        for line in error.report.lines():
            print(f"reskeras export: {line}", file=sys.stderr)
        print(f"reskeras export: error: verification failed; nothing was published "
              f"({error.report.path} removed)", file=sys.stderr)
        return 1
    for result in results:
        if result.report is not None:
            passed = sum(c["ok"] for c in result.report.checks)
            print(f"reskeras export: verified {result.path} ({passed} checks passed)",
                  file=sys.stderr)
        print(result.path)
    return 0
