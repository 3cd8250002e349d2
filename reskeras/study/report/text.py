"""Text of the study report: number formats, verdict flags, captions and figure blocks.

Shared by :mod:`reskeras.study.report.writer` and :mod:`reskeras.study.report.why`;
a block is a tuple that :mod:`reskeras.study.report.render` turns into Markdown
or HTML.

>>> pct(0.1234), num(1234.5), flag({"plain": "inconclusive"}, "plain")
('12.3%', '1.23e+03', 'inconclusive')
"""

from __future__ import annotations

import math

import numpy as np

CAPTIONS = {
    "kernel_map": "Left: mean cosine similarity between the representations of different "
                  "test images at initialization, layer by layer, deepest nets, first seed. "
                  "Right: the C map of Deep Kernel Shaping, measured: for every pair of "
                  "images, the cosine between their pooled features against the cosine "
                  "between the images (binned). A flat map means the net has forgotten which "
                  "inputs were alike; TAT aims for a map that rises, high by design (its "
                  "target sends unrelated inputs to 0.9 at the output layer). The legend's "
                  "rank correlation says how much of the inputs' order each net kept.",
    "degradation": "Training error (top) and loss (bottom, log) against step, one color per "
                   "depth, plain dashed, residual solid (He et al. 2015, Fig. 6); x: a "
                   "diverged cell's last finite point.",
    "gradient_ratio": "First/last conv ratio of relative gradient norms ||g||/||w|| against "
                      "depth, at step 0 and median over the logged steps; shaded: the "
                      "vanishing and exploding zones the flags read.",
    "gradient_profiles_init": "Gradient norm of each conv and dense layer at initialization "
                              "against relative depth (0 = input side), one curve per cell.",
    "grad_norm_heatmap": "log10 gradient norm of every layer (rows, input at the top) at every "
                         "logged step, deepest plain and residual BatchNorm twins.",
    "responses": "Std of the 3x3 conv responses after BatchNorm, by layer and sorted "
                 "(He et al. 2015, Fig. 7), deepest plain and residual BatchNorm twins.",
    "lesion": "Test error after deleting one block; dotted: the intact nets.",
    "shattering": "Correlation of input gradients at neighbouring points of a line through "
                  "test images, at initialization and after training.",
    "landscape": "Training loss along one filter-normalized random direction (log scale).",
    "interventions": "Training error against step of the deepest nets: the He-initialized "
                     "plain (dashed) and residual (solid) twins and every intervention, mean "
                     "over seeds; shaded: lowest to highest seed.",
    "identity_distance": "||block(x) − x|| / ||x|| of every shape-preserving block of the "
                         "deepest BatchNorm nets: dotted at initialization, dashed (plain) or "
                         "solid (residual) after training; log scale.",
    "distance_travelled": "Relative distance ||W_end − W_init|| / ||W_init|| each conv and "
                          "dense layer of the same nets moved during training (log scale); "
                          "shaded: lowest to highest seed.",
    "sharpness": "Top eigenvalue of the training loss's Hessian at initialization and after "
                 "training (log scale); dots: single seeds.",
    "identity_task": "Relative reconstruction error of stacks trained to reproduce their input, "
                     "against the number of blocks: plain dashed, residual solid, dotted at "
                     "initialization; mean over seeds, dots: single seeds.",
}
NOT_MEASURED = "Not measured: the analysis was skipped or had no finished cells to run on."
def pct(value) -> str:
    return "—" if not finite(value) else f"{100 * float(value):.1f}%"


def num(value) -> str:
    return "—" if not finite(value) else f"{float(value):.3g}"


def finite(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def flag(flags: dict | None, key: str, per_seed: dict | None = None, pick: str = "") -> str:
    """``**yes**``, ``no``, ``inconclusive`` (seeds disagree) or ``undecided``, with the
    seeds behind it: ``yes (3/3 seeds)`` for per-seed flags, else each seed's value."""
    if key not in (flags or {}):
        return "not measured"
    value = flags[key]
    text = ("**yes**" if value is True else "no" if value is False
            else "inconclusive" if value == "inconclusive" else "undecided")
    per_seed = per_seed or {}
    if pick in per_seed:  # {"vanishing": {seed: flag}, "exploding_at_init": {seed: flag}}
        per_seed = per_seed[pick] or {}
    values = {seed: v.get(pick, v) if isinstance(v, dict) else v for seed, v in per_seed.items()}
    if not values:
        return text
    if all(v is None or isinstance(v, bool) for v in values.values()):
        return f"{text} ({sum(v is True for v in values.values())}/{len(values)} seeds)"
    return f"{text} ({', '.join(f's{seed} {value_text(v)}' for seed, v in values.items())})"


def value_text(value, percent: bool = False) -> str:
    """A number (``percent``: a fraction as %), a flag, a text, an interval ``[lo, hi]``
    or ``—``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return ", ".join(f"{k}: {value_text(v, percent)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):  # an interval
        return "[" + ", ".join(value_text(v, percent) for v in value) + "]"
    if percent and finite(value) and 0 < abs(value) < 0.0095:  # 0.06%, not 0.1%
        return f"{100 * value:.2g}%"
    return pct(value) if percent else num(value)


def mean(values) -> float | None:
    kept = [v for v in values if finite(v)]
    return float(np.mean(kept)) if kept else None


def figure_blocks(figures: dict, keys, used: set) -> list[tuple]:
    found = [key for key in keys if key in figures]
    used.update(found)
    return [("figure", figures[k], CAPTIONS.get(k, k.replace("_", " "))) for k in found]


def section(title: str, text: str, figures: dict, keys, used: set) -> list[tuple]:
    """A heading, its explanation, then the section's figures that exist."""
    return [("h2", title), ("p", text)] + figure_blocks(figures, keys, used)
