"""Read queries behind the API and the CLI: incident pages, one incident, node events.

Plain functions over a session, returning JSON-ready dicts. The incident list
reads only the columns it shows, as rows (no ORM objects, no evidence).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from arbiter.serialize import iso
from arbiter.store.tables import Incident, NodeEvent

MAX_PAGE = 500
MAX_ID = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL


# The list page's columns, read as plain rows: building 500 ORM objects (and parsing
# the decision JSON for one field) was most of a 500-incident page's cost, and that
# cost holds the GIL that the event loop answering /verdict needs.
_LIST_COLUMNS = (
    Incident.id, Incident.kind, Incident.cluster, Incident.state, Incident.vips,
    Incident.survivor, Incident.victims, Incident.reason, Incident.dry_run,
    Incident.decision["mode"].as_string().label("mode"), Incident.attempts,
    Incident.opened_at, Incident.updated_at, Incident.decided_at, Incident.last_attempt_at,
    Incident.fenced_at, Incident.resolved_at, Incident.held, Incident.held_nodes,
    Incident.released_at, Incident.released_by, Incident.term,
)


def list_incidents(
    s: Session, cluster: str | None, state: str | None, since: datetime | None, limit: int,
    before: int | None, kind: str | None,
) -> tuple[list[dict[str, Any]], int | None]:
    q = select(*_LIST_COLUMNS).order_by(Incident.id.desc()).limit(limit + 1)
    if cluster:
        q = q.where(Incident.cluster == cluster)
    if state:
        q = q.where(Incident.state == state)
    if kind:
        q = q.where(Incident.kind == kind)
    if since:
        q = q.where(Incident.opened_at >= since)
    if before:
        q = q.where(Incident.id < before)
    rows = list(s.execute(q))
    # the cursor of the next page is the id its first incident comes after
    nxt = rows[limit - 1].id if len(rows) > limit else None
    return [_summary_row(r) for r in rows[:limit]], nxt


def _summary_row(r: Any) -> dict[str, Any]:
    return _fields(r, r.mode or "ssh")


def get_incident(s: Session, incident_id: int) -> dict[str, Any] | None:
    q = (
        select(Incident)
        .where(Incident.id == incident_id)
        .options(selectinload(Incident.fence_attempts), selectinload(Incident.events))
    )
    inc = s.scalars(q).first()
    if inc is None:
        return None
    out = summary(inc)
    out["evidence"] = inc.evidence
    out["decision"] = inc.decision
    out["fence_attempts"] = [
        {
            "attempt": a.attempt, "node": a.node, "level": a.level, "step": a.step,
            "term": a.term,
            "command": a.command,
            "ok": a.ok, "exit_status": a.exit_status, "output": a.output,
            "error": a.error, "started_at": iso(a.started_at),
            "finished_at": iso(a.finished_at), "duration_ms": round(a.duration_ms, 1),
        }
        for a in inc.fence_attempts
    ]
    out["timeline"] = [
        {"at": iso(e.at), "state": e.state, "message": e.message} for e in inc.events
    ]
    return out


def node_events(s: Session, cluster: str, node: str | None, limit: int) -> list[dict]:
    q = select(NodeEvent).where(NodeEvent.cluster == cluster)
    if node:
        q = q.where(NodeEvent.node == node)
    q = q.order_by(NodeEvent.id.desc()).limit(limit)
    return [{"id": e.id, "cluster": e.cluster, "node": e.node, "instance": e.instance,
             "state": e.state, "priority": e.priority, "at": iso(e.at),
             "source": e.source} for e in s.scalars(q)]


def summary(i: Incident) -> dict[str, Any]:
    return _fields(i, (i.decision or {}).get("mode", "ssh"))


def _fields(r: Any, mode: str) -> dict[str, Any]:
    """An incident's summary from anything with its columns as attributes: an ORM
    object (one incident) or a plain row (the list page)."""
    return {
        "id": r.id, "kind": r.kind, "cluster": r.cluster, "state": r.state, "vips": r.vips,
        "survivor": r.survivor, "victims": r.victims, "reason": r.reason,
        "dry_run": r.dry_run, "mode": mode, "attempts": r.attempts,
        "opened_at": iso(r.opened_at), "updated_at": iso(r.updated_at),
        "decided_at": iso(r.decided_at), "last_attempt_at": iso(r.last_attempt_at),
        "fenced_at": iso(r.fenced_at), "resolved_at": iso(r.resolved_at),
        "held": bool(nodes := _held_nodes(r.held, r.held_nodes, r.victims)),
        "held_nodes": nodes,
        "released_at": iso(r.released_at), "released_by": r.released_by,
        "term": r.term,  # [ha]: the leader's term it was opened or decided under
    }


def _held_nodes(held: bool, held_nodes: list[str] | None, victims: list[str]) -> list[str]:
    """Who the incident holds now: after every node was released, nobody (and so not
    "held": true with no node)."""
    if not held:
        return []
    return list(held_nodes) if held_nodes is not None else list(victims)
