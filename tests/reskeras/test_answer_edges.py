"""Sentences of the answer that the eight studies of test_answer_text.py do not reach, each
read against its constructed numbers (found by mutmut: docs/testing.md)."""

from reskeras.study.judgment.verdict import (_curve_words, _start, _trend_part, _vanishing_part,
                                            _why_part, budget_criteria)


def numbers(**changes):
    """A family's degradation numbers as ``degradation()`` writes them: 3 seeds, no curves."""
    found = {"shallow_depth": 20, "deep_depth": 56, "shallow_train_error": 0.1,
             "deep_train_error": 0.103, "deep_diverged": False,
             "gap_points": {"0": 0.2, "1": 0.5, "2": 0.2}, "interval": [-0.13, 0.73],
             "interval_method": "t", "why_inconclusive": None, "deep_curves": {},
             "deep_unconverged": []}
    return {**found, **changes}


def test_a_plain_net_that_did_not_degrade_beside_a_residual_net_whose_gradients_vanished():
    degraded = {"plain": False, "residual": False, "numbers": {
        "plain": numbers(),
        "residual": numbers(shallow_train_error=0.06, deep_train_error=0.05,
                            gap_points={"0": -1.0, "1": -1.2, "2": -0.8},
                            interval=[-1.5, -0.5])}}
    # the raw ratio missing: "n/a"; the residual BN net's gradients vanished
    grads = {"plain_bn": {"relative_first_last_ratio_median": 1.52,
                          "first_last_ratio_median": None}}
    assert _vanishing_part(degraded, {"plain_bn": False, "residual_bn": True}, {}, grads) == [
        "With BatchNorm, the 56-layer plain net ended at 10.3% training error against 10.0% "
        "for the 20-layer one (means of 3 seeds): no degradation (+0.3 points, 95% "
        "t-interval [-0.1, +0.7] over 3 seeds). Its gradients did not vanish (first/last "
        "conv ratio of relative gradient norms ||g||/||w|| 1.52x, median over training; "
        "vanishing means below 0.01; raw norms n/a). The residual twins did not degrade "
        "(6.0% at depth 20, 5.0% at depth 56; -1.0 points, 95% t-interval [-1.5, -0.5] over "
        "3 seeds), with vanishing gradients.",
        "So at these depths and this budget the plain nets did not degrade; a deeper grid "
        "or longer training is needed to test the claim."]


def test_a_seed_without_a_gap_is_no_seed_measured():
    why = "fewer than two seeds with both nets measured: no interval"
    degraded = {"plain": "inconclusive", "numbers": {
        "plain": numbers(gap_points={"0": None}, interval=None, interval_method=None,
                         why_inconclusive=why)}}
    assert _vanishing_part(degraded, {}, {}, {}) == [
        "With BatchNorm, the 56-layer plain net ended at 10.3% training error against 10.0% "
        f"for the 20-layer one: inconclusive ({why}; no seed measured).",
        f"So these runs do not settle the question ({why})."]


def test_converged_seeds_give_the_range_from_the_fewest_to_the_most_steps():
    cells = {f"plain56-bn-s{seed}": {"status": "finished", "convergence": {"steps": steps}}
             for seed, steps in enumerate((176, 704, 352))}
    found = numbers(deep_curves={name: {"88": 0.5} for name in cells})
    assert _curve_words(found, cells) == " It converged in 3 of 3 seeds (176-704 steps)."


def test_a_start_distance_not_measured_in_some_seed_is_said():
    assert _start({"seed 0": {"start_distance": 0.1}, "seed 1": {"start_distance": None}}) == \
        "; some blocks started with all-zero inputs"
    assert _start({"seed 0": {"start_distance": 0.1}, "seed 1": {"start_distance": 0.3}}) == \
        "; it started at median block distance 0.20 from the identity"
    assert _start({"seed 0": {}}) == ""


DEGRADED_BN = numbers(deep_train_error=0.40, gap_points={"0": 30.0, "1": 29.0, "2": 31.0},
                      interval=[27.5, 32.5])


def test_the_papers_answer_and_a_no_bn_plain_net_that_did_not_degrade():
    degraded = {"plain": True, "residual": False, "plain_no_bn": False, "numbers": {
        "plain": DEGRADED_BN,
        "residual": numbers(shallow_train_error=0.06, deep_train_error=0.05,
                            gap_points={"0": -1.0, "1": -1.2, "2": -0.8},
                            interval=[-1.5, -0.5]),
        "plain_no_bn": numbers(shallow_train_error=None)}}  # the shallow one unmeasured
    # no sentence about a degraded no-BN plain net's gradients: it did not degrade
    assert _vanishing_part(degraded, {"plain_bn": False, "plain_no_bn": False}, {}, {}) == [
        "With BatchNorm, the 56-layer plain net ended at 40.0% training error against 10.0% "
        "for the 20-layer one (means of 3 seeds): degradation (+30.0 points, 95% t-interval "
        "[+27.5, +32.5] over 3 seeds). The residual twins did not degrade (6.0% at depth 20, "
        "5.0% at depth 56; -1.0 points, 95% t-interval [-1.5, -0.5] over 3 seeds).",
        "Without BatchNorm, the 56-layer plain net ended at 10.3% training error against n/a "
        "for the 20-layer one (means of 3 seeds): no degradation (+0.3 points, 95% t-interval "
        "[-0.1, +0.7] over 3 seeds).",
        "So in these runs, with BatchNorm, residual connections removed a degradation that "
        "vanishing gradients do not explain, as He et al. (2015, §4.1) argue."]


def test_residual_twins_that_degraded_too_with_the_deep_one_diverged():
    degraded = {"plain": True, "residual": True, "numbers": {
        "plain": DEGRADED_BN,
        "residual": numbers(shallow_train_error=0.06, deep_diverged=True, deep_train_error=None,
                            gap_points={"0": 84.0, "1": 84.0, "2": 84.0},
                            interval=[84.0, 84.0])}}
    assert _vanishing_part(degraded, {"plain_bn": True}, {}, {}) == [
        "With BatchNorm, the 56-layer plain net ended at 40.0% training error against 10.0% "
        "for the 20-layer one (means of 3 seeds): degradation (+30.0 points, 95% t-interval "
        "[+27.5, +32.5] over 3 seeds). The residual twins also degraded (6.0% at depth 20, "
        "diverged at depth 56; +84.0 points, 95% t-interval [+84.0, +84.0] over 3 seeds).",
        "So in these runs, with BatchNorm, the degraded plain net also had vanishing "
        "gradients: the measurement does not separate the two explanations."]


def test_a_grid_without_two_depths_per_family_says_degradation_cannot_be_measured():
    assert _vanishing_part({"numbers": {}}, {}, {}, {}) == [
        "The grid has fewer than two finished depths per family, so degradation (deep against "
        "shallow at the same budget) cannot be measured; the gradient-flow numbers of each "
        "cell are in the report."]


def test_the_why_part_with_every_start_measured_and_with_only_the_branch_scale():
    rows = [
        {"id": "identity_task", "verdict": "supported", "measured": {
            "plain_kept_depth": 4, "residual_kept_depth": 16, "deepest_depth": 32,
            "plain_at_deepest": 0.684, "residual_at_deepest": 0.0153}},
        {"id": "identity_init", "verdict": "supported", "measured": {
            "plain_identity": 0.01, "plain": 0.383, "residual": 0.001}},
        {"id": "identity_init_no_bn", "verdict": "refuted", "measured": {
            "plain_no_bn_identity": 0.9, "plain_no_bn": 0.88, "residual_no_bn": 0.02}},
        {"id": "branch_scale", "verdict": "supported", "measured": {
            "residual_no_bn_skipinit": 0.03, "residual_no_bn": 0.5, "residual_bn": 0.001,
            "fixup": {"error": 0.04}}}]
    # no per-seed start distances given: no clause about them
    assert _why_part(rows) == [
        "Why is a residual mapping easier? Trained to copy their own input, plain "
        "conv-BN-ReLU stacks kept it (error below 0.2) up to depth 4, residual stacks up to "
        "depth 16; at depth 32 the errors were 0.684 and 0.0153 (a constant output scores "
        "0.68) (identity task: supported). Starting the deepest plain BN net at the identity "
        "gave 1.0% training error, against 38.3% from He init and 0.1% for the residual twin "
        "(identity init: supported). Without BN it gave 90.0%, against 88.0% from He init and "
        "2.0% for the no-BN residual twin (identity init no bn: refuted). Without BN, residual "
        "branches that start at 0 (SkipInit) gave 3.0%, against 50.0% with He init and 0.1% "
        "with BN; Fixup gave 4.0% (branch scale: supported).",
        "In short, supported: identity task, identity init, branch scale; refuted: identity "
        "init no bn."]
    # the hypotheses a study did not test have no row: their sentences are left out; no
    # Fixup net, no Fixup clause
    rows[3]["measured"]["fixup"] = None
    assert _why_part(rows[3:]) == [
        "Why is a residual mapping easier? Without BN, residual branches that start at 0 "
        "(SkipInit) gave 3.0%, against 50.0% with He init and 0.1% with BN (branch scale: "
        "supported).", "In short, supported: branch scale."]


def test_the_depth_trend_sentence_names_each_init_and_family_that_decided():
    trends = {
        # undecided with BN: left out, and the no-BN family of the same init still said
        "dirac": {"bn": {"removes_trend": None, "shallow_depth": 8, "deep_depth": 56,
                         "points": 1.0},
                  "no_bn": {"removes_trend": True, "shallow_depth": 8, "deep_depth": 56,
                            "points": -0.4}},
        "deltaorth": {"bn": {"removes_trend": False, "shallow_depth": 8, "deep_depth": 56,
                             "points": 12.25}}}
    assert _trend_part(trends) == [
        "Across depths, from the identity init the plain nets without BN no longer degraded "
        "from depth 8 to 56 (-0.4 points); from the delta-orthogonal init the plain nets with "
        "BN still degraded from depth 8 to 56 (+12.2 points)."]
    assert _trend_part({"dirac": {"bn": None}}) == []


def test_the_cap_needs_both_the_base_budget_and_the_doublings():
    assert budget_criteria({"base_steps": 88, "max_doublings": 4}) == {
        "base_steps": 88, "cap_steps": 1408}
    assert budget_criteria({"base_steps": None, "max_doublings": 4}) == {
        "base_steps": None, "cap_steps": None}
    assert budget_criteria({"base_steps": 88}) == {"base_steps": 88, "cap_steps": None}


def test_the_why_part_with_several_starts_rates_recipes_and_the_ensemble():
    rows = [
        {"id": "near_identity", "verdict": "refuted", "measured": {"starts": {
            "diracperm": {"error": 0.02, "start_distance": [1.4, 1.42, 1.38]},
            "deltaorth": {"error": 0.05}}}},  # no start distance: no clause
        {"id": "conditioning", "verdict": "supported", "measured": {}},
        {"id": "learning_rate", "verdict": "refuted", "measured": {"plain": 0.383, "rates": {
            "0.1": {"factor": 0.1, "error": 0.30}, "3": {"factor": 3, "error": 0.9}}}},
        {"id": "kernel_shaping", "verdict": "inconclusive", "measured": {"recipes": {
            "adam": {"plain_tat": 0.01, "picked_rate": 3e-4, "residual_bn": 0.001,
                     "plain_bn": 0.383},
            "paper": {"plain_tat": 0.268, "picked_rate": 1e-3, "residual_bn": 0.0,
                      "plain_bn": 0.565}}}},
        {"id": "small_responses", "verdict": "supported", "measured": {
            "plain_median_std": 1.1049, "residual_median_std": 0.4213}},
        {"id": "ensemble", "verdict": "supported", "measured": {
            "residual_median_damage": 0.021, "plain_median_damage": 0.35,
            "plain_identity_median_damage": 0.6}}]
    assert _why_part(rows) == [
        "Why is a residual mapping easier? Started isometric but far from the identity, it "
        "gave 2.0% (the identity with permuted channels, median block distance 1.40) and "
        "5.0% (delta-orthogonal) (conditioning: supported; near identity: refuted). After "
        "training, the median response std of the plain net's layers was 1.1, of the "
        "residual branches 0.421 (small responses: supported).",
        "Why does the plain net not close the gap? In these runs at 0.1x, 3x the recipe's "
        "learning rate the plain net ended at 30.0%, 90.0% (from 38.3%) (learning rate: "
        "refuted); with its kernel shaped by TAT (no shortcut, no BN, at the rate its own "
        "sweep picked) the plain net ended at 1.0% under adam (rate 0.0003), against 0.1% "
        "for the BN residual twin and 38.3% for the BN plain net; 26.8% under paper (rate "
        "0.001), against 0.0% for the BN residual twin and 56.5% for the BN plain net "
        "(kernel shaping: inconclusive); deleting one block took the residual net a median "
        "2.1% of the way to chance, the plain twin 35.0%, the identity-initialized plain net "
        "that trained 60.0% (ensemble: supported).",
        "In short, supported: conditioning, small responses, ensemble; refuted: near "
        "identity, learning rate; inconclusive: kernel shaping."]
    # the plain twin already near chance and no identity-initialized net: said so, or nothing
    rows[5]["measured"] = {"residual_median_damage": 0.021, "plain_median_damage": None,
                           "plain_identity_median_damage": None}
    assert _why_part(rows[5:]) == [
        "Why does the plain net not close the gap? In these runs deleting one block took the "
        "residual net a median 2.1% of the way to chance, the plain twin, already near "
        "chance, nothing measurable (ensemble: supported).", "In short, supported: ensemble."]
