"""``reskeras convert``: a torchvision/timm ResNet file -> a ``.keras`` model ready to export.

Examples::

    reskeras convert resnet50-11ad3fa6.pth --model resnet50 --out resnet50.keras
    reskeras convert model.safetensors --from timm --out resnet50_a1.keras --resize 235 \\
        --interpolation bicubic
    reskeras export --model resnet50.keras --base exports --name resnet50

Writes ``OUT`` (loads with ``keras.saving.load_model(OUT, safe_mode=True)``)
and ``OUT``'s ``.reskeras.json`` beside it: the ImageNet preprocessing the
weights expect and where they came from (see docs/weights.md).
"""

from __future__ import annotations

import argparse
import os

from reskeras.cli import UsageError, add_command, parse_shape
from reskeras.preprocessing import INTERPOLATIONS


def add_parser(subparsers, name: str) -> None:
    parser = add_command(
        subparsers, name, run_convert,
        help="convert a torchvision/timm ResNet state dict to a .keras model",
        description="Convert a torchvision or timm ResNet state dict (.safetensors, or .pth "
                    "with torch installed) into a reskeras .keras model with the same function "
                    "(reference padding; tested against torchvision's code), plus a "
                    ".reskeras.json file beside it recording the ImageNet preprocessing for "
                    "`reskeras export --model`. Prints the two paths.",
        epilog="See docs/weights.md for where to get weight files.")
    parser.add_argument("weights", metavar="IN", help="a .safetensors or .pth state dict")
    parser.add_argument("--out", required=True, help="the .keras file to write (must not exist)")
    parser.add_argument("--model", help="registry name such as resnet50 (default: inferred "
                                        "from the file's tensors)")
    parser.add_argument("--from", dest="source", choices=("torchvision", "timm"),
                        help="where the file comes from (their ResNet names coincide; "
                             "default torchvision); recorded in the .reskeras.json")
    parser.add_argument("--input-shape", type=parse_shape, metavar="H,W,C",
                        default=(224, 224, 3), help="model input (default 224,224,3)")
    parser.add_argument("--no-top", action="store_true",
                        help="drop the classifier: average-pooled features out")
    parser.add_argument("--resize", type=int, default=256,
                        help="serving: shorter side resized to this before the central crop "
                             "(default 256, torchvision's)")
    parser.add_argument("--interpolation", choices=INTERPOLATIONS, default="bilinear",
                        help="serving resize method (default bilinear, torchvision's)")
    parser.add_argument("--class-names", metavar="FILE",
                        help="a text file with one class name per line")


def _class_names(path: str | None) -> list[str] | None:
    if path is None:
        return None
    if not os.path.isfile(path):
        raise UsageError(f"--class-names must be an existing text file. Received: {path!r}")
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def _spec(args, state):
    from reskeras.specs import get_spec
    from reskeras.weights.loader import infer_spec

    inferred, _, description = infer_spec(state)
    if args.model is not None:
        return get_spec(args.model)
    if inferred is None:
        raise UsageError(f"--model is needed: the architecture could not be inferred "
                         f"({description}). Received: {args.weights!r}")
    return inferred


def run_convert(args: argparse.Namespace) -> int:
    from reskeras.model_file import check_model_path, sidecar_path

    out = check_model_path(args.out)
    for existing in (out, sidecar_path(out)):
        if os.path.exists(existing):
            raise UsageError(f"--out must not exist (reskeras never overwrites a model file). "
                             f"Received: {args.out!r} ({existing} exists)")
    if args.resize < max(args.input_shape[:2]):
        raise UsageError(f"--resize must be at least the input height and width (the central "
                         f"crop is taken after it). Received: --resize {args.resize} with "
                         f"--input-shape {','.join(map(str, args.input_shape))}")
    class_names = _class_names(args.class_names)
    from reskeras.builders import build
    from reskeras.model_file import write_model_file
    from reskeras.preprocessing import imagenet_preprocessing
    from reskeras.weights import files, loader

    path = files.check_path(args.weights)
    state = files.read_state_dict(path)
    spec = _spec(args, state)
    source = loader.check_source(args.source)
    if args.no_top:
        model = build(spec, include_top=False, pooling="avg", input_shape=args.input_shape)
    else:
        classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else None
        model = build(spec, input_shape=args.input_shape, classes=classes)
    tensors = loader.load_state(model, state, source=source, origin=path)
    preprocessing = imagenet_preprocessing(resize=args.resize, interpolation=args.interpolation)
    record = {"kind": source, "file": os.path.abspath(path), "sha256": files.sha256(path),
              "tensors": tensors, "classifier": "dropped" if args.no_top else "loaded"}
    written = write_model_file(model, out, preprocessing=preprocessing, source=record,
                               arch=spec.to_config(), class_names=class_names)
    for line in written:
        print(line)
    return 0
