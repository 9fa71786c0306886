"""Leadership: which shards this arbiter leads, under which term, kept by renewals.

- ``renew`` (an APScheduler job every ``renew_every``, and once before the first
  round) takes or renews every shard's lease, each call bounded by
  ``renew_timeout``. A failure is visible state (``error``), never an exception.
- A follower watches the lease instead of waiting for its next renewal: it knows,
  by the database's clock, when the leader's lease runs out, and tries again at
  that moment (``_watch``). A takeover after a leader's death therefore costs the
  lease's remaining time, not that plus a renewal period; and the new leader wakes
  the loop (``on_lead``), so its first round runs at once.
- ``term(shard)``: the term to act under, or None. The leader steps down on its own
  clock: a renewal sent at local time t is good until t + ``lease_ttl`` minus
  ``step_down_margin``. The database's lease runs from its ``now()``, which comes
  after t, so this arbiter stops before any other can take over, with no clock
  shared between them.
- ``stand_aside(shard, why)``: the loop's word that this arbiter cannot act in a
  shard (it reads none of its directors while another arbiter does): it hands the
  lease back at its next renewal and neither contends for it nor asks for it back
  until the loop says it can act again.
- ``check_write``: the write guard the repository runs inside every write that
  decides or acts (``lease.check``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from arbiter.config import Config
from arbiter.ha import lease
from arbiter.ha.lease import LeaseRow, NotLeader

log = logging.getLogger("arbiter.ha")


@dataclass(frozen=True, slots=True)
class ShardLease:
    """What this arbiter knows of one shard's lease after its last renewal."""

    shard: str
    holder: str | None
    term: int  # the highest term seen for this shard
    expires_at: datetime | None  # by the database's clock
    leading_until: float | None  # our own monotonic deadline; None: not ours
    db_now: datetime | None = None  # the database's clock when it was read


class Leadership:
    def __init__(self, config: Config, engine: Engine,
                 mono: Callable[[], float] = time.monotonic,
                 on_lead: Callable[[], None] = lambda: None):
        """``on_lead``: called when this arbiter starts leading a shard (the service
        wakes its loop: the first round as the leader runs at once)."""
        assert config.ha is not None
        self.ha = config.ha
        self.me = config.ha.name
        self.engine = engine
        self.mono = mono
        self._shard_of = {c.name: c.shard for c in config.clusters}
        self._leases = {s: ShardLease(s, None, 0, None, None) for s in config.shards}
        self._executor = ThreadPoolExecutor(2, thread_name_prefix="lease")
        self.error: str | None = None
        self.renewed_at: float | None = None  # monotonic, last renewal that answered
        self._stepped_down: set[str] = set()
        self._started = mono()
        # shards to contend for at once; the others wait until they were seen unled.
        # An empty `prefer` contends for all, but only an explicit one keeps a shard
        # that another arbiter explicitly prefers and asks for (wanted_by).
        self._explicit = frozenset(config.ha.prefer)
        self._prefer = self._explicit or frozenset(config.shards)
        # renewals in a row a shard was seen without a leader, and who asked for it
        self._unled: dict[str, tuple[int, str | None]] = {}
        self.on_lead = on_lead
        self._renewing = asyncio.Lock()  # the scheduled renewal and the watch's
        self._watch_at: asyncio.TimerHandle | None = None
        self.since: dict[str, float] = {}  # shard -> wall time this arbiter began leading
        self._aside: dict[str, str] = {}  # shard -> why this arbiter does not lead it now

    def reconfigure(self, config: Config) -> None:
        """A reload: which shard each cluster is in (the set of shards is unchanged;
        round.reload refuses anything else)."""
        self._shard_of = {c.name: c.shard for c in config.clusters}

    # --- what the loop asks ---------------------------------------------------
    def shard_of(self, cluster: str) -> str:
        return self._shard_of.get(cluster, "default")

    def term(self, shard: str) -> int | None:
        """The term to act under in ``shard`` now; None if this arbiter does not lead it."""
        s = self._leases.get(shard)
        if s is None or s.leading_until is None:
            return None
        if self.mono() >= s.leading_until:
            if shard not in self._stepped_down:
                self._stepped_down.add(shard)
                log.error("[ha] shard %s: lease (term %d) not renewed in time: stepping down",
                          shard, s.term)
            return None
        return s.term

    def term_of(self, cluster: str) -> int | None:
        return self.term(self.shard_of(cluster))

    def leads(self, cluster: str) -> bool:
        return self.term_of(cluster) is not None

    def leading(self) -> frozenset[str]:
        return frozenset(s for s in self._leases if self.term(s) is not None)

    def term_seen_in(self, shard: str) -> int:
        """The highest term known for the shard (what /verdict carries)."""
        s = self._leases.get(shard)
        return s.term if s is not None else 0

    def blind(self) -> str | None:
        """Why the shared state is unknown to this arbiter: no renewal has answered
        for longer than a lease lasts (the database is down or cut off). Its verdicts
        then abstain, and the gates fall back to their gateway ping."""
        now = self.mono()
        since = self.renewed_at if self.renewed_at is not None else self._started
        if now - since <= self.ha.lease_ttl:
            return None
        return (f"no answer from the shared database for {now - since:.0f}s "
                f"(lease_ttl {self.ha.lease_ttl:g}s): the shared state is unknown")

    def check_write(self, session: Session, cluster: str) -> int:
        """Run inside a write's transaction; raises NotLeader. Returns the term."""
        shard = self.shard_of(cluster)
        term = self.term(shard)
        if term is None:
            raise NotLeader(f"not the leader of shard {shard!r}")
        lease.check(session, shard, self.me, term)
        return term

    def stand_aside(self, shard: str, why: str | None) -> None:
        """``why``: this arbiter cannot act in ``shard`` (policy.quorum.out_of_sight);
        None: it can again. Takes effect at the next renewal."""
        if why is None:
            if self._aside.pop(shard, None) is not None:
                log.warning("[ha] shard %s: back in sight: contending for it again", shard)
        elif shard in self._leases and shard not in self._aside:
            self._aside[shard] = why
            log.warning("[ha] shard %s: standing aside: %s", shard, why)

    # --- renewals -------------------------------------------------------------
    async def renew(self) -> None:
        async with self._renewing:
            await self._renew()
        self._watch()

    def _watch(self) -> None:
        """Try again the moment the first lease held by another arbiter runs out (by
        the database's clock, read at the last renewal), if that comes before the
        next scheduled renewal. 20 ms after: the database's now() must have passed it."""
        if self._watch_at is not None:
            self._watch_at.cancel()
            self._watch_at = None
        if self.error is not None:
            return
        left = [t for s in self._leases.values()
                if s.leading_until is None and s.expires_at is not None
                and s.db_now is not None and s.holder not in (None, self.me)
                and (t := (s.expires_at - s.db_now).total_seconds()) > 0]
        if not left or min(left) >= self.ha.renew_every:
            return
        loop = asyncio.get_running_loop()
        self._watch_at = loop.call_later(max(0.0, min(left)) + 0.02,
                                         lambda: loop.create_task(self.renew()))

    async def _renew(self) -> None:
        sent = self.mono()
        fut = asyncio.get_running_loop().run_in_executor(self._executor, self._acquire_all)
        try:
            rows = await asyncio.wait_for(fut, self.ha.renew_timeout)
        except TimeoutError:
            self._failed(f"lease renewal did not answer within {self.ha.renew_timeout:g}s")
            return
        except SQLAlchemyError as exc:
            self._failed(f"lease renewal failed: {type(exc).__name__}: "
                         + str(exc).splitlines()[0][:300])
            return
        if self.error is not None:
            log.info("[ha] lease renewals answer again")
        self.error, self.renewed_at = None, self.mono()
        for shard, row in rows.items():
            self._update(shard, row, sent)

    def _acquire_all(self) -> dict[str, LeaseRow | None]:
        out = {}
        aside = dict(self._aside)  # this runs in a thread: one reading of it
        for shard in self._leases:
            contend = shard not in aside and (
                shard in self._prefer or self._leases[shard].leading_until is not None
                or self._may_take(shard))
            # only a shard named in `prefer` is taken from under another's request
            # (until that claimant has let it go unled for a few renewals)
            polite = shard not in self._explicit and not self._may_take(shard)
            with self.engine.begin() as conn:
                row = (lease.acquire(conn, shard, self.me, self.ha.lease_ttl, polite) if contend
                       else lease.read(conn, shard))
                handing = None  # why this arbiter hands the shard over now
                if row is not None and row.held_by(self.me) and shard in aside:
                    # it decides but cannot act there: an arbiter that can takes over
                    handing = f"handed over ({aside[shard]})"
                elif row is not None and row.holder != self.me and shard in self._prefer \
                        and self.ha.prefer and row.wanted_by != self.me and shard not in aside:
                    lease.want(conn, shard, self.me)  # ours by preference: ask for it
                elif (row is not None and row.held_by(self.me) and shard not in self._explicit
                      and row.wanted_by not in (None, self.me)):
                    # the arbiter that prefers it is up and asks: hand it back now
                    handing = f"handed back to {row.wanted_by}, which prefers it"
                if handing is not None and row is not None:
                    lease.resign(conn, shard, self.me, row.term)
                    log.warning("[ha] shard %s: %s", shard, handing)
                    row = lease.read(conn, shard)
                if row is not None and row.held_by(self.me):
                    lease.remember(conn, shard, row.term, self.me)
                out[shard] = row
        return out

    def _may_take(self, shard: str) -> bool:
        """A shard another arbiter prefers: take it once it was seen unled at the last
        renewal, or, if one asked for it (``wanted_by``), after two more, so the one
        that asked gets it first but a claimant that died does not strand it."""
        seen, wanted_by = self._unled.get(shard, (0, None))
        return seen >= (3 if wanted_by not in (None, self.me) else 1)

    def _update(self, shard: str, row: LeaseRow | None, sent: float) -> None:
        old = self._leases[shard]
        was = self.term(shard) is not None
        if row is None or row.expires_at <= row.db_now:
            seen, _ = self._unled.get(shard, (0, None))
            self._unled[shard] = (seen + 1, row.wanted_by if row else None)
        else:
            self._unled.pop(shard, None)
        if row is None:
            return
        ours = row.held_by(self.me)
        until = sent + self.ha.lease_ttl - self.ha.step_down_margin if ours else None
        self._leases[shard] = ShardLease(shard, row.holder, max(row.term, old.term),
                                         row.expires_at, until, row.db_now)
        if ours and not was:
            self._stepped_down.discard(shard)
            self.since[shard] = time.time()
            log.warning("[ha] shard %s: leading under term %d", shard, row.term)
            self.on_lead()
        elif was and not ours:
            led = row.holder != self.me and row.expires_at > row.db_now
            log.error("[ha] shard %s: %s leads now (term %d): following", shard,
                      row.holder if led else "nobody yet", row.term)
        elif not ours and row.holder != old.holder:
            log.info("[ha] shard %s: following %s (term %d)", shard, row.holder, row.term)

    def _failed(self, why: str) -> None:
        if self.error is None:
            log.error("[ha] %s", why)
        self.error = why

    async def resign(self) -> None:
        """A graceful stop: hand every lease back, so a follower takes over now."""
        led = {s: t for s in self._leases if (t := self.term(s)) is not None}
        for s in self._leases:
            self._leases[s] = ShardLease(s, self._leases[s].holder, self._leases[s].term,
                                         self._leases[s].expires_at, None)
        if not led:
            return

        def work() -> None:
            with self.engine.begin() as conn:
                for shard, term in led.items():
                    lease.resign(conn, shard, self.me, term)

        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._executor, work),
                self.ha.renew_timeout)
            log.info("[ha] leases handed back: %s", ", ".join(sorted(led)))
        except (TimeoutError, SQLAlchemyError) as exc:
            log.warning("[ha] could not hand the leases back (%s): they run out in %gs",
                        exc, self.ha.lease_ttl)

    def close(self) -> None:
        if self._watch_at is not None:
            self._watch_at.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- what /status shows ------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """For /status (``arbiter.ha``): ``status_of``."""
        return status_of(self)


def status_of(lead: Leadership) -> dict[str, Any]:
    """What /status shows of the leases: this arbiter, its last renewal, and each
    shard's leader, term and expiry."""
    now = lead.mono()
    return {
        "name": lead.me,
        "members": list(lead.ha.members),
        "error": lead.error,
        "renewed_ago": None if lead.renewed_at is None else round(now - lead.renewed_at, 1),
        "shards": {
            s.shard: {
                "leader": s.holder, "term": s.term,
                "leading": lead.term(s.shard) is not None,
                "leading_since": (datetime.fromtimestamp(lead.since[s.shard], UTC)
                                  .isoformat() if lead.term(s.shard) is not None
                                  and s.shard in lead.since else None),
                "expires_at": s.expires_at.isoformat() if s.expires_at else None,
                "standing_aside": lead._aside.get(s.shard),
            } for s in lead._leases.values()
        },
    }
