"""The store from a fresh migration: SQLite always, PostgreSQL when CI provides one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from arbiter.model import (
    FenceMethod,
    FencePlan,
    IncidentKind,
    IncidentState,
    VictimAction,
)
from arbiter.policy.effects import Opened, OpenIncident, RecordDecision, SaveClusterMemory
from arbiter.policy.incident_fsm import IllegalTransition
from arbiter.store import migrate
from arbiter.store.engine import make_engine
from arbiter.store.repository import AttemptRecord, Repository
from arbiter.store.tables import Base

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_fresh_migration_matches_models(db_url: str) -> None:
    engine = make_engine(db_url)
    assert migrate.upgrade(engine) == migrate.head_revision()
    insp = inspect(engine)
    for table in Base.metadata.sorted_tables:
        cols = {c["name"] for c in insp.get_columns(table.name)}
        assert cols == {c.name for c in table.columns}, table.name
    # downgrade to nothing and back: migrations are reversible
    from alembic import command

    cfg = migrate.alembic_config(db_url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert "incidents" not in inspect(engine).get_table_names()
    migrate.upgrade(engine)
    assert "incidents" in inspect(engine).get_table_names()
    engine.dispose()


PLAN = FencePlan(cluster="web", survivor="lb1",
                 victims=(VictimAction("lb2", FenceMethod.STOP_KEEPALIVED, ("10.0.0.100",)),),
                 vips=("10.0.0.100",), reason="lb1 survives")


def decide(iid: int | Opened, src: IncidentState = IncidentState.OPEN) -> RecordDecision:
    return RecordDecision(iid, src, IncidentState.FENCING, PLAN, 1, ("lb2",))


def test_incident_lifecycle(repo: Repository) -> None:
    ids = repo.apply("web", [
        OpenIncident(IncidentKind.SPLIT_BRAIN, "split brain on .100", ("10.0.0.100",)),
        decide(Opened(IncidentKind.SPLIT_BRAIN)),
    ], T + timedelta(seconds=2), {"holders": {"10.0.0.100": ["lb1", "lb2"]}},
        {1: {"survivor": "lb1"}})
    iid = ids[IncidentKind.SPLIT_BRAIN]
    (row,) = repo.unresolved()
    assert row.state is IncidentState.FENCING and row.pending_hold == ("lb2",)
    assert row.held_nodes == ()  # intended, not yet done
    repo.add_attempt(iid, 1, AttemptRecord(
        "lb2", "fence_command", "systemctl stop keepalived", True, 0, "x" * 5000, None,
        T + timedelta(seconds=2), T + timedelta(seconds=2, milliseconds=150)))
    repo.set_state(iid, IncidentState.FENCED, T + timedelta(seconds=3), "fenced lb2",
                   held_nodes=["lb2"])
    (row,) = repo.unresolved()
    assert (row.id, row.held_nodes, row.pending_hold) == (iid, ("lb2",), ())
    repo.set_state(iid, IncidentState.RESOLVED, T + timedelta(seconds=9), "gone")
    # resolved but still held: it stays in the restart state until released
    assert [u.id for u in repo.unresolved()] == [iid]
    assert repo.release(iid, T + timedelta(seconds=20), "ops@example", "released by hand") \
        == ["lb2"]
    assert repo.release(iid, T + timedelta(seconds=21), "ops@example", "again") == []
    assert repo.unresolved() == []

    full = repo.get_incident(iid)
    assert full is not None
    assert full["state"] == "resolved" and full["survivor"] == "lb1"
    assert full["opened_at"] == (T + timedelta(seconds=2)).isoformat()
    assert full["resolved_at"] == (T + timedelta(seconds=9)).isoformat()
    (a,) = full["fence_attempts"]
    assert a["duration_ms"] == 150.0 and len(a["output"]) == 2000
    assert [e["state"] for e in full["timeline"]] == ["open", "fencing", "fenced", "resolved",
                                                      "resolved"]
    assert full["released_by"] == "ops@example"


def test_listing_filters_and_cursor_pagination(repo: Repository) -> None:
    ids = []
    for i in range(7):
        cl = "web" if i % 2 == 0 else "api"
        ids.append(repo.open_incident(IncidentKind.SPLIT_BRAIN, cl, T + timedelta(minutes=i),
                                      f"incident {i}"))
    repo.set_state(ids[0], IncidentState.RESOLVED, T + timedelta(hours=1), "done")
    page1, cur = repo.list_incidents(limit=3)
    assert [p["id"] for p in page1] == ids[::-1][:3]
    page2, cur2 = repo.list_incidents(limit=3, cursor=cur)
    page3, cur3 = repo.list_incidents(limit=3, cursor=cur2)
    assert [p["id"] for p in page1 + page2 + page3] == ids[::-1]
    assert cur3 is None
    web, _ = repo.list_incidents(cluster="web")
    assert {w["cluster"] for w in web} == {"web"} and len(web) == 4
    res, _ = repo.list_incidents(state="resolved")
    assert [r["id"] for r in res] == [ids[0]]
    since, _ = repo.list_incidents(since=T + timedelta(minutes=5))
    assert [s["id"] for s in since] == [ids[6], ids[5]]
    with pytest.raises(ValueError, match="cursor"):
        repo.list_incidents(cursor=0)
    with pytest.raises(ValueError, match="limit"):
        repo.list_incidents(limit=501)


def test_cluster_memory_persists(repo: Repository) -> None:
    repo.apply("web", [SaveClusterMemory(3, (("10.0.0.100", "lb1"),))], T)
    repo.apply("web", [SaveClusterMemory(4, (("10.0.0.100", "lb2"),))], T)
    repo.apply("api", [SaveClusterMemory(1, ())], T)
    mem = repo.cluster_memories()
    assert (mem["web"].epoch, mem["web"].incumbents) == (4, (("10.0.0.100", "lb2"),))
    assert (mem["api"].epoch, mem["api"].incumbents) == (1, ())


def test_store_refuses_an_illegal_transition_and_commits_nothing(repo: Repository) -> None:
    iid = repo.open_incident(IncidentKind.SPLIT_BRAIN, "web", T, "split")
    repo.set_state(iid, IncidentState.RESOLVED, T, "gone")
    with pytest.raises(IllegalTransition, match="resolved -> fencing"):
        repo.apply("web", [SaveClusterMemory(9, ()), decide(iid)], T, None, {1: {}})
    # one transaction: the memory written before the refused effect is not there either
    assert "web" not in repo.cluster_memories()
    assert repo.get_incident(iid)["state"] == "resolved"


def test_naive_datetimes_are_refused(repo: Repository) -> None:
    from arbiter.store.engine import StoreError

    with pytest.raises((StoreError, ValueError)):
        repo.open_incident(IncidentKind.SPLIT_BRAIN, "web", datetime(2026, 1, 1), "naive")


def test_node_events_are_pruned_by_age_and_count(repo: Repository) -> None:
    rows = [{"cluster": "web", "node": n, "instance": "VI_1", "state": "MASTER",
             "priority": 100, "at": T + timedelta(seconds=i), "source": None}
            for n in ("lb1", "lb2") for i in range(30)]
    rows.append({**rows[0], "at": T - timedelta(days=90)})
    repo.add_node_events(rows)
    assert repo.prune_node_events(10, T - timedelta(days=30)) == 1 + 2 * 20
    left = repo.node_events("web", limit=100)
    assert len(left) == 20 and {e["node"] for e in left} == {"lb1", "lb2"}
    assert min(e["at"] for e in left) == (T + timedelta(seconds=20)).isoformat()


def test_a_held_incident_resolves_on_its_operator_release_and_a_refence_persists(
        repo: Repository) -> None:
    from arbiter.policy.effects import ChangeState

    S = IncidentState
    ids = repo.apply("web", [OpenIncident(IncidentKind.SPLIT_BRAIN, "split", ("10.0.0.100",)),
                             decide(Opened(IncidentKind.SPLIT_BRAIN))], T, None, {1: {}})
    iid = ids[IncidentKind.SPLIT_BRAIN]
    repo.set_state(iid, S.FENCED, T, "fenced", ("lb2",))
    repo.apply("web", [ChangeState(iid, S.FENCED, S.HELD, "split over; lb2 held")], T, None,
               None)
    (r,) = [x for x in repo.unresolved() if x.id == iid]
    assert r.state is S.HELD and r.held_nodes == ("lb2",) and not r.refenced
    # released automatically, then a re-claim in the same incident: the flag survives
    # in the row (a restart keeps the victim's hold for an operator), and the new hold
    # is releasable (the automatic release is over)
    from arbiter.model import FenceMode, Hold
    from arbiter.policy.effects import ReleaseHold

    repo.apply("web", [ReleaseHold(Hold("lb2", iid, "lb1", FenceMode.SSH, True), "healed"),
                       ChangeState(iid, S.HELD, S.WATCHING, "released automatically")],
               T + timedelta(seconds=3), None, None)
    assert repo.get_incident(iid)["released_by"] == "auto"
    repo.apply("web", [decide(iid, S.WATCHING)], T + timedelta(seconds=5), None, {0: {}})
    repo.set_state(iid, S.FENCED, T, "fenced again", ("lb2",))
    repo.apply("web", [ChangeState(iid, S.FENCED, S.HELD, "held again")], T, None, None)
    (r,) = [x for x in repo.unresolved() if x.id == iid]
    assert r.refenced and r.attempts == 1 and not r.released and r.held_nodes == ("lb2",)
    cluster, gone = repo.release_by_operator(iid, T + timedelta(seconds=9), "ops: checked")
    assert (cluster, gone) == ("web", ["lb2"])
    inc = repo.get_incident(iid)
    assert inc["state"] == "resolved" and inc["released_by"] == "ops: checked"
    assert [x for x in repo.unresolved() if x.id == iid] == []
