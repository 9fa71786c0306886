"""The Ledger: the store as the loop sees it.

- ``commit``: a round's record effects, one transaction per cluster, before
  anything acts. A cluster whose commit fails is reported as failed, and the
  service neither folds nor acts on it.
- fence steps and results, recorded as they happen. A write that fails while a
  fence is in flight is kept and written again before the next round's commit,
  so a database outage mid-fence loses neither the steps nor the hold.
- every database failure becomes ``db_error`` (visible in /status and /readyz),
  never an exception out of the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from arbiter.clock import Clock, utcnow
from arbiter.effects import OpenIncident, RecordDecision, RecordEffect, is_action
from arbiter.incident_fsm import IllegalTransition
from arbiter.memory import ARBITER, Committed
from arbiter.model import Assessment, IncidentState, Snapshot
from arbiter.serialize import cluster_evidence, fence_plan
from arbiter.store.repository import AttemptRecord, Repository, StoreError
from arbiter.store.rows import ClusterMemoryRow, IncidentRow

log = logging.getLogger("arbiter.ledger")

BACKLOG_MAX = 10_000  # unwritten fence records kept through an outage


class Ledger:
    def __init__(self, repo: Repository, clock: Clock = utcnow):
        self.repo = repo
        self.clock = clock
        self.db_error: str | None = None
        self.db_error_at: datetime | None = None
        self._backlog: deque[tuple[str, Callable[[], Any]]] = deque(maxlen=BACKLOG_MAX)
        # counts the calls that returned: a cached read taken before the current
        # generation may be out of date (api.reader)
        self.generation = 0

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """One repository call off the event loop; a StoreError sets db_error and is
        raised again for the caller to decide what not to do."""
        try:
            res = await asyncio.to_thread(fn, *args)
        except StoreError as exc:
            if self.db_error is None:
                log.error("database error: %s", exc)
            self.db_error, self.db_error_at = str(exc), self.clock()
            raise
        self.generation += 1
        if self.db_error is not None:
            log.info("database reachable again")
            self.db_error = None
        return res

    # --- a round ---------------------------------------------------------------
    async def commit(self, snap: Snapshot, a: Assessment) -> Committed:
        ids: dict[str | None, dict] = {}
        failed: set[str | None] = set()
        if not await self._flush_backlog():
            failed.add(ARBITER)
            failed.update(ca.cluster for ca in a.clusters if ca.effects)
            return Committed(ids, frozenset(failed))
        batches: list[tuple[str | None, tuple, dict | None]] = [(ARBITER, a.effects, None)]
        for ca in a.clusters:
            if any(not is_action(e) for e in ca.effects):
                obs = snap.cluster(ca.cluster)
                evidence = None  # only incidents opened or decided carry it
                if obs is not None and any(isinstance(e, OpenIncident | RecordDecision)
                                           for e in ca.effects):
                    evidence = cluster_evidence(obs, ca, list(dict(ca.holders)))
                batches.append((ca.cluster, ca.effects, evidence))
        for cluster, effects, evidence in batches:
            records: list[RecordEffect] = [e for e in effects if not is_action(e)]
            if not records:
                continue
            decisions = {n: fence_plan(e.plan) for n, e in enumerate(records)
                         if isinstance(e, RecordDecision)}
            try:
                ids[cluster] = await self.call(self.repo.apply, cluster, records, snap.at,
                                               evidence, decisions)
            except StoreError:
                failed.add(cluster)
            except IllegalTransition:
                # A bug, not an outage: record nothing and act on nothing for this
                # cluster, and say so loudly.
                log.exception("[%s] effects refused by the incident state machine", cluster)
                failed.add(cluster)
        return Committed(ids, frozenset(failed))

    # --- fences ----------------------------------------------------------------
    async def record_step(self, incident: int, attempt: int, rec: AttemptRecord) -> None:
        await self._write(f"step {rec.step} of incident #{incident}",
                          lambda: self.repo.add_attempt(incident, attempt, rec))

    async def fence_finished(self, incident: int, ok: bool, summary: str,
                             held: tuple[str, ...]) -> None:
        state = IncidentState.FENCED if ok else IncidentState.FENCE_FAILED
        at = self.clock()
        await self._write(f"result of incident #{incident}",
                          lambda: self.repo.set_state(incident, state, at, summary, held))

    async def _write(self, what: str, fn: Callable[[], Any]) -> None:
        if self._backlog:  # keep the order: nothing overtakes an unwritten record
            self._backlog.append((what, fn))
            return
        try:
            await self.call(fn)
        except StoreError:
            log.warning("kept for later: %s (database unavailable)", what)
            self._backlog.append((what, fn))
        except IllegalTransition:
            log.exception("refused by the incident state machine: %s", what)

    async def _flush_backlog(self) -> bool:
        while self._backlog:
            what, fn = self._backlog[0]
            try:
                await self.call(fn)
            except StoreError:
                return False
            except IllegalTransition:
                log.exception("refused by the incident state machine: %s", what)
            self._backlog.popleft()
            log.info("written after an outage: %s", what)
        return True

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    # --- restart, operator, nodes ---------------------------------------------------
    async def restore_rows(self) -> tuple[list[IncidentRow], dict[str, ClusterMemoryRow]]:
        return (await self.call(self.repo.unresolved),
                await self.call(self.repo.cluster_memories))
