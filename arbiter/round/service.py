"""The Arbiter service: wires the units together and runs the loop.

One round reads as its data flow:

    observe -> assess (pure) -> commit effects (ledger) -> fold (pure) -> act -> publish

- ``Observer``: probes every director into a Snapshot;
- ``decide.assess``: the policy, returning typed effects;
- ``Ledger``: commits them, one transaction per cluster, before anything acts;
- ``memory.fold``: the next History, with the ids the store assigned;
- ``Fencer``: fences and recovers, under one TaskGroup;
- ``View``: the frozen picture the API reads, replaced in one step.

Operator releases and keepalived events arrive from the API as intents: they are
queued, the loop is woken, and the next round carries them out under the same
round lock as everything else (Patroni's API works the same way).

With ``[ha]``, every arbiter runs every round, but only the leader of a cluster's
shard records and acts on it. For the other clusters the memory is read back from
the store at the start of each round, and once more in the round that leadership is
taken over, so a new leader starts from what the old one recorded (incidents,
holds, incumbents), as after a restart. All of that is ``Peers`` (``peers.py``);
without ``[ha]`` it is ``Alone``, and the loop never asks which.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine

from arbiter.clock import Clock, utcnow
from arbiter.config import Config
from arbiter.ha.leadership import Leadership
from arbiter.model import History
from arbiter.notify.channels import Channels
from arbiter.policy import decide, memory
from arbiter.policy.assessment import Assessment
from arbiter.policy.effects import ChangeState, Recover, StartFence
from arbiter.policy.memory import Committed
from arbiter.policy.schedule import Scheduler
from arbiter.probe.icmp import Pinger
from arbiter.probe.ssh import Runner
from arbiter.round.acts.fencer import Fencer
from arbiter.round.acts.sender import Sender
from arbiter.round.acts.track_files import TrackFiles
from arbiter.round.intents import EventIntent, Intents, PauseIntent, ReleaseIntent
from arbiter.round.loop import Looping
from arbiter.round.memory.current import CurrentConfig
from arbiter.round.memory.ledger import Ledger
from arbiter.round.memory.pauses import Pauses
from arbiter.round.memory.tilt_notices import TiltNotices
from arbiter.round.outputs.gate_log import GateLog
from arbiter.round.outputs.load import LoadMeter
from arbiter.round.outputs.metrics import Metrics
from arbiter.round.outputs.view import PushStats, RoundStats, View
from arbiter.round.reload import Reloading, ReloadIntent, ReloadStatus
from arbiter.round.views.arp_view import ArpViews
from arbiter.round.views.keepalived_view import KeepalivedViews
from arbiter.round.views.observer import Observer
from arbiter.round.views.peers import Alone, Peers
from arbiter.round.views.push import PushWatcher
from arbiter.round.views.vantages import Vantages
from arbiter.store.engine import StoreError
from arbiter.store.outbox import outbox_for
from arbiter.store.repository import Repository

log = logging.getLogger("arbiter.service")

def settle_heap() -> None:
    """After the first round has opened every connection: collect once, then move what
    lives on (connections, config, the app) out of the collector's view. Without
    this, each full collection walks every connection's objects again; at 1000 nodes
    that was ~100 ms, inside a round or a /verdict request (measured with gc.callbacks)."""
    gc.collect()
    gc.freeze()
    log.debug("heap settled: %d objects frozen", gc.get_freeze_count())


class Arbiter(Looping, Reloading):
    """The service. Its constructor builds every unit with its collaborators, from the
    config and four adapters: the database (``engine``), ICMP (``pinger``), SSH
    (``runner``), and, with ``[notify]``, the channels built from the config. With
    ``[ha]`` the leases and the view exchange come in as ``Peers``, otherwise
    ``Alone``: the loop never asks which."""

    def __init__(self, config: Config, engine: Engine, pinger: Pinger, runner: Runner,
                 clock: Clock = utcnow, mono: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.clock, self.mono, self.wall = clock, mono, wall
        self.current = current = CurrentConfig(config)  # every unit reads it
        self._wake = asyncio.Event()
        self.history = History()
        self.view = View(config, self.history)
        self.load = LoadMeter(mono)
        leadership = (Leadership(config, engine, mono, on_lead=self.wake)
                      if config.ha is not None else None)
        repo = Repository(engine, guard=leadership,
                          arbiter=leadership.me if leadership is not None else None,
                          outbox=outbox_for(config))
        self.sender: Sender | None = None
        self.metrics = Metrics(lambda: self.view,
                               (lambda: self.sender.counts if self.sender else None)
                               if config.notify is not None else None)
        self.ledger = Ledger(repo, clock, leads=leadership.leads if leadership else None)
        self.peers: Alone | Peers = Alone() if leadership is None else Peers(
            current, leadership, Vantages(current, self.ledger, engine))
        self.arp = ArpViews(current, self.wake)
        self.keepalived = KeepalivedViews(current, runner, self.wake, clock)
        self.observer = Observer(current, pinger, runner, clock, self.arp, self.keepalived)
        self.fencer = Fencer(current, runner, self.ledger, self.wake, clock, self.metrics,
                             runner_for=self.peers.runner_for, term_of=self.peers.term_of,
                             arp_check=self.arp.still_answering, send_na=self.arp.announce_na,
                             abstaining=self._abstaining)
        self.push = PushWatcher(current, runner, self.wake, clock)
        self.track = TrackFiles(current, runner, self.peers.runner_for, self.peers.leads, clock,
                                on_write=self.metrics.track_write)
        a = config.arbiter
        self.scheduler = Scheduler(a.interval, a.min_round_gap, config.tilt_after, a.tilt_period)
        self.pauses = Pauses(self.ledger, clock)
        self.intents = Intents(self.ledger, self.fencer, self.pauses, clock)
        self.gates = GateLog(mono)  # the API notes each /verdict answer here
        if config.notify is not None:  # [notify]: delivers what the outbox holds
            self.sender = Sender(config.notify, self.ledger, Channels(config.notify), clock,
                                 on_result=self.metrics.notification_result)
        self.tilt_notices = TiltNotices(self.ledger)
        self.reload_status = ReloadStatus(loaded_at=clock())
        self._reloads: list[ReloadIntent] = []
        self._running = False  # run_forever: the watchers are started
        self._stats = RoundStats()
        self._last_error: str | None = None
        self._round_lock = asyncio.Lock()

    def _abstaining(self) -> str | None:
        """Why the arbiter abstains now (None: it does not); no fence agent runs then."""
        return self.view.staleness(self.clock()) or (
            self.view.assessment.abstain_reason if self.view.assessment else "no round yet")

    @property
    def config(self) -> Config:
        return self.current.config

    @config.setter
    def config(self, config: Config) -> None:
        """A reload's swap: once, for every unit (``round.current``); [ha]'s lease and
        views are rebuilt from it, and the published view carries it."""
        self.current.swap(config)
        self.peers.configure(config)
        self.view = replace(self.view, config=config)

    def _start_watchers(self) -> None:
        if self.config.arbiter.push:
            self.push.start()
        self.arp.start()
        self.keepalived.start()

    @property
    def runner(self) -> Runner:
        return self.observer.runner

    @property
    def repo(self) -> Repository:
        return self.ledger.repo

    # --- start-up and shutdown -------------------------------------------------
    async def restore(self, only: frozenset[str] | None = None) -> None:
        """Rebuild the policy's memory from the store: no incident, hold or incumbent is
        lost on restart, and an incident already fenced is never fenced again.
        ``only``: these clusters' memory, the others' kept ([ha] followers)."""
        rows, memories = await self.ledger.restore_rows()
        history, changes, warnings = memory.restore(
            [c.name for c in self.config.clusters], rows, memories,
            self.fencer.incidents_in_flight())
        of = {r.id: r.cluster for r in rows}
        # [ha] a cluster another arbiter leads is theirs to write: their fence may be running
        changes = tuple(c for c in changes if self.peers.leads(of[c.incident] or ""))
        if only is not None:
            for cl in only:
                self.history = memory.with_cluster(self.history, cl, history.cluster(cl))
            changes = tuple(c for c in changes if of[c.incident] in only)
        else:
            self.history = history
            for w in warnings:
                log.warning(w)
            for cl, h in history.clusters:
                if h.incident is not None:
                    log.info("restored incident #%s (%s, %s)", h.incident.id, cl,
                             h.incident.state.value)
        for cl, group in _by_cluster(changes, of).items():
            await self.ledger.call(self.repo.apply, cl, group, self.clock())
        self._publish()

    async def close(self) -> None:
        """Stop watching, wait for every fence and recover, close the connections, then
        ([ha]) hand the leases back: a follower takes over now, not after a lease."""
        await self.push.stop()
        await self.track.close()
        await self.fencer.close()
        await self.runner.close()
        if self.sender is not None:
            await self.sender.aclose()
        await self.peers.stop()

    # --- intents from the API ----------------------------------------------------
    def release(self, incident: int, by: str) -> asyncio.Future[dict[str, Any]]:
        """An operator's release, carried out by the next round. The future gets the
        outcome (KeyError for an unknown incident)."""
        intent = ReleaseIntent(incident, by)
        self.intents.add(intent)
        self.wake()
        return intent.done

    def pause(self, scope: str | None, seconds: float | None, reason: str, by: str,
              every: bool = False) -> asyncio.Future[dict[str, Any]]:
        """An operator's pause (``seconds``) or resume (None), carried out by the next
        round. The future gets what was done (LookupError: nothing to resume)."""
        intent = PauseIntent(scope, seconds, reason, by, every)
        self.intents.add(intent)
        self.wake()
        return intent.done

    def report_event(self, cluster: str, node: str, instance: str, state: str,
                     priority: int | None, source: str | None) -> None:
        """A keepalived transition from arbiter-notify: stored, and a round run now."""
        self.intents.add(EventIntent(cluster, node, instance, state, priority, source))
        log.info("[%s] event from %s: %s is %s", cluster, node, instance, state)
        self.wake()

    # --- one round ---------------------------------------------------------------
    async def run_round(self) -> Assessment:
        async with self._round_lock:
            started, started_at = time.perf_counter(), self.clock()
            for f in self.fencer.take_finished():
                hist = memory.fold_fence(self.history.cluster(f.cluster), f.incident,
                                         f.report.ok, f.report.held, f.at)
                self.history = memory.with_cluster(self.history, f.cluster, hist)
            if self.ledger.unknown_outcome:
                await self._reread_memory()
            if self._reloads:
                await self._apply_reloads()
            await self.peers.follow(self.config, self.restore, self.fencer.announce_term)
            self.history = await self.intents.carry_out(self.config, self.history)
            tilt = self.scheduler.tilt
            await self.tilt_notices.check(tilt.until, tilt.reason, self.clock())
            pauses = await self.pauses.refresh()
            snap = await self.observer.observe(tilt.active(self.clock()))
            quorum = await self.peers.exchange(snap)
            assessment = decide.assess(self.config, snap, self.history, snap.at, quorum,
                                       pauses)
            committed = await self.ledger.commit(snap, assessment)
            self.metrics.count_round(snap, assessment, committed.failed)
            self.history = memory.fold(self.history, assessment, committed)
            self._act(assessment, committed)
            self.track.after_round(snap, assessment, committed.failed)
            s = self._stats
            self._stats = RoundStats(started_at, self.clock(),
                                     (time.perf_counter() - started) * 1000, s.count + 1,
                                     self.scheduler.overruns)
            self.metrics.round_seconds.observe(time.perf_counter() - started)
            self._publish(snap, assessment)
            if self._stats.count == 1:
                settle_heap()
            return assessment

    async def _reread_memory(self) -> None:
        """A database call timed out on our side, so it may have landed after all: once
        the database answers again, the memory is read back from the store, as at a
        restart, instead of trusting what this process believes it wrote."""
        try:
            if not await self.ledger.flush():
                return
            if not await self.ledger.settled(self.ledger.timeout):
                return
            await self.restore()
        except StoreError:
            return
        self.ledger.unknown_outcome = False
        log.warning("memory re-read from the store: a database call had timed out and "
                    "its outcome was unknown")

    def _act(self, a: Assessment, committed: Committed) -> None:
        """Hand the actions of committed clusters to the fencer; never the others."""
        for ca in a.clusters:
            if ca.cluster in committed.failed:
                continue
            cfg = self.config.cluster(ca.cluster)
            assert cfg is not None
            for e in ca.effects:
                if isinstance(e, StartFence):
                    iid = e.incident if isinstance(e.incident, int) else \
                        committed.ids[ca.cluster][e.incident.kind]
                    self.fencer.fence(cfg, e.plan, iid, e.attempt)
                elif isinstance(e, Recover):
                    self.fencer.recover(cfg, e.hold, e.by)

    def _publish(self, snap: Any = None, assessment: Assessment | None = None) -> None:
        tilt = self.scheduler.tilt
        self.view = View(
            config=self.config, history=self.history,
            snapshot=snap if snap is not None else self.view.snapshot,
            assessment=assessment if assessment is not None else self.view.assessment,
            stats=self._stats,
            push=PushStats(self.config.arbiter.push, self.push.up, self.push.events,
                           self.push.last),
            db_error=self.ledger.db_error, db_error_at=self.ledger.db_error_at,
            unwritten=self.ledger.backlog, db_file_problem=self.ledger.file_problem,
            tilt_until=tilt.until, tilt_reason=tilt.reason,
            last_error=self._last_error, last_seen=dict(self.observer.last_seen),
            last_event=dict(self.intents.last_event), gateway_view=dict(self.observer.gateway_view),
            ha=self.peers.status(), ha_blind=self.peers.blind(), terms=self.peers.terms(),
            notify=self.sender.as_json() if self.sender else None,
            track=self.track.statuses(),
            config_status=self.reload_status.as_json(),
            pauses=self.pauses.active,
            load=self.load.sample(self.keepalived.dumps),
            keepalived_dumps=(self.keepalived.dumps, self.keepalived.same,
                              self.keepalived.held),
        )

def _by_cluster(changes: tuple[ChangeState, ...],
                cluster_of: dict[int, str | None]) -> dict[str | None, list[ChangeState]]:
    """Restore's changes by cluster: each is committed in its own cluster's transaction
    (with [ha], under that cluster's lease check)."""
    out: dict[str | None, list[ChangeState]] = {}
    for c in changes:
        out.setdefault(cluster_of[c.incident], []).append(c)  # type: ignore[index]
    return out
