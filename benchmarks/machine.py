"""What every benchmark records about the machine: the CPU, and how busy other processes keep it."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux /proc/stat), or None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_name() -> str:
    """The CPU model name (`lscpu`'s), or whatever the platform reports."""
    name = platform.processor()
    with contextlib.suppress(OSError, StopIteration):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    return name


def environment(**versions: str) -> dict[str, Any]:
    """The machine and the given package versions, for a report."""
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), **versions, "python": platform.python_version()}
