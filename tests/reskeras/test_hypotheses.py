"""The study's *why*: per-seed flags and the hypothesis verdicts on constructed records."""

import json

import pytest

from reskeras.study.judgment import hypotheses as hyp
from reskeras.study.cells import Cell, group_cells
from reskeras.study.measures.gradient_flow import gradient_summary
from reskeras.study.judgment.verdict import verdict
from tests.reskeras.test_study import records

IDS = ["vanishing_gradients", "vanishing_gradients_no_bn", "identity_init",
       "identity_init_no_bn", "conditioning", "near_identity", "branch_scale", "learning_rate",
       "kernel_shaping", "identity_task", "ensemble", "shattering", "landscape",
       "small_responses"]
# median start distance from the identity each init variant gets in `study()`
STARTS = {"dirac": 0.1, "diracperm": 1.0, "deltaorth": 1.2, "tat": 1.3}


def cell(residual, depth, bn, seed, error, ratio=2.0, variant="he", status="finished",
         sharpness=None, lr_factor=None):
    c = Cell(residual, depth, bn, seed, variant, lr_factor)
    start = STARTS.get(variant)
    return {"name": c.name, "group": c.group, "label": c.label, "residual": residual,
            "depth": depth, "batch_norm": bn, "seed": seed, "variant": variant,
            "lr_factor": lr_factor, "status": status, "final_train_error": error if status == "finished" else None,
            "final_test_error": error, "gradient": gradient_summary(records(ratio)),
            "convergence": {"steps": 704, "converged": True, "failed_to_start": False,
                            "train_errors": {}},
            "measures": None if sharpness is None and start is None else {
                "travelled": None,
                "identity": None if start is None else [
                    {"block": f"stage1_block{i}", "init": start, "final": 0.5}
                    for i in (2, 3, 4)],
                "sharpness": None if sharpness is None else
                {"init": sharpness[0], "final": sharpness[1], "init_invariant": sharpness[0],
                 "final_invariant": sharpness[1], "init_invariant_converged": True,
                 "final_invariant_converged": True}}}


def study(plain_deep=(0.80, 0.82, 0.84), residual_deep=(0.02, 0.03, 0.01),
          dirac=(0.05, 0.06, 0.04), skipinit=(0.10, 0.11, 0.09), lr=(0.79, 0.81, 0.83),
          residual_no_bn=0.04, plain_ratio=2.0, diracperm=(0.70, 0.75, 0.72),
          deltaorth=(0.60, 0.65, 0.70), fixup=(0.2, 0.25, 0.3), rates=None,
          tat=(0.62, 0.66, 0.64)):
    """Depths 8/56, 3 seeds of every cell, the interventions included (TAT's plain net
    without BN at 0.1x the rate, ``tat=None`` leaves it out); ``rates``:
    ``{variant: errors}`` of more learning-rate cells."""
    cells = []
    for seed in range(3):
        cells += [cell(False, 8, True, seed, 0.01), cell(True, 8, True, seed, 0.01),
                  cell(False, 8, False, seed, 0.02), cell(True, 8, False, seed, 0.03)]
    for seed, (p, r) in enumerate(zip(plain_deep, residual_deep)):
        cells += [cell(False, 56, True, seed, p, plain_ratio, sharpness=(50.0, 2.0)),
                  cell(True, 56, True, seed, r, sharpness=(40.0, 9.0))]
    for variant, found in (("dirac", dirac), ("diracperm", diracperm),
                           ("deltaorth", deltaorth), ("lr0.1", lr), *(rates or {}).items()):
        cells += [cell(False, 56, True, s, e, variant=variant) for s, e in enumerate(found)]
    for seed in range(3):
        cells += [cell(False, 56, False, seed, 0.9, 1e-7),
                  cell(True, 56, False, seed, residual_no_bn)]
    cells += [cell(False, 56, False, s, e, variant="dirac") for s, e in
              enumerate((0.05, 0.06, 0.04))]
    cells += [cell(True, 56, False, s, e, variant="skipinit") for s, e in enumerate(skipinit)]
    cells += [cell(True, 56, False, s, e, variant="fixup") for s, e in enumerate(fixup)]
    if tat is None:
        return {"cells": cells, "classes": 10}
    cells += [cell(False, 56, False, s, e, variant="tat", lr_factor=0.1)
              for s, e in enumerate(tat)]
    return {"cells": cells, "classes": 10, "recipe": "adam",
            "rate_sweeps": {"adam": {"tat": sweep_record("tat", 0.1)}}}


def sweep_record(name, picked):
    """A rate sweep's record as reskeras.study.rate_sweep writes it (the losses elided)."""
    return {"sweep": name, "recipe": "adam", "base_rate": 0.001, "picked": picked,
            "picked_rate": None if picked is None else picked * 0.001,
            "factors": [1.0, 0.3, 0.1, 0.03, 0.01], "seeds": [100, 101, 102],
            "budget_steps": 352, "losses": {}, "train_errors": {}, "diverged": [],
            "mean_loss": {}}


def by_id(found):
    return {row["id"]: row for row in found["hypotheses"]}


def test_hypothesis_rows_have_exactly_the_keys_in_order_and_survive_json():
    found = verdict(study())
    assert [row["id"] for row in found["hypotheses"]] == IDS
    for row in found["hypotheses"]:
        assert set(row) == {"id", "claim", "source", "test", "prediction", "measured",
                            "verdict"}
        assert row["verdict"] in ("supported", "refuted", "inconclusive")
    assert set(found["hypothesis_seeds"]) == set(IDS)
    assert json.loads(json.dumps(found)) == found


def test_identity_init_measures_the_three_means_and_closes_the_gap():
    rows = by_id(verdict(study()))
    identity = rows["identity_init"]
    assert {k: identity["measured"][k] for k in ("plain", "plain_identity", "residual")} == {
        "plain": pytest.approx(0.82), "plain_identity": pytest.approx(0.05),
        "residual": pytest.approx(0.02)}
    assert identity["verdict"] == "supported"  # closes (0.80-0.05)/(0.80-0.02) = 96% in seed 0
    seeds = verdict(study())["hypothesis_seeds"]["identity_init"]
    assert list(seeds) == ["seed 0", "seed 1", "seed 2"]
    assert seeds["seed 0"]["closed"] == pytest.approx(0.75 / 0.78)
    assert seeds["seed 0"]["change_points"] == pytest.approx(-75.0)
    lo, hi = identity["measured"]["closed_interval"]
    assert 0.5 < lo < 0.75 / 0.78 < hi and identity["measured"]["interval_method"] == "t"
    # 0.1x closes 1/78 of the gap, but one rate is not a sweep: refuting needs 4 over 100x
    assert rows["learning_rate"]["verdict"] == "inconclusive"
    assert rows["learning_rate"]["measured"]["rates"]["lr0.1"]["error"] == pytest.approx(0.81)
    assert rows["learning_rate"]["measured"]["why_inconclusive"] == (
        "no rate closes 50% of the gap, but the sweep has 1 rate(s) spanning 1x; refuting "
        "needs at least 4 spanning 100x (the full preset runs them)")
    # the no-BN residual net (4%) is within 2 points of the BN one (2%): nothing to close
    assert rows["branch_scale"]["verdict"] == "inconclusive"


@pytest.mark.parametrize("dirac, expected", [
    ((0.05, 0.81, 0.06), "inconclusive"),  # the seeds disagree: the interval straddles 0.5
    ((0.60, 0.70, 0.80), "refuted"),       # closes 26%, 15%, 5%: wholly below 0.5
    ((0.37, 0.06, 0.34), "inconclusive"),  # every seed closes >= 55%, yet the interval straddles
    ((0.05, 0.06, 0.04), "supported")])
def test_an_intervention_verdict_comes_from_the_interval_over_seeds(dirac, expected):
    found = verdict(study(dirac=dirac))
    assert by_id(found)["identity_init"]["verdict"] == expected
    if expected == "inconclusive":
        assert by_id(found)["identity_init"]["measured"]["why_inconclusive"] == \
            "the interval of the fraction closed straddles 0.5"


def test_one_seed_of_an_intervention_gives_no_interval():
    rows = by_id(verdict(study(dirac=(0.05,))))
    assert rows["identity_init"]["verdict"] == "inconclusive"
    assert rows["identity_init"]["measured"]["why_inconclusive"] == \
        "fewer than two seeds: no interval"


def test_no_gap_to_close_is_inconclusive():
    # the plain net trains as well as the residual twin: nothing for an intervention to close
    rows = by_id(verdict(study(plain_deep=(0.03, 0.02, 0.03), dirac=(0.02,) * 3,
                               lr=(0.02,) * 3)))
    assert rows["identity_init"]["verdict"] == rows["learning_rate"]["verdict"] == \
        "inconclusive"
    # and the degradation was not there, so vanishing gradients have nothing to explain
    assert rows["vanishing_gradients"]["verdict"] == "inconclusive"


def test_vanishing_gradients_is_refuted_when_the_degraded_plain_net_keeps_its_gradients():
    assert by_id(verdict(study()))["vanishing_gradients"]["verdict"] == "refuted"
    assert by_id(verdict(study(plain_ratio=1e-4)))["vanishing_gradients"]["verdict"] == \
        "supported"


def test_a_diverged_intervention_counts_as_error_one():
    results = study()
    for dirac in (c for c in results["cells"] if c["variant"] == "dirac"):
        dirac.update(status="diverged", final_train_error=None)
    rows = by_id(verdict(results))
    assert rows["identity_init"]["measured"]["plain_identity"] == 1.0
    assert rows["identity_init"]["verdict"] == "refuted"


def test_flags_list_per_seed_values_and_a_straddling_interval_is_inconclusive():
    # seed 1's 56-layer plain net trains (1%): degradation in seeds 0 and 2 only
    found = verdict(study(plain_deep=(0.80, 0.01, 0.84), residual_deep=(0.018, 0.02, 0.022)))
    assert found["degradation"]["plain"] == "inconclusive"
    numbers = found["degradation"]["numbers"]["plain"]
    assert numbers["per_seed"] == {"0": True, "1": False, "2": True}
    assert numbers["gap_points"] == pytest.approx({"0": 79.0, "1": 0.0, "2": 83.0})
    assert numbers["why_inconclusive"] == "the interval straddles 2 points"
    assert found["degradation"]["residual"] is False
    assert found["vanishing_gradients"]["plain_bn"] is False
    assert found["gradient_numbers"]["plain_bn"]["per_seed"]["vanishing"] == \
        {"0": False, "1": False, "2": False}
    lo, hi = numbers["interval"]
    assert (f"against 1.0% for the 8-layer one (means of 3 seeds): inconclusive (the interval "
            f"straddles 2 points; +54.0 points, 95% t-interval [{lo:+.1f}, {hi:+.1f}] over 3 "
            "seeds).") in found["answer"]
    assert "The residual twins did not degrade (1.0% at depth 8, 2.0% at depth 56; +1.0 " \
        "points, 95% t-interval [+0.5, +1.5] over 3 seeds)." in found["answer"]
    assert "So these runs do not settle the question (the interval straddles 2 points)." in \
        found["answer"]
    agreed = verdict(study())
    assert agreed["degradation"]["plain"] is True
    assert "degradation (+81.0 points, 95% t-interval [+76.0, +86.0] over 3 seeds)" in \
        agreed["answer"]


def test_intervention_cells_do_not_enter_the_flags():
    results = study()
    plain_flags = verdict(results)["degradation"]["numbers"]["plain"]
    assert plain_flags["deep_train_errors"] == {"0": 0.80, "1": 0.82, "2": 0.84}


def test_identity_task_ensemble_shattering_and_landscape_criteria():
    results = study()
    # plain stacks keep their input up to depth 2, residual ones up to 8 (4x as deep)
    # plain stacks keep their input to depth 2, residual ones to 16 (the rule's own module
    # tests every other path: tests/reskeras/test_identity_task_rule.py)
    errors = {("plain", 0): (0.01, 0.05, 0.3, 0.68, 0.69), ("residual", 0): (0.04, 0.03, 0.06,
                                                                            0.17, 0.1),
              ("plain", 1): (0.01, 0.1, 0.5, 0.68, 0.69), ("residual", 1): (0.05, 0.03, 0.07,
                                                                           0.19, 0.12)}
    results["identity_task"] = {"depths": [1, 2, 4, 8, 16], "seeds": [0, 1], "steps": 600,
                                "rows": [
        {"kind": k, "depth": d, "seed": s, "initial_error": 1.0, "error": e, "converged": True}
        for (k, s), values in errors.items() for d, e in zip((1, 2, 4, 8, 16), values)]}
    results["lesion"] = {
        "plain": {"baseline_error": 0.10, "blocks": [{"error_increase": 0.8}] * 3},
        "plain_identity": {"baseline_error": 0.05, "blocks": [{"error_increase": 0.3}] * 3},
        "residual": {"baseline_error": 0.05, "blocks": [{"error_increase": 0.01},
                                                        {"error_increase": 0.02},
                                                        {"error_increase": 0.5}]}}
    results["shattering"] = [
        {"residual": False, "depth": 56, "when": "init", "neighbour_correlation": 0.2},
        {"residual": True, "depth": 56, "when": "init", "neighbour_correlation": 0.9},
        {"residual": False, "depth": 8, "when": "init", "neighbour_correlation": 0.8}]
    rows = by_id(verdict(results))
    assert rows["identity_task"]["verdict"] == "supported"
    assert {k: rows["identity_task"]["measured"][k] for k in (
        "plain_kept_depth", "residual_kept_depth", "deepest_depth", "plain_at_deepest",
        "residual_at_deepest", "why_inconclusive")} == {
        "plain_kept_depth": 2, "residual_kept_depth": 16, "deepest_depth": 16,
        "plain_at_deepest": pytest.approx(0.69), "residual_at_deepest": pytest.approx(0.11),
        "why_inconclusive": None}
    assert rows["ensemble"]["verdict"] == "supported"
    assert rows["ensemble"]["measured"]["residual_median_damage"] == pytest.approx(0.02 / 0.85)
    assert rows["shattering"]["verdict"] == "supported"
    # the plain net's top eigenvalue after training (2.0) is below the residual's (9.0)
    assert rows["landscape"]["verdict"] == "refuted"
    assert rows["landscape"]["measured"]["plain_sharpness_final"] == 2.0
    # the plain twin at chance has no damage to measure: the plain net that trained decides
    results["lesion"]["plain"]["baseline_error"] = 0.85
    assert by_id(verdict(results))["ensemble"]["measured"]["plain_median_damage"] is None
    assert by_id(verdict(results))["ensemble"]["verdict"] == "supported"


def test_the_answer_addresses_the_three_questions_with_numbers():
    answer = verdict(study())["answer"]
    assert "Its gradients did not vanish" in answer
    assert "Why is a residual mapping easier?" in answer
    assert ("Starting the deepest plain BN net at the identity gave 5.0% training error, "
            "against 82.0% from He init and 2.0% for the residual twin; it started at median "
            "block distance 0.10 from the identity (identity init: supported).") in answer
    assert ("Started isometric but far from the identity, it gave 72.3% (the identity with "
            "permuted channels, median block distance 1.00) and 65.0% (delta-orthogonal, "
            "median block distance 1.20) and 64.0% (TAT's shaped net without BN, median block "
            "distance 1.30) (conditioning: refuted; near identity: supported).") in answer
    assert ("with its kernel shaped by TAT (no shortcut, no BN, at the rate its own sweep "
            "picked) the plain net ended at 64.0% under adam (rate 0.0001), against 2.0% for "
            "the BN residual twin and 82.0% for the BN plain net (kernel shaping: refuted)") \
        in answer
    assert "Why does the plain net not close the gap?" in answer
    assert "at 0.1x the recipe's learning rate the plain net ended at 81.0% (from 82.0%)" \
        in answer
    assert answer.endswith("In short, supported: vanishing gradients no bn, identity init, "
                           "identity init no bn, near identity; refuted: vanishing gradients, "
                           "conditioning, kernel shaping, landscape; inconclusive: branch "
                           "scale, learning rate, identity task, ensemble, shattering, small "
                           "responses.")


def test_missing_measurements_are_inconclusive_not_errors():
    rows, per_seed = hyp.hypotheses({"cells": []})
    assert [row["verdict"] for row in rows] == ["inconclusive"] * len(IDS)
    assert per_seed == {key: {} for key in IDS}


def test_groups_pool_seeds_with_mean_and_spread():
    groups = {g["group"]: g for g in group_cells(study()["cells"])}
    deep = groups["plain56-bn"]
    assert deep["seeds"] == [0, 1, 2] and deep["label"] == "plain-56, BN"
    assert deep["final_train_error"]["mean"] == pytest.approx(0.82)
    assert (deep["final_train_error"]["min"], deep["final_train_error"]["max"]) == (0.80, 0.84)
    assert deep["final_train_error"]["n"] == 3
    assert groups["plain56-bn-dirac"]["label"] == "plain-56, BN, identity init"
    assert groups["resnet56-nobn-skipinit"]["variant"] == "skipinit"


def test_identity_init_needs_its_net_to_start_near_the_identity():
    def with_start(distances):
        results = study()
        for dirac in (c for c in results["cells"] if c["variant"] == "dirac"):
            dirac["measures"] = {"travelled": None, "sharpness": None, "identity": [
                {"block": f"stage1_block{i}", "init": d, "final": 0.5}
                for i, d in enumerate(distances, 2)]}
        return verdict(results)

    near = with_start([0.1, 0.2, 0.3])
    assert by_id(near)["identity_init"]["verdict"] == "supported"
    assert near["hypothesis_seeds"]["identity_init"]["seed 0"]["start_distance"] == 0.2
    # BN re-centres, ReLU cuts: later blocks get all-zero inputs (distance None): not near
    dead = with_start([0.3, None, None])
    assert by_id(dead)["identity_init"]["verdict"] == "inconclusive"
    assert dead["hypothesis_seeds"]["identity_init"]["seed 0"] == {
        "gap_points": pytest.approx(78.0), "closed": pytest.approx(0.75 / 0.78),
        "decided": None, "start_distance": None, "started_near_identity": False,
        "change_points": pytest.approx(-75.0)}
    assert "some blocks started with all-zero inputs" in dead["answer"]
    assert by_id(with_start([0.6, 0.7, 0.9]))["identity_init"]["verdict"] == "inconclusive"


def test_an_unconverged_reference_leaves_the_interventions_inconclusive():
    results = study()
    twin = next(c for c in results["cells"] if c["name"] == "resnet56-bn-s1")
    twin["convergence"] = {"steps": 1408, "converged": False, "train_errors": {}}
    rows = by_id(verdict(results))
    for key in ("identity_init", "learning_rate", "branch_scale"):
        assert rows[key]["verdict"] == "inconclusive", key
        assert rows[key]["measured"]["why_inconclusive"] == \
            "the reference hit the cap without converging (resnet56-bn-s1)", key
    assert rows["identity_init_no_bn"]["verdict"] != "inconclusive" or \
        rows["identity_init_no_bn"]["measured"]["why_inconclusive"] != \
        "the reference hit the cap without converging (resnet56-bn-s1)"


def test_the_numbers_of_the_answer_are_written_to_three_digits_and_missing_ones_as_n_a():
    from reskeras.study.judgment.verdict import _why_part

    rows = [
        {"id": "identity_task", "verdict": "supported", "measured": {
            "plain_kept_depth": 4, "residual_kept_depth": 16, "deepest_depth": 32,
            "plain_at_deepest": 0.68412, "residual_at_deepest": None}},
        {"id": "identity_init", "verdict": "supported", "measured": {
            "plain_identity": 0.01, "plain": 0.383, "residual": 0.001}},
        {"id": "landscape", "verdict": "supported", "measured": {
            "plain_invariant_sharpness_final": 587123.0,
            "residual_invariant_sharpness_final": 3271.4, "plain_sharpness_final": None,
            "residual_sharpness_final": 82.46}},
        {"id": "small_responses", "verdict": "inconclusive", "measured": {
            "plain_median_std": 1.1049, "residual_median_std": None}},
        {"id": "shattering", "verdict": "supported", "measured": {
            "plain_init": -0.0048, "residual_init": 0.66412}}]
    # no start distance measured for the identity-initialized net: no clause about it
    assert _why_part(rows, {"identity_init": {"seed 0": {"closed": 0.9}}}) == [
        "Why is a residual mapping easier? Trained to copy their own input, plain conv-BN-ReLU "
        "stacks kept it (error below 0.2) up to depth 4, residual stacks up to depth 16; at "
        "depth 32 the errors were 0.684 and n/a (a constant output scores 0.68) (identity "
        "task: supported). Starting the deepest plain BN net at the identity gave 1.0% "
        "training error, against 38.3% from He init and 0.1% for the residual twin (identity "
        "init: supported). After training, the median response std of the plain net's layers "
        "was 1.1, of the residual branches n/a (small responses: inconclusive).",
        "Why does the plain net not close the gap? In these runs after training its "
        "scale-invariant top Hessian eigenvalue was 5.87e+05 against 3.27e+03 for the residual "
        "twin (raw n/a against 82.5) (landscape: supported); at initialization its input "
        "gradients' neighbour correlation was -0.00 against 0.664 (shattering: supported).",
        "In short, supported: identity task, identity init, landscape, shattering; "
        "inconclusive: small responses."]
