"""Quiet ticks (issue 32): a node leaves unsent the unchanged dumps the rule cannot
use, and the exclusive rule decides on what it does send exactly as on every dump.
Pure: the node's rule is ``probe.keepalived.QuietTicks`` (the shell copies are held to
it in tests/test_keepalived_watch.py), the counters come from tests/unit/vrrp_sim.py.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from arbiter.model import KeepalivedView
from arbiter.policy import vrrp
from arbiter.probe.keepalived import ONE_INSTANCE, QuietTicks, dump_uptimes
from tests.unit.builders import VIP1
from tests.unit.test_vrrp_policy import exclusive, observe, timeline
from tests.unit.vrrp_sim import Pair

ONE = f'[{{{ONE_INSTANCE}: "VI_1", "adver_int": 1, "n": %d}}]'
TWO = f'[{{{ONE_INSTANCE}: "VI_4", "n": %d}}, {{{ONE_INSTANCE}: "VI_6"}}]'
FAST = f'[{{{ONE_INSTANCE}: "VI_1", "adver_int": 0.5, "n": %d}}]'


def sends(rule: QuietTicks, counts: list[int], text: str = ONE) -> list[str]:
    """What the node sends at each tick, in one letter: D dump, H dump carrying a held
    tick, S `@@kv-same`, . nothing."""
    out = []
    for i, n in enumerate(counts):
        r = rule.tick(text % n, float(i))
        out.append("." if r is None else "S" if r[0] == "same" else
                   "H" if r[1] is not None else "D")
    return out


def test_a_steady_cadence_sends_each_change_only() -> None:
    # advert_int 1 s, a tick every 0.25 s: the counter moves every fourth tick
    counts = [i // 4 for i in range(20)]
    assert "".join(sends(QuietTicks(3), counts)) == "DSSSD...H...H...H..."


def test_a_late_tick_is_sent_and_every_one_after_it() -> None:
    # the backup heard every fourth tick, then nothing (a VRRP cut)
    counts = [min(i // 4, 3) for i in range(24)]
    assert "".join(sends(QuietTicks(3), counts)) == "DSSSD...H...H...SSSSSSSS"


def test_the_cadence_is_learned_again_after_a_long_gap() -> None:
    # a change after 6 unchanged ticks (a state change after FAULT, say): the next gap
    # is learned before anything is held back again
    counts = [0] * 7 + [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert "".join(sends(QuietTicks(3), counts)) == "DSSSSSSDSSD..H.."


def test_nothing_is_held_without_quiet_ticks_two_instances_or_fast_adverts() -> None:
    counts = [i // 4 for i in range(16)]
    assert "." not in sends(QuietTicks(0), counts)
    assert "." not in sends(QuietTicks(3), counts, TWO)
    assert "." not in sends(QuietTicks(3), counts, FAST)
    # a VRRPv3 master's interval, as the backup learned it, counts too
    assert "." not in sends(QuietTicks(3), counts, ONE.replace(
        '"n"', '"master_adver_int": 0.25, "n"'))


def test_the_quiet_ticks_asked_for_end_before_two_adverts_could_be_missed() -> None:
    for every in (0.05, 0.1, 0.25, 0.4, 0.5, 0.8, 1.0, 5.0):
        q = vrrp.quiet_ticks(every)
        assert 0 <= q <= vrrp.QUIET_TICKS
        # the held ticks and the one that follows them, each a quarter longer
        assert (q + 1) * every * vrrp.TICK_OVERHEAD <= \
            vrrp.MISSED_TO_DENY * vrrp.QUIET_MIN_ADVERT + 1e-9 or q == 0
    assert vrrp.quiet_ticks(0.25) == 3 and vrrp.quiet_ticks(1.0) == 0


def test_an_error_forgets_the_cadence() -> None:
    rule = QuietTicks(3)
    assert "".join(sends(rule, [i // 4 for i in range(12)])) == "DSSSD...H..."
    rule.lost()  # `@@kv-error …` was sent instead of a dump
    assert rule.tick(ONE % 2, 12.0) == ("same", None)


def test_the_held_uptime_is_read_from_the_dump_line() -> None:
    assert dump_uptimes("@@kv 12345.67 12345.42") == (12345.67, 12345.42)
    assert dump_uptimes("@@kv 12345.67") == (12345.67, None)
    assert dump_uptimes("@@kv") == (None, None)
    # a held tick must come before the dump; three numbers or a word are no uptimes
    assert dump_uptimes("@@kv 12345.67 12345.67") == (12345.67, None)
    assert dump_uptimes("@@kv 1 2 3") == (None, None)
    assert dump_uptimes("@@kv 1 x") == (1.0, None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=60), st.integers(0, 9))
def test_no_more_than_quiet_ticks_in_a_row_go_unsent(steps, quiet) -> None:  # type: ignore[no-untyped-def]
    """Whatever the dumps, the node is silent for at most ``quiet`` ticks in a row, so
    a healthy stream sends every ``quiet + 1`` periods (``policy.vrrp.stale_limit``),
    and a change is always sent."""
    rule, n, run, prev = QuietTicks(quiet), 0, 0, None
    for step in steps:
        n += step
        r = rule.tick(ONE % n, 0.0)
        run = run + 1 if r is None else 0
        assert run <= quiet
        if n != prev:
            assert r is not None and r[0] == "dump"
        prev = n


@settings(max_examples=400, deadline=None)
@given(timeline(), st.sampled_from([0.4, 1.0, 1.0, 2.0]),
       st.sampled_from([0.0, 0.03, 0.1]), st.sampled_from([0.0, 0.1, 0.3]),
       st.integers(0, 2**16))
def test_quiet_ticks_never_change_a_verdict(tl, ai, jitter, loss, seed) -> None:  # type: ignore[no-untyped-def]
    """The same life of the pair (cuts, heals, FAULT, the master dying), watched with
    every dump and with quiet ticks, the dumps coming late by up to ``jitter`` and
    adverts lost on the way (the same draws in both): every round gives lb2 the same
    answer, so the deny comes exactly when it did, and is lifted exactly when it was."""
    phase, _, steps = tl
    runs = [(exclusive(), Pair(phase=phase, advert_int=ai, quiet=q, jitter=jitter,
                               loss=loss, seed=seed)) for q in (0, vrrp.quiet_ticks(0.25))]
    for _, p in runs:
        p.run(3.0)
    dead = False
    for what, dt in steps:
        for _, p in runs:
            p.step(what)
        dead = dead or what == "master-dies"
        end = runs[0][1].t + dt
        while runs[0][1].t < end:
            answers = []
            for d, p in runs:
                p.run(min(end, p.t + 0.25))
                views = {"lb1": KeepalivedView(error="keepalived is not running")} if dead else {}
                a = d.round(*observe(p, lb1_holds=not dead, **views), at=p.at(p.t))
                answers.append(d.web(a).node("lb2").for_vip(VIP1)[0])
            assert answers[0] is answers[1], (runs[0][1].t, answers)
    every, quiet = (p.nodes["lb2"].sent_messages + p.nodes["lb1"].sent_messages
                    for _, p in runs)
    assert quiet <= every


def test_a_steady_pair_sends_a_quarter_of_the_messages() -> None:
    """The saving: at advert_int 1 and a dump every 0.25 s, one message per advert."""
    counted = []
    for q in (0, 3):
        p = Pair(quiet=q)
        p.run(60.0)
        counted.append(sum(n.sent_messages for n in p.nodes.values()))
    every, quiet = counted
    assert every > 400 and quiet <= every / 3.5, counted


def test_a_quiet_stream_is_fresh_for_its_silence() -> None:
    # the longest silence of a healthy node, with its longest ticks, must never make
    # its view stale
    for every in (0.05, 0.25, 0.5, 1.0):
        silence = (vrrp.quiet_ticks(every) + 1) * every * vrrp.TICK_OVERHEAD
        assert vrrp.stale_limit(every) >= silence + 0.5


def _answers(quiet: int, ai: float, phase: float, lost_at: float, cut_at: float) -> list[str]:
    """lb2's answer every 50 ms from 3 s to 10 s: one advert lost at ``lost_at``, then
    every advert from ``cut_at`` on (a VRRP cut)."""
    d, p = exclusive(), Pair(phase=phase, advert_int=ai, quiet=quiet)
    out, t = [], 0.0
    while t < 10.0:
        t = round(t + 0.05, 6)
        p.loss = 1.0 if lost_at <= t < lost_at + ai else 0.0
        p.cut = t >= cut_at
        p.run(t)
        if t > 3:
            out.append(d.web(d.round(*observe(p), at=p.at(p.t))).node("lb2")
                       .for_vip(VIP1)[0].value)
    return out


def test_a_gap_learned_across_a_lost_advert_never_delays_a_deny() -> None:
    """Found while building this: at advert_int 0.4 a gap learned across one lost
    advert let 3 ticks go unsent past the second missed advert, and the deny came one
    tick late (at 5.4 s here). A dump with an advert interval under 1 s is never held
    back now; at 1 s and more, the cap on quiet ticks ends them in time."""
    for ai, phase, lost_at, cut_at in [(0.4, 0.13, 3.65, 4.5), (0.4, 0.13, 3.7, 4.55),
                                       (1.0, 0.13, 3.65, 4.9), (1.0, 0.0, 3.05, 4.2)]:
        every = _answers(0, ai, phase, lost_at, cut_at)
        assert "deny" in every
        assert _answers(vrrp.quiet_ticks(0.25), ai, phase, lost_at, cut_at) == every
