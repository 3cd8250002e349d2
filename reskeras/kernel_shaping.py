"""Kernel shaping: TAT's leaky ReLU for a plain net with no shortcut and no BatchNorm.

Deep Kernel Shaping (Martens et al. 2021) and Tailored Activation Transformation (TAT;
Zhang, Botev & Martens, ICLR 2022) train deep *vanilla* nets by choosing the activation and
the initialization so that the network's kernel (how correlated its outputs are for two
inputs: the C map) does not degenerate with depth. For a chain of ``L`` leaky ReLUs,
TAT picks the negative slope ``alpha`` so that the composed C map sends 0 to
``C_TARGET`` (0.9, the paper's default eta), and scales the output by
``sqrt(2 / (1 + alpha**2))`` so that a unit mean squared activation stays 1 (the Q map).

The transformation is DeepMind's ``dks`` library's, not re-derived here: this module asks
``dks.base.activation_transform.get_transformed_activations`` for the shaped function and
reads its two numbers back (``f(1) = scale``, ``f(-1) = -scale * alpha``, exact for a
leaky ReLU). :class:`reskeras.layers.ShapedLeakyReLU` stores them in its config, so
``dks`` is needed to *build* a shaped net, never to load or serve one.

``spec.kernel_shaping = "tat"`` (``build_plain(56, kernel_shaping="tat")``) also means:
no BatchNorm, convs with biases starting at 0, delta scaled-orthogonal kernels
(:class:`reskeras.initializers.ScaledDeltaOrthogonal`) and per-location normalization of
the input (:class:`reskeras.layers.PerLocationNormalization`).

Example:

>>> from reskeras.specs import resolve_spec
>>> alpha, scale = tat_leaky_relu(resolve_spec(56, residual=False, kernel_shaping="tat"))
>>> round(alpha, 4), round(scale, 4)
(0.4519, 1.2888)
"""

from __future__ import annotations

import functools

from reskeras.specs import CONVS_PER_BLOCK, ArchSpec

C_TARGET = 0.9  # TAT's eta: the largest C(0) of the whole chain (the paper's default)


def activations_in_sequence(spec: ArchSpec) -> int:
    """Nonlinear layers on the one path of a plain CIFAR v1 net: the stem's and each conv's."""
    return 1 + CONVS_PER_BLOCK[spec.block] * sum(spec.depths)


@functools.lru_cache(maxsize=None)
def _tat_for_chain(activations: int, c_target: float) -> tuple[float, float]:
    from dks.base.activation_transform import get_transformed_activations

    def subnet_max(x, local_map):
        for _ in range(activations):  # a chain: its only subnetwork is the whole net
            x = local_map(x)
        return x

    try:
        shaped = get_transformed_activations(
            ["leaky_relu"], method="TAT", tat_params={"c_val_0_target": c_target},
            subnet_max_func=subnet_max)["leaky_relu"]
    except ValueError as error:
        raise ValueError(
            f"kernel_shaping='tat' cannot reach C(0) = {c_target} with {activations} leaky "
            f"ReLUs in sequence (dks: {str(error).split('.')[0]}): a net this shallow cannot be "
            f"made that nonlinear. Use a depth with at least 13 activations (plain-14 or "
            f"deeper).") from None
    output_scale = float(shaped(1.0))
    return float(-shaped(-1.0) / output_scale), output_scale


def tat_leaky_relu(spec: ArchSpec) -> tuple[float, float]:
    """``(negative_slope, output_scale)`` of TAT's leaky ReLU for ``spec``'s depth."""
    if spec.kernel_shaping != "tat":
        raise ValueError(f"`spec.kernel_shaping` must be 'tat'. "
                         f"Received: kernel_shaping={spec.kernel_shaping!r}")
    activations = activations_in_sequence(spec)
    try:
        return _tat_for_chain(activations, C_TARGET)
    except ValueError as error:
        raise ValueError(f"{error} Received: depth={spec.depth}") from None


__all__ = ["C_TARGET", "activations_in_sequence", "tat_leaky_relu"]
