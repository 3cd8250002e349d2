"""The one gate through which reskeras imports Keras: TensorFlow backend only.

reskeras trains under ``tf.distribute``, logs with ``tf.summary`` and exports
TF SavedModels: none of that exists on the JAX, PyTorch or NumPy backends, so
modules write ``from reskeras._backend import keras`` and a wrong backend is
refused with a message that says how to fix it.
"""

from __future__ import annotations

import keras


def require_tensorflow_backend(backend: str | None = None) -> None:
    backend = keras.backend.backend() if backend is None else backend
    if backend != "tensorflow":
        raise ImportError(
            "reskeras needs the TensorFlow backend of Keras 3: set KERAS_BACKEND=tensorflow "
            "(or \"backend\": \"tensorflow\" in ~/.keras/keras.json) before importing it. "
            f"Received: backend={backend!r}")


require_tensorflow_backend()

__all__ = ["keras", "require_tensorflow_backend"]
