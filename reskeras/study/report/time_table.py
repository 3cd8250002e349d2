"""The report's last section: where the study's time went (from ``timings.json``).

Example:

>>> timings = {"cells": {"plain8-bn-s0": {"steps": 88, "reused": False, "seconds": 9.0,
...     "training_seconds": 4.0, "trace_seconds": 3.0, "evaluation_seconds": 1.0,
...     "overhead_seconds": 5.0}}, "analyses": {"lesion": 2.0}}
>>> [row[:2] for row in time_blocks({"timings": timings})[2][2]]
[['training steps', '4.0'], ['tracing', '3.0'], ['measuring each cell’s errors', '1.0'], \
['the rest of each cell’s fixed cost', '1.0'], ['lesion', '2.0'], ['total', '11.0']]
"""

from __future__ import annotations

import statistics


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} s" if values else "none"


def time_blocks(results: dict) -> list[tuple]:
    """``("h2", ...)``, a sentence and a table of seconds by part; ``[]`` without timings."""
    timings = results.get("timings")
    if not timings or not timings.get("cells"):
        return []
    trained = [t for t in timings["cells"].values() if not t.get("reused")]
    steps = sum(t["training_seconds"] for t in trained)
    trace = sum(t["trace_seconds"] for t in trained)
    evaluation = sum(t["evaluation_seconds"] for t in trained)
    rest = sum(t["overhead_seconds"] for t in trained) - trace - evaluation
    parts = [("training steps", steps), ("tracing", trace),
             ("measuring each cell’s errors", evaluation),
             ("the rest of each cell’s fixed cost", rest),
             *((name.replace("_", " "), seconds)
               for name, seconds in (timings.get("analyses") or {}).items())]
    total = sum(seconds for _, seconds in parts)
    rows = [[name, f"{seconds:.1f}", f"{100 * seconds / total:.0f}%" if total else "-"]
            for name, seconds in parts + [("total", total)]]
    warm = [t["overhead_seconds"] for t in trained if not t["trace_seconds"]]
    cold = [t["overhead_seconds"] for t in trained if t["trace_seconds"]]
    reused = len(timings["cells"]) - len(trained)
    text = (f"{len(trained)} cells trained in this run"
            + (f", {reused} reused from an earlier one" if reused else "")
            + f". Fixed cost per cell (all but its training steps), median: {_median(warm)} "
              f"for a cell that reused its architecture’s traced steps, {_median(cold)} for "
              "the first cell of an architecture (which traces them). Tracing is the first "
              "compiled training call of such a cell; the rest is building, the test pass "
              "after each epoch, logging, checkpoints, precise BatchNorm statistics and "
              "saving. Seconds per part are in `timings.json`.")
    return [("h2", "Where the time went"), ("p", text),
            ("table", ["part", "seconds", "share"], rows)]


__all__ = ["time_blocks"]
