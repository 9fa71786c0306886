"""[ha] Fencing at the resource, on the node side, run for real: arbiter-ssh-wrapper
keeps the highest term under flock and refuses a lower one; arbiter-gate asks several
arbiters, a deny wins, and an answer with a lower term than one seen counts for
nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_node_scripts import GATE, shells, wrap


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    c = tmp_path / "wrapper.conf"
    c.write_text(f"vip 10.0.0.100\nallow echo fenced\nallow sleep 1\nsudo no\n"
                 f"term_file {tmp_path / 'term'}\n")
    return c


def test_wrapper_keeps_the_highest_term_and_refuses_a_lower_one(conf: Path,
                                                                tmp_path: Path) -> None:
    p = wrap(conf, "@@term 5 echo fenced")
    assert (p.returncode, p.stdout) == (0, "fenced\n"), p.stderr
    assert (tmp_path / "term").read_text() == "5\n"
    p = wrap(conf, "@@term 4 echo fenced")
    assert p.returncode == 125 and p.stdout == ""
    assert "stale term 4 < 5" in p.stderr
    p = wrap(conf, "@@term 5 echo fenced")  # the same leader again
    assert p.returncode == 0, p.stderr
    p = wrap(conf, "@@term 6 echo fenced")
    assert p.returncode == 0 and (tmp_path / "term").read_text() == "6\n"
    # without a term (one arbiter, no [ha]) the allow-list alone decides, as before
    assert wrap(conf, "echo fenced").returncode == 0


@pytest.mark.parametrize("command", ["@@term x echo fenced", "@@term 7", "@@term 7 sh",
                                     "@@term 7 rm -rf /"])
def test_wrapper_refuses_a_bad_term_line(conf: Path, tmp_path: Path, command: str) -> None:
    p = wrap(conf, command)
    assert p.returncode == 126, (command, p.stderr)
    # a refused line never raises the term it carried
    assert not (tmp_path / "term").exists() or (tmp_path / "term").read_text() != "7\n"


def test_an_older_term_cannot_run_after_a_newer_one_has_started(conf: Path) -> None:
    """The command runs under the lock: term 6 arriving while term 7's command still
    runs waits for it, then is refused, instead of slipping in between."""
    newer = subprocess.Popen(["dash", str(Path(GATE).parents[1] / "node/arbiter-ssh-wrapper"),
                              str(conf)], env={"SSH_ORIGINAL_COMMAND": "@@term 7 sleep 1",
                                               "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    started = time.monotonic()
    older = wrap(conf, "@@term 6 echo fenced")
    waited = time.monotonic() - started
    assert newer.wait(10) == 0
    assert older.returncode == 125 and "stale term 6 < 7" in older.stderr
    assert waited > 0.4, "term 6 did not wait for term 7's command to end"


def test_a_daemon_a_command_starts_does_not_keep_the_term_lock(tmp_path: Path) -> None:
    """The HA soak's finding: a recover (`keepalived start`) left the daemon holding
    the wrapper's lock (it inherited the lock's descriptor), so every later command
    with a term waited for the lock and timed out: no fence ran on that node again."""
    pidfile = tmp_path / "daemon.pid"
    start = f"sleep 30 </dev/null >/dev/null 2>&1 & echo $! > {pidfile}"
    c = tmp_path / "wrapper.conf"
    c.write_text(f"vip 10.0.0.100\nallow echo fenced\nallow {start}\nsudo no\n"
                 f"term_file {tmp_path / 'term'}\n")
    p = wrap(c, f"@@term 3 {start}")
    pid = int(pidfile.read_text())
    try:
        assert p.returncode == 0, p.stderr
        started = time.monotonic()
        p = wrap(c, "@@term 3 echo fenced")  # the daemon still runs
        assert (p.returncode, p.stdout) == (0, "fenced\n"), p.stderr
        assert time.monotonic() - started < 5, "the next command waited for the lock"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class _Arbiter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = (self.server.answer + "\n").encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture
def arbiters() -> Iterator[list[HTTPServer]]:
    servers = []
    for _ in range(2):
        srv = HTTPServer(("127.0.0.1", 0), _Arbiter)
        srv.answer = "abstain"  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    yield servers
    for srv in servers:
        srv.shutdown()


def _url(srv: HTTPServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def _gate(argv: list[str], env: dict[str, str], urls: str) -> int:
    # gateway 127.0.0.1 answers: a fallback would pass, so exit 1 can only be a deny
    return subprocess.run([*argv, str(GATE), urls, "web", "lb1", "127.0.0.1"], env=env,
                          capture_output=True, text=True, timeout=20).returncode


def test_gate_a_deny_from_any_arbiter_wins(arbiters: list[HTTPServer], tmp_path: Path) -> None:
    a, b = arbiters
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: counts for nothing
    urls = ",".join([dead, _url(a), _url(b)])
    for name, argv, env in shells(tmp_path):
        a.answer, b.answer = "allow 3", "deny 3"  # type: ignore[attr-defined]
        assert _gate(argv, env, urls) == 1, name
        a.answer, b.answer = "allow 3", "abstain 3"  # type: ignore[attr-defined]
        assert _gate(argv, env, urls) == 0, name


def test_gate_ignores_an_answer_with_a_lower_term(arbiters: list[HTTPServer],
                                                  tmp_path: Path) -> None:
    """The old leader, paused past its lease and woken up, still says deny under term
    4: once the gate has seen term 5, that answer counts for nothing."""
    a, b = arbiters
    for name, argv, env in shells(tmp_path):
        a.answer = "allow 5"  # type: ignore[attr-defined]
        assert _gate(argv, env, _url(a)) == 0, name
        b.answer = "deny 4"  # type: ignore[attr-defined]
        assert _gate(argv, env, f"{_url(b)},{_url(a)}") == 0, name
        # alone, the stale deny is no answer at all: the gateway fallback passes
        assert _gate(argv, env, _url(b)) == 0, name
        b.answer = "deny 6"  # type: ignore[attr-defined]
        assert _gate(argv, env, _url(b)) == 1, name
        assert (Path(env["ARBITER_GATE_STATE_DIR"]) / "term-web").read_text() == "6\n"
        (Path(env["ARBITER_GATE_STATE_DIR"]) / "term-web").unlink()
