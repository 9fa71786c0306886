"""The repository: every write is one short transaction, committed before return.

Callers in the async loop use it through ``asyncio.to_thread``; errors surface
as ``StoreError`` so the loop can record a visible ``db_error`` state instead
of crashing.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from arbiter.model import IncidentKind, IncidentState
from arbiter.serialize import iso
from arbiter.store.tables import ClusterState, FenceAttempt, Incident, IncidentEvent, NodeEvent

MAX_PAGE = 500
OUTPUT_EXCERPT = 2000


class StoreError(Exception):
    pass


class CursorError(ValueError):
    pass


@dataclass(frozen=True)
class AttemptRecord:
    node: str
    step: str
    command: str
    ok: bool
    exit_status: int | None
    output: str
    error: str | None
    started_at: datetime
    finished_at: datetime

    @property
    def duration_ms(self) -> float:
        return (self.finished_at - self.started_at).total_seconds() * 1000


def make_engine(url: str) -> Engine:
    kw: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kw["connect_args"] = {"check_same_thread": False, "timeout": 5}
    engine = create_engine(url, **kw)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets the API read while the loop writes; FKs are off by default in SQLite.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def _encode_cursor(incident_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": incident_id}).encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        value = int(data["before"])
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CursorError("cursor is not one this API returned") from exc
    if value < 1:
        raise CursorError("cursor is out of range")
    return value


class Repository:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str) -> Repository:
        return cls(make_engine(url))

    def _session(self) -> Session:
        return self._sessions()

    def _tx(self, fn):  # type: ignore[no-untyped-def]
        try:
            with self._session() as s, s.begin():
                return fn(s)
        except SQLAlchemyError as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}".splitlines()[0][:500]) from exc

    # --- health -----------------------------------------------------------
    def ping(self) -> None:
        self._tx(lambda s: s.execute(text("SELECT 1")))

    # --- writes -------------------------------------------------------------
    def open_incident(
        self,
        kind: IncidentKind,
        cluster: str | None,
        at: datetime,
        reason: str,
        vips: list[str] | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> int:
        def fn(s: Session) -> int:
            inc = Incident(
                kind=kind.value, cluster=cluster, state=IncidentState.OPEN.value,
                vips=vips or [], victims=[], reason=reason, evidence=evidence,
                opened_at=at, updated_at=at, dry_run=False, attempts=0, held=False,
            )
            s.add(inc)
            s.flush()
            s.add(IncidentEvent(incident_id=inc.id, at=at, state=inc.state, message=reason))
            return inc.id

        return self._tx(fn)

    def record_decision(
        self,
        incident_id: int,
        state: IncidentState,
        at: datetime,
        survivor: str,
        victims: list[str],
        decision: dict[str, Any],
        evidence: dict[str, Any],
        reason: str,
        dry_run: bool,
        attempt_no: int,
    ) -> None:
        """Commit the decision. Nothing may be fenced before this returns."""

        def fn(s: Session) -> None:
            inc = s.get(Incident, incident_id)
            if inc is None:
                raise StoreError(f"incident {incident_id} does not exist")
            inc.state = state.value
            inc.survivor, inc.victims = survivor, victims
            # a second VIP may have gone dual after the incident opened
            inc.vips = sorted(set(inc.vips or []) | set(decision.get("vips", [])))
            inc.decision, inc.evidence, inc.reason = decision, evidence, reason
            inc.dry_run = dry_run
            inc.decided_at = inc.decided_at or at
            inc.updated_at = at
            if not dry_run:
                inc.attempts = attempt_no
                inc.last_attempt_at = at
            s.add(IncidentEvent(incident_id=incident_id, at=at, state=state.value, message=reason))

        self._tx(fn)

    def add_attempt(self, incident_id: int, attempt_no: int, rec: AttemptRecord) -> None:
        def fn(s: Session) -> None:
            s.add(
                FenceAttempt(
                    incident_id=incident_id, attempt=attempt_no, node=rec.node, step=rec.step,
                    command=rec.command, ok=rec.ok, exit_status=rec.exit_status,
                    output=rec.output[-OUTPUT_EXCERPT:], error=rec.error,
                    started_at=rec.started_at, finished_at=rec.finished_at,
                    duration_ms=rec.duration_ms,
                )
            )

        self._tx(fn)

    def set_state(
        self, incident_id: int, state: IncidentState, at: datetime, message: str,
        held_nodes: list[str] | None = None,
    ) -> None:
        def fn(s: Session) -> None:
            inc = s.get(Incident, incident_id)
            if inc is None:
                raise StoreError(f"incident {incident_id} does not exist")
            inc.state = state.value
            inc.updated_at = at
            if state is IncidentState.FENCED:
                inc.fenced_at = at
            if state is IncidentState.RESOLVED:
                inc.resolved_at = at
            if held_nodes:
                inc.held = True
                inc.held_nodes = sorted(set(inc.held_nodes or []) | set(held_nodes))
            s.add(IncidentEvent(incident_id=incident_id, at=at, state=state.value, message=message))

        self._tx(fn)

    def add_event(self, incident_id: int, at: datetime, message: str) -> None:
        def fn(s: Session) -> None:
            inc = s.get(Incident, incident_id)
            if inc is None:
                raise StoreError(f"incident {incident_id} does not exist")
            s.add(IncidentEvent(incident_id=incident_id, at=at, state=inc.state, message=message))

        self._tx(fn)

    def release(
        self, incident_id: int, at: datetime, by: str, message: str, node: str | None = None
    ) -> list[str]:
        """Release held victims (one node, or all of the incident's). Returns who was
        released; empty if nothing was held. Fully released incidents get released_at/by."""

        def fn(s: Session) -> list[str]:
            inc = s.get(Incident, incident_id)
            if inc is None or not inc.held or inc.released_at is not None:
                return []
            held = list(inc.held_nodes or inc.victims)
            gone = [n for n in held if node is None or n == node]
            if not gone:
                return []
            left = [n for n in held if n not in gone]
            inc.held_nodes = left
            inc.updated_at = at
            if not left:
                inc.released_at, inc.released_by = at, by
            s.add(IncidentEvent(incident_id=incident_id, at=at, state=inc.state,
                                message=f"{message} (released {', '.join(gone)} by {by})"))
            return gone

        return self._tx(fn)

    def add_node_event(
        self, cluster: str, node: str, instance: str, state: str, priority: int | None,
        at: datetime, source: str | None,
    ) -> int:
        def fn(s: Session) -> int:
            ev = NodeEvent(cluster=cluster, node=node, instance=instance, state=state,
                           priority=priority, at=at, source=source)
            s.add(ev)
            s.flush()
            return ev.id

        return self._tx(fn)

    def node_events(self, cluster: str, node: str | None = None, limit: int = 50) -> list[dict]:
        def fn(s: Session) -> list[dict]:
            q = select(NodeEvent).where(NodeEvent.cluster == cluster)
            if node:
                q = q.where(NodeEvent.node == node)
            q = q.order_by(NodeEvent.id.desc()).limit(limit)
            return [{"id": e.id, "cluster": e.cluster, "node": e.node, "instance": e.instance,
                     "state": e.state, "priority": e.priority, "at": iso(e.at),
                     "source": e.source} for e in s.scalars(q)]

        return self._tx(fn)

    def save_epoch(self, cluster: str, epoch: int, at: datetime) -> None:
        def fn(s: Session) -> None:
            row = s.get(ClusterState, cluster)
            if row is None:
                s.add(ClusterState(cluster=cluster, epoch=epoch, updated_at=at))
            else:
                row.epoch, row.updated_at = epoch, at

        self._tx(fn)

    # --- reads --------------------------------------------------------------
    def epochs(self) -> dict[str, int]:
        return self._tx(lambda s: {r.cluster: r.epoch for r in s.scalars(select(ClusterState))})

    def unresolved(self) -> list[dict[str, Any]]:
        """Incidents still open, and fenced victims not yet released: restart state."""

        def fn(s: Session) -> list[dict[str, Any]]:
            q = select(Incident).where(
                (Incident.state != IncidentState.RESOLVED.value)
                | (Incident.held.is_(True) & Incident.released_at.is_(None))
            ).order_by(Incident.id)
            return [_summary(i) for i in s.scalars(q)]

        return self._tx(fn)

    def list_incidents(
        self,
        cluster: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        kind: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        before = _decode_cursor(cursor) if cursor else None

        def fn(s: Session) -> tuple[list[dict[str, Any]], str | None]:
            q = select(Incident).order_by(Incident.id.desc()).limit(limit + 1)
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
            rows = list(s.scalars(q))
            nxt = _encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
            return [_summary(i) for i in rows[:limit]], nxt

        return self._tx(fn)

    def get_incident(self, incident_id: int) -> dict[str, Any] | None:
        def fn(s: Session) -> dict[str, Any] | None:
            q = (
                select(Incident)
                .where(Incident.id == incident_id)
                .options(selectinload(Incident.fence_attempts), selectinload(Incident.events))
            )
            inc = s.scalars(q).first()
            if inc is None:
                return None
            out = _summary(inc)
            out["evidence"] = inc.evidence
            out["decision"] = inc.decision
            out["fence_attempts"] = [
                {
                    "attempt": a.attempt, "node": a.node, "step": a.step, "command": a.command,
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

        return self._tx(fn)


def _summary(i: Incident) -> dict[str, Any]:
    return {
        "id": i.id,
        "kind": i.kind,
        "cluster": i.cluster,
        "state": i.state,
        "vips": i.vips,
        "survivor": i.survivor,
        "victims": i.victims,
        "reason": i.reason,
        "dry_run": i.dry_run,
        "mode": (i.decision or {}).get("mode", "ssh"),
        "attempts": i.attempts,
        "opened_at": iso(i.opened_at),
        "updated_at": iso(i.updated_at),
        "decided_at": iso(i.decided_at),
        "last_attempt_at": iso(i.last_attempt_at),
        "fenced_at": iso(i.fenced_at),
        "resolved_at": iso(i.resolved_at),
        "held": i.held,
        "held_nodes": i.held_nodes if i.held_nodes is not None else (i.victims if i.held else []),
        "released_at": iso(i.released_at),
        "released_by": i.released_by,
    }
