"""The compiled train and evaluation steps, one implementation for every strategy.

Keras 3's ``fit`` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585),
so the trainer drives the same Keras model and optimizer with ``strategy.run``
over a distributed dataset, several steps per ``tf.function`` call.

Gradient flow in one step, per replica:

1. forward and backward on the replica's share of the global batch; the loss
   is the cross-entropy summed over the replica's examples divided by the
   *global* batch, so the sum over replicas is the single-device loss;
2. one explicit all-reduce (SUM) of the gradients, then the coupled L2 term
   ``weight_decay * w`` added to the gradient of each decayed kernel (exactly
   the gradient of ``0.5 * weight_decay * ||w||^2`` in the loss, without
   computing the penalty): every replica then holds the gradient the optimizer
   applies (what the gradient callbacks log);
3. the optimizer update, with Keras's own all-reduce switched off on every
   strategy: it would sum the already reduced gradients a second time, and even
   on one replica its custom gradient lands in TensorFlow's global gradient
   registry, which kept every traced step alive after its run (14-20 MiB for
   ResNet-8 on digits). The step's own reductions (``all_reduce`` below) skip
   that wrapper too: nothing differentiates through them.

XLA (``StepFunctions.xla``): ``jit_compile=True`` compiles the whole step on
one replica (``"step"``: update included), and the forward/backward part under
several replicas (``"forward-backward"``: collectives stay outside XLA on
CPU/GPU). Synchronized BatchNorm all-reduces inside the forward pass, which
cannot sit in a nested compiled function, so it runs without XLA (``"off"``).
On TPUs everything is compiled by the TPU strategy itself (``"tpu"``).
``jit_compile="auto"`` (the trainer's default) uses XLA on GPUs and TPUs. On
CPUs it runs the graph, whose oneDNN kernels train ResNets on CIFAR-sized
images 1.6-2.8x faster than XLA's (2 cores, docs/benchmarks.md; on 8x8 digits
the two are within noise of each other and the graph saves XLA's compile
time), and only lowers the step to XLA HLO once (``"check"``, about 2 s for
ResNet-20), so a model that would not compile on a TPU is still reported on a
laptop.
"""

from __future__ import annotations

import json
import warnings

import tensorflow as tf

from reskeras._backend import keras
from reskeras.recipes import decayed_variables


# check_xla's findings by network, batch and optimizer (see StepFunctions._check_key)
_XLA_CHECKS: dict[str, str | None] = {}


def _keep_reduced(grads_and_vars):
    return grads_and_vars


def all_reduce(reduce_op, values: list) -> list:
    """``ReplicaContext.all_reduce`` of a list of tensors, without its custom gradient.

    ``ReplicaContext.all_reduce`` wraps the collective in ``tf.custom_gradient``
    so it can be differentiated; the wrapper lands in TensorFlow's global gradient
    registry, which then keeps the traced function that called it alive for the
    rest of the process. Here the same batched collective is issued through the
    public ``merge_call`` + ``batch_reduce_to``, with nothing registered.
    """
    def reduce(strategy, flat):
        # the destinations all_reduce picks: a plain tensor (one local replica) by its device
        return strategy.extended.batch_reduce_to(
            reduce_op, [(v, v.device if isinstance(v, tf.Tensor) else v) for v in flat])

    return list(tf.distribute.get_replica_context().merge_call(reduce, args=(list(values),)))


def disable_optimizer_allreduce(optimizer) -> None:
    """Stops the optimizer (and a wrapped inner one) from all-reducing gradients again."""
    for opt in (optimizer, getattr(optimizer, "inner_optimizer", None)):
        if opt is not None:
            opt._all_reduce_sum_gradients = _keep_reduced


class StepFunctions:
    """Train and evaluation ``tf.function``s for one model, optimizer and strategy.

    Args:
        model: the Keras model (built under ``strategy.scope()``).
        optimizer: its optimizer (built under the same scope).
        strategy: the ``tf.distribute.Strategy``.
        global_batch_size: examples per step over all replicas.
        weight_decay: coupled L2 coefficient on conv/dense kernels.
        jit_compile: ``True``, ``False`` or ``"auto"`` (see the module doc).
        is_tpu: the strategy is a TPUStrategy.
    """

    def __init__(self, model, optimizer, strategy, *, global_batch_size: int,
                 weight_decay: float = 0.0, jit_compile: bool | str = "auto",
                 is_tpu: bool = False):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        self.global_batch_size = global_batch_size
        self.weight_decay = float(weight_decay)
        decayed = {id(v) for v in decayed_variables(model)} if weight_decay else set()
        self.decay_mask = [id(v) in decayed for v in model.trainable_variables]
        synced = any(getattr(layer, "synchronized", False) for layer in model.layers)
        self.synced = synced and self.replicas > 1
        if is_tpu:
            self.xla = "tpu"
        elif not jit_compile or self.synced:
            self.xla = "off"
        elif jit_compile == "auto" and not _on_accelerator(strategy):
            self.xla = "check"
        else:
            self.xla = "step" if self.replicas == 1 else "forward-backward"
        disable_optimizer_allreduce(optimizer)  # on every strategy: see the module doc
        compute = self._gradients
        replica_step = self._replica_step
        if self.xla == "forward-backward":
            compute = tf.function(compute, jit_compile=True)
        self._compute = compute
        if self.xla == "step":
            replica_step = tf.function(replica_step, jit_compile=True)
        if self.xla == "check" and self.replicas == 1:
            # traced once, by the check, and the train chunk calls that trace (see _lower)
            replica_step = tf.function(replica_step)
        self._replica_fn = replica_step
        evaluate = self._replica_eval
        if self.xla == "step":
            # under several replicas a compiled evaluation inside the dataset loop is placed
            # on the first device and cannot read the other replicas' variables (TF 2.21)
            evaluate = tf.function(evaluate, jit_compile=True)
        self._replica_eval_fn = evaluate
        self.moving = [v for v in model.non_trainable_variables
                       if v.path.endswith(("/moving_mean", "/moving_variance"))]
        self.train_chunk = tf.function(self._train_chunk)
        self._sync = tf.function(lambda: self.strategy.run(self._replica_sync))
        self.evaluate = tf.function(self._evaluate)

    def release(self) -> None:
        """Drops the traced functions at the end of a run; no steps can run afterwards.

        Each ``tf.function`` here wraps a bound method of this object, a reference
        cycle that only a full garbage collection would break. After this the
        functions and their concrete functions go at once; their graphs, cyclic
        inside TensorFlow, at the next collection.
        """
        self.train_chunk = self.evaluate = self._sync = None
        self._compute = self._replica_fn = self._replica_eval_fn = None

    def check_xla(self, images: tf.TensorSpec, labels: tf.TensorSpec) -> str | None:
        """Lowers one replica's step to XLA HLO without running it (mode ``"check"``).

        Args:
            images, labels: specs of one replica's batch.

        Returns:
            ``None`` when it lowers, else the reason (also issued as a warning).
        """
        if self.xla != "check":
            return None
        key = self._check_key(images, labels)
        if key is None:
            reason = self._lower(images, labels)
        else:
            if key not in _XLA_CHECKS:
                _XLA_CHECKS[key] = self._lower(images, labels)
            reason = _XLA_CHECKS[key]
        if reason is not None:
            warnings.warn(f"the train step does not compile with XLA, so it would fail on a "
                          f"TPU: {reason}", stacklevel=2)
        return reason

    def _check_key(self, images, labels) -> str | None:
        """Same network, batch, optimizer and strategy lower the same way: one check per process.

        Each lowering keeps 13-14 MiB inside TensorFlow for good (TF 2.21, ResNet-8 on
        digits), so repeated runs of one architecture (tuner trials, a study's seeds)
        check it once.
        """
        try:
            model = self.model.to_json()
        except Exception:  # noqa: BLE001  (a model Keras cannot describe is checked every time)
            return None
        return json.dumps([model, type(self.optimizer).__name__, type(self.strategy).__name__,
                           self.replicas, bool(any(self.decay_mask)), self.model.dtype_policy.name,
                           [(list(s.shape), s.dtype.name) for s in (images, labels)]])

    def _lower(self, images, labels) -> str | None:
        """Lowers the replica step (the gradients under several replicas) to XLA HLO.

        On one replica it first traces the step the train chunk will call, in the
        chunk's replica context, and lowers a call to that trace: the model is
        traced once per run instead of twice (ResNet-56 on digits: check plus first
        train call 15.6 -> 11.5 s). Traced in the cross-replica context instead,
        under OneDeviceStrategy the optimizer's update took another path that did
        not lower, and ``--strategy cpu`` runs reported a false failure.
        """
        zeros = [tf.zeros(spec.shape, spec.dtype) for spec in (images, labels)]
        try:
            with self.strategy.scope():
                function = self._gradients
                if self.replicas == 1:
                    traced = self.strategy.run(self._replica_fn.get_concrete_function,
                                               args=(images, labels))
                    function = lambda images, labels: traced(images, labels)  # noqa: E731
                tf.function(function, jit_compile=True).experimental_get_compiler_ir(
                    *zeros)(stage="hlo")
        except Exception as error:  # noqa: BLE001  (any lowering failure is the finding)
            return " ".join(str(error).split())[:500]
        return None

    # -- per replica -------------------------------------------------------
    def _gradients(self, images, labels):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            probabilities = self.model(images, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            loss_sum = tf.reduce_sum(tf.cast(per_example, tf.float32))
            scaled = self.optimizer.scale_loss(loss_sum / self.global_batch_size)
        grads = tape.gradient(scaled, variables)
        correct = tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(probabilities, axis=-1, output_type=tf.int32),
                     tf.cast(labels, tf.int32)), tf.float32))
        return grads, loss_sum, correct

    def _replica_step(self, images, labels):
        grads, loss_sum, correct = self._compute(images, labels)
        if self.replicas > 1:
            grads = all_reduce(tf.distribute.ReduceOp.SUM, grads)
        grads = self._add_weight_decay(grads)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        self.optimizer.apply(grads, self.model.trainable_variables)
        return loss_sum, correct, tf.cast(finite, tf.float32)

    def _add_weight_decay(self, grads):
        if not any(self.decay_mask):
            return grads
        # the gradients are of the scaled loss under loss scaling: scale the L2 term alike
        factor = self.weight_decay * tf.cast(self.optimizer.scale_loss(tf.constant(1.0)),
                                             tf.float32)
        return [g + tf.cast(factor, g.dtype) * tf.cast(v, g.dtype) if decay else g
                for g, v, decay in zip(grads, self.model.trainable_variables, self.decay_mask)]

    def _replica_eval(self, images, labels, weights):
        probabilities = self.model(images, training=False)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
        weights = tf.cast(weights, tf.float32)
        loss_sum = tf.reduce_sum(tf.cast(per_example, tf.float32) * weights)
        hits = tf.cast(tf.equal(tf.argmax(probabilities, axis=-1, output_type=tf.int32),
                                tf.cast(labels, tf.int32)), tf.float32)
        return loss_sum, tf.reduce_sum(hits * weights), tf.reduce_sum(weights)

    def _replica_sync(self):
        # read into tensors first: handed the variables themselves, MultiWorkerMirrored's
        # all-reduce takes them as destinations and fails ("destinations can not be empty")
        local = [tf.identity(v.value) for v in self.moving]
        means = all_reduce(tf.distribute.ReduceOp.MEAN, local)
        for variable, mean in zip(self.moving, means):
            variable.assign(mean)

    def sync_moving_statistics(self) -> None:
        """Sets every replica's BN moving statistics to their mean over replicas.

        Each replica's BatchNorm updates its own moving averages from its share of
        the batch (Keras 3 keeps one copy per replica). The averages are linear in
        the batch statistics, so averaging the copies at any time equals averaging
        the batch statistics at every step; the trainer does it before evaluating and
        checkpointing, so all replicas and workers hold the same model.
        """
        if self.replicas > 1 and self.moving:
            self._sync()

    # -- cross replica -----------------------------------------------------
    def _sum(self, value):
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)

    def _train_chunk(self, iterator, steps):
        """Runs ``steps`` train steps; returns per-step mean losses and summed hits.

        A step whose gradient is not finite reports a NaN loss, so the caller
        stops before a checkpoint can store the update it made.
        """
        losses = tf.TensorArray(tf.float32, size=steps)
        correct = tf.constant(0.0)
        for i in tf.range(steps):
            images, labels = next(iterator)
            loss_sum, hits, finite = self.strategy.run(self._replica_fn, args=(images, labels))
            loss = self._sum(loss_sum) / self.global_batch_size
            finite = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, finite, axis=None)
            losses = losses.write(i, tf.where(finite > 0.5, loss, float("nan")))
            correct += self._sum(hits)
        return losses.stack(), correct

    def _evaluate(self, iterator):
        """Summed loss, hits and example count over a distributed evaluation iterator.

        Takes an iterator made outside, not the dataset: a dataset argument makes
        the traced function build a new iterator inside its graph on every call
        (instantiating the pipeline's functions again), which cost 0.2 s per call
        on the digits test split, four times the evaluation itself
        (benchmarks/evaluation.py).
        """
        totals = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
        for images, labels, weights in iterator:
            sums = self.strategy.run(self._replica_eval_fn, args=(images, labels, weights))
            totals = tuple(t + self._sum(s) for t, s in zip(totals, sums))
        return totals


def _on_accelerator(strategy) -> bool:
    """Whether the strategy's replicas run on GPUs or TPUs."""
    try:
        devices = strategy.extended.worker_devices
    except RuntimeError:  # the default strategy: TF places ops, on a GPU when there is one
        return bool(tf.config.list_logical_devices("GPU"))
    return any("GPU" in d.upper() or "TPU" in d.upper() for d in devices)
