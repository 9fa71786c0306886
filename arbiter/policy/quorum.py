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

``out_of_sight`` tells a leader that can decide but not act to stand aside: it reads
none of a shard's directors over SSH while another arbiter's fresh view does, so a
split the majority sees would wait for the cut to heal (found by the HA soak).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from arbiter.config import ClusterConfig
from arbiter.model import ClusterObservation, FencePlan
from arbiter.policy.liveness import runs


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
    return {n.node: NodeView(n.reachable, runs(n), n.holds(cluster.vips),
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


def out_of_sight(quorum: Quorum, reads: Mapping[str, bool]) -> str | None:
    """Why this arbiter should not lead the shard of the clusters in ``reads`` (cluster
    -> whether this arbiter read at least one of its directors over SSH this round),
    or None. It stands aside only when it reads none of them and another arbiter's
    fresh view reaches a director of every one (SSH answered there: keepalived's state
    is known), so the shard goes to an arbiter that can fence. When nobody reads them
    better, standing aside would only move the lead around."""
    if not reads or any(reads.values()):
        return None
    seers: set[str] | None = None
    for cluster in sorted(reads):
        who = {a for a, v in quorum.views_of(cluster).items()
               if any(n.reachable and n.keepalived is not None for n in v.values())}
        seers = who if seers is None else seers & who
    if not seers:
        return None
    names = ", ".join(sorted(seers))
    return (f"rule: out of sight: this arbiter reads none of the directors of "
            f"{', '.join(sorted(reads))} over SSH while {names} "
            f"{'does' if len(seers) == 1 else 'do'}: it leaves the lead to an arbiter "
            "that can act")
