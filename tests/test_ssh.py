"""SSH collection and fencing against real asyncssh servers on 127.0.0.x."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import asyncssh
import pytest

from arbiter.model import FenceMethod, FencePlan, VictimAction
from arbiter.probe.collect import collect_command, parse_collect
from arbiter.probe.ssh import SshPool, Target
from arbiter.round.acts.fence_levels import FenceContext, execute
from arbiter.sim.node import SimSite
from arbiter.sim.scenario import GATEWAY, VIP1
from arbiter.store.repository import AttemptRecord
from tests.conftest import write_config


def pool_for(site: SimSite, known_hosts: Path | None = None) -> SshPool:
    return SshPool([str(site.key_path)], str(known_hosts or site.known_hosts_path), 2.0)


def target(site: SimSite, name: str) -> Target:
    return Target(name, site.state(name).address, site.port, "root")


async def test_collect_reads_addresses_keepalived_and_gateway_view(site: SimSite) -> None:
    site.state("lb2").gateways[GATEWAY] = False
    site.state("lb2").add("lo", VIP1, 32)  # LVS-DR style
    pool = pool_for(site)
    try:
        cmd = collect_command([GATEWAY, "127.0.0.2"], 1.0)
        r1 = await pool.run(target(site, "lb1"), cmd, 3.0)
        r2 = await pool.run(target(site, "lb2"), cmd, 3.0)
    finally:
        await pool.close()
    assert r1.ok and r1.exit_status == 0, r1.error
    f1, f2 = parse_collect(r1.stdout, [GATEWAY, "127.0.0.2"]), parse_collect(r2.stdout, [GATEWAY])
    assert {a.address for a in f1.addresses if not a.is_loopback} == {"127.0.0.11", VIP1}
    assert f1.keepalived_running is True
    assert f1.gateways == ((GATEWAY, True), ("127.0.0.2", False))
    assert f2.gateways == ((GATEWAY, False),)
    lo_vip = [a for a in f2.addresses if a.address == VIP1]
    assert lo_vip and lo_vip[0].is_loopback


async def test_connection_is_persistent(site: SimSite) -> None:
    pool = pool_for(site)
    try:
        for _ in range(5):
            r = await pool.run(target(site, "lb1"), collect_command([], 1.0), 3.0)
            assert r.ok
        assert site.nodes["lb1"].connections == 1
    finally:
        await pool.close()


async def test_unknown_host_key_is_refused(site: SimSite, tmp_path: Path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()
    kh = tmp_path / "wrong_known_hosts"
    kh.write_text(f"[127.0.0.11]:{site.port} {other}")
    pool = pool_for(site, kh)
    try:
        r = await pool.run(target(site, "lb1"), "true", 3.0)
        r2 = await pool.run(target(site, "lb2"), "true", 3.0)  # not listed at all
    finally:
        await pool.close()
    assert not r.ok and "host key not verifiable" in (r.error or "")
    assert not r2.ok and "host key not verifiable" in (r2.error or "")
    assert site.state("lb1").commands == []  # nothing ran on an unverified host


async def test_sshd_down_is_a_value_not_an_exception(site: SimSite) -> None:
    await site.stop_node("lb2")
    pool = pool_for(site)
    try:
        r = await pool.run(target(site, "lb2"), "true", 3.0)
    finally:
        await pool.close()
    assert not r.ok and r.exit_status is None
    assert "connect failed" in (r.error or "")


async def test_hung_command_times_out(site: SimSite) -> None:
    site.state("lb1").hang = True
    pool = pool_for(site)
    try:
        r = await pool.run(target(site, "lb1"), "true", 0.5)
    finally:
        await pool.close()
    assert not r.ok and "timed out after 0.5s" in (r.error or "")


async def test_a_timeout_does_not_cut_off_another_command_on_the_connection(
        site: SimSite, caplog: pytest.LogCaptureFixture) -> None:
    """After a stall of the arbiter every timeout in flight fires at once: a track file
    write timing out must not kill the fence command that has just started on the same
    connection (seen in CI: the fence failed with "SSH connection closed")."""
    caplog.set_level(logging.INFO, "arbiter.probe.ssh")
    st = site.state("lb2")
    st.latency = 0.6
    pool = pool_for(site)
    t = target(site, "lb2")
    try:
        first = asyncio.create_task(pool.run(t, "true", 0.2))
        await asyncio.sleep(0.05)
        fence = await pool.run(t, st.fence_command, 3.0)  # runs while the first times out
        timed_out = await first
        assert site.nodes["lb2"].connections == 1
        # alone on its connection, a timeout still closes it: the next command reconnects
        alone = await pool.run(t, "true", 0.2)
        again = await pool.run(t, "true", 3.0)
    finally:
        await pool.close()
    assert not timed_out.ok and "timed out after 0.2s" in (timed_out.error or "")
    assert fence.ok and fence.exit_status == 0 and not st.keepalived_running
    assert not alone.ok and again.ok
    connects = [r for r in caplog.records if r.getMessage().startswith("ssh connected to lb2")]
    assert len(connects) == 2


async def test_a_session_timeout_does_not_cut_off_a_command_on_the_connection(
        site: SimSite) -> None:
    st = site.state("lb2")
    st.latency = 0.6
    pool = pool_for(site)
    t = target(site, "lb2")
    try:
        collect = asyncio.create_task(pool.run_in_session(t, collect_command([], 1.0), 0.2))
        await asyncio.sleep(0.05)
        fence = await pool.run(t, st.fence_command, 3.0)
        timed_out = await collect
        st.latency = 0.0
        after = await pool.run_in_session(t, collect_command([], 1.0), 3.0)  # a new shell
        assert site.nodes["lb2"].connections == 1  # the one the fence ran on
    finally:
        await pool.close()
    assert not timed_out.ok and "timed out" in (timed_out.error or "")
    assert fence.ok and fence.exit_status == 0
    assert after.ok and parse_collect(after.stdout, []).keepalived_running is False


async def _fence(site: SimSite, tmp_path: Path, method: FenceMethod) -> list[AttemptRecord]:
    cfg = write_config(site, tmp_path, fence_verify_timeout=1.0)
    cluster = cfg.clusters[0]
    order = FencePlan(
        cluster="web", survivor="lb1",
        victims=(VictimAction("lb2", method, (VIP1,)),), vips=(VIP1,), reason="test",
    )
    recs: list[AttemptRecord] = []

    async def record(r: AttemptRecord) -> None:
        recs.append(r)

    pool = pool_for(site)
    try:
        outcome = await execute(FenceContext(cfg, cluster, pool, record), order)
    finally:
        await pool.close()
    recs.append(AttemptRecord("outcome", "outcome", outcome.summary, outcome.ok, None, "",
                              None, datetime.now(UTC), datetime.now(UTC)))
    return recs


async def test_fence_stops_keepalived_and_verifies(site: SimSite, tmp_path: Path) -> None:
    site.state("lb2").add("eth0", VIP1, 24)
    recs = await _fence(site, tmp_path, FenceMethod.STOP_KEEPALIVED)
    assert [r.step for r in recs] == ["fence_command", "verify", "outcome"]
    assert all(r.ok for r in recs)
    assert recs[0].command == "systemctl stop keepalived" and recs[0].exit_status == 0
    assert not site.state("lb2").keepalived_running
    assert not site.state("lb2").holds(VIP1)
    assert site.state("lb1").holds(VIP1) and site.state("lb1").keepalived_running
    assert "systemctl stop keepalived" not in site.state("lb1").commands


async def test_fence_escalates_to_ip_addr_del(site: SimSite, tmp_path: Path) -> None:
    s = site.state("lb2")
    s.add("eth0", VIP1, 24)
    s.release_vips_on_stop = False  # like keepalived killed with -9: the VIP stays
    recs = await _fence(site, tmp_path, FenceMethod.STOP_KEEPALIVED)
    steps = [(r.step, r.ok) for r in recs]
    assert steps == [("fence_command", True), ("verify", False), ("escalate", True),
                     ("verify", True), ("outcome", True)]
    assert recs[2].command == f"ip addr del {VIP1}/24 dev eth0"
    assert not s.holds(VIP1)


async def test_stale_vip_is_removed_without_stopping_anything(
    site: SimSite, tmp_path: Path
) -> None:
    s = site.state("lb2")
    s.add("eth0", VIP1, 24)
    s.keepalived_running = False
    recs = await _fence(site, tmp_path, FenceMethod.REMOVE_ADDRESS)
    assert [r.step for r in recs] == ["remove_address", "verify", "outcome"]
    assert recs[-1].ok and not s.holds(VIP1)
    assert "systemctl stop keepalived" not in s.commands


async def test_fence_against_dead_sshd_fails_cleanly(site: SimSite, tmp_path: Path) -> None:
    await site.stop_node("lb2")
    recs = await _fence(site, tmp_path, FenceMethod.STOP_KEEPALIVED)
    # each level tried and recorded with its level: ssh cannot run the stop, vip-del
    # cannot read the addresses; the fence failed at every level
    assert [(r.step, r.level) for r in recs] == [
        ("fence_command", "ssh"), ("escalate", "vip-del"), ("outcome", None)]
    assert not recs[0].ok and "connect failed" in (recs[0].error or "")
    assert "could not read addresses" in (recs[1].error or "")
    assert not recs[-1].ok and "failed at every level (lb2: ssh/vip-del)" in recs[-1].command


@pytest.mark.parametrize("bad", ["", "@@addr\nnot json\n@@keepalived\nrunning\n@@gw\n@@end\n"])
def test_parse_rejects_garbage(bad: str) -> None:
    from arbiter.probe.collect import CollectParseError

    with pytest.raises(CollectParseError):
        parse_collect(bad, [])


async def test_collect_session_reuses_one_shell_and_gives_the_same_facts(site: SimSite) -> None:
    pool = pool_for(site)
    try:
        cmd = collect_command([GATEWAY], 1.0, ["127.0.0.12"])
        plain = await pool.run(target(site, "lb1"), cmd, 3.0)
        sessions = [await pool.run_in_session(target(site, "lb1"), cmd, 3.0) for _ in range(3)]
        site.state("lb1").add("eth0", "10.1.1.1", 24)  # state changes show up in the session
        after = await pool.run_in_session(target(site, "lb1"), cmd, 3.0)
        assert site.nodes["lb1"].connections == 1
    finally:
        await pool.close()
    assert all(r.ok and r.exit_status == 0 for r in sessions)
    f0 = parse_collect(plain.stdout, [GATEWAY], ["127.0.0.12"])
    assert all(parse_collect(r.stdout, [GATEWAY], ["127.0.0.12"]) == f0 for r in sessions)
    assert any(a.address == "10.1.1.1" for a in parse_collect(after.stdout, [GATEWAY]).addresses)
    assert site.nodes["lb1"].sessions_opened == 1  # four collects, one shell


async def test_collect_session_falls_back_where_refused(site: SimSite) -> None:
    site.nodes["lb2"].session_refused = True
    pool = pool_for(site)
    try:
        cmd = collect_command([GATEWAY], 1.0)
        r = await pool.run_in_session(target(site, "lb2"), cmd, 3.0)
        r2 = await pool.run_in_session(target(site, "lb2"), cmd, 3.0)
    finally:
        await pool.close()
    assert r.ok and r2.ok and "@@end" in r.stdout and "@@end" in r2.stdout
    assert pool.sessionless() == {("lb2", site.state("lb2").address)}


@pytest.mark.parametrize("shell", [["dash"], ["busybox", "sh"], ["bash", "--posix"]])
def test_session_line_in_a_real_shell(shell: list[str]) -> None:
    """What a director's long-lived `sh` makes of the lines run_in_session writes: the
    output, then the marker with the exit status, in that order, line after line."""
    import shutil
    import subprocess

    from arbiter.probe.ssh import session_line

    if not shutil.which(shell[0]):
        pytest.fail(f"{shell[0]} is not installed (bash deploy/bootstrap.sh --test)")
    done = "@@arbiter-done 42"
    script = (session_line("echo 'a  b'; echo; echo c", done)
              + session_line("echo partial; false", done)
              + session_line("true", done))
    p = subprocess.run(shell, input=script, capture_output=True, text=True, timeout=10)
    assert p.stdout == f"a  b\n\nc\n{done} 0\npartial\n{done} 1\n\n{done} 0\n"
