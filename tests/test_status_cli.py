"""`arbiter status` and `arbiter release`, as an operator runs them: real processes
(`arbiter sim` directors, `arbiter serve`), the CLI reading the API over HTTP."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.simserve import SimServe, cli


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Path]:
    """Simulated directors in a split brain, and `arbiter serve` on a free port."""
    with SimServe(tmp_path) as s:
        yield s.cfg


def wait_status(cfg: Path, state: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`arbiter status` once the cluster is in ``state`` (it abstains until the first
    round, and that needs an operator too: exit 1 alone says too little)."""
    deadline = time.monotonic() + timeout
    while True:
        r = cli("status", "-c", str(cfg))
        if f"+ cluster web: {state}" in r.stdout or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


def test_status_and_release_as_an_operator_runs_them(served: Path) -> None:
    held = wait_status(served, "NEEDS-OPERATOR")  # fenced, and lb2 waits for an operator
    assert held.returncode == 1, held.stdout + held.stderr
    assert "+ cluster web: NEEDS-OPERATOR  lb2 held by incident #" in held.stdout
    assert re.search(r"\| lb2 \(held\) +\| backup ", held.stdout), held.stdout
    incident = int(re.search(r"incident #(\d+)", held.stdout).group(1))  # type: ignore[union-attr]

    nothing = cli("release", "999", "--reason", "typo", "-c", str(served))
    assert nothing.returncode == 1 and "404" in nothing.stdout
    done = cli("release", str(incident), "--reason", "checked lb2 by hand", "-c", str(served))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"incident #{incident}: released lb2" in done.stdout
    assert "recover lb2: ok" in done.stdout
    again = cli("release", str(incident), "--reason", "twice", "-c", str(served))
    assert again.returncode == 1 and "409" in again.stdout


def test_status_says_when_the_arbiter_cannot_be_asked(tmp_path: Path, served: Path) -> None:
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text(re.sub(r'listen = ".*"', f'listen = "127.0.0.1:{free_port()}"',
                          served.read_text()))
    r = cli("status", "-c", str(cfg))
    assert r.returncode == 2 and "cannot reach the arbiter at http://127.0.0.1:" in r.stdout


def test_version_and_help_name_exit_codes() -> None:
    v = cli("--version")
    assert v.returncode == 0 and re.fullmatch(r"arbiter \d+\.\d+\.\d+\n", v.stdout)
    h = " ".join(cli("--help").stdout.split())  # argparse wraps the lines
    assert "exit 0 fine, 1 something needs an operator" in h
    assert "exit 0 done, 1 nothing held or unknown incident, 2 error" in h


def status_waiting(cfg: Path, settle: float, release: Callable[[], object]) -> tuple[str, int]:
    """`arbiter status --wait 60s`, started now: still waiting after ``settle`` seconds;
    then ``release`` lets the service answer. Its output and exit code (it is killed
    by its id if it outlives the test)."""
    waiting = subprocess.Popen([sys.executable, "-m", "arbiter.cli", "status", "-c",
                                str(cfg), "--wait", "60s"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(settle)
        assert waiting.poll() is None, waiting.communicate()[0]
        release()
        out, _ = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(5)
    return out, waiting.returncode


def test_status_waits_for_a_service_that_is_starting(tmp_path: Path) -> None:
    """`systemctl start` returns before the API listens: `status --wait 60s` asks again
    until it answers (README "First deployment", step 6); an answer with an HTTP error
    would be final, and a bare number is refused naming the option."""
    with SimServe(tmp_path) as s:
        assert s.serve is not None
        s.serve.terminate()
        s.serve.wait(15)
        # after 1 s it has found nobody at least once
        out, rc = status_waiting(s.cfg, 1.0, s.start_serve)
        assert rc in (0, 1) and "+ cluster web:" in out, out
    bad = cli("status", "-c", str(s.cfg), "--wait", "10")
    assert bad.returncode == 2 and "argument --wait: '10' has no unit" in bad.stderr


def test_status_waits_for_the_first_round_too(tmp_path: Path) -> None:
    """Right after `systemctl enable --now`, the API can answer before the first round
    has completed: `status --wait` asks again rather than report "no round has
    completed yet" and exit 1 (the README's step 6 failed that way, now and then, on
    the booted Debian of tests/lab/test_first_deployment.py). The first round is held
    at a failpoint until the test lets it go."""
    marker = tmp_path / "first-round"
    with SimServe(tmp_path, env={"ARBITER_FAILPOINT_BEFORE_FIRST_ROUND": str(marker)}) as s:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the serve never reached its first round"
        early = cli("status", "-c", str(s.cfg), "--json")  # no --wait: what it says now
        assert json.loads(early.stdout)["arbiter"]["last_round"]["count"] == 0, early.stdout
        # after 1.5 s the API answers and the round has not run
        out, _ = status_waiting(s.cfg, 1.5, marker.unlink)
    assert "+ cluster web:" in out and "no round has completed yet" not in out, out
