"""The memory fold and the restore: what survives a failed commit and a restart."""

from __future__ import annotations

from arbiter.model import FenceMode, IncidentKind, IncidentState
from arbiter.policy import memory
from arbiter.policy.effects import ChangeState
from arbiter.policy.memory import Committed
from arbiter.policy.rows import ClusterMemoryRow, IncidentRow
from tests.unit.builders import T0, VIP1, Driver, make_config, node, store_ids

healthy = (node("lb1", (VIP1,)), node("lb2"))
cut = (node("lb1", (VIP1,)), node("lb2", (VIP1,)))


def test_a_cluster_whose_commit_failed_keeps_its_old_memory() -> None:
    d = Driver(make_config())
    d.round(*healthy)
    before = d.history
    from arbiter.model import ClusterObservation, SelfCheck, Snapshot
    from arbiter.policy import decide
    from tests.unit.builders import GW

    snap = Snapshot(T0, SelfCheck(((GW, True),)), (ClusterObservation("web", cut),))
    a = decide.assess(d.config, snap, before, T0)
    assert a.cluster("web").next_history.split_streak == 1
    kept = memory.fold(before, a, Committed(failed=frozenset({"web"})))
    assert kept.cluster("web") is before.cluster("web")
    committed, _ = store_ids(a, 41)
    folded = memory.fold(before, a, committed)
    assert folded.cluster("web").incident.id == 41


def row(state: IncidentState, **kw: object) -> IncidentRow:
    base = dict(id=5, kind=IncidentKind.SPLIT_BRAIN, cluster="web", state=state,
                survivor="lb1", victims=("lb2",), attempts=1, last_attempt_at=T0,
                mode=FenceMode.SSH, held_nodes=(), pending_hold=(), released=False)
    return IncidentRow(**{**base, **kw})  # type: ignore[arg-type]


def test_restart_mid_fence_keeps_the_intended_hold() -> None:
    h, changes, _ = memory.restore(["web"], [row(IncidentState.FENCING, pending_hold=("lb2",))],
                                   {})
    web = h.cluster("web")
    assert web.incident.state is IncidentState.FENCE_FAILED
    assert web.held_nodes == {"lb2"} and web.hold_of("lb2").keepalived_stopped
    (c,) = changes
    assert isinstance(c, ChangeState) and (c.src, c.dst, c.held) == (
        IncidentState.FENCING, IncidentState.FENCE_FAILED, ("lb2",))


def test_restart_keeps_incumbents_and_epoch() -> None:
    mem = {"web": ClusterMemoryRow("web", 7, ((VIP1, "lb2"),))}
    h, changes, _ = memory.restore(["web"], [], mem)
    assert h.cluster("web").incumbent_of(VIP1) == "lb2" and h.cluster("web").epoch == 7
    assert changes == ()


def test_a_restart_does_not_change_the_survivor() -> None:
    """lb2 (lower priority) was the incumbent. With and without a restart between the
    incident opening and the fence, lb2 survives."""
    cfg = make_config()
    lb2_alone = (node("lb1"), node("lb2", (VIP1,)))

    def run(restart: bool) -> str:
        d = Driver(cfg)
        d.round(*lb2_alone)
        d.round(*cut)  # the incident opens
        if restart:
            web = d.history.cluster("web")
            rows = [row(IncidentState.OPEN, id=web.incident.id, survivor=None, victims=(),
                        attempts=0)]
            d.history, _, _ = memory.restore(
                ["web"], rows, {"web": ClusterMemoryRow("web", web.epoch, web.incumbents)})
        for _ in range(3):
            f = d.web(d.round(*cut)).fence
            if f is not None:
                return f.survivor
        raise AssertionError("no fence")

    assert run(restart=False) == run(restart=True) == "lb2"


def test_restart_keeps_a_refenced_hold_for_an_operator_and_the_watch_clock() -> None:
    from datetime import timedelta

    held = row(IncidentState.HELD, held_nodes=("lb2",), refenced=True)
    h, changes, _ = memory.restore(["web"], [held], {})
    web = h.cluster("web")
    assert changes == () and web.incident.state is IncidentState.HELD
    assert web.incident.refenced and web.hold_of("lb2").operator_only
    released = T0 - timedelta(seconds=30)
    watching = row(IncidentState.WATCHING, released=True, released_at=released)
    h, _, _ = memory.restore(["web"], [watching], {})
    web = h.cluster("web")
    # still watched, and the cooldown counts from the release, not from the restart
    assert web.incident.state is IncidentState.WATCHING and not web.incident.released
    assert dict(web.auto_released_at) == {"lb2": released}
