"""The incident state machine: its table, and that the policy only ever walks it."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from arbiter.model import IncidentMemory, IncidentState
from arbiter.policy import incident_fsm
from arbiter.policy.effects import ChangeState, RecordDecision
from arbiter.policy.incident_fsm import TRANSITIONS, IllegalTransition
from tests.unit.builders import Driver, make_config
from tests.unit.test_invariants import scenario

S = IncidentState


@pytest.mark.parametrize(("src", "dst"), [
    (S.OPEN, S.FENCING), (S.OPEN, S.DECIDED), (S.OPEN, S.RESOLVED), (S.FENCING, S.FENCED),
    (S.FENCING, S.FENCE_FAILED), (S.FENCE_FAILED, S.FENCING), (S.FENCED, S.RESOLVED),
    (S.FENCED, S.HELD), (S.HELD, S.WATCHING), (S.HELD, S.RESOLVED), (S.WATCHING, S.FENCING),
    (S.WATCHING, S.RESOLVED), (S.HELD, S.FENCING),
])
def test_legal(src: IncidentState, dst: IncidentState) -> None:
    assert incident_fsm.legal(src, dst)
    assert incident_fsm.advance(IncidentMemory(1, src), dst).state is dst


@pytest.mark.parametrize(("src", "dst"), [
    (S.RESOLVED, S.OPEN), (S.RESOLVED, S.FENCING), (S.FENCED, S.OPEN),
    (S.FENCING, S.RESOLVED), (S.DECIDED, S.FENCING), (S.OPEN, S.FENCED),
    (S.OPEN, S.HELD), (S.WATCHING, S.HELD), (S.FENCING, S.WATCHING), (S.DECIDED, S.HELD),
])
def test_illegal_names_both_states_and_what_is_allowed(src: IncidentState,
                                                        dst: IncidentState) -> None:
    with pytest.raises(IllegalTransition, match=f"{src.value} -> {dst.value}"):
        incident_fsm.advance(IncidentMemory(7, src), dst)
    with pytest.raises(IllegalTransition, match="#7"):
        ChangeState(7, src, dst, "x")


def test_every_state_has_a_row_and_resolved_is_final() -> None:
    assert set(TRANSITIONS) == set(IncidentState)
    assert TRANSITIONS[S.RESOLVED] == {}
    assert all(reason for row in TRANSITIONS.values() for reason in row.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_every_transition_decide_produces_is_legal(sc) -> None:  # type: ignore[no-untyped-def]
    """Random rounds, fence results and dry runs: no effect the policy emits is refused
    (they are checked when built), and the memory's incident only moves along the table."""
    nodes, vips, confirm, dry, rounds = sc
    d = Driver(make_config(nodes, vips, confirm_rounds=confirm, dry_run=dry,
                           fence_retry_after=1.0))
    in_flight = False
    for obs, sees, feedback, held in rounds:
        if in_flight and feedback is not None:
            d.finish_fence(ok=feedback, held=held if feedback else ())
            in_flight = False
        before = d.history.cluster("web").incident
        ca = d.web(d.round(*obs, sees_gateway=sees))
        for e in ca.effects:
            if isinstance(e, ChangeState | RecordDecision):
                assert incident_fsm.legal(e.src, e.dst)
        after = d.history.cluster("web").incident
        if before is not None and after is not None and after.id == before.id \
                and after.state is not before.state:
            assert incident_fsm.legal(before.state, after.state), (before, after)
        in_flight = in_flight or (ca.fence is not None and not ca.fence.dry_run)
