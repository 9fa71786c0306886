"""The exclusive rule on keepalived's own view (issue 21): table tests for every
failure kind, and properties. Pure: the counters come from tests/unit/vrrp_sim.py.

The rule: deny a backup only while it misses adverts that a healthy master is
sending; it must be in place before the backup's master-down interval ends.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from arbiter.model import ClusterObservation, KeepalivedView, Verdict
from arbiter.policy import vrrp
from arbiter.policy.verdicts import exclusive_rulings, guarded_vips
from tests.unit.builders import VIP1, Driver, make_config, node
from tests.unit.vrrp_sim import Pair

MASTER_DOWN = vrrp.master_down(1.0, 90, 2)  # lb2: 3.65 s


def exclusive(**kw):  # type: ignore[no-untyped-def]
    cfg = make_config(**kw)
    web = cfg.clusters[0].model_copy(update={"verdict": "exclusive"})
    return Driver(cfg.model_copy(update={"clusters": [web]}))


def observe(p: Pair, lb1_holds: bool = True, **views: KeepalivedView):  # type: ignore[no-untyped-def]
    """This moment as a round sees it: lb1 holds the VIP (by its addresses) unless
    told otherwise, and each node's keepalived view comes from the pair."""
    v1 = views.get("lb1", p.view("lb1"))
    v2 = views.get("lb2", p.view("lb2"))
    return (replace(node("lb1", (VIP1,) if lb1_holds else ()), keepalived=v1),
            replace(node("lb2"), keepalived=v2))


def lb2(d: Driver, p: Pair, **kw):  # type: ignore[no-untyped-def]
    a = d.round(*observe(p, **kw), at=p.at(p.t))
    return d.web(a).node("lb2").for_vip(VIP1)


def run_rounds(d: Driver, p: Pair, until: float, every: float = 0.25, **kw):  # type: ignore[no-untyped-def]
    """Rounds at every dump (the watch wakes them), until ``until``: the first deny."""
    first_deny = None
    t = p.t
    while t < until:
        t = round(t + every, 6)
        p.run(t)
        verdict, reason = lb2(d, p, **kw)
        if verdict is Verdict.DENY and first_deny is None:
            first_deny = (t, reason)
    return first_deny


def test_a_backup_that_hears_its_master_is_allowed() -> None:
    d, p = exclusive(), Pair()
    assert run_rounds(d, p, 20.0) is None
    verdict, reason = lb2(d, p)
    assert verdict is Verdict.ALLOW and reason == "hears lb1 on VI_1 (vrid 51)"


def test_a_vrrp_cut_denies_the_backup_before_its_master_down_interval() -> None:
    for phase in (0.0, 0.05, 0.12, 0.2):
        for cut_at in (5.0, 5.3, 5.6, 5.95):
            d, p = exclusive(), Pair(phase=phase)
            run_rounds(d, p, cut_at)
            last_advert = float(int(cut_at))  # adverts at whole seconds
            p.cut = True
            first = run_rounds(d, p, cut_at + 6)
            assert first is not None, (phase, cut_at)
            t, reason = first
            # in place before lb2 would claim: master-down after the last advert it heard
            assert t - last_advert < MASTER_DOWN - 0.1, (phase, cut_at, t)
            assert reason.startswith("deny: missed 2 adverts lb1 sent on VI_1 (vrid 51)")


# the master stops being a master worth protecting: nobody is denied, even though
# lb2 hears nothing any more (each is one way a real failover starts)
def _killed(p: Pair) -> dict:
    p.nodes["lb1"].dumping = False  # keepalived -9: no adverts, no dumps
    return {"lb1": KeepalivedView(error="keepalived is not running")}


def _stopped(p: Pair) -> dict:
    n = p.nodes["lb1"]
    n.pz_sent += 1  # a graceful stop sends priority 0 and leaves MASTER
    p.set_state("lb1", "BACKUP")
    n.dumping = False
    return {}


def _frozen(p: Pair) -> dict:
    p.nodes["lb1"].dumping = False  # SIGSTOP, or unreachable: its dumps stop coming
    return {}


FAILOVERS = {"keepalived killed -9": _killed, "graceful stop": _stopped,
             "frozen or unreachable": _frozen}


def test_a_dead_stopped_or_unreachable_master_never_gets_the_backup_denied() -> None:
    for how, fault in FAILOVERS.items():
        d, p = exclusive(), Pair()
        run_rounds(d, p, 5.0)
        views = fault(p)
        assert run_rounds(d, p, 12.0, **views) is None, how


def test_the_cut_healed_the_denied_backup_is_allowed_again_by_a_probe() -> None:
    d, p = exclusive(), Pair()
    run_rounds(d, p, 5.0)
    p.cut = True
    first = run_rounds(d, p, 9.0)
    assert first is not None
    denied_at = first[0]
    p.set_state("lb2", "FAULT")  # the track file put it into FAULT: it counts nothing
    assert lb2(d, p)[0] is Verdict.DENY
    p.cut = False  # healed, but lb2 in FAULT cannot show it
    run_rounds(d, p, denied_at + vrrp.PROBE_EVERY - 0.5)
    assert lb2(d, p)[0] is Verdict.DENY
    p.run(denied_at + vrrp.PROBE_EVERY + 0.25)
    verdict, reason = lb2(d, p)
    assert verdict is Verdict.ALLOW and reason.startswith("probe: deny lifted once")
    p.set_state("lb2", "BACKUP")  # the allow takes it out of FAULT: it counts again
    assert run_rounds(d, p, p.t + 8) is None
    assert d.history.cluster("web").denials == ()


def test_a_probe_into_a_cut_that_persists_is_denied_again_in_time() -> None:
    d, p = exclusive(), Pair()
    run_rounds(d, p, 5.0)
    p.cut = True
    first = run_rounds(d, p, 9.0)
    assert first is not None
    p.set_state("lb2", "FAULT")
    run_rounds(d, p, first[0] + vrrp.PROBE_EVERY + 0.25)
    assert lb2(d, p)[0] is Verdict.ALLOW  # the probe
    p.set_state("lb2", "BACKUP")
    left_fault = p.t
    first = run_rounds(d, p, p.t + 6)
    assert first is not None
    t, reason = first
    # the backup's master-down timer starts again as it leaves FAULT
    assert t - left_fault < MASTER_DOWN - 0.1 and "probe missed" in reason


def test_without_keepalived_s_view_every_backup_is_held_as_before() -> None:
    d = exclusive()
    verdict, reason = d.web(d.round(node("lb1", (VIP1,)), node("lb2"))).node("lb2").for_vip(VIP1)
    assert verdict is Verdict.DENY and "no keepalived view (lb1: not watched)" in reason
    unsupported = KeepalivedView(error="keepalived has no JSON dump", supported=False)
    d2 = exclusive()
    a = d2.round(replace(node("lb1", (VIP1,)), keepalived=unsupported),
                 replace(node("lb2"), keepalived=unsupported))
    verdict, reason = d2.web(a).node("lb2").for_vip(VIP1)
    assert verdict is Verdict.DENY and "keepalived has no JSON dump" in reason


def test_a_stale_view_keeps_a_deny_that_stands_and_adds_none() -> None:
    d, p = exclusive(), Pair()
    run_rounds(d, p, 5.0)
    fresh2 = p.view("lb2")
    p.run(8.0)  # lb2's dumps stop reaching us from here (its view is 3 s old)
    assert lb2(d, p, lb2=fresh2)[0] is Verdict.ALLOW
    d2, p2 = exclusive(), Pair()
    run_rounds(d2, p2, 5.0)
    p2.cut = True
    run_rounds(d2, p2, 9.0)
    old = p2.view("lb2")
    p2.run(11.5)
    verdict, reason = lb2(d2, p2, lb2=old)
    assert verdict is Verdict.DENY and "stale" in reason


def test_a_view_that_contradicts_the_addresses_denies_nobody() -> None:
    # lb1 holds the VIP by its addresses, but its keepalived says BACKUP (a transition
    # in flight, or a VIP added by hand): no master to protect, so no deny
    d, p = exclusive(), Pair()
    run_rounds(d, p, 5.0)
    p.set_state("lb1", "BACKUP")
    p.cut = True
    assert run_rounds(d, p, 12.0) is None


def test_the_timing_budget_is_derived_from_each_instance() -> None:
    assert round(vrrp.master_down(1.0, 90, 2), 4) == 3.6484
    assert round(vrrp.master_down(0.5, 90, 3), 4) == round(1.5 + 0.5 * 166 / 256, 4)
    # VRRPv3 at advert_int 0.5 with track files and 0.25 s dumps fits; without track
    # files (the gate's 1 s) it does not, and /status says so naming the fields
    assert vrrp.detection_bound(0.5, 0.25, vrrp.TRACK_PUSH) < vrrp.master_down(0.5, 90, 3)
    assert vrrp.detection_bound(0.5, 0.25, vrrp.GATE_PUSH) >= vrrp.master_down(0.5, 90, 3)
    cfg = exclusive().config
    p = Pair(advert_int=0.5)
    p.run(3.0)
    obs = ClusterObservation("web", observe(p))
    (warning,) = vrrp.budget_warnings(cfg.clusters[0], 0, obs, 0.25)[:1]
    assert "clusters[0].track_files = true" in warning
    assert "arbiter.keepalived_watch_every" in warning
    with_track = cfg.clusters[0].model_copy(update={"track_files": True})
    assert vrrp.budget_warnings(with_track, 0, obs, 0.25) == []


# --- properties -----------------------------------------------------------------

@st.composite
def timeline(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    """A random life of the pair: cuts, heals, the master dying, lb2 put in FAULT."""
    steps = []
    for _ in range(draw(st.integers(1, 10))):
        steps.append((draw(st.sampled_from(["cut", "heal", "nothing", "fault", "backup",
                                            "master-dies"])),
                      draw(st.floats(0.1, 4.0))))
    return draw(st.floats(0.0, 0.24)), draw(st.sampled_from([0.5, 1.0])), steps


@settings(max_examples=150, deadline=None)
@given(timeline())
def test_the_rule_only_denies_a_backup_of_a_healthy_sending_master(tl) -> None:  # type: ignore[no-untyped-def]
    phase, ai, steps = tl
    d, p = exclusive(), Pair(phase=phase, advert_int=ai)
    p.run(3.0)
    dead = False
    for what, dt in steps:
        p.step(what)
        dead = dead or what == "master-dies"
        end = p.t + dt
        while p.t < end:
            p.run(min(end, p.t + 0.25))
            views = {"lb1": KeepalivedView(error="keepalived is not running")} if dead else {}
            obs = observe(p, lb1_holds=not dead, **views)
            a = d.round(*obs, at=p.at(p.t))
            ca = d.web(a)
            lb1_answer = ca.node("lb1").for_vip(VIP1)[0]
            verdict, reason = ca.node("lb2").for_vip(VIP1)
            assert lb1_answer is Verdict.ALLOW  # the holder is never denied
            assert reason
            if verdict is Verdict.DENY:
                # a deny needs a healthy holder, MASTER by keepalived's view
                assert guarded_vips(d.config.clusters[0], ClusterObservation("web", obs))
                assert not dead
            if dead:
                assert verdict is Verdict.ALLOW  # a dead master never blocks failover


@settings(max_examples=150, deadline=None)
@given(st.floats(0.0, 0.3), st.floats(0.0, 0.24), st.sampled_from([0.5, 1.0]))
def test_a_handover_is_never_seen_as_a_split(overlap, phase, ai) -> None:  # type: ignore[no-untyped-def]
    """lb2 takes over (preemption or lb1 leaving): for up to 0.3 s both hold the VIP,
    but one of them hears the other or has left MASTER, so keepalived's view never
    confirms a split, and today's confirmation span applies."""
    cfg = make_config()
    p = Pair(phase=phase, advert_int=ai)
    p.run(5.0)
    p.set_state("lb2", "MASTER")  # the new master; lb1 still MASTER for ``overlap``
    p.run(5.0 + overlap)
    obs = ClusterObservation("web", (
        replace(node("lb1", (VIP1,)), keepalived=p.view("lb1")),
        replace(node("lb2", (VIP1,)), keepalived=p.view("lb2"))))
    assert vrrp.split_by_view(cfg.clusters[0], obs, (VIP1,), {VIP1: ("lb1", "lb2")},
                              p.at(p.t), 0.25) is None


def test_a_holder_that_claimed_because_it_went_deaf_is_a_split_seen_at_once() -> None:
    cfg = make_config()
    p = Pair()
    p.run(5.0)
    p.cut = True
    p.run(8.7)  # lb2 claims after its master-down interval; lb1 is still sending
    p.set_state("lb2", "MASTER")
    p.run(8.72)  # lb2's keepalived view may still show BACKUP: its deafness is enough
    obs = ClusterObservation("web", (
        replace(node("lb1", (VIP1,)), keepalived=p.view("lb1")),
        replace(node("lb2", (VIP1,)), keepalived=p.view("lb2"))))
    why = vrrp.split_by_view(cfg.clusters[0], obs, (VIP1,), {VIP1: ("lb1", "lb2")},
                             p.at(p.t), 0.25)
    assert why is not None and why.startswith("lb2 missed 3 adverts of lb1")


def test_exclusive_rulings_never_deny_every_node() -> None:
    d, p = exclusive(), Pair()
    p.run(5.0)
    p.cut = True
    p.run(9.0)
    obs = ClusterObservation("web", observe(p))
    c = d.config.clusters[0]
    rulings, _ = exclusive_rulings(c, obs, d.history.cluster("web"), guarded_vips(c, obs),
                                   p.at(p.t), 0.25)
    assert ("lb1", VIP1) not in rulings  # the holder gets no exclusive ruling at all
    assert rulings[("lb2", VIP1)][0] is Verdict.DENY
    assert p.at(p.t) - p.at(0) > timedelta(0)
