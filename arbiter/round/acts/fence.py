"""The steps of a fence over SSH: run a command, read what VIPs are left, verify
(by SSH and by ARP), announce (ARP from the survivor, NDP from the arbiter); each
recorded. ``fence_levels`` orders them.

Each step is handed to ``record`` the moment it ends, so a crash mid-fence
still leaves a trail. Victims are fenced one at a time (one fence in flight).
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from arbiter.clock import utcnow
from arbiter.config import ClusterConfig, Config
from arbiter.model import Address, FencePlan
from arbiter.probe.collect import (
    CollectParseError,
    NodeFacts,
    collect_command,
    parse_collect,
)
from arbiter.probe.ssh import Runner, Target
from arbiter.probe.term_runner import is_stale_term
from arbiter.round.views.targets import target_for
from arbiter.store.repository import AttemptRecord

Record = Callable[[AttemptRecord], Awaitable[None]]
# (cluster, IPv6 VIP, the survivor's MAC) -> why no advertisement was sent, or None
NeighbourAnnounce = Callable[[ClusterConfig, str, str], str | None]
# (cluster, node, vips) -> the VIPs the node's MAC still answers ARP for (None: no view)
ArpCheck = Callable[[ClusterConfig, str, tuple[str, ...]], Awaitable[tuple[str, ...] | None]]
VERIFY_POLL = 0.2


@dataclass(frozen=True)
class FenceReport:
    """What running a FencePlan achieved."""

    ok: bool
    held: tuple[str, ...]  # victims whose keepalived we stopped: held until released
    summary: str


class StaleTerm(Exception):
    """[ha] A node's wrapper refused the command: it has seen a newer leader's term."""


async def run_step(
    runner: Runner, t: Target, step: str, command: str, timeout: float, record: Record
) -> AttemptRecord:
    """Run one recorded step (fence, escalate, announce, recover) on a node."""
    started = utcnow()
    res = await runner.run(t, command, timeout)
    out = (res.stdout + ("\n" + res.stderr if res.stderr else "")).strip()
    rec = AttemptRecord(
        node=t.name, step=step, command=command,
        ok=res.ok and res.exit_status == 0, exit_status=res.exit_status,
        output=out, error=res.error or (None if res.exit_status == 0 else
                                        f"exit status {res.exit_status}"),
        started_at=started, finished_at=utcnow(),
    )
    await record(rec)
    if is_stale_term(res.exit_status, res.stderr):
        raise StaleTerm(f"{t.name} refused {step}: {res.stderr.strip()}")
    return rec


async def _facts(runner: Runner, t: Target, timeout: float) -> tuple[NodeFacts | None, str]:
    res = await runner.run(t, collect_command([], 1.0), timeout)
    if not res.ok or res.exit_status != 0:
        return None, res.error or f"exit status {res.exit_status}"
    try:
        return parse_collect(res.stdout, []), ""
    except CollectParseError as exc:
        return None, str(exc)


async def remaining_vips(
    runner: Runner, t: Target, vips: tuple[str, ...], timeout: float
) -> tuple[tuple[Address, ...] | None, str | None]:
    """The victim's VIP addresses that still claim (``Address.claims``; None: could not
    read). A dadfailed copy does not: no client reaches the victim through it."""
    facts, err = await _facts(runner, t, timeout)
    if facts is None:
        return None, err
    return tuple(a for a in facts.addresses if a.address in vips and a.claims), None


async def verify_gone(
    runner: Runner, t: Target, vips: tuple[str, ...], bound: float, cmd_timeout: float,
    record: Record,
) -> tuple[bool, tuple[Address, ...]]:
    started = utcnow()
    deadline = time.monotonic() + bound
    left: tuple[Address, ...] | None = None
    err = None
    polls = 0
    while True:
        polls += 1
        left, err = await remaining_vips(runner, t, vips, cmd_timeout)
        if left == () or time.monotonic() >= deadline:
            break
        await asyncio.sleep(VERIFY_POLL)
    gone = left == ()
    detail = (
        f"VIP(s) {', '.join(vips)} gone after {polls} read(s)" if gone
        else f"still present after {bound}s: "
        + (", ".join(f"{a.address}/{a.prefixlen} on {a.ifname}" for a in left) if left
           else f"could not read addresses ({err})")
    )
    await record(AttemptRecord(
        node=t.name, step="verify", command="ip -j addr show", ok=gone,
        exit_status=0 if left is not None else None, output=detail,
        error=None if gone else detail, started_at=started, finished_at=utcnow(),
    ))
    return gone, left or ()


def del_command(a: Address) -> str:
    return f"ip addr del {shlex.quote(f'{a.address}/{a.prefixlen}')} dev {shlex.quote(a.ifname)}"


async def verify_arp(cluster: ClusterConfig, node: str, vips: tuple[str, ...],
                     arp: ArpCheck | None, bound: float, record: Record) -> bool:
    """After the SSH verify: the victim's MAC must no longer answer ARP for the VIPs
    (clients see ARP, not addresses). True without an ARP view."""
    if arp is None:
        return True
    started = utcnow()
    deadline = time.monotonic() + bound
    while True:
        left = await arp(cluster, node, vips)
        if left is None:
            return True
        if not left or time.monotonic() >= deadline:
            break
        await asyncio.sleep(VERIFY_POLL)
    detail = (f"no MAC of {node} answers ARP for {', '.join(vips)}" if not left
              else f"{node}'s MAC still answers ARP for {', '.join(left)} after {bound:g}s")
    await record(AttemptRecord(
        node=node, step="verify_arp", command=f"ARP who-has {', '.join(vips)}",
        ok=not left, exit_status=None, output=detail, error=None if not left else detail,
        started_at=started, finished_at=utcnow()))
    return not left


async def announce(
    config: Config, cluster: ClusterConfig, plan: FencePlan, runner: Runner, record: Record,
    send_na: NeighbourAnnounce | None = None,
) -> None:
    """Tell clients the survivor holds the VIPs now, so they forget the victim's MAC:
    IPv4, gratuitous ARP from the survivor (``announce_command``); IPv6, unsolicited
    neighbour advertisements from the arbiter (``probe.ndp``, on ``arp_interface``).
    Best effort: each failure is recorded, and the fence still counts as done."""
    t = target_for(config, cluster, plan.survivor)
    facts, err = await _facts(runner, t, config.ssh.command_timeout)
    if facts is None:
        await record(AttemptRecord(
            node=t.name, step="announce", command="ip -j addr show", ok=False, exit_status=None,
            output="", error=f"could not read the survivor's addresses: {err}",
            started_at=utcnow(), finished_at=utcnow(),
        ))
        return
    for a in (a for a in facts.addresses if a.address in plan.vips and a.claims):
        if ":" not in a.address:
            if cluster.announce_command:
                cmd = cluster.announce_command.format(vip=shlex.quote(a.address),
                                                      ifname=shlex.quote(a.ifname))
                await run_step(runner, t, "announce", cmd, config.ssh.command_timeout, record)
            continue
        started, mac = utcnow(), facts.mac_of(a.ifname)
        why = ("the survivor's MAC on " + a.ifname + " is unknown" if mac is None
               else "no neighbour announcement sender" if send_na is None
               else send_na(cluster, a.address, mac))
        await record(AttemptRecord(
            node=t.name, step="announce", command=f"NA {a.address} is at {mac} (from the arbiter)",
            ok=why is None, exit_status=None,
            output=f"unsolicited neighbour advertisement: {a.address} is at {mac}"
            if why is None else "", error=why, started_at=started, finished_at=utcnow()))
