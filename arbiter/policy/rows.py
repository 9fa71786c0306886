"""Typed rows the store hands to the restore (no SQLAlchemy objects leave the store)."""

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
