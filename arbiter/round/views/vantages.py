"""[ha] Vantages: this arbiter's views handed in, the other arbiters' views taken back.

Each round, after observing: every arbiter writes its compact view of each node
(``quorum.compact``) and reads the others' (``views.exchange``, one round trip,
bounded by the Ledger). The result is the ``Quorum`` the policy judges a fence by.
A view counts only if it is usable (its arbiter was neither isolated nor in TILT),
younger than ``stale_after`` by the database's clock, and from a listed member.
A failed exchange is ``db_error``, and then no other view counts: nothing can
reach a quorum on this arbiter's view alone (unless ``quorum`` is 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from arbiter.config import Config
from arbiter.model import ClusterObservation, Snapshot
from arbiter.policy.decide import abstain_reason_of
from arbiter.policy.quorum import ClusterView, NodeView, Quorum, compact
from arbiter.round.memory.current import CurrentConfig, ReadsConfig, holder
from arbiter.round.memory.ledger import Ledger
from arbiter.store import views
from arbiter.store.engine import StoreError


class Vantages(ReadsConfig):
    def __init__(self, config: Config | CurrentConfig, ledger: Ledger, engine: Engine):
        self._current = holder(config)
        assert self.config.ha is not None
        self.ledger = ledger
        self.engine = engine
        self.me = self.config.ha.name
        self.members: Mapping[str, dict[str, Any]] = {}  # what /status shows

    async def exchange(self, snap: Snapshot) -> Quorum:
        ha = self.config.ha
        assert ha is not None
        reason = abstain_reason_of(snap)
        mine: dict[str, dict[str, dict[str, list[Any]]]] = {}
        for c in self.config.clusters:
            obs = snap.cluster(c.name) or ClusterObservation(c.name, ())
            mine.setdefault(c.shard, {})[c.name] = {
                n: v.to_json() for n, v in compact(c, obs).items()}
        try:
            rows = await self.ledger.call_unversioned(
                views.exchange, self.engine, self.me, reason is None, reason, mine)
        except StoreError:
            rows = []
        stale_after = self.config.stale_after
        peers: dict[str, dict[str, ClusterView]] = {}
        members: dict[str, dict[str, Any]] = {}
        for r in rows:
            counts = (r.arbiter != self.me and r.arbiter in ha.members and r.usable
                      and r.age <= stale_after)
            m = members.setdefault(r.arbiter, {"age": round(r.age, 1), "usable": r.usable,
                                               "reason": r.reason, "counts": counts})
            m["age"] = round(max(m["age"], r.age), 1)
            if not counts:
                continue
            for cluster, nodes in r.nodes.items():
                peers.setdefault(cluster, {})[r.arbiter] = {
                    n: NodeView.from_json(v) for n, v in nodes.items()}
        self.members = members
        return Quorum(len(ha.members), ha.need, peers)
