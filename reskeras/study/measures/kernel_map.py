"""How alike a net's representations of different inputs are: its kernel, layer by layer.

Deep Kernel Shaping (Martens et al. 2021) and TAT (Zhang et al. 2022) start from one
observation: in a deep net without shortcuts or normalization, the representations of
any two inputs grow more and more alike with depth (their cosine similarity, the *C map*
iterated, goes to 1), and a net that starts unable to tell its inputs apart trains badly.
:func:`kernel_map` measures that at a net's start: for the stem and every block output,
the mean cosine similarity between the flattened representations of every pair of
distinct inputs, ``<f(x), f(x')> / (||f(x)|| ||f(x')||)`` (uncentred, as the C map is),
and the same for the pooled features the classifier reads (``head_pool``).

A mean alone can mislead: TAT *aims* for a high one (it maps two unrelated inputs to a
cosine of 0.9 at its output) while keeping different inputs distinguishable. What degenerates
in a deep plain net is the *map* from the input's similarity to the output's: every pair ends
alike, whatever it started as. :func:`c_map` measures that map for the pooled features: for
every pair of inputs, the cosine at the input against the cosine at the output, binned (the
C map of Deep Kernel Shaping, measured), with the spread of the output cosines and their rank
correlation with the input cosines (1: the output orders pairs by similarity as the input
does; near 0: it has forgotten which inputs were alike).

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


def _pair_cosines(features: np.ndarray) -> np.ndarray | None:
    flat = np.asarray(features, np.float64).reshape(len(features), -1)
    norms = np.linalg.norm(flat, axis=1)
    if not np.all(norms > 0):
        return None
    unit = flat / norms[:, None]
    upper = np.triu_indices(len(flat), k=1)
    return (unit @ unit.T)[upper]


def c_map(inputs, outputs, bins: int = 10) -> dict | None:
    """The map from input-pair cosine to output-pair cosine over every pair of rows.

    Returns ``{"input_cosine": [bin means], "output_cosine": [bin means], "spread": std of
    the output cosines, "rank_correlation": Spearman's rho between the two}``, the bins
    being quantiles of the input cosines; ``None`` when a row is all zero.

    >>> x = np.random.RandomState(0).randn(20, 5)
    >>> found = c_map(x, x)
    >>> round(found["rank_correlation"], 6), found["input_cosine"] == found["output_cosine"]
    (1.0, True)
    """
    from scipy.stats import spearmanr

    before, after = _pair_cosines(inputs), _pair_cosines(outputs)
    if before is None or after is None or len(before) < 2:
        return None
    edges = np.quantile(before, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, before, side="right") - 1, 0, bins - 1)
    kept = [k for k in range(bins) if np.any(which == k)]
    rho = spearmanr(before, after).correlation if np.std(after) > 0 else 0.0
    return {"input_cosine": [float(before[which == k].mean()) for k in kept],
            "output_cosine": [float(after[which == k].mean()) for k in kept],
            "spread": float(np.std(after)), "rank_correlation": float(rho)}


def kernel_map(model, images, batch_size: int = 256) -> list[dict]:
    """``[{"layer", "mean_cosine"}]``: the input, then ``stem_relu``, every block output and
    ``head_pool``, at the model's current weights (inference mode); the last row also has
    ``"c_map"``, :func:`c_map` from the inputs to it.

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
    rows += [{"layer": name, "mean_cosine": mean_cosine(np.concatenate(found))}
             for name, found in zip(names, parts)]
    rows[-1]["c_map"] = c_map(images, np.concatenate(parts[-1]))
    return rows


__all__ = ["c_map", "kernel_map", "mean_cosine"]
