"""The node-side scripts, run for real: arbiter-gate and arbiter-notify under dash and
busybox against a tiny HTTP server on 127.0.0.1, and the forced-command wrapper.

Every address used is on loopback; "isolated" is a fresh network namespace whose
loopback is down (unshare -n), so nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from arbiter.probe.collect import collect_command, parse_collect

REPO = Path(__file__).resolve().parents[1]
GATE = REPO / "deploy/keepalived/arbiter-gate"
NOTIFY = REPO / "deploy/keepalived/arbiter-notify"
WRAPPER = REPO / "deploy/node/arbiter-ssh-wrapper"


class Arbiter(BaseHTTPRequestHandler):
    answer = "allow"
    posts: list[tuple[dict, str]] = []
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        Arbiter.paths.append(self.path)
        if self.answer == "500":
            self.send_response(500)
            self.end_headers()
            return
        body = (self.answer + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("Content-Length", 0))
        Arbiter.posts.append((json.loads(self.rfile.read(n)),
                              self.headers.get("Authorization", "")))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a: object) -> None:
        pass


class _HTTPServer6(HTTPServer):
    address_family = socket.AF_INET6


def _serve(host: str) -> Iterator[str]:
    """The tiny arbiter on loopback (127.0.0.1, or ::1 for IPv6); its URL."""
    srv = (_HTTPServer6 if ":" in host else HTTPServer)((host, 0), Arbiter)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    Arbiter.posts = []
    yield f"http://{f'[{host}]' if ':' in host else host}:{srv.server_address[1]}"
    srv.shutdown()


@pytest.fixture
def arbiter_url() -> Iterator[str]:
    yield from _serve("127.0.0.1")


def shells(tmp_path: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    """(name, argv prefix, env): dash with curl, and busybox sh with only busybox's
    applets on PATH (so the gate must get by with busybox wget and ping)."""
    state = {"ARBITER_GATE_STATE_DIR": str(tmp_path / "gate-state")}  # [ha] terms kept here
    out = [("dash+curl", ["dash"], {**os.environ, **state})]
    bb = shutil.which("busybox")
    if bb:
        bindir = tmp_path / "bb"
        bindir.mkdir(exist_ok=True)
        for applet in ("sh", "wget", "ping", "cat", "logger", "printf", "grep", "timeout",
                       "head", "mkdir", "mv", "date", "stat"):  # busybox has no flock
            link = bindir / applet
            if not link.exists():
                link.symlink_to(bb)
        out.append(("busybox+wget", [bb, "sh"], {"PATH": str(bindir), **state}))
    return out


def test_busybox_is_available_for_these_tests() -> None:
    # bootstrap installs busybox; without it half of the gate's promise goes untested
    assert shutil.which("busybox"), "busybox missing (bash deploy/bootstrap.sh --test)"


@pytest.mark.parametrize(("answer", "gateway", "code"), [
    ("allow", "127.0.0.1", 0),
    ("deny", "127.0.0.1", 1),
    ("abstain", "127.0.0.1", 0),  # arbiter unsure, gateway reachable: never block failover
    ("500", "127.0.0.1", 0),
])
def test_gate_verdicts(arbiter_url: str, tmp_path: Path, answer: str, gateway: str,
                       code: int) -> None:
    Arbiter.answer = answer
    for name, argv, env in shells(tmp_path):
        p = subprocess.run([*argv, str(GATE), arbiter_url, "web", "lb1", gateway],
                           env=env, capture_output=True, text=True, timeout=10)
        assert p.returncode == code, (name, p.stderr)


def test_gate_arbiter_down_gateway_up_passes(tmp_path: Path) -> None:
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for name, argv, env in shells(tmp_path):
        p = subprocess.run([*argv, str(GATE), dead, "web", "lb1", "127.0.0.1"], env=env,
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 0, name


def test_gate_isolated_node_fails(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for unshare -n (a namespace with loopback down)")
    for name, argv, env in shells(tmp_path):
        p = subprocess.run(["/usr/bin/unshare", "-n", *argv, str(GATE), "http://127.0.0.1:9", "web",
                            "lb1", "127.0.0.1"], env=env, capture_output=True, text=True,
                           timeout=10)
        assert p.returncode == 1, (name, p.stderr)


def test_gate_asks_about_one_vip(arbiter_url: str, tmp_path: Path) -> None:
    """Dual-master with exclusive verdicts: one gate per instance, each with its VIP."""
    Arbiter.answer = "deny"
    for name, argv, env in shells(tmp_path):
        Arbiter.paths = []
        p = subprocess.run([*argv, str(GATE), "--vip", "192.168.77.200", arbiter_url, "web",
                            "lb1", "127.0.0.1"], env=env, capture_output=True, text=True,
                           timeout=10)
        assert p.returncode == 1, (name, p.stderr)
        assert Arbiter.paths == ["/verdict?cluster=web&node=lb1&format=text&vip=192.168.77.200"]
    p = subprocess.run(["dash", str(GATE), "--vip"], capture_output=True, text=True)
    assert p.returncode == 2 and "--vip needs a VIP" in p.stderr


def test_gate_usage_error() -> None:
    p = subprocess.run(["dash", str(GATE), "http://x"], capture_output=True, text=True)
    assert p.returncode == 2 and "usage" in p.stderr


def test_notify_posts_the_transition(arbiter_url: str, tmp_path: Path) -> None:
    tok = tmp_path / "node.token"
    tok.write_text("s3cret-token-of-lb1\n")
    for name, argv, env in shells(tmp_path):
        Arbiter.posts = []
        p = subprocess.run(
            [*argv, str(NOTIFY), arbiter_url, "web", "lb1", "INSTANCE", "VI_1", "MASTER", "100"],
            env={**env, "ARBITER_TOKEN_FILE": str(tok)}, capture_output=True, text=True,
            timeout=10)
        assert p.returncode == 0, name
        ((body, auth),) = Arbiter.posts
        assert body == {"cluster": "web", "node": "lb1", "type": "INSTANCE", "instance": "VI_1",
                        "state": "MASTER", "priority": 100}, name
        assert auth == "Bearer s3cret-token-of-lb1", name


def test_notify_never_fails_keepalived() -> None:
    p = subprocess.run(["dash", str(NOTIFY), "http://127.0.0.1:9", "web", "lb1", "INSTANCE",
                        "VI_1", "FAULT"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0


# --- the forced-command wrapper -------------------------------------------------------

@pytest.fixture
def wrapper_conf(tmp_path: Path) -> Path:
    c = tmp_path / "wrapper.conf"
    c.write_text("vip 10.0.0.100\nallow echo fenced\nsudo no\n")
    return c


def wrap(conf: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dash", str(WRAPPER), str(conf)], capture_output=True, text=True,
                          env={**os.environ, "SSH_ORIGINAL_COMMAND": command}, timeout=15)


def test_wrapper_runs_its_own_collect(wrapper_conf: Path) -> None:
    cmd = collect_command(["127.0.0.1"], 1.0, ["127.0.0.2"])
    p = wrap(wrapper_conf, cmd)
    assert p.returncode == 0, p.stderr
    facts = parse_collect(p.stdout, ["127.0.0.1"], ["127.0.0.2"])
    assert facts.gateways == (("127.0.0.1", True),)
    assert facts.peers == (("127.0.0.2", True),)
    assert any(a.address == "127.0.0.1" for a in facts.addresses)


def test_wrapper_collect_never_executes_request_text(wrapper_conf: Path,
                                                     tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    cmd = collect_command(["127.0.0.1"], 1.0).replace("127.0.0.1", f"127.0.0.1;touch {marker}")
    p = wrap(wrapper_conf, cmd)
    assert p.returncode == 126 and "refused" in p.stderr
    assert not marker.exists()


def wrap_session(conf: Path, lines: list[str],
                 shell: tuple[str, ...] = ("dash",)) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*shell, str(WRAPPER), str(conf)], input="".join(lines),
                          capture_output=True, text=True,
                          env={**os.environ, "SSH_ORIGINAL_COMMAND": "sh"}, timeout=15)


@pytest.mark.parametrize("shell", [("dash",), ("busybox", "sh")])
def test_wrapper_session_answers_collect_lines(wrapper_conf: Path,
                                               shell: tuple[str, ...]) -> None:
    from arbiter.probe.ssh import session_line

    one = collect_command(["127.0.0.1"], 1.0, ["127.0.0.2"])
    two = collect_command(["127.0.0.3"], 1.0)
    p = wrap_session(wrapper_conf, [session_line(one, "@@arbiter-done 1"),
                                    session_line(two, "@@arbiter-done 2")], shell)
    assert p.returncode == 0, p.stderr
    first, rest = p.stdout.split("@@arbiter-done 1 0\n")
    second, tail = rest.split("@@arbiter-done 2 0\n")
    assert tail == ""
    assert parse_collect(first, ["127.0.0.1"], ["127.0.0.2"]).peers == (("127.0.0.2", True),)
    assert parse_collect(second, ["127.0.0.3"]).gateways == (("127.0.0.3", True),)


BAD_SESSION_LINES = {
    "not a collect": lambda good, marker: "id",
    "another command in the frame":
        lambda good, marker: "o=$(id); s=$?; printf '%s\\n@@arbiter-done 1 %s\\n' \"$o\" \"$s\"",
    "something appended": lambda good, marker: f"{good}; touch {marker}",
    "a marker that is not a number":
        lambda good, marker: good.replace("@@arbiter-done 1", f"@@arbiter-done 1;touch {marker}"),
}


@pytest.mark.parametrize("bad", list(BAD_SESSION_LINES))
def test_wrapper_session_refuses_other_lines(wrapper_conf: Path, tmp_path: Path,
                                             bad: str) -> None:
    from arbiter.probe.ssh import session_line

    marker = tmp_path / "pwned"
    good = session_line(collect_command(["127.0.0.1"], 1.0), "@@arbiter-done 1").rstrip("\n")
    line = BAD_SESSION_LINES[bad](good, marker) + "\n"
    assert line != good + "\n"
    p = wrap_session(wrapper_conf, [line, session_line("echo never", "@@arbiter-done 2")])
    assert p.returncode == 126 and "refused" in p.stderr, (line, p.stderr)
    assert "@@arbiter-done" not in p.stdout
    assert not marker.exists()


@pytest.mark.parametrize(("command", "ok"), [
    ("echo fenced", True),
    ("echo fenced; id", False),
    ("rm -rf /tmp/nothing", False),
    ("ip addr del 10.0.0.7/24 dev eth0", False),  # not a configured VIP
    ("ip addr del 10.0.0.100/24 dev eth0;id", False),
    ("arping -q -U -c 2 -I eth0 10.0.0.99", False),
    ("", False),
])
def test_wrapper_allow_list(wrapper_conf: Path, command: str, ok: bool) -> None:
    p = wrap(wrapper_conf, command)
    if ok:
        assert p.returncode == 0 and p.stdout == "fenced\n"
    else:
        assert p.returncode == 126 and "refused" in p.stderr, (command, p.stderr)


def test_wrapper_lets_vip_removal_through_to_ip(wrapper_conf: Path) -> None:
    # The VIP is configured, so the wrapper hands the request to `ip` itself; ip then
    # fails because this machine has no such address: the refusal is not the wrapper's.
    p = wrap(wrapper_conf, "ip addr del 10.0.0.100/24 dev lo")
    assert p.returncode not in (0, 126)
    assert "refused" not in p.stderr


# --- keepalived track files and the keepalived watch (issue 21) --------------------------

def test_gate_lifts_a_deny_nobody_refreshed(arbiter_url: str, tmp_path: Path) -> None:
    """--track: a deny older than ARBITER_GATE_DENY_TTL is lifted (the arbiter that
    wrote it is gone); a fresh one stays. Under dash and busybox."""
    import time

    Arbiter.answer = "allow"
    for name, argv, env in shells(tmp_path):
        track = tmp_path / f"VI_1-{name}"
        track.write_text("1\n")
        os.utime(track, (time.time() - 10, time.time() - 10))
        p = subprocess.run([*argv, str(GATE), "--vip", "10.0.0.100", "--track", str(track),
                            arbiter_url, "web", "lb1", "127.0.0.1"],
                           env={**env, "ARBITER_GATE_DENY_TTL": "3"}, capture_output=True,
                           text=True, timeout=10)
        assert p.returncode == 0, (name, p.stderr)
        assert track.read_text() == "0\n", name
        track.write_text("1\n")  # written just now: stays
        p = subprocess.run([*argv, str(GATE), "--track", str(track), arbiter_url, "web",
                            "lb1", "127.0.0.1"], env={**env, "ARBITER_GATE_DENY_TTL": "3"},
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 0 and track.read_text() == "1\n", (name, p.stderr)


def _gate_on(track: Path, age: float, argv: list[str], env: dict[str, str],
             url: str) -> str:
    """The gate's run on a deny ``age`` seconds old: what the track file says after."""
    import time

    track.write_text("1\n")
    now = time.time()
    os.utime(track, (now - age, now - age))
    p = subprocess.run([*argv, str(GATE), "--track", str(track), url, "web", "lb1",
                        "127.0.0.1"], env={**env, "ARBITER_GATE_DENY_TTL": "3"},
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    return track.read_text()


def test_a_write_delayed_by_1_5_s_never_lifts_a_standing_deny(arbiter_url: str,
                                                                tmp_path: Path) -> None:
    """The arbiter rewrites a standing deny every second (issue 29); one write delayed
    by 1.5 s leaves the file 2.5 s old when the gate looks: under the 3 s TTL, with
    milliseconds (dash, GNU date and stat) and with whole seconds (busybox), where
    rounding could otherwise add a second. Past the TTL (and the rounding) it lifts."""
    import time

    Arbiter.answer = "allow"
    for name, argv, env in shells(tmp_path):
        track = tmp_path / f"VI_1-{name}"
        for _ in range(5):  # at several sub-second phases of the clock
            assert _gate_on(track, 1.0 + 1.5, argv, env, arbiter_url) == "1\n", name
            time.sleep(0.17)
        assert _gate_on(track, 4.2, argv, env, arbiter_url) == "0\n", name
        if name.startswith("dash"):  # milliseconds: exactly the TTL
            assert _gate_on(track, 3.05, argv, env, arbiter_url) == "0\n"


# --- IPv6 (issue 31): an IPv6 arbiter URL, IPv6 VIPs, under dash and busybox ---------------

@pytest.fixture
def arbiter_url6() -> Iterator[str]:
    yield from _serve("::1")


def test_gate_asks_an_ipv6_arbiter_about_an_ipv6_vip(arbiter_url6: str, tmp_path: Path) -> None:
    for answer, code in (("deny", 1), ("allow", 0)):
        Arbiter.answer = answer
        for name, argv, env in shells(tmp_path):
            Arbiter.paths = []
            p = subprocess.run([*argv, str(GATE), "--vip", "fd77:77:77::100", arbiter_url6,
                                "web", "lb1", "::1"], env=env, capture_output=True, text=True,
                               timeout=10)
            assert p.returncode == code, (name, answer, p.stderr)
            assert Arbiter.paths == [
                "/verdict?cluster=web&node=lb1&format=text&vip=fd77:77:77::100"], name


def test_gate_with_an_ipv6_gateway_falls_back_on_it(tmp_path: Path) -> None:
    from tests.conftest import free_port

    dead = f"http://[::1]:{free_port()}"  # nothing listens there; ::1 answers ping
    for name, argv, env in shells(tmp_path):
        p = subprocess.run([*argv, str(GATE), dead, "web", "lb1", "::1"], env=env,
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 0, (name, p.stderr)


def test_notify_posts_to_an_ipv6_arbiter(arbiter_url6: str, tmp_path: Path) -> None:
    token = tmp_path / "node.token"
    token.write_text("t0ken\n")
    for name, argv, env in shells(tmp_path):
        Arbiter.posts = []
        p = subprocess.run([*argv, str(NOTIFY), arbiter_url6, "web", "lb1", "INSTANCE", "VI_6",
                            "MASTER"], env={**env, "ARBITER_TOKEN_FILE": str(token)},
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 0, (name, p.stderr)
        assert [b["instance"] for b, _ in Arbiter.posts] == ["VI_6"], (name, Arbiter.posts)


@pytest.mark.parametrize(("command", "ok"), [
    ("ip addr del fd77:77:77::100/128 dev lo", True),  # handed to ip (which then fails)
    ("ip addr del fd77:77:77::101/128 dev lo", False),
    ("ip addr del FD77:77:77::100/128 dev lo", False),  # not as the config spells it
    ("ip addr del 10.0.0.1../24 dev lo", False),  # a pattern once matched 10.0.0.100
    ("ip addr del .*/24 dev lo", False),
    ("ip addr del 10.0.0.100/24 dev lo", True),
])
@pytest.mark.parametrize("shell", [("dash",), ("busybox", "sh")])
def test_wrapper_matches_vips_exactly(tmp_path: Path, command: str, ok: bool,
                                      shell: tuple[str, ...]) -> None:
    c = tmp_path / "wrapper.conf"
    c.write_text("vip 10.0.0.100\nvip fd77:77:77::100\nsudo no\n")
    p = subprocess.run([*shell, str(WRAPPER), str(c)], capture_output=True, text=True,
                       env={**os.environ, "SSH_ORIGINAL_COMMAND": command}, timeout=15)
    if ok:  # the wrapper let it through: `ip` itself fails, as lo has no such address
        assert p.returncode not in (0, 126) and "refused" not in p.stderr, p.stderr
    else:
        assert p.returncode == 126 and "not a configured VIP" in p.stderr, p.stderr
