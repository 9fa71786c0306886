"""The price of a short lease: false step-downs of a lone leader while PostgreSQL is
loaded (issue 23).

    python -m bench.lease_load [--seconds 60] [--clients 0 16 64] [--json out.json]

For each load level, pgbench (TPC-B-like, ``-c N -j 2``) runs against a throw-away
PostgreSQL while two arbiters' leaderships renew on it side by side, one on the new
defaults (``lease_ttl`` 5 s, ``renew_every`` 1 s) and one on the old (15 s, 5 s),
each leading a shard of its own. Nobody else contends, so every step-down is a false
one: the database did not answer a renewal in time, often enough, for the leader to
lose it. Reported per setting and level: renewals, their latency (median, p99, max),
renewals that failed or timed out, and step-downs.

The leaderships are the arbiter's own (``arbiter.ha.leadership.Leadership``),
renewing as `serve` renews them: every ``renew_every``, each bounded by
min(``renew_every``, ``lease_ttl``/4).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import median, pct, stop_process, write_json
from bench.pg import throwaway_pg

SETTINGS = {"new 5 s / 1 s": (5.0, 1.0), "old 15 s / 5 s": (15.0, 5.0)}

CONFIG = """[arbiter]
database = "{url}"
gateways = ["127.0.0.1"]
dry_run = true

[ssh]
client_keys = ["/nonexistent/key"]
known_hosts = "/nonexistent/known_hosts"

[[clusters]]
name = "{shard}"
shard = "{shard}"
# TEST-NET-1: never contacted (the bench only renews leases); a loopback VIP is refused
vips = ["192.0.2.100"]
  [[clusters.nodes]]
  name = "lb1"
  address = "127.0.0.11"
  priority = 100
  [[clusters.nodes]]
  name = "lb2"
  address = "127.0.0.12"
  priority = 90

[ha]
name = "{me}"
members = ["{me}"]
lease_ttl = {ttl}
renew_every = {every}
"""


async def lead(url: str, name: str, ttl: float, every: float, seconds: float,
               workdir: Path) -> dict:
    """One leadership renewing on its own schedule for ``seconds``; its shard's
    step-downs counted every 50 ms."""
    from arbiter import config as config_mod
    from arbiter.ha.leadership import Leadership
    from arbiter.store.engine import make_engine

    shard = name.split()[0]  # "new" or "old"
    p = workdir / f"{shard}.toml"
    p.write_text(CONFIG.format(url=url, shard=shard, me=shard, ttl=ttl, every=every))
    engine = make_engine(url)
    leadership = Leadership(config_mod.load(p, check_files=False), engine)
    lat: list[float] = []
    failed = step_downs = 0
    end = time.monotonic() + seconds
    leading = False

    async def watch() -> None:
        nonlocal step_downs, leading
        while time.monotonic() < end:
            now = leadership.term(shard) is not None
            if leading and not now:
                step_downs += 1
            leading = now
            await asyncio.sleep(0.05)

    w = asyncio.create_task(watch())
    try:
        while time.monotonic() < end:  # bounded by `seconds`
            t0 = time.monotonic()
            await leadership.renew()
            lat.append(time.monotonic() - t0)
            failed += leadership.error is not None
            await asyncio.sleep(max(0.0, every - (time.monotonic() - t0)))
        await w
    finally:
        leadership.close()
        engine.dispose()
    return {"renewals": len(lat), "failed": failed, "step_downs": step_downs,
            "latency_ms": {"median": round(median(lat) * 1000, 1),
                           "p99": round(pct(lat, 99) * 1000, 1),
                           "max": round(max(lat) * 1000, 1)}}


def pgbench(url: str, *args: str) -> list[str]:
    # postgresql+psycopg://postgres@127.0.0.1:PORT/bench
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    return ["pgbench", "-h", host, "-p", port, "-U", "postgres", *args, "bench"]


async def leaders(url: str, seconds: float, workdir: Path) -> list[dict]:
    return await asyncio.gather(*(lead(url, name, ttl, every, seconds, workdir)
                                  for name, (ttl, every) in SETTINGS.items()))


def level(url: str, clients: int, seconds: float, workdir: Path) -> dict:
    load = None
    if clients:
        load = subprocess.Popen(pgbench(url, "-c", str(clients), "-j", "2", "-T",
                                        str(int(seconds) + 5), "-n"),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(2)  # the load is up before the leaders start
    tps = None
    try:
        runs = asyncio.run(leaders(url, seconds, workdir))
    finally:
        if load is not None:
            try:
                out = load.communicate(timeout=seconds + 30)[0]
                tps = next((ln.split("=")[1].split()[0] for ln in out.splitlines()
                            if ln.startswith("tps")), None)
            except subprocess.TimeoutExpired:
                stop_process(load, 5)
    return {"clients": clients, "pgbench_tps": tps, **dict(zip(SETTINGS, runs, strict=True))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clients", type=int, nargs="+", default=[0, 16, 64])
    ap.add_argument("--json")
    a = ap.parse_args()
    with throwaway_pg() as (url, _), tempfile.TemporaryDirectory() as tmp:
        from arbiter.store import migrate
        from arbiter.store.engine import make_engine

        e = make_engine(url)
        migrate.upgrade(e)
        e.dispose()
        subprocess.run(pgbench(url, "-i", "-q", "-s", "10"), check=True,
                       capture_output=True, timeout=300)
        levels = [level(url, c, a.seconds, Path(tmp)) for c in a.clients]
    print(f"{'clients':>7} {'tps':>7}  {'setting':16} {'renewals':>8} {'failed':>6} "
          f"{'step-downs':>10}  latency ms median / p99 / max")
    for lv in levels:
        for name in SETTINGS:
            r = lv[name]
            lm = r["latency_ms"]
            print(f"{lv['clients']:>7} {lv['pgbench_tps'] or '-':>7}  {name:16} "
                  f"{r['renewals']:>8} {r['failed']:>6} {r['step_downs']:>10}  "
                  f"{lm['median']} / {lm['p99']} / {lm['max']}")
    write_json(a.json, {"seconds": a.seconds, "levels": levels})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
