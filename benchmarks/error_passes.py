"""A cell's five error measurements with the forward passes traced once per batch size, against
a trace per input shape (run: python benchmarks/error_passes.py [--depths 14 56] [--repeats 3]).

``reskeras.study.measures.training_error.model_errors`` measures the training error three
ways and the test error two ways. Its traced passes take an input signature with no batch
size (``reskeras.precise_bn.any_batch``); before, they were ``tf.function(...,
reduce_retracing=True)``, which traced each split's last, smaller batch a second time.
Each round builds a fresh plain BN net per variant (the trace is part of what a new cell
pays) and times both variants in turn, so noise hits both alike; the table gives medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import reskeras  # first: it turns on oneDNN
import tensorflow as tf
from reskeras._backend import keras
from reskeras.data import load_dataset
from reskeras.precise_bn import moving_statistics
from reskeras.study.measures.training_error import Predictors, model_errors

from machine import cpu_model  # benchmarks/machine.py


def per_shape(model) -> Predictors:
    """The passes as they were: one trace per input shape (``reduce_retracing``)."""
    found = Predictors.__new__(Predictors)
    found.inference = tf.function(lambda images: model(images, training=False),
                                  reduce_retracing=True)

    @tf.function(reduce_retracing=True)
    def batch_mode(images):
        with keras.StatelessScope():
            return model(images, training=True)

    found.batch_mode = batch_mode
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[14, 56])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    data = load_dataset("digits")
    variants = {"any batch size (now)": Predictors, "per input shape (before)": per_shape}
    print(f"CPU: {cpu_model()}; digits (1,437 train, 360 test images), batch 64 for the "
          f"batch-mode pass, {args.repeats} rounds")
    print("| depth | passes traced | median s | ratio |")
    print("|---:|---|---:|---:|")
    for depth in args.depths:
        times = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, make in variants.items():
                model = reskeras.build_plain(depth, input_shape=(8, 8, 1), classes=10)
                start = time.perf_counter()
                model_errors(model, moving_statistics(model), data, batch_size=64,
                             predictors=make(model))
                times[name].append(time.perf_counter() - start)
                keras.backend.clear_session()
        base = statistics.median(times["per input shape (before)"])
        for name, values in times.items():
            median = statistics.median(values)
            print(f"| {depth} | {name} | {median:.2f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
