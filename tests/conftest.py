"""Shared test setup: quiet TensorFlow, fresh Keras state and seeds per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import reskeras  # noqa: F401,E402  (first TensorFlow import: oneDNN kernels, as users get them)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


def trainable_params(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)
