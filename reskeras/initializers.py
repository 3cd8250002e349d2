"""Identity ("Dirac") initialization for convs, the intervention of DiracNets.

Zagoruyko & Komodakis (2017) train deep plain nets by starting every conv at
the identity. :class:`Dirac` does that for a Keras ``Conv2D`` kernel
``(kh, kw, c_in, c_out)``: 1 at the centre tap from input channel ``i`` to
output channel ``i`` for ``i < min(c_in, c_out)``, 0 elsewhere, plus He-normal
noise scaled by ``noise``. A strided conv then subsamples its input (with
reference padding the centre tap reads the pixels the option-A shortcut
keeps), and a conv that widens the net passes its input on in the first
channels, as the option-A shortcut does. Registered and serializable, so
``.keras`` files load with ``safe_mode=True``.

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
        if len(shape) != 4:
            raise ValueError(f"Dirac initializes conv kernels (kh, kw, c_in, c_out). "
                             f"Received: shape={tuple(shape)}")
        height, width, inputs, outputs = (int(d) for d in shape)
        eye = ops.eye(inputs, outputs, dtype=dtype)  # ones on the first min(c_in, c_out)
        centre = ops.reshape(ops.one_hot(height // 2 * width + width // 2, height * width,
                                         dtype=dtype), (height, width, 1, 1))
        identity = centre * ops.reshape(eye, (1, 1, inputs, outputs))
        if self.noise == 0:
            return identity
        return identity + self.noise * self._he(shape, dtype=dtype)

    def get_config(self):
        return {"noise": self.noise, "seed": self._seed}


def conv_initializer(init: str, init_noise: float):
    """What ``reskeras.blocks`` passes as ``kernel_initializer``."""
    return "he_normal" if init == "he_normal" else Dirac(noise=init_noise)


__all__ = ["DEFAULT_INIT_NOISE", "Dirac", "INITIALIZERS", "conv_initializer"]
