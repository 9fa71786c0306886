"""keepalived runs only when it answers (issue 28), on the pure policy.

A frozen master keeps its VIP and its pid, but sends nothing: the backup claims at
its master-down, and the survivor rule must keep the backup (whose keepalived works)
and fence the frozen one, never the other way round. Table tests for the survivor
rule with a frozen process, a hung view, a stale view and no view; the guard that
never fences the only working keepalived; and a frozen victim's hold. No I/O.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from arbiter.model import FenceMethod, KeepalivedView, NodeObservation
from arbiter.policy.liveness import Keepalived, keepalived_state, runs
from tests.unit.builders import T0, VIP1, Driver, make_config, node

ANSWERED = KeepalivedView(at=T0 - timedelta(seconds=0.2))
HUNG = KeepalivedView(at=T0 - timedelta(seconds=3), hung=True,
                      error="no dump within 0.4 s of the signal")
STALE = KeepalivedView(at=T0 - timedelta(seconds=30), error="the keepalived watch ended; "
                       "reconnecting")
NEVER = KeepalivedView(error="no dump within 0.4 s of the signal")  # never answered


def lb1(**kw: object) -> NodeObservation:
    return replace(node("lb1", (VIP1,)), **kw)


@pytest.mark.parametrize(("obs", "state"), [
    (lb1(), Keepalived.ANSWERS),
    (lb1(keepalived=ANSWERED), Keepalived.ANSWERS),
    (lb1(keepalived_frozen=True, keepalived_running=False), Keepalived.HUNG),
    (lb1(keepalived_frozen=True, keepalived=ANSWERED), Keepalived.HUNG),
    (lb1(keepalived=HUNG), Keepalived.HUNG),
    # a stale or broken stream says nothing of keepalived: the process check decides
    (lb1(keepalived=STALE), Keepalived.ANSWERS),
    (lb1(keepalived=NEVER), Keepalived.ANSWERS),
    (lb1(keepalived=replace(HUNG, supported=False)), Keepalived.ANSWERS),
    (lb1(keepalived_running=False), Keepalived.STOPPED),
    (node("lb1", ssh=False), Keepalived.UNKNOWN),
])
def test_keepalived_state(obs: NodeObservation, state: Keepalived) -> None:
    got, why = keepalived_state(obs)
    assert got is state and why
    assert runs(obs) is (None if state is Keepalived.UNKNOWN else state is Keepalived.ANSWERS)


def decide_split(lb1_obs: NodeObservation):  # type: ignore[no-untyped-def]
    """lb1 (priority 100, the incumbent) and lb2 both hold the VIP: who survives."""
    d = Driver(make_config())
    d.round(node("lb1", (VIP1,)), node("lb2"))
    cut = (lb1_obs, node("lb2", (VIP1,)))
    d.round(*cut)
    f = d.web(d.round(*cut)).fence
    assert f is not None
    return f


@pytest.mark.parametrize(("lb1_obs", "survivor", "rule"), [
    # frozen (SIGSTOP): pidof finds it, /proc says T
    (lb1(keepalived_frozen=True), "lb2", "keepalived running"),
    # hung: the view got dumps before, and none now
    (lb1(keepalived=HUNG), "lb2", "keepalived running"),
    # stale view, working process: the incumbent keeps it, as before issue 28
    (lb1(keepalived=STALE), "lb1", "incumbent"),
    # no view at all: the process check
    (lb1(keepalived=None), "lb1", "incumbent"),
])
def test_the_survivor_rule_reads_whether_keepalived_answers(
        lb1_obs: NodeObservation, survivor: str, rule: str) -> None:
    f = decide_split(lb1_obs)
    assert f.survivor == survivor, f.reason
    assert f"by rule: {rule}" in f.reason
    if survivor == "lb2":
        (v,) = f.victims
        # a frozen daemon is stopped too (the TERM stays pending) and escalated to
        # ip addr del; never only the address, which a resumed daemon would put back
        assert v.node == "lb1" and v.method is FenceMethod.STOP_KEEPALIVED
        assert "frozen" in f.reason or "hung" in f.reason


def test_a_frozen_backup_holding_nothing_is_never_fenced() -> None:
    d = Driver(make_config())
    for _ in range(6):
        ca = d.web(d.round(node("lb1", (VIP1,)), replace(node("lb2"), keepalived_frozen=True)))
        assert ca.fence is None and ca.split_vips == ()


def test_the_only_working_keepalived_is_never_fenced() -> None:
    """lb1 survived incident #1 and froze since; lb2 is held (stopped by the fence);
    lb3 claims the VIP: it is the only director whose keepalived works, so the
    late-claimant rule must not fence it."""
    d = Driver(make_config([("lb1", 150), ("lb2", 100), ("lb3", 50)], resolve_rounds=3))
    d.round(node("lb1", (VIP1,)), node("lb2"), node("lb3"))
    cut = (node("lb1", (VIP1,)), node("lb2", (VIP1,)), node("lb3"))
    d.round(*cut)
    assert d.web(d.round(*cut)).fence is not None
    d.finish_fence(ok=True, held=("lb2",))
    late = (lb1(keepalived_frozen=True), node("lb2", ka=False), node("lb3", (VIP1,)))
    for _ in range(4):
        ca = d.web(d.round(*late))
        assert ca.fence is None
    assert "refusing: lb3 would be fenced but its keepalived is the only one" in ca.reason


def test_a_frozen_victim_is_not_released_when_its_network_heals() -> None:
    d = Driver(make_config(release_rounds=2, resolve_rounds=2))
    d.round(node("lb1", (VIP1,)), node("lb2"))
    cut = (lb1(keepalived_frozen=True), node("lb2", (VIP1,)))
    d.round(*cut)
    f = d.web(d.round(*cut)).fence
    assert f is not None and f.survivor == "lb2"
    d.finish_fence(ok=True, held=("lb1",))
    after = (replace(node("lb1", peers=(("10.0.0.12", True),)), keepalived_frozen=True),
             node("lb2", (VIP1,), peers=(("10.0.0.11", True),)))
    for _ in range(5):
        d.round(*after)
    assert d.history.cluster("web").hold_of("lb1") is not None
    # SIGCONT: the pending stop ends it; now stopped, it heals and is released
    gone = (node("lb1", ka=False, peers=(("10.0.0.12", True),)), after[1])
    for _ in range(3):
        d.round(*gone)
    assert d.history.cluster("web").hold_of("lb1") is None
