"""Leases in PostgreSQL: one row per shard, ``(name, holder, term, expires_at)``.

Every read and write of a lease is one statement that uses the database's clock
(``now()``), never an arbiter's, so arbiters need no synchronised clocks. A session
advisory lock is not used: it carries no term, dies with a pooled connection, and
a half-open client keeps it.

- ``acquire``: take or renew. It wins only if the lease has run out or is already
  ours, and a takeover (anyone, after a lapse) increments ``term``.
- ``want``: the arbiter that names a shard in `prefer` asks for it; a holder that
  does not name it hands it back (``resign``) at its next renewal, and the next
  ``acquire`` of the one that wants it wins with a new term.
- ``remember``: ``lease_history`` keeps who took each term and when (an audit).
- ``check``: inside a write's transaction, that this arbiter holds the lease under
  the expected term and that it has not run out. ``FOR SHARE`` makes a concurrent
  takeover wait until the write has committed, so no write lands after a takeover.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session


class NotLeader(Exception):
    """A write that decides or acts was refused: this arbiter does not hold the
    shard's lease under the term it expected (or the lease has run out)."""


@dataclass(frozen=True, slots=True)
class LeaseRow:
    shard: str
    holder: str
    term: int
    expires_at: datetime
    db_now: datetime
    wanted_by: str | None = None

    def held_by(self, name: str) -> bool:
        return self.holder == name and self.expires_at > self.db_now


_ACQUIRE = text("""
INSERT INTO leases AS l (name, holder, term, expires_at)
VALUES (:shard, :me, 1, now() + make_interval(secs => :ttl))
ON CONFLICT (name) DO UPDATE
SET term = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > now()
                THEN l.term ELSE l.term + 1 END,
    holder = EXCLUDED.holder,
    expires_at = EXCLUDED.expires_at,
    -- a renewal keeps another's request; a new term clears it (a claimant that is
    -- still up asks again at its next renewal; one that died no longer strands it)
    wanted_by = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > now()
                          AND l.wanted_by IS DISTINCT FROM EXCLUDED.holder
                     THEN l.wanted_by END
WHERE (l.holder = EXCLUDED.holder AND l.expires_at > now())
   OR (l.expires_at <= now()
       AND NOT (:polite AND l.wanted_by IS NOT NULL AND l.wanted_by <> EXCLUDED.holder))
RETURNING name, holder, term, expires_at, now(), wanted_by
""")
_READ = text("SELECT name, holder, term, expires_at, now(), wanted_by FROM leases "
             "WHERE name = :shard")
_WANT = text("UPDATE leases SET wanted_by = :me WHERE name = :shard AND holder <> :me "
             "AND wanted_by IS DISTINCT FROM :me")
# a graceful stop: let a follower take over at once instead of after the TTL
_RESIGN = text("UPDATE leases SET expires_at = now() "
               "WHERE name = :shard AND holder = :me AND term = :term AND expires_at > now()")
_CHECK = text("SELECT 1 FROM leases WHERE name = :shard AND holder = :me AND term = :term "
              "AND expires_at > now() FOR SHARE")


def acquire(conn: Connection, shard: str, me: str, ttl: float,
            polite: bool = False) -> LeaseRow | None:
    """Take or renew the lease (committed by the caller). Returns the lease as it
    now stands: ours if we won, the holder's otherwise (None: no row, never taken).
    ``polite``: do not take a lapsed lease another arbiter asked for."""
    row = conn.execute(_ACQUIRE, {"shard": shard, "me": me, "ttl": ttl,
                                  "polite": polite}).first()
    if row is None:
        row = conn.execute(_READ, {"shard": shard}).first()
    return LeaseRow(*row) if row is not None else None


def read(conn: Connection, shard: str) -> LeaseRow | None:
    row = conn.execute(_READ, {"shard": shard}).first()
    return LeaseRow(*row) if row is not None else None


def want(conn: Connection, shard: str, me: str) -> None:
    conn.execute(_WANT, {"shard": shard, "me": me})


def resign(conn: Connection, shard: str, me: str, term: int) -> bool:
    return conn.execute(_RESIGN, {"shard": shard, "me": me, "term": term}).rowcount == 1


_REMEMBER = text("INSERT INTO lease_history (shard, term, holder, taken_at) "
                 "VALUES (:shard, :term, :me, now()) ON CONFLICT DO NOTHING")


def remember(conn: Connection, shard: str, term: int, me: str) -> None:
    """The audit of who led under which term, from when (the first renewal that held
    it): what every recorded decision and fence step's term is checked against."""
    conn.execute(_REMEMBER, {"shard": shard, "term": term, "me": me})


def check(session: Session, shard: str, me: str, term: int) -> None:
    """Raise NotLeader unless we hold ``shard`` under ``term`` and it has not run out."""
    ok = session.execute(_CHECK, {"shard": shard, "me": me, "term": term}).first()
    if ok is None:
        raise NotLeader(f"not the leader of shard {shard!r} under term {term} any more: "
                        "the lease ran out or another arbiter took it")
