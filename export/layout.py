"""TF Serving's directory layout: ``BASE/NAME/VERSION/``, written so no half version is seen.

TF Serving watches ``BASE/NAME`` and loads every directory whose name is an
integer (the highest by default); other entries are ignored. So a version is
written into a hidden sibling ``BASE/NAME/.tmp-<version>-<host>-<pid>-<random>``,
verified there, and only then published:

* local paths: one ``rename(2)`` of the directory, which is atomic. A process
  killed before it leaves only the hidden temp dir, which the next exporter of
  the same name on the same host removes (its pid is gone).
* other filesystems (``gs://``, ``s3://``, ``ram://``): object stores have no
  directory rename (``tf.io.gfile.rename`` of a directory copies object by
  object), so the version is staged in a local temp dir and uploaded file by
  file with ``saved_model.pb`` *last*. TF Serving cannot load a version without
  ``saved_model.pb``; if it polls during the upload it fails that load and
  retries later (``max_num_load_retries``), by which time the upload is done.
  This is not atomic: a reader listing the bucket mid-upload sees a version
  without its graph. ``reskeras export --verify`` then reports it incomplete.

Concurrent exporters of one ``NAME`` on one host are serialized with an
``fcntl.flock`` on ``BASE/NAME/.export.lock`` (local) or on a lock file in the
system temp dir keyed by the remote path; the kernel drops the lock when the
holder dies, so a ``kill -9`` never leaves the name locked. Exporters on
different hosts writing to one bucket are not serialized: the version check
just before publishing makes the loser fail instead of overwrite.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import socket
import tempfile

import tensorflow as tf

TMP_PREFIX = ".tmp-"
LOCK_FILE = ".export.lock"
GRAPH_FILE = "saved_model.pb"
_TMP_PATTERN = re.compile(r"^\.tmp-(\d+)-(.+)-(\d+)-([0-9a-f]+)$")


def join(*parts: str) -> str:
    """Joins path parts; keeps the ``scheme://`` of remote paths intact."""
    first, rest = str(parts[0]), [str(p).strip("/") for p in parts[1:]]
    if is_remote(first):
        return "/".join([first.rstrip("/"), *rest])
    return os.path.join(first, *rest)


def is_remote(path: str) -> bool:
    return "://" in str(path)


def check_name(name) -> None:
    """``NAME`` must be one plain directory name (TF Serving's model name)."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name
            or "\\" in name or os.sep in name or name.startswith(".") or "\0" in name):
        raise ValueError("`name` must be a non-empty model name without path separators and "
                         f"not starting with '.'. Received: name={name!r}")


def check_version(version) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer (TF Serving version "
                         f"directory). Received: version={version!r}")


def existing_versions(model_dir: str) -> list[int]:
    """Integer version directories of ``BASE/NAME``, ascending (what TF Serving sees)."""
    if not tf.io.gfile.isdir(model_dir):
        return []
    versions = []
    for entry in tf.io.gfile.listdir(model_dir):
        entry = entry.rstrip("/")
        if entry.isdigit() and int(entry) > 0 and tf.io.gfile.isdir(join(model_dir, entry)):
            versions.append(int(entry))
    return sorted(versions)


def next_version(model_dir: str) -> int:
    """One more than the highest existing version, 1 for a new name."""
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def check_base_writable(base_dir: str) -> None:
    """Creates ``base_dir`` if needed; ValueError naming it when that is impossible."""
    try:
        if tf.io.gfile.exists(base_dir) and not tf.io.gfile.isdir(base_dir):
            raise ValueError("is a file")
        tf.io.gfile.makedirs(base_dir)
        probe = join(base_dir, f"{TMP_PREFIX}probe-{os.getpid()}-{secrets.token_hex(4)}")
        with tf.io.gfile.GFile(probe, "w") as handle:
            handle.write("ok")
        tf.io.gfile.remove(probe)
    except (tf.errors.OpError, OSError, ValueError) as error:
        reason = getattr(error, "message", None) or getattr(error, "strerror", None) or error
        raise ValueError(f"`base_dir` must be a writable directory. Received: "
                         f"base_dir={base_dir!r} ({reason})") from None


def lock_path(model_dir: str) -> str:
    """``BASE/NAME/.export.lock``, or for remote bases a local file keyed by the path."""
    if is_remote(model_dir):
        digest = hashlib.sha256(model_dir.encode()).hexdigest()[:16]
        return os.path.join(tempfile.gettempdir(), f"reskeras-export-{digest}.lock")
    return os.path.join(model_dir, LOCK_FILE)


@contextlib.contextmanager
def name_lock(model_dir: str):
    """Holds an exclusive ``flock`` for exporting into ``model_dir`` (released on death)."""
    if not is_remote(model_dir):
        tf.io.gfile.makedirs(model_dir)
    with open(lock_path(model_dir), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle.name
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40] or "host"


def temp_name(version: int) -> str:
    return f"{TMP_PREFIX}{version}-{_host()}-{os.getpid()}-{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(model_dir: str) -> list[str]:
    """Removes temp dirs left by dead exporters of this host (call while holding the lock)."""
    removed = []
    if is_remote(model_dir) or not tf.io.gfile.isdir(model_dir):
        return removed
    for entry in tf.io.gfile.listdir(model_dir):
        match = _TMP_PATTERN.match(entry.rstrip("/"))
        if match and match.group(2) == _host() and not _pid_alive(int(match.group(3))):
            remove_tree(join(model_dir, entry))
            removed.append(entry)
    return removed


def remove_tree(path: str) -> None:
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


def staging_dir(model_dir: str, version: int) -> str:
    """Where a version is written before publishing: hidden sibling (local) or local temp."""
    if is_remote(model_dir):
        return tempfile.mkdtemp(prefix=f"reskeras-export-{version}-")
    path = join(model_dir, temp_name(version))
    tf.io.gfile.makedirs(path)
    return path


def publish(staged: str, model_dir: str, version: int) -> str:
    """Moves a verified staged version to ``model_dir/version``; ValueError if it exists."""
    final = join(model_dir, str(version))
    if tf.io.gfile.exists(final):
        raise ValueError(f"`version` must not exist already (another exporter wrote it). "
                         f"Received: version={version} in {model_dir!r}")
    if not is_remote(model_dir):
        os.rename(staged, final)  # atomic; fails if `final` appeared and is not empty
        return final
    files = []
    for root, _, names in tf.io.gfile.walk(staged):
        files += [os.path.join(root, n) for n in names]
    files.sort(key=lambda f: os.path.relpath(f, staged) == GRAPH_FILE)  # the graph last
    for file in files:
        target = join(final, *os.path.relpath(file, staged).split(os.sep))
        tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
        tf.io.gfile.copy(file, target, overwrite=False)
    remove_tree(staged)
    return final


__all__ = ["check_base_writable", "check_name", "check_version", "existing_versions", "join",
           "lock_path", "name_lock", "next_version", "publish", "remove_stale_temps", "remove_tree",
           "staging_dir"]
