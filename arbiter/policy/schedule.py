"""When rounds run, and when the loop's sense of time cannot be trusted (TILT).

Pure bookkeeping: every method takes the times it needs (monotonic seconds,
wall-clock seconds, a UTC datetime), so tests drive it with fake clocks and the
service passes the real ones. It never sleeps, and it logs nothing: it returns
what happened (TILT entered, a round overran), and the loop says so.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from arbiter.model import History, IncidentState
from arbiter.policy.incident_fsm import AFTER_FENCE, RECLAIMABLE


class Tilt:
    """Fencing suspended for ``period`` seconds after the loop was stalled or the
    wall clock jumped: 'N rounds' and 'confirm_after' meant nothing meanwhile."""

    def __init__(self, period: float):
        self.period = period
        self.until: datetime | None = None
        self.reason: str | None = None

    def enter(self, reason: str, now: datetime) -> None:
        self.until = now + timedelta(seconds=self.period)
        self.reason = reason

    def active(self, now: datetime) -> str | None:
        if self.until is not None and now < self.until:
            return f"{self.reason}; fencing suspended until {self.until.isoformat()}"
        return None


class Scheduler:
    def __init__(self, interval: float, min_gap: float, tilt_after: float, tilt_period: float):
        self.interval = interval
        self.min_gap = min_gap
        self.tilt_after = tilt_after
        self.tilt = Tilt(tilt_period)
        self.next_at: float | None = None  # monotonic time of the next scheduled round
        self.overruns = 0
        self._last: tuple[float, float] | None = None  # (monotonic, wall) at the last start

    def reconfigure(self, interval: float, min_gap: float, tilt_after: float,
                    tilt_period: float) -> None:
        """A reload: new timings from the next round on (the schedule keeps its phase)."""
        self.interval, self.min_gap, self.tilt_after = interval, min_gap, tilt_after
        self.tilt.period = tilt_period

    def round_starts(self, mono: float, wall: float, now: datetime) -> str | None:
        """A round starts now. Enter TILT if it starts late by more than tilt_after
        (a stalled loop: SIGSTOP, VM pause) or the wall clock moved differently from
        the monotonic one. Returns why TILT was entered just now, if it was."""
        if self.next_at is None:
            self.next_at = mono
        lateness = mono - self.next_at
        drift = 0.0
        if self._last is not None:
            drift = abs((wall - self._last[1]) - (mono - self._last[0]))
        entered = None
        if lateness > self.tilt_after:
            entered = f"round started {lateness:.1f}s late"
        elif drift > self.tilt_after:
            entered = f"wall clock jumped by {drift:.1f}s"
        if entered is not None:
            self.tilt.enter(entered, now)
        self._last = (mono, wall)
        return entered

    def round_ends(self, started: float, ended: float) -> bool:
        """Schedule the next round; True if this one overran the interval."""
        assert self.next_at is not None
        self.next_at += self.interval
        if ended > self.next_at:
            self.overruns += 1
            self.next_at = ended
            return True
        return False

    def sleep_for(self, mono: float, confirm_in: float | None) -> tuple[float, bool]:
        """How long to wait for the next round, and whether a confirmation deadline
        (``confirm_in`` seconds from now) comes before the scheduled one."""
        assert self.next_at is not None
        target, deadline_first = self.next_at, False
        if confirm_in is not None and mono + confirm_in < self.next_at:
            target, deadline_first = mono + confirm_in, True
        return max(0.0, target - mono), deadline_first

    def woke_early(self, started: float, mono: float) -> float:
        """Woken before the schedule (push event, fence result, intent): the extra wait
        that keeps min_round_gap, so an event storm is not a busy loop. The schedule
        restarts from the early round."""
        gap = max(0.0, started + self.min_gap - mono)
        self.next_at = mono + gap
        return gap

    def deadline_reached(self, mono: float) -> None:
        self.next_at = mono


def confirm_due(history: History, confirm_after: float | None,
                served: datetime | None = None) -> datetime | None:
    """When a split brain being confirmed becomes old enough (``Config.confirm_span``):
    run a round then, not at the next interval. A re-claim (issue 11) is due at once.
    A deadline at or before ``served`` (the start of the round just run) was met by
    that round: a split that stays unfenced (a guard refused) must not make the loop
    spin."""
    dues = []
    for _, h in history.clusters:
        if h.split_since is None or h.incident is None:
            continue
        if h.incident.state is IncidentState.OPEN and h.view_split:
            # keepalived's view confirms it: the second observation at once
            dues.append(h.split_since)
        elif h.incident.state is IncidentState.OPEN and confirm_after:
            dues.append(h.split_since + timedelta(seconds=confirm_after))
        elif h.incident.state in AFTER_FENCE:
            if h.incident.state in RECLAIMABLE:
                # a victim's re-claim of a confirmed split: the second observation at once
                dues.append(h.split_since)
            # a new claimant (issue 28): due as a split of its own is confirmed
            for node, _, since in h.claims:
                if node == h.incident.survivor or node in h.incident.victims:
                    continue
                if h.view_split:
                    dues.append(since)
                elif confirm_after:
                    dues.append(since + timedelta(seconds=confirm_after))
    dues = [d for d in dues if served is None or d > served]
    return min(dues) if dues else None
