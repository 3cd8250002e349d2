"""``reskeras study``: do ResNets solve vanishing gradients? Train the twins and measure.

Examples::

    reskeras study                                   # quick preset, digits, ~10 min on 2 cores
    reskeras study --out studies/quick               # the same, somewhere else
    reskeras study --preset paper --data-dir ~/tensorflow_datasets --strategy tpu --out gs://b/s
    reskeras study --depths 8 20 --epochs 4 --out studies/tiny
"""

from __future__ import annotations

import argparse
import sys

from reskeras.cli import UsageError, add_command


def add_parser(subparsers, name: str) -> None:
    parser = add_command(
        subparsers, name, run_study, help="run the plain-vs-residual study and report",
        description="Train plain and residual twins over depths, with and without BatchNorm, "
                    "log gradient norms and layer responses, run lesion, shattering and "
                    "loss-landscape analyses, and write STUDY_DIR/report.html, report.md, "
                    "figures/, summary.csv and verdict.json. Re-running continues a killed "
                    "study and reuses finished cells.")
    parser.add_argument("--preset", choices=("quick", "paper"), default="quick",
                        help="quick: digits, depths 8/20/56 (default); paper: CIFAR-10, "
                             "depths 20-110, 3 seeds, 64k steps")
    parser.add_argument("--out", help="study directory (default: study-PRESET)")
    parser.add_argument("--dataset", help="override the preset's dataset")
    parser.add_argument("--data-dir", help="TFDS data directory (local or gs://)")
    parser.add_argument("--depths", type=int, nargs="+", metavar="D",
                        help="CIFAR depths 6n+2 (override the preset's)")
    parser.add_argument("--seeds", type=int, metavar="N", help="number of seeds (0..N-1)")
    parser.add_argument("--epochs", type=int, help="epochs per cell")
    parser.add_argument("--steps", type=int, help="steps per cell (instead of --epochs)")
    parser.add_argument("--no-bn-cells", action="store_true",
                        help="only the BatchNorm cells (halves the grid)")
    parser.add_argument("--skip", nargs="+", choices=("lesion", "shattering", "landscape"),
                        default=[], help="analyses to leave out")
    parser.add_argument("--strategy", choices=("auto", "cpu", "gpu", "mirrored", "multiworker",
                                               "tpu"), help="where the cells train")


def run_study(args: argparse.Namespace) -> int:
    from reskeras.analysis.study import StudyConfig, run_study as run

    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be a positive integer. Received: seeds={args.seeds}")
    if args.epochs is not None and args.steps is not None:
        raise UsageError("--epochs and --steps exclude each other. "
                         f"Received: epochs={args.epochs}, steps={args.steps}")
    overrides = {"dataset": args.dataset, "data_dir": args.data_dir,
                 "depths": tuple(args.depths) if args.depths else None,
                 "seeds": tuple(range(args.seeds)) if args.seeds else None,
                 "epochs": args.epochs, "steps": args.steps, "strategy": args.strategy,
                 "batch_norm": (True,) if args.no_bn_cells else None,
                 "analyses": tuple(a for a in ("lesion", "shattering", "landscape")
                                   if a not in args.skip)}
    config = StudyConfig.from_preset(args.preset, args.out or f"study-{args.preset}",
                                     **overrides)
    results = run(config, log=lambda *a, **k: print(*a, **k))
    verdict = results["verdict"]
    print(f"\n{verdict['answer']}\n")
    print(f"report: {config.out}/report.html  (also report.md, figures/, summary.csv, "
          f"verdict.json; {results['seconds']:.0f} s)")
    sys.stdout.flush()
    return 0
