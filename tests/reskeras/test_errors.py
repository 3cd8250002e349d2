"""One test per class of bad argument: the message names the argument and the value."""

import keras
import pytest

from reskeras import build_model, build_plain, build_resnet
from reskeras.specs import ArchSpec, get_spec, resolve_spec


@pytest.mark.parametrize("kwargs, message", [
    (dict(depth=21), r"`depth` must be 6n\+2 \(basic\) or 9n\+2 \(bottleneck\) with n >= 1 "
                     r"\(8, 11, 14, 20, 26, 29, \.\.\.\) for the cifar family. Received: depth=21"),
    (dict(depth=22, block="basic"), r"`depth` must be 6n\+2 with n >= 1 .* Received: depth=22"),
    (dict(depth=19, family="imagenet"),
     r"`depth` must be one of 18, 34, 50, 101, 152, 200 for the imagenet family. "
     r"Received: depth=19"),
    (dict(depth=50, block="basic"),
     r"`depth` must be one of 18, 34 for the imagenet family with block='basic'. "
     r"Received: depth=50"),
    (dict(depth=0), r"`depth` must be a positive integer. Received: depth=0"),
    (dict(depth="56"), r"`depth` must be a positive integer. Received: depth='56'"),
])
def test_bad_depth(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_resnet(**kwargs)


@pytest.mark.parametrize("width", [0, -16, 2.5, True])
def test_bad_width(width):
    with pytest.raises(ValueError, match=rf"`width` must be an integer >= 1. Received: width={width!r}"):
        build_resnet(20, width=width)


@pytest.mark.parametrize("arg, value, choices", [
    ("version", "v3", "'v1', 'v2'"),
    ("shortcut", "D", "'A', 'B', 'C'"),
    ("family", "mnist", "'cifar', 'imagenet'"),
    ("block", "wide", "'basic', 'bottleneck'"),
])
def test_unknown_choice(arg, value, choices):
    with pytest.raises(ValueError, match=rf"`{arg}` must be one of {choices}. "
                                         rf"Received: {arg}='{value}'"):
        build_resnet(20, **{arg: value})


@pytest.mark.parametrize("kwargs, message", [
    (dict(depth=20, input_shape=(2, 2, 3)),
     r"`input_shape` must be at least 4x4 for the cifar family \(it downsamples by 4\). "
     r"Received: input_shape=\(2, 2, 3\)"),
    (dict(depth=50, input_shape=(16, 64, 3)),
     r"`input_shape` must be at least 32x32 for the imagenet family .* "
     r"Received: input_shape=\(16, 64, 3\)"),
    (dict(depth=20, input_shape=(32, 32)),
     r"`input_shape` must be \(height, width, channels\) .* Received: input_shape=\(32, 32\)"),
    (dict(depth=20, input_shape=(32, 32, None)), r"Received: input_shape=\(32, 32, None\)"),
])
def test_bad_input_shape(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_resnet(**kwargs)


def test_input_tensor_too_small_or_mismatched():
    with pytest.raises(ValueError, match=r"`input_tensor` must be at least 4x4 .* "
                                         r"Received: input_tensor=\(2, 2, 1\)"):
        build_resnet(20, input_tensor=keras.Input((2, 2, 1)))
    with pytest.raises(ValueError, match=r"`input_shape` must match `input_tensor`"):
        build_resnet(20, input_tensor=keras.Input((8, 8, 1)), input_shape=(16, 16, 1))


@pytest.mark.parametrize("classes", [0, -1, 2.0, "10"])
def test_bad_classes(classes):
    with pytest.raises(ValueError, match=rf"`classes` must be an integer >= 1 when "
                                         rf"include_top=True. Received: classes={classes!r}"):
        build_resnet(20, classes=classes)


def test_classes_are_not_checked_without_top():
    assert build_resnet(20, include_top=False, classes=0, pooling="avg").output_shape == (None, 64)


@pytest.mark.parametrize("pooling", ["mean", "AVG", 1])
def test_bad_pooling(pooling):
    with pytest.raises(ValueError, match=rf"`pooling` must be None, 'avg' or 'max'. "
                                         rf"Received: pooling={pooling!r}"):
        build_resnet(20, include_top=False, pooling=pooling)


def test_bad_classifier_activation():
    with pytest.raises(ValueError, match=r"`classifier_activation` must be None, a callable or a "
                                         r"Keras activation name .* "
                                         r"Received: classifier_activation='softmaxx'"):
        build_resnet(20, classifier_activation="softmaxx")


def test_zero_init_residual_needs_residual_and_bn():
    with pytest.raises(ValueError, match=r"needs residual=True and batch_norm=True.*"
                                         r"Received: residual=False, batch_norm=True"):
        build_plain(20, zero_init_residual=True)
    with pytest.raises(ValueError, match=r"Received: residual=True, batch_norm=False"):
        build_resnet(20, batch_norm=False, zero_init_residual=True)


def test_build_plain_refuses_residual():
    with pytest.raises(TypeError, match=r"takes no `residual` argument .* Received: residual=True"):
        build_plain(20, residual=True)


def test_bad_registry_name_and_type():
    with pytest.raises(ValueError, match=r"`name` must be a registry name such as resnet20.* "
                                         r"Received: name='resnet21'"):
        get_spec("resnet21")
    with pytest.raises(TypeError, match=r"`spec_or_name` must be .* Received: spec_or_name=56"):
        build_model(56)


def test_bad_name():
    with pytest.raises(ValueError, match=r"`name` must be a non-empty string. Received: name=''"):
        build_resnet(20, name="")


def test_bad_spec_fields():
    with pytest.raises(ValueError, match=r"`depths` must be 3 positive integers for the cifar "
                                         r"family. Received: depths=\(3, 3\)"):
        ArchSpec("cifar", "basic", (3, 3), (16, 32, 64), 16)
    with pytest.raises(ValueError, match=r"Unknown ArchSpec fields \['colour'\]"):
        ArchSpec.from_config({**resolve_spec(20).to_config(), "colour": "red"})
