"""What each incident write does inside its transaction (``Repository._tx``): open an
incident, record a decision, change a state, release held nodes, save a cluster's
memory. Every state change is checked against ``policy.incident_fsm``, and each one
worth telling an operator notes its outbox row in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from arbiter.model import IncidentKind, IncidentState
from arbiter.policy import incident_fsm
from arbiter.policy import notify_events as notify_events
from arbiter.policy.effects import (
    RecordDecision,
    SaveClusterMemory,
)
from arbiter.store.engine import StoreError
from arbiter.store.outbox import Notice
from arbiter.store.tables import (
    ClusterState,
    Incident,
    IncidentEvent,
)


def insert(s: Session, kind: IncidentKind, cluster: str | None, at: datetime, reason: str,
          vips: Sequence[str], evidence: dict[str, Any] | None, term: int | None = None,
          arbiter: str | None = None) -> int:
    inc = Incident(
        kind=kind.value, cluster=cluster, state=IncidentState.OPEN.value,
        vips=list(vips), victims=[], reason=reason, evidence=evidence,
        opened_at=at, updated_at=at, dry_run=False, attempts=0, held=False, term=term,
        arbiter=arbiter if cluster is None else None,
    )
    s.add(inc)
    s.flush()
    entry = IncidentEvent(incident_id=inc.id, at=at, state=inc.state, message=reason)
    s.add(entry)
    notice(s, notify_events.on_open(kind.value), inc, entry)
    return inc.id


def notice(s: Session, event: notify_events.EventKind | None, inc: Incident,
            entry: IncidentEvent, nodes: Sequence[str] = ()) -> None:
    """Note an incident change worth telling: the outbox rows go into this same
    transaction (Repository._tx), so a notification exists iff the change does."""
    if event is not None:
        s.info.setdefault("notices", []).append(Notice(event, inc, entry, tuple(nodes)))


def load(s: Session, incident_id: int) -> Incident:
    inc = s.get(Incident, incident_id)
    if inc is None:
        raise StoreError(f"incident {incident_id} does not exist")
    return inc


def decide(s: Session, e: RecordDecision, incident_id: int, at: datetime,
            decision: dict[str, Any], evidence: dict[str, Any] | None,
            term: int | None = None) -> None:
    inc = load(s, incident_id)
    incident_fsm.check(IncidentState(inc.state), e.dst, incident_id)
    inc.state = e.dst.value
    inc.term = term if term is not None else inc.term
    fenced = [v.node for v in e.plan.victims]
    before = list(inc.victims or [])
    # a fence after the first (a re-claim, a new claimant) adds to the victims
    inc.survivor = e.plan.survivor
    inc.victims = list(dict.fromkeys(before + fenced)) if e.src in incident_fsm.AFTER_FENCE \
        else fenced
    # a second VIP may have gone dual after the incident opened
    inc.vips = sorted(set(inc.vips or []) | set(e.plan.vips))
    inc.decision, inc.reason = decision, e.plan.reason
    if evidence is not None:
        inc.evidence = evidence
    inc.dry_run = e.plan.dry_run
    inc.decided_at = inc.decided_at or at
    inc.updated_at = at
    if e.src in incident_fsm.RECLAIMABLE and set(fenced) & set(before):
        # a re-claim fenced again: the automatic release before it is over (its event
        # stays in the timeline), and the new hold must be releasable and restorable
        inc.refenced = True
        inc.released_at = inc.released_by = None
    if not e.plan.dry_run:
        inc.attempts = e.attempt
        inc.last_attempt_at = at
        inc.pending_hold = list(e.intended_hold)
    s.add(IncidentEvent(incident_id=incident_id, at=at, state=e.dst.value,
                        message=e.plan.reason))


def change(s: Session, incident_id: int, dst: IncidentState, at: datetime, message: str,
            held: Sequence[str] = ()) -> None:
    inc = load(s, incident_id)
    src = IncidentState(inc.state)
    incident_fsm.check(src, dst, incident_id)
    inc.state = dst.value
    inc.updated_at = at
    if src is IncidentState.FENCING:
        inc.pending_hold = None  # the fence's real outcome replaces what it intended
    if dst is IncidentState.FENCED:
        inc.fenced_at = at
    if dst is IncidentState.RESOLVED:
        inc.resolved_at = at
    if held:
        inc.held = True
        inc.held_nodes = sorted(set(inc.held_nodes or []) | set(held))
    entry = IncidentEvent(incident_id=incident_id, at=at, state=dst.value, message=message)
    s.add(entry)
    notice(s, notify_events.on_change(inc.kind, src.value, dst.value), inc, entry,
            inc.held_nodes if dst is IncidentState.HELD else inc.victims)


def release(s: Session, incident_id: int, at: datetime, by: str, message: str,
             node: str | None) -> list[str]:
    inc = s.get(Incident, incident_id)
    if inc is None or not inc.held or inc.released_at is not None:
        return []
    held = list(inc.held_nodes or inc.victims)
    gone = [n for n in held if node is None or n == node]
    if not gone:
        return []
    left = [n for n in held if n not in gone]
    inc.held_nodes = left
    inc.updated_at = at
    if not left:
        inc.released_at, inc.released_by = at, by
    entry = IncidentEvent(incident_id=incident_id, at=at, state=inc.state,
                          message=f"{message} (released {', '.join(gone)} by {by})")
    s.add(entry)
    notice(s, notify_events.EventKind.NODE_RELEASED, inc, entry, gone)
    return gone


def save_memory(s: Session, cluster: str, e: SaveClusterMemory, at: datetime) -> None:
    row = s.get(ClusterState, cluster)
    if row is None:
        row = ClusterState(cluster=cluster, epoch=0, updated_at=at)
        s.add(row)
    row.epoch, row.incumbents, row.updated_at = e.epoch, dict(e.incumbents), at
