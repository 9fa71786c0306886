"""The outbox in SQL: notifications written inside the transaction that records
the incident change, claimed by a sender, marked sent, retried or dead.

At-least-once: a row is claimed by pushing its ``next_at`` past the delivery's
timeout in its own transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several arbiters' senders never take the same row); a sender that dies
mid-delivery leaves it to be claimed again once that time has passed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from arbiter.config import Config
from arbiter.policy import notify_events as ev
from arbiter.store.tables import Incident, IncidentEvent, Notification

PENDING, SENT, DEAD = "pending", "sent", "dead"
ERROR_MAX = 500


@dataclass(frozen=True)
class Notice:
    """An incident change worth telling, noted by the repository during a write."""

    event: ev.EventKind
    incident: Incident
    entry: IncidentEvent  # the timeline entry that raised it: its id makes the key unique
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outbox:
    """Which events go out, on which channels, and how messages link back."""

    channels: tuple[str, ...]
    events: frozenset[ev.EventKind]
    base_url: str
    arbiter: str | None = None

    def write(self, s: Session, notices: Sequence[Notice], at: datetime) -> int:
        """Add one row per wanted notice and channel to the session's transaction."""
        rows = 0
        wanted = [n for n in notices if n.event in self.events]
        if not wanted:
            return 0
        s.flush()  # the timeline entries' ids
        for n in wanted:
            inc = n.incident
            p = ev.payload(n.event, at, n.entry.message, cluster=inc.cluster,
                           incident=incident_fields(inc), base_url=self.base_url,
                           arbiter=self.arbiter, nodes=list(n.nodes))
            rows += self._rows(s, p, f"incident-{inc.id}", f"event-{n.entry.id}", n.event,
                               at, inc.id, inc.cluster)
        return rows

    def write_event(self, s: Session, event: ev.EventKind, at: datetime, message: str,
                    occurrence: str) -> int:
        """A notification about the arbiter itself (TILT), in its own transaction."""
        if event not in self.events:
            return 0
        p = ev.payload(event, at, message, cluster=None, incident=None,
                       base_url=self.base_url, arbiter=self.arbiter)
        subject = f"arbiter-{self.arbiter}" if self.arbiter else "arbiter"
        return self._rows(s, p, subject, occurrence, event, at, None, None)

    def _rows(self, s: Session, p: dict[str, Any], subject: str, occurrence: str,
              event: ev.EventKind, at: datetime, incident: int | None,
              cluster: str | None) -> int:
        for ch in self.channels:
            key = ev.dedup_key(subject, occurrence, event, ch)
            s.add(Notification(
                dedup_key=key, channel=ch, event=event.value, incident_id=incident,
                cluster=cluster, payload={**p, "dedup_key": key}, state=PENDING, attempts=0,
                next_at=at, created_at=at))
        return len(self.channels)


def outbox_for(config: Config) -> Outbox | None:
    """The outbox of a config's ``[notify]`` (None without it): its channels and
    events, links to ``Config.links_url``, and ([ha]) this arbiter's name."""
    n = config.notify
    if n is None:
        return None
    return Outbox(tuple(n.channels), frozenset(n.events), config.links_url,
                  config.ha.name if config.ha is not None else None)


def incident_fields(inc: Incident) -> dict[str, Any]:
    return {"id": inc.id, "kind": inc.kind, "state": inc.state, "vips": list(inc.vips or []),
            "survivor": inc.survivor, "victims": list(inc.victims or []),
            "held_nodes": list(inc.held_nodes or []), "reason": inc.reason}


def backoff(attempt: int, initial: float, cap: float, rnd: Callable[[], float]) -> float:
    """Seconds before try ``attempt + 1``: exponential, capped, with jitter ("equal
    jitter": half fixed, half random) so many rows failing together spread out."""
    base = min(cap, initial * 2 ** min(attempt - 1, 60))
    return base / 2 + base / 2 * rnd()


@dataclass(frozen=True)
class Claimed:
    id: int
    channel: str
    payload: dict[str, Any]
    attempts: int  # including this one


def claim(s: Session, now: datetime, hold: float, limit: int = 50) -> list[Claimed]:
    """Due rows, each pushed ``hold`` seconds ahead so no other sender takes it."""
    q = (select(Notification).where(Notification.state == PENDING,
                                    Notification.next_at <= now)
         .order_by(Notification.next_at, Notification.id).limit(limit))
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    out = []
    for row in s.scalars(q):
        row.attempts += 1
        row.next_at = now + timedelta(seconds=hold)
        out.append(Claimed(row.id, row.channel, dict(row.payload), row.attempts))
    return out


@dataclass
class Result:
    id: int
    ok: bool
    error: str | None = None
    retry_in: float | None = None  # None with ok False: dead


def settle(s: Session, results: Sequence[Result], now: datetime) -> None:
    for r in results:
        row = s.get(Notification, r.id)
        if row is None or row.state != PENDING:
            continue
        if r.ok:
            row.state, row.sent_at, row.last_error = SENT, now, None
        elif r.retry_in is None:
            row.state, row.last_error = DEAD, (r.error or "")[:ERROR_MAX]
        else:
            row.next_at = now + timedelta(seconds=r.retry_in)
            row.last_error = (r.error or "")[:ERROR_MAX]


@dataclass(frozen=True)
class Counts:
    pending: dict[str, int] = field(default_factory=dict)  # by channel
    dead: dict[str, int] = field(default_factory=dict)
    last_dead: list[dict[str, Any]] = field(default_factory=list)


def counts(s: Session) -> Counts:
    pending: dict[str, int] = {}
    dead: dict[str, int] = {}
    for ch, state, n in s.execute(
            select(Notification.channel, Notification.state, func.count())
            .where(Notification.state != SENT)
            .group_by(Notification.channel, Notification.state)):
        (pending if state == PENDING else dead)[ch] = n
    last = [
        {"id": r.id, "channel": r.channel, "event": r.event, "incident": r.incident_id,
         "attempts": r.attempts, "error": r.last_error, "created_at": r.created_at.isoformat()}
        for r in s.scalars(select(Notification).where(Notification.state == DEAD)
                           .order_by(Notification.id.desc()).limit(5))]
    return Counts(pending, dead, last)


def prune(s: Session, older_than: datetime) -> int:
    """Delete sent and dead rows older than ``older_than``; pending ones stay."""
    return s.execute(delete(Notification).where(
        Notification.state != PENDING, Notification.created_at < older_than)).rowcount
