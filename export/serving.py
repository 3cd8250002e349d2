"""What the serving graph computes, shared by the SavedModel and its reference batch.

:func:`probabilities` is the one function behind both serving signatures
(:mod:`export.savedmodel`) and the reference probabilities stored at export time
(:mod:`export.reference`), so the two compute the same thing; :func:`serving_resize`
says how ``serve_bytes`` resizes decoded images, which both the graph and the
reference's ``bytes_probabilities`` follow.

Example:

>>> serving_resize({"resize": 256, "interpolation": "bilinear"}, (224, 224, 3))["shorter_side"]
256
>>> serving_resize({}, (32, 32, 3))["every_image"]
False
"""

from __future__ import annotations

import tensorflow as tf

from reskeras.preprocessing import normalize


def serving_resize(preprocessing: dict, input_shape) -> dict | None:
    """How ``serve_bytes`` resizes decoded images, or ``None`` when it never does.

    Args:
        preprocessing: the normalization record baked into the export.
        input_shape: ``(H, W, C)`` of the model.

    Returns:
        ``{"shorter_side", "crop", "interpolation", "every_image"}``: the shorter
        side is resized to ``shorter_side`` and the central ``crop`` (``[H, W]``)
        taken, for every image (``every_image``) or only for images whose size is
        not ``H x W``.

    Raises:
        ValueError: the record resizes to a shorter side smaller than the crop.
    """
    height, width = int(input_shape[0]), int(input_shape[1])
    resize = preprocessing.get("resize")
    interpolation = preprocessing.get("interpolation") or "bilinear"
    if resize is not None and (resize != height or height != width):
        if resize < max(height, width):
            raise ValueError(f"`preprocessing` must have resize >= the model's input height and "
                             f"width ({height}x{width}: the central crop is taken from the "
                             f"resized image). Received: resize={resize!r}")
        return {"shorter_side": int(resize), "crop": [height, width],
                "interpolation": interpolation, "every_image": True}
    if height == width:
        return {"shorter_side": height, "crop": [height, width],
                "interpolation": interpolation, "every_image": False}
    return None


def ends_in_softmax(model) -> bool:
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", None) == "softmax"


def probabilities(model, images, preprocessing: dict) -> tf.Tensor:
    """float32 class probabilities of uint8 ``images``: normalize, model (inference), softmax.

    The one function behind both the SavedModel signatures and the reference
    probabilities, so the two compute the same thing. A model whose last
    layer is not a softmax (``classifier_activation=None``) gets one appended.
    """
    outputs = tf.cast(model(normalize(images, preprocessing), training=False), tf.float32)
    return outputs if ends_in_softmax(model) else tf.nn.softmax(outputs, axis=-1)


__all__ = ["ends_in_softmax", "probabilities", "serving_resize"]
