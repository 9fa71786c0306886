"""Frozen domain types shared by every layer, in three modules: what was observed
(``observations``: Snapshot), what the policy remembers between rounds (``memory``:
History), and what it decided (``decisions``: FencePlan). This package re-exports them
all, so ``from arbiter.model import X`` works for every type.

Probes produce observations (a failed probe is a value, never an exception); the
policy turns one snapshot plus history into an assessment (``arbiter.policy.assessment``,
which holds the effects, so this package imports nothing of the policy's).
"""

from arbiter.model.decisions import FenceMethod, FencePlan, Verdict, VictimAction
from arbiter.model.memory import (
    ClusterHistory,
    Denial,
    EventKind,
    FenceMode,
    History,
    Hold,
    IncidentKind,
    IncidentMemory,
    IncidentState,
    Pause,
)
from arbiter.model.observations import (
    Address,
    ArpSight,
    ClusterObservation,
    Health,
    KeepalivedView,
    NodeObservation,
    SelfCheck,
    Snapshot,
    VrrpInstance,
    VrrpSample,
)

__all__ = [
    "Address", "ArpSight", "ClusterHistory", "ClusterObservation", "Denial", "EventKind",
    "FenceMethod", "FenceMode", "FencePlan", "Health", "History", "Hold", "IncidentKind",
    "IncidentMemory", "IncidentState", "KeepalivedView", "NodeObservation", "Pause",
    "SelfCheck", "Snapshot", "VictimAction", "Verdict", "VrrpInstance", "VrrpSample",
]
