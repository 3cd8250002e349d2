"""Training and test error of a trained net, three ways for BatchNorm: EMA, batch, precise.

A BatchNorm net's error depends on the statistics it normalizes with:

- ``ema``: inference mode with the moving averages training kept (momentum 0.9 here),
  as the last checkpoint holds them; they lag the weights, and in a deep plain net
  each layer's lag shifts every later layer's inputs;
- ``batch``: training mode, each batch normalized with its own statistics and no state
  kept: what the optimizer saw, on batches of the training batch size, without
  augmentation;
- ``precise``: inference mode with population statistics recomputed with the final
  weights (:mod:`reskeras.precise_bn`, Wu & Johnson 2021), as ``model.keras`` holds them
  when the run trained with ``precise_bn``.

A net without BatchNorm computes one function in every mode, so its three numbers are
equal. Errors are ``1 - accuracy`` on a whole split, examples weighted equally.

Example:

>>> from reskeras import build_plain
>>> from reskeras.data import load_dataset
>>> model = build_plain(8, input_shape=(8, 8, 1), classes=10, batch_norm=False)
>>> errors = split_errors(model, model, load_dataset("digits"), batch_size=128)
>>> len({errors["train"]["ema"], errors["train"]["batch"], errors["train"]["precise"]})
1
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from reskeras.precise_bn import any_batch, batch_mode_predictions, statistics_applied

MEASURES = ("ema", "batch", "precise")


class Predictors:
    """Traced forward passes of one model, inference mode and batch mode.

    A 56-layer net run eagerly, layer by layer, took 0.9 s per pass over the digits
    training split; traced, the pass is a few convolution calls. A caller that measures
    the same model again (the study, through its trace cache) keeps one of these.
    Neither pass changes a variable of the model.
    """

    def __init__(self, model):
        self.inference = tf.function(lambda images: model(images, training=False),
                                     input_signature=[any_batch(model)])
        self.batch_mode = batch_mode_predictions(model)


def _error(predict, data, split: str, batch_size: int) -> float:
    return _error_and_loss(predict, data, split, batch_size)[0]


def _error_and_loss(predict, data, split: str, batch_size: int) -> tuple[float, float]:
    """1 - accuracy and the mean cross-entropy of the predicted probabilities."""
    hits = total = loss = 0.0
    for images, labels, weights in data.evaluation(batch_size, split=split):
        probabilities = np.asarray(predict(images), dtype=np.float64)
        labels, weights = labels.numpy(), weights.numpy()
        hits += float(np.sum((np.argmax(probabilities, axis=-1) == labels) * weights))
        picked = probabilities[np.arange(len(labels)), labels]
        loss += float(np.sum(-np.log(np.clip(picked, 1e-12, 1.0)) * weights))
        total += float(np.sum(weights))
    return 1.0 - hits / total, loss / total


def inference_error(model, data, split: str, batch_size: int = 512, *,
                    predictors: Predictors | None = None) -> float:
    """1 - accuracy of ``model`` on a split, inference mode, no augmentation."""
    return _error((predictors or Predictors(model)).inference, data, split, batch_size)


def batch_error(model, data, *, batch_size: int, predictors: Predictors | None = None) -> float:
    """1 - accuracy in training mode on the training split, batches of ``batch_size``.

    Every batch is normalized with its own statistics: the training split in its stored
    (shuffled) order, without augmentation, the last batch smaller when the split does
    not divide. No variable of ``model`` changes.
    """
    return _error((predictors or Predictors(model)).batch_mode, data, "train", batch_size)


def split_errors(moving, precise, data, *, batch_size: int) -> dict:
    """Training errors ``{"ema", "batch", "precise"}`` and test errors ``{"ema", "precise"}``.

    Args:
        moving: the trained net with its moving-average statistics (the checkpoint's).
        precise: the same weights with precise statistics (``model.keras`` of a run
            trained with ``precise_bn``); for a net without BatchNorm, the same net.
        data: the run's dataset.
        batch_size: the batch of the ``batch`` error: the per-replica batch the
            BatchNorm layers normalized in training.

    Returns:
        ``{"train": {"ema", "batch", "precise"}, "test": {"ema", "precise"},
        "train_loss", "bn_statistics_gap"}``: ``train_loss`` is the mean cross-entropy
        over the training split with precise statistics (what ``failed_to_start``
        reads), the gap EMA minus precise training error in percentage points.
    """
    from reskeras.precise_bn import moving_statistics

    return model_errors(precise, moving_statistics(moving), data, batch_size=batch_size)


def model_errors(model, moving: dict, data, *, batch_size: int,
                 predictors: Predictors | None = None) -> dict:
    """:func:`split_errors` of one model that holds its precise statistics.

    Args:
        model: the trained net with precise BatchNorm statistics (as training with
            ``precise_bn`` leaves it, or ``model.keras``).
        moving: the moving averages training kept, ``{layer: (mean, variance)}``
            (:attr:`reskeras.train.TrainResult.moving_statistics`); ``{}`` without BN.
        predictors: :class:`Predictors` of ``model``, when the caller keeps them.

    The model ends with the statistics it started with.
    """
    predictors = predictors or Predictors(model)
    precise_error, precise_loss = _error_and_loss(predictors.inference, data, "train", 512)
    train = {"batch": batch_error(model, data, batch_size=batch_size, predictors=predictors),
             "precise": precise_error}
    test = {"precise": inference_error(model, data, "test", predictors=predictors)}
    with statistics_applied(model, moving):
        train["ema"] = inference_error(model, data, "train", predictors=predictors)
        test["ema"] = inference_error(model, data, "test", predictors=predictors)
    train = {key: train[key] for key in MEASURES}
    return {"train": train, "test": {key: test[key] for key in ("ema", "precise")},
            "train_loss": precise_loss,
            "bn_statistics_gap": 100.0 * (train["ema"] - train["precise"])}


__all__ = ["MEASURES", "Predictors", "batch_error", "inference_error", "model_errors",
           "split_errors"]
