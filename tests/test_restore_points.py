"""For every step of a fence at which the process can die, a restart ends with the
same survivor, at most one fence, and every keepalived we stopped held.

The policy and the memory fold are the real ones; the store is the real repository on
an in-memory SQLite. "The world" is two directors whose state the fence changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from arbiter.model import (
    ClusterObservation,
    History,
    IncidentKind,
    IncidentState,
    SelfCheck,
    Snapshot,
)
from arbiter.policy import decide, memory
from arbiter.policy.effects import RecordDecision, StartFence, is_action
from arbiter.policy.memory import Committed
from arbiter.serialize import fence_plan
from arbiter.store.repository import AttemptRecord, Repository
from arbiter.store.tables import Base
from tests.unit.builders import GW, T0, VIP1, make_config, node

CRASH_POINTS = ("after the decision", "after the fence command", "after the result", None)


@dataclass
class World:
    holds: dict[str, bool]
    keepalived: dict[str, bool] = field(default_factory=lambda: {"lb1": True, "lb2": True})
    fences: list[str] = field(default_factory=list)  # nodes whose keepalived we stopped

    def observe(self) -> tuple:
        return tuple(node(n, (VIP1,) if self.holds[n] else (), ka=self.keepalived[n])
                     for n in ("lb1", "lb2"))

    def fence(self, victim: str) -> None:
        self.fences.append(victim)
        self.keepalived[victim] = False
        self.holds[victim] = False


def commit(repo: Repository, a, snap) -> Committed:  # type: ignore[no-untyped-def]
    ids = {}
    for ca in a.clusters:
        records = [e for e in ca.effects if not is_action(e)]
        if records:
            decisions = {n: fence_plan(e.plan) for n, e in enumerate(records)
                         if isinstance(e, RecordDecision)}
            ids[ca.cluster] = repo.apply(ca.cluster, records, snap.at, {}, decisions)
    return Committed(ids)


def run(priorities: tuple[int, int], incumbent: str, crash: str | None) -> tuple:
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    repo = Repository(engine)
    cfg = make_config([("lb1", priorities[0]), ("lb2", priorities[1])], resolve_rounds=2,
                      release_rounds=50)
    world = World(holds={"lb1": incumbent == "lb1", "lb2": incumbent == "lb2"})
    history = History()
    survivor = None
    crashed = restarted = False
    now = T0
    for r in range(12):
        if r == 1:  # the VRRP cut: the other one claims the VIP too
            world.holds = {"lb1": True, "lb2": True}
        snap = Snapshot(now, SelfCheck(((GW, True),)),
                        (ClusterObservation("web", world.observe()),))
        a = decide.assess(cfg, snap, history, now)
        history = memory.fold(history, a, commit(repo, a, snap))
        for e in a.clusters[0].effects:
            if not isinstance(e, StartFence):
                continue
            iid = history.cluster("web").incident.id
            survivor = survivor or e.plan.survivor
            victim = e.plan.victims[0].node
            if crash == "after the decision" and not crashed:
                crashed = True
                break
            world.fence(victim)
            repo.add_attempt(iid, e.attempt, AttemptRecord(
                victim, "fence_command", "systemctl stop keepalived", True, 0, "", None,
                now, now))
            if crash == "after the fence command" and not crashed:
                crashed = True
                break
            repo.set_state(iid, IncidentState.FENCED, now, "fenced", (victim,))
            history = memory.with_cluster(history, "web", memory.fold_fence(
                history.cluster("web"), iid, True, (victim,), now))
            if crash == "after the result" and not crashed:
                crashed = True
        if crashed and not restarted:
            # the process dies here: everything in memory is gone; restart from the store
            history, changes, _ = memory.restore(["web"], repo.unresolved(),
                                                 repo.cluster_memories())
            if changes:
                repo.apply(None, list(changes), now)
            restarted = True
        now += timedelta(seconds=1)
    held = set(history.cluster("web").held_nodes)
    db_held = {n for row in repo.unresolved() for n in row.held_nodes}
    incidents = repo.list_incidents(kind=IncidentKind.SPLIT_BRAIN.value)[0]
    return survivor, world.fences, held, db_held, len(incidents)


@settings(max_examples=60, deadline=None)
@given(st.tuples(st.integers(0, 255), st.integers(0, 255)), st.sampled_from(["lb1", "lb2"]),
       st.sampled_from(CRASH_POINTS[:3]))
def test_a_restart_at_any_step_of_a_fence(priorities, incumbent, crash) -> None:  # type: ignore[no-untyped-def]
    base_survivor, base_fences, _, _, _ = run(priorities, incumbent, None)
    survivor, fences, held, db_held, incidents = run(priorities, incumbent, crash)
    assert survivor == base_survivor == incumbent  # the incumbent survives, restart or not
    assert len(fences) <= 1 and len(base_fences) == 1  # at most one fence
    for victim in fences:  # every keepalived we stopped is held, in memory and in store
        assert victim in held and victim in db_held, (crash, held, db_held)
    assert incidents == 1  # one episode, one incident
