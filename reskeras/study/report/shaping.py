"""The report's kernel-shaping section: TAT's rate sweeps, its gap test, its start, its C map.

Rendered from ``verdict.json`` and the results (no judgment here; the rules are
:mod:`reskeras.study.judgment.shaping` and :mod:`reskeras.study.judgment.rates`):

- **rate sweeps**: per recipe and swept net (TAT's, and the plain BN net's for the same
  chance), each factor of the recipe's rate, its mean full-pass training loss over the
  held-out seeds (or *diverged*), and the pick;
- **the gap**: per recipe, the plain BN net, TAT's net, the tuned BN net and the BN
  residual twin, the 95% interval of the fraction of the gap TAT closes and its decision;
- **without augmentation**: training and test errors with and without augmentation, and
  the steps each net was read at, so the reader knows which gap (fitting, or speed and
  test error) a sentence is about;
- **the start**: gradient growth, sharpness, shattering and the C map at initialization;
- the figure ``kernel_map``: mean cosine similarity of the representations of different
  inputs against depth, at initialization (:func:`plot_kernel_map`).

Example:

>>> shaping_blocks({"verdict": {"hypotheses": []}}, {}, set())
[]
"""

from __future__ import annotations

from reskeras.analysis.plots import blank_figure, save_figure
from reskeras.study.cells import SHAPING_NETS
from reskeras.study.report.figure_style import decorate, require, write_each
from reskeras.study.report.text import figure_blocks, value_text

_DECISIONS = {True: "closes", False: "does not close", "inconclusive": "inconclusive",
              None: "not run"}
_NETS = {"plain_bn": "plain, BN (He init)", "residual_bn": "residual, BN",
         "plain_no_bn": "plain, no BN (He init)", "plain_tat": "plain, no BN, TAT"}
_KERNEL_STYLE = {"plain_bn": ("tab:red", "--"), "residual_bn": ("tab:blue", "-"),
                 "plain_no_bn": ("#fb6a4a", ":"), "plain_tat": ("tab:gray", "-.")}


def _interval(bounds) -> str:
    return "—" if not bounds else f"[{bounds[0]:.0%}, {bounds[1]:.0%}]"


def _number(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _pick_text(record: dict, factor: float) -> str:
    """``**picked**``, and a warning when the pick is the sweep's largest or smallest rate:
    the best rate may then lie outside the sweep."""
    if record["picked"] != factor:
        return ""
    edge = factor in (min(record["factors"]), max(record["factors"]))
    return "**picked** (the edge of the sweep)" if edge else "**picked**"


def _sweep_rows(sweeps: dict) -> list[list[str]]:
    rows = []
    for recipe, found in sweeps.items():
        for record in found.values():
            for factor in record["factors"]:
                key = f"{factor:g}"
                loss = record["mean_loss"].get(key)
                rows.append([recipe, record["label"], f"{factor:g}x",
                             f"{factor * record['base_rate']:.3g}",
                             "diverged" if factor in record["diverged"] else _number(loss, 4),
                             _pick_text(record, factor)])
    return rows


def _gap_rows(by_recipe: dict) -> list[list[str]]:
    rows = []
    for recipe, part in by_recipe.items():
        tuned = part.get("tuned") or {}
        tuned_text = "—" if not tuned else (
            "its recipe rate" if tuned.get("picked") == 1.0 else
            f"{value_text(tuned.get('error'), True)} ({tuned.get('picked'):g}x: "
            f"{tuned.get('verdict')})" if tuned.get("picked") is not None else "no rate")
        decision = part.get("decision")
        rows.append([recipe, _number(part.get("picked_rate")),
                     value_text(part.get("plain_bn"), True), value_text(part.get("plain_tat"), True),
                     tuned_text, value_text(part.get("residual_bn"), True),
                     _interval(part.get("closed_interval")),
                     _DECISIONS.get(decision, str(decision))
                     + (f" ({part['why_inconclusive']})" if part.get("why_inconclusive") else "")])
    return rows


def _augmentation_rows(found: dict | None) -> list[list[str]]:
    rows = []
    for key, parts in (found or {}).items():
        cells = []
        for label in ("augmented", "not_augmented"):
            part = parts.get(label)
            cells += ["—", "—", "—"] if not part else [
                value_text(part["train_error"], True), value_text(part["test_error"], True),
                ", ".join(str(s) for s in part["steps"])]
        rows.append([_NETS[key], *cells])
    return rows


def _start_rows(found: dict | None) -> list[list[str]]:
    return [[_NETS[key], _number(part["gradient_growth"]), _number(part["sharpness"]),
             _number(part["shattering"], 2), _number(part["c_last_block"], 4),
             _number(part["c_pooled"], 4), _number(part.get("c_spread"), 3),
             _number(part.get("c_rank_correlation"), 3)]
            for key, part in (found or {}).items()]


def shaping_blocks(results: dict, figures: dict, used: set) -> list[tuple]:
    """Report blocks of the kernel-shaping section (none when the study ran no TAT)."""
    rows = {h["id"]: h for h in (results.get("verdict") or {}).get("hypotheses") or []}
    measured = (rows.get("kernel_shaping") or {}).get("measured") or {}
    if not measured.get("sweeps") and not results.get("kernel_map"):
        return []
    blocks = [("h2", "Kernel shaping: a plain net with no shortcut and no BatchNorm"),
              ("p", "TAT (Zhang, Botev & Martens 2022) shapes the deepest plain net without BN "
               "so that its kernel does not degenerate with depth: per-location normalized "
               "input, delta scaled-orthogonal kernels with zero biases, and a leaky ReLU "
               "whose slope and scale DeepMind's `dks` computes for the depth "
               "(docs/kernel_shaping.md). A net without BN needs its own learning rate, so "
               "before its cells train, a sweep on held-out seeds picks it by the lowest mean "
               "training loss at a fixed budget; the plain BN net gets the same sweep (the "
               "tuned net). A rate where a seed diverged is out. The verdict "
               f"(`kernel_shaping`): **{rows['kernel_shaping']['verdict']}**"
               + (f" ({measured['why_inconclusive']})" if measured.get("why_inconclusive")
                  else "") + ".")]
    sweeps = _sweep_rows(measured.get("sweeps") or {})
    if sweeps:
        blocks += [("table", ["recipe", "net", "factor", "rate", "mean training loss",
                              "pick"], sweeps, ())]
    gaps = _gap_rows(measured.get("recipes") or {})
    if gaps:
        blocks += [("p", "Training errors at the converged budgets (precise BN statistics for "
                    "the BN nets), means over seeds, and the 95% interval of the fraction of the "
                    "gap between the plain BN net and its residual twin that TAT's net closes:"),
                   ("table", ["recipe", "TAT rate", "plain BN", "TAT", "plain BN, tuned rate",
                              "residual BN", "gap closed (95%)", "decision"], gaps, (7,))]
    augmentation = _augmentation_rows(measured.get("no_augmentation"))
    if augmentation:
        blocks += [("p", "Without augmentation the nets can memorize the training images. A "
                    "net that reaches a low training error there but not with augmentation "
                    "lags in speed; test errors say what it learned. Errors are means over "
                    "seeds; steps are the budgets each seed was read at:"),
                   ("table", ["net", "train error", "test error", "steps", "train error, no aug",
                              "test error, no aug", "steps, no aug"], augmentation, ())]
    start = _start_rows(measured.get("symptoms_at_init"))
    if any(any(cell != "—" for cell in row[1:]) for row in start):
        blocks += [("p", "The start: the first/last conv ratio of relative gradient norms at "
                    "step 0 (gradient growth), the raw top Hessian eigenvalue at "
                    "initialization, the neighbour correlation of input gradients, the mean "
                    "cosine similarity between the representations of different inputs at the "
                    "last block and at the pooled features, and, over every pair of inputs, "
                    "the spread of the pooled features' cosines and their rank correlation "
                    "with the input's cosines (the C map). TAT aims for a high mean (two "
                    "unrelated inputs end at 0.9); a net that has forgotten which inputs were "
                    "alike has a rank correlation near 0:"),
                   ("table", ["net", "gradient growth", "sharpness", "shattering",
                              "C, last block", "C, pooled", "C spread", "C rank correlation"],
                    start, ())]
    return blocks + figure_blocks(figures, ("kernel_map",), used)


def plot_kernel_map(results: dict, path: str) -> str:
    """Left: mean cosine similarity between the representations of different inputs, at
    initialization, against the layer (input, stem, each block, pooled features), one line
    per measured net (first seed). Right (when measured): the C map, the pooled features'
    pair cosine against the input's, binned. The PNG is 1300 x 450 pixels."""
    rows = require(results.get("kernel_map") or [], "a kernel map (`results['kernel_map']`)")
    maps = [row for row in rows if row["layers"][-1].get("c_map")]
    figure = blank_figure(1300 if maps else 900, 450)
    axes = figure.subplots(1, 2 if maps else 1, squeeze=False,
                           gridspec_kw={"width_ratios": [3, 2] if maps else [1]})[0]
    ax = axes[0]
    for row in rows:
        key = _key(row)
        color, style = _KERNEL_STYLE.get(key, ("0.3", "-"))
        values = [layer["mean_cosine"] for layer in row["layers"]]
        ax.plot(range(len(values)), [float("nan") if v is None else v for v in values],
                style, color=color, marker=".", label=_NETS.get(key, row["group"]))
    names = [layer["layer"] for layer in rows[0]["layers"]]
    # the stem sits between the input and the first block: at 56 layers their names overlap
    ticks = [i for i, name in enumerate(names) if name in ("input", "head_pool")
             or name.endswith("block1_out")]
    ax.set_xticks(ticks, [names[i].replace("_out", "") for i in ticks], fontsize=8,
                  rotation=20, ha="right")
    ax.set_ylim(None, 1.0)
    decorate(ax, f"The kernel at initialization, depth {rows[0]['depth']}: how alike different "
                 "inputs look", "layer", "mean cosine similarity between inputs", legend=8)
    if maps:
        right = axes[1]
        for row in maps:
            key = _key(row)
            color, style = _KERNEL_STYLE.get(key, ("0.3", "-"))
            found = row["layers"][-1]["c_map"]
            right.plot(found["input_cosine"], found["output_cosine"], style, color=color,
                       marker=".", label=f"{_NETS.get(key, row['group'])} "
                                         f"(rank corr. {found['rank_correlation']:.2f})")
        low = min(min(r["layers"][-1]["c_map"]["input_cosine"]) for r in maps)
        right.plot([low, 1], [low, 1], ":", color="0.6", linewidth=1, label="output = input")
        decorate(right, "The C map at the pooled features, pairs of inputs",
                 "cosine between two inputs", "cosine between their pooled features",
                 legend=7, size=10)
    return save_figure(figure, path)


def _key(row: dict) -> str | None:
    return next((k for k, net in SHAPING_NETS.items()
                 if (row["residual"], row["batch_norm"], row["variant"]) == net), None)


def write_shaping_figures(results: dict, figures_dir: str) -> dict[str, str]:
    """``{"kernel_map": "figures/kernel_map.png"}`` when the results hold a kernel map."""
    return write_each((("kernel_map", plot_kernel_map),), results, figures_dir)


__all__ = ["plot_kernel_map", "shaping_blocks", "write_shaping_figures"]
