"""Keras functional builders: ``build_resnet``, ``build_plain``, ``build_model``.

Arguments follow ``keras.applications`` where they overlap (``include_top``,
``weights``, ``input_tensor``, ``input_shape``, ``pooling``, ``classes``,
``classifier_activation``, ``name``). ``weights`` is a local torchvision/timm
file (:mod:`reskeras.weights`); by default every net starts from He
initialization, so plain and residual twins are compared from the same recipe.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from reskeras._backend import keras

from reskeras import blocks
from reskeras.layers import ScalarBias
from reskeras.specs import ArchSpec, get_spec, override, resolve_spec, scale

_DEFAULT_INPUT = {"cifar": (32, 32, 3), "imagenet": (224, 224, 3)}
_DEFAULT_CLASSES = {"cifar": 10, "imagenet": 1000}
_POOLINGS = (None, "avg", "max")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_input_shape(shape, spec: ArchSpec, arg: str) -> tuple:
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else shape
    if (not isinstance(shape, tuple) or len(shape) != 3
            or not all(d is None or (_is_int(d) and d >= 1) for d in shape)
            or shape[-1] is None):
        raise ValueError(f"`{arg}` must be (height, width, channels) with positive integers "
                         f"(height and width may be None). Received: {arg}={shape!r}")
    minimum = spec.total_stride
    if any(d is not None and d < minimum for d in shape[:2]):
        raise ValueError(
            f"`{arg}` must be at least {minimum}x{minimum} for the {spec.family} family "
            f"(it downsamples by {minimum}). Received: {arg}={shape!r}")
    return shape


def _inputs(spec: ArchSpec, input_tensor, input_shape):
    """(model inputs, first tensor) as keras.applications does."""
    if input_tensor is None:
        shape = _check_input_shape(
            _DEFAULT_INPUT[spec.family] if input_shape is None else input_shape,
            spec, "input_shape")
        tensor = keras.Input(shape=shape, name="input")
        return tensor, tensor
    if not keras.backend.is_keras_tensor(input_tensor):
        try:
            input_tensor = keras.Input(tensor=input_tensor, name="input")
        except Exception as error:  # noqa: BLE001 - re-raised with the argument named
            raise ValueError(f"`input_tensor` must be a Keras tensor or a backend tensor. "
                             f"Received: input_tensor={input_tensor!r}") from error
    _check_input_shape(tuple(input_tensor.shape[1:]), spec, "input_tensor")
    if input_shape is not None and tuple(input_shape) != tuple(input_tensor.shape[1:]):
        raise ValueError(f"`input_shape` must match `input_tensor` when both are given. "
                         f"Received: input_shape={input_shape!r}, "
                         f"input_tensor.shape={tuple(input_tensor.shape)!r}")
    return keras.utils.get_source_inputs(input_tensor), input_tensor


def _head(x, spec: ArchSpec, include_top: bool, pooling, classes, classifier_activation):
    if pooling not in _POOLINGS:
        raise ValueError(f"`pooling` must be None, 'avg' or 'max'. Received: pooling={pooling!r}")
    if include_top:
        if classes is None:
            classes = _DEFAULT_CLASSES[spec.family]
        if not _is_int(classes) or classes < 1:
            raise ValueError(f"`classes` must be an integer >= 1 when include_top=True. "
                             f"Received: classes={classes!r}")
        if classifier_activation is not None and not callable(classifier_activation):
            try:
                keras.activations.get(classifier_activation)
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"`classifier_activation` must be None, a callable or a Keras activation "
                    f"name such as 'softmax'. Received: "
                    f"classifier_activation={classifier_activation!r}") from error
    pool = {"max": keras.layers.GlobalMaxPooling2D}.get(pooling, keras.layers.GlobalAveragePooling2D)
    if include_top or pooling is not None:
        x = pool(name="head_pool")(x)
    if include_top:
        # float32 logits keep softmax and the loss stable under mixed precision.
        if spec.init == "fixup":  # Fixup: a scalar bias on the features, a zero classifier
            x = ScalarBias(name="head_bias")(x)
        # Fixup starts the classifier at 0 (the logits start equal)
        x = keras.layers.Dense(classes, activation=classifier_activation, dtype="float32",
                               kernel_initializer="zeros" if spec.init == "fixup"
                               else "glorot_uniform", name="predictions")(x)
    return x


def _ensure_recursion_limit(spec: ArchSpec) -> None:
    """Keras walks functional graphs recursively (build, save, load, clone).

    TensorFlow sets Python's limit to 3,000 on import, which ResNet-1202
    (4,208 layers) exceeds. The limit is only ever raised, to about three
    frames a layer; Python 3.11 frames of pure-Python recursion do not grow
    the C stack, so this is safe.
    """
    needed = 30 * sum(spec.depths) + 3000
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


def build(spec: ArchSpec, *, include_top: bool = True, input_tensor=None, input_shape=None,
          pooling: str | None = None, classes: int | None = None,
          classifier_activation: str | Callable | None = "softmax",
          name: str | None = None, weights=None, weights_source: str | None = None
          ) -> keras.Model:
    """Builds the functional model of ``spec`` (the one place that assembles a net).

    ``weights`` (a torchvision/timm ``.safetensors`` or ``.pth`` path) are
    loaded with :func:`reskeras.weights.load_weights`; with ``classes=None``
    the classifier takes the file's class count.
    """
    if not isinstance(spec, ArchSpec):
        raise TypeError(f"`spec` must be an ArchSpec. Received: spec={spec!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"`name` must be a non-empty string. Received: name={name!r}")
    state = None
    if weights is not None:
        from reskeras.weights import files, loader

        source = loader.check_source(weights_source)
        state = files.read_state_dict(weights)
        if include_top and classes is None and "fc.weight" in state:
            classes = int(state["fc.weight"].shape[0])
    _ensure_recursion_limit(spec)
    inputs, x = _inputs(spec, input_tensor, input_shape)
    x = blocks.stem(x, spec)
    x = blocks.stages(x, spec)
    x = _head(x, spec, include_top, pooling, classes, classifier_activation)
    model = keras.Model(inputs, x, name=name or spec.name)
    if state is not None:
        loader.load_state(model, state, source=source, origin=str(weights))
    return model


def build_resnet(depth: int, *, family: str | None = None, block: str | None = None,
                 width: int | None = None, version: str = "v1", shortcut: str | None = None,
                 residual: bool = True, batch_norm: bool | None = None,
                 zero_init_residual: bool = False, padding: str = "symmetric",
                 init: str | None = None, init_noise: float = 0.1,
                 branch_scale: float | None = None, kernel_shaping: str | None = None,
                 include_top: bool = True,
                 input_tensor=None, input_shape=None, pooling: str | None = None,
                 classes: int | None = None,
                 classifier_activation: str | Callable | None = "softmax",
                 name: str | None = None, weights=None,
                 weights_source: str | None = None) -> keras.Model:
    """Builds a ResNet (or, with ``residual=False``, its plain twin).

    Args:
        depth: weighted layers. CIFAR family: 6n+2 (basic blocks: 20, 32, 44,
            56, 110, 1202, ...) or 9n+2 (bottlenecks: 164, 1001, ...).
            ImageNet family: 18, 34 (basic), 50, 101, 152, 200 (bottleneck).
        family: ``"cifar"`` or ``"imagenet"``; ``None`` picks ImageNet for 18,
            34, 50, 101 and 152 and CIFAR otherwise.
        block: ``"basic"`` or ``"bottleneck"``; ``None`` follows the papers
            (bottleneck for 164 and 1001, basic for other 6n+2 depths).
        width: filters of the stem and first stage; each later stage doubles
            it. ``None`` means 16 (CIFAR) or 64 (ImageNet); WRN-16-8 is
            ``build_resnet(16, width=128, version="v2", shortcut="B")``.
        version: ``"v1"`` (post-activation) or ``"v2"`` (pre-activation).
        shortcut: ``"A"`` (zero-pad, no parameters), ``"B"`` (projection
            where the shape changes) or ``"C"`` (projection everywhere);
            ``None`` means A for CIFAR and B for ImageNet.
        residual: ``False`` drops every shortcut and add (the plain twin).
        batch_norm: ``False`` drops BatchNorm (convs get a bias). ``None`` means
            True, or False with ``kernel_shaping="tat"``.
        zero_init_residual: start each residual branch at zero by zeroing its
            last BN gamma (Goyal et al. 2017). Needs residual and BN.
        padding: ``"symmetric"`` pads strided convs and the ImageNet stem pool
            on both sides as Torch, torchvision, timm and keras.applications
            do (needed for their weights); ``"tf_same"`` uses TensorFlow's
            ``padding="same"`` (bottom/right only for even inputs).
        init: ``None`` (``"he_normal"``, or ``"delta_scaled_orthogonal"`` with
            ``kernel_shaping="tat"``), ``"he_normal"``, ``"dirac"`` (every conv starts as the identity
            on its first channels plus ``init_noise`` x He noise; DiracNets),
            ``"dirac_permuted"`` (the same, output channels permuted by a random
            cycle: orthogonal, far from the identity) or ``"delta_orthogonal"``
            (sqrt(2) x a random orthogonal centre tap; Xiao et al. 2018),
            ``"delta_scaled_orthogonal"`` (an orthogonal centre tap times
            ``max(sqrt(c_out / c_in), 1)``: DKS/TAT's kernels) or
            ``"fixup"`` (Zhang et al. 2019: residual nets without BN; branches
            start at 0 with scalar biases and a multiplier, see
            :mod:`reskeras.blocks`).
        init_noise: noise scale of the Dirac inits (default 0.1 of He's).
        branch_scale: ``None`` or the starting value of a learnable scalar on
            each residual branch (0 is SkipInit, De & Smith 2020).
        kernel_shaping: ``None`` or ``"tat"``: a plain CIFAR v1 net with no
            shortcut and no BatchNorm that trains deep by Tailored Activation
            Transformation (Zhang, Botev & Martens 2022): per-location normalized
            input, delta scaled-orthogonal kernels with zero biases, and a leaky
            ReLU shaped for the depth by DeepMind's ``dks`` (C(0) = 0.9). Needs
            ``residual=False`` (use :func:`build_plain`) and at least 13 activations
            in sequence (plain-14 or deeper). See docs/kernel_shaping.md.
        include_top: end with global average pooling and a ``classes``-way
            ``predictions`` layer.
        input_tensor: optional Keras or backend tensor to build on.
        input_shape: ``(height, width, channels)``; defaults to (32, 32, 3)
            for CIFAR and (224, 224, 3) for ImageNet. Height and width must be
            at least the total stride (4 for CIFAR, 32 for ImageNet).
        pooling: with ``include_top=False``: ``None`` (4D features),
            ``"avg"`` or ``"max"``.
        classes: output classes; defaults to 10 (CIFAR) or 1000 (ImageNet), or
            with ``weights`` to the file's classifier.
        classifier_activation: activation of ``predictions``; ``None`` gives
            logits.
        name: model name; defaults to the spec name (``resnet56``, ...).
        weights: ``None`` (He initialization) or the path of a local
            torchvision/timm state dict (``.safetensors``, or ``.pth`` with torch
            installed), loaded whole or not at all (see docs/weights.md). Not
            ``"imagenet"``: reskeras downloads nothing.
        weights_source: ``"torchvision"`` or ``"timm"`` (their ResNet names
            coincide; ``None`` means torchvision's table).

    Returns:
        A functional ``keras.Model`` whose layers have stable names.

    Example:

    >>> from reskeras import build_resnet
    >>> model = build_resnet(20, input_shape=(8, 8, 1), classes=10)
    >>> model.count_params() > 0, model.output_shape
    (True, (None, 10))
    """
    spec = resolve_spec(depth, family=family, block=block, width=width, version=version,
                        shortcut=shortcut, residual=residual, batch_norm=batch_norm,
                        zero_init_residual=zero_init_residual, padding=padding, init=init,
                        init_noise=init_noise, branch_scale=branch_scale,
                        kernel_shaping=kernel_shaping)
    return build(spec, include_top=include_top, input_tensor=input_tensor,
                 input_shape=input_shape, pooling=pooling, classes=classes,
                 classifier_activation=classifier_activation, name=name, weights=weights,
                 weights_source=weights_source)


def build_plain(depth: int, **kwargs) -> keras.Model:
    """The plain twin of :func:`build_resnet`: same layers and names, no shortcuts.

    Takes every argument of :func:`build_resnet` except ``residual``;
    ``kernel_shaping="tat"`` gives the shaped plain net of TAT (no BatchNorm either).

    Example:

    >>> from reskeras import build_plain
    >>> build_plain(56).name, build_plain(20, input_shape=(8, 8, 1), kernel_shaping="tat").name
    ('plain56', 'plain20_tat')
    """
    if "residual" in kwargs:
        raise TypeError("build_plain() takes no `residual` argument (it is always False). "
                        f"Received: residual={kwargs['residual']!r}")
    return build_resnet(depth, residual=False, **kwargs)


_ARCH_OVERRIDES = ("version", "shortcut", "batch_norm", "zero_init_residual", "padding", "init",
                   "init_noise", "branch_scale", "kernel_shaping")


def build_model(spec_or_name: ArchSpec | str | dict[str, Any], *, depth: int | None = None,
                width: int | None = None, **kwargs) -> keras.Model:
    """Builds from a registry name, an :class:`ArchSpec` or a spec config dict.

    Args:
        spec_or_name: ``"resnet56"``, ``"plain34"`` (see :func:`list_models`),
            an ``ArchSpec``, or ``ArchSpec.to_config()`` output (as stored in
            a run's config.json).
        depth, width: rescale the spec (:func:`reskeras.specs.scale`).
        **kwargs: ``version``, ``shortcut``, ``batch_norm``,
            ``zero_init_residual``, ``padding``, ``init``, ``init_noise``,
            ``branch_scale`` or ``kernel_shaping`` to override the spec (with
            ``kernel_shaping="tat"``, ``batch_norm`` and ``init`` follow it unless
            given), plus any of the
            ``keras.applications``-style arguments of :func:`build_resnet`.

    Example:

    >>> from reskeras import build_model
    >>> build_model("plain20", input_shape=(8, 8, 1)).name
    'plain20'
    """
    if isinstance(spec_or_name, str):
        spec = get_spec(spec_or_name)
    elif isinstance(spec_or_name, dict):
        spec = ArchSpec.from_config(spec_or_name)
    elif isinstance(spec_or_name, ArchSpec):
        spec = spec_or_name
    else:
        raise TypeError("`spec_or_name` must be a registry name, an ArchSpec or a spec dict. "
                        f"Received: spec_or_name={spec_or_name!r}")
    overrides = {key: kwargs.pop(key) for key in _ARCH_OVERRIDES if key in kwargs}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    spec = override(spec, **overrides)
    return build(scale(spec, depth=depth, width=width), **kwargs)
