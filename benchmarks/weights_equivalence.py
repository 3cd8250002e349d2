"""Equivalence numbers for docs/weights.md: reskeras vs torchvision on the same weights.

Run: ``python benchmarks/weights_equivalence.py`` (needs ``pip install -e ".[torch]"``).
Uses the helpers of tests/reskeras/test_reference_equivalence.py, so the numbers are those of
the checks CI runs: eval logits (float32, 224x224) and one float64 SGD step (64x64).
"""

from __future__ import annotations

import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import torchvision  # noqa: E402,F401  (before TensorFlow: see tests/conftest.py)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from reskeras import build_resnet  # noqa: E402
from reskeras.weights import load_weights  # noqa: E402
from tests.reskeras import test_reference_equivalence as reference  # noqa: E402


def _row(name, net, build, eval_shape, step_shape, classes):
    reference._randomize_batch_norm(net, 0)
    state = reference._state(net)
    model = build(None)
    load_weights(model, state)
    rng = np.random.default_rng(0)
    eval_error = reference._assert_same_logits(
        net, model, rng.standard_normal(eval_shape).astype("float32"))
    twin = reference._float64_twin(lambda: build("softmax"), state)
    images = rng.standard_normal(step_shape).astype("float32")
    step_error = reference._assert_same_update(net, twin, images,
                                               rng.integers(0, classes, step_shape[0]), state)
    print(f"| {name} | {eval_error:.1e} | {step_error:.1e} |", flush=True)


def main() -> None:
    print("| net | eval logits, max error / logit scale | train step (float64), max error / tensor scale |")
    print("| --- | --- | --- |")
    for depth in (18, 34, 50, 101, 152):
        torch.manual_seed(depth)
        _row(f"torchvision resnet{depth}", getattr(torchvision.models, f"resnet{depth}")(),
             lambda act, d=depth: build_resnet(d, classifier_activation=act,
                                               input_shape=(None, None, 3)),
             (2, 224, 224, 3), (4, 64, 64, 3), 1000)
    torch.manual_seed(20)
    _row("option-A ResNet-20 (PyTorch, in the test)", reference._CifarResNet20(),
         lambda act: build_resnet(20, classifier_activation=act), (8, 32, 32, 3),
         (16, 32, 32, 3), 10)
    print(f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, torchvision {torchvision.__version__})")


if __name__ == "__main__":
    main()
