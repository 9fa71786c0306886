"""The restore's input: typed rows the store hands over (``memory.restore`` reads them;
no SQLAlchemy object leaves the store). They belong to the policy's side of the seam:
the store (an adapter) builds them, the policy never imports the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from arbiter.model import FenceMode, IncidentKind, IncidentState


@dataclass(frozen=True, slots=True)
class IncidentRow:
    """An incident as the restore needs it: not resolved, or still holding a node."""

    id: int
    kind: IncidentKind
    cluster: str | None
    state: IncidentState
    survivor: str | None
    victims: tuple[str, ...]
    attempts: int
    last_attempt_at: datetime | None
    mode: FenceMode
    held_nodes: tuple[str, ...]
    pending_hold: tuple[str, ...]  # a fence was in flight: who it meant to stop
    released: bool
    released_at: datetime | None = None
    refenced: bool = False  # fenced again after an automatic release


@dataclass(frozen=True, slots=True)
class ClusterMemoryRow:
    cluster: str
    epoch: int
    incumbents: tuple[tuple[str, str], ...]
