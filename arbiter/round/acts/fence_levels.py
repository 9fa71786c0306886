"""Executing a fence plan: each victim through its fencing levels, in order, until
one is verified (Pacemaker's fencing topology). Every step is recorded with the
level it belongs to; a victim counts as failed only when every level failed.

    ssh      fence_command over SSH; verified by SSH (VIP gone) and ARP
    vip-del  `ip addr del` of what is left, over SSH; verified the same way
    gate     the victim is denied by /verdict already: wait for its gate to drop
             the VIP (keepalived goes FAULT); verified by SSH or ARP
    agent    the fence agent on the arbiter host: action=off, then status must
             say off; verified by ARP where there is an ARP view

Never an agent against the survivor, and never an agent while the arbiter
abstains (it may be the one cut off): both are refused and recorded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from arbiter.clock import utcnow
from arbiter.config import ClusterConfig, Config
from arbiter.model import FenceMethod, FencePlan, VictimAction
from arbiter.probe.agent import AgentResult, describe, run_agent
from arbiter.probe.ssh import Runner
from arbiter.round.acts.fence import (
    VERIFY_POLL,
    ArpCheck,
    FenceReport,
    Record,
    StaleTerm,
    del_command,
    remaining_vips,
    run_step,
    verify_arp,
    verify_gone,
)
from arbiter.round.views.targets import target_for
from arbiter.store.repository import AttemptRecord


@dataclass(frozen=True)
class FenceContext:
    config: Config
    cluster: ClusterConfig
    runner: Runner
    record: Record
    arp: ArpCheck | None = None
    abstaining: Callable[[], str | None] | None = None  # why the arbiter abstains now


@dataclass
class VictimResult:
    ok: bool = False
    stopped: bool = False  # keepalived stopped by us: held until released
    powered_off: bool = False  # the agent turned it off: held, recovered with action=on
    level: str | None = None  # the level that fenced it


def _leveled(record: Record, level: str) -> Record:
    async def rec(r: AttemptRecord) -> None:
        await record(dataclasses.replace(r, level=level))
    return rec


async def _note(record: Record, node: str, step: str, ok: bool, detail: str,
                command: str = "") -> None:
    now = utcnow()
    await record(AttemptRecord(node=node, step=step, command=command, ok=ok, exit_status=None,
                               output=detail, error=None if ok else detail, started_at=now,
                               finished_at=now))


async def _level_ssh(ctx: FenceContext, action: VictimAction, vips: tuple[str, ...],
                     rec: Record, res: VictimResult) -> bool:
    cfg, c = ctx.config, ctx.cluster
    if action.method is FenceMethod.REMOVE_ADDRESS:
        return False  # keepalived is not running there: only a stale VIP is left (vip-del)
    node = c.node(action.node)
    assert node is not None
    t = target_for(cfg, c, action.node)
    r = await run_step(ctx.runner, t, "fence_command", c.fence_command_for(node),
                       cfg.ssh.command_timeout, rec)
    res.stopped = res.stopped or r.ok
    if r.exit_status is None:
        return False  # could not even run it: SSH is down, nothing to verify
    gone, _ = await verify_gone(ctx.runner, t, vips, cfg.arbiter.fence_verify_timeout,
                            cfg.ssh.command_timeout, rec)
    return gone and await verify_arp(c, action.node, vips, ctx.arp,
                                     cfg.arbiter.fence_verify_timeout, rec)


async def _level_vip_del(ctx: FenceContext, action: VictimAction, vips: tuple[str, ...],
                         rec: Record) -> bool:
    cfg, c = ctx.config, ctx.cluster
    t = target_for(cfg, c, action.node)
    left, err = await remaining_vips(ctx.runner, t, vips, cfg.ssh.command_timeout)
    step = "escalate" if action.method is FenceMethod.STOP_KEEPALIVED else "remove_address"
    if left is None:
        await _note(rec, action.node, step, False, f"could not read addresses: {err}",
                    "ip -j addr show")
        return False
    for a in left:
        await run_step(ctx.runner, t, step, del_command(a), cfg.ssh.command_timeout, rec)
    bound = min(cfg.arbiter.fence_verify_timeout, 2.0)
    if left:
        gone, _ = await verify_gone(ctx.runner, t, vips, bound, cfg.ssh.command_timeout, rec)
        if not gone:
            return False
    return await verify_arp(c, action.node, vips, ctx.arp, bound, rec)


async def _gone(ctx: FenceContext, node: str, vips: tuple[str, ...]) -> bool | None:
    """Whether the node's VIPs are gone, by SSH or else by ARP (None: cannot tell)."""
    t = target_for(ctx.config, ctx.cluster, node)
    left, _ = await remaining_vips(ctx.runner, t, vips, ctx.config.ssh.command_timeout)
    if left is not None:
        if left:
            return False
        if ctx.arp is None:
            return True
    if ctx.arp is not None:
        still = await ctx.arp(ctx.cluster, node, vips)
        if still is not None:
            return not still
    return None if left is None else True


async def _level_gate(ctx: FenceContext, action: VictimAction, vips: tuple[str, ...],
                      rec: Record) -> bool:
    """The victim is denied already (the decision is recorded): wait for its gate."""
    started = utcnow()
    bound = ctx.cluster.gate_fence_timeout
    deadline = time.monotonic() + bound
    gone: bool | None = None
    while time.monotonic() < deadline:
        gone = await _gone(ctx, action.node, vips)
        if gone:
            break
        await asyncio.sleep(max(VERIFY_POLL, 0.5))
    detail = (f"{action.node}'s gate dropped {', '.join(vips)} (denied by /verdict)" if gone
              else f"{action.node} still holds {', '.join(vips)} after {bound:g}s of deny"
              if gone is False else f"cannot tell whether {action.node} dropped the VIPs "
              "(neither SSH nor ARP answers)")
    await rec(AttemptRecord(node=action.node, step="gate_wait", command="GET /verdict: deny",
                            ok=bool(gone), exit_status=None, output=detail,
                            error=None if gone else detail, started_at=started,
                            finished_at=utcnow()))
    return bool(gone)


async def _agent_step(ctx: FenceContext, node: str, action: str, rec: Record) -> AgentResult:
    c = ctx.cluster
    n = c.node(node)
    assert n is not None and c.fence_agent is not None
    opts = c.agent_options_for(n)
    started = utcnow()
    r = await run_agent(c.fence_agent, action, opts, node, c.fence_agent_timeout)
    ok = r.off if action == "status" else r.ok
    await rec(AttemptRecord(
        node=node, step=f"agent_{action}",
        command=f"{c.fence_agent} action={action} {describe(opts)}".strip(), ok=ok,
        exit_status=r.exit_status, output=r.output,
        error=None if ok else (r.error or f"status says on (exit {r.exit_status})"),
        started_at=started, finished_at=utcnow()))
    return r


async def _level_agent(ctx: FenceContext, plan: FencePlan, action: VictimAction,
                       vips: tuple[str, ...], rec: Record, res: VictimResult) -> bool:
    if action.node == plan.survivor:  # by construction never; refused all the same
        await _note(rec, action.node, "agent_off", False, "refused: the survivor")
        return False
    why = ctx.abstaining() if ctx.abstaining else None
    if why:
        await _note(rec, action.node, "agent_off", False,
                    f"refused: the arbiter abstains ({why}); an agent is never run then")
        return False
    off = await _agent_step(ctx, action.node, "off", rec)
    if not off.ok:
        return False
    res.powered_off = True
    status = await _agent_step(ctx, action.node, "status", rec)
    if not status.off:
        return False
    return await verify_arp(ctx.cluster, action.node, vips, ctx.arp,
                            ctx.config.arbiter.fence_verify_timeout, rec)


async def fence_victim(ctx: FenceContext, plan: FencePlan,
                       action: VictimAction) -> VictimResult:
    node = ctx.cluster.node(action.node)
    assert node is not None
    res = VictimResult()
    for level in ctx.cluster.levels_for(node):
        rec = _leveled(ctx.record, level)
        if level == "ssh":
            ok = await _level_ssh(ctx, action, plan.vips, rec, res)
        elif level == "vip-del":
            ok = await _level_vip_del(ctx, action, plan.vips, rec)
        elif level == "gate":
            ok = await _level_gate(ctx, action, plan.vips, rec)
        else:
            ok = await _level_agent(ctx, plan, action, plan.vips, rec, res)
        if ok:
            res.ok, res.level = True, level
            return res
    return res


async def execute(ctx: FenceContext, plan: FencePlan) -> FenceReport:
    held: list[str] = []
    failed: list[str] = []
    how: list[str] = []
    for action in plan.victims:
        try:
            r = await fence_victim(ctx, plan, action)
        except StaleTerm as exc:
            # stop at once: whatever this fence meant, a newer leader decides now
            return FenceReport(False, tuple(held), f"refused for a stale term: {exc}")
        if r.stopped or r.powered_off:
            held.append(action.node)
        if r.ok:
            how.append(f"{action.node} by {r.level}")
        else:
            failed.append(action.node)
    if failed:
        levels = ", ".join(f"{n}: {'/'.join(ctx.cluster.levels_for(ctx.cluster.node(n)))}"  # type: ignore[arg-type]
                           for n in failed)
        return FenceReport(False, tuple(held), f"fence of {', '.join(failed)} failed at every "
                                               f"level ({levels})")
    return FenceReport(
        True, tuple(held),
        f"fenced {', '.join(how)}; {plan.survivor} holds {', '.join(plan.vips)} alone",
    )


async def agent_recover(cluster: ClusterConfig, node: str, record: Record) -> dict | None:
    """Releasing a node an agent fenced: if the agent says it is off, turn it on
    (action=on). None when it is on already (recover_command then runs as usual)."""
    ctx_rec = _leveled(record, "agent")
    n = cluster.node(node)
    assert n is not None and cluster.fence_agent is not None
    opts = cluster.agent_options_for(n)
    st = await run_agent(cluster.fence_agent, "status", opts, node, cluster.fence_agent_timeout)
    if not st.off:
        return None
    started = utcnow()
    on = await run_agent(cluster.fence_agent, "on", opts, node, cluster.fence_agent_timeout)
    cmd = f"{cluster.fence_agent} action=on {describe(opts)}".strip()
    await ctx_rec(AttemptRecord(node=node, step="recover", command=cmd, ok=on.ok,
                                exit_status=on.exit_status, output=on.output, error=on.error,
                                started_at=started, finished_at=utcnow()))
    return {"node": node, "command": cmd, "ok": on.ok, "exit_status": on.exit_status,
            "error": on.error}
