"""The kernel_shaping rule (issue 30) on constructed results: one row per branch.

The fixture (tests.reskeras.test_hypotheses.study) has the deepest plain BN net at 80/82/84%
training error and its residual twin at 2/3/1% (a gap of 78-83 points); TAT's net is added
per recipe here, with the sweep record that picked its rate.
"""

import pytest

from reskeras.study.criteria import GAP_CLOSED
from reskeras.study.judgment.shaping import kernel_shaping, no_augmentation, start_symptoms
from tests.reskeras.test_hypotheses import cell, study, sweep_record

CLOSES = (0.05, 0.04, 0.06)       # about 95% of the gap
STAYS = (0.70, 0.75, 0.72)        # about 12%
# just on each side of GAP_CLOSED (0.5) in every seed, (plain - tat) / (plain - residual) =
# 0.52 and 0.48: moving the threshold by 10% either way flips one of them
ABOVE = tuple(p - 0.52 * (p - r) for p, r in zip((0.80, 0.82, 0.84), (0.02, 0.03, 0.01)))
BELOW = tuple(p - 0.48 * (p - r) for p, r in zip((0.80, 0.82, 0.84), (0.02, 0.03, 0.01)))


def shaped(adam=CLOSES, paper=None, *, paper_pick=0.03, tuned=None, diverged=()):
    """The fixture with TAT's cells under Adam, and under the paper's SGD when ``paper``."""
    results = study(tat=adam)
    for c in results["cells"]:
        if c["variant"] == "tat" and c["seed"] in diverged:
            c.update(status="diverged", final_train_error=None)
    if tuned is not None:
        results["cells"] += [cell(False, 56, True, s, e, variant="tuned", lr_factor=0.3)
                             for s, e in enumerate(tuned)]
        results["rate_sweeps"]["adam"]["tuned"] = sweep_record("tuned", 0.3)
    if paper is not None:
        twins = [cell(False, 56, True, s, e) for s, e in enumerate((0.80, 0.82, 0.84))]
        twins += [cell(True, 56, True, s, e) for s, e in enumerate((0.02, 0.03, 0.01))]
        tat = [cell(False, 56, False, s, e, variant="tat", lr_factor=paper_pick)
               for s, e in enumerate(paper)] if paper_pick is not None else []
        results["shaping"] = {"paper": {"cells": twins + tat}}
        results["rate_sweeps"]["paper"] = {"tat": sweep_record("tat", paper_pick)}
    return results


def test_the_bounds_are_just_on_each_side_of_gap_closed():
    assert GAP_CLOSED == 0.5  # the fixtures above are built around it


@pytest.mark.parametrize("adam, paper, expected, why", [
    (CLOSES, None, "supported", None),
    (STAYS, None, "refuted", None),
    (ABOVE, None, "supported", None),  # 52% of the gap in every seed
    (BELOW, None, "refuted", None),  # 48%
    (CLOSES, CLOSES, "supported", None),  # under every recipe
    (STAYS, STAYS, "refuted", None),
    (CLOSES, STAYS, "inconclusive", "adam: closes the gap; paper: does not close the gap"),
])
def test_kernel_shaping_needs_every_recipe(adam, paper, expected, why):
    measured, per_seed, verdict = kernel_shaping(shaped(adam, paper))
    assert verdict == expected
    assert measured["why_inconclusive"] == why
    assert sorted(measured["recipes"]) == (["adam"] if paper is None else ["adam", "paper"])
    assert sorted(per_seed)[:3] == ["adam seed 0", "adam seed 1", "adam seed 2"]


def test_a_sweep_without_a_rate_or_a_diverged_seed_decides_nothing():
    _, _, verdict = kernel_shaping(shaped(CLOSES, CLOSES, paper_pick=None))
    assert verdict == "inconclusive"
    measured = kernel_shaping(shaped(CLOSES, CLOSES, paper_pick=None))[0]
    assert measured["recipes"]["paper"]["why_inconclusive"] == "every rate of TAT's sweep diverged"
    assert measured["why_inconclusive"] == (
        "adam: closes the gap; paper: every rate of TAT's sweep diverged")
    # a diverged TAT seed is reported as diverged, never read as a high training error
    measured, _, verdict = kernel_shaping(shaped(STAYS, diverged=(1,)))
    assert verdict == "inconclusive"
    assert measured["recipes"]["adam"]["why_inconclusive"] == \
        "TAT diverged (plain56-nobn-tat-x0.1-s1)"


def test_each_recipe_records_its_pick_and_its_decision():
    recipes = kernel_shaping(shaped(CLOSES, STAYS))[0]["recipes"]
    assert [(r["sweep_picked"], r["picked_rate"], r["decision"], r["why_inconclusive"])
            for r in (recipes["adam"], recipes["paper"])] == [
        (0.1, pytest.approx(1e-4), True, None), (0.03, pytest.approx(3e-5), False, None)]
    assert recipes["adam"]["tuned"] is None  # the BN net's rate was not swept
    # two diverged seeds are both named, and the recipe's own decision says inconclusive
    adam = kernel_shaping(shaped(STAYS, diverged=(0, 2)))[0]["recipes"]["adam"]
    assert (adam["decision"], adam["why_inconclusive"]) == (
        "inconclusive", "TAT diverged (plain56-nobn-tat-x0.1-s0, plain56-nobn-tat-x0.1-s2)")
    # a recipe whose sweeps ran without TAT's (only the BN net's, say)
    results = shaped(CLOSES, CLOSES)
    results["rate_sweeps"]["paper"] = {"tuned": sweep_record("tuned", 0.3)}
    measured, _, verdict = kernel_shaping(results)
    assert measured["recipes"]["paper"] == {
        "sweep_picked": None, "picked_rate": None, "decision": "inconclusive",
        "why_inconclusive": "TAT's rate sweep did not run"}
    assert (verdict, measured["why_inconclusive"]) == (
        "inconclusive", "adam: closes the gap; paper: TAT's rate sweep did not run")


def test_no_sweep_no_verdict():
    results = study(tat=None)
    measured, per_seed, verdict = kernel_shaping(results)
    assert (verdict, per_seed) == ("inconclusive", {})
    assert measured["why_inconclusive"] == "no rate sweep ran (the study has no TAT cells)"
    # a sweep that ran but whose cells are missing: the gap test has nothing to read
    results = study(tat=CLOSES)
    results["cells"] = [c for c in results["cells"] if c["variant"] != "tat"]
    measured, _, verdict = kernel_shaping(results)
    assert verdict == "inconclusive" and measured["recipes"]["adam"]["why_inconclusive"] == \
        "not run"
    assert measured["recipes"]["adam"]["decision"] == "inconclusive"


def test_the_tuned_bn_net_is_reported_beside():
    measured = kernel_shaping(shaped(CLOSES, tuned=CLOSES))[0]["recipes"]["adam"]["tuned"]
    assert measured == {"picked": 0.3, "picked_rate": pytest.approx(3e-4),
                        "error": pytest.approx(0.05), "verdict": "supported",
                        "closed_interval": pytest.approx([0.9037, 1.0221], abs=1e-4),
                        "why_inconclusive": None}
    results = shaped(CLOSES)
    results["rate_sweeps"]["adam"]["tuned"] = sweep_record("tuned", 1.0)
    own = kernel_shaping(results)[0]["recipes"]["adam"]["tuned"]
    assert own == {"picked": 1.0, "verdict": "refuted", "closed_interval": None,
                   "why_inconclusive": None,
                   "note": "its sweep picked the recipe's own rate: it is the plain net"}
    results["rate_sweeps"]["adam"]["tuned"] = sweep_record("tuned", None)
    assert kernel_shaping(results)[0]["recipes"]["adam"]["tuned"] == {
        "picked": None, "why_inconclusive": "every rate of its sweep diverged"}


def test_no_augmentation_reports_both_errors_and_the_budgets():
    results = study()
    results["cells"] += [
        {**cell(False, 56, True, s, e, variant="noaug"), "final_test_error": e + 0.1}
        for s, e in enumerate((0.0, 0.01, 0.02))]
    found = no_augmentation(results)
    assert found["plain_bn"]["not_augmented"] == {
        "train_error": pytest.approx(0.01), "test_error": pytest.approx(0.11),
        "steps": [704, 704, 704], "seeds": [0, 1, 2]}
    assert found["plain_bn"]["augmented"]["train_error"] == pytest.approx(0.82)
    assert found["residual_bn"]["not_augmented"] is None
    assert no_augmentation(study()) is None  # nothing trained without augmentation


def test_the_start_is_read_from_the_cells_the_shattering_and_the_kernel_map():
    results = study()
    results["shattering_controls"] = [
        {"cell": "plain56-nobn-tat-x0.1-s0", "residual": False, "batch_norm": False,
         "variant": "tat", "depth": 56, "when": "init", "neighbour_correlation": 0.4}]
    results["shattering"] = [  # written before rows recorded BN: a BN twin
        {"cell": "plain56-bn-s0", "residual": False, "variant": "he", "depth": 56,
         "when": "init", "neighbour_correlation": 0.01}]
    results["kernel_map"] = [{"residual": False, "batch_norm": False, "variant": "tat",
                              "depth": 56, "layers": [{"layer": "input", "mean_cosine": 0.5},
                                                      {"layer": "stage3_block9_out",
                                                       "mean_cosine": 0.9},
                                                      {"layer": "head_pool",
                                                       "mean_cosine": 0.99}]}]
    found = start_symptoms(results)
    assert found["plain_tat"]["shattering"] == 0.4 and found["plain_bn"]["shattering"] == 0.01
    assert found["plain_no_bn"]["shattering"] is None
    assert (found["plain_tat"]["c_last_block"], found["plain_tat"]["c_pooled"]) == (0.9, 0.99)
    assert found["plain_bn"]["sharpness"] == 50.0  # the raw eigenvalue at initialization
    assert found["plain_bn"]["gradient_growth"] == pytest.approx(2.0)  # the fixture's ratio


def test_the_c_map_tells_a_net_that_keeps_similarity_from_one_that_forgets_it():
    import numpy as np

    from reskeras.study.measures.kernel_map import c_map, mean_cosine

    x = np.random.RandomState(0).randn(40, 6)
    kept = c_map(x, x @ np.linalg.qr(np.random.RandomState(1).randn(6, 6))[0])  # a rotation
    assert kept["rank_correlation"] == pytest.approx(1.0)
    np.testing.assert_allclose(kept["output_cosine"], kept["input_cosine"], atol=1e-12)
    forgot = c_map(x, np.ones((40, 3)) + 1e-9 * np.random.RandomState(2).randn(40, 3))
    assert forgot["spread"] < 1e-8 and abs(forgot["rank_correlation"]) < 0.2
    assert np.allclose(forgot["output_cosine"], 1.0)
    assert len(kept["input_cosine"]) == 10  # quantile bins of the 780 pairs
    assert c_map(np.zeros((3, 2)), x[:3]) is None  # an all-zero input has no cosine
    assert mean_cosine(np.array([[1.0, 0.0], [-1.0, 0.0]])) == -1.0


def test_the_report_marks_a_pick_at_the_edge_of_the_sweep():
    from reskeras.study.report.shaping import _sweep_rows

    record = {**sweep_record("tat", 0.01), "label": "plain-56, no BN, TAT kernel shaping",
              "diverged": [1.0], "mean_loss": {"0.3": 0.7, "0.1": 0.65, "0.03": 0.634,
                                               "0.01": 0.605}}
    rows = _sweep_rows({"paper": {"tat": record}})
    assert [row[2:] for row in rows] == [
        ["1x", "0.001", "diverged", ""], ["0.3x", "0.0003", "0.7", ""],
        ["0.1x", "0.0001", "0.65", ""], ["0.03x", "3e-05", "0.634", ""],
        ["0.01x", "1e-05", "0.605", "**picked** (the edge of the sweep)"]]
    inside = _sweep_rows({"adam": {"tat": {**record, "picked": 0.1}}})
    assert [row[-1] for row in inside] == ["", "", "**picked**", "", ""]
