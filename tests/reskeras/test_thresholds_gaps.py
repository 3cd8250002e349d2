"""Threshold tables (issue 31) of the gap test and the rules built on it.

GAP_CLOSED, MIN_GAP_POINTS, IDENTITY_PREMISE, REFERENCE_TRAINED, SYMPTOM_REMOVED,
LR_SWEEP_RATES and LR_SWEEP_SPAN: each table calls the real judgment on inputs just on each
side of the value (and at it, to pin ``>=`` against ``>``).
tests/reskeras/test_threshold_moves.py runs every table at the real values and with each
value moved 10% (a count: one step) either way. The tests below the tables cover the
``why_inconclusive`` branches that no other test reaches.
"""


import pytest

from reskeras.study.cells import LR_SWEEP, lr_factor
from reskeras.study.judgment.interventions import gap_test, untrained_reference
from reskeras.study.judgment.rivals import learning_rate
from reskeras.study.judgment.shaping import kernel_shaping
from reskeras.study.judgment.symptoms import symptoms
from reskeras.study.judgment.verdict import verdict
from tests.reskeras.test_hypotheses import by_id, cell, study
from tests.reskeras.test_rivals import SWEEP, with_symptoms
from tests.reskeras.test_shaping_rule import ABOVE, BELOW, shaped
from tests.reskeras.thresholds import pins

SEEDS = (0, 1, 2)
STAYS = (0.70, 0.75, 0.72)  # closes about 12% of the study fixture's gap
NETS = ("he", "residual", "dirac", "diracperm", "deltaorth")  # with_symptoms' keys


def same(value, seeds=SEEDS):
    return dict.fromkeys(seeds, value)


def closing(fraction, *, baseline=0.8, premise=None, far=False):
    """The gap test of an intervention closing ``fraction`` of a ``baseline`` gap in every
    seed (the reference at 0% error); ``premise``: every seed's start distance."""
    return gap_test(same(baseline), same(baseline * (1 - fraction)), same(0.0),
                    premise=None if premise is None else same(premise), far=far)


def started_at(results, variant, distance):
    """``results`` with every block of ``variant``'s BN cells started ``distance`` from the
    identity."""
    for c in results["cells"]:
        if c["variant"] == variant and c["batch_norm"]:
            for row in c["measures"]["identity"]:
                row["init"] = distance
    return results


def rows(results):
    return by_id(verdict(results))


# GAP_CLOSED: the interval of the fraction closed must lie wholly above 0.5 (wholly at or
# below: no); a seed closing at least 0.5 counts as closing.
@pins("GAP_CLOSED")
def gap_closed_by_the_gap_test():
    return [("closes 52% in every seed: yes", closing(0.52).decision, True),
            ("closes 48%: no", closing(0.48).decision, False),
            ("closes exactly 50%: no (not wholly above)", closing(0.5).decision, False),
            ("a seed closing exactly 50% closes", closing(0.5).per_seed["seed 0"]["decided"],
             True),
            ("a seed closing 48% does not", closing(0.48).per_seed["seed 0"]["decided"], False)]


@pins("GAP_CLOSED")
def gap_closed_through_the_hypotheses():
    def verdicts(errors):
        found = rows(study(dirac=errors, diracperm=errors, deltaorth=errors, tat=errors,
                           lr=errors))
        return tuple(found[key]["verdict"] for key in (
            "identity_init", "conditioning", "near_identity", "learning_rate"))

    return [("every start closes 52%", verdicts(ABOVE),
             ("supported", "supported", "refuted", "supported")),
            ("every start closes 48%", verdicts(BELOW),
             ("refuted", "refuted", "inconclusive", "inconclusive")),
            ("TAT closes 52%: kernel_shaping", kernel_shaping(shaped(ABOVE))[2], "supported"),
            ("TAT closes 48%: kernel_shaping", kernel_shaping(shaped(BELOW))[2], "refuted")]


# MIN_GAP_POINTS: a seed decides only with a gap of at least 2 points.
@pins("MIN_GAP_POINTS")
def min_gap_points_by_the_gap_test():
    def decision(gap):
        return gap_test(same(gap), same(0.0), same(0.0)).decision

    return [("a gap of 2.1 points decides", decision(0.021), True),
            ("a gap of 1.9 points does not", decision(0.019), "inconclusive"),
            ("a gap of exactly 2 points decides", decision(0.02), True)]


# IDENTITY_PREMISE: near the identity is a median block distance below 0.5, far is at least
# 0.5; an unmet premise leaves the seed undecided.
@pins("IDENTITY_PREMISE")
def identity_premise_by_the_gap_test():
    def near(distance):
        return closing(0.9, premise=distance).decision

    def far(distance):
        return closing(0.9, premise=distance, far=True).decision

    return [("started 0.48 away: near", near(0.48), True),
            ("started 0.52 away: not near", near(0.52), "inconclusive"),
            ("started exactly 0.5 away: not near", near(0.5), "inconclusive"),
            ("a control started 0.52 away: far", far(0.52), True),
            ("a control started 0.48 away: not far", far(0.48), "inconclusive"),
            ("a control started exactly 0.5 away: far", far(0.5), True)]


@pins("IDENTITY_PREMISE")
def identity_premise_through_the_hypotheses():
    def identity_init(distance):
        return rows(started_at(study(), "dirac", distance))["identity_init"]["verdict"]

    def near_identity(distance):  # delta-orthogonal trains: refutes only if it started far
        results = started_at(study(deltaorth=(0.04, 0.05, 0.03)), "deltaorth", distance)
        return rows(results)["near_identity"]["verdict"]

    return [("identity init started 0.48 away", identity_init(0.48), "supported"),
            ("identity init started 0.52 away", identity_init(0.52), "inconclusive"),
            ("a control that trains started 0.52 away", near_identity(0.52), "refuted"),
            ("a control that trains started 0.48 away", near_identity(0.48), "inconclusive")]


# REFERENCE_TRAINED: the reference trained when its mean training error is below 10%.
@pins("REFERENCE_TRAINED")
def reference_trained_by_untrained_reference():
    def trained(*errors):
        twin = {"cells": [cell(True, 56, True, seed, e) for seed, e in enumerate(errors)]}
        return untrained_reference(twin, True, True) is None

    def identity_init(error):
        return rows(study(residual_deep=(error,) * 3))["identity_init"]["verdict"]

    return [("mean 9.5%: trained", trained(0.095, 0.095, 0.095), True),
            ("mean 10.5%: did not train", trained(0.105, 0.105, 0.105), False),
            ("exactly 10%: did not train", trained(0.1), False),
            ("identity_init against a 9.5% reference", identity_init(0.095), "supported"),
            ("identity_init against a 10.5% reference", identity_init(0.105), "inconclusive")]


# SYMPTOM_REMOVED: a start that trains removes a symptom when it moved at least half the way
# from the plain twin's value to the residual twin's (shattering is read as is, here from
# 0 to 1, so the identity start's correlation is the fraction moved).
@pins("SYMPTOM_REMOVED")
def symptom_removed_by_symptoms():
    def shattering(moved):
        flat = dict.fromkeys(NETS, 2.0)
        correlation = {**dict.fromkeys(NETS, 0.0), "residual": 1.0, "dirac": moved}
        found = symptoms(with_symptoms(study(), flat, flat, correlation))
        row = next(r for r in found["rows"] if (r["start"], r["symptom"]) ==
                   ("dirac", "shattering"))
        return row["removed"], found["symptoms"]["shattering"]["counts_as_cause"]

    return [("moved 52% of the way: removed, a candidate cause", shattering(0.52),
             (True, True)),
            ("moved 48%: left in place, not a cause", shattering(0.48), (False, False)),
            ("moved exactly 50%: removed", shattering(0.5), (True, True))]


# LR_SWEEP_RATES, LR_SWEEP_SPAN: learning_rate is refuted only by a sweep of at least 4 rates
# spanning at least 100x of which none closes the gap (the study fixture has 0.1x; SWEEP adds
# 0.3x, 3x and 10x).
def lr_verdict(rates, factors=None):
    """learning_rate's verdict with ``rates`` (SWEEP's keys) beside 0.1x, none closing;
    ``factors``: rates other than the study's for some variants (a sweep the study does not
    run, to test the span between the study's own 100x and 10% off it)."""
    results = study(rates={k: SWEEP[k] for k in rates})
    sweep = {v: lr_factor(v) for v in LR_SWEEP}
    return learning_rate(results, {**sweep, **(factors or {})})[2]


@pins("LR_SWEEP_RATES")
def lr_sweep_rates_by_learning_rate():
    return [("4 rates over 100x: refuted", lr_verdict(("lr0.3", "lr3", "lr10")), "refuted"),
            ("3 rates over 100x: inconclusive", lr_verdict(("lr3", "lr10")), "inconclusive")]


@pins("LR_SWEEP_SPAN")
def lr_sweep_span_by_learning_rate():
    every = ("lr0.3", "lr3", "lr10")
    return [("4 rates over exactly 100x: refuted", lr_verdict(every), "refuted"),
            ("4 rates over 95x: inconclusive", lr_verdict(every, {"lr10": 9.5}), "inconclusive"),
            ("4 rates over 105x: refuted", lr_verdict(every, {"lr10": 10.5}), "refuted")]


@pytest.mark.parametrize("baseline, treated, reference, premise, decision, why", [
    ({0: 0.8, 1: 0.019, 2: 0.8}, same(0.05), same(0.0), None, "inconclusive",
     "seed 1 has a gap of 1.9 points (below 2)"),
    ({0: 0.8, 2: 0.8}, same(0.05), same(0.0), None, "inconclusive",
     "seed 1 misses its baseline net"),
    (same(0.8), same(0.05), {}, None, "inconclusive",
     "seed 0 misses its reference net; seed 1 misses its reference net; "
     "seed 2 misses its reference net"),
    (same(0.8), same(0.05), {0: 0.0, 2: 0.0}, None, True, None),  # seed 1: the mean reference
    (same(0.8), same(0.05), same(0.0), {0: 0.1, 1: 0.6, 2: 0.1}, "inconclusive",
     "seed 1 started far from the identity (0.60)"),
    ({}, {}, {}, None, None, "not run")])
def test_the_gap_test_says_why_a_seed_decides_nothing(baseline, treated, reference, premise,
                                                      decision, why):
    test = gap_test(baseline, treated, reference, premise=premise)
    assert (test.decision, test.why) == (decision, why)


def test_a_seed_missing_two_nets_names_both():
    test = gap_test({0: 0.8, 2: 0.8}, {0: 0.05, 2: 0.05}, same(0.0), expected=SEEDS)
    assert (test.decision, test.why) == ("inconclusive",
                                         "seed 1 misses its treated and baseline net")


@pytest.mark.parametrize("change, why", [
    ("drop", "the reference net was not run"),
    ("running", "the reference has no finished cell")])
def test_a_reference_that_is_not_there_leaves_the_interventions_inconclusive(change, why):
    results = study()
    twins = [c for c in results["cells"] if c["name"].startswith("resnet56-bn-s")]
    assert len(twins) == 3
    if change == "drop":
        results["cells"] = [c for c in results["cells"] if c not in twins]
    else:
        for twin in twins:
            twin.update(status="running", final_train_error=None)
    assert untrained_reference(results, True, True) == why
    found = rows(results)["identity_init"]
    assert (found["verdict"], found["measured"]["why_inconclusive"]) == ("inconclusive", why)


@pytest.mark.parametrize("lr, rates, why", [
    ((), {}, "no learning-rate variant ran"),
    ((0.05, 0.81, 0.06), {"lr0.3": STAYS},
     "0.1x learning rate: the interval of the fraction closed straddles 0.5; "
     "0.3x learning rate: does not close the gap")])
def test_learning_rate_is_inconclusive_without_a_decided_sweep(lr, rates, why):
    measured, _, found = learning_rate(study(lr=lr, rates=rates))
    assert (found, measured["why_inconclusive"]) == ("inconclusive", why)


def test_a_symptom_every_training_start_removes_is_a_candidate_cause():
    flat = dict.fromkeys(NETS, 2.0)
    correlation = {**dict.fromkeys(NETS, 0.0), "residual": 1.0, "dirac": 0.9}
    found = symptoms(with_symptoms(study(), flat, flat, correlation))["symptoms"]["shattering"]
    assert (found["counts_as_cause"], found["why"]) == (True, "every start that trains removes it")


def test_no_cells_no_symptoms():
    found = symptoms({"cells": []})
    assert found["symptoms"] == {name: {"counts_as_cause": None, "why": "no cells"}
                                 for name in ("gradient_growth", "sharpness", "shattering")}
