"""One round: observe -> assess (pure) -> record (commit) -> act.

The loop never overlaps rounds, starts the next one at once after an overrun,
and suspends fencing (TILT) when it notices it was stalled. A failure of SSH,
ICMP or the database becomes state that /status shows; it never ends the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from arbiter import decide
from arbiter.config import ClusterConfig, Config
from arbiter.fence import FenceOutcome, Record, announce, execute, run_step, target_for
from arbiter.model import (
    Assessment,
    ClusterAssessment,
    ClusterHistory,
    ClusterObservation,
    FenceMode,
    FenceOrder,
    History,
    Hold,
    IncidentKind,
    IncidentState,
    NodeObservation,
    OpenIncident,
    SelfCheck,
    Snapshot,
)
from arbiter.probe.icmp import Pinger, PingResult
from arbiter.probe.ssh import (
    MONITOR,
    CollectParseError,
    NodeFacts,
    Runner,
    Target,
    collect_command,
    parse_collect,
)
from arbiter.serialize import cluster_evidence, fence_order
from arbiter.store.repository import AttemptRecord, Repository, StoreError

log = logging.getLogger("arbiter.cycle")


def settle_heap() -> None:
    """After the first round has opened every connection: collect once, then move what
    lives on (connections, config, the app) out of the collector's view. Without
    this, each full collection walks every connection's objects again; at 1000 nodes
    that was ~100 ms, inside a round or a /verdict request (measured with gc.callbacks)."""
    gc.collect()
    gc.freeze()
    log.debug("heap settled: %d objects frozen", gc.get_freeze_count())


@dataclass(frozen=True, slots=True)
class _CollectPlan:
    target: Target
    command: str
    gateways: tuple[str, ...]
    peers: tuple[str, ...]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class FenceResult:
    cluster: str
    incident_id: int
    outcome: FenceOutcome
    at: datetime


@dataclass
class RoundStats:
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float = 0.0
    count: int = 0
    overruns: int = 0


@dataclass
class Runtime:
    """What the API reads: the latest facts, never computed at request time."""

    snapshot: Snapshot | None = None
    assessment: Assessment | None = None
    stats: RoundStats = field(default_factory=RoundStats)
    db_error: str | None = None
    db_error_at: datetime | None = None
    tilt_until: datetime | None = None
    tilt_reason: str | None = None
    last_error: str | None = None
    push_events: int = 0
    last_push: dict | None = None
    watchers_up: int = 0


class Arbiter:
    def __init__(
        self,
        config: Config,
        repo: Repository,
        pinger: Pinger,
        runner: Runner,
        clock=utcnow,  # type: ignore[no-untyped-def]
    ):
        self.config = config
        self.repo = repo
        self.pinger = pinger
        self.runner = runner
        self.clock = clock
        self.history = History()
        self.runtime = Runtime()
        self._prev_obs: dict[tuple[str, str], NodeObservation] = {}
        # the last collect output per node and what it parsed to: in steady state a
        # node answers the same text every round, and parsing it was ~10% of a round
        self._parsed: dict[tuple[str, str], tuple[tuple, NodeFacts]] = {}
        self._plans: dict[tuple[str, str], _CollectPlan] = {}
        self._plans_for: Config | None = None
        self.last_seen: dict[tuple[str, str], datetime] = {}
        self.last_event: dict[tuple[str, str], dict] = {}
        self.gateway_view: dict[str, bool] = {}  # the arbiter's ICMP view of cluster gateways
        self._tasks: set[asyncio.Task[None]] = set()
        self._fence_tasks: dict[str, asyncio.Task[None]] = {}
        self._fence_results: list[FenceResult] = []
        self._wake = asyncio.Event()
        self._round_lock = asyncio.Lock()
        self._watchers: list[asyncio.Task[None]] = []

    # --- start-up -----------------------------------------------------------
    async def restore(self) -> None:
        """Rebuild the policy's memory from the store: no incident is lost on restart,
        and an incident already fenced is never fenced again."""
        rows = await asyncio.to_thread(self.repo.unresolved)
        epochs = await asyncio.to_thread(self.repo.epochs)
        hists: dict[str, ClusterHistory] = {
            c.name: ClusterHistory(epoch=epochs.get(c.name, 0)) for c in self.config.clusters
        }
        isolated = None
        now = self.clock()
        for r in rows:
            cl = r["cluster"]
            if r["kind"] == IncidentKind.ARBITER_ISOLATED.value:
                if r["state"] != IncidentState.RESOLVED.value:
                    isolated = r["id"]
                continue
            if cl not in hists:
                log.warning("incident #%s belongs to cluster %r, no longer configured", r["id"], cl)
                continue
            h = hists[cl]
            mode = FenceMode(r.get("mode", "ssh"))
            if r["held"] and not r["released_at"]:
                for v in r["held_nodes"]:
                    h = decide.hold(h, Hold(v, r["id"], r["survivor"] or "", mode,
                                            mode is FenceMode.SSH))
            if r["state"] == IncidentState.RESOLVED.value:
                hists[cl] = h
                continue
            if r["kind"] == IncidentKind.ORPHAN_VIP.value:
                hists[cl] = h.with_(orphan_incident=r["id"])
                continue
            state = IncidentState(r["state"])
            if state is IncidentState.FENCING:
                # We died mid-fence: outcome unknown. Treat as failed so the policy
                # re-checks the evidence and, only if the split persists, retries
                # within max_fence_attempts.
                state = IncidentState.FENCE_FAILED
                await asyncio.to_thread(
                    self.repo.set_state, r["id"], state, now,
                    "arbiter restarted while this fence was in flight; outcome unknown, "
                    "re-checking before any retry",
                )
            last = datetime.fromisoformat(r["last_attempt_at"]) if r["last_attempt_at"] else None
            hists[cl] = h.with_(
                incident=OpenIncident(
                    id=r["id"], state=state, survivor=r["survivor"],
                    victims=tuple(r["victims"]), attempts=r["attempts"], last_attempt_at=last,
                    mode=mode, released=bool(r["released_at"]),
                ),
                # A restart must not shortcut confirmation: streaks start again.
                split_streak=0,
            )
            log.info("restored incident #%s (%s, %s)", r["id"], cl, state.value)
        self.history = History(clusters=tuple(hists.items()), isolated_incident=isolated)

    # --- observe ------------------------------------------------------------
    async def observe(self) -> Snapshot:
        cfg = self.config
        node_addrs = [n.address for c in cfg.clusters for n in c.nodes]
        gw_addrs = list(cfg.arbiter.gateways)
        cluster_gws = [g for c in cfg.clusters for g in cfg.gateways_for(c)]
        icmp_task = asyncio.create_task(
            self.pinger.ping_many(node_addrs + gw_addrs + cluster_gws, cfg.arbiter.icmp_timeout)
        )
        ssh_tasks = {
            (c.name, n.name): asyncio.create_task(self._collect(c, n.name))
            for c in cfg.clusters for n in c.nodes
        }
        pings = await icmp_task
        self.gateway_view = {g: pings.get(g, PingResult(False)).ok for g in cluster_gws}
        at = self.clock()
        clusters = []
        for c in cfg.clusters:
            nodes = []
            for n in c.nodes:
                facts, err, ms = await ssh_tasks[(c.name, n.name)]
                p = pings.get(n.address, PingResult(False, None, "not pinged"))
                o = NodeObservation(
                    node=n.name, icmp_ok=p.ok, icmp_rtt_ms=p.rtt_ms, ssh_ok=facts is not None,
                    ssh_error=err, ssh_ms=round(ms, 1), observed_at=at,
                    addresses=facts.addresses if facts else None,
                    keepalived_running=facts.keepalived_running if facts else None,
                    gateways=facts.gateways if facts else (),
                    peers=facts.peers if facts else (),
                )
                key = (c.name, n.name)
                o = decide.carry_forward(self._prev_obs.get(key), o, cfg.arbiter.degraded_hold)
                self._prev_obs[key] = o
                if o.reachable:
                    self.last_seen[key] = at
                nodes.append(o)
            clusters.append(ClusterObservation(c.name, tuple(nodes)))
        self_check = SelfCheck(
            gateways=tuple((g, pings.get(g, PingResult(False)).ok) for g in gw_addrs),
            tilt_reason=self._tilt_reason(at),
        )
        return Snapshot(at=at, self_check=self_check, clusters=tuple(clusters))

    def _plan(self, c: ClusterConfig, node: str) -> _CollectPlan:
        """What to run on a node each round; it only changes with the config."""
        if self._plans_for is not self.config:
            self._plans, self._plans_for = {}, self.config
        plan = self._plans.get((c.name, node))
        if plan is None:
            gateways = tuple(self.config.gateways_for(c))
            peers = tuple(n.address for n in c.nodes if n.name != node)
            cmd = collect_command(list(gateways), self.config.ssh.gateway_ping_timeout,
                                  list(peers))
            plan = _CollectPlan(target_for(self.config, c, node), cmd, gateways, peers)
            self._plans[(c.name, node)] = plan
        return plan

    async def _collect(self, c: ClusterConfig, node: str):  # type: ignore[no-untyped-def]
        plan = self._plan(c, node)
        timeout = self.config.ssh.command_timeout
        in_session = self.config.ssh.collect_session and hasattr(self.runner, "run_in_session")
        run = self.runner.run_in_session if in_session else self.runner.run
        res = await run(plan.target, plan.command, timeout)
        if not res.ok:
            return None, res.error, res.duration_ms
        if res.exit_status != 0:
            why = res.stderr.strip()
            if in_session and not why:
                # A session discards stderr; an operator needs the message ("ip: not
                # found", "sudo: a password is required"), so ask once on a channel.
                again = await self.runner.run(plan.target, plan.command, timeout)
                why = again.stderr.strip() if again.ok else (again.error or "")
            return None, f"collect exited {res.exit_status}: {why[:200]}", res.duration_ms
        key = (c.name, node)
        last = self._parsed.get(key)
        if last is not None and last[0] == (res.stdout, plan):
            return last[1], None, res.duration_ms
        try:
            facts = parse_collect(res.stdout, list(plan.gateways), list(plan.peers))
            self._parsed[key] = ((res.stdout, plan), facts)
            return facts, None, res.duration_ms
        except CollectParseError as exc:
            return None, f"bad collect output: {exc}", res.duration_ms

    def _tilt_reason(self, now: datetime) -> str | None:
        rt = self.runtime
        if rt.tilt_until and now < rt.tilt_until:
            return f"{rt.tilt_reason}; fencing suspended until {rt.tilt_until.isoformat()}"
        return None

    def enter_tilt(self, reason: str) -> None:
        rt = self.runtime
        rt.tilt_until = self.clock() + timedelta(seconds=self.config.arbiter.tilt_period)
        rt.tilt_reason = reason
        log.warning("TILT: %s; fencing suspended for %.0fs", reason,
                    self.config.arbiter.tilt_period)

    # --- one round ----------------------------------------------------------
    async def run_round(self) -> Assessment:
        async with self._round_lock:
            started = time.perf_counter()
            started_at = self.clock()
            await self._apply_fence_results()
            snap = await self.observe()
            assessment = decide.assess(self.config, snap, self.history, snap.at)
            await self._record_and_act(snap, assessment)
            rt = self.runtime
            rt.snapshot, rt.assessment = snap, assessment
            rt.stats.started_at, rt.stats.finished_at = started_at, self.clock()
            rt.stats.duration_ms = (time.perf_counter() - started) * 1000
            rt.stats.count += 1
            if rt.stats.count == 1:
                settle_heap()
            return assessment

    async def _store(self, fn, *args):  # type: ignore[no-untyped-def]
        try:
            res = await asyncio.to_thread(fn, *args)
        except StoreError as exc:
            rt = self.runtime
            if rt.db_error is None:
                log.error("database error: %s", exc)
            rt.db_error, rt.db_error_at = str(exc), self.clock()
            raise
        if self.runtime.db_error is not None:
            log.info("database reachable again")
            self.runtime.db_error = None
        return res

    async def _record_and_act(self, snap: Snapshot, a: Assessment) -> None:
        hist = self.history
        iso_id = hist.isolated_incident
        try:
            if a.open_isolated:
                iso_id = await self._store(
                    self.repo.open_incident, IncidentKind.ARBITER_ISOLATED, None, a.at,
                    a.abstain_reason or "arbiter isolated",
                )
                log.warning("arbiter isolated: abstaining (incident #%s)", iso_id)
            elif a.resolve_isolated and iso_id is not None:
                await self._store(self.repo.set_state, iso_id, IncidentState.RESOLVED, a.at,
                                  "arbiter reaches a gateway again")
                iso_id = None
        except StoreError:
            pass
        new_clusters = []
        for ca in a.clusters:
            cfg = self.config.cluster(ca.cluster)
            assert cfg is not None
            old = hist.cluster(ca.cluster)
            try:
                nxt, order = await self._record_cluster(snap, ca, cfg)
            except StoreError:
                # Nothing recorded means nothing happened: keep the old memory so
                # the next round tries again, and never act on an unrecorded decision.
                new_clusters.append((ca.cluster, old))
                continue
            new_clusters.append((ca.cluster, nxt))
            if order is not None and not order.dry_run and order.mode is FenceMode.SSH:
                assert nxt.incident is not None and nxt.incident.id is not None
                self._start_fence(cfg, order, nxt.incident.id, nxt.incident.attempts)
            # FenceMode.GATE: the committed decision makes /verdict deny the victim; its
            # arbiter-gate puts it into FAULT, and the next rounds verify the VIP left.
        self.history = History(clusters=tuple(new_clusters), isolated_incident=iso_id)

    async def _record_cluster(
        self, snap: Snapshot, ca: ClusterAssessment, cfg: ClusterConfig
    ) -> tuple[ClusterHistory, FenceOrder | None]:
        nxt = ca.next_history
        obs = snap.cluster(ca.cluster) or ClusterObservation(ca.cluster, ())
        evidence = None
        if ca.open_split or ca.fence or ca.open_orphan:
            evidence = cluster_evidence(obs, ca, list(cfg.vips))
        if ca.open_split:
            assert nxt.incident is not None
            iid = await self._store(
                self.repo.open_incident, IncidentKind.SPLIT_BRAIN, ca.cluster, snap.at,
                ca.reason, list(ca.split_vips), evidence,
            )
            nxt = nxt.with_(incident=replace(nxt.incident, id=iid))
            log.warning("[%s] split brain detected: %s (incident #%s)", ca.cluster, ca.reason, iid)
        order = ca.fence
        if order is not None:
            inc = nxt.incident
            assert inc is not None and inc.id is not None
            # The decision is committed before anything is done about it.
            await self._store(
                self.repo.record_decision, inc.id, inc.state, snap.at, order.survivor,
                [v.node for v in order.victims], fence_order(order), evidence, order.reason,
                order.dry_run, inc.attempts,
            )
            log.warning("[%s] %s: %s", ca.cluster,
                        "dry run decision" if order.dry_run else "fencing", order.reason)
        if ca.gate_outcome is not None:
            ok, msg = ca.gate_outcome
            inc = self.history.cluster(ca.cluster).incident
            if inc is not None and inc.id is not None:
                await self._store(
                    self.repo.set_state, inc.id,
                    IncidentState.FENCED if ok else IncidentState.FENCE_FAILED, snap.at, msg,
                    list(inc.victims) if ok else None,
                )
                (log.info if ok else log.error)("[%s] incident #%s: %s", ca.cluster, inc.id, msg)
        for h, why in ca.releases:
            await self._store(self.repo.release, h.incident, snap.at, "auto", why, h.node)
            log.info("[%s] %s", ca.cluster, why)
            if h.keepalived_stopped:
                self._spawn(self._recover(cfg, h, "auto"))
        if ca.resolve_split:
            old = self.history.cluster(ca.cluster).incident
            if old is not None and old.id is not None:
                await self._store(self.repo.set_state, old.id, IncidentState.RESOLVED, snap.at,
                                  ca.reason)
                log.info("[%s] incident #%s resolved", ca.cluster, old.id)
        if ca.open_orphan:
            oid = await self._store(
                self.repo.open_incident, IncidentKind.ORPHAN_VIP, ca.cluster, snap.at,
                "; ".join(ca.notes), list(ca.orphan_vips), evidence,
            )
            nxt = nxt.with_(orphan_incident=oid)
        if ca.resolve_orphan:
            oid = self.history.cluster(ca.cluster).orphan_incident
            if oid is not None:
                await self._store(self.repo.set_state, oid, IncidentState.RESOLVED, snap.at,
                                  "every VIP has a holder again")
        if ca.epoch_changed:
            await self._store(self.repo.save_epoch, ca.cluster, nxt.epoch, snap.at)
        return nxt, order

    # --- act ----------------------------------------------------------------
    def _recorder(self, cluster: str, iid: int, attempt: int) -> Record:
        """Log each step of a fence or recover and store it on the incident. If the store
        fails, the action goes on; db_error is visible in /status."""

        async def record(rec: AttemptRecord) -> None:
            log.info("[%s] incident #%s %s on %s: %s (%s) %.0fms", cluster, iid, rec.step,
                     rec.node, "ok" if rec.ok else "FAILED", rec.error or rec.command,
                     rec.duration_ms)
            with contextlib.suppress(StoreError):
                await self._store(self.repo.add_attempt, iid, attempt, rec)

        return record

    def _start_fence(self, cfg: ClusterConfig, order: FenceOrder, iid: int, attempt: int) -> None:
        running = self._fence_tasks.get(cfg.name)
        if running is not None and not running.done():  # the policy prevents this
            log.error("[%s] fence already in flight; refusing a second one", cfg.name)
            return
        self._fence_tasks[cfg.name] = asyncio.create_task(
            self._fence(cfg, order, iid, attempt), name=f"fence-{cfg.name}-{iid}"
        )

    async def _fence(self, cfg: ClusterConfig, order: FenceOrder, iid: int, attempt: int) -> None:
        record = self._recorder(cfg.name, iid, attempt)
        try:
            outcome = await execute(self.config, cfg, order, self.runner, record)
        except Exception as exc:  # noqa: BLE001 - a bug here must not kill the loop
            log.exception("[%s] fence crashed", cfg.name)
            outcome = FenceOutcome(False, (), f"fence crashed: {exc}")
        at = self.clock()
        state = IncidentState.FENCED if outcome.ok else IncidentState.FENCE_FAILED
        with contextlib.suppress(StoreError):
            await self._store(self.repo.set_state, iid, state, at, outcome.summary,
                              list(outcome.held) or None)
        (log.info if outcome.ok else log.error)("[%s] incident #%s: %s", cfg.name, iid,
                                                outcome.summary)
        self._fence_results.append(FenceResult(cfg.name, iid, outcome, at))
        self.wake()  # fold the result in now rather than a whole interval later
        if outcome.ok and cfg.announce_command:
            try:
                await announce(self.config, cfg, order, self.runner, record)
            except Exception:  # noqa: BLE001 - best effort, after the fact
                log.exception("[%s] announce failed", cfg.name)

    async def _apply_fence_results(self) -> None:
        if not self._fence_results:
            return
        results, self._fence_results = self._fence_results, []
        clusters = dict(self.history.clusters)
        for r in results:
            h = clusters.get(r.cluster, ClusterHistory())
            clusters[r.cluster] = decide.fence_finished(
                h, r.incident_id, r.outcome.ok, r.outcome.held, r.at
            )
        self.history = replace(self.history, clusters=tuple(clusters.items()))

    async def wait_fences(self, timeout: float = 30.0) -> None:
        tasks = [t for t in self._fence_tasks.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    # --- release, recover, events ----------------------------------------------
    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recover(self, cfg: ClusterConfig, h: Hold, by: str) -> dict:
        """Start keepalived again where our fence stopped it; recorded on the incident."""
        node = cfg.node(h.node)
        assert node is not None
        t = target_for(self.config, cfg, h.node)
        cmd = cfg.recover_command_for(node)

        record = self._recorder(cfg.name, h.incident, 0)
        rec = await run_step(self.runner, t, "recover", cmd, self.config.ssh.command_timeout,
                             record)
        (log.info if rec.ok else log.error)(
            "[%s] recover %s after release by %s: %s", cfg.name, h.node, by,
            "ok" if rec.ok else rec.error)
        return {"node": h.node, "command": cmd, "ok": rec.ok, "exit_status": rec.exit_status,
                "error": rec.error}

    async def release_incident(self, incident_id: int, by: str) -> dict:
        """An operator's release: the victims stop being denied, and keepalived is
        started again where the fence stopped it."""
        async with self._round_lock:
            row = await self._store(self.repo.get_incident, incident_id)
            if row is None:
                raise KeyError(incident_id)
            cfg = self.config.cluster(row["cluster"] or "")
            at = self.clock()
            gone = await self._store(self.repo.release, incident_id, at, by,
                                     "released by an operator")
            if cfg is None or not gone:
                return {"incident": incident_id, "released": gone, "recover": []}
            hist = self.history.cluster(cfg.name)
            holds = [h for h in hist.held if h.incident == incident_id and h.node in gone]
            for n in gone:
                hist = decide.release(hist, n, incident_id)
            clusters = dict(self.history.clusters)
            clusters[cfg.name] = hist
            self.history = replace(self.history, clusters=tuple(clusters.items()))
        log.warning("[%s] incident #%s released by %s: %s", cfg.name, incident_id, by,
                    ", ".join(gone))
        recovered = [await self._recover(cfg, h, by) for h in holds if h.keepalived_stopped]
        self.wake()
        return {"incident": incident_id, "released": gone, "recover": recovered}

    async def record_event(self, cluster: str, node: str, instance: str, state: str,
                           priority: int | None, source: str | None) -> int:
        """A keepalived transition from arbiter-notify: store it and run a round now."""
        at = self.clock()
        eid = await self._store(self.repo.add_node_event, cluster, node, instance, state,
                                priority, at, source)
        self.last_event[(cluster, node)] = {"instance": instance, "state": state,
                                            "priority": priority, "at": at.isoformat()}
        log.info("[%s] event from %s: %s is %s", cluster, node, instance, state)
        self.wake()
        return eid

    # --- push: watch the directors' addresses ----------------------------------
    def start_watchers(self) -> None:
        for c in self.config.clusters:
            for n in c.nodes:
                self._watchers.append(asyncio.create_task(self._watch(c, n.name),
                                                          name=f"watch-{c.name}-{n.name}"))

    async def stop_watchers(self) -> None:
        for t in self._watchers:
            t.cancel()
        for t in self._watchers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._watchers.clear()

    @staticmethod
    def mentions_vip(line: str, vips: list[str]) -> str | None:
        return next((v for v in vips if f" {v}/" in line), None)

    async def _watch(self, c: ClusterConfig, node: str) -> None:
        """`ip -o monitor address` on the pooled connection: a VIP added or deleted on
        any director wakes the loop at once. The scheduled round stays the reconcile."""
        t = target_for(self.config, c, node)
        backoff = 1.0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            up = False
            try:
                async for line in self.runner.stream(t, MONITOR):
                    if not up:
                        up = True
                        self.runtime.watchers_up += 1
                    vip = self.mentions_vip(line, list(c.vips))
                    if vip is None:
                        continue
                    rt = self.runtime
                    rt.push_events += 1
                    rt.last_push = {"cluster": c.name, "node": node, "vip": vip,
                                    "deleted": line.startswith("Deleted"),
                                    "at": self.clock().isoformat()}
                    log.debug("[%s] push from %s: %s", c.name, node, line.strip())
                    self.wake()
            finally:
                if up:
                    self.runtime.watchers_up -= 1
            if loop.time() - started > 30:
                backoff = 1.0
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    def confirm_due(self) -> datetime | None:
        """When a split brain being confirmed by time becomes due: run a round then,
        not at the next interval."""
        after = self.config.arbiter.confirm_after
        if after is None:
            return None
        dues = [
            h.split_since + timedelta(seconds=after)
            for _, h in self.history.clusters
            if h.split_since is not None and h.incident is not None
            and h.incident.state is IncidentState.OPEN
        ]
        return min(dues) if dues else None

    # --- the loop -----------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self, stop: asyncio.Event) -> None:
        if self.config.arbiter.push:
            self.start_watchers()
        try:
            await self._loop(stop)
        finally:
            await self.stop_watchers()

    async def _loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.arbiter.interval
        gap = self.config.arbiter.min_round_gap
        next_at = loop.time()
        last_wall = time.time()
        last_mono = loop.time()
        while not stop.is_set():
            start = loop.time()
            lateness = start - next_at
            # A stalled loop (SIGSTOP, VM pause, blocked event loop) or a clock
            # jump means our view of time, and so of "N rounds", is not trustworthy.
            drift = abs((time.time() - last_wall) - (start - last_mono))
            if lateness > self.config.tilt_after:
                self.enter_tilt(f"round started {lateness:.1f}s late")
            elif drift > self.config.tilt_after:
                self.enter_tilt(f"wall clock jumped by {drift:.1f}s")
            last_wall, last_mono = time.time(), start
            try:
                await self.run_round()
            except Exception as exc:  # noqa: BLE001 - the loop must survive its own bugs
                log.exception("round failed")
                self.runtime.last_error = f"{type(exc).__name__}: {exc}"
            end = loop.time()
            next_at += interval
            if end > next_at:
                self.runtime.stats.overruns += 1
                log.warning("round took %.2fs, longer than interval %.2fs; next round starts now",
                            end - start, interval)
                next_at = end
            self._wake.clear()
            due = self.confirm_due()
            target = next_at
            if due is not None:
                target = min(next_at, loop.time() + (due - self.clock()).total_seconds())
            wait = target - loop.time()
            if wait > 0:
                stop_task = asyncio.ensure_future(stop.wait())
                wake_task = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({stop_task, wake_task}, timeout=wait,
                                   return_when=asyncio.FIRST_COMPLETED)
                woke_early = wake_task.done() and not stop.is_set()
                for t in (stop_task, wake_task):
                    t.cancel()
                if woke_early:
                    # an event storm must not become a busy loop
                    await asyncio.sleep(max(0.0, start + gap - loop.time()))
                    next_at = loop.time()  # an early round: the schedule restarts from now
                elif target < next_at:
                    next_at = loop.time()  # a confirmation deadline came first
        await self.wait_fences()
