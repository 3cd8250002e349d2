"""The study's cells: one trained net each, named for its twin, depth, BN, intervention and seed.

A cell is a plain or residual CIFAR net of one depth, with or without
BatchNorm, trained from one seed. Its ``variant`` says what, if anything, was
changed to test an explanation:

- ``"he"``: the twins as the paper trains them (He-normal init, the recipe's rate);
- ``"dirac"``: every conv starts as the identity plus 0.1 x He noise
  (DiracNets, Zagoruyko & Komodakis 2017), for plain nets;
- ``"diracperm"``: the same with each conv's output channels permuted by one random
  cycle: orthogonal like the identity, but far from it (a control for ``"dirac"``);
- ``"deltaorth"``: delta-orthogonal init (Xiao et al. 2018): a random orthogonal
  centre tap, sqrt(2) gain: dynamical isometry without the identity, for plain nets;
- ``"skipinit"``: every residual branch is scaled by a learnable scalar that
  starts at 0 (SkipInit, De & Smith 2020), for residual nets without BN;
- ``"fixup"``: Fixup (Zhang et al. 2019): scalar biases, a zero last conv per branch,
  the inner convs scaled by L^(-1/(2m-2)), for residual nets without BN;
- ``"lr0.1"``, ``"lr0.3"``, ``"lr3"``, ``"lr10"``: the recipe's learning rate times 0.1,
  0.3, 3 or 10 (a sweep spanning 100x; a conditioning test), for plain BN nets;
- ``"tat"``: the plain net without BN shaped by TAT (Zhang et al. 2022;
  ``kernel_shaping="tat"``), at the learning rate its own sweep picks (``SHAPING_SWEEPS``);
- ``"tuned"``: the plain BN net at the learning rate the same sweep picks for it (the
  same chance TAT gets);
- ``"noaug"`` and ``"tat-noaug"``: the twins with BN and the TAT net trained without
  augmentation, on data a net can memorize (is the gap one of speed or of ability?).

A cell of a swept variant carries its ``lr_factor`` (the recipe's rate times it) in its
name: ``plain56-nobn-tat-x0.03-s0``.

:func:`group_cells` pools the seeds of one configuration into mean and spread;
the verdict and the report both read those groups.

Example:

>>> Cell(False, 56, True, 0, "dirac").name
'plain56-bn-dirac-s0'
>>> Cell(True, 56, True, 2).name
'resnet56-bn-s2'
>>> Cell(False, 56, True, 0, "lr0.1").label
'plain-56, BN, 0.1x learning rate'
"""

from __future__ import annotations

import dataclasses

import numpy as np

# variant -> (what it is, the TrainConfig fields it sets; "lr_factor" scales the recipe's rate)
VARIANTS = {
    "he": ("as in the paper", {}),
    "dirac": ("identity init", {"init": "dirac"}),
    "diracperm": ("permuted identity init", {"init": "dirac_permuted"}),
    "deltaorth": ("delta-orthogonal init", {"init": "delta_orthogonal"}),
    "skipinit": ("SkipInit (branch scale 0)", {"branch_scale": 0.0}),
    "fixup": ("Fixup", {"init": "fixup"}),
    "lr0.1": ("0.1x learning rate", {"lr_factor": 0.1}),
    "lr0.3": ("0.3x learning rate", {"lr_factor": 0.3}),
    "lr3": ("3x learning rate", {"lr_factor": 3.0}),
    "lr10": ("10x learning rate", {"lr_factor": 10.0}),
    "tat": ("TAT kernel shaping", {"kernel_shaping": "tat"}),
    "tuned": ("its own swept learning rate", {}),
    "noaug": ("no augmentation", {"augment": False}),
    "tat-noaug": ("TAT kernel shaping, no augmentation", {"kernel_shaping": "tat",
                                                         "augment": False}),
}
INTERVENTIONS = tuple(v for v in VARIANTS if v != "he")
# the learning-rate sweep (``learning_rate`` is refuted only by the whole of it)
LR_SWEEP = ("lr0.1", "lr0.3", "lr3", "lr10")
# the inits that start the plain net isometric: near the identity, or far from it
CONDITIONING = ("dirac", "diracperm", "deltaorth")
_PLAIN = ((False, True), (False, False))
# which twins each intervention is applied to: (residual, batch_norm) pairs
INTERVENTION_TWINS = {"dirac": _PLAIN, "diracperm": _PLAIN, "deltaorth": _PLAIN,
                      "skipinit": ((True, False),), "fixup": ((True, False),),
                      **{rate: ((False, True),) for rate in LR_SWEEP},
                      "tat": ((False, False),), "tuned": ((False, True),),
                      "noaug": ((True, True), (False, True)), "tat-noaug": ((False, False),)}
# variants whose learning rate a sweep picks: variant -> the sweep ((residual, batch_norm,
# variant) of the net swept) whose pick it trains at
SHAPING_SWEEPS = {"tat": (False, False, "tat"), "tuned": (False, True, "he")}
SWEPT_RATE = {"tat": "tat", "tuned": "tuned", "tat-noaug": "tat"}
# the factors of the recipe's rate each sweep tries (100x, down from the recipe's rate: a
# net without BN diverges at the paper's 0.1)
SHAPING_FACTORS = (1.0, 0.3, 0.1, 0.03, 0.01)
# the deepest nets whose start (symptoms, C map) is measured and shown beside TAT's:
# key -> (residual, batch_norm, variant); read by the analyses, the judgment and the report
SHAPING_NETS = {"plain_bn": (False, True, "he"), "residual_bn": (True, True, "he"),
                "plain_no_bn": (False, False, "he"), "plain_tat": (False, False, "tat")}


def lr_factor(variant: str) -> float | None:
    """The factor a learning-rate variant scales the recipe's rate by (``None`` for others).

    >>> lr_factor("lr0.3"), lr_factor("dirac")
    (0.3, None)
    """
    return VARIANTS[variant][1].get("lr_factor")


@dataclasses.dataclass(frozen=True)
class Cell:
    residual: bool
    depth: int
    batch_norm: bool
    seed: int
    variant: str = "he"
    lr_factor: float | None = None  # swept variants: the picked factor of the recipe's rate

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"`variant` must be one of {', '.join(map(repr, VARIANTS))}. "
                             f"Received: variant={self.variant!r}")
        if self.lr_factor is not None:
            if isinstance(self.lr_factor, bool) or not isinstance(self.lr_factor, (int, float)) \
                    or not self.lr_factor > 0:
                raise ValueError(f"`lr_factor` must be None or a number > 0. "
                                 f"Received: lr_factor={self.lr_factor!r}")
            if lr_factor(self.variant) is not None:
                raise ValueError(f"`lr_factor` cannot rescale the {self.variant!r} variant, "
                                 f"which sets its own rate. Received: lr_factor={self.lr_factor!r}")
            object.__setattr__(self, "lr_factor", float(self.lr_factor))
        elif self.variant == "tuned":
            raise ValueError("`lr_factor` must be the swept factor for the 'tuned' variant "
                             "(at the recipe's own rate it is the 'he' cell). "
                             "Received: lr_factor=None")

    @property
    def group(self) -> str:
        """The name without the seed: ``plain56-bn-dirac``, ``plain56-nobn-tat-x0.03``."""
        kind = "resnet" if self.residual else "plain"
        suffix = "" if self.variant == "he" else f"-{self.variant}"
        if self.lr_factor is not None:
            suffix += f"-x{self.lr_factor:g}"
        return f"{kind}{self.depth}-{'bn' if self.batch_norm else 'nobn'}{suffix}"

    @property
    def name(self) -> str:
        return f"{self.group}-s{self.seed}"

    @property
    def label(self) -> str:
        """``plain-56, BN, identity init`` (no variant words for ``he``)."""
        words = f"{'resnet' if self.residual else 'plain'}-{self.depth}, " \
                f"{'BN' if self.batch_norm else 'no BN'}"
        if self.variant != "he":
            words = f"{words}, {VARIANTS[self.variant][0]}"
        return words if self.lr_factor is None else f"{words} ({self.lr_factor:g}x rate)"

    def train_fields(self) -> dict:
        """The TrainConfig fields the variant sets (``lr_factor`` is resolved by the caller)."""
        fields = dict(VARIANTS[self.variant][1])
        if self.lr_factor is not None:
            fields["lr_factor"] = self.lr_factor
        return fields


def cell_of(entry: dict) -> Cell:
    """The :class:`Cell` of a results entry (``variant`` defaults to ``"he"``)."""
    return Cell(bool(entry["residual"]), int(entry["depth"]), bool(entry["batch_norm"]),
                int(entry["seed"]), entry.get("variant", "he"), entry.get("lr_factor"))


def is_twin(entry: dict) -> bool:
    """Whether a results entry is an unmodified twin (``variant`` ``"he"``, or none recorded)."""
    return entry.get("variant", "he") == "he"


def deepest_depth(results: dict) -> int | None:
    """The depth of the study's deepest cell: where the interventions and the measures are."""
    return max((c["depth"] for c in results["cells"]), default=None)


def bn_twin_name(cell: dict | None, residual: bool, depth: int | None, seed: int) -> str:
    """A results cell's name; for a cell that is missing or has none, the name of the BN twin
    it stands for (``plain56-bn-s2``): what a judgment's ``why_inconclusive`` names."""
    if cell is not None and cell.get("name"):
        return str(cell["name"])
    return Cell(residual, depth, True, seed).name


def _stats(values: list) -> dict | None:
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return None
    return {"mean": float(np.mean(finite)), "std": float(np.std(finite)),
            "min": min(finite), "max": max(finite), "n": len(finite)}


def group_cells(cells: list[dict]) -> list[dict]:
    """The cells pooled over seeds, in the order their groups first appear.

    Returns:
        ``[{"group", "label", "residual", "depth", "batch_norm", "variant", "lr_factor",
        "seeds", "statuses", "final_train_error", "final_test_error"}]``; each error is
        ``{"mean", "std", "min", "max", "n"}`` over the seeds that finished, or
        ``None`` when none did.

    Example:

    >>> rows = group_cells([
    ...     {"residual": False, "depth": 8, "batch_norm": True, "seed": s, "status": "finished",
    ...      "final_train_error": e, "final_test_error": e} for s, e in ((0, 0.1), (1, 0.3))])
    >>> rows[0]["group"], rows[0]["seeds"], rows[0]["final_train_error"]["mean"]
    ('plain8-bn', [0, 1], 0.2)
    """
    groups: dict[str, dict] = {}
    for entry in cells:
        cell = cell_of(entry)
        row = groups.setdefault(cell.group, {
            "group": cell.group, "label": cell.label, "residual": cell.residual,
            "depth": cell.depth, "batch_norm": cell.batch_norm, "variant": cell.variant,
            "lr_factor": cell.lr_factor, "seeds": [], "statuses": [], "_train": [],
            "_test": []})
        row["seeds"].append(cell.seed)
        row["statuses"].append(entry.get("status"))
        row["_train"].append(entry.get("final_train_error"))
        row["_test"].append(entry.get("final_test_error"))
    return [{**{k: v for k, v in row.items() if not k.startswith("_")},
             "final_train_error": _stats(row["_train"]),
             "final_test_error": _stats(row["_test"])} for row in groups.values()]


__all__ = ["CONDITIONING", "Cell", "INTERVENTIONS", "INTERVENTION_TWINS", "LR_SWEEP",
           "bn_twin_name",
           "SHAPING_FACTORS", "SHAPING_NETS", "SHAPING_SWEEPS", "SWEPT_RATE", "VARIANTS", "cell_of",
           "deepest_depth", "group_cells", "is_twin", "lr_factor"]
