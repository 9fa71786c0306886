"""Fencing levels against real asyncssh directors and a real fence-agent script on
this host: the order, the stdin protocol, the verification, and the refusals."""

from __future__ import annotations

from pathlib import Path

from arbiter.model import FenceMethod, FencePlan, VictimAction
from arbiter.round.acts.fence_levels import FenceContext, agent_recover, execute
from arbiter.sim.node import SimSite
from arbiter.sim.scenario import VIP1
from arbiter.store.repository import AttemptRecord
from tests.conftest import write_config
from tests.test_ssh import pool_for

PLAN = FencePlan(cluster="web", survivor="lb1",
                 victims=(VictimAction("lb2", FenceMethod.STOP_KEEPALIVED, (VIP1,)),),
                 vips=(VIP1,), reason="test")


def agent_script(tmp_path: Path, sleep: float = 0) -> Path:
    """A fence agent as fence-agents are: key=value on stdin, the answer in the exit
    code (status: 0 on, 2 off). It keeps every call's stdin, and 'power' in a file."""
    p = tmp_path / "fence_test"
    p.write_text(f"""#!/bin/sh
input=$(cat)
printf '%s\\n---\\n' "$input" >> {tmp_path}/agent.calls
sleep {sleep}
case "$input" in
  *action=off*) touch {tmp_path}/off; exit 0;;
  *action=on*) rm -f {tmp_path}/off; exit 0;;
  *action=status*) [ -e {tmp_path}/off ] && exit 2; exit 0;;
esac
exit 1
""")
    p.chmod(0o755)
    return p


def calls(tmp_path: Path) -> list[str]:
    f = tmp_path / "agent.calls"
    return [c.strip() for c in f.read_text().split("---")[:-1]] if f.exists() else []


async def fence(site: SimSite, tmp_path: Path, levels: list[str], agent: Path | None,
                abstaining: str | None = None, plan: FencePlan = PLAN,
                **cluster: object) -> tuple[list[AttemptRecord], object]:
    """Run one fence with these levels; ``cluster``: more cluster settings."""
    cfg = write_config(site, tmp_path, fence_verify_timeout=1.0)
    c = cfg.clusters[0]
    c = c.model_copy(update={
        "fence_levels": levels, "fence_agent": str(agent) if agent else None,
        "fence_agent_options": {"ip": "10.9.9.9", "password": "s3cret"},
        "fence_agent_timeout": 2.0, **cluster})
    recs: list[AttemptRecord] = []

    async def record(r: AttemptRecord) -> None:
        recs.append(r)

    pool = pool_for(site)
    try:
        report = await execute(FenceContext(cfg, c, pool, record,
                                            abstaining=lambda: abstaining), plan)
    finally:
        await pool.close()
    return recs, report


async def test_a_dead_sshd_falls_through_to_the_agent(site: SimSite, tmp_path: Path) -> None:
    site.state("lb2").add("eth0", VIP1, 24)
    await site.stop_node("lb2")
    recs, report = await fence(site, tmp_path, ["ssh", "vip-del", "agent"],
                               agent_script(tmp_path))
    assert report.ok and report.held == ("lb2",), report  # type: ignore[attr-defined]
    assert "lb2 by agent" in report.summary  # type: ignore[attr-defined]
    assert [(r.level, r.step, r.ok) for r in recs] == [
        ("ssh", "fence_command", False), ("vip-del", "escalate", False),
        ("agent", "agent_off", True), ("agent", "agent_status", True)]
    # the fence-agents protocol on stdin; the secret reached the agent, not the record
    (off, status) = calls(tmp_path)
    assert off.splitlines()[:2] == ["action=off", "nodename=lb2"]
    assert "ip=10.9.9.9" in off and "password=s3cret" in off
    assert status.startswith("action=status")
    assert "password=***" in recs[2].command and "s3cret" not in recs[2].command


async def test_every_level_failing_is_a_failed_fence(site: SimSite, tmp_path: Path) -> None:
    await site.stop_node("lb2")
    agent = tmp_path / "fence_broken"
    agent.write_text("#!/bin/sh\ncat >/dev/null\necho 'IPMI: connection timed out'\nexit 1\n")
    agent.chmod(0o755)
    recs, report = await fence(site, tmp_path, ["ssh", "agent"], agent)
    assert not report.ok  # type: ignore[attr-defined]
    assert "failed at every level (lb2: ssh/agent)" in report.summary  # type: ignore[attr-defined]
    assert recs[-1].step == "agent_off" and "IPMI: connection timed out" in recs[-1].output


async def test_no_agent_while_the_arbiter_abstains(site: SimSite, tmp_path: Path) -> None:
    await site.stop_node("lb2")
    recs, report = await fence(site, tmp_path, ["agent"], agent_script(tmp_path),
                               abstaining="isolated: no gateway answers")
    assert not report.ok and calls(tmp_path) == []  # type: ignore[attr-defined]
    assert "refused: the arbiter abstains" in (recs[-1].error or "")


async def test_never_an_agent_against_the_survivor(site: SimSite, tmp_path: Path) -> None:
    bad = FencePlan(cluster="web", survivor="lb2",
                    victims=(VictimAction("lb2", FenceMethod.STOP_KEEPALIVED, (VIP1,)),),
                    vips=(VIP1,), reason="a broken plan")
    recs, report = await fence(site, tmp_path, ["agent"], agent_script(tmp_path), plan=bad)
    assert not report.ok and calls(tmp_path) == []  # type: ignore[attr-defined]
    assert "refused: the survivor" in (recs[-1].error or "")


async def test_an_agent_that_hangs_is_killed_at_its_timeout(site: SimSite,
                                                             tmp_path: Path) -> None:
    await site.stop_node("lb2")
    recs, report = await fence(site, tmp_path, ["agent"], agent_script(tmp_path, sleep=30))
    assert not report.ok  # type: ignore[attr-defined]
    assert "did not finish within 2s" in (recs[-1].error or "")
    assert recs[-1].duration_ms < 10_000


async def test_release_powers_an_agent_fenced_node_on(site: SimSite, tmp_path: Path) -> None:
    agent = agent_script(tmp_path)
    cfg = write_config(site, tmp_path)
    c = cfg.clusters[0].model_copy(update={"fence_levels": ["agent"],
                                           "fence_agent": str(agent)})
    recs: list[AttemptRecord] = []

    async def record(r: AttemptRecord) -> None:
        recs.append(r)

    assert await agent_recover(c, "lb2", record) is None  # on already: nothing to do
    (tmp_path / "off").touch()
    done = await agent_recover(c, "lb2", record)
    assert done is not None and done["ok"] and "action=on" in done["command"]
    assert not (tmp_path / "off").exists() and recs[-1].level == "agent"


async def test_the_gate_level_waits_for_the_denied_node_to_drop_the_vip(
        site: SimSite, tmp_path: Path) -> None:
    import asyncio

    site.state("lb2").add("eth0", VIP1, 24)

    async def gate_goes_fault() -> None:  # what keepalived does when its gate denies
        await asyncio.sleep(0.8)
        site.state("lb2").remove(VIP1)

    task = asyncio.create_task(gate_goes_fault())
    recs, report = await fence(site, tmp_path, ["gate"], None)
    await task
    assert report.ok and "lb2 by gate" in report.summary  # type: ignore[attr-defined]
    (wait,) = recs
    assert (wait.level, wait.step, wait.ok) == ("gate", "gate_wait", True)
    assert "dropped" in wait.output and wait.duration_ms >= 700
    assert "systemctl stop keepalived" not in site.state("lb2").commands  # nothing sent


async def test_the_gate_level_gives_up_at_its_timeout(site: SimSite, tmp_path: Path) -> None:
    site.state("lb2").add("eth0", VIP1, 24)
    recs, report = await fence(site, tmp_path, ["gate"], None, gate_fence_timeout=1.0)
    assert not report.ok and recs[-1].step == "gate_wait"  # type: ignore[attr-defined]
    assert "still holds" in (recs[-1].error or "")
