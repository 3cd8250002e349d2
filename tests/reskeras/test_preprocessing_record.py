"""The preprocessing record's optional keys (std, interpolation) and resize with a crop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from reskeras import preprocessing
from reskeras.preprocessing import (IMAGENET_MEAN, IMAGENET_STD, check_preprocessing,
                                    imagenet_preprocessing, make_preprocessing, normalize,
                                    resize_square)


def _record(**extra):
    record = {"input_dtype": "uint8", "scale": 1.0 / 255.0, "mean": [0.25, 0.5, 0.75],
              "mean_kind": "per_channel", "augment": "none", "pad": 0, "resize": None}
    record.update(extra)
    return record


def test_imagenet_record_is_torchvision_evaluation_exactly():
    assert imagenet_preprocessing() == {
        "input_dtype": "uint8", "scale": 1.0 / 255.0, "mean": [0.485, 0.456, 0.406],
        "mean_kind": "per_channel", "augment": "none", "pad": 0, "resize": 256,
        "std": [0.229, 0.224, 0.225], "interpolation": "bilinear"}
    bicubic = imagenet_preprocessing(resize=288, interpolation="bicubic")
    assert (bicubic["resize"], bicubic["interpolation"]) == (288, "bicubic")
    assert (IMAGENET_MEAN, IMAGENET_STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert {"IMAGENET_MEAN", "IMAGENET_STD", "imagenet_preprocessing"} <= set(preprocessing.__all__)
    assert json.loads(json.dumps(imagenet_preprocessing())) == imagenet_preprocessing()


def test_old_callers_get_the_same_record_without_new_keys():
    pre = make_preprocessing([0.1, 0.2, 0.3], augment="pad_crop_flip", pad=4)
    assert pre == {"input_dtype": "uint8", "scale": 1.0 / 255.0, "mean": [0.1, 0.2, 0.3],
                   "mean_kind": "per_channel", "augment": "pad_crop_flip", "pad": 4,
                   "resize": None}
    assert list(pre) == ["input_dtype", "scale", "mean", "mean_kind", "augment", "pad", "resize"]
    with_std = make_preprocessing([0.1], augment="none", pad=0, std=(np.float32(0.5),))
    assert with_std["std"] == [0.5] and type(with_std["std"][0]) is float
    assert "interpolation" not in with_std


@pytest.mark.parametrize("std, shown", [
    ([0.2, 0.2], r"\[0\.2, 0\.2\]"), ([0.2, 0.0, 0.2], r"\[0\.2, 0\.0, 0\.2\]"),
    ([0.2, -1.0, 0.2], r"-1\.0"), ([0.2, float("nan"), 0.2], "nan"), ("0.2", "'0.2'"),
    ([0.2, True, 0.2], "True"), ([0.2, "x", 0.2], "'x'")])
def test_std_must_be_one_positive_number_per_channel(std, shown):
    pattern = (r"^`preprocessing` must have std None or a list of 3 positive numbers \(one per "
               r"channel of the mean\)\. Received: std=.*" + shown)
    with pytest.raises(ValueError, match=pattern):
        check_preprocessing(_record(std=std))
    with pytest.raises(ValueError, match=pattern):
        make_preprocessing([0.25, 0.5, 0.75], augment="none", pad=0, std=std)


def test_std_length_follows_a_per_pixel_mean():
    mean = np.zeros((2, 2, 1)).tolist()
    check_preprocessing(make_preprocessing(mean, augment="none", pad=0, std=[0.5]))
    with pytest.raises(ValueError, match=r"list of 1 positive numbers .* std=\[0\.5, 0\.5\]$"):
        make_preprocessing(mean, augment="none", pad=0, std=[0.5, 0.5])


@pytest.mark.parametrize("interpolation", ["nearest", "BILINEAR", 3])
def test_interpolation_must_be_bilinear_or_bicubic(interpolation):
    with pytest.raises(ValueError, match=r"^`preprocessing` must have interpolation in "
                                         r"\('bilinear', 'bicubic'\)\. Received: interpolation="
                                         + repr(interpolation) + "$"):
        check_preprocessing(_record(interpolation=interpolation))
    check_preprocessing(_record(interpolation="bicubic", std=None))


@pytest.mark.parametrize("resize", [0, -8, 2.5, "256", True])
def test_resize_must_be_none_or_a_positive_integer(resize):
    with pytest.raises(ValueError, match=r"^`preprocessing` must have resize None or a positive "
                                         r"integer\. Received: resize="):
        check_preprocessing(_record(resize=resize))


def test_normalize_divides_by_std_per_channel():
    images = np.array([[[[0, 51, 255], [255, 102, 0]]]], np.uint8)  # [1, 1, 2, 3]
    pre = _record(std=[0.5, 0.25, 2.0])
    expected = (images.astype(np.float64) / 255.0 - np.array([0.25, 0.5, 0.75])) / np.array(
        [0.5, 0.25, 2.0])
    got = normalize(images, pre).numpy()
    assert got.dtype == np.float32 and got.shape == (1, 1, 2, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # known values: 51/255 = 0.2; (0.2 - 0.5) / 0.25 = -1.2; (1 - 0.75) / 2 = 0.125
    np.testing.assert_allclose(got[0, 0, 0], [-0.5, -1.2, 0.125], atol=1e-6)


def test_records_without_std_normalize_exactly_as_before():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    old = _record()
    before = tf.cast(images, tf.float32) * tf.constant(1.0 / 255.0, tf.float32) - tf.constant(
        np.asarray(old["mean"], np.float32))
    np.testing.assert_array_equal(normalize(images, old).numpy(), before.numpy())
    np.testing.assert_array_equal(normalize(images, _record(std=None)).numpy(), before.numpy())
    legacy = {k: v for k, v in old.items() if k != "resize"}  # records older than `resize`
    np.testing.assert_array_equal(normalize(images, legacy).numpy(), before.numpy())


def _resize_then_slice(image, new_h, new_w, top, left, crop_h, crop_w, method="bilinear"):
    resized = tf.image.resize(tf.constant(image), [new_h, new_w], method=method, antialias=True)
    window = resized.numpy()[top:top + crop_h, left:left + crop_w]
    return np.clip(np.round(window), 0, 255).astype(np.uint8)


def test_resize_square_with_crop_is_torchvision_resize_then_center_crop():
    image = np.random.default_rng(7).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    # shorter side 300 -> 256, so 400 -> round(341.33) = 341; central 224: rows 16.., cols 58..
    expected = _resize_then_slice(image, 256, 341, 16, 58, 224, 224)
    got = resize_square(image, 256, crop=224).numpy()
    assert got.dtype == np.uint8 and got.shape == (224, 224, 3)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(resize_square(image, 256, crop=(224, 224)).numpy(), expected)
    np.testing.assert_array_equal(resize_square(image[None], 256, crop=224).numpy()[0], expected)
    wide = resize_square(image, 256, crop=(200, 300), method="bicubic").numpy()
    np.testing.assert_array_equal(wide, _resize_then_slice(image, 256, 341, 28, 20, 200, 300,
                                                           method="bicubic"))


def test_resize_square_without_crop_is_unchanged():
    image = np.random.default_rng(8).integers(0, 256, (20, 13, 1), dtype=np.uint8)
    # 13 -> 8, 20 -> round(12.31) = 12; central 8x8: rows 2..
    expected = _resize_then_slice(image, 12, 8, 2, 0, 8, 8)
    np.testing.assert_array_equal(resize_square(image, 8).numpy(), expected)
    with pytest.raises(ValueError, match=r"^`method` must be one of \('bilinear', 'bicubic'\)\. "
                                         r"Received: method='area'$"):
        resize_square(image, 8, method="area")
