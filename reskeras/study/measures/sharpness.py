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

Raw eigenvalues are not invariant under BatchNorm (Dinh et al. 2017): scaling a
kernel that feeds a BatchNormalization layer by ``a > 0``, with that layer's
moving mean by ``a`` and ``moving_variance + epsilon`` by ``a**2``, leaves the
network's function unchanged but divides that kernel's Hessian block by
``a**2``. :func:`scale_invariant_sharpness` is the top eigenvalue of the
Hessian with respect to those BN-preceded kernels only, in per-layer
normalized coordinates: the operator ``v -> D H D v`` with
``D = diag(||w_l||)``, each layer's block multiplied by its kernel's Frobenius
norm. Each block of ``H`` scales by ``1 / (a_l a_k)`` and ``D`` by ``a_l``, so
the eigenvalues do not move under any such rescaling, of any subset of kernels:

>>> invariant = scale_invariant_sharpness(model, images, labels, iterations=5)
>>> sorted(invariant), invariant["layers"]
(['converged', 'eigenvalue', 'history', 'iterations', 'layers'], 7)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from reskeras._backend import keras
from reskeras.study.measures.landscape import check_examples
from reskeras.preprocessing import check_int


def bn_preceded_kernels(model) -> list:
    """The kernels of the layers whose output goes straight, and only, into BatchNormalization.

    Read from the model's functional graph: a layer with a kernel counts when it
    has at least one consumer in ``model`` and every consumer is a
    ``keras.layers.BatchNormalization`` (a kernel that also feeds another layer
    directly is not scale-free). The builders' convs carry no bias, so scaling
    such a kernel with its BN's moving statistics leaves the function unchanged.

    Args:
        model: a functional or Sequential Keras model.

    Returns:
        The trainable kernel variables, in the order of ``model.layers``.
    """
    graph = getattr(model, "_functional", None) or model  # Sequential wraps a Functional
    by_depth = getattr(graph, "_nodes_by_depth", None)
    if by_depth is None:
        raise ValueError("`model` must be a functional or Sequential Keras model (its layer "
                         f"graph is read). Received: model={type(model).__name__}")
    consumers: dict[int, list] = {}
    for nodes in by_depth.values():
        for node in nodes:
            for parent in node.parent_nodes:
                consumers.setdefault(id(parent.operation), []).append(node.operation)
    batch_norm = keras.layers.BatchNormalization
    return [layer.kernel for layer in model.layers
            if getattr(layer, "kernel", None) is not None and layer.kernel.trainable
            and consumers.get(id(layer))
            and all(isinstance(op, batch_norm) for op in consumers[id(layer)])]


def hessian_vector_product(model, images, labels, from_logits: bool | None = None,
                           variables=None):
    """A function ``vectors -> H @ vectors`` (lists shaped like ``variables``).

    ``H`` is the Hessian of the mean cross-entropy over ``images`` with respect to
    ``variables`` (default: every trainable weight), in inference mode.
    """
    images, labels = check_examples(images, labels)
    if from_logits is None:
        activation = getattr(model.layers[-1], "activation", None)
        from_logits = getattr(activation, "__name__", None) != "softmax"
    variables = list(model.trainable_weights if variables is None else variables)
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


def _check_iteration(iterations, tolerance) -> None:
    check_int("iterations", iterations, 1)
    if not tolerance > 0:
        raise ValueError("`tolerance` must be a positive number. "
                         f"Received: tolerance={tolerance!r}")


def _power_iteration(multiply, shapes, iterations: int, tolerance: float, seed: int) -> dict:
    """Power iteration of the symmetric operator ``multiply`` on lists of ``shapes``."""
    rng = np.random.default_rng(seed)
    vector = [rng.standard_normal(tuple(shape)) for shape in shapes]
    norm = np.sqrt(sum(float(np.sum(v * v)) for v in vector))
    vector = [v / norm for v in vector]
    history, converged = [], False
    for _ in range(iterations):
        product = multiply(vector)
        estimate = sum(float(np.sum(v * h)) for v, h in zip(vector, product))  # Rayleigh quotient
        size = np.sqrt(sum(float(np.sum(h * h)) for h in product))
        history.append(estimate)
        if size == 0 or not np.isfinite(size):  # nothing more to learn from a NaN
            break
        vector = [h / size for h in product]
        if len(history) > 1 and abs(history[-1] - history[-2]) <= tolerance * abs(history[-1]):
            converged = True
            break
    return {"eigenvalue": history[-1], "iterations": len(history), "converged": converged,
            "history": history}


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
        after each step; a NaN estimate ends the iteration unconverged).
    """
    _check_iteration(iterations, tolerance)
    multiply = hessian_vector_product(model, images, labels, from_logits)
    return _power_iteration(multiply, [w.shape for w in model.trainable_weights], iterations,
                            tolerance, seed)


def scale_invariant_sharpness(model, images, labels, *, iterations: int = 20,
                              tolerance: float = 1e-3, seed: int = 0,
                              from_logits: bool | None = None) -> dict:
    """The top eigenvalue of ``D H D`` over the BN-preceded kernels, by power iteration.

    ``H`` is the Hessian of the training loss with respect to the kernels of
    :func:`bn_preceded_kernels` only, ``D`` multiplies each kernel's block by that
    kernel's Frobenius norm (per-layer normalized coordinates). The value does not
    change when any subset of those kernels is rescaled together with its BN's
    moving statistics (the network function stays the same), unlike
    :func:`top_hessian_eigenvalue`, whose blocks scale by ``1 / a**2``.

    Args:
        model: a Keras classifier with at least one conv or dense layer that feeds
            a BatchNormalization layer.
        images, labels: the batch the loss is averaged over.
        iterations: most power-iteration steps (one Hessian-vector product each).
        tolerance: stop once the estimate changes by less than this fraction.
        seed: seed of the random start vector.
        from_logits: ``None`` infers it from the last layer's activation.

    Returns:
        ``{"eigenvalue", "iterations", "converged", "history", "layers"}``, as
        :func:`top_hessian_eigenvalue`, plus the number of kernels measured.
    """
    _check_iteration(iterations, tolerance)
    kernels = bn_preceded_kernels(model)
    if not kernels:
        raise ValueError("`model` must have a conv or dense layer whose output goes straight "
                         "into BatchNormalization (scale-invariant sharpness is defined on "
                         f"those kernels). Received: model={model.name!r} with none")
    norms = [float(np.linalg.norm(np.asarray(k.numpy(), np.float64))) for k in kernels]
    multiply = hessian_vector_product(model, images, labels, from_logits, variables=kernels)

    def normalized(vector):
        return [n * h for n, h in zip(norms, multiply([n * v for n, v in zip(norms, vector)]))]

    found = _power_iteration(normalized, [k.shape for k in kernels], iterations, tolerance, seed)
    return {**found, "layers": len(kernels)}


__all__ = ["bn_preceded_kernels", "hessian_vector_product", "scale_invariant_sharpness",
           "top_hessian_eigenvalue"]
