"""[ha] Several arbiters on one PostgreSQL: the lease and its term, the write guard,
and two real Arbiters on one simulated site, where only the leader records and
fences and a follower that takes over starts from what the leader recorded.

PostgreSQL only: [ha] refuses SQLite. tests/run.sh starts a throwaway server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from arbiter import config as config_mod
from arbiter.ha.leadership import Leadership
from arbiter.ha.lease import NotLeader
from arbiter.model import IncidentKind, IncidentState
from arbiter.policy.effects import OpenIncident
from arbiter.probe.icmp import IcmpPinger, choose_privileged
from arbiter.probe.ssh import SshPool
from arbiter.round.service import Arbiter
from arbiter.round.views.peers import Peers
from arbiter.sim.node import SimSite
from arbiter.sim.scenario import VIP1, site_config
from arbiter.store.engine import make_engine
from arbiter.store.repository import Repository
from tests.conftest import fresh_pg
from tests.test_cycle import IsolatedPinger, incidents, rounds

TTL = 2.0  # seconds: short, so a takeover fits in a test


@pytest.fixture
def pg() -> Iterator[Engine]:
    engine = make_engine(fresh_pg())
    yield engine
    engine.dispose()


def ha_config(site: SimSite, tmp_path: Path, url: str, name: str) -> config_mod.Config:
    p = tmp_path / f"{name}.toml"
    p.write_text(site_config(site, [VIP1], url, confirm_min_span=0.0) + f"""
[ha]
name = "{name}"
members = ["a1", "a2", "a3"]
lease_ttl = {TTL}
renew_every = {TTL / 2}
""")
    return config_mod.load(p)


def prefer_config(site: SimSite, tmp_path: Path, url: str, name: str,
                  prefer: str) -> config_mod.Config:
    """``ha_config`` with a line added to its [ha] table (a `prefer`, or nothing)."""
    ha_config(site, tmp_path, url, name)
    p = tmp_path / f"{name}.toml"
    p.write_text(p.read_text() + prefer)
    return config_mod.load(p)


class Clock:
    """A monotonic clock that moves only when told: the arbiter that was paused."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_a_takeover_needs_the_lease_to_run_out_and_raises_the_term(
        pg: Engine, site: SimSite, tmp_path: Path) -> None:
    url = str(pg.url.render_as_string(hide_password=False))
    a = Leadership(ha_config(site, tmp_path, url, "a1"), pg)
    b = Leadership(ha_config(site, tmp_path, url, "a2"), pg)
    await a.renew()
    await b.renew()
    assert a.term("default") == 1 and b.term("default") is None
    assert b.status()["shards"]["default"]["leader"] == "a1"
    await a.renew()  # a renewal keeps the term
    assert a.term("default") == 1
    await asyncio.sleep(TTL + 0.2)  # a stops renewing (dead, or paused)
    assert a.term("default") is None  # a stepped down by its own clock first
    await b.renew()
    assert b.term("default") == 2
    await a.renew()  # a is back: it follows, and knows the new term
    assert a.term("default") is None and a.term_seen_in("default") == 2


async def test_a_follower_takes_over_when_the_lease_runs_out_not_at_its_next_renewal(
        pg: Engine, site: SimSite, tmp_path: Path) -> None:
    """Issue 23: the follower watches the lease. Its renewal at a moment the leader's
    lease has less than a renewal period left schedules one more attempt for the
    moment it runs out (by the database's clock); the new leader wakes its loop."""
    url = str(pg.url.render_as_string(hide_password=False))
    woken = asyncio.Event()
    a = Leadership(ha_config(site, tmp_path, url, "a1"), pg)
    b = Leadership(ha_config(site, tmp_path, url, "a2"), pg, on_lead=woken.set)
    await a.renew()  # then a dies: no more renewals
    await asyncio.sleep(TTL - 0.6 * (TTL / 2))  # less than renew_every is left
    await b.renew()
    assert b.term("default") is None and not woken.is_set()  # a's lease still runs
    # nothing calls b.renew() again here: only the watch can take the lease (the
    # wait's bound is the lease's remaining time plus a renewal period, generously)
    await asyncio.wait_for(woken.wait(), TTL)
    assert b.term("default") == 2
    with pg.begin() as c:  # the audit of who took which term
        rows = c.execute(text("SELECT term, holder FROM lease_history ORDER BY term")).all()
    assert [tuple(r) for r in rows] == [(1, "a1"), (2, "a2")]
    b.close()
    a.close()


async def test_a_paused_leader_can_record_nothing_once_another_took_over(
        pg: Engine, site: SimSite, tmp_path: Path) -> None:
    url = str(pg.url.render_as_string(hide_password=False))
    paused = Clock()  # its own clock stands still: it believes it still leads
    a = Leadership(ha_config(site, tmp_path, url, "a1"), pg, mono=paused)
    b = Leadership(ha_config(site, tmp_path, url, "a2"), pg)
    await a.renew()
    assert a.term("default") == 1
    await asyncio.sleep(TTL + 0.2)
    await b.renew()
    assert b.term("default") == 2 and a.term("default") == 1  # a has not noticed
    repo_a = Repository(pg, guard=a, arbiter="a1")
    repo_b = Repository(pg, guard=b, arbiter="a2")
    split = OpenIncident(IncidentKind.SPLIT_BRAIN, "split", (VIP1,))
    now = datetime.now(UTC)
    with pytest.raises(NotLeader):
        repo_a.apply("web", [split], now)
    ids = repo_b.apply("web", [split], now)
    with pytest.raises(NotLeader):
        repo_a.set_state(ids[IncidentKind.SPLIT_BRAIN], IncidentState.RESOLVED, now, "late")
    rows = repo_b.list_incidents()[0]
    assert len(rows) == 1 and rows[0]["state"] == "open"
    with pg.begin() as c:
        assert c.execute(text("SELECT term FROM incidents")).scalar() == 2


async def test_a_fence_step_written_after_an_outage_keeps_the_term_it_ran_under(
        pg: Engine, site: SimSite, tmp_path: Path) -> None:
    """Found by the HA soak (issue 23, seed 1, db-stop): a step taken under term 1 and
    written once the database answered again, when the same arbiter had re-taken the
    shard under term 2, was stored under term 2, a term it did not hold when the step
    ran. The fencer stamps each step with the term its fence started under; the
    repository still checks the lease at the write, and stores that term."""
    from arbiter.round.acts.fencer import Fencer
    from arbiter.store.repository import AttemptRecord

    url = str(pg.url.render_as_string(hide_password=False))
    cfg = ha_config(site, tmp_path, url, "a1")
    a = Leadership(cfg, pg)
    await a.renew()
    assert a.term("default") == 1
    repo = Repository(pg, guard=a, arbiter="a1")
    split = OpenIncident(IncidentKind.SPLIT_BRAIN, "split", (VIP1,))
    incident = repo.apply("web", [split], datetime.now(UTC))[IncidentKind.SPLIT_BRAIN]

    written: list[AttemptRecord] = []

    class Backlog:  # the ledger while the database is down: the step waits
        async def record_step(self, incident: int, attempt: int, rec: AttemptRecord) -> None:
            written.append(rec)

    fencer = Fencer(cfg, runner=None, ledger=Backlog(), wake=lambda: None,  # type: ignore[arg-type]
                    term_of=a.term_of)
    record = fencer._recorder("web", incident, 1)  # the fence starts under term 1
    await asyncio.sleep(TTL + 0.2)  # the outage: no renewal, the lease runs out
    await a.renew()  # the database answers: the same arbiter takes term 2
    assert a.term("default") == 2
    now = datetime.now(UTC)
    await record(AttemptRecord(node="lb2", step="escalate", command="-", ok=False,
                               exit_status=None, output="", error="no answer",
                               started_at=now, finished_at=now))
    repo.add_attempt(incident, 1, written[0])  # the backlog lands
    with pg.begin() as c:
        assert c.execute(text("SELECT term FROM fence_attempts")).scalar() == 1
    a.close()


@pytest.fixture
async def pair(pg: Engine, site: SimSite, tmp_path: Path,
               request: pytest.FixtureRequest) -> AsyncIterator[list[Arbiter]]:
    """Two arbiters of one site on one PostgreSQL; a1 renews first and leads.
    ``request.param``: a wrapper for a2's real pinger (a2 isolated, say)."""
    url = str(pg.url.render_as_string(hide_password=False))
    follower_pinger = getattr(request, "param", None)
    made = []
    for name in ("a1", "a2"):
        cfg = ha_config(site, tmp_path, url, name)
        engine = make_engine(url)
        pinger = IcmpPinger(choose_privileged("auto"))
        if name == "a2" and follower_pinger is not None:
            pinger = follower_pinger(pinger)
        arb = Arbiter(cfg, engine, pinger,
                      SshPool(cfg.ssh.client_keys, cfg.ssh.known_hosts,
                              cfg.ssh.connect_timeout))
        await arb.peers.start()
        await arb.restore()
        made.append(arb)
    yield made
    for arb in made:
        await arb.close()
        arb.repo.engine.dispose()


async def test_only_the_leader_fences_and_a_follower_takes_over_its_hold(
        pair: list[Arbiter], site: SimSite) -> None:
    leader, follower = pair
    assert isinstance(leader.peers, Peers) and isinstance(follower.peers, Peers)
    assert leader.peers.leadership.leading() == {"default"}
    assert follower.peers.leadership.leading() == frozenset()
    site.state("lb2").add("eth0", VIP1, 24)  # VRRP cut: lb2 claims the VIP too
    for _ in range(4):
        await rounds(follower, 1)
        await rounds(leader, 1)
    inc = incidents(leader)
    assert len(inc) == 1 and inc[0]["state"] == "fenced", inc
    # the fence carried the leader's term, and the node keeps it
    assert "@@term 1 systemctl stop keepalived" in site.state("lb2").commands
    assert site.state("lb2").term_seen == 1
    # the follower recorded nothing and fenced nothing, but reads the hold back
    await rounds(follower, 1)
    assert follower.history.cluster("web").hold_of("lb2") is not None
    assert follower.view.ha and follower.view.ha["shards"]["default"]["leader"] == "a1"

    # the leader dies: its lease runs out, the follower takes over under term 2
    leader.peers.leadership._leases.clear()  # noqa: SLF001 - it renews nothing any more
    await asyncio.sleep(TTL + 0.2)
    await follower.peers.leadership.renew()
    assert follower.peers.leadership.term("default") == 2
    await rounds(follower, 3)
    # the same incident and the same hold: no second incident, no second fence
    assert len(incidents(follower)) == 1
    assert follower.history.cluster("web").hold_of("lb2") is not None
    assert sum("systemctl stop keepalived" in c
               for c in site.state("lb2").commands) == 1

    # the new leader releases lb2: its recover carries term 2, so the old leader's
    # commands (term 1) are refused by the node from now on
    done = follower.release(inc[0]["id"], "test")
    await rounds(follower, 1)
    await asyncio.wait_for(done, 10)
    await follower.wait_fences()
    assert site.state("lb2").term_seen == 2
    from arbiter.probe.ssh import Target
    from arbiter.probe.term_runner import TermRunner

    stale = TermRunner(leader.runner, 1, lambda: True)
    res = await stale.run(Target("lb2", "127.0.0.12", site.port, "root"),
                          "systemctl stop keepalived", 5)
    assert res.exit_status == 125 and "stale term 1 < 2" in res.stderr
    assert site.state("lb2").keepalived_running


def test_ha_config_rules(tmp_path: Path, site: SimSite) -> None:
    pg_url = "postgresql+psycopg://x@127.0.0.1/x"
    cases = [
        ("sqlite:///x.db", 'name = "a1"\nmembers = ["a1", "a2"]',
         "ha needs a PostgreSQL arbiter.database"),
        (pg_url, 'name = "a9"\nmembers = ["a1", "a2"]', "ha.name 'a9' is not in ha.members"),
        (pg_url, 'name = "a1"\nmembers = ["a1", "a1"]', "duplicate name(s) in ha.members: a1"),
        (pg_url, 'name = "a1"\nmembers = ["a1"]\nlease_ttl = 10\nrenew_every = 6',
         "ha.renew_every (6s) must be at most half of ha.lease_ttl (10s)"),
    ]
    for db, ha, message in cases:
        p = tmp_path / "c.toml"
        p.write_text(site_config(site, [VIP1], db) + f"\n[ha]\n{ha}\n")
        with pytest.raises(config_mod.ConfigError) as exc:
            config_mod.load(p, check_files=False)
        assert message in str(exc.value), (ha, str(exc.value))
    p.write_text(site_config(site, [VIP1], pg_url) + '\n[ha]\nname = "a1"\nmembers = ["a1"]\n')
    cfg = config_mod.load(p, check_files=False)
    assert cfg.ha is not None and cfg.shards == ["default"]
    assert (cfg.ha.lease_ttl, cfg.ha.renew_every) == (5, 1)


async def test_a_fence_the_node_refuses_for_a_stale_term_stops_and_says_so(
        pair: list[Arbiter], site: SimSite) -> None:
    """A node that has seen term 9 (a newer leader elsewhere) refuses our term 1: the
    fence stops at once, nothing is escalated, and the incident says why."""
    leader, follower = pair
    site.state("lb2").term_seen = 9
    site.state("lb2").add("eth0", VIP1, 24)
    for _ in range(4):
        await rounds(follower, 1)
        await rounds(leader, 1)
    inc = incidents(leader)
    assert len(inc) == 1 and inc[0]["state"] == "fence_failed", inc
    detail = leader.repo.get_incident(inc[0]["id"])
    assert detail is not None
    assert "refused for a stale term" in str(detail), detail
    lb2 = site.state("lb2")
    assert lb2.keepalived_running and lb2.holds(VIP1)
    assert not any(c.startswith("@@term 1 ip addr del") for c in lb2.commands)


async def test_verdict_and_status_carry_the_term(pair: list[Arbiter], site: SimSite) -> None:
    import httpx

    from arbiter.api.app import create_app

    leader, follower = pair
    await rounds(leader, 1)
    await rounds(follower, 1)
    for arb, leading in ((leader, True), (follower, False)):
        app = create_app(arb)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://arbiter") as c:
            v = (await c.get("/verdict", params={"cluster": "web", "node": "lb1"})).json()
            assert v["term"] == 1 and v["verdict"] == "allow", v
            t = await c.get("/verdict", params={"cluster": "web", "node": "lb1",
                                                "format": "text"})
            assert t.text == "allow 1\n"
            ha = (await c.get("/status")).json()["arbiter"]["ha"]
            assert ha["shards"]["default"] == {**ha["shards"]["default"], "leader": "a1",
                                               "term": 1, "leading": leading}


async def test_the_leader_alone_never_fences_on_its_own_view(
        pair: list[Arbiter], site: SimSite) -> None:
    """Quorum 2 of 3: until a second arbiter's fresh view sees the same split brain,
    the leader records it and waits; then the reason names the views."""
    leader, follower = pair
    site.state("lb2").add("eth0", VIP1, 24)
    await rounds(leader, 5)
    inc = incidents(leader)
    assert len(inc) == 1 and inc[0]["state"] == "open", inc
    reason = leader.view.assessment.cluster("web").reason
    assert "1 of 3 arbiters see lb1 and lb2 both holding 192.168.77.100; quorum is 2" \
        in reason, reason
    assert not any("systemctl stop" in c for c in site.state("lb2").commands)
    await rounds(follower, 1)
    await rounds(leader, 1)
    inc = incidents(leader)
    assert inc[0]["state"] == "fenced", inc
    assert inc[0]["reason"].startswith(
        "2 of 3 arbiters see lb1 and lb2 both holding 192.168.77.100: "), inc[0]["reason"]
    views = leader.view.ha["views"]  # type: ignore[index]
    assert views["a2"]["counts"] and not views["a1"]["counts"]  # its own is not a peer's


async def test_no_answer_from_the_database_for_a_lease_makes_verdicts_abstain(
        pg: Engine, site: SimSite, tmp_path: Path) -> None:
    url = str(pg.url.render_as_string(hide_password=False))
    clock = Clock()
    a = Leadership(ha_config(site, tmp_path, url, "a1"), pg, mono=clock)
    await a.renew()
    clock.t += TTL  # exactly one lease: still trusted
    assert a.blind() is None
    clock.t += 0.5
    why = a.blind()
    assert why is not None and "no answer from the shared database for 2s" in why
    assert a.term("default") is None  # and it leads nothing


async def test_shards_are_led_by_who_prefers_them_and_taken_over_when_unled(
        pg: Engine, site: SimSite, tmp_path: Path) -> None:
    """Two shards, each preferred by one arbiter: each leads its own. When one stops
    renewing, the other takes its shard over, but only after seeing it unled for a
    whole renewal (so a restart of the preferred one does not lose it at once)."""
    url = str(pg.url.render_as_string(hide_password=False))

    def cfg(name: str, prefer: str) -> config_mod.Config:
        text = site_config(site, [VIP1], url, cluster_extra='shard = "east"')
        # a second cluster on the same directors, in the other shard
        web = text[text.index("[[clusters]]"):]
        text += "\n" + web.replace('name = "web"', 'name = "api"').replace(
            'shard = "east"', 'shard = "west"')
        p = tmp_path / f"{name}.toml"
        p.write_text(text + f'\n[ha]\nname = "{name}"\nmembers = ["a1", "a2"]\n'
                            f'lease_ttl = {TTL}\nrenew_every = {TTL / 2}\nprefer = ["{prefer}"]\n')
        return config_mod.load(p)

    a = Leadership(cfg("a1", "east"), pg)
    b = Leadership(cfg("a2", "west"), pg)
    await a.renew()
    await b.renew()
    assert a.leading() == {"east"} and b.leading() == {"west"}
    await a.renew()
    assert a.leading() == {"east"}  # west is led: a1 leaves it alone
    await asyncio.sleep(TTL + 0.2)  # b stops renewing
    await a.renew()
    assert a.leading() == {"east"}  # west seen unled once: not yet
    await a.renew()
    assert a.leading() == {"east", "west"} and a.term("west") == 2
    # a2 is back and asks for the shard it prefers: a1 hands it back at its next
    # renewal, and a2 takes it under a new term
    await b.renew()
    assert b.leading() == set()
    await a.renew()
    assert a.leading() == {"east"}
    await a.renew()  # west was asked for: a1 leaves it to a2
    assert a.leading() == {"east"}
    await b.renew()
    assert b.leading() == {"west"} and b.term("west") == 3
    with pytest.raises(config_mod.ConfigError, match="ha.prefer names shard"):
        p = tmp_path / "bad.toml"
        p.write_text((tmp_path / "a1.toml").read_text().replace('prefer = ["east"]',
                                                                 'prefer = ["north"]'))
        config_mod.load(p)



async def test_an_arbiter_that_names_a_shard_gets_it_back_from_one_that_contends_for_all(
        pg: Engine, site: SimSite, tmp_path: Path) -> None:
    """The HA soak's finding: a1 names "default" in `prefer`, a2 and a3 leave `prefer`
    empty (contend for all). a2 leads while a1 is away; a1 comes back and asks: a2
    hands it back, a3 does not snatch it, a1 leads. A request by an arbiter that then
    died does not make the next holder hand it back again and again."""
    url = str(pg.url.render_as_string(hide_password=False))

    def cfg(name: str, prefer: str) -> config_mod.Config:
        return prefer_config(site, tmp_path, url, name, prefer)

    a1 = Leadership(cfg("a1", 'prefer = ["default"]\n'), pg)
    a2 = Leadership(cfg("a2", ""), pg)
    a3 = Leadership(cfg("a3", ""), pg)
    await a2.renew()
    await a3.renew()
    assert a2.leading() == {"default"} and a3.leading() == set()
    await a1.renew()  # led by a2: a1 asks for it
    assert a1.leading() == set()
    await a2.renew()  # a2 only contends for all: it hands the shard back
    assert a2.leading() == set()
    await a3.renew()  # asked for by a1: a3 leaves it to a1
    await a2.renew()
    assert a3.leading() == set() and a2.leading() == set()
    await a1.renew()
    assert a1.leading() == {"default"}
    term = a1.term("default")
    await a2.renew()
    await a3.renew()
    await a1.renew()
    assert a1.leading() == {"default"} and a1.term("default") == term  # it keeps it
    # a1 asks, then dies before taking it: the shard is taken after a few unled
    # renewals, and the new holder keeps it (the dead claimant's request is gone)
    await asyncio.sleep(TTL + 0.2)
    await a2.renew()
    assert a2.leading() == {"default"}
    await a1.renew()  # back for a moment: asks...
    await a2.renew()  # ...a2 hands it back...
    assert a2.leading() == set()
    for _ in range(3):  # ...and a1 died: the others wait three renewals for it
        await a2.renew()
        await a3.renew()
    assert len(a2.leading() | a3.leading()) == 1
    held = a2 if a2.leading() else a3
    for _ in range(3):
        await held.renew()
        assert held.leading() == {"default"}


async def test_a_leader_out_of_sight_hands_the_shard_over_and_takes_it_back_in_sight(
        pg: Engine, site: SimSite, tmp_path: Path) -> None:
    """A leader cut from both directors (the soak's `directors-cut` on the leader) kept
    the lease while the other two saw a split it could not fence: the split waited for
    the cut to heal. Out of sight, it hands the lease over at its next renewal and does
    not ask for it back, though it names the shard in `prefer`, until it sees again."""
    url = str(pg.url.render_as_string(hide_password=False))

    def cfg(name: str, prefer: str) -> config_mod.Config:
        return prefer_config(site, tmp_path, url, name, prefer)

    a1 = Leadership(cfg("a1", 'prefer = ["default"]\n'), pg)
    a2 = Leadership(cfg("a2", ""), pg)
    await a1.renew()
    await a2.renew()
    assert a1.term("default") == 1 and a2.leading() == set()
    a1.stand_aside("default", "rule: out of sight: test")
    assert a1.term("default") == 1  # it still leads until its next renewal
    await a1.renew()
    assert a1.leading() == set()
    assert a1.status()["shards"]["default"]["standing_aside"] == "rule: out of sight: test"
    await a2.renew()
    assert a2.term("default") == 2
    for _ in range(3):  # out of sight, a1 neither takes it nor asks for it back
        await a1.renew()
        await a2.renew()
    assert a1.leading() == set() and a2.term("default") == 2
    with pg.begin() as c:
        assert c.execute(text("SELECT wanted_by FROM leases")).scalar() is None
    a1.stand_aside("default", None)  # in sight again: it asks, a2 hands it back
    await a1.renew()
    await a2.renew()
    await a1.renew()
    assert a1.term("default") == 3 and a2.leading() == set()
    a1.close()
    a2.close()


@pytest.mark.parametrize("pair", [IsolatedPinger], indirect=True)
async def test_an_isolated_arbiters_view_counts_as_none(pair: list[Arbiter],
                                                       site: SimSite) -> None:
    """a2 cannot see its own gateway: its view is handed in as unusable, so it does not
    count towards the quorum, although it sees the split brain too."""
    leader, isolated = pair
    site.state("lb2").add("eth0", VIP1, 24)
    for _ in range(4):
        await rounds(isolated, 1)
        await rounds(leader, 1)
    assert isolated.view.assessment.abstain_reason is not None
    views = leader.view.ha["views"]  # type: ignore[index]
    assert views["a2"]["usable"] is False and views["a2"]["counts"] is False
    assert "arbiter isolated" in views["a2"]["reason"]
    assert incidents(leader)[0]["state"] == "open"
    assert "1 of 3 arbiters see" in leader.view.assessment.cluster("web").reason
