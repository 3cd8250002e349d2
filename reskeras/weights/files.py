"""Reading PyTorch state dicts into NumPy: ``.safetensors`` without torch, ``.pth`` with it.

What comes back is a flat ``{name: float32 ndarray}`` in the file's order, with
the wrappers training scripts add taken off: a ``{"state_dict": ...}`` or
``{"model": ...}`` checkpoint dict (timm's train script, many others) and the
``module.`` prefix of ``DataParallel``/DDP. Nothing is downloaded: reskeras
reads local files only (see docs/weights.md for where to get them).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

SAFETENSORS = (".safetensors",)
PICKLES = (".pth", ".pt", ".bin")
_WRAPPERS = ("state_dict", "model", "model_state_dict", "module")
_PREFIXES = ("module.", "model.")


def check_path(path) -> str:
    """``path`` as a string; ValueError unless it is an existing ``.safetensors``/``.pth`` file."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path.endswith(SAFETENSORS + PICKLES):
        raise ValueError("`weights` must be the path of a local .safetensors or .pth file "
                         "(reskeras downloads nothing; docs/weights.md says where to get them). "
                         f"Received: weights={path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"`weights` must be an existing file. Received: weights={path!r}")
    return path


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path) -> dict[str, np.ndarray]:
    """The tensors of a torchvision/timm weights file as float32 NumPy arrays.

    Args:
        path: a ``.safetensors`` file (read with the ``safetensors`` package; no
            torch needed) or a ``.pth``/``.pt``/``.bin`` pickle (needs torch; read
            with ``weights_only=True``, so no code in the file runs).

    Returns:
        ``{name: ndarray}`` in file order (safetensors stores names sorted), wrappers and ``module.`` prefixes removed.

    Example:

    >>> import numpy as np, tempfile, os
    >>> from safetensors.numpy import save_file
    >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> save_file({"module.fc.bias": np.zeros(3, np.float32)}, path)
    >>> {k: v.shape for k, v in read_state_dict(path).items()}
    {'fc.bias': (3,)}
    """
    path = check_path(path)
    if path.endswith(SAFETENSORS):
        tensors = _read_safetensors(path)
    else:
        tensors = _read_pickle(path)
    return _strip_prefix(tensors, path)


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:  # pragma: no cover - a runtime requirement
        raise ValueError("reading .safetensors needs the safetensors package "
                         "(pip install safetensors). Received: weights=" + repr(path)) from None
    try:
        with safe_open(path, framework="numpy") as handle:
            return {key: _as_float32(handle.get_tensor(key), key, path) for key in handle.keys()}
    except (SafetensorError, OSError, TypeError) as error:
        raise ValueError(f"`weights` must be a readable safetensors file ({_first_line(error)}). "
                         f"Received: weights={path!r}") from None


def _read_pickle(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ValueError(".pth files are PyTorch pickles and need torch to read: pip install "
                         "torch, or convert the file to .safetensors where torch is installed. "
                         f"Received: weights={path!r}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        raise ValueError(f"`weights` must be a readable PyTorch state dict "
                         f"({type(error).__name__}: {_first_line(error)}). "
                         f"Received: weights={path!r}") from None
    state = _unwrap(state, path)
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue  # e.g. an "epoch" entry left in a checkpoint dict
        tensors[key] = _as_float32(value.detach().to(torch.float32).numpy(), key, path)
    return tensors


def _unwrap(state, path: str) -> dict:
    for _ in range(3):
        if not isinstance(state, dict):
            break
        inner = [key for key in _WRAPPERS if isinstance(state.get(key), dict)]
        if inner and not any(_is_tensor(v) for v in state.values()):
            state = state[inner[0]]
        else:
            break
    if not isinstance(state, dict) or not any(_is_tensor(v) for v in state.values()):
        raise ValueError(f"`weights` must hold a state dict of tensors (got "
                         f"{type(state).__name__}). Received: weights={path!r}")
    return state


def _is_tensor(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _as_float32(array, key: str, path: str) -> np.ndarray:
    array = np.asarray(array)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"`weights` must hold numeric tensors; {key!r} is {array.dtype}. "
                         f"Received: weights={path!r}")
    return array.astype(np.float32, copy=False)


def _strip_prefix(tensors: dict, path: str) -> dict[str, np.ndarray]:
    if not tensors:
        raise ValueError(f"`weights` must hold at least one tensor. Received: weights={path!r}")
    for prefix in _PREFIXES:
        if all(key.startswith(prefix) for key in tensors):
            return {key[len(prefix):]: value for key, value in tensors.items()}
    return dict(tensors)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


__all__ = ["PICKLES", "SAFETENSORS", "check_path", "read_state_dict", "sha256"]
