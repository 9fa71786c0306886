"""[ha] Each arbiter's view of every node, exchanged through PostgreSQL each round.

``exchange`` writes this arbiter's views (one row per shard, stamped with the
database's ``now()``) and reads every arbiter's back in the same transaction,
with each row's age by the same clock: one round trip per round, and no clock
shared between arbiters. What to make of the rows is the policy's
(``arbiter.policy.quorum``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from arbiter.store.engine import StoreError

_UPSERT = text("""
INSERT INTO arbiter_views (arbiter, shard, observed_at, usable, reason, nodes)
VALUES (:arbiter, :shard, now(), :usable, :reason, CAST(:nodes AS JSON))
ON CONFLICT (arbiter, shard) DO UPDATE
SET observed_at = now(), usable = EXCLUDED.usable, reason = EXCLUDED.reason,
    nodes = EXCLUDED.nodes
""")
_READ = text("SELECT arbiter, shard, usable, reason, "
             "EXTRACT(EPOCH FROM now() - observed_at)::float8, nodes FROM arbiter_views")


@dataclass(frozen=True, slots=True)
class ViewRow:
    arbiter: str
    shard: str
    usable: bool
    reason: str | None
    age: float  # seconds, by the database's clock
    nodes: Mapping[str, Mapping[str, list[Any]]]  # cluster -> node -> NodeView.to_json()


def exchange(engine: Engine, me: str, usable: bool, reason: str | None,
             shards: Mapping[str, Mapping[str, Mapping[str, list[Any]]]]) -> list[ViewRow]:
    try:
        with engine.begin() as conn:
            for shard, nodes in shards.items():
                conn.execute(_UPSERT, {"arbiter": me, "shard": shard, "usable": usable,
                                       "reason": reason, "nodes": json.dumps(nodes)})
            return [ViewRow(a, s, bool(u), r, float(age), n if isinstance(n, dict)
                            else json.loads(n))
                    for a, s, u, r, age, n in conn.execute(_READ)]
    except SQLAlchemyError as exc:
        raise StoreError(f"views: {type(exc).__name__}: {exc}".splitlines()[0][:500]) from exc
