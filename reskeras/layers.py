"""Custom layers: only what Keras lacks, each registered and serializable.

Option-A shortcuts (He 2015, §4.2) subsample the identity and pad the missing
channels with zeros. Writing that as a ``Lambda`` would put Python in every
saved model (``.keras`` files would refuse ``safe_mode=True`` and SavedModels
would carry a pickled function), so it is a small registered layer instead.
"""

from __future__ import annotations

from reskeras._backend import keras
ops = keras.ops


@keras.saving.register_keras_serializable(package="reskeras")
class ZeroPadShortcut(keras.layers.Layer):
    """Parameter-free shortcut: spatial subsampling plus zero channel padding.

    ``y = pad_channels(x[:, ::stride, ::stride, :])``: the new channels are
    appended after the existing ones, so the identity part of the signal keeps
    its channel index. The output size of a strided conv (reference or
    ``"same"`` padding), ``ceil(size / stride)``, is exactly what the slice
    returns, and with reference padding the slice keeps the pixels the strided
    3x3 conv is centred on. The subsampling
    runs as a 1x1 average pool with that stride (bit-identical to the slice: the
    mean of one value is the value), which TensorFlow's oneDNN pooling kernels do
    with their gradient about 2.5x faster than ``StridedSlice`` and its
    gradient on CPUs (docs/benchmarks.md).

    Args:
        filters: output channels (at least the input channels).
        strides: spatial subsampling factor.

    Example:

    >>> import numpy as np
    >>> layer = ZeroPadShortcut(filters=4, strides=2)
    >>> layer(np.ones((1, 4, 4, 2), "float32")).shape
    TensorShape([1, 2, 2, 4])
    """

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels > self.filters:
            raise ValueError(f"ZeroPadShortcut cannot reduce channels: `filters` must be >= "
                             f"{channels} input channels. Received: filters={self.filters}")
        self.built = True

    def call(self, inputs):
        x = inputs
        if self.strides > 1:
            x = ops.average_pool(x, pool_size=1, strides=self.strides, padding="valid")
        extra = self.filters - ops.shape(inputs)[-1]
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])

    def compute_output_shape(self, input_shape):
        def shrink(size):
            return None if size is None else -(-size // self.strides)
        return (input_shape[0], shrink(input_shape[1]), shrink(input_shape[2]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


@keras.saving.register_keras_serializable(package="reskeras")
class BranchScale(keras.layers.Layer):
    """``y = alpha * x`` with one learnable scalar ``alpha``: SkipInit's residual-branch scale.

    De & Smith (2020) start ``alpha`` at 0, so every residual block starts as
    its shortcut, and train unnormalized residual nets deep; Fixup (Zhang et
    al. 2019) scales branches at initialization too. reskeras puts one on each
    residual branch, before the add (``stage{s}_block{b}_scale``).

    Args:
        initial: starting value of ``alpha``.

    Example:

    >>> import numpy as np
    >>> BranchScale(0.5)(np.ones((1, 2), "float32")).numpy().tolist()
    [[0.5, 0.5]]
    """

    def __init__(self, initial: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.initial = float(initial)

    def build(self, input_shape):
        self.alpha = self.add_weight(
            name="alpha", shape=(), initializer=keras.initializers.Constant(self.initial),
            trainable=True)
        self.built = True

    def call(self, inputs):
        return inputs * ops.cast(self.alpha, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "initial": self.initial}


@keras.saving.register_keras_serializable(package="reskeras")
class ScalarBias(keras.layers.Layer):
    """``y = x + b`` with one learnable scalar ``b`` starting at 0: Fixup's scalar biases.

    Fixup (Zhang et al. 2019) puts one before each conv and each activation of a
    residual branch, in place of what BatchNorm's shift would learn.

    Example:

    >>> import numpy as np
    >>> ScalarBias()(np.ones((1, 2), "float32")).numpy().tolist()
    [[1.0, 1.0]]
    """

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(), initializer="zeros", trainable=True)
        self.built = True

    def call(self, inputs):
        return inputs + ops.cast(self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="reskeras")
class NegativeInfinityPadding2D(keras.layers.ZeroPadding2D):
    """``ZeroPadding2D`` that pads with ``-inf`` instead of zeros.

    Before a "valid" max pool it reproduces PyTorch's ``MaxPool2d(padding=p)``
    (padded positions never win) on inputs of any sign: the v2 ImageNet stem
    pools a conv output that no ReLU has made non-negative.

    Example:

    >>> import numpy as np
    >>> NegativeInfinityPadding2D(1)(-np.ones((1, 1, 1, 1), "float32")).numpy().min().item()
    -inf
    """

    def call(self, inputs):
        (top, bottom), (left, right) = self.padding
        if self.data_format == "channels_first":
            pads = [[0, 0], [0, 0], [top, bottom], [left, right]]
        else:
            pads = [[0, 0], [top, bottom], [left, right], [0, 0]]
        return ops.pad(inputs, pads, constant_values=float("-inf"))


@keras.saving.register_keras_serializable(package="reskeras")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training step is one fused kernel.

    Keras 3 normalizes a training batch with separate moment, subtract and scale
    ops. For 4-D channels-last inputs this layer runs TensorFlow's
    ``FusedBatchNormV3`` instead (cuDNN on GPUs, oneDNN on CPUs, one XLA op on
    TPUs) and then updates the moving statistics exactly as Keras does (the
    biased batch variance, ``moving = momentum * moving + (1 - momentum) * batch``).
    Inference, masks, renorm, other ranks or axes, float64 and synchronized
    BatchNorm use the Keras code unchanged. Weights, config and outputs are those of the Keras
    layer (equal within float rounding, tested); ResNet-20 trains about 1.25x
    faster on 2 CPU cores (docs/benchmarks.md).
    """

    def _fused(self, inputs, training, mask) -> bool:
        # FusedBatchNormV3 has no float64 kernel: a float64 model keeps Keras's own code
        return (bool(training) and self.trainable and mask is None and not self.synchronized
                and not self.renorm and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and keras.backend.standardize_dtype(inputs.dtype) != "float64")

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, tf.float32)  # as Keras: BN computes in float32
        channels = x.shape[-1]
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        empty = tf.constant([], tf.float32)
        y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset, mean=empty, variance=empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        # the kernel returns the Bessel-corrected variance; Keras averages the biased one
        count = tf.cast(tf.size(x, out_type=tf.int64) // channels, tf.float32)
        variance = variance * ((count - 1.0) / tf.maximum(count, 1.0))
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum
                                    + variance * (1.0 - momentum))
        return tf.cast(y, self.compute_dtype)


@keras.saving.register_keras_serializable(package="reskeras")
class ShapedLeakyReLU(keras.layers.Layer):
    """``y = output_scale * leaky_relu(x, negative_slope)``: TAT's transformed activation.

    Tailored Activation Transformation (Zhang, Botev & Martens 2022) shapes a leaky ReLU
    for the depth of the net it sits in. The two numbers come from DeepMind's ``dks``
    library at build time (:mod:`reskeras.kernel_shaping`) and live in the layer's config,
    so a saved model needs neither ``dks`` nor a ``Lambda`` layer to load.

    Args:
        negative_slope: slope for ``x < 0`` (in [0, 1]).
        output_scale: factor on the output (> 0).

    Example:

    >>> import numpy as np
    >>> ShapedLeakyReLU(0.5, 2.0)(np.array([[-1.0, 3.0]], "float32")).numpy().tolist()
    [[-1.0, 6.0]]
    """

    def __init__(self, negative_slope: float, output_scale: float, **kwargs):
        super().__init__(**kwargs)
        for arg, value, low, high in (("negative_slope", negative_slope, 0.0, 1.0),
                                      ("output_scale", output_scale, 0.0, float("inf"))):
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not (low <= value <= high) or (arg == "output_scale" and value == 0)):
                bounds = "in [0, 1]" if arg == "negative_slope" else "> 0"
                raise ValueError(f"`{arg}` must be a number {bounds}. Received: {arg}={value!r}")
        self.negative_slope = float(negative_slope)
        self.output_scale = float(output_scale)

    def call(self, inputs):
        return ops.leaky_relu(inputs, negative_slope=self.negative_slope) * ops.cast(
            self.output_scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope,
                "output_scale": self.output_scale}


@keras.saving.register_keras_serializable(package="reskeras")
class PerLocationNormalization(keras.layers.Layer):
    """Per-location normalization (PLN; Martens et al. 2021, DKS §"Uniform q values").

    Appends a homogeneous channel of ``homog_scale`` to every pixel, then divides each
    pixel's channel vector by its root mean square, so that every location enters the
    net with a mean squared value of exactly 1 (the q value DKS and TAT assume). The
    appended channel keeps the information a plain normalization would lose (an all-zero
    pixel stays distinguishable). The same formula as
    ``dks.tensorflow.data_preprocessing.per_location_normalization`` with
    ``homog_mode="one"`` (tested side by side); inside the model, so serving gets it too.

    Args:
        homog_scale: value of the appended channel (dks's default is 1).

    Example:

    >>> import numpy as np
    >>> y = PerLocationNormalization()(np.zeros((1, 2, 2, 3), "float32")).numpy()
    >>> y.shape, y[0, 0, 0].tolist()
    ((1, 2, 2, 4), [0.0, 0.0, 0.0, 2.0])
    """

    def __init__(self, homog_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if (isinstance(homog_scale, bool) or not isinstance(homog_scale, (int, float))
                or not homog_scale > 0):
            raise ValueError(f"`homog_scale` must be a number > 0. "
                             f"Received: homog_scale={homog_scale!r}")
        self.homog_scale = float(homog_scale)

    def call(self, inputs):
        homog = ops.full_like(inputs[..., :1], self.homog_scale)
        x = ops.concatenate([inputs, homog], axis=-1)
        return x / ops.sqrt(ops.mean(ops.square(x), axis=-1, keepdims=True))

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        return (*input_shape[:-1], None if channels is None else channels + 1)

    def get_config(self):
        return {**super().get_config(), "homog_scale": self.homog_scale}
