"""The arbitration policy as a table of scenarios. Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from arbiter.model import (
    FenceMethod,
    Health,
    IncidentKind,
    IncidentState,
    NodeObservation,
    Verdict,
)
from arbiter.policy.effects import ChangeState, OpenIncident, ReleaseHold
from tests.unit.builders import VIP1, VIP2, Driver, effects_of, make_config, node


def opens(x, kind: IncidentKind) -> bool:  # type: ignore[no-untyped-def]
    return any(e.kind is kind for e in effects_of(x, OpenIncident))


def resolves(x) -> bool:  # type: ignore[no-untyped-def]
    return any(e.dst is IncidentState.RESOLVED for e in effects_of(x, ChangeState))


def gate_outcome(ca) -> ChangeState | None:  # type: ignore[no-untyped-def]
    return next((e for e in effects_of(ca, ChangeState) if e.src is IncidentState.FENCING),
                None)


def releases(ca) -> list[ReleaseHold]:  # type: ignore[no-untyped-def]
    return effects_of(ca, ReleaseHold)


@dataclass
class Scenario:
    name: str
    rounds: list[tuple[NodeObservation, ...]]
    nodes: list[tuple[str, int]] = field(default_factory=lambda: [("lb1", 100), ("lb2", 90)])
    vips: list[str] = field(default_factory=lambda: [VIP1])
    arbiter_sees_gateway: bool = True
    # expectations about the last round
    survivor: str | None = None
    victims: tuple[str, ...] = ()
    methods: tuple[FenceMethod, ...] = ()
    fenced_vips: tuple[str, ...] = ()
    split: tuple[str, ...] = ()
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    health: dict[str, Health] = field(default_factory=dict)
    reason_has: str = ""
    no_fence_ever: bool = False


healthy = (node("lb1", (VIP1,)), node("lb2"))
cut = (node("lb1", (VIP1,)), node("lb2", (VIP1,)))

SCENARIOS = [
    Scenario(
        "heartbeat cut, both healthy: the incumbent survives",
        rounds=[healthy, cut, cut],
        survivor="lb1", victims=("lb2",), methods=(FenceMethod.STOP_KEEPALIVED,),
        fenced_vips=(VIP1,), split=(VIP1,),
        verdicts={"lb1": Verdict.ALLOW, "lb2": Verdict.DENY},
        reason_has="incumbent",
    ),
    Scenario(
        "gateway-blind lb1 loses although it has the higher priority and was incumbent",
        rounds=[healthy, (node("lb1", (VIP1,), gw=False), node("lb2", (VIP1,))),
                (node("lb1", (VIP1,), gw=False), node("lb2", (VIP1,)))],
        survivor="lb2", victims=("lb1",), split=(VIP1,),
        verdicts={"lb1": Verdict.DENY, "lb2": Verdict.ALLOW},
        reason_has="sees more of its gateways (1 > 0)",
    ),
    Scenario(
        "one node unreachable: its VIPs are unknown, no split brain is claimed",
        rounds=[healthy] + [(node("lb1", (VIP1,)), node("lb2", icmp=False, ssh=False))] * 4,
        no_fence_ever=True,
        verdicts={"lb1": Verdict.ALLOW, "lb2": Verdict.ALLOW},
        health={"lb1": Health.HEALTHY, "lb2": Health.UNREACHABLE},
    ),
    Scenario(
        "the arbiter isolated: abstain, never fence",
        rounds=[healthy] + [cut] * 5, arbiter_sees_gateway=False, no_fence_ever=True,
        verdicts={"lb1": Verdict.ABSTAIN, "lb2": Verdict.ABSTAIN},
        reason_has="arbiter isolated",
    ),
    Scenario(
        "dual-master with both VIPs dual: one victim covers both VIPs",
        vips=[VIP1, VIP2],
        rounds=[(node("lb1", (VIP1,)), node("lb2", (VIP2,))),
                (node("lb1", (VIP1, VIP2)), node("lb2", (VIP1, VIP2))),
                (node("lb1", (VIP1, VIP2)), node("lb2", (VIP1, VIP2)))],
        survivor="lb1", victims=("lb2",), fenced_vips=(VIP1, VIP2), split=(VIP1, VIP2),
        reason_has="higher priority (100 > 90)",
    ),
    Scenario(
        "LVS-DR real-server style: a VIP on lo is not ownership",
        rounds=[(node("lb1", (VIP1,)), node("lb2", lo=(VIP1,)))] * 4,
        no_fence_ever=True, split=(),
        verdicts={"lb1": Verdict.ALLOW, "lb2": Verdict.ALLOW},
    ),
    Scenario(
        "a dual VIP lasting a single round is not fenced",
        rounds=[healthy, cut, healthy, healthy, healthy],
        no_fence_ever=True,
        verdicts={"lb1": Verdict.ALLOW, "lb2": Verdict.ALLOW},
    ),
    Scenario(
        "incumbent preference beats priority",
        rounds=[(node("lb1"), node("lb2", (VIP1,))), cut, cut],
        survivor="lb2", victims=("lb1",), reason_has="incumbent",
    ),
    Scenario(
        "stale VIP from a dead keepalived while the backup holds it too",
        rounds=[healthy, (node("lb1", (VIP1,), ka=False), node("lb2", (VIP1,))),
                (node("lb1", (VIP1,), ka=False), node("lb2", (VIP1,)))],
        survivor="lb2", victims=("lb1",), methods=(FenceMethod.REMOVE_ADDRESS,),
        reason_has="keepalived running",
    ),
    Scenario(
        "three-node cluster, all three claim the VIP: one survivor, two victims",
        nodes=[("lb1", 100), ("lb2", 90), ("lb3", 80)],
        rounds=[(node("lb1", (VIP1,)), node("lb2"), node("lb3"))]
        + [(node("lb1", (VIP1,)), node("lb2", (VIP1,)), node("lb3", (VIP1,)))] * 2,
        survivor="lb1", victims=("lb2", "lb3"),
        verdicts={"lb1": Verdict.ALLOW, "lb2": Verdict.DENY, "lb3": Verdict.DENY},
    ),
    Scenario(
        "three-node cluster, two claim the VIP: the idle backup is left alone",
        nodes=[("lb1", 100), ("lb2", 90), ("lb3", 80)],
        rounds=[(node("lb1", (VIP1,)), node("lb2"), node("lb3"))]
        + [(node("lb1", (VIP1,)), node("lb2"), node("lb3", (VIP1,)))] * 2,
        survivor="lb1", victims=("lb3",),
        verdicts={"lb1": Verdict.ALLOW, "lb2": Verdict.ALLOW, "lb3": Verdict.DENY},
    ),
    Scenario(
        "no incumbent known: priority, then name decides",
        nodes=[("lb1", 50), ("lb2", 50)],
        rounds=[cut, cut],
        survivor="lb1", victims=("lb2",), reason_has="lowest name",
    ),
    Scenario(
        "ICMP to the incumbent filtered: degraded, not dead, still reachable over SSH",
        rounds=[healthy] + [(node("lb1", (VIP1,), icmp=False), node("lb2", (VIP1,)))] * 2,
        survivor="lb1", victims=("lb2",),
        health={"lb1": Health.DEGRADED, "lb2": Health.HEALTHY},
    ),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(sc: Scenario) -> None:
    d = Driver(make_config(sc.nodes, sc.vips))
    fences = []
    for r in sc.rounds:
        a = d.round(*r, sees_gateway=sc.arbiter_sees_gateway)
        if d.web(a).fence:
            fences.append(d.web(a).fence)
    last = d.web(d.log[-1])
    if sc.no_fence_ever:
        assert fences == [], f"unexpected fence: {fences}"
    if sc.survivor:
        assert len(fences) == 1, f"expected exactly one fence, got {fences}"
        f = fences[0]
        assert f.survivor == sc.survivor
        assert tuple(v.node for v in f.victims) == sc.victims
        if sc.methods:
            assert tuple(v.method for v in f.victims) == sc.methods
        if sc.fenced_vips:
            assert f.vips == sc.fenced_vips
        assert f.survivor not in {v.node for v in f.victims}
        if sc.reason_has:
            assert sc.reason_has in f.reason, f.reason
    elif sc.reason_has:
        assert sc.reason_has in last.reason or any(
            sc.reason_has in n.reason for n in last.nodes
        ), last.reason
    assert last.split_vips == sc.split or not sc.split
    for n, v in sc.verdicts.items():
        na = last.node(n)
        assert na is not None and na.verdict is v, (n, na)
    for n, h in sc.health.items():
        na = last.node(n)
        assert na is not None and na.health is h, (n, na)


def test_confirmation_needs_consecutive_rounds() -> None:
    d = Driver(make_config(confirm_rounds=3))
    d.round(*healthy)
    for pattern in (cut, cut, healthy, cut, cut):
        assert d.web(d.round(*pattern)).fence is None
    assert d.web(d.round(*cut)).fence is not None  # third consecutive


def test_fenced_incident_is_never_fenced_twice() -> None:
    d = Driver(make_config())
    d.round(*healthy)
    d.round(*cut)
    assert d.web(d.round(*cut)).fence is not None
    d.finish_fence(ok=True, held=("lb2",))
    for _ in range(5):  # the split comes back (say, keepalived restarted by hand)
        ca = d.web(d.round(*cut))
        assert ca.fence is None
    assert "not fencing twice" in ca.reason


def test_fence_in_flight_blocks_another() -> None:
    d = Driver(make_config())
    d.round(*healthy)
    d.round(*cut)
    assert d.web(d.round(*cut)).fence is not None
    ca = d.web(d.round(*cut))  # no result reported yet
    assert ca.fence is None and "in flight" in ca.reason


def test_failed_fence_retries_after_backoff_and_gives_up() -> None:
    d = Driver(make_config(fence_retry_after=3.0, max_fence_attempts=2))
    d.round(*healthy)
    d.round(*cut)
    assert d.web(d.round(*cut)).fence is not None
    d.finish_fence(ok=False)  # reported at t=3
    for _ in range(3):  # t=3, 4, 5: inside the 3 s backoff
        assert d.web(d.round(*cut)).fence is None
    retry = d.web(d.round(*cut)).fence  # t=6: 3 s after the failure
    assert retry is not None
    d.finish_fence(ok=False)
    for _ in range(6):
        ca = d.web(d.round(*cut))
        assert ca.fence is None
    assert "giving up" in ca.reason
    assert ca.next_history.incident is not None
    assert ca.next_history.incident.attempts == 2


def test_split_gone_with_a_held_victim_is_held_not_resolved() -> None:
    d = Driver(make_config(resolve_rounds=2))
    d.round(*healthy)
    d.round(*cut)
    d.round(*cut)
    d.finish_fence(ok=True, held=("lb2",))
    fenced = (node("lb1", (VIP1,)), node("lb2", ka=False))
    assert not resolves(d.web(d.round(*fenced)))
    ca = d.web(d.round(*fenced))
    # an incident that still holds a node is not resolved: it waits for release
    assert not resolves(ca)
    assert [e.dst for e in effects_of(ca, ChangeState)] == [IncidentState.HELD]
    inc = ca.next_history.incident
    assert inc is not None and inc.state is IncidentState.HELD
    lb2 = ca.node("lb2")
    assert lb2 is not None and lb2.verdict is Verdict.DENY and "held fenced" in lb2.reason


def test_dry_run_decides_once_and_denies_nobody() -> None:
    d = Driver(make_config(dry_run=True))
    d.round(*healthy)
    d.round(*cut)
    f = d.web(d.round(*cut)).fence
    assert f is not None and f.dry_run
    ca = d.web(d.round(*cut))
    assert ca.fence is None
    assert ca.next_history.incident is not None
    assert ca.next_history.incident.state is IncidentState.DECIDED
    assert all(n.verdict is Verdict.ALLOW for n in ca.nodes)


def test_refuses_to_fence_the_only_node_that_sees_a_gateway() -> None:
    # lb1 runs keepalived but is gateway-blind; lb2's keepalived is dead but it sees
    # the gateway: rule 2 prefers lb1, and the guard refuses to fence lb2.
    d = Driver(make_config())
    r = (node("lb1", (VIP1,), gw=False), node("lb2", (VIP1,), ka=False))
    d.round(*r)
    ca = d.web(d.round(*r))
    assert ca.fence is None
    assert "only node that still sees a gateway" in ca.reason


def test_tilt_abstains() -> None:
    d = Driver(make_config())
    d.round(*healthy)
    for _ in range(4):
        a = d.round(*cut, tilt="round started 9.0s late")
        assert d.web(a).fence is None
        assert all(n.verdict is Verdict.ABSTAIN for n in d.web(a).nodes)
    assert a.abstain_reason and a.abstain_reason.startswith("TILT")


def test_isolation_opens_and_resolves_one_incident() -> None:
    d = Driver(make_config())
    opened = [opens(d.round(*healthy, sees_gateway=False), IncidentKind.ARBITER_ISOLATED)
              for _ in range(3)]
    assert opened == [True, False, False]
    assert d.history.isolated_incident is not None
    assert resolves(d.round(*healthy))
    assert d.history.isolated_incident is None


def test_epoch_moves_only_when_verdicts_change() -> None:
    d = Driver(make_config())
    e = [d.web(d.round(*r)).next_history.epoch for r in (healthy, healthy, cut, cut, cut)]
    # Round 1 sets the verdicts; an unconfirmed split denies nobody; the fence in
    # round 4 makes lb2 a victim (deny), which moves the epoch once.
    assert e == [1, 1, 1, 2, 2]


def test_orphan_vip_needs_confirmation() -> None:
    d = Driver(make_config())
    none = (node("lb1"), node("lb2"))
    assert not opens(d.web(d.round(*none)), IncidentKind.ORPHAN_VIP)
    assert opens(d.web(d.round(*none)), IncidentKind.ORPHAN_VIP)
    assert d.history.cluster("web").orphan_incident is not None
    ca = d.web(d.round(*healthy))
    assert ca.orphan_vips == () and resolves(ca)
    assert d.history.cluster("web").orphan_incident is None


def gate_driver(**kw: object) -> Driver:
    cfg = make_config(**kw)
    web = cfg.clusters[0].model_copy(update={"fence_mode": "gate"})
    return Driver(cfg.model_copy(update={"clusters": [web]}))


def test_gate_mode_orders_no_ssh_and_verifies_by_observation() -> None:
    d = gate_driver()
    d.round(*healthy)
    d.round(*cut)
    f = d.web(d.round(*cut)).fence
    assert f is not None and f.mode.value == "gate"
    lb2 = d.web(d.log[-1]).node("lb2")
    assert lb2 is not None and lb2.verdict is Verdict.DENY  # the gate acts on this
    ca = d.web(d.round(*healthy))  # lb2 went to FAULT and dropped the VIP
    outcome = gate_outcome(ca)
    assert outcome is not None and outcome.dst is IncidentState.FENCED
    assert outcome.held == ("lb2",)
    inc = ca.next_history.incident
    assert inc is not None and inc.state is IncidentState.FENCED
    assert ca.next_history.held_nodes == {"lb2"}
    assert not ca.next_history.hold_of("lb2").keepalived_stopped


def test_gate_mode_fails_when_the_victim_ignores_the_gate() -> None:
    d = gate_driver(fence_verify_timeout=2.0)
    d.round(*healthy)
    d.round(*cut)
    d.round(*cut)
    outcomes = [gate_outcome(d.web(d.round(*cut))) for _ in range(4)]
    assert outcomes[:2] == [None, None]
    assert outcomes[2] is not None and outcomes[2].dst is IncidentState.FENCE_FAILED
    assert "arbiter-gate" in outcomes[2].message


def peers_ok(o, ok=True):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    other = "10.0.0.11" if o.node == "lb2" else "10.0.0.12"
    return replace(o, peers=((other, ok),))


def test_auto_release_after_release_rounds_of_reach() -> None:
    d = Driver(make_config(release_rounds=3, resolve_rounds=1))
    d.round(*healthy)
    d.round(*cut)
    d.round(*cut)
    d.finish_fence(ok=True, held=("lb2",))
    fenced = (peers_ok(node("lb1", (VIP1,))), peers_ok(node("lb2", ka=False), ok=False))
    healed = (peers_ok(node("lb1", (VIP1,))), peers_ok(node("lb2", ka=False)))
    for _ in range(5):  # lb2 does not reach lb1: stays held
        assert releases(d.web(d.round(*fenced))) == []
    assert [bool(releases(d.web(d.round(*healed)))) for _ in range(3)] == [False, False, True]
    ca = d.web(d.log[-1])
    ((hold, why),) = [(r.hold, r.why) for r in releases(ca)]
    assert hold.node == "lb2" and hold.keepalived_stopped and "reached lb1" in why
    lb2 = ca.node("lb2")
    assert lb2 is not None and lb2.verdict is Verdict.ALLOW


def test_auto_release_cooldown_then_operator() -> None:
    d = Driver(make_config(release_rounds=2, resolve_rounds=1, release_cooldown=600))
    healed = (peers_ok(node("lb1", (VIP1,))), peers_ok(node("lb2", ka=False)))
    d.round(*healthy)
    for _ in range(2):  # two splits in a row, each fenced, each healed
        d.round(*cut)
        d.round(*cut)
        d.round(*cut)
        d.finish_fence(ok=True, held=("lb2",))
        rel = [releases(d.web(d.round(*healed))) for _ in range(3)]
    assert rel == [[], [], []]  # the second time: no automatic release
    assert "waiting for an operator" in " ".join(d.web(d.log[-1]).notes)


def test_split_after_release_is_a_new_incident_and_fenced_again() -> None:
    from arbiter.policy import memory

    d = Driver(make_config())
    d.round(*healthy)
    d.round(*cut)
    d.round(*cut)
    d.finish_fence(ok=True, held=("lb2",))
    h = d.history.cluster("web")
    first = h.incident.id
    d.history = memory.with_cluster(d.history, "web", memory.release(h, "lb2", first))
    ca = d.web(d.round(*cut))  # keepalived was restarted and the cut is still there
    assert resolves(ca) and opens(ca, IncidentKind.SPLIT_BRAIN)
    d.round(*cut)
    ca = d.web(d.log[-1])
    assert ca.fence is not None and ca.next_history.incident.id != first


def test_a_round_with_a_node_unknown_teaches_no_incumbent() -> None:
    """lb1 is the incumbent. For one round lb1's SSH fails (its addresses are unknown)
    while lb2 holds the VIP: that is not lb2 holding it alone. When the split shows,
    lb1 still survives by rule 4 (found by the fault soak, seed 7, fault 183)."""
    d = Driver(make_config([("lb1", 90), ("lb2", 100)]))  # priority alone would keep lb2
    d.round(node("lb1", (VIP1,)), node("lb2"))
    d.round(node("lb1", ssh=False), node("lb2", (VIP1,)))  # lb1 reconnecting
    assert d.history.cluster("web").incumbent_of(VIP1) == "lb1"
    d.round(*cut)
    f = d.web(d.round(*cut)).fence
    assert f is not None and f.survivor == "lb1" and "incumbent" in f.reason
