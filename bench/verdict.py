"""/verdict under load, beside a bare Starlette hello-world on the same uvicorn.

- open loop at a fixed rate (default 1000 req/s for 10 s): requests go out on a
  schedule whatever the server does, and latency is measured from the scheduled
  time (no coordinated omission); p50/p99 and achieved throughput;
- saturation with wrk (closed loop, 2 threads, 64 connections).

Both servers run in their own process on 127.0.0.1, one uvicorn worker each, on
core 0; the generator, wrk and the simulated directors run on the other cores.

- mixed (``--mixed``): /verdict at the same open-loop rate while other clients poll
  ``/incidents?limit=500`` and ``/status`` back to back, on a database seeded with
  ``--incidents`` incidents (each with evidence, a decision and fence steps). A slow
  dashboard must not delay the gates: a gate that waits past its 1 s timeout falls
  back to its gateway ping, which weakens arbitration.

    python -m bench.verdict [--rate 1000] [--seconds 10] [--json out.json]
    python -m bench.verdict --mixed [--incidents 2000] [--pollers 2] [--poll-every 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import pct, stop_process, write_json

ROOT = Path(__file__).resolve().parents[1]
HELLO = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

async def hello(request):
    return PlainTextResponse("allow\\n")

app = Starlette(routes=[Route("/verdict", hello)])
"""


# Where there are two cores or more, the server under test gets core 0 and everything
# else (load generator, wrk, the simulated directors) the others, for both servers
# alike: otherwise the generator's own scheduling shows up as server latency.
CPUS = sorted(os.sched_getaffinity(0))
SERVER_CPUS = CPUS[:1] if len(CPUS) >= 2 else CPUS
LOAD_CPUS = CPUS[1:] if len(CPUS) >= 2 else CPUS


def on_server_cpus() -> None:  # preexec_fn of a server process
    os.sched_setaffinity(0, SERVER_CPUS)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answers on :{port}{path}")


def seed_incidents(db_url: str, n: int) -> None:
    """n fenced incidents with the evidence, decision and fence steps a real one has."""
    from datetime import UTC, datetime, timedelta

    from arbiter.model import FenceMethod, FencePlan, IncidentKind, IncidentState, VictimAction
    from arbiter.policy.effects import Opened, OpenIncident, RecordDecision
    from arbiter.store import migrate
    from arbiter.store.engine import make_engine
    from arbiter.store.repository import AttemptRecord, Repository

    engine = make_engine(db_url)
    migrate.upgrade(engine)
    repo = Repository(engine)
    t0 = datetime.now(UTC) - timedelta(days=30)
    vip = "192.168.77.100"
    node = {"health": "healthy", "icmp": {"ok": True, "rtt_ms": 0.1},
            "ssh": {"ok": True, "error": None, "ms": 3.0}, "keepalived_running": True,
            "gateways": {"127.0.0.1": True}, "peers": {"127.0.0.12": True},
            "holds": [vip], "vip_addresses": [{"ifname": "eth0", "address": vip,
                                               "prefixlen": 24}]}
    evidence = {"nodes": [{"node": "lb1", **node}, {"node": "lb2", **node}],
                "holders": {vip: ["lb1", "lb2"]}, "split_vips": [vip], "orphan_vips": [],
                "split_streak": 2, "reason": f"split brain on {vip} (held by lb1 and lb2)"}
    decision = {"survivor": "lb1", "victims": [{"node": "lb2", "method": "stop_keepalived",
                                                "vips": [vip]}], "vips": [vip],
                "ranking": [{"node": "lb1", "why": "reachable, keepalived running"},
                            {"node": "lb2", "why": "reachable, keepalived running"}],
                "reason": "lb1 survives over lb2 by rule: incumbent", "dry_run": False,
                "mode": "ssh"}
    plan = FencePlan(cluster="web", survivor="lb1", vips=(vip,), reason=decision["reason"],
                     victims=(VictimAction("lb2", FenceMethod.STOP_KEEPALIVED, (vip,)),))
    for i in range(n):
        at = t0 + timedelta(minutes=i)
        opened = Opened(IncidentKind.SPLIT_BRAIN)
        iid = repo.apply("web", [
            OpenIncident(IncidentKind.SPLIT_BRAIN, evidence["reason"], (vip,)),
            RecordDecision(opened, IncidentState.OPEN, IncidentState.FENCING, plan, 1, ("lb2",)),
        ], at, evidence, {1: decision})[IncidentKind.SPLIT_BRAIN]
        for step in ("fence_command", "verify", "announce"):
            repo.add_attempt(iid, 1, AttemptRecord("lb2", step, "systemctl stop keepalived",
                                                   True, 0, "", None, at, at))
        repo.set_state(iid, IncidentState.FENCED, at, "fenced lb2", ["lb2"])
        repo.release(iid, at, "bench", "released")
        repo.set_state(iid, IncidentState.RESOLVED, at, "resolved")
    engine.dispose()


@contextlib.contextmanager
def arbiter_server(work: Path, incidents: int = 0, extra_toml: str = "",
                   scenario: str = "healthy", cluster_toml: str = ""):
    """`arbiter serve` against two simulated directors (arbiter sim); ``extra_toml`` is
    appended to its config (e.g. an [api] section), ``cluster_toml`` goes into the
    [[clusters]] section."""
    port, ssh_port = free_port(), free_port()
    sim = subprocess.Popen([sys.executable, "-m", "arbiter.cli", "sim", "-o", str(work),
                            "--scenario", scenario, "--port", str(ssh_port), "--seconds",
                            "900"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    srv = None
    try:
        assert sim.stdout is not None
        sim.stdout.readline()
        cfg = work / "arbiter.toml"
        if incidents:
            seed_incidents(f"sqlite:///{work / 'arbiter.db'}", incidents)
        text = cfg.read_text().replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"')
        text = text.replace("[[clusters]]\n", "[[clusters]]\n" + cluster_toml, 1)
        cfg.write_text(text + extra_toml)
        srv = subprocess.Popen([sys.executable, "-m", "arbiter.cli", "--log-level", "warning",
                                "serve", "-c", str(cfg)], stderr=subprocess.DEVNULL,
                               preexec_fn=on_server_cpus)
        wait_http(port, "/readyz")
        yield port, "/verdict?cluster=web&node=lb1&format=text"
    finally:
        stop_process(srv)
        stop_process(sim)


@contextlib.contextmanager
def hello_server(work: Path):
    port = free_port()
    (work / "hello_app.py").write_text(HELLO)
    srv = subprocess.Popen([sys.executable, "-m", "uvicorn", "hello_app:app", "--host",
                            "127.0.0.1", "--port", str(port), "--log-level", "warning",
                            "--no-access-log"], cwd=work, preexec_fn=on_server_cpus)
    try:
        wait_http(port, "/verdict")
        yield port, "/verdict"
    finally:
        stop_process(srv)


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   req: bytes) -> bool:
    """One request on a keep-alive connection, its whole answer read; True for a 200."""
    writer.write(req)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    m = re.search(rb"content-length: *(\d+)", head, re.I)
    await reader.readexactly(int(m.group(1)) if m else 0)
    return head.startswith(b"HTTP/1.1 200")


async def open_loop(port: int, path: str, rate: float, seconds: float, conns: int = 32) -> dict:
    """Fixed-rate requests over keep-alive connections; latency from the schedule."""
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode()
    total = int(rate * seconds)
    lat: list[float] = []
    errors = 0
    queue: asyncio.Queue[float | None] = asyncio.Queue()

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (sched := await queue.get()) is not None:
                if not await exchange(reader, writer, req):
                    errors += 1
                lat.append(time.perf_counter() - sched)
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(conns)]
    start = time.perf_counter()
    for i in range(total):
        sched = start + i / rate
        delay = sched - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(sched)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers), seconds + 60)
    took = time.perf_counter() - start
    ms = [x * 1000 for x in lat]
    return {"rate": rate, "seconds": seconds, "requests": len(lat), "errors": errors,
            "throughput": round(len(lat) / took, 1), "p50_ms": round(pct(ms, 50), 3),
            "p99_ms": round(pct(ms, 99), 3), "max_ms": round(max(ms), 3)}


async def poll(port: int, path: str, until: float, every: float = 0.0) -> dict:
    """One client asking `path` until `until`: back to back (every=0), or one request
    every `every` seconds, as a dashboard refreshing; latency per answer."""
    lat: list[float] = []
    errors = 0
    started = 0.0
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode()
    try:
        while time.perf_counter() < until:
            t = time.perf_counter()
            if every and lat:
                await asyncio.sleep(max(0.0, every - (t - started)))
                t = time.perf_counter()
            started = t
            if not await exchange(reader, writer, req):
                errors += 1
            lat.append(time.perf_counter() - t)
    finally:
        writer.close()
    return {"lat": lat, "errors": errors}


def _summary(results: list[dict]) -> dict:
    ms = [x * 1000 for r in results for x in r["lat"]]
    return {"requests": len(ms), "errors": sum(r["errors"] for r in results),
            "p50_ms": round(pct(ms, 50), 3), "p99_ms": round(pct(ms, 99), 3),
            "max_ms": round(max(ms), 3) if ms else None}


async def mixed(port: int, path: str, rate: float, seconds: float, pollers: int,
                every: float) -> dict:
    """/verdict open loop while `pollers` clients each poll the incident list and status."""
    until = time.perf_counter() + seconds
    heavy = [asyncio.create_task(poll(port, "/incidents?limit=500", until, every))
             for _ in range(pollers)]
    status = [asyncio.create_task(poll(port, "/status", until, every)) for _ in range(pollers)]
    verdict = await open_loop(port, path, rate, seconds)
    return {"verdict": verdict,
            "incidents_limit_500": _summary(await asyncio.gather(*heavy)),
            "status": _summary(await asyncio.gather(*status)), "pollers": pollers,
            "poll_every_s": every}


def wrk(port: int, path: str, seconds: int) -> dict:
    if not shutil.which("wrk"):
        return {"error": "wrk not installed (apt-get install wrk)"}
    p = subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency",
                        f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                       timeout=seconds + 60)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", p.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {"requests_per_s": float(rps.group(1)) if rps else None,
            "p99_ms": round(float(p99.group(1)) * unit.get(p99.group(2), 1), 3) if p99 else None,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def run_loop(coro):  # type: ignore[no-untyped-def]
    """The generator on uvloop where installed: less of its own overhead in the latency."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        return r.run(coro)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--json")
    ap.add_argument("--mixed", action="store_true",
                    help="/verdict beside /incidents?limit=500 and /status pollers")
    ap.add_argument("--incidents", type=int, default=2000,
                    help="incidents seeded into the database for --mixed")
    ap.add_argument("--pollers", type=int, default=2,
                    help="clients polling each of /incidents and /status in --mixed")
    ap.add_argument("--poll-every", type=float, default=0.0,
                    help="--mixed: seconds between one poller's requests (0: back to back)")
    a = ap.parse_args()
    os.sched_setaffinity(0, LOAD_CPUS)  # inherited by the sim and wrk
    out: dict = {"server_cpus": SERVER_CPUS, "load_cpus": LOAD_CPUS}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        if a.mixed:
            with arbiter_server(work / "arb", a.incidents) as (port, path):
                out["mixed"] = run_loop(mixed(port, path, a.rate, a.seconds, a.pollers,
                                                a.poll_every))
            out["mixed"]["incidents_seeded"] = a.incidents
            print(json.dumps(out, indent=2))
            write_json(a.json, out)
            return 0
        with arbiter_server(work / "arb") as (port, path):
            out["verdict_open_loop"] = run_loop(open_loop(port, path, a.rate, a.seconds))
            out["verdict_saturation"] = wrk(port, path, int(a.seconds))
        with hello_server(work) as (port, path):
            out["hello_open_loop"] = run_loop(open_loop(port, path, a.rate, a.seconds))
            out["hello_saturation"] = wrk(port, path, int(a.seconds))
    v, h = out["verdict_saturation"], out["hello_saturation"]
    if v.get("requests_per_s") and h.get("requests_per_s"):
        out["saturation_ratio_vs_starlette"] = round(v["requests_per_s"] / h["requests_per_s"], 3)
    print(json.dumps(out, indent=2))
    write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
