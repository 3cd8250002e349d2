"""Datasets and pipelines: exact splits, normalization, determinism, resume, augmentation, TFDS.

TFDS datasets go through TFDS's real builders on local files (tests/tfds_files.py);
``tfds.testing.mock_data`` is used only where the real files would be too large
(MNIST's builder insists on 60,000 images) or need a download format of their own
(imagenette), and then with the network faked as well.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from reskeras.sources import split as split_module
from reskeras.data import (DATASET_CHOICES, DatasetInfo, DatasetUnavailableError, ImageData,
                           load_dataset, normalize)
from tests.tfds_files import CIFAR10_LABELS, local_network, write_cifar10_binary

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", synthetic_shape=(6, 6, 3), synthetic_examples=400, seed=3)


@pytest.fixture(scope="module")
def cifar(tiny_cifar10):
    return load_dataset("cifar10", data_dir=tiny_cifar10[0])


def same_images(a, b) -> bool:
    """Equal as multisets of images (TFDS shuffles examples when it writes them)."""
    return sorted(x.tobytes() for x in a) == sorted(x.tobytes() for x in b)


def batches(ds):
    """All batches of a dataset as tuples of numpy arrays."""
    return [tuple(t.numpy() for t in batch) for batch in ds]


def stacked(ds):
    return tuple(np.concatenate(parts) for parts in zip(*batches(ds)))


def crop_matches(augmented, plain, pad):
    """(dy, dx, flipped) for every pad+crop(+flip) of ``plain`` that equals ``augmented``."""
    height, width = plain.shape[:2]
    padded = np.pad(plain, [(pad, pad), (pad, pad), (0, 0)])
    return [(dy, dx, flipped)
            for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for flipped in (False, True)
            if np.array_equal(augmented, (lambda c: c[:, ::-1] if flipped else c)(
                padded[dy:dy + height, dx:dx + width]))]


def test_digits_split_is_the_stratified_sklearn_split(digits):
    bunch = load_digits()
    images = np.round(bunch.images * 255 / 16).astype(np.uint8)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, bunch.target, test_size=0.2, stratify=bunch.target, random_state=0)
    info = digits.info
    assert (info.train_examples, info.test_examples) == (1437, 360)
    assert (info.input_shape, info.classes) == ((8, 8, 1), 10)
    assert (info.augment, info.pad) == ("pad_crop", 1)
    assert info.class_names == tuple("0123456789")
    for split, (x, y) in {"train": (x_train, y_train), "test": (x_test, y_test)}.items():
        got_x, got_y = digits.arrays(split)
        assert got_x.dtype == np.uint8 and got_y.dtype == np.int32
        np.testing.assert_array_equal(got_x, x)
        np.testing.assert_array_equal(got_y, y)
    totals = np.bincount(bunch.target)
    test_counts = np.bincount(digits.arrays("test")[1])
    assert np.all(np.abs(test_counts - 0.2 * totals) <= 1)  # stratified: 0.2 of each class
    assert np.array_equal(np.bincount(digits.arrays("train")[1]) + test_counts, totals)


def test_digits_mean_is_the_per_pixel_mean_of_the_scaled_training_images(digits):
    pre = digits.info.preprocessing
    x_train = digits.arrays("train")[0]
    mean = np.asarray(pre["mean"])
    assert pre["mean_kind"] == "per_pixel" and mean.shape == (8, 8, 1)
    np.testing.assert_allclose(mean, (x_train / 255.0).mean(axis=0), rtol=0, atol=1e-12)
    assert (pre["input_dtype"], pre["scale"]) == ("uint8", 1 / 255)
    assert (pre["augment"], pre["pad"], pre["resize"]) == ("pad_crop", 1, None)
    expected = x_train[:5].astype(np.float32) / np.float32(255) - mean.astype(np.float32)
    np.testing.assert_allclose(normalize(x_train[:5], pre).numpy(), expected, atol=1e-6)
    single = tf.function(lambda image: normalize(image, pre))(tf.constant(x_train[0]))
    assert single.dtype == tf.float32
    np.testing.assert_allclose(single.numpy(), expected[0], atol=1e-6)


def test_normalize_survives_a_savedmodel_round_trip(digits, tmp_path):
    pre = json.loads(json.dumps(digits.info.preprocessing))  # as read back from config.json
    module = tf.Module()
    module.serve = tf.function(lambda images: normalize(images, pre),
                               input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.uint8)])
    tf.saved_model.save(module, str(tmp_path / "normalize"))
    loaded = tf.saved_model.load(str(tmp_path / "normalize"))
    images = digits.arrays("test")[0][:4]
    served = loaded.serve(tf.constant(images)).numpy()
    assert served.tobytes() == normalize(images, pre).numpy().tobytes()


def test_info_round_trips_through_json(digits, cifar):
    for info in (digits.info, cifar.info):
        assert DatasetInfo.from_config(json.loads(json.dumps(info.to_config()))) == info
    with pytest.raises(ValueError, match=r"Unknown DatasetInfo fields \['colour'\]"):
        DatasetInfo.from_config({**digits.info.to_config(), "colour": 1})


def test_train_batches_have_static_shapes_and_valid_labels(digits):
    assert digits.steps_per_epoch(128) == 11
    ds = digits.train(128, seed=0, epoch=0)
    assert ds.element_spec[0].shape.as_list() == [128, 8, 8, 1]
    assert ds.element_spec[1].shape.as_list() == [128]
    got = batches(ds)
    assert len(got) == 11
    images, labels = got[0]
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert set(np.concatenate([b[1] for b in got])) == set(range(10))


def test_train_is_deterministic_per_seed_and_epoch(digits):
    first = batches(digits.train(256, seed=7, epoch=2))
    again = batches(digits.train(256, seed=7, epoch=2))
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        assert x1.tobytes() == x2.tobytes() and np.array_equal(y1, y2)
    other_epoch = stacked(digits.train(256, seed=7, epoch=3))
    other_seed = stacked(digits.train(256, seed=8, epoch=2))
    labels = np.concatenate([y for _, y in first])
    assert not np.array_equal(labels, other_epoch[1]) and not np.array_equal(labels, other_seed[1])


def test_skip_batches_yields_the_tail_of_the_epoch(digits):
    full = batches(digits.train(100, seed=1, epoch=4))
    tail = batches(digits.train(100, seed=1, epoch=4, skip_batches=9))
    assert len(full) == 14 and len(tail) == 5
    for (x1, y1), (x2, y2) in zip(full[9:], tail, strict=True):
        assert x1.tobytes() == x2.tobytes() and np.array_equal(y1, y2)
    assert batches(digits.train(100, seed=1, epoch=4, skip_batches=14)) == []


def test_epoch_is_a_permutation_of_normalized_training_examples(synthetic):
    raw, raw_labels = synthetic.arrays("train")
    assert synthetic.info.augment == "none" and synthetic.info.pad == 0
    assert len({x.tobytes() for x in raw}) == 400  # every synthetic image is unique
    normalized = normalize(raw, synthetic.info.preprocessing).numpy()
    index = {x.tobytes(): i for i, x in enumerate(normalized)}
    images, labels = stacked(synthetic.train(64, seed=0, epoch=0))
    positions = [index[x.tobytes()] for x in images]  # KeyError if not exactly normalize(raw)
    assert len(positions) == len(set(positions)) == 6 * 64  # 400 % 64 = 16 dropped
    np.testing.assert_array_equal(labels, raw_labels[positions])


def test_with_augmentation_gives_synthetic_data_the_cifar_pipeline(synthetic):
    augmented = synthetic.with_augmentation("pad_crop_flip", pad=2)
    assert (augmented.info.augment, augmented.info.pad) == ("pad_crop_flip", 2)
    assert augmented.info.preprocessing == {**synthetic.info.preprocessing,
                                            "augment": "pad_crop_flip", "pad": 2}
    assert synthetic.info.augment == "none"  # the original is unchanged
    plain_images, _ = stacked(synthetic.train(64, seed=1, epoch=0))
    images, _ = stacked(augmented.train(64, seed=1, epoch=0))
    matches = [crop_matches(a, p, 2) for a, p in zip(images, plain_images)]
    assert all(matches) and {m[0][2] for m in matches} == {False, True}
    with pytest.raises(ValueError, match=r"`augment` must be one of .*Received: augment='zoom'"):
        synthetic.with_augmentation("zoom")


def test_digit_augmentation_pads_one_and_crops_without_flipping(digits):
    plain_images, plain_labels = stacked(digits.train(512, seed=5, epoch=0, augment=False))
    images, labels = stacked(digits.train(512, seed=5, epoch=0))
    np.testing.assert_array_equal(labels, plain_labels)
    offsets = set()
    for augmented, plain in zip(images, plain_images):
        unflipped = [(dy, dx) for dy, dx, flip in crop_matches(augmented, plain, 1) if not flip]
        assert unflipped, "every digit must be an unflipped 1-pixel shift of itself"
        offsets.update(unflipped)
    assert len(offsets) == 9  # all shifts in [-1, 1]^2 occur


def test_cifar10_through_the_real_builder_is_the_files_content(cifar, tiny_cifar10):
    written = tiny_cifar10[1]
    info = cifar.info
    assert (info.input_shape, info.classes, info.class_names) == ((32, 32, 3), 10, CIFAR10_LABELS)
    assert (info.train_examples, info.test_examples, info.test_split) == (40, 10, "test")
    for split in ("train", "test"):
        images, labels = cifar.arrays(split)
        assert same_images(images, written[split][0])
        by_image = {x.tobytes(): y for x, y in zip(*written[split])}
        assert [by_image[x.tobytes()] for x in images] == labels.tolist()
    mean = np.asarray(info.preprocessing["mean"])
    np.testing.assert_allclose(mean, written["train"][0].mean(axis=0) / 255.0, atol=1e-12)


def test_cifar_gets_pad4_crop_and_flip(cifar):
    info = cifar.info
    assert (info.augment, info.pad) == ("pad_crop_flip", 4)
    assert np.asarray(info.preprocessing["mean"]).shape == (32, 32, 3)
    plain_images, _ = stacked(cifar.train(8, seed=0, epoch=0, augment=False))
    images, _ = stacked(cifar.train(8, seed=0, epoch=0))
    matches = [crop_matches(a, p, 4) for a, p in zip(images, plain_images)]
    assert all(len(m) == 1 for m in matches)  # random pixels: exactly one explanation each
    flips = {m[0][2] for m in matches}
    assert flips == {False, True} and any(m[0][:2] != (4, 4) for m in matches)


def test_mnist_mock_gets_no_flip_and_a_3_pixel_pad(tmp_path):
    with tfds.testing.mock_data(num_examples=24), local_network(str(tmp_path)):
        mnist = load_dataset("mnist")
    info = mnist.info
    assert (info.input_shape, info.augment, info.pad, info.class_names) == (
        (28, 28, 1), "pad_crop", 3, tuple("0123456789"))
    images, labels = next(iter(mnist.train(8, seed=0, epoch=0)))
    assert images.shape == (8, 28, 28, 1) and labels.dtype == tf.int32
    assert np.asarray(info.preprocessing["mean"]).shape == (28, 28, 1)


def test_streamed_split_gives_deterministic_epochs_of_the_same_examples(
        cifar, tiny_cifar10, monkeypatch):
    monkeypatch.setattr(split_module, "IN_MEMORY_LIMIT_BYTES", -1)
    streamed = load_dataset("cifar10", data_dir=tiny_cifar10[0])  # reads TFDS at every epoch
    with pytest.raises(ValueError, match=r"`split` must be held in memory"):
        streamed.arrays("train")
    epoch = batches(streamed.train(8, seed=2, epoch=1, augment=False))
    tail = batches(streamed.train(8, seed=2, epoch=1, skip_batches=1, augment=False))
    x, _, w = stacked(streamed.evaluation(8, pad=True))
    assert streamed.info == cifar.info
    raw = normalize(cifar.arrays("train")[0], cifar.info.preprocessing).numpy()
    index = {image.tobytes(): i for i, image in enumerate(raw)}
    positions = [index[image.tobytes()] for b in epoch for image in b[0]]
    assert len(positions) == len(set(positions)) == 40
    assert all(a[0].tobytes() == b[0].tobytes() for a, b in zip(epoch[1:], tail, strict=True))
    assert x.shape == (16, 32, 32, 3) and w.sum() == 10


def test_evaluation_unpadded_is_the_test_split_in_order(digits):
    raw, raw_labels = digits.arrays("test")
    got = batches(digits.evaluation(100))
    assert [len(b[1]) for b in got] == [100, 100, 100, 60]
    images, labels, weights = (np.concatenate(parts) for parts in zip(*got))
    np.testing.assert_allclose(images, normalize(raw, digits.info.preprocessing).numpy(), atol=0)
    np.testing.assert_array_equal(labels, raw_labels)
    assert weights.dtype == np.float32 and np.all(weights == 1)


def test_evaluation_padded_has_full_batches_and_zero_weight_filler(digits):
    ds = digits.evaluation(100, pad=True)
    assert ds.element_spec[0].shape.as_list() == [100, 8, 8, 1]
    images, labels, weights = stacked(ds)
    assert len(labels) == 400 and weights.sum() == 360 == digits.info.test_examples
    assert np.all(weights[:360] == 1) and not images[360:].any() and not labels[360:].any()
    train_images = stacked(digits.evaluation(500, split="train"))[0]
    np.testing.assert_array_equal(
        train_images, normalize(digits.arrays("train")[0], digits.info.preprocessing).numpy())


def test_an_unprepared_dataset_is_prepared_by_the_real_builder_on_first_load(tmp_path):
    written = write_cifar10_binary(tmp_path / "files", train_per_file=2, test=4, seed=1)
    with local_network(str(tmp_path / "files")):  # not prepared: load_dataset prepares it
        data = load_dataset("cifar10", data_dir=str(tmp_path / "tfds"))
    assert (tmp_path / "tfds" / "cifar10" / "3.0.2" / "dataset_info.json").is_file()
    assert (data.info.train_examples, data.info.test_examples) == (10, 4)
    assert same_images(data.arrays("train")[0], written["train"][0])
    again = load_dataset("cifar10", data_dir=str(tmp_path / "tfds"))  # no network needed now
    assert again.info == data.info


def _no_dns(host, *args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_unprepared_dataset_without_network_fails_at_once_naming_the_host(tmp_path,
                                                                           monkeypatch):
    # TFDS retries a refused download for 204 s (measured); a host that does not resolve
    # is known at once
    monkeypatch.setattr(socket, "getaddrinfo", _no_dns)
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as caught:
        load_dataset("mnist", data_dir=str(tmp_path))
    message = str(caught.value)
    assert time.monotonic() - start < 10
    assert isinstance(caught.value, ValueError) and "\n" not in message
    for fact in ("'mnist'", str(tmp_path), "storage.googleapis.com does not resolve",
                 "gaierror", "download_and_prepare --datasets=mnist", "--data-dir DIR"):
        assert fact in message
    assert not (tmp_path / "mnist").exists()


def test_network_failure_during_download_names_the_real_cause(tmp_path, monkeypatch):
    def refused(self, *args, **kwargs):
        raise ConnectionError("Max retries exceeded with url: /~kriz/cifar-10-binary.tar.gz")

    with local_network(str(tmp_path)):
        monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", refused)
        with pytest.raises(DatasetUnavailableError, match=(
                r"dataset 'cifar10' is not prepared in .* and could not be downloaded "
                r"\(ConnectionError: Max retries exceeded .*\): run `python -m ")) as caught:
            load_dataset("cifar10", data_dir=str(tmp_path))
    assert isinstance(caught.value.__cause__, ConnectionError)


MISSING_MODULE = """
import sys
sys.modules["importlib_resources"] = None  # `import importlib_resources` fails, as uninstalled
from reskeras.data import DatasetUnavailableError, load_dataset
from tests.tfds_files import local_network, write_cifar10_binary
write_cifar10_binary(sys.argv[1] + "/files", train_per_file=1, test=2)
with local_network(sys.argv[1] + "/files"):
    try:
        load_dataset("cifar10", data_dir=sys.argv[1] + "/tfds")
    except DatasetUnavailableError as error:
        print("ERROR", error)
"""


def test_a_module_the_builder_lacks_is_named_not_blamed_on_the_network(tmp_path):
    # tensorflow/datasets#11212: TFDS's builder imports importlib_resources (lazily, once per
    # process, hence a fresh process) while it prepares; without it every download crashed
    result = subprocess.run([sys.executable, "-c", MISSING_MODULE, str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    [message] = [line[6:] for line in result.stdout.splitlines() if line.startswith("ERROR ")]
    assert "network" not in message
    assert message.startswith("dataset 'cifar10': TFDS's builder needs a module that is not "
                              "installed (ModuleNotFoundError: import of importlib_resources ")
    assert message.endswith("`pip install importlib_resources`, then run again")


def test_dataset_choices_and_image_size(digits):
    assert DATASET_CHOICES[:2] == ("digits", "synthetic") and "imagenette" in DATASET_CHOICES
    big = load_dataset("digits", image_size=16)
    assert isinstance(big, ImageData) and big.info.input_shape == (16, 16, 1) and big.info.pad == 2
    assert big.info.preprocessing["resize"] == 16
    assert big.arrays("train")[0].shape == (1437, 16, 16, 1)
    with tfds.testing.mock_data(num_examples=4), local_network("unused"):
        nette = load_dataset("imagenette", image_size=72)
    pre = nette.info.preprocessing
    assert nette.info.input_shape == (72, 72, 3) and nette.info.pad == 9
    assert pre["mean_kind"] == "per_channel" and np.asarray(pre["mean"]).shape == (3,)


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="foo"),
     r"`dataset` must be 'digits', 'synthetic', 'folder:DIR' or .* Received: dataset='foo'"),
    (dict(name="imdb_reviews"), r"image classification dataset.* Received: dataset='imdb_reviews'"),
    (dict(name="digits", image_size=0),
     r"`image_size` must be a positive integer. Received: image_size=0"),
    (dict(name="digits", seed=-1), r"`seed` must be an integer >= 0. Received: seed=-1"),
    (dict(name="synthetic", synthetic_shape=(32, 32)), r"Received: synthetic_shape=\(32, 32\)"),
    (dict(name="synthetic", synthetic_classes=1),
     r"`synthetic_classes` must be an integer >= 2. Received: synthetic_classes=1"),
    (dict(name="synthetic", synthetic_examples=3), r"Received: synthetic_examples=3"),
])
def test_bad_load_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(**kwargs)


@pytest.mark.parametrize("call, message", [
    (lambda d: d.steps_per_epoch(0),
     r"`global_batch_size` must be a positive integer. Received: global_batch_size=0"),
    (lambda d: d.steps_per_epoch(2000),
     r"at most the number of training examples \(1437 .* Received: global_batch_size=2000"),
    (lambda d: d.train(32, seed=0, epoch=-1),
     r"`epoch` must be an integer >= 0. Received: epoch=-1"),
    (lambda d: d.train(32, seed="0", epoch=0),
     r"`seed` must be an integer >= 0. Received: seed='0'"),
    (lambda d: d.train(128, seed=0, epoch=0, skip_batches=12),
     r"`skip_batches` must be at most steps_per_epoch \(11\). Received: skip_batches=12"),
    (lambda d: d.evaluation(True), r"Received: global_batch_size=True"),
    (lambda d: d.evaluation(32, split="valid"),
     r"`split` must be 'train' or 'test'. Received: split='valid'"),
    (lambda d: normalize([1], {"scale": 1}), r"`preprocessing` must be a dict with keys"),
])
def test_bad_pipeline_arguments(digits, call, message):
    with pytest.raises(ValueError, match=message):
        call(digits)
