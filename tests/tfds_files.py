"""TFDS's real builders fed local files: only the network is replaced.

``tfds.testing.mock_data`` replaces TFDS's builder itself, and so hid a crash
that every user with network hit (the cifar10 builder imports
``importlib_resources``, which TFDS 4.9.x does not declare: tensorflow/datasets#11212).
Here the builder runs for real: it parses files in the dataset's own published
format, writes TFRecords and metadata to ``data_dir``, and reskeras reads them
back through ``as_dataset``. Only ``DownloadManager.download_and_extract`` is
replaced (it returns the local folder) and, for code paths that check first
whether a download host resolves, ``socket.getaddrinfo``.
"""

from __future__ import annotations

import contextlib
import os
import socket
from unittest import mock

import numpy as np
import tensorflow_datasets as tfds

CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                  "truck")


def write_cifar10_binary(root, train_per_file: int = 8, test: int = 10, seed: int = 0):
    """The layout of cifar-10-binary.tar.gz, extracted under ``root``; returns the images.

    Each record of ``data_batch_{1..5}.bin`` and ``test_batch.bin`` is one label
    byte and 3,072 pixel bytes (the red, green and blue 32x32 planes, row-major).

    Returns:
        ``{"train": (images uint8 [N, 32, 32, 3], labels), "test": (...)}`` in file order.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-bin")
    os.makedirs(folder, exist_ok=True)
    written = {"train": [], "test": []}

    def write(name, count, split):
        labels = (np.arange(count) % 10).astype(np.uint8)  # every class in every file
        rng.shuffle(labels)
        planes = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(np.concatenate([labels[:, None], planes.reshape(count, -1)], 1).tobytes())
        written[split].append((planes.transpose(0, 2, 3, 1), labels.astype(np.int32)))

    for index in range(1, 6):
        write(f"data_batch_{index}.bin", train_per_file, "train")
    write("test_batch.bin", test, "test")
    with open(os.path.join(folder, "batches.meta.txt"), "w") as handle:
        handle.write("\n".join(CIFAR10_LABELS) + "\n\n")
    return {split: tuple(np.concatenate(parts) for parts in zip(*chunks))
            for split, chunks in written.items()}


@contextlib.contextmanager
def local_network(extracted):
    """Downloads "succeed" with the local folder ``extracted``; every host resolves."""
    def resolve(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port or 443))]

    with mock.patch.object(tfds.download.DownloadManager, "download_and_extract",
                           lambda self, urls: extracted), \
            mock.patch.object(socket, "getaddrinfo", resolve):
        yield


def prepare_cifar10(data_dir, files_dir, **sizes):
    """Prepares a tiny CIFAR-10 in ``data_dir`` with TFDS's own builder; returns the images."""
    written = write_cifar10_binary(files_dir, **sizes)
    with local_network(str(files_dir)):
        tfds.builder("cifar10", data_dir=str(data_dir)).download_and_prepare()
    return written
