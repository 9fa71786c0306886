"""The one-word cluster state of /status (issue 11): one row per rule, no I/O."""

from __future__ import annotations

import pytest

from arbiter.policy.cluster_state import cluster_state
from tests.unit.builders import VIP1, Driver, make_config, node

HEALTHY = (node("lb1", (VIP1,)), node("lb2"))
CUT = (node("lb1", (VIP1,)), node("lb2", (VIP1,)))
FENCED = (node("lb1", (VIP1,)), node("lb2", ka=False))


def word(d: Driver, *obs, sees=True, gate=(), db=None):  # type: ignore[no-untyped-def]
    a = d.round(*obs, sees_gateway=sees)
    ca = d.web(a)
    return cluster_state(d.config, ca.next_history, ca, a.abstain_reason, list(gate), db)


def fenced(**kw):  # type: ignore[no-untyped-def]
    d = Driver(make_config(**kw))
    d.round(*HEALTHY)
    d.round(*CUT)
    d.round(*CUT)
    return d


def test_each_rule() -> None:
    d = Driver(make_config())
    assert word(d, *HEALTHY)[0] == "ok"
    assert word(d, *HEALTHY, sees=False)[0] == "abstaining"
    assert word(Driver(make_config()), *CUT)[0] == "split"
    assert word(Driver(make_config()), node("lb1", (VIP1,)), node("lb2", icmp=False,
                                                                   ssh=False))[0] == "degraded"
    state, why = word(Driver(make_config()), *HEALTHY, gate=["web/lb2: gate never asked"])
    assert state == "degraded" and "never asked" in why
    assert word(Driver(make_config()), *HEALTHY, db="timeout")[0] == "degraded"

    d = fenced()
    assert d.history.cluster("web").incident.state.value == "fencing"
    assert word(d, *CUT)[0] == "fencing"
    d.finish_fence(ok=True, held=("lb2",))
    state, why = word(d, *FENCED)
    assert state == "held" and "lb2" in why

    d = fenced(auto_release=False)
    d.finish_fence(ok=True, held=("lb2",))
    state, why = word(d, *FENCED)
    assert state == "needs-operator" and "auto_release is off" in why

    d = fenced(max_fence_attempts=1)
    d.finish_fence(ok=False)
    state, why = word(d, *CUT)
    assert state == "needs-operator" and "gave up" in why


@pytest.mark.parametrize(("states", "dead", "word", "needs"), [
    ([], 0, "ok", False),
    ([("web", "ok", "fine"), ("api", "ok", "fine")], 0, "ok", False),
    ([("web", "ok", "fine")], 2, "ok", True),  # nobody would hear of the next incident
    ([("web", "split", "x"), ("api", "degraded", "y")], 0, "split", True),
    ([("web", "fencing", "x")], 0, "fencing", False),
    ([("web", "held", "x"), ("api", "needs-operator", "y")], 0, "needs-operator", True),
    ([("web", "abstaining", "x"), ("api", "split", "y")], 0, "abstaining", True),
])
def test_overall_is_the_worst_cluster_and_says_why(states, dead, word, needs) -> None:  # type: ignore[no-untyped-def]
    from arbiter.policy.cluster_state import ADVICE, overall

    o = overall(states, dead)
    assert (o["state"], o["needs_operator"]) == (word, needs)
    assert o["advice"] == ADVICE[word]
    assert len(o["reasons"]) == sum(w != "ok" for _, w, _ in states) + (1 if dead else 0)
