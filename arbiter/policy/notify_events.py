"""What is worth telling an operator, as data: which incident changes raise which
event (the kinds are ``arbiter.model.EventKind``), and the payload each carries.
Pure: no I/O. The store writes them to the outbox (``arbiter.store.outbox``), and
``arbiter.notify`` renders and delivers them.

Each problem has its resolution: a split brain is resolved; a failed fence ends
in ``fence_done`` or the incident resolved; a held node is released; an isolated
arbiter or a TILT ends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from arbiter.model import EventKind

PAYLOAD_VERSION = 1


# severity: what a pager does with it; "resolved" closes the matching alert
SEVERITY: dict[EventKind, str] = {
    EventKind.SPLIT_BRAIN: "critical",
    EventKind.FENCE_FAILED: "critical",
    EventKind.NODE_HELD: "warning",
    EventKind.FENCE_DONE: "warning",
    EventKind.ARBITER_ISOLATED: "critical",
    EventKind.TILT: "warning",
    EventKind.PAUSED: "warning",
    EventKind.ORPHAN_VIP: "critical",
    EventKind.VIP_CONFLICT: "critical",
    EventKind.VIEW_FAILING: "warning",
    EventKind.TEST: "info",
}

# the alert a resolution closes (the Alertmanager format sends it as "resolved")
RESOLVES: dict[EventKind, EventKind] = {
    EventKind.SPLIT_BRAIN_RESOLVED: EventKind.SPLIT_BRAIN,
    EventKind.FENCE_DONE: EventKind.FENCE_FAILED,
    EventKind.NODE_RELEASED: EventKind.NODE_HELD,
    EventKind.ARBITER_ISOLATED_RESOLVED: EventKind.ARBITER_ISOLATED,
    EventKind.TILT_RESOLVED: EventKind.TILT,
    EventKind.PAUSED_RESOLVED: EventKind.PAUSED,
    EventKind.ORPHAN_VIP_RESOLVED: EventKind.ORPHAN_VIP,
    EventKind.VIP_CONFLICT_RESOLVED: EventKind.VIP_CONFLICT,
    EventKind.VIEW_FAILING_RESOLVED: EventKind.VIEW_FAILING,
}


def severity(kind: EventKind) -> str:
    return "resolved" if kind in RESOLVES and kind is not EventKind.FENCE_DONE \
        else SEVERITY.get(kind, "info")


def on_open(incident_kind: str) -> EventKind | None:
    """The event an incident of this kind raises when it opens."""
    return {"split_brain": EventKind.SPLIT_BRAIN, "orphan_vip": EventKind.ORPHAN_VIP,
            "arbiter_isolated": EventKind.ARBITER_ISOLATED,
            "vip_conflict": EventKind.VIP_CONFLICT,
            "view_failing": EventKind.VIEW_FAILING}.get(incident_kind)


def on_change(incident_kind: str, src: str, dst: str) -> EventKind | None:
    """The event an incident's state change raises, if any."""
    if dst == "fenced":
        return EventKind.FENCE_DONE
    if dst == "fence_failed":
        return EventKind.FENCE_FAILED
    if dst == "held" and src != "held":
        return EventKind.NODE_HELD
    if dst == "resolved" and src != "resolved":
        return {"split_brain": EventKind.SPLIT_BRAIN_RESOLVED,
                "orphan_vip": EventKind.ORPHAN_VIP_RESOLVED,
                "vip_conflict": EventKind.VIP_CONFLICT_RESOLVED,
                "view_failing": EventKind.VIEW_FAILING_RESOLVED,
                "arbiter_isolated": EventKind.ARBITER_ISOLATED_RESOLVED}.get(incident_kind)
    return None


def dedup_key(subject: str, occurrence: int | str, event: EventKind, channel: str) -> str:
    """The same for every retry of one delivery, different for any other: receivers
    drop what they have already seen. ``subject`` is ``incident-ID`` (or ``tilt``),
    ``occurrence`` the timeline entry that raised it."""
    return f"{subject}/{occurrence}/{event.value}/{channel}"


def title(event: EventKind, cluster: str | None, incident: dict[str, Any] | None,
          nodes: list[str] | None = None, arbiter: str | None = None) -> str:
    inc = incident or {}
    where = cluster or f"arbiter {arbiter or ''}".strip()
    vips = ", ".join(inc.get("vips") or []) or "its VIPs"
    victims = ", ".join(nodes or inc.get("victims") or []) or "no node"
    return {
        EventKind.SPLIT_BRAIN: f"SPLIT BRAIN in {where}: {vips} held by more than one node",
        EventKind.SPLIT_BRAIN_RESOLVED: f"resolved: split brain in {where}",
        EventKind.FENCE_DONE: f"{where}: fenced {victims}; "
                              f"{inc.get('survivor') or 'the survivor'} keeps {vips}",
        EventKind.FENCE_FAILED: f"FENCE FAILED in {where}: {victims} not fenced",
        EventKind.NODE_HELD: f"{where}: {victims} held until an operator releases it",
        EventKind.NODE_RELEASED: f"{where}: {victims} released",
        EventKind.ARBITER_ISOLATED: f"{where} isolated: fencing suspended",
        EventKind.ARBITER_ISOLATED_RESOLVED: f"resolved: {where} sees its gateways again",
        EventKind.TILT: f"{where} in TILT: fencing suspended after a stall",
        EventKind.TILT_RESOLVED: f"resolved: {where} out of TILT",
        EventKind.ORPHAN_VIP: f"{where}: {vips} held by no node",
        EventKind.ORPHAN_VIP_RESOLVED: f"resolved: {vips} held again in {where}",
        EventKind.VIP_CONFLICT: f"ADDRESS CONFLICT in {where}: a foreign MAC answers for {vips}",
        EventKind.VIP_CONFLICT_RESOLVED: f"resolved: address conflict on {vips} in {where}",
        EventKind.VIEW_FAILING: f"{where}: keepalived's view keeps failing: exclusive "
                                f"verdicts run on the fallback rule",
        EventKind.VIEW_FAILING_RESOLVED: f"resolved: keepalived's view works again in {where}",
        EventKind.PAUSED: f"{where}: maintenance pause: nothing is fenced until it ends",
        EventKind.PAUSED_RESOLVED: f"resolved: {where}: maintenance pause over, fencing on",
        EventKind.TEST: f"test notification from {where}",
    }[event]


def payload(event: EventKind, at: datetime, message: str, *, cluster: str | None,
            incident: dict[str, Any] | None, base_url: str, arbiter: str | None,
            nodes: list[str] | None = None) -> dict[str, Any]:
    """The arbiter's own JSON payload (docs/notifications.md), without the per-channel
    ``dedup_key``. ``incident``: id, kind, state, vips, survivor, victims, reason."""
    inc = dict(incident) if incident is not None else None
    if inc is not None:
        inc["url"] = f"{base_url.rstrip('/')}/incidents/{inc['id']}"
    return {
        "version": PAYLOAD_VERSION,
        "event": event.value,
        "severity": severity(event),
        "status": "resolved" if severity(event) == "resolved" else "firing",
        "title": title(event, cluster, incident, nodes, arbiter),
        "message": message,
        "cluster": cluster,
        "nodes": nodes or [],
        "arbiter": arbiter,
        "at": at.isoformat(),
        "incident": inc,
        "status_url": base_url.rstrip("/") + "/",
    }
