"""The survivor rule: which of the nodes holding a split VIP keeps it, and why.

Pure. Candidates are ordered best-first by ``RULES``; the first rule that
separates two candidates is the one the decision's reason names.

With several arbiters ([ha]), "reachable" and "sees more of its gateways" are
counted over every fresh view handed in this round (``peers``), not taken from the
leader's view alone: a leader that cannot reach lb1 must not make lb2 survive for
that reason when the other arbiters reach both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from arbiter.config import ClusterConfig
from arbiter.model import ClusterHistory, ClusterObservation, NodeObservation
from arbiter.policy.liveness import keepalived_state, runs
from arbiter.policy.quorum import ClusterView, compact


def survivor_key(
    node: NodeObservation, cfg_priority: int, incumbent_of: int
) -> tuple[bool, bool, int, int, int]:
    """Higher sorts first. Name is the last tie-break and is applied by the caller."""
    return (
        node.reachable,
        runs(node) is True,  # it answers: a frozen keepalived does not (issue 28)
        node.gateways_seen,
        incumbent_of,
        cfg_priority,
    )


RULES = (
    "reachable by the arbiter",
    "keepalived running (it answers; a frozen or hung one does not)",
    "sees more of its gateways",
    "incumbent (held the VIPs alone before the split)",
    "higher priority",
)
RULES_OVER_VIEWS = (
    "reachable by more arbiters",
    RULES[1],
    "sees more of its gateways, over every arbiter's view",
    *RULES[3:],
)


@dataclass(frozen=True, slots=True)
class Ranked:
    name: str
    key: tuple[int, bool, int, int, int]  # reachable: a bool, or a count of views
    why: str


def rank_candidates(
    cluster: ClusterConfig,
    obs: ClusterObservation,
    hist: ClusterHistory,
    candidates: list[str],
    split_vips: tuple[str, ...],
    peers: Mapping[str, ClusterView] | None = None,
) -> list[Ranked]:
    """Order candidates best-first by the survivor rule; each with its facts.
    ``peers``: the other arbiters' fresh views ([ha]), counted with this one's."""
    views = None if peers is None else [compact(cluster, obs), *peers.values()]
    rows = []
    for name in candidates:
        o = obs.node(name)
        assert o is not None
        cfg = cluster.node(name)
        prio = cfg.priority if cfg else 0
        inc = sum(1 for v in split_vips if hist.incumbent_of(v) == name)
        key = survivor_key(o, prio, inc)
        seen = f"{'reachable' if o.reachable else 'unreachable'}"
        gws = f"sees {o.gateways_seen}/{len(o.gateways)} gateway(s)"
        if views is not None:
            reach = sum(1 for v in views if name in v and v[name].reachable)
            gw = sum(v[name].gateways_seen for v in views if name in v)
            key = (reach, key[1], gw, *key[3:])
            seen = f"reachable by {reach}/{len(views)} arbiters"
            gws = f"sees {gw} gateway(s) over {len(views)} views"
        why = (f"{seen}, keepalived {keepalived_state(o)[1]}, {gws}, "
               f"incumbent of {inc} split VIP(s), priority {prio}")
        rows.append(Ranked(name, key, why))
    # Deterministic: best key first, then lowest name.
    rows.sort(key=lambda r: (tuple(-int(x) for x in r.key), r.name))
    return rows


def deciding_rule(best: Ranked, other: Ranked, over_views: bool = False) -> str:
    """The first rule of the survivor order that separates the two, in words."""
    rules = RULES_OVER_VIEWS if over_views else RULES
    for rule, a, b in zip(rules, best.key, other.key, strict=True):
        if a != b:
            if isinstance(a, bool):
                return rule
            return f"{rule} ({int(a)} > {int(b)})"
    return f"lowest name ({best.name} < {other.name}), all else equal"

