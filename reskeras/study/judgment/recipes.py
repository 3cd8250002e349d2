"""The study under two optimizers: which decisions each recipe reached, and where they differ.

The full preset trains its whole grid under each recipe (Adam, and the paper's SGD
with momentum, weight decay and step decay). The analyses that reload trained nets
(lesions, shattering, the landscape, the identity task) run on the first recipe only,
so the comparison covers the decisions that the training errors and gradient norms
decide: the degradation flags, the gradient flags and the intervention hypotheses.

Example:

>>> adam = {"degradation": {"plain": True}, "vanishing_gradients": {"plain_bn": False},
...         "exploding_at_init": {}, "hypotheses": [{"id": "learning_rate",
...                                                  "verdict": "refuted"}]}
>>> sgd = {**adam, "degradation": {"plain": "inconclusive"}}
>>> [d["decision"] for d in differences({"adam": adam, "paper": sgd})]
['degradation.plain']
"""

from __future__ import annotations

# hypotheses decided from training errors and gradient norms (every recipe measures them)
# (the start distances the identity premise reads are the same under every recipe: same
# init, same seed; the analyses copy them from the first recipe's cells)
TRAINING_HYPOTHESES = ("vanishing_gradients", "vanishing_gradients_no_bn", "identity_init",
                       "identity_init_no_bn", "conditioning", "near_identity", "branch_scale",
                       "learning_rate")


def decisions(verdict: dict) -> dict:
    """``{"degradation.plain": True, ..., "hypothesis.learning_rate": "refuted", ...}``."""
    found = {}
    for kind in ("degradation", "vanishing_gradients", "exploding_at_init"):
        for key, value in (verdict.get(kind) or {}).items():
            if key != "numbers":
                found[f"{kind}.{key}"] = value
    for row in verdict.get("hypotheses") or []:
        if row["id"] in TRAINING_HYPOTHESES:
            found[f"hypothesis.{row['id']}"] = row["verdict"]
    return found


def differences(verdicts: dict[str, dict]) -> list[dict]:
    """``[{"decision", "recipes": {recipe: value}}]`` for every decision some recipes
    reached differently (a decision only one recipe could make counts as differing)."""
    by_recipe = {recipe: decisions(v) for recipe, v in verdicts.items()}
    names = sorted({name for found in by_recipe.values() for name in found})
    rows = []
    for name in names:
        values = {recipe: found.get(name) for recipe, found in by_recipe.items()}
        if len({repr(v) for v in values.values()}) > 1:
            rows.append({"decision": name, "recipes": values})
    return rows


__all__ = ["TRAINING_HYPOTHESES", "decisions", "differences"]
