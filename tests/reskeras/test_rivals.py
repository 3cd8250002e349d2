"""Rival hypotheses and their controls (issue 27): every decision path on constructed results.

The fixture (tests.reskeras.test_hypotheses.study) has the deepest plain BN net at 82%
training error, its residual twin at 2%, the identity init at 5% (start distance 0.1),
the permuted identity at 72% and delta-orthogonal at 65% (start distances 1.0 and 1.2).
"""

import pytest

from reskeras.study.criteria import SYMPTOM_REMOVED
from reskeras.study.judgment.hypotheses import hypotheses
from reskeras.study.judgment.interventions import gap_test, untrained_reference
from reskeras.study.judgment.symptoms import symptoms
from reskeras.study.judgment.verdict import verdict
from tests.reskeras.test_hypotheses import by_id, study

TRAINS = (0.04, 0.05, 0.03)  # closes (0.82 - 0.04) / 0.80: about 97% of the gap


def rows(results):
    return by_id(verdict(results))


@pytest.mark.parametrize("diracperm, deltaorth, tat, expected", [
    (TRAINS, TRAINS, TRAINS, "supported"),  # every well-conditioned far start trains
    ((0.70, 0.75, 0.72), (0.60, 0.65, 0.70), (0.62, 0.66, 0.64), "refuted"),  # none does
    (TRAINS, (0.60, 0.65, 0.70), TRAINS, "inconclusive"),  # one does not
    (TRAINS, TRAINS, (0.62, 0.66, 0.64), "inconclusive")])  # TAT does not
def test_conditioning_needs_every_well_conditioned_control(diracperm, deltaorth, tat, expected):
    found = rows(study(diracperm=diracperm, deltaorth=deltaorth, tat=tat))["conditioning"]
    assert found["verdict"] == expected
    assert set(found["measured"]["controls"]) == {"diracperm", "deltaorth", "tat"}
    if expected == "inconclusive":
        words = {TRAINS: "closes the gap"}
        assert found["measured"]["why_inconclusive"] == (
            f"permuted identity init: {words.get(diracperm, 'does not close the gap')}; "
            f"delta-orthogonal init: {words.get(deltaorth, 'does not close the gap')}; "
            f"TAT kernel shaping: {words.get(tat, 'does not close the gap')}")
    else:
        assert found["measured"]["why_inconclusive"] is None


def test_conditioning_without_tat_cells_is_inconclusive_not_decided_by_the_bn_controls():
    found = rows(study(diracperm=TRAINS, deltaorth=TRAINS, tat=None))["conditioning"]
    assert found["verdict"] == "inconclusive"
    assert found["measured"]["why_inconclusive"] == (
        "permuted identity init: closes the gap; delta-orthogonal init: closes the gap; "
        "TAT kernel shaping: not run")


def test_near_identity_is_refuted_by_a_far_start_that_trains_and_needs_far_starts():
    assert rows(study())["near_identity"]["verdict"] == "supported"
    far_trains = rows(study(deltaorth=TRAINS))["near_identity"]
    assert far_trains["verdict"] == "refuted"
    assert far_trains["measured"]["starts"]["deltaorth"]["start_distance"] == [1.2, 1.2, 1.2]
    # the "far" control started near the identity: it cannot test nearness
    results = study(deltaorth=TRAINS)
    for c in results["cells"]:
        if c["variant"] == "deltaorth" and c["batch_norm"]:
            for row in c["measures"]["identity"]:
                row["init"] = 0.2
    near = rows(results)["near_identity"]
    assert near["verdict"] == "inconclusive"
    assert "seed 0 started near the identity (0.20)" in near["measured"]["why_inconclusive"]
    # nothing trains: nearness cannot be told apart from anything else
    nothing = rows(study(dirac=(0.8, 0.81, 0.82)))["near_identity"]
    assert nothing["verdict"] == "inconclusive"
    assert nothing["measured"]["why_inconclusive"] == \
        "neither the identity init nor a far isometric start closes the gap"


def test_the_identity_premise_needs_a_measured_start():
    results = study()
    for c in results["cells"]:
        if c["variant"] == "dirac" and c["batch_norm"]:
            c["measures"] = None
    found = rows(results)["identity_init"]
    assert found["verdict"] == "inconclusive"
    assert found["measured"]["why_inconclusive"] == (
        "seed 0 started at an unmeasured distance; seed 1 started at an unmeasured distance; "
        "seed 2 started at an unmeasured distance")


def test_a_missing_intervention_seed_makes_the_hypothesis_inconclusive():
    results = study()
    cell = next(c for c in results["cells"] if c["name"] == "plain56-bn-dirac-s1")
    cell.update(status="running", final_train_error=None)
    found = rows(results)["identity_init"]
    assert found["verdict"] == "inconclusive"
    assert found["measured"]["why_inconclusive"] == "seed 1 misses its treated net"
    # the other two seeds alone would have decided
    assert gap_test({0: 0.8, 2: 0.84}, {0: 0.05, 2: 0.04}, {0: 0.02, 2: 0.01}).decision is True


@pytest.mark.parametrize("change, why", [
    (dict(final_train_error=0.30),
     "the reference did not train (mean training error 11.3%, not below 10%)"),
    (dict(convergence={"steps": 1408, "converged": True, "failed_to_start": True,
                       "train_errors": {}}),
     "the reference failed to train (resnet56-bn-s0)"),
    (dict(status="diverged"), "the reference failed to train (resnet56-bn-s0)")])
def test_an_untrained_reference_leaves_every_gap_test_inconclusive(change, why):
    results = study()
    next(c for c in results["cells"] if c["name"] == "resnet56-bn-s0").update(change)
    assert untrained_reference(results, True, True) == why
    found = rows(results)
    for key in ("identity_init", "conditioning", "learning_rate"):
        assert found[key]["verdict"] == "inconclusive", key
        assert found[key]["measured"]["why_inconclusive"] == why, key


def test_identity_init_no_bn_compares_against_a_reference_that_trained():
    # the no-BN residual twin at 64.6%: the identity init "closing 249%" is no measurement
    found = rows(study(residual_no_bn=0.646))["identity_init_no_bn"]
    assert found["verdict"] == "inconclusive"
    assert found["measured"]["why_inconclusive"] == \
        "the reference did not train (mean training error 64.6%, not below 10%)"
    assert rows(study(residual_no_bn=0.03))["identity_init_no_bn"]["verdict"] == "supported"


SWEEP = {"lr0.3": (0.80, 0.81, 0.83), "lr3": (0.85, 0.86, 0.84), "lr10": (0.9, 0.9, 0.9)}


@pytest.mark.parametrize("rates, expected, why", [
    ({}, "inconclusive", "no rate closes 50% of the gap, but the sweep has 1 rate(s) spanning "
     "1x; refuting needs at least 4 spanning 100x (the full preset runs them)"),
    (SWEEP, "refuted", None),  # 4 rates over 100x, none closes half the gap
    ({k: v for k, v in SWEEP.items() if k != "lr10"}, "inconclusive",
     "no rate closes 50% of the gap, but the sweep has 3 rate(s) spanning 30x; refuting "
     "needs at least 4 spanning 100x (the full preset runs them)"),
    ({**SWEEP, "lr0.3": TRAINS}, "supported", None)])
def test_learning_rate_is_refuted_only_by_a_whole_sweep(rates, expected, why):
    found = rows(study(rates=rates))["learning_rate"]
    assert found["verdict"] == expected
    assert found["measured"]["why_inconclusive"] == why
    assert sorted(found["measured"]["rates"]) == sorted({"lr0.1", *rates})


def test_fixup_is_reported_beside_skipinit():
    found = rows(study(residual_no_bn=0.40, fixup=(0.05, 0.06, 0.04)))["branch_scale"]
    assert found["verdict"] == "supported"  # SkipInit: (0.40-0.10)/(0.40-0.02) = 79%
    assert found["measured"]["fixup"]["verdict"] == "supported"
    assert found["measured"]["fixup"]["error"] == pytest.approx(0.05)


def lesion(baseline, increase):
    return {"baseline_error": baseline, "blocks": [{"error_increase": increase}] * 3}


@pytest.mark.parametrize("lesions, expected, why", [
    ({"plain": lesion(0.85, 0.0), "residual": lesion(0.05, 0.02)}, "inconclusive",
     "no plain net that trained was lesioned (the identity-initialized one did not run)"),
    ({"plain": lesion(0.85, 0.0), "residual": lesion(0.05, 0.02),
      "plain_identity": lesion(0.86, 0.0)}, "inconclusive",
     "the identity-initialized plain net is within 0.1 of chance: it did not train"),
    ({"plain": lesion(0.85, 0.0), "residual": lesion(0.85, 0.0),
      "plain_identity": lesion(0.05, 0.3)}, "inconclusive",
     "the residual net is within 0.1 of chance: no damage to measure"),
    ({"plain": lesion(0.85, 0.0), "residual": lesion(0.05, 0.02),
      "plain_identity": lesion(0.05, 0.3)}, "supported", None),
    ({"plain": lesion(0.85, 0.0), "residual": lesion(0.05, 0.35),
      "plain_identity": lesion(0.05, 0.3)}, "refuted", None),
    ({}, "inconclusive", "the lesion study did not run")])
def test_ensemble_compares_the_residual_net_with_a_plain_net_that_trained(lesions, expected,
                                                                          why):
    results = {**study(), "lesion": lesions}
    found = rows(results)["ensemble"]
    assert found["verdict"] == expected
    assert found["measured"]["why_inconclusive"] == why


def test_vanishing_gradients_is_decided_per_family_on_relative_norms():
    found = verdict(study(residual_deep=(0.010, 0.012, 0.011)))
    bn, no_bn = by_id(found)["vanishing_gradients"], by_id(found)["vanishing_gradients_no_bn"]
    assert (bn["verdict"], no_bn["verdict"]) == ("refuted", "supported")
    assert no_bn["measured"]["relative_first_last_ratio_median"] == pytest.approx(1e-7)
    assert "Without BatchNorm, the degraded plain net's gradients vanished" in found["answer"]
    assert "with BatchNorm, residual connections removed a degradation" in found["answer"]
    # the flags read ||g||/||w||, not the raw norms: equal raw, vanishing relative
    results = study()
    for c in results["cells"]:
        if (c["depth"], c["residual"], c["batch_norm"], c["variant"]) == (56, False, True, "he"):
            c["gradient"]["first_last_ratio_median"] = 1.0
            c["gradient"]["relative_first_last_ratio_median"] = 1e-4
    assert by_id(verdict(results))["vanishing_gradients"]["verdict"] == "supported"
    assert verdict(results)["vanishing_gradients"]["plain_bn"] is True
    # a family that did not degrade has nothing for vanishing gradients to explain
    calm = by_id(verdict(study(plain_deep=(0.01, 0.02, 0.01))))["vanishing_gradients"]
    assert calm["verdict"] == "inconclusive"
    assert calm["measured"]["why_inconclusive"] == \
        "the plain net did not degrade: nothing to explain"


def test_exploding_at_initialization_reads_the_relative_ratio():
    results = study()
    for c in results["cells"]:
        if (c["depth"], c["residual"], c["batch_norm"], c["variant"]) == (56, False, True, "he"):
            c["gradient"]["first_last_ratio_init"] = 350.0  # raw: exploding
            c["gradient"]["relative_first_last_ratio_init"] = 5.0 + c["seed"]
    assert verdict(results)["exploding_at_init"]["plain_bn"] is False
    for c in results["cells"]:
        if (c["depth"], c["residual"], c["batch_norm"], c["variant"]) == (56, False, True, "he"):
            c["gradient"]["relative_first_last_ratio_init"] = 350.0 + c["seed"]
    assert verdict(results)["exploding_at_init"]["plain_bn"] is True


def with_symptoms(results, growth, sharp, correlation):
    """Set each deep BN net's symptoms: ``{variant or "residual": value}``."""
    for c in results["cells"]:
        if c["depth"] != 56 or not c["batch_norm"] or c["variant"] not in (
                "he", "dirac", "diracperm", "deltaorth"):
            continue
        key = "residual" if c["residual"] else c["variant"]
        c["gradient"]["relative_first_last_ratio_init"] = growth[key]
        c["measures"] = {**(c["measures"] or {}), "sharpness": {"init_invariant": sharp[key]}}
    results["shattering"] = [{"residual": key == "residual", "depth": 56, "when": "init",
                              "variant": "he" if key == "residual" else key,
                              "neighbour_correlation": value}
                             for key, value in correlation.items()]
    return results


def test_a_symptom_counts_as_a_cause_only_if_the_start_that_trains_removes_it():
    growth = {"he": 350.0, "residual": 2.0, "dirac": 3.0, "diracperm": 300.0, "deltaorth": 2.5}
    sharp = {"he": 3.6e7, "residual": 1.1e3, "dirac": 4e6, "diracperm": 2e7, "deltaorth": 1e4}
    correlation = {"he": 0.0, "residual": 0.66, "dirac": 0.6, "diracperm": 0.0, "deltaorth": 0.5}
    found = symptoms(with_symptoms(study(), growth, sharp, correlation))
    assert found["starts_train"] == {"dirac": True, "diracperm": False, "deltaorth": False}
    row = next(r for r in found["rows"] if (r["start"], r["symptom"]) == ("dirac", "sharpness"))
    # log10: from 7.56 (plain) to 3.04 (residual); the identity start at 6.60 moved 21%
    assert row["moved"] == pytest.approx((6.60206 - 7.55630) / (3.04139 - 7.55630), rel=1e-4)
    assert row["removed"] is False and row["moved"] < SYMPTOM_REMOVED
    summary = found["symptoms"]
    assert summary["sharpness"]["counts_as_cause"] is False  # it trained, still sharp
    assert summary["sharpness"]["why"] == "a start that trains leaves it in place: dirac"
    assert summary["gradient_growth"]["counts_as_cause"] is True
    assert summary["shattering"]["counts_as_cause"] is True
    assert verdict(with_symptoms(study(), growth, sharp, correlation))["symptoms"] == found


def test_symptoms_need_a_start_that_trains_and_both_twins_measured():
    growth = dict.fromkeys(("he", "residual", "dirac", "diracperm", "deltaorth"), 2.0)
    found = symptoms(with_symptoms(study(dirac=(0.8, 0.81, 0.82)), {**growth, "he": 300.0},
                                   growth, {k: 0.5 for k in growth}))
    assert found["symptoms"]["gradient_growth"] == {
        "what": "first/last conv relative gradient-norm ratio at step 0", "log10": True,
        "plain": pytest.approx(2.4771, rel=1e-4), "residual": pytest.approx(0.30103, rel=1e-4),
        "counts_as_cause": None, "why": "no isometric start closes the gap"}
    # equal values on both twins: not a symptom at all
    assert found["symptoms"]["sharpness"]["why"] == "the twins do not differ in it"
    assert symptoms(study())["symptoms"]["shattering"]["why"] == "not measured on both twins"
    # measured on the twins but not on the start that trains
    assert symptoms(study())["symptoms"]["sharpness"]["why"] == \
        "not measured for a start that trains: dirac"


def test_no_hypothesis_decides_on_an_empty_study():
    rows_, _ = hypotheses({"cells": []})
    assert {row["verdict"] for row in rows_} == {"inconclusive"}
    assert all(row["measured"].get("why_inconclusive") or not row["measured"]
               for row in rows_)


def test_the_report_shows_the_conditioning_controls_beside_the_identity_init():
    from reskeras.study.report.controls import control_blocks
    from reskeras.study.report.render import render_markdown

    growth = {"he": 350.0, "residual": 2.0, "dirac": 3.0, "diracperm": 300.0, "deltaorth": 2.5}
    sharp = {"he": 3.6e7, "residual": 1.1e3, "dirac": 4e6, "diracperm": 2e7, "deltaorth": 1e4}
    correlation = {"he": 0.0, "residual": 0.66, "dirac": 0.6, "diracperm": 0.0, "deltaorth": 0.5}
    found = verdict(with_symptoms(study(), growth, sharp, correlation))
    blocks = control_blocks(found)
    starts = next(b for b in blocks if b[0] == "table" and b[1][0] == "start")
    assert [row[:2] for row in starts[2]] == [
        ["He (the twin)", "BN"], ["identity init", "BN"], ["permuted identity init", "BN"],
        ["delta-orthogonal init", "BN"], ["TAT kernel shaping", "no BN, BN twins' gap"],
        ["TAT kernel shaping", "no BN"]]  # TAT's net has no BN; no other no-BN control
    assert starts[2][1][2:] == ["0.10", "5.0%", starts[2][1][4], "closes"]
    assert starts[2][2][2] == "1.00" and starts[2][2][5] == "does not close"
    symptoms_table = next(b for b in blocks if b[0] == "table" and b[1][0] == "symptom")
    assert len(symptoms_table[2]) == 3 * 3  # three symptoms x three starts
    text = render_markdown(blocks)
    assert "scale-invariant top Hessian eigenvalue at initialization: not a cause" in text
    assert "| identity init | BN | 0.10 | 5.0% |" in text


def with_depth_sweep(results, errors8):
    """The identity init at depth 8 too (``errors8`` per seed, BN and no BN)."""
    from tests.reskeras.test_hypotheses import cell
    results["cells"] += [cell(False, 8, bn, seed, e, variant="dirac")
                         for bn in (True, False) for seed, e in enumerate(errors8)]
    return results


def test_an_init_run_at_every_depth_says_whether_it_removes_the_depth_trend():
    # identity init: 0-1% at depth 8, 4-6% at depth 56 (+4.7 points): it still degrades
    found = verdict(with_depth_sweep(study(), (0.0, 0.01, 0.0)))
    trend = found["depth_trends"]["dirac"]["bn"]
    assert (trend["degraded"], trend["twin_degraded"], trend["removes_trend"]) == \
        (True, True, False)
    assert trend["points"] == pytest.approx(14 / 3, abs=1e-6)
    assert ("Across depths, from the identity init the plain nets with BN still degraded from "
            "depth 8 to 56 (+4.7 points)") in found["answer"]
    # 4.5-5.5% at depth 8: the identity-initialized family no longer degrades
    flat = verdict(with_depth_sweep(study(), (0.049, 0.06, 0.04)))["depth_trends"]["dirac"]
    assert flat["bn"]["removes_trend"] is True and flat["bn"]["degraded"] is False
    # an init at the deepest depth only has no trend (quick)
    assert verdict(study())["depth_trends"] == {}


def test_a_depth_trend_with_an_unconverged_shallow_reference_is_undecided():
    results = with_depth_sweep(study(), (0.01, 0.012, 0.011))
    for c in results["cells"]:
        if (c["variant"], c["depth"], c["batch_norm"]) == ("dirac", 8, True):
            c["convergence"] = {**c["convergence"], "converged": False}
    trend = verdict(results)["depth_trends"]["dirac"]["bn"]
    assert trend["removes_trend"] is None and trend["degraded"] == "inconclusive"
    assert trend["why"] == (
        "the identity init family's degradation is inconclusive (the shallow reference hit the "
        "cap without converging (plain8-bn-dirac-s0, plain8-bn-dirac-s1, plain8-bn-dirac-s2))")
