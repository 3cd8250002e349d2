"""Cost of GradientNormLogger in the reskeras trainer (run: python benchmarks/grad_norm_overhead.py).

Three copies of the same network train side by side, timed in interleaved
rounds of ``--steps`` optimizer steps (median of ``--repeats``):

- ``none``: the trainer's step functions, ``--steps`` steps per compiled call;
- ``every-N``: with ``GradientNormLogger(every_n_steps=N)`` (default 100), the
  call split where the trainer splits it (right after each recorded step);
- ``every-1``: a record after every step, so one compiled call per step.

The loop below is the trainer's: ``StepFunctions.train_chunk`` plus the
callbacks' ``record_boundary``/``on_train_batch_end``, over the trainer's
input pipeline (CIFAR augmentation on 32x32x3 generated images).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from reskeras import build_model  # noqa: E402  (first: it turns on oneDNN)

import tensorflow as tf  # noqa: E402

from reskeras.callbacks import GradientNormLogger  # noqa: E402
from reskeras.data import load_dataset  # noqa: E402
from reskeras.recipes import make_optimizer, make_plan  # noqa: E402
from reskeras.steps import StepFunctions  # noqa: E402


class Loop:
    def __init__(self, model_name, args, data, every):
        self.model = build_model(model_name, input_shape=(32, 32, 3), classes=10)
        plan = make_plan("paper", global_batch_size=args.batch_size, total_steps=10**6,
                         steps_per_epoch=10**4)
        optimizer = make_optimizer(plan)
        optimizer.build(self.model.trainable_variables)
        self.model.optimizer = optimizer
        self.functions = StepFunctions(self.model, optimizer, tf.distribute.get_strategy(),
                                       global_batch_size=args.batch_size,
                                       weight_decay=plan.weight_decay)
        self.iterator = iter(data.train(args.batch_size, seed=0, epoch=0).repeat())
        self.logger = None
        if every:
            self.logger = GradientNormLogger(every_n_steps=every)
            self.logger.set_model(self.model)
            self.logger.set_params({})
            self.logger.on_train_begin()
        self.step, self.steps, self.per_call = 0, args.steps, args.steps_per_execution

    def run(self):
        end = self.step + self.steps
        while self.step < end:
            count = min(self.per_call, end - self.step)
            if self.logger:
                count = min(count, self.logger.record_boundary(self.step) - self.step)
            losses, _ = self.functions.train_chunk(self.iterator, tf.constant(count))
            losses.numpy()
            self.step += count
            if self.logger:
                self.logger.on_train_batch_end(self.step - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="steps per timed round")
    parser.add_argument("--steps-per-execution", type=int, default=8)
    parser.add_argument("--every", type=int, default=100, help="the default interval")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    data = load_dataset("synthetic", synthetic_examples=args.batch_size * args.steps * 2
                        ).with_augmentation("pad_crop_flip")
    loops = {"none": Loop(args.model, args, data, 0),
             f"every-{args.every}": Loop(args.model, args, data, args.every),
             "every-1": Loop(args.model, args, data, 1)}
    for loop in loops.values():
        loop.run()  # compile and warm up
    seconds = {key: [] for key in loops}
    for _ in range(args.repeats):
        for key, loop in loops.items():
            start = time.perf_counter()
            loop.run()
            seconds[key].append(time.perf_counter() - start)
    base = statistics.median(seconds["none"])
    print(f"{'logger':<12} {'median s':>9} {'images/s':>9} {'x none':>7} {'records':>8}")
    for key, loop in loops.items():
        median = statistics.median(seconds[key])
        records = len(loop.logger.history) if loop.logger else 0
        print(f"{key:<12} {median:>9.2f} {args.batch_size * args.steps / median:>9.1f} "
              f"{median / base:>7.3f} {records:>8}")
    print(f"({args.model}, batch {args.batch_size}, 32x32x3, {args.steps} steps per round, "
          f"{args.steps_per_execution} steps per call without records, median of "
          f"{args.repeats} interleaved rounds; TF {tf.__version__}, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
