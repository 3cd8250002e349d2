"""Stems, residual blocks and shortcuts: small pure functions ``x -> x``.

The only place in reskeras where layers are wired. Every layer gets a stable,
1-based name (see DESIGN.md); a plain twin runs the same code with the
shortcut and the add left out, so its layers carry the same names.

Choices that differ between frameworks, made explicit here:

* BatchNorm uses ``momentum=0.9, epsilon=1e-5`` (the values of the original
  Torch ResNet code and of PyTorch), not Keras's 0.99 / 1e-3. With 0.99 the
  moving statistics need hundreds of steps to forget their initial values,
  which misreports the test error of the short runs a study makes. The layer is
  ``reskeras.FusedBatchNormalization``, Keras's layer with a fused training
  kernel (same weights, config and results, faster).
* Convs use ``he_normal`` (He et al. 2015, fan-in), or with ``spec.init="dirac"``
  the identity plus scaled He noise (:mod:`reskeras.initializers`), and no bias
  when a BN follows; without BN (``batch_norm=False``) they have a bias.
* ``spec.kernel_shaping="tat"`` (plain CIFAR v1 nets without BN): the input goes
  through per-location normalization (``stem_pln``), every conv starts delta
  scaled-orthogonal with a zero bias, and every ReLU becomes TAT's leaky ReLU shaped for
  the net's depth by ``dks`` (:mod:`reskeras.kernel_shaping`), under the same layer name.
* ``spec.branch_scale`` puts a learnable scalar (``reskeras.layers.BranchScale``,
  ``stage{s}_block{b}_scale``) on each residual branch just before the add.
* ``spec.init="fixup"`` (residual v1 nets without BN) wires each block after Fixup
  (Zhang et al. 2019, §3; the same logits as the authors' CIFAR code on the same
  weights: ``benchmarks/fixup_equivalence.py``, docs/benchmarks.md): a scalar bias (``reskeras.layers.ScalarBias``) before each
  branch conv (``..._bias{k}a``) and each ReLU (``..._bias{k}b``), branch convs
  without their own bias, the last one starting at 0 and the others normal with
  He's standard deviation over the fan-out times ``L ** (-1 / (2m - 2))`` for ``L``
  blocks of ``m`` convs, then a multiplier starting at 1 (``..._scale``) and a last
  scalar bias; a projection or zero-pad shortcut reads the input plus
  ``..._bias1a``, an identity shortcut the raw input. The stem and shortcut convs
  keep He init and their per-channel biases (Fixup's stem has a scalar bias); the
  classifier starts at 0 and reads the pooled features plus a scalar ``head_bias``
  (``reskeras.builders``).
* v1 puts the stride on the 3x3 conv of a bottleneck (torchvision, "ResNet
  v1.5").
* Strided convs and the ImageNet stem pool pad as the reference ResNets do
  (``spec.padding="symmetric"``): ``(k - 1) // 2`` zeros on every side in a
  ``ZeroPadding2D`` named ``{conv}_pad`` (``stem_conv_pad``,
  ``stage2_block1_conv1_pad``, ``stem_pool_pad``), then a ``"valid"`` conv.
  TensorFlow's ``padding="same"`` pads only bottom/right for even inputs: same
  shapes, but torchvision's weights give logits 9% off, and a strided 3x3 conv
  then looks one pixel off the option-A shortcut's subsampled grid.
  ``spec.padding="tf_same"`` keeps it. Stride-1 convs use ``"same"`` (already
  symmetric for odd kernels).
* v2 (He 2016) blocks start with BN-ReLU; the projection shortcut reads that
  pre-activation, an identity or zero-pad shortcut reads the raw input, and
  the net ends with ``head_bn``/``head_relu``. The block output is a
  ``keras.layers.Identity`` named ``..._out`` so every variant exposes the same
  block-output name.
"""

from __future__ import annotations

from reskeras._backend import keras

from reskeras.initializers import conv_initializer
from reskeras.kernel_shaping import tat_leaky_relu
from reskeras.layers import (BranchScale, FusedBatchNormalization, NegativeInfinityPadding2D,
                             PerLocationNormalization, ScalarBias, ShapedLeakyReLU,
                             ZeroPadShortcut)
from reskeras.specs import EXPANSION, ArchSpec

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _reference_padding(spec: ArchSpec, strides: int) -> bool:
    return strides > 1 and spec.padding == "symmetric"


def conv(x, filters: int, kernel_size: int, strides: int, name: str, spec: ArchSpec, *,
         kernel_initializer=None, use_bias: bool | None = None):
    padding = "same"
    if _reference_padding(spec, strides):
        padding = "valid"
        if kernel_size > 1:  # a strided 1x1 conv reads the same pixels either way
            x = keras.layers.ZeroPadding2D((kernel_size - 1) // 2, name=f"{name}_pad")(x)
    if kernel_initializer is None:
        kernel_initializer = conv_initializer(spec.init, spec.init_noise)
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding,
        use_bias=not spec.batch_norm if use_bias is None else use_bias,
        kernel_initializer=kernel_initializer, name=name)(x)


def max_pool(x, spec: ArchSpec, after_relu: bool):
    """The ImageNet stem's 3x3/2 max pool; with reference padding, padded values never win."""
    if not _reference_padding(spec, 2):
        return keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    # After a ReLU every value is >= 0, so zeros pad exactly like PyTorch's -inf
    # (keras.applications does the same); before one (v2), pad with -inf.
    pad = keras.layers.ZeroPadding2D if after_relu else NegativeInfinityPadding2D
    x = pad(1, name="stem_pool_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")(x)


def batch_norm(x, name: str, spec: ArchSpec, zero_gamma: bool = False):
    """BatchNorm, or the input unchanged when the spec has no BN."""
    if not spec.batch_norm:
        return x
    return FusedBatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
        gamma_initializer="zeros" if zero_gamma else "ones", name=name)(x)


def relu(x, name: str, spec: ArchSpec):
    """A ReLU, or TAT's shaped leaky ReLU under ``kernel_shaping="tat"`` (same name)."""
    if spec.kernel_shaping == "tat":
        negative_slope, output_scale = tat_leaky_relu(spec)
        return ShapedLeakyReLU(negative_slope, output_scale, name=name)(x)
    return keras.layers.ReLU(name=name)(x)


def stem(x, spec: ArchSpec):
    """CIFAR: 3x3 conv. ImageNet: 7x7/2 conv then 3x3/2 max pool. v1 adds BN-ReLU.

    Under ``kernel_shaping="tat"`` the input first goes through per-location normalization
    (``stem_pln``), which TAT's q values assume.
    """
    if spec.kernel_shaping == "tat":
        x = PerLocationNormalization(name="stem_pln")(x)
    if spec.family == "cifar":
        x = conv(x, spec.stem_width, 3, 1, "stem_conv", spec)
    else:
        x = conv(x, spec.stem_width, 7, 2, "stem_conv", spec)
    if spec.version == "v1":
        x = batch_norm(x, "stem_bn", spec)
        x = relu(x, "stem_relu", spec)
    if spec.family == "imagenet":
        x = max_pool(x, spec, after_relu=spec.version == "v1")
    return x


def shortcut(x, preact, filters: int, strides: int, spec: ArchSpec, prefix: str):
    """The identity path of a block: identity, zero-pad (A) or 1x1 projection (B/C)."""
    changes_shape = strides != 1 or x.shape[-1] != filters
    if spec.shortcut == "A" or (spec.shortcut == "B" and not changes_shape):
        if not changes_shape:
            return x
        return ZeroPadShortcut(filters, strides, name=f"{prefix}_shortcut")(x)
    source = preact if spec.version == "v2" else x
    y = conv(source, filters, 1, strides, f"{prefix}_shortcut", spec)
    if spec.version == "v1":
        y = batch_norm(y, f"{prefix}_shortcut_bn", spec)
    return y


def _branch_layout(spec: ArchSpec, width: int, strides: int):
    """(filters, kernel, strides) of each conv of the residual branch."""
    if spec.block == "basic":
        return [(width, 3, strides), (width, 3, 1)]
    return [(width, 1, 1), (width, 3, strides), (width * EXPANSION["bottleneck"], 1, 1)]


def block(x, width: int, strides: int, spec: ArchSpec, prefix: str):
    """One basic or bottleneck block, v1 or v2, residual or plain.

    Args:
        x: input tensor.
        width: filters of the block (a bottleneck outputs 4x this).
        strides: 2 for the first block of a downsampling stage, else 1.
        spec: the architecture (block type, version, shortcut, BN, residual).
        prefix: ``stage{s}_block{b}``.
    """
    layout = _branch_layout(spec, width, strides)
    if spec.init == "fixup":
        return _fixup_block(x, layout, strides, spec, prefix)
    last = len(layout)
    zero_last = spec.zero_init_residual and spec.residual
    preact = None
    y = x
    for k, (filters, kernel, stride) in enumerate(layout, start=1):
        if spec.version == "v1":
            y = conv(y, filters, kernel, stride, f"{prefix}_conv{k}", spec)
            y = batch_norm(y, f"{prefix}_bn{k}", spec, zero_gamma=zero_last and k == last)
            if k < last:
                y = relu(y, f"{prefix}_relu{k}", spec)
        else:
            y = batch_norm(y, f"{prefix}_bn{k}", spec, zero_gamma=zero_last and k == last)
            y = relu(y, f"{prefix}_relu{k}", spec)
            if k == 1:
                preact = y
            y = conv(y, filters, kernel, stride, f"{prefix}_conv{k}", spec)
    if spec.residual:
        if spec.branch_scale is not None:
            y = BranchScale(spec.branch_scale, name=f"{prefix}_scale")(y)
        identity = shortcut(x, preact, layout[-1][0], strides, spec, prefix)
        y = keras.layers.Add(name=f"{prefix}_add")([y, identity])
    if spec.version == "v1":
        return relu(y, f"{prefix}_out", spec)
    return keras.layers.Identity(name=f"{prefix}_out")(y)


def _fixup_block(x, layout, strides: int, spec: ArchSpec, prefix: str):
    """A v1 residual block wired and initialized as Fixup's (see the module notes)."""
    convs, blocks = len(layout), sum(spec.depths)
    # He's variance over the fan-out (kh * kw * c_out, as the authors' CIFAR code draws it)
    # times L^(-1/(m-1)): a standard deviation L^(-1/(2m-2)) times He's
    inner = keras.initializers.VarianceScaling(
        scale=2.0 * blocks ** (-1.0 / (convs - 1)), mode="fan_out",
        distribution="untruncated_normal")
    shifted = y = ScalarBias(name=f"{prefix}_bias1a")(x)
    for k, (filters, kernel, stride) in enumerate(layout, start=1):
        if k > 1:
            y = ScalarBias(name=f"{prefix}_bias{k}a")(y)
        last = k == convs
        y = conv(y, filters, kernel, stride, f"{prefix}_conv{k}", spec,
                 kernel_initializer="zeros" if last else inner, use_bias=False)
        if not last:
            y = relu(ScalarBias(name=f"{prefix}_bias{k}b")(y), f"{prefix}_relu{k}", spec)
    y = BranchScale(1.0, name=f"{prefix}_scale")(y)
    y = ScalarBias(name=f"{prefix}_bias{convs}b")(y)
    identity = shortcut(shifted, None, layout[-1][0], strides, spec, prefix)
    if identity is shifted:  # Fixup adds the raw input when the shortcut is the identity
        identity = x
    y = keras.layers.Add(name=f"{prefix}_add")([y, identity])
    return relu(y, f"{prefix}_out", spec)


def stages(x, spec: ArchSpec):
    """All stages; the first block of every stage but the first downsamples by 2."""
    for s, (blocks, width) in enumerate(zip(spec.depths, spec.widths), start=1):
        for b in range(1, blocks + 1):
            x = block(x, width, 2 if (s > 1 and b == 1) else 1, spec, f"stage{s}_block{b}")
    if spec.version == "v2":
        x = batch_norm(x, "head_bn", spec)
        x = relu(x, "head_relu", spec)
    return x
