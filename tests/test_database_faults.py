"""A database that is locked, frozen or gone becomes visible state within a bound,
never a stalled round and never an unrecorded fence. SQLite always; PostgreSQL when CI
provides one (there the server itself is frozen with SIGSTOP)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from arbiter.sim.node import SimSite
from arbiter.sim.scenario import VIP1
from tests.test_cycle import incidents, rounds


@contextmanager
def locked(db_url: str) -> Iterator[None]:
    """Another process's exclusive transaction on the SQLite file."""
    conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@contextmanager
def frozen(engine) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """PostgreSQL's postmaster and every backend stopped, as a VM pause would."""
    with engine.connect() as c:
        data = c.execute(text("SHOW data_directory")).scalar_one()
    with open(os.path.join(data, "postmaster.pid")) as f:
        master = int(f.readline())
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True,
                              text=True).stdout.split()
    pids = [master] + [int(p) for p in children]
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        yield
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)


async def test_a_database_that_does_not_answer_is_db_error_within_a_bound(
    site: SimSite, make_arbiter, db_url: str
) -> None:
    arb = await make_arbiter(site, database=db_url)
    await rounds(arb, 1)
    site.state("lb2").add("eth0", VIP1, 24)  # a split: the round has something to record
    stuck = locked(db_url) if db_url.startswith("sqlite") else frozen(arb.repo.engine)
    with stuck:
        took = []
        for _ in range(3):
            t0 = time.monotonic()
            await rounds(arb, 1)
            took.append(time.monotonic() - t0)
        assert arb.view.db_error and "did not answer" in arb.view.db_error or \
            "locked" in (arb.view.db_error or ""), arb.view.db_error
        assert "systemctl stop keepalived" not in site.state("lb2").commands  # unrecorded
        assert arb.view.assessment.cluster("web").split_vips == (VIP1,)  # still observing
    # bounded: one database timeout (2 s) or client deadline (3 s) per round at most,
    # well inside stale_after (7 s): the gates never see stale verdicts for it
    assert max(took) < 3.8, took
    await rounds(arb, 3)
    assert arb.view.db_error is None
    # exactly one incident: nothing the timed-out calls sent landed behind our back
    assert [i["state"] for i in incidents(arb)] == ["fenced"]


class BreaksTheDatabaseAtTheFence:
    """The real SSH pool; the moment the fence command goes out, the database stops
    taking writes (its incidents table is renamed away), until healed."""

    def __init__(self, inner):  # type: ignore[no-untyped-def]
        self.inner = inner
        self.engine = None

    async def run(self, target, command, timeout):  # type: ignore[no-untyped-def]
        if command == "systemctl stop keepalived" and self.engine is not None:
            with self.engine.begin() as c:
                c.execute(text("ALTER TABLE incidents RENAME TO incidents_away"))
        return await self.inner.run(target, command, timeout)

    def heal(self) -> None:
        with self.engine.begin() as c:
            c.execute(text("ALTER TABLE incidents_away RENAME TO incidents"))

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


async def test_an_outage_mid_fence_loses_neither_steps_nor_the_hold(
    site: SimSite, make_arbiter
) -> None:
    spy = None

    def wrap(pool):  # type: ignore[no-untyped-def]
        nonlocal spy
        spy = BreaksTheDatabaseAtTheFence(pool)
        return spy

    arb = await make_arbiter(site, runner_wrapper=wrap)
    spy.engine = arb.repo.engine
    await rounds(arb, 1)
    site.state("lb2").add("eth0", VIP1, 24)
    await rounds(arb, 2)  # confirmed and fenced; every write after the decision fails
    assert not site.state("lb2").keepalived_running
    await rounds(arb, 1)  # the next round's view shows it
    assert arb.view.db_error and arb.view.unwritten >= 1  # the result (and what followed)
    spy.heal()
    await rounds(arb, 2)
    assert arb.view.db_error is None and arb.view.unwritten == 0
    (inc,) = incidents(arb)
    full = arb.repo.get_incident(inc["id"])
    assert "fenced" in [t["state"] for t in full["timeline"]]  # the result, written late
    assert full["held"] and full["held_nodes"] == ["lb2"]  # and the hold with it
    assert [a["step"] for a in full["fence_attempts"]][:2] == ["fence_command", "verify"]


async def test_a_deleted_sqlite_file_is_noticed_and_said(site: SimSite, make_arbiter,
                                                         tmp_path) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from arbiter.api.app import create_app

    arb = await make_arbiter(site)
    await rounds(arb, 1)
    app = create_app(arb)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://arbiter") as c:
        assert (await c.get("/readyz")).status_code == 200
        os.unlink(tmp_path / "arbiter.db")
        await rounds(arb, 1)
        r = await c.get("/readyz")
        assert r.status_code == 503 and "arbiter.db" not in r.text  # no path to anyone
        status = (await c.get("/status")).json()["arbiter"]
        assert "was deleted" in status["db_file_problem"]


def test_an_unwritable_shm_file_is_refused_naming_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SQLite maps the -shm file; one it cannot write must be refused up front."""
    import pytest

    from arbiter.store.engine import StoreError, make_engine

    db = tmp_path / "arbiter.db"
    db.touch()
    shm = tmp_path / "arbiter.db-shm"
    shm.touch()
    subprocess.run(["chattr", "+i", str(shm)], check=True)
    try:
        with pytest.raises(StoreError, match="arbiter.db-shm is not writable"):
            make_engine(f"sqlite:///{db}")
    finally:
        subprocess.run(["chattr", "-i", str(shm)], check=True)
