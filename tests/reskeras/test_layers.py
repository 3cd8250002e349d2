import numpy as np
import pytest

from reskeras.layers import ZeroPadShortcut


@pytest.mark.parametrize("shape, filters, strides", [
    ((2, 8, 8, 16), 32, 2), ((2, 7, 9, 3), 8, 2), ((1, 4, 4, 4), 4, 1), ((1, 5, 5, 2), 6, 1)])
def test_matches_slicing_and_zero_padding(shape, filters, strides):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    expected = np.zeros((shape[0], -(-shape[1] // strides), -(-shape[2] // strides), filters),
                        np.float32)
    expected[..., :shape[3]] = x[:, ::strides, ::strides, :]
    layer = ZeroPadShortcut(filters, strides)
    out = layer(x)
    np.testing.assert_array_equal(out, expected)
    assert layer.compute_output_shape(shape) == expected.shape
    assert layer.count_params() == 0


def test_refuses_to_drop_channels():
    with pytest.raises(ValueError, match=r"`filters` must be >= 16 input channels. "
                                         r"Received: filters=8"):
        ZeroPadShortcut(8, 2)(np.zeros((1, 4, 4, 16), np.float32))


def test_config_round_trip():
    layer = ZeroPadShortcut(32, 2, name="stage2_block1_shortcut")
    clone = ZeroPadShortcut.from_config(layer.get_config())
    assert (clone.filters, clone.strides, clone.name) == (32, 2, "stage2_block1_shortcut")
