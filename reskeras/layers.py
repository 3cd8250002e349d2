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
    its channel index. The output size of a strided ``padding="same"`` conv,
    ``ceil(size / stride)``, is exactly what the slice returns.

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
        x = inputs[:, ::self.strides, ::self.strides, :] if self.strides > 1 else inputs
        extra = self.filters - ops.shape(inputs)[-1]
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])

    def compute_output_shape(self, input_shape):
        def shrink(size):
            return None if size is None else -(-size // self.strides)
        return (input_shape[0], shrink(input_shape[1]), shrink(input_shape[2]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}
