"""Executing a fence plan over SSH: stop, verify, escalate, and record every step.

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
from arbiter.ha.term_runner import is_stale_term
from arbiter.model import Address, FenceMethod, FencePlan, VictimAction
from arbiter.probe.collect import CollectParseError, collect_command, parse_collect
from arbiter.probe.ssh import Runner, Target
from arbiter.store.repository import AttemptRecord

Record = Callable[[AttemptRecord], Awaitable[None]]
VERIFY_POLL = 0.2


@dataclass(frozen=True)
class FenceReport:
    """What running a FencePlan achieved."""

    ok: bool
    held: tuple[str, ...]  # victims whose keepalived we stopped: held until released
    summary: str
    stale_term: bool = False  # [ha] a node refused our term: another arbiter leads now


class StaleTerm(Exception):
    """[ha] A node's wrapper refused the command: it has seen a newer leader's term."""


def target_for(config: Config, cluster: ClusterConfig, node: str) -> Target:
    n = cluster.node(node)
    assert n is not None, node
    return Target(n.name, n.address, n.port or config.ssh.port, n.username or config.ssh.username)


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


async def remaining_vips(
    runner: Runner, t: Target, vips: tuple[str, ...], timeout: float
) -> tuple[tuple[Address, ...] | None, str | None]:
    """The victim's VIP addresses still on non-loopback interfaces (None: could not read)."""
    res = await runner.run(t, collect_command([], 1.0), timeout)
    if not res.ok or res.exit_status != 0:
        return None, res.error or f"exit status {res.exit_status}"
    try:
        facts = parse_collect(res.stdout, [])
    except CollectParseError as exc:
        return None, str(exc)
    return tuple(a for a in facts.addresses if a.address in vips and not a.is_loopback), None


async def _verify(
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


async def fence_victim(
    config: Config, cluster: ClusterConfig, action: VictimAction, vips: tuple[str, ...],
    runner: Runner, record: Record,
) -> tuple[bool, bool]:
    """Returns (VIP verified gone, keepalived was stopped by us)."""
    t = target_for(config, cluster, action.node)
    node_cfg = cluster.node(action.node)
    assert node_cfg is not None
    cmd_timeout = config.ssh.command_timeout
    bound = config.arbiter.fence_verify_timeout
    stopped = False
    if action.method is FenceMethod.STOP_KEEPALIVED:
        rec = await run_step(runner, t, "fence_command", cluster.fence_command_for(node_cfg),
                          cmd_timeout, record)
        stopped = rec.ok
        if not rec.ok and rec.exit_status is None:
            return False, False  # could not even run it: SSH is down, nothing to verify
        gone, left = await _verify(runner, t, vips, bound, cmd_timeout, record)
        if gone:
            return True, stopped
    else:
        left, err = await remaining_vips(runner, t, vips, cmd_timeout)
        if left is None:
            await record(AttemptRecord(
                node=t.name, step="remove_address", command="ip -j addr show", ok=False,
                exit_status=None, output="", error=f"could not read addresses: {err}",
                started_at=utcnow(), finished_at=utcnow(),
            ))
            return False, False
        if not left:
            return True, False
    # Escalate: the VIP outlived the stop (or keepalived was already dead).
    step = "escalate" if action.method is FenceMethod.STOP_KEEPALIVED else "remove_address"
    for a in left:
        await run_step(runner, t, step, del_command(a), cmd_timeout, record)
    gone, _ = await _verify(runner, t, vips, min(bound, 2.0), cmd_timeout, record)
    return gone, stopped


async def announce(
    config: Config, cluster: ClusterConfig, plan: FencePlan, runner: Runner, record: Record
) -> None:
    """Gratuitous ARP from the survivor, so clients forget the victim's MAC now.
    Best effort: a failure is recorded, and the fence still counts as done."""
    t = target_for(config, cluster, plan.survivor)
    held, err = await remaining_vips(runner, t, plan.vips, config.ssh.command_timeout)
    if held is None:
        await record(AttemptRecord(
            node=t.name, step="announce", command="ip -j addr show", ok=False, exit_status=None,
            output="", error=f"could not read the survivor's addresses: {err}",
            started_at=utcnow(), finished_at=utcnow(),
        ))
        return
    for a in held:
        cmd = cluster.announce_command.format(vip=shlex.quote(a.address),
                                              ifname=shlex.quote(a.ifname))
        await run_step(runner, t, "announce", cmd, config.ssh.command_timeout, record)


async def execute(
    config: Config, cluster: ClusterConfig, plan: FencePlan, runner: Runner, record: Record
) -> FenceReport:
    held: list[str] = []
    failed: list[str] = []
    for action in plan.victims:
        try:
            ok, stopped = await fence_victim(config, cluster, action, plan.vips, runner, record)
        except StaleTerm as exc:
            # stop at once: whatever this fence meant, a newer leader decides now
            return FenceReport(False, tuple(held), f"refused for a stale term: {exc}", True)
        if stopped:
            held.append(action.node)
        if not ok:
            failed.append(action.node)
    if failed:
        return FenceReport(False, tuple(held), f"fence of {', '.join(failed)} failed")
    return FenceReport(
        True, tuple(held),
        f"fenced {', '.join(v.node for v in plan.victims)}; {plan.survivor} holds "
        f"{', '.join(plan.vips)} alone",
    )
