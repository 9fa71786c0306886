"""Shared fixtures: a migrated database, simulated SSH directors, a wired Arbiter."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from arbiter import config as config_mod
from arbiter.probe.icmp import IcmpPinger, choose_privileged
from arbiter.probe.ssh import SshPool
from arbiter.round.service import Arbiter
from arbiter.sim.node import SimSite, standard_state
from arbiter.sim.scenario import GATEWAY, VIP1, site_config
from arbiter.store import migrate
from arbiter.store.engine import make_engine
from arbiter.store.repository import Repository


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def database_urls() -> list[str]:
    """SQLite always; PostgreSQL too when ARBITER_TEST_PG_URL names one (CI sets it)."""
    urls = ["sqlite"]
    if os.environ.get("ARBITER_TEST_PG_URL"):
        urls.append("postgres")
    return urls


@pytest.fixture(params=database_urls())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'arbiter.db'}"
        return
    yield fresh_pg(migrated=False)


def fresh_pg(migrated: bool = True) -> str:
    """The test PostgreSQL (``ARBITER_TEST_PG_URL``) with a fresh schema: everything an
    earlier test created is dropped; ``migrated``: then migrated to the newest revision.
    A test that needs it fails, never skips, without it ([ha] refuses SQLite)."""
    url = os.environ.get("ARBITER_TEST_PG_URL")
    if not url:
        pytest.fail("ARBITER_TEST_PG_URL is not set: run through tests/run.sh, which "
                    "starts a PostgreSQL")
    engine = make_engine(url)
    with engine.begin() as c:
        from sqlalchemy import text

        c.execute(text("DROP SCHEMA public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    if migrated:
        migrate.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    r = Repository(engine)
    yield r
    engine.dispose()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[SimSite]:
    """Two simulated directors on 127.0.0.11/.12 (lb1 holds the VIP), gateway 127.0.0.1."""
    s = SimSite(tmp_path / "sim", port=free_port())
    gw = {GATEWAY: True}
    await s.add(standard_state("lb1", "127.0.0.11", [VIP1], [VIP1], gw))
    await s.add(standard_state("lb2", "127.0.0.12", [VIP1], [], gw))
    yield s
    await s.close()


def write_config(site: SimSite, tmp_path: Path, database: str | None = None,
                 **arbiter: object) -> config_mod.Config:
    # These tests drive rounds back to back to test what a round records and does; the
    # time a split must last (confirm_min_span, 0.5 s by default) is tested on its own
    # (test_cycle.py, tests/unit/test_invariants.py), so here it is 0 unless asked.
    arbiter.setdefault("confirm_min_span", 0.0)
    p = tmp_path / "arbiter.toml"
    p.write_text(site_config(site, [VIP1], database or f"sqlite:///{tmp_path / 'arbiter.db'}",
                             **arbiter))  # type: ignore[arg-type]
    return config_mod.load(p)


@pytest.fixture
async def make_arbiter(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Build Arbiters on the simulated site; every one is closed at the end (fences
    awaited, connections closed), also when the test failed."""
    made: list[Arbiter] = []

    async def _make(site: SimSite, runner_wrapper=None, pinger_wrapper=None,  # type: ignore[no-untyped-def]
                    database: str | None = None, **arbiter: object) -> Arbiter:
        """runner_wrapper / pinger_wrapper wrap the real SSH pool and ICMP pinger
        (spies, a failing gateway): real I/O underneath, never a mock."""
        cfg = write_config(site, tmp_path, database, **arbiter)
        engine = make_engine(cfg.arbiter.database)
        migrate.upgrade(engine)
        runner = SshPool(cfg.ssh.client_keys, cfg.ssh.known_hosts, cfg.ssh.connect_timeout)
        pinger = IcmpPinger(choose_privileged("auto"))
        arb = Arbiter(cfg, engine,
                      pinger_wrapper(pinger) if pinger_wrapper else pinger,
                      runner_wrapper(runner) if runner_wrapper else runner)
        made.append(arb)
        await arb.restore()
        return arb

    yield _make
    for arb in made:
        await arb.close()
