"""The sender: an APScheduler job that delivers what the outbox holds.

Each run claims the due rows, delivers them concurrently (each bounded by
``notify.timeout``), then records each result: sent, retried after a backoff
with jitter, or dead after ``max_attempts``. It runs beside the rounds, never in
them: a mail server that is down, slow or answering 500 costs a round nothing,
and a failed fence is never waited on a webhook.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from arbiter.clock import Clock, utcnow
from arbiter.config.notify import NotifySection
from arbiter.notify.channels import Channels, DeliveryError
from arbiter.round.memory.ledger import Ledger
from arbiter.store import outbox
from arbiter.store.engine import StoreError

log = logging.getLogger("arbiter.notify")

CLAIM_MARGIN = 30.0  # seconds a claim outlives the delivery's own timeout
BATCH = 50


@dataclass
class ChannelStatus:
    sent: int = 0
    failed: int = 0
    last_ok_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed,
                "last_ok_at": self.last_ok_at.isoformat() if self.last_ok_at else None,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None}


class Sender:
    def __init__(self, section: NotifySection, ledger: Ledger, channels: Channels,
                 clock: Clock = utcnow, rnd: Callable[[], float] = random.random,
                 on_result: Callable[[str, bool], None] | None = None):
        self.section = section
        self.ledger = ledger
        self.channels = channels
        self.clock = clock
        self.rnd = rnd
        self.on_result = on_result  # metrics: (channel, ok)
        self.status = {ch: ChannelStatus() for ch in section.channels}
        self.counts: outbox.Counts | None = None  # read after each run
        self.error: str | None = None  # the outbox could not be read or written
        self._lock = asyncio.Lock()

    @property
    def repo(self) -> Any:
        return self.ledger.repo

    async def run_once(self) -> int:
        """One pass: returns how many deliveries were tried."""
        async with self._lock:  # a manual wake and the job never overlap
            return await self._run()

    async def _run(self) -> int:
        now = self.clock()
        hold = self.section.timeout + CLAIM_MARGIN
        try:
            claimed = await self.ledger.call_unversioned(
                self.repo.transaction, lambda s: outbox.claim(s, now, hold, BATCH))
        except StoreError as exc:
            self._failed(f"outbox not readable: {exc}")
            return 0
        results = list(await asyncio.gather(*(self._deliver(c) for c in claimed)))
        if results:
            done = self.clock()
            try:
                await self.ledger.call_unversioned(
                    self.repo.transaction, lambda s: outbox.settle(s, results, done))
            except StoreError as exc:
                # delivered, but not marked: claimed again after the hold, and sent again
                # (at least once); the receivers drop the repeat by its dedup key
                self._failed(f"results not recorded: {exc}")
                return len(results)
        await self.refresh()
        return len(results)

    async def refresh(self) -> None:
        try:
            self.counts = await self.ledger.call_unversioned(self.repo.transaction,
                                                             outbox.counts)
            self.error = None
        except StoreError as exc:
            self._failed(f"outbox not readable: {exc}")

    async def _deliver(self, c: outbox.Claimed) -> outbox.Result:
        st = self.status.setdefault(c.channel, ChannelStatus())
        if c.channel not in self.section.channels:
            return self._result(c, st, f"channel {c.channel} is no longer configured",
                                final=True)
        try:
            await self.channels.deliver(c.channel, c.payload)
        except DeliveryError as exc:
            return self._result(c, st, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in one delivery stops no other
            log.exception("notification %d to %s", c.id, c.channel)
            return self._result(c, st, f"{type(exc).__name__}: {exc}")
        st.sent += 1
        st.last_ok_at = self.clock()
        if self.on_result:
            self.on_result(c.channel, True)
        log.info("notified %s: %s", c.channel, c.payload.get("title"))
        return outbox.Result(c.id, True)

    def _result(self, c: outbox.Claimed, st: ChannelStatus, error: str,
                final: bool = False) -> outbox.Result:
        st.failed += 1
        st.last_error, st.last_error_at = error, self.clock()
        if self.on_result:
            self.on_result(c.channel, False)
        if final or c.attempts >= self.section.max_attempts:
            log.error("notification %s to %s is dead after %d attempt(s): %s",
                      c.payload.get("dedup_key"), c.channel, c.attempts, error)
            return outbox.Result(c.id, False, error, None)
        wait = outbox.backoff(c.attempts, self.section.backoff_initial,
                              self.section.backoff_max, self.rnd)
        log.warning("notification to %s failed (attempt %d of %d), next in %.0fs: %s",
                    c.channel, c.attempts, self.section.max_attempts, wait, error)
        return outbox.Result(c.id, False, error, wait)

    def _failed(self, why: str) -> None:
        if self.error != why:
            log.error("notifications: %s", why)
        self.error = why

    async def prune(self) -> int:
        cutoff = self.clock() - timedelta(days=self.section.keep_days)
        try:
            return await self.ledger.call_unversioned(self.repo.transaction,
                                                      lambda s: outbox.prune(s, cutoff))
        except StoreError:
            return 0

    def as_json(self) -> dict[str, Any]:
        c = self.counts or outbox.Counts()
        return {
            "channels": {ch: st.as_json() for ch, st in self.status.items()},
            "pending": sum(c.pending.values()), "dead": sum(c.dead.values()),
            "pending_by_channel": c.pending, "dead_by_channel": c.dead,
            "last_dead": c.last_dead, "error": self.error,
        }

    async def aclose(self) -> None:
        await self.channels.aclose()


async def send_test(section: NotifySection, channels: Channels,
                    base_url: str, arbiter: str | None) -> list[tuple[str, str | None]]:
    """`arbiter notify test`: one test message to every channel, straight (no outbox).
    Returns (channel, error or None) for each."""
    from arbiter.policy import notify_events as ev

    now = utcnow()
    out = []
    for ch in section.channels:
        p = ev.payload(ev.EventKind.TEST, now,
                       "A test from `arbiter notify test`: this channel works.",
                       cluster=None, incident=None, base_url=base_url, arbiter=arbiter)
        p["dedup_key"] = ev.dedup_key("test", now.strftime("%Y%m%dT%H%M%S%f"),
                                      ev.EventKind.TEST, ch)
        try:
            await channels.deliver(ch, p)
            out.append((ch, None))
        except DeliveryError as exc:
            out.append((ch, str(exc)))
    return out
