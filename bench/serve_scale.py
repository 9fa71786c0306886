"""The real service at scale (issue 32): `arbiter serve`, with the defaults, against
the simulated farm (bench/simfarm.py, which also plays keepalived's watch), keepalived's
view on and off. `bench.scale` measured `run_round()` in a loop, where no watch runs.

    python -m bench.scale --serve --nodes 100 1000 2000 [--seconds 30] [--warmup 20]
                          [--views on off] [--profile DIR] [--json out.json]

Per size and view setting, after ``--warmup`` seconds of steady state (every director
healthy), over ``--seconds``: the arbiter's CPU-seconds per second of wall time (from
/proc, user + system), the farm's, the rounds' durations (/status, polled
every 5 s on loopback), overruns, peak RSS (VmHWM), and the view's dumps per second
(/metrics). ``--profile DIR``: py-spy (`pip install py-spy`; it samples from outside,
so the process is not slowed) records the serve process during the window, and the
functions with the most samples, on their own and with what they call, are printed.
Everything is on 127.1.x.y and 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import ROOT, median, proc_cpu, start_farm, stop_process

STATUS = "http://127.0.0.1:18080/status"
METRICS = "http://127.0.0.1:18080/metrics"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (loopback only)
        return r.read().decode()


def _hwm_mb(pid: int) -> float:
    m = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return round(int(m.group(1)) / 1024, 1) if m else float("nan")


def _dumps(metrics: str) -> tuple[float, float]:
    """keepalived dumps recorded so far: (all, of them `@@kv-same`)."""
    kinds = dict(re.findall(r'^arbiter_keepalived_dumps_total\{kind="(\w+)"\} (\S+)',
                            metrics, re.M))
    same = float(kinds.get("same", 0))
    return float(kinds.get("whole", 0)) + same, same


def _config(farm: Path, view: bool) -> Path:
    text = (farm / "arbiter.toml").read_text()
    if not view:
        text = re.sub(r"^(vips = .*)$", r"\1\nkeepalived_view = false", text, flags=re.M)
    out = farm / f"arbiter-view-{'on' if view else 'off'}.toml"
    out.write_text(text)
    return out


class NotSteady(RuntimeError):
    pass


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
    reasons = (last.get("overall") or {}).get("reasons") or ["no answer"]
    raise NotSteady(f"{reasons[0]} (and {len(reasons) - 1} more)")


def measure(n: int, view: bool, seconds: float, warmup: float, port: int,
            profile: Path | None) -> dict:
    farm = Path(tempfile.mkdtemp(prefix=f"serve{n}-"))
    fp = start_farm(n, farm, port)
    serve = None
    log = farm / "serve.log"
    try:
        cfg = _config(farm, view)
        argv = [sys.executable, "-m", "arbiter.cli", "serve", "-c", str(cfg)]
        with log.open("w") as f:
            serve = subprocess.Popen(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        started, c_start = time.monotonic(), proc_cpu(serve.pid)
        try:
            _wait_steady(serve, n, started + 120 + n * 0.1)
        except NotSteady as exc:  # a finding, not a failure: the size it cannot carry
            wall = time.monotonic() - started
            return {"nodes": n, "view": "on" if view else "off", "steady": False,
                    "why": str(exc), "waited_s": round(wall, 1),
                    "arbiter_cpu_s_per_s": round((proc_cpu(serve.pid) - c_start) / wall, 3),
                    "peak_rss_mb": _hwm_mb(serve.pid)}
        time.sleep(warmup)
        a0, f0 = proc_cpu(serve.pid), proc_cpu(fp.pid)
        d0, t0 = _dumps(_get(METRICS)), time.monotonic()
        first = json.loads(_get(STATUS))["arbiter"]["last_round"]
        spy = None
        if profile is not None:
            stacks = profile / f"serve-{n}-view-{'on' if view else 'off'}.txt"
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record",
                                    "-p", str(serve.pid), "-d", str(int(seconds)), "-r", "50",
                                    "-f", "raw", "-o", str(stacks), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        durations: list[float] = []
        end = t0 + seconds
        while time.monotonic() < end:  # /status at 1000 directors costs a little: 1 in 5 s
            time.sleep(min(5.0, max(0.1, end - time.monotonic())))
            durations.append(json.loads(_get(STATUS))["arbiter"]["last_round"]["duration_ms"])
        a1, f1 = proc_cpu(serve.pid), proc_cpu(fp.pid)
        d1, t1 = _dumps(_get(METRICS)), time.monotonic()
        last = json.loads(_get(STATUS))["arbiter"]["last_round"]
        if spy is not None and spy.wait(seconds + 30) != 0:
            raise RuntimeError("py-spy failed (pip install py-spy)")
        wall = t1 - t0
        row = {
            "nodes": n, "view": "on" if view else "off", "steady": True,
            "seconds": round(wall, 1),
            "arbiter_cpu_s_per_s": round((a1 - a0) / wall, 3),
            "farm_cpu_s_per_s": round((f1 - f0) / wall, 3),
            "round_ms_median": round(median(durations), 1),
            "round_ms_max": round(max(durations), 1),
            "rounds": last["count"] - first["count"],
            "overruns": last["overruns"] - first["overruns"],
            "dumps_per_s": round((d1[0] - d0[0]) / wall, 1),
            "same_share": round((d1[1] - d0[1]) / max(1.0, d1[0] - d0[0]), 2),
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
        row["profile"] = top_functions(profile / f"serve-{n}-view-{'on' if view else 'off'}.txt")
    return row


def top_functions(path: Path, k: int = 25) -> dict[str, list[str]]:
    """From py-spy's collapsed stacks: the ``k`` functions with the most samples on
    their own (``self``) and with what they call (``total``), as shares of all."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    every = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        every += n
        frames = [re.sub(r" \((?:/[^)]*/)?([^/)]+)\)", r" (\1)", f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            total[f] = total.get(f, 0) + n

    def top(d: dict[str, int]) -> list[str]:
        return [f"{100 * v / max(1, every):5.1f}% {f}"
                for f, v in sorted(d.items(), key=lambda kv: -kv[1])[:k]]

    return {"samples": [str(every)], "self": top(own), "total": top(total)}


def run(sizes: list[int], views: list[str], seconds: float, warmup: float, port: int,
        profile: Path | None) -> list[dict]:
    rows = []
    for n in sizes:
        for v in views:
            row = measure(n, v == "on", seconds, warmup, port, profile)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows
