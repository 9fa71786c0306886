"""A throw-away PostgreSQL for the benchmarks that need one ([ha]): initdb in a
temporary directory, listening on 127.0.0.1 only, stopped and removed on exit.
Needs root (it runs the server as the postgres user), as the tests do."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def throwaway_pg() -> Iterator[tuple[str, Path]]:
    """(SQLAlchemy URL, data directory)."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bins:
        raise RuntimeError("PostgreSQL is not installed (bash deploy/bootstrap.sh --test)")
    pgbin, port = bins[-1], _free_port()
    d = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    shutil.chown(d, "postgres")

    def su(cmd: str) -> None:
        subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", f"cd / && {cmd}"],
                       check=True, capture_output=True, timeout=120)

    try:
        su(f"{pgbin}/initdb -D {d}/data -A trust -U postgres -E UTF8 --locale=C.UTF-8")
        su(f"{pgbin}/pg_ctl -D {d}/data -o '-k {d} -h 127.0.0.1 -p {port}' -l {d}/log -w start")
        su(f"{pgbin}/createdb -h 127.0.0.1 -p {port} bench")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/bench", d / "data"
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            su(f"{pgbin}/pg_ctl -D {d}/data -m immediate stop")
        shutil.rmtree(d, ignore_errors=True)
