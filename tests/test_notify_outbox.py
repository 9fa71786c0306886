"""The outbox on SQLite and PostgreSQL: rows are written in the transaction that
records the incident change (and not at all when it fails), claimed once,
retried, and dead after max_attempts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from arbiter.config.notify import DEFAULT_EVENTS
from arbiter.model import IncidentKind
from arbiter.model import IncidentState as S
from arbiter.policy import notify_events as ev
from arbiter.policy.effects import ChangeState, Opened, OpenIncident, SaveClusterMemory
from arbiter.policy.incident_fsm import IllegalTransition
from arbiter.store import outbox
from arbiter.store.repository import Repository
from arbiter.store.tables import Notification
from tests.test_store import T, decide

BOX = outbox.Outbox(("smtp", "ops"), frozenset(DEFAULT_EVENTS), "http://arb:8080")


def rows(repo: Repository) -> list[Notification]:
    return repo.transaction(lambda s: list(s.scalars(select(Notification)
                                                    .order_by(Notification.id))))


def test_rows_go_with_the_incident_change_and_never_without_it(repo: Repository) -> None:
    repo.outbox = BOX
    ids = repo.apply("web", [OpenIncident(IncidentKind.SPLIT_BRAIN, "split", ("10.0.0.100",)),
                             decide(Opened(IncidentKind.SPLIT_BRAIN))], T, None, {1: {}})
    iid = ids[IncidentKind.SPLIT_BRAIN]
    assert [(r.event, r.channel) for r in rows(repo)] == [
        ("split_brain", "smtp"), ("split_brain", "ops")]
    # a transaction the state machine refuses commits no notification either
    with pytest.raises(IllegalTransition):
        repo.apply("web", [SaveClusterMemory(2, ()),
                           ChangeState(iid, S.OPEN, S.RESOLVED, "skipped a step")], T)
    assert len(rows(repo)) == 2
    repo.set_state(iid, S.FENCED, T, "fenced lb2", ("lb2",))
    repo.apply("web", [ChangeState(iid, S.FENCED, S.HELD, "split over; lb2 held")], T)
    repo.release_by_operator(iid, T + timedelta(seconds=9), "ops: checked")
    got = [r.event for r in rows(repo) if r.channel == "ops"]
    assert got == ["split_brain", "fence_done", "node_held", "node_released",
                   "split_brain_resolved"]
    keys = [r.dedup_key for r in rows(repo)]
    assert len(keys) == len(set(keys))
    held = next(r for r in rows(repo) if r.event == "node_held")
    assert held.payload["nodes"] == ["lb2"] and held.payload["incident"]["id"] == iid
    assert held.payload["dedup_key"] == held.dedup_key


def test_events_not_asked_for_are_not_written(repo: Repository) -> None:
    repo.outbox = outbox.Outbox(("ops",), frozenset({ev.EventKind.FENCE_FAILED}), "http://a")
    repo.apply("web", [OpenIncident(IncidentKind.SPLIT_BRAIN, "split", ("10.0.0.100",))], T)
    assert rows(repo) == []


def test_a_row_is_claimed_once_retried_then_dead(repo: Repository) -> None:
    repo.outbox = outbox.Outbox(("ops",), frozenset(DEFAULT_EVENTS), "http://a")
    repo.apply("web", [OpenIncident(IncidentKind.SPLIT_BRAIN, "split", ("10.0.0.100",))], T)
    (c,) = repo.transaction(lambda s: outbox.claim(s, T, hold=60))
    assert c.attempts == 1
    # claimed: another sender (or a second run) gets nothing until the hold has passed
    assert repo.transaction(lambda s: outbox.claim(s, T + timedelta(seconds=59), 60)) == []
    repo.transaction(lambda s: outbox.settle(s, [outbox.Result(c.id, False, "HTTP 500", 5)],
                                             T))
    assert repo.transaction(lambda s: outbox.claim(s, T + timedelta(seconds=4), 60)) == []
    (again,) = repo.transaction(lambda s: outbox.claim(s, T + timedelta(seconds=5), 60))
    assert again.attempts == 2 and again.payload == c.payload
    repo.transaction(lambda s: outbox.settle(s, [outbox.Result(c.id, False, "refused")], T))
    counts = repo.transaction(outbox.counts)
    assert counts.dead == {"ops": 1} and counts.pending == {}
    assert counts.last_dead[0]["error"] == "refused"
    # pending rows are never pruned; dead ones are, once old enough
    assert repo.transaction(lambda s: outbox.prune(s, T)) == 0
    assert repo.transaction(lambda s: outbox.prune(s, T + timedelta(days=1))) == 1


def test_a_pause_is_kept_ended_and_noted_once(repo: Repository) -> None:
    """Pauses on SQLite and PostgreSQL: added, read back, ended, and each start and end
    noted in the outbox exactly once (a second note finds nothing to do)."""
    from arbiter.store import pauses as sql

    repo.outbox = outbox.Outbox(("ops",), frozenset(DEFAULT_EVENTS), "http://a")
    now = T
    p = repo.transaction(lambda s: sql.add(s, "web", "firewall", "ops", now,
                                           now + timedelta(minutes=5)))
    assert [x.id for x in repo.transaction(lambda s: sql.active(s, now))] == [p.id]
    assert [w for w, _ in repo.transaction(lambda s: sql.note(s, now, repo.outbox))] == ["start"]
    assert repo.transaction(lambda s: sql.note(s, now, repo.outbox)) == []
    # replaced by a new pause of the same scope; then ended by an operator
    q = repo.transaction(lambda s: sql.add(s, "web", "longer", "ops", now,
                                           now + timedelta(minutes=9)))
    assert [x.id for x in repo.transaction(lambda s: sql.active(s, now))] == [q.id]
    ended = repo.transaction(lambda s: sql.end(s, "web", False, "bob", now))
    assert [x.id for x in ended] == [q.id]
    assert repo.transaction(lambda s: sql.active(s, now)) == []
    noted = repo.transaction(lambda s: sql.note(s, now, repo.outbox))
    assert sorted(w for w, _ in noted) == ["end", "end", "start"]
    events = [n.event for n in repo.transaction(
        lambda s: list(s.scalars(select(Notification))))]
    assert events.count("paused") == 2 and events.count("paused_resolved") == 2
