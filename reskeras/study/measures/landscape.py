"""Loss-landscape slices along filter-normalized random directions (Li et al. 2018).

Li, Xu, Taylor, Studer, Goldstein, *Visualizing the Loss Landscape of Neural
Nets* (NeurIPS 2018) plot ``L(w + alpha * d)`` along a random Gaussian
direction ``d`` whose every filter is rescaled to the norm of the matching
filter of ``w``; that makes slices of different nets comparable despite the
scale invariance BatchNorm gives their weights. Their finding, which this
module lets anyone measure on a laptop: deep plain nets have chaotic, sharply
curved landscapes where their residual twins have smooth convex basins.

Evaluation is in inference mode (``training=False``: BatchNorm uses its moving
statistics as trained). The model's weights are moved in place and restored
bit-exactly afterwards (also on error); nothing else of the model changes and
no variable is created. Summary numbers of a 1D slice (see :func:`summarize`):

* ``curvature``: second derivative ``d2L/dalpha2`` at 0, twice the quadratic
  coefficient of a least-squares fit of the loss over ``|alpha| <= 0.2``.
* ``roughness``: excess total variation, ``sum|dL| / ((L[0] - min L) +
  (L[-1] - min L)) - 1``. Exactly 0 for any curve that only falls then rises
  (a convex bowl, flattening or not); it grows with every extra wiggle.
* ``local_minima``: interior local minima of the sampled curve (1 for a basin).
* ``sharpness``: ``(max L over |alpha| <= 0.2 - L(0)) / (1 + L(0))``, the 1D
  analogue of the sharpness of Keskar et al. (2017).

Example:

>>> import numpy as np
>>> from reskeras.study.measures.landscape import loss_slice_1d
>>> from reskeras import build_resnet
>>> model = build_resnet(8, width=4, input_shape=(8, 8, 1), classes=3)
>>> x = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype("float32")
>>> y = np.arange(16) % 3
>>> result = loss_slice_1d(model, x, y, alphas=np.linspace(-1, 1, 5))
>>> len(result["loss"]), result["alphas"][2]
(5, 0.0)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from reskeras._backend import keras
from reskeras.preprocessing import check_int

IGNORES = ("biasbn", None)
CURVATURE_WINDOW = 0.2
# differences below this fraction of the loss range are float noise, not wiggles
_FLAT_FRACTION = 1e-6


def random_direction(model: keras.Model, seed: int = 0,
                     ignore: str | None = "biasbn") -> list[np.ndarray]:
    """A filter-normalized Gaussian direction in the space of ``model.trainable_weights``.

    Every weight gets a standard normal draw from ``numpy.random.default_rng(seed)``
    in the order of ``model.trainable_weights`` (so twins with the same weight
    shapes, like plain20 and resnet20, get the same raw draw). Then, for each
    kernel (2 or more axes), each output filter ``d[..., j]`` is rescaled to
    the Frobenius norm of ``w[..., j]``. One-axis weights (biases, BatchNorm
    gamma and beta) get zeros with ``ignore="biasbn"``, as in the paper, and a
    copy of the weight itself with ``ignore=None`` (the reference code does so).

    Args:
        model: a built Keras model.
        seed: integer >= 0; the same seed gives the same direction.
        ignore: ``"biasbn"`` (default) or ``None``.

    Returns:
        One float32 array per trainable weight, of the same shape.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> [d.shape for d in random_direction(model, seed=0)]
    [(4, 3), (3,)]
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
    check_int("seed", seed, 0)
    if ignore not in IGNORES:
        raise ValueError(f"`ignore` must be 'biasbn' or None. Received: ignore={ignore!r}")
    if not model.trainable_weights:
        raise ValueError("`model` must have trainable weights (build it first). "
                         f"Received: model={model.name!r} with none")
    rng = np.random.default_rng(seed)
    direction = []
    for variable in model.trainable_weights:
        weight = np.asarray(variable.numpy(), np.float64)
        draw = rng.standard_normal(weight.shape)
        if weight.ndim <= 1:
            draw = np.zeros_like(weight) if ignore == "biasbn" else weight.copy()
        else:
            axes = tuple(range(weight.ndim - 1))
            weight_norms = np.sqrt(np.sum(weight ** 2, axis=axes))
            draw_norms = np.sqrt(np.sum(draw ** 2, axis=axes))
            draw = draw * (weight_norms / np.maximum(draw_norms, 1e-30))
        direction.append(draw.astype(np.float32))
    return direction


def _one_line(value) -> str:
    return " ".join(repr(value).split())  # numpy reprs wrap long arrays over several lines


def _check_alphas(arg: str, values) -> np.ndarray:
    try:
        array = np.array(values, np.float64)  # a copy: the 0 below must not edit a default
    except (TypeError, ValueError):
        array = None
    if (array is None or array.ndim != 1 or array.size < 3 or not np.all(np.isfinite(array))
            or np.any(np.diff(array) <= 0)):
        raise ValueError(f"`{arg}` must be an increasing 1-D sequence of at least 3 finite "
                         f"numbers containing 0. Received: {arg}={_one_line(values)}")
    nearest = int(np.argmin(np.abs(array)))
    if abs(array[nearest]) > 1e-9 * np.max(np.abs(array)):
        raise ValueError(f"`{arg}` must contain 0 (the trained weights) so the slice has a "
                         f"center (use an odd count with np.linspace). Received: "
                         f"{arg}={_one_line(values)}")
    array[nearest] = 0.0  # linspace may give 1e-17: evaluate the trained weights exactly
    return array


def _check_direction(arg: str, direction, model: keras.Model) -> list[np.ndarray]:
    shapes = [tuple(v.shape) for v in model.trainable_weights]
    try:
        arrays = [np.asarray(d, np.float32) for d in direction]
    except (TypeError, ValueError):
        arrays = None
    if arrays is None or [a.shape for a in arrays] != shapes:
        got = None if arrays is None else [a.shape for a in arrays]
        raise ValueError(f"`{arg}` must be one array per trainable weight of the model, with "
                         f"shapes {shapes}. Received: {arg} with shapes {got}")
    return arrays


def check_examples(images, labels) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``images`` and int32 ``labels`` ``[N]``, or a ValueError naming the bad one."""
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if images.ndim < 2 or len(images) == 0:
        raise ValueError("`images` must be a non-empty batch of model inputs [N, ...]. "
                         f"Received: images.shape={images.shape}")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must be N={len(images)} integer class labels. "
                         f"Received: labels.shape={labels.shape}, dtype={labels.dtype}")
    return images, labels.astype(np.int32)


class _Evaluator:
    """Mean cross-entropy and accuracy of a model over fixed data, for any weights."""

    def __init__(self, model: keras.Model, images, labels, batch_size: int, from_logits: bool):
        images, labels = check_examples(images, labels)
        check_int("batch_size", batch_size, 1)
        self.model, self.count = model, len(labels)
        self.variables = list(model.trainable_weights)
        self.original = [np.array(v.numpy(), copy=True) for v in self.variables]
        self.batches = [(tf.constant(images[i:i + batch_size]),
                         tf.constant(labels[i:i + batch_size]))
                        for i in range(0, len(labels), batch_size)]

        @tf.function(reduce_retracing=True)
        def batch_sums(x, y):
            outputs = model(x, training=False)
            # the loss Keras compiles for "sparse_categorical_crossentropy" (same clipping)
            losses = keras.losses.sparse_categorical_crossentropy(y, outputs,
                                                                  from_logits=from_logits)
            correct = tf.equal(tf.argmax(outputs, axis=-1, output_type=tf.int32), y)
            return (tf.reduce_sum(tf.cast(losses, tf.float64)),
                    tf.reduce_sum(tf.cast(correct, tf.int64)))

        self._batch_sums = batch_sums

    def at(self, steps: list[tuple[float, list[np.ndarray]]]) -> tuple[float, float]:
        """(loss, accuracy) at ``w + sum(coefficient * direction)``."""
        for index, (variable, weight) in enumerate(zip(self.variables, self.original)):
            moved = weight.astype(np.float32, copy=True)
            for coefficient, direction in steps:
                if coefficient != 0.0:
                    moved = moved + np.float32(coefficient) * direction[index]
            variable.assign(moved.astype(weight.dtype, copy=False))
        loss_sum, correct = 0.0, 0
        for x, y in self.batches:
            batch_loss, batch_correct = self._batch_sums(x, y)
            loss_sum += float(batch_loss)
            correct += int(batch_correct)
        return loss_sum / self.count, correct / self.count

    def restore(self) -> None:
        for variable, weight in zip(self.variables, self.original):
            variable.assign(weight)


def _is_residual(model: keras.Model) -> bool:
    return any(isinstance(layer, keras.layers.Add) or layer.name.endswith("_add")
               for layer in model.layers)


def summarize(alphas, losses, window: float = CURVATURE_WINDOW) -> dict[str, float]:
    """Summary numbers of a 1D loss curve (defined in the module docstring).

    Args:
        alphas: increasing step sizes containing 0.
        losses: the loss at each alpha.
        window: half-width of the neighbourhood of 0 used by ``curvature``
            and ``sharpness``; when it holds fewer than 3 points the 3 points
            nearest 0 are used.

    Returns:
        ``{"curvature", "roughness", "local_minima", "sharpness"}``.

    Example:

    >>> alphas = np.linspace(-1, 1, 21)
    >>> numbers = summarize(alphas, 3 * alphas ** 2 + 1)
    >>> round(numbers["curvature"], 6), numbers["roughness"], numbers["local_minima"]
    (6.0, 0.0, 1)
    """
    alphas = np.asarray(alphas, np.float64)
    losses = np.asarray(losses, np.float64)
    center = int(np.argmin(np.abs(alphas)))
    near = np.abs(alphas) <= window + 1e-12
    if near.sum() < 3:
        near = np.zeros_like(near)
        near[np.argsort(np.abs(alphas))[:3]] = True
    curvature = 2.0 * np.polyfit(alphas[near], losses[near], 2)[0]
    sharpness = (losses[near].max() - losses[center]) / (1.0 + losses[center])

    steps = np.diff(losses)
    lowest = losses.min()
    descent = (losses[0] - lowest) + (losses[-1] - lowest)
    roughness = float(np.abs(steps).sum() / descent - 1.0) if descent > 0 else 0.0
    flat = _FLAT_FRACTION * (losses.max() - lowest)
    signs = [s for s in np.sign(np.where(np.abs(steps) > flat, steps, 0.0)) if s != 0]
    minima = sum(1 for a, b in zip(signs, signs[1:]) if a < 0 < b)
    return {"curvature": float(curvature), "roughness": max(0.0, roughness),
            "local_minima": int(minima), "sharpness": float(sharpness)}


def loss_slice_1d(model: keras.Model, images, labels, direction=None,
                  alphas=np.linspace(-1, 1, 41), batch_size: int = 512, seed: int = 0, *,
                  ignore: str | None = "biasbn", from_logits: bool = False) -> dict:
    """Mean cross-entropy and accuracy along ``w + alpha * direction``.

    Args:
        model: a Keras classifier; its outputs are probabilities (softmax)
            unless ``from_logits=True``.
        images: model inputs ``[N, ...]``, already normalized as in training
            (``reskeras.preprocessing.normalize``).
        labels: ``N`` integer class labels.
        direction: arrays shaped like ``model.trainable_weights``; default
            ``random_direction(model, seed, ignore)``.
        alphas: increasing step sizes containing 0 (default 41 points in [-1, 1]).
        batch_size: examples per forward pass (default 512).
        seed: seed of the default direction (default 0).
        ignore: passed to :func:`random_direction` (default ``"biasbn"``).
        from_logits: the model outputs logits rather than probabilities.

    Returns:
        ``{"alphas", "loss", "accuracy"}`` (lists), ``"center_loss"``,
        ``"center_accuracy"``, the :func:`summarize` numbers, ``"residual"``
        (the model has Add layers), ``"model"`` (its name), ``"seed"``,
        ``"ignore"`` and ``"examples"``.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    >>> x, y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])
    >>> result = loss_slice_1d(model, x, y, alphas=[-1, 0, 1])
    >>> result["alphas"], result["center_loss"] > 0
    ([-1.0, 0.0, 1.0], True)
    """
    alphas = _check_alphas("alphas", alphas)
    direction = (random_direction(model, seed, ignore) if direction is None
                 else _check_direction("direction", direction, model))
    evaluator = _Evaluator(model, images, labels, batch_size, from_logits)
    try:
        points = [evaluator.at([(alpha, direction)]) for alpha in alphas]
    finally:
        evaluator.restore()
    losses = [loss for loss, _ in points]
    center = int(np.argmin(np.abs(alphas)))
    return {"model": model.name, "residual": _is_residual(model), "seed": seed,
            "ignore": ignore, "examples": evaluator.count, "alphas": alphas.tolist(),
            "loss": losses, "accuracy": [accuracy for _, accuracy in points],
            "center_loss": losses[center], "center_accuracy": points[center][1],
            **summarize(alphas, losses)}


def loss_slice_2d(model: keras.Model, images, labels, directions=None,
                  alphas=np.linspace(-1, 1, 21), betas=np.linspace(-1, 1, 21),
                  batch_size: int = 512, seed: int = 0, *, ignore: str | None = "biasbn",
                  from_logits: bool = False) -> dict:
    """Loss and accuracy on the plane ``w + alpha * d1 + beta * d2``.

    Args:
        model, images, labels, batch_size, ignore, from_logits: as in
            :func:`loss_slice_1d`.
        directions: a pair of directions; default
            ``random_direction(model, seed)`` and ``random_direction(model, seed + 1)``
            (nearly orthogonal in high dimension, as in the paper).
        alphas, betas: increasing steps along ``d1`` and ``d2``, each containing 0
            (default 21 points in [-1, 1]; 441 evaluations).
        seed: seed of the first default direction (default 0).

    Returns:
        ``{"alphas", "betas", "loss", "accuracy"}`` with ``loss[i][j]`` at
        ``(alphas[i], betas[j])``, ``"center_loss"``, ``"model"``, ``"residual"``,
        ``"seed"`` and ``"examples"``.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    >>> result = loss_slice_2d(model, np.eye(2), np.array([0, 1]), alphas=[-1, 0, 1],
    ...                        betas=[-1, 0, 0.5, 1])
    >>> np.shape(result["loss"])
    (3, 4)
    """
    alphas = _check_alphas("alphas", alphas)
    betas = _check_alphas("betas", betas)
    if directions is None:
        directions = (random_direction(model, seed, ignore),
                      random_direction(model, seed + 1, ignore))
    elif not isinstance(directions, (list, tuple)) or len(directions) != 2:
        raise ValueError("`directions` must be a pair (d1, d2) of directions. "
                         f"Received: directions of type {type(directions).__name__}")
    first, second = (_check_direction(f"directions[{i}]", d, model)
                     for i, d in enumerate(directions))
    evaluator = _Evaluator(model, images, labels, batch_size, from_logits)
    try:
        grid = [[evaluator.at([(alpha, first), (beta, second)]) for beta in betas]
                for alpha in alphas]
    finally:
        evaluator.restore()
    loss = [[point[0] for point in row] for row in grid]
    center = int(np.argmin(np.abs(alphas))), int(np.argmin(np.abs(betas)))
    return {"model": model.name, "residual": _is_residual(model), "seed": seed,
            "examples": evaluator.count, "alphas": alphas.tolist(), "betas": betas.tolist(),
            "loss": loss, "accuracy": [[point[1] for point in row] for row in grid],
            "center_loss": loss[center[0]][center[1]]}


def landscape_study(models: dict[str, keras.Model], images, labels, **kwargs) -> dict[str, dict]:
    """The 1D slice of every model, each along its own direction drawn from the same seed.

    Args:
        models: ``{name: model}``, e.g. ``{"plain20": ..., "resnet20": ...}``.
        images, labels: the data every model is evaluated on.
        **kwargs: any argument of :func:`loss_slice_1d` but ``direction``.

    Returns:
        ``{name: loss_slice_1d result}`` in the order given.

    Example:

    >>> import keras
    >>> dense = lambda: keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    >>> study = landscape_study({"a": dense(), "b": dense()}, np.eye(2), np.array([0, 1]),
    ...                         alphas=[-1, 0, 1], from_logits=True)
    >>> list(study)
    ['a', 'b']
    """
    if "direction" in kwargs:
        raise ValueError("`direction` cannot be shared by a study: each model draws its own "
                         f"from `seed`. Received: direction of type "
                         f"{type(kwargs['direction']).__name__}")
    if not isinstance(models, dict) or not models:
        raise ValueError(f"`models` must be a non-empty dict of name -> keras.Model. "
                         f"Received: models={models!r}")
    return {name: loss_slice_1d(model, images, labels, **kwargs)
            for name, model in models.items()}


__all__ = ["CURVATURE_WINDOW", "IGNORES", "landscape_study", "loss_slice_1d", "loss_slice_2d",
           "random_direction", "summarize"]
