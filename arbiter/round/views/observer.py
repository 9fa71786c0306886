"""The Observer: one round's look at every director, as an immutable Snapshot.

It owns the probes (the pinger and the SSH runner), what to run on each node
(collect plans, rebuilt only when the config changes), the parse memo, the
carry-forward of a degraded node's last addresses, when each node was last
seen, and the arbiter's ICMP view of the cluster gateways.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime

from arbiter.clock import Clock, utcnow
from arbiter.config import ClusterConfig, Config
from arbiter.model import ClusterObservation, NodeObservation, SelfCheck, Snapshot
from arbiter.probe.collect import CollectParseError, NodeFacts, collect_command, parse_collect
from arbiter.probe.icmp import Pinger, PingResult
from arbiter.probe.ssh import Runner, Target
from arbiter.round.memory.current import CurrentConfig, ReadsConfig, holder
from arbiter.round.views.arp_view import ArpViews
from arbiter.round.views.keepalived_view import KeepalivedViews
from arbiter.round.views.targets import target_for

NodeKey = tuple[str, str]  # (cluster, node)


@dataclass(frozen=True, slots=True)
class CollectPlan:
    """What to run on one node each round; it only changes with the config."""

    target: Target
    command: str
    gateways: tuple[str, ...]
    peers: tuple[str, ...]


def carry_forward(
    prev: NodeObservation | None, new: NodeObservation, hold_seconds: float
) -> NodeObservation:
    """A node that answers ICMP but not SSH is degraded, not gone: keep its
    last seen addresses for ``hold_seconds`` so a dead sshd cannot hide a VIP."""
    if new.ssh_ok or not new.icmp_ok or prev is None or prev.addresses is None:
        return new
    seen_at = prev.addresses_seen_at or prev.observed_at
    if (new.observed_at - seen_at).total_seconds() > hold_seconds:
        return new
    return replace(
        new,
        addresses=prev.addresses,
        addresses_seen_at=seen_at,
        keepalived_running=prev.keepalived_running,
        keepalived_frozen=prev.keepalived_frozen,
        gateways=prev.gateways,
        macs=prev.macs,
    )


class Observer(ReadsConfig):
    def __init__(self, config: Config | CurrentConfig, pinger: Pinger, runner: Runner,
                 clock: Clock = utcnow, arp: ArpViews | None = None,
                 keepalived: KeepalivedViews | None = None):
        self._current = holder(config)
        self.arp = arp  # the ARP view of clusters with an arp_interface
        self.keepalived = keepalived  # keepalived's own view, streamed between rounds
        self.pinger = pinger
        self.runner = runner
        self.clock = clock
        self.last_seen: dict[NodeKey, datetime] = {}
        self.gateway_view: dict[str, bool] = {}  # the arbiter's ICMP view of cluster gateways
        self._prev: dict[NodeKey, NodeObservation] = {}
        # the last collect output per node and what it parsed to: in steady state a
        # node answers the same text every round, and parsing it was ~10% of a round
        self._parsed: dict[NodeKey, tuple[tuple[str, CollectPlan], NodeFacts]] = {}
        self._plans: dict[NodeKey, CollectPlan] = {}
        self._plans_for: Config | None = None

    async def observe(self, tilt_reason: str | None = None) -> Snapshot:
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
        arp_tasks = {c.name: self.arp.probe(c) for c in cfg.clusters} if self.arp else {}
        pings = await icmp_task
        self.gateway_view = {g: pings.get(g, PingResult(False)).ok for g in cluster_gws}
        at = self.clock()
        clusters = []
        for c in cfg.clusters:
            nodes = []
            for n in c.nodes:
                key = (c.name, n.name)
                facts, err, ms = await ssh_tasks[key]
                p = pings.get(n.address, PingResult(False, None, "not pinged"))
                o = NodeObservation(
                    node=n.name, icmp_ok=p.ok, icmp_rtt_ms=p.rtt_ms, ssh_ok=facts is not None,
                    ssh_error=err, ssh_ms=round(ms, 1), observed_at=at,
                    addresses=facts.addresses if facts else None,
                    keepalived_running=facts.keepalived_running if facts else None,
                    keepalived_frozen=facts.keepalived_frozen if facts else False,
                    gateways=facts.gateways if facts else (),
                    peers=facts.peers if facts else (),
                    macs=facts.macs if facts else (),
                    keepalived=self.keepalived.view(c, n.name) if self.keepalived else None,
                )
                o = carry_forward(self._prev.get(key), o, cfg.arbiter.degraded_hold)
                self._prev[key] = o
                if o.reachable:
                    self.last_seen[key] = at
                nodes.append(o)
            arp = await self.arp.sight(c, tuple(nodes), arp_tasks.get(c.name)) \
                if self.arp else None
            clusters.append(ClusterObservation(c.name, tuple(nodes), arp))
        self_check = SelfCheck(
            gateways=tuple((g, pings.get(g, PingResult(False)).ok) for g in gw_addrs),
            tilt_reason=tilt_reason,
        )
        return Snapshot(at=at, self_check=self_check, clusters=tuple(clusters))

    def plan(self, c: ClusterConfig, node: str) -> CollectPlan:
        if self._plans_for is not self.config:
            self._plans, self._plans_for = {}, self.config
        plan = self._plans.get((c.name, node))
        if plan is None:
            gateways = tuple(self.config.gateways_for(c))
            peers = tuple(n.address for n in c.nodes if n.name != node)
            cmd = collect_command(list(gateways), self.config.ssh.gateway_ping_timeout,
                                  list(peers))
            plan = CollectPlan(target_for(self.config, c, node), cmd, gateways, peers)
            self._plans[(c.name, node)] = plan
        return plan

    async def _collect(
        self, c: ClusterConfig, node: str
    ) -> tuple[NodeFacts | None, str | None, float]:
        plan = self.plan(c, node)
        timeout = self.config.ssh.command_timeout
        in_session = self.config.ssh.collect_session
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
        except CollectParseError as exc:
            return None, f"bad collect output: {exc}", res.duration_ms
        self._parsed[key] = ((res.stdout, plan), facts)
        return facts, None, res.duration_ms
