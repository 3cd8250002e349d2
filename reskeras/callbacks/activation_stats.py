"""Layer responses (He et al. 2015, Fig. 7), residual-branch ratios and dead ReLUs.

Every ``every_n_steps`` steps the logger runs one inference-mode forward pass
(``training=False``: BatchNorm uses and keeps its moving statistics, nothing
random runs) of a fixed probe batch through a model that shares the trained
layers and outputs the tensors it measures, under the training strategy
(``strategy.run``, the first replica's result). It reads the model and never
writes it: training ends with bitwise the same weights with or without it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from reskeras._backend import keras
from reskeras.callbacks._logging import StepLogger, finite_or_none

PROBE_EXAMPLES = 256


def measured_tensors(model) -> list[tuple[str, str, object]]:
    """``(kind, name, tensors)`` for every statistic, in layer order.

    - ``response``: each 3x3 conv's output after its BatchNorm (v1 nets), or the
      conv output itself when no BN follows it (v2 and no-BN nets);
    - ``residual_ratio``: per residual block, ``(branch, shortcut)``, the two
      inputs of its ``_add`` layer;
    - ``dead_relu``: each ReLU's output.
    """
    consumers = {}
    for layer in model.layers:
        for node_input in _inputs(layer):
            consumers.setdefault(id(node_input), []).append(layer)
    entries = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (3, 3):
            after = consumers.get(id(layer.output), [])
            bn = [c for c in after if isinstance(c, keras.layers.BatchNormalization)]
            target = bn[0] if len(after) == 1 and bn else layer
            entries.append(("response", target.name, target.output))
        elif isinstance(layer, keras.layers.Add) and layer.name.endswith("_add"):
            branch, shortcut = _inputs(layer)
            entries.append(("residual_ratio", layer.name[:-len("_add")], (branch, shortcut)))
        elif isinstance(layer, keras.layers.ReLU):
            entries.append(("dead_relu", layer.name, layer.output))
    return entries


def _inputs(layer) -> list:
    if isinstance(layer, keras.layers.InputLayer):
        return []
    return _as_list(layer.input)


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class ActivationStatsLogger(StepLogger):
    """Logs layer-response statistics on a fixed probe batch every ``every_n_steps`` steps.

    Per recorded step (step 0 is the initialization): the standard deviation of
    each 3x3 conv's output after BN over the probe batch (all examples,
    positions and channels: the paper's Fig. 7 "layer responses"); per
    residual block ``std(F(x)) / std(x)``, the residual branch against the
    shortcut at its ``_add``; per ReLU the fraction of dead channels (zero for
    every probe example and position).

    Outputs: ``history`` (one dict per recorded step), ``records`` (one dict
    per step and entry: ``step, kind, layer, index, value``; ``index`` counts
    entries of the same kind from the input), TensorBoard scalars
    ``response_std/<layer>``, ``residual_ratio/<block>``, ``dead_relu/<layer>``,
    and ``activations.jsonl``, in ``log_dir`` when given and, under the
    reskeras trainer, in the run directory (TensorBoard under
    ``tensorboard/activations``).

    Args:
        every_n_steps: record interval in optimizer steps.
        probe: images ``[N, H, W, C]`` already normalized as in training (the
            first ``256`` are used). Default under the reskeras trainer: the
            first evaluation examples (``params["probe_images"]``); with
            ``model.fit`` it must be given.
        log_dir: directory for ``activations.jsonl`` and TensorBoard events.
    """

    FILE = "activations.jsonl"
    BOARD = "activations"
    TAGS = {"response": "response_std", "residual_ratio": "residual_ratio",
            "dead_relu": "dead_relu"}

    def __init__(self, every_n_steps: int = 100, probe=None, log_dir: str | None = None):
        if probe is not None:
            probe = np.asarray(probe, np.float32)[:PROBE_EXAMPLES]
            if probe.ndim != 4 or len(probe) == 0:
                raise ValueError("`probe` must be a non-empty batch of images [N, H, W, C]. "
                                 f"Received: probe with shape {probe.shape}")
        self.probe = probe
        self._measure = self._measured_model = self._probe = None
        super().__init__(every_n_steps, log_dir)
        self.records: list[dict] = []

    def _init_args(self) -> dict:
        return {**super()._init_args(), "probe": self.probe}

    def record_boundary(self, step: int) -> int:
        """The step count after which the host must read: the next multiple of the interval."""
        return (step // self.every_n_steps + 1) * self.every_n_steps

    def on_train_begin(self, logs=None):
        probe = self.probe if self.probe is not None else (self.params or {}).get("probe_images")
        if probe is None:
            raise ValueError("ActivationStatsLogger needs `probe` images under model.fit. "
                             "Received: probe=None")
        self.open()
        self.records = []
        probe = np.asarray(probe, np.float32)[:PROBE_EXAMPLES]
        if not (self._measured_model is self.model and self._measure is not None
                and np.array_equal(self._probe.numpy(), probe)):
            self._trace(probe)  # else a persistent logger, same model and probe: traced
        self._maybe_record(begin=True)

    def _trace(self, probe) -> None:
        self._entries = measured_tensors(self.model)
        outputs = [tensor for _, _, value in self._entries
                   for tensor in (value if isinstance(value, tuple) else (value,))]
        features = keras.Model(self.model.input, outputs)
        strategy = self.model.distribute_strategy
        self._probe = tf.constant(probe)
        self._measure = tf.function(lambda x: strategy.run(
            lambda images: self._statistics(_as_list(features(images, training=False))),
            args=(x,)))
        self._strategy = strategy
        self._measured_model = self.model

    def _statistics(self, outputs):
        values, outputs = [], iter(outputs)
        for kind, _, value in self._entries:
            if kind == "response":
                values.append(tf.math.reduce_std(tf.cast(next(outputs), tf.float32)))
            elif kind == "residual_ratio":
                branch, shortcut = (tf.cast(next(outputs), tf.float32) for _ in range(2))
                values.append(tf.math.reduce_std(branch) / tf.math.reduce_std(shortcut))
            else:
                output = tf.cast(next(outputs), tf.float32)
                alive = tf.reduce_any(output > 0, axis=tf.range(tf.rank(output) - 1))
                values.append(1.0 - tf.reduce_mean(tf.cast(alive, tf.float32)))
        return tf.stack(values)

    def on_train_batch_end(self, batch, logs=None):
        self._maybe_record()

    def release(self) -> None:
        # the traced probe pass, its feature model and the probe would stay with a logger
        # the caller keeps (as callbacks passed to training are): drop them with the run
        if not self.persistent:
            self._measure = self._strategy = self._probe = self._entries = None
            self._measured_model = None
        super().release()

    def _maybe_record(self, begin: bool = False) -> None:
        """Records at step 0 and whenever a multiple of the interval was reached or passed."""
        optimizer = self.model.optimizer
        step = int(optimizer.iterations.numpy()) if optimizer is not None else 0
        every = self.every_n_steps
        if begin:
            self._last = step
            if step % every:
                return  # a resumed run: its records up to here are already written
        elif step // every == self._last // every:
            return
        self._last = step
        values = self._strategy.experimental_local_results(self._measure(self._probe))[0]
        values = np.asarray(values, np.float64)
        counters, records, scalars = {}, [], {}
        for (kind, name, _), value in zip(self._entries, values):
            index = counters[kind] = counters.get(kind, -1) + 1
            records.append({"step": step, "kind": kind, "layer": name, "index": index,
                            "value": finite_or_none(value)})
            scalars[f"{self.TAGS[kind]}/{name}"] = value
        self.records.extend(records)
        self.history.append({"step": step, **{kind: {r["layer"]: r["value"] for r in records
                                                      if r["kind"] == kind}
                                              for kind in self.TAGS}})
        self.write(step, records, scalars)
