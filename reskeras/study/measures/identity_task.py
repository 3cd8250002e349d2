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
  branch driven to zero (BN gamma and beta 0).

Inputs are ``ReLU(N(0, 1))`` tensors of shape ``[size, size, width]``
(non-negative, so the final ReLU of either stack can pass them unchanged),
drawn from ``numpy.random.default_rng(seed)``: first a fixed held-out set of
256, then a fresh training batch every step. Every model of one seed sees the
same inputs and, since ``keras.utils.set_random_seed(seed)`` runs before each
build, the plain and residual stacks of one depth start from the same conv
kernels. Training minimizes the MSE with Adam in one compiled ``tf.function``
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

Defaults: 150 steps of 16 inputs at ``lr=1e-2``. Adam moves each weight by
about ``lr`` per step, so at 1e-3 a branch's BN gamma (starting at 1) cannot
reach 0 within a few hundred steps: measured with 300 steps of 32, even depth
1 stays at 0.45 (plain) and 0.39 (residual), and the task would measure the
step budget instead of the parametrization. The whole default call (depths
1-32, one seed, 12 models) took 25 to 41 s on the 2 CPU cores measured here,
with other jobs sharing them; about 15 s of it is building the 12 models and
tracing their train steps (measured with ``steps=1``). Measured errors (seed
0; initial error in brackets):

=====  ==============  ===============
depth  plain           residual
=====  ==============  ===============
1      0.007 (1.38)    0.043 (1.19)
2      0.057 (1.32)    0.034 (2.40)
4      0.303 (1.31)    0.061 (4.97)
8      0.684 (1.41)    0.166 (10.9)
16     0.693 (1.37)    0.595 (23.4)
32     0.690 (1.35)    0.716 (48.6)
=====  ==============  ===============

From depth 8 on the plain stacks settle at the constant output; the residual
stacks learn the identity up to depth 8, but start further from it as depth
grows (each branch adds a unit-variance BN output to the stream), and at
depth 32 they too end at the constant output within 150 steps. With 300
steps at 32 inputs: residual 16 reaches 0.19 (plain 0.70).

Example:

>>> stack = build_identity_stack(4, residual=True)
>>> stack.output_shape, len(stack.layers)
((None, 8, 8, 16), 17)
>>> summary = identity_task_summary(identity_task())  # doctest: +SKIP
>>> summary["plain"][8] > summary["residual"][8]      # doctest: +SKIP
True
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from reskeras import blocks
from reskeras._backend import keras
from reskeras.preprocessing import check_int
from reskeras.specs import ArchSpec

KINDS = ("plain", "residual")
DEFAULT_DEPTHS = (1, 2, 4, 8, 16, 32)
DEFAULT_STEPS = 150
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
                         batch_norm: bool = True) -> keras.Model:
    """A stack of ``depth`` 3x3 conv layers mapping ``[size, size, width]`` to the same shape.

    Args:
        depth: number of layers (>= 1).
        residual: ``True``: each layer is ``x -> ReLU(x + BN(conv(x)))``;
            ``False``: ``x -> ReLU(BN(conv(x)))``.
        width: channels of the input and of every conv.
        size: height and width of the input.
        batch_norm: ``False`` drops the BNs and gives the convs a bias.

    Returns:
        A functional ``keras.Model`` named ``residual{depth}_identity`` or
        ``plain{depth}_identity``, input ``input``, layers ``layer{i}_conv``,
        ``layer{i}_bn``, ``layer{i}_add`` (residual only), ``layer{i}_relu``.

    Example:

    >>> [layer.name for layer in build_identity_stack(1, residual=True).layers]
    ['input', 'layer1_conv', 'layer1_bn', 'layer1_add', 'layer1_relu']
    """
    check_int("depth", depth, 1)
    _check_bool("residual", residual)
    check_int("width", width, 1)
    check_int("size", size, 1)
    _check_bool("batch_norm", batch_norm)
    spec = _layer_spec(width, bool(batch_norm))
    inputs = keras.Input((size, size, width), name="input")
    x = inputs
    for i in range(1, depth + 1):
        y = blocks.conv(x, width, 3, 1, f"layer{i}_conv", spec)
        y = blocks.batch_norm(y, f"layer{i}_bn", spec)
        if residual:
            y = keras.layers.Add(name=f"layer{i}_add")([x, y])
        x = blocks.relu(y, f"layer{i}_relu")
    kind = "residual" if residual else "plain"
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


def _run(kind: str, depth: int, seed: int, steps: int, batch_size: int, width: int,
         size: int, lr: float) -> dict:
    rng = np.random.default_rng(seed)
    held_out = _inputs(rng, HELD_OUT, size, width)
    keras.utils.set_random_seed(seed)
    model = build_identity_stack(depth, kind == "residual", width, size)
    initial = _initial_error(model, held_out)
    optimizer = keras.optimizers.Adam(learning_rate=lr)
    optimizer.build(model.trainable_variables)
    step = _train_step(model, optimizer, batch_size)
    for _ in range(steps):
        step(tf.constant(_inputs(rng, batch_size, size, width)))
    error = relative_error(model(held_out, training=False), held_out)
    return {"kind": kind, "depth": depth, "seed": seed, "initial_error": initial, "error": error}


def identity_task(depths=DEFAULT_DEPTHS, seeds=(0,), steps: int = DEFAULT_STEPS,
                  batch_size: int = DEFAULT_BATCH_SIZE, width: int = 16, size: int = 8,
                  lr: float = DEFAULT_LR) -> dict:
    """Trains plain and residual stacks of every depth to be the identity; their errors.

    Args:
        depths: stack depths to train (distinct positive integers).
        seeds: seeds of the inputs and the initial weights (distinct non-negative integers).
        steps: Adam steps per model (default 150).
        batch_size: fresh inputs per step (default 16).
        width: channels of inputs and convs.
        size: height and width of the inputs.
        lr: Adam's learning rate (default 1e-2; see the module docstring).

    Returns:
        The ``"identity_task"`` entry of results.json (notes/schema18.md):
        ``{"depths", "seeds", "steps", "width", "size", "rows"}``, one row
        ``{"kind", "depth", "seed", "initial_error", "error"}`` per kind
        (``"plain"`` then ``"residual"``), depth and seed, seeds outermost.
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
    rows = [_run(kind, depth, seed, steps, batch_size, width, size, float(lr))
            for seed in seeds for kind in KINDS for depth in depths]
    return {"depths": list(depths), "seeds": list(seeds), "steps": int(steps),
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


__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_DEPTHS", "DEFAULT_LR", "DEFAULT_STEPS", "HELD_OUT",
           "KINDS", "build_identity_stack", "identity_task", "identity_task_summary",
           "relative_error"]
