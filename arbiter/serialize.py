"""Plain-JSON views of the shared domain types: observations and fence plans, as the
store keeps them in evidence and decisions and the API shows them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from arbiter.model import Address, FencePlan, KeepalivedView, NodeObservation


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def keepalived_view(kv: KeepalivedView | None) -> dict[str, Any] | None:
    """keepalived's own view of one node: each instance's state, priorities and
    counters as its last dump had them (null: not watched)."""
    if kv is None:
        return None
    return {
        "error": kv.error, "supported": kv.supported, "dumped_at": iso(kv.at),
        "instances": [{
            "name": i.name, "vrid": i.vrid, "version": i.version, "state": i.state,
            "wantstate": i.wantstate, "base_priority": i.base_priority,
            "effective_priority": i.effective_priority, "advert_int": i.advert_int,
            "interface": i.interface, "vips": list(i.vips),
            "last_transition": datetime.fromtimestamp(i.last_transition, UTC).isoformat(),
            "state_since": iso(i.state_since), "heard_at": iso(i.heard_at),
            "advert_rcvd": i.latest.advert_rcvd, "advert_sent": i.latest.advert_sent,
            "pri_zero_rcvd": i.latest.pri_zero_rcvd, "pri_zero_sent": i.latest.pri_zero_sent,
        } for i in kv.instances],
    }


def _vips_where(o: NodeObservation, vips: list[str] | tuple[str, ...],
                which: Callable[[Address], bool]) -> list[str]:
    """The node's copies of the VIPs that ``which`` picks, sorted."""
    return sorted(a.address for a in (o.addresses or ()) if which(a) and a.address in vips)


def node_observation(o: NodeObservation, vips: list[str] | tuple[str, ...]) -> dict[str, Any]:
    return {
        "node": o.node,
        "health": o.health.value,
        "icmp": {"ok": o.icmp_ok, "rtt_ms": o.icmp_rtt_ms},
        "ssh": {"ok": o.ssh_ok, "error": o.ssh_error, "ms": o.ssh_ms},
        "keepalived_running": o.keepalived_running,
        "keepalived_frozen": o.keepalived_frozen,
        "gateways": {g: ok for g, ok in o.gateways},
        "peers": {p: ok for p, ok in o.peers},
        "holds": list(o.holds(vips)),
        "vip_addresses": [
            {"ifname": a.ifname, "address": a.address, "prefixlen": a.prefixlen}
            for a in o.vip_addresses(vips)
        ],
        "lo_vips": _vips_where(o, vips, lambda a: a.is_loopback),
        # IPv6 VIPs whose duplicate address detection failed on this node: another node
        # answered for them; they do not count as held (``Address.claims``)
        "dadfailed_vips": _vips_where(o, vips, lambda a: a.dadfailed),
        "addresses_carried_from": iso(o.addresses_seen_at) if o.carried_forward else None,
        "observed_at": iso(o.observed_at),
        "keepalived": keepalived_view(o.keepalived),
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
