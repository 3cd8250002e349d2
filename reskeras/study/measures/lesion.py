"""Lesion study (Veit et al. 2016): delete one block of a trained net and measure the test error.

Veit, Wilber and Belongie ("Residual networks behave like ensembles of
relatively shallow networks", 2016) delete single blocks of a trained ResNet at
test time: the error barely moves, while deleting a layer of a plain net (VGG)
ruins it. In a residual net a deleted block keeps its shortcut, so the block
output becomes the shortcut tensor (the second input of ``stage{s}_block{b}_add``)
passed through what follows the add (the v1 ``_out`` ReLU; v2's ``_out`` is an
Identity). In a plain net only blocks whose input and output shapes are equal
can go: ``_out`` then returns the block input.

A lesioned model is a new functional model on the *same* layer objects: no
weight is copied, and the graph is replayed node by node from the original,
so it works for v1 and v2, shortcut options A, B and C, BN or not, CIFAR and
ImageNet nets alike.

Example:

>>> import numpy as np
>>> from reskeras import build_resnet
>>> from reskeras.study.measures.lesion import lesion_blocks, lesion_study, lesioned_model
>>> model = build_resnet(8, input_shape=(8, 8, 1), classes=10)
>>> [b["block"] for b in lesion_blocks(model)]
['stage1_block1', 'stage2_block1', 'stage3_block1']
>>> lesioned_model(model, "stage2_block1").output_shape
(None, 10)
>>> images, labels = np.zeros((4, 8, 8, 1), "float32"), np.zeros(4, "int32")
>>> len(lesion_study(model, images, labels)["blocks"])
3
"""

from __future__ import annotations

import numpy as np

from reskeras._backend import keras
from reskeras.study.measures.block_graph import BlockGraph


def lesion_blocks(model: keras.Model) -> list[dict]:
    """The blocks of ``model`` that can be deleted, input to output.

    A residual block (one with a ``stage{s}_block{b}_add`` layer) can always be
    deleted, its shortcut stays; a plain block only when its output has the
    shape of its input.

    Args:
        model: a functional model with reskeras layer names.

    Returns:
        One dict per lesionable block: ``{"block": "stage1_block2",
        "kind": "residual" | "plain", "index": i}``, where ``index`` is the
        0-based position of the block among *all* blocks of the net, so plain
        and residual twins give the same index to the same block.

    Example:

    >>> from reskeras import build_plain
    >>> [b["index"] for b in lesion_blocks(build_plain(14, input_shape=(8, 8, 1)))]
    [0, 1, 3, 5]
    """
    return [entry for entry in BlockGraph(model).blocks() if entry["kind"] is not None]


def _substitution(graph: BlockGraph, block: dict):
    """(the ``_out`` node, the original tensor that replaces its input)."""
    prefix = block["block"]
    out_node = graph.node[f"{prefix}_out"]
    if block["kind"] == "plain":
        return out_node, graph.block_input(prefix)
    add_node = graph.node[f"{prefix}_add"]
    if out_node.input_tensors[0] is not add_node.outputs[0]:
        raise ValueError(f"`block` must end with its add followed by its `_out` layer. "
                         f"Received: block={prefix!r}")
    return out_node, add_node.input_tensors[1]


def lesioned_model(model: keras.Model, block: str | dict) -> keras.Model:
    """A new model that shares every layer of ``model`` but skips ``block``.

    The functional graph is replayed in topological order. Nodes upstream of
    the block keep their original tensors; the block's ``_out`` layer is called
    on the substitute (the shortcut tensor of a residual block, the block input
    of a plain one) and every layer downstream is called again on the new
    tensors. Layers of the deleted branch are not part of the new model.

    Args:
        model: a functional model with reskeras layer names.
        block: ``"stage{s}_block{b}"`` or an entry of :func:`lesion_blocks`.

    Returns:
        A ``keras.Model`` named ``{model.name}_minus_{block}`` whose weights
        are (a subset of) the very variables of ``model``.

    Raises:
        ValueError: ``block`` is not a lesionable block of ``model``.

    Example:

    >>> from reskeras import build_resnet
    >>> model = build_resnet(8, input_shape=(8, 8, 1), classes=10)
    >>> small = lesioned_model(model, "stage1_block1")
    >>> len(small.weights) < len(model.weights)
    True
    """
    name = block.get("block") if isinstance(block, dict) else block
    graph = BlockGraph(model)
    candidates = {entry["block"]: entry for entry in graph.blocks() if entry["kind"]}
    if name not in candidates:
        raise ValueError(f"`block` must be one of the lesionable blocks of {model.name!r} "
                         f"({', '.join(candidates)}). Received: block={block!r}")
    out_node, substitute = _substitution(graph, candidates[name])

    replaced = {}  # id(original tensor) -> new tensor, only where the graph changes

    def new(tensor):
        return replaced.get(id(tensor), tensor)

    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            if node is out_node:
                replaced[id(node.input_tensors[0])] = new(substitute)
            if not any(id(tensor) in replaced for tensor in node.input_tensors):
                continue
            args, kwargs = node.arguments.fill_in(
                {id(tensor): new(tensor) for tensor in node.arguments.keras_tensors})
            outputs = keras.tree.flatten(node.operation(*args, **kwargs))
            for old, fresh in zip(node.outputs, outputs):
                replaced[id(old)] = fresh
    outputs = keras.tree.map_structure(new, model.output)
    return keras.Model(model.input, outputs, name=f"{model.name}_minus_{name}")


def _check_batch_size(batch_size) -> None:
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) \
            or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. "
                         f"Received: batch_size={batch_size!r}")


def _error(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int) -> float:
    """1 - accuracy, in inference mode (BN uses its moving statistics, nothing is updated)."""
    predicted = []
    for start in range(0, len(images), batch_size):
        outputs = model(images[start:start + batch_size], training=False)
        predicted.append(np.argmax(keras.ops.convert_to_numpy(outputs), axis=-1))
    return float(np.mean(np.concatenate(predicted) != labels))


def lesion_study(model: keras.Model, images, labels, batch_size: int = 256) -> dict:
    """Test error of ``model`` and of each model with one block deleted.

    Args:
        model: a trained classifier with reskeras layer names whose output is
            ``[batch, classes]`` (probabilities or logits).
        images: normalized images ``[N, H, W, C]``, as the model was trained on
            (see :func:`reskeras.preprocessing.normalize`).
        labels: integer labels ``[N]`` (or one-hot ``[N, classes]``).
        batch_size: images per forward pass.

    Returns:
        ``{"baseline_error": float, "blocks": [{"block", "kind", "index",
        "error", "error_increase"}, ...]}`` with errors in [0, 1] and
        ``error_increase = error - baseline_error``. The weights and BN
        statistics of ``model`` are left as they were.

    Example:

    >>> import numpy as np
    >>> from reskeras import build_plain
    >>> model = build_plain(8, input_shape=(8, 8, 1), classes=10)
    >>> study = lesion_study(model, np.zeros((2, 8, 8, 1), "float32"), np.array([0, 1]))
    >>> study["baseline_error"] in (0.5, 1.0), [b["block"] for b in study["blocks"]]
    (True, ['stage1_block1'])
    """
    blocks = lesion_blocks(model)
    _check_batch_size(batch_size)
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise ValueError(f"`model` must output [batch, classes]. "
                         f"Received: output shape {model.output_shape!r}")
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = np.argmax(labels, axis=-1)
    if labels.ndim != 1 or len(labels) != len(images) or len(images) == 0:
        raise ValueError(f"`labels` must hold one label per image ({len(images)} images). "
                         f"Received: labels.shape={labels.shape}")
    baseline = _error(model, images, labels, batch_size)
    results = []
    for entry in blocks:
        error = _error(lesioned_model(model, entry), images, labels, batch_size)
        results.append({**entry, "error": error, "error_increase": error - baseline})
    return {"baseline_error": baseline, "blocks": results}


__all__ = ["lesion_blocks", "lesion_study", "lesioned_model"]
