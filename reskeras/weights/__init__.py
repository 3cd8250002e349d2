"""Pretrained ResNet weights from torchvision and timm files, loaded into reskeras models.

reskeras downloads nothing: point it at a local ``.safetensors`` file (read
with the ``safetensors`` package, no torch needed) or ``.pth`` file (needs
torch). See docs/weights.md for where to get them and the equivalence measured
against torchvision's own code.

Example:

>>> from reskeras import build_resnet
>>> model = build_resnet(50, weights="resnet50.safetensors")       # doctest: +SKIP
>>> from reskeras.weights import load_weights
>>> load_weights(build_resnet(18), "resnet18.pth")                 # doctest: +SKIP
"""

from reskeras.weights.files import read_state_dict
from reskeras.weights.loader import infer_spec, load_weights, state_dict
from reskeras.weights.mapping import SOURCES, TABLES, torch_module

__all__ = ["SOURCES", "TABLES", "infer_spec", "load_weights", "read_state_dict", "state_dict",
           "torch_module"]
