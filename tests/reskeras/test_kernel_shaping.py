"""Kernel shaping (TAT): dks's activation and preprocessing, q kept near 1, round trips.

The facts are checked against DeepMind's ``dks`` library (its TensorFlow functions, side by
side on the same inputs) and against the definition of the C map, integrated numerically
here, not against reskeras's own formulas.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from reskeras import build_model, build_plain, build_resnet
from reskeras.initializers import ScaledDeltaOrthogonal
from reskeras.kernel_shaping import C_TARGET, activations_in_sequence, tat_leaky_relu
from reskeras.layers import PerLocationNormalization, ShapedLeakyReLU
from reskeras.specs import ArchSpec, resolve_spec, scale
from reskeras.train_config import TrainConfig


def _dks_tat(activations: int):
    """dks's TensorFlow TAT leaky ReLU for a chain of ``activations`` nonlinear layers."""
    from dks.tensorflow.activation_transform import get_transformed_activations

    def subnet_max(x, local_map):  # TAT paper: a chain's only subnetwork is itself
        for _ in range(activations):
            x = local_map(x)
        return x

    return get_transformed_activations(["leaky_relu"], method="TAT",
                                       subnet_max_func=subnet_max)["leaky_relu"]


def _shaped_layers(model):
    return [layer for layer in model.layers if isinstance(layer, ShapedLeakyReLU)]


@pytest.mark.parametrize("depth", [14, 20, 56, 110])
def test_every_activation_is_dks_tat_function(depth):
    model = build_plain(depth, input_shape=(8, 8, 1), classes=10, kernel_shaping="tat")
    layers = _shaped_layers(model)
    assert len(layers) == depth - 1  # the stem's and one per conv, nothing else
    assert not [l for l in model.layers if isinstance(l, keras.layers.ReLU)]
    x = tf.constant(np.random.RandomState(depth).randn(4096).astype("float32") * 3)
    expected = _dks_tat(depth - 1)(x).numpy()
    for layer in layers:
        np.testing.assert_allclose(layer(x).numpy(), expected, rtol=0, atol=1e-6)


def _c_map(layer, c: float) -> float:
    """E[phi(u) phi(v)] for unit Gaussians with correlation c (2-D Gauss-Hermite)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    weights = weights / weights.sum()
    u, w = np.meshgrid(nodes, nodes, indexing="ij")
    v = c * u + np.sqrt(max(1 - c * c, 0.0)) * w
    phi = lambda z: layer(tf.constant(z, tf.float64)).numpy()  # noqa: E731
    return float(np.sum(np.outer(weights, weights) * phi(u) * phi(v)))


def test_the_56_layer_chain_maps_c_0_to_the_target_and_keeps_q_1():
    """TAT's two conditions, from the definition: Q(1) = 1 and C_f(0) = 0.9 for the chain."""
    layer = _shaped_layers(build_plain(56, input_shape=(8, 8, 1), kernel_shaping="tat"))[0]
    layer = ShapedLeakyReLU(layer.negative_slope, layer.output_scale, dtype="float64")
    assert _c_map(layer, 1.0) == pytest.approx(1.0, abs=1e-4)  # Q(1) = E[phi(u)^2] = 1
    c = 0.0
    for _ in range(55):
        c = _c_map(layer, c)
    assert c == pytest.approx(C_TARGET, abs=3e-3)  # quadrature of a kink: about 2e-3
    assert C_TARGET == 0.9
    # the shape is for this depth: plain-20's activation, 55 times, overshoots the target
    alpha, scale_20 = tat_leaky_relu(resolve_spec(20, residual=False, kernel_shaping="tat"))
    shallow, c = ShapedLeakyReLU(alpha, scale_20, dtype="float64"), 0.0
    for _ in range(55):
        c = _c_map(shallow, c)
    assert c > C_TARGET + 0.03


def test_per_location_normalization_equals_dks():
    from dks.tensorflow.data_preprocessing import per_location_normalization

    x = np.random.RandomState(0).rand(5, 6, 7, 3).astype("float32")
    x[0, 0, 0] = 0.0  # an all-zero pixel stays distinguishable (the homogeneous channel)
    ours = PerLocationNormalization()(x).numpy()
    np.testing.assert_allclose(ours, per_location_normalization(tf.constant(x)).numpy(),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.mean(ours ** 2, axis=-1), 1.0, rtol=1e-6)
    scaled = PerLocationNormalization(homog_scale=2.0)(x).numpy()
    np.testing.assert_allclose(
        scaled, per_location_normalization(tf.constant(x), homog_scale=2.0).numpy(),
        rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 3, 16, 16), (3, 3, 16, 32), (1, 1, 64, 16), (3, 3, 4, 16)])
def test_scaled_delta_orthogonal_has_dks_structure(shape):
    from dks.tensorflow.parameter_sampling_functions import stateless_scaled_uniform_orthogonal

    ours = np.asarray(ScaledDeltaOrthogonal(seed=3)(shape))
    theirs = stateless_scaled_uniform_orthogonal(shape, seed=tf.constant([3, 4])).numpy()
    centre = shape[0] // 2
    for kernel in (ours, theirs):  # zero off the centre tap; the same Gram matrix there
        off = kernel.copy()
        off[centre, centre] = 0
        assert not off.any()
    c_in, c_out = shape[2], shape[3]
    small = min(c_in, c_out)

    def gram(kernel):
        m = kernel[centre, centre]
        return m @ m.T if c_in <= c_out else m.T @ m

    np.testing.assert_allclose(gram(ours), gram(theirs), atol=1e-5)
    np.testing.assert_allclose(gram(ours), max(c_out / c_in, 1) * np.eye(small), atol=1e-5)


def _mean_square_per_activation(model, x):
    names = [l.name for l in _shaped_layers(model)] or [
        l.name for l in model.layers if isinstance(l, keras.layers.ReLU)]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    return np.array([float(np.mean(np.square(o))) for o in probe(x)])


def test_q_stays_near_1_through_all_56_layers_at_initialization():
    """Measured (3 seeds, Gaussian inputs, width 16): geometric mean of the mean squared
    activation 0.92-3.5 over all 55 activations; He init without BN: 3e-10 at the last."""
    x = np.random.RandomState(0).randn(64, 8, 8, 1).astype("float32")
    shaped, he = [], []
    for seed in range(3):
        keras.utils.set_random_seed(seed)
        shaped.append(_mean_square_per_activation(
            build_plain(56, input_shape=(8, 8, 1), kernel_shaping="tat"), x))
        keras.utils.set_random_seed(seed)
        he.append(_mean_square_per_activation(
            build_plain(56, input_shape=(8, 8, 1), batch_norm=False), x))
    geometric = np.exp(np.mean(np.log(shaped), axis=0))
    assert geometric.shape == (55,)
    assert 0.25 < geometric.min() and geometric.max() < 4, geometric
    assert np.exp(np.mean(np.log(he), axis=0))[-1] < 1e-3  # the unshaped net loses its signal


def test_the_shaped_net_has_no_bn_zero_biases_and_its_own_layers():
    model = build_plain(56, kernel_shaping="tat")
    assert model.name == "plain56_tat"
    reference = build_plain(56, batch_norm=False)
    assert [l.name for l in model.layers] == (
        ["input", "stem_pln"] + [l.name for l in reference.layers][1:])
    assert not [l for l in model.layers if "bn" in l.name]
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 55
    for conv in convs:
        assert conv.use_bias and not conv.bias.numpy().any()
        kernel = conv.kernel.numpy()
        centre = kernel.shape[0] // 2
        assert np.abs(kernel).sum() == pytest.approx(np.abs(kernel[centre, centre]).sum())
    # convs with biases (3x3; the stem reads 3 colours + PLN's channel) and the classifier:
    # 592 + 18 * 2,320 + (4,640 + 17 * 9,248) + (18,496 + 17 * 36,928) + 650
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 851_130


def test_spec_name_config_scale_and_every_way_to_ask_for_it():
    spec = resolve_spec(56, residual=False, kernel_shaping="tat")
    assert (spec.batch_norm, spec.init, spec.name) == (False, "delta_scaled_orthogonal",
                                                       "plain56_tat")
    assert ArchSpec.from_config(json.loads(json.dumps(spec.to_config()))) == spec
    # an unshaped net keeps the config it had before the field existed: run directories
    # written then still resume and extend (their config.json is compared key by key)
    assert sorted(resolve_spec(20).to_config()) == [
        "batch_norm", "block", "branch_scale", "depths", "family", "init", "init_noise",
        "padding", "residual", "shortcut", "stem_width", "version", "widths",
        "zero_init_residual"]
    assert spec.to_config()["kernel_shaping"] == "tat"
    assert scale(spec, depth=20).kernel_shaping == "tat"
    assert activations_in_sequence(spec) == 55
    assert activations_in_sequence(resolve_spec(164, residual=False, kernel_shaping="tat")) == 163
    assert build_model("plain20", kernel_shaping="tat", input_shape=(8, 8, 1)).name == "plain20_tat"
    assert TrainConfig(out="x", model="plain20", kernel_shaping="tat").resolve_arch() == (
        resolve_spec(20, residual=False, kernel_shaping="tat"))
    assert TrainConfig(out="x", depth=20, plain=True,
                       kernel_shaping="tat").resolve_arch().name == "plain20_tat"
    # the init alone, without the rest of TAT, is an option of its own
    assert resolve_spec(20, init="delta_scaled_orthogonal").name == "resnet20_scaledorth"
    # the parameters come with the spec's depth: 56 and 20 differ
    assert tat_leaky_relu(spec) != tat_leaky_relu(scale(spec, depth=20))


@pytest.mark.parametrize("kwargs, message", [
    (dict(depth=8), r"cannot reach C\(0\) = 0.9 with 7 leaky ReLUs .* Received: depth=8$"),
    (dict(depth=20, batch_norm=True), r"needs residual=False, batch_norm=False.*"
                                      r"Received: residual=False, batch_norm=True"),
    (dict(depth=20, init="he_normal"), r"Received: .*init='he_normal'"),
    (dict(depth=20, version="v2"), r"Received: .*version='v2'"),
    (dict(depth=18), r"Received: .*family='imagenet'"),
    (dict(depth=20, kernel_shaping="dks"), r"`kernel_shaping` must be one of None, 'tat'\. "
                                           r"Received: kernel_shaping='dks'$"),
])
def test_bad_requests_are_one_clear_error(kwargs, message):
    kwargs = {"kernel_shaping": "tat", **kwargs}
    with pytest.raises(ValueError, match=message) as error:
        build_plain(input_shape=(32, 32, 3), **kwargs)
    assert "\n" not in str(error.value)


def test_residual_nets_refuse_it():
    with pytest.raises(ValueError, match=r"needs residual=False.* Received: residual=True"):
        build_resnet(20, kernel_shaping="tat")


def test_shaped_layers_reject_bad_values():
    for kwargs, message in ((dict(negative_slope=1.5, output_scale=1.0),
                             r"`negative_slope` must be a number in \[0, 1\]\. "
                             r"Received: negative_slope=1.5"),
                            (dict(negative_slope=0.5, output_scale=0.0),
                             r"`output_scale` must be a number > 0\. Received: output_scale=0.0")):
        with pytest.raises(ValueError, match=message):
            ShapedLeakyReLU(**kwargs)
    with pytest.raises(ValueError, match=r"`homog_scale` must be a number > 0\. "
                                         r"Received: homog_scale=-1"):
        PerLocationNormalization(homog_scale=-1)


def test_keras_file_and_savedmodel_round_trips(tmp_path):
    model = build_plain(14, input_shape=(8, 8, 1), classes=10, kernel_shaping="tat")
    x = np.random.RandomState(1).rand(6, 8, 8, 1).astype("float32")
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "tat.keras")
    loaded = keras.models.load_model(tmp_path / "tat.keras", safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    assert [l.get_config() for l in _shaped_layers(loaded)] == [
        l.get_config() for l in _shaped_layers(model)]
    model.export(str(tmp_path / "saved"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(served.serve(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_reskeras_train_and_export_a_shaped_net(tmp_path, capsys):
    from reskeras.cli import main

    run = str(tmp_path / "run")
    assert main(["train", "--depth", "14", "--plain", "--kernel-shaping", "tat", "--width", "4",
                 "--dataset", "digits", "--steps", "8", "--recipe", "paper", "--lr", "0.003",
                 "--no-xla", "--out", run]) == 0
    with open(os.path.join(run, "config.json")) as handle:
        assert json.load(handle)["arch"]["kernel_shaping"] == "tat"
    capsys.readouterr()
    assert main(["export", "--run", run, "--base", str(tmp_path / "exports"), "--name", "tat"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "exports" / "tat" / "1")
