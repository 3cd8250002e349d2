"""Two small rules of the judgment on constructed numbers: the learning-rate sweep's pick
(reskeras.study.judgment.rates) and where two recipes' decisions differ (recipes)."""

import math

import pytest

from reskeras.study.judgment.rates import pick
from reskeras.study.judgment.recipes import decisions, differences


@pytest.mark.parametrize("losses, picked, diverged, means", [
    # the lowest mean loss over the seeds wins, whatever the order of the sweep
    ({1.0: {0: 0.5, 1: 0.7}, 0.1: {0: 0.2, 1: 0.4}, 0.01: {0: 0.3, 1: 0.31}},
     0.1, [], {"1": 0.6, "0.1": 0.3, "0.01": 0.305}),
    # one seed that diverged puts its rate out, however low the other seeds' losses
    ({1.0: {0: None, 1: 0.01}, 0.1: {0: 0.2, 1: 0.4}}, 0.1, [1.0], {"1": None, "0.1": 0.3}),
    # a non-finite loss is a divergence too, and so is a rate without any seed
    ({1.0: {0: math.nan, 1: 0.1}, 0.3: {0: math.inf}, 0.1: {}, 0.03: {0: 0.9}},
     0.03, [1.0, 0.3, 0.1], {"1": None, "0.3": None, "0.1": None, "0.03": 0.9}),
    # a flag is not a loss
    ({1.0: {0: True}, 0.1: {0: 0.9}}, 0.1, [1.0], {"1": None, "0.1": 0.9}),
    # every rate diverged: no pick, and the cells that need one do not run
    ({1.0: {0: None}, 0.1: {0: math.nan}}, None, [1.0, 0.1], {"1": None, "0.1": None}),
    # a tie goes to the rate swept first
    ({0.3: {0: 0.5}, 0.1: {0: 0.5}}, 0.3, [], {"0.3": 0.5, "0.1": 0.5}),
    # integer losses count (a loss of exactly 2)
    ({1.0: {0: 2, 1: 2}, 0.1: {0: 3, 1: 3}}, 1.0, [], {"1": 2.0, "0.1": 3.0}),
])
def test_pick_takes_the_lowest_mean_loss_among_rates_that_never_diverged(
        losses, picked, diverged, means):
    assert pick(losses) == (picked, {"diverged": diverged, "mean_loss": means})


def test_pick_rounds_the_means_to_twelve_places():
    _, found = pick({1.0: {0: 0.1, 1: 0.2, 2: 0.3}})
    assert found["mean_loss"] == {"1": 0.2}  # 0.6000000000000001 / 3 without rounding
    assert pick({1.0: {0: 0.1 + 1e-11}, 0.1: {0: 0.1}})[0] == 0.1


ADAM = {"degradation": {"plain": True, "residual": False, "numbers": {"plain": [1.0]}},
        "vanishing_gradients": {"plain_bn": False},
        "exploding_at_init": {"plain_bn": "inconclusive"},
        "hypotheses": [{"id": "learning_rate", "verdict": "refuted"},
                       {"id": "landscape", "verdict": "supported"}]}


def test_decisions_are_the_flags_and_the_hypotheses_every_recipe_measures():
    assert decisions(ADAM) == {
        "degradation.plain": True, "degradation.residual": False,
        "vanishing_gradients.plain_bn": False, "exploding_at_init.plain_bn": "inconclusive",
        "hypothesis.learning_rate": "refuted"}  # not the numbers, not the landscape
    assert decisions({}) == {}


def test_differences_name_each_decision_the_recipes_reached_differently():
    same = {**ADAM, "hypotheses": [{"id": "learning_rate", "verdict": "refuted"},
                                   {"id": "landscape", "verdict": "refuted"}]}
    assert differences({"adam": ADAM, "paper": same}) == []  # the landscape is not compared
    sgd = {**ADAM, "degradation": {"plain": "inconclusive", "residual": False},
           "vanishing_gradients": {}}
    assert differences({"adam": ADAM, "paper": sgd}) == [
        {"decision": "degradation.plain", "recipes": {"adam": True, "paper": "inconclusive"}},
        # a decision only one recipe reached differs too
        {"decision": "vanishing_gradients.plain_bn", "recipes": {"adam": False, "paper": None}}]
    # True and 1 are different decisions
    one = {**ADAM, "degradation": {"plain": 1, "residual": False}}
    assert [d["decision"] for d in differences({"adam": ADAM, "paper": one})] == [
        "degradation.plain"]


def test_mean_losses_equal_to_12_digits_are_a_tie_and_the_first_listed_rate_wins():
    picked, record = pick({1.0: {100: 0.3 + 4e-13}, 0.3: {100: 0.3}})
    assert (picked, record["mean_loss"]) == (1.0, {"1": 0.3, "0.3": 0.3})
    assert pick({1.0: {100: 0.3 + 4e-12}, 0.3: {100: 0.3}})[0] == 0.3
