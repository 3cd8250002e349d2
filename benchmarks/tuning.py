"""Tuners against each other; 1 worker against chief + 2 workers (python benchmarks/tuning.py).

Part 1, search quality for the budget: depth {8, 14, 20} x width {4, 8, 16} CIFAR ResNets on
the digits data (Adam, batch 128, no XLA), 3 epochs per configuration.

- ``grid``: GridSearch over all 9 configurations (27 epochs): the reference best;
- ``hyperband``: Hyperband(max_epochs=3, factor=3), 6 trials = one Hyperband iteration
  (3 trials of 1 epoch, the best continued for 2 more, then 2 trials of 3 epochs: 11 epochs);
- ``random``: RandomSearch, 4 trials of 3 epochs (12 epochs, the nearest to Hyperband's 11).

Hyperband and random search run with ``--seeds`` oracle seeds (the trainer's seed is fixed, so
a configuration trained for 3 epochs scores the same in every search); the table gives the
median over seeds of the best score, of the epochs trained and of the wall time, and their
ratios to the exhaustive grid.

Part 2, wall time of one search (random, ``--dist-trials`` trials of 2 epochs) run by one
process against a chief and two workers on 127.0.0.1 (``reskeras tune --chief`` /
``--worker``), each from process start to exit (TensorFlow start-up included), in
``--dist-repeats`` interleaved repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# This file is named like the package it measures: take benchmarks/ off the import path
# (Python puts the script's folder first) and put the repository root there instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path
                                          if os.path.abspath(p or ".") != _HERE]

import reskeras  # noqa: E402,F401  (first: it turns on oneDNN)

from tuning.distributed import free_port  # noqa: E402
from tuning.search import SearchConfig, run_search  # noqa: E402

DEPTHS, WIDTHS = (8, 14, 20), (4, 8, 16)


def search(out: str, tuner: str, max_trials: int, seed: int, max_epochs: int) -> dict:
    started = time.perf_counter()
    board = run_search(SearchConfig(out=out, tuner=tuner, max_trials=max_trials,
                                    max_epochs=max_epochs, depths=DEPTHS, widths=WIDTHS,
                                    jit_compile=False, seed=seed), display=False, figure=False)
    seconds = time.perf_counter() - started
    done = [t for t in board["trials"] if t["status"] == "COMPLETED"]
    epochs = 0
    for entry in done:
        with open(os.path.join(out, entry["run_dir"], "metrics.jsonl")) as handle:
            epochs += len(handle.read().splitlines())
    best = done[0]
    return {"best": best["score"], "config": (best["arch"]["depths"], best["arch"]["widths"][0]),
            "trials": len(board["trials"]), "epochs": epochs, "seconds": seconds}


def _command(out: str, trials: int, *role: str) -> list[str]:
    return [sys.executable, "-m", "tuning", "--dataset", "digits", "--tuner", "random",
            "--max-trials", str(trials), "--max-epochs", "2", "--depths", *map(str, DEPTHS),
            "--widths", *map(str, WIDTHS), "--no-xla", "--seed", "1", "--out", out, *role]


def one_worker(out: str, trials: int) -> float:
    started = time.perf_counter()
    subprocess.run(_command(out, trials), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def chief_and_two_workers(out: str, trials: int) -> float:
    address = f"127.0.0.1:{free_port()}"
    started = time.perf_counter()
    processes = [subprocess.Popen(_command(out, trials, "--chief", "--oracle-address", address),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    processes += [subprocess.Popen(_command(out, trials, "--worker", str(i), "--oracle-address",
                                            address),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for i in (1, 2)]
    codes = [p.wait() for p in processes]
    if any(codes):
        raise RuntimeError(f"distributed search failed: exit codes {codes}")
    seconds = time.perf_counter() - started
    with open(os.path.join(out, "leaderboard.json")) as handle:
        board = json.load(handle)
    assert sum(t["status"] == "COMPLETED" for t in board["trials"]) == trials
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dist-trials", type=int, default=6)
    parser.add_argument("--dist-repeats", type=int, default=1)
    parser.add_argument("--skip-distributed", action="store_true")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="reskeras-bench-tuning-")
    plans = [("grid", 9, [0])] + [(name, trials, list(range(args.seeds)))
                                  for name, trials in (("hyperband", 6), ("random", 4))]
    results = {name: [] for name, _, _ in plans}
    for seed in range(args.seeds):  # interleaved: grid once, then each tuner per seed
        for name, trials, seeds in plans:
            if seed in seeds:
                out = os.path.join(root, f"{name}-{seed}")
                results[name].append(search(out, name, trials, seed, max_epochs=3))
                print(f"{name} seed {seed}: {results[name][-1]}", flush=True)
    grid = results["grid"][0]
    print("\n| tuner | trials | epochs trained (median) | best val_accuracy (median) "
          "| best / grid best | epochs / grid epochs | wall s (median) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, _, _ in plans:
        runs = results[name]
        best = statistics.median(r["best"] for r in runs)
        epochs = statistics.median(r["epochs"] for r in runs)
        seconds = statistics.median(r["seconds"] for r in runs)
        print(f"| {name} ({len(runs)} seed{'s' if len(runs) > 1 else ''}) "
              f"| {runs[0]['trials']} | {epochs:g} | {best:.4f} | {best / grid['best']:.3f} "
              f"| {epochs / grid['epochs']:.2f} | {seconds:.1f} |")
    print(f"\ngrid best: depth-per-stage {grid['config'][0]}, width {grid['config'][1]}; "
          f"per seed: " + "; ".join(f"{name} " + ", ".join(f"{r['best']:.4f}"
                                                          for r in results[name])
                                    for name in ("hyperband", "random")))
    if args.skip_distributed:
        return
    single, spread = [], []
    for repeat in range(args.dist_repeats):
        single.append(one_worker(os.path.join(root, f"one-{repeat}"), args.dist_trials))
        spread.append(chief_and_two_workers(os.path.join(root, f"dist-{repeat}"),
                                            args.dist_trials))
        print(f"repeat {repeat}: 1 worker {single[-1]:.1f} s, chief + 2 workers "
              f"{spread[-1]:.1f} s", flush=True)
    one, two = statistics.median(single), statistics.median(spread)
    print(f"\n| setup ({args.dist_trials} random trials x 2 epochs) | wall s (median of "
          f"{args.dist_repeats}) | x 1 worker |")
    print("| --- | ---: | ---: |")
    print(f"| 1 worker (one process) | {one:.1f} | 1.00 |")
    print(f"| chief + 2 workers, 127.0.0.1 | {two:.1f} | {two / one:.2f} |")
    print(f"\nscratch directory: {root}")


if __name__ == "__main__":
    main()
