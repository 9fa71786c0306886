"""Ready-made simulated sites for `arbiter sim`, the README walk-through and tests.

Everything listens on 127.0.0.x: node addresses are loopback, the gateway is
127.0.0.1, and VIPs are only strings in the nodes' state tables.
"""

from __future__ import annotations

from pathlib import Path

from arbiter.sim.node import SimSite, standard_state

GATEWAY = "127.0.0.1"
VIP1, VIP2 = "192.168.77.100", "192.168.77.200"


def site_config(site: SimSite, vips: list[str], database: str, interval: float = 1.0,
                confirm_rounds: int = 2, dry_run: bool = False,
                tokens: dict[str, str] | None = None, cluster_extra: str = "",
                **arbiter_extra: object) -> str:
    """A config for the site. ``tokens`` maps operator names, and node names, to tokens."""
    tokens = tokens or {}
    nodes = "".join(
        f'\n  [[clusters.nodes]]\n  name = "{n.state.name}"\n  address = "{n.state.address}"\n'
        f"  priority = {100 - 10 * i}\n"
        + (f'  token = "{tokens[n.state.name]}"\n' if n.state.name in tokens else "")
        for i, n in enumerate(site.nodes.values())
    )
    ops = {k: v for k, v in tokens.items() if k not in site.nodes}
    api = ("[api]\ntokens = {" + ", ".join(f'{k} = "{v}"' for k, v in ops.items()) + "}\n"
           if ops else "")
    extra = "".join(f"{k} = {_toml(v)}\n" for k, v in arbiter_extra.items())
    return f"""[arbiter]
listen = "127.0.0.1:8080"
database = "{database}"
interval = {interval}
confirm_rounds = {confirm_rounds}
gateways = ["{GATEWAY}"]
dry_run = {str(dry_run).lower()}
{extra}
{api}
[ssh]
username = "root"
port = {site.port}
client_keys = ["{site.key_path}"]
known_hosts = "{site.known_hosts_path}"
connect_timeout = 2.0
command_timeout = 3.0

[[clusters]]
name = "web"
vips = {_toml(vips)}
gateways = ["{GATEWAY}"]
{cluster_extra}
{nodes}"""


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)


async def start_pair(out: Path, scenario: str, port: int = 2222) -> tuple[SimSite, Path]:
    out = Path(out)
    site = SimSite(out, port=port)
    gw = {GATEWAY: True}
    if scenario == "healthy":
        vips = [VIP1]
        a, b = [VIP1], []
    elif scenario == "split":
        vips = [VIP1]
        a, b = [VIP1], [VIP1]
    elif scenario == "dual-master":
        vips = [VIP1, VIP2]
        a, b = [VIP1, VIP2], [VIP1, VIP2]
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    await site.add(standard_state("lb1", "127.0.0.11", vips, a, gw))
    await site.add(standard_state("lb2", "127.0.0.12", vips, b, gw))
    cfg = out / "arbiter.toml"
    cfg.write_text(site_config(site, vips, f"sqlite:///{out / 'arbiter.db'}"))
    return site, cfg
