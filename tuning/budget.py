"""What a sampled architecture costs, and whether the search can afford it.

The cost is counted on the model the reskeras builder assembles from the spec,
without training it: trainable parameters (the count of DESIGN.md's reference
table and of Keras Tuner's ``max_model_size``) and multiply-adds per image of
the convolutions and the classifier (the "FLOPs" of He et al. 2015, Table 1:
ResNet-50 at 224x224 counts 3.8-4.1 billion). Counts are cached per
(spec, input shape, classes), so the tuner, the oracle and the pre-search check
build each candidate once per process.

Example:

>>> from reskeras.specs import resolve_spec
>>> cost = model_cost(resolve_spec(20), (32, 32, 3), 10)
>>> cost.params
269722
>>> Budget(max_params=100_000).violation(cost)
'params 269,722 > max_params 100,000'
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math

from keras_tuner.errors import FailedTrialError

from reskeras.specs import ArchSpec

_CACHE: dict[str, "Cost"] = {}


@dataclasses.dataclass(frozen=True)
class Cost:
    params: int  # trainable parameters
    flops: int  # multiply-adds per image (convolutions and dense layers)


def model_cost(spec: ArchSpec, input_shape, classes: int) -> Cost:
    """Trainable parameters and multiply-adds of ``spec`` built for ``input_shape``."""
    key = json.dumps([spec.to_config(), list(input_shape), classes], sort_keys=True)
    if key not in _CACHE:
        from reskeras._backend import keras
        from reskeras.builders import build

        model = build(spec, input_shape=tuple(input_shape), classes=classes)
        params = sum(math.prod(v.shape) for v in model.trainable_weights)
        _CACHE[key] = Cost(params=int(params), flops=_multiply_adds(model, keras))
        del model
        gc.collect()
    return _CACHE[key]


def _multiply_adds(model, keras) -> int:
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out_h, out_w, out_c = layer.output.shape[1:]
            kernel_h, kernel_w, in_per_group, _ = layer.kernel.shape
            total += out_h * out_w * out_c * kernel_h * kernel_w * in_per_group
        elif isinstance(layer, keras.layers.Dense):
            total += math.prod(layer.kernel.shape)
    return int(total)


@dataclasses.dataclass(frozen=True)
class Budget:
    """Limits on one trial's model; ``None`` means no limit.

    Args:
        max_params: most trainable parameters a sampled model may have.
        max_flops: most multiply-adds per image.
    """

    max_params: int | None = None
    max_flops: int | None = None

    def __post_init__(self):
        for name in ("max_params", "max_flops"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"`{name}` must be a positive integer or None. "
                                 f"Received: {name}={value!r}")

    @property
    def limited(self) -> bool:
        return self.max_params is not None or self.max_flops is not None

    def violation(self, cost: Cost) -> str | None:
        """Why ``cost`` is over budget (one line), or None when it fits."""
        reasons = []
        if self.max_params is not None and cost.params > self.max_params:
            reasons.append(f"params {cost.params:,} > max_params {self.max_params:,}")
        if self.max_flops is not None and cost.flops > self.max_flops:
            reasons.append(f"flops {cost.flops:,} > max_flops {self.max_flops:,}")
        return "; ".join(reasons) or None

    def to_config(self) -> dict:
        return dataclasses.asdict(self)


class OverBudget(FailedTrialError):
    """A sample over budget: Keras Tuner marks its trial FAILED, never retries it, and the
    reskeras oracles leave it out of the consecutive-failure count."""
