"""The survivor rule: which of the nodes holding a split VIP keeps it, and why.

Pure. Candidates are ordered best-first by ``RULES``; the first rule that
separates two candidates is the one the decision's reason names.
"""

from __future__ import annotations

from dataclasses import dataclass

from arbiter.config import ClusterConfig
from arbiter.model import ClusterHistory, ClusterObservation, NodeObservation


def survivor_key(
    node: NodeObservation, cfg_priority: int, incumbent_of: int
) -> tuple[bool, bool, int, int, int]:
    """Higher sorts first. Name is the last tie-break and is applied by the caller."""
    return (
        node.reachable,
        node.keepalived_running is True,
        node.gateways_seen,
        incumbent_of,
        cfg_priority,
    )


RULES = (
    "reachable by the arbiter",
    "keepalived running",
    "sees more of its gateways",
    "incumbent (held the VIPs alone before the split)",
    "higher priority",
)


@dataclass(frozen=True, slots=True)
class Ranked:
    name: str
    key: tuple[bool, bool, int, int, int]
    why: str


def rank_candidates(
    cluster: ClusterConfig,
    obs: ClusterObservation,
    hist: ClusterHistory,
    candidates: list[str],
    split_vips: tuple[str, ...],
) -> list[Ranked]:
    """Order candidates best-first by the survivor rule; each with its facts."""
    rows = []
    for name in candidates:
        o = obs.node(name)
        assert o is not None
        cfg = cluster.node(name)
        prio = cfg.priority if cfg else 0
        inc = sum(1 for v in split_vips if hist.incumbent_of(v) == name)
        why = (
            f"{'reachable' if o.reachable else 'unreachable'}, keepalived "
            f"{ka_word(o.keepalived_running)}, sees {o.gateways_seen}/{len(o.gateways)} "
            f"gateway(s), incumbent of {inc} split VIP(s), priority {prio}"
        )
        rows.append(Ranked(name, survivor_key(o, prio, inc), why))
    # Deterministic: best key first, then lowest name.
    rows.sort(key=lambda r: (tuple(-int(x) for x in r.key), r.name))
    return rows


def deciding_rule(best: Ranked, other: Ranked) -> str:
    """The first rule of the survivor order that separates the two, in words."""
    for rule, a, b in zip(RULES, best.key, other.key, strict=True):
        if a != b:
            if isinstance(a, bool):
                return rule
            return f"{rule} ({int(a)} > {int(b)})"
    return f"lowest name ({best.name} < {other.name}), all else equal"


def ka_word(running: bool | None) -> str:
    return {True: "running", False: "stopped", None: "unknown"}[running]
