"""What /verdict answers each node, per VIP: pure, like the rest of the policy.

Two rules, in order:
- reactive (every cluster): deny the victim of an open split-brain incident and a
  node held fenced; allow everyone else, so normal VRRP failover is never hindered;
- exclusive (``verdict = "exclusive"``): also deny a backup of a VIP whose holder is
  healthy, but only while it **misses the adverts** that holder, MASTER, is sending
  (``policy.vrrp.deaf_rule``, from keepalived's own view). A backup that hears its
  master stays in BACKUP with its timers running, so a real failover happens at
  keepalived's own speed; one that stops hearing a master that is alive is denied
  before its master-down interval ends, and the split brain never starts. Without
  keepalived's view (``keepalived_view = false``, or a keepalived without JSON) the
  rule falls back to denying every backup while the holder is healthy.

A holder that is dead, unreachable, gateway-blind, keepalived-less or only
carried forward from an earlier round never blocks failover. Isolation, TILT and
stale observations abstain, and the gate falls back to its own gateway ping.
"""

from __future__ import annotations

from datetime import datetime

from arbiter.config import ClusterConfig
from arbiter.model import (
    ClusterHistory,
    ClusterObservation,
    Denial,
    Health,
    IncidentState,
    NodeObservation,
    Verdict,
)
from arbiter.policy.assessment import NodeAssessment
from arbiter.policy.liveness import runs
from arbiter.policy.view_health import failing_views
from arbiter.policy.vrrp import deaf_rule, fresh, stale_limit

Rulings = dict[tuple[str, str], tuple[Verdict, str]]  # (node, vip) -> exclusive answer


def healthy_holder(o: NodeObservation, vip: str) -> str | None:
    """Why this node is a healthy holder of ``vip`` in this round's observation, or
    None: read over SSH just now (not carried forward), keepalived running, at least
    one of its own gateways answering, and the VIP on a non-loopback interface."""
    if not (o.ssh_ok and not o.carried_forward and runs(o) is True):
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


def without_view(cluster: ClusterConfig, obs: ClusterObservation,
                 now: datetime | None = None) -> str | None:
    """Why the exclusive rule cannot use keepalived's view for this cluster (then it
    holds every backup while the holder is healthy), or None. ``now``: also a view
    that keeps failing (``view_health``; issue 29)."""
    if not cluster.keepalived_view:
        return "keepalived_view = false"
    if now is not None and (failing := failing_views(cluster, obs, now)):
        return "; ".join(failing)
    for o in obs.nodes:
        kv = o.keepalived
        if kv is None:
            return f"{o.node}: not watched"
        if not kv.supported:
            return f"{o.node}: {kv.error or 'keepalived view unavailable'}"
    return None


def exclusive_rulings(cluster: ClusterConfig, obs: ClusterObservation,
                      hist: ClusterHistory, guarded: dict[str, tuple[str, str]],
                      now: datetime, watch_every: float) -> tuple[Rulings, tuple[Denial, ...]]:
    """The exclusive answer for every node that does not hold a guarded VIP, and the
    denials to remember. Evidence first: with keepalived's view, only a backup that
    misses its master's adverts is denied; without it, every backup is."""
    out: Rulings = {}
    denials: dict[tuple[str, int], Denial] = {}
    fallback = without_view(cluster, obs, now)
    known = {d.group: d for d in hist.denials}
    limit = stale_limit(watch_every)
    for vip, (holder, why) in guarded.items():
        ho = obs.node(holder)
        for n in cluster.nodes:
            if n.name == holder:
                continue
            if fallback is not None:
                out[(n.name, vip)] = (Verdict.DENY, f"deny: {holder} holds {vip} and is "
                                      f"healthy ({why}); no keepalived view ({fallback})")
                continue
            no = obs.node(n.name)
            hv, nv = (ho.keepalived if ho else None), (no.keepalived if no else None)
            master = hv.holding(vip) if hv is not None else None
            key = (n.name, master.vrid, master.family) if master is not None else None
            old = known.get(key) if key is not None else None
            if not (fresh(hv, now, limit) and fresh(nv, now, limit)):
                # no fresh evidence either way: keep a deny that stands, add none
                if old is not None:
                    denials[old.group] = old
                    out[(n.name, vip)] = (Verdict.DENY, "deny: keepalived's view is stale "
                                          "here; keeping the deny that stands")
                else:
                    out[(n.name, vip)] = (Verdict.ALLOW, "keepalived's view is stale here: "
                                          "no evidence to deny on")
                continue
            if hv is None or nv is None or master is None or key is None:
                # the holder's fresh dump names the VIP in none of its instances (under
                # virtual_ipaddress_excluded, added by hand, listed differently): no
                # evidence of who hears whom, so the documented fallback rule (issue 29)
                out[(n.name, vip)] = (Verdict.DENY, (
                    f"deny: {holder} holds {vip} and is healthy ({why}); no keepalived "
                    f"view of it ({holder}'s keepalived names {vip} in none of its VRRP "
                    "instances: virtual_ipaddress_excluded, or added by hand?)"))
                continue
            r = deaf_rule(n.name, holder, vip, nv.peer(master), master, old, now)
            if r.denial is not None:
                denials[key] = r.denial
            out[(n.name, vip)] = (Verdict.DENY if r.deny else Verdict.ALLOW, r.reason)
    return out, tuple(sorted(denials.values(), key=lambda d: d.group))


def node_verdict(
    cluster: ClusterConfig,
    o: NodeObservation | None,
    name: str,
    hist: ClusterHistory,
    abstain_reason: str | None,
    rulings: Rulings,
) -> NodeAssessment:
    """The node's answer without ``vip`` (its only VIP, or all of them), and, in
    exclusive mode, one answer per VIP in ``by_vip``."""
    health = o.health if o else Health.UNREACHABLE
    holds = o.holds(cluster.vips) if o else ()
    base = _reactive(name, health, holds, hist, abstain_reason)
    if cluster.verdict != "exclusive" or base.verdict is not Verdict.ALLOW:
        return base
    by_vip = tuple((v, *_exclusive(name, v, holds, rulings)) for v in cluster.vips)
    if len(cluster.vips) == 1:
        _, verdict, reason = by_vip[0]
    elif not holds and all(rulings.get((name, v), (Verdict.ALLOW,))[0] is Verdict.DENY
                           for v in cluster.vips):
        # Without ?vip=, a node is denied only when it holds nothing and every VIP
        # denies it: a dual-master node that holds one VIP must never be put into
        # FAULT (dropping that VIP) for the other one. Per-VIP gates say more.
        verdict = Verdict.DENY
        reason = "; ".join(rulings[(name, v)][1] for v in cluster.vips)
    else:
        verdict, reason = base.verdict, base.reason + (
            " (exclusive: ask with ?vip= for an answer per VIP)")
    return NodeAssessment(name, health, holds, verdict, reason, by_vip)


def _exclusive(name: str, vip: str, holds: tuple[str, ...],
               rulings: Rulings) -> tuple[Verdict, str]:
    if vip in holds:
        return Verdict.ALLOW, f"holds {vip}"
    return rulings.get((name, vip), (Verdict.ALLOW,
                                     f"no healthy holder of {vip}: failover allowed"))


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
