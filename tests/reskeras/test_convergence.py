"""The convergence rule on synthetic curves, the interval decisions, and answer sentences
that follow the numbers (no fixed phrase the measurement did not earn)."""

import math

import pytest

from reskeras.study.cells import Cell
from reskeras.study.criteria import CONVERGED_POINTS, FAILED_TO_START
from reskeras.study.judgment.convergence import budgets, failed_to_start, state
from reskeras.study.judgment.intervals import decide, interval
from reskeras.study.judgment.verdict import verdict
from reskeras.study.measures.gradient_flow import gradient_summary
from tests.reskeras.test_study import records

CHANCE = math.log(10)


def read_until_done(curve: dict, cap: int = 1408, base: int = 88) -> tuple[dict, list[int]]:
    """Walks the budgets as the study does: read, decide, stop when done."""
    seen = {}
    for steps in budgets(base, int(math.log2(cap // base))):
        seen[steps] = curve[steps]
        decision = state(seen, classes=10, cap=cap)
        if decision["done"]:
            return decision, sorted(seen)
    raise AssertionError("the cap must end the walk")


def points(errors, losses=None):
    losses = losses or [1.0] * len(errors)
    return {88 * 2 ** k: {"train_error": e, "loss": l}
            for k, (e, l) in enumerate(zip(errors, losses))}


def test_a_curve_that_flattens_converges_at_the_first_flat_doubling():
    decision, read = read_until_done(points([0.40, 0.10, 0.03, 0.027, 0.026]))
    assert read == [88, 176, 352, 704] and decision == {
        "steps": 704, "converged": True, "done": True, "failed_to_start": False}


def test_a_curve_still_falling_at_the_cap_hits_it_unconverged():
    decision, read = read_until_done(points([0.85, 0.80, 0.70, 0.55, 0.40]))
    assert read == [88, 176, 352, 704, 1408]
    assert decision == {"steps": 1408, "converged": False, "done": True,
                        "failed_to_start": False}


def test_a_plateau_at_the_starting_loss_is_not_convergence_and_is_left_later():
    # flat at chance for two doublings (loss ln 10): the rule trains on, and the net leaves
    errors = [0.90, 0.90, 0.899, 0.30, 0.298]
    losses = [CHANCE, CHANCE * 0.99, CHANCE * 0.98, 0.9, 0.85]
    decision, read = read_until_done(points(errors, losses))
    assert read == [88, 176, 352, 704, 1408]
    assert decision["converged"] is True and decision["failed_to_start"] is False
    # the same plateau never left: the cap, flagged as failed to start
    stuck, _ = read_until_done(points([0.90] * 5, [CHANCE] * 5))
    assert stuck == {"steps": 1408, "converged": False, "done": True, "failed_to_start": True}


@pytest.mark.parametrize("moved, converged", [
    (CONVERGED_POINTS * 0.9, True), (CONVERGED_POINTS * 1.1, False)])
def test_the_convergence_threshold_is_pinned(moved, converged):
    curve = points([0.20, 0.10, 0.10 - moved / 100])
    assert state(curve, classes=10, cap=1408)["converged"] is converged


@pytest.mark.parametrize("fraction, failed", [
    (FAILED_TO_START * 0.9, True), (FAILED_TO_START * 1.1, False),
    (-FAILED_TO_START * 0.9, True), (-FAILED_TO_START * 1.1, False)])
def test_the_failed_to_start_threshold_is_pinned(fraction, failed):
    assert failed_to_start(CHANCE * (1 - fraction), 10) is failed


def test_a_gap_in_the_doublings_does_not_count_as_one():
    # 88 then 352 (176 missing): no last doubling to compare, so not converged
    assert state({88: {"train_error": 0.1, "loss": 1.0}, 352: {"train_error": 0.1, "loss": 1.0}},
                 classes=10, cap=1408)["converged"] is False


@pytest.mark.parametrize("values, threshold, expected", [
    ([5.0, 6.0, 7.0], 2.0, True),              # the whole interval beyond
    ([0.1, 0.2, 0.3], 2.0, False),             # the whole interval short
    ([0.5, 3.5, 6.0], 2.0, "inconclusive"),    # straddling
    ([5.0], 2.0, None)])                       # one seed: no interval
def test_interval_decisions(values, threshold, expected):
    assert decide(interval(values), threshold) == expected


def test_t_interval_below_five_seeds_and_bootstrap_from_five():
    three = interval([1.0, 2.0, 3.0])
    # mean 2, s = 1, t(0.975, 2) = 4.303: 2 +- 2.484
    assert three["method"] == "t"
    assert three["interval"] == pytest.approx([2 - 4.302653 / math.sqrt(3),
                                               2 + 4.302653 / math.sqrt(3)])
    five = interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert five["method"] == "bootstrap" and five["n"] == 5
    lo, hi = five["interval"]
    assert 1.0 <= lo < 3.0 < hi <= 5.0
    assert interval([1.0, 2.0, 3.0, 4.0, 5.0]) == five  # a fixed generator: reproducible


def _cell(residual, depth, seed, error, *, loss, steps, converged, bn=True):
    name = Cell(residual, depth, bn, seed).name
    curve = {str(88 * 2 ** k): error + 0.02 * (4 - k) for k in range(int(math.log2(steps / 88)) + 1)}
    return {"name": name, "residual": residual, "depth": depth, "batch_norm": bn,
            "seed": seed, "status": "finished", "final_train_error": error,
            "gradient": gradient_summary(records(2.0)),
            "convergence": {"steps": steps, "converged": converged, "base": 88, "cap": 1408,
                            "failed_to_start": failed_to_start(loss, 10),
                            "train_errors": curve, "train_losses": {}, "test_errors": {}}}


def _study(deep_error, deep_loss, deep_converged):
    cells = []
    for seed in range(3):
        cells += [_cell(False, 8, seed, 0.001, loss=0.01, steps=704, converged=True),
                  _cell(True, 8, seed, 0.001, loss=0.01, steps=704, converged=True),
                  _cell(False, 56, seed, deep_error + 0.001 * seed, loss=deep_loss,
                        steps=1408 if not deep_converged else 704, converged=deep_converged),
                  _cell(True, 56, seed, 0.002, loss=0.02, steps=704, converged=True)]
    return {"cells": cells, "classes": 10, "base_steps": 88, "max_doublings": 4}


def test_the_answer_says_what_the_numbers_say_and_nothing_canned():
    stuck = verdict(_study(0.89, CHANCE * 0.99, False))
    assert stuck["failed_to_start"]["plain56-bn-s0"] is True
    assert stuck["convergence"]["plain56-bn-s0"] == {
        "steps": 1408, "converged": False,
        "train_errors": {"88": pytest.approx(0.97), "176": pytest.approx(0.95),
                         "352": pytest.approx(0.93), "704": pytest.approx(0.91),
                         "1408": pytest.approx(0.89)}}
    assert stuck["criteria"]["cap_steps"] == 1408 and stuck["criteria"]["base_steps"] == 88
    assert "It hit the 1,408-step cap without converging in 3 of 3 seeds (training error at " \
        "352, 704, 1,408 steps: 93.1%, 91.1%, 89.1%); its training loss stayed within 5% of " \
        "ln(classes), so it failed to start in 3 of 3 seeds." in stuck["answer"]
    # a deep plain net that trains and converges: no cap, no "failed to start", no "chance"
    trained = verdict(_study(0.01, 0.05, True))
    assert trained["degradation"]["plain"] is False
    assert trained["failed_to_start"]["plain56-bn-s0"] is False
    for phrase in ("cap", "failed to start", "chance", "near", "stays"):
        assert phrase not in trained["answer"].split("So ")[0], phrase
    assert "It converged in 3 of 3 seeds (704 steps)." in trained["answer"]
    # a deep net that diverged in one seed: said so, not counted as converged
    mixed = _study(0.01, 0.05, True)
    deep = next(c for c in mixed["cells"] if c["name"] == "plain56-bn-s1")
    deep.update(status="diverged", final_train_error=None)
    deep["convergence"].update(converged=False, failed_to_start=None)
    assert "It converged in 2 of 3 seeds (704 steps); it diverged in 1 of 3 seeds." in \
        verdict(mixed)["answer"]


def test_an_unconverged_shallow_reference_leaves_degradation_inconclusive():
    results = _study(0.50, 1.0, True)
    for c in results["cells"]:
        if c["depth"] == 8 and not c["residual"] and c["seed"] == 1:
            c["convergence"]["converged"] = False
    found = verdict(results)
    assert found["degradation"]["plain"] == "inconclusive"
    assert found["degradation"]["numbers"]["plain"]["why_inconclusive"] == \
        "the shallow reference hit the cap without converging (plain8-bn-s1)"
    assert found["degradation"]["residual"] is False


def test_no_reading_yet_is_a_cell_that_has_not_started():
    assert state({}, classes=10, cap=1408) == {
        "steps": 0, "converged": False, "done": False, "failed_to_start": None}


@pytest.mark.parametrize("errors, converged", [
    ((0.30, 0.30 - 0.004995), True),   # 0.4995 points: converged (0.5045 if scaled by 101)
    ((0.30, 0.30 - 0.005005), False),  # 0.5005 points
    ((0.30, None), False),             # the last reading has no error: nothing to compare
    ((None, 0.30), False),             # nor has the one before
])
def test_two_readings_decide_convergence_from_the_points_moved(errors, converged):
    found = state(points(list(errors)), classes=10, cap=1408)
    assert found == {"steps": 176, "converged": converged, "done": converged,
                     "failed_to_start": False}


def test_a_loss_exactly_at_the_failed_to_start_margin_counts_as_failed():
    chance = math.log(27)  # 27 classes: the one below 200 where the margin is exact in floats
    loss = chance + FAILED_TO_START * chance
    assert abs(loss - chance) == FAILED_TO_START * chance  # the premise: exactly at it
    assert failed_to_start(loss, 27) is True


def test_a_move_within_float_noise_of_the_threshold_counts_as_the_threshold():
    # 0.4999999997 points is 0.5 to 9 digits: not "less than CONVERGED_POINTS"
    assert CONVERGED_POINTS == 0.5
    noisy = {704: {"train_error": 0.0, "loss": 0.1}, 1408: {"train_error": 0.004999999997,
                                                            "loss": 0.1}}
    assert state(noisy, cap=2816, classes=10)["converged"] is False
    moved = {704: {"train_error": 0.0, "loss": 0.1}, 1408: {"train_error": 0.00499999, "loss": 0.1}}
    assert state(moved, cap=2816, classes=10)["converged"] is True
