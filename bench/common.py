"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict:
    return {"python": sys.version.split()[0], "cpus": os.cpu_count(),
            "machine": platform.machine(), "kernel": platform.release()}


def write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).write_text(json.dumps({"machine": machine(), **data}, indent=2))


def stop_process(p: subprocess.Popen | None, grace: float = 10) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL."""
    if p is None:
        return
    p.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(grace)
    if p.poll() is None:
        p.kill()
