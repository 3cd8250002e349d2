"""TFDS image classification datasets (``cifar10``, ``mnist``, ``imagenette``, ...).

The real TFDS path: ``tfds.builder(name, data_dir=...)``, ``download_and_prepare``
when the data is not there yet, ``as_dataset`` to read it. Splits that fit in
memory are read once; larger ones are streamed every epoch with a file order
drawn from ``(seed, epoch)``.
"""

from __future__ import annotations

import functools
import socket
import urllib.parse
import urllib.request

import numpy as np
import tensorflow as tf

from reskeras import preprocessing as prep
from reskeras.sources import DATASET_CHOICES
from reskeras.sources.split import DEFAULT_IMAGE_SIZE, Source, Split, fits_in_memory

# Flipping a digit makes another symbol (or none): these get pad+crop only.
NO_FLIP = frozenset({"mnist", "svhn_cropped", "emnist", "kmnist", "binarized_mnist"})


class DatasetUnavailableError(ValueError):
    """A TFDS dataset is not prepared in ``data_dir`` and could not be prepared here."""


def _how_to_provide(name: str) -> str:
    return (f"run `python -m tensorflow_datasets.scripts.download_and_prepare --datasets={name} "
            f"--data_dir=DIR` on a machine with network, copy DIR here or to gs://, and pass "
            f"--data-dir DIR")


def _cause(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0][:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _unresolvable_host(builder) -> str | None:
    """The first download host that does not resolve, or None (checked before any download).

    TFDS retries a failed connection 10 times with backoff: 204 s before it gives up
    on a machine without network (measured, cifar10 and mnist). A name that does not
    resolve fails in milliseconds, so checking first turns that wait into an answer.
    Behind a proxy the local resolver says nothing about reachability: no check then.
    """
    if urllib.request.getproxies():
        return None
    try:
        urls = list(builder.url_infos or ())
    except Exception:  # a builder without a checksums file: TFDS will say what it needs
        return None
    for host in sorted({urllib.parse.urlparse(url).hostname for url in urls} - {None}):
        try:
            socket.getaddrinfo(host, 443)
        except OSError as error:
            return f"{host} does not resolve ({_cause(error)})"
    return None


def ensure_prepared(builder, name: str) -> None:
    """Prepares ``name`` in the builder's data_dir, or raises one line naming the real cause."""
    if builder.is_prepared():
        return
    where = builder.data_dir_root
    host = _unresolvable_host(builder)
    if host:
        raise DatasetUnavailableError(
            f"dataset {name!r} is not prepared in {where} and cannot be downloaded: {host}: "
            f"{_how_to_provide(name)}")
    try:
        builder.download_and_prepare()
    except ImportError as error:
        module = getattr(error, "name", None) or "the missing module"
        raise DatasetUnavailableError(
            f"dataset {name!r}: TFDS's builder needs a module that is not installed "
            f"({_cause(error)}): `pip install {module}`, then run again") from error
    except OSError as error:  # requests' ConnectionError, socket and file errors are OSErrors
        raise DatasetUnavailableError(
            f"dataset {name!r} is not prepared in {where} and could not be downloaded "
            f"({_cause(error)}): {_how_to_provide(name)}") from error
    except Exception as error:  # checksums, manual downloads, a builder's own checks
        raise DatasetUnavailableError(
            f"dataset {name!r} could not be prepared in {where} ({_cause(error)}): "
            f"{_how_to_provide(name)}") from error


def name_error(name) -> ValueError:
    examples = ", ".join(repr(n) for n in DATASET_CHOICES if n not in ("digits", "synthetic"))
    return ValueError(
        "`dataset` must be 'digits', 'synthetic', 'folder:DIR' or the name of a TFDS image "
        "classification dataset (an 'image' and a ClassLabel 'label' feature), e.g. "
        f"{examples}. Received: dataset={name!r}")


def load(name: str, data_dir, image_size) -> Source:
    """The train and test splits of TFDS dataset ``name``, read into memory if they fit."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        raise name_error(name) from None
    features = builder.info.features
    found = dict(features.items()) if isinstance(features, tfds.features.FeaturesDict) else {}
    if not (isinstance(found.get("image"), tfds.features.Image)
            and isinstance(found.get("label"), tfds.features.ClassLabel)):
        raise ValueError(
            "`dataset` must be an image classification dataset: TFDS features 'image' (Image) and "
            f"'label' (ClassLabel). Received: dataset={name!r} with features {sorted(found)}")
    ensure_prepared(builder, name)
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
        if fits_in_memory(count, shape):
            arrays = prep.read_arrays(stream(split))
            sources[key] = Split(len(arrays[1]), arrays=arrays)
        else:
            sources[key] = Split(count, stream=functools.partial(stream, split))
    augment = "pad_crop" if name.split("/")[0].split(":")[0] in NO_FLIP else "pad_crop_flip"
    return Source(name, sources, tuple(found["label"].names), test_split, size, augment)


__all__ = ["DatasetUnavailableError", "NO_FLIP", "ensure_prepared", "load",
           "name_error"]
