"""What the benchmarks print beside every table: the CPU model this run measured on."""

from __future__ import annotations

import platform


def cpu_model() -> str:
    """The first ``model name`` of /proc/cpuinfo (else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"
