"""Keras callbacks that measure what the study needs, on every strategy.

- :class:`GradientNormLogger`: per-layer L2 norms of the gradient the optimizer
  applies, computed inside the compiled step (``grad_norms.jsonl``).
- :class:`ActivationStatsLogger`: layer responses (He 2015, Fig. 7),
  residual-branch ratios and dead ReLUs on a probe batch (``activations.jsonl``).

Both work with ``model.fit`` and with the reskeras trainer (every strategy,
multi-worker and TPU included), have no effect on training, survive Keras
Tuner's deep copies, and write only on the chief. See docs/callbacks.md.
"""

from reskeras.callbacks.activation_stats import ActivationStatsLogger, measured_tensors
from reskeras.callbacks.gradient_norms import GradientNormLogger

__all__ = ["ActivationStatsLogger", "GradientNormLogger", "measured_tensors"]
