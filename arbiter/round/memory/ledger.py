"""The Ledger: the store as the loop sees it.

- ``commit``: a round's record effects, one transaction per cluster, before
  anything acts. A cluster whose commit fails is reported as failed, and the
  service neither folds nor acts on it.
- fence steps and results, recorded as they happen. A write that fails while a
  fence is in flight is kept and written again before the next round's commit,
  so a database outage mid-fence loses neither the steps nor the hold.
- every database failure becomes ``db_error`` (visible in /status and /readyz),
  never an exception out of the loop.
- [ha] a cluster whose shard this arbiter does not lead is never written: the
  commit skips it (so nothing acts on it), and a write the lease check refuses
  (``NotLeader``) is dropped, not kept for later.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from arbiter.clock import Clock, utcnow
from arbiter.ha.lease import NotLeader
from arbiter.model import ClusterObservation, IncidentState, Snapshot
from arbiter.policy.assessment import Assessment, ClusterAssessment
from arbiter.policy.effects import (
    ChangeState,
    OpenIncident,
    RecordDecision,
    RecordEffect,
    ReleaseHold,
    is_action,
)
from arbiter.policy.incident_fsm import IllegalTransition
from arbiter.policy.memory import ARBITER, Committed
from arbiter.policy.rows import ClusterMemoryRow, IncidentRow
from arbiter.serialize import fence_plan, node_observation
from arbiter.store.engine import DB_TIMEOUT, StoreError
from arbiter.store.repository import AttemptRecord, Repository

log = logging.getLogger("arbiter.ledger")

BACKLOG_MAX = 10_000  # unwritten fence records kept through an outage
FAILING_TIMEOUT = 0.5  # seconds the probe may take while the database is known to fail
CLIENT_MARGIN = 1.0  # the client waits this much longer than the database's own timeouts
EXECUTOR_THREADS = 8


class Ledger:
    def __init__(self, repo: Repository, clock: Clock = utcnow, timeout: float = DB_TIMEOUT,
                 leads: Callable[[str], bool] | None = None):
        """``leads`` ([ha]): whether this arbiter leads a cluster's shard now; the
        commit records nothing of a cluster it does not lead."""
        self.repo = repo
        self.clock = clock
        self.timeout = timeout
        # its own threads: a call stuck on a frozen database must not take the default
        # executor's few threads from the ICMP probe
        self._executor = ThreadPoolExecutor(EXECUTOR_THREADS, thread_name_prefix="ledger")
        self.db_error: str | None = None
        self.db_error_at: datetime | None = None
        self._backlog: deque[tuple[str, Callable[[], Any]]] = deque(maxlen=BACKLOG_MAX)
        # counts the calls that returned: a cached read taken before the current
        # generation may be out of date (api.reader)
        self.generation = 0
        # a write timed out on our side: it may still land. The service re-reads its
        # memory from the store (as a restart would) once the database answers again.
        self.unknown_outcome = False
        # the calls that timed out on our side and are still running in their thread:
        # until each has finished, what it wrote may still land
        # (the executor's own futures: they are done only when the thread has returned,
        # whereas the asyncio future wait_for awaited is done the moment it is cancelled)
        self._unsettled: set[concurrent.futures.Future[Any]] = set()
        self.file_problem: str | None = None  # the SQLite file deleted or replaced
        self.leads = leads

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """One repository call off the event loop, bounded in time. A StoreError (a
        timeout included) sets db_error and is raised again for the caller to decide
        what not to do.

        The database's own timeouts (busy, statement, lock) come first, so a failed
        write is a known failure; the client-side deadline is longer and only catches
        a server that cannot answer at all (frozen). While the database is failing,
        a side-effect-free probe with a short deadline goes first, so a round is not
        held up by every call in turn, and no write is sent that might land later."""
        res = await self.call_unversioned(fn, *args)
        self.generation += 1
        return res

    async def call_unversioned(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``call``, for what no cached read shows (restores, the [ha] views): it
        does not retire the API's cached pages."""
        if self.db_error is not None:
            await self._bounded(self.repo.ping, FAILING_TIMEOUT)
        res = await self._bounded(fn, self.timeout + CLIENT_MARGIN, *args)
        if self.db_error is not None:
            log.info("database reachable again")
            self.db_error = None
        return res

    async def _bounded(self, fn: Callable[..., Any], timeout: float, *args: Any) -> Any:
        work = self._executor.submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(work), timeout)
        except TimeoutError:
            # wait_for cancelled its asyncio future; the call itself is cancelled only if
            # it had not started. If it had, it runs on, and what it writes may land.
            if fn is not self.repo.ping and not work.cancelled():
                self.unknown_outcome = True
                self._unsettled.add(work)
            self._failed(StoreError(f"the database did not answer within {timeout:g}s"))
            raise StoreError(self.db_error) from None
        except StoreError as exc:
            self._failed(exc)
            raise

    def _failed(self, exc: StoreError) -> None:
        if self.db_error is None:
            log.error("database error: %s", exc)
        self.db_error, self.db_error_at = str(exc), self.clock()

    # --- a round ---------------------------------------------------------------
    async def commit(self, snap: Snapshot, a: Assessment) -> Committed:
        problem = self.repo.file_problem()  # a stat: cheap enough for every round
        if problem != self.file_problem:
            (log.error if problem else log.info)("database file: %s", problem or "fine again")
            self.file_problem = problem
        ids: dict[str | None, dict] = {}
        failed: set[str | None] = set()
        # a write whose outcome is unknown (and the memory not yet read back): record
        # nothing, so nothing acts, rather than record beside what may have landed
        if self.unknown_outcome or not await self._flush_backlog():
            failed.add(ARBITER)
            failed.update(ca.cluster for ca in a.clusters if ca.effects)
            return Committed(ids, frozenset(failed))
        batches: list[tuple[str | None, tuple, dict | None]] = [(ARBITER, a.effects, None)]
        for ca in a.clusters:
            if self.leads is not None and not self.leads(ca.cluster):
                # another arbiter leads it: its memory is read from the store instead
                if ca.effects:
                    failed.add(ca.cluster)
                continue
            if any(not is_action(e) for e in ca.effects):
                obs = snap.cluster(ca.cluster)
                evidence = None  # only incidents opened or decided carry it
                if obs is not None and any(isinstance(e, OpenIncident | RecordDecision)
                                           for e in ca.effects):
                    evidence = cluster_evidence(obs, ca, list(dict(ca.holders)))
                batches.append((ca.cluster, ca.effects, evidence))
        db_down = False
        for cluster, effects, evidence in batches:
            records: list[RecordEffect] = [e for e in effects if not is_action(e)]
            if not records:
                continue
            if db_down:
                # the database failed for an earlier batch of this round: the rest wait
                # for the next round instead of each waiting for a timeout now
                failed.add(cluster)
                continue
            decisions = {n: fence_plan(e.plan) for n, e in enumerate(records)
                         if isinstance(e, RecordDecision)}
            try:
                ids[cluster] = await self.call(self.repo.apply, cluster, records, snap.at,
                                               evidence, decisions)
                for e in records:
                    _log_committed(cluster, e)
            except StoreError:
                failed.add(cluster)
                db_down = True
            except NotLeader as exc:
                log.error("[%s] not recorded, so not acted on: %s", cluster, exc)
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
        except NotLeader as exc:
            log.error("not recorded: %s: %s", what, exc)
        except IllegalTransition:
            log.exception("refused by the incident state machine: %s", what)

    async def flush(self) -> bool:
        """Write what an outage kept back; False while the database still fails."""
        return await self._flush_backlog()

    async def settled(self, timeout: float) -> bool:
        """Whether every call that timed out on our side has finished by now (waiting
        up to ``timeout``). A frozen database that wakes up commits what it was given
        a moment later: reading the memory back before that would miss it (seen in
        CI: a second incident opened beside the one that landed late)."""
        self._unsettled = {f for f in list(self._unsettled) if not f.done()}
        if not self._unsettled:
            return True
        waiters = [asyncio.wrap_future(f) for f in self._unsettled]
        _, still = await asyncio.wait(waiters, timeout=timeout)
        for w in waiters:  # their failures are known already (unknown_outcome): read
            w.add_done_callback(_consume)  # each, or asyncio logs "never retrieved"
        return not still

    async def _flush_backlog(self) -> bool:
        while self._backlog:
            what, fn = self._backlog[0]
            try:
                await self.call(fn)
            except StoreError:
                return False
            except NotLeader as exc:
                log.error("not recorded after an outage: %s: %s", what, exc)
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
        return (await self.call_unversioned(self.repo.unresolved),
                await self.call_unversioned(self.repo.cluster_memories))


def _log_committed(cluster: str | None, e: RecordEffect) -> None:
    """One log line per committed record, in words (the incident's timeline has more)."""
    where = f"[{cluster or 'arbiter'}]"
    if isinstance(e, OpenIncident):
        log.warning("%s %s opened: %s", where, e.kind.value, e.reason)
    elif isinstance(e, RecordDecision):
        log.warning("%s %s: %s", where, "dry run decision" if e.plan.dry_run else "fencing",
                    e.plan.reason)
    elif isinstance(e, ChangeState):
        log.info("%s incident %s: %s -> %s: %s", where, e.incident, e.src.value, e.dst.value,
                 e.message)
    elif isinstance(e, ReleaseHold):
        log.info("%s %s", where, e.why)


def cluster_evidence(
    obs: ClusterObservation, ca: ClusterAssessment, vips: list[str]
) -> dict[str, Any]:
    """What an incident opened or decided this round keeps as its evidence."""
    return {
        "nodes": [node_observation(n, vips) for n in obs.nodes],
        "holders": {v: list(h) for v, h in ca.holders},
        "split_vips": list(ca.split_vips),
        "orphan_vips": list(ca.orphan_vips),
        # the ARP view: the MACs that answered each VIP, and whose they are
        "arp": None if obs.arp is None else {
            "answers": {v: list(m) for v, m in obs.arp.answers},
            "owners": dict(obs.arp.owners), "error": obs.arp.error},
        "split_streak": ca.next_history.split_streak,
        "reason": ca.reason,
    }


def _consume(f: asyncio.Future) -> None:
    """Read a late call's outcome: asyncio logs an exception nobody read, with its
    traceback, at ERROR (45 such tracebacks in one HA soak's database faults)."""
    if not f.cancelled():
        f.exception()
