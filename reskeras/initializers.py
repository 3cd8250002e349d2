"""Conv initializations of the study's interventions: identity ("Dirac") and its controls.

Zagoruyko & Komodakis (2017) train deep plain nets by starting every conv at
the identity. :class:`Dirac` does that for a Keras ``Conv2D`` kernel
``(kh, kw, c_in, c_out)``: 1 at the centre tap from input channel ``i`` to
output channel ``i`` for ``i < min(c_in, c_out)``, 0 elsewhere, plus He-normal
noise scaled by ``noise``. A strided conv then subsamples its input (with
reference padding the centre tap reads the pixels the option-A shortcut
keeps), and a conv that widens the net passes its input on in the first
channels, as the option-A shortcut does. Registered and serializable, so
``.keras`` files load with ``safe_mode=True``.

Two controls separate "starts near the identity" from "starts well conditioned" (Xiao
et al. 2018, dynamical isometry):

- :class:`PermutedDirac`: the same kernel with its output channels permuted by a random
  cycle, so no channel maps to itself: as orthogonal as the identity, far from it;
- :class:`DeltaOrthogonal`: zero except the centre tap, a random orthogonal
  ``(c_in, c_out)`` matrix there (Xiao et al. 2018): a norm-preserving conv that is not
  the identity.

Example:

>>> import numpy as np
>>> kernel = np.asarray(Dirac(noise=0.0)((3, 3, 2, 4)))
>>> kernel[1, 1, :, :2].tolist(), float(np.abs(kernel).sum())
([[1.0, 0.0], [0.0, 1.0]], 2.0)
"""

from __future__ import annotations

from reskeras._backend import keras
from reskeras.specs import INITS as INITIALIZERS, check_init_noise

ops = keras.ops
DEFAULT_INIT_NOISE = 0.1


@keras.saving.register_keras_serializable(package="reskeras")
class Dirac(keras.initializers.Initializer):
    """Identity kernel plus ``noise`` x He-normal (``std = noise * sqrt(2 / fan_in)``).

    Args:
        noise: scale of the He-normal noise added to the identity (0: exact
            identity; 1: as much noise as He initialization alone).
        seed: seed of the noise (``None``: drawn from Keras's global seed, so
            ``keras.utils.set_random_seed`` makes it reproducible).
    """

    def __init__(self, noise: float = DEFAULT_INIT_NOISE, seed=None):
        check_init_noise(noise)
        self.noise = float(noise)
        self._seed = seed
        self._he = keras.initializers.HeNormal(seed=seed)

    def __call__(self, shape, dtype=None):
        height, width, inputs, outputs = _conv_shape("Dirac", shape)
        eye = ops.eye(inputs, outputs, dtype=dtype)  # ones on the first min(c_in, c_out)
        identity = _centre(height, width, dtype) * ops.reshape(eye, (1, 1, inputs, outputs))
        if self.noise == 0:
            return identity
        return identity + self.noise * self._he(shape, dtype=dtype)

    def get_config(self):
        return {"noise": self.noise, "seed": self._seed}


def _centre(height: int, width: int, dtype=None):
    """``(height, width, 1, 1)``: 1 at the centre tap, 0 elsewhere."""
    return ops.reshape(ops.one_hot(height // 2 * width + width // 2, height * width,
                                   dtype=dtype), (height, width, 1, 1))


def _conv_shape(name: str, shape) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise ValueError(f"{name} initializes conv kernels (kh, kw, c_in, c_out). "
                         f"Received: shape={tuple(shape)}")
    return tuple(int(d) for d in shape)


@keras.saving.register_keras_serializable(package="reskeras")
class PermutedDirac(Dirac):
    """:class:`Dirac` with its output channels permuted by one random cycle.

    Input channel ``i < min(c_in, c_out)`` goes to output channel ``pi(i)``, where ``pi``
    is a cycle through all ``c_out`` outputs in a random order: no channel maps to itself
    (for ``c_out >= 2``), the centre tap stays a permutation matrix (orthogonal), and a
    stack of such convs starts far from the identity. The noise is :class:`Dirac`'s.

    Args:
        noise: scale of the He-normal noise, as in :class:`Dirac`.
        seed: seed of the permutation and the noise (``None``: Keras's global seed).

    Example:

    >>> import numpy as np
    >>> centre = np.asarray(PermutedDirac(noise=0.0, seed=1)((3, 3, 4, 4)))[1, 1]
    >>> sorted(centre.sum(axis=0).tolist()), float(np.trace(centre))
    ([1.0, 1.0, 1.0, 1.0], 0.0)
    """

    def __init__(self, noise: float = DEFAULT_INIT_NOISE, seed=None):
        super().__init__(noise=noise, seed=seed)
        self._order = keras.initializers.RandomUniform(0.0, 1.0, seed=seed)

    def __call__(self, shape, dtype=None):
        height, width, inputs, outputs = _conv_shape("PermutedDirac", shape)
        order = ops.argsort(self._order((outputs,), dtype="float32"))  # a random order
        # the cycle order[0] -> order[1] -> ... -> order[-1] -> order[0]
        cycle = ops.take(ops.roll(order, -1), ops.argsort(order))
        count = min(inputs, outputs)
        moves = ops.one_hot(cycle[:count], outputs, dtype=dtype)  # (count, c_out)
        if inputs > count:
            moves = ops.concatenate([moves, ops.zeros((inputs - count, outputs), dtype)], 0)
        kernel = _centre(height, width, dtype) * ops.reshape(moves, (1, 1, inputs, outputs))
        if self.noise == 0:
            return kernel
        return kernel + self.noise * self._he(shape, dtype=dtype)


@keras.saving.register_keras_serializable(package="reskeras")
class DeltaOrthogonal(keras.initializers.Initializer):
    """Delta-orthogonal kernel (Xiao et al. 2018): ``gain`` x an orthogonal centre tap.

    Every tap but the centre is 0; the centre is a random ``(c_in, c_out)`` matrix with
    orthonormal rows (``c_in <= c_out``) or columns (``keras.initializers.Orthogonal``),
    times ``gain``. With ``c_in <= c_out`` the conv then maps every input to an output
    of exactly ``gain`` times its norm, at every pixel. The default gain, sqrt(2), is He's
    for ReLU: it keeps the second moment of a ReLU net's activations from layer to layer.

    Args:
        gain: the scale of the orthogonal matrix.
        seed: its seed (``None``: Keras's global seed).

    Example:

    >>> import numpy as np
    >>> kernel = np.asarray(DeltaOrthogonal(gain=1.0, seed=0)((3, 3, 4, 4)))
    >>> np.allclose(kernel[1, 1] @ kernel[1, 1].T, np.eye(4), atol=1e-6), float(np.abs(kernel[0]).sum())
    (True, 0.0)
    """

    def __init__(self, gain: float = 2 ** 0.5, seed=None):
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain > 0:
            raise ValueError(f"`gain` must be a number > 0. Received: gain={gain!r}")
        self.gain = float(gain)
        self._seed = seed
        self._orthogonal = keras.initializers.Orthogonal(gain=self.gain, seed=seed)

    def __call__(self, shape, dtype=None):
        height, width, inputs, outputs = _conv_shape("DeltaOrthogonal", shape)
        matrix = self._orthogonal((inputs, outputs), dtype=dtype)
        return _centre(height, width, dtype) * ops.reshape(matrix, (1, 1, inputs, outputs))

    def get_config(self):
        return {"gain": self.gain, "seed": self._seed}


@keras.saving.register_keras_serializable(package="reskeras")
class ScaledDeltaOrthogonal(DeltaOrthogonal):
    """Delta scaled-uniform-orthogonal kernel (DKS/TAT; Martens et al. 2021).

    :class:`DeltaOrthogonal` with gain 1 times ``max(sqrt(c_out / c_in), 1)``, the rescaling
    of ``dks``'s ``stateless_scaled_uniform_orthogonal(..., delta=True)``: a conv that
    widens the net keeps the mean squared activation (the q value) of its input instead
    of spreading it thin. Used with zero biases, no BatchNorm and TAT's shaped leaky ReLU
    (``kernel_shaping="tat"``, :mod:`reskeras.kernel_shaping`).

    Example:

    >>> import numpy as np
    >>> centre = np.asarray(ScaledDeltaOrthogonal(seed=0)((3, 3, 2, 8)))[1, 1]
    >>> np.allclose(centre @ centre.T, 4 * np.eye(2), atol=1e-5)
    True
    """

    def __init__(self, seed=None):
        super().__init__(gain=1.0, seed=seed)

    def __call__(self, shape, dtype=None):
        height, width, inputs, outputs = _conv_shape("ScaledDeltaOrthogonal", shape)
        kernel = super().__call__(shape, dtype=dtype)
        return kernel * max((outputs / inputs) ** 0.5, 1.0)

    def get_config(self):
        return {"seed": self._seed}


def conv_initializer(init: str, init_noise: float):
    """What ``reskeras.blocks`` passes as ``kernel_initializer``."""
    if init == "dirac":
        return Dirac(noise=init_noise)
    if init == "dirac_permuted":
        return PermutedDirac(noise=init_noise)
    if init == "delta_orthogonal":
        return DeltaOrthogonal()
    if init == "delta_scaled_orthogonal":
        return ScaledDeltaOrthogonal()
    return "he_normal"  # he_normal, and fixup outside its residual branches (reskeras.blocks)


__all__ = ["DEFAULT_INIT_NOISE", "DeltaOrthogonal", "Dirac", "INITIALIZERS", "PermutedDirac",
           "ScaledDeltaOrthogonal", "conv_initializer"]
