"""Training images/s: the reskeras trainer vs ``model.fit`` vs PyTorch (run: python benchmarks/train_throughput.py).

Each variant trains the same network on the same global batch; the variants are
timed in interleaved rounds (round-robin, after warm-up calls that compile), so
machine noise hits every row alike, and the table gives medians and ratios.

- ``reskeras-graph`` and ``reskeras-xla``: the trainer's own step functions
  (``reskeras.steps``) without and with XLA, ``--steps`` steps per
  ``tf.function`` call, fed by the trainer's input pipeline (``reskeras.data``:
  CIFAR pad/crop/flip, mean subtraction), paper recipe (SGD momentum, L2 on
  kernels). The table marks the one the trainer's default
  ``jit_compile="auto"`` picks for this device and size.
- ``fit``: the same Keras model under ``model.compile(SGD momentum)`` and
  ``model.fit`` (Keras's default ``jit_compile="auto"``) on the same pipeline,
  timed from its first step to its last (see ``Fit``).
- ``bound``: the least work of a training step (forward, backward, an SGD
  momentum update of two ops per variable) on one constant batch: the most any
  training loop can reach with this model's kernels (see ``Bound``).
- ``fit-stock``: what a Keras user runs today: the same architecture with
  ``keras.layers.BatchNormalization`` under ``model.fit``, in a worker process
  that keeps TensorFlow's default CPU kernels (``TF_ENABLE_ONEDNN_OPTS=0``, the
  default on CPUs without AVX-512 VNNI; ``import reskeras`` turns oneDNN on).
  The main process tells the worker when to run, so it is timed in the same
  interleaved rounds; skipped with ``--no-stock``.
- ``torch``: the same CIFAR network written in PyTorch, eager, channels-last,
  SGD momentum with weight decay, on batches already in memory (only when torch
  is installed: ``pip install -e ".[torch]"``; never a reskeras dependency).
- ``pipeline``: the input pipeline alone (images/s it can keep up; see ``Pipeline``).

``--compare-padding`` times only the trainer's default step with reference
(symmetric) and TensorFlow "same" padding, interleaved, for docs/benchmarks.md.

GPU example: ``python benchmarks/train_throughput.py --models resnet50 --image-size 224
--precision mixed_bfloat16 --batch-size 256 --no-torch``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from reskeras import build_model, get_spec  # noqa: E402  (first: it turns on oneDNN)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from reskeras._backend import keras  # noqa: E402
from reskeras.data import load_dataset  # noqa: E402
from reskeras.recipes import make_optimizer, make_plan  # noqa: E402
from reskeras.steps import StepFunctions  # noqa: E402

CLASSES = 10


def _pipeline(args):
    data = load_dataset("synthetic", synthetic_shape=(args.image_size, args.image_size, 3),
                        synthetic_classes=CLASSES,
                        synthetic_examples=args.batch_size * args.steps * 2)
    return data.with_augmentation("pad_crop_flip", pad=max(1, args.image_size // 8))


def _batches(data, batch_size):
    return data.train(batch_size, seed=0, epoch=0).repeat()


def _model(name, args, padding=None):
    keras.mixed_precision.set_dtype_policy(args.precision)
    try:
        return build_model(name, input_shape=(args.image_size, args.image_size, 3),
                           classes=CLASSES, padding=padding)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


class Reskeras:
    def __init__(self, name, args, data, jit_compile="auto", padding=None):
        self.steps = args.steps
        self.model = _model(name, args, padding)
        plan = make_plan("paper", global_batch_size=args.batch_size, total_steps=10**6,
                         steps_per_epoch=10**4)
        optimizer = make_optimizer(plan)
        optimizer.build(self.model.trainable_variables)
        self.functions = StepFunctions(self.model, optimizer, tf.distribute.get_strategy(),
                                       global_batch_size=args.batch_size,
                                       weight_decay=plan.weight_decay, jit_compile=jit_compile)
        self.iterator = iter(_batches(data, args.batch_size))

    def run(self):
        losses, _ = self.functions.train_chunk(self.iterator, tf.constant(self.steps))
        losses.numpy()


def _constant_batch(args):
    """One random batch ``(images float32 NHWC, labels int64)``, the same in every variant."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.batch_size, args.image_size, args.image_size, 3),
                                 dtype=np.float32)
    return images, rng.integers(0, CLASSES, args.batch_size)


class Bound:
    """The least work of a training step, on one constant batch, ``--steps`` per call.

    Forward, backward and an SGD-momentum update written as two TensorFlow ops
    per variable: no input pipeline, no Keras optimizer, no loss scaling, no
    metrics, no checks. Its images/s bound what any training loop (the
    trainer's, ``fit``'s) can reach with this model's kernels on this machine.
    Without the update the loop would not be a bound: nothing would tie a step
    to the previous one, and TensorFlow would overlap consecutive steps.
    """

    def __init__(self, name, args):
        self.steps = args.steps
        self.model = _model(name, args)
        images, labels = (tf.constant(a) for a in _constant_batch(args))
        variables = [v.value for v in self.model.trainable_variables]
        momenta = [tf.Variable(tf.zeros_like(v)) for v in variables]

        @tf.function
        def chunk(steps):
            loss = tf.constant(0.0)
            for _ in tf.range(steps):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                        labels, self.model(images, training=True)))
                for v, m, g in zip(variables, momenta, tape.gradient(loss, variables)):
                    v.assign_add(m.assign(0.9 * m - 0.1 * g))
            return loss

        self.chunk = chunk

    def run(self):
        self.chunk(tf.constant(self.steps)).numpy()


class _StepClock(keras.callbacks.Callback):
    """Start of ``fit``'s first step to the end of its last one."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.end = time.perf_counter()


class Fit:
    """``model.fit``, timed from its first step to its last, as inside a long epoch.

    Each timed call is a new ``fit`` of ``--steps`` steps. What a call adds
    before its first step and after its last (a new epoch iterator, callbacks,
    and in many calls a pause of 0.5-2.5 s while the unfinished iterator waits
    for tf.data's autotuner: docs/benchmarks.md) is paid at most once per epoch
    in real training, so it is left out. The steps' own Python dispatch and
    callback hooks stay in.
    """

    def __init__(self, name, args, data, model=None):
        self.steps = args.steps
        self.model = _model(name, args) if model is None else model
        self.model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                           loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        self.dataset = _batches(data, args.batch_size)
        self.clock = _StepClock()

    def run(self):
        """Returns the seconds from the first step's start to the last step's end."""
        self.model.fit(self.dataset, epochs=1, steps_per_epoch=self.steps, verbose=0,
                       callbacks=[self.clock])
        return self.clock.end - self.clock.start


def _stock_keras_model(name, args):
    """The same architecture with Keras's own BatchNormalization layers."""
    from reskeras.layers import FusedBatchNormalization

    def clone(layer):
        cls = (keras.layers.BatchNormalization if isinstance(layer, FusedBatchNormalization)
               else type(layer))
        return cls.from_config(layer.get_config())

    model = keras.models.clone_model(_model(name, args), clone_function=clone)
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in model.layers)
    return model


class StockFit:
    """``fit`` on the stock-Keras model, run by a worker process (see the module doc)."""

    def __init__(self, name, args):
        self.steps = args.steps
        argv = [sys.executable, __file__, "--stock-worker", name, "--steps", str(args.steps),
                "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
                "--precision", args.precision]
        self.worker = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True, env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"})
        self._call("ready")

    def _call(self, command):
        self.worker.stdin.write(command + "\n")
        self.worker.stdin.flush()
        reply = self.worker.stdout.readline()
        if not reply:
            raise RuntimeError("the fit-stock worker exited; run it alone to see why: "
                               + " ".join(self.worker.args))
        return reply

    def run(self):
        """Returns the worker's own ``Fit.run`` time (without the pipe round trip)."""
        return float(self._call("run"))

    def close(self):
        self.worker.stdin.close()
        self.worker.wait()


def _stock_worker(args):
    """The worker's loop: builds the stock model, then one ``fit`` per "run" line."""
    data = _pipeline(args)
    fit = Fit(args.stock_worker, args, data, model=_stock_keras_model(args.stock_worker, args))
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "run":
            print(fit.run(), flush=True)


class Pipeline:
    """The input pipeline alone, at the rate it can keep up.

    Each call drains 50x ``--steps`` batches: a call of only ``--steps``
    batches would mostly read what the prefetch buffer filled while the other
    rows ran, and measured 20x the sustained rate (docs/benchmarks.md).
    """

    def __init__(self, args, data):
        self.steps = 50 * args.steps
        self.iterator = iter(_batches(data, args.batch_size))

    def run(self):
        for _ in range(self.steps):
            images, _ = next(self.iterator)
        images.numpy()


class Torch:
    """The CIFAR ResNet (basic blocks, option-A shortcuts) or plain twin in PyTorch."""

    def __init__(self, name, args):
        import torch
        from torch import nn

        spec = get_spec(name)
        if spec.family != "cifar" or spec.block != "basic" or spec.version != "v1":
            raise ValueError(f"the torch reference covers CIFAR basic-block nets. Received: {name}")
        self.torch, self.steps = torch, args.steps

        class Block(nn.Module):
            def __init__(self, cin, cout, stride, residual):
                super().__init__()
                self.residual, self.stride, self.extra = residual, stride, cout - cin
                self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
                self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)

            def forward(self, x):
                out = torch.relu(self.bn1(self.conv1(x)))
                out = self.bn2(self.conv2(out))
                if self.residual:
                    short = x[:, :, ::self.stride, ::self.stride]
                    if self.extra:
                        half = self.extra // 2
                        short = nn.functional.pad(short, (0, 0, 0, 0, half, self.extra - half))
                    out = out + short
                return torch.relu(out)

        stem = spec.stem_width
        layers = [nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()]
        cin = stem
        for stage, (n, cout) in enumerate(zip(spec.depths, spec.widths)):
            for block in range(n):
                layers.append(Block(cin, cout, 2 if stage and not block else 1, spec.residual))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, CLASSES)]
        self.model = nn.Sequential(*layers).to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9,
                                         weight_decay=1e-4)
        images, labels = _constant_batch(args)
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(
            memory_format=torch.channels_last)
        self.labels = torch.from_numpy(labels)

    def run(self):
        loss_fn = self.torch.nn.functional.cross_entropy
        for _ in range(self.steps):
            self.optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(self.model(self.images), self.labels)
            loss.backward()
            self.optimizer.step()
        loss.item()


def _padding_variants(name, args, data):
    """The trainer's default step with reference vs TensorFlow "same" padding (issue 17)."""
    return {"padding=symmetric": Reskeras(name, args, data, padding="symmetric"),
            "padding=tf_same": Reskeras(name, args, data, padding="tf_same")}


def _compare_padding(args, data) -> None:
    print(f"{'model':<10} {'variant':<22} {'images/s':>9} {'x tf_same':>10}")
    for name in args.models:
        keras.backend.clear_session()
        rates = _measure(_padding_variants(name, args, data), args)
        for key, rate in rates.items():
            print(f"{name:<10} {key:<22} {rate:>9.1f} {rate / rates['padding=tf_same']:>10.3f}")


def _variants(name, args, data):
    auto = Reskeras(name, args, data)
    picked = "reskeras-graph" if auto.functions.xla in ("check", "off") else "reskeras-xla"
    variants = {picked: auto}
    if not args.quick:
        other = "reskeras-xla" if picked == "reskeras-graph" else "reskeras-graph"
        variants[other] = Reskeras(name, args, data, jit_compile=other == "reskeras-xla")
    variants["fit"] = Fit(name, args, data)
    variants["bound"] = Bound(name, args)
    if not args.no_stock:
        variants["fit-stock"] = StockFit(name, args)
    if not args.no_torch:
        try:
            variants["torch"] = Torch(name, args)
        except ImportError:
            print("(torch is not installed: no PyTorch row; pip install -e '.[torch]')")
    variants["pipeline"] = Pipeline(args, data)
    return variants


def _measure(variants, args):
    for variant in variants.values():
        for _ in range(args.warmup):
            variant.run()
    seconds = {key: [] for key in variants}
    for _ in range(args.repeats):
        for key, variant in variants.items():
            start = time.perf_counter()
            reported = variant.run()
            elapsed = time.perf_counter() - start
            seconds[key].append(elapsed if reported is None else reported)
    return {key: args.batch_size * variants[key].steps / statistics.median(values)
            for key, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="train steps per timed call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-stock", action="store_true",
                        help="no fit-stock row (stock Keras model, TF default kernels)")
    parser.add_argument("--stock-worker", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="only the variant the trainer picks")
    parser.add_argument("--compare-padding", action="store_true",
                        help="only the trainer's step with symmetric vs tf_same padding")
    args = parser.parse_args()
    if args.stock_worker:
        return _stock_worker(args)

    data = _pipeline(args)
    if args.compare_padding:
        _compare_padding(args, data)
        return _footer(args)
    print(f"{'model':<10} {'variant':<22} {'images/s':>9} {'x fit':>7} {'x stock':>8}")
    for name in args.models:
        keras.backend.clear_session()
        variants = _variants(name, args, data)
        picked = next(iter(variants))
        try:
            rates = _measure(variants, args)
        finally:
            for variant in variants.values():
                getattr(variant, "close", lambda: None)()
        for key, rate in rates.items():
            ratio = "" if key == "pipeline" else f"{rate / rates['fit']:>7.2f}"
            stock = ("" if key == "pipeline" or "fit-stock" not in rates
                     else f"{rate / rates['fit-stock']:>8.2f}")
            mark = " (auto)" if key == picked else ""
            print(f"{name:<10} {key + mark:<22} {rate:>9.1f} {ratio:>7} {stock:>8}")
        print(f"{name:<10} {'pipeline/model':<22} {rates['pipeline'] / rates[picked]:>9.1f}")
    _footer(args)


def _footer(args) -> None:
    devices = ", ".join(d.device_type for d in tf.config.list_logical_devices())
    print(f"(batch {args.batch_size}, {args.image_size}x{args.image_size}x3, {args.precision}, "
          f"{args.steps} steps per call, median of {args.repeats} interleaved repeats; "
          f"TF {tf.__version__}, Keras {keras.__version__}, devices: {devices}, "
          f"{os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
