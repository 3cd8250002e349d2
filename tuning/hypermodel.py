"""``ResNetHyperModel``: a Keras Tuner hypermodel over depth x width of reskeras specs.

A sample of the search space becomes an :class:`reskeras.specs.ArchSpec`
(:func:`reskeras.specs.resolve_spec` or the spec's stage layout), ``build()``
calls the reskeras builder and ``fit()`` runs the reskeras trainer, so a trial
gets everything a ``reskeras train`` run gets: every strategy (multi-worker and
TPU included), checkpoints that survive a kill, gradient logs, ``model.keras``.
Nothing here builds blocks or writes a training loop.

Hyperparameters (names are stable; the leaderboard and docs use them):

==================  ===========================================================
``depth``           Choice over network depths valid for the family (CIFAR 6n+2 /
                    9n+2, ImageNet 18/34/50/101/152/200), ordered, default the
                    smallest; or, with ``stage_blocks``, ``stage{s}_blocks``
                    Choices of blocks per stage instead.
``width``           Choice of base filters (first stage; later stages double).
``residual``        Boolean with ``search_residual=True``, else Fixed.
``version``         ``v1``/``v2``: Choice when a list is given, Fixed for one value.
``shortcut``        ``A``/``B``/``C``: the same (absent: the family's default).
``lr``              learning rate: the same (absent: the recipe's).
``weight_decay``    the same (absent: the recipe's).
==================  ===========================================================

Example (stock Keras Tuner; ``reskeras tune`` uses :class:`tuning.tuner.ReskerasTuner`):

>>> import keras_tuner as kt
>>> from tuning import ResNetHyperModel
>>> hypermodel = ResNetHyperModel((8, 8, 1), 10, depths=[8, 14], widths=[4, 8],
...                               dataset="digits")
>>> tuner = kt.Hyperband(hypermodel, objective="val_accuracy", max_epochs=3,
...                      directory="kt-digits", project_name="r")  # doctest: +SKIP
>>> tuner.search()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras_tuner as kt

from reskeras import rundir
from reskeras.specs import (FAMILIES, INITS, LEGACY_PADDING, PADDINGS, SHORTCUTS, VERSIONS,
                            ArchSpec, resolve_spec, valid_depths)
from reskeras.train_config import TrainConfig

DEFAULT_DEPTHS = {"cifar": (8, 14, 20, 26, 32), "imagenet": (18, 34, 50)}
DEFAULT_WIDTHS = {"cifar": (8, 16, 32), "imagenet": (32, 64)}
# TrainConfig fields the hypermodel sets itself; everything else may be passed on
_OWN_FIELDS = {"out", "model", "depth", "plain", "family", "width", "version", "shortcut",
               "padding", "init", "init_noise", "branch_scale",
               "batch_norm", "arch", "epochs", "steps", "lr", "weight_decay", "resume"}
_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def _as_choices(arg: str, value, allowed=None, number=False) -> tuple | None:
    """``None`` -> None, a scalar -> (value,), a sequence -> tuple; validated."""
    if value is None:
        return None
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values or len(set(values)) != len(values):
        raise ValueError(f"`{arg}` must be one value or a non-empty list of distinct values. "
                         f"Received: {arg}={value!r}")
    for item in values:
        if allowed is not None and item not in allowed:
            raise ValueError(f"`{arg}` must hold values among {', '.join(map(repr, allowed))}. "
                             f"Received: {arg}={value!r}")
        if number and (isinstance(item, bool) or not isinstance(item, (int, float))
                       or not item >= 0):
            raise ValueError(f"`{arg}` must hold non-negative numbers. Received: {arg}={value!r}")
    return values


def _positive_ints(arg: str, value) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"`{arg}` must be a non-empty list of positive integers. "
                         f"Received: {arg}={value!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"`{arg}` must not repeat a value. Received: {arg}={value!r}")
    return tuple(sorted(values))


class ResNetHyperModel(kt.HyperModel):
    """Depth x width (x residual/plain, version, shortcut, lr, weight decay) of reskeras nets.

    Args:
        input_shape: ``(H, W, C)`` of the dataset's images.
        classes: number of classes.
        family: ``"cifar"`` (default) or ``"imagenet"``.
        block: ``"basic"`` or ``"bottleneck"`` for the CIFAR family (default: the
            spec table's choice per depth).
        depths: network depths to search (default: ``DEFAULT_DEPTHS[family]``);
            each must be valid for the family (see ``reskeras.specs.valid_depths``).
        stage_blocks: instead of ``depths``, block counts to search for each stage
            independently (e.g. ``[1, 2, 3]``); gives ``stage{s}_blocks`` hyperparameters.
        widths: base widths to search (default: ``DEFAULT_WIDTHS[family]``).
        search_residual: also search residual vs plain (``residual`` Boolean).
        residual: the fixed choice when ``search_residual=False`` (default True).
        version, shortcut, lr, weight_decay: one value (fixed) or a list (searched);
            ``None`` (default) keeps the spec table's / recipe's default.
        batch_norm: BatchNorm in every candidate (default True).
        padding: how every candidate's strided convs pad (``"symmetric"``, the
            default, or ``"tf_same"``; see :class:`reskeras.specs.ArchSpec`).
        init: ``None`` (He), one of ``"he_normal"``/``"dirac"`` (fixed) or both
            (an ``init`` hyperparameter); ``init_noise`` is Dirac's noise scale.
        branch_scale: ``None`` (no branch scale), one value (fixed) or a list
            (a ``branch_scale`` hyperparameter); applies to residual candidates only.
        dataset, data_dir, recipe, batch_size, strategy, seed, grad_norms_every:
            passed to :class:`reskeras.train_config.TrainConfig` for every trial.
        epochs: epochs of a trial when neither the tuner nor ``fit`` says (Hyperband
            passes ``tuner/epochs``).
        train_options: further ``TrainConfig`` fields (``jit_compile``,
            ``steps_per_execution``, ``precision``, ``cpu_replicas``, ...).
        verbose: the trainer's verbosity (default 0).
    """

    def __init__(self, input_shape, classes: int, *, family: str = "cifar",
                 block: str | None = None, depths=None, stage_blocks=None, widths=None,
                 search_residual: bool = False, residual: bool = True, version=None,
                 shortcut=None, lr=None, weight_decay=None, batch_norm: bool = True,
                 padding: str = "symmetric", init=None, init_noise: float = 0.1,
                 branch_scale=None, dataset: str = "digits",
                 data_dir: str | None = None, recipe: str = "adam",
                 batch_size: int | None = None, epochs: int | None = None,
                 strategy: str = "auto", seed: int = 0, grad_norms_every: int | None = 4,
                 train_options: dict | None = None, verbose: int = 0, name: str = "resnet"):
        super().__init__(name=name)
        # the constructor's arguments, so a trial subprocess can rebuild this hypermodel
        self._config = json.loads(json.dumps({
            "input_shape": list(input_shape), "classes": classes, "family": family,
            "block": block, "depths": depths, "stage_blocks": stage_blocks, "widths": widths,
            "search_residual": search_residual, "residual": residual, "version": version,
            "shortcut": shortcut, "lr": lr, "weight_decay": weight_decay,
            "batch_norm": batch_norm, "padding": padding, "init": init,
            "init_noise": init_noise, "branch_scale": branch_scale, "dataset": dataset,
            "data_dir": data_dir,
            "recipe": recipe, "batch_size": batch_size, "epochs": epochs,
            "strategy": strategy, "seed": seed, "grad_norms_every": grad_norms_every,
            "train_options": train_options, "verbose": verbose, "name": name},
            default=list))
        if family not in FAMILIES:
            raise ValueError(f"`family` must be one of {', '.join(map(repr, FAMILIES))}. "
                             f"Received: family={family!r}")
        self.input_shape = tuple(input_shape)
        self.classes = classes
        self.family, self.block = family, block
        if depths is not None and stage_blocks is not None:
            raise ValueError("`depths` and `stage_blocks` exclude each other. "
                             f"Received: depths={depths!r}, stage_blocks={stage_blocks!r}")
        self.stage_blocks = None if stage_blocks is None else _positive_ints(
            "stage_blocks", stage_blocks)
        self.depths = None
        if self.stage_blocks is None:
            self.depths = _positive_ints("depths", DEFAULT_DEPTHS[family] if depths is None
                                         else depths)
            allowed = set(valid_depths(family, block, limit=max(self.depths)))
            wrong = [d for d in self.depths if d not in allowed]
            if wrong:
                resolve_spec(wrong[0], family=family, block=block)  # raises the table's message
        self.widths = _positive_ints("widths", DEFAULT_WIDTHS[family] if widths is None
                                     else widths)
        self.search_residual, self.residual = bool(search_residual), bool(residual)
        self.versions = _as_choices("version", version, VERSIONS)
        self.shortcuts = _as_choices("shortcut", shortcut, SHORTCUTS)
        self.lrs = _as_choices("lr", lr, number=True)
        if self.lrs and 0 in self.lrs:
            raise ValueError(f"`lr` must hold positive numbers. Received: lr={lr!r}")
        self.weight_decays = _as_choices("weight_decay", weight_decay, number=True)
        self.batch_norm = bool(batch_norm)
        if padding not in PADDINGS:
            raise ValueError(f"`padding` must be one of {', '.join(map(repr, PADDINGS))}. "
                             f"Received: padding={padding!r}")
        self.padding = padding
        self.inits = _as_choices("init", init, INITS)
        if "fixup" in (self.inits or ()) and (self.batch_norm or self.search_residual
                                              or not self.residual
                                              or "v2" in (self.versions or ())):
            raise ValueError(
                "`init` 'fixup' is for residual v1 nets without BatchNorm: every candidate of "
                "the search must be one (batch_norm=False, residual only, no v2). Received: "
                f"init={init!r}, batch_norm={self.batch_norm}, "
                f"search_residual={self.search_residual}, residual={self.residual}, "
                f"version={version!r}")
        self.init_noise = init_noise
        self.branch_scales = _as_choices("branch_scale", branch_scale, number=True)
        self.train_options = dict(train_options or {})
        unknown = sorted(set(self.train_options) - (_TRAIN_FIELDS - _OWN_FIELDS))
        if unknown:
            raise ValueError(f"`train_options` must name TrainConfig fields the hypermodel does "
                             f"not set itself. Received: unknown or reserved {unknown}")
        self.train_values = dict(dataset=dataset, data_dir=data_dir, recipe=recipe,
                                 batch_size=batch_size, strategy=strategy, seed=seed,
                                 grad_norms_every=grad_norms_every, verbose=verbose)
        self.epochs = epochs
        # every candidate must be a valid spec: fail now, not in trial 7
        self.spec(self.default_hyperparameters())

    def get_config(self) -> dict:
        """The constructor's arguments (JSON-ready); ``from_config`` rebuilds the hypermodel."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict) -> "ResNetHyperModel":
        config = dict(config)
        # searches started before reskeras recorded `padding` built TensorFlow-"same" nets
        config.setdefault("padding", LEGACY_PADDING)
        return cls(config.pop("input_shape"), config.pop("classes"), **config)

    # -- the search space ------------------------------------------------------
    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        if self.stage_blocks is not None:
            stages = len(resolve_spec(DEFAULT_DEPTHS[self.family][0], family=self.family).depths)
            for stage in range(1, stages + 1):
                hp.Choice(f"stage{stage}_blocks", list(self.stage_blocks), ordered=True)
        else:
            hp.Choice("depth", list(self.depths), ordered=True)
        hp.Choice("width", list(self.widths), ordered=True)
        if self.search_residual:
            hp.Boolean("residual", default=True)
        else:
            hp.Fixed("residual", self.residual)
        for name, values in (("version", self.versions), ("shortcut", self.shortcuts),
                             ("init", self.inits), ("branch_scale", self.branch_scales),
                             ("lr", self.lrs), ("weight_decay", self.weight_decays)):
            if values is None:
                continue
            if len(values) == 1:
                hp.Fixed(name, values[0])
            else:
                hp.Choice(name, list(values),
                          ordered=name in ("lr", "weight_decay", "branch_scale"))

    def default_hyperparameters(self) -> kt.HyperParameters:
        hp = kt.HyperParameters()
        self.declare_hyperparameters(hp)
        return hp

    def candidates(self) -> list[ArchSpec]:
        """The smallest spec of each (residual, version, shortcut) combination.

        Parameter count and multiply-adds grow with depth, blocks per stage and
        width, so every candidate costs at least one of these.
        """
        smallest = {}
        for residual in ((True, False) if self.search_residual else (self.residual,)):
            for version in self.versions or (None,):
                for shortcut in self.shortcuts or (None,):
                    values = {"width": self.widths[0], "residual": residual}
                    if self.stage_blocks is not None:
                        values.update({f"stage{s}_blocks": self.stage_blocks[0]
                                       for s in range(1, 5)})
                    else:
                        values["depth"] = self.depths[0]
                    if version is not None:
                        values["version"] = version
                    if shortcut is not None:
                        values["shortcut"] = shortcut
                    spec = self.spec(values)
                    smallest[spec] = None
        return list(smallest)

    # -- sample -> spec -> model -------------------------------------------------
    def spec(self, hp) -> ArchSpec:
        """The ArchSpec of a sample (``HyperParameters`` or a dict of values)."""
        values = hp.values if isinstance(hp, kt.HyperParameters) else dict(hp)

        def get(name, default):
            return values.get(name, default)

        residual = bool(get("residual", self.residual))
        version = get("version", self.versions[0] if self.versions else "v1")
        shortcut = get("shortcut", self.shortcuts[0] if self.shortcuts else None)
        width = get("width", self.widths[0])
        common = {"padding": self.padding, "init": get("init", self.inits[0] if self.inits
                                                       else "he_normal"),
                  "init_noise": self.init_noise,
                  # plain candidates of a residual-vs-plain search have no branch to scale
                  "branch_scale": get("branch_scale", self.branch_scales[0]
                                      if self.branch_scales else None) if residual else None}
        if self.stage_blocks is not None:
            base = resolve_spec(DEFAULT_DEPTHS[self.family][0], family=self.family,
                                block=self.block, width=width, version=version,
                                shortcut=shortcut, residual=residual,
                                batch_norm=self.batch_norm, **common)
            blocks = tuple(get(f"stage{s}_blocks", self.stage_blocks[0])
                           for s in range(1, len(base.depths) + 1))
            return dataclasses.replace(base, depths=blocks)
        return resolve_spec(get("depth", self.depths[0]), family=self.family, block=self.block,
                            width=width, version=version, shortcut=shortcut,
                            residual=residual, batch_norm=self.batch_norm, **common)

    def build(self, hp):
        from reskeras.builders import build
        return build(self.spec(hp), input_shape=self.input_shape, classes=self.classes)

    # -- training ------------------------------------------------------------------
    def train_config(self, hp, run_dir: str, epochs: int, **overrides) -> TrainConfig:
        """The reskeras ``TrainConfig`` of one trial."""
        values = hp.values if isinstance(hp, kt.HyperParameters) else dict(hp)
        config = {**self.train_values, **self.train_options, **overrides}
        for name in ("lr", "weight_decay"):
            if name in values:
                config[name] = values[name]
        return TrainConfig(out=run_dir, arch=self.spec(hp).to_config(), epochs=epochs, **config)

    def train_trial(self, hp, run_dir: str, *, epochs: int, callbacks=None,
                    initial_weights=None, **overrides):
        """Runs (or resumes) the trainer for one trial; returns its ``TrainResult``."""
        from reskeras.train import train
        return train(self.train_config(hp, run_dir, epochs, **overrides), callbacks=callbacks,
                     initial_weights=initial_weights)

    def fit(self, hp, model, *args, run_dir: str | None = None, callbacks=None,
            epochs: int | None = None, initial_epoch: int = 0, initial_weights=None,
            **overrides):
        """Trains the sample with the reskeras trainer (called by Keras Tuner's tuners).

        The trainer builds its own copy of the model inside its strategy scope; ``model``
        only matters for a Hyperband continuation (``tuner/trial_id`` set), where Keras
        Tuner has loaded the previous trial's best weights into it: the run starts from
        them and trains ``epochs - initial_epoch`` epochs.

        Args:
            hp: the trial's hyperparameters.
            model: the model Keras Tuner built (weights used as described above).
            run_dir: the trial's reskeras run directory (default: ``run/`` in the stock
                tuner's trial directory, found through its ``TunerCallback``).
            callbacks: Keras callbacks, run inside the trainer.
            epochs, initial_epoch: Keras Tuner's budget (Hyperband's ``tuner/epochs``
                and ``tuner/initial_epoch``); default ``epochs`` of the constructor.
            initial_weights: overrides ``model`` as the starting weights.
            **overrides: further ``TrainConfig`` fields.

        Returns:
            A ``keras.callbacks.History`` of the run's epochs (val_accuracy, val_loss,
            accuracy, loss); Keras Tuner scores its best epoch, as its ``SaveBestEpoch``
            checkpoint does.
        """
        if args:
            raise ValueError("ResNetHyperModel trains on its `dataset`; `search()` takes no "
                             f"data arguments. Received: {len(args)} positional argument(s)")
        epochs = epochs if epochs is not None else self.epochs
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs <= initial_epoch:
            raise ValueError("`epochs` must be an integer above `initial_epoch` (pass "
                             "`epochs=` to search() or to ResNetHyperModel). "
                             f"Received: epochs={epochs!r}, initial_epoch={initial_epoch!r}")
        callbacks = list(callbacks or [])
        if run_dir is None:
            run_dir = _stock_run_dir(callbacks)
        values = hp.values if isinstance(hp, kt.HyperParameters) else dict(hp)
        if initial_weights is None and "tuner/trial_id" in values and model is not None:
            initial_weights = model
        result = self.train_trial(hp, run_dir, epochs=epochs - initial_epoch,
                                  callbacks=callbacks, initial_weights=initial_weights,
                                  **overrides)
        history = _history(rundir.read_metrics(result.run_dir))
        return history


def _stock_run_dir(callbacks) -> str:
    for callback in callbacks:
        tuner, trial = getattr(callback, "tuner", None), getattr(callback, "trial", None)
        if tuner is not None and trial is not None and hasattr(tuner, "get_trial_dir"):
            return os.path.join(tuner.get_trial_dir(trial.trial_id), "run")
    raise ValueError("`run_dir` must be given when ResNetHyperModel.fit runs outside a Keras "
                     "Tuner trial. Received: run_dir=None")


def _history(records: list[dict]):
    from reskeras._backend import keras
    history = keras.callbacks.History()
    history.epoch = [r["epoch"] - 1 for r in records]
    history.history = {key: [r[key] for r in records]
                       for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
    return history
