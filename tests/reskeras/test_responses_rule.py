"""small_responses: the layer-response summary of a real run and every path of its verdict."""

import json
import math
import shutil

import pytest

from reskeras.analysis.records import activation_series, load_run
from reskeras.study.cells import Cell
from reskeras.study.criteria import RESPONSE_MARGIN
from reskeras.study.judgment.responses import TEXT_ROW, small_responses
from reskeras.study.measures.responses import response_summary, summarize_responses

DEEP = 56


def cell(residual, seed, std, *, depth=DEEP, batch_norm=True, variant="he", layers=54,
         status="finished", responses=True):
    c = Cell(residual, depth, batch_norm, seed, variant)
    return {"name": c.name, "residual": residual, "depth": depth, "batch_norm": batch_norm,
            "seed": seed, "variant": variant, "status": status,
            "responses": {"median_std": std, "layers": layers, "step": 1408}
            if responses else None}


def study(plain=(1.2, 1.3, 1.25), residual=(0.4, 0.42, 0.38), extra=()):
    """Deepest BN twins, one seed per pair of values, plus shallow and other cells whose
    responses (a 100x smaller residual) would flip the verdict if they were read."""
    cells = [cell(False, s, p) for s, p in enumerate(plain) if p != "missing"]
    cells += [cell(True, s, r) for s, r in enumerate(residual) if r != "missing"]
    for seed in range(3):
        cells += [cell(False, seed, 1.0, depth=8, layers=6),
                  cell(True, seed, 0.01, depth=8, layers=6),
                  cell(False, seed, 1.0, batch_norm=False),
                  cell(True, seed, 0.01, batch_norm=False),
                  cell(False, seed, 0.01, variant="dirac")]
    return {"cells": cells + list(extra)}


def test_supported_reads_only_the_deepest_bn_twins_per_seed():
    measured, per_seed, verdict = small_responses(study())
    assert verdict == "supported"
    assert measured["why_inconclusive"] is None
    assert measured["depth"] == DEEP and measured["margin"] == RESPONSE_MARGIN == 1.5
    assert measured["plain_median_std"] == pytest.approx(1.25)
    assert measured["residual_median_std"] == pytest.approx(0.4)
    assert measured["interval_method"] == "t"
    assert set(per_seed) == {"seed 0", "seed 1", "seed 2"}
    assert per_seed["seed 1"] == {"plain": 1.3, "residual": 0.42,
                                  "log10_ratio": pytest.approx(math.log10(1.3 / 0.42)),
                                  "plain_step": 1408, "residual_step": 1408, "layers": 54}
    lo, hi = measured["log10_ratio_interval"]
    assert math.log10(RESPONSE_MARGIN) < lo < hi
    json.dumps([measured, per_seed])


@pytest.mark.parametrize("plain, residual", [
    ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),     # equal responses: the interval is [0, 0]
    ((0.4, 0.5, 0.45), (1.0, 1.1, 0.9)),    # the residual branches respond more strongly
])
def test_refuted_when_the_interval_lies_at_or_below_zero(plain, residual):
    measured, _, verdict = small_responses(study(plain, residual))
    assert verdict == "refuted"
    assert measured["why_inconclusive"] is None
    assert measured["log10_ratio_interval"][1] <= 0


# the margin pinned: each case flips when RESPONSE_MARGIN moves by 10% either way
@pytest.mark.parametrize("ratio, expected", [
    (1.5 * 1.08, "supported"),      # a margin 10% higher leaves this inconclusive
    (1.5 / 1.08, "inconclusive"),   # a margin 10% lower would support this
    (1.5, "inconclusive"),          # wholly above the margin is needed, not at it
    (1.05, "inconclusive"),         # between 0 and the margin
    (0.95, "refuted"),
])
def test_the_margin_decides_constant_ratios(ratio, expected):
    measured, _, verdict = small_responses(study((ratio,) * 3, (1.0,) * 3))
    assert verdict == expected
    if expected == "inconclusive":
        assert measured["why_inconclusive"].startswith("the interval [")
        assert "log10(1.5) = 0.176" in measured["why_inconclusive"]


def test_inconclusive_when_the_interval_straddles():
    measured, _, verdict = small_responses(study((3.0, 0.8, 1.5), (1.0, 1.0, 1.0)))
    lo, hi = measured["log10_ratio_interval"]
    assert lo < 0 < math.log10(RESPONSE_MARGIN) < hi
    assert verdict == "inconclusive"
    assert measured["why_inconclusive"] == (
        f"the interval [{lo:.3f}, {hi:.3f}] of log10(plain / residual) is neither wholly "
        "above log10(1.5) = 0.176 nor wholly at or below 0")


@pytest.mark.parametrize("results", [
    {"cells": []},
    {"cells": [cell(r, s, 1.0, responses=False) for r in (False, True) for s in range(3)]},
    # responses at other depths or without BN do not stand in for the deepest BN twins
    {"cells": [cell(False, s, 1.0, responses=False) for s in range(3)]
     + [cell(False, s, 1.0, depth=8) for s in range(3)]
     + [cell(True, s, 0.1, depth=8) for s in range(3)]},
])
def test_inconclusive_when_no_responses_were_recorded(results):
    measured, _, verdict = small_responses(results)
    assert verdict == "inconclusive"
    assert measured["why_inconclusive"] == "no layer responses recorded for the deepest BN twins"
    assert measured["log10_ratio_interval"] is None


@pytest.mark.parametrize("change, named", [
    ({"median_std": None}, "resnet56-bn-s1 (median_std None)"),
    ({"median_std": 0.0}, "resnet56-bn-s1 (median_std 0.0)"),
    ({"median_std": -0.3}, "resnet56-bn-s1 (median_std -0.3)"),
    ({"median_std": float("nan")}, "resnet56-bn-s1 (median_std nan)"),
    ({"responses": None}, "resnet56-bn-s1 (no responses)"),
    ({"status": "diverged"}, "resnet56-bn-s1 (status diverged)"),
    ({"responses": {"median_std": 0.4, "layers": 53, "step": 1408}},
     "seed 1 (plain 54 layers, residual 53)"),
])
def test_a_null_in_one_seed_leaves_it_inconclusive_and_names_the_cell(change, named):
    """Four seeds, three of them strongly supporting: no verdict from the seeds that could
    be measured while one input is null."""
    results = study((1.2, 1.3, 1.25, 1.2), (0.4, 0.42, 0.38, 0.4))
    target = next(c for c in results["cells"] if c["name"] == "resnet56-bn-s1")
    if "median_std" in change:
        target["responses"]["median_std"] = change["median_std"]
    else:
        target.update(change)
    measured, per_seed, verdict = small_responses(results)
    assert verdict == "inconclusive"
    assert measured["why_inconclusive"] == f"null or unusable inputs: {named}"
    assert per_seed["seed 1"]["log10_ratio"] is None
    assert measured["log10_ratio_interval"][0] > math.log10(RESPONSE_MARGIN)  # the other seeds


def test_a_missing_twin_is_a_null_input():
    measured, per_seed, verdict = small_responses(
        study((1.2, 1.3, 1.25), (0.4, "missing", 0.38)))
    assert verdict == "inconclusive"
    assert measured["why_inconclusive"] == "null or unusable inputs: resnet56-bn-s1 (missing)"
    assert per_seed["seed 1"]["residual"] is None


def test_a_missing_plain_twin_and_a_renamed_cell_are_named_as_they_are():
    measured, _, verdict = small_responses(study((1.2, "missing", 1.25), (0.4, 0.42, 0.38)))
    assert (verdict, measured["why_inconclusive"]) == (
        "inconclusive", "null or unusable inputs: plain56-bn-s1 (missing)")
    results = study((1.2, 1.3, 1.25), (0.4, 0.42, 0.38))
    target = next(c for c in results["cells"] if c["name"] == "resnet56-bn-s1")
    target.update({"name": "resnet56-bn-s1-moved", "responses": None})
    assert small_responses(results)[0]["why_inconclusive"] == \
        "null or unusable inputs: resnet56-bn-s1-moved (no responses)"


def test_nulls_in_several_seeds_are_all_named():
    results = study()
    for c in results["cells"]:
        if c["depth"] == DEEP and c["batch_norm"] and c["variant"] == "he" and c["seed"] != 1:
            c["responses"]["median_std"] = None
    measured, _, verdict = small_responses(results)
    assert verdict == "inconclusive"
    assert measured["why_inconclusive"] == (
        "null or unusable inputs: plain56-bn-s0 (median_std None), resnet56-bn-s0 "
        "(median_std None), plain56-bn-s2 (median_std None), resnet56-bn-s2 (median_std None)")


def test_inconclusive_with_fewer_than_two_seeds():
    measured, per_seed, verdict = small_responses(study((1.2,), (0.4,)))
    assert verdict == "inconclusive"
    assert measured["why_inconclusive"] == \
        "fewer than two seeds with both twins' responses: no interval"
    assert measured["log10_ratio_interval"] is None and measured["interval_method"] is None
    assert per_seed["seed 0"]["log10_ratio"] == pytest.approx(math.log10(3.0))


def test_text_row_states_the_margin_and_the_source():
    claim, source, test, prediction = TEXT_ROW
    assert source == "He et al. 2015 §4.1, Fig. 7"
    assert "after BN" in test and "deepest BN twins" in test
    assert prediction.endswith("lies wholly above log10(1.5)")
    assert claim


def test_summary_of_records_keeps_block_layers_of_the_last_step_only():
    records = [{"step": s, "kind": kind, "layer": name, "index": i, "value": v}
               for s in (0, 4)
               for kind, entries in (
                   ("response", [("stem_conv", 5.0), ("stage1_block1_conv1", 1.0 + s),
                                 ("stage1_block1_conv2", 3.0 + s), ("stage2_block1_conv1", 2.0)]),
                   ("residual_ratio", [("stage1_block1", 9.0)]),
                   ("dead_relu", [("stage1_block1_relu1", 0.5)]))
               for i, (name, v) in enumerate(entries)]
    summary = summarize_responses(records, run_step=5)
    assert summary == {
        "median_std": 5.0, "layers": 3, "step": 4, "run_step": 5, "null_layers": [],
        "per_layer": [{"layer": "stage1_block1_conv1", "std": 5.0},
                      {"layer": "stage1_block1_conv2", "std": 7.0},
                      {"layer": "stage2_block1_conv1", "std": 2.0}]}
    assert summarize_responses([r for r in records if r["kind"] != "response"]) is None


@pytest.mark.parametrize("residual", [False, True], ids=["plain8", "resnet8"])
def test_a_real_run_records_the_block_responses_read_back_at_the_last_step(tmp_path, residual):
    """plain-8 or ResNet-8 trained for 6 steps through the real trainer and callback; the
    summary reads what ``reskeras plot`` draws, at the last step, in the schema the
    judgment reads."""
    from reskeras.train import TrainConfig, train

    out = str(tmp_path / ("resnet8" if residual else "plain8"))
    result = train(TrainConfig(out=out, depth=8, plain=not residual, dataset="digits", steps=6,
                               batch_size=64, recipe="adam", seed=0, activations_every=3,
                               verbose=0))
    assert result.status == "finished" and result.step == 6
    block_layers = [f"stage{s}_block1_bn{k}" for s in (1, 2, 3) for k in (1, 2)]
    summary = response_summary(out)
    assert [row["layer"] for row in summary["per_layer"]] == block_layers
    assert summary["layers"] == 6 and summary["null_layers"] == []
    assert summary["step"] == summary["run_step"] == 6
    assert math.isfinite(summary["median_std"]) and summary["median_std"] > 0
    run = load_run(out)
    assert sorted({r["step"] for r in run["activations"] if r["kind"] == "response"}) == [0, 3, 6]
    step, names, values = activation_series(run["activations"], "response")
    assert step == 6 and names == ["stem_bn"] + block_layers  # the stem is recorded, not read
    assert [row["std"] for row in summary["per_layer"]] == values[1:].tolist()
    assert any(r["kind"] == "residual_ratio" for r in run["activations"]) == residual
    # the judgment reads the summary as the study fills it in
    cells = [{**cell(twin, seed, None), "responses": summary}
             for twin in (False, True) for seed in (0, 1)]
    measured, per_seed, verdict = small_responses({"cells": cells})
    assert per_seed["seed 0"] == {"plain": summary["median_std"],
                                  "residual": summary["median_std"], "log10_ratio": 0.0,
                                  "plain_step": 6, "residual_step": 6, "layers": 6}
    assert verdict == "refuted"  # identical responses: the interval is [0, 0]
    # a run without activation records has no summary
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(f"{out}/config.json", bare / "config.json")
    assert response_summary(str(bare)) is None
