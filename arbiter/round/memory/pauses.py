"""Maintenance pauses as the loop sees them: added and ended by operators' intents
(``arbiter pause``/``resume``, POST /pause and /resume), read back every round (so
every arbiter, and a restarted or new leader, sees the same ones), and each start
and end noted once in the log and the outbox."""

from __future__ import annotations

import logging
from datetime import timedelta

from arbiter.clock import Clock, utcnow
from arbiter.model import Pause
from arbiter.round.memory.ledger import Ledger
from arbiter.store import pauses as sql
from arbiter.store.engine import StoreError

log = logging.getLogger("arbiter.pause")


class Pauses:
    def __init__(self, ledger: Ledger, clock: Clock = utcnow):
        self.ledger = ledger
        self.clock = clock
        self.active: tuple[Pause, ...] = ()  # as of the last read that answered

    async def refresh(self) -> tuple[Pause, ...]:
        """The pauses in force now. While the database fails, the last ones read, each
        still ending at its own time: a pause never outlives its expiry."""
        now = self.clock()
        repo = self.ledger.repo
        try:
            self.active = tuple(await self.ledger.call_unversioned(
                repo.transaction, lambda s: sql.active(s, now)))
            noted = await self.ledger.call_unversioned(
                repo.transaction, lambda s: sql.note(s, now, repo.outbox))
        except StoreError:
            self.active = tuple(p for p in self.active if now < p.until)
            return self.active
        for what, p in noted:
            if what == "start":
                log.warning("maintenance pause %s", p.describe())
            else:
                log.warning("maintenance pause #%d (%s) over: fencing on", p.id,
                            p.scope or "every cluster")
        return self.active

    async def add(self, scope: str | None, seconds: float, reason: str, by: str) -> Pause:
        now = self.clock()
        until = now + timedelta(seconds=seconds)
        return await self.ledger.call(self.ledger.repo.transaction,
                                      lambda s: sql.add(s, scope, reason, by, now, until))

    async def end(self, scope: str | None, every: bool, by: str) -> list[Pause]:
        now = self.clock()
        return await self.ledger.call(self.ledger.repo.transaction,
                                      lambda s: sql.end(s, scope, every, by, now))
