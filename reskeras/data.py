"""Image classification data as deterministic, resumable tf.data pipelines.

:func:`load_dataset` reads ``digits`` (scikit-learn's 1,797 real 8x8 digits),
``synthetic``, a TFDS image classification dataset or ``folder:DIR`` (your own
PNG/JPEG files, one sub-folder per class; the sources live in
:mod:`reskeras.sources`) into an :class:`ImageData`:
a :class:`DatasetInfo` (with the ``preprocessing`` record the exporter bakes in)
and pipelines whose order and augmentation are pure functions of ``(seed,
epoch)``, so a resumed run sees the batches it would have seen. See docs/data.md.

Example:

>>> from reskeras.data import load_dataset
>>> data = load_dataset("digits")
>>> data.info.train_examples, data.info.test_examples, data.info.input_shape
(1437, 360, (8, 8, 1))
>>> images, labels = next(iter(data.train(128, seed=0, epoch=0)))
>>> images.shape.as_list(), images.dtype.name, labels.dtype.name
([128, 8, 8, 1], 'float32', 'int32')
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np
import tensorflow as tf

from reskeras import preprocessing as prep
from reskeras.preprocessing import normalize
from reskeras.sources import DATASET_CHOICES, embedded, folder, tfds_source
from reskeras.sources import split as split_module
from reskeras.sources.split import STREAM_MEAN_EXAMPLES, Split
from reskeras.sources.tfds_source import DatasetUnavailableError

_SHUFFLE_BLOCK_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the trainer, the run's config.json and the exporter need to know.

    Attributes:
        name: the dataset name given to :func:`load_dataset`.
        input_shape: ``(H, W, C)`` of the images fed to the model.
        classes: number of classes; labels are ``0 .. classes - 1``.
        class_names: one name per class.
        train_examples: examples in the training split.
        test_examples: examples in the evaluation split.
        augment: ``"pad_crop_flip"``, ``"pad_crop"`` or ``"none"``.
        pad: zero padding in pixels before the random crop (0 for ``"none"``).
        preprocessing: the normalization record (see :func:`normalize`).
        test_split: the source split behind ``"test"`` (``"validation"`` for imagenette).
    """

    name: str
    input_shape: tuple[int, int, int]
    classes: int
    class_names: tuple[str, ...]
    train_examples: int
    test_examples: int
    augment: str
    pad: int
    preprocessing: dict[str, Any]
    test_split: str = "test"

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.augment not in prep.AUGMENTS:
            raise ValueError(f"`augment` must be one of {prep.AUGMENTS}. "
                             f"Received: augment={self.augment!r}")
        if len(self.class_names) != self.classes:
            raise ValueError(f"`class_names` must have `classes` ({self.classes}) entries. "
                             f"Received: class_names={self.class_names!r}")
        prep.check_preprocessing(self.preprocessing)

    def to_config(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_config` inverts it exactly."""
        config = dataclasses.asdict(self)
        config["input_shape"] = list(self.input_shape)
        config["class_names"] = list(self.class_names)
        config["preprocessing"] = json.loads(json.dumps(self.preprocessing))
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "DatasetInfo":
        unknown = sorted(set(config) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"Unknown DatasetInfo fields {unknown}. Received: config={config!r}")
        return cls(**config)


class ImageData:
    """A loaded dataset: :attr:`info` plus deterministic pipeline factories."""

    def __init__(self, info: DatasetInfo, splits: dict[str, Split]):
        self.info, self._splits = info, splits

    def __repr__(self):
        return f"ImageData({self.info.name!r}, train={self.info.train_examples})"

    def with_augmentation(self, augment: str, pad: int = 4) -> "ImageData":
        """The same data with another training augmentation (``preprocessing.AUGMENTS``).

        For example ``load_dataset("synthetic").with_augmentation("pad_crop_flip")``
        gives generated data the CIFAR pipeline, as the throughput benchmark does.
        """
        if augment not in prep.AUGMENTS:
            raise ValueError(f"`augment` must be one of {', '.join(prep.AUGMENTS)}. "
                             f"Received: augment={augment!r}")
        pad = 0 if augment == "none" else pad
        prep.check_int("pad", pad, 0)
        preprocessing = {**self.info.preprocessing, "augment": augment, "pad": pad}
        info = dataclasses.replace(self.info, augment=augment, pad=pad,
                                   preprocessing=preprocessing)
        return ImageData(info, self._splits)

    def with_normalization(self, mean, std) -> "ImageData":
        """The same data normalized as ``(x * scale - mean) / std`` with per-channel values.

        For fine-tuning imported weights, which expect their own normalization
        (ImageNet's mean and std) rather than this dataset's mean.
        """
        channels = self.info.input_shape[-1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"`mean` and `std` must have one value per channel ({channels} for "
                             f"{self.info.name!r}). Received: mean={list(mean)!r}, "
                             f"std={list(std)!r}")
        preprocessing = {**self.info.preprocessing, "mean": [float(m) for m in mean],
                         "mean_kind": "per_channel", "std": [float(s) for s in std]}
        return ImageData(dataclasses.replace(self.info, preprocessing=preprocessing),
                         self._splits)

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """The raw uint8 images ``[N, H, W, C]`` and int32 labels of a split held in memory."""
        source = self._split(split)
        if source.arrays is None:
            raise ValueError(f"`split` must be held in memory (under "
                             f"{split_module.IN_MEMORY_LIMIT_BYTES} "
                             f"bytes) to read it as arrays. Received: split={split!r}")
        return source.arrays

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """Full batches per epoch: ``train_examples // global_batch_size`` (remainder dropped)."""
        prep.check_int("global_batch_size", global_batch_size, 1)
        steps = self.info.train_examples // global_batch_size
        if steps == 0:
            raise ValueError(
                f"`global_batch_size` must be at most the number of training examples "
                f"({self.info.train_examples} in {self.info.name!r}). "
                f"Received: global_batch_size={global_batch_size}")
        return steps

    def train(self, global_batch_size: int, *, seed: int, epoch: int, skip_batches: int = 0,
              augment: bool = True) -> tf.data.Dataset:
        """One epoch of ``(images float32 [B, H, W, C], labels int32 [B])``, full batches only.

        The order is a permutation drawn from ``(seed, epoch)``, and so are the
        crop and flip of every position (``augmentation_table``; whole batches
        are augmented in one call). So the same arguments give bitwise the same
        batches, and
        ``skip_batches=k`` gives exactly batches ``k, k+1, ...`` of the epoch.

        Args:
            global_batch_size: examples per batch over all replicas.
            seed: non-negative integer of the run.
            epoch: non-negative epoch index.
            skip_batches: batches of this epoch already trained on (resume).
            augment: ``False`` turns off pad/crop/flip (normalization stays).

        Returns:
            A ``tf.data.Dataset`` of ``steps_per_epoch - skip_batches`` batches.
        """
        steps = self.steps_per_epoch(global_batch_size)
        prep.check_int("seed", seed, 0)
        prep.check_int("epoch", epoch, 0)
        prep.check_int("skip_batches", skip_batches, 0)
        if skip_batches > steps:
            raise ValueError(f"`skip_batches` must be at most steps_per_epoch ({steps}). "
                             f"Received: skip_batches={skip_batches}")
        used, start = steps * global_batch_size, skip_batches * global_batch_size
        source = self._splits["train"]
        if source.arrays is not None:
            order = np.random.default_rng([seed, epoch]).permutation(source.num_examples)[:used]
            images, labels = source.tensors()
            ds = tf.data.Dataset.from_tensor_slices((order[start:], np.arange(start, used)))
            ds = ds.batch(global_batch_size, drop_remainder=True)
            ds = ds.map(lambda i, p: (tf.gather(images, i), tf.gather(labels, i), p))
        else:
            block = max(256, _SHUFFLE_BLOCK_BYTES // int(np.prod(self.info.input_shape)))
            ds = prep.shuffle_blocks(source.stream((seed, epoch)),
                                     prep.example_seed(seed, epoch, -1), block)
            ds = ds.take(used).enumerate().skip(start).map(lambda p, xy: (xy[0], xy[1], p))
            ds = ds.batch(global_batch_size, drop_remainder=True)
        kind = self.info.augment if augment else "none"
        shape, pre, pad = self.info.input_shape, self.info.preprocessing, self.info.pad
        table = prep.augmentation_table(seed, epoch, used, kind, pad)

        def prepare(images, labels, positions):
            images = normalize(tf.ensure_shape(images, (global_batch_size, *shape)), pre)
            if table is not None:
                images = prep.augment_batch(images, tf.gather(table, positions), kind, pad)
            return images, tf.cast(labels, tf.int32)

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return prep.finish_pipeline(ds)

    def evaluation(self, global_batch_size: int, *, split: str = "test",
                   pad: bool = False) -> tf.data.Dataset:
        """``(images, labels, weights float32)`` in fixed order, normalized, not augmented.

        Args:
            global_batch_size: examples per batch over all replicas.
            split: ``"test"`` or ``"train"`` (training error without augmentation).
            pad: fill the last batch with zero images, label 0 and weight 0 so
                every batch has the full static size (TPUs).

        Returns:
            A ``tf.data.Dataset`` with each example of ``split`` once, weight 1.
        """
        prep.check_int("global_batch_size", global_batch_size, 1)
        source = self._split(split)
        count = source.num_examples
        missing = -count % global_batch_size if pad else 0
        if source.arrays is not None:  # batches of indices: one gather per batch
            images, labels = source.tensors()
            # padded, every batch is full: drop_remainder only makes the batch size static
            ds = tf.data.Dataset.range(count + missing).batch(global_batch_size,
                                                               drop_remainder=pad)
            ds = ds.map(lambda i: (tf.gather(images, tf.minimum(i, count - 1)),
                                   tf.gather(labels, tf.minimum(i, count - 1)), i < count))
        else:
            ds = source.stream(None).map(lambda x, y: (x, y, True))
            if missing:
                spec = ds.element_spec
                filler = (tf.zeros(self.info.input_shape, spec[0].dtype),
                          tf.zeros((), spec[1].dtype), False)
                ds = ds.concatenate(tf.data.Dataset.from_tensors(filler).repeat(missing))
            ds = ds.batch(global_batch_size, drop_remainder=pad)
        shape, pre = (None, *self.info.input_shape), self.info.preprocessing

        def prepare(x, y, real):  # a whole batch: filler becomes zeros, label 0, weight 0
            x = normalize(tf.ensure_shape(x, shape), pre)
            return (tf.where(real[:, None, None, None], x, 0.0),
                    tf.where(real, tf.cast(y, tf.int32), 0), tf.cast(real, tf.float32))

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return prep.finish_pipeline(ds)

    def _split(self, split: str) -> Split:
        if split not in ("train", "test"):
            raise ValueError(f"`split` must be 'train' or 'test'. Received: split={split!r}")
        return self._splits[split]


def canonical_name(name: str) -> str:
    """The name runs record: ``folder:`` paths made absolute, other names unchanged."""
    return folder.canonical(name) if folder.is_folder(name) else name


def dataset_slug(name: str) -> str:
    """A short name for files and model names: ``cifar10``, ``digits``, ``flowers`` for
    ``folder:/data/flowers``."""
    if folder.is_folder(name):
        return os.path.basename(folder.canonical(name)[len(folder.PREFIX):]) or "folder"
    return name.split("/")[0].split(":")[0]


def load_dataset(name: str, *, data_dir: str | None = None, image_size: int | None = None,
                 seed: int = 0, synthetic_shape=(32, 32, 3), synthetic_classes: int = 10,
                 synthetic_examples: int = 1024) -> ImageData:
    """Loads a dataset and computes its normalization from the training split.

    Args:
        name: ``"digits"``, ``"synthetic"``, ``"folder:DIR"`` (PNG/JPEG files in
            one sub-folder per class, see :mod:`reskeras.sources.folder`) or a TFDS
            image classification name such as ``"cifar10"`` (``DATASET_CHOICES``
            lists the usual ones).
        data_dir: TFDS data directory, local or ``gs://`` (default: TFDS's own).
        image_size: resize to ``image_size x image_size`` (shorter side, then a
            central crop). Default: the stored size, or 224 when sizes vary.
        seed: seed of the synthetic data (the digits and folder splits are fixed).
        synthetic_shape, synthetic_classes, synthetic_examples: image shape,
            classes and training examples (test: a quarter) of ``"synthetic"``.

    Returns:
        An :class:`ImageData`.

    Raises:
        DatasetUnavailableError: a TFDS dataset is not prepared and could not be
            prepared here (the message names the real cause).
        ValueError: an argument is invalid, or a folder's images are (the message
            names the first offending file or folder).
    """
    if not isinstance(name, str) or not name:
        raise tfds_source.name_error(name)
    if image_size is not None:
        prep.check_int("image_size", image_size, 1)
    prep.check_int("seed", seed, 0)
    if name == "digits":
        source = embedded.digits(image_size)
    elif name == "synthetic":
        source = embedded.synthetic(synthetic_shape, synthetic_classes, synthetic_examples, seed,
                                    image_size)
    elif folder.is_folder(name):
        source = folder.load(name, image_size)
    else:
        source = tfds_source.load(name, data_dir, image_size)
    splits, train = source.splits, source.splits["train"]
    images = (train.arrays[0] if train.arrays is not None
              else prep.read_arrays(train.stream(None).take(STREAM_MEAN_EXAMPLES))[0])
    height, width, channels = (int(d) for d in images.shape[1:])
    augment = source.augment
    pad = 0 if augment == "none" else max(1, min(height, width) // 8)
    per_channel = max(height, width) > prep.PER_PIXEL_MAX_SIDE
    preprocessing = prep.make_preprocessing(prep.mean_of_scaled(images, per_channel),
                                            augment=augment, pad=pad, resize=source.resize)
    info = DatasetInfo(name=source.name, input_shape=(height, width, channels),
                       classes=len(source.class_names), class_names=source.class_names,
                       train_examples=train.num_examples,
                       test_examples=splits["test"].num_examples, augment=augment, pad=pad,
                       preprocessing=preprocessing, test_split=source.test_split)
    return ImageData(info, splits)


__all__ = ["DATASET_CHOICES", "DatasetInfo", "DatasetUnavailableError", "ImageData",
           "canonical_name", "dataset_slug", "load_dataset", "normalize"]
