"""Several arbiters ([ha]) on one PostgreSQL, against N simulated directors.

    python -m bench.ha --nodes 1000 --arbiters 3 --rounds 20 [--shards 3] [--json out.json]

Each arbiter runs in a process of its own, one round a second as in production, and
renews its lease every second. With ``--shards K`` the clusters are spread over K
shards and arbiter i prefers shard i, so K leaders split the site; every arbiter
observes every cluster either way. Reported: each arbiter's median warm round and
CPU-seconds per round, PostgreSQL's transactions and row writes per round (from
pg_stat_database) and its CPU-seconds per round (its processes, from /proc).
A throw-away PostgreSQL is started for the run (root, like the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import median, proc_cpu, start_farm, stop_process, write_json
from bench.pg import throwaway_pg

ROOT = Path(__file__).resolve().parents[1]


def ha_config(base: str, url: str, me: str, members: list[str], shards: int) -> str:
    text = re.sub(r'database = ".*"', f'database = "{url}"', base)
    if shards > 1:
        k = iter(range(10**6))
        text = re.sub(r'(\[\[clusters\]\]\nname = "[^"]+"\n)',
                      lambda m: m.group(1) + f'shard = "s{next(k) % shards}"\n', text)
    prefer = f'prefer = ["s{members.index(me)}"]\n' if shards > 1 else ""
    return text + (f'\n[ha]\nname = "{me}"\nmembers = {json.dumps(members)}\n'
                   f"lease_ttl = 6.0\nrenew_every = 1.0\n{prefer}")


async def run_arbiter(cfg_path: str, rounds: int) -> dict:
    from arbiter import config as config_mod
    from arbiter.probe.icmp import IcmpPinger, choose_privileged
    from arbiter.probe.ssh import SshPool
    from arbiter.round.service import Arbiter
    from arbiter.round.views.peers import Peers
    from arbiter.store.engine import make_engine

    cfg = config_mod.load(cfg_path)
    assert cfg.ha is not None
    engine = make_engine(cfg.arbiter.database)
    arb = Arbiter(cfg, engine, IcmpPinger(choose_privileged("auto")),
                  SshPool(cfg.ssh.client_keys, cfg.ssh.known_hosts, cfg.ssh.connect_timeout))
    assert isinstance(arb.peers, Peers)
    leadership = arb.peers.leadership
    await leadership.renew()
    await arb.restore()
    samples = []
    try:
        for i in range(rounds):  # bounded: one round a second, as `serve` runs them
            start, c0 = time.perf_counter(), time.process_time()
            await leadership.renew()
            await arb.run_round()
            samples.append((time.perf_counter() - start, time.process_time() - c0))
            if i == 0:
                print("READY", flush=True)
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - start)))
        leads = sorted(leadership.leading())
        status = leadership.status()
    finally:
        await arb.close()  # also hands the leases back
    warm = samples[2:] or samples
    return {"warm_round_s": round(median([w for w, _ in warm]), 3),
            "cpu_s_per_round": round(median([c for _, c in warm]), 3),
            "cold_round_s": round(samples[0][0], 3), "leads": leads,
            "renewal_error": status["error"],
            "leaders": {k: v["leader"] for k, v in status["shards"].items()}}


def pg_stats(url: str) -> tuple[int, int]:
    from sqlalchemy import create_engine, text

    e = create_engine(url)
    with e.connect() as c:
        x, t = c.execute(text(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted "
            "FROM pg_stat_database WHERE datname = current_database()")).one()
    e.dispose()
    return int(x), int(t)


def pg_cpu(datadir: Path) -> float:
    """CPU-seconds of the server: the postmaster, its backends still running, and
    those that have exited (the postmaster's cutime and cstime)."""
    pid = int((datadir / "postmaster.pid").read_text().split()[0])
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    reaped = (int(stat[13]) + int(stat[14])) / os.sysconf("SC_CLK_TCK")
    return reaped + sum(proc_cpu(p) for p in [pid, *map(int, kids.split())])


def run(nodes: int, arbiters: int, rounds: int, shards: int, port: int) -> dict:
    farm = Path(tempfile.mkdtemp(prefix=f"ha-farm{nodes}-"))
    proc = start_farm(nodes, farm, port)
    children: list[subprocess.Popen] = []
    try:
        with throwaway_pg() as (url, datadir):
            from arbiter.store import migrate
            from arbiter.store.engine import make_engine

            e = make_engine(url)
            migrate.upgrade(e)
            e.dispose()
            members = [f"a{i + 1}" for i in range(arbiters)]
            base = (farm / "arbiter.toml").read_text()
            for me in members:
                (farm / f"{me}.toml").write_text(ha_config(base, url, me, members, shards))
                children.append(subprocess.Popen(
                    [sys.executable, "-m", "bench.ha", "--run-arbiter", str(farm / f"{me}.toml"),
                     "--rounds", str(rounds)], cwd=ROOT, stdout=subprocess.PIPE, text=True))
            for c in children:  # every arbiter past its cold round, then measure
                assert c.stdout is not None
                line = c.stdout.readline()
                if line.strip() != "READY":
                    raise RuntimeError(f"arbiter did not start: {line!r}")
            x0, t0, cpu0, w0 = *pg_stats(url), pg_cpu(datadir), time.monotonic()
            out = [json.loads(c.communicate(timeout=rounds * 10 + 120)[0].splitlines()[-1])
                   for c in children]
            x1, t1, cpu1, w1 = *pg_stats(url), pg_cpu(datadir), time.monotonic()
    finally:
        for c in children:
            stop_process(c, 10)
        stop_process(proc, 30)
        shutil.rmtree(farm, ignore_errors=True)
    per_round = max(1.0, w1 - w0)  # rounds run once a second on each arbiter
    return {"nodes": nodes, "arbiters": arbiters, "shards": shards, "rounds": rounds,
            "per_arbiter": dict(zip(members, out, strict=True)),
            "db_transactions_per_round": round((x1 - x0) / per_round, 1),
            "db_row_writes_per_round": round((t1 - t0) / per_round, 1),
            "db_cpu_s_per_round": round((cpu1 - cpu0) / per_round, 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--arbiters", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--port", type=int, default=2322)
    ap.add_argument("--json")
    ap.add_argument("--run-arbiter")
    a = ap.parse_args()
    if a.run_arbiter:
        print(json.dumps(asyncio.run(run_arbiter(a.run_arbiter, a.rounds))))
        return 0
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    res = run(a.nodes, a.arbiters, a.rounds, a.shards, a.port)
    print(json.dumps(res, indent=2))
    write_json(a.json, {"ha": res})
    return 0


if __name__ == "__main__":
    sys.exit(main())
