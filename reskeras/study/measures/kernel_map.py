"""How alike a net's representations of different inputs are: its kernel, layer by layer.

Deep Kernel Shaping (Martens et al. 2021) and TAT (Zhang et al. 2022) start from one
observation: in a deep net without shortcuts or normalization, the representations of
any two inputs grow more and more alike with depth (their cosine similarity, the *C map*
iterated, goes to 1), and a net that starts unable to tell its inputs apart trains badly.
:func:`kernel_map` measures that at a net's start: for the stem and every block output,
the mean cosine similarity between the flattened representations of every pair of
distinct inputs, ``<f(x), f(x')> / (||f(x)|| ||f(x')||)`` (uncentred, as the C map is),
and the same for the pooled features the classifier reads (``head_pool``).

Example:

>>> import numpy as np
>>> from reskeras import build_plain
>>> rows = kernel_map(build_plain(20, input_shape=(8, 8, 1), kernel_shaping="tat"),
...                   np.random.RandomState(0).rand(16, 8, 8, 1).astype("float32"))
>>> rows[0]["layer"], rows[-1]["layer"], len(rows)
('input', 'head_pool', 12)
"""

from __future__ import annotations

import numpy as np

from reskeras._backend import keras


def _layers(model) -> list[str]:
    names = [layer.name for layer in model.layers]
    wanted = ["stem_relu"] + [n for n in names if n.startswith("stage") and n.endswith("_out")]
    return [n for n in wanted if n in names] + (["head_pool"] if "head_pool" in names else [])


def mean_cosine(features: np.ndarray) -> float | None:
    """Mean cosine similarity over pairs of distinct rows (``None`` if a row is all zero).

    >>> mean_cosine(np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]))
    0.3333333333333333
    """
    flat = np.asarray(features, np.float64).reshape(len(features), -1)
    norms = np.linalg.norm(flat, axis=1)
    if len(flat) < 2 or not np.all(norms > 0):
        return None
    unit = flat / norms[:, None]
    gram = unit @ unit.T
    count = len(flat)
    return float((gram.sum() - np.trace(gram)) / (count * (count - 1)))


def kernel_map(model, images, batch_size: int = 256) -> list[dict]:
    """``[{"layer", "mean_cosine"}]``: the input, then ``stem_relu``, every block output and
    ``head_pool``, at the model's current weights (inference mode).

    Args:
        model: a functional reskeras model.
        images: at least two model inputs (normalized as in training).
        batch_size: images per forward pass.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or len(images) < 2:
        raise ValueError(f"`images` must be a batch [N, H, W, C] with N >= 2. "
                         f"Received: images.shape={images.shape}")
    names = _layers(model)
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    parts = [[] for _ in names]
    for i in range(0, len(images), batch_size):
        outputs = probe(images[i:i + batch_size], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for k, output in enumerate(outputs):
            parts[k].append(np.asarray(output, np.float64).reshape(len(output), -1))
    rows = [{"layer": "input", "mean_cosine": mean_cosine(images)}]
    return rows + [{"layer": name, "mean_cosine": mean_cosine(np.concatenate(found))}
                   for name, found in zip(names, parts)]


__all__ = ["kernel_map", "mean_cosine"]
