"""The scheduler and TILT, driven by fake monotonic and wall clocks. No sleeping."""

from __future__ import annotations

from datetime import timedelta

from arbiter.model import ClusterHistory, History, IncidentMemory, IncidentState
from arbiter.policy.schedule import Scheduler, confirm_due
from tests.unit.builders import T0


def sched() -> Scheduler:
    return Scheduler(interval=1.0, min_gap=0.05, tilt_after=3.0, tilt_period=10.0)


def test_on_time_rounds_never_tilt() -> None:
    s = sched()
    for i in range(20):
        assert s.round_starts(float(i), 1000.0 + i, T0 + timedelta(seconds=i)) is None
        assert s.round_ends(float(i), i + 0.2) is False
    assert s.overruns == 0 and s.next_at == 20.0


def test_a_stalled_loop_enters_tilt_for_its_period() -> None:
    s = sched()
    s.round_starts(0.0, 1000.0, T0)
    s.round_ends(0.0, 0.1)  # next round due at 1.0; the process is stopped until 5.5
    reason = s.round_starts(5.5, 1005.5, T0 + timedelta(seconds=5.5))
    assert reason is not None and "4.5s late" in reason
    assert s.tilt.active(T0 + timedelta(seconds=15)) is not None  # 5.5 + 10 > 15
    assert s.tilt.active(T0 + timedelta(seconds=16)) is None


def test_a_wall_clock_jump_enters_tilt() -> None:
    s = sched()
    s.round_starts(0.0, 1000.0, T0)
    s.round_ends(0.0, 0.1)
    reason = s.round_starts(1.0, 1061.0, T0)  # one monotonic second, 61 wall seconds
    assert reason is not None and "jumped by 60.0s" in reason


def test_an_overrun_starts_the_next_round_at_once() -> None:
    s = sched()
    s.round_starts(0.0, 0.0, T0)
    assert s.round_ends(0.0, 2.5) is True
    assert s.sleep_for(2.5, None) == (0.0, False) and s.overruns == 1


def test_confirmation_deadline_comes_before_the_interval() -> None:
    s = sched()
    s.round_starts(0.0, 0.0, T0)
    s.round_ends(0.0, 0.1)
    assert s.sleep_for(0.1, 0.4) == (0.4, True)  # deadline at 0.5 < next round at 1.0
    wait, first = s.sleep_for(0.1, 5.0)
    assert (round(wait, 6), first) == (0.9, False)
    s.deadline_reached(0.5)
    assert s.next_at == 0.5


def test_an_early_wake_keeps_the_minimum_gap() -> None:
    s = sched()
    s.round_starts(0.0, 0.0, T0)
    s.round_ends(0.0, 0.01)
    assert round(s.woke_early(0.0, 0.02), 6) == 0.03  # 50 ms after the round's start
    assert s.woke_early(0.0, 0.2) == 0.0


def test_confirm_due_is_the_earliest_open_split_plus_confirm_after() -> None:
    open_ = IncidentMemory(1, IncidentState.OPEN)
    h = History(clusters=(
        ("a", ClusterHistory(split_since=T0 + timedelta(seconds=3), incident=open_)),
        ("b", ClusterHistory(split_since=T0 + timedelta(seconds=1), incident=open_)),
        ("c", ClusterHistory(split_since=T0, incident=IncidentMemory(2, IncidentState.FENCING))),
    ))
    assert confirm_due(h, 0.5) == T0 + timedelta(seconds=1.5)
    assert confirm_due(h, None) is None
    assert confirm_due(History(), 0.5) is None


def test_a_deadline_served_by_a_round_is_not_due_again() -> None:
    """A split whose fence a guard refuses stays OPEN with its deadline in the past:
    once a round ran at or after it, the loop must go back to the schedule, not spin."""
    open_ = IncidentMemory(1, IncidentState.OPEN)
    h = History(clusters=(("a", ClusterHistory(split_since=T0, incident=open_)),))
    assert confirm_due(h, 0.5, served=T0) == T0 + timedelta(seconds=0.5)
    assert confirm_due(h, 0.5, served=T0 + timedelta(seconds=0.5)) is None
    # a victim's re-claim of a held incident: due at once, once
    held = IncidentMemory(1, IncidentState.HELD)
    h = History(clusters=(("a", ClusterHistory(split_since=T0, incident=held)),))
    assert confirm_due(h, 0.5, served=T0 - timedelta(seconds=0.01)) == T0
    assert confirm_due(h, 0.5, served=T0 + timedelta(seconds=0.06)) is None
