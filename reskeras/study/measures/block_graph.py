"""The blocks of a functional reskeras model, read from its graph of layer calls.

Lesions (:mod:`reskeras.study.measures.lesion`) replay this graph without a
block; distances (:mod:`reskeras.study.measures.distances`) read each block's
input and output. Blocks are found by the stable layer names
``stage{s}_block{b}_*`` (``_out`` ends a block, ``_add`` marks a residual one).

Example:

>>> from reskeras import build_plain
>>> [(b["block"], b["kind"]) for b in BlockGraph(build_plain(8, input_shape=(8, 8, 1))).blocks()]
[('stage1_block1', 'plain'), ('stage2_block1', None), ('stage3_block1', None)]
"""

from __future__ import annotations

import re

from reskeras._backend import keras

_BLOCK_LAYER = re.compile(r"^(stage\d+_block\d+)_")


class BlockGraph:
    """One pass over the nodes of ``model``: its node per layer name, its nodes per block.

    Only ``model``'s own nodes count: its layers may also be called by other
    models (lesioned twins share them).
    """

    def __init__(self, model: keras.Model):
        if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
            raise ValueError(f"`model` must be a functional keras.Model. Received: model={model!r}")
        self.model = model
        self.node = {}
        self.block_nodes = {}
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.operation is None or node.is_input:
                    continue
                name = node.operation.name
                if name in self.node:
                    raise ValueError(f"`model` must call each layer once to be lesioned. "
                                     f"Received: layer {name!r} called more than once")
                self.node[name] = node
                match = _BLOCK_LAYER.match(name)
                if match:
                    self.block_nodes.setdefault(match.group(1), []).append(node)

    def block_input(self, prefix: str):
        """The one tensor that layers of ``prefix`` read but no layer of the block made."""
        start = prefix + "_"
        sources = {}
        for node in self.block_nodes[prefix]:
            for tensor in node.input_tensors:
                if not tensor._keras_history.operation.name.startswith(start):
                    sources[id(tensor)] = tensor
        if len(sources) != 1:
            raise ValueError(f"`block` must read exactly one tensor from outside the block. "
                             f"Received: block={prefix!r} reads {len(sources)}")
        return next(iter(sources.values()))

    def blocks(self) -> list[dict]:
        """Every block, input to output, with ``kind`` None where it cannot be deleted."""
        found = []
        for index, prefix in enumerate(p for p in self.block_nodes if f"{p}_out" in self.node):
            if f"{prefix}_add" in self.node:
                kind = "residual"
            else:
                same = (tuple(self.block_input(prefix).shape)
                        == tuple(self.node[f"{prefix}_out"].outputs[0].shape))
                kind = "plain" if same else None
            found.append({"block": prefix, "kind": kind, "index": index})
        if not found:
            raise ValueError("`model` must have blocks named stage{s}_block{b}_out (build it "
                             f"with reskeras). Received: model={self.model.name!r}")
        return found


__all__ = ["BlockGraph"]
