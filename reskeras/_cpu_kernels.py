"""Turns on TensorFlow's oneDNN CPU kernels, when reskeras is imported before TensorFlow.

TensorFlow 2.21 enables oneDNN by default only on x86 CPUs with AVX-512 VNNI
or newer; elsewhere (AVX2 machines such as the AMD EPYC cores measured here)
convolutions and batch norms run on the slower Eigen kernels. With oneDNN on,
ResNet-20 trains about 1.5x faster on 2 such cores (docs/benchmarks.md).
``TF_ENABLE_ONEDNN_OPTS`` is read once, when TensorFlow is imported, so this
module runs first; a value the user set (``TF_ENABLE_ONEDNN_OPTS=0`` to turn
it off) is kept, and a TensorFlow already imported is left as it is.
"""

from __future__ import annotations

import os
import sys

if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
