"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def start_farm(n: int, out: Path, port: int) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "bench.simfarm", "--nodes", str(n), "--out",
                          str(out), "--port", str(port)], cwd=ROOT)
    deadline = time.monotonic() + 120 + n * 0.1
    while not (out / "ready").exists():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            raise RuntimeError("simfarm did not start")
        time.sleep(0.1)
    return p


def proc_cpu(pid: int | None) -> float:
    """CPU-seconds (user + system) a process has used so far, from /proc; 0 without a pid."""
    if not pid:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
