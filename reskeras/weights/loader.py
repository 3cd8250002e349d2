"""Loading a torchvision/timm state dict into a reskeras model: all of it, or nothing.

Every tensor is matched and shape-checked before the first variable changes;
the first mismatch (a missing tensor, an extra one, a shape, a layer with no
counterpart, a classifier of another size) is one ``ValueError`` that names the
tensor, both shapes and what the file holds. If assigning fails anyway the
model's previous values are put back.
"""

from __future__ import annotations

import os

import numpy as np

from reskeras.specs import ArchSpec
from reskeras.weights import files, mapping


def _reference_padding_problem(model) -> str | None:
    from reskeras._backend import keras

    for layer in model.layers:
        strided = isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D)) and max(
            getattr(layer, "strides", (1,))) > 1
        size = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", (1,))
        if strided and max(size) > 1 and layer.padding == "same":
            return layer.name
    return None


def infer_spec(state: dict) -> tuple[ArchSpec | None, int | None, str]:
    """``(spec, classes, description)`` of the ResNet a state dict holds.

    ``spec`` is ``None`` when the names are not those of a torchvision-style
    ResNet; ``description`` then says why (for error messages).
    """
    keys = list(state)
    unsupported = mapping.describe_unsupported(keys)
    if unsupported:
        return None, None, f"The file is not a torchvision-style ResNet: {unsupported}"
    stem = state.get("conv1.weight")
    counts = mapping.block_counts(keys)
    classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else None
    if stem is None or stem.ndim != 4 or not counts:
        return None, classes, ("The file is not a torchvision-style ResNet (no conv1.weight or "
                               "no layer{s}.{b} blocks)")
    block = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    family = {(4, 7): "imagenet", (3, 3): "cifar"}.get((len(counts), int(stem.shape[2])))
    widths = []
    for stage in range(1, len(counts) + 1):
        conv = state.get(f"layer{stage}.0.conv1.weight")
        widths.append(int(conv.shape[0]) if conv is not None and conv.ndim == 4 else 0)
    downsample = [k for k in keys if ".downsample.0.weight" in k]
    firsts = {f"layer{s}.0.downsample.0.weight" for s in range(1, len(counts) + 1)}
    shortcut = "A" if not downsample else ("C" if set(downsample) - firsts else "B")
    text = (f"The file holds a {len(counts)}-stage {block} ResNet (blocks "
            f"{'-'.join(map(str, counts))}, widths {'-'.join(map(str, widths))}, "
            f"{stem.shape[2]}x{stem.shape[3]} stem on {stem.shape[1]} channels"
            + (f", {classes} classes)" if classes else ", no classifier)"))
    if family is None or 0 in widths:
        return None, classes, text
    try:
        spec = ArchSpec(family=family, block=block, depths=counts, widths=tuple(widths),
                        stem_width=int(stem.shape[0]), shortcut=shortcut)
    except ValueError:
        return None, classes, text
    return spec, classes, f"{text}: {spec.name}"


def check_source(source) -> str:
    if source not in (None, *mapping.SOURCES):
        raise ValueError(f"`source` must be None (infer), "
                         f"{' or '.join(map(repr, mapping.SOURCES))}. Received: source={source!r}")
    return source or "torchvision"


def plan_assignments(model, state: dict, *, source: str = "torchvision",
                     skip_classifier: bool = False, origin: str = "the file"
                     ) -> list[tuple[object, np.ndarray]]:
    """``(variable, value)`` for every variable of ``model``; ValueError on the first mismatch."""
    source = check_source(source)
    name = model.name
    _, file_classes, description = infer_spec(state)

    def fail(problem: str):
        raise ValueError(f"`weights` must match {name}: {problem}. {description}. "
                         f"Nothing was loaded. Received: weights={origin!r}")

    padded = _reference_padding_problem(model)
    if padded:
        fail(f"layer {padded} pads with TensorFlow's 'same' (built with padding='tf_same'), "
             f"while torchvision/timm pad symmetrically; build it with padding='symmetric'")
    if any(layer.name == "head_bn" for layer in model.layers):
        fail("it is a v2 (pre-activation) net, and torchvision/timm's ResNets are v1 "
             "(post-activation); build it with version='v1'")
    used, plan = set(), []
    for layer in model.layers:
        if not layer.weights:
            continue
        module = mapping.torch_module(layer.name, source)
        if module is None:
            fail(f"layer {layer.name} has no counterpart in a {source} ResNet (v2 "
                 f"pre-activation and other layers are not in torchvision/timm's v1 ResNets)")
        if layer.name == "predictions" and skip_classifier:
            continue
        for variable, suffix, layout in mapping.variable_tensors(layer):
            key = f"{module}.{suffix}"
            want = mapping.torch_shape(variable.shape, layout)
            if key not in state:
                fail(f"tensor {key!r} (for {layer.name}, shape {want}) is missing from {origin}")
            got = tuple(state[key].shape)
            if got != want:
                if layer.name == "predictions" and file_classes is not None:
                    raise ValueError(
                        f"`classes` must match the classifier of the weights ({file_classes} "
                        f"classes in fc.weight) unless include_top=False. Received: "
                        f"classes={int(model.output_shape[-1])} ({key} {got} vs {want} in "
                        f"{name}); nothing was loaded")
                fail(f"tensor {key!r} has shape {got} in {origin} but {layer.name} needs "
                     f"{want} (PyTorch layout)")
            used.add(key)
            plan.append((variable, mapping.to_keras(state[key], layout)))
    has_classifier = any(layer.name == "predictions" for layer in model.layers)
    for key in state:
        if key in used or key.endswith(mapping.IGNORED_SUFFIXES):
            continue
        if mapping.is_classifier(key, source) and (skip_classifier or not has_classifier):
            continue  # include_top=False or a new head: the file's classifier is dropped
        fail(f"tensor {key!r} (shape {tuple(state[key].shape)}) in {origin} has no "
             f"counterpart in the model")
    return plan


def assign(plan: list[tuple[object, np.ndarray]]) -> None:
    """Assigns every value; on any failure restores what the variables held before."""
    before = [np.array(variable.numpy()) for variable, _ in plan]
    try:
        for variable, value in plan:
            variable.assign(value.astype(variable.dtype, copy=False))
    except BaseException:
        for (variable, _), value in zip(plan, before):
            variable.assign(value)
        raise


def load_state(model, state: dict, *, source: str | None = None, skip_classifier: bool = False,
               origin: str = "the state dict") -> int:
    """Matches ``state`` against ``model`` and assigns it (all or nothing); returns the tensor count.

    The one place a read state dict goes into a model: :func:`load_weights`,
    ``build(weights=)``, ``reskeras convert`` and ``train(weights=)`` call it.
    """
    plan = plan_assignments(model, state, source=check_source(source),
                            skip_classifier=skip_classifier, origin=origin)
    assign(plan)
    return len(plan)


def load_weights(model, weights, *, source: str | None = None,
                 skip_classifier: bool = False) -> dict:
    """Loads a torchvision or timm ResNet state dict into a reskeras model.

    Args:
        model: a reskeras v1 model with ``padding="symmetric"`` (the default),
            e.g. ``build_resnet(50)``; a CIFAR net whose PyTorch twin uses the
            same module names works too.
        weights: a ``.safetensors`` file (no torch needed), a ``.pth`` file
            (needs torch) or an already read ``{name: array}`` dict.
        source: ``"torchvision"`` or ``"timm"``: which name table to use and
            record; ``None`` uses torchvision's (timm's standard ResNets have the
            same names).
        skip_classifier: leave ``predictions`` as it is and drop the file's
            ``fc`` (fine-tuning on another number of classes).

    Returns:
        What was loaded: ``{"source", "file", "sha256", "tensors", "classifier"}``.

    Raises:
        ValueError: one line naming the first offending tensor and both shapes;
            the model is unchanged.

    Example:

    >>> from reskeras import build_resnet
    >>> from reskeras.weights import load_weights
    >>> model = build_resnet(50)                                   # doctest: +SKIP
    >>> load_weights(model, "resnet50-11ad3fa6.safetensors")        # doctest: +SKIP
    """
    from reskeras._backend import keras

    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
    source_name = check_source(source)
    if isinstance(weights, dict):
        state = {key: np.asarray(value, np.float32) for key, value in weights.items()}
        origin, digest = "the state dict", None
    else:
        origin = files.check_path(weights)
        state = files.read_state_dict(origin)
        digest = files.sha256(origin)
    tensors = load_state(model, state, source=source_name, skip_classifier=skip_classifier,
                         origin=origin)
    has_classifier = any(layer.name == "predictions" for layer in model.layers)
    return {"source": source_name,
            "file": os.path.abspath(origin) if digest else None, "sha256": digest,
            "tensors": tensors,
            "classifier": ("loaded" if has_classifier and not skip_classifier
                           else "new" if has_classifier else "dropped")}


def state_dict(model, *, source: str = "torchvision") -> dict[str, np.ndarray]:
    """The inverse of :func:`load_weights`: the model's variables under PyTorch names.

    Save it with ``safetensors.numpy.save_file`` to hand a reskeras net to
    torchvision's ``resnet*().load_state_dict`` (values only; PyTorch's
    ``num_batches_tracked`` counters are not written: pass ``strict=False``).

    Example:

    >>> from reskeras import build_resnet
    >>> state = state_dict(build_resnet(20))
    >>> state["layer3.2.conv2.weight"].shape, state["fc.weight"].shape
    ((64, 64, 3, 3), (10, 64))
    """
    source = check_source(source)
    tensors = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        module = mapping.torch_module(layer.name, source)
        if module is None:
            raise ValueError(f"`model` must have only layers with a {source} counterpart. "
                             f"Received: layer {layer.name!r}")
        for variable, suffix, layout in mapping.variable_tensors(layer):
            value = np.asarray(variable.numpy(), np.float32)
            if layout == "conv":
                value = value.transpose(3, 2, 0, 1)
            elif layout == "dense":
                value = value.T
            tensors[f"{module}.{suffix}"] = np.ascontiguousarray(value)
    return tensors


__all__ = ["assign", "check_source", "infer_spec", "load_state", "load_weights",
           "plan_assignments",
           "state_dict"]
