"""Where a dataset's images come from: one module per kind of source.

Every source returns the train and test :class:`~reskeras.sources.split.Split`
of a dataset, its class names, the name of the split behind ``"test"`` and the
side images were resized to (or ``None``); :func:`reskeras.data.load_dataset`
is the one entry point that chooses the source and computes the normalization.

- :mod:`~reskeras.sources.embedded`: ``digits`` (scikit-learn) and ``synthetic``;
- :mod:`~reskeras.sources.tfds_source`: any TFDS image classification dataset;
- :mod:`~reskeras.sources.folder`: ``folder:DIR``, your own PNG/JPEG files.
"""

from reskeras.sources.split import IN_MEMORY_LIMIT_BYTES, STREAM_MEAN_EXAMPLES, Source, Split

# The usual names, for messages and docs; any TFDS image classification dataset loads.
DATASET_CHOICES = ("digits", "synthetic", "cifar10", "cifar100", "mnist", "fashion_mnist",
                   "svhn_cropped", "imagenette")

__all__ = ["DATASET_CHOICES", "IN_MEMORY_LIMIT_BYTES", "STREAM_MEAN_EXAMPLES", "Source", "Split"]
