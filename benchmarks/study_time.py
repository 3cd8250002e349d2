"""Where a study cell's time goes, before and after trace reuse (python benchmarks/study_time.py).

A fixed grid of study cells: plain BN nets of depth 8 and 56 on the digits, 88 and 704
Adam steps at batch 128, seeds 0 and 1 (8 cells), each trained and measured as
``reskeras study`` does it (``reskeras.study.run.train_cell`` then ``cell_results``:
precise BN statistics, gradient-norm and layer-response logging, the three training
errors), in the study's training order (every cell of an architecture in a row).

Each code version runs in its own fresh Python process, one after the other, in one
invocation of this script:

- ``before``: the tree at ``--before`` (default ``b489f80``, reskeras 0.3.0 before this
  change), taken with ``git archive`` into a temporary folder;
- ``after``: this checkout.

Per cell, the same instrument for both: the train step's compiled calls are timed
(``StepFunctions.train_chunk``); a call that traced (its tracing count grew) is
*tracing*, every other one *training*. ``overhead`` is the cell's wall time minus its
training seconds: building, tracing, the per-epoch test pass, logging, checkpoints,
precise BN statistics, saving and the error measurements. GFLOP/s divides the training
FLOPs (3x the forward convolution and dense FLOPs per example: forward, input gradient
and weight gradient; the first conv's input gradient is counted too) by the training
seconds. The machine's reference is ResNet-20 on 32x32x3 images at batch 128, timed the
same way in the same process. Only ratios within one process are compared.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from machine import cpu_model  # benchmarks/machine.py

GRID = [(depth, steps, seed) for depth in (8, 56) for steps in (88, 704) for seed in (0, 1)]
REFERENCE_STEPS = 40
FIRST = {GRID.index((depth, 88, 0)) for depth in (8, 56)}  # the cells that trace, with reuse



# -- the worker: one code version, one process -------------------------------------------
def _timed_steps():
    """Wraps every StepFunctions' train_chunk; returns the list the calls are recorded in."""
    from reskeras import steps as steps_module

    calls = []
    original = steps_module.StepFunctions.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        chunk = self.train_chunk

        def timed(iterator, count):
            before = chunk.experimental_get_tracing_count()
            started = time.perf_counter()
            losses, hits = chunk(iterator, count)
            losses.numpy()
            calls.append((time.perf_counter() - started, int(count),
                          chunk.experimental_get_tracing_count() > before))
            return losses, hits

        self.train_chunk = timed

    steps_module.StepFunctions.__init__ = init
    return calls


def _training_flops(model, batch: int) -> float:
    from reskeras._backend import keras

    flops = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, channels = layer.output.shape
            kernel = layer.kernel.shape
            flops += 2.0 * height * width * channels * kernel[0] * kernel[1] * kernel[2]
        elif isinstance(layer, keras.layers.Dense):
            flops += 2.0 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return 3.0 * flops * batch


def _reference(calls: list) -> dict:
    """ResNet-20 on 32x32x3 at batch 128: training GFLOP/s on this machine, this process."""
    import reskeras
    from reskeras.train import TrainConfig, train

    out = os.path.join(tempfile.mkdtemp(), "resnet20-32x32")
    calls.clear()
    train(TrainConfig(out=out, model="resnet20", dataset="synthetic", synthetic_shape=(32, 32, 3),
                      synthetic_examples=128 * REFERENCE_STEPS, steps=REFERENCE_STEPS,
                      batch_size=128, recipe="adam", verbose=0, grad_norms_every=None,
                      activations_every=None))
    seconds = sum(s for s, _, traced in calls if not traced)
    steps = sum(n for _, n, traced in calls if not traced)
    flops = _training_flops(reskeras.build_resnet(20, input_shape=(32, 32, 3), classes=10), 128)
    return {"gflops": flops * steps / seconds / 1e9, "seconds_per_step": seconds / steps}


def worker(out: str) -> dict:
    calls = _timed_steps()
    import reskeras
    from reskeras.data import load_dataset
    from reskeras.study import run as study_run
    from reskeras.study.cells import Cell
    from reskeras.study.run import StudyConfig, cell_results, train_cell

    reference = _reference(calls)
    data = load_dataset("digits")
    cache = None
    if "trace_cache" in inspect.signature(train_cell).parameters:  # else the version before
        from reskeras.trace_cache import TraceCache
        cache = TraceCache(max_entries=1)
    configs = {steps: StudyConfig.from_preset(
        "quick", os.path.join(out, f"steps{steps}"), depths=(8, 56), batch_norm=(True,),
        seeds=(0, 1), interventions=(), analyses=(), steps=steps) for steps in (88, 704)}
    rows = []
    for depth, steps, seed in GRID:
        config, cell = configs[steps], Cell(False, depth, True, seed)
        calls.clear()
        started = time.perf_counter()
        if cache is not None:
            status, trained = train_cell(config, cell, trace_cache=cache)
            entry = cell_results(config, cell, status, data, trained)
        else:
            status = train_cell(config, cell)
            entry = cell_results(config, cell, status, data)
        seconds = time.perf_counter() - started
        training = sum(s for s, _, traced in calls if not traced)
        trained_steps = sum(n for _, n, traced in calls if not traced)
        flops = _training_flops(reskeras.build_plain(depth, input_shape=(8, 8, 1), classes=10),
                                config.batch_size)
        rows.append({"cell": cell.name, "depth": depth, "steps": steps, "seed": seed,
                     "seconds": seconds, "training": training,
                     "tracing": sum(s for s, _, traced in calls if traced),
                     "overhead": seconds - training,
                     "gflops": flops * trained_steps / training / 1e9,
                     "train_error": entry["final_train_error"]})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    return {"reference": reference, "rows": rows, "peak_rss_gb": peak,
            "version": study_run.__file__}


# -- the driver ------------------------------------------------------------------------
def _run_version(label: str, tree: str | None) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if tree is not None:
        env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
    out = tempfile.mkdtemp(prefix=f"study-time-{label}-")
    result_file = os.path.join(out, "result.json")
    subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", out, result_file],
                   env=env, check=True, cwd=tree or os.getcwd())
    with open(result_file) as handle:
        return json.load(handle)


def _export(ref: str) -> str:
    tree = tempfile.mkdtemp(prefix="study-time-before-")
    archive = subprocess.run(["git", "archive", ref], check=True, capture_output=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
    return tree


def _table(results: dict) -> None:
    labels = list(results)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; grid: plain BN nets, digits 8x8, batch 128, "
          "Adam; seconds per cell")
    print("| cell | steps | " + " | ".join(f"{label}: overhead / training (s)"
                                            for label in labels) + " | overhead ratio |")
    print("|---|---|" + "---|" * len(labels) + "---|")
    for index, (depth, steps, seed) in enumerate(GRID):
        rows = [results[label]["rows"][index] for label in labels]
        ratio = rows[-1]["overhead"] / rows[0]["overhead"]
        print(f"| plain{depth}-s{seed} | {steps} | " + " | ".join(
            f"{r['overhead']:.1f} / {r['training']:.1f}" for r in rows) + f" | {ratio:.2f} |")
    print()
    print("| | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    lines = {
        "median overhead, first cell of each depth (s)":
            lambda rows: statistics.median(r["overhead"] for i, r in enumerate(rows)
                                           if i in FIRST),
        "median overhead, the other 88-step cells (s)":
            lambda rows: statistics.median(r["overhead"] for i, r in enumerate(rows)
                                           if i not in FIRST and r["steps"] == 88),
        "median overhead / training seconds, 88-step plain-56":
            lambda rows: statistics.median(r["overhead"] / r["training"] for r in rows
                                           if r["depth"] == 56 and r["steps"] == 88),
        "median overhead / training seconds, 704-step plain-56":
            lambda rows: statistics.median(r["overhead"] / r["training"] for r in rows
                                           if r["depth"] == 56 and r["steps"] == 704),
        "plain-56 8x8 training GFLOP/s (median)":
            lambda rows: statistics.median(r["gflops"] for r in rows if r["depth"] == 56),
        "plain-8 8x8 training GFLOP/s (median)":
            lambda rows: statistics.median(r["gflops"] for r in rows if r["depth"] == 8),
        "grid wall time (s)": lambda rows: sum(r["seconds"] for r in rows),
    }
    for name, function in lines.items():
        print(f"| {name} | " + " | ".join(f"{function(results[l]['rows']):.2f}"
                                          for l in labels) + " |")
    print("| ResNet-20 32x32 reference GFLOP/s | " + " | ".join(
        f"{results[l]['reference']['gflops']:.1f}" for l in labels) + " |")
    print("| plain-56 8x8 GFLOP/s / reference | " + " | ".join(
        f"{statistics.median(r['gflops'] for r in results[l]['rows'] if r['depth'] == 56) / results[l]['reference']['gflops']:.2f}"
        for l in labels) + " |")
    print("| peak RSS (GB) | " + " | ".join(f"{results[l]['peak_rss_gb']:.2f}" for l in labels)
          + " |")
    same = [a["train_error"] == b["train_error"] for a, b in
            zip(results[labels[0]]["rows"], results[labels[-1]]["rows"])]
    print(f"\nfinal training errors equal in {sum(same)} of {len(same)} cells")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="b489f80",
                        help="git revision measured as 'before' ('none' to skip)")
    parser.add_argument("--worker", nargs=2, metavar=("OUT", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        found = worker(args.worker[0])
        with open(args.worker[1], "w") as handle:
            json.dump(found, handle)
        return
    results = {}
    if args.before != "none":
        results[f"before ({args.before})"] = _run_version("before", _export(args.before))
    results["after"] = _run_version("after", None)
    _table(results)


if __name__ == "__main__":
    main()
