"""The identity-task rule (reskeras.study.judgment.identity_task): every verdict path from
hand-built results, each inconclusive path with its reason, and the pinned thresholds."""

import pytest

from reskeras.study.criteria import IDENTITY_FACTOR, IDENTITY_LEARNED
from reskeras.study.judgment import identity_task as rule
from reskeras.study.judgment.identity_task import identity_task, kept_depth

DEPTHS = (1, 2, 4, 8, 16)
# plain stacks keep their input up to depth 2, residual ones up to 16 (8x as deep)
PLAIN = (0.01, 0.05, 0.3, 0.68, 0.69)
RESIDUAL = (0.001, 0.003, 0.006, 0.02, 0.15)


def rows(kind, errors, seed=0, depths=DEPTHS, converged=True):
    return [{"kind": kind, "depth": d, "seed": seed, "initial_error": 1.0, "error": e,
             "errors": [e], "converged": converged} for d, e in zip(depths, errors)]


def results(*seeds, control=True, steps=600):
    """``seeds``: ``(plain errors, residual errors)`` per seed 0, 1, ..."""
    found = []
    for seed, (plain, residual) in enumerate(seeds):
        found += rows("plain", plain, seed) + rows("residual", residual, seed)
        found += rows("residual_zero_gamma", (0.0,) * len(DEPTHS), seed) if control else []
    return {"identity_task": {"depths": list(DEPTHS), "seeds": list(range(len(seeds))),
                              "steps": steps, "rows": found}}


def test_supported_when_residual_stacks_keep_their_input_twice_as_deep_in_every_seed():
    measured, per_seed, verdict = identity_task(results((PLAIN, RESIDUAL), (PLAIN, RESIDUAL)))
    assert verdict == "supported"
    assert measured == {
        "plain_kept_depth": 2, "residual_kept_depth": 16, "deepest_depth": 16,
        "plain_at_deepest": 0.69, "residual_at_deepest": 0.15, "zero_gamma_kept_depth": 16,
        "zero_gamma_at_deepest": 0.0, "steps": 600,
        "shallowest_converged": {"plain": True, "residual": True, "residual_zero_gamma": True},
        "why_inconclusive": None}
    assert per_seed == {f"seed {s}": {"plain_kept_depth": 2, "residual_kept_depth": 16,
                                      "zero_gamma_kept_depth": 16, "decided": True,
                                      "why_undecided": None} for s in (0, 1)}


def test_refuted_when_residual_stacks_keep_their_input_no_deeper():
    plain = (0.01, 0.02, 0.05, 0.1, 0.15)
    measured, per_seed, verdict = identity_task(results((plain, RESIDUAL)))
    assert verdict == "refuted" and measured["why_inconclusive"] is None
    assert (measured["plain_kept_depth"], measured["residual_kept_depth"]) == (16, 16)
    # deeper plain than residual refutes too
    measured, _, verdict = identity_task(results((plain, (0.01, 0.02, 0.5, 0.6, 0.7))))
    assert (verdict, measured["plain_kept_depth"], measured["residual_kept_depth"]) == \
        ("refuted", 16, 2)


@pytest.mark.parametrize("task", [None, {}, {"rows": []}, {"depths": [1], "rows": None}])
def test_no_rows_is_inconclusive(task):
    assert identity_task({"identity_task": task}) == (
        {"why_inconclusive": "no identity-task rows: the task did not run"}, {}, "inconclusive")
    assert identity_task({})[2] == "inconclusive"


def test_both_kinds_failing_at_the_deepest_depth_leave_the_seed_undecided():
    residual = RESIDUAL[:-1] + (0.6,)  # residual 16 fails too: kept depth 8, 4x plain's
    measured, per_seed, verdict = identity_task(results((PLAIN, residual)))
    assert verdict == "inconclusive"
    assert measured["why_inconclusive"] == (
        "no seed decides: seed 0: both kinds fail at the deepest depth 16 (plain 0.69, "
        "residual 0.6, both at least 0.2)")
    assert per_seed["seed 0"]["decided"] is None
    assert (measured["plain_kept_depth"], measured["residual_kept_depth"]) == (2, 8)
    # the same seed beside one that decides: the deciding seed's verdict stands
    measured, per_seed, verdict = identity_task(results((PLAIN, residual), (PLAIN, RESIDUAL)))
    assert (verdict, measured["why_inconclusive"]) == ("supported", None)
    assert [s["decided"] for s in per_seed.values()] == [None, True]
    assert per_seed["seed 0"]["why_undecided"].startswith("both kinds fail at the deepest")


def test_failing_exactly_at_the_threshold_counts_as_failing():
    residual = RESIDUAL[:-1] + (IDENTITY_LEARNED,)
    plain = PLAIN[:-1] + (IDENTITY_LEARNED,)
    assert identity_task(results((plain, residual)))[2] == "inconclusive"


@pytest.mark.parametrize("flag, named", [(False, "plain (seed 1)"),
                                         (None, "plain (seed 1, no record)")])
def test_unconverged_shallowest_stacks_make_it_inconclusive(flag, named):
    found = results((PLAIN, RESIDUAL), (PLAIN, RESIDUAL))
    for row in found["identity_task"]["rows"]:
        if (row["kind"], row["depth"], row["seed"]) == ("plain", 1, 1):
            row["converged"] = flag
    measured, per_seed, verdict = identity_task(found)
    assert verdict == "inconclusive"
    assert measured["why_inconclusive"] == (
        f"the shallowest (depth 1) stacks did not converge within 600 steps: {named}; "
        "the task needs more steps")
    assert measured["shallowest_converged"] == {
        "plain": None if flag is None else False, "residual": True, "residual_zero_gamma": True}
    assert [s["decided"] for s in per_seed.values()] == [True, True]


def test_results_without_convergence_records_are_inconclusive():
    found = results((PLAIN, RESIDUAL))
    for row in found["identity_task"]["rows"]:
        del row["converged"]
    measured, _, verdict = identity_task(found)
    assert verdict == "inconclusive"
    assert measured["why_inconclusive"].endswith(
        "plain (seed 0, no record), residual (seed 0, no record); the task needs more steps")


def test_an_unconverged_deep_stack_or_control_does_not_matter():
    found = results((PLAIN, RESIDUAL))
    for row in found["identity_task"]["rows"]:
        if row["depth"] > 1 or row["kind"] == "residual_zero_gamma":
            row["converged"] = False
    measured, _, verdict = identity_task(found)
    assert verdict == "supported"
    assert measured["shallowest_converged"]["residual_zero_gamma"] is False


def test_disagreeing_seeds_are_inconclusive():
    plain = (0.01, 0.02, 0.05, 0.1, 0.15)
    measured, per_seed, verdict = identity_task(results((PLAIN, RESIDUAL), (plain, RESIDUAL)))
    assert verdict == "inconclusive"
    assert measured["why_inconclusive"] == "seeds disagree: seed 0 supports, seed 1 refutes"
    assert [s["decided"] for s in per_seed.values()] == [True, False]


def test_deeper_but_not_twice_as_deep_is_undecided():
    depths = (1, 2, 3, 4, 5)  # residual keeps 3 (and 5, after failing at 4), plain keeps 2
    found = {"identity_task": {"steps": 300, "rows": rows(
        "plain", (0.01, 0.01, 0.5, 0.6, 0.7), depths=depths) + rows(
        "residual", (0.01, 0.01, 0.01, 0.5, 0.1), depths=depths)}}
    measured, per_seed, verdict = identity_task(found)
    assert (verdict, measured["why_inconclusive"]) == (
        "inconclusive", "no seed decides: seed 0: residual stacks keep their input deeper (3) "
                        "than plain ones (2) but less than 2x as deep")
    assert per_seed["seed 0"]["decided"] is None


@pytest.mark.parametrize("change, reason", [
    (lambda rows: [r for r in rows if r["kind"] != "residual" or r["seed"] != 1],
     "null or unusable inputs: seed 1 has no residual rows"),
    (lambda rows: [dict(r, error=None) if (r["kind"], r["depth"]) == ("plain", 4) else r
                   for r in rows],
     "null or unusable inputs: seed 0 has null or non-finite errors (plain 4); seed 1 has "
     "null or non-finite errors (plain 4)"),
    (lambda rows: [dict(r, error=float("nan")) if (r["kind"], r["depth"], r["seed"]) ==
                   ("residual", 16, 0) else r for r in rows],
     "null or unusable inputs: seed 0 has null or non-finite errors (residual 16)"),
    (lambda rows: [r for r in rows if (r["kind"], r["depth"], r["seed"]) != ("plain", 8, 0)],
     "null or unusable inputs: seed 0 measured plain at depths [1, 2, 4, 16], residual at "
     "[1, 2, 4, 8, 16] (the task's depths: [1, 2, 4, 8, 16])"),
])
def test_null_inputs_in_any_seed_are_inconclusive_not_decided_by_the_rest(change, reason):
    found = results((PLAIN, RESIDUAL), (PLAIN, RESIDUAL))
    found["identity_task"]["rows"] = change(found["identity_task"]["rows"])
    measured, _, verdict = identity_task(found)
    assert (verdict, measured["why_inconclusive"]) == ("inconclusive", reason)


def test_the_control_is_reported_but_not_required():
    measured, _, verdict = identity_task(results((PLAIN, RESIDUAL), control=False))
    assert verdict == "supported"
    assert (measured["zero_gamma_kept_depth"], measured["zero_gamma_at_deepest"]) == (None, None)
    assert measured["shallowest_converged"]["residual_zero_gamma"] is None
    found = results((PLAIN, RESIDUAL))
    for row in found["identity_task"]["rows"]:
        if row["kind"] == "residual_zero_gamma" and row["depth"] >= 8:
            row["error"] = 0.5
    measured, _, _ = identity_task(found)
    assert (measured["zero_gamma_kept_depth"], measured["zero_gamma_at_deepest"]) == (4, 0.5)


@pytest.mark.parametrize("errors, kept", [
    ({1: 0.19, 2: 0.21}, 1),  # IDENTITY_LEARNED 10% lower or higher moves the kept depth
    ({1: 0.01, 2: 0.2}, 1),
    ({1: 0.2, 2: 0.01}, 0),
    ({4: 0.01, 1: 0.1, 2: 0.05, 8: 0.3, 16: 0.1}, 4),
    ({}, 0),
])
def test_kept_depth(errors, kept):
    assert kept_depth(errors) == kept


@pytest.mark.parametrize("depths, plain, residual, verdict", [
    # residual kept 10 against plain 5: exactly IDENTITY_FACTOR (2.0) times as deep
    ((1, 5, 9, 10), (0.01, 0.01, 0.5, 0.6), (0.01, 0.01, 0.01, 0.01), "supported"),
    # residual kept 9 against plain 5: 1.8 times, below IDENTITY_FACTOR
    ((1, 5, 9), (0.01, 0.01, 0.5), (0.01, 0.01, 0.01), "inconclusive"),
    # plain kept 0 counts as 1: residual kept 2 is enough, 1 is not
    ((1, 2), (0.5, 0.6), (0.01, 0.01), "supported"),
    ((1, 2), (0.5, 0.6), (0.01, 0.3), "inconclusive"),
    # residual no deeper: refuted even when plain keeps nothing
    ((1, 2), (0.5, 0.1), (0.5, 0.01), "refuted"),
])
def test_identity_factor_is_pinned(depths, plain, residual, verdict):
    found = {"identity_task": {"steps": 300, "rows": rows("plain", plain, depths=depths)
                               + rows("residual", residual, depths=depths)}}
    assert identity_task(found)[2] == verdict
    assert IDENTITY_FACTOR == 2.0 and IDENTITY_LEARNED == 0.2


def test_the_rule_module_names_its_hypothesis():
    assert kept_depth({1: 0.01, 2: 0.3}) == 1
    assert rule.HYPOTHESIS == "identity_task" and len(rule.TEXT_ROW) == 4
