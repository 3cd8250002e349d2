"""Threshold tables of the measure-based rules (tests/reskeras/thresholds.py; issue 31).

Pinned here: the identity task's ``IDENTITY_LEARNED``, ``IDENTITY_FACTOR`` and
``IDENTITY_CONVERGED``, the ``SHARPNESS_MARGIN`` of ``landscape``, the
``RESPONSE_MARGIN`` of ``small_responses`` and the ``RATE_SWEEP_BUDGET`` of the
learning-rate sweeps. Each table's rows sit just on each side of its threshold, so a 10%
move (one step for a count) flips a row. Below the tables: the branches of
``identity_init_no_bn`` and ``landscape`` that the verdict had never produced.
"""

import re
import tempfile
import types

import pytest

from reskeras.study import rate_sweep
from reskeras.study.judgment.identity_task import identity_task, kept_depth
from reskeras.study.judgment.landscape import landscape
from reskeras.study.judgment.responses import small_responses
from reskeras.study.judgment.verdict import verdict
from reskeras.study.measures.identity_task import converged
from tests.reskeras.test_hypotheses import by_id, study
from tests.reskeras.test_identity_task_rule import rows
from tests.reskeras.test_landscape_rule import _results as sharpness_results
from tests.reskeras.test_responses_rule import study as responses_study
from tests.reskeras.thresholds import pins


# --- the identity task --------------------------------------------------------------------

def _identity_task(depths, plain, residual):
    """``(verdict, why_inconclusive)`` of one seed of plain and residual stacks."""
    found = {"identity_task": {"steps": 300, "rows": rows("plain", plain, depths=depths)
                               + rows("residual", residual, depths=depths)}}
    measured, _, found_verdict = identity_task(found)
    return found_verdict, measured["why_inconclusive"]


@pins("IDENTITY_LEARNED")
def identity_learned():
    """A stack keeps its input while its error is below 0.2 (0.18 and 0.22 moved)."""
    depths = (1, 2, 4, 8)
    plain = (0.01, 0.05, 0.5, 0.21)  # keeps depth 2, fails at the deepest depth
    return [
        ("0.19 kept, 0.21 not", kept_depth({1: 0.19, 2: 0.21}), 1),
        ("an error of exactly 0.2 is not kept", kept_depth({1: 0.01, 2: 0.2}), 1),
        ("residual 0.19 at the deepest depth keeps it: 4x plain's depth, supported",
         _identity_task(depths, plain, (0.01, 0.01, 0.01, 0.19)), ("supported", None)),
        ("plain and residual 0.21 at the deepest depth both fail: no seed decides",
         _identity_task(depths, plain, (0.01, 0.01, 0.01, 0.21)),
         ("inconclusive", "no seed decides: seed 0: both kinds fail at the deepest depth 8 "
                          "(plain 0.21, residual 0.21, both at least 0.2)")),
    ]


@pins("IDENTITY_FACTOR")
def identity_factor():
    """Residual stacks must keep their input 2x as deep as plain ones (1.8x and 2.2x moved).

    Plain stacks keep depth 10 (and hold the identity again at the deepest depth, so the
    seed is never undecided for both kinds failing there)."""
    depths = (1, 10, 19, 20, 21, 22)
    plain = (0.01, 0.01, 0.5, 0.5, 0.5, 0.01)
    ok, bad = 0.01, 0.5
    return [
        ("residual kept 19 against plain 10 (1.9x): undecided",
         _identity_task(depths, plain, (ok, ok, ok, bad, bad, bad)),
         ("inconclusive", "no seed decides: seed 0: residual stacks keep their input deeper "
                          "(19) than plain ones (10) but less than 2x as deep")),
        ("residual kept 20 against plain 10 (exactly 2x): supported",
         _identity_task(depths, plain, (ok, ok, ok, ok, bad, bad)), ("supported", None)),
        ("residual kept 21 against plain 10 (2.1x): supported",
         _identity_task(depths, plain, (ok, ok, ok, ok, ok, bad)), ("supported", None)),
        ("residual kept 10, as deep as plain: refuted",
         _identity_task(depths, plain, (ok, ok, bad, bad, bad, ok)), ("refuted", None)),
    ]


def _converged(*errors):
    """Whether a stack with these held-out errors (one per budget) has converged."""
    return converged(list(errors))


@pins("IDENTITY_CONVERGED")
def identity_converged():
    """A stack converged when its error moved by less than 0.01 over the last doubling."""
    return [
        ("moved 0.0095: converged", _converged(0.3, 0.1, 0.0905), True),
        ("moved 0.0105: not converged", _converged(0.3, 0.1, 0.0895), False),
        ("moved exactly 0.01: not converged", _converged(0.0, 0.01), False),
        ("one reading: no record", _converged(0.1), None),
    ]


# --- the margins read in log10 ------------------------------------------------------------

def _landscape(ratios):
    measured, _, found_verdict = landscape(sharpness_results(ratios))
    return found_verdict, measured["why_inconclusive"]


@pins("SHARPNESS_MARGIN")
def sharpness_margin():
    """landscape: supported above log10(2) (log10(1.8) = 0.255, log10(2.2) = 0.342 moved)."""
    return [
        ("plain / residual 2.06-2.12: interval [0.305, 0.336], supported",
         _landscape([2.06, 2.09, 2.12]), ("supported", None)),
        ("plain / residual 1.88-1.92: interval [0.267, 0.290], inconclusive",
         _landscape([1.88, 1.90, 1.92]),
         ("inconclusive", "the interval [0.267, 0.290] of log10(plain / residual) lies between "
                          "0 and log10(2): supported needs it wholly above log10(2) = 0.301, "
                          "refuted wholly at or below 0")),
        ("equal sharpness: interval [0, 0], refuted", _landscape([1.0, 1.0, 1.0]),
         ("refuted", None)),
    ]


def _responses(ratios):
    measured, _, found_verdict = small_responses(responses_study(ratios, (1.0,) * len(ratios)))
    return found_verdict, measured["why_inconclusive"]


@pins("RESPONSE_MARGIN")
def response_margin():
    """small_responses: supported above log10(1.5) (log10(1.35) = 0.130, log10(1.65) = 0.217
    moved)."""
    return [
        ("plain / residual 1.56-1.60: interval [0.185, 0.212], supported",
         _responses((1.56, 1.58, 1.60)), ("supported", None)),
        ("plain / residual 1.40-1.44: interval [0.137, 0.167], inconclusive",
         _responses((1.40, 1.42, 1.44)),
         ("inconclusive", "the interval [0.137, 0.167] of log10(plain / residual) is neither "
                          "wholly above log10(1.5) = 0.176 nor wholly at or below 0")),
        ("equal responses: interval [0, 0], refuted", _responses((1.0, 1.0, 1.0)),
         ("refuted", None)),
    ]


# --- the learning-rate sweep's budget -----------------------------------------------------

class _WouldTrain(Exception):
    """Raised by :func:`_refuse_to_train`, carrying the sweep's log line."""


def _refuse_to_train(line, **_):
    raise _WouldTrain(line)


def _sweep_budget(steps=None, epochs=None, steps_per_epoch=None):
    """The budget the real ``rate_sweep.sweep`` trains its first run at, read from the log
    line it writes just before training (no record saved, so nothing is reused), which
    stops it: nothing trains."""
    data = types.SimpleNamespace(steps_per_epoch=lambda batch_size: steps_per_epoch)
    with tempfile.TemporaryDirectory() as out:
        config = types.SimpleNamespace(out=out, steps=steps, epochs=epochs, batch_size=128,
                                       sweep_seeds=(100, 101, 102))
        try:
            rate_sweep.sweep(config, data, "adam", "tat", 56, log=_refuse_to_train)
        except _WouldTrain as stop:
            return int(re.search(r"training (\d+) steps", str(stop)).group(1))
    return None


@pins("RATE_SWEEP_BUDGET")
def rate_sweep_budget():
    """A sweep's runs train 4x the base budget (3x and 5x moved)."""
    return [
        ("base budget 100 steps: the sweep trains 400", _sweep_budget(steps=100), 400),
        ("base budget 2 epochs of 11 steps: the sweep trains 88",
         _sweep_budget(epochs=2, steps_per_epoch=11), 88),
    ]


# --- identity_init_no_bn through the verdict ----------------------------------------------
# study(): the deepest plain net without BN at 90% training error, its residual twin at 4%,
# the no-BN identity init at 5%, 6%, 4% (seeds 0-2), started at block distance 0.1.

def _no_bn_dirac(results):
    return [c for c in results["cells"]
            if (c["variant"], c["batch_norm"], c["depth"]) == ("dirac", False, 56)]


def _set_errors(*errors):
    def change(results):
        for cell, error in zip(_no_bn_dirac(results), errors):
            cell["final_train_error"] = error
    return change


def _start_seed_1(distance):
    def change(results):
        cell = _no_bn_dirac(results)[1]
        if distance is None:
            cell["measures"]["identity"] = None
        else:
            for block in cell["measures"]["identity"]:
                block["init"] = distance
    return change


def _drop_seeds(*seeds):
    def change(results):
        results["cells"] = [c for c in results["cells"]
                            if c not in _no_bn_dirac(results) or c["seed"] not in seeds]
    return change


def _unfinished_seed_2(results):
    _no_bn_dirac(results)[2].update(status="running", final_train_error=None)


def _small_gap_seed_0(results):
    plain = next(c for c in results["cells"] if c["name"] == "plain56-nobn-s0")
    plain["final_train_error"] = 0.05  # 1 point above the residual twin's 4%


def test_identity_init_no_bn_reads_the_no_bn_cells_and_is_supported():
    row = by_id(verdict(study()))["identity_init_no_bn"]
    assert row["verdict"] == "supported"
    assert {k: row["measured"][k] for k in ("plain_no_bn", "plain_no_bn_identity",
                                            "residual_no_bn", "why_inconclusive")} == {
        "plain_no_bn": pytest.approx(0.9), "plain_no_bn_identity": pytest.approx(0.05),
        "residual_no_bn": pytest.approx(0.04), "why_inconclusive": None}


@pytest.mark.parametrize("change, expected, why", [
    # closes (0.9 - 0.8) / 0.86 = 12%, 6%, 9%: wholly below 50%
    (_set_errors(0.80, 0.85, 0.82), "refuted", None),
    (_set_errors(0.05, 0.81, 0.06), "inconclusive",
     "the interval of the fraction closed straddles 0.5"),
    (_start_seed_1(0.8), "inconclusive", "seed 1 started far from the identity (0.80)"),
    (_start_seed_1(None), "inconclusive", "seed 1 started at an unmeasured distance"),
    (_unfinished_seed_2, "inconclusive", "seed 2 misses its treated net"),
    (_drop_seeds(1, 2), "inconclusive", "fewer than two seeds: no interval"),
    (_drop_seeds(0, 1, 2), "inconclusive", "not run"),
    (_small_gap_seed_0, "inconclusive", "seed 0 has a gap of 1.0 points (below 2)"),
], ids=["refuted", "straddles", "started-far", "start-unmeasured", "unfinished",
        "one-seed", "not-run", "gap-below-minimum"])
def test_identity_init_no_bn_refuted_or_inconclusive_with_its_reason(change, expected, why):
    results = study()
    change(results)
    row = by_id(verdict(results))["identity_init_no_bn"]
    assert (row["verdict"], row["measured"]["why_inconclusive"]) == (expected, why)


# --- landscape supported through the verdict ------------------------------------------------

def test_landscape_row_of_the_verdict_is_supported_when_the_plain_net_ends_sharper():
    results = study()  # plain 2.0 against residual 9.0 after training: refuted
    for cell in results["cells"]:
        sharpness = (cell.get("measures") or {}).get("sharpness")
        if sharpness is not None:
            sharpness["final_invariant"] = (60.0 + cell["seed"]) if not cell["residual"] else 5.0
    row = by_id(verdict(results))["landscape"]
    assert (row["verdict"], row["measured"]["why_inconclusive"]) == ("supported", None)
    assert row["measured"]["plain_invariant_sharpness_final"] == pytest.approx(61.0)
    assert row["measured"]["residual_invariant_sharpness_final"] == pytest.approx(5.0)
