"""What the policy concluded from one round: per node, per cluster, and for the
arbiter itself, each with its reason and the typed effects to record, then do.

These live beside the effects they carry (``arbiter.policy.effects``), so the shared
types in ``arbiter.model`` never import the policy back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from arbiter.model import ClusterHistory, FencePlan, Health, Verdict
from arbiter.policy.effects import Effect


@dataclass(frozen=True, slots=True)
class NodeAssessment:
    node: str
    health: Health
    holds: tuple[str, ...]
    verdict: Verdict
    reason: str
    # exclusive clusters: (vip, verdict, reason) for each VIP (arbiter.policy.verdicts)
    by_vip: tuple[tuple[str, Verdict, str], ...] = ()

    def for_vip(self, vip: str | None) -> tuple[Verdict, str]:
        for v, verdict, reason in self.by_vip:
            if v == vip:
                return verdict, reason
        return self.verdict, self.reason


@dataclass(frozen=True, slots=True)
class ClusterAssessment:
    cluster: str
    nodes: tuple[NodeAssessment, ...]
    holders: tuple[tuple[str, tuple[str, ...]], ...]  # vip -> holders
    split_vips: tuple[str, ...]
    orphan_vips: tuple[str, ...]
    reason: str
    next_history: ClusterHistory
    conflicts: tuple[tuple[str, tuple[str, ...]], ...] = ()  # vip -> strangers' MACs
    fence: FencePlan | None = None  # the plan decided this round (also in a StartFence)
    notes: tuple[str, ...] = field(default=())
    # what to record, then do, in order (arbiter.policy.effects); the ledger commits them
    effects: tuple[Effect, ...] = ()

    def node(self, name: str) -> NodeAssessment | None:
        return next((n for n in self.nodes if n.node == name), None)

    def holder_of(self, vip: str) -> str | None:
        """The node clients should reach for this VIP: sole holder, or the survivor."""
        holders = dict(self.holders).get(vip, ())
        if len(holders) == 1:
            return holders[0]
        inc = self.next_history.incident
        if inc and inc.survivor and inc.survivor in holders:
            return inc.survivor
        return None


@dataclass(frozen=True, slots=True)
class Assessment:
    at: datetime
    abstain_reason: str | None
    clusters: tuple[ClusterAssessment, ...]
    # the arbiter's own incidents (isolation): opened or resolved this round
    effects: tuple[Effect, ...] = ()

    @property
    def abstaining(self) -> bool:
        return self.abstain_reason is not None

    def cluster(self, name: str) -> ClusterAssessment | None:
        return next((c for c in self.clusters if c.cluster == name), None)
