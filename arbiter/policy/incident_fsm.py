"""The incident state machine: which state changes are legal, as data.

Every change of an incident's state goes through ``advance`` (in memory) or
``check`` (in the store), so an illegal transition is a loud bug at the place
that attempted it, never a silently corrupted incident. pg_auto_failover keeps
its transitions as a table in ``fsm.c`` for the same reason.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from arbiter.model import IncidentMemory, IncidentState

S = IncidentState

# state -> the states it may move to, each with why such a move happens
TRANSITIONS: dict[IncidentState, dict[IncidentState, str]] = {
    S.OPEN: {
        S.DECIDED: "dry run: the decision is recorded and nothing is done",
        S.FENCING: "split brain confirmed: decision committed, fence goes out",
        S.RESOLVED: "split brain gone before any fence (or the arbiter is no longer isolated)",
    },
    S.DECIDED: {
        S.RESOLVED: "split brain gone after a dry-run decision",
    },
    S.FENCING: {
        S.FENCED: "the victims were verified without the VIPs",
        S.FENCE_FAILED: "a step failed, the VIPs stayed, or the arbiter restarted mid-fence",
    },
    S.FENCED: {
        S.FENCING: "a node that was not part of the split claimed the VIP the survivor "
                   "holds: confirmed, and fenced in the same incident",
        S.HELD: "split brain gone for resolve_rounds; a victim stays held until released",
        S.WATCHING: "the victims were released automatically; a new claim is re-fenced",
        S.RESOLVED: "split brain gone and nobody held, or a new split after an operator's "
                    "release",
    },
    S.FENCE_FAILED: {
        S.FENCING: "retry within max_fence_attempts once fence_retry_after has passed",
        S.HELD: "split brain gone after a failed fence that left a victim held",
        S.RESOLVED: "split brain gone after a failed fence",
    },
    S.HELD: {
        S.FENCING: "a held victim claimed the VIP again while the survivor holds it "
                   "(re-fenced at once), or a new claimant joined the split (confirmed)",
        S.WATCHING: "every held victim was released automatically",
        S.RESOLVED: "every held victim was released by an operator",
    },
    S.WATCHING: {
        S.FENCING: "a victim released automatically claimed the VIP again while the "
                   "survivor holds it (re-fenced at once, and held for an operator), or a "
                   "new claimant joined the split (confirmed)",
        S.RESOLVED: "release_cooldown passed with no new claim, or an operator released it",
    },
    S.RESOLVED: {},
}


# After a fence, while a victim is held or was just released automatically: a split
# between the survivor and a victim is that victim's re-claim of a split this incident
# already confirmed (fenced again at once, in the same incident).
RECLAIMABLE = frozenset({S.HELD, S.WATCHING})
# After a fence: a node that claims a VIP the survivor holds joins this incident's split
# (a new claimant is confirmed on its own, then fenced in the same incident).
AFTER_FENCE = RECLAIMABLE | {S.FENCED}


class IllegalTransition(RuntimeError):
    """A bug: code tried a state change that TRANSITIONS does not list."""


def legal(src: IncidentState, dst: IncidentState) -> bool:
    return dst in TRANSITIONS[src]


def check(src: IncidentState, dst: IncidentState, incident: int | None = None) -> None:
    if not legal(src, dst):
        allowed = ", ".join(s.value for s in TRANSITIONS[src]) or "none (final)"
        raise IllegalTransition(
            f"incident {'#' + str(incident) if incident else '(new)'}: "
            f"{src.value} -> {dst.value} is not a legal transition (allowed: {allowed})"
        )


def advance(inc: IncidentMemory, dst: IncidentState, **changes: Any) -> IncidentMemory:
    """The incident in state ``dst`` (with other fields changed too), if that is legal."""
    check(inc.state, dst, inc.id)
    return replace(inc, state=dst, **changes)
