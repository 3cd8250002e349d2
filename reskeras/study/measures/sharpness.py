"""Sharpness: the top eigenvalue of the training loss's Hessian, by power iteration.

Cohen et al. (2021) track the largest Hessian eigenvalue during training;
Li et al. (2018) show that skip connections make the landscape of deep nets
smooth where plain nets are chaotic. Here the Hessian is that of the mean
cross-entropy over a fixed batch, with respect to every trainable weight,
in inference mode (BatchNorm uses its moving statistics, so nothing in the
model changes; the function measured is the one the weights represent). Each
power-iteration step is one Hessian-vector product (forward-over-backward with
nested ``tf.GradientTape``), never the Hessian itself.

Example:

>>> import numpy as np
>>> from reskeras import build_resnet
>>> from reskeras.study.measures.sharpness import top_hessian_eigenvalue
>>> model = build_resnet(8, width=2, input_shape=(8, 8, 1), classes=3)
>>> images = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype("float32")
>>> labels = np.arange(16) % 3
>>> result = top_hessian_eigenvalue(model, images, labels, iterations=5)
>>> sorted(result)
['converged', 'eigenvalue', 'history', 'iterations']
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from reskeras._backend import keras
from reskeras.study.measures.landscape import check_examples
from reskeras.preprocessing import check_int


def hessian_vector_product(model, images, labels, from_logits: bool | None = None):
    """A function ``vectors -> H @ vectors`` (lists shaped like the trainable weights)."""
    images, labels = check_examples(images, labels)
    if from_logits is None:
        activation = getattr(model.layers[-1], "activation", None)
        from_logits = getattr(activation, "__name__", None) != "softmax"
    variables = list(model.trainable_weights)
    x, y = tf.constant(images), tf.constant(labels)

    @tf.function(reduce_retracing=True)
    def product(vectors):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                outputs = model(x, training=False)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                    y, outputs, from_logits=from_logits))
            grads = inner.gradient(loss, variables)
            dot = tf.add_n([tf.reduce_sum(g * v) for g, v in zip(grads, vectors)])
        return outer.gradient(dot, variables)

    return lambda vectors: [np.asarray(h, np.float64) for h in product(
        [tf.constant(v, dtype=w.dtype) for v, w in zip(vectors, variables)])]


def top_hessian_eigenvalue(model, images, labels, *, iterations: int = 20,
                           tolerance: float = 1e-3, seed: int = 0,
                           from_logits: bool | None = None) -> dict:
    """The Hessian eigenvalue of largest magnitude, by power iteration.

    Args:
        model: a Keras classifier (softmax output, or logits with ``from_logits``).
        images, labels: the batch the loss is averaged over.
        iterations: most power-iteration steps (one Hessian-vector product each).
        tolerance: stop once the estimate changes by less than this fraction.
        seed: seed of the random start vector.
        from_logits: ``None`` infers it from the last layer's activation.

    Returns:
        ``{"eigenvalue", "iterations", "converged", "history"}`` (the estimate
        after each step).
    """
    check_int("iterations", iterations, 1)
    if not tolerance > 0:
        raise ValueError(f"`tolerance` must be a positive number. Received: tolerance={tolerance!r}")
    multiply = hessian_vector_product(model, images, labels, from_logits)
    rng = np.random.default_rng(seed)
    vector = [rng.standard_normal(tuple(w.shape)) for w in model.trainable_weights]
    norm = np.sqrt(sum(float(np.sum(v * v)) for v in vector))
    vector = [v / norm for v in vector]
    history, converged = [], False
    for _ in range(iterations):
        product = multiply(vector)
        estimate = sum(float(np.sum(v * h)) for v, h in zip(vector, product))  # Rayleigh quotient
        size = np.sqrt(sum(float(np.sum(h * h)) for h in product))
        history.append(estimate)
        if size == 0:
            break
        vector = [h / size for h in product]
        if len(history) > 1 and abs(history[-1] - history[-2]) <= tolerance * abs(history[-1]):
            converged = True
            break
    return {"eigenvalue": history[-1], "iterations": len(history), "converged": converged,
            "history": history}


__all__ = ["hessian_vector_product", "top_hessian_eigenvalue"]
