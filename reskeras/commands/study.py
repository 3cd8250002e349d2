"""``reskeras study``: do ResNets solve vanishing gradients? Train the twins and measure.

Examples::

    reskeras study                                   # quick preset, digits, 2 CPU cores
    reskeras study --preset full --out studies/full  # 5 depths, 5 seeds, two recipes
    reskeras study --recipe paper --out studies/sgd  # the quick grid under the paper's SGD
    reskeras study --out studies/quick               # the same, somewhere else
    reskeras study --preset paper --data-dir ~/tensorflow_datasets --strategy tpu --out gs://b/s
    reskeras study --depths 8 20 --epochs 4 --out studies/tiny
"""

from __future__ import annotations

import argparse
import sys

from reskeras.study.cells import INTERVENTIONS
from reskeras.study.run import ANALYSES, PRESETS
from reskeras.cli import UsageError, add_command


def add_parser(subparsers, name: str) -> None:
    parser = add_command(
        subparsers, name, run_study, help="run the plain-vs-residual study and report",
        description="Train plain and residual twins over depths, with and without BatchNorm, "
                    "plus interventions that test each explanation (identity init, SkipInit, "
                    "a 10x smaller learning rate) and an identity task; log gradient norms "
                    "and layer responses, run lesion, shattering, loss-landscape, distance "
                    "and sharpness analyses, and write STUDY_DIR/report.html, report.md, "
                    "figures/, summary.csv and verdict.json (with the hypotheses). "
                    "Re-running continues a killed study and reuses finished cells.")
    parser.add_argument("--preset", choices=tuple(PRESETS), default="quick",
                        help="quick: digits, depths 8/20/56, 3 seeds of every cell, each "
                             "trained to convergence or 1,408 steps (default); full: depths "
                             "8-56, 5 seeds, a 2,816-step cap, Adam and the paper's SGD; paper: "
                             "CIFAR-10, depths 20-110, 3 seeds, up to 64k steps")
    parser.add_argument("--out", help="study directory (default: study-PRESET)")
    parser.add_argument("--dataset", help="override the preset's dataset: digits, synthetic, a "
                                          "TFDS name or folder:DIR (one sub-folder per class)")
    parser.add_argument("--data-dir", help="TFDS data directory (local or gs://)")
    parser.add_argument("--image-size", type=int, help="resize images to this square size")
    parser.add_argument("--depths", type=int, nargs="+", metavar="D",
                        help="CIFAR depths 6n+2 (override the preset's)")
    parser.add_argument("--seeds", type=int, metavar="N",
                        help="number of seeds (0..N-1) of every cell, interventions included")
    parser.add_argument("--first-seed", type=int, default=0, metavar="K",
                        help="add K to every seed, the identity task's included: held-out "
                             "seeds, e.g. --seeds 3 --first-seed 100 runs seeds 100-102")
    parser.add_argument("--interventions", nargs="*", choices=INTERVENTIONS, metavar="NAME",
                        help="interventions at the deepest depth: " + ", ".join(INTERVENTIONS)
                        + " (default: the preset's; give none for the twins only)")
    parser.add_argument("--sweep-depths", nargs="*", choices=INTERVENTIONS, metavar="NAME",
                        help="interventions that also run at every shallower depth (default: "
                             "the preset's among --interventions; full: dirac, diracperm, "
                             "deltaorth)")
    parser.add_argument("--recipe", choices=("adam", "paper"),
                        help="adam: Adam at 1e-3, constant (quick's); paper: SGD with momentum "
                             "0.9, weight decay 1e-4, rate /10 at 50%% and 75%% of each budget. "
                             "Runs this recipe only (the full preset runs both)")
    parser.add_argument("--epochs", type=int, help="base budget per cell, in epochs")
    parser.add_argument("--steps", type=int,
                        help="base budget per cell, in steps (instead of --epochs)")
    parser.add_argument("--max-doublings", type=int, metavar="K",
                        help="cells train on, doubling the budget, until they converge or "
                             "reach base x 2^K steps (the cap; quick: 4, 88 -> 1,408 steps)")
    parser.add_argument("--batch-size", type=int,
                        help="global batch of every cell (default: the preset's, 128)")
    parser.add_argument("--no-bn-cells", action="store_true",
                        help="only the BatchNorm cells (halves the grid)")
    parser.add_argument("--skip", nargs="+", choices=ANALYSES, default=[],
                        help="analyses to leave out")
    parser.add_argument("--export-base", metavar="EXPORT_BASE",
                        help="also export the finished cell with the lowest test error as a "
                             "verified TF Serving SavedModel EXPORT_BASE/NAME/VERSION "
                             "(see reskeras export)")
    parser.add_argument("--export-name", metavar="NAME",
                        help="model name under --export-base (default: reskeras-study-DATASET)")
    parser.add_argument("--strategy", choices=("auto", "cpu", "gpu", "mirrored", "multiworker",
                                               "tpu"), help="where the cells train")
    parser.add_argument("--judge-again", action="store_true",
                        help="judge the finished study in --out again with this version's "
                             "rules: no training, no measurement; the previous verdict and "
                             "report are kept under --out/judgments/")


def run_study(args: argparse.Namespace) -> int:
    from reskeras.study.run import StudyConfig, run_study as run

    if args.judge_again:
        return _judge_again(args)
    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be a positive integer. Received: seeds={args.seeds}")
    if args.first_seed < 0:
        raise UsageError(f"--first-seed must be a non-negative integer. "
                         f"Received: first_seed={args.first_seed}")
    if args.epochs is not None and args.steps is not None:
        raise UsageError("--epochs and --steps exclude each other. "
                         f"Received: epochs={args.epochs}, steps={args.steps}")
    overrides = {"dataset": args.dataset, "data_dir": args.data_dir,
                 "image_size": args.image_size, "batch_size": args.batch_size,
                 "depths": tuple(args.depths) if args.depths else None,
                 "seeds": tuple(range(args.seeds)) if args.seeds else None,
                 "epochs": args.epochs, "steps": args.steps, "strategy": args.strategy,
                 "max_doublings": args.max_doublings, "recipe": args.recipe,
                 "compare_recipes": () if args.recipe else None,
                 "batch_norm": (True,) if args.no_bn_cells else None,
                 "interventions": None if args.interventions is None
                 else tuple(dict.fromkeys(args.interventions)),
                 "sweep_depths": None if args.sweep_depths is None
                 else tuple(dict.fromkeys(args.sweep_depths)),
                 "analyses": tuple(a for a in ANALYSES if a not in args.skip)}
    if args.first_seed:
        overrides.update(_shifted_seeds(PRESETS[args.preset], args.seeds, args.first_seed))
    config = StudyConfig.from_preset(args.preset, args.out or f"study-{args.preset}",
                                     **overrides)
    export_name = _check_export(args, config)
    results = run(config, log=lambda *a, **k: print(*a, **k))
    verdict = results["verdict"]
    print(f"\n{verdict['answer']}\n")
    print(f"report: {config.out}/report.html  (also report.md, figures/, summary.csv, "
          f"verdict.json; {results['seconds']:.0f} s)")
    if export_name:
        _export_best(results, config, args.export_base, export_name)
    sys.stdout.flush()
    return 0


def _judge_again(args: argparse.Namespace) -> int:
    from reskeras.study.run import judge_again

    if args.out is None:
        raise UsageError("--judge-again needs --out, the study to judge. Received: out=None")
    results = judge_again(args.out, log=lambda *a, **k: print(*a, **k))
    print(f"\n{results['verdict']['answer']}\n")
    print(f"report: {args.out}/report.html  (also report.md, figures/, verdict.json)")
    return 0


def _shifted_seeds(preset: dict, count: int | None, first: int) -> dict:
    """The preset's seed sets (or ``count`` seeds of everything) shifted by ``first``; the
    held-out seeds of the rate sweeps shift with them (100-102 become 200-202 for
    ``--first-seed 100``), so they never meet the seeds the verdict reads."""
    shifted = {key: tuple(seed + first for seed in (range(count) if count else preset[key]))
               for key in ("seeds", "deep_seeds", "intervention_seeds")}
    shifted["sweep_seeds"] = tuple(seed + first for seed in preset["sweep_seeds"])
    task = dict(preset["identity_task"])
    task["seeds"] = tuple(seed + first for seed in task["seeds"])
    return {**shifted, "identity_task": task}


def _check_export(args: argparse.Namespace, config) -> str | None:
    """The export name, checked (with the base) before any training; None without --export-base."""
    if args.export_base is None:
        if args.export_name is not None:
            raise UsageError("--export-name needs --export-base. "
                             f"Received: export_name={args.export_name!r}")
        return None
    from export.layout import check_base_writable, check_name
    from reskeras.data import dataset_slug

    name = args.export_name or f"reskeras-study-{dataset_slug(config.dataset)}"
    check_name(name)
    check_base_writable(args.export_base)
    return name


def best_cell(results: dict) -> dict:
    """The finished cell with the lowest final test error (ties: the shallower, then the name)."""
    finished = [c for c in results["cells"]
                if c["status"] == "finished" and c.get("final_test_error") is not None]
    if not finished:
        raise ValueError("`--export-base` needs a finished cell to export. Received: no cell "
                         "of the study finished")
    return min(finished, key=lambda c: (c["final_test_error"], c["depth"], c["name"]))


def _export_best(results: dict, config, base: str, name: str):
    import os

    from export import export_savedmodel

    cell = best_cell(results)
    run_dir = os.path.join(config.out, cell["run_dir"])
    exported = export_savedmodel(run_dir, base, name,
                                 metadata={"study": config.out, "cell": cell["name"],
                                           "final_test_error": cell["final_test_error"]})
    print(f"exported {cell['name']} (test error {cell['final_test_error']:.1%}): "
          f"{exported.path}")
    return exported
