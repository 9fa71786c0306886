"""The Fencer: runs fences and recovers, at most one fence per cluster at a time.

Every job runs under one ``asyncio.TaskGroup``, owned by a supervisor task, so
nothing it starts is ever left running unseen: ``close`` waits for every fence
and recover (and cancels them only past its timeout). A job never raises into
the group; a crash of one becomes that job's failed result.

Results go back to the loop as ``FenceFinished`` values (``take_finished``);
the loop folds them into memory at its next round, which ``wake`` starts now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from arbiter.clock import Clock, utcnow
from arbiter.config import ClusterConfig, Config
from arbiter.model import FencePlan, Hold
from arbiter.probe.ssh import Runner
from arbiter.probe.term_runner import ANNOUNCE, is_stale_term
from arbiter.round.acts.fence import (
    ArpCheck,
    FenceReport,
    NeighbourAnnounce,
    Record,
    StaleTerm,
    announce,
    run_step,
)
from arbiter.round.acts.fence_levels import FenceContext, agent_recover, execute
from arbiter.round.memory.current import CurrentConfig, ReadsConfig, holder
from arbiter.round.memory.ledger import Ledger
from arbiter.round.outputs.metrics import Metrics
from arbiter.round.views.targets import target_for
from arbiter.store.repository import AttemptRecord

log = logging.getLogger("arbiter.fencer")


@dataclass(frozen=True, slots=True)
class FenceFinished:
    cluster: str
    incident: int
    report: FenceReport
    at: datetime


class Fencer(ReadsConfig):
    def __init__(self, config: Config | CurrentConfig, runner: Runner, ledger: Ledger,
                 wake: Callable[[], None], clock: Clock = utcnow,
                 metrics: Metrics | None = None,
                 runner_for: Callable[[str, Runner], Runner] | None = None,
                 arp_check: ArpCheck | None = None,
                 send_na: NeighbourAnnounce | None = None,
                 abstaining: Callable[[], str | None] | None = None,
                 term_of: Callable[[str], int | None] | None = None):
        """``runner_for``: the runner of one cluster's fence or recover ([ha]: with the
        leader's term in front of each command; by default ``runner`` itself).
        ``arp_check``: the ARP view's check that a victim's MAC no longer answers.
        ``send_na``: the ARP view's sender of IPv6 neighbour advertisements.
        ``abstaining``: why the arbiter abstains now (None: it does not); no fence
        agent runs then. ``term_of``: [ha] the term this arbiter leads a cluster under
        now; each step is recorded with the term its fence or recover started under."""
        self._current = holder(config)
        self.runner = runner
        self.ledger = ledger
        self.wake = wake
        self.clock = clock
        self.metrics = metrics
        self._jobs: asyncio.Queue[tuple[str, Coroutine[Any, Any, None]] | None] = \
            asyncio.Queue()
        self._supervisor: asyncio.Task[None] | None = None
        self._fencing: dict[str, asyncio.Event] = {}  # cluster -> set when its fence ends
        self._fencing_incident: dict[str, int] = {}
        self._pending: set[asyncio.Event] = set()
        self._finished: list[FenceFinished] = []
        self.runner_for = runner_for
        self.arp_check = arp_check
        self.send_na = send_na
        self.abstaining = abstaining
        self.term_of = term_of

    def _runner_for(self, cluster: str) -> Runner:
        return self.runner_for(cluster, self.runner) if self.runner_for else self.runner

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name="fencer")

    async def _supervise(self) -> None:
        async with asyncio.TaskGroup() as tg:
            while (job := await self._jobs.get()) is not None:
                tg.create_task(job[1], name=job[0])

    async def close(self, timeout: float = 30.0) -> None:
        """Wait for every fence and recover (cancel them past ``timeout``)."""
        if self._supervisor is None:
            return
        self._jobs.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._supervisor), timeout)
        except TimeoutError:
            log.error("fences still running after %.0fs at shutdown: cancelling", timeout)
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._supervisor = None

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Until every job started so far has ended."""
        pending = [asyncio.create_task(e.wait()) for e in self._pending]
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for t in late:
                t.cancel()

    def _submit(self, name: str, work: Coroutine[Any, Any, None]) -> asyncio.Event:
        self.start()
        done = asyncio.Event()
        self._pending.add(done)

        async def job() -> None:
            try:
                await work
            except Exception:  # noqa: BLE001 - a bug in one job must not end the others
                log.exception("%s crashed", name)
            finally:
                done.set()
                self._pending.discard(done)

        self._jobs.put_nowait((name, job()))
        return done

    # --- fences ---------------------------------------------------------------
    def in_flight(self, cluster: str) -> bool:
        ev = self._fencing.get(cluster)
        return ev is not None and not ev.is_set()

    def fence(self, cluster: ClusterConfig, plan: FencePlan, incident: int, attempt: int) -> bool:
        if self.in_flight(cluster.name):  # the policy prevents this
            log.error("[%s] fence already in flight; refusing a second one", cluster.name)
            return False
        self._fencing_incident[cluster.name] = incident
        # set once the fence's result is recorded, not when its announce ends: a late
        # claimant's fence (issue 28) must not wait for, or be refused by, the arping
        ended = asyncio.Event()
        self._fencing[cluster.name] = ended
        self._submit(f"fence-{cluster.name}-{incident}",
                     self._fence(cluster, plan, incident, attempt, ended))
        return True

    def incidents_in_flight(self) -> frozenset[int]:
        return frozenset(i for c, i in self._fencing_incident.items() if self.in_flight(c))

    def take_finished(self) -> list[FenceFinished]:
        out, self._finished = self._finished, []
        return out

    def _recorder(self, cluster: str, incident: int, attempt: int) -> Record:
        """Log each step and store it on the incident. If the store fails, the action
        goes on and the ledger writes the step later, under the term it ran under."""
        term = self.term_of(cluster) if self.term_of else None  # with _runner_for's

        async def record(rec: AttemptRecord) -> None:
            if rec.term is None and term is not None:
                rec = replace(rec, term=term)
            log.info("[%s] incident #%s %s on %s: %s (%s) %.0fms", cluster, incident, rec.step,
                     rec.node, "ok" if rec.ok else "FAILED", rec.error or rec.command,
                     rec.duration_ms)
            if self.metrics is not None:
                # one rule for a stale term, as fence.run_step applies it
                outcome = ("ok" if rec.ok else "stale_term"
                           if is_stale_term(rec.exit_status, rec.output) else "failed")
                self.metrics.fence_steps.labels(cluster, rec.step, outcome).inc()
            await self.ledger.record_step(incident, attempt, rec)

        return record

    async def _fence(self, cluster: ClusterConfig, plan: FencePlan, incident: int,
                     attempt: int, ended: asyncio.Event) -> None:
        record = self._recorder(cluster.name, incident, attempt)
        runner = self._runner_for(cluster.name)
        try:
            try:
                report = await execute(FenceContext(self.config, cluster, runner, record,
                                                    self.arp_check, self.abstaining), plan)
            except Exception as exc:  # noqa: BLE001 - reported as the fence's failure
                log.exception("[%s] fence crashed", cluster.name)
                report = FenceReport(False, (), f"fence crashed: {exc}")
            await self.ledger.fence_finished(incident, report.ok, report.summary, report.held)
            (log.info if report.ok else log.error)("[%s] incident #%s: %s", cluster.name,
                                                   incident, report.summary)
            self._finished.append(FenceFinished(cluster.name, incident, report, self.clock()))
        finally:
            ended.set()
        self.wake()  # fold the result in now rather than a whole interval later
        # IPv4 VIPs: announce_command on the survivor (empty: none); IPv6: the arbiter's NA
        if report.ok and (cluster.announce_command or any(":" in v for v in plan.vips)):
            try:
                await announce(self.config, cluster, plan, runner, record, self.send_na)
            except StaleTerm as exc:
                log.error("[%s] announce: %s", cluster.name, exc)

    # --- [ha] takeover ---------------------------------------------------------------
    def announce_term(self, cluster: ClusterConfig) -> None:
        """A new leader tells every node of the cluster its term, at once: from then on
        the nodes refuse a command of the old leader, even one it was about to send
        when it was paused (arbiter-ssh-wrapper keeps the highest term it has seen)."""
        runner = self._runner_for(cluster.name)
        timeout = self.config.ssh.command_timeout

        async def work() -> None:
            results = await asyncio.gather(*(
                runner.run(target_for(self.config, cluster, n.name), ANNOUNCE, timeout)
                for n in cluster.nodes))
            for n, r in zip(cluster.nodes, results, strict=True):
                if not (r.ok and r.exit_status == 0):
                    log.warning("[%s] term not announced to %s: %s", cluster.name, n.name,
                                r.error or r.stderr.strip() or f"exit {r.exit_status}")

        self._submit(f"announce-{cluster.name}", work())

    # --- recover ----------------------------------------------------------------
    def recover(self, cluster: ClusterConfig, hold: Hold, by: str) -> asyncio.Future[dict]:
        """Start keepalived again where our fence stopped it; recorded on the incident.
        The future gets what happened (for the operator's answer)."""
        result: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

        async def work() -> None:
            try:
                result.set_result(await self._recover(cluster, hold, by))
            except BaseException as exc:
                if not result.done():
                    result.set_result({"node": hold.node, "ok": False,
                                       "error": f"recover crashed: {exc}"})
                raise

        self._submit(f"recover-{cluster.name}-{hold.node}", work())
        return result

    async def _recover(self, cluster: ClusterConfig, hold: Hold, by: str) -> dict:
        node = cluster.node(hold.node)
        if node is None:
            return {"node": hold.node, "ok": False, "error": "node no longer configured"}
        cmd = cluster.recover_command_for(node)
        # the runner and the recorder together: both under the term of now
        runner, record = (self._runner_for(cluster.name),
                          self._recorder(cluster.name, hold.incident, 0))
        if cluster.fence_agent and "agent" in cluster.levels_for(node):
            powered = await agent_recover(cluster, hold.node, record)
            if powered is not None:  # it was off: the agent turned it on, and that is all
                return powered
        try:
            rec = await run_step(runner,
                                 target_for(self.config, cluster, hold.node), "recover", cmd,
                                 self.config.ssh.command_timeout, record)
        except StaleTerm as exc:
            log.error("[%s] recover %s: %s", cluster.name, hold.node, exc)
            return {"node": hold.node, "command": cmd, "ok": False, "exit_status": None,
                    "error": str(exc)}
        (log.info if rec.ok else log.error)(
            "[%s] recover %s after release by %s: %s", cluster.name, hold.node, by,
            "ok" if rec.ok else rec.error)
        return {"node": hold.node, "command": cmd, "ok": rec.ok, "exit_status": rec.exit_status,
                "error": rec.error}
