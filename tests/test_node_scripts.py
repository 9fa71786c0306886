"""The node-side scripts, run for real: arbiter-gate and arbiter-notify under dash and
busybox against a tiny HTTP server on 127.0.0.1, and the forced-command wrapper.

Every address used is on loopback; "isolated" is a fresh network namespace whose
loopback is down (unshare -n), so nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
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


@pytest.fixture
def arbiter_url() -> Iterator[str]:
    srv = HTTPServer(("127.0.0.1", 0), Arbiter)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    Arbiter.posts = []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


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

@pytest.fixture
def track_conf(tmp_path: Path) -> tuple[Path, Path]:
    d = tmp_path / "verdict"
    d.mkdir()
    c = tmp_path / "wrapper.conf"
    c.write_text(f"vip 10.0.0.100\nsudo no\ntrack_dir {d}\n")
    return c, d


def test_wrapper_writes_a_verdict_into_a_track_file(track_conf: tuple[Path, Path]) -> None:
    from arbiter.round.acts.track_files import track_command

    conf, d = track_conf
    for seq, value in enumerate((True, False, True), start=1):
        p = wrap(conf, track_command(str(d), "VI_1", value, seq))
        assert p.returncode == 0, p.stderr
        assert (d / "VI_1").read_text() == ("1\n" if value else "0\n")
    # with a term ([ha]): kept, then written
    p = wrap(conf, f"@@term 3 {track_command(str(d), 'VI_2', True, 4)}")
    assert p.returncode == 0 and (d / "VI_2").read_text() == "1\n", p.stderr


def _good(d: Path) -> str:
    from arbiter.round.acts.track_files import track_command

    return track_command(str(d), "VI_1", True, 5)


@pytest.mark.parametrize("bad", [
    lambda d: "echo 1 > /etc/passwd",
    lambda d: f"echo 1 > {d}/VI_1",  # the form before issue 29: no order
    lambda d: _good(d).replace(f"f={d}/VI_1", "f=/etc/passwd"),
    lambda d: _good(d).replace(f"f={d}/VI_1", f"f={d}/../escape"),
    lambda d: _good(d).replace(f"f={d}/VI_1", f"f={d}/a/b"),
    lambda d: _good(d).replace(f"f={d}/VI_1", f"f={d}/.hidden"),
    lambda d: _good(d).replace("&& echo 1 >", "&& echo 2 >"),
    lambda d: _good(d).replace("-lt 5 ]", "-lt 5x ]"),
    lambda d: _good(d).replace("echo 5 >", "echo 6 >"),
    lambda d: _good(d) + "; id",
    lambda d: _good(d).replace("exit 3; fi", "id; fi"),
])
def test_wrapper_refuses_any_other_write(track_conf: tuple[Path, Path], bad) -> None:  # type: ignore[no-untyped-def]
    conf, d = track_conf
    p = wrap(conf, bad(d))
    assert p.returncode == 126 and "refused" in p.stderr, (bad, p.stderr)
    assert not (d / "VI_1").exists() and not (d.parent / "escape").exists()


def test_wrapper_refuses_track_writes_without_track_dir(wrapper_conf: Path,
                                                         tmp_path: Path) -> None:
    from arbiter.round.acts.track_files import track_command

    p = wrap(wrapper_conf, track_command(str(tmp_path), "VI_1", True, 1))
    assert p.returncode == 126 and "no track_dir" in p.stderr
    assert not (tmp_path / "VI_1").exists()


DUMP = ('[{"data": {"iname": "VI_1", "vrid": 51, "version": 2, "state": 1, '
        '"wantstate": 1, "base_priority": 90, "effective_priority": 90, "adver_int": 1, '
        '"last_transition": 1796409391.9, "ifp_ifname": "eth0", '
        '"vips": ["192.168.77.100/24 dev eth0 scope global"]}, '
        '"stats": {"advert_rcvd": N, "advert_sent": 0, "pri_zero_rcvd": 0, '
        '"pri_zero_sent": 0}}]')


def watch_lines(argv: list[str], env: dict[str, str], want: int,
                timeout: float = 15) -> list[str]:
    """The first ``want`` lines of a never-ending watch, then it is stopped (its whole
    process group, by id)."""
    import select
    import signal
    import time

    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    lines: list[str] = []
    end = time.monotonic() + timeout
    try:
        assert p.stdout is not None
        while len(lines) < want and time.monotonic() < end:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r:
                line = p.stdout.readline()
                if not line:
                    break
                lines.append(line.rstrip("\n"))
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)
    return lines


def fake_keepalived(tmp: Path) -> tuple[Path, Path]:
    """A stand-in for keepalived's JSON signal: a process whose pid is in a pid file and
    which writes /tmp/keepalived.json (a private /tmp) each time it gets signal 36, with
    advert_rcvd counting up. Real keepalived is exercised by the lab tests."""
    (tmp / "dump.tmpl").write_text(DUMP)
    script = tmp / "fake-keepalived"
    script.write_text(
        "#!/bin/bash\nn=0\n"
        f"trap 'n=$((n+1)); sed \"s/N/$n/\" {tmp}/dump.tmpl > /tmp/keepalived.json' 36\n"
        "while :; do sleep 0.05; done\n")
    script.chmod(0o755)
    return script, tmp / "keepalived.pid"


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A directory that a tmpfs mounted over /tmp does not hide."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="arbiter-test-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_wrapper_runs_its_own_keepalived_watch(outside_tmp: Path) -> None:
    """The watch under the wrapper: its own loop signals the pid from its config's
    pid file and prints each dump, which the arbiter's parser takes. Run in a mount
    namespace of its own (a private /tmp), as root."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a private /tmp (unshare -m)")
    from arbiter.probe.keepalived import watch_command

    script, pidfile = fake_keepalived(outside_tmp)
    conf = outside_tmp / "wrapper.conf"
    conf.write_text(f"sudo no\nkeepalived_pid {pidfile}\n")
    # a copy of the wrapper outside /tmp: a checkout under /tmp (CI's fresh clone) is
    # hidden by the tmpfs mounted below
    wrapper = outside_tmp / "arbiter-ssh-wrapper"
    shutil.copy(WRAPPER, wrapper)
    inner = (f"mount -t tmpfs t /tmp; {script} & echo $! > {pidfile}; sleep 0.3; "
             f"exec dash {wrapper} {conf}")
    lines = watch_lines(["unshare", "--mount", "--propagation", "private", "bash", "-c", inner],
                        {**os.environ, "SSH_ORIGINAL_COMMAND": watch_command(0.1)}, 12)
    assert lines[0] == "@@arbiter-keepalived v1 0.1", lines
    from arbiter.probe.keepalived import dump_uptime, is_dump_line, parse_dump

    dumps, block, uptimes = [], None, []
    for line in lines[1:]:
        if is_dump_line(line):
            block = []
            uptimes.append(dump_uptime(line))  # the node's own clock (issue 29)
        elif line == "@@kv-end" and block is not None:
            dumps.append(parse_dump("\n".join(block)))
            block = None
        elif block is not None:
            block.append(line)
    assert len(dumps) >= 2, lines
    counts = [d[0].advert_rcvd for d in dumps]
    assert counts == sorted(counts) and counts[-1] > counts[0]  # a fresh dump each time
    assert dumps[0][0].state == "BACKUP" and dumps[0][0].vips == ("192.168.77.100",)
    assert None not in uptimes and uptimes == sorted(uptimes) and uptimes[-1] > uptimes[0]


def test_the_keepalived_watch_says_why_there_is_no_dump(tmp_path: Path) -> None:
    from arbiter.probe.keepalived import watch_command

    conf = tmp_path / "wrapper.conf"
    conf.write_text(f"sudo no\nkeepalived_pid {tmp_path}/none.pid\n")
    env = {**os.environ, "SSH_ORIGINAL_COMMAND": watch_command(0.1)}
    lines = watch_lines(["dash", str(WRAPPER), str(conf)], env, 2)
    assert lines[1].startswith("@@kv-error keepalived is not running (no live pid in ")
    # a keepalived that prints no signal number (1.x, or built without JSON)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "keepalived").write_text("#!/bin/sh\nexit 0\n")
    (fake / "keepalived").chmod(0o755)
    env["PATH"] = f"{fake}:/usr/bin:/bin"
    lines = watch_lines(["dash", str(WRAPPER), str(conf)], env, 2)
    assert lines[1].startswith("@@kv-error keepalived has no JSON dump")
    p = wrap(conf, watch_command(0.1).replace("v1 0.1", "v1 0.1; id"))
    assert p.returncode == 126 and "refused" in p.stderr


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


@pytest.mark.parametrize("stop", ["", "kill -STOP $k; "])
def test_the_collect_tells_a_frozen_keepalived_from_a_running_one(tmp_path: Path,
                                                                  stop: str) -> None:
    """pidof finds a SIGSTOPped keepalived as readily as a working one (issue 28): the
    collect, and the wrapper's own copy, read its state from /proc. A stand-in process
    named keepalived runs in a pid namespace of its own, so no other keepalived on this
    machine can answer; under dash, busybox sh and the wrapper."""
    fake = tmp_path / "keepalived"
    shutil.copy("/bin/sleep", fake)
    conf = tmp_path / "wrapper.conf"
    conf.write_text("")
    cmd = collect_command(["127.0.0.1"], 1.0)
    bb = shutil.which("busybox")
    assert bb
    bindir = tmp_path / "bb"
    bindir.mkdir()
    for applet in ("sh", "pidof", "sed", "ip", "ping", "cat"):
        (bindir / applet).symlink_to(bb)
    want = "frozen" if stop else "running"
    q = shlex.quote(cmd)
    for name, run in [("dash", f"dash -c {q}"),
                      ("busybox", f"PATH={bindir} {bb} sh -c {q}"),
                      ("wrapper", f"SSH_ORIGINAL_COMMAND={q} dash {WRAPPER} {conf}")]:
        script = f"{fake} 30 & k=$!; sleep 0.2; {stop}{run}; kill -CONT $k; kill $k"
        p = subprocess.run(["unshare", "-pf", "--mount-proc", "bash", "-c", script],
                           capture_output=True, text=True, timeout=20)
        assert p.returncode == 0, (name, p.stderr)
        section = p.stdout.split("@@keepalived\n", 1)[1].split("\n", 1)[0]
        assert section == want, (name, p.stdout[-300:])
        facts = parse_collect(p.stdout, ["127.0.0.1"])
        assert facts.keepalived_frozen is bool(stop) and facts.keepalived_running is not stop
    # and with no keepalived at all
    p = subprocess.run(["unshare", "-pf", "--mount-proc", "dash", "-c", cmd],
                       capture_output=True, text=True, timeout=20)
    assert parse_collect(p.stdout, ["127.0.0.1"]).keepalived_running is False


NAMES = ["VI_1", "VI:6", "web@v4", "vi-1.2", ".hidden", "a b", "100%", "$(touch {m})",
         "`touch {m}`", "x;touch {m}", "../escape", "é"]


@pytest.mark.parametrize("name", NAMES)
def test_instance_names_from_a_dump_never_run_and_always_reach_their_file(
        track_conf: tuple[Path, Path], tmp_path: Path, name: str) -> None:
    """An instance name comes from the node's dump (issue 29): hostile names never run
    on the node, and legitimate unusual ones (``:``, ``@``) are written, one file per
    name, with the wrapper and without it (a plain shell, as a node without the
    forced command runs it)."""
    from arbiter.round.acts.track_files import track_command, track_file_name

    conf, d = track_conf
    marker = tmp_path / "ran"
    inst = name.format(m=marker)
    cmd = track_command(str(d), inst, True, 7)
    fname = track_file_name(inst)
    assert "/" not in fname and not fname.startswith(".")
    p = wrap(conf, cmd)
    assert p.returncode == 0, p.stderr
    assert (d / fname).read_text() == "1\n"
    (d / fname).unlink()
    (d / f"{fname}.seq").unlink()
    p = subprocess.run(["dash", "-c", cmd], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and (d / fname).read_text() == "1\n", p.stderr
    assert not marker.exists() and sorted(d.iterdir()) == [d / fname, d / f"{fname}.seq"]
    assert not (d.parent / "escape").exists()


def test_track_file_names_are_one_to_one() -> None:
    from arbiter.round.acts.track_files import track_file_name

    names = [n.format(m="x") for n in NAMES] + ["VI%3A6", "%2Ehidden", "VI_1 "]
    files = [track_file_name(n) for n in names]
    assert len(set(files)) == len(names)
    assert track_file_name("VI_1") == "VI_1" and track_file_name("VI:6") == "VI%3A6"


@pytest.mark.parametrize("via", ["wrapper", "dash", "busybox"])
def test_a_late_deny_never_lands_after_a_newer_allow(track_conf: tuple[Path, Path],
                                                     via: str) -> None:
    """A deny that timed out on the arbiter (or waited for the term lock) reaches the
    node after the allow decided later (issue 29): the node refuses it (exit 3), and
    the allow stands. With the wrapper, and as a plain shell runs it."""
    from arbiter.round.acts.track_files import SUPERSEDED, track_command

    conf, d = track_conf

    def run(cmd: str) -> subprocess.CompletedProcess[str]:
        if via == "wrapper":
            return wrap(conf, cmd)
        argv = ["dash", "-c", cmd] if via == "dash" else [shutil.which("busybox") or "busybox",
                                                          "sh", "-c", cmd]
        return subprocess.run(argv, capture_output=True, text=True, timeout=10)

    deny = track_command(str(d), "VI_1", True, 1_733_580_000_100)
    allow = track_command(str(d), "VI_1", False, 1_733_580_000_200)
    assert run(allow).returncode == 0
    late = run(deny)
    assert late.returncode == SUPERSEDED and "superseded" in late.stderr, late.stderr
    assert (d / "VI_1").read_text() == "0\n"
    # a newer deny still lands; the same order twice does not
    newer = track_command(str(d), "VI_1", True, 1_733_580_000_300)
    assert run(newer).returncode == 0 and (d / "VI_1").read_text() == "1\n"
    assert run(newer).returncode == SUPERSEDED


@pytest.mark.parametrize("via", ["arbiter", "wrapper"])
def test_the_watch_finds_a_dump_and_pid_file_where_the_node_keeps_them(
        outside_tmp: Path, via: str) -> None:
    """keepalived under systemd's PrivateTmp writes its dump into a private /tmp, and
    a distribution may keep its pid file elsewhere (issue 29). With today's defaults
    the watch says why it has no dump (the view then fails, and the fallback rule
    applies: tests/unit/test_view_health.py); with the node's settings (arbiter.toml
    per node, or the wrapper's keepalived_pid / keepalived_dump) it reads them."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a private /tmp (unshare -m)")
    from arbiter.probe.keepalived import dump_uptime, is_dump_line, watch_command

    (outside_tmp / "dump.tmpl").write_text(DUMP)
    private = "/tmp/systemd-private-3f2a-keepalived.service-Xy12/tmp"
    pidfile = outside_tmp / "run" / "keepalived.pid"
    pidfile.parent.mkdir()
    script = outside_tmp / "fake-keepalived"
    script.write_text(
        "#!/bin/bash\nn=0\n"
        f"trap 'n=$((n+1)); sed \"s/N/$n/\" {outside_tmp}/dump.tmpl "
        f"> {private}/keepalived.json' 36\n"
        "while :; do sleep 0.05; done\n")
    script.chmod(0o755)
    glob = "/tmp/systemd-private-*-keepalived.service-*/tmp/keepalived.json"
    wrapper = outside_tmp / "arbiter-ssh-wrapper"
    shutil.copy(WRAPPER, wrapper)
    conf = outside_tmp / "wrapper.conf"

    def watch(pid: str, dump: str) -> list[str]:
        if via == "wrapper":
            conf.write_text(f"sudo no\nkeepalived_pid {pid}\nkeepalived_dump {dump}\n")
            run, env = f"exec dash {wrapper} {conf}", {"SSH_ORIGINAL_COMMAND":
                                                       watch_command(0.1)}
        else:
            run, env = f"exec dash -c {shlex.quote(watch_command(0.1, pid, dump))}", {}
        inner = (f"mount -t tmpfs t /tmp; mkdir -p {private}; {script} & "
                 f"echo $! > {pidfile}; sleep 0.3; {run}")
        return watch_lines(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                            inner], {**os.environ, **env}, 6)

    # today's defaults: no live pid in /run/keepalived.pid; and with the pid file
    # right but the dump in the private /tmp, no dump at /tmp/keepalived.json
    lines = watch("/run/keepalived.pid", "/tmp/keepalived.json")
    assert any("keepalived is not running" in ln for ln in lines), lines
    lines = watch(str(pidfile), "/tmp/keepalived.json")
    assert any("no dump within 0.4 s" in ln for ln in lines), lines
    # the node's settings: dumps, with the node's clock
    lines = watch(str(pidfile), glob)
    dumps = [ln for ln in lines if is_dump_line(ln)]
    assert dumps and all(dump_uptime(ln) for ln in dumps), lines


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
