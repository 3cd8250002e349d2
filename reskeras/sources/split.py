"""One split of a dataset, held in memory or streamed, and what a source returns."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

# A split whose decoded uint8 images fit under this is held in memory (CIFAR-10 train: 150 MB,
# imagenette at 224: 1.4 GB). tf.data copies such tensors once per pipeline when it rewrites the
# graph (measured: ~6 s for 1.5 GB), so beyond this the split is streamed every epoch.
IN_MEMORY_LIMIT_BYTES = 2 * 2**30
STREAM_MEAN_EXAMPLES = 10_000  # streamed data: the mean is taken over this many images
DEFAULT_IMAGE_SIZE = 224  # sources whose images vary in size (imagenette, most folders)


def fits_in_memory(count: int, shape) -> bool:
    """Whether ``count`` decoded uint8 images of ``shape`` are held in memory."""
    return count * int(np.prod(shape)) <= IN_MEMORY_LIMIT_BYTES


class Split:
    """One split: uint8 images and int32 labels in memory, or a stream of them.

    Args:
        num_examples: examples in the split.
        arrays: ``(images uint8 [N, H, W, C], labels int32 [N])``, or ``None``.
        stream: for splits too large for memory, ``stream(order_seed)`` returns a
            ``tf.data.Dataset`` of ``(image uint8, label)``; ``order_seed`` is
            ``(seed, epoch)`` for a training epoch (the source may draw its file
            order from it) or ``None`` for the stored order.
    """

    def __init__(self, num_examples: int, arrays=None, stream: Callable | None = None):
        self.num_examples, self.arrays, self.stream = num_examples, arrays, stream
        self._tensors = None

    def tensors(self):
        # Created once, on the host: tf.data reads from there whatever device trains.
        if self._tensors is None:
            with tf.device("/CPU:0"):
                self._tensors = tuple(tf.constant(a) for a in self.arrays)
        return self._tensors


@dataclasses.dataclass(frozen=True)
class Source:
    """What a source module hands :func:`reskeras.data.load_dataset`.

    Attributes:
        name: the dataset's canonical name (``folder:`` names carry an absolute path).
        splits: ``{"train": Split, "test": Split}``.
        class_names: one name per label ``0 .. classes - 1``.
        test_split: the source split behind ``"test"``.
        resize: the side images were resized to (shorter side, central crop), or ``None``.
        augment: the training augmentation that keeps the class
            (``"pad_crop"`` for digits: a mirrored 2 is not a 2).
    """

    name: str
    splits: dict
    class_names: tuple
    test_split: str = "test"
    resize: int | None = None
    augment: str = "pad_crop_flip"


__all__ = ["DEFAULT_IMAGE_SIZE", "IN_MEMORY_LIMIT_BYTES", "STREAM_MEAN_EXAMPLES", "Source",
           "Split", "fits_in_memory"]
