"""Maintenance pauses in SQL: added, ended, read back each round, and each start and
end noted once in the outbox (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so with
``[ha]`` one arbiter notes it). A pause is a row for good: who, why, until when, and
who ended it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbiter.model import EventKind, Pause
from arbiter.store.outbox import Outbox
from arbiter.store.tables import PauseRow


def _pause(r: PauseRow) -> Pause:
    return Pause(r.id, r.scope, r.reason, r.by, r.started_at, r.until)


def add(s: Session, scope: str | None, reason: str, by: str, now: datetime,
        until: datetime) -> Pause:
    """A new pause; an open one of the same scope is ended by it (replaced)."""
    for old in s.scalars(select(PauseRow).where(PauseRow.ended_at.is_(None),
                                                PauseRow.until > now)):
        if old.scope == scope:
            old.ended_at, old.ended_by = now, f"{by} (replaced)"
    row = PauseRow(scope=scope, reason=reason, by=by, started_at=now, until=until,
                   noted_start=False, noted_end=False)
    s.add(row)
    s.flush()
    return _pause(row)


def end(s: Session, scope: str | None, every: bool, by: str, now: datetime) -> list[Pause]:
    """End the open pause of ``scope`` (or every open pause): the ones ended."""
    q = select(PauseRow).where(PauseRow.ended_at.is_(None), PauseRow.until > now)
    out = []
    for r in s.scalars(q):
        if every or r.scope == scope:
            r.ended_at, r.ended_by = now, by
            out.append(_pause(r))
    return out


def active(s: Session, now: datetime) -> list[Pause]:
    q = select(PauseRow).where(PauseRow.ended_at.is_(None), PauseRow.until > now) \
        .order_by(PauseRow.id)
    return [_pause(r) for r in s.scalars(q)]


def note(s: Session, now: datetime, box: Outbox | None) -> list[tuple[str, Pause]]:
    """Each pause's start and end, noted once (outbox rows, when [notify] is on):
    what was noted now, as ("start" | "end", pause)."""
    q = select(PauseRow).where((PauseRow.noted_start.is_(False))
                               | (PauseRow.noted_end.is_(False)))
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    out: list[tuple[str, Pause]] = []
    for r in s.scalars(q):
        p = _pause(r)
        if not r.noted_start:
            r.noted_start = True
            out.append(("start", p))
            if box is not None:
                box.write_event(s, EventKind.PAUSED, now, p.describe(), f"pause-{r.id}")
        over = r.ended_at is not None or r.until <= now
        if over and not r.noted_end:
            r.noted_end = True
            how = f"resumed by {r.ended_by}" if r.ended_at is not None else "its time ran out"
            out.append(("end", p))
            if box is not None:
                box.write_event(s, EventKind.PAUSED_RESOLVED, now,
                                f"maintenance pause ({p.scope or 'every cluster'}) over: "
                                f"{how}; fencing on", f"pause-{r.id}")
    return out
