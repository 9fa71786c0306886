"""Prometheus metrics (``GET /metrics``), through prometheus_client.

Two kinds, kept apart:
- **events counted as they happen**, in the process that saw them: rounds and their
  duration, split brains opened, fence steps by action and outcome, verdicts served
  by answer, SSH errors by kind. The loop, the fencer and the API call ``Metrics``.
- **state read from the View at scrape time** (``ViewCollector``): each node's
  reachability by probe, VIP holders, active split brains, TILT, isolation, the
  last round's time. Nothing is copied into gauges between scrapes, so a scrape
  can never show a state the View never had.

Every name is prefixed ``arbiter_``. Labels stay low-cardinality: cluster, node,
VIP and probe come from the config; no incident ids, no reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from arbiter.model import IncidentKind
from arbiter.policy.effects import OpenIncident
from arbiter.policy.view_health import view_failing
from arbiter.round.outputs.view import View

ROUND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def ssh_error_kind(error: str) -> str:
    """A bounded label for an SSH error message (arbiter.probe.ssh words them)."""
    e = error.lower()
    for kind, words in (("host_key", ("host key",)), ("auth", ("authentication",)),
                        ("timeout", ("timed out", "did not answer")),
                        ("refused", ("refused", "connect failed")),
                        ("disconnected", ("disconnected",)),
                        ("command", ("exit", "collect"))):
        if any(w in e for w in words):
            return kind
    return "other"


class Metrics:
    """The counters and the histogram, in a registry of their own (one per app), and
    the state read at scrape time: from ``view`` (the View current then) and, with
    ``[notify]``, ``outbox`` (the pending and dead notifications the sender last read)."""

    def __init__(self, view: Callable[[], View], outbox: Callable[[], Any] | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.round_seconds = Histogram("arbiter_round_duration_seconds",
                                       "Duration of a round", buckets=ROUND_BUCKETS,
                                       registry=r)
        self.split_brains = Counter("arbiter_split_brains_detected",
                                    "Split-brain incidents opened", ["cluster"], registry=r)
        self.fence_steps = Counter("arbiter_fence_steps",
                                   "Fence and recover steps run, by action and outcome",
                                   ["cluster", "action", "outcome"], registry=r)
        self.verdicts = Counter("arbiter_verdicts_served", "/verdict answers, by answer",
                                ["verdict"], registry=r)
        self.ssh_errors = Counter("arbiter_ssh_errors", "Failed SSH collects, by kind",
                                  ["kind"], registry=r)
        self.notifications = Counter("arbiter_notification_deliveries",
                                     "Notification deliveries tried, by channel and outcome",
                                     ["channel", "outcome"], registry=r)
        self.track_writes = Counter("arbiter_track_writes",
                                    "Verdicts written to keepalived track files, by outcome",
                                    ["cluster", "outcome"], registry=r)
        r.register(ViewCollector(view))
        if outbox is not None:
            r.register(OutboxCollector(outbox, lambda: view().config.notify))

    def track_write(self, cluster: str, ok: bool) -> None:
        self.track_writes.labels(cluster, "ok" if ok else "failed").inc()

    def notification_result(self, channel: str, ok: bool) -> None:
        self.notifications.labels(channel, "sent" if ok else "failed").inc()

    def count_round(self, snap: Any, a: Any, failed: frozenset[str | None]) -> None:
        """The round's events: split brains opened (committed ones), SSH errors by kind."""
        for ca in a.clusters:
            if ca.cluster not in failed and any(
                    isinstance(e, OpenIncident) and e.kind is IncidentKind.SPLIT_BRAIN
                    for e in ca.effects):
                self.split_brains.labels(ca.cluster).inc()
        for obs in snap.clusters:
            for n in obs.nodes:
                if n.ssh_error:
                    self.ssh_errors.labels(ssh_error_kind(n.ssh_error)).inc()


class ViewCollector(Collector):
    def __init__(self, view: Callable[[], View]):
        self.view = view

    def collect(self) -> Iterator[Metric]:
        v = self.view()
        rounds = CounterMetricFamily("arbiter_rounds", "Rounds run since start")
        rounds.add_metric([], v.stats.count)
        yield rounds
        last = GaugeMetricFamily("arbiter_last_round_timestamp_seconds",
                                 "When the last round finished (Unix time)")
        if v.stats.finished_at is not None:
            last.add_metric([], v.stats.finished_at.timestamp())
        yield last
        tilt = GaugeMetricFamily("arbiter_tilt", "1 while fencing is suspended by TILT")
        tilt.add_metric([], 1.0 if v.tilt_until is not None and v.stats.finished_at is not None
                        and v.stats.finished_at < v.tilt_until else 0.0)
        yield tilt
        iso = GaugeMetricFamily("arbiter_isolated", "1 while the arbiter sees none of its "
                                "own gateways")
        sc = v.snapshot.self_check if v.snapshot else None
        iso.add_metric([], 0.0 if sc is None or sc.sees_gateway else 1.0)
        yield iso
        load = GaugeMetricFamily("arbiter_loop_cpu_seconds_per_second",
                                 "CPU-seconds the arbiter used per second over the last "
                                 "30 s: its loop runs on one core, so 1 is all of it")
        if v.load.cpu_per_s is not None:
            load.add_metric([], v.load.cpu_per_s)
        yield load
        dumps = CounterMetricFamily("arbiter_keepalived_dumps", "keepalived dumps recorded "
                                    "from the directors; kind: whole, or same (@@kv-same: "
                                    "the text sent before)", labels=["kind"])
        whole, same, held = v.keepalived_dumps
        dumps.add_metric(["whole"], whole - same)
        dumps.add_metric(["same"], same)
        yield dumps
        quiet = CounterMetricFamily(
            "arbiter_keepalived_held_ticks", "ticks a director held back (quiet ticks) "
            "whose sample the next change brought: one per quiet stretch; 0 with every "
            "director's arbiter-ssh-wrapper older than quiet ticks")
        quiet.add_metric([], held)
        yield quiet
        yield from self._reload(v)
        yield from self._clusters(v)
        yield from self._ha(v)

    @staticmethod
    def _reload(v: View) -> Iterator[Metric]:
        """The last config reload, named as Prometheus names its own."""
        last = (v.config_status or {}).get("last_reload") or {}
        ok = GaugeMetricFamily("arbiter_config_last_reload_successful",
                               "0 while the last reload was refused (the old config runs)")
        ok.add_metric([], 0.0 if last.get("ok") is False else 1.0)
        yield ok

    @staticmethod
    def _ha(v: View) -> Iterator[Metric]:
        """[ha]: whether this arbiter leads each shard, and the highest term it has seen
        (nothing without [ha])."""
        if v.ha is None:
            return
        leading = GaugeMetricFamily("arbiter_ha_leading",
                                    "1 while this arbiter leads the shard", labels=["shard"])
        term = GaugeMetricFamily("arbiter_ha_term", "The highest leader term seen for the "
                                 "shard (it rises at every takeover)", labels=["shard"])
        for shard, s in v.ha.get("shards", {}).items():
            leading.add_metric([shard], float(bool(s.get("leading"))))
            term.add_metric([shard], float(s.get("term") or 0))
        yield leading
        yield term

    def _clusters(self, v: View) -> Iterator[Metric]:
        reach = GaugeMetricFamily("arbiter_node_reachable",
                                  "1 if the node answered this probe in the last round",
                                  labels=["cluster", "node", "probe"])
        holders = GaugeMetricFamily("arbiter_vip_holders",
                                    "Nodes holding the VIP in the last round (2+: split brain)",
                                    labels=["cluster", "vip"])
        arp = GaugeMetricFamily("arbiter_arp_answerers",
                                "Distinct MACs that answered ARP for the VIP in the last "
                                "round (2+: split brain at layer 2)", labels=["cluster", "vip"])
        active = GaugeMetricFamily("arbiter_split_brain_active",
                                   "1 while the cluster has a VIP with two holders",
                                   labels=["cluster"])
        kv_up = GaugeMetricFamily("arbiter_keepalived_view_up",
                                  "1 while the node's keepalived dumps arrive (keepalived_view)",
                                  labels=["cluster", "node"])
        kv_state = GaugeMetricFamily("arbiter_keepalived_state",
                                     "1 for the state keepalived reports for the instance",
                                     labels=["cluster", "node", "vrrp_instance", "state"])
        kv_prio = GaugeMetricFamily("arbiter_keepalived_priority",
                                    "The instance's effective priority, as keepalived reports it",
                                    labels=["cluster", "node", "vrrp_instance"])
        kv_rcvd = CounterMetricFamily("arbiter_keepalived_adverts_received",
                                      "keepalived's own advert_rcvd counter",
                                      labels=["cluster", "node", "vrrp_instance"])
        kv_sent = CounterMetricFamily("arbiter_keepalived_adverts_sent",
                                      "keepalived's own advert_sent counter",
                                      labels=["cluster", "node", "vrrp_instance"])
        kv_failing = GaugeMetricFamily(
            "arbiter_keepalived_view_failing",
            "1 while the node's keepalived view has given only errors for long enough that "
            "exclusive verdicts fall back to denying every backup while the holder is "
            "healthy (issue 29)", labels=["cluster", "node"])
        paused = GaugeMetricFamily("arbiter_paused",
                                   "1 while a maintenance pause keeps the cluster from being "
                                   "fenced", labels=["cluster"])
        at = v.stats.finished_at
        denials = GaugeMetricFamily("arbiter_exclusive_denials",
                                    "Backups denied for missing a healthy master's adverts",
                                    labels=["cluster"])
        a = v.assessment
        for c in v.config.clusters:
            obs = v.snapshot.cluster(c.name) if v.snapshot else None
            for n in obs.nodes if obs else ():
                kv = n.keepalived
                if kv is not None:
                    kv_up.add_metric([c.name, n.node], float(kv.error is None))
                    if at is not None and c.keepalived_view:
                        kv_failing.add_metric([c.name, n.node],
                                              float(view_failing(n, at) is not None))
                    for i in kv.instances:
                        for s in ("INIT", "BACKUP", "MASTER", "FAULT"):
                            kv_state.add_metric([c.name, n.node, i.name, s],
                                                float(i.state == s))
                        kv_prio.add_metric([c.name, n.node, i.name], i.effective_priority)
                        kv_rcvd.add_metric([c.name, n.node, i.name], i.latest.advert_rcvd)
                        kv_sent.add_metric([c.name, n.node, i.name], i.latest.advert_sent)
                reach.add_metric([c.name, n.node, "icmp"], float(n.icmp_ok))
                reach.add_metric([c.name, n.node, "ssh"], float(n.ssh_ok))
                reach.add_metric([c.name, n.node, "gateway"], float(n.gateways_seen > 0))
            if obs is not None and obs.arp is not None and obs.arp.error is None:
                for vip in c.vips:
                    arp.add_metric([c.name, vip], float(len(obs.arp.macs(vip))))
            paused.add_metric([c.name], float(at is not None and any(
                p.covers(c.name, at) for p in v.pauses)))
            if c.verdict == "exclusive":
                denials.add_metric([c.name], len(v.history.cluster(c.name).denials))
            ca = a.cluster(c.name) if a else None
            if ca is None:
                continue
            for vip, who in ca.holders:
                holders.add_metric([c.name, vip], float(len(who)))
            active.add_metric([c.name], float(bool(ca.split_vips)))
        yield reach
        yield holders
        yield arp
        yield active
        yield from (kv_up, kv_failing, kv_state, kv_prio, kv_rcvd, kv_sent, denials, paused)


class OutboxCollector(Collector):
    """Pending and dead notifications by channel, 0 for every configured channel that
    has none (so ``sum(arbiter_outbox_dead)`` is 0, not "no data")."""

    def __init__(self, counts: Callable[[], Any], notify: Callable[[], Any]):
        self.counts, self.notify = counts, notify

    def collect(self) -> Iterator[Metric]:
        c = self.counts()
        n = self.notify()
        zero = dict.fromkeys(n.channels if n is not None else [], 0)
        pending = GaugeMetricFamily("arbiter_outbox_pending",
                                    "Notifications waiting to be delivered", labels=["channel"])
        dead = GaugeMetricFamily("arbiter_outbox_dead",
                                 "Notifications given up after notify.max_attempts",
                                 labels=["channel"])
        for fam, by in ((pending, c.pending if c else {}), (dead, c.dead if c else {})):
            for ch, count in sorted({**zero, **by}.items()):
                fam.add_metric([ch], float(count))
        yield pending
        yield dead
