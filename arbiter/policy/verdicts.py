"""What /verdict answers each node, per VIP: pure, like the rest of the policy.

Two rules, in order:
- reactive (every cluster): deny the victim of an open split-brain incident and a
  node held fenced; allow everyone else, so normal VRRP failover is never hindered;
- exclusive (``verdict = "exclusive"``): also deny a node that lacks a VIP while
  another node holds that VIP and is healthy. A backup that stops hearing adverts
  then waits in FAULT instead of claiming the VIP: the split brain never starts.

A holder that is dead, unreachable, gateway-blind, keepalived-less or only
carried forward from an earlier round never blocks failover. Isolation, TILT and
stale observations abstain, and the gate falls back to its own gateway ping.
"""

from __future__ import annotations

from arbiter.config import ClusterConfig
from arbiter.model import (
    ClusterHistory,
    ClusterObservation,
    Health,
    IncidentState,
    NodeObservation,
    Verdict,
)
from arbiter.policy.assessment import NodeAssessment


def healthy_holder(o: NodeObservation, vip: str) -> str | None:
    """Why this node is a healthy holder of ``vip`` in this round's observation, or
    None: read over SSH just now (not carried forward), keepalived running, at least
    one of its own gateways answering, and the VIP on a non-loopback interface."""
    if not (o.ssh_ok and not o.carried_forward and o.keepalived_running is True):
        return None
    if vip not in o.holds((vip,)):
        return None
    seen, total = o.gateways_seen, len(o.gateways)
    if seen == 0:
        return None
    return f"keepalived running, sees {seen}/{total} gateways"


def guarded_vips(cluster: ClusterConfig, obs: ClusterObservation) -> dict[str, tuple[str, str]]:
    """VIP -> (holder, why healthy) for each VIP held by exactly one node that is a
    healthy holder. A VIP held twice is a split brain: the reactive rule owns it."""
    out: dict[str, tuple[str, str]] = {}
    for vip in cluster.vips:
        holders = [o for o in obs.nodes if vip in o.holds((vip,))]
        if len(holders) == 1 and (why := healthy_holder(holders[0], vip)):
            out[vip] = (holders[0].node, why)
    return out


def node_verdict(
    cluster: ClusterConfig,
    o: NodeObservation | None,
    name: str,
    hist: ClusterHistory,
    abstain_reason: str | None,
    guarded: dict[str, tuple[str, str]],
) -> NodeAssessment:
    """The node's answer without ``vip`` (its only VIP, or all of them), and, in
    exclusive mode, one answer per VIP in ``by_vip``."""
    health = o.health if o else Health.UNREACHABLE
    holds = o.holds(cluster.vips) if o else ()
    base = _reactive(name, health, holds, hist, abstain_reason)
    if cluster.verdict != "exclusive" or base.verdict is not Verdict.ALLOW:
        return base
    by_vip = tuple((v, *_exclusive(name, v, holds, guarded, base)) for v in cluster.vips)
    if len(cluster.vips) == 1:
        _, verdict, reason = by_vip[0]
    elif not holds and all(v in guarded for v in cluster.vips):
        # Without ?vip=, a node is denied only when it holds nothing and every VIP
        # has a healthy holder: a dual-master node that holds one VIP must never be
        # put into FAULT (dropping that VIP) for the other one. Per-VIP gates say more.
        verdict = Verdict.DENY
        reason = "deny: " + "; ".join(f"{guarded[v][0]} holds {v} and is healthy "
                                      f"({guarded[v][1]})" for v in cluster.vips)
    else:
        verdict, reason = base.verdict, base.reason + (
            " (exclusive: ask with ?vip= for an answer per VIP)")
    return NodeAssessment(name, health, holds, verdict, reason, by_vip)


def _exclusive(name: str, vip: str, holds: tuple[str, ...],
               guarded: dict[str, tuple[str, str]],
               base: NodeAssessment) -> tuple[Verdict, str]:
    if vip in holds:
        return Verdict.ALLOW, f"holds {vip}"
    g = guarded.get(vip)
    if g is None or g[0] == name:
        return Verdict.ALLOW, f"no healthy holder of {vip}: failover allowed"
    return Verdict.DENY, f"deny: {g[0]} holds {vip} and is healthy ({g[1]})"


def _reactive(name: str, health: Health, holds: tuple[str, ...], hist: ClusterHistory,
              abstain_reason: str | None) -> NodeAssessment:
    if abstain_reason:
        return NodeAssessment(name, health, holds, Verdict.ABSTAIN, abstain_reason)
    inc = hist.incident
    deny_reason = None
    if (inc is not None and name in inc.victims and not inc.released
            and inc.state not in (IncidentState.DECIDED, IncidentState.WATCHING,
                                  IncidentState.HELD)):
        deny_reason = (
            f"victim of open split-brain incident #{inc.id} ({inc.state.value}); "
            f"{inc.survivor} survives"
        )
    elif (h := hist.hold_of(name)) is not None:
        deny_reason = f"held fenced by incident #{h.incident} until released"
    if deny_reason:
        return NodeAssessment(name, health, holds, Verdict.DENY, deny_reason)
    if inc is not None and inc.state is IncidentState.DECIDED and name in inc.victims:
        return NodeAssessment(
            name, health, holds, Verdict.ALLOW, "dry run: would be denied as split-brain victim"
        )
    # Normal VRRP failover must never be hindered.
    return NodeAssessment(name, health, holds, Verdict.ALLOW, "no split brain involves this node")
