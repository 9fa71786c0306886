"""Plain-JSON views of the shared domain types: observations and fence plans, as the
store keeps them in evidence and decisions and the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from arbiter.model import FencePlan, NodeObservation


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
