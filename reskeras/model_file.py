"""A ``.keras`` model file plus the facts serving it needs, in a JSON file beside it.

A ``.keras`` file holds the network and its weights but not how its inputs
were normalized. ``reskeras convert`` (and anything else that writes a model
outside a run directory) records that here, next to the model::

    model.keras             the Keras model (loads with safe_mode=True)
    model.reskeras.json     {"format", "model_file", "model_name", "arch", "input_shape",
                             "classes", "class_names", "preprocessing", "source"}

``reskeras export --model model.keras`` reads both, so the SavedModel carries
the same normalization (for converted torchvision/timm weights: resize, central
crop and ImageNet mean/std) without the user restating it.

Example:

>>> from reskeras.model_file import sidecar_path
>>> sidecar_path("out/resnet50.keras")
'out/resnet50.reskeras.json'
"""

from __future__ import annotations

import json
import os
import tempfile

from reskeras.preprocessing import check_preprocessing

SIDECAR_SUFFIX = ".reskeras.json"
FORMAT = "reskeras-model/1"
_KEYS = ("format", "model_file", "model_name", "arch", "input_shape", "classes", "class_names",
         "preprocessing", "source")


def check_model_path(path, arg: str = "out") -> str:
    """``path`` as a string; ValueError unless it names a ``.keras`` file."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).endswith(".keras"):
        raise ValueError(f"`{arg}` must be a path ending in .keras. Received: {arg}={path!r}")
    return str(path)


def sidecar_path(model_path) -> str:
    """``dir/NAME.keras`` -> ``dir/NAME.reskeras.json``."""
    return check_model_path(model_path, "model_path")[:-len(".keras")] + SIDECAR_SUFFIX


def write_model_file(model, path, *, preprocessing: dict, source: dict, arch: dict | None = None,
                     class_names: list[str] | None = None) -> tuple[str, str]:
    """Saves ``model`` to ``path`` (``.keras``) and its facts beside it; never overwrites.

    Both files are written to temporary names in the target directory first and
    renamed at the end, so an interrupted call leaves neither half-written.

    Args:
        model: a Keras model with one image input and one ``[None, classes]`` output.
        path: the ``.keras`` file to create (its directory is created).
        preprocessing: the normalization record (``reskeras.preprocessing``).
        source: where the weights came from (JSON-ready dict, e.g. ``{"kind": "torchvision",
            "file": ..., "sha256": ...}``).
        arch: ``ArchSpec.to_config()`` of the network, or ``None``.
        class_names: one name per class, or ``None``.

    Returns:
        ``(model path, sidecar path)``.
    """
    path = check_model_path(path)
    sidecar = sidecar_path(path)
    for existing in (path, sidecar):
        if os.path.exists(existing):
            raise ValueError(f"`out` must not exist (reskeras never overwrites a model file). "
                             f"Received: out={path!r} ({existing} exists)")
    check_preprocessing(preprocessing)
    classes = int(model.output_shape[-1])
    if class_names is not None and len(class_names) != classes:
        raise ValueError(f"`class_names` must have {classes} entries (one per class). "
                         f"Received: {len(class_names)} names")
    facts = {"format": FORMAT, "model_file": os.path.basename(path), "model_name": model.name,
             "arch": arch, "input_shape": [int(d) for d in model.input_shape[1:]],
             "classes": classes, "class_names": None if class_names is None else list(class_names),
             "preprocessing": preprocessing, "source": source}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temp_model = tempfile.mkstemp(suffix=".keras", prefix=".tmp-", dir=directory)
    os.close(handle)
    temp_sidecar = temp_model[:-len(".keras")] + SIDECAR_SUFFIX
    try:
        model.save(temp_model)
        with open(temp_sidecar, "w") as out:
            json.dump(json.loads(json.dumps(facts)), out, indent=1)
            out.write("\n")
        os.replace(temp_sidecar, sidecar)
        os.replace(temp_model, path)
    except BaseException:
        for leftover in (temp_model, temp_sidecar):
            if os.path.exists(leftover):
                os.remove(leftover)
        if os.path.exists(sidecar) and not os.path.exists(path):
            os.remove(sidecar)
        raise
    return path, sidecar


def read_sidecar(model_path) -> dict:
    """The facts written by :func:`write_model_file`; ValueError when missing or malformed."""
    sidecar = sidecar_path(model_path)
    if not os.path.exists(sidecar):
        raise ValueError(f"`model` needs {os.path.basename(sidecar)} beside it (written by "
                         f"`reskeras convert`; it records the input normalization). "
                         f"Received: model={str(model_path)!r}")
    try:
        with open(sidecar) as handle:
            facts = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"`model` has an unreadable {os.path.basename(sidecar)} "
                         f"({type(error).__name__}: {error}). Received: model={str(model_path)!r}"
                         ) from None
    missing = [key for key in _KEYS if key not in facts] if isinstance(facts, dict) else _KEYS
    if missing or facts.get("format") != FORMAT:
        raise ValueError(f"`model` has a {os.path.basename(sidecar)} without the keys "
                         f"{list(missing)} or of another format than {FORMAT!r}. "
                         f"Received: model={str(model_path)!r}")
    check_preprocessing(facts["preprocessing"])
    return facts


__all__ = ["FORMAT", "SIDECAR_SUFFIX", "check_model_path", "read_sidecar", "sidecar_path",
           "write_model_file"]
