"""Per-epoch evaluation: ms per pass over a test split (run: python benchmarks/evaluation.py).

The trainer evaluates the test split after every epoch. On the digits (360
test images) an epoch trains 11 steps, so what one evaluation costs around the
model matters as much as the model. Rows, timed in interleaved rounds (medians):

- ``forward``: the model alone on the split's batches already in memory, one
  traced call per batch, batch after batch: the least an evaluation can cost
  (one traced call over all batches would run several at once).
- ``evaluate``: what the trainer runs, ``StepFunctions.evaluate`` over an
  iterator of ``ImageData.evaluation`` (one gather and normalize per batch)
  made outside the traced function.
- ``dataset argument``: the same traced loop handed the dataset itself
  (``for batch in dataset`` inside ``tf.function``, the trainer before this
  benchmark): the graph builds a new iterator on every call.
- ``pipeline``: ``ImageData.evaluation`` alone, iterated eagerly.
- ``per-example pipeline``: the usual tf.data pattern (gather and normalize
  one example per ``map`` call, then ``batch``), the trainer's pipeline before.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from reskeras import build_model  # noqa: E402  (first: it turns on oneDNN)

import tensorflow as tf  # noqa: E402

from reskeras._backend import keras  # noqa: E402
from reskeras.data import load_dataset  # noqa: E402
from reskeras.preprocessing import normalize  # noqa: E402
from reskeras.steps import StepFunctions  # noqa: E402


def _per_example_pipeline(data, batch_size):
    images, labels = (tf.constant(a) for a in data.arrays("test"))
    shape, pre = data.info.input_shape, data.info.preprocessing
    ds = tf.data.Dataset.range(len(labels)).map(
        lambda i: (normalize(tf.ensure_shape(tf.gather(images, i), shape), pre),
                   tf.cast(tf.gather(labels, i), tf.int32), tf.constant(1.0)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _variants(data, model_name, batch_size):
    strategy = tf.distribute.get_strategy()
    model = build_model(model_name, input_shape=data.info.input_shape,
                        classes=data.info.classes)
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    steps = StepFunctions(model, optimizer, strategy, global_batch_size=batch_size)
    evaluation = data.evaluation(batch_size)
    distributed = strategy.experimental_distribute_dataset(evaluation)
    batches = [images for images, _, _ in evaluation]
    forward = tf.function(lambda images: model(images, training=False))
    dataset_argument = tf.function(lambda dataset: steps._evaluate(dataset))
    per_example = _per_example_pipeline(data, batch_size)
    return {
        "forward": lambda: [forward(images).numpy() for images in batches],
        "evaluate": lambda: [t.numpy() for t in steps.evaluate(iter(distributed))],
        "dataset argument": lambda: [t.numpy() for t in dataset_argument(distributed)],
        "pipeline": lambda: [b for b in evaluation],
        "per-example pipeline": lambda: [b for b in per_example],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--synthetic-examples", type=int, default=8192,
                        help="training examples of the 32x32 row (its test split: a quarter)")
    args = parser.parse_args()
    datasets = {"digits": load_dataset("digits"),
                "synthetic 32x32": load_dataset("synthetic",
                                                synthetic_examples=args.synthetic_examples)}
    print(f"{'data':<16} {'test images':>11} {'variant':<22} {'ms':>8} {'x forward':>10}")
    for label, data in datasets.items():
        keras.backend.clear_session()
        variants = _variants(data, args.model, args.batch_size)
        for run in variants.values():
            run()
            run()
        seconds = {key: [] for key in variants}
        for _ in range(args.repeats):
            for key, run in variants.items():
                start = time.perf_counter()
                run()
                seconds[key].append(time.perf_counter() - start)
        medians = {key: statistics.median(values) for key, values in seconds.items()}
        for key, median in medians.items():
            print(f"{label:<16} {data.info.test_examples:>11} {key:<22} {1000 * median:>8.1f} "
                  f"{median / medians['forward']:>10.2f}")
    print(f"({args.model}, batch {args.batch_size}, median of {args.repeats} interleaved "
          f"repeats; TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
