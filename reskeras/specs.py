"""The architecture spec table: every ResNet and plain twin is a row here.

An :class:`ArchSpec` is a frozen, JSON-serializable description of a network
(block type, blocks per stage, filters per stage, stem, shortcut option,
version, residual or plain, BatchNorm or not). Builders read specs; they never
hard-code depths or widths. Named rows (``resnet56``, ``plain34``, ...) come
from :data:`_PAPER_ROWS`; any other valid depth or width is derived with
:func:`scale`.

Example:

>>> from reskeras.specs import get_spec, scale
>>> spec = get_spec("resnet56")
>>> spec.depths, spec.widths
((9, 9, 9), (16, 32, 64))
>>> scale(spec, depth=20, width=32).widths
(32, 64, 128)
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

FAMILIES = ("cifar", "imagenet")
BLOCKS = ("basic", "bottleneck")
VERSIONS = ("v1", "v2")
SHORTCUTS = ("A", "B", "C")
# How strided convs and the ImageNet stem pool pad. "symmetric": (k - 1) // 2 zeros on every
# side, then a "valid" conv, as Torch, torchvision, timm, Caffe and keras.applications do (the
# only way published weights compute what they were trained to). "tf_same": TensorFlow's
# padding="same", which for even inputs pads only bottom/right (same shapes, other function).
PADDINGS = ("symmetric", "tf_same")
INITS = ("he_normal", "dirac", "dirac_permuted", "delta_orthogonal", "delta_scaled_orthogonal",
         "fixup")
# Kernel shaping of plain nets without BN (reskeras.kernel_shaping): None or "tat".
KERNEL_SHAPINGS = (None, "tat")
_TAT_INIT = "delta_scaled_orthogonal"
# Spec configs written before reskeras recorded `padding` were built with TensorFlow's "same".
LEGACY_PADDING = "tf_same"

# Layers per block that carry a conv on the main path (the depth count of He 2015).
CONVS_PER_BLOCK = {"basic": 2, "bottleneck": 3}
# Output channels of a block relative to its width (He 2015, Fig. 5).
EXPANSION = {"basic": 1, "bottleneck": 4}

# Stage layouts of the ImageNet family (He 2015, Table 1; He 2016 for 200).
_IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
# CIFAR rows named in the papers: He 2015 (basic, 6n+2) and He 2016 (bottleneck, 9n+2).
_CIFAR_PAPER_DEPTHS = {
    20: "basic", 32: "basic", 44: "basic", 56: "basic", 110: "basic", 1202: "basic",
    164: "bottleneck", 1001: "bottleneck",
}
_DEFAULTS = {
    # family: (base width, stage count, default shortcut, total stride)
    "cifar": (16, 3, "A", 4),
    "imagenet": (64, 4, "B", 32),
}


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """A complete, immutable description of one network.

    Attributes:
        family: ``"cifar"`` (3x3 stem, 3 stages) or ``"imagenet"`` (7x7/2 stem
            and 3x3/2 max pool, 4 stages).
        block: ``"basic"`` (two 3x3 convs) or ``"bottleneck"`` (1x1-3x3-1x1,
            output 4x the width).
        depths: blocks per stage.
        widths: filters per stage (a bottleneck stage outputs 4x this).
        stem_width: filters of the stem conv.
        version: ``"v1"`` (post-activation, He 2015) or ``"v2"``
            (pre-activation, He 2016).
        shortcut: ``"A"`` zero-pad identity, ``"B"`` projection when the shape
            changes, ``"C"`` projection everywhere. Ignored when not residual.
        residual: ``False`` gives the plain twin (same layers, no shortcuts).
        batch_norm: ``False`` drops BatchNorm and gives convs a bias.
        zero_init_residual: zero the last BN gamma of each residual branch.
        padding: ``"symmetric"`` (default: the reference ResNets' explicit zero
            padding on both sides before every strided conv and the ImageNet
            stem pool) or ``"tf_same"`` (TensorFlow's ``padding="same"``,
            bottom/right only for even inputs; what reskeras built before 0.2).
        init: conv kernels start ``"he_normal"`` (He et al. 2015), ``"dirac"``:
            the identity on the first ``min(c_in, c_out)`` channels plus
            ``init_noise`` x He-normal noise (DiracNets;
            :class:`reskeras.initializers.Dirac`), ``"dirac_permuted"``: the same
            with the output channels permuted by a random cycle
            (:class:`~reskeras.initializers.PermutedDirac`), or
            ``"delta_orthogonal"``: sqrt(2) x a random orthogonal centre tap
            (Xiao et al. 2018; :class:`~reskeras.initializers.DeltaOrthogonal`),
            ``"delta_scaled_orthogonal"``: a random orthogonal centre tap times
            ``max(sqrt(c_out / c_in), 1)`` (DKS/TAT's kernels;
            :class:`~reskeras.initializers.ScaledDeltaOrthogonal`), or
            ``"fixup"`` (Zhang et al. 2019; residual nets without BN, v1): the
            last conv of each branch starts at 0, the others at He x
            ``L ** (-1 / (2m - 2))`` (``L`` blocks of ``m`` convs), scalar biases
            before each branch conv and activation, a multiplier starting at 1 on
            each branch, and a zero classifier (:mod:`reskeras.blocks`).
        init_noise: the noise scale of the two Dirac inits (ignored otherwise).
        branch_scale: ``None``, or the starting value of a learnable scalar
            multiplying each residual branch (0 is SkipInit; residual nets only).
        kernel_shaping: ``None``, or ``"tat"``: a plain CIFAR v1 net shaped by
            Tailored Activation Transformation (Zhang et al. 2022): no BatchNorm,
            ``init="delta_scaled_orthogonal"``, zero biases, per-location normalization
            of the input and a leaky ReLU shaped for the depth by ``dks``
            (:mod:`reskeras.kernel_shaping`).
    """

    family: str
    block: str
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    stem_width: int
    version: str = "v1"
    shortcut: str = "A"
    residual: bool = True
    batch_norm: bool = True
    zero_init_residual: bool = False
    padding: str = "symmetric"
    init: str = "he_normal"
    init_noise: float = 0.1
    branch_scale: float | None = None
    kernel_shaping: str | None = None

    def __post_init__(self):
        _check_choice("family", self.family, FAMILIES)
        _check_choice("padding", self.padding, PADDINGS)
        _check_choice("block", self.block, BLOCKS)
        _check_choice("version", self.version, VERSIONS)
        _check_choice("shortcut", self.shortcut, SHORTCUTS)
        object.__setattr__(self, "depths", tuple(self.depths))
        object.__setattr__(self, "widths", tuple(self.widths))
        stages = _DEFAULTS[self.family][1]
        for field in ("depths", "widths"):
            value = getattr(self, field)
            if len(value) != stages or not all(_is_int(v) and v >= 1 for v in value):
                raise ValueError(
                    f"`{field}` must be {stages} positive integers for the {self.family} "
                    f"family. Received: {field}={value!r}")
        if not _is_int(self.stem_width) or self.stem_width < 1:
            raise ValueError(f"`stem_width` must be a positive integer. "
                             f"Received: stem_width={self.stem_width!r}")
        _check_choice("init", self.init, INITS)
        check_init_noise(self.init_noise)
        object.__setattr__(self, "init_noise", float(self.init_noise))
        if self.branch_scale is not None:
            if (isinstance(self.branch_scale, bool)
                    or not isinstance(self.branch_scale, (int, float))
                    or self.branch_scale != self.branch_scale):
                raise ValueError(f"`branch_scale` must be None or a number. "
                                 f"Received: branch_scale={self.branch_scale!r}")
            if not self.residual:
                raise ValueError("`branch_scale` scales residual branches: it needs residual=True "
                                 f"(a plain twin has none). Received: "
                                 f"branch_scale={self.branch_scale!r}, residual=False")
            object.__setattr__(self, "branch_scale", float(self.branch_scale))
        if self.init == "fixup" and (not self.residual or self.batch_norm
                                     or self.version != "v1" or self.branch_scale is not None):
            raise ValueError(
                "`init='fixup'` initializes residual nets without normalization (Zhang et al. "
                "2019): it needs residual=True, batch_norm=False, version='v1' and "
                "branch_scale=None (it has its own branch multiplier). Received: "
                f"residual={self.residual}, batch_norm={self.batch_norm}, "
                f"version={self.version!r}, branch_scale={self.branch_scale!r}")
        _check_choice("kernel_shaping", self.kernel_shaping, KERNEL_SHAPINGS)
        if self.kernel_shaping == "tat" and (
                self.residual or self.batch_norm or self.init != _TAT_INIT
                or self.family != "cifar" or self.version != "v1"):
            raise ValueError(
                "`kernel_shaping='tat'` shapes plain CIFAR v1 nets without normalization "
                f"(Zhang et al. 2022): it needs residual=False, batch_norm=False, "
                f"init={_TAT_INIT!r}, family='cifar' and version='v1'. Received: "
                f"residual={self.residual}, batch_norm={self.batch_norm}, init={self.init!r}, "
                f"family={self.family!r}, version={self.version!r}")
        if self.zero_init_residual and not (self.residual and self.batch_norm):
            raise ValueError(
                "`zero_init_residual=True` needs residual=True and batch_norm=True "
                "(it zeroes the last BatchNorm gamma of each residual branch). "
                f"Received: residual={self.residual}, batch_norm={self.batch_norm}")

    @property
    def depth(self) -> int:
        """Weighted layers on the main path: convs plus the classifier (He 2015)."""
        return CONVS_PER_BLOCK[self.block] * sum(self.depths) + 2

    @property
    def total_stride(self) -> int:
        """Downsampling factor from input to the last stage."""
        return _DEFAULTS[self.family][3]

    @property
    def name(self) -> str:
        """Registry-style name with a suffix for each non-default choice.

        ``resnet56``, ``plain56``, ``resnet50_cifar``, ``resnet20_v2_B_w32``, ``plain20_nobn``,
        ``resnet50_tfsame``.
        """
        parts = [f"{'resnet' if self.residual else 'plain'}{self.depth}"]
        if self.family != default_family(self.depth):
            parts.append(self.family)
        if self.family == "cifar" and self.block != _default_cifar_block(self.depth):
            parts.append(self.block)
        if self.version != "v1":
            parts.append(self.version)
        if self.residual and self.shortcut != _DEFAULTS[self.family][2]:
            parts.append(self.shortcut)
        if self.widths[0] != _DEFAULTS[self.family][0]:
            parts.append(f"w{self.widths[0]}")
        if self.kernel_shaping is not None:  # implies no BN and its own init
            parts.append(self.kernel_shaping)
        elif not self.batch_norm:
            parts.append("nobn")
        if self.zero_init_residual:
            parts.append("zeroinit")
        if self.padding != "symmetric":
            parts.append("tfsame")
        if self.init in ("dirac", "dirac_permuted"):
            kind = {"dirac": "dirac", "dirac_permuted": "diracperm"}[self.init]
            parts.append(kind if self.init_noise == 0.1 else f"{kind}{self.init_noise:g}")
        elif self.init in ("delta_orthogonal", "fixup") or (
                self.init == _TAT_INIT and self.kernel_shaping is None):
            parts.append({"delta_orthogonal": "deltaorth", "fixup": "fixup",
                          _TAT_INIT: "scaledorth"}[self.init])
        if self.branch_scale is not None:
            parts.append(f"bs{self.branch_scale:g}")
        return "_".join(parts)

    def to_config(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_config` inverts it exactly.

        ``kernel_shaping`` appears only when set: a net without it has the config it had
        before the field existed, so run directories written then still resume and extend.
        """
        config = dataclasses.asdict(self)
        config["depths"] = list(self.depths)
        config["widths"] = list(self.widths)
        if config["kernel_shaping"] is None:
            del config["kernel_shaping"]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ArchSpec":
        """The spec of a :meth:`to_config` dict.

        A dict without ``padding`` was written before reskeras recorded it (run
        dirs, tuner dirs and exports of reskeras 0.1), when every strided conv
        used TensorFlow's ``"same"``: it rebuilds as ``padding="tf_same"``, so
        saved weights keep computing what they were trained to.
        """
        if isinstance(config, dict) and "padding" not in config:
            config = {**config, "padding": LEGACY_PADDING}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"Unknown ArchSpec fields {unknown}. Received: config={config!r}")
        return cls(**config)


def check_init_noise(noise) -> None:
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise ValueError(f"`init_noise` must be a number >= 0 (the He-normal noise added to the "
                         f"identity, as a fraction of He's scale). Received: init_noise={noise!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_choice(arg: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"`{arg}` must be one of {', '.join(map(repr, choices))}. "
                         f"Received: {arg}={value!r}")


def valid_depths(family: str, block: str | None = None, limit: int = 1202) -> list[int]:
    """Depths accepted for ``family`` (CIFAR: all of 6n+2 / 9n+2 up to ``limit``)."""
    _check_choice("family", family, FAMILIES)
    if family == "imagenet":
        return sorted(d for d, (b, _) in _IMAGENET_DEPTHS.items() if block in (None, b))
    blocks = [block] if block else list(BLOCKS)
    depths = set()
    for b in blocks:
        step = 3 * CONVS_PER_BLOCK[b]
        depths.update(range(step + 2, limit + 1, step))
    return sorted(depths)


def _depth_error(depth, family: str, block: str | None) -> ValueError:
    if family == "imagenet":
        rule = f"one of {', '.join(map(str, valid_depths(family, block)))}"
        where = "the imagenet family" + (f" with block={block!r}" if block else "")
    else:
        rules = {"basic": "6n+2", "bottleneck": "9n+2", None: "6n+2 (basic) or 9n+2 (bottleneck)"}
        examples = ", ".join(map(str, valid_depths(family, block)[:6]))
        rule = f"{rules[block]} with n >= 1 ({examples}, ...)"
        where = "the cifar family" + (f" with block={block!r}" if block else "")
    return ValueError(f"`depth` must be {rule} for {where}. Received: depth={depth!r}")


def _default_cifar_block(depth: int) -> str | None:
    """The paper's block for named depths, else basic (6n+2) before bottleneck (9n+2)."""
    if depth in _CIFAR_PAPER_DEPTHS:
        return _CIFAR_PAPER_DEPTHS[depth]
    return next((b for b in BLOCKS
                 if depth > 2 and (depth - 2) % (3 * CONVS_PER_BLOCK[b]) == 0), None)


def default_family(depth: int) -> str:
    """ImageNet for the ImageNet paper depths (18, 34, 50, 101, 152), CIFAR otherwise."""
    return "imagenet" if depth in (18, 34, 50, 101, 152) else "cifar"


def resolve_spec(depth: int, *, family: str | None = None, block: str | None = None,
                 width: int | None = None, version: str = "v1", shortcut: str | None = None,
                 residual: bool = True, batch_norm: bool | None = None,
                 zero_init_residual: bool = False, padding: str = "symmetric",
                 init: str | None = None, init_noise: float = 0.1,
                 branch_scale: float | None = None,
                 kernel_shaping: str | None = None) -> ArchSpec:
    """Turns builder arguments into an :class:`ArchSpec`, validating each one.

    Args:
        depth: weighted layers (convs + classifier). CIFAR: 6n+2 with basic
            blocks, 9n+2 with bottlenecks (164 and 1001 are bottlenecks, as in
            He 2016; other depths valid for both use basic blocks unless
            ``block`` says otherwise). ImageNet: 18, 34, 50, 101, 152, 200.
        family: ``None`` picks ImageNet for 18/34/50/101/152 and CIFAR otherwise.
        block: ``None`` picks the block of the paper row or the rule above.
        width: base filters of the first stage (later stages double it);
            defaults to 16 (CIFAR) or 64 (ImageNet). The stem scales with it.
        version, shortcut, residual, batch_norm, zero_init_residual, padding, init,
            init_noise, branch_scale, kernel_shaping: see :class:`ArchSpec`;
            ``shortcut=None`` is A for CIFAR, B for ImageNet; ``batch_norm=None`` and
            ``init=None`` mean True and ``"he_normal"``, or with
            ``kernel_shaping="tat"`` False and ``"delta_scaled_orthogonal"``.
    """
    if not _is_int(depth) or depth < 1:
        raise ValueError(f"`depth` must be a positive integer. Received: depth={depth!r}")
    _check_choice("kernel_shaping", kernel_shaping, KERNEL_SHAPINGS)
    shaped = kernel_shaping is not None
    if batch_norm is None:
        batch_norm = not shaped
    if init is None:
        init = _TAT_INIT if shaped else "he_normal"
    if family is None:
        family = default_family(depth)
    _check_choice("family", family, FAMILIES)
    if block is not None:
        _check_choice("block", block, BLOCKS)
    base_width, stages, default_shortcut, _ = _DEFAULTS[family]

    if family == "imagenet":
        if depth not in _IMAGENET_DEPTHS or block not in (None, _IMAGENET_DEPTHS[depth][0]):
            raise _depth_error(depth, family, block)
        block, depths = _IMAGENET_DEPTHS[depth]
    else:
        block = block or _default_cifar_block(depth)
        if block is None or depth <= 2 or (depth - 2) % (3 * CONVS_PER_BLOCK[block]):
            raise _depth_error(depth, family, block)
        depths = ((depth - 2) // (3 * CONVS_PER_BLOCK[block]),) * stages

    if width is None:
        width = base_width
    if not _is_int(width) or width < 1:
        raise ValueError(f"`width` must be an integer >= 1. Received: width={width!r}")
    widths = tuple(width * 2 ** s for s in range(stages))
    # The stem has as many filters as the first stage in both families (16 / 64),
    # so a width multiplier scales the whole net.
    return ArchSpec(family=family, block=block, depths=depths, widths=widths,
                    stem_width=width, version=version,
                    shortcut=default_shortcut if shortcut is None else shortcut,
                    residual=bool(residual), batch_norm=bool(batch_norm),
                    zero_init_residual=bool(zero_init_residual), padding=padding, init=init,
                    init_noise=init_noise, branch_scale=branch_scale,
                    kernel_shaping=kernel_shaping)


def override(spec: ArchSpec, **changes) -> ArchSpec:
    """``dataclasses.replace(spec, **changes)``, where ``kernel_shaping="tat"`` brings its
    ``batch_norm=False`` and ``init="delta_scaled_orthogonal"`` unless they are given."""
    if changes.get("kernel_shaping") == "tat":
        changes = {"batch_norm": False, "init": _TAT_INIT, **changes}
    return dataclasses.replace(spec, **changes) if changes else spec


def scale(spec: ArchSpec, *, depth: int | None = None, width: int | None = None) -> ArchSpec:
    """The same architecture at another depth and/or base width (for the tuner).

    Everything but the stage depths and widths is kept: family, version,
    shortcut option, residual, BatchNorm, padding, initialization, branch scale, kernel
    shaping. The block type is kept too, so a
    bottleneck spec only accepts bottleneck depths.
    """
    if depth is None and width is None:
        return spec
    return resolve_spec(spec.depth if depth is None else depth, family=spec.family,
                        block=spec.block, width=spec.widths[0] if width is None else width,
                        version=spec.version, shortcut=spec.shortcut, residual=spec.residual,
                        batch_norm=spec.batch_norm,
                        zero_init_residual=spec.zero_init_residual, padding=spec.padding,
                        init=spec.init, init_noise=spec.init_noise,
                        branch_scale=spec.branch_scale, kernel_shaping=spec.kernel_shaping)


def _paper_rows() -> dict[str, ArchSpec]:
    rows = {}
    for residual in (True, False):
        for depth in sorted(_CIFAR_PAPER_DEPTHS):
            spec = resolve_spec(depth, family="cifar", residual=residual)
            rows[spec.name] = spec
        for depth in sorted(_IMAGENET_DEPTHS):
            spec = resolve_spec(depth, family="imagenet", residual=residual)
            rows[spec.name] = spec
    return rows


_PAPER_ROWS: dict[str, ArchSpec] = _paper_rows()
_NAME_RE = re.compile(r"^(resnet|plain)(\d+)$")


def list_models() -> list[str]:
    """Registry names, residual nets first, each family by depth."""
    return sorted(_PAPER_ROWS, key=lambda n: (n.startswith("plain"), _PAPER_ROWS[n].family,
                                              _PAPER_ROWS[n].depth))


def get_spec(name: str) -> ArchSpec:
    """The spec of a registry name such as ``resnet56`` or ``plain34``.

    Names of other valid CIFAR depths (``resnet8``, ``plain26``) resolve too.
    """
    if isinstance(name, str) and name in _PAPER_ROWS:
        return _PAPER_ROWS[name]
    match = _NAME_RE.match(name) if isinstance(name, str) else None
    if match:
        depth = int(match.group(2))
        try:
            return resolve_spec(depth, residual=match.group(1) == "resnet")
        except ValueError:
            pass
    raise ValueError(f"`name` must be a registry name such as {', '.join(list_models()[:6])} "
                     f"(see reskeras.list_models()). Received: name={name!r}")
