"""``reskeras models`` lists the spec table; ``reskeras summary`` builds one net.

Examples::

    reskeras models --family cifar --params
    reskeras summary resnet20 --input-shape 8,8,1 --classes 10
    reskeras summary plain56 --version v2 --width 32 --no-bn
"""

from __future__ import annotations

import argparse

from reskeras import build_model, get_spec, list_models
from reskeras.cli import add_command, parse_shape
from reskeras.specs import FAMILIES, SHORTCUTS, VERSIONS


def add_parser(subparsers, name: str) -> None:
    if name == "models":
        parser = add_command(
            subparsers, "models", run_models, help="list the registry of named models",
            description="List registry names with their family, block, stage depths and widths.")
        parser.add_argument("--family", choices=FAMILIES, help="only this family")
        parser.add_argument("--params", action="store_true",
                            help="build each model and add its trainable parameter count "
                                 "(ResNet-1202 takes about 30 s)")
    else:
        parser = add_command(
            subparsers, "summary", run_summary, help="build one model and print its layers",
            description="Build a registry model (optionally modified) and print keras "
                        "Model.summary() with parameter counts.")
        parser.add_argument("name", help="registry name, e.g. resnet20, plain56, resnet50")
        parser.add_argument("--width", type=int, help="base width (first-stage filters)")
        parser.add_argument("--version", choices=VERSIONS, help="v1 or v2 (pre-activation)")
        parser.add_argument("--shortcut", choices=SHORTCUTS, help="shortcut option A, B or C")
        parser.add_argument("--no-bn", action="store_true", help="drop BatchNorm")
        parser.add_argument("--kernel-shaping", choices=("tat",),
                            help="tat: TAT's shaped plain net (plain nets; no BatchNorm)")
        parser.add_argument("--input-shape", type=parse_shape, metavar="H,W,C",
                            help="input shape (default 32,32,3 for CIFAR, 224,224,3 for ImageNet)")
        parser.add_argument("--classes", type=int, help="output classes")


def _trainable_params(model) -> int:
    return sum(int(v.numpy().size) for v in model.trainable_weights)


def run_models(args: argparse.Namespace) -> int:
    header = f"{'name':<20} {'family':<9} {'block':<11} {'depth':>5}  {'blocks/stage':<16} widths"
    if args.params:
        header += f"{'':<14}{'trainable params':>17}"
    print(header)
    for name in list_models():
        spec = get_spec(name)
        if args.family and spec.family != args.family:
            continue
        line = (f"{name:<20} {spec.family:<9} {spec.block:<11} {spec.depth:>5}  "
                f"{str(spec.depths):<16} {spec.widths}")
        if args.params:
            line = f"{line:<80}{_trainable_params(build_model(spec)):>17,}"
        print(line, flush=True)
    return 0


def run_summary(args: argparse.Namespace) -> int:
    model = build_model(args.name, width=args.width, version=args.version,
                        shortcut=args.shortcut, batch_norm=False if args.no_bn else None,
                        kernel_shaping=args.kernel_shaping,
                        input_shape=args.input_shape, classes=args.classes)
    model.summary(line_length=110)
    print(f"trainable parameters: {_trainable_params(model):,}")
    return 0
