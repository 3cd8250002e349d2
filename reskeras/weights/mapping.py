"""Name tables: reskeras layer names <-> PyTorch state-dict names, one table per source.

torchvision's ``ResNet`` (and every torch port of the paper's code) names its
modules ``conv1, bn1, layer{s}.{b}.conv{k}, layer{s}.{b}.bn{k},
layer{s}.{b}.downsample.0/1, fc``; timm's ``ResNet`` (``resnet18`` ...
``resnet152`` and their ``.tv_in1k``, ``.a1_in1k``, ... weights) keeps exactly
those names. reskeras layers are ``stem_conv, stem_bn, stage{s}_block{b}_conv{k},
_bn{k}, _shortcut, _shortcut_bn, predictions`` (1-based blocks), so one table
maps every depth and both families (a CIFAR option-A net simply has no
``downsample``). timm's deep-stem and average-pool-shortcut variants
(``resnet50d``, ``conv1.0.weight``, ``downsample.2``) are other architectures;
:func:`describe_unsupported` names them in the error.

Each Keras variable maps to one tensor, with a layout change: conv kernels are
``(out, in, kh, kw)`` in PyTorch and ``(kh, kw, in, out)`` in Keras, dense
kernels are transposed, BatchNorm's ``weight, bias, running_mean, running_var``
are Keras's ``gamma, beta, moving_mean, moving_variance``.
"""

from __future__ import annotations

import re

import numpy as np

SOURCES = ("torchvision", "timm")
# Buffers PyTorch keeps that have no Keras counterpart (BatchNorm's step counter).
IGNORED_SUFFIXES = (".num_batches_tracked",)

_TORCHVISION = {
    "stem_conv": "conv1",
    "stem_bn": "bn1",
    "predictions": "fc",
    "block": "layer{stage}.{index}",  # index = reskeras block - 1
    "conv": "conv{k}",
    "bn": "bn{k}",
    "shortcut": "downsample.0",
    "shortcut_bn": "downsample.1",
}
# timm's ResNet keeps torchvision's module names for the standard ResNets.
TABLES = {"torchvision": _TORCHVISION, "timm": dict(_TORCHVISION)}

_BLOCK = re.compile(r"^stage(\d+)_block(\d+)_(conv(\d+)|bn(\d+)|shortcut|shortcut_bn)$")
_TORCH_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.")


def torch_module(layer_name: str, source: str) -> str | None:
    """The PyTorch module name of a reskeras layer, or ``None`` when the source has none.

    >>> torch_module("stage2_block1_shortcut_bn", "torchvision")
    'layer2.0.downsample.1'
    >>> torch_module("stem_conv", "timm")
    'conv1'
    """
    table = TABLES[source]
    if layer_name in ("stem_conv", "stem_bn", "predictions"):
        return table[layer_name]
    match = _BLOCK.match(layer_name)
    if not match:
        return None
    stage, block, part = int(match.group(1)), int(match.group(2)), match.group(3)
    prefix = table["block"].format(stage=stage, index=block - 1)
    if match.group(4):
        return f"{prefix}.{table['conv'].format(k=match.group(4))}"
    if match.group(5):
        return f"{prefix}.{table['bn'].format(k=match.group(5))}"
    return f"{prefix}.{table[part]}"


def variable_tensors(layer) -> list[tuple[object, str, str]]:
    """``(keras variable, tensor suffix, layout)`` for each variable of a weighted layer.

    ``layout`` is ``"conv"`` (OIHW -> HWIO), ``"dense"`` (transpose) or ``"same"``.
    Raises ValueError for a layer kind no torchvision/timm ResNet has.
    """
    from reskeras._backend import keras

    if isinstance(layer, keras.layers.Conv2D):
        pairs = [(layer.kernel, "weight", "conv")]
        if layer.use_bias:
            pairs.append((layer.bias, "bias", "same"))
        return pairs
    if isinstance(layer, keras.layers.BatchNormalization):
        pairs = []
        if layer.scale:
            pairs.append((layer.gamma, "weight", "same"))
        if layer.center:
            pairs.append((layer.beta, "bias", "same"))
        return pairs + [(layer.moving_mean, "running_mean", "same"),
                        (layer.moving_variance, "running_var", "same")]
    if isinstance(layer, keras.layers.Dense):
        pairs = [(layer.kernel, "weight", "dense")]
        if layer.use_bias:
            pairs.append((layer.bias, "bias", "same"))
        return pairs
    raise ValueError(f"`model` must consist of Conv2D, BatchNormalization and Dense layers with "
                     f"weights to take torchvision/timm weights. Received: layer {layer.name!r} "
                     f"({type(layer).__name__})")


def to_keras(array: np.ndarray, layout: str) -> np.ndarray:
    """A PyTorch tensor in the Keras variable's layout."""
    if layout == "conv" and array.ndim == 4:
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    if layout == "dense" and array.ndim == 2:
        return np.ascontiguousarray(array.T)
    return array


def torch_shape(keras_shape, layout: str) -> tuple[int, ...]:
    """The PyTorch shape that :func:`to_keras` turns into ``keras_shape``."""
    shape = tuple(int(d) for d in keras_shape)
    if layout == "conv" and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if layout == "dense" and len(shape) == 2:
        return (shape[1], shape[0])
    return shape


def is_classifier(key: str, source: str) -> bool:
    return key.startswith(TABLES[source]["predictions"] + ".")


def describe_unsupported(keys) -> str | None:
    """A sentence naming a known torch/timm ResNet variant reskeras does not build, if any."""
    keys = list(keys)
    if any(k.startswith("conv1.0.") for k in keys):
        return ("it has a deep 3-conv stem (conv1.0/conv1.1/...: timm's resnet*c/d/s variants), "
                "which reskeras does not build")
    if any(re.match(r"^layer\d+\.\d+\.downsample\.2\.", k) for k in keys):
        return ("its shortcuts average-pool before the projection (downsample.2: timm's "
                "resnet*d variants), which reskeras does not build")
    if any(".se." in k or ".attn." in k for k in keys):
        return "it has attention/squeeze-excitation modules (SE-ResNet), which reskeras does not build"
    if any(k.startswith(("head.", "stem.", "stages.")) for k in keys):
        return ("its names are not torchvision's ResNet names (head./stem./stages.: timm's "
                "ResNetV2 or another architecture)")
    return None


def block_counts(keys) -> tuple[int, ...]:
    """Blocks per ``layer{s}`` in a state dict (``(3, 4, 6, 3)`` for a ResNet-50)."""
    counts: dict[int, int] = {}
    for key in keys:
        match = _TORCH_BLOCK.match(key)
        if match:
            stage, index = int(match.group(1)), int(match.group(2))
            counts[stage] = max(counts.get(stage, 0), index + 1)
    return tuple(counts[s] for s in sorted(counts))


__all__ = ["IGNORED_SUFFIXES", "SOURCES", "TABLES", "block_counts", "describe_unsupported",
           "is_classifier", "to_keras", "torch_module", "torch_shape", "variable_tensors"]
