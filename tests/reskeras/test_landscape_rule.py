"""The landscape hypothesis: scale-invariant sharpness, and the rule that decides on it.

The invariance test applies the BatchNorm symmetry of Dinh et al. (2017) to real reskeras
nets: each BN-preceded kernel scaled by its own factor, its BN's moving mean by the same
factor and ``moving_variance + epsilon`` by its square. The function stays the same; the
raw top eigenvalue moves, the scale-invariant one does not.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from reskeras import build_plain, build_resnet
from reskeras.study.criteria import SHARPNESS_MARGIN
from reskeras.study.judgment.landscape import landscape
from reskeras.study.measures.sharpness import (bn_preceded_kernels, scale_invariant_sharpness,
                                               top_hessian_eigenvalue)

V1_KERNELS = ["stem_conv", "stage1_block1_conv1", "stage1_block1_conv2", "stage2_block1_conv1",
              "stage2_block1_conv2", "stage3_block1_conv1", "stage3_block1_conv2"]


def _layer(variable) -> str:
    return variable.path.split("/")[0]


def test_bn_preceded_kernels_are_exactly_the_kernels_that_feed_only_batch_norm():
    for builder in (build_plain, build_resnet):
        model = builder(8, width=2, input_shape=(8, 8, 1), classes=3)
        assert [_layer(k) for k in bn_preceded_kernels(model)] == V1_KERNELS  # not predictions
    projection = build_resnet(8, width=2, shortcut="B", input_shape=(8, 8, 1), classes=3)
    assert [_layer(k) for k in bn_preceded_kernels(projection)] == [
        *V1_KERNELS[:5], "stage2_block1_shortcut", *V1_KERNELS[5:], "stage3_block1_shortcut"]
    # pre-activation: conv2 feeds the addition and the stem feeds the identity shortcut too
    v2 = build_resnet(8, width=2, version="v2", input_shape=(8, 8, 1), classes=3)
    assert [_layer(k) for k in bn_preceded_kernels(v2)] == [
        "stage1_block1_conv1", "stage2_block1_conv1", "stage3_block1_conv1"]


@pytest.mark.parametrize("builder", [build_plain, build_resnet])
def test_invariant_sharpness_ignores_the_batch_norm_rescaling_that_moves_the_raw_one(builder):
    keras.utils.set_random_seed(3)
    model = builder(8, width=2, input_shape=(8, 8, 1), classes=3)
    images = np.random.default_rng(1).normal(size=(16, 8, 8, 1)).astype("float32")
    labels = np.arange(16) % 3
    settings = {"iterations": 300, "tolerance": 1e-7}
    raw = [top_hessian_eigenvalue(model, images, labels, **settings)]
    invariant = [scale_invariant_sharpness(model, images, labels, **settings)]
    outputs = model(images, training=False).numpy()
    kernels = bn_preceded_kernels(model)
    factors = np.geomspace(0.3, 3.0, len(kernels))[[3, 5, 1, 6, 0, 4, 2]]  # each its own
    for kernel, factor in zip(kernels, factors):
        norm = model.get_layer(_layer(kernel).replace("conv", "bn"))
        kernel.assign(kernel * factor)
        norm.moving_mean.assign(norm.moving_mean * factor)
        norm.moving_variance.assign((norm.moving_variance + norm.epsilon) * factor ** 2
                                    - norm.epsilon)
    np.testing.assert_allclose(model(images, training=False).numpy(), outputs,
                               rtol=1e-5, atol=1e-6)
    raw.append(top_hessian_eigenvalue(model, images, labels, **settings))
    invariant.append(scale_invariant_sharpness(model, images, labels, **settings))
    assert all(r["converged"] for r in raw + invariant)
    assert all(r["layers"] == 7 for r in invariant)
    assert abs(raw[1]["eigenvalue"] / raw[0]["eigenvalue"] - 1) > 0.2
    assert invariant[1]["eigenvalue"] == pytest.approx(invariant[0]["eigenvalue"], rel=1e-4)


def test_invariant_sharpness_needs_a_kernel_that_feeds_batch_norm():
    model = build_plain(8, width=2, batch_norm=False, input_shape=(8, 8, 1), classes=3)
    images = np.zeros((4, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match=r"`model` must have a conv or dense layer whose "
                                         r"output goes straight into BatchNormalization"):
        scale_invariant_sharpness(model, images, np.arange(4) % 3)
    with pytest.raises(ValueError, match=r"`iterations` must be a positive integer"):
        scale_invariant_sharpness(build_plain(8, width=2, input_shape=(8, 8, 1), classes=3),
                                  images, np.arange(4) % 3, iterations=0)


# --- the rule, on hand-built results ---------------------------------------------------------

def _cell(residual, seed, final_invariant, converged=True, depth=56, variant="he"):
    sharpness = {"init": 100.0 + seed, "final": 7.0 * (1 + residual), "init_converged": True,
                 "final_converged": True, "init_invariant": 3.0 + residual,
                 "final_invariant": final_invariant, "init_invariant_converged": True,
                 "final_invariant_converged": converged}
    return {"name": f"{'resnet' if residual else 'plain'}{depth}-bn-s{seed}",
            "residual": residual, "depth": depth, "batch_norm": True, "variant": variant,
            "seed": seed, "status": "finished", "measures": {"sharpness": sharpness}}


def _results(ratios, residual_value=5.0, **overrides):
    """Twins whose plain / residual invariant sharpness is ``ratios[seed]``."""
    cells = []
    for seed, ratio in enumerate(ratios):
        cells += [_cell(False, seed, ratio * residual_value, **overrides),
                  _cell(True, seed, residual_value)]
    return {"cells": cells}


def test_landscape_is_supported_when_the_interval_lies_above_the_margin():
    measured, per_seed, verdict = landscape(_results([10.0, 12.0, 9.0]))
    assert verdict == "supported" and measured["why_inconclusive"] is None
    assert per_seed["seed 1"]["log10_ratio"] == pytest.approx(math.log10(12.0))
    assert per_seed["seed 1"]["plain"] == 60.0 and per_seed["seed 1"]["residual"] == 5.0
    assert per_seed["seed 1"]["why_none"] is None
    assert measured["interval_method"] == "t" and measured["margin"] == SHARPNESS_MARGIN == 2.0
    assert measured["seeds"] == 3 and measured["no_value"] == []
    lo, hi = measured["log10_ratio_interval"]
    assert math.log10(2.0) < lo < hi
    assert measured["plain_sharpness_final"] == 7.0 and measured["residual_sharpness_final"] == 14.0
    assert measured["plain_sharpness_init"] == 101.0
    assert measured["plain_invariant_sharpness_init"] == 3.0
    assert measured["residual_invariant_sharpness_init"] == 4.0
    assert measured["plain_invariant_sharpness_final"] == pytest.approx(155.0 / 3)
    assert measured["residual_invariant_sharpness_final"] == 5.0
    assert not any("rough" in key for key in measured)  # the 1-D slice's roughness is dropped


def test_landscape_is_refuted_when_the_plain_net_is_no_sharper():
    measured, _, verdict = landscape(_results([0.5, 0.6, 0.4, 0.55]))
    assert verdict == "refuted" and measured["why_inconclusive"] is None
    assert measured["log10_ratio_interval"][1] <= 0


@pytest.mark.parametrize("ratios, where", [
    ([0.9, 1.2, 1.05], "straddles 0"),
    ([1.2, 1.5, 1.3], "lies between 0 and log10(2)"),
    ([1.8, 2.4, 2.1], "straddles log10(2)"),
    ([0.3, 30.0, 2.0], "straddles 0 and log10(2)"),
])
def test_landscape_is_inconclusive_when_the_interval_does_not_clear_margin_or_zero(ratios, where):
    measured, _, verdict = landscape(_results(ratios))
    assert verdict == "inconclusive"
    assert f"log10(plain / residual) {where}: supported needs" in measured["why_inconclusive"]
    assert measured["log10_ratio_interval"] is not None


@pytest.mark.parametrize("ratios, verdict", [
    ([2.08, 2.10, 2.12], "supported"),  # wholly in (log10 2, log10 2.2): a 10% larger margin
    ([1.88, 1.90, 1.92], "inconclusive"),  # wholly in (log10 1.8, log10 2): a 10% smaller one
])
def test_the_sharpness_margin_is_pinned_at_two(ratios, verdict):
    measured, _, found = landscape(_results(ratios))
    lo, hi = measured["log10_ratio_interval"]
    assert math.log10(1.8) < lo and hi < math.log10(2.2)
    assert (lo > math.log10(2.0)) == (verdict == "supported")
    assert (hi < math.log10(2.0)) == (verdict == "inconclusive")
    assert found == verdict
    if verdict == "inconclusive":
        assert "lies between 0 and log10(2)" in measured["why_inconclusive"]


def test_an_unconverged_power_iteration_leaves_no_verdict():
    results = _results([10.0, 12.0, 9.0])
    assert landscape(results)[2] == "supported"
    results["cells"][2]["measures"]["sharpness"]["final_invariant_converged"] = False
    measured, per_seed, verdict = landscape(results)
    # the other two seeds would decide, but no verdict while a measured input is missing
    assert verdict == "inconclusive" and measured["seeds"] == 2
    assert per_seed["seed 1"]["log10_ratio"] is None
    assert per_seed["seed 1"]["plain_converged"] is False
    assert per_seed["seed 1"]["why_none"] == "plain56-bn-s1: power iteration did not converge"
    results["cells"][5]["measures"]["sharpness"]["final_invariant_converged"] = False
    measured, per_seed, verdict = landscape(results)
    assert verdict == "inconclusive" and measured["log10_ratio_interval"] is None
    assert measured["why_inconclusive"] == (
        "a seed has no value (1 of 3 have one): plain56-bn-s1 (power iteration did not "
        "converge), resnet56-bn-s2 (power iteration did not converge)")
    # a converged flag that was never recorded (results from before the flag) counts as not
    del results["cells"][0]["measures"]["sharpness"]["final_invariant_converged"]
    assert landscape(results)[1]["seed 0"]["why_none"] == (
        "plain56-bn-s0: power iteration did not converge")


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), 0.0, -4.0])
def test_a_missing_or_unusable_value_gives_no_value(bad):
    results = _results([10.0, 12.0])
    results["cells"][3]["measures"]["sharpness"]["final_invariant"] = bad
    measured, per_seed, verdict = landscape(results)
    assert verdict == "inconclusive" and measured["seeds"] == 1
    assert per_seed["seed 1"]["why_none"] == f"resnet56-bn-s1: final_invariant {bad}"
    assert measured["why_inconclusive"] == \
        f"a seed has no value (1 of 2 have one): resnet56-bn-s1 (final_invariant {bad})"


def test_landscape_without_measured_twins_is_inconclusive():
    for results in ({"cells": []},
                    {"cells": [_cell(False, 0, 50.0), _cell(False, 1, 50.0)]},  # no residual
                    # only the identity-initialized plain net and a shallower residual net
                    {"cells": [_cell(False, 0, 50.0, variant="dirac"),
                               _cell(True, 0, 5.0, depth=20)]}):
        measured, _, verdict = landscape(results)
        assert verdict == "inconclusive"
        assert measured["why_inconclusive"] == (
            "no seed has the sharpness of both deepest BN twins")
        assert measured["log10_ratio_interval"] is None and measured["seeds"] == 0
    # cells whose sharpness was not measured are not twins of the rule
    unmeasured = _results([10.0, 12.0])
    for cell in unmeasured["cells"][2:]:
        cell["measures"] = {"sharpness": None}
    _, per_seed, verdict = landscape(unmeasured)
    assert verdict == "inconclusive" and list(per_seed) == ["seed 0"]


def test_a_missing_twin_is_named_and_a_small_positive_value_is_a_value():
    results = _results([10.0, 12.0, 9.0])
    del results["cells"][5]  # resnet56-bn-s2 was not measured
    measured, per_seed, verdict = landscape(results)
    assert verdict == "inconclusive" and per_seed["seed 2"]["why_none"] == \
        "resnet56-bn-s2: not measured"
    # a cell without a name is named by its net and seed
    results = _results([10.0, 12.0, 9.0])
    results["cells"][0]["name"] = ""
    results["cells"][0]["measures"]["sharpness"]["final_invariant_converged"] = False
    assert landscape(results)[1]["seed 0"]["why_none"] == \
        "plain56-bn-s0: power iteration did not converge"
    # a named cell is named as it is (here a name the net and seed would not give)
    results = _results([10.0, 12.0, 9.0])
    results["cells"][0]["name"] = "plain56-bn-s0-moved"
    results["cells"][0]["measures"]["sharpness"]["final_invariant_converged"] = False
    assert landscape(results)[1]["seed 0"]["why_none"] == \
        "plain56-bn-s0-moved: power iteration did not converge"
    # sharpness below 1 is a value (only zero, negative or not finite is not)
    measured, _, verdict = landscape(_results([10.0, 12.0, 9.0], residual_value=0.5))
    assert verdict == "supported" and measured["residual_invariant_sharpness_final"] == 0.5


@pytest.mark.parametrize("bounds, place", [
    ((0.0, 0.2), "straddles 0"),  # the lower end at 0 counts as straddling it
    ((1e-10, 0.2), "straddles 0"),  # within float noise (9 digits) of 0
    ((1e-8, 0.2), "lies between 0 and log10(2)"),
    ((0.1, math.log10(2.0)), "lies between 0 and log10(2)"),  # the upper end at the margin
    ((0.1, 0.31), "straddles log10(2)"),
])
def test_where_an_undecided_interval_lies(bounds, place):
    from reskeras.study.judgment.landscape import _undecided

    assert _undecided({"interval": bounds}, math.log10(SHARPNESS_MARGIN)).startswith(
        f"the interval [{bounds[0]:.3f}, {bounds[1]:.3f}] of log10(plain / residual) {place}: ")
