"""The repository: every write is one short transaction, committed before return.

Callers in the async loop use it through ``asyncio.to_thread``; errors surface
as ``StoreError`` so the loop can record a visible ``db_error`` state instead
of crashing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from arbiter.model import FenceMode, IncidentKind, IncidentState
from arbiter.policy import notify_events as notify_events
from arbiter.policy.effects import (
    ChangeState,
    IncidentRef,
    OpenIncident,
    RecordDecision,
    RecordEffect,
    ReleaseHold,
    SaveClusterMemory,
)
from arbiter.policy.rows import ClusterMemoryRow, IncidentRow
from arbiter.store import incident_writes as writes
from arbiter.store import queries
from arbiter.store.engine import StoreError, make_engine, sqlite_file
from arbiter.store.node_events import NodeEventStore
from arbiter.store.outbox import Outbox
from arbiter.store.tables import (
    ClusterState,
    FenceAttempt,
    Heartbeat,
    Incident,
)

MAX_PAGE = queries.MAX_PAGE
OUTPUT_EXCERPT = 2000


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
    level: str | None = None  # the fencing level it belongs to (ssh, vip-del, gate, agent)
    # [ha] the term the step ran under: a step written after a database outage keeps it,
    # though its arbiter may lead under a newer term by the time the write lands
    term: int | None = None

    @property
    def duration_ms(self) -> float:
        return (self.finished_at - self.started_at).total_seconds() * 1000


class WriteGuard(Protocol):
    """[ha] Run inside each write that decides or acts: raises ``NotLeader`` unless
    this arbiter leads the cluster's shard now; returns the term it leads under."""

    def check_write(self, session: Session, cluster: str) -> int: ...


def _row(i: Incident) -> IncidentRow:
    return IncidentRow(
        id=i.id, kind=IncidentKind(i.kind), cluster=i.cluster, state=IncidentState(i.state),
        survivor=i.survivor, victims=tuple(i.victims or ()), attempts=i.attempts,
        last_attempt_at=i.last_attempt_at,
        mode=FenceMode((i.decision or {}).get("mode", FenceMode.SSH.value)),
        held_nodes=tuple(i.held_nodes if i.held_nodes is not None
                         else (i.victims if i.held else ())) if i.held else (),
        pending_hold=tuple(i.pending_hold or ()),
        released=i.released_at is not None,
        released_at=i.released_at,
        refenced=bool(i.refenced),
    )


class Repository(NodeEventStore):
    def __init__(self, engine: Engine, guard: WriteGuard | None = None,
                 arbiter: str | None = None, outbox: Outbox | None = None):
        """``guard`` and ``arbiter`` ([ha]): the lease check run in every write that
        decides or acts, and this arbiter's name for its own incidents. ``outbox``
        ([notify]): the notifications written with the incident changes."""
        self.engine = engine
        self.guard = guard
        self.arbiter = arbiter
        self.outbox = outbox
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        path = sqlite_file(str(engine.url)) if engine.url.get_backend_name() == "sqlite" \
            else None
        self._file = (path, path.stat().st_ino) if path is not None and path.exists() else None

    @classmethod
    def from_url(cls, url: str) -> Repository:
        return cls(make_engine(url))

    def _tx(self, fn):  # type: ignore[no-untyped-def]
        try:
            with self._sessions() as s, s.begin():
                res = fn(s)
                notices = s.info.pop("notices", None)
                if notices and self.outbox is not None:
                    self.outbox.write(s, notices, notices[0].entry.at)
                return res
        except SQLAlchemyError as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}".splitlines()[0][:500]) from exc

    def _lead(self, s: Session, cluster: str | None = None,
              incident: int | None = None) -> int | None:
        """[ha] The write guard, in the write's own transaction: the term this arbiter
        leads the cluster's shard under (NotLeader if it does not). The arbiter's own
        incidents (cluster None) are about itself and need no lease."""
        if self.guard is None:
            return None
        if incident is not None:
            inc = s.get(Incident, incident)
            cluster = inc.cluster if inc is not None else None
        return None if cluster is None else self.guard.check_write(s, cluster)

    def transaction(self, fn):  # type: ignore[no-untyped-def]
        """Run ``fn(session)`` in one transaction (the outbox's own statements)."""
        return self._tx(fn)

    # --- health -----------------------------------------------------------
    def ping(self) -> None:
        self._tx(lambda s: s.execute(text("SELECT 1")))

    def check_write(self, name: str, at: datetime) -> None:
        """Write this arbiter's heartbeat row: readiness proves writes, not only reads."""

        def fn(s: Session) -> None:
            row = s.get(Heartbeat, name)
            if row is None:
                s.add(Heartbeat(name=name, at=at))
            else:
                row.at = at

        self._tx(fn)
        if (problem := self.file_problem()) is not None:
            raise StoreError(problem)

    def file_problem(self) -> str | None:
        """A SQLite file deleted or replaced under us: writes go to a file no restart
        will see again, so say so (None: fine, or not SQLite)."""
        if self._file is None:
            return None
        path, inode = self._file
        try:
            now = path.stat().st_ino
        except FileNotFoundError:
            return f"the database file {path} was deleted: history written now is lost at " \
                   "the next restart; restore the file and restart the arbiter"
        if now != inode:
            return f"the database file {path} was replaced by another file since start-up"
        return None

    # --- a round's effects, in one transaction ----------------------------------
    def apply(
        self, cluster: str | None, effects: Sequence[RecordEffect], at: datetime,
        evidence: dict[str, Any] | None = None,
        decisions: dict[int, dict[str, Any]] | None = None,
    ) -> dict[IncidentKind, int]:
        """Commit every record effect of one cluster (None: the arbiter's own) at once.
        Returns the ids of incidents opened. ``decisions`` holds the JSON of each
        RecordDecision's plan, by the effect's position."""

        def fn(s: Session) -> dict[IncidentKind, int]:
            ids: dict[IncidentKind, int] = {}
            term = self._lead(s, cluster)

            def ref(r: IncidentRef) -> int:
                return r if isinstance(r, int) else ids[r.kind]

            for n, e in enumerate(effects):
                if isinstance(e, OpenIncident):
                    ev = None if e.kind is IncidentKind.ARBITER_ISOLATED else evidence
                    ids[e.kind] = writes.insert(s, e.kind, cluster, at, e.reason, e.vips, ev, term,
                                        self.arbiter)
                elif isinstance(e, RecordDecision):
                    writes.decide(s, e, ref(e.incident), at, (decisions or {})[n], evidence, term)
                elif isinstance(e, ChangeState):
                    writes.change(s, ref(e.incident), e.dst, at, e.message, e.held)
                elif isinstance(e, ReleaseHold):
                    writes.release(s, e.hold.incident, at, "auto", e.why, e.hold.node)
                elif isinstance(e, SaveClusterMemory):
                    assert cluster is not None
                    writes.save_memory(s, cluster, e, at)
            return ids

        return self._tx(fn)

    # --- single writes ------------------------------------------------------------
    def open_incident(self, kind: IncidentKind, cluster: str | None, at: datetime, reason: str,
                      vips: Sequence[str] = (), evidence: dict[str, Any] | None = None) -> int:
        return self._tx(lambda s: writes.insert(s, kind, cluster, at, reason, vips, evidence,
                                        self._lead(s, cluster), self.arbiter))

    def set_state(self, incident_id: int, state: IncidentState, at: datetime, message: str,
                  held_nodes: Sequence[str] = ()) -> None:
        self._tx(lambda s: (self._lead(s, incident=incident_id),
                            writes.change(s, incident_id, state, at, message, held_nodes)))

    def add_attempt(self, incident_id: int, attempt_no: int, rec: AttemptRecord) -> None:
        def held(s: Session) -> int | None:  # the guard first, then the row
            now = self._lead(s, incident=incident_id)
            return rec.term if rec.term is not None else now

        self._tx(lambda s: s.add(FenceAttempt(
            term=held(s),
            incident_id=incident_id, attempt=attempt_no, node=rec.node, step=rec.step,
            command=rec.command, ok=rec.ok, exit_status=rec.exit_status,
            output=rec.output[-OUTPUT_EXCERPT:], error=rec.error,
            started_at=rec.started_at, finished_at=rec.finished_at,
            duration_ms=rec.duration_ms, level=rec.level,
        )))

    def release(self, incident_id: int, at: datetime, by: str, message: str,
                node: str | None = None) -> list[str]:
        """Release held victims (one node, or all of the incident's). Returns who was
        released; empty if nothing was held. Fully released incidents get released_at/by."""
        return self._tx(lambda s: (self._lead(s, incident=incident_id),
                                   writes.release(s, incident_id, at, by, message, node))[1])

    def release_by_operator(self, incident_id: int, at: datetime,
                            by: str) -> tuple[str | None, list[str]] | None:
        """An operator's release of every node the incident holds: (its cluster, who was
        released), or None when there is no such incident."""

        def fn(s: Session) -> tuple[str | None, list[str]] | None:
            inc = s.get(Incident, incident_id)
            if inc is None:
                return None
            self._lead(s, inc.cluster)
            gone = writes.release(s, incident_id, at, by, "released by an operator", None)
            if gone and not inc.held_nodes and inc.state == IncidentState.HELD.value:
                writes.change(s, incident_id, IncidentState.RESOLVED, at,
                        f"every held victim released by {by}")
            return inc.cluster, gone

        return self._tx(fn)

    # --- what a restart needs -------------------------------------------------------
    def unresolved(self) -> list[IncidentRow]:
        """Incidents still open, and fenced victims not yet released: restart state."""
        # the arbiter's own incidents (cluster None) are this arbiter's only: with
        # [ha], other arbiters' isolation is theirs to restore
        own = Incident.arbiter.is_(None) if self.arbiter is None else \
            Incident.arbiter == self.arbiter
        q = select(Incident).where(
            (Incident.state != IncidentState.RESOLVED.value)
            | (Incident.held.is_(True) & Incident.released_at.is_(None))
        ).where(Incident.cluster.is_not(None) | own).order_by(Incident.id)
        return self._tx(lambda s: [_row(i) for i in s.scalars(q)])

    def cluster_memories(self) -> dict[str, ClusterMemoryRow]:
        return self._tx(lambda s: {
            r.cluster: ClusterMemoryRow(r.cluster, r.epoch,
                                        tuple(sorted((r.incumbents or {}).items())))
            for r in s.scalars(select(ClusterState))
        })

    # --- reads for the API and the CLI -------------------------------------------------
    def list_incidents(
        self, cluster: str | None = None, state: str | None = None,
        since: datetime | None = None, limit: int = 50, cursor: int | None = None,
        kind: str | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page, newest first; ``cursor`` (the previous page's ``next_cursor``): only
        incidents older than that id."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        if cursor is not None and not 1 <= cursor <= queries.MAX_ID:
            raise ValueError(f"cursor must be between 1 and {queries.MAX_ID}")
        before = cursor
        return self._tx(lambda s: queries.list_incidents(s, cluster, state, since, limit,
                                                         before, kind))

    def get_incident(self, incident_id: int) -> dict[str, Any] | None:
        return self._tx(lambda s: queries.get_incident(s, incident_id))
