"""How far training moves each layer, and how far each block is from the identity.

Two measures behind the study's *why*:

- :func:`distance_travelled`: per layer, ``||w_T - w_0|| / ||w_0||`` over its
  trainable weights. The "residuals are easier" explanation predicts that a
  residual net's layers travel less than its plain twin's to fit the same data.
- :func:`distance_from_identity`: per block whose input and output have the
  same shape, ``||block(x) - x|| / ||x||`` on a batch (inference mode). A
  residual block starts near the identity (exactly, with ``branch_scale=0``);
  a He-initialized plain block does not; a Dirac-initialized one does.

Example:

>>> import numpy as np
>>> from reskeras import build_resnet
>>> from reskeras.study.measures.distances import distance_from_identity
>>> model = build_resnet(8, branch_scale=0.0, input_shape=(8, 8, 1), classes=10)
>>> images = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
>>> [(row["block"], row["distance"]) for row in distance_from_identity(model, images)]
[('stage1_block1', 0.0)]
"""

from __future__ import annotations

import numpy as np

from reskeras._backend import keras
from reskeras.study.measures.block_graph import BlockGraph


def _layer_weights(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.asarray(w.numpy(), np.float64) for w in layer.trainable_weights]
            for layer in model.layers if layer.trainable_weights}


def distance_travelled(initial, final) -> list[dict]:
    """``||w_T - w_0|| / ||w_0||`` per layer with trainable weights, in layer order.

    Args:
        initial: the model at initialization (or a ``{layer: [arrays]}`` dict).
        final: the same architecture after training (or such a dict).

    Returns:
        ``[{"layer", "distance", "relative"}]``: ``distance`` is ``||w_T - w_0||``
        over the layer's trainable weights together, ``relative`` divides it by
        ``||w_0||`` (``None`` where ``w_0`` is all zeros, e.g. a SkipInit scale).

    Raises:
        ValueError: the two do not have the same layers and shapes.
    """
    start = initial if isinstance(initial, dict) else _layer_weights(initial)
    end = final if isinstance(final, dict) else _layer_weights(final)
    if list(start) != list(end) or any(
            [w.shape for w in start[name]] != [w.shape for w in end[name]] for name in start):
        raise ValueError("`initial` and `final` must be the same architecture (the same layers "
                         f"with trainable weights of the same shapes). Received: "
                         f"{len(start)} and {len(end)} weighted layers")
    rows = []
    for name, weights in start.items():
        moved = float(np.sqrt(sum(float(np.sum((b - a) ** 2))
                                  for a, b in zip(weights, end[name]))))
        norm = float(np.sqrt(sum(float(np.sum(a ** 2)) for a in weights)))
        rows.append({"layer": name, "distance": moved,
                     "relative": moved / norm if norm > 0 else None})
    return rows


def distance_from_identity(model, images, batch_size: int = 256) -> list[dict]:
    """``||block(x) - x|| / ||x||`` for every block whose output has its input's shape.

    Args:
        model: a functional reskeras model (blocks ``stage{s}_block{b}``).
        images: a batch of model inputs (normalized as in training).
        batch_size: images per forward pass.

    Returns:
        ``[{"block", "distance"}]`` in block order; blocks that change the shape
        (the first of a downsampling stage) have no identity to compare with.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or not len(images):
        raise ValueError(f"`images` must be a non-empty batch [N, H, W, C]. "
                         f"Received: images.shape={images.shape}")
    graph = BlockGraph(model)
    pairs = []
    for entry in graph.blocks():
        prefix = entry["block"]
        source = graph.block_input(prefix)
        out = graph.node[f"{prefix}_out"].outputs[0]
        if tuple(source.shape) == tuple(out.shape):
            pairs.append((prefix, source, out))
    if not pairs:
        return []
    probe = keras.Model(model.input, [t for _, source, out in pairs for t in (source, out)])
    squared = np.zeros((len(pairs), 2))
    for i in range(0, len(images), batch_size):
        outputs = probe(images[i:i + batch_size], training=False)
        for k in range(len(pairs)):
            x = np.asarray(outputs[2 * k], np.float64)
            y = np.asarray(outputs[2 * k + 1], np.float64)
            squared[k] += (np.sum((y - x) ** 2), np.sum(x ** 2))
    return [{"block": prefix, "distance": float(np.sqrt(diff / norm)) if norm > 0 else None}
            for (prefix, _, _), (diff, norm) in zip(pairs, squared)]


__all__ = ["distance_from_identity", "distance_travelled"]
