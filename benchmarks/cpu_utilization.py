"""Cores kept busy: the reskeras trainer vs ``model.fit`` (run: python benchmarks/cpu_utilization.py).

``model.fit`` of the same model is sometimes as fast as the trainer and sometimes
about 25% slower on a 2-core machine (docs/benchmarks.md). This script shows why:
it alternates the two on the same model and batch in one process and prints, for
each timed call, images/s and the process CPU time over wall time (``getrusage``):
2.0 means both cores busy the whole time.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from reskeras import build_model  # noqa: E402  (first: it turns on oneDNN)

import tensorflow as tf  # noqa: E402

from reskeras._backend import keras  # noqa: E402
from reskeras.recipes import make_optimizer, make_plan  # noqa: E402
from reskeras.steps import StepFunctions  # noqa: E402


def _timed(run, images):
    run()  # warm-up (and tracing on the first round)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return images / wall, cpu / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6, help="train steps per timed call")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    images = tf.random.normal((args.batch_size, 32, 32, 3))
    labels = tf.random.uniform((args.batch_size,), 0, 10, tf.int64)
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()

    model = build_model(args.model, input_shape=(32, 32, 3), classes=10)
    plan = make_plan("paper", global_batch_size=args.batch_size, total_steps=10**6,
                     steps_per_epoch=10**4)
    optimizer = make_optimizer(plan)
    optimizer.build(model.trainable_variables)
    steps = StepFunctions(model, optimizer, tf.distribute.get_strategy(),
                          global_batch_size=args.batch_size, weight_decay=plan.weight_decay,
                          jit_compile=False)
    iterator = iter(dataset)

    fit_model = build_model(args.model, input_shape=(32, 32, 3), classes=10)
    fit_model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    variants = {
        "reskeras": lambda: steps.train_chunk(iterator, tf.constant(args.steps))[0].numpy(),
        "fit": lambda: fit_model.fit(dataset, epochs=1, steps_per_epoch=args.steps, verbose=0),
    }
    print(f"{'round':>5} {'variant':<9} {'images/s':>9} {'cores busy':>11}")
    for round_ in range(1, args.rounds + 1):
        for name, run in variants.items():
            rate, cores = _timed(run, args.batch_size * args.steps)
            print(f"{round_:>5} {name:<9} {rate:>9.1f} {cores:>11.2f}")
    print(f"({args.model}, batch {args.batch_size}, 32x32x3, {args.steps} steps per call, "
          f"{os.cpu_count()} CPUs, TF {tf.__version__}, Keras {keras.__version__})")


if __name__ == "__main__":
    main()
