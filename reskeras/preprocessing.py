"""Normalization and augmentation: pure TensorFlow functions with no hidden state.

The normalization of a dataset is described by one JSON-serializable dict (see
:func:`make_preprocessing`). The trainer writes it into a run's
``config.json``; the exporter bakes it into the SavedModel from there, so
training and serving subtract the same mean.

Augmentation follows He et al. (2015, section 4.2): pad, take a random crop of
the original size, optionally flip left-right. Every random draw is a pure
function of ``(seed, epoch, position of the example in the epoch)``
(:func:`augmentation_table`), so a batch is bitwise the same whatever the
tf.data parallelism, global seed or resume point.

Example:

>>> import numpy as np
>>> from reskeras.preprocessing import make_preprocessing, mean_of_scaled, normalize
>>> images = np.full((2, 4, 4, 1), 255, np.uint8)
>>> pre = make_preprocessing(mean_of_scaled(images), augment="none", pad=0)
>>> pre["mean_kind"], float(normalize(images, pre).numpy().max())
('per_pixel', 0.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

AUGMENTS = ("pad_crop_flip", "pad_crop", "none")
MEAN_KINDS = ("per_pixel", "per_channel")
INTERPOLATIONS = ("bilinear", "bicubic")
SCALE = 1.0 / 255.0
# torchvision's ImageNet normalization (transforms.Normalize after ToTensor), also timm's default.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Beyond this side length a per-pixel mean is mostly noise and a large constant
# in every exported graph; ImageNet practice subtracts a per-channel mean.
PER_PIXEL_MAX_SIDE = 64
_PREPROCESSING_KEYS = ("input_dtype", "scale", "mean", "mean_kind", "augment", "pad")


def mean_of_scaled(images: np.ndarray, per_channel: bool = False) -> list:
    """The mean of ``images * SCALE`` over examples, as nested Python floats.

    Args:
        images: uint8 array ``[N, H, W, C]``.
        per_channel: average over examples and pixels (a list of ``C`` floats)
            instead of over examples only (an ``[H][W][C]`` nested list).

    Returns:
        A JSON-ready nested list of floats.
    """
    axes = (0, 1, 2) if per_channel else 0
    # float64 accumulation: a float32 running sum over 50k CIFAR images drifts in the 5th digit.
    return (np.mean(images, axis=axes, dtype=np.float64) * SCALE).tolist()


def make_preprocessing(mean: list, *, augment: str, pad: int, resize: int | None = None,
                       std: list | None = None,
                       interpolation: str | None = None) -> dict[str, Any]:
    """The normalization record of a dataset (the one source of truth).

    Args:
        mean: per-pixel (``[H][W][C]``) or per-channel (``[C]``) mean of the
            scaled training images, from :func:`mean_of_scaled`.
        augment: ``"pad_crop_flip"``, ``"pad_crop"`` or ``"none"``.
        pad: pixels of zero padding before the random crop.
        resize: the side the shorter side of a source image is resized to,
            before the central ``H x W`` crop of the model's input size is
            taken; ``None`` when images were fed at their stored size. Serving
            code needs it to prepare photos.
        std: per-channel divisor (``[C]`` positive floats) applied after the
            mean is subtracted, as torchvision's ``Normalize``; ``None`` (the
            default) divides by nothing and leaves the key out of the record.
        interpolation: ``"bilinear"`` or ``"bicubic"``, the filter of that
            resize; ``None`` (the default) leaves the key out, which means
            ``"bilinear"``.

    Returns:
        ``{"input_dtype", "scale", "mean", "mean_kind", "augment", "pad", "resize"}``,
        plus ``"std"`` and ``"interpolation"`` when given.

    Raises:
        ValueError: ``std`` or ``interpolation`` is invalid.
    """
    mean_kind = "per_channel" if np.ndim(mean) == 1 else "per_pixel"
    record = {"input_dtype": "uint8", "scale": SCALE, "mean": mean, "mean_kind": mean_kind,
              "augment": augment, "pad": int(pad), "resize": resize}
    # Keys only when given: records of older callers stay byte-identical.
    if std is not None:
        record["std"] = list(std) if isinstance(std, (list, tuple, np.ndarray)) else std
    if interpolation is not None:
        record["interpolation"] = interpolation
    check_preprocessing(record)
    if std is not None:
        record["std"] = [float(s) for s in record["std"]]  # JSON-ready, numpy scalars included
    return record


def imagenet_preprocessing(resize: int = 256, interpolation: str = "bilinear",
                           augment: str = "none", pad: int = 0) -> dict[str, Any]:
    """torchvision's ImageNet evaluation preprocessing as a reskeras record.

    Resize the shorter side to ``resize``, take the central crop of the
    model's input size (``Resize(256)`` + ``CenterCrop(224)``), then
    ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD``: what torchvision and timm
    ImageNet weights expect.

    Args:
        resize: the side the shorter side is resized to (default 256).
        interpolation: ``"bilinear"`` (default, torchvision's) or ``"bicubic"``
            (many timm models).
        augment: as for :func:`make_preprocessing` (default ``"none"``).
        pad: as for :func:`make_preprocessing` (default 0).

    Returns:
        The record, with per-channel ``mean`` and ``std``.

    Example:

    >>> pre = imagenet_preprocessing()
    >>> pre["resize"], pre["std"], pre["interpolation"]
    (256, [0.229, 0.224, 0.225], 'bilinear')
    """
    return make_preprocessing(list(IMAGENET_MEAN), augment=augment, pad=pad, resize=resize,
                              std=list(IMAGENET_STD), interpolation=interpolation)


def check_preprocessing(preprocessing: dict[str, Any]) -> None:
    """Raises ValueError unless ``preprocessing`` is a record from :func:`make_preprocessing`."""
    missing = [key for key in _PREPROCESSING_KEYS if key not in (preprocessing or {})]
    if not isinstance(preprocessing, dict) or missing:
        raise ValueError(f"`preprocessing` must be a dict with keys {list(_PREPROCESSING_KEYS)} "
                         f"(DatasetInfo.preprocessing). Received: preprocessing={preprocessing!r}")
    if preprocessing["mean_kind"] not in MEAN_KINDS or preprocessing["augment"] not in AUGMENTS:
        raise ValueError(f"`preprocessing` must have mean_kind in {MEAN_KINDS} and augment in "
                         f"{AUGMENTS}. Received: mean_kind={preprocessing['mean_kind']!r}, "
                         f"augment={preprocessing['augment']!r}")
    resize = preprocessing.get("resize")
    if resize is not None and (not isinstance(resize, (int, np.integer))
                               or isinstance(resize, bool) or resize < 1):
        raise ValueError(f"`preprocessing` must have resize None or a positive integer. "
                         f"Received: resize={resize!r}")
    std = preprocessing.get("std")
    if std is not None:
        channels = (np.shape(preprocessing["mean"]) or (None,))[-1]
        if (not isinstance(std, (list, tuple)) or len(std) != channels or not all(
                isinstance(s, (int, float, np.number)) and not isinstance(s, bool)
                and np.isfinite(s) and s > 0 for s in std)):
            raise ValueError(f"`preprocessing` must have std None or a list of {channels} "
                             f"positive numbers (one per channel of the mean). "
                             f"Received: std={std!r}")
    interpolation = preprocessing.get("interpolation")
    if interpolation is not None and interpolation not in INTERPOLATIONS:
        raise ValueError(f"`preprocessing` must have interpolation in {INTERPOLATIONS}. "
                         f"Received: interpolation={interpolation!r}")


def normalize(images, preprocessing: dict[str, Any]) -> tf.Tensor:
    """``images * scale - mean`` (divided by ``std`` when recorded) as float32.

    A pure TensorFlow function for one image or a batch: it works eagerly,
    inside ``tf.function`` and tf.data maps, and in an exported SavedModel (the
    mean and std become constants).

    Args:
        images: uint8 (or any numeric) ``[H, W, C]`` or ``[N, H, W, C]``.
        preprocessing: ``DatasetInfo.preprocessing``.

    Returns:
        A float32 tensor of the same shape.

    Example:

    >>> pre = {"input_dtype": "uint8", "scale": 0.5, "mean": [1.0], "mean_kind": "per_channel",
    ...        "augment": "none", "pad": 0}
    >>> normalize([[[4]]], pre).numpy().tolist()
    [[[1.0]]]
    """
    check_preprocessing(preprocessing)
    images = tf.cast(images, tf.float32)
    mean = tf.constant(np.asarray(preprocessing["mean"], np.float32))
    centered = images * tf.constant(preprocessing["scale"], tf.float32) - mean
    if preprocessing.get("std") is None:
        return centered
    return centered / tf.constant(np.asarray(preprocessing["std"], np.float32))


def check_int(arg: str, value, minimum: int) -> None:
    """Raises the house-style ValueError unless ``value`` is an integer >= ``minimum``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        rule = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{arg}` must be {rule}. Received: {arg}={value!r}")


def finish_pipeline(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Prefetches and sets the options every reskeras pipeline runs with."""
    options = tf.data.Options()
    options.deterministic = True
    # In-memory data has no files to shard: each worker keeps every k-th element instead.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def example_seed(seed, epoch, position) -> tf.Tensor:
    """The stateless seed (int64 ``[2]``) of one example: a pure function of its arguments."""
    base = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, tf.cast(position, tf.int64))


def augmentation_table(seed: int, epoch: int, examples: int, augment: str,
                       pad: int) -> np.ndarray | None:
    """The crop offsets and flips of every position of one epoch, drawn at once.

    Row ``p`` holds ``(dy, dx, flip)`` for the example at position ``p`` of the
    epoch: offsets into the image padded by ``pad`` on each side (``0..2*pad``)
    and 1 to flip left-right. A pure function of its arguments (NumPy's PCG64
    seeded by ``(seed, epoch)``), so a batch is augmented the same way whatever
    the tf.data parallelism, and a resumed epoch draws what it drew before.

    Args:
        seed, epoch: non-negative integers.
        examples: positions in the epoch.
        augment: one of :data:`AUGMENTS`.
        pad: pixels added on each side before cropping.

    Returns:
        int32 ``[examples, 3]``, or ``None`` for ``"none"``.
    """
    if augment == "none":
        return None
    rng = np.random.default_rng([seed, epoch, 1])  # the epoch's order uses [seed, epoch]
    table = np.zeros((examples, 3), np.int32)
    if pad > 0:
        table[:, :2] = rng.integers(0, 2 * pad + 1, size=(examples, 2))
    if augment == "pad_crop_flip":
        table[:, 2] = rng.integers(0, 2, size=examples)
    return table


def augment_batch(images: tf.Tensor, params: tf.Tensor, augment: str, pad: int) -> tf.Tensor:
    """Pads, crops back and (for ``"pad_crop_flip"``) flips each image of a batch.

    One call per batch: per-example ``map`` calls cost about 180 core-microseconds
    an image on 2 cores, a fifth of the CPU when training on 8x8 images
    (docs/benchmarks.md). ``images`` are already normalized, so the zero padding
    is the training-set mean colour rather than black (as in fb.resnet.torch).

    Args:
        images: float32 ``[B, H, W, C]`` with static ``H`` and ``W``.
        params: int32 ``[B, 3]`` rows of :func:`augmentation_table`.
        augment: one of :data:`AUGMENTS`.
        pad: pixels added on each side before cropping.

    Returns:
        A float32 tensor of the same shape.
    """
    if augment == "none":
        return images
    if pad > 0:
        height, width = images.shape[1], images.shape[2]
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        rows = params[:, :1] + tf.range(height)[None]
        cols = params[:, 1:2] + tf.range(width)[None]
        images = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2,
                           batch_dims=1)
    if augment == "pad_crop_flip":
        flip = params[:, 2] > 0
        images = tf.where(flip[:, None, None, None], tf.reverse(images, [2]), images)
    return images


def shuffle_blocks(ds: tf.data.Dataset, seed: tf.Tensor, block: int) -> tf.data.Dataset:
    """Permutes each run of ``block`` consecutive ``(image, label)`` pairs of a stream.

    The permutations are stateless, drawn from ``seed`` (int64 ``[2]``) and the
    block index: unlike ``Dataset.shuffle`` they do not depend on the global seed.
    """
    def permute(index, batch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(tf.shape(batch[1])[0]), tf.random.experimental.stateless_fold_in(seed, index))
        return tf.data.Dataset.from_tensor_slices(tuple(tf.gather(t, order) for t in batch))

    return ds.batch(block).enumerate().flat_map(permute)


def resize_square(images, size: int, crop=None, method: str = "bilinear") -> tf.Tensor:
    """Resizes the shorter side to ``size`` and crops the central ``crop`` (default ``size``).

    Works on one image ``[H, W, C]`` of any size or a batch; returns uint8
    (rounded, saturated). Antialiasing matters when shrinking photos
    (imagenette is ~350-500 px). ``resize_square(x, 256, crop=224)`` is
    torchvision's ``Resize(256)`` + ``CenterCrop(224)``.

    Args:
        images: ``[H, W, C]`` or ``[N, H, W, C]``, any numeric dtype.
        size: the side the shorter side is resized to.
        crop: side (int) or ``(height, width)`` of the central crop; default
            ``size x size``. A crop larger than the resized image is zero-padded.
        method: ``"bilinear"`` (default) or ``"bicubic"``.

    Returns:
        uint8 ``[crop_h, crop_w, C]`` (or with the batch axis).
    """
    if method not in INTERPOLATIONS:
        raise ValueError(f"`method` must be one of {INTERPOLATIONS}. Received: method={method!r}")
    crop_h, crop_w = (size, size) if crop is None else (
        (crop, crop) if isinstance(crop, (int, np.integer)) else tuple(crop))
    images = tf.convert_to_tensor(images)
    height = tf.cast(tf.shape(images)[-3], tf.float32)
    width = tf.cast(tf.shape(images)[-2], tf.float32)
    ratio = float(size) / tf.minimum(height, width)
    new_shape = [tf.maximum(size, tf.cast(tf.round(height * ratio), tf.int32)),
                 tf.maximum(size, tf.cast(tf.round(width * ratio), tf.int32))]
    resized = tf.image.resize(images, new_shape, method=method, antialias=True)
    cropped = tf.image.resize_with_crop_or_pad(resized, crop_h, crop_w)
    return tf.saturate_cast(tf.round(cropped), tf.uint8)


def read_arrays(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Reads a dataset of ``(uint8 image, label)`` pairs into numpy: images, int32 labels."""
    chunks = list(ds.batch(1024).prefetch(2).as_numpy_iterator())
    if not chunks:
        raise ValueError("`dataset` must have examples in every split. Received: an empty split")
    return (np.concatenate([c[0] for c in chunks]),
            np.concatenate([c[1] for c in chunks]).astype(np.int32))


def resize_array(images: np.ndarray, size: int, chunk: int = 1024) -> np.ndarray:
    """:func:`resize_square` over a uint8 numpy batch, in chunks to bound memory."""
    parts = [resize_square(images[i:i + chunk], size).numpy()
             for i in range(0, len(images), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, size, size, images.shape[-1]), np.uint8)


__all__ = ["AUGMENTS", "IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATIONS", "MEAN_KINDS",
           "PER_PIXEL_MAX_SIDE", "SCALE", "augment_batch", "augmentation_table", "check_int",
           "check_preprocessing", "example_seed", "finish_pipeline", "imagenet_preprocessing",
           "make_preprocessing", "mean_of_scaled", "normalize", "read_arrays", "resize_array",
           "resize_square", "shuffle_blocks"]
