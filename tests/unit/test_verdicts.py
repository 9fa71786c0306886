"""Exclusive verdicts (issue 11): table tests and properties, no I/O.

With ``verdict = "exclusive"``, /verdict denies a node that lacks a VIP while another
node holds it and is healthy; a dead, unreachable, gateway-blind or keepalived-less
holder never blocks failover.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from arbiter.model import Verdict
from arbiter.policy.verdicts import healthy_holder
from tests.unit.builders import VIP1, VIP2, Driver, make_config, node
from tests.unit.test_invariants import NAMES, observation


def exclusive(nodes=None, vips=None, **kw):  # type: ignore[no-untyped-def]
    cfg = make_config(nodes, vips, **kw)
    web = cfg.clusters[0].model_copy(update={"verdict": "exclusive"})
    return Driver(cfg.model_copy(update={"clusters": [web]}))


def answers(d: Driver, *obs, vip=None, sees=True):  # type: ignore[no-untyped-def]
    ca = d.web(d.round(*obs, sees_gateway=sees))
    return {n.node: n.for_vip(vip) for n in ca.nodes}


def test_a_backup_is_denied_while_the_holder_is_healthy() -> None:
    got = answers(exclusive(), node("lb1", (VIP1,)), node("lb2"))
    assert got["lb1"][0] is Verdict.ALLOW
    verdict, reason = got["lb2"]
    assert verdict is Verdict.DENY
    # these observations carry no keepalived view: the rule holds every backup
    assert reason == (f"deny: lb1 holds {VIP1} and is healthy "
                      "(keepalived running, sees 1/1 gateways); no keepalived view "
                      "(lb1: not watched)")


# (how the holder lb1 looks) -> lb2 is allowed: an unhealthy holder never blocks failover
UNHEALTHY_HOLDER = {
    "keepalived dead (kill -9, stale VIP)": node("lb1", (VIP1,), ka=False),
    "gateway-blind": node("lb1", (VIP1,), gw=False),
    "unreachable": node("lb1", icmp=False, ssh=False),
    "SSH down (addresses unknown)": node("lb1", ssh=False),
    "VIP only on lo (LVS-DR real server)": node("lb1", lo=(VIP1,)),
}


def test_an_unhealthy_holder_never_blocks_failover() -> None:
    for how, lb1 in UNHEALTHY_HOLDER.items():
        verdict, reason = answers(exclusive(), lb1, node("lb2"))["lb2"]
        assert verdict is Verdict.ALLOW, how


def test_isolation_abstains_and_reactive_clusters_never_deny_a_backup() -> None:
    got = answers(exclusive(), node("lb1", (VIP1,)), node("lb2"), sees=False)
    assert {v for v, _ in got.values()} == {Verdict.ABSTAIN}
    reactive = Driver(make_config())
    assert answers(reactive, node("lb1", (VIP1,)), node("lb2"))["lb2"][0] is Verdict.ALLOW


def test_dual_master_answers_per_vip() -> None:
    d = exclusive(vips=[VIP1, VIP2])
    obs = (node("lb1", (VIP1,)), node("lb2", (VIP2,)))
    assert answers(d, *obs, vip=VIP1)["lb2"][0] is Verdict.DENY
    assert answers(d, *obs, vip=VIP2)["lb2"][0] is Verdict.ALLOW
    assert answers(d, *obs, vip=VIP2)["lb1"][0] is Verdict.DENY
    # without ?vip= a node that holds one VIP is never put into FAULT for the other
    got = answers(d, *obs)
    assert got["lb1"][0] is Verdict.ALLOW and got["lb2"][0] is Verdict.ALLOW
    # a node that holds nothing while both VIPs have a healthy holder is denied
    got = answers(d, node("lb1", (VIP1, VIP2)), node("lb2"))
    assert got["lb2"][0] is Verdict.DENY and got["lb1"][0] is Verdict.ALLOW


@st.composite
def site(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    n = draw(st.integers(2, 4))
    vips = [VIP1, VIP2][: draw(st.integers(1, 2))]
    names = NAMES[:n]
    obs = tuple(draw(observation(nm, vips)) for nm in names)
    return names, vips, obs, draw(st.booleans())


@settings(max_examples=400, deadline=None)
@given(site())
def test_exclusive_properties(sc) -> None:  # type: ignore[no-untyped-def]
    names, vips, obs, sees = sc
    d = exclusive([(n, 100 - i) for i, n in enumerate(names)], vips)
    reactive = Driver(make_config([(n, 100 - i) for i, n in enumerate(names)], vips))
    ca = d.web(d.round(*obs, sees_gateway=sees))
    base = {n.node: n.verdict for n in reactive.web(reactive.round(*obs, sees_gateway=sees)).nodes}
    by_name = {o.node: o for o in obs}
    for vip in [None, *vips]:
        got = {n.node: n.for_vip(vip) for n in ca.nodes}
        for name, (verdict, reason) in got.items():
            assert reason
            # exclusive only ever turns an allow into a deny
            if base[name] is not Verdict.ALLOW:
                assert verdict is base[name]
            if verdict is Verdict.DENY and base[name] is Verdict.ALLOW:
                # the deny names a holder that is healthy now, and is not this node
                holder = reason.removeprefix("deny: ").split(" ")[0]
                assert holder != name and holder in by_name
                held = [v for v in vips if v in by_name[holder].holds(vips)]
                assert any(healthy_holder(by_name[holder], v) for v in held)
    for v in vips:
        if not any(healthy_holder(o, v) for o in obs):
            # none holds v, or no holder is healthy: nobody is denied for v beyond what
            # the reactive rule denies, and the answer without ?vip= denies no more
            for vip in (v, None):
                assert all(n.for_vip(vip)[0] is base[n.node] for n in ca.nodes)
