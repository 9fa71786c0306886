"""Scale: one arbiter against N simulated directors (bench/simfarm.py), and the same
collect command through parallel-ssh and an OpenSSH fan-out (xargs -P 32, with and
without ControlMaster). Everything is on 127.1.x.y; every loop is bounded.

    python -m bench.scale --nodes 10 100 1000 [--json out.json] [--no-compare]

Per N it reports, for the arbiter (measured in a process of its own):
the first (cold) round, the median warm round, CPU-seconds per warm round and peak RSS;
and wall time for the alternatives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, median, proc_cpu, start_farm, stop_process, write_json

# --- the arbiter, in a process of its own ------------------------------------------------

async def measure_arbiter(cfg_path: str, warm_rounds: int, farm_pid: int | None = None) -> dict:
    from arbiter import config as config_mod
    from arbiter.probe.icmp import IcmpPinger, choose_privileged
    from arbiter.probe.ssh import SshPool
    from arbiter.round.service import Arbiter
    from arbiter.store import migrate
    from arbiter.store.engine import make_engine

    cfg = config_mod.load(cfg_path)
    engine = make_engine(cfg.arbiter.database)
    migrate.upgrade(engine)
    pool = SshPool(cfg.ssh.client_keys, cfg.ssh.known_hosts, cfg.ssh.connect_timeout)
    arb = Arbiter(cfg, engine, IcmpPinger(choose_privileged("auto")), pool)
    await arb.restore()

    async def one() -> tuple[float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        await arb.run_round()
        return time.perf_counter() - t0, time.process_time() - c0

    try:
        f0 = proc_cpu(farm_pid)
        cold, cold_cpu = await one()
        farm_cold = proc_cpu(farm_pid) - f0  # the directors' side of the handshakes
        warm = [await one() for _ in range(warm_rounds)]
        a = arb.view.assessment
        ok = sum(1 for c in a.clusters for n in c.nodes if n.health.value == "healthy")
    finally:
        await arb.close()
    return {
        "cold_round_s": round(cold, 3), "cold_cpu_s": round(cold_cpu, 3),
        "farm_cpu_s_cold": round(farm_cold, 3),
        "warm_round_s": round(median([w for w, _ in warm]), 3),
        "warm_cpu_s": round(median([c for _, c in warm]), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "healthy_nodes": ok,
    }


def arbiter_in_child(cfg: Path, warm_rounds: int, farm_pid: int) -> dict:
    p = subprocess.run([sys.executable, "-m", "bench.scale", "--measure-arbiter", str(cfg),
                        "--warm-rounds", str(warm_rounds), "--farm-pid", str(farm_pid)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


# --- the alternatives -----------------------------------------------------------------------

def hosts(n: int) -> list[str]:
    from bench.simfarm import address

    return [address(i) for i in range(n)]


def collect_cmd() -> str:
    from arbiter.probe.collect import collect_command

    return collect_command(["127.0.0.1"], 1.0)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def openssh(n: int, farm: Path, port: int, control: bool) -> dict:
    """xargs -P 32 ssh ... : cold; with ControlMaster also the warm run over the masters."""
    base = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={farm / 'known_hosts'}", "-o", "LogLevel=ERROR",
            "-i", str(farm / "id_ed25519"), "-p", str(port), "-o", "ConnectTimeout=10"]
    ctl = tempfile.mkdtemp(prefix="cm-")
    if control:
        base += ["-o", f"ControlPath={ctl}/%h", "-o", "ControlMaster=auto",
                 "-o", "ControlPersist=120"]
    listing = "\n".join(f"root@{h}" for h in hosts(n)) + "\n"
    argv = ["xargs", "-P", "32", "-I{}", *base, "{}", collect_cmd()]

    def run() -> tuple[float, int, float]:
        t0 = time.perf_counter()
        c0 = _children_cpu()
        p = subprocess.run(argv, input=listing, capture_output=True, text=True, timeout=900)
        outs = p.stdout.count("@@end")
        return time.perf_counter() - t0, outs, _children_cpu() - c0

    try:
        cold, ok, cpu = run()
        # CPU of xargs and every ssh process: the client side's cost, like cold_cpu_s
        out = {"cold_s": round(cold, 3), "ok": ok, "cold_client_cpu_s": round(cpu, 3)}
        if control:
            warm, ok2, _ = run()
            out.update({"warm_s": round(warm, 3), "warm_ok": ok2})
        return out
    finally:
        if control:
            for h in hosts(n):
                subprocess.run(["ssh", "-o", f"ControlPath={ctl}/%h", "-O", "exit", h],
                               capture_output=True, timeout=10)
        shutil.rmtree(ctl, ignore_errors=True)


def parallel_ssh(n: int, farm: Path, port: int) -> dict:
    try:
        from pssh.clients import ParallelSSHClient
    except ImportError:
        return {"error": "parallel-ssh not installed (pip install parallel-ssh)"}
    t0 = time.perf_counter()
    # note: parallel-ssh's ssh2 client does not check known_hosts
    client = ParallelSSHClient(hosts(n), user="root", port=port,
                               pkey=str(farm / "id_ed25519"), pool_size=100, timeout=30,
                               num_retries=1)
    out = client.run_command(collect_cmd(), stop_on_errors=False)
    client.join(out)
    ok = sum(1 for o in out if o.exit_code == 0)
    cold = time.perf_counter() - t0
    t1 = time.perf_counter()
    out2 = client.run_command(collect_cmd(), stop_on_errors=False)
    client.join(out2)
    warm = time.perf_counter() - t1
    ok2 = sum(1 for o in out2 if o.exit_code == 0)
    with contextlib.suppress(Exception):
        client.disconnect()
    return {"cold_s": round(cold, 3), "ok": ok, "warm_s": round(warm, 3), "warm_ok": ok2}


def compare_child(kind: str, n: int, farm: Path, port: int) -> dict:
    p = subprocess.run([sys.executable, "-m", "bench.scale", "--alt", kind, "--farm", str(farm),
                        "--nodes", str(n), "--port", str(port)], cwd=ROOT, capture_output=True,
                       text=True, timeout=1800)
    if p.returncode != 0:
        return {"error": p.stderr[-500:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(sizes: list[int], compare: bool, warm_rounds: int, port: int,
        session: bool = True) -> dict:
    results = {}
    for n in sizes:
        farm = Path(tempfile.mkdtemp(prefix=f"farm{n}-"))
        proc = start_farm(n, farm, port)
        try:
            cfg = farm / "arbiter.toml"
            if not session:  # a channel per round instead of one long-lived remote shell
                text = cfg.read_text().replace("[ssh]\n", "[ssh]\ncollect_session = false\n")
                cfg.write_text(text)
            row = {"arbiter": arbiter_in_child(cfg, warm_rounds, proc.pid)}
            if compare:
                row["parallel_ssh"] = compare_child("pssh", n, farm, port)
                f0 = proc_cpu(proc.pid)
                row["openssh_xargs"] = compare_child("openssh", n, farm, port)
                row["openssh_xargs"]["farm_cpu_s"] = round(proc_cpu(proc.pid) - f0, 3)
                row["openssh_controlmaster"] = compare_child("openssh-cm", n, farm, port)
        finally:
            stop_process(proc, 30)
            shutil.rmtree(farm, ignore_errors=True)
        results[str(n)] = row
        print(json.dumps({n: row}), flush=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--warm-rounds", type=int, default=5)
    ap.add_argument("--port", type=int, default=2222)
    ap.add_argument("--no-compare", action="store_true")
    ap.add_argument("--channel-per-round", action="store_true",
                    help="measure the arbiter with [ssh] collect_session = false")
    ap.add_argument("--json")
    ap.add_argument("--measure-arbiter")
    ap.add_argument("--farm-pid", type=int)
    ap.add_argument("--alt", choices=["pssh", "openssh", "openssh-cm"])
    ap.add_argument("--farm")
    ap.add_argument("--serve", action="store_true",
                    help="issue 32: the real `arbiter serve` (defaults), keepalived's view "
                    "on and off, CPU-s per second in steady state (bench/serve_scale.py)")
    ap.add_argument("--views", nargs="+", choices=["on", "off"], default=["on", "off"])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--profile", help="with --serve: a folder for cProfile output")
    a = ap.parse_args()
    if a.serve:
        from bench.serve_scale import run as run_serve

        prof = Path(a.profile) if a.profile else None
        if prof:
            prof.mkdir(parents=True, exist_ok=True)
        rows = run_serve(a.nodes, a.views, a.seconds, a.warmup, a.port, prof)
        write_json(a.json, {"serve": rows})
        return 0
    if a.measure_arbiter:
        print(json.dumps(asyncio.run(measure_arbiter(a.measure_arbiter, a.warm_rounds,
                                                     a.farm_pid))))
        return 0
    if a.alt:
        farm, n = Path(a.farm), a.nodes[0]
        res = (parallel_ssh(n, farm, a.port) if a.alt == "pssh"
               else openssh(n, farm, a.port, control=a.alt == "openssh-cm"))
        print(json.dumps(res))
        return 0
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    res = run(a.nodes, not a.no_compare, a.warm_rounds, a.port, not a.channel_per_round)
    write_json(a.json, {"scale": res})
    return 0


if __name__ == "__main__":
    sys.exit(main())
