"""Builders for pure-policy tests: configs, observations, and a round driver."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from arbiter.config import Config, from_dict
from arbiter.model import (
    Address,
    ArpSight,
    ClusterObservation,
    History,
    IncidentKind,
    NodeObservation,
    SelfCheck,
    Snapshot,
)
from arbiter.policy import decide, memory
from arbiter.policy.assessment import Assessment
from arbiter.policy.effects import OpenIncident
from arbiter.policy.memory import ARBITER, Committed

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GW = "10.0.0.254"  # never contacted: pure tests do no I/O
VIP1, VIP2 = "10.0.0.100", "10.0.0.200"


def make_config(nodes: list[tuple[str, int]] | None = None, vips: list[str] | None = None,
                **arbiter: object) -> Config:
    nodes = nodes or [("lb1", 100), ("lb2", 90)]
    return from_dict({
        "arbiter": {"gateways": [GW], "interval": 1.0, "confirm_rounds": 2,
                    "resolve_rounds": 2, **arbiter},
        "ssh": {"client_keys": ["k"], "known_hosts": "kh"},
        "clusters": [{
            "name": "web", "vips": vips or [VIP1],
            "nodes": [{"name": n, "address": f"10.0.0.{11 + i}", "priority": p}
                      for i, (n, p) in enumerate(nodes)],
        }],
    }, check_files=False)


def node(name: str, holds: tuple[str, ...] = (), *, icmp: bool = True, ssh: bool = True,
         ka: bool | None = True, gw: bool = True, lo: tuple[str, ...] = (),
         at: datetime = T0, peers: tuple[tuple[str, bool], ...] = ()) -> NodeObservation:
    addrs = None
    if ssh:
        addrs = tuple(
            [Address("lo", "127.0.0.1", 8)]
            + [Address("lo", v, 32) for v in lo]
            + [Address("eth0", v, 24) for v in holds]
        )
    return NodeObservation(
        node=name, icmp_ok=icmp, ssh_ok=ssh, observed_at=at, addresses=addrs,
        keepalived_running=ka if ssh else None,
        gateways=((GW, gw),) if ssh else (),
        peers=peers if ssh else (),
    )


def store_ids(a: Assessment, next_id: int) -> tuple[Committed, int]:
    """Play the store's part: an id for every incident the effects open."""
    ids: dict[str | None, dict[IncidentKind, int]] = {}
    for key, effects in [(ARBITER, a.effects)] + [(ca.cluster, ca.effects) for ca in a.clusters]:
        for e in effects:
            if isinstance(e, OpenIncident):
                ids.setdefault(key, {})[e.kind] = next_id
                next_id += 1
    return Committed(ids), next_id


@dataclass
class Driver:
    """Runs rounds through the pure policy and the real memory fold, playing the
    store's part (ids) and, optionally, reporting fence results back as the Fencer
    does."""

    config: Config
    history: History = field(default_factory=History)
    now: datetime = T0
    next_id: int = 1
    log: list[Assessment] = field(default_factory=list)

    def round(self, *nodes: NodeObservation, sees_gateway: bool = True,
              tilt: str | None = None, at: datetime | None = None,
              arp: ArpSight | None = None, pauses: tuple = ()) -> Assessment:
        """One round ``interval`` after the last, or at ``at`` (rounds woken early)."""
        if at is not None:
            self.now = at
        snap = Snapshot(
            at=self.now,
            self_check=SelfCheck(gateways=((GW, sees_gateway),), tilt_reason=tilt),
            clusters=(ClusterObservation("web", tuple(nodes), arp),),
        )
        a = decide.assess(self.config, snap, self.history, self.now, pauses=pauses)
        committed, self.next_id = store_ids(a, self.next_id)
        self.history = memory.fold(self.history, a, committed)
        self.log.append(a)
        self.now += timedelta(seconds=self.config.arbiter.interval)
        return a

    def finish_fence(self, ok: bool, held: tuple[str, ...] = ()) -> None:
        h = self.history.cluster("web")
        assert h.incident is not None and h.incident.id is not None
        h = memory.fold_fence(h, h.incident.id, ok, held, self.now)
        self.history = memory.with_cluster(self.history, "web", h)

    def web(self, a: Assessment):  # type: ignore[no-untyped-def]
        ca = a.cluster("web")
        assert ca is not None
        return ca


def effects_of(ca_or_a, kind: type) -> list:  # type: ignore[no-untyped-def]
    """The effects of one type in an assessment (cluster or arbiter level)."""
    return [e for e in ca_or_a.effects if isinstance(e, kind)]
