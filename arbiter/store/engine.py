"""How the arbiter connects to its database: an engine whose every wait is bounded,
SQLite's pragmas and its pre-flight check, and the one error the store raises.

The repository (``store/repository.py``) owns what is written and read; this module
owns only the connection it does that through.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url


class StoreError(Exception):
    """The database failed (or refused): callers turn it into visible state."""


DB_TIMEOUT = 2.0  # seconds: connect, lock wait and statement, each


def make_engine(url: str, timeout: float = DB_TIMEOUT) -> Engine:
    """An engine whose every wait is bounded: a hung database becomes an error within
    ``timeout`` (the Ledger also bounds each call from the client side, since a frozen
    server enforces nothing)."""
    kw: dict[str, Any] = {"pool_pre_ping": True, "pool_timeout": timeout}
    if url.startswith("sqlite"):
        # `timeout` is SQLite's busy timeout: how long a write waits for the lock
        kw["connect_args"] = {"check_same_thread": False, "timeout": timeout}
    elif url.startswith("postgresql"):
        ms = int(timeout * 1000)
        kw["connect_args"] = {
            "connect_timeout": max(1, round(timeout)),
            # statements and lock waits end server-side; and UTF-8 whatever the cluster's
            # encoding (an SQL_ASCII database made psycopg return bytes)
            "options": f"-c statement_timeout={ms} -c lock_timeout={ms}",
            "client_encoding": "utf8",
        }
    if url.startswith("sqlite"):
        sqlite_preflight(url)
    engine = create_engine(url, **kw)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets the API read while the loop writes; FKs are off by default in SQLite.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def sqlite_file(url: str) -> Path | None:
    path = make_url(url).database
    return Path(path) if path and path != ":memory:" else None


def sqlite_preflight(url: str) -> None:
    """Refuse, naming the file, a database SQLite could open but not write: an
    unwritable -wal or -shm (SQLite maps the -shm file into memory, and a mapping it
    cannot extend ends the process with SIGBUS), or a directory where neither can be
    made."""
    path = sqlite_file(url)
    if path is None:
        return
    for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if f.exists() and not os.access(f, os.W_OK):
            raise StoreError(f"{f} is not writable (permissions or an immutable attribute): "
                             "the arbiter must be able to write its database")
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"{folder} is not writable: SQLite needs to create {path.name}-wal "
                         f"and {path.name}-shm beside {path.name}")
