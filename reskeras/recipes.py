"""Training recipes: optimizer, learning-rate schedule and weight decay.

A recipe is a row of constants (``RECIPES``) and one function,
:func:`make_plan`, that turns it into a :class:`TrainingPlan` for a given
global batch and step budget. The plan is plain data, stored in the run's
``config.json``; :func:`make_optimizer` rebuilds the same optimizer from it on
resume.

``paper`` is He et al. (2015, §4.2): SGD with momentum 0.9, learning rate 0.1
for a batch of 128, divided by 10 at 50% and 75% of the steps (the paper's
32k/48k of 64k iterations), weight decay 1e-4. For a larger global batch the
rate scales linearly with the batch and ramps up linearly over a warmup
(Goyal et al. 2017): 5 epochs, at most 10% of the steps.

``adam`` is for quick runs: Adam at 1e-3, constant after the same warmup rule,
no weight decay.

Weight decay is the coupled L2 penalty of the paper's implementation
(``grad += wd * w`` before momentum), applied to conv and dense kernels only
(not to BatchNorm parameters or biases), as in TensorFlow's official ResNets.

Example:

>>> plan = make_plan("paper", global_batch_size=256, total_steps=1000, steps_per_epoch=100)
>>> plan.base_lr, plan.warmup_steps, plan.boundaries
(0.2, 100, (500, 750))
"""

from __future__ import annotations

import dataclasses
import math

from reskeras._backend import keras

REFERENCE_BATCH = 128
WARMUP_EPOCHS = 5
WARMUP_MAX_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class Recipe:
    optimizer: str
    lr: float  # at REFERENCE_BATCH
    weight_decay: float
    decay_at: tuple[float, ...]  # fractions of the total steps where the rate is divided by 10
    batch_size: int
    scale_lr_with_batch: bool


RECIPES = {
    "paper": Recipe("sgd", 0.1, 1e-4, (0.5, 0.75), 128, True),
    "adam": Recipe("adam", 1e-3, 0.0, (), 128, False),
}


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """What the optimizer does over the run; JSON round trip via ``dataclasses.asdict``."""

    recipe: str
    optimizer: str
    base_lr: float
    weight_decay: float
    momentum: float
    warmup_steps: int
    boundaries: tuple[int, ...]
    total_steps: int

    @classmethod
    def from_config(cls, config: dict) -> "TrainingPlan":
        return cls(**{**config, "boundaries": tuple(config["boundaries"])})


def scaled_lr(recipe: str, global_batch_size: int) -> float:
    """The recipe's learning rate for this global batch (linear scaling where it applies).

    >>> scaled_lr("paper", 256), scaled_lr("adam", 256)
    (0.2, 0.001)
    """
    if recipe not in RECIPES:
        raise ValueError(f"`recipe` must be one of {', '.join(map(repr, RECIPES))}. "
                         f"Received: recipe={recipe!r}")
    row = RECIPES[recipe]
    return row.lr * (global_batch_size / REFERENCE_BATCH if row.scale_lr_with_batch else 1.0)


def make_plan(recipe: str, *, global_batch_size: int, total_steps: int, steps_per_epoch: int,
              lr: float | None = None, weight_decay: float | None = None) -> TrainingPlan:
    """The plan of ``recipe`` for this batch and budget (``lr`` overrides the scaled rate)."""
    default_lr = scaled_lr(recipe, global_batch_size)
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"`lr` must be a positive number. Received: lr={lr!r}")
    if weight_decay is not None and not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ValueError(f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay!r}")
    row = RECIPES[recipe]
    base_lr = lr if lr is not None else default_lr
    warmup = 0
    if global_batch_size > REFERENCE_BATCH:
        warmup = min(WARMUP_EPOCHS * steps_per_epoch, int(WARMUP_MAX_FRACTION * total_steps))
    boundaries = tuple(int(round(f * total_steps)) for f in row.decay_at)
    return TrainingPlan(
        recipe=recipe, optimizer=row.optimizer, base_lr=float(base_lr),
        weight_decay=float(row.weight_decay if weight_decay is None else weight_decay),
        momentum=0.9 if row.optimizer == "sgd" else 0.0, warmup_steps=warmup,
        boundaries=boundaries, total_steps=int(total_steps))


@keras.saving.register_keras_serializable(package="reskeras")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to ``base_lr``, then divide by 10 at each boundary step.

    Args:
        base_lr: rate after warmup.
        warmup_steps: steps of linear ramp from ``base_lr / warmup_steps``.
        boundaries: increasing step numbers where the rate drops tenfold.
        mutable: keep the three in non-trainable variables that a traced train step
            reads, so that :meth:`assign` gives the same trace another rate, warmup
            and boundaries (a :class:`reskeras.trace_cache.TraceCache` reuses one
            trace for a study's rate sweep and budgets). Created under the current
            distribution strategy, and not saved in checkpoints (the run's plan is).

    The rate is computed in float32 the same way either way:

    >>> fixed = WarmupStepDecay(0.1, 10, (50, 75))
    >>> held = WarmupStepDecay(0.2, 0, (5, 6), mutable=True)
    >>> held.assign(0.1, 10, (50, 75))
    >>> all(float(fixed(s)) == float(held(s)) for s in (0, 9, 10, 49, 50, 75))
    True
    >>> held.assign(0.1, 0, (50, 75))  # no warmup
    >>> [round(float(held(s)), 6) for s in (0, 50, 75)]
    [0.1, 0.01, 0.001]
    """

    def __init__(self, base_lr: float, warmup_steps: int = 0, boundaries=(), *,
                 mutable: bool = False):
        self.base_lr = float(base_lr)
        self.warmup_steps = int(warmup_steps)
        self.boundaries = [int(b) for b in boundaries]
        self._held = None
        if mutable:
            self._held = tuple(
                keras.Variable(value, dtype="float32", trainable=False, name=name,
                               aggregation="only_first_replica")
                for name, value in (("base_lr", self.base_lr),
                                    ("warmup_steps", float(self.warmup_steps)),
                                    ("boundaries", [float(b) for b in self.boundaries] or
                                     keras.ops.zeros((0,)))))

    def assign(self, base_lr: float, warmup_steps: int, boundaries) -> None:
        """Gives a ``mutable`` schedule another rate, warmup and as many boundaries."""
        boundaries = [int(b) for b in boundaries]
        if self._held is None:
            raise ValueError("assign() needs a schedule built with `mutable=True`")
        if len(boundaries) != len(self.boundaries):
            raise ValueError(f"`boundaries` must hold {len(self.boundaries)} steps, as this "
                             f"schedule was built with. Received: boundaries={boundaries!r}")
        self.base_lr, self.warmup_steps, self.boundaries = (float(base_lr), int(warmup_steps),
                                                            boundaries)
        base, warmup, steps = self._held
        base.assign(self.base_lr)
        warmup.assign(float(self.warmup_steps))
        if boundaries:
            steps.assign([float(b) for b in boundaries])

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        if self._held is None:
            base_lr = keras.ops.convert_to_tensor(self.base_lr, "float32")
            warmup, boundaries = self.warmup_steps, self.boundaries
        else:  # the same float32 operations on the variables' values
            base_lr, warmup, held = (keras.ops.convert_to_tensor(v) for v in self._held)
            boundaries = [held[i] for i in range(len(self.boundaries))]
        lr = base_lr
        for boundary in boundaries:
            lr = keras.ops.where(step >= boundary, lr * 0.1, lr)
        if self._held is not None or self.warmup_steps:
            # no warmup held: step < 0 is never true, the ramp's division by 0 unused
            ramp = base_lr * (step + 1.0) / warmup
            lr = keras.ops.where(step < warmup, ramp, lr)
        return lr

    def get_config(self):
        return {"base_lr": self.base_lr, "warmup_steps": self.warmup_steps,
                "boundaries": list(self.boundaries)}


def budget_free(recipe: str, *, global_batch_size: int, steps_per_epoch: int,
                totals, lr: float | None = None) -> bool:
    """Whether the recipe's rate is the same at every step for each budget in ``totals``
    (no step decay, the same warmup): then one run, extended, can be read at each.

    >>> budget_free("adam", global_batch_size=128, steps_per_epoch=11, totals=(88, 1408))
    True
    >>> budget_free("paper", global_batch_size=128, steps_per_epoch=11, totals=(88, 1408))
    False
    """
    plans = {dataclasses.replace(make_plan(recipe, global_batch_size=global_batch_size,
                                           total_steps=total, steps_per_epoch=steps_per_epoch,
                                           lr=lr), total_steps=0) for total in totals}
    return len(plans) == 1 and not plans.pop().boundaries


def learning_rate_at(plan: TrainingPlan, step: int) -> float:
    """The rate the optimizer uses at ``step`` (host-side, for logs)."""
    schedule = WarmupStepDecay(plan.base_lr, plan.warmup_steps, plan.boundaries)
    return float(f"{float(schedule(step)):.6g}")  # the float32 rate, without float32 noise


def make_optimizer(plan: TrainingPlan, schedule: "WarmupStepDecay | None" = None
                   ) -> keras.optimizers.Optimizer:
    """A fresh optimizer following ``plan`` (weight decay is applied by the train step).

    ``schedule``: the plan's :class:`WarmupStepDecay`, given where the caller keeps
    it (a ``mutable`` one, moved to the next plan of the same optimizer, momentum and
    number of rate drops without a new trace of the step); by default a fixed one.
    """
    if schedule is None:
        schedule = WarmupStepDecay(plan.base_lr, plan.warmup_steps, plan.boundaries)
    if plan.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=plan.momentum)
    return keras.optimizers.Adam(schedule)


def decayed_variables(model) -> list:
    """The trainable kernels that weight decay applies to (conv and dense, not BN/bias)."""
    return [v for v in model.trainable_variables if v.path.endswith("/kernel")]
