"""Where ``model.fit``'s slow calls go: cores busy and garbage collection (run: python benchmarks/cpu_utilization.py).

A short ``model.fit`` call of the same model is sometimes as fast as the
trainer and sometimes much slower on a 2-core machine (docs/benchmarks.md).
This script alternates the two on the same model and batch in one process and
prints, for each whole timed call, images/s, the process CPU time over wall
time (``getrusage``; 2.0 means both cores busy the whole time) and the seconds
Python's garbage collector ran during the call (``gc.callbacks``). Each call
is timed whole, its start and end included, unlike the ``fit`` row of
train_throughput.py (first step to last).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import time

# the variants and input pipeline of the throughput benchmark (this script's folder is on
# sys.path when it runs as ``python benchmarks/cpu_utilization.py``)
from train_throughput import Fit, Reskeras, _pipeline  # noqa: E402  (imports reskeras first)

import tensorflow as tf  # noqa: E402

from reskeras._backend import keras  # noqa: E402


class _GcClock:
    """Seconds spent in Python's garbage collector while installed in ``gc.callbacks``."""

    def __init__(self):
        self.seconds, self._start = 0.0, None

    def __call__(self, phase, info):
        if phase == "start":
            self._start = time.perf_counter()
        elif self._start is not None:
            self.seconds += time.perf_counter() - self._start


def _timed(variant, images):
    """Images/s, cores busy and garbage-collector seconds of one whole call."""
    variant.run()  # warm-up (and tracing on the first round)
    clock = _GcClock()
    gc.callbacks.append(clock)
    try:
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        variant.run()
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        gc.callbacks.remove(clock)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return images / wall, cpu / wall, clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6, help="train steps per timed call")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    args.image_size, args.precision = 32, "float32"  # what train_throughput's variants read

    data = _pipeline(args)
    variants = {"reskeras": Reskeras(args.model, args, data, jit_compile=False),
                "fit": Fit(args.model, args, data)}
    print(f"{'round':>5} {'variant':<9} {'images/s':>9} {'cores busy':>11} {'gc s':>6}")
    for round_ in range(1, args.rounds + 1):
        for name, variant in variants.items():
            rate, cores, collecting = _timed(variant, args.batch_size * args.steps)
            print(f"{round_:>5} {name:<9} {rate:>9.1f} {cores:>11.2f} {collecting:>6.2f}")
    print(f"({args.model}, batch {args.batch_size}, 32x32x3 through the trainer's CIFAR "
          f"pipeline, {args.steps} steps per call, {os.cpu_count()} CPUs, TF {tf.__version__}, "
          f"Keras {keras.__version__})")


if __name__ == "__main__":
    main()
