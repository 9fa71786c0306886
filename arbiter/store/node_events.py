"""keepalived's state transitions (``POST /events``) in the store: added, pruned,
read. A part of ``Repository``, kept apart because nothing else touches them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from arbiter.store import queries
from arbiter.store.tables import NodeEvent


class NodeEventStore:
    def _tx(self, fn):  # type: ignore[no-untyped-def]  # Repository's
        raise NotImplementedError

    def add_node_events(self, events: Sequence[dict[str, Any]]) -> None:
        self._tx(lambda s: s.add_all([NodeEvent(**e) for e in events]))

    def prune_node_events(self, keep_per_node: int, older_than: datetime) -> int:
        """Delete keepalived events older than ``older_than``, and beyond the newest
        ``keep_per_node`` of each node. Returns how many rows went."""

        def fn(s: Session) -> int:
            gone = s.execute(delete(NodeEvent).where(NodeEvent.at < older_than)).rowcount
            for cluster, node in s.execute(select(NodeEvent.cluster, NodeEvent.node).distinct()):
                nth = s.scalar(select(NodeEvent.id).where(
                    NodeEvent.cluster == cluster, NodeEvent.node == node)
                    .order_by(NodeEvent.id.desc()).offset(keep_per_node).limit(1))
                if nth is not None:
                    gone += s.execute(delete(NodeEvent).where(
                        NodeEvent.cluster == cluster, NodeEvent.node == node,
                        NodeEvent.id <= nth)).rowcount
            return gone

        return self._tx(fn)

    def node_events(self, cluster: str, node: str | None = None, limit: int = 50) -> list[dict]:
        return self._tx(lambda s: queries.node_events(s, cluster, node, limit))
