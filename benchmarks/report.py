"""What every benchmark prints the same way: the machine it ran on, and its report."""

from __future__ import annotations

import json
import os
import platform
from typing import Any


def machine() -> str:
    """The architecture, the cores, Python and the load average when the figures were taken."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"load {os.getloadavg()[0]:.1f}")


def print_report(report: dict[str, Any], as_json: bool) -> None:
    """One JSON line, or one aligned ``key  value`` line per figure."""
    if as_json:
        print(json.dumps(report))
        return
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
