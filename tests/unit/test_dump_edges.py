"""A dump the policy did not expect (issue 29): the policy never raises on any
observation, and every number a dump can carry serialises. Hypothesis, no I/O."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arbiter.model import KeepalivedView, Verdict, VrrpInstance, VrrpSample
from arbiter.probe.keepalived import DumpError, parse_dump
from arbiter.serialize import keepalived_view
from tests.unit.builders import T0, VIP1, VIP2, Driver, make_config, node
from tests.unit.test_keepalived_dump import GOOD

NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e300, 253402300800.0, 2**32 + 1, 0, 1]),
)


@settings(max_examples=300, deadline=None)
@given(last=NUMBERS, adver=NUMBERS, rcvd=NUMBERS, sent=NUMBERS)
def test_every_number_a_dump_can_carry_serialises_or_is_the_node_s_error(
        last, adver, rcvd, sent) -> None:  # type: ignore[no-untyped-def]
    d = json.loads(json.dumps(GOOD))
    d["data"].update(last_transition=last, adver_int=adver)
    d["stats"].update(advert_rcvd=rcvd, advert_sent=sent)
    try:
        dumps = parse_dump(json.dumps([d]))  # Infinity and NaN go out as JSON allows
    except DumpError:
        return
    (i,) = dumps
    inst = VrrpInstance(
        name=i.name, vrid=i.vrid, version=i.version, state=i.state, wantstate=i.wantstate,
        base_priority=i.base_priority, effective_priority=i.effective_priority,
        advert_int=i.advert_int, vips=i.vips, interface=i.interface,
        last_transition=i.last_transition,
        samples=(VrrpSample(T0, i.state, i.advert_rcvd, i.advert_sent),), state_since=T0)
    json.dumps(keepalived_view(KeepalivedView(instances=(inst,), at=T0)), allow_nan=False)


VIPS = [VIP1, VIP2, "10.0.0.9"]
STATES = ["MASTER", "BACKUP", "FAULT", "INIT", "STATE97"]


@st.composite
def instance(draw):  # type: ignore[no-untyped-def]
    vrid = draw(st.sampled_from([1, 51, 52]))
    n = draw(st.integers(1, 4))
    samples = tuple(
        VrrpSample(T0 - timedelta(seconds=0.25 * (n - k)), draw(st.sampled_from(STATES)),
                   draw(st.integers(0, 50)), draw(st.integers(0, 50)))
        for k in range(n))
    return VrrpInstance(
        name=draw(st.sampled_from(["VI_1", "VI_2", "VI_6"])), vrid=vrid,
        version=draw(st.sampled_from([2, 3])), state=draw(st.sampled_from(STATES)),
        wantstate=draw(st.sampled_from(STATES)), base_priority=draw(st.integers(1, 255)),
        effective_priority=draw(st.integers(0, 300)), advert_int=draw(st.sampled_from([1.0, 0.3])),
        vips=tuple(draw(st.lists(st.sampled_from(VIPS), max_size=2))), interface="eth0",
        last_transition=0.0, samples=samples, state_since=T0 - timedelta(seconds=1))


@st.composite
def view(draw):  # type: ignore[no-untyped-def]
    return draw(st.one_of(
        st.none(),
        st.builds(KeepalivedView,
                  instances=st.lists(instance(), max_size=3).map(tuple),
                  at=st.sampled_from([None, T0, T0 - timedelta(seconds=0.1),
                                      T0 - timedelta(seconds=30)]),
                  error=st.sampled_from([None, None, "no dump within 0.4 s of the signal",
                                         "keepalived is not running"]),
                  supported=st.booleans(), hung=st.booleans())))


def shifted(v: KeepalivedView | None, by: timedelta) -> KeepalivedView | None:
    if v is None:
        return None
    return replace(v, at=v.at + by if v.at else None, instances=tuple(
        replace(i, state_since=i.state_since + by,
                samples=tuple(replace(s, at=s.at + by) for s in i.samples))
        for i in v.instances))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds=st.lists(st.tuples(
    st.lists(st.sampled_from([VIP1, VIP2]), max_size=2), view(),
    st.lists(st.sampled_from([VIP1, VIP2]), max_size=2), view(),
    st.booleans()), min_size=1, max_size=6), mode=st.sampled_from(["exclusive", "reactive"]))
def test_assess_never_raises_on_any_view(rounds, mode) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(vips=[VIP1, VIP2])
    web = cfg.clusters[0].model_copy(update={"verdict": mode})
    d = Driver(cfg.model_copy(update={"clusters": [web]}))
    for h1, v1, h2, v2, frozen in rounds:
        # the views were drawn around T0: move them to this round's time, so that fresh
        # ones stay fresh (on main, this reached the AssertionError of issue 29 item 4)
        v1, v2 = shifted(v1, d.now - T0), shifted(v2, d.now - T0)
        a = d.round(replace(node("lb1", tuple(h1)), keepalived=v1, observed_at=d.now),
                    replace(node("lb2", tuple(h2)), keepalived=v2, keepalived_frozen=frozen,
                            observed_at=d.now))
        for n in d.web(a).nodes:
            assert n.reason and n.verdict in Verdict
            for _, verdict, why in n.by_vip:
                assert why and verdict in Verdict


def test_a_vip_the_holder_s_dump_does_not_name_gets_the_fallback_rule() -> None:
    """keepalived 2.2.7 with the VIP under virtual_ipaddress_excluded: the fresh dump
    names it in no instance. Before issue 29 an AssertionError stopped every round."""
    other = VrrpInstance(
        name="VI_1", vrid=51, version=2, state="MASTER", wantstate="MASTER",
        base_priority=100, effective_priority=100, advert_int=1.0, vips=(), interface="eth0",
        last_transition=0.0, samples=(VrrpSample(T0, "MASTER", 0, 10),), state_since=T0)
    cfg = make_config()
    web = cfg.clusters[0].model_copy(update={"verdict": "exclusive"})
    d = Driver(cfg.model_copy(update={"clusters": [web]}))
    kv = KeepalivedView(instances=(other,), at=T0)
    ca = None
    with contextlib.suppress(StopIteration):
        ca = d.web(d.round(replace(node("lb1", (VIP1,)), keepalived=kv),
                           replace(node("lb2"), keepalived=replace(kv, instances=()))))
    assert ca is not None
    verdict, reason = ca.node("lb2").for_vip(VIP1)
    assert verdict is Verdict.DENY
    assert "names 10.0.0.100 in none of its VRRP instances" in reason
