"""A release that never re-creates a split brain (issue 11), on the pure policy.

After a fence, the incident is ``held`` while a victim is held; an automatic release
moves it to ``watching``; a claim of the VIP by the released victim while the
survivor holds it is re-fenced at once, in the same incident, and that victim is
then held for an operator. Table tests, no I/O.
"""

from __future__ import annotations

from datetime import timedelta

from arbiter.model import IncidentState, Verdict
from arbiter.policy import memory
from arbiter.policy.effects import ChangeState, RecordDecision, ReleaseHold
from tests.unit.builders import VIP1, Driver, effects_of, make_config, node

S = IncidentState
HEALTHY = (node("lb1", (VIP1,)), node("lb2"))
CUT = (node("lb1", (VIP1,)), node("lb2", (VIP1,)))


def healed() -> tuple:
    """lb2 fenced (keepalived stopped), reaching lb1 and its gateway again."""
    return (node("lb1", (VIP1,), peers=(("10.0.0.12", True),)),
            node("lb2", ka=False, peers=(("10.0.0.11", True),)))


def fenced_driver(**kw: object) -> Driver:
    d = Driver(make_config(release_rounds=2, resolve_rounds=2, **kw))
    d.round(*HEALTHY)
    d.round(*CUT)
    assert d.web(d.round(*CUT)).fence is not None
    d.finish_fence(ok=True, held=("lb2",))
    return d


def states(ca) -> list[tuple[S, S]]:  # type: ignore[no-untyped-def]
    return [(e.src, e.dst) for e in effects_of(ca, ChangeState)]


def incident(d: Driver):  # type: ignore[no-untyped-def]
    return d.history.cluster("web").incident


def test_held_then_watching_then_refenced_in_the_same_incident() -> None:
    d = fenced_driver()
    first = incident(d).id
    log = [states(d.web(d.round(*healed()))) for _ in range(2)]
    # round 2: the split is gone for resolve_rounds (held) and lb2 is released (watching)
    assert log == [[], [(S.FENCED, S.HELD), (S.HELD, S.WATCHING)]]
    ca = d.web(d.log[-1])
    assert [r.hold.node for r in effects_of(ca, ReleaseHold)] == ["lb2"]
    assert ca.node("lb2").verdict is Verdict.ALLOW  # reactive: the release is real
    assert incident(d).state is S.WATCHING

    # lb2's keepalived comes back and claims the VIP: the cut is still there
    t = d.now + timedelta(seconds=5)
    one = d.web(d.round(*CUT, at=t))
    assert one.fence is None and "confirming once more" in one.reason
    # the next observation, 50 ms later (a push-woken round): re-fenced at once, no span
    two = d.web(d.round(*CUT, at=t + timedelta(milliseconds=50)))
    assert two.fence is not None and two.fence.survivor == "lb1"
    assert [v.node for v in two.fence.victims] == ["lb2"]
    assert "re-claim" in two.fence.reason
    (dec,) = effects_of(two, RecordDecision)
    assert (dec.src, dec.dst, dec.incident) == (S.WATCHING, S.FENCING, first)
    assert incident(d).id == first and incident(d).refenced

    # the victim is then held for an operator: healing never releases it again
    d.finish_fence(ok=True, held=("lb2",))
    assert d.history.cluster("web").hold_of("lb2").operator_only
    for _ in range(6):
        ca = d.web(d.round(*healed()))
        assert effects_of(ca, ReleaseHold) == []
    assert incident(d).state is S.HELD
    assert "waiting for an operator" in " ".join(ca.notes)


def test_watching_resolves_after_the_cooldown_without_a_claim() -> None:
    d = fenced_driver(release_cooldown=30)
    for _ in range(2):
        d.round(*healed())
    assert incident(d).state is S.WATCHING
    quiet = (node("lb1", (VIP1,)), node("lb2"))  # lb2 back as a quiet BACKUP
    d.round(*quiet, at=d.now + timedelta(seconds=10))
    assert incident(d).state is S.WATCHING
    ca = d.web(d.round(*quiet, at=d.now + timedelta(seconds=25)))
    assert states(ca) == [(S.WATCHING, S.RESOLVED)] and incident(d) is None


def test_operator_release_of_a_held_incident_resolves_it() -> None:
    d = fenced_driver(auto_release=False)
    for _ in range(3):
        d.round(*healed())
    h = d.history.cluster("web")
    assert h.incident.state is S.HELD
    h = memory.release(h, "lb2", h.incident.id)
    assert h.incident is None and h.held == ()


def test_a_held_victim_that_claims_again_is_refenced_without_a_new_incident() -> None:
    d = fenced_driver(auto_release=False)
    for _ in range(3):
        d.round(*healed())
    first = incident(d).id
    d.round(*CUT)  # someone started lb2's keepalived by hand, and the cut is there
    ca = d.web(d.log[-1])
    assert ca.fence is None
    ca = d.web(d.round(*CUT))
    assert ca.fence is not None and incident(d).id == first
    assert states(ca) == []  # no new incident, no resolution: the same one fences


def test_a_split_between_others_is_not_taken_for_a_reclaim() -> None:
    """lb2 and lb3 hold the VIP while lb1, the survivor, does not: not this incident's
    split, and no rule may pick a survivor for it (a new claimant needs the survivor
    holding the VIP; issue 28 covers that case)."""
    from tests.unit.builders import make_config as mk

    d = Driver(mk([("lb1", 100), ("lb2", 90), ("lb3", 80)], release_rounds=2,
                  resolve_rounds=2, auto_release=False))
    three = (node("lb1", (VIP1,)), node("lb2"), node("lb3"))
    d.round(*three)
    cut = (node("lb1", (VIP1,)), node("lb2", (VIP1,)), node("lb3"))
    d.round(*cut)
    assert d.web(d.round(*cut)).fence is not None
    d.finish_fence(ok=True, held=("lb2",))
    for _ in range(3):
        d.round(node("lb1", (VIP1,)), node("lb2", ka=False), node("lb3"))
    assert incident(d).state is S.HELD
    other = (node("lb1"), node("lb2", (VIP1,)), node("lb3", (VIP1,)))
    for _ in range(3):
        ca = d.web(d.round(*other))
        assert ca.fence is None
    assert "operator attention needed" in ca.reason
