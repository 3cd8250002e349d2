"""The reference batch stored in every export, so verification needs nothing else.

A few real test images of the run's dataset (``reskeras.data.load_dataset``)
when the dataset loads offline, else seeded random uint8 images; plus the
probabilities the *Keras* model gives them after ``reskeras.preprocessing.normalize``.
A fresh process later feeds the same images to the SavedModel and compares.
"""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf

from export.serving import probabilities, serving_resize
from reskeras.preprocessing import resize_square

REFERENCE_FILE = "reskeras_reference.npz"
REFERENCE_EXAMPLES = 8
RANDOM_SEED = 20150


def reference_images(source, examples: int = REFERENCE_EXAMPLES) -> tuple[np.ndarray, dict]:
    """``examples`` uint8 images ``[N, H, W, C]`` and a record of where they came from."""
    dataset = source.dataset or {}
    name = dataset.get("name")
    if name:
        from reskeras.data import load_dataset

        try:
            kwargs = {}
            if name == "synthetic":
                kwargs = {"synthetic_shape": tuple(dataset["shape"]),
                          "synthetic_classes": dataset["classes"],
                          "synthetic_examples": dataset["examples"], "seed": dataset["seed"]}
            data = load_dataset(name, data_dir=dataset.get("data_dir"),
                                image_size=dataset.get("image_size"), **kwargs)
            images = data.arrays("test")[0][:examples]
            if tuple(images.shape[1:]) == tuple(source.input_shape) and len(images):
                return images, {"kind": "dataset", "dataset": name,
                                "split": data.info.test_split, "examples": int(len(images))}
            reason = f"test images of shape {list(images.shape[1:])}"
        except (ValueError, KeyError, OSError, tf.errors.OpError) as error:
            # DatasetUnavailableError is a ValueError: no network, not prepared, too large
            reason = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    else:
        reason = "no dataset recorded for this model"
    rng = np.random.default_rng(RANDOM_SEED)
    images = rng.integers(0, 256, (examples, *source.input_shape), dtype=np.uint8)
    return images, {"kind": "random", "seed": RANDOM_SEED, "examples": examples,
                    "dataset": name, "reason": reason}


def keras_probabilities(model, images: np.ndarray, preprocessing: dict) -> np.ndarray:
    """The Keras model's probabilities for uint8 ``images``, run eagerly."""
    return np.asarray(probabilities(model, images, preprocessing))


def bytes_probabilities(source, images: np.ndarray) -> np.ndarray | None:
    """The Keras probabilities of ``images`` prepared as ``serve_bytes`` prepares every image.

    ``None`` unless ``serve_bytes`` resizes every image (torchvision's resize to
    256 + central crop, :func:`export.serving.serving_resize`): then a PNG of
    a reference image is resized in the graph, and its expected output is the
    Keras model on the image resized the same way, here with
    ``reskeras.preprocessing.resize_square`` (the one implementation).
    """
    resize = serving_resize(source.preprocessing, source.input_shape)
    if resize is None or not resize["every_image"]:
        return None
    prepared = resize_square(images, resize["shorter_side"], crop=resize["crop"],
                             method=resize["interpolation"]).numpy()
    return keras_probabilities(source.model, prepared, source.preprocessing)


def write_reference(path: str, images: np.ndarray, probabilities: np.ndarray,
                    bytes_probabilities: np.ndarray | None = None) -> None:
    """Stores the reference batch; ``bytes_probabilities`` when ``serve_bytes`` resizes."""
    buffer = io.BytesIO()
    extra = {} if bytes_probabilities is None else {
        "bytes_probabilities": bytes_probabilities,
        "bytes_class_ids": np.argmax(bytes_probabilities, axis=-1).astype(np.int64)}
    np.savez(buffer, images=images, probabilities=probabilities,
             class_ids=np.argmax(probabilities, axis=-1).astype(np.int64), **extra)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())


def read_reference(path: str) -> dict[str, np.ndarray]:
    with tf.io.gfile.GFile(path, "rb") as handle:
        with np.load(io.BytesIO(handle.read())) as data:
            return {key: data[key] for key in data.files}


__all__ = ["REFERENCE_FILE", "bytes_probabilities", "keras_probabilities", "read_reference",
           "reference_images", "write_reference"]
