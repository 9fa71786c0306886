"""The real service at scale (issue 32): `arbiter serve`, with the defaults, against
the simulated farm (bench/simfarm.py, which also plays keepalived's watch), keepalived's
view on and off. `bench.scale` measured `run_round()` in a loop, where no watch runs.

    python -m bench.scale --serve --nodes 100 1000 2000 [--seconds 30] [--warmup 20]
                          [--views on off] [--profile DIR] [--json out.json]

Per size and view setting, after ``--warmup`` seconds of steady state (every director
healthy), over ``--seconds``: the arbiter's CPU-seconds per second of wall time (from
/proc, user + system), the farm's, the rounds' durations (/status, polled each second
on loopback), overruns, peak RSS (VmHWM), and the view's dumps per second
(/metrics). ``--profile DIR``: the serve process runs under cProfile and its top
functions by own time are printed (cProfile slows it: read shares, not seconds).
Everything is on 127.1.x.y and 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import json
import pstats
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import median, stop_process

ROOT = Path(__file__).resolve().parents[1]
STATUS = "http://127.0.0.1:18080/status"
METRICS = "http://127.0.0.1:18080/metrics"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (loopback only)
        return r.read().decode()


def _cpu(pid: int) -> float:
    from bench.scale import proc_cpu

    return proc_cpu(pid)


def _hwm_mb(pid: int) -> float:
    m = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return round(int(m.group(1)) / 1024, 1) if m else float("nan")


def _dumps(metrics: str) -> float:
    m = re.search(r"^arbiter_keepalived_dumps_total (\S+)", metrics, re.M)
    return float(m.group(1)) if m else 0.0


def _config(farm: Path, view: bool) -> Path:
    text = (farm / "arbiter.toml").read_text()
    if not view:
        text = re.sub(r"^(vips = .*)$", r"\1\nkeepalived_view = false", text, flags=re.M)
    out = farm / f"arbiter-view-{'on' if view else 'off'}.toml"
    out.write_text(text)
    return out


def _wait_steady(p: subprocess.Popen, n: int, deadline: float) -> dict:
    """/status once every director is healthy and a few rounds ran."""
    last: dict = {}
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"arbiter serve ended ({p.returncode})")
        try:
            last = json.loads(_get(STATUS))
        except OSError:
            time.sleep(0.5)
            continue
        healthy = sum(1 for c in last.get("clusters", []) for nd in c.get("nodes", [])
                      if (nd.get("ssh") or {}).get("ok"))
        if healthy == n and last["arbiter"]["last_round"]["count"] >= 3:
            return last
        time.sleep(1.0)
    raise RuntimeError(f"not steady in time: {json.dumps(last)[:500]}")


def measure(n: int, view: bool, seconds: float, warmup: float, port: int,
            profile: Path | None) -> dict:
    from bench.scale import start_farm

    farm = Path(tempfile.mkdtemp(prefix=f"serve{n}-"))
    fp = start_farm(n, farm, port)
    serve = None
    log = farm / "serve.log"
    try:
        cfg = _config(farm, view)
        argv = [sys.executable, "-m", "arbiter.cli", "serve", "-c", str(cfg)]
        if profile is not None:
            prof = profile / f"serve-{n}-view-{'on' if view else 'off'}.prof"
            argv = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "arbiter.cli",
                    "serve", "-c", str(cfg)]
        with log.open("w") as f:
            serve = subprocess.Popen(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        _wait_steady(serve, n, time.monotonic() + 120 + n * 0.1)
        time.sleep(warmup)
        a0, f0, d0, t0 = _cpu(serve.pid), _cpu(fp.pid), _dumps(_get(METRICS)), time.monotonic()
        first = json.loads(_get(STATUS))["arbiter"]["last_round"]
        durations: list[float] = []
        end = t0 + seconds
        while time.monotonic() < end:
            time.sleep(1.0)
            durations.append(json.loads(_get(STATUS))["arbiter"]["last_round"]["duration_ms"])
        a1, f1, d1, t1 = _cpu(serve.pid), _cpu(fp.pid), _dumps(_get(METRICS)), time.monotonic()
        last = json.loads(_get(STATUS))["arbiter"]["last_round"]
        wall = t1 - t0
        row = {
            "nodes": n, "view": "on" if view else "off", "seconds": round(wall, 1),
            "arbiter_cpu_s_per_s": round((a1 - a0) / wall, 3),
            "farm_cpu_s_per_s": round((f1 - f0) / wall, 3),
            "round_ms_median": round(median(durations), 1),
            "round_ms_max": round(max(durations), 1),
            "rounds": last["count"] - first["count"],
            "overruns": last["overruns"] - first["overruns"],
            "dumps_per_s": round((d1 - d0) / wall, 1),
            "peak_rss_mb": _hwm_mb(serve.pid),
        }
    except BaseException:
        print(log.read_text()[-3000:] if log.exists() else "(no serve log)", file=sys.stderr)
        raise
    finally:
        stop_process(serve, 30)
        stop_process(fp, 30)
        subprocess.run(["rm", "-rf", str(farm)], check=False)
    if profile is not None:
        row["profile"] = top_functions(profile / f"serve-{n}-view-{'on' if view else 'off'}.prof")
    return row


def top_functions(path: Path, k: int = 15) -> list[str]:
    """The ``k`` functions with the most own time, as `file:line(name) share%`."""
    st = pstats.Stats(str(path))
    total = sum(v[2] for v in st.stats.values()) or 1.0  # type: ignore[attr-defined]
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:k]  # type: ignore[attr-defined]
    return [f"{Path(f).name}:{line}({fn}) {100 * v[2] / total:.1f}%"
            for (f, line, fn), v in rows]


def run(sizes: list[int], views: list[str], seconds: float, warmup: float, port: int,
        profile: Path | None) -> list[dict]:
    rows = []
    for n in sizes:
        for v in views:
            row = measure(n, v == "on", seconds, warmup, port, profile)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows
