"""``reskeras train``: train a plain or residual net, resumable after any crash.

Examples::

    reskeras train --model resnet20 --dataset digits --epochs 5 --out runs/r20
    reskeras train --depth 56 --plain --no-bn --dataset digits --steps 400 --recipe adam --out runs/p56
    reskeras train --model resnet20 --dataset digits --epochs 2 --strategy mirrored --cpu-replicas 2 --out runs/m
    reskeras train --resume --out runs/r20       # continue from the last checkpoint
"""

from __future__ import annotations

import argparse
import sys

from reskeras.cli import UsageError, add_command, parse_shape
from reskeras.specs import FAMILIES, INITS, PADDINGS, SHORTCUTS, VERSIONS

_STRATEGIES = ("auto", "cpu", "gpu", "mirrored", "multiworker", "tpu")
_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
_RECIPES = ("paper", "adam")


def add_parser(subparsers, name: str) -> None:
    parser = add_command(
        subparsers, name, run_train, help="train a model into a run directory",
        description="Train a plain or residual net on one device, several GPUs or CPUs, several "
                    "hosts (TF_CONFIG) or a TPU. The run directory holds config.json, "
                    "checkpoints/, tensorboard/, metrics.jsonl and model.keras; re-running the "
                    "same command resumes from the last checkpoint.")
    net = parser.add_argument_group("network (one of --model or --depth)")
    net.add_argument("--model", help="registry name: resnet20, plain56, resnet50, ...")
    net.add_argument("--depth", type=int, help="depth for build_resnet/build_plain")
    net.add_argument("--plain", action="store_true", help="plain twin (no shortcuts)")
    net.add_argument("--family", choices=FAMILIES, help="override the depth's default family")
    net.add_argument("--width", type=int, help="base width (first-stage filters)")
    net.add_argument("--version", choices=VERSIONS, help="v1 or v2 (pre-activation)")
    net.add_argument("--shortcut", choices=SHORTCUTS, help="shortcut option A, B or C")
    net.add_argument("--padding", choices=PADDINGS,
                     help="strided convs: symmetric (default, as torchvision/timm) or tf_same "
                          "(TensorFlow's bottom/right 'same')")
    net.add_argument("--no-bn", action="store_true", help="no BatchNorm (conv with bias)")
    net.add_argument("--init", choices=INITS,
                     help="conv init: he_normal (default), dirac (identity + noise, DiracNets), "
                          "dirac_permuted (its output channels permuted: far from the "
                          "identity), delta_orthogonal (Xiao et al. 2018) or fixup (Zhang et "
                          "al. 2019; residual nets with --no-bn); delta_scaled_orthogonal "
                          "(DKS/TAT's kernels)")
    net.add_argument("--kernel-shaping", choices=("tat",),
                     help="tat: a plain net with no BN that trains deep by Tailored Activation "
                          "Transformation (with --plain; docs/kernel_shaping.md)")
    net.add_argument("--init-noise", type=float, metavar="X",
                     help="with --init dirac or dirac_permuted: He-normal noise scale "
                          "(default 0.1)")
    net.add_argument("--branch-scale", type=float, metavar="X",
                     help="learnable scalar on each residual branch, starting at X (0: SkipInit)")
    net.add_argument("--weights", metavar="PATH",
                     help="start from a torchvision/timm .safetensors or .pth file "
                          "(fine-tuning; see docs/weights.md)")
    net.add_argument("--weights-from", choices=("torchvision", "timm"),
                     help="where --weights comes from (default torchvision)")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", help="digits (offline default), synthetic, cifar10, cifar100, "
                                        "mnist, fashion_mnist, imagenette or any TFDS name")
    data.add_argument("--data-dir", help="TFDS data directory (local or gs://)")
    data.add_argument("--image-size", type=int, help="resize images to this square size")
    data.add_argument("--no-augment", action="store_true", help="no pad/crop/flip")
    data.add_argument("--synthetic-shape", type=parse_shape, metavar="H,W,C",
                      help="synthetic image shape (default 32,32,3)")
    data.add_argument("--synthetic-classes", type=int, help="synthetic classes (default 10)")
    data.add_argument("--synthetic-examples", type=int, help="synthetic train examples (1024)")
    budget = parser.add_argument_group("budget and optimizer")
    budget.add_argument("--epochs", type=int, help="passes over the training split")
    budget.add_argument("--steps", type=int, help="optimizer steps (instead of --epochs)")
    budget.add_argument("--batch-size", type=int, help="global batch (default 128)")
    budget.add_argument("--recipe", choices=_RECIPES, help="paper (SGD, default) or adam")
    budget.add_argument("--lr", type=float, help="learning rate (default: the recipe's, "
                                                 "scaled linearly with the batch for paper)")
    budget.add_argument("--weight-decay", type=float, help="L2 on kernels (paper: 1e-4)")
    run = parser.add_argument_group("execution")
    run.add_argument("--strategy", choices=_STRATEGIES, help="where to run (default auto)")
    run.add_argument("--cpu-replicas", type=int, help="split the CPU into N logical devices")
    run.add_argument("--precision", choices=_PRECISIONS, help="float32 (default) or mixed")
    run.add_argument("--sync-bn", action="store_true", help="BatchNorm over the global batch")
    run.add_argument("--xla", choices=("auto", "on", "off"),
                     help="XLA: auto (default: on GPUs/TPUs; on CPUs the oneDNN graph plus an "
                          "XLA lowering check), on, off")
    run.add_argument("--no-xla", action="store_true", help="same as --xla off")
    run.add_argument("--steps-per-execution", type=int, help="steps per compiled call (8)")
    run.add_argument("--checkpoint-every", type=int, help="steps between checkpoints "
                     "(default: each epoch; the last step is always one)")
    run.add_argument("--grad-norms-every", type=int, metavar="N",
                     help="log per-layer gradient norms every N steps (grad_norms.jsonl)")
    run.add_argument("--activations-every", type=int, metavar="N",
                     help="log layer responses every N steps (activations.jsonl)")
    run.add_argument("--precise-bn", action="store_true",
                     help="after the last step, recompute BatchNorm statistics with the final "
                          "weights and save model.keras with them (docs/training.md)")
    run.add_argument("--precise-bn-batches", type=int, metavar="N",
                     help="training batches precise BN averages over (default one epoch, at "
                          "most 200)")
    run.add_argument("--seed", type=int, help="seed of weights, data order, augmentation (0)")
    run.add_argument("--deterministic", action="store_true",
                     help="TensorFlow op determinism: a resumed run ends bitwise equal")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out (its config.json supplies what is omitted)")
    run.add_argument("--out", required=True, help="run directory")


def _config_from_args(args: argparse.Namespace):
    from reskeras import rundir
    from reskeras.train_config import TrainConfig

    saved = None
    if args.resume and args.model is None and args.depth is None:
        try:
            saved = rundir.read_config(args.out)
        except ValueError:
            raise UsageError(f"`resume` needs a run directory holding {rundir.CONFIG}. "
                             f"Received: out={args.out!r}") from None
    values = _saved_values(saved) if saved else {}
    given = {
        "model": args.model, "depth": args.depth, "family": args.family, "width": args.width,
        "version": args.version, "shortcut": args.shortcut, "padding": args.padding,
        "init": args.init, "init_noise": args.init_noise, "branch_scale": args.branch_scale,
        "kernel_shaping": args.kernel_shaping,
        "dataset": args.dataset,
        "data_dir": args.data_dir, "image_size": args.image_size,
        "synthetic_shape": args.synthetic_shape, "synthetic_classes": args.synthetic_classes,
        "synthetic_examples": args.synthetic_examples, "epochs": args.epochs,
        "steps": args.steps, "batch_size": args.batch_size, "recipe": args.recipe,
        "lr": args.lr, "weight_decay": args.weight_decay, "strategy": args.strategy,
        "cpu_replicas": args.cpu_replicas, "precision": args.precision, "seed": args.seed,
        "steps_per_execution": args.steps_per_execution,
        "checkpoint_every": args.checkpoint_every,
        "grad_norms_every": args.grad_norms_every, "activations_every": args.activations_every,
        "weights": args.weights, "weights_source": args.weights_from,
        "precise_bn_batches": args.precise_bn_batches,
    }
    values.update({k: v for k, v in given.items() if v is not None})
    if args.xla is not None:
        values["jit_compile"] = {"auto": "auto", "on": True, "off": False}[args.xla]
    for flag, key, value in (("plain", "plain", True), ("no_bn", "batch_norm", False),
                             ("no_augment", "augment", False), ("sync_bn", "sync_bn", True),
                             ("no_xla", "jit_compile", False),
                             ("deterministic", "deterministic", True),
                             ("precise_bn", "precise_bn", True)):
        if getattr(args, flag):
            values[key] = value
    if values.get("epochs") is not None and args.steps is None and "steps" in values and saved:
        values.pop("steps")
    if not values.get("dataset"):
        raise UsageError("--dataset is required (digits works offline)")
    return TrainConfig(out=args.out, resume=args.resume, **values)


def _saved_values(saved: dict) -> dict:
    """TrainConfig arguments that reproduce a saved run (for ``--resume --out DIR``)."""
    training, dataset, plan = saved["training"], saved["dataset"], saved["training"]["plan"]
    values = {"arch": saved["arch"], "dataset": dataset["name"], "data_dir": dataset["data_dir"],
              "image_size": dataset["image_size"], "augment": dataset["augment"],
              "steps": training["total_steps"], "batch_size": training["batch_size"],
              "recipe": plan["recipe"], "lr": plan["base_lr"],
              "weight_decay": plan["weight_decay"], "precision": training["precision"],
              "seed": training["seed"], "deterministic": training["deterministic"],
              "sync_bn": training["sync_bn"], "jit_compile": training["jit_compile"],
              "checkpoint_every": training["checkpoint_every"],
              "grad_norms_every": training.get("grad_norms_every"),
              "activations_every": training.get("activations_every"),
              "strategy": training["strategy"], "cpu_replicas": training["cpu_replicas"],
              "steps_per_execution": training["steps_per_execution"]}
    if training.get("precise_bn"):  # the resumed run ends as the first one was asked to
        values.update(precise_bn=True, precise_bn_batches=training["precise_bn"]["batches"])
    if saved.get("weights"):  # the same normalization as the run's first steps
        values.update(weights=saved["weights"]["file"], weights_source=saved["weights"]["source"])
    if dataset["name"] == "synthetic":
        values.update(synthetic_shape=tuple(dataset["shape"]),
                      synthetic_classes=dataset["classes"],
                      synthetic_examples=dataset["examples"])
    return values


def run_train(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    config.validate()
    from reskeras import rundir
    from reskeras.train import TrainingDiverged, train

    try:
        result = train(config)
    except TrainingDiverged as error:
        print(f"reskeras train: {error}", file=sys.stderr)
        return 1
    if result.status == "already finished":
        print(f"{config.out}: this run already finished at step {result.step}; nothing to do")
    else:
        last = result.history[-1] if result.history else {}
        if last:
            print(f"{result.status} at step {result.step}: loss {last['loss']:.4f}, "
                  f"accuracy {last['accuracy']:.4f}, val_accuracy {last['val_accuracy']:.4f} "
                  f"-> {config.out}")
        precise = (rundir.read_summary(config.out) or {}).get("precise_bn")
        if precise:
            print(f"precise BN statistics ({precise['batches']} batches of "
                  f"{precise['batch_size']}): val_accuracy {precise['val_accuracy']:.4f}, "
                  f"saved in {rundir.MODEL}")
    return 0

