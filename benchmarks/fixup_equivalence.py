"""reskeras ``init="fixup"`` side by side with the Fixup authors' CIFAR ResNet.

The authors' code is not part of reskeras: fetch their file first,

    curl -LO https://raw.githubusercontent.com/hongyi-zhang/Fixup/master/cifar/models/fixup_resnet_cifar.py

then run ``python benchmarks/fixup_equivalence.py fixup_resnet_cifar.py`` (needs PyTorch:
``pip install -e ".[torch]"``). For each depth it

1. builds the authors' ``FixupResNet`` and draws every parameter from N(0, 0.2^2), so no
   zero initialization can hide a wiring difference, copies them into reskeras's
   ``build_resnet(depth, batch_norm=False, init="fixup")`` (the stem's scalar bias into
   each of the stem conv's per-channel biases) and prints the largest logit difference on
   four 32x32x3 images, relative to the largest logit;
2. compares the initialization: the standard deviation of every first branch conv over
   all its blocks, the authors' draw against reskeras's (seed 0 in both), and that the
   second branch convs and the classifier start at exactly 0 in both.
"""

from __future__ import annotations

import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import torch  # noqa: E402  (before TensorFlow: see tests/conftest.py)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

import keras  # noqa: E402
from benchmarks.machine import cpu_model  # noqa: E402
from reskeras import build_resnet  # noqa: E402

DEPTHS = {20: [3, 3, 3], 56: [9, 9, 9], 110: [18, 18, 18]}


def _authors(path: str):
    spec = importlib.util.spec_from_file_location("fixup_resnet_cifar", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _copy(ref, model) -> None:
    def conv(name, weight):
        model.get_layer(name).kernel.assign(weight.detach().numpy().transpose(2, 3, 1, 0))

    conv("stem_conv", ref.conv1.weight)
    model.get_layer("stem_conv").bias.assign(np.full(16, ref.bias1.item(), np.float32))
    for s, stage in enumerate((ref.layer1, ref.layer2, ref.layer3), start=1):
        for b, block in enumerate(stage, start=1):
            prefix = f"stage{s}_block{b}"
            conv(f"{prefix}_conv1", block.conv1.weight)
            conv(f"{prefix}_conv2", block.conv2.weight)
            for name in ("bias1a", "bias1b", "bias2a", "bias2b"):
                model.get_layer(f"{prefix}_{name}").bias.assign(getattr(block, name).item())
            model.get_layer(f"{prefix}_scale").alpha.assign(block.scale.item())
    model.get_layer("head_bias").bias.assign(ref.bias2.item())
    model.get_layer("predictions").kernel.assign(ref.fc.weight.detach().numpy().T)
    model.get_layer("predictions").bias.assign(ref.fc.bias.detach().numpy())


def _first_conv_std(ref, model) -> list[tuple[str, float, float]]:
    rows = []
    for s, stage in enumerate((ref.layer1, ref.layer2, ref.layer3), start=1):
        theirs = torch.cat([b.conv1.weight.detach().flatten() for b in stage]).std().item()
        ours = np.concatenate([np.asarray(model.get_layer(f"stage{s}_block{b}_conv1").kernel)
                               .ravel() for b in range(1, len(stage) + 1)]).std()
        rows.append((f"stage {s}", theirs, float(ours)))
    return rows


def main(path: str) -> None:
    module = _authors(path)
    print(f"CPU: {cpu_model()}, torch {torch.__version__}, keras {keras.__version__}")
    print("| depth | parameters (authors, reskeras) | max logit difference / max logit "
          "| first branch conv std at init, stages 1-3 (authors / reskeras) "
          "| zero at init in both |")
    print("| --- | --- | --- | --- | --- |")
    for depth, layers in DEPTHS.items():
        torch.manual_seed(0)
        ref = module.FixupResNet(module.FixupBasicBlock, layers).eval()
        keras.utils.set_random_seed(0)
        model = build_resnet(depth, batch_norm=False, init="fixup", input_shape=(32, 32, 3),
                             classes=10, classifier_activation=None)
        stds = _first_conv_std(ref, model)
        zeros = all(not b.conv2.weight.any() for s in (ref.layer1, ref.layer2, ref.layer3)
                    for b in s) and not ref.fc.weight.any() and all(
            not np.asarray(model.get_layer(f"stage{s}_block{b}_conv{2}").kernel).any()
            for s in (1, 2, 3) for b in range(1, layers[0] + 1)) and not np.asarray(
            model.get_layer("predictions").kernel).any()
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for parameter in ref.parameters():
                parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
        _copy(ref, model)
        images = np.random.default_rng(2).normal(size=(4, 32, 32, 3)).astype("float32")
        with torch.no_grad():
            expected = ref(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
        found = np.asarray(model(images))
        relative = np.abs(found - expected).max() / np.abs(expected).max()
        count = sum(p.numel() for p in ref.parameters())
        std_text = ", ".join(f"{theirs:.4f} / {ours:.4f}" for _, theirs, ours in stds)
        print(f"| {depth} | {count:,}, {model.count_params():,} | {relative:.1e} | {std_text} "
              f"| {'yes' if zeros else 'NO'} |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isfile(sys.argv[1]):
        sys.exit("usage: python benchmarks/fixup_equivalence.py PATH/fixup_resnet_cifar.py")
    main(sys.argv[1])
