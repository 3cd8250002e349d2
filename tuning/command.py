"""``reskeras tune`` (also ``python -m tuning``): Keras Tuner over depth x width.

Examples::

    reskeras tune --dataset digits --max-trials 8 --out tune-digits
    reskeras tune --dataset digits --tuner grid --depths 8 14 20 --widths 4 8 \\
        --max-epochs 2 --out tune-grid
    reskeras tune --dataset digits --search-residual --max-params 100000 --out tune-budget
    reskeras tune --dataset cifar10 --strategy tpu --max-epochs 30 --out gs://bucket/tune-c10 \\
        --export-top 1 --export-base gs://bucket/models
    reskeras tune ... --chief --oracle-address 10.0.0.2:8000      # the oracle (trains nothing)
    reskeras tune ... --worker 1 --oracle-address 10.0.0.2:8000   # one per worker host

Re-running the same command continues a killed search (finished trials are kept,
the interrupted one resumes from its last checkpoint).
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from reskeras.cli import UsageError, add_command
from reskeras.specs import FAMILIES, INITS, PADDINGS, SHORTCUTS, VERSIONS

_STRATEGIES = ("auto", "cpu", "gpu", "mirrored", "multiworker", "tpu")


def add_parser(subparsers, name: str) -> None:
    parser = add_command(
        subparsers, name, run_tune, help="search depth and width with Keras Tuner",
        description="Search depth x width (optionally residual vs plain, version, shortcut, "
                    "learning rate, weight decay) of reskeras nets with Keras Tuner "
                    "(hyperband, bayesian, random or grid). Every trial is a reskeras run in "
                    "TUNE_DIR/runs/<trial_id>; TUNE_DIR gets leaderboard.json, .csv and .png. "
                    "Re-running the same command continues a killed search.",
        epilog="Distributed: one process with --chief serves the oracle, any number with "
               "--worker ID train (all with the same arguments and --oracle-address), or set "
               "KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT.")
    space = parser.add_argument_group("search space")
    space.add_argument("--family", choices=FAMILIES, default="cifar",
                       help="cifar (6n+2 / 9n+2 depths, default) or imagenet")
    space.add_argument("--block", choices=("basic", "bottleneck"),
                       help="block type (cifar family; default: the spec table's)")
    space.add_argument("--depths", type=int, nargs="+", metavar="D",
                       help="depths to search (default cifar: 8 14 20 26 32)")
    space.add_argument("--stage-blocks", type=int, nargs="+", metavar="B",
                       help="search blocks per stage independently instead of --depths")
    space.add_argument("--widths", type=int, nargs="+", metavar="W",
                       help="base widths to search (default cifar: 8 16 32)")
    space.add_argument("--search-residual", action="store_true",
                       help="also search residual vs plain")
    space.add_argument("--plain", action="store_true", help="plain nets only")
    space.add_argument("--versions", nargs="+", choices=VERSIONS, help="v1 and/or v2")
    space.add_argument("--shortcuts", nargs="+", choices=SHORTCUTS, help="A, B and/or C")
    space.add_argument("--inits", nargs="+", choices=INITS,
                       help="conv init: he_normal, dirac (identity + noise), dirac_permuted, "
                            "delta_orthogonal, fixup (residual nets with --no-bn only)")
    space.add_argument("--branch-scales", type=float, nargs="+", metavar="X",
                       help="learnable residual-branch scale starting at X (0: SkipInit); "
                            "residual candidates only")
    space.add_argument("--lrs", type=float, nargs="+", metavar="LR",
                       help="learning rates (default: the recipe's)")
    space.add_argument("--weight-decays", type=float, nargs="+", metavar="WD",
                       help="weight decays (default: the recipe's)")
    space.add_argument("--no-bn", action="store_true", help="no BatchNorm in any candidate")
    space.add_argument("--padding", choices=PADDINGS, default="symmetric",
                       help="strided convs of every candidate: symmetric (default, as "
                            "torchvision/timm) or tf_same (TensorFlow's bottom/right 'same')")
    budget = parser.add_argument_group("tuner and budget")
    budget.add_argument("--tuner", default="hyperband",
                        help="hyperband (default), bayesian, random or grid")
    budget.add_argument("--objective", default="val_accuracy",
                        help="val_accuracy (default, maximized) or val_loss (minimized)")
    budget.add_argument("--max-trials", type=int, default=10, help="trials to run (10)")
    budget.add_argument("--max-epochs", type=int, default=3,
                        help="epochs of a trial; Hyperband's longest round (3)")
    budget.add_argument("--factor", type=int, default=3, help="Hyperband's reduction factor")
    budget.add_argument("--max-params", type=int,
                        help="reject samples with more trainable parameters (before training)")
    budget.add_argument("--max-flops", type=int,
                        help="reject samples with more multiply-adds per image")
    data = parser.add_argument_group("data and training")
    data.add_argument("--dataset", default="digits",
                      help="digits (offline, default), cifar10, ..., folder:DIR (any reskeras "
                           "dataset)")
    data.add_argument("--data-dir", help="TFDS data directory (local or gs://)")
    data.add_argument("--image-size", type=int, help="resize images to this square size")
    data.add_argument("--recipe", choices=("adam", "paper"), default="adam",
                      help="adam (default) or paper (SGD, lr 0.1, decay at 50%%/75%%)")
    data.add_argument("--batch-size", type=int, help="global batch (default 128)")
    data.add_argument("--seed", type=int, default=0, help="seed of the oracle and the runs")
    data.add_argument("--grad-norms-every", type=int, default=4, metavar="N",
                      help="log per-layer gradient norms every N steps (4)")
    run = parser.add_argument_group("execution")
    run.add_argument("--strategy", choices=_STRATEGIES, default="auto",
                     help="where each trial trains (default auto)")
    run.add_argument("--cpu-replicas", type=int, help="split the CPU into N logical devices")
    run.add_argument("--no-xla", action="store_true", help="no XLA (faster compile on CPUs)")
    run.add_argument("--steps-per-execution", type=int, default=8,
                     help="steps per compiled call (8)")
    run.add_argument("--subprocess-per-trial", action="store_true",
                     help="train each trial in its own process (returns all its memory; one "
                          "TensorFlow start-up per trial)")
    run.add_argument("--trainer-verbose", type=int, choices=(0, 1, 2), default=0,
                     help="the trainer's progress output per trial (0)")
    run.add_argument("--out", required=True, help="tuner directory TUNE_DIR (local or gs://)")
    dist = parser.add_argument_group("distributed search (Keras Tuner's chief and workers)")
    who = dist.add_mutually_exclusive_group()
    who.add_argument("--chief", action="store_true", help="serve the oracle (trains nothing)")
    who.add_argument("--worker", metavar="ID", help="run trials as worker ID (1 -> tuner1)")
    dist.add_argument("--oracle-address", metavar="HOST:PORT",
                      help="where the chief listens (needed with --chief / --worker)")
    export = parser.add_argument_group("export")
    export.add_argument("--export-top", type=int, metavar="K",
                        help="after the search, export the K best trials (reskeras export)")
    export.add_argument("--export-base", metavar="DIR", help="export base directory")
    export.add_argument("--export-name", metavar="NAME",
                        help="model name of the export (default reskeras-DATASET)")


def config_from_args(args: argparse.Namespace):
    from tuning.search import SearchConfig

    if args.plain and args.search_residual:
        raise UsageError("--plain and --search-residual exclude each other. "
                         "Received: plain=True, search_residual=True")
    if args.depths is not None and args.stage_blocks is not None:
        raise UsageError("--depths and --stage-blocks exclude each other. "
                         f"Received: depths={args.depths}, stage_blocks={args.stage_blocks}")
    return SearchConfig(
        out=args.out, dataset=args.dataset, data_dir=args.data_dir, image_size=args.image_size,
        tuner=args.tuner, objective=args.objective, max_trials=args.max_trials,
        max_epochs=args.max_epochs, family=args.family, block=args.block,
        depths=_tuple(args.depths), stage_blocks=_tuple(args.stage_blocks),
        widths=_tuple(args.widths), search_residual=args.search_residual,
        residual=not args.plain, versions=_tuple(args.versions),
        shortcuts=_tuple(args.shortcuts), inits=_tuple(args.inits),
        branch_scales=_tuple(args.branch_scales), lrs=_tuple(args.lrs),
        weight_decays=_tuple(args.weight_decays), batch_norm=not args.no_bn,
        padding=args.padding,
        max_params=args.max_params, max_flops=args.max_flops, recipe=args.recipe,
        batch_size=args.batch_size, seed=args.seed, grad_norms_every=args.grad_norms_every,
        strategy=args.strategy, cpu_replicas=args.cpu_replicas,
        jit_compile=False if args.no_xla else "auto",
        steps_per_execution=args.steps_per_execution, factor=args.factor,
        verbose=args.trainer_verbose, subprocess_per_trial=args.subprocess_per_trial)


def _tuple(values):
    return None if values is None else tuple(values)


def _role(args) -> tuple[str | None, contextlib.AbstractContextManager]:
    from tuning import distributed

    if args.chief or args.worker is not None:
        if not args.oracle_address:
            raise UsageError("--chief and --worker need --oracle-address HOST:PORT. "
                             "Received: oracle_address=None")
        tuner_id = "chief" if args.chief else distributed.worker_id(args.worker)
        return ("chief" if args.chief else "worker",
                distributed.tuner_environment(tuner_id, args.oracle_address))
    if args.oracle_address:
        raise UsageError("--oracle-address needs --chief or --worker. "
                         f"Received: oracle_address={args.oracle_address!r}")
    return distributed.role_from_environment(), contextlib.nullcontext()


def run_tune(args: argparse.Namespace) -> int:
    from tuning.search import run_search

    if (args.export_top is None) != (args.export_base is None):
        raise UsageError("--export-top and --export-base go together. "
                         f"Received: export_top={args.export_top}, "
                         f"export_base={args.export_base!r}")
    if args.export_top is not None and args.export_top < 1:
        raise UsageError(f"--export-top must be a positive integer. "
                         f"Received: export_top={args.export_top}")
    config = config_from_args(args)
    role, environment = _role(args)
    with environment:
        try:
            board = run_search(config, role=role)
        except RuntimeError as error:  # Keras Tuner stopped it: 3 failed trials in a row
            reason = str(error).strip().splitlines()
            print(f"reskeras tune: search stopped: {reason[0] if reason else error} "
                  f"(see {config.out}/leaderboard.json and the trials' failure reasons)",
                  file=sys.stderr)
            return 1
    if board is None:
        print(f"worker finished: its trials are in {config.out}/runs")
        return 0
    _print_summary(board, config.out)
    if args.export_top is not None:
        from reskeras.cli import main
        from reskeras.data import dataset_slug
        name = args.export_name or f"reskeras-{dataset_slug(config.dataset)}"
        sys.stdout.flush()
        return main(["export", "--tuner", config.out, "--top", str(args.export_top),
                     "--base", args.export_base, "--name", name])
    return 0


def _print_summary(board: dict, out: str) -> None:
    from reskeras.specs import ArchSpec

    objective = board["objective"]["name"]
    trials = board["trials"]
    done = [t for t in trials if t["status"] == "COMPLETED"]
    print(f"\n{len(done)} of {len(trials)} trials completed; best first ({objective}):")
    for entry in trials[:10]:
        name = ArchSpec.from_config(entry["arch"]).name
        score = "-" if entry["score"] is None else f"{entry['score']:.4f}"
        note = f"  {entry['failure']}" if entry["failure"] else ""
        print(f"  {entry['trial_id']:>4}  {entry['status']:<9} {score:>7}  {name:<22} "
              f"{entry['params']:>10,} params  {entry['seconds']:7.1f} s  "
              f"{entry['gradients']['state']}{note}")
    print(f"leaderboard: {out}/leaderboard.json (also .csv, .png)")
    sys.stdout.flush()
