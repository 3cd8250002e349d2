"""The whole answer paragraph, word for word, on constructed studies.

Each study takes other branches of the text-building functions of
reskeras.study.judgment.verdict (``_vanishing_part``, ``_curve_words``, ``_statistics_part``,
``_interval_words``, ``_degradation_words``, ``_ratio``, ``_pct``, ``_num``, ``_start``); the
expected paragraphs were read sentence by sentence against the constructed numbers.
"""

import pytest

from reskeras.study.judgment.verdict import verdict
from reskeras.study.measures.gradient_flow import gradient_summary
from tests.reskeras.test_hypotheses import study
from tests.reskeras.test_study import records


def twins(keep=lambda c: True):
    """The unmodified twins of ``study()`` that ``keep`` keeps (no interventions, so the
    why part is the landscape sentence and the summary)."""
    results = study()
    return {**results, "cells": [c for c in results["cells"]
                                 if c["variant"] == "he" and keep(c)]}


def curve(results, name, steps, converged, errors, cap=1408, failed=False):
    """Gives cell ``name`` a budget curve (88, 176, 352, ... steps); ``cap=None``: a record
    without its cap."""
    found = next(c for c in results["cells"] if c["name"] == name)
    found["convergence"] = {"steps": steps, "converged": converged, "failed_to_start": failed,
                            "train_errors": {str(88 * 2 ** k): e for k, e in enumerate(errors)},
                            **({} if cap is None else {"cap": cap})}


def no_relative_ratios(first_to_last):
    """A gradient summary with raw norms only (no ||g||/||w||): no finite relative ratio."""
    rows = records(first_to_last)
    for row in rows:
        row.pop("ratio", None)
    return gradient_summary(rows)


def one_seed(finite=True):
    # seed 0 only: no "(means of N seeds)", no interval, no "in k of n seeds"; the BN plain
    # net converged, the no-BN one hit the 1,408-step cap and failed to start
    results = twins(lambda c: c["seed"] == 0)
    curve(results, "plain56-bn-s0", 704, True, (0.9, 0.85, 0.803, 0.80))
    curve(results, "plain56-nobn-s0", 1408, False, (0.9,) * 5, failed=True)
    for c in results["cells"]:
        if c["depth"] == 56 and not c["residual"] and not finite:
            c["gradient"] = no_relative_ratios(c["gradient"]["first_last_ratio_median"])
    return results


def mixed_convergence():
    # BN plain: converged at 352 and 1,408 steps, capped in seed 2 (a range, a cap with its
    # number); the BN residual net converged in every seed ("The deep residual net"); no-BN
    # plain: capped in every seed, its records without the cap ("hit the cap"), two of them
    # failed to start
    results = twins()
    curve(results, "plain56-bn-s0", 352, True, (0.9, 0.803, 0.80))
    curve(results, "plain56-bn-s1", 1408, True, (0.9, 0.88, 0.86, 0.822, 0.82))
    curve(results, "plain56-bn-s2", 1408, False, (0.95, 0.93, 0.91, 0.88, 0.84))
    for seed, error in enumerate((0.02, 0.03, 0.01)):
        curve(results, f"resnet56-bn-s{seed}", 704, True, (0.5, 0.1, error + 0.003, error))
    for seed, errors in enumerate(((0.9, 0.9, 0.9, 0.9, 0.9), (0.9, 0.92, 0.91, 0.9, 0.9),
                                   (0.9, 0.9, 0.9, 0.89, 0.9))):
        curve(results, f"plain56-nobn-s{seed}", 1408, False, errors, cap=None,
              failed=seed < 2)
    return results


def two_seeds():
    # the BN twins of seeds 0 and 1; the deep plain net converged in one, capped in the other
    results = twins(lambda c: c["seed"] < 2 and c["batch_norm"])
    curve(results, "plain56-bn-s0", 704, True, (0.9, 0.85, 0.803, 0.80))
    curve(results, "plain56-bn-s1", 1408, False, (0.95, 0.93, 0.9, 0.86, 0.82))
    return results


def unclassified():
    # the BN plain net without finite relative ratios ("could not be classified"); the no-BN
    # plain net exploding at initialization and its residual twin vanishing
    results = twins()
    for c in results["cells"]:
        if c["depth"] == 56 and c["batch_norm"] and not c["residual"]:
            c["gradient"] = no_relative_ratios(2.0)
        elif c["depth"] == 56 and not c["batch_norm"]:
            c["gradient"] = gradient_summary(records(1e-5 if c["residual"] else 1e3))
    return results


def statistics_gaps(points):
    """The twins with the EMA adding ``points[name]`` points to a cell's training error."""
    results = twins()
    for c in results["cells"]:
        gap, error = points.get(c["name"], 0.0), c["final_train_error"]
        c["errors"] = {"train": {"ema": error + gap / 100, "precise": error},
                       "bn_statistics_gap": gap}
    return results


BN_DEGRADED = ("With BatchNorm, the 56-layer plain net ended at 82.0% training error against "
               "1.0% for the 8-layer one (means of 3 seeds): degradation (+81.0 points, 95% "
               "t-interval [+76.0, +86.0] over 3 seeds).")
BN_KEPT = ("Its gradients did not vanish (first/last conv ratio of relative gradient norms "
           "||g||/||w|| 2x, median over training; vanishing means below 0.01; raw norms 2x).")
BN_RESIDUAL = ("The residual twins were inconclusive (1.0% at depth 8, 2.0% at depth 56; "
               "+1.0 points, 95% t-interval [-1.5, +3.5] over 3 seeds; the interval "
               "straddles 2 points).")
NO_BN_DEGRADED = ("Without BatchNorm, the 56-layer plain net ended at 90.0% training error "
                  "against 2.0% for the 8-layer one (means of 3 seeds): degradation (+88.0 "
                  "points, 95% t-interval [+88.0, +88.0] over 3 seeds).")
NO_BN_VANISHED = ("Its gradients vanished (first/last conv ratio of relative gradient norms "
                  "||g||/||w|| 1e-07x, median over training; vanishing means below 0.01; raw "
                  "norms 1e-07x).")
NO_BN_RESIDUAL = ("The residual twins did not degrade (3.0% at depth 8, 4.0% at depth 56; "
                  "+1.0 points, 95% t-interval [+1.0, +1.0] over 3 seeds)")
NO_BN_SO = ("Without BatchNorm, the degraded plain net's gradients vanished: there, vanishing "
            "gradients remain an explanation.")
NOT_CLASSIFIED = "Its gradient flow could not be classified (no finite ratios)."
LANDSCAPE = ("Why does the plain net not close the gap? In these runs after training its "
             "scale-invariant top Hessian eigenvalue was 2 against 9 for the residual twin "
             "(raw 2 against 9) (landscape: {}).")
UNDECIDED = ("identity init, identity init no bn, conditioning, near identity, branch scale, "
             "learning rate, kernel shaping, identity task, ensemble, shattering")
SHORT = ("In short, supported: vanishing gradients no bn; refuted: vanishing gradients, "
         f"landscape; inconclusive: {UNDECIDED}, small responses.")
TWINS = [BN_DEGRADED, BN_KEPT, BN_RESIDUAL, NO_BN_DEGRADED, NO_BN_VANISHED,
         NO_BN_RESIDUAL + ".", NO_BN_SO]
ONE_SEED = [
    "With BatchNorm, the 56-layer plain net ended at 80.0% training error against 1.0% for the "
    "8-layer one: inconclusive (fewer than two seeds with both nets measured: no interval; "
    "+79.0 points in one seed, no interval).", "It converged (704 steps).", NOT_CLASSIFIED,
    "The residual twins were inconclusive (1.0% at depth 8, 2.0% at depth 56; +1.0 points in "
    "one seed, no interval; fewer than two seeds with both nets measured: no interval).",
    "Without BatchNorm, the 56-layer plain net ended at 90.0% training error against 2.0% for "
    "the 8-layer one: inconclusive (fewer than two seeds with both nets measured: no interval; "
    "+88.0 points in one seed, no interval).",
    "It hit the 1,408-step cap without converging (training error at 352, 704, 1,408 steps: "
    "90.0%, 90.0%, 90.0%); its training loss stayed within 5% of ln(classes), so it failed to "
    "start.", NOT_CLASSIFIED,
    "The residual twins were inconclusive (3.0% at depth 8, 4.0% at depth 56; +1.0 points in "
    "one seed, no interval; fewer than two seeds with both nets measured: no interval).",
    "So these runs do not settle the question (fewer than two seeds with both nets measured: "
    "no interval).", LANDSCAPE.format("inconclusive"),
    "In short, inconclusive: vanishing gradients, vanishing gradients no bn, "
    f"{UNDECIDED}, landscape, small responses."]

CASES = {
    # every cell and intervention of study(): three seeds, t-intervals, no budget curves
    # (no curve words), no statistics sentence, the whole why part (_start, _num, _pct)
    "default": (study, TWINS + [
        "Why is a residual mapping easier? Starting the deepest plain BN net at the identity "
        "gave 5.0% training error, against 82.0% from He init and 2.0% for the residual twin; "
        "it started at median block distance 0.10 from the identity (identity init: "
        "supported).", "Without BN it gave 5.0%, against 90.0% from He init and 4.0% for the "
        "no-BN residual twin; it started at median block distance 0.10 from the identity "
        "(identity init no bn: supported).", "Without BN, residual branches that start at 0 "
        "(SkipInit) gave 10.0%, against 4.0% with He init and 2.0% with BN; Fixup gave 25.0% "
        "(branch scale: inconclusive).", "Started isometric but far from the identity, it "
        "gave 72.3% (the identity with permuted channels, median block distance 1.00) and "
        "65.0% (delta-orthogonal, median block distance 1.20) and 64.0% (TAT's shaped net "
        "without BN, median block distance 1.30) (conditioning: refuted; near identity: "
        "supported).", "Why does the plain net not close the gap? In these runs at 0.1x the "
        "recipe's learning rate the plain net ended at 81.0% (from 82.0%) (learning rate: "
        "inconclusive); with its kernel shaped by TAT (no shortcut, no BN, at the rate its own "
        "sweep picked) the plain net ended at 64.0% under adam (rate 0.0001), against 2.0% for "
        "the BN residual twin and 82.0% for the BN plain net (kernel shaping: refuted); after "
        "training its scale-invariant top Hessian eigenvalue was 2 against 9 for the residual "
        "twin (raw 2 against 9) (landscape: refuted).", "In short, supported: vanishing "
        "gradients no bn, identity init, identity init no bn, near identity; refuted: "
        "vanishing gradients, conditioning, kernel shaping, landscape; inconclusive: branch "
        "scale, learning rate, identity task, ensemble, shattering, small responses."]),
    # one seed per net (no relative ratios, so the flags that need an interval stay out)
    "one seed": (lambda: one_seed(finite=False), ONE_SEED),
    "mixed convergence": (mixed_convergence, [
        BN_DEGRADED, "It converged in 2 of 3 seeds (352-1,408 steps); it hit the 1,408-step cap "
        "without converging in 1 of 3 seeds (training error at 352, 704, 1,408 steps: 91.0%, "
        "88.0%, 84.0%).", BN_KEPT, BN_RESIDUAL,
        "The deep residual net converged in 3 of 3 seeds (704 steps).", NO_BN_DEGRADED,
        "It hit the cap without converging in 3 of 3 seeds (training error at 352, 704, 1,408 "
        "steps: 90.3%, 89.7%, 90.0%); its training loss stayed within 5% of ln(classes), so "
        "it failed to start in 2 of 3 seeds.", *TWINS[4:], LANDSCAPE.format("refuted"), SHORT]),
    # no BN twins: the BN half is skipped (continue), the no-BN half still said
    "no BN twins": (lambda: twins(lambda c: not c["batch_norm"]), TWINS[3:] + [
        "In short, supported: vanishing gradients no bn; inconclusive: vanishing gradients, "
        f"{UNDECIDED}, landscape, small responses."]),
    # no no-BN twins: only the BN half
    "no no-BN twins": (lambda: twins(lambda c: c["batch_norm"]), TWINS[:3] + [
        LANDSCAPE.format("refuted"), "In short, refuted: vanishing gradients, landscape; "
        f"inconclusive: vanishing gradients no bn, {UNDECIDED}, small responses."]),
    # two seeds of the BN twins: "(means of 2 seeds)", "in 1 of 2 seeds", t(0.975, 1)
    "two seeds": (two_seeds, [
        "With BatchNorm, the 56-layer plain net ended at 81.0% training error against 1.0% for "
        "the 8-layer one (means of 2 seeds): degradation (+80.0 points, 95% t-interval [+67.3, "
        "+92.7] over 2 seeds).", "It converged in 1 of 2 seeds (704 steps); it hit the "
        "1,408-step cap without converging in 1 of 2 seeds (training error at 352, 704, 1,408 "
        "steps: 90.0%, 86.0%, 82.0%).", BN_KEPT, "The residual twins were inconclusive (1.0% "
        "at depth 8, 2.5% at depth 56; +1.5 points, 95% t-interval [-4.9, +7.9] over 2 seeds; "
        "the interval straddles 2 points).", LANDSCAPE.format("refuted"), "In short, refuted: "
        f"vanishing gradients, landscape; inconclusive: vanishing gradients no bn, {UNDECIDED}, "
        "small responses."]),
    "unclassified, exploding, vanishing residual": (unclassified, [
        BN_DEGRADED, NOT_CLASSIFIED, BN_RESIDUAL, NO_BN_DEGRADED,
        "Its gradients did not vanish (first/last conv ratio of relative gradient norms "
        "||g||/||w|| 1e+03x, median over training; vanishing means below 0.01; raw norms "
        "1e+03x), and at initialization they grew 1e+03x towards the input (exploding).",
        NO_BN_RESIDUAL + ", with vanishing gradients.", "Without BatchNorm, the degraded "
        "plain net's gradients did not vanish either: vanishing gradients do not explain that "
        "degradation.", LANDSCAPE.format("refuted"), "In short, refuted: vanishing gradients "
        f"no bn, landscape; inconclusive: vanishing gradients, {UNDECIDED}, small responses."]),
    # the moving averages add more than 2 points to one read cell besides the worst
    "statistics, one other cell": (
        lambda: statistics_gaps({"plain56-bn-s1": 5.0, "resnet8-bn-s2": 2.5}), TWINS + [
            "BatchNorm's moving averages would have added 5.0 points to the training error "
            "of plain56-bn-s1 (87.0% with them, 82.0% with precise statistics), and more than "
            "2 points to 1 other cell that the flags read; every error here uses precise "
            "statistics.", LANDSCAPE.format("refuted"), SHORT]),
    # ... to two others ("cells")
    "statistics, two other cells": (
        lambda: statistics_gaps({"plain8-bn-s0": 2.1, "resnet56-bn-s0": 10.0,
                                 "resnet8-bn-s2": 2.5}), TWINS + [
            "BatchNorm's moving averages would have added 10.0 points to the training error "
            "of resnet56-bn-s0 (12.0% with them, 2.0% with precise statistics), and more than "
            "2 points to 2 other cells that the flags read; every error here uses precise "
            "statistics.", LANDSCAPE.format("refuted"), SHORT]),
    # exactly 2 points is not more than 2: no statistics sentence
    "statistics, none above": (
        lambda: statistics_gaps({"plain56-bn-s1": 2.0, "resnet8-bn-s2": 1.9}),
        TWINS + [LANDSCAPE.format("refuted"), SHORT]),
}


@pytest.mark.parametrize("build, expected", CASES.values(), ids=CASES.keys())
def test_the_whole_answer_paragraph(build, expected):
    assert verdict(build())["answer"] == " ".join(expected)


def test_one_seed_with_finite_ratios_says_its_gradients_are_undecided():
    # one seed gives no interval: the flag is inconclusive whatever the seed's ratio
    expected = list(ONE_SEED)
    expected[2] = ("Its gradients neither clearly vanished nor clearly did not (first/last conv "
                   "ratio of relative gradient norms ||g||/||w|| 2x, median over training; "
                   "vanishing means below 0.01; raw norms 2x).")
    expected[6] = ("Its gradients neither clearly vanished nor clearly did not (first/last conv "
                   "ratio of relative gradient norms ||g||/||w|| 1e-07x, median over training; "
                   "vanishing means below 0.01; raw norms 1e-07x).")
    assert verdict(one_seed())["answer"] == " ".join(expected)
