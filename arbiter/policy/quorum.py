"""[ha] A quorum of vantages: the leader fences only what enough arbiters see.

Pure: no I/O. Every arbiter writes a compact view of every node each round
(``compact``); the leader reads the others' fresh ones (``arbiter.store.views``) and
the policy asks ``judge`` before it fences:

- at least ``need`` views, its own included, must see one of the split VIPs held by
  more than one node; fewer, and nothing is fenced: a leader cut off from one
  director must not fence on what only it sees;
- no victim may be one that a majority of the views cannot reach;
- a view from an arbiter that is isolated or in TILT, or that is older than
  ``stale_after``, was never handed in: it counts as no view.

The reason names the views: ``2 of 3 arbiters see lb1 and lb2 both holding 192.168.77.100``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from arbiter.config import ClusterConfig
from arbiter.model import ClusterObservation, FencePlan


@dataclass(frozen=True, slots=True)
class NodeView:
    """What one arbiter saw of one node in its last round."""

    reachable: bool
    keepalived: bool | None
    holds: tuple[str, ...]
    gateways_seen: int

    def to_json(self) -> list[Any]:
        return [self.reachable, self.keepalived, list(self.holds), self.gateways_seen]

    @classmethod
    def from_json(cls, v: list[Any]) -> NodeView:
        return cls(bool(v[0]), None if v[1] is None else bool(v[1]),
                   tuple(str(x) for x in v[2]), int(v[3]))


ClusterView = Mapping[str, NodeView]  # node -> what was seen of it


@dataclass(frozen=True, slots=True)
class Quorum:
    """The round's input from the other arbiters: their fresh, usable views."""

    members: int
    need: int
    peers: Mapping[str, Mapping[str, ClusterView]] = field(default_factory=dict)
    # cluster -> arbiter -> its view of that cluster

    def views_of(self, cluster: str) -> Mapping[str, ClusterView]:
        return self.peers.get(cluster, {})


def compact(cluster: ClusterConfig, obs: ClusterObservation) -> dict[str, NodeView]:
    return {n.node: NodeView(n.reachable, n.keepalived_running, n.holds(cluster.vips),
                             n.gateways_seen) for n in obs.nodes}


def _holders(view: ClusterView, vip: str) -> tuple[str, ...]:
    return tuple(sorted(n for n, v in view.items() if vip in v.holds))


def judge(quorum: Quorum, cluster: ClusterConfig, own: ClusterView,
          split_vips: tuple[str, ...], plan: FencePlan) -> tuple[FencePlan | None, str]:
    """The plan, its reason led by the views that carry it; or None and why not."""
    views: dict[str, ClusterView] = {"this arbiter": own, **quorum.views_of(cluster.name)}
    agree = sorted(name for name, v in views.items()
                   if any(len(_holders(v, vip)) >= 2 for vip in split_vips))
    seen = "; ".join(f"{' and '.join(_holders(own, v))} both holding {v}" for v in split_vips)
    phrase = f"{len(agree)} of {quorum.members} arbiters see {seen}"
    if len(agree) < quorum.need:
        return None, (f"{phrase}; quorum is {quorum.need}: not fencing on fewer views "
                      f"({len(views)} fresh)")
    for victim in plan.victims:
        blind = sorted(name for name, v in views.items()
                       if not (v.get(victim.node) and v[victim.node].reachable))
        if len(blind) * 2 > len(views):
            return None, (f"{phrase}, but {len(blind)} of {len(views)} views cannot reach "
                          f"{victim.node}: not fencing a node a majority cannot see")
    return plan, phrase
