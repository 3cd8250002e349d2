"""``folder:DIR``: your own PNG and JPEG images, one sub-folder per class.

The layouts ``keras.utils.image_dataset_from_directory`` and TFDS's ImageFolder read:

- ``DIR/train/CLASS/...`` plus ``DIR/test/CLASS/...`` (or ``DIR/validation/``): those
  two splits; a test class must also be a training class;
- ``DIR/CLASS/...``: a held-out split drawn with a fixed seed, so every run, study
  and tuner trial on the folder sees the same one: 20% of each class (at least one
  image of a class that has two or more) is the test split.

Class names are the sub-folder names, sorted; labels follow that order. Files are
found at any depth below a class folder; names starting with ``.`` and files
without a ``.png``, ``.jpg`` or ``.jpeg`` extension are ignored. ``DIR`` may be
local or ``gs://`` (``tf.io.gfile``).

Every image is checked before a run starts: a file that is not a PNG or JPEG, or
does not decode, stops the run with one line naming it. Images are decoded by
TensorFlow (``tf.io.decode_image``), as the exported serving signature decodes
them: 1 channel if every image is grayscale, else 3 (alpha dropped). When all
images have one size they keep it; otherwise (or with ``image_size``) they are
resized as the exporter resizes (shorter side, then a central crop) to
``image_size``, 224 by default.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os

import numpy as np
import tensorflow as tf

from reskeras import preprocessing as prep
from reskeras.sources.split import DEFAULT_IMAGE_SIZE, Source, Split, fits_in_memory

PREFIX = "folder:"
EXTENSIONS = (".png", ".jpg", ".jpeg")
FORMATS = ("PNG", "JPEG")
TEST_SPLITS = ("test", "validation")
HELD_OUT_FRACTION = 0.2
SPLIT_SEED = 0  # the held-out split does not move with a run's seed
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def is_folder(name) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def canonical(name: str) -> str:
    """``folder:DIR`` with DIR absolute (local paths) and without a trailing slash.

    Run directories record this name, so a run resumed or exported from another
    working directory still finds its images.
    """
    root = name[len(PREFIX):]
    if not root.strip():
        raise ValueError("`dataset` must be folder:DIR with DIR a directory of class "
                         f"sub-folders. Received: dataset={name!r}")
    if "://" in root:
        return PREFIX + root.rstrip("/")
    return PREFIX + os.path.abspath(os.path.expanduser(root))


def _error(name: str, rule: str) -> ValueError:
    return ValueError(f"`dataset` {rule}. Received: dataset={name!r}")


def _images_by_class(directory: str) -> dict[str, list[str]]:
    """``{class folder: sorted image paths below it}`` for every visible sub-folder."""
    classes = {}
    for entry in sorted(tf.io.gfile.listdir(directory)):
        entry = entry.rstrip("/")
        path = os.path.join(directory, entry)
        if entry.startswith(".") or not tf.io.gfile.isdir(path):
            continue
        files = []
        for folder, subfolders, names in tf.io.gfile.walk(path):
            subfolders[:] = sorted(s for s in subfolders if not s.startswith("."))
            files += [os.path.join(folder, n) for n in sorted(names)
                      if not n.startswith(".") and n.lower().endswith(EXTENSIONS)]
        classes[entry] = files
    return classes


def _held_out(by_class: dict[str, list[str]]):
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = {}, {}
    for label in sorted(by_class):
        files = by_class[label]
        count = len(files)
        held = min(count - 1, max(1, round(HELD_OUT_FRACTION * count))) if count >= 2 else 0
        order = rng.permutation(count)
        test[label] = sorted(files[i] for i in order[:held])
        train[label] = sorted(files[i] for i in order[held:])
    return train, test


def _layout(name: str, root: str):
    """``(train {class: files}, test {class: files}, test split name)``, checked."""
    test_dir = next((s for s in TEST_SPLITS if tf.io.gfile.isdir(os.path.join(root, s))), None)
    has_train = tf.io.gfile.isdir(os.path.join(root, "train"))
    if test_dir and not has_train:  # "test" would silently become a class
        raise _error(name, f"with a {test_dir}/ folder must also hold train/ ({root}/train/CLASS/"
                           "...); without both, every sub-folder is a class")
    if test_dir and has_train:
        train = _images_by_class(os.path.join(root, "train"))
        test = _images_by_class(os.path.join(root, test_dir))
        unknown = sorted(set(test) - set(train))
        if unknown:
            raise _error(name, f"test classes must also be training classes: {test_dir}/ has "
                               f"{unknown[0]!r}, train/ does not")
        where = f"{root}/train"
    else:
        train, test, test_dir, where = *_held_out(_images_by_class(root)), "test", root
    populated = sorted(c for c in train if train[c])
    if not populated:
        raise _error(name, f"must hold class sub-folders of PNG/JPEG images "
                           f"({where}/CLASS/IMAGE.png|jpg|jpeg); {where} has none")
    if len(populated) < 2:
        raise _error(name, f"must hold at least 2 classes (sub-folders with images); {where} "
                           f"has 1: {populated[0]!r}")
    empty = sorted(set(train) - set(populated))
    if empty:
        raise _error(name, f"class folders must hold PNG/JPEG images; {where}/{empty[0]} has none")
    if not any(test.values()):
        raise _error(name, f"must leave images for the test split; {root} has none there")
    return train, test, test_dir


def _header(path: str):
    """``(height, width, grayscale)`` from the file's header, or the reason it is no image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with tf.io.gfile.GFile(path, "rb") as handle, Image.open(handle) as image:
            if image.format not in FORMATS:
                return f"is a {image.format} image, not PNG or JPEG"
            return image.height, image.width, image.mode in _GRAY_MODES
    except (UnidentifiedImageError, OSError, tf.errors.OpError) as error:
        return f"cannot be read as an image ({type(error).__name__})"


def _decode(path, channels: int, size: int | None, shape):
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    image = prep.resize_square(image, size) if size else image
    return tf.ensure_shape(image, shape)


def _pairs(paths, labels, channels, size, shape, order_seed=None) -> tf.data.Dataset:
    order = (np.arange(len(paths)) if order_seed is None
             else np.random.default_rng(list(order_seed)).permutation(len(paths)))
    ds = tf.data.Dataset.from_tensor_slices((paths[order], labels[order]))
    return ds.map(lambda p, y: (_decode(p, channels, size, shape), y),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _read(name, paths, labels, channels, size, shape, keep: bool):
    """Decodes every image once (arrays if ``keep``); a file that fails is named."""
    ds = _pairs(paths, labels, channels, size, shape)
    try:
        if keep:
            return prep.read_arrays(ds)
        ds.batch(256).reduce(np.int64(0), lambda n, batch: n + 1)
        return None
    except tf.errors.OpError:
        pass
    for path in paths:  # the rare failure: find the file, one eager decode at a time
        try:
            _decode(tf.constant(path), channels, size, shape)
        except tf.errors.OpError as error:
            cause = (error.message.strip().splitlines() or [""])[0][:160]
            raise _error(name, f"images must decode as PNG or JPEG; {path} does not "
                               f"({type(error).__name__}: {cause})") from None
    raise _error(name, "images must decode as PNG or JPEG; one did not (reading all again "
                       "found none failing)")


def load(name: str, image_size: int | None = None) -> Source:
    """The train and test splits of ``folder:DIR`` (see the module docstring)."""
    name = canonical(name)
    root = name[len(PREFIX):]
    if not tf.io.gfile.isdir(root):
        raise _error(name, "must be folder:DIR with DIR a directory of class sub-folders; "
                           f"{root} is not a directory")
    train, test, test_split = _layout(name, root)
    class_names = sorted(c for c in train if train[c])
    files = {"train": train, "test": test}
    listed = {key: (np.array([f for c in class_names for f in split.get(c, [])], dtype=object),
                    np.array([i for i, c in enumerate(class_names) for _ in split.get(c, [])],
                             np.int32))
              for key, split in files.items()}
    every = [str(p) for key in listed for p in listed[key][0]]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        headers = list(pool.map(_header, every))
    for path, header in zip(every, headers):
        if isinstance(header, str):
            raise _error(name, f"images must be PNG or JPEG files; {path} {header}")
    channels = 1 if all(gray for _, _, gray in headers) else 3
    sizes = {(h, w) for h, w, _ in headers}
    size = image_size or (DEFAULT_IMAGE_SIZE if len(sizes) > 1 else None)
    size = None if size and sizes == {(size, size)} else size
    shape = (size, size, channels) if size else (*next(iter(sizes)), channels)
    splits = {}
    for key, (paths, labels) in listed.items():
        paths = paths.astype(str)
        keep = fits_in_memory(len(paths), shape)
        arrays = _read(name, paths, labels, channels, size, shape, keep)
        splits[key] = (Split(len(paths), arrays=arrays) if keep else Split(
            len(paths), stream=functools.partial(_pairs, paths, labels, channels, size, shape)))
    return Source(name, splits, tuple(class_names), test_split, size, "pad_crop_flip")


__all__ = ["EXTENSIONS", "PREFIX", "canonical", "is_folder", "load"]
