"""Shattered gradients (Balduzzi et al. 2017): how fast input gradients decorrelate along a line.

Balduzzi et al. ("The shattered gradients problem: if resnets are the answer,
then what is the question?", 2017) show that as plain nets get deeper, the
gradient of the output with respect to the input looks more and more like
white noise: gradients at nearby inputs are nearly uncorrelated. Residual nets
(and shallow nets) keep them correlated. Here the gradient is that of the
log-probability of one class (the class the model predicts at the line's
center) at ``points`` inputs ``image + t * direction``, ``t`` in
``[-span, span]``, and the measure is the Pearson correlation between the
gradients at points ``lag`` apart.

Example:

>>> import numpy as np
>>> from reskeras import build_plain, build_resnet
>>> from reskeras.study.measures.shattering import gradient_correlation, input_gradients_along_line
>>> model = build_resnet(8, input_shape=(8, 8, 1), classes=10)
>>> image = np.random.default_rng(0).normal(size=(8, 8, 1)).astype("float32")
>>> gradients = input_gradients_along_line(model, image, points=32)
>>> gradients.shape
(32, 64)
>>> 0.0 < gradient_correlation(gradients)["neighbour_correlation"] <= 1.0
True
"""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf

from reskeras._backend import keras

_BATCH = 256  # points per forward+backward pass


def _check_int(arg: str, value, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{arg}` must be an integer >= {minimum}. Received: {arg}={value!r}")


def _check_model(model) -> None:
    if not isinstance(model, keras.Model) or len(model.inputs) != 1 or len(model.outputs) != 1 \
            or len(model.outputs[0].shape) != 2:
        raise ValueError(f"`model` must be a keras.Model with one input and one "
                         f"[batch, classes] output. Received: model={model!r}")


def _log_probabilities(model: keras.Model):
    """A function ``x -> log softmax(logits)`` that never takes the log of a rounded probability.

    A softmax ``Dense`` head (reskeras's ``predictions``) is recomputed from
    its input as ``x @ kernel + bias``; a ``Softmax`` layer is read at its
    input; any other output is taken to be logits.
    """
    # the output's own node: a layer shared with other models has several
    last, node_index, _ = model.outputs[0]._keras_history
    last_input = last._inbound_nodes[node_index].input_tensors[0]
    if isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax:
        features = keras.Model(model.inputs[0], last_input)

        def head(x):
            h = tf.cast(features(x, training=False), last.kernel.dtype)
            logits = tf.matmul(h, last.kernel)
            return logits + last.bias if last.use_bias else logits
    elif isinstance(last, keras.layers.Softmax) or (
            isinstance(last, keras.layers.Activation)
            and last.activation is keras.activations.softmax):
        features = keras.Model(model.inputs[0], last_input)

        def head(x):
            return features(x, training=False)
    else:
        def head(x):
            return model(x, training=False)
    return lambda x: tf.nn.log_softmax(tf.cast(head(x), tf.float32), axis=-1)


def input_gradients_along_line(model: keras.Model, image, direction=None, points: int = 128,
                               span: float = 1.0, seed: int = 0) -> np.ndarray:
    """Input gradients of one class's log-probability at ``points`` inputs on a line.

    Args:
        model: a classifier with one image input and a ``[batch, classes]``
            output (probabilities of a softmax head, or logits).
        image: the line's center, ``[H, W, C]`` (or ``[1, H, W, C]``),
            normalized as the model's training data.
        direction: the line's direction, shaped like ``image``, used as given;
            ``None`` draws a standard normal direction from ``seed`` and
            scales it to unit root-mean-square (one unit per pixel).
        points: points on the line (at least 3).
        span: the line runs over ``image + t * direction`` for ``t`` in
            ``linspace(-span, span, points)``.
        seed: seed of the default direction.

    Returns:
        float32 array ``[points, H * W * C]``: row ``i`` is the gradient of
        ``log p(c | x_i)`` with respect to ``x_i``, where ``c`` is the class
        the model predicts at ``image`` (the same ``c`` for every point).
        The model runs in inference mode and nothing in it changes.

    Example:

    >>> import numpy as np, keras
    >>> model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(),
    ...                           keras.layers.Dense(3, activation="softmax")])
    >>> input_gradients_along_line(model, np.zeros((2, 2, 1)), points=5).shape
    (5, 4)
    """
    _check_model(model)
    _check_int("points", points, 3)
    _check_int("seed", seed, 0)
    if isinstance(span, bool) or not isinstance(span, (int, float, np.number)) \
            or not np.isfinite(span) or span <= 0:
        raise ValueError(f"`span` must be a finite number > 0. Received: span={span!r}")
    expected = tuple(model.inputs[0].shape[1:])
    image = np.asarray(image, np.float32)
    if image.ndim == len(expected) + 1 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != len(expected) or any(e is not None and e != d
                                          for e, d in zip(expected, image.shape)):
        raise ValueError(f"`image` must have the model's input shape {expected}. "
                         f"Received: image.shape={image.shape}")
    if direction is None:
        direction = np.random.default_rng(seed).standard_normal(image.shape)
        direction /= np.sqrt(np.mean(direction ** 2))
    direction = np.asarray(direction, np.float32)
    if direction.shape != image.shape:
        raise ValueError(f"`direction` must have the shape of `image` {image.shape}. "
                         f"Received: direction.shape={direction.shape}")
    log_probabilities = _log_probabilities(model)
    target = int(np.argmax(log_probabilities(image[None]).numpy()[0]))
    steps = np.linspace(-span, span, points, dtype=np.float32)
    line = image[None] + steps.reshape((-1,) + (1,) * image.ndim) * direction[None]
    gradients = []
    for start in range(0, points, _BATCH):
        x = tf.convert_to_tensor(line[start:start + _BATCH])
        with tf.GradientTape() as tape:
            tape.watch(x)
            # Inference mode: examples do not interact, so the gradient of the
            # sum is each example's own gradient.
            total = tf.reduce_sum(log_probabilities(x)[:, target])
        gradients.append(tape.gradient(total, x).numpy().reshape(len(x), -1))
    return np.concatenate(gradients).astype(np.float32)


def gradient_correlation(gradients) -> dict:
    """Pearson correlation between gradients at points of a line, by distance.

    Args:
        gradients: ``[points, D]`` from :func:`input_gradients_along_line`
            (at least 3 points).

    Returns:
        ``{"neighbour_correlation": float, "autocorrelation": [float, ...],
        "decorrelation_length": int | None}``: the mean correlation of
        consecutive gradients; for each lag ``0 .. points // 4`` the mean
        correlation of gradients ``lag`` points apart; the smallest lag whose
        mean correlation is below 0.5 (None when none is). A gradient with
        no variance across its entries has no correlation and is left out of
        the means (NaN when nothing is left): that happens where a softmax
        saturates in float32, e.g. deep untrained ResNets in inference mode,
        whose BN layers do not yet normalize.

    Example:

    >>> import numpy as np
    >>> smooth = np.outer(np.linspace(1, 2, 16), np.arange(8.0)) + np.arange(8.0) ** 2
    >>> gradient_correlation(smooth)["decorrelation_length"] is None
    True
    >>> noise = np.random.default_rng(0).normal(size=(128, 256))
    >>> gradient_correlation(noise)["decorrelation_length"]
    1
    """
    gradients = np.asarray(gradients, np.float64)
    if gradients.ndim != 2 or gradients.shape[0] < 3 or gradients.shape[1] < 2:
        raise ValueError(f"`gradients` must be [points, D] with points >= 3 and D >= 2. "
                         f"Received: gradients.shape={gradients.shape}")
    centered = gradients - gradients.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centered, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(norms > 0, centered / norms, np.nan)
    correlations = unit @ unit.T
    autocorrelation = []
    for lag in range(gradients.shape[0] // 4 + 1):
        values = np.diagonal(correlations, offset=lag)
        values = values[np.isfinite(values)]
        autocorrelation.append(float(np.clip(values.mean(), -1.0, 1.0)) if len(values)
                               else float("nan"))
    below = [lag for lag, value in enumerate(autocorrelation) if value < 0.5]
    neighbours = np.diagonal(correlations, offset=1)
    neighbours = neighbours[np.isfinite(neighbours)]
    return {"neighbour_correlation": float(neighbours.mean()) if len(neighbours) else float("nan"),
            "autocorrelation": autocorrelation,
            "decorrelation_length": below[0] if below else None}


def shattering_study(models: dict[str, keras.Model], images, points: int = 128,
                     span: float = 1.0, seed: int = 0) -> list[dict]:
    """Gradient correlation of several models on the same lines through the same images.

    Image ``i`` gets the direction drawn from ``seed + i``, the same for every
    model, so the models are compared on identical lines.

    Args:
        models: name -> classifier (e.g. ``{"plain20": ..., "resnet20": ...}``).
        images: normalized images ``[N, H, W, C]`` (the lines' centers).
        points, span, seed: as in :func:`input_gradients_along_line`.

    Returns:
        One dict per model, in the order of ``models``: ``{"model": name,
        "per_image": [{"image": i, "neighbour_correlation",
        "decorrelation_length", "autocorrelation"}, ...],
        "neighbour_correlation": mean over images, "autocorrelation": mean
        over images per lag, "decorrelation_length": mean over the images that
        decorrelate within ``points // 4`` lags (None when none does),
        "decorrelated_images": how many do}``.

    Example:

    >>> import numpy as np
    >>> from reskeras import build_resnet
    >>> model = build_resnet(8, input_shape=(8, 8, 1), classes=10)
    >>> rows = shattering_study({"resnet8": model}, np.zeros((2, 8, 8, 1)), points=16)
    >>> rows[0]["model"], len(rows[0]["per_image"])
    ('resnet8', 2)
    """
    if not isinstance(models, dict) or not models \
            or not all(isinstance(m, keras.Model) for m in models.values()):
        raise ValueError(f"`models` must be a non-empty dict of name -> keras.Model. "
                         f"Received: models={models!r}")
    _check_int("seed", seed, 0)
    images = np.asarray(images, np.float32)
    if images.ndim < 2 or len(images) == 0:
        raise ValueError(f"`images` must be a non-empty batch [N, H, W, C]. "
                         f"Received: images.shape={images.shape}")
    rows = []
    for name, model in models.items():
        per_image = []
        for i, image in enumerate(images):
            gradients = input_gradients_along_line(model, image, points=points, span=span,
                                                   seed=seed + i)
            per_image.append({"image": i, **gradient_correlation(gradients)})
        lengths = [r["decorrelation_length"] for r in per_image
                   if r["decorrelation_length"] is not None]
        with warnings.catch_warnings():  # all-NaN means (saturated softmax) stay NaN quietly
            warnings.simplefilter("ignore", RuntimeWarning)
            neighbour = float(np.nanmean([r["neighbour_correlation"] for r in per_image]))
            autocorrelation = np.nanmean([r["autocorrelation"] for r in per_image], axis=0)
        rows.append({
            "model": name,
            "per_image": per_image,
            "neighbour_correlation": neighbour,
            "autocorrelation": autocorrelation.tolist(),
            "decorrelation_length": float(np.mean(lengths)) if lengths else None,
            "decorrelated_images": len(lengths),
        })
    return rows


__all__ = ["gradient_correlation", "input_gradients_along_line", "shattering_study"]
