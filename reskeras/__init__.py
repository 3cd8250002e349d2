"""reskeras: plain and residual twins in Keras, to test why ResNets train.

Importing reskeras refuses a Keras backend other than TensorFlow and registers
its serializable layers, so ``.keras`` files it wrote load with
``keras.models.load_model(path)`` after ``import reskeras``.

Example:

>>> from reskeras import build_resnet, build_plain
>>> build_resnet(56).count_params() == build_plain(56).count_params()
True
"""

from reskeras import _cpu_kernels  # noqa: F401  (must run before TensorFlow is imported)
from reskeras import _quiet  # noqa: F401  (must run before TensorFlow is imported)
from reskeras._backend import require_tensorflow_backend
from reskeras.builders import build, build_model, build_plain, build_resnet
from reskeras.initializers import Dirac, ScaledDeltaOrthogonal
from reskeras.layers import (BranchScale, FusedBatchNormalization, NegativeInfinityPadding2D,
                             PerLocationNormalization, ShapedLeakyReLU, ZeroPadShortcut)
from reskeras.specs import ArchSpec, get_spec, list_models, resolve_spec, scale

__version__ = "0.3.0"

__all__ = [
    "ArchSpec",
    "BranchScale",
    "Dirac",
    "FusedBatchNormalization",
    "NegativeInfinityPadding2D",
    "PerLocationNormalization",
    "ScaledDeltaOrthogonal",
    "ShapedLeakyReLU",
    "ZeroPadShortcut",
    "build",
    "build_model",
    "build_plain",
    "build_resnet",
    "get_spec",
    "list_models",
    "require_tensorflow_backend",
    "resolve_spec",
    "scale",
    "__version__",
]
