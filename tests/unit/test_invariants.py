"""Safety invariants of the policy over random observation sequences (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arbiter.model import NodeObservation
from tests.unit.builders import VIP1, VIP2, Driver, make_config, node

NAMES = ["lb1", "lb2", "lb3", "lb4"]


@st.composite
def observation(draw: st.DrawFn, name: str, vips: list[str]) -> NodeObservation:
    ssh = draw(st.booleans() | st.just(True))
    return node(
        name,
        holds=tuple(v for v in vips if draw(st.booleans())),
        icmp=draw(st.booleans() | st.just(True)),
        ssh=ssh,
        ka=draw(st.sampled_from([True, True, False])),
        gw=draw(st.sampled_from([True, True, False])),
        lo=tuple(v for v in vips if draw(st.integers(0, 4)) == 0),
    )


@st.composite
def scenario(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    n = draw(st.integers(2, 4))
    vips = [VIP1, VIP2][: draw(st.integers(1, 2))]
    names = NAMES[:n]
    prios = [draw(st.integers(0, 255)) for _ in names]
    confirm = draw(st.integers(2, 4))
    rounds = []
    for _ in range(draw(st.integers(1, 14))):
        nodes = tuple(draw(observation(nm, vips)) for nm in names)
        sees = draw(st.sampled_from([True, True, True, False]))
        # what the cycle reports back before this round: nothing, success, failure
        feedback = draw(st.sampled_from([None, None, True, False]))
        held = tuple(nm for nm in names if draw(st.booleans()))
        rounds.append((nodes, sees, feedback, held))
    dry = draw(st.booleans())
    return list(zip(names, prios, strict=True)), vips, confirm, dry, rounds


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_safety_invariants(sc) -> None:  # type: ignore[no-untyped-def]
    nodes, vips, confirm, dry, rounds = sc
    d = Driver(make_config(nodes, vips, confirm_rounds=confirm, dry_run=dry,
                           fence_retry_after=1.0))
    all_names = {n for n, _ in nodes}
    split_run = 0  # consecutive non-abstaining rounds with split brain, as seen here
    in_flight = False
    for obs, sees, feedback, held in rounds:
        if in_flight and feedback is not None:
            d.finish_fence(ok=feedback, held=held if feedback else ())
            in_flight = False
        a = d.round(*obs, sees_gateway=sees)
        ca = d.web(a)
        split_run = split_run + 1 if (ca.split_vips and not a.abstaining) else 0
        held_before = d.log[-2].cluster("web").next_history.held_nodes if len(d.log) > 1 \
            else frozenset()
        f = ca.fence
        if f is None:
            continue
        victims = {v.node for v in f.victims}
        # never fence while abstaining
        assert not a.abstaining
        # never fence before confirm_rounds consecutive observations; a victim's
        # re-claim of a split its incident already confirmed needs two (issue 11)
        assert split_run >= (2 if f.reason.startswith("re-claim") else confirm)
        # never fence every node: the survivor is spared, and not everyone is held
        assert f.survivor not in victims
        assert victims < all_names
        assert not all_names <= victims | held_before
        # never fence the only node(s) that still see a gateway
        seeing = {o.node for o in obs if o.gateways_seen > 0}
        assert not seeing or not seeing <= victims
        # at most one fence in flight per cluster
        assert not in_flight
        if not f.dry_run:
            in_flight = True
        # every decision carries a reason that names the survivor
        assert f.survivor in f.reason


@settings(max_examples=200, deadline=None)
@given(scenario())
def test_every_verdict_has_a_reason_and_abstains_when_isolated(sc) -> None:  # type: ignore[no-untyped-def]
    nodes, vips, confirm, dry, rounds = sc
    d = Driver(make_config(nodes, vips, confirm_rounds=confirm, dry_run=dry))
    for obs, sees, _, _ in rounds:
        ca = d.web(d.round(*obs, sees_gateway=sees))
        for n in ca.nodes:
            assert n.reason
            assert (n.verdict.value == "abstain") == (not sees)


@settings(max_examples=200, deadline=None)
@given(scenario())
def test_same_input_same_decision(sc) -> None:  # type: ignore[no-untyped-def]
    """Deterministic: replaying the same rounds gives the same verdicts and orders."""
    nodes, vips, confirm, dry, rounds = sc

    def replay() -> list:
        d = Driver(make_config(nodes, vips, confirm_rounds=confirm, dry_run=dry))
        out = []
        for obs, sees, _, _ in rounds:
            ca = d.web(d.round(*obs, sees_gateway=sees))
            out.append((ca.fence, tuple(n.verdict for n in ca.nodes), ca.reason))
        return out

    assert replay() == replay()


@settings(max_examples=200, deadline=None)
@given(scenario(), st.floats(0.5, 5.0))
def test_confirm_after_never_fences_early(sc, after: float) -> None:  # type: ignore[no-untyped-def]
    """By time: never before `confirm_after` seconds of uninterrupted split brain,
    and never on fewer than two observations."""
    nodes, vips, _, _, rounds = sc
    d = Driver(make_config(nodes, vips, confirm_after=after))
    run_start = None
    run_len = 0
    for obs, sees, _, _ in rounds:
        now = d.now
        a = d.round(*obs, sees_gateway=sees)
        ca = d.web(a)
        if ca.split_vips and not a.abstaining:
            run_start = run_start or now
            run_len += 1
        else:
            run_start, run_len = None, 0
        if ca.fence is not None:
            assert run_len >= 2
            assert run_start is not None and (now - run_start).total_seconds() >= after


@st.composite
def handover(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    """Round times as events would wake them (gaps from min_round_gap up), and a VRRP
    handover: lb1 alone, both for at most 300 ms, then one of them alone."""
    gaps = draw(st.lists(st.floats(0.05, 2.0), min_size=4, max_size=40))
    overlap_start = draw(st.floats(0.0, sum(gaps)))
    overlap = draw(st.floats(0.0, 0.3))
    after = draw(st.sampled_from(["lb1", "lb2"]))
    confirm_after = draw(st.sampled_from([None, None, 0.1, 0.3]))
    return gaps, overlap_start, overlap, after, confirm_after


@settings(max_examples=400, deadline=None)
@given(handover())
def test_a_handover_overlap_of_300ms_is_never_fenced(h) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from tests.unit.builders import T0

    gaps, start, overlap, after, confirm_after = h
    kw = {"confirm_after": confirm_after} if confirm_after else {}
    d = Driver(make_config(**kw))
    t = 0.0
    for gap in gaps:
        t += gap
        if t < start:
            holders = {"lb1"}
        elif t <= start + overlap:
            holders = {"lb1", "lb2"}
        else:
            holders = {after}
        obs = [node(n, (VIP1,) if n in holders else ()) for n in ("lb1", "lb2")]
        ca = d.web(d.round(*obs, at=T0 + timedelta(seconds=t)))
        assert ca.fence is None, (t, ca.reason)
