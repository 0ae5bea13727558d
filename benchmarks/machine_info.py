"""The machine a benchmark ran on, as every result file records it (one helper for all scripts here).

Scripts in this folder are run as ``python benchmarks/NAME.py``, which puts this folder on ``sys.path``,
so they import it as ``from machine_info import cpu_model``.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> str:
    """``"<cpu model>, <n> cores"``, the line the notes and docs quote."""
    return f"{cpu_model()}, {os.cpu_count()} cores"
