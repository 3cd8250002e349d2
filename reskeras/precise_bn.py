"""Precise BatchNorm statistics: population statistics recomputed with the final weights.

During training each BatchNorm layer normalizes with the statistics of the batch at hand
and keeps exponential moving averages (EMA) of them for inference. The averages lag: they
mix statistics of weights from many steps ago, and in a deep net each layer's lag shifts
the inputs of every layer after it. Wu & Johnson (2021, *Rethinking "Batch" in
BatchNorm*, §3) recompute the statistics after training instead ("precise BN", the
PreciseBN hook of pycls and detectron2): with the final weights frozen, run training-mode
forward passes over batches drawn the way training draws them and average each layer's
per-batch mean and variance.

Here, as there, a layer's population mean is the equal-weight average of its per-batch
means and its population variance the average of its per-batch (biased) variances: the
quantities training-mode BN computes and the moving averages estimate, without the lag.
Every layer's inputs come from training-mode passes, so layer ``k`` sees what it saw in
training: inputs normalized by the batch statistics of the layers before it. Nothing is
assigned until :func:`assign_statistics`; :func:`population_statistics` and
:func:`batch_mode_predictions` run under a ``keras.StatelessScope``, so no variable of the
model changes (the moving-average updates of the training-mode passes are discarded).

Example:

>>> import numpy as np
>>> from reskeras import build_plain
>>> model = build_plain(8, input_shape=(8, 8, 1), classes=10)
>>> batches = [np.random.default_rng(i).normal(size=(16, 8, 8, 1)).astype("float32")
...            for i in range(3)]
>>> statistics = population_statistics(model, batches)
>>> sorted(statistics)[:2], statistics["stem_bn"][0].shape
(['stage1_block1_bn1', 'stage1_block1_bn2'], (16,))
>>> float(model.get_layer("stem_bn").moving_variance.numpy().mean())  # unchanged
1.0
>>> assign_statistics(model, statistics)
>>> bool(np.allclose(model.get_layer("stem_bn").moving_mean.numpy(), statistics["stem_bn"][0]))
True
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Iterable

import numpy as np
import tensorflow as tf

from reskeras._backend import keras

MAX_BATCHES = 200  # detectron2's PreciseBN default; a dataset with fewer batches is covered once


def batch_norm_layers(model: keras.Model) -> list:
    """The model's BatchNormalization layers, in the order the model holds them."""
    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def default_batches(steps_per_epoch: int) -> int:
    """How many batches precise statistics average by default: one epoch, at most 200.

    >>> default_batches(11), default_batches(5004)
    (11, 200)
    """
    return min(int(steps_per_epoch), MAX_BATCHES)


def training_batches(data, batch_size: int, *, seed: int, epoch: int, count: int,
                     augment: bool = True):
    """``count`` image batches drawn as training draws them, from epoch ``epoch`` on.

    Batches come from ``data.train(batch_size, seed=seed, epoch=e, augment=augment)`` for
    ``e = epoch, epoch + 1, ...`` (shuffled, augmented, full batches only), so they are the
    batches the next epochs of the run would train on.
    """
    def images():
        for index in itertools.count(epoch):
            for batch_images, _ in data.train(batch_size, seed=seed, epoch=index,
                                              augment=augment):
                yield batch_images

    return itertools.islice(images(), count)


def moments_function(model: keras.Model):
    """A traced ``images -> [(mean, variance)]`` of every BatchNorm layer's input.

    In training mode with no variable changing; ``None`` for a model without
    BatchNorm. :func:`population_statistics` makes one per call unless given one
    (a caller that measures the same model again keeps it: tracing a 56-layer net
    costs seconds).
    """
    layers = batch_norm_layers(model)
    if not layers:
        return None
    inputs = keras.Model(model.inputs, [layer.input for layer in layers])

    @tf.function(reduce_retracing=True)
    def moments(images):
        with keras.StatelessScope():  # discards the moving-average updates of training mode
            outputs = inputs(images, training=True)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        found = []
        for layer, output in zip(layers, outputs):
            axes = [a for a in range(len(output.shape)) if a != layer.axis % len(output.shape)]
            mean, variance = tf.nn.moments(tf.cast(output, tf.float32), axes=axes)
            found.append((mean, variance))
        return found

    return moments


def population_statistics(model: keras.Model, batches: Iterable, *,
                          moments=None) -> dict[str, tuple]:
    """Each BatchNorm layer's population mean and variance over ``batches``.

    Args:
        model: a functional Keras model; no variable of it changes.
        batches: image batches (arrays or tensors), e.g. :func:`training_batches`.
        moments: :func:`moments_function` of ``model``, when the caller keeps one.

    Returns:
        ``{layer name: (mean, variance)}`` as float32 arrays of the layer's
        channels; ``{}`` for a model without BatchNorm.

    Raises:
        ValueError: ``batches`` is empty.
    """
    layers = batch_norm_layers(model)
    if not layers:
        return {}
    moments = moments or moments_function(model)
    sums = [[0.0, 0.0] for _ in layers]
    count = 0
    for images in batches:
        for total, (mean, variance) in zip(sums, moments(tf.convert_to_tensor(images))):
            total[0] += mean.numpy().astype(np.float64)
            total[1] += variance.numpy().astype(np.float64)
        count += 1
    if not count:
        raise ValueError("`batches` must hold at least one batch of images. Received: none")
    return {layer.name: ((mean / count).astype(np.float32), (variance / count).astype(np.float32))
            for layer, (mean, variance) in zip(layers, sums)}


def moving_statistics(model: keras.Model) -> dict[str, tuple]:
    """The moving mean and variance every BatchNorm layer holds now (copies)."""
    return {layer.name: (np.array(layer.moving_mean.numpy()),
                         np.array(layer.moving_variance.numpy()))
            for layer in batch_norm_layers(model)}


def assign_statistics(model: keras.Model, statistics: dict[str, tuple]) -> None:
    """Sets each named BatchNorm layer's moving mean and variance; nothing else changes.

    Raises:
        ValueError: ``statistics`` does not name exactly the model's BatchNorm layers.
    """
    layers = {layer.name: layer for layer in batch_norm_layers(model)}
    if set(statistics) != set(layers):
        missing = sorted(set(layers) - set(statistics)) or sorted(set(statistics) - set(layers))
        raise ValueError("`statistics` must name exactly the model's BatchNorm layers. "
                         f"Received: statistics differing at {missing[:3]}")
    for name, (mean, variance) in statistics.items():
        layers[name].moving_mean.assign(np.asarray(mean, np.float32))
        layers[name].moving_variance.assign(np.asarray(variance, np.float32))


@contextlib.contextmanager
def statistics_applied(model: keras.Model, statistics: dict[str, tuple]):
    """Inside the block the model normalizes with ``statistics``; afterwards with its own."""
    kept = moving_statistics(model)
    assign_statistics(model, statistics)
    try:
        yield model
    finally:
        assign_statistics(model, kept)


def batch_mode_predictions(model: keras.Model):
    """A function ``images -> outputs`` of the model in training mode, changing no variable.

    Each batch is normalized with its own statistics (what the optimizer saw), and
    the moving averages stay as they are.
    """
    @tf.function(input_signature=[any_batch(model)])
    def predict(images):
        with keras.StatelessScope():
            return model(images, training=True)

    return predict


def any_batch(model: keras.Model) -> tf.TensorSpec:
    """The spec of a batch of any size for ``model``'s input: one trace serves every batch.

    A split's last, smaller batch would otherwise trace the forward pass a second time
    (``reduce_retracing`` traces the first shape, then a general one): measured, the
    study's five error evaluations of a digits net took 2.6 -> 1.7 s at depth 14 and
    7.7 -> 5.0 s at depth 56 (TF 2.21, CPU).
    """
    spec = model.inputs[0]
    return tf.TensorSpec((None, *spec.shape[1:]), spec.dtype)


__all__ = ["MAX_BATCHES", "any_batch", "assign_statistics", "batch_mode_predictions",
           "batch_norm_layers",
           "default_batches", "moments_function", "moving_statistics", "population_statistics",
           "statistics_applied", "training_batches"]
