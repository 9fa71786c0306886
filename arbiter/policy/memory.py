"""The policy's memory between rounds, and every way it changes. Pure.

- ``fold``: a round's assessment, once the ledger committed its effects, becomes
  the next ``History`` (with the ids the store assigned). A cluster whose commit
  failed keeps its old memory: nothing recorded means nothing happened.
- ``fold_fence``: a fence's result (who is held now, and the incident's state).
- ``release``: an operator's or the healing rule's release of a held node.
- ``restore``: the memory rebuilt from typed store rows at start-up, plus the
  state changes the restart itself implies (a fence that was in flight).

The unit tests drive rounds through this same fold; there is no second copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from arbiter.model import (
    ClusterHistory,
    FenceMode,
    History,
    Hold,
    IncidentKind,
    IncidentMemory,
    IncidentState,
)
from arbiter.policy import incident_fsm
from arbiter.policy.assessment import Assessment
from arbiter.policy.effects import ChangeState
from arbiter.policy.rows import ClusterMemoryRow, IncidentRow

ARBITER = None  # the key of the arbiter's own incidents (isolation) in Committed


@dataclass(frozen=True)
class Committed:
    """What the ledger managed to commit of a round: ids of incidents opened, by
    cluster (``ARBITER`` for the arbiter's own), and the clusters that failed."""

    ids: dict[str | None, dict[IncidentKind, int]] = field(default_factory=dict)
    failed: frozenset[str | None] = frozenset()


def fold(history: History, assessment: Assessment, committed: Committed) -> History:
    clusters = []
    for ca in assessment.clusters:
        if ca.cluster in committed.failed:
            clusters.append((ca.cluster, history.cluster(ca.cluster)))
            continue
        ids = committed.ids.get(ca.cluster, {})
        h = ca.next_history
        if h.incident is not None and h.incident.id is None:
            h = h.with_(incident=replace(h.incident, id=ids[IncidentKind.SPLIT_BRAIN]))
        if IncidentKind.ORPHAN_VIP in ids:
            h = h.with_(orphan_incident=ids[IncidentKind.ORPHAN_VIP])
        if IncidentKind.VIP_CONFLICT in ids:
            h = h.with_(conflict_incident=ids[IncidentKind.VIP_CONFLICT])
        if IncidentKind.VIEW_FAILING in ids:
            h = h.with_(view_fail_incident=ids[IncidentKind.VIEW_FAILING])
        clusters.append((ca.cluster, h))
    isolated = history.isolated_incident
    if ARBITER not in committed.failed:
        for e in assessment.effects:
            if isinstance(e, ChangeState) and e.dst is IncidentState.RESOLVED:
                isolated = None
        isolated = committed.ids.get(ARBITER, {}).get(IncidentKind.ARBITER_ISOLATED, isolated)
    return History(clusters=tuple(clusters), isolated_incident=isolated)


def with_cluster(history: History, name: str, hist: ClusterHistory) -> History:
    clusters = dict(history.clusters)
    clusters[name] = hist
    return replace(history, clusters=tuple(clusters.items()))


def _add_holds(held: tuple[Hold, ...], new: tuple[Hold, ...]) -> tuple[Hold, ...]:
    have = {h.node for h in held}
    return held + tuple(h for h in new if h.node not in have)


def hold(hist: ClusterHistory, h: Hold) -> ClusterHistory:
    return hist.with_(held=_add_holds(hist.held, (h,)))


def fold_fence(
    hist: ClusterHistory, incident_id: int, ok: bool, held: tuple[str, ...], at: datetime
) -> ClusterHistory:
    """Fold an SSH fence's result in; ``held`` are the victims whose keepalived we stopped."""
    inc = hist.incident
    survivor = inc.survivor if inc is not None and inc.id == incident_id else None
    refenced = inc is not None and inc.id == incident_id and inc.refenced
    holds = tuple(Hold(n, incident_id, survivor or "", FenceMode.SSH, True, refenced)
                  for n in held)
    merged = _add_holds(hist.held, holds)
    if inc is None or inc.id != incident_id or inc.state is not IncidentState.FENCING:
        return hist.with_(held=merged)  # resolved meanwhile; still remember who is held
    state = IncidentState.FENCED if ok else IncidentState.FENCE_FAILED
    return hist.with_(incident=incident_fsm.advance(inc, state, last_attempt_at=at),
                      held=merged)


def release(hist: ClusterHistory, node: str, incident_id: int | None = None) -> ClusterHistory:
    """Lift the hold on ``node``; if its incident is still open, stop denying its victims."""
    inc = hist.incident
    if inc is not None and incident_id is not None and inc.id == incident_id:
        still = any(h.incident == incident_id and h.node != node for h in hist.held)
        # a held incident whose last hold an operator lifts is resolved (the store
        # records that in the same transaction as the release)
        inc = None if inc.state is IncidentState.HELD and not still else \
            replace(inc, released=True)
    return hist.with_(
        incident=inc,
        held=tuple(h for h in hist.held if h.node != node),
        release_streaks=tuple((n, c) for n, c in hist.release_streaks if n != node),
    )


RESTARTED_MID_FENCE = ("arbiter restarted while this fence was in flight; outcome unknown: "
                       "the victims it meant to stop stay held, and the evidence is "
                       "re-checked before any retry")


def restore(
    clusters: list[str], rows: list[IncidentRow], memories: dict[str, ClusterMemoryRow],
    in_flight: frozenset[int] = frozenset(),
) -> tuple[History, tuple[ChangeState, ...], list[str]]:
    """The memory after a restart: the same survivor rule inputs (incumbents), every
    hold (also the intended hold of a fence that was in flight), and open incidents.
    ``in_flight``: incidents whose fence this process is still running (a re-read
    after a database timeout, not a restart): they stay FENCING.
    Returns the history, the state changes to commit, and warnings to log."""
    hists = {
        c: ClusterHistory(epoch=m.epoch if (m := memories.get(c)) else 0,
                          incumbents=m.incumbents if m else ())
        for c in clusters
    }
    changes: list[ChangeState] = []
    warnings: list[str] = []
    isolated = None
    for r in rows:
        if r.kind is IncidentKind.ARBITER_ISOLATED:
            if r.state is not IncidentState.RESOLVED:
                isolated = r.id
            continue
        if r.cluster not in hists:
            warnings.append(f"incident #{r.id} belongs to cluster {r.cluster!r}, "
                            "no longer configured")
            continue
        h = hists[r.cluster]
        state = r.state
        held = r.held_nodes
        if state is IncidentState.FENCING and r.id not in in_flight:
            # We died mid-fence: whoever the fence meant to stop may be stopped. Hold
            # them (release runs recover_command, which is harmless if it is running).
            held = tuple(dict.fromkeys(held + r.pending_hold))
            state = IncidentState.FENCE_FAILED
            changes.append(ChangeState(r.id, IncidentState.FENCING, state, RESTARTED_MID_FENCE,
                                       r.pending_hold))
        if held and not r.released:
            for v in held:
                h = hold(h, Hold(v, r.id, r.survivor or "", r.mode, r.mode is FenceMode.SSH,
                                 r.refenced))
        if state is IncidentState.WATCHING and r.released_at is not None:
            # the cooldown of an automatic release counts from the release itself
            h = h.with_(auto_released_at=tuple(sorted(
                dict(h.auto_released_at, **dict.fromkeys(r.victims, r.released_at)).items())))
        if state is IncidentState.RESOLVED:
            hists[r.cluster] = h
            continue
        if r.kind is IncidentKind.ORPHAN_VIP:
            hists[r.cluster] = h.with_(orphan_incident=r.id)
            continue
        if r.kind is IncidentKind.VIP_CONFLICT:
            hists[r.cluster] = h.with_(conflict_incident=r.id)
            continue
        if r.kind is IncidentKind.VIEW_FAILING:
            hists[r.cluster] = h.with_(view_fail_incident=r.id)
            continue
        hists[r.cluster] = h.with_(
            incident=IncidentMemory(
                id=r.id, state=state, survivor=r.survivor, victims=r.victims,
                attempts=r.attempts, last_attempt_at=r.last_attempt_at, mode=r.mode,
                released=r.released and state is not IncidentState.WATCHING,
                refenced=r.refenced,
            ),
            # A restart must not shortcut confirmation: streaks start again.
            split_streak=0,
        )
    return History(clusters=tuple(hists.items()), isolated_incident=isolated), tuple(changes), \
        warnings
