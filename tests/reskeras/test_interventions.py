"""Builder interventions of the study's *why*: Dirac init, its two controls, branch scales.

Facts: the identity kernel's exact values, a zero-noise Dirac plain net carrying its input
through 20 layers unchanged, SkipInit blocks that start as their shortcut, the noise's scale,
serialization with ``safe_mode=True``, spec names and errors, and that runs and the tuner
carry both choices.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from reskeras import build_plain, build_resnet, rundir
from reskeras.cli import main
from reskeras.initializers import DeltaOrthogonal, Dirac, PermutedDirac
from reskeras.layers import BranchScale
from reskeras.specs import ArchSpec, resolve_spec
from tuning import ResNetHyperModel


def test_dirac_kernel_is_the_identity_on_the_first_channels_at_the_centre_tap():
    kernel = np.asarray(Dirac(noise=0.0)((3, 3, 4, 6)))
    expected = np.zeros((3, 3, 4, 6), np.float32)
    for i in range(4):
        expected[1, 1, i, i] = 1.0
    np.testing.assert_array_equal(kernel, expected)
    narrowing = np.asarray(Dirac(noise=0.0)((1, 1, 6, 4)))
    np.testing.assert_array_equal(narrowing[0, 0], np.eye(6, 4, dtype=np.float32))
    stem = np.asarray(Dirac(noise=0.0)((7, 7, 3, 16)))
    assert stem[3, 3, :, :3].tolist() == np.eye(3).tolist() and stem.sum() == 3.0
    with pytest.raises(ValueError, match=r"Dirac initializes conv kernels"):
        Dirac()((3, 4))


def test_dirac_noise_is_the_given_fraction_of_he_normal():
    shape = (3, 3, 256, 256)
    he_std = np.sqrt(2.0 / (3 * 3 * 256))
    keras.utils.set_random_seed(1)
    first = np.asarray(Dirac(noise=0.1)(shape))
    keras.utils.set_random_seed(1)
    again = np.asarray(Dirac(noise=0.1)(shape))
    np.testing.assert_array_equal(first, again)  # seeded by keras.utils.set_random_seed
    noise = first - np.asarray(Dirac(noise=0.0)(shape))
    assert noise.std() == pytest.approx(0.1 * he_std, rel=0.02)



@pytest.mark.parametrize("shape", [(3, 3, 6, 6), (3, 3, 4, 8), (1, 1, 8, 4)])
def test_permuted_dirac_is_one_cycle_through_the_outputs_at_the_centre_tap(shape):
    keras.utils.set_random_seed(5)
    kernel = np.asarray(PermutedDirac(noise=0.0)(shape))
    height, width, inputs, outputs = shape
    centre = kernel[height // 2, width // 2]
    assert np.abs(kernel).sum() == centre.sum() == min(inputs, outputs)  # only the centre tap
    assert set(np.unique(centre)) == {0.0, 1.0}
    assert (centre.sum(axis=1) <= 1).all() and (centre.sum(axis=0) <= 1).all()
    mapped = {i: int(np.argmax(centre[i])) for i in range(min(inputs, outputs))}
    assert all(i != j for i, j in mapped.items())  # no channel maps to itself
    if inputs == outputs:  # a single cycle: back to the start only after c_out steps
        channel, length = 0, 0
        while True:
            channel, length = mapped[channel], length + 1
            if channel == 0:
                break
        assert length == outputs
    keras.utils.set_random_seed(5)
    np.testing.assert_array_equal(np.asarray(PermutedDirac(noise=0.0)(shape)), kernel)
    keras.utils.set_random_seed(6)
    others = [np.asarray(PermutedDirac(noise=0.0)((1, 1, 16, 16))) for _ in range(2)]
    assert not np.array_equal(others[0], others[1])  # each conv draws its own cycle


def test_permuted_dirac_noise_is_diracs():
    shape = (3, 3, 128, 128)
    keras.utils.set_random_seed(2)
    kernel = np.asarray(PermutedDirac(noise=0.1)(shape))
    keras.utils.set_random_seed(2)
    bare = np.asarray(PermutedDirac(noise=0.0)(shape))
    assert (kernel - bare).std() == pytest.approx(0.1 * np.sqrt(2.0 / (3 * 3 * 128)), rel=0.03)
    with pytest.raises(ValueError, match=r"PermutedDirac initializes conv kernels"):
        PermutedDirac()((4, 4))


@pytest.mark.parametrize("inputs,outputs", [(8, 8), (4, 16)])
def test_delta_orthogonal_conv_keeps_every_pixels_norm_times_its_gain(inputs, outputs):
    """A Keras Conv2D (stride 1, same padding) with the kernel maps each pixel's channel
    vector x to one of norm gain * |x|: the conv is an isometry up to the gain."""
    keras.utils.set_random_seed(0)
    conv = keras.layers.Conv2D(outputs, 3, padding="same", use_bias=False,
                               kernel_initializer=DeltaOrthogonal())
    images = np.random.default_rng(0).normal(size=(2, 5, 5, inputs)).astype("float32")
    out = np.asarray(conv(images))
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1),
                               np.sqrt(2.0) * np.linalg.norm(images, axis=-1), rtol=1e-5)
    kernel = np.asarray(conv.kernel)
    assert not kernel[0].any() and not kernel[:, 0].any()  # every tap but the centre is 0
    np.testing.assert_allclose(kernel[1, 1] @ kernel[1, 1].T, 2.0 * np.eye(inputs), atol=1e-5)
    assert not np.allclose(np.abs(kernel[1, 1][:, :inputs]), np.sqrt(2.0) * np.eye(inputs))


def test_delta_orthogonal_narrowing_has_orthonormal_columns_and_checks_its_gain():
    kernel = np.asarray(DeltaOrthogonal(gain=1.0, seed=3)((3, 3, 16, 4)))
    np.testing.assert_allclose(kernel[1, 1].T @ kernel[1, 1], np.eye(4), atol=1e-5)
    for gain in (0, -1.0, True, "2"):
        with pytest.raises(ValueError, match=r"`gain` must be a number > 0\. Received: gain="):
            DeltaOrthogonal(gain=gain)
    with pytest.raises(ValueError, match=r"DeltaOrthogonal initializes conv kernels"):
        DeltaOrthogonal()((3, 4))


@pytest.mark.parametrize("init,name,cls", [("dirac_permuted", "plain20_diracperm", PermutedDirac),
                                           ("delta_orthogonal", "plain20_deltaorth",
                                            DeltaOrthogonal)])
def test_the_controls_build_save_and_load(tmp_path, init, name, cls):
    keras.utils.set_random_seed(4)
    model = build_plain(20, init=init, input_shape=(8, 8, 3))
    assert model.name == name
    assert type(model.get_layer("stage2_block1_conv1").kernel_initializer) is cls
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    images = np.random.default_rng(2).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(images)), np.asarray(model(images)))
    assert type(loaded.get_layer("stage2_block1_conv1").kernel_initializer) is cls

def test_zero_noise_dirac_plain_net_carries_its_input_unchanged():
    """Without BN: every conv is the identity (strided ones subsample), every ReLU passes x >= 0."""
    model = build_plain(20, batch_norm=False, init="dirac", init_noise=0.0,
                        input_shape=(8, 8, 3))
    assert model.name == "plain20_nobn_dirac0"
    images = np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    for name, stride in (("stage1_block3_out", 1), ("stage2_block3_out", 2),
                         ("stage3_block3_out", 4)):
        out = np.asarray(keras.Model(model.input, model.get_layer(name).output)(images))
        np.testing.assert_array_equal(out[..., :3], images[:, ::stride, ::stride, :])
        assert not out[..., 3:].any()
    # with BN at initialization (inference: x / sqrt(1 + eps) per layer) nearly so
    with_bn = build_plain(20, init="dirac", init_noise=0.0, input_shape=(8, 8, 3))
    out = np.asarray(keras.Model(with_bn.input, with_bn.get_layer("stage3_block3_out").output)(
        images, training=False))
    np.testing.assert_allclose(out[..., :3], images[:, ::4, ::4, :], rtol=1e-3)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_skipinit_blocks_start_as_their_shortcut_and_their_scale_learns(batch_norm):
    model = build_resnet(20, branch_scale=0.0, batch_norm=batch_norm, input_shape=(8, 8, 3))
    assert model.name == ("resnet20_bs0" if batch_norm else "resnet20_nobn_bs0")
    scales = [layer for layer in model.layers if isinstance(layer, BranchScale)]
    assert [layer.name for layer in scales] == [
        f"stage{s}_block{b}_scale" for s in (1, 2, 3) for b in (1, 2, 3)]
    images = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")
    taps = keras.Model(model.input, [model.get_layer(n).output for n in (
        "stage1_block1_out", "stage1_block3_out", "stage3_block1_add")])
    first, third, add = (np.asarray(t) for t in taps(images, training=False))
    np.testing.assert_array_equal(third, first)  # blocks 2 and 3: relu(0 * branch + x) = x
    shortcut = np.asarray(keras.Model(model.input, model.get_layer(
        "stage3_block1_shortcut").output)(images, training=False))
    np.testing.assert_array_equal(add, shortcut)
    # the scale is a parameter (one per block) with a gradient at 0: SkipInit trains
    assert model.count_params() == build_resnet(20, batch_norm=batch_norm,
                                                input_shape=(8, 8, 3)).count_params() + 9
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(images, training=True) * np.eye(10)[[0, 1, 2, 3]])
    grads = tape.gradient(loss, [layer.alpha for layer in scales])
    assert all(np.isfinite(g.numpy()) for g in grads) and any(g.numpy() != 0 for g in grads)


def test_keras_files_keep_the_interventions(tmp_path):
    keras.utils.set_random_seed(3)
    model = build_resnet(20, init="dirac", init_noise=0.2, branch_scale=0.5,
                         input_shape=(8, 8, 3))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    images = np.random.default_rng(2).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(images)), np.asarray(model(images)))
    initializer = loaded.get_layer("stage2_block1_conv1").kernel_initializer
    assert isinstance(initializer, Dirac) and initializer.noise == 0.2
    assert loaded.get_layer("stage1_block1_scale").initial == 0.5


def test_spec_fields_names_round_trip_and_errors():
    spec = resolve_spec(56, init="dirac", residual=False)
    assert spec.name == "plain56_dirac" and (spec.init_noise, spec.branch_scale) == (0.1, None)
    assert resolve_spec(56, batch_norm=False, branch_scale=0).name == "resnet56_nobn_bs0"
    skip = resolve_spec(20, branch_scale=0.25, init="dirac", init_noise=0.05)
    assert skip.name == "resnet20_dirac0.05_bs0.25"
    assert ArchSpec.from_config(json.loads(json.dumps(skip.to_config()))) == skip
    legacy = {k: v for k, v in resolve_spec(20).to_config().items()
              if k not in ("init", "init_noise", "branch_scale")}
    assert ArchSpec.from_config(legacy) == resolve_spec(20)  # configs before these fields
    for kwargs, message in [
        (dict(init="orthogonal"),
         "`init` must be one of 'he_normal', 'dirac', 'dirac_permuted', 'delta_orthogonal', "
         "'delta_scaled_orthogonal', 'fixup'. Received: init='orthogonal'"),
        (dict(init="dirac", init_noise=-1.0), "`init_noise` must be a number >= 0"),
        (dict(branch_scale="zero"),
         "`branch_scale` must be None or a number. Received: branch_scale='zero'"),
        (dict(branch_scale=0.0, residual=False),
         "`branch_scale` scales residual branches: it needs residual=True"),
    ]:
        with pytest.raises(ValueError) as info:
            resolve_spec(20, **kwargs)
        assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_train_records_the_interventions_and_refuses_a_plain_branch_scale(tmp_path, capsys):
    out = tmp_path / "dirac"
    assert main(["train", "--depth", "8", "--plain", "--init", "dirac", "--init-noise", "0.05",
                 "--steps", "2", "--batch-size", "32", "--dataset", "digits",
                 "--out", str(out)]) == 0
    arch = rundir.read_config(str(out))["arch"]
    assert (arch["init"], arch["init_noise"], arch["branch_scale"]) == ("dirac", 0.05, None)
    out = tmp_path / "skip"
    assert main(["train", "--depth", "8", "--no-bn", "--branch-scale", "0", "--steps", "2",
                 "--batch-size", "32", "--dataset", "digits", "--out", str(out)]) == 0
    assert rundir.read_config(str(out))["model_name"] == "resnet8_nobn_bs0"
    capsys.readouterr()
    refused = tmp_path / "refused"
    code = main(["train", "--depth", "8", "--plain", "--branch-scale", "0", "--steps", "2",
                 "--dataset", "digits", "--out", str(refused)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "needs residual=True" in err, err
    assert not refused.exists()


def test_tuner_searches_init_and_branch_scale():
    hypermodel = ResNetHyperModel((8, 8, 1), 10, depths=[8], widths=[4], search_residual=True,
                                  init=["he_normal", "dirac"], branch_scale=[0.0, 1.0],
                                  init_noise=0.05)
    space = {hp["config"]["name"]: hp for hp in
             hypermodel.default_hyperparameters().get_config()["space"]}
    assert space["init"]["config"]["values"] == ["he_normal", "dirac"]
    assert space["branch_scale"]["config"]["values"] == [0.0, 1.0]
    spec = hypermodel.spec({"depth": 8, "width": 4, "residual": True, "init": "dirac",
                            "branch_scale": 0.0})
    assert spec.name == "resnet8_w4_dirac0.05_bs0"
    plain = hypermodel.spec({"depth": 8, "width": 4, "residual": False, "init": "dirac",
                             "branch_scale": 0.0})
    assert plain.name == "plain8_w4_dirac0.05" and plain.branch_scale is None
    rebuilt = ResNetHyperModel.from_config(json.loads(json.dumps(hypermodel.get_config())))
    assert rebuilt.spec({"residual": True, "init": "dirac", "branch_scale": 1.0}).name == \
        "resnet8_w4_dirac0.05_bs1"
    fixed = ResNetHyperModel((8, 8, 1), 10, depths=[8], widths=[4], init="dirac")
    names = [hp["config"]["name"] for hp in
             fixed.default_hyperparameters().get_config()["space"]]
    assert "init" in names and "branch_scale" not in names
    with pytest.raises(ValueError, match=r"`init` must hold values among 'he_normal', 'dirac'"):
        ResNetHyperModel((8, 8, 1), 10, depths=[8], widths=[4], init="xavier")


def test_fixup_blocks_start_as_their_shortcut_with_a_zero_classifier():
    """Zhang et al. 2019: each branch's last conv is 0 and its multiplier 1, so every block
    starts as relu(shortcut(x)) and the classifier, at 0, gives equal logits."""
    keras.utils.set_random_seed(0)
    model = build_resnet(20, batch_norm=False, init="fixup", input_shape=(8, 8, 3))
    assert model.name == "resnet20_nobn_fixup"
    # He's no-BN net minus the branch convs' biases (2 x 3 x (16 + 32 + 64)), plus 5 scalars
    # per block (4 biases, 1 multiplier) and the head's scalar bias
    assert model.count_params() == 269_034 - 672 + 45 + 1 == build_resnet(
        20, batch_norm=False, input_shape=(8, 8, 3)).count_params() - 672 + 45 + 1
    names = [layer.name for layer in model.layers]
    assert names[names.index("stage2_block1_bias1a"):names.index("stage2_block1_out") + 1] == [
        "stage2_block1_bias1a", "stage2_block1_conv1_pad", "stage2_block1_conv1",
        "stage2_block1_bias1b",
        "stage2_block1_relu1", "stage2_block1_bias2a", "stage2_block1_conv2",
        "stage2_block1_scale", "stage2_block1_bias2b", "stage2_block1_shortcut",
        "stage2_block1_add", "stage2_block1_out"]
    images = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")
    taps = keras.Model(model.input, [model.get_layer(n).output for n in (
        "stem_relu", "stage1_block3_out", "stage3_block3_out")])
    stem, stage1, stage3 = (np.asarray(t) for t in taps(images))
    np.testing.assert_array_equal(stage1, stem)  # identity shortcuts pass the raw input on
    np.testing.assert_array_equal(stage3[..., :16], stem[:, ::4, ::4, :])  # zero-pad (A)
    assert not stage3[..., 16:].any()
    np.testing.assert_array_equal(np.asarray(model(images)), np.full((4, 10), 0.1, "float32"))


@pytest.mark.parametrize("depth,block,convs,blocks", [(20, "basic", 2, 9),
                                                      (29, "bottleneck", 3, 9)])
def test_fixup_scales_the_inner_branch_convs_by_l_to_the_minus_one_over_2m_minus_2(
        depth, block, convs, blocks):
    keras.utils.set_random_seed(1)
    model = build_resnet(depth, block=block, batch_norm=False, init="fixup", width=32,
                         input_shape=(8, 8, 3))
    factor = blocks ** (-1.0 / (2 * convs - 2))  # L^(-1/(2m-2)): 1/3 and 1/sqrt(3)
    for name in [f"stage3_block2_conv{k}" for k in range(1, convs)] + ["stage2_block1_conv1"]:
        kernel = np.asarray(model.get_layer(name).kernel)
        fan_out = np.prod(kernel.shape[:2]) * kernel.shape[3]  # kh * kw * c_out
        assert kernel.std() == pytest.approx(factor * np.sqrt(2.0 / fan_out), rel=0.05), name
        assert model.get_layer(name).bias is None
    assert not np.asarray(model.get_layer(f"stage3_block2_conv{convs}").kernel).any()
    stem = np.asarray(model.get_layer("stem_conv").kernel)  # outside the branches: He
    assert stem.std() == pytest.approx(np.sqrt(2.0 / 27), rel=0.25)


def test_fixup_trains_saves_and_refuses_what_it_is_not_for(tmp_path):
    keras.utils.set_random_seed(2)
    model = build_resnet(8, batch_norm=False, init="fixup", input_shape=(8, 8, 1), classes=10)
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    x = np.random.default_rng(3).normal(size=(32, 8, 8, 1)).astype("float32")
    y = np.arange(32) % 10
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    # the first step moves only the classifier: with it at 0 no gradient reaches below
    assert np.asarray(model.get_layer("predictions").kernel).any()
    assert not np.asarray(model.get_layer("stage1_block1_conv2").kernel).any()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.asarray(model.get_layer("stage1_block1_conv2").kernel).any()  # then the rest
    path = str(tmp_path / "fixup.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    for kwargs in (dict(), dict(batch_norm=False, residual=False),
                   dict(batch_norm=False, version="v2"),
                   dict(batch_norm=False, branch_scale=0.0)):
        with pytest.raises(ValueError) as info:
            resolve_spec(20, init="fixup", **kwargs)
        assert str(info.value).startswith("`init='fixup'` initializes residual nets without "
                                          "normalization") and "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"`init` 'fixup' is for residual v1 nets"):
        ResNetHyperModel(input_shape=(8, 8, 1), classes=10, init=["he_normal", "fixup"])
    ResNetHyperModel(input_shape=(8, 8, 1), classes=10, init="fixup", batch_norm=False)
