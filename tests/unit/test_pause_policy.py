"""A maintenance pause, pure: it switches fencing off in its scope and nothing else,
never outlives its expiry, and a split that is still there when it ends is fenced in
the first round after it (its confirmation kept)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from arbiter.model import Pause, Verdict
from arbiter.policy.effects import OpenIncident, RecordDecision
from tests.unit.builders import T0, VIP1, Driver, effects_of, make_config, node

SPLIT = (node("lb1", (VIP1,)), node("lb2", (VIP1,)))


def pause(scope: str | None = "web", minutes: float = 10) -> Pause:
    return Pause(1, scope, "firewall work", "ops", T0, T0 + timedelta(minutes=minutes))


def test_a_paused_cluster_records_the_split_but_fences_nothing() -> None:
    d = Driver(make_config())
    a = d.round(*SPLIT, pauses=(pause(),))
    (opened,) = effects_of(d.web(a), OpenIncident)
    assert "detected during a maintenance pause" in opened.reason and "ops" in opened.reason
    for _ in range(5):
        ca = d.web(d.round(*SPLIT, pauses=(pause(),)))
        assert effects_of(ca, RecordDecision) == []
        assert "not fencing until it ends" in ca.reason


def test_when_the_pause_ends_the_split_is_fenced_at_once() -> None:
    d = Driver(make_config())
    p = pause(minutes=0.05)  # 3 s
    for _ in range(2):
        d.round(*SPLIT, pauses=(p,))
    ca = d.web(d.round(*SPLIT, pauses=(p,), at=p.until))  # the first round after it
    (decision,) = effects_of(ca, RecordDecision)
    assert decision.plan.victims[0].node == "lb2"


def test_a_pause_of_another_cluster_or_none_changes_nothing() -> None:
    for pauses in ((pause("api"),), ()):
        d = Driver(make_config())
        decided = []
        for _ in range(3):
            decided += effects_of(d.web(d.round(*SPLIT, pauses=pauses)), RecordDecision)
        assert len(decided) == 1


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([None, "web"]), st.floats(0.5, 30))
def test_verdicts_keep_their_rule_during_a_pause(scope, minutes) -> None:  # type: ignore[no-untyped-def]
    """Prevention stays on: exclusive verdicts answer the same with or without a pause
    (pausing them would make a split brain more likely, not less)."""
    cfg = make_config()
    web = cfg.clusters[0].model_copy(update={"verdict": "exclusive", "keepalived_view": False})
    cfg = cfg.model_copy(update={"clusters": [web]})
    healthy = (node("lb1", (VIP1,)), node("lb2"))
    with_pause = Driver(cfg).round(*healthy, pauses=(pause(scope, minutes),))
    without = Driver(cfg).round(*healthy)
    got = [(n.node, n.verdict) for n in with_pause.clusters[0].nodes]
    assert got == [(n.node, n.verdict) for n in without.clusters[0].nodes]
    assert dict(got)["lb2"] is Verdict.DENY
