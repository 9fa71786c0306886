"""Typed effects: what the policy decided to record and to do this round.

``decide.assess`` returns these instead of flags. The ``Ledger`` commits every
record effect of a cluster in one transaction; only then does the service hand
the action effects (``StartFence``, ``Recover``) to the ``Fencer``. The memory
fold (``memory.fold``) needs nothing from them but the ids the store assigned.

An incident opened this round has no id yet: later effects of the same batch
refer to it as ``Opened(kind)``, and the ledger maps that to the new id.
"""

from __future__ import annotations

from dataclasses import dataclass

from arbiter.model import FencePlan, Hold, IncidentKind, IncidentMemory, IncidentState
from arbiter.policy import incident_fsm


@dataclass(frozen=True, slots=True)
class Opened:
    """The incident of this kind that an earlier effect of the same batch opens."""

    kind: IncidentKind


IncidentRef = int | Opened


def ref_of(inc: IncidentMemory) -> IncidentRef:
    """How effects name a split-brain incident: its id, or Opened while it has none."""
    return inc.id if inc.id is not None else Opened(IncidentKind.SPLIT_BRAIN)


@dataclass(frozen=True, slots=True)
class OpenIncident:
    kind: IncidentKind
    reason: str
    vips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChangeState:
    """A state change of an incident, checked against the state machine when made."""

    incident: IncidentRef
    src: IncidentState
    dst: IncidentState
    message: str
    held: tuple[str, ...] = ()  # victims now held (gate mode: they dropped the VIP)

    def __post_init__(self) -> None:
        incident_fsm.check(self.src, self.dst,
                           self.incident if isinstance(self.incident, int) else None)


@dataclass(frozen=True, slots=True)
class RecordDecision:
    """The survivor, the victims and why; committed before any fence goes out.

    ``intended_hold`` names the victims whose keepalived the fence will stop: it is
    written with the decision, so a crash mid-fence cannot lose the hold."""

    incident: IncidentRef
    src: IncidentState
    dst: IncidentState  # FENCING, or DECIDED for a dry run
    plan: FencePlan
    attempt: int
    intended_hold: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        incident_fsm.check(self.src, self.dst,
                           self.incident if isinstance(self.incident, int) else None)


@dataclass(frozen=True, slots=True)
class ReleaseHold:
    """An automatic release of a healed victim."""

    hold: Hold
    why: str


@dataclass(frozen=True, slots=True)
class SaveClusterMemory:
    """What a restart must not forget: the verdict epoch, and who held each VIP
    alone before a split (the survivor rule's 'incumbent')."""

    epoch: int
    incumbents: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class StartFence:
    """Action: run the fence of a committed decision."""

    incident: IncidentRef
    plan: FencePlan
    attempt: int


@dataclass(frozen=True, slots=True)
class Recover:
    """Action: start keepalived again on a released victim whose keepalived we stopped."""

    hold: Hold
    by: str


RecordEffect = OpenIncident | ChangeState | RecordDecision | ReleaseHold | SaveClusterMemory
ActionEffect = StartFence | Recover
Effect = RecordEffect | ActionEffect


def is_action(e: Effect) -> bool:
    return isinstance(e, StartFence | Recover)
