"""Threshold tables (issue 31) of the verdict's flags, the lesion and shattering rules, the
convergence rule and the intervals.

DEGRADATION_POINTS, VANISHING_RATIO, EXPLODING_RATIO, ENSEMBLE_DAMAGE, MIN_HEADROOM,
SHATTERING_GAP, CONVERGED_POINTS, FAILED_TO_START, CONFIDENCE and BOOTSTRAP_SEEDS: each
table calls the real judgment on inputs just on each side of the value (and at it, to pin
``>=`` against ``>``); tests/reskeras/test_threshold_moves.py moves each value. A row's found
value is a decision, never a sentence that prints the threshold (that would break under any
move and pin nothing). The tests below the tables cover the ensemble and shattering branches
and the answer's sentences on vanishing gradients that no other test reaches.
"""

import math

import pytest

from reskeras.study.judgment import hypotheses as hyp
from reskeras.study.judgment.convergence import failed_to_start, state
from reskeras.study.judgment.intervals import decide, interval
from reskeras.study.judgment.verdict import degradation, gradients, statistics_gaps, verdict
from reskeras.study.measures.gradient_flow import classify, gradient_summary
from tests.reskeras.test_convergence import CHANCE, points, read_until_done
from tests.reskeras.test_hypotheses import by_id, cell, study
from tests.reskeras.test_study import records
from tests.reskeras.thresholds import pins

T_975_2DF = 4.302652729749462  # Student t quantile 0.975, 2 degrees of freedom


# --- builders -------------------------------------------------------------------------------

def plain_family(gaps_points, shallow=0.01):
    """The plain BN family at depths 8 and 56, one seed per gap (deep minus shallow, points)."""
    cells = []
    for seed, gap in enumerate(gaps_points):
        cells += [cell(False, 8, True, seed, shallow),
                  cell(False, 56, True, seed, shallow + gap / 100)]
    return {"cells": cells, "classes": 10}


def deep_plain_ratios(*ratios):
    """The deepest plain BN net, one seed per first/last relative gradient ratio."""
    return {"cells": [cell(False, 56, True, seed, 0.5, ratio)
                      for seed, ratio in enumerate(ratios)], "classes": 10}


def vanishing_flag(*ratios):
    return gradients(deep_plain_ratios(*ratios))[0]["plain_bn"]


def exploding_flag(*ratios):
    return gradients(deep_plain_ratios(*ratios))[1]["plain_bn"]


def lesioned(damage, headroom=0.5, chance=0.9):
    """A lesion record whose every block does ``damage`` (fraction of the way to chance) to
    a net ``headroom`` below chance (10 classes: chance 0.9)."""
    return {"baseline_error": chance - headroom,
            "blocks": [{"error_increase": damage * headroom}] * 3}


def ensemble(lesion):
    """``(verdict, measured, per_seed)`` of the ensemble hypothesis on ``lesion``."""
    results = {"cells": [], "classes": 10}
    if lesion is not None:
        results["lesion"] = lesion
    rows, per_seed = hyp.hypotheses(results)
    row = next(r for r in rows if r["id"] == "ensemble")
    return row["verdict"], row["measured"], per_seed["ensemble"]


def ensemble_verdict(residual, trained=0.9, trained_headroom=0.5):
    """The ensemble verdict for these median damages (the residual net 0.5 below chance)."""
    return ensemble({"residual": lesioned(residual),
                     "plain_identity": lesioned(trained, trained_headroom)})[0]


def correlations(plain, residual, depth=56, **extra):
    return [{"residual": False, "depth": depth, "when": "init", "neighbour_correlation": plain,
             **extra},
            {"residual": True, "depth": depth, "when": "init", "neighbour_correlation": residual,
             **extra}]


def shattering(rows):
    """``(verdict, measured, per_seed)`` of the shattering hypothesis on ``rows``."""
    found, per_seed = hyp.hypotheses({"cells": [], "classes": 10, "shattering": rows})
    row = next(r for r in found if r["id"] == "shattering")
    return row["verdict"], row["measured"], per_seed["shattering"]


def straddling(centre, threshold=0.0):
    """Three values whose 95% t-interval has its lower bound ``centre`` half-widths above
    ``threshold`` (``centre`` 1.05: just above it; 0.95: just below)."""
    mean = threshold + centre * T_975_2DF / math.sqrt(3)
    return [mean - 1.0, mean, mean + 1.0]


def converged_after(moved_points):
    """Converged at 352 steps when the error moved ``moved_points`` since 176?"""
    return state(points([0.20, 0.10, 0.10 - moved_points / 100]), classes=10,
                 cap=1408)["converged"]


def flat_at(fraction):
    """The state of a flat curve whose loss is ``fraction`` of ln(10) below it."""
    return state(points([0.5, 0.5, 0.5], [CHANCE * (1 - fraction)] * 3), classes=10, cap=1408)


# --- tables ---------------------------------------------------------------------------------

@pins("DEGRADATION_POINTS")
def degradation_points_flag():
    def flag(*gaps):
        return degradation(plain_family(gaps))["plain"]

    def per_seed(gap):
        return degradation(plain_family([gap, gap]))["numbers"]["plain"]["per_seed"]["0"]

    return [("2.09-2.11 points in 3 seeds: degraded", flag(2.09, 2.10, 2.11), True),
            ("1.89-1.91 points: not degraded", flag(1.89, 1.90, 1.91), False),
            ("exactly 2 points in every seed: not degraded (wholly above)", flag(2, 2, 2), False),
            ("1.9, 2.0, 2.1 points: the interval straddles 2", flag(1.9, 2.0, 2.1),
             "inconclusive"),
            ("a seed 2.1 points worse degraded", per_seed(2.1), True),
            ("a seed 1.9 points worse did not", per_seed(1.9), False),
            ("a seed exactly 2 points worse did not", per_seed(2.0), False)]


@pins("DEGRADATION_POINTS")
def degradation_points_statistics_gap():
    results = plain_family([50.0, 50.0])
    for c, gap in zip(results["cells"], (2.1, 1.9, 2.0, 0.5)):
        c["errors"] = {"bn_statistics_gap": gap}
    above = statistics_gaps(results)["above_threshold"]
    return [("EMA adds 2.1 points: said", "plain8-bn-s0" in above, True),
            ("EMA adds 1.9 points: not said", "plain56-bn-s0" in above, False),
            ("EMA adds exactly 2 points: not said", "plain8-bn-s1" in above, False)]


@pins("VANISHING_RATIO")
def vanishing_ratio_label():
    return [("ratio 0.0095: vanishing", classify(0.0095), "vanishing"),
            ("ratio 0.0105: healthy", classify(0.0105), "healthy"),
            ("ratio exactly 0.01: healthy (below means below)", classify(0.01), "healthy"),
            ("a run at 0.0095 throughout: vanishing", gradient_summary(records(0.0095))["state"],
             "vanishing"),
            ("a run at 0.0105 throughout: healthy", gradient_summary(records(0.0105))["state"],
             "healthy")]


@pins("VANISHING_RATIO")
def vanishing_ratio_flag():
    return [("seeds at 0.0094-0.0096: vanished", vanishing_flag(0.0094, 0.0095, 0.0096), True),
            ("seeds at 0.0104-0.0106: did not", vanishing_flag(0.0104, 0.0105, 0.0106), False),
            ("every seed exactly 0.01: did not", vanishing_flag(0.01, 0.01, 0.01), False),
            ("seeds at 0.009 and 0.011: straddles", vanishing_flag(0.009, 0.0101, 0.011),
             "inconclusive"),
            ("the degraded plain net at 0.0095: vanishing_gradients supported",
             by_id(verdict(study(plain_ratio=0.0095)))["vanishing_gradients"]["verdict"],
             "supported"),
            ("at 0.0105: refuted",
             by_id(verdict(study(plain_ratio=0.0105)))["vanishing_gradients"]["verdict"],
             "refuted")]


@pins("EXPLODING_RATIO")
def exploding_ratio_label():
    return [("ratio 105: exploding", classify(105.0), "exploding"),
            ("ratio 95: healthy", classify(95.0), "healthy"),
            ("ratio exactly 100: healthy (above means above)", classify(100.0), "healthy"),
            ("105 at step 0: exploding at init",
             gradient_summary(records(105.0))["exploding_at_init"], True),
            ("95 at step 0: not", gradient_summary(records(95.0))["exploding_at_init"], False)]


@pins("EXPLODING_RATIO")
def exploding_ratio_flag():
    return [("seeds at 104-106: exploding at init", exploding_flag(104.0, 105.0, 106.0), True),
            ("seeds at 94-96: not", exploding_flag(94.0, 95.0, 96.0), False),
            ("every seed exactly 100: not", exploding_flag(100.0, 100.0, 100.0), False),
            ("seeds at 90 and 110: straddles", exploding_flag(90.0, 99.0, 110.0),
             "inconclusive")]


@pins("ENSEMBLE_DAMAGE")
def ensemble_damage_verdict():
    return [("residual damage 0.095 (the plain net's 0.9): supported",
             ensemble_verdict(0.095), "supported"),
            ("exactly 0.1: not below it", ensemble_verdict(0.1), "inconclusive"),
            ("0.105: inconclusive", ensemble_verdict(0.105), "inconclusive"),
            ("0.285: short of 3x, inconclusive", ensemble_verdict(0.285), "inconclusive"),
            ("0.315: at least 3x, refuted", ensemble_verdict(0.315), "refuted")]


@pins("MIN_HEADROOM")
def min_headroom_lesion():
    def unmeasured(kind, headroom):
        verdict_, measured, _ = ensemble({
            "residual": lesioned(0.05, headroom if kind == "residual" else 0.5),
            "plain_identity": lesioned(0.9, headroom if kind == "plain_identity" else 0.5)})
        return measured[f"{kind}_median_damage"] is None

    return [("residual net 0.095 below chance: no damage measured",
             unmeasured("residual", 0.095), True),
            ("0.105 below chance: measured", unmeasured("residual", 0.105), False),
            ("identity-initialized plain net 0.095 below chance: not measured",
             unmeasured("plain_identity", 0.095), True),
            ("0.105 below chance: measured", unmeasured("plain_identity", 0.105), False),
            ("the trained plain net 0.105 below chance decides: supported",
             ensemble_verdict(0.05, 0.9, trained_headroom=0.105), "supported")]


@pins("SHATTERING_GAP")
def shattering_gap_verdict():
    return [("residual 0.105 above the plain net: supported",
             shattering(correlations(0.2, 0.305))[0], "supported"),
            ("0.095 above: inconclusive", shattering(correlations(0.2, 0.295))[0],
             "inconclusive"),
            ("exactly 0.1 above: supported (at least)", shattering(correlations(0.0, 0.1))[0],
             "supported")]


@pins("CONVERGED_POINTS")
def converged_points_rule():
    walk = points([0.40, 0.10, 0.10 - 0.00525, 0.10 - 0.00525 - 0.00475, 0.05])
    return [("moved 0.475 points over the last doubling: converged", converged_after(0.475),
             True),
            ("moved 0.525 points: trains on", converged_after(0.525), False),
            ("moved exactly 0.5 points: trains on (less than)", converged_after(0.5), False),
            ("rose 0.475 points: converged too", converged_after(-0.475), True),
            ("0.525 then 0.475 points: stops at 704 steps", read_until_done(walk)[1][-1], 704)]


@pins("FAILED_TO_START")
def failed_to_start_rule():
    return [("loss 4.75% below ln(10): failed", failed_to_start(CHANCE * (1 - 0.0475), 10), True),
            ("5.25% below: started", failed_to_start(CHANCE * (1 - 0.0525), 10), False),
            ("exactly 5% below: failed (within)", failed_to_start(CHANCE * (1 - 0.05), 10), True),
            ("4.75% above: failed", failed_to_start(CHANCE * (1 + 0.0475), 10), True),
            ("5.25% above: started", failed_to_start(CHANCE * (1 + 0.0525), 10), False),
            ("a flat error 4.75% from ln(10) is not convergence",
             (flat_at(0.0475)["converged"], flat_at(0.0475)["failed_to_start"]), (False, True)),
            ("a flat error 5.25% from ln(10) is",
             (flat_at(0.0525)["converged"], flat_at(0.0525)["failed_to_start"]), (True, False))]


@pins("CONFIDENCE")
def confidence_t_interval():
    return [("lower bound just above 0: yes", decide(interval(straddling(1.05)), 0.0), True),
            ("lower bound just below 0: straddles", decide(interval(straddling(0.95)), 0.0),
             "inconclusive"),
            ("upper bound just below 0: no",
             decide(interval([-v for v in straddling(1.05)]), 0.0), False),
            ("upper bound just above 0: straddles",
             decide(interval([-v for v in straddling(0.95)]), 0.0), "inconclusive")]


@pins("BOOTSTRAP_SEEDS")
def bootstrap_seeds_method():
    return [(f"{n} seeds: {method}", interval([float(v) for v in range(n)])["method"], method)
            for n, method in ((4, "t"), (5, "bootstrap"), (6, "bootstrap"))]


# --- branches no other test runs ------------------------------------------------------------

@pytest.mark.parametrize("lesion, expected, why", [
    pytest.param(None, "inconclusive", "the lesion study did not run", id="not-run"),
    pytest.param({"residual": lesioned(0.05, 0.05), "plain_identity": lesioned(0.9)},
                 "inconclusive",
                 "the residual net is within 0.1 of chance: no damage to measure",
                 id="residual-at-chance"),
    pytest.param({"residual": {"baseline_error": 0.1, "blocks": []},
                  "plain_identity": lesioned(0.9)}, "inconclusive",
                 "the residual net is within 0.1 of chance: no damage to measure",
                 id="residual-no-blocks"),
    pytest.param({"residual": lesioned(0.05)}, "inconclusive",
                 "no plain net that trained was lesioned (the identity-initialized one did not "
                 "run)", id="no-trained-plain-net"),
    pytest.param({"residual": lesioned(0.05), "plain_identity": lesioned(0.9, 0.05)},
                 "inconclusive",
                 "the identity-initialized plain net is within 0.1 of chance: it did not train",
                 id="trained-plain-net-at-chance"),
    pytest.param({"residual": lesioned(0.05), "plain_identity": lesioned(0.9)}, "supported",
                 None, id="supported"),
    pytest.param({"residual": lesioned(0.4), "plain_identity": lesioned(0.9)}, "refuted",
                 None, id="refuted-at-least-3x"),
    pytest.param({"residual": lesioned(0.15), "plain_identity": lesioned(0.12)}, "refuted",
                 None, id="refuted-not-below-the-plain-net"),
    pytest.param({"residual": lesioned(0.15), "plain_identity": lesioned(0.5)}, "inconclusive",
                 "the residual net's damage 0.150 is neither below 0.1 and half the trained "
                 "plain net's (0.500) nor at least 0.3 or the plain net's",
                 id="between-thresholds"),
    pytest.param({"residual": lesioned(0.05), "plain_identity": lesioned(0.08)}, "inconclusive",
                 "the residual net's damage 0.050 is neither below 0.1 and half the trained "
                 "plain net's (0.080) nor at least 0.3 or the plain net's",
                 id="small-but-not-half-the-plain-net"),
])
def test_ensemble_verdict_per_branch(lesion, expected, why):
    found, measured, per_seed = ensemble(lesion)
    assert (found, measured["why_inconclusive"]) == (expected, why)
    if lesion is None:
        assert per_seed == {}
    else:
        assert set(per_seed["first seed"]) == {"plain", "residual", "plain_identity"}


def test_ensemble_damage_is_clipped_to_the_way_to_chance():
    # an increase beyond chance counts as 1.0, an improvement as 0.0
    lesion = {"residual": {"baseline_error": 0.4, "blocks": [
                  {"error_increase": -0.1}, {"error_increase": -0.2}, {"error_increase": 0.9}]},
              "plain_identity": {"baseline_error": 0.4, "blocks": [{"error_increase": 0.9}]}}
    found, measured, _ = ensemble(lesion)
    assert (measured["residual_median_damage"], measured["plain_identity_median_damage"]) == \
        (0.0, 1.0)
    assert measured["residual_intact_error"] == 0.4 and found == "supported"


@pytest.mark.parametrize("rows, expected, gap", [
    pytest.param(correlations(0.2, 0.9), "supported", 0.7, id="supported"),
    pytest.param(correlations(0.5, 0.5), "refuted", 0.0, id="refuted-no-gap"),
    pytest.param(correlations(0.6, 0.4), "refuted", -0.2, id="refuted-plain-above"),
    pytest.param(correlations(0.5, 0.55), "inconclusive", 0.05, id="inconclusive-small-gap"),
    pytest.param(correlations(0.2, 0.6) + correlations(0.5, 0.5, depth=110), "refuted", 0.0,
                 id="the-deepest-twins-decide"),
    pytest.param(correlations(0.5, 0.5) + correlations(0.0, 0.9, variant="dirac"), "refuted",
                 0.0, id="interventions-left-out"),
])
def test_shattering_verdict_per_branch(rows, expected, gap):
    found, _, per_seed = shattering(rows)
    assert found == expected
    assert per_seed["first seed"]["correlation_gap"] == pytest.approx(gap)


@pytest.mark.parametrize("rows, measured", [
    pytest.param([], {}, id="not-run"),
    pytest.param([dict(row, when="final") for row in correlations(0.2, 0.9)], {},
                 id="no-rows-at-init"),
    pytest.param(correlations(0.2, 0.9)[:1] + correlations(0.8, 0.9, depth=8)[1:],
                 {"plain_init": 0.2, "residual_init": None, "plain_shallowest_init": None},
                 id="no-residual-twin-at-the-deepest-depth"),
])
def test_shattering_without_both_deep_twins_is_inconclusive(rows, measured):
    found, got, per_seed = shattering(rows)
    assert (found, got, per_seed) == ("inconclusive", measured, {})


def with_plain_ratios(ratios, **kwargs):
    """``study(**kwargs)`` with the deepest plain BN net's gradient ratio set per seed."""
    results = study(**kwargs)
    for c in results["cells"]:
        if (c["residual"], c["batch_norm"], c["depth"], c["variant"]) == (False, True, 56, "he"):
            c["gradient"] = gradient_summary(records(ratios[c["seed"]]))
    return results


ALSO_VANISHED = ("So in these runs, with BatchNorm, the degraded plain net also had vanishing "
                 "gradients: the measurement does not separate the two explanations.")
SEEDS_DISAGREE = "So these runs do not settle the question (the seeds' gradient ratios " \
    "straddle 0.01)."
UNDECIDED = "Its gradients neither clearly vanished nor clearly did not (first/last conv ratio"
NOT_DEGRADED = ("So at these depths and this budget the plain nets did not degrade; a deeper "
                "grid or longer training is needed to test the claim.")
DEGRADATION_STRADDLES = "So these runs do not settle the question (the interval straddles 2 " \
    "points)."


@pytest.mark.parametrize("ratios, plain_deep, said, unsaid", [
    pytest.param((1e-4,) * 3, (0.80, 0.82, 0.84), [ALSO_VANISHED],
                 [SEEDS_DISAGREE, UNDECIDED, NOT_DEGRADED], id="degraded-and-vanished"),
    pytest.param((2.0,) * 3, (0.80, 0.82, 0.84), [],
                 [ALSO_VANISHED, SEEDS_DISAGREE, UNDECIDED], id="degraded-gradients-kept"),
    pytest.param((1e-4,) * 3, (0.012, 0.011, 0.013), [NOT_DEGRADED],
                 [ALSO_VANISHED, SEEDS_DISAGREE], id="vanished-but-not-degraded"),
])
def test_the_answer_says_also_had_vanishing_gradients_only_when_both_were_measured(
        ratios, plain_deep, said, unsaid):
    found = verdict(with_plain_ratios(ratios, plain_deep=plain_deep))
    for sentence in said:
        assert sentence in found["answer"]
    for sentence in unsaid:
        assert sentence not in found["answer"]


@pytest.mark.parametrize("ratios, plain_deep, flag, said, unsaid", [
    pytest.param((1e-4, 2.0, 1e-4), (0.80, 0.82, 0.84), "inconclusive",
                 [SEEDS_DISAGREE, UNDECIDED], [ALSO_VANISHED, DEGRADATION_STRADDLES],
                 id="degraded-seeds-disagree"),
    pytest.param((1e-4, 2.0, 1e-4), (0.80, 0.01, 0.84), "inconclusive",
                 [DEGRADATION_STRADDLES, UNDECIDED], [SEEDS_DISAGREE, ALSO_VANISHED],
                 id="degradation-itself-straddles"),
    pytest.param((1e-4,) * 3, (0.80, 0.82, 0.84), True, [], [SEEDS_DISAGREE, UNDECIDED],
                 id="seeds-agree"),
])
def test_the_answer_says_the_seeds_disagree_only_when_the_gradient_ratios_straddle(
        ratios, plain_deep, flag, said, unsaid):
    found = verdict(with_plain_ratios(ratios, plain_deep=plain_deep))
    assert found["vanishing_gradients"]["plain_bn"] == flag
    for sentence in said:
        assert sentence in found["answer"]
    for sentence in unsaid:
        assert sentence not in found["answer"]
