"""Per-layer gradient norms of the gradient the optimizer applies, on every strategy.

The norms are computed inside the compiled train step, on the gradient after
the cross-replica sum, right where the optimizer receives it: the logger wraps
the optimizer's ``_all_reduce_sum_gradients`` (Keras 3's TensorFlow
optimizers call it on every update with the unscaled gradients; under
``model.fit`` it performs the all-reduce, under the reskeras trainer the
gradients arrive already reduced). On a recorded step a ``tf.cond`` branch
writes the per-layer norms into a few non-trainable ``tf.Variable``\\ s, which
the host reads after the compiled call returns: no Python and no host round
trip inside the step, so the same code runs under XLA and on TPUs.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from reskeras.callbacks._logging import StepLogger, finite_or_none


def _updating_optimizer(optimizer):
    """The optimizer whose update step sees unscaled gradients (inside a LossScaleOptimizer)."""
    return getattr(optimizer, "inner_optimizer", None) or optimizer


class GradientNormLogger(StepLogger):
    """Logs per-layer L2 norms of the training gradient every ``every_n_steps`` steps.

    Recorded at step 0 (the gradient at initialization) and at every multiple of
    ``every_n_steps``: the gradient computed on the weights after ``step``
    updates. Per layer with trainable weights (keyed by its stable name): the
    L2 norm of the gradient over all the layer's weights (a conv's kernel, and
    bias without BN; a BatchNorm's gamma and beta: conv and BN are separate
    layers, so they are reported separately), the weight norm, and the ratio
    ``grad_norm / weight_norm``; per step the global gradient norm and the
    names of layers whose gradient is not finite.

    Under R replicas the gradient is the one the optimizer applies: the sum of
    the replicas' gradients of the global-batch loss (plus the L2 term under
    the reskeras trainer), identical to a single device on the same batch.

    Outputs: ``history`` (one dict per recorded step), ``records`` (one dict
    per step and layer: ``step, layer, index, grad_norm, weight_norm, ratio``),
    TensorBoard scalars ``grad_norm/<layer>``, ``grad_norm/global`` and
    ``grad_to_weight/<layer>`` (histograms ``grad/<layer>`` of the gradient
    values with ``histograms=True``), and ``grad_norms.jsonl``, in ``log_dir``
    when given and, under the reskeras trainer, in the run directory
    (TensorBoard under ``tensorboard/grad_norms``).

    Args:
        every_n_steps: record interval in optimizer steps.
        log_dir: directory for ``grad_norms.jsonl`` and TensorBoard events.
        histograms: also write gradient histograms (copies the gradients on
            recorded steps).

    Example:

    >>> import numpy as np, keras, reskeras
    >>> from reskeras.callbacks import GradientNormLogger
    >>> model = reskeras.build_resnet(8, input_shape=(8, 8, 1), classes=10)
    >>> model.compile("sgd", "sparse_categorical_crossentropy")
    >>> logger = GradientNormLogger(every_n_steps=2)
    >>> x, y = np.random.rand(64, 8, 8, 1), np.random.randint(0, 10, 64)
    >>> _ = model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[logger])
    >>> [h["step"] for h in logger.history], logger.records[0]["layer"]
    ([0, 2], 'stem_conv')
    """

    FILE = "grad_norms.jsonl"
    BOARD = "grad_norms"

    def __init__(self, every_n_steps: int = 100, log_dir: str | None = None, *,
                 histograms: bool = False):
        self.histograms = bool(histograms)
        super().__init__(every_n_steps, log_dir)
        self.records: list[dict] = []

    def _init_args(self) -> dict:
        return {**super()._init_args(), "histograms": self.histograms}

    def _reset(self) -> None:
        super()._reset()
        self._optimizer = None
        self._state = None
        self._layers = None

    # -- schedule (the reskeras trainer ends a compiled call after a recorded step)
    def record_boundary(self, step: int) -> int:
        """The step count after which the host must read: one past the next recorded step."""
        return -(-step // self.every_n_steps) * self.every_n_steps + 1

    # -- hooks ---------------------------------------------------------------
    def on_train_begin(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError("GradientNormLogger needs a model with an optimizer (compile it, "
                             "or train with reskeras.train). Received: model.optimizer=None")
        self.open()
        self.records = []
        layers = [layer for layer in self.model.layers if layer.trainable_weights]
        if self._optimizer is _updating_optimizer(optimizer) and layers == self._layers:
            # a persistent logger, the same model and optimizer: the traced step still
            # writes into this hook's variables
            self._recorded_step.assign(-1)
        else:
            self._layers = layers
            self._hook(_updating_optimizer(optimizer))
        self._read_step = int(self._recorded_step.numpy())
        if hasattr(self.model, "make_train_function") and getattr(self.model, "compiled", False):
            self.model.make_train_function(force=True)  # retrace with the hook

    def on_train_batch_end(self, batch, logs=None):
        self._collect()

    def on_train_end(self, logs=None):
        self._collect()
        super().on_train_end(logs)

    def release(self) -> None:
        if not self.persistent:
            self._unhook()
        super().release()

    # -- in the compiled step --------------------------------------------------
    def _hook(self, optimizer) -> None:
        self._unhook()
        slots = {}
        for index, layer in enumerate(self._layers):
            for variable in layer.trainable_weights:
                slots[id(variable.value)] = index
        self._slots = slots
        strategy = self.model.distribute_strategy
        count = len(self._layers)
        with strategy.scope():
            def variable(value, dtype=tf.float32):
                # on-read: each replica writes its own copy without a synchronization point
                # (allowed inside tf.cond), the host reads the first replica's copy; all
                # replicas hold the same reduced gradient
                return tf.Variable(value, dtype=dtype, trainable=False,
                                   synchronization=tf.VariableSynchronization.ON_READ,
                                   aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self._recorded_step = variable(-1, tf.int64)
            self._grad_norms = variable(np.zeros(count))
            self._weight_norms = variable(np.zeros(count))
            self._grad_copies = ([variable(tf.zeros(v.shape)) for layer in self._layers
                                  for v in layer.trainable_weights] if self.histograms else [])
        original = optimizer.__dict__.get("_all_reduce_sum_gradients")
        bound = optimizer._all_reduce_sum_gradients

        def all_reduce_and_record(grads_and_vars):
            reduced = bound(grads_and_vars)
            self._record(optimizer.iterations, reduced)
            return reduced

        optimizer._all_reduce_sum_gradients = all_reduce_and_record
        self._optimizer, self._original = optimizer, original

    def _unhook(self) -> None:
        if self._optimizer is None:
            return
        if self._original is None:
            del self._optimizer._all_reduce_sum_gradients
        else:
            self._optimizer._all_reduce_sum_gradients = self._original
        self._optimizer = None
        if getattr(self.model, "compiled", False):
            self.model.make_train_function(force=True)  # later fits run without the hook

    def _record(self, step, grads_and_vars) -> None:
        count = len(self._layers)

        def record():
            grad_sq = [[] for _ in range(count)]
            weight_sq = [[] for _ in range(count)]
            by_variable = {}
            for grad, variable in grads_and_vars:
                index = self._slots.get(id(variable))
                if index is None or grad is None:
                    continue
                grad = tf.cast(grad, tf.float32)
                by_variable[id(variable)] = grad
                grad_sq[index].append(tf.reduce_sum(tf.square(grad)))
                weight_sq[index].append(tf.reduce_sum(tf.square(tf.cast(variable, tf.float32))))
            weights = [w for layer in self._layers for w in layer.trainable_weights]
            for copy, weight in zip(self._grad_copies, weights):
                if id(weight.value) in by_variable:
                    copy.assign(by_variable[id(weight.value)])
            zero = tf.constant(0.0)
            self._grad_norms.assign(tf.sqrt(tf.stack([tf.add_n(s) if s else zero
                                                      for s in grad_sq])))
            self._weight_norms.assign(tf.sqrt(tf.stack([tf.add_n(s) if s else zero
                                                        for s in weight_sq])))
            self._recorded_step.assign(tf.cast(step, tf.int64))
            return tf.constant(True)

        tf.cond(tf.equal(tf.math.floormod(tf.cast(step, tf.int64), self.every_n_steps), 0),
                record, lambda: tf.constant(False))

    # -- on the host -----------------------------------------------------------
    def _collect(self) -> None:
        if self._optimizer is None:
            return
        step = int(self._recorded_step.numpy())
        if step == self._read_step:
            return
        self._read_step = step
        grads, weights = self._grad_norms.numpy(), self._weight_norms.numpy()
        records, nonfinite = [], []
        for index, layer in enumerate(self._layers):
            grad, weight = float(grads[index]), float(weights[index])
            if not np.isfinite(grad):
                nonfinite.append(layer.name)
            ratio = grad / weight if weight > 0 else float("nan")
            records.append({"step": step, "layer": layer.name, "index": index,
                            "grad_norm": finite_or_none(grad),
                            "weight_norm": finite_or_none(weight),
                            "ratio": finite_or_none(ratio)})
        global_norm = float(np.sqrt(np.sum(np.square(grads.astype(np.float64)))))
        self.records.extend(records)
        self.history.append({"step": step, "global_norm": global_norm,
                             "nonfinite_layers": nonfinite,
                             "layers": {r["layer"]: r for r in records}})
        scalars = {"grad_norm/global": global_norm}
        for record in records:
            scalars[f"grad_norm/{record['layer']}"] = grads[record["index"]]
            if record["ratio"] is not None:
                scalars[f"grad_to_weight/{record['layer']}"] = record["ratio"]
        histograms = {}
        if self.histograms:
            copies = iter(self._grad_copies)
            for layer in self._layers:
                for weight in layer.trainable_weights:
                    histograms[f"grad/{weight.path}"] = next(copies).numpy()
        self.write(step, records, scalars, histograms)
        if nonfinite:
            print(f"GradientNormLogger: non-finite gradient at step {step} in layer(s) "
                  f"{', '.join(nonfinite)}")
