"""A farm of simulated directors for the scale benchmark: N asyncssh listeners on
distinct 127.1.x.y addresses (loopback only), pairs forming clusters. Writes the
arbiter config, key and known_hosts into OUT, then `ready`, and runs until SIGTERM.

    python -m bench.simfarm --nodes 1000 --out /tmp/farm
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from arbiter.sim.node import SimSite, standard_state

GATEWAY = "127.0.0.1"


def address(i: int) -> str:
    return f"127.1.{i // 200}.{i % 200 + 1}"


def vip(k: int) -> str:
    return f"10.250.{k // 200}.{k % 200 + 1}"  # a string in the state table, never contacted


def config(site: SimSite, n: int, db: str, push: bool) -> str:
    head = f"""[arbiter]
listen = "127.0.0.1:18080"
database = "{db}"
interval = 1.0
confirm_rounds = 2
gateways = ["{GATEWAY}"]
push = {str(push).lower()}

[ssh]
username = "root"
port = {site.port}
client_keys = ["{site.key_path}"]
known_hosts = "{site.known_hosts_path}"
connect_timeout = 10.0
command_timeout = 10.0
"""
    parts = [head]
    for k in range(n // 2):
        parts.append(f"""
[[clusters]]
name = "c{k}"
vips = ["{vip(k)}"]
  [[clusters.nodes]]
  name = "n{2 * k}"
  address = "{address(2 * k)}"
  priority = 100
  [[clusters.nodes]]
  name = "n{2 * k + 1}"
  address = "{address(2 * k + 1)}"
  priority = 90
""")
    return "".join(parts)


async def main(n: int, out: Path, port: int, push: bool) -> None:
    site = SimSite(out, port=port)
    gw = {GATEWAY: True}
    for i in range(n):
        k = i // 2
        holds = [vip(k)] if i % 2 == 0 else []
        await site.add(standard_state(f"n{i}", address(i), [vip(k)], holds, gw), write=False)
    site.write_known_hosts()
    (out / "arbiter.toml").write_text(config(site, n, f"sqlite:///{out / 'arbiter.db'}", push))
    (out / "ready").write_text("ok")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await site.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--port", type=int, default=2222)
    ap.add_argument("--push", action="store_true")
    a = ap.parse_args()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    asyncio.run(main(a.nodes, Path(a.out), a.port, a.push))
