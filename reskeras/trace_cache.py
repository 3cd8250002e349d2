"""Built models, optimizers and traced steps, kept for the next run of the same shapes.

On small images most of a short run's fixed cost is building and tracing: the
train step of a 56-layer net on 8x8 digits traces for about 7 s, its
gradient-norm hook, layer-response probe and precise-BN pass for seconds more,
against about 10 s of training steps in an 88-step run (docs/benchmarks.md). A
:class:`TraceCache` passed to :func:`reskeras.train.train` keeps, per *shape
key* (everything the traced functions depend on: architecture, input shape,
classes, optimizer, momentum, weight decay and number of rate drops, batch,
precision, strategy, logging intervals), the model, its optimizer, the traced
train and evaluation steps and the loggers hooked into them. The learning rate,
its warmup and the steps where it drops are variables the trace reads, so a
rate sweep and the budgets of a recipe with step decay share one entry.

The next run with the same key starts from the weights its own seed draws (a
model built from the same spec under the same seed, as an uncached run builds
it), the optimizer's initial slots and step counter, and a step counter of 0,
then calls the same traces. It ends with bitwise the same weights, metrics and
logs as the same run without the cache (``tests/reskeras/test_trace_cache.py``).

The cache holds at most ``max_entries`` keys and releases the least recently
used one beyond that; runs of one architecture in a row (a study's seeds) need
one entry.

Example:

>>> cache = TraceCache(max_entries=1)
>>> cache.get("plain56"), cache.misses
(None, 1)
"""

from __future__ import annotations

import collections
import dataclasses


@dataclasses.dataclass
class CachedRun:
    """What one shape key keeps: the model and optimizer and what was traced on them.

    ``optimizer_state`` holds the values of the optimizer's variables right after
    it was built (zero slots, step 0); ``schedule`` the optimizer's mutable
    learning-rate schedule, which the next run gives its own rates; ``loggers`` the
    gradient-norm and layer-response loggers hooked into the traced step, by
    ``(kind, interval)``; ``functions`` other traced functions of the model, by name.
    """

    model: object
    optimizer: object
    optimizer_state: list
    steps: object
    schedule: object
    loggers: dict = dataclasses.field(default_factory=dict)
    functions: dict = dataclasses.field(default_factory=dict)

    def release(self) -> None:
        """Unhooks the loggers and drops the traces; the entry is spent afterwards."""
        for logger in self.loggers.values():
            logger.persistent = False
            logger.release()
        self.steps.release()
        self.loggers.clear()
        self.functions.clear()


class TraceCache:
    """Keeps :class:`CachedRun` entries by shape key, least recently used released first.

    Args:
        max_entries: how many shape keys are kept at once (each holds a model, its
            optimizer slots and its traced graphs: tens of MiB for a CIFAR net).
    """

    def __init__(self, max_entries: int = 2):
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"`max_entries` must be a positive integer. "
                             f"Received: max_entries={max_entries!r}")
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[str, CachedRun] = collections.OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> CachedRun | None:
        """The entry of ``key`` (now the most recently used), or ``None``."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: CachedRun) -> None:
        """Keeps ``entry`` under ``key``, releasing the least recently used beyond the limit."""
        previous = self._entries.pop(key, None)
        if previous is not None and previous is not entry:
            previous.release()
        self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            _, evicted = self._entries.popitem(last=False)
            evicted.release()

    def discard(self, entry: CachedRun) -> None:
        """Releases ``entry`` and forgets it (a run that used it failed)."""
        for key, kept in list(self._entries.items()):
            if kept is entry:
                del self._entries[key]
        entry.release()

    def clear(self) -> None:
        """Releases every entry."""
        while self._entries:
            _, entry = self._entries.popitem(last=False)
            entry.release()


__all__ = ["CachedRun", "TraceCache"]
