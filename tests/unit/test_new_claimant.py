"""A node that claims a VIP after its split was decided (issue 28), on the pure policy.

Three directors under a VRRP cut: the arbiter fences lb2 (lb1 survives) before lb3's
master-down ends; lb3 then claims the VIP. It was not part of the split when it was
decided, so it is a new claimant, not a failed fence: confirmed on its own
observations, then fenced in the same incident and added to its victims. The
survivor never changes within an incident. Table tests, no I/O.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from arbiter.model import FencePlan, IncidentState
from arbiter.policy.effects import OpenIncident, RecordDecision
from tests.unit.builders import VIP1, Driver, effects_of, make_config, node

S = IncidentState
THREE = [("lb1", 150), ("lb2", 100), ("lb3", 50)]
QUIET = (node("lb1", (VIP1,)), node("lb2"), node("lb3"))
FIRST = (node("lb1", (VIP1,)), node("lb2", (VIP1,)), node("lb3"))
FENCED = (node("lb1", (VIP1,)), node("lb2", ka=False), node("lb3"))
LATE = (node("lb1", (VIP1,)), node("lb2", ka=False), node("lb3", (VIP1,)))
BOTH = (node("lb1", (VIP1,)), node("lb2", (VIP1,)), node("lb3", (VIP1,)))


def fenced_lb2(**kw: object) -> Driver:
    d = Driver(make_config(THREE, **{"release_rounds": 2, "resolve_rounds": 3, **kw}))
    d.round(*QUIET)
    for _ in range(5):  # confirm_rounds, or confirm_after's span at 1 s a round
        if (f := d.web(d.round(*FIRST)).fence) is not None:
            break
    assert f is not None and f.survivor == "lb1" and [v.node for v in f.victims] == ["lb2"]
    d.finish_fence(ok=True, held=("lb2",))
    return d


def incident(d: Driver):  # type: ignore[no-untyped-def]
    return d.history.cluster("web").incident


def fence_of(d: Driver, *obs) -> tuple[FencePlan | None, str]:  # type: ignore[no-untyped-def]
    ca = d.web(d.round(*obs))
    return ca.fence, ca.reason


@pytest.mark.parametrize("state", [S.FENCED, S.HELD, S.WATCHING])
def test_a_late_claimant_is_confirmed_then_fenced_in_the_same_incident(state: S) -> None:
    d = fenced_lb2()
    for _ in range({S.FENCED: 0, S.HELD: 3, S.WATCHING: 3}[state]):
        d.round(*FENCED if state is S.HELD else (
            node("lb1", (VIP1,), peers=(("10.0.0.12", True),)),
            node("lb2", ka=False, peers=(("10.0.0.11", True),)), node("lb3")))
    if state is S.HELD:
        d = fenced_lb2(auto_release=False)
        for _ in range(3):
            d.round(*FENCED)
    assert incident(d).state is state
    first = incident(d).id
    # one observation is never enough: lb3's own count starts at its claim
    f, why = fence_of(d, *LATE)
    assert f is None and "lb3 claims the VIP too: confirming" in why, why
    f, why = fence_of(d, *LATE)
    assert f is not None, why
    assert f.survivor == "lb1" and [v.node for v in f.victims] == ["lb3"]
    assert f"lb3 claimed {VIP1} while lb1, the survivor of incident #{first}, holds it" \
        in f.reason
    (dec,) = effects_of(d.web(d.log[-1]), RecordDecision)
    assert (dec.incident, dec.src, dec.dst) == (first, state, S.FENCING)
    assert effects_of(d.web(d.log[-1]), OpenIncident) == []  # one fault, one incident
    inc = incident(d)
    assert inc.id == first and inc.survivor == "lb1" and set(inc.victims) == {"lb2", "lb3"}
    assert not inc.refenced  # a first fence of lb3, not a re-fence: it may heal
    d.finish_fence(ok=True, held=("lb3",))
    assert {h.node for h in d.history.cluster("web").held} >= {"lb3"}
    assert incident(d).state is S.FENCED


def test_the_span_applies_to_a_late_claimant_without_keepalived_view() -> None:
    d = fenced_lb2(confirm_after=2.0)
    t = d.now
    d.round(*LATE, at=t)
    f, why = fence_of(d, *LATE)  # 1 s later: two observations, but not 2 s
    assert f is None and "of 2s" in why, why
    d.round(*LATE, at=t + timedelta(seconds=2))
    assert d.web(d.log[-1]).fence is not None


def test_a_victim_reclaiming_while_a_new_node_claims_fences_both() -> None:
    d = fenced_lb2(auto_release=False)
    for _ in range(3):
        d.round(*FENCED)
    assert incident(d).state is S.HELD
    f, why = fence_of(d, *BOTH)
    assert f is None and "confirming" in why
    f, why = fence_of(d, *BOTH)
    assert f is not None, why
    assert f.survivor == "lb1" and sorted(v.node for v in f.victims) == ["lb2", "lb3"]
    assert "re-claim: lb2" in f.reason and "lb3 claimed" in f.reason
    inc = incident(d)
    assert inc.refenced and set(inc.victims) == {"lb2", "lb3"}


def test_fenced_victim_back_with_a_new_claimant_fences_only_the_new_one() -> None:
    """Before the incident is over a victim that holds the VIP again is not fenced
    twice (its fence did not keep it down: an operator's matter); lb3 is new."""
    d = fenced_lb2()
    for _ in range(2):
        f, why = fence_of(d, *BOTH)
    assert f is not None, why
    assert [v.node for v in f.victims] == ["lb3"]


def test_a_victim_alone_back_in_a_fenced_incident_is_not_fenced_twice() -> None:
    d = fenced_lb2()
    for _ in range(4):
        f, why = fence_of(d, *FIRST)
        assert f is None
    assert "not fencing twice" in why


def test_a_claimant_seen_while_the_fence_was_in_flight_counts_those_observations() -> None:
    d = Driver(make_config(THREE, resolve_rounds=3))
    d.round(*QUIET)
    d.round(*FIRST)
    assert d.web(d.round(*FIRST)).fence is not None
    f, why = fence_of(d, *BOTH)  # lb3 claims while lb2's fence runs
    assert f is None and "in flight" in why
    d.finish_fence(ok=True, held=("lb2",))
    f, why = fence_of(d, *LATE)  # its second observation: confirmed
    assert f is not None and [v.node for v in f.victims] == ["lb3"], why


def test_the_survivor_never_changes_and_one_node_is_always_left() -> None:
    """A late claimant with a better key (a higher priority) is still the victim: the
    survivor was decided; and in a pair nobody new can claim."""
    d = Driver(make_config([("lb1", 50), ("lb2", 100), ("lb3", 250)], resolve_rounds=3))
    quiet = (node("lb1", (VIP1,)), node("lb2"), node("lb3"))
    first = (node("lb1", (VIP1,)), node("lb2", (VIP1,)), node("lb3"))
    d.round(*quiet)
    d.round(*first)
    f = d.web(d.round(*first)).fence
    assert f is not None
    survivor = f.survivor
    d.finish_fence(ok=True, held=tuple(v.node for v in f.victims))
    late = (node("lb1", (VIP1,)), node("lb2", (VIP1,), ka=False), node("lb3", (VIP1,)))
    for _ in range(2):
        f2, why = fence_of(d, *late)
    assert f2 is not None and f2.survivor == survivor, why
    assert survivor not in {v.node for v in f2.victims}
