"""Image classification data as deterministic, resumable tf.data pipelines.

:func:`load_dataset` reads ``digits`` (scikit-learn's 1,797 real 8x8 digits),
``synthetic`` or a TFDS image classification dataset into an :class:`ImageData`:
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
import functools
import json
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from reskeras import preprocessing as prep
from reskeras.preprocessing import normalize

DATASET_CHOICES = ("digits", "synthetic", "cifar10", "cifar100", "mnist", "fashion_mnist",
                   "svhn_cropped", "imagenette")
# A split whose decoded uint8 images fit under this is held in memory (CIFAR-10 train: 150 MB,
# imagenette at 224: 1.4 GB). tf.data copies such tensors once per pipeline when it rewrites the
# graph (measured: ~6 s for 1.5 GB), so beyond this the split is streamed from TFDS every epoch.
IN_MEMORY_LIMIT_BYTES = 2 * 2**30
STREAM_MEAN_EXAMPLES = 10_000  # streamed data: the mean is taken over this many images
_SHUFFLE_BLOCK_BYTES = 256 * 2**20
DEFAULT_IMAGE_SIZE = 224  # for TFDS datasets whose images vary in size (imagenette)
# Flipping a digit makes another symbol (or none): these get pad+crop only.
_NO_FLIP = frozenset({"digits", "mnist", "svhn_cropped", "emnist", "kmnist", "binarized_mnist"})


class DatasetUnavailableError(ValueError):
    """A TFDS dataset is not prepared in ``data_dir`` and could not be downloaded."""


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


class _Split:
    """One split: uint8 images and int32 labels in memory, or a TFDS stream of them."""

    def __init__(self, num_examples: int, arrays=None, stream: Callable | None = None):
        self.num_examples, self.arrays, self.stream = num_examples, arrays, stream
        self._tensors = None

    def tensors(self):
        # Created once, on the host: tf.data reads from there whatever device trains.
        if self._tensors is None:
            with tf.device("/CPU:0"):
                self._tensors = tuple(tf.constant(a) for a in self.arrays)
        return self._tensors


class ImageData:
    """A loaded dataset: :attr:`info` plus deterministic pipeline factories."""

    def __init__(self, info: DatasetInfo, splits: dict[str, _Split]):
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

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """The raw uint8 images ``[N, H, W, C]`` and int32 labels of a split held in memory."""
        source = self._split(split)
        if source.arrays is None:
            raise ValueError(f"`split` must be held in memory (under {IN_MEMORY_LIMIT_BYTES} "
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

    def _split(self, split: str) -> _Split:
        if split not in ("train", "test"):
            raise ValueError(f"`split` must be 'train' or 'test'. Received: split={split!r}")
        return self._splits[split]


def _name_error(name) -> ValueError:
    examples = ", ".join(map(repr, DATASET_CHOICES[2:]))
    return ValueError(
        "`dataset` must be 'digits', 'synthetic' or the name of a TFDS image classification "
        f"dataset (an 'image' and a ClassLabel 'label' feature), e.g. {examples}. "
        f"Received: dataset={name!r}")


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=0)
    return (x_train, y_train), (x_test, y_test), [str(c) for c in range(10)]


def _synthetic(shape, classes: int, examples: int, seed: int):
    """Each class is a random template; examples are template + uniform noise in [-64, 64]."""
    if not (isinstance(shape, (tuple, list)) and len(shape) == 3
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)):
        raise ValueError("`synthetic_shape` must be (height, width, channels) with positive "
                         f"integers. Received: synthetic_shape={shape!r}")
    prep.check_int("synthetic_classes", classes, 2)
    prep.check_int("synthetic_examples", examples, 4)
    templates = np.random.default_rng([seed, 0]).integers(0, 256, (classes, *shape),
                                                           dtype=np.int16)

    def draw(count, stream, chunk=4096):
        labels = np.random.default_rng([seed, stream]).permutation(np.arange(count) % classes)
        images = np.empty((count, *shape), np.uint8)
        # Chunks of int16 keep 50k CIFAR-sized images at ~0.5 s (float32 normals: ~8 s).
        for start in range(0, count, chunk):
            rng = np.random.default_rng([seed, stream, start])
            part = rng.integers(-64, 65, (len(labels[start:start + chunk]), *shape), dtype=np.int16)
            part += templates[labels[start:start + chunk]]
            images[start:start + chunk] = np.clip(part, 0, 255)
        return images, labels.astype(np.int32)

    return draw(examples, 1), draw(examples // 4, 2), [f"class_{c}" for c in range(classes)]


def _ensure_prepared(builder, name: str) -> None:
    if builder.is_prepared():
        return
    try:
        builder.download_and_prepare()
    except Exception as error:  # network, checksum, manual-download, missing extras: all "not here"
        cause = (str(error).strip().splitlines() or [""])[0][:200]
        raise DatasetUnavailableError(
            f"dataset {name!r} is not available in {builder.data_dir_root} and could not be "
            f"downloaded (no network? {type(error).__name__}: {cause}): run `python -m "
            f"tensorflow_datasets.scripts.download_and_prepare --datasets={name} --data_dir=DIR` "
            f"on a machine with network, copy DIR here or to gs://, and pass --data-dir DIR"
        ) from error


def _tfds(name: str, data_dir, image_size):
    """Builds the train and test :class:`_Split` of a TFDS dataset, reading it if it fits."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        raise _name_error(name) from None
    features = builder.info.features
    found = dict(features.items()) if isinstance(features, tfds.features.FeaturesDict) else {}
    if not (isinstance(found.get("image"), tfds.features.Image)
            and isinstance(found.get("label"), tfds.features.ClassLabel)):
        raise ValueError(
            "`dataset` must be an image classification dataset: TFDS features 'image' (Image) and "
            f"'label' (ClassLabel). Received: dataset={name!r} with features {sorted(found)}")
    _ensure_prepared(builder, name)
    splits = builder.info.splits  # empty under tfds.testing.mock_data: any split name is accepted
    test_split = next((s for s in ("test", "validation") if s in splits or not splits), None)
    if test_split is None or (splits and "train" not in splits):
        raise ValueError(f"`dataset` must have a 'train' and a 'test' or 'validation' split. "
                         f"Received: dataset={name!r} with splits {sorted(splits)}")
    height, width, channels = found["image"].shape
    size = image_size or (DEFAULT_IMAGE_SIZE if None in (height, width) else None)
    size = None if size == height == width else size
    shape = (size, size, channels) if size else (height, width, channels)

    def stream(split, file_seed=None):
        # A new file order each epoch, drawn without global seeds.
        sort_fn = file_seed and (lambda files: [files[i] for i in np.random.default_rng(
            list(file_seed)).permutation(len(files))])
        config = tfds.ReadConfig(try_autocache=False, experimental_interleave_sort_fn=sort_fn)
        ds = builder.as_dataset(split=split, shuffle_files=False, read_config=config)
        ds = ds.map(lambda ex: (ex["image"], ex["label"]))
        if size:
            ds = ds.map(lambda x, y: (prep.resize_square(x, size), y),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds

    sources = {}
    for key, split in (("train", "train"), ("test", test_split)):
        # Split sizes are unknown under tfds.testing.mock_data only: count the examples then.
        count = (splits[split].num_examples if split in splits
                 else int(stream(split).reduce(0, lambda n, _: n + 1)))
        if count * int(np.prod(shape)) <= IN_MEMORY_LIMIT_BYTES:
            arrays = prep.read_arrays(stream(split))
            sources[key] = _Split(len(arrays[1]), arrays=arrays)
        else:
            sources[key] = _Split(count, stream=functools.partial(stream, split))
    return sources, found["label"].names, test_split, size


def load_dataset(name: str, *, data_dir: str | None = None, image_size: int | None = None,
                 seed: int = 0, synthetic_shape=(32, 32, 3), synthetic_classes: int = 10,
                 synthetic_examples: int = 1024) -> ImageData:
    """Loads a dataset and computes its normalization from the training split.

    Args:
        name: ``"digits"``, ``"synthetic"`` or a TFDS image classification name
            such as ``"cifar10"`` (``DATASET_CHOICES`` lists the usual ones).
        data_dir: TFDS data directory, local or ``gs://`` (default: TFDS's own).
        image_size: resize to ``image_size x image_size`` (shorter side, then a
            central crop). Default: the stored size, or 224 when sizes vary.
        seed: seed of the synthetic data (the digits split is fixed).
        synthetic_shape, synthetic_classes, synthetic_examples: image shape,
            classes and training examples (test: a quarter) of ``"synthetic"``.

    Returns:
        An :class:`ImageData`.

    Raises:
        DatasetUnavailableError: a TFDS dataset is neither prepared nor downloadable.
        ValueError: an argument is invalid.
    """
    if not isinstance(name, str) or not name:
        raise _name_error(name)
    if image_size is not None:
        prep.check_int("image_size", image_size, 1)
    prep.check_int("seed", seed, 0)
    test_split, resize = "test", None
    if name in ("digits", "synthetic"):
        train, test, class_names = (_digits() if name == "digits" else _synthetic(
            synthetic_shape, synthetic_classes, synthetic_examples, seed))
        if image_size and (image_size, image_size) != train[0].shape[1:3]:
            resize = image_size
            train, test = [(prep.resize_array(x, image_size), y) for x, y in (train, test)]
        splits = {"train": _Split(len(train[1]), train), "test": _Split(len(test[1]), test)}
    else:
        splits, class_names, test_split, resize = _tfds(name, data_dir, image_size)
    source = splits["train"]
    images = (source.arrays[0] if source.arrays is not None
              else prep.read_arrays(source.stream(None).take(STREAM_MEAN_EXAMPLES))[0])
    height, width, channels = (int(d) for d in images.shape[1:])
    no_flip = name.split("/")[0].split(":")[0] in _NO_FLIP
    augment = "none" if name == "synthetic" else "pad_crop" if no_flip else "pad_crop_flip"
    pad = 0 if augment == "none" else max(1, min(height, width) // 8)
    per_channel = max(height, width) > prep.PER_PIXEL_MAX_SIDE
    preprocessing = prep.make_preprocessing(prep.mean_of_scaled(images, per_channel),
                                            augment=augment, pad=pad, resize=resize)
    info = DatasetInfo(name=name, input_shape=(height, width, channels), classes=len(class_names),
                       class_names=tuple(class_names), train_examples=source.num_examples,
                       test_examples=splits["test"].num_examples, augment=augment, pad=pad,
                       preprocessing=preprocessing, test_split=test_split)
    return ImageData(info, splits)


__all__ = ["DATASET_CHOICES", "DatasetInfo", "DatasetUnavailableError", "ImageData",
           "load_dataset", "normalize"]
