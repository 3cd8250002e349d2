"""The identity task: can a stack of conv-BN-ReLU layers learn ``f(x) = x``?

He et al. (2015, §3.1) explain the degradation problem with a hypothesis: "if
the added layers can be constructed as identity mappings, a deeper model should
have training error no greater than its shallower counterpart", yet solvers
"might have difficulties in approximating identity mappings by multiple
nonlinear layers"; a residual layer makes the identity easy, because "the
solver may simply drive the weights of the multiple nonlinear layers toward
zero". This module tests that claim directly: it trains stacks of ``depth``
layers to reproduce their input and measures how close they get.

- plain: ``depth`` times ``x -> ReLU(BN(conv3x3(x)))``: the stack has to *learn*
  the identity (a Dirac kernel in every conv and BN undoing its normalization);
- residual: ``depth`` times ``x -> ReLU(x + BN(conv3x3(x)))``: the identity is a
  branch driven to zero (BN gamma and beta 0);
- residual_zero_gamma, the control: the residual stack with every BN gamma
  starting at 0 (the zero-init-residual trick of Goyal et al. 2017). Each block
  then computes ``ReLU(x + 0) = ReLU(x)``, which is ``x`` for the non-negative
  inputs here: the stack *starts* at the exact identity, where the loss and all
  its gradients are zero, so Adam leaves it there and its error is 0 at every
  depth and budget. It shows that the residual form can hold the identity at any
  depth, so a residual stack that loses its input at depth fails by its start
  (each He-initialized branch adds a unit-variance BN output to the stream), not
  by what it can represent.

Inputs are ``ReLU(N(0, 1))`` tensors of shape ``[size, size, width]``
(non-negative, so the final ReLU of either stack can pass them unchanged),
drawn from ``numpy.random.default_rng(seed)``: first a fixed held-out set of
256, then a fresh training batch every step. Every model of one seed sees the
same inputs and, since ``keras.utils.set_random_seed(seed)`` runs before each
build, the stacks of one depth and seed start from the same conv kernels, whatever
their kind. Training minimizes the MSE with Adam in one compiled ``tf.function``
step per model.

The measure is the relative reconstruction error on the held-out set,
``sum ||f(x) - x||^2 / sum ||x||^2``: 0 is the identity, 1 the zero map, and
``1 - 1/pi = 0.68`` a constant output (the mean of ``ReLU(N(0, 1))``: a stack
that has lost its input). ``error`` is measured after training in inference
mode (BN moving statistics). ``initial_error`` is measured before any weight
update in *training mode* over the whole held-out set as one batch, through
``stateless_call`` so the model is not changed: at initialization the moving
statistics are still mean 0, variance 1, which describe no layer's input
(after one step a residual-32 stack measures 2e4 in inference mode), while
training-mode BN normalizes with the held-out set's own statistics, which is
what the moving statistics converge to.

Budget: every stack trains 150 steps of 16 inputs at ``lr=1e-2``, then on to 300,
600, ... steps (continuing, the same input stream) until the shallowest stacks of every
kind and seed moved by less than ``IDENTITY_CONVERGED`` (0.01) over the last doubling,
or up to ``max_doublings`` doublings (default 3: 1,200 steps); all stacks end at the same
budget (:func:`identity_task`). Adam moves each weight by about ``lr`` per step, so at
1e-3 a branch's BN gamma (starting at 1) cannot reach 0 within a few hundred steps:
measured with 300 steps of 32, even depth 1 stays at 0.45 (plain) and 0.39 (residual),
and the task would measure the step budget instead of the parametrization.

Measured (seed 0, default call: depths 1-32, 18 stacks): the shallowest stacks converged
at 600 steps (from 150 to 300 the depth-1 residual stack moved 0.043; from 300 to 600
every depth-1 stack moved less than 0.0001). Errors after 150, 300 and 600 steps
(initial error in brackets; the control is 0 throughout):

=====  =========================  =========================
depth  plain                      residual
=====  =========================  =========================
1      0.007 0.000 0.000 (1.38)   0.043 0.000 0.000 (1.19)
2      0.058 0.012 0.007 (1.32)   0.034 0.003 0.001 (2.40)
4      0.307 0.110 0.013 (1.31)   0.061 0.005 0.001 (4.97)
8      0.684 0.664 0.592 (1.41)   0.167 0.022 0.004 (10.9)
16     0.689 0.685 0.684 (1.37)   0.596 0.230 0.015 (23.4)
32     0.694 0.685 0.693 (1.35)   0.721 0.699 0.636 (48.6)
=====  =========================  =========================

From depth 8 on the plain stacks sit at or near the constant output; the residual
stacks start further from the identity as depth grows (each branch adds a
unit-variance BN output to the stream) and need more steps for it: at 150 steps
residual 16 is at 0.60, at 600 at 0.015, while residual 32 is still at 0.64.
The default call took 207 s on the 2 CPU cores here, shared with other jobs; the
quick preset's call (depths 1-16, 15 stacks, 600 steps) 93 to 124 s, against 22 to
24 s for the former fixed 150 steps of two kinds (10 stacks), measured in turns.
Training the control costs as much as a residual stack although its gradients are
exactly zero: it is measured, not assumed.

Example:

>>> stack = build_identity_stack(4, residual=True)
>>> stack.output_shape, len(stack.layers)
((None, 8, 8, 16), 17)
>>> summary = identity_task_summary(identity_task())      # doctest: +SKIP
>>> summary["plain"][8] > summary["residual"][8]          # doctest: +SKIP
True
>>> summary["residual_zero_gamma"][32]                    # doctest: +SKIP
0.0
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from reskeras import blocks
from reskeras._backend import keras
from reskeras.preprocessing import check_int
from reskeras.specs import ArchSpec
from reskeras.study.criteria import IDENTITY_CONVERGED

KINDS = ("plain", "residual", "residual_zero_gamma")
DEFAULT_DEPTHS = (1, 2, 4, 8, 16, 32)
DEFAULT_STEPS = 150
DEFAULT_MAX_DOUBLINGS = 3
DEFAULT_LR = 1e-2
DEFAULT_BATCH_SIZE = 16
HELD_OUT = 256  # held-out inputs behind every error


def _layer_spec(width: int, batch_norm: bool) -> ArchSpec:
    """The spec ``blocks.conv`` and ``blocks.batch_norm`` read: He init, BN or a conv bias.

    Only ``batch_norm``, ``init`` and (for strided convs, never used here)
    ``padding`` matter; the other fields describe a nominal CIFAR net.
    """
    return ArchSpec("cifar", "basic", (1, 1, 1), (width,) * 3, width, batch_norm=batch_norm)


def _check_bool(arg: str, value) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{arg}` must be True or False. Received: {arg}={value!r}")


def build_identity_stack(depth: int, residual: bool, width: int = 16, size: int = 8,
                         batch_norm: bool = True, zero_gamma: bool = False) -> keras.Model:
    """A stack of ``depth`` 3x3 conv layers mapping ``[size, size, width]`` to the same shape.

    Args:
        depth: number of layers (>= 1).
        residual: ``True``: each layer is ``x -> ReLU(x + BN(conv(x)))``;
            ``False``: ``x -> ReLU(BN(conv(x)))``.
        width: channels of the input and of every conv.
        size: height and width of the input.
        batch_norm: ``False`` drops the BNs and gives the convs a bias.
        zero_gamma: every BN gamma starts at 0 (residual stacks with BN only), so
            each layer starts as ``x -> ReLU(x)``. The convs get the same kernels as
            without it under the same ``keras.utils.set_random_seed``.

    Returns:
        A functional ``keras.Model`` named ``{kind}{depth}_identity`` (kind
        ``plain``, ``residual`` or ``residual_zero_gamma``), input ``input``, layers
        ``layer{i}_conv``, ``layer{i}_bn``, ``layer{i}_add`` (residual only),
        ``layer{i}_relu``.

    Example:

    >>> [layer.name for layer in build_identity_stack(1, residual=True).layers]
    ['input', 'layer1_conv', 'layer1_bn', 'layer1_add', 'layer1_relu']
    >>> x = np.arange(2 * 8 * 8 * 16, dtype="float32").reshape(2, 8, 8, 16) - 1000
    >>> stack = build_identity_stack(3, residual=True, zero_gamma=True)
    >>> stack.name, bool(np.array_equal(stack(x), np.maximum(x, 0)))
    ('residual_zero_gamma3_identity', True)
    """
    check_int("depth", depth, 1)
    _check_bool("residual", residual)
    check_int("width", width, 1)
    check_int("size", size, 1)
    _check_bool("batch_norm", batch_norm)
    _check_bool("zero_gamma", zero_gamma)
    if zero_gamma and not (residual and batch_norm):
        raise ValueError("`zero_gamma` needs a residual stack with BatchNorm (a plain stack "
                         "would output a constant). Received: zero_gamma=True, "
                         f"residual={residual!r}, batch_norm={batch_norm!r}")
    spec = _layer_spec(width, bool(batch_norm))
    inputs = keras.Input((size, size, width), name="input")
    x = inputs
    for i in range(1, depth + 1):
        y = blocks.conv(x, width, 3, 1, f"layer{i}_conv", spec)
        y = blocks.batch_norm(y, f"layer{i}_bn", spec, zero_gamma=bool(zero_gamma))
        if residual:
            y = keras.layers.Add(name=f"layer{i}_add")([x, y])
        x = blocks.relu(y, f"layer{i}_relu", spec)
    kind = "residual_zero_gamma" if zero_gamma else "residual" if residual else "plain"
    return keras.Model(inputs, x, name=f"{kind}{depth}_identity")


def _check_distinct_ints(arg: str, values, minimum: int) -> tuple[int, ...]:
    rule = "positive" if minimum == 1 else "non-negative"
    try:
        items = tuple(values)
    except TypeError:
        items = None
    if not items or len(set(items)) != len(items) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum
            for v in items):
        raise ValueError(f"`{arg}` must be a non-empty sequence of distinct {rule} integers. "
                         f"Received: {arg}={values!r}")
    return tuple(int(v) for v in items)


def _inputs(rng: np.random.Generator, n: int, size: int, width: int) -> np.ndarray:
    return np.maximum(rng.standard_normal((n, size, size, width)), 0.0).astype("float32")


def relative_error(outputs, inputs) -> float:
    """``sum ||outputs - inputs||^2 / sum ||inputs||^2``, in float64."""
    inputs = np.asarray(inputs, np.float64)
    residual = np.asarray(outputs, np.float64) - inputs
    return float(np.sum(residual ** 2) / np.sum(inputs ** 2))


def _train_step(model: keras.Model, optimizer, batch_size: int):
    """One Adam step on the MSE of ``model(x)`` against ``x``, traced once (fixed input shape)."""
    variables = model.trainable_variables
    spec = tf.TensorSpec((batch_size,) + tuple(model.input_shape[1:]), tf.float32)

    @tf.function(input_signature=[spec])
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - x))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def _initial_error(model: keras.Model, held_out: np.ndarray) -> float:
    """Training-mode error over the held-out set as one batch; the model's state is unchanged."""
    outputs, _ = model.stateless_call(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables], held_out, training=True)
    return relative_error(outputs, held_out)


def converged(errors) -> bool | None:
    """Whether held-out ``errors`` (one per doubling budget) moved by less than
    ``IDENTITY_CONVERGED`` over the last doubling (``None`` before a second reading).

    >>> converged([0.3, 0.1, 0.095]), converged([0.3, 0.1, 0.08]), converged([0.3])
    (True, False, None)
    """
    if len(errors) < 2:
        return None
    return bool(abs(errors[-1] - errors[-2]) < IDENTITY_CONVERGED)


class _Stack:
    """One stack in training: its model, Adam, compiled step and its seed's input stream.

    Training continues across budgets: ``train_to(300)`` after ``train_to(150)`` runs
    150 more steps on the next 150 batches of the stream, the same inputs a single
    300-step run sees.
    """

    def __init__(self, kind: str, depth: int, seed: int, batch_size: int, width: int,
                 size: int, lr: float):
        self.kind, self.depth, self.seed = kind, depth, seed
        self._batch = (batch_size, size, width)
        self._rng = np.random.default_rng(seed)
        self.held_out = _inputs(self._rng, HELD_OUT, size, width)
        keras.utils.set_random_seed(seed)
        self.model = build_identity_stack(depth, kind != "plain", width, size,
                                          zero_gamma=kind == "residual_zero_gamma")
        self.initial_error = _initial_error(self.model, self.held_out)
        optimizer = keras.optimizers.Adam(learning_rate=lr)
        optimizer.build(self.model.trainable_variables)
        self._step = _train_step(self.model, optimizer, batch_size)
        self.steps, self.errors = 0, []

    def train_to(self, steps: int) -> None:
        """Trains on to ``steps`` steps in all, then reads the held-out error (inference mode)."""
        for _ in range(steps - self.steps):
            self._step(tf.constant(_inputs(self._rng, *self._batch)))
        self.steps = steps
        self.errors.append(relative_error(self.model(self.held_out, training=False),
                                          self.held_out))

    def converged(self) -> bool | None:
        return converged(self.errors)

    def row(self) -> dict:
        return {"kind": self.kind, "depth": self.depth, "seed": self.seed,
                "initial_error": self.initial_error, "error": self.errors[-1],
                "errors": list(self.errors), "converged": self.converged()}


def identity_task(depths=DEFAULT_DEPTHS, seeds=(0,), steps: int = DEFAULT_STEPS,
                  batch_size: int = DEFAULT_BATCH_SIZE, width: int = 16, size: int = 8,
                  lr: float = DEFAULT_LR, max_doublings: int = DEFAULT_MAX_DOUBLINGS) -> dict:
    """Trains stacks of every kind and depth to be the identity, long enough; their errors.

    The budget: every stack trains ``steps`` steps, then on to 2x, 4x, ... ``steps``
    (continuing, not restarting) until the shallowest stacks of every kind and seed
    have converged, their error moved by less than ``IDENTITY_CONVERGED`` over the last
    doubling, or until the cap ``steps * 2 ** max_doublings``. Every stack, of every
    depth, kind and seed, then has trained the same number of steps, so depths compare
    at equal budgets. The shallowest stacks decide alone: a deep stack may sit on a
    plateau it leaves much later, and what the task measures is how deep a stack keeps
    its input at a budget where the easy case has finished learning.

    Args:
        depths: stack depths to train (distinct positive integers).
        seeds: seeds of the inputs and the initial weights (distinct non-negative integers).
        steps: Adam steps of the first budget (default 150).
        batch_size: fresh inputs per step (default 16).
        width: channels of inputs and convs.
        size: height and width of the inputs.
        lr: Adam's learning rate (default 1e-2; see the module docstring).
        max_doublings: at most this many doublings of ``steps`` (default 3: a cap of
            8x ``steps``, 1,200 steps by default); 0 trains ``steps`` once and measures
            no convergence.

    Returns:
        The ``"identity_task"`` entry of results.json (notes/schema18.md):
        ``{"depths", "seeds", "steps", "base_steps", "max_doublings", "budgets", "width",
        "size", "rows"}``. ``steps`` is the final budget every stack trained,
        ``base_steps`` the first, ``budgets`` every budget read (``base_steps`` doubling
        up to ``steps``). One row per kind (``KINDS`` order), depth and seed, seeds
        outermost: ``{"kind", "depth", "seed", "initial_error", "error", "errors",
        "converged"}``, ``errors`` the held-out error at each budget (``error`` is the
        last), ``converged`` whether it moved by less than ``IDENTITY_CONVERGED`` over
        the last doubling (``None`` with one budget).
    """
    depths = _check_distinct_ints("depths", depths, 1)
    seeds = _check_distinct_ints("seeds", seeds, 0)
    check_int("steps", steps, 1)
    check_int("batch_size", batch_size, 1)
    check_int("width", width, 1)
    check_int("size", size, 1)
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)) \
            or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"`lr` must be a positive finite number. Received: lr={lr!r}")
    check_int("max_doublings", max_doublings, 0)
    settings = (int(batch_size), int(width), int(size), float(lr))
    shallowest = min(depths)
    stacks = {(seed, kind, shallowest): _Stack(kind, shallowest, seed, *settings)
              for seed in seeds for kind in KINDS}
    budgets = []
    for budget in (int(steps) * 2 ** k for k in range(int(max_doublings) + 1)):
        budgets.append(budget)
        for stack in stacks.values():
            stack.train_to(budget)
        if all(stack.converged() for stack in stacks.values()):
            break
    rows = []
    for seed in seeds:
        for kind in KINDS:
            for depth in depths:
                stack = stacks.pop((seed, kind, depth), None)
                if stack is None:
                    stack = _Stack(kind, depth, seed, *settings)
                    for budget in budgets:
                        stack.train_to(budget)
                rows.append(stack.row())
    return {"depths": list(depths), "seeds": list(seeds), "steps": budgets[-1],
            "base_steps": int(steps), "max_doublings": int(max_doublings), "budgets": budgets,
            "width": int(width), "size": int(size), "rows": rows}


def identity_task_summary(result: dict) -> dict:
    """``{kind: {depth: mean error over seeds}}`` of an :func:`identity_task` result.

    Example:

    >>> rows = [{"kind": "plain", "depth": 2, "seed": s, "error": e} for s, e in [(0, .1), (1, .3)]]
    >>> identity_task_summary({"rows": rows})
    {'plain': {2: 0.2}}
    """
    errors = {}
    for row in result["rows"]:
        errors.setdefault(row["kind"], {}).setdefault(row["depth"], []).append(row["error"])
    return {kind: {depth: float(np.mean(values)) for depth, values in sorted(by_depth.items())}
            for kind, by_depth in errors.items()}


__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_DEPTHS", "DEFAULT_LR", "DEFAULT_MAX_DOUBLINGS",
           "DEFAULT_STEPS", "HELD_OUT", "KINDS", "build_identity_stack", "converged",
           "identity_task", "identity_task_summary", "relative_error"]
