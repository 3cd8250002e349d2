"""What a training run is asked to do (:class:`TrainConfig`) and its validation.

The same object backs the Python API (``reskeras.train.train(TrainConfig(...))``),
the ``reskeras train`` command line and the tuner; its resolved form is what
``config.json`` stores.
"""

from __future__ import annotations

import dataclasses
import math
import os

from reskeras.recipes import RECIPES
from reskeras.specs import ArchSpec, get_spec, override, resolve_spec, scale

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass
class TrainConfig:
    """A training run. Exactly one of ``model``, ``depth`` or ``arch`` names the network,
    and exactly one of ``epochs`` or ``steps`` the budget.

    Args:
        out: run directory (created; local path or ``gs://``).
        model: registry name such as ``"resnet20"`` or ``"plain56"``.
        depth: depth for ``build_resnet``/``build_plain`` (with ``plain``, ``width``,
            ``version``, ``shortcut``, ``padding``, ``init``, ``init_noise``,
            ``branch_scale``, ``kernel_shaping``, ``batch_norm``, ``family``; see
            ``reskeras.specs.ArchSpec``).
        arch: an ``ArchSpec`` or its ``to_config()`` dict (the tuner passes this).
        dataset: ``"digits"`` (default, offline), ``"synthetic"``, a TFDS name or
            ``"folder:DIR"`` (recorded with DIR made absolute).
        image_size: resize images to this square side (see ``reskeras.data.load_dataset``).
        epochs: passes over the training split. steps: optimizer steps instead.
        batch_size: global batch (default: the recipe's, 128).
        recipe: ``"paper"`` or ``"adam"``; ``lr`` / ``weight_decay`` override it.
        strategy: ``auto|cpu|gpu|mirrored|multiworker|tpu``; ``cpu_replicas`` splits the CPU.
        precision: ``float32``, ``mixed_bfloat16`` or ``mixed_float16`` (GPU only).
        seed: seeds weights, data order and augmentation.
        deterministic: also enable TensorFlow op determinism (bitwise resume).
        sync_bn: BatchNorm statistics over the global batch (all replicas).
        jit_compile: ``"auto"`` (XLA on GPUs and TPUs; on CPUs the faster oneDNN graph,
            with the step lowered to XLA once as a TPU-readiness check), ``True``
            (always XLA) or ``False`` (see ``reskeras.steps``).
        steps_per_execution: train steps per compiled call.
        checkpoint_every: steps between checkpoints (default: one epoch); every epoch
            end is one too when this is at most an epoch, and so is the last step.
        grad_norms_every: log per-layer gradient norms every N steps
            (:class:`reskeras.callbacks.GradientNormLogger`, ``grad_norms.jsonl``).
        activations_every: log layer responses every N steps
            (:class:`reskeras.callbacks.ActivationStatsLogger`, ``activations.jsonl``).
        weights: a torchvision/timm ``.safetensors`` or ``.pth`` file to start from
            (fine-tuning; :mod:`reskeras.weights`): a run starting at step 0 loads it
            whole, with the classifier when the class count matches, else a new one;
            the data are then normalized as the weights expect (ImageNet mean/std).
            Recorded with its sha256 in config.json. Needs a v1 net with the default
            ``padding``, e.g. ``model="resnet50"``.
        weights_source: ``"torchvision"`` or ``"timm"`` (default torchvision's names).
        precise_bn: after the last step, recompute every BatchNorm layer's statistics
            with the final weights (:mod:`reskeras.precise_bn`) and save ``model.keras``
            with them; ``summary.json["precise_bn"]`` holds the test loss and accuracy
            they give. The checkpoints keep the moving averages (the training state).
            Off by default, as in Keras; the study turns it on.
        precise_bn_batches: training batches the statistics average over (default one
            epoch, at most 200), drawn as the next epochs would draw them.
        resume: require an existing run to resume (a run dir holding a checkpoint
            of the same run resumes anyway).
        extend: continue the finished (or interrupted) run in ``out`` to this larger
            ``epochs``/``steps`` budget, from its last checkpoint. Only for a learning
            rate that does not depend on the budget (no step decay, the same warmup;
            :func:`reskeras.rundir.extension_mismatch`): the extended run then equals
            one trained for the larger budget from the start. The old ``summary.json``
            is kept as ``summary.step<N>.json``; ``model.keras`` is replaced at the end.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch, ``None`` picks 1 on a
            terminal and 2 otherwise.
    """

    out: str
    model: str | None = None
    depth: int | None = None
    plain: bool = False
    family: str | None = None
    width: int | None = None
    version: str | None = None
    shortcut: str | None = None
    padding: str | None = None
    init: str | None = None
    init_noise: float | None = None
    branch_scale: float | None = None
    kernel_shaping: str | None = None
    batch_norm: bool = True
    arch: dict | ArchSpec | None = None
    dataset: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    synthetic_shape: tuple[int, int, int] = (32, 32, 3)
    synthetic_classes: int = 10
    synthetic_examples: int = 1024
    augment: bool = True
    epochs: int | None = None
    steps: int | None = None
    batch_size: int | None = None
    recipe: str = "paper"
    lr: float | None = None
    weight_decay: float | None = None
    strategy: str = "auto"
    cpu_replicas: int | None = None
    precision: str = "float32"
    seed: int = 0
    deterministic: bool = False
    sync_bn: bool = False
    jit_compile: bool | str = "auto"
    steps_per_execution: int = 8
    checkpoint_every: int | None = None
    grad_norms_every: int | None = None
    activations_every: int | None = None
    weights: str | None = None
    weights_source: str | None = None
    precise_bn: bool = False
    precise_bn_batches: int | None = None
    resume: bool = False
    extend: bool = False
    verbose: int | None = None

    def __post_init__(self):
        from reskeras.data import canonical_name

        if isinstance(self.dataset, str) and self.dataset:
            self.dataset = canonical_name(self.dataset)
        if isinstance(self.weights, str) and self.weights and "://" not in self.weights:
            self.weights = os.path.abspath(self.weights)

    def validate(self) -> None:
        """Raises ValueError naming the first bad argument and its value."""
        named = [n for n in ("model", "depth", "arch") if getattr(self, n) is not None]
        if len(named) != 1:
            raise ValueError("exactly one of `model`, `depth` or `arch` must name the network. "
                             f"Received: {', '.join(f'{n}={getattr(self, n)!r}' for n in named) or 'none'}")
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("exactly one of `epochs` or `steps` must be given. "
                             f"Received: epochs={self.epochs!r}, steps={self.steps!r}")
        for name in ("epochs", "steps", "batch_size", "cpu_replicas", "checkpoint_every",
                     "grad_norms_every", "activations_every",
                     "image_size", "steps_per_execution", "synthetic_classes",
                     "synthetic_examples", "precise_bn_batches"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        if self.jit_compile not in (True, False, "auto"):
            raise ValueError("`jit_compile` must be True, False or 'auto'. "
                             f"Received: jit_compile={self.jit_compile!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"`precision` must be one of {', '.join(map(repr, PRECISIONS))}. "
                             f"Received: precision={self.precision!r}")
        if self.recipe not in RECIPES:
            raise ValueError(f"`recipe` must be one of {', '.join(map(repr, RECIPES))}. "
                             f"Received: recipe={self.recipe!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer. Received: seed={self.seed!r}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"`lr` must be a positive number. Received: lr={self.lr!r}")
        if self.precise_bn_batches is not None and not self.precise_bn:
            raise ValueError("`precise_bn_batches` needs `precise_bn=True`. "
                             f"Received: precise_bn_batches={self.precise_bn_batches!r}, "
                             f"precise_bn={self.precise_bn!r}")
        if not self.out:
            raise ValueError(f"`out` must name a run directory. Received: out={self.out!r}")
        if self.weights is not None:
            from reskeras.weights import files, loader

            files.check_path(self.weights)
            loader.check_source(self.weights_source)

    def resolve_arch(self) -> ArchSpec:
        """The architecture spec this config names (validated by the spec table)."""
        if self.arch is not None:
            return self.arch if isinstance(self.arch, ArchSpec) else ArchSpec.from_config(self.arch)
        overrides = {"version": self.version, "shortcut": self.shortcut,
                     "padding": self.padding, "init": self.init, "init_noise": self.init_noise,
                     "branch_scale": self.branch_scale, "kernel_shaping": self.kernel_shaping}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if not self.batch_norm:
            overrides["batch_norm"] = False
        if self.model is not None:
            spec = get_spec(self.model)
            return scale(override(spec, **overrides), width=self.width)
        return resolve_spec(self.depth, family=self.family, residual=not self.plain,
                            width=self.width, **overrides)
