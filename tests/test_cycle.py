"""The round loop end to end against simulated SSH directors and a real database."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from arbiter.model import IncidentState, Verdict
from arbiter.probe.icmp import PingResult
from arbiter.probe.ssh import CommandResult, Target
from arbiter.round.service import Arbiter
from arbiter.sim.node import SimSite
from arbiter.sim.scenario import GATEWAY, VIP1


async def rounds(arb: Arbiter, n: int, gap: float = 0.0) -> None:
    for _ in range(n):
        await arb.run_round()
        await arb.wait_fences()
        await asyncio.sleep(gap)


def set_ssh(arb: Arbiter, **ssh: object) -> None:
    """Change [ssh] settings of a built arbiter (its config is immutable: replace it)."""
    arb.config = arb.config.model_copy(update={"ssh": arb.config.ssh.model_copy(update=ssh)})


def incidents(arb: Arbiter) -> list[dict]:
    items, _ = arb.repo.list_incidents(limit=500)
    return items


async def test_healthy_pair_no_incident(site: SimSite, make_arbiter) -> None:
    arb = await make_arbiter(site)
    try:
        await rounds(arb, 3)
    finally:
        await arb.close()
    ca = arb.view.assessment.cluster("web")
    assert dict(ca.holders)[VIP1] == ("lb1",)
    assert [n.verdict for n in ca.nodes] == [Verdict.ALLOW, Verdict.ALLOW]
    assert incidents(arb) == []


@dataclass
class Spy:
    """Wraps the real SSH pool; at the moment a fence command goes out it reads
    the database to prove the decision was committed first."""

    inner: object
    arb: Arbiter | None = None
    seen_state_at_fence: str | None = None
    seen_hold_at_fence: list | None = None

    async def run(self, target: Target, command: str, timeout: float) -> CommandResult:
        if command == "systemctl stop keepalived" and self.arb is not None:
            inc = incidents(self.arb)[0]
            self.seen_state_at_fence = f"{inc['state']}:{inc['survivor']}:{inc['victims']}"
            with self.arb.repo.engine.connect() as c:
                self.seen_hold_at_fence = c.execute(
                    text("SELECT pending_hold FROM incidents")).scalar_one()
        return await self.inner.run(target, command, timeout)  # type: ignore[attr-defined]

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)  # everything else: the real pool


async def test_split_brain_is_recorded_then_fenced(site: SimSite, make_arbiter) -> None:
    spy: Spy | None = None

    def wrap(pool):  # type: ignore[no-untyped-def]
        nonlocal spy
        spy = Spy(pool)
        return spy

    arb = await make_arbiter(site, runner_wrapper=wrap)
    assert spy is not None
    spy.arb = arb
    try:
        await rounds(arb, 1)  # learn the incumbent
        site.state("lb2").add("eth0", VIP1, 24)  # VRRP cut: lb2 claims the VIP too
        await rounds(arb, 1)
        assert incidents(arb)[0]["state"] == "open"
        assert "systemctl stop keepalived" not in site.state("lb2").commands  # one round: no act
        await rounds(arb, 2)
    finally:
        await arb.close()
    assert spy.seen_state_at_fence == "fencing:lb1:['lb2']"
    # the hold it is about to create is on record before the command goes out
    assert spy.seen_hold_at_fence in (["lb2"], '["lb2"]')
    (inc,) = incidents(arb)
    full = arb.repo.get_incident(inc["id"])
    assert full["state"] == "fenced" and full["survivor"] == "lb1"
    assert [(a["node"], a["step"]) for a in full["fence_attempts"]] == [
        ("lb2", "fence_command"), ("lb2", "verify"), ("lb1", "announce")]
    assert full["fence_attempts"][2]["command"] == f"arping -q -U -c 2 -I eth0 {VIP1}"
    assert full["evidence"]["holders"] == {VIP1: ["lb1", "lb2"]}
    assert "incumbent" in full["decision"]["reason"]
    assert not site.state("lb2").holds(VIP1) and not site.state("lb2").keepalived_running
    assert site.state("lb1").holds(VIP1) and site.state("lb1").keepalived_running
    lb2 = arb.view.assessment.cluster("web").node("lb2")
    assert lb2.verdict is Verdict.DENY


async def test_victim_sshd_down_fence_fails_and_survivor_untouched(
    site: SimSite, make_arbiter
) -> None:
    arb = await make_arbiter(site, fence_retry_after=0.1, max_fence_attempts=2,
                             confirm_rounds=3)
    try:
        await rounds(arb, 1)
        site.state("lb2").add("eth0", VIP1, 24)
        await rounds(arb, 1)
        await site.stop_node("lb2")  # sshd dies; lb2 still answers ICMP (degraded)
        await rounds(arb, 6, gap=0.15)
    finally:
        await arb.close()
    (inc,) = incidents(arb)
    full = arb.repo.get_incident(inc["id"])
    assert full["state"] == "fence_failed"
    assert full["attempts"] == 2
    steps = full["fence_attempts"]
    assert steps and all(a["node"] == "lb2" and not a["ok"] for a in steps)
    assert all("connect failed" in a["error"] for a in steps)
    assert site.state("lb1").keepalived_running and site.state("lb1").holds(VIP1)
    assert not any(c == "systemctl stop keepalived" or c.startswith("ip addr del")
                   for c in site.state("lb1").commands)
    st = arb.view.snapshot.cluster("web").node("lb2")
    assert st.health.value == "degraded" and st.carried_forward


async def test_restart_keeps_incident_and_never_fences_twice(
    site: SimSite, make_arbiter
) -> None:
    arb = await make_arbiter(site, resolve_rounds=50)
    try:
        await rounds(arb, 1)
        site.state("lb2").add("eth0", VIP1, 24)
        await rounds(arb, 3)
    finally:
        await arb.close()
    (inc,) = incidents(arb)
    assert inc["state"] == "fenced"
    before = len(arb.repo.get_incident(inc["id"])["fence_attempts"])
    # The split comes back while the arbiter is "down" (keepalived restarted by hand).
    s = site.state("lb2")
    s.keepalived_running = True
    s.add("eth0", VIP1, 24)
    arb2 = await make_arbiter(site, resolve_rounds=50)
    try:
        await rounds(arb2, 5)
    finally:
        await arb2.close()
    assert [i["id"] for i in incidents(arb2)] == [inc["id"]]
    after = arb2.repo.get_incident(inc["id"])
    assert len(after["fence_attempts"]) == before
    assert "not fencing twice" in arb2.view.assessment.cluster("web").reason


async def test_db_failure_is_visible_and_blocks_acting(site: SimSite, make_arbiter) -> None:
    arb = await make_arbiter(site)
    try:
        await rounds(arb, 1)
        with arb.repo.engine.begin() as c:  # a real failure: the table is gone
            c.execute(text("ALTER TABLE incidents RENAME TO incidents_gone"))
        site.state("lb2").add("eth0", VIP1, 24)
        await rounds(arb, 4)
        assert arb.view.db_error and "incidents" in arb.view.db_error
        assert "systemctl stop keepalived" not in site.state("lb2").commands
        assert arb.history.cluster("web").incident is None
        with arb.repo.engine.begin() as c:
            c.execute(text("ALTER TABLE incidents_gone RENAME TO incidents"))
        await rounds(arb, 3)
    finally:
        await arb.close()
    assert arb.view.db_error is None
    assert incidents(arb)[0]["state"] == "fenced"


class IsolatedPinger:
    """Real ICMP for the nodes; the arbiter's own gateway is made to fail."""

    def __init__(self, inner):  # type: ignore[no-untyped-def]
        self.inner = inner

    async def ping_many(self, addresses: list[str], timeout: float) -> dict[str, PingResult]:
        res = await self.inner.ping_many(addresses, timeout)
        res[GATEWAY] = PingResult(False, None, "no echo reply")
        return res


async def test_isolated_arbiter_abstains(site: SimSite, make_arbiter) -> None:
    arb = await make_arbiter(site, pinger_wrapper=IsolatedPinger)
    try:
        site.state("lb2").add("eth0", VIP1, 24)
        await rounds(arb, 4)
    finally:
        await arb.close()
    kinds = [(i["kind"], i["state"]) for i in incidents(arb)]
    assert kinds == [("arbiter_isolated", "open")]
    assert "systemctl stop keepalived" not in site.state("lb2").commands
    assert all(n.verdict is Verdict.ABSTAIN for n in arb.view.assessment.cluster("web").nodes)


async def test_tilt_suspends_fencing(site: SimSite, make_arbiter) -> None:
    """A stalled loop, told to the scheduler with fake monotonic and wall times: the
    round after it starts 12 s late, and fencing stays suspended."""
    arb = await make_arbiter(site)
    try:
        await rounds(arb, 1)
        arb.scheduler.round_starts(100.0, 5000.0, arb.clock())
        arb.scheduler.round_ends(100.0, 100.1)  # next round due at 101.0 ...
        reason = arb.scheduler.round_starts(113.0, 5013.0, arb.clock())  # ... starts 12 s late
        assert reason is not None and "12.0s late" in reason
        site.state("lb2").add("eth0", VIP1, 24)
        await rounds(arb, 4)
    finally:
        await arb.close()
    assert "systemctl stop keepalived" not in site.state("lb2").commands
    assert arb.view.assessment.abstain_reason.startswith("TILT")


async def test_loop_runs_rounds_without_overlap_and_stops(site: SimSite, make_arbiter) -> None:
    arb = await make_arbiter(site)
    stop = asyncio.Event()
    task = asyncio.create_task(arb.run_forever(stop))
    try:
        await asyncio.sleep(0.3)
        assert arb.view.stats.count >= 1
        arb.wake()  # an early round on request
        await asyncio.sleep(0.3)
        assert arb.view.stats.count >= 2
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await arb.close()
    assert arb.view.last_error is None


async def test_resolution_after_clean_rounds(site: SimSite, make_arbiter) -> None:
    arb = await make_arbiter(site, resolve_rounds=2, interval=0.3)
    try:
        await rounds(arb, 1)
        site.state("lb2").add("eth0", VIP1, 24)
        await rounds(arb, 1)
        site.state("lb2").remove(VIP1)  # gone after one round: no fence
        await rounds(arb, 4)  # back to back, as rounds woken by events come
        # resolution spans time too: (resolve_rounds - 1) x interval of clean rounds
        assert arb.history.cluster("web").incident is not None
        await asyncio.sleep(0.35)
        await rounds(arb, 1)
    finally:
        await arb.close()
    (inc,) = incidents(arb)
    assert inc["state"] == IncidentState.RESOLVED.value and inc["resolved_at"]
    assert inc["attempts"] == 0


async def test_push_detects_within_a_round_and_fences_at_confirm_after(
    site: SimSite, make_arbiter
) -> None:
    """interval 10 s: only the address watch can explain a detection in milliseconds,
    and only the confirmation deadline round a fence at confirm_after."""
    import time

    arb = await make_arbiter(site, interval=10.0, confirm_after=0.4, push=True)
    stop = asyncio.Event()
    task = asyncio.create_task(arb.run_forever(stop))
    try:
        for _ in range(100):  # first round done, both watchers attached
            if arb.view.stats.count >= 1 and arb.push.up == 2:
                break
            await asyncio.sleep(0.05)
        assert arb.push.up == 2
        t0 = time.monotonic()
        site.state("lb2").add("eth0", VIP1, 24)
        while not incidents(arb) and time.monotonic() - t0 < 3:  # noqa: ASYNC110 - polling the DB
            await asyncio.sleep(0.005)
        detected = time.monotonic() - t0
        while site.state("lb2").holds(VIP1) and time.monotonic() - t0 < 5:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        window = time.monotonic() - t0
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await arb.close()
    print(f"\npush: detected after {detected * 1000:.0f} ms, one holder after {window:.2f}s")
    assert detected < 1.0  # scheduled rounds are 10 s apart
    assert 0.4 <= window < 2.0  # not before confirm_after, and not at the next interval
    assert arb.push.events >= 1
    full = arb.repo.get_incident(incidents(arb)[0]["id"])
    assert full["state"] in ("fenced", "fencing")
    assert arb.push.up == 0  # watchers stop with the loop


async def test_confirm_after_needs_two_observations_and_the_time(
    site: SimSite, make_arbiter
) -> None:
    arb = await make_arbiter(site, confirm_after=0.3, push=False)
    try:
        await rounds(arb, 1)
        site.state("lb2").add("eth0", VIP1, 24)
        await rounds(arb, 3)  # three observations within a few ms: not yet 0.3 s
        assert "systemctl stop keepalived" not in site.state("lb2").commands
        assert "0.3s" in arb.view.assessment.cluster("web").reason
        await asyncio.sleep(0.35)
        await rounds(arb, 1)
    finally:
        await arb.close()
    assert "systemctl stop keepalived" in site.state("lb2").commands


@pytest.mark.parametrize("session", [True, False])
async def test_rounds_with_and_without_collect_session(site: SimSite, make_arbiter,
                                                       session: bool) -> None:
    """The same detection and fence with one long-lived shell per node for collects
    (the default) and with a channel per round."""
    arb = await make_arbiter(site, tokens={})
    assert arb.config.ssh.collect_session is True  # the default
    set_ssh(arb, collect_session=session)
    try:
        await rounds(arb, 2)
        site.state("lb2").add("eth0", VIP1, 24)
        await rounds(arb, 3)
    finally:
        await arb.close()
    opened = 1 if session else 0
    assert site.nodes["lb1"].sessions_opened == opened
    assert site.nodes["lb2"].sessions_opened == opened
    (inc,) = incidents(arb)
    assert inc["state"] == "fenced" and inc["victims"] == ["lb2"]
    assert not site.state("lb2").holds(VIP1)


@pytest.mark.parametrize("session", [True, False])
async def test_failing_collect_reports_the_nodes_message(site: SimSite, make_arbiter,
                                                         session: bool) -> None:
    """A session discards stderr, so a failing collect is asked once more on a channel:
    the operator sees the node's own message either way."""
    arb = await make_arbiter(site)
    set_ssh(arb, collect_session=session)
    site.state("lb2").collect_error = "sudo: a password is required"
    try:
        await rounds(arb, 1)
    finally:
        await arb.close()
    lb2 = arb.view.snapshot.cluster("web").node("lb2")
    assert not lb2.ssh_ok
    assert lb2.ssh_error == "collect exited 1: sudo: a password is required"
    lb1 = arb.view.snapshot.cluster("web").node("lb1")
    assert lb1.ssh_ok and lb1.ssh_error is None


async def test_restart_mid_split_keeps_the_incumbent(site: SimSite, make_arbiter) -> None:
    """lb2 (priority 90) holds the VIP alone, so it is the incumbent; lb1 (priority 100)
    claims it too, and the arbiter restarts after the incident opens, before any fence.
    The restarted arbiter still keeps the incumbent (rule 4 before priority)."""
    site.state("lb1").remove(VIP1)
    site.state("lb2").add("eth0", VIP1, 24)
    arb = await make_arbiter(site)
    await rounds(arb, 1)
    site.state("lb1").add("eth0", VIP1, 24)
    await rounds(arb, 1)
    assert incidents(arb)[0]["state"] == "open"
    await arb.close()
    arb2 = await make_arbiter(site)
    await rounds(arb2, 3)
    (inc,) = incidents(arb2)
    assert (inc["survivor"], inc["victims"]) == ("lb2", ["lb1"])
    assert "incumbent" in arb2.repo.get_incident(inc["id"])["decision"]["reason"]
    assert site.state("lb2").holds(VIP1) and not site.state("lb1").holds(VIP1)


async def test_rounds_woken_early_do_not_confirm_before_the_minimum_span(
    site: SimSite, make_arbiter
) -> None:
    """The default confirm_min_span (0.5 s): three observations 50 ms apart, as push
    events and notify POSTs can wake them, are not a confirmed split brain."""
    arb = await make_arbiter(site, confirm_min_span=0.5)
    await rounds(arb, 1)
    site.state("lb2").add("eth0", VIP1, 24)
    await rounds(arb, 3, gap=0.05)
    assert "systemctl stop keepalived" not in site.state("lb2").commands
    assert "of 0.5s" in arb.view.assessment.cluster("web").reason
    await asyncio.sleep(0.5)
    await rounds(arb, 1)
    assert "systemctl stop keepalived" in site.state("lb2").commands


async def test_a_split_the_guards_refuse_does_not_make_the_loop_spin(
    site: SimSite, make_arbiter
) -> None:
    """lb1 runs keepalived but is gateway-blind, lb2's keepalived is dead but it sees
    the gateway: the guard refuses to fence lb2, and the split stays open. Its
    confirmation deadline has passed; the loop must go back to its interval."""
    import time

    lb1, lb2 = site.state("lb1"), site.state("lb2")
    lb1.gateways = {g: False for g in lb1.gateways}
    lb2.keepalived_running = False
    lb2.add("eth0", VIP1, 24)
    arb = await make_arbiter(site, interval=0.5, confirm_after=0.2, push=False)
    stop = asyncio.Event()
    task = asyncio.create_task(arb.run_forever(stop))
    try:
        await asyncio.sleep(1.5)  # the split confirmed, the fence refused
        n0, t0 = arb.view.stats.count, time.monotonic()
        await asyncio.sleep(2.0)
        rounds_per_s = (arb.view.stats.count - n0) / (time.monotonic() - t0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    reason = arb.view.assessment.cluster("web").reason
    print(f"\n{rounds_per_s:.1f} rounds/s while the fence is refused: {reason}")
    assert "only node that still sees a gateway" in reason
    assert rounds_per_s <= 3.0  # the 0.5 s interval (2 a second), not a spin (190 before)
