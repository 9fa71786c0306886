"""Plain-JSON views of domain objects: evidence in the store, bodies in the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from arbiter.model import ClusterAssessment, ClusterObservation, FencePlan, NodeObservation


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def node_observation(o: NodeObservation, vips: list[str] | tuple[str, ...]) -> dict[str, Any]:
    return {
        "node": o.node,
        "health": o.health.value,
        "icmp": {"ok": o.icmp_ok, "rtt_ms": o.icmp_rtt_ms},
        "ssh": {"ok": o.ssh_ok, "error": o.ssh_error, "ms": o.ssh_ms},
        "keepalived_running": o.keepalived_running,
        "gateways": {g: ok for g, ok in o.gateways},
        "peers": {p: ok for p, ok in o.peers},
        "holds": list(o.holds(vips)),
        "vip_addresses": [
            {"ifname": a.ifname, "address": a.address, "prefixlen": a.prefixlen}
            for a in o.vip_addresses(vips)
        ],
        "lo_vips": sorted(
            a.address for a in (o.addresses or ()) if a.is_loopback and a.address in vips
        ),
        "addresses_carried_from": iso(o.addresses_seen_at) if o.carried_forward else None,
        "observed_at": iso(o.observed_at),
    }


def cluster_evidence(
    obs: ClusterObservation, ca: ClusterAssessment, vips: list[str]
) -> dict[str, Any]:
    return {
        "nodes": [node_observation(n, vips) for n in obs.nodes],
        "holders": {v: list(h) for v, h in ca.holders},
        "split_vips": list(ca.split_vips),
        "orphan_vips": list(ca.orphan_vips),
        # the ARP view: the MACs that answered each VIP, and whose they are
        "arp": None if obs.arp is None else {
            "answers": {v: list(m) for v, m in obs.arp.answers},
            "owners": dict(obs.arp.owners), "error": obs.arp.error},
        "split_streak": ca.next_history.split_streak,
        "reason": ca.reason,
    }


def fence_plan(plan: FencePlan) -> dict[str, Any]:
    return {
        "survivor": plan.survivor,
        "victims": [
            {"node": v.node, "method": v.method.value, "vips": list(v.vips)} for v in plan.victims
        ],
        "vips": list(plan.vips),
        "ranking": [{"node": n, "why": w} for n, w in plan.ranking],
        "reason": plan.reason,
        "dry_run": plan.dry_run,
        "mode": plan.mode.value,
    }
