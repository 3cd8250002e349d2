"""``reskeras plot``: PNG figures of gradient norms and layer responses of training runs.

Examples::

    reskeras plot runs/r20                                  # -> runs/r20/figures/*.png
    reskeras plot runs/plain20 runs/resnet20 --out figures/ # twins side by side
    reskeras plot runs/r20 --steps 0 500 1000               # profile at these steps
"""

from __future__ import annotations

import argparse
import sys

from reskeras.cli import UsageError, add_command


def add_parser(subparsers, name: str) -> None:
    parser = add_command(
        subparsers, name, run_plot, help="draw gradient-norm and layer-response figures",
        description="Write PNG figures from the grad_norms.jsonl and activations.jsonl of "
                    "one or more run directories (train with --grad-norms-every and "
                    "--activations-every): grad_norm_heatmap.png, grad_norm_profile.png, "
                    "layer_responses.png and, for residual nets, residual_ratio.png. "
                    "Prints the paths written, one per line.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run directories; several are drawn side by side")
    parser.add_argument("--out", help="directory for the PNGs (default RUN_DIR/figures; "
                                      "required with several run directories)")
    parser.add_argument("--steps", type=int, nargs="+", metavar="S",
                        help="steps of the gradient-norm profile, each replaced by the "
                             "nearest logged step (default: first, middle and last)")


def _out_dir(args: argparse.Namespace) -> str:
    import tensorflow as tf
    from reskeras import rundir

    if args.out is None:
        if len(args.run_dirs) > 1:
            raise UsageError("--out is required with several run directories. "
                             f"Received: {len(args.run_dirs)} run directories")
        return rundir.path(args.run_dirs[0], "figures")
    if tf.io.gfile.exists(args.out) and not tf.io.gfile.isdir(args.out):
        raise UsageError(f"--out must be a directory, not an existing file. "
                         f"Received: out={args.out!r}")
    return args.out


def run_plot(args: argparse.Namespace) -> int:
    from reskeras.analysis import ACTIVATIONS, GRAD_NORMS, load_run, write_figures

    if args.steps and min(args.steps) < 0:
        raise UsageError(f"--steps must be integers >= 0. Received: steps={args.steps}")
    out = _out_dir(args)
    runs = [load_run(run_dir) for run_dir in args.run_dirs]
    for run in runs:
        if not run["grad_norms"] and not run["activations"]:
            raise UsageError(
                f"each RUN_DIR must hold {GRAD_NORMS} or {ACTIVATIONS} (train with "
                f"--grad-norms-every or --activations-every). Received: {run['run_dir']!r}")
    written, skipped = write_figures(runs, out, steps=args.steps)
    if not written:
        raise UsageError(f"nothing to draw: {'; '.join(skipped)}")
    for note in skipped:
        print(f"reskeras plot: skipped {note}", file=sys.stderr)
    for path in written:
        print(path)
    return 0
