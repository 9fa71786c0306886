"""keepalived's watch on the node (issues 21, 28 and 29): the wrapper's own loop and
the arbiter's command, its dumps with the node's clock, where it finds the dump and
the pid file, why it has none; and the collect telling a frozen keepalived from a
running one. Stand-ins for keepalived run in namespaces of their own."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from arbiter.probe.collect import collect_command, parse_collect
from tests.test_node_scripts import WRAPPER, wrap

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
    assert lines[0] == "@@arbiter-keepalived v1 0.1 quiet 3", lines
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
    # the quiet ticks are one digit, and nothing else
    for bad in ("quiet x", "quiet 33", "quiet ;"):
        p = wrap(conf, watch_command(0.1).replace("quiet 3", bad))
        assert p.returncode == 126 and "refused" in p.stderr, bad


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


def run_watch(tmp: Path, via: str, every: int, want: int, quiet: int,
              template: str = DUMP) -> list[str]:
    """``want`` lines of the watch (the arbiter's command under dash or busybox sh, or
    the wrapper's own copy under dash) against a stand-in keepalived whose advert count
    moves at every ``every``-th signal, in a mount namespace of its own (a private
    /tmp), as root."""
    from arbiter.probe.keepalived import watch_command

    (tmp / "dump.tmpl").write_text(template)
    pidfile = tmp / "keepalived.pid"
    script = tmp / "fake-keepalived"
    script.write_text(
        "#!/bin/bash\nn=0\n"
        f"trap 'n=$((n+1)); sed \"s/N/$((n / {every}))/\" {tmp}/dump.tmpl "
        "> /tmp/keepalived.json' 36\n"
        "while :; do sleep 0.05; done\n")
    script.chmod(0o755)
    bindir = tmp / "bin"  # `keepalived --signum=JSON` as keepalived answers it
    bindir.mkdir(exist_ok=True)
    (bindir / "keepalived").write_text("#!/bin/sh\necho 36\n")
    (bindir / "keepalived").chmod(0o755)
    command = watch_command(0.1, str(pidfile), quiet=quiet)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    if via == "wrapper":
        wrapper = tmp / "arbiter-ssh-wrapper"
        shutil.copy(WRAPPER, wrapper)
        conf = tmp / "wrapper.conf"
        conf.write_text(f"sudo no\nkeepalived_pid {pidfile}\n")
        run, env["SSH_ORIGINAL_COMMAND"] = f"exec dash {wrapper} {conf}", command
    elif via == "busybox":
        bb = shutil.which("busybox")
        assert bb, "busybox is installed by bootstrap --test"
        run = f"exec {bb} sh -c {shlex.quote(command)}"
    else:
        run = f"exec dash -c {shlex.quote(command)}"
    inner = (f"mount -t tmpfs t /tmp; {script} & echo $! > {pidfile}; sleep 0.3; {run}")
    return watch_lines(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                        inner], env, want)


@pytest.mark.parametrize("via", ["arbiter", "busybox", "wrapper"])
def test_a_repeated_dump_is_one_line(outside_tmp: Path, via: str) -> None:
    """Issue 32: a dump whose text is the one this stream sent last is sent as
    `@@kv-same UPTIME`, never whole again; a changed one is sent whole. The stand-in
    keepalived counts an advert every second signal, so dumps alternate."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a private /tmp (unshare -m)")
    from arbiter.probe.keepalived import SAME, dump_uptime, is_dump_line, is_same_line, parse_dump

    lines = run_watch(outside_tmp, via, every=2, want=30, quiet=0)
    ticks: list[tuple[str, int | None, float | None]] = []  # (kind, advert_rcvd, uptime)
    block: list[str] | None = None
    for line in lines[1:]:
        if is_dump_line(line):
            block, up = [], dump_uptime(line)
        elif is_same_line(line):
            ticks.append(("same", None, dump_uptime(line, SAME)))
        elif line == "@@kv-end" and block is not None:
            ticks.append(("dump", parse_dump("\n".join(block))[0].advert_rcvd, up))
            block = None
        elif block is not None:
            block.append(line)
    kinds = [k for k, _, _ in ticks]
    assert "same" in kinds and kinds.count("dump") >= 3, lines
    assert kinds[0] == "dump"  # a stream starts with a whole dump
    counts = [n for k, n, _ in ticks if k == "dump"]
    assert all(b > a for a, b in zip(counts, counts[1:], strict=False)), counts  # never twice
    uptimes = [u for _, _, u in ticks]
    assert None not in uptimes and uptimes == sorted(uptimes), ticks


@pytest.mark.parametrize("via", ["arbiter", "busybox", "wrapper"])
@pytest.mark.parametrize("dump", ["one", "two", "fast"])
def test_the_nodes_quiet_ticks_follow_the_rule(outside_tmp: Path, via: str,
                                               dump: str) -> None:
    """Issue 32: each shell copy of the watch holds back exactly the ticks that
    ``probe.keepalived.QuietTicks`` holds back (nothing from a dump of two instances,
    or of an advert interval under 1 s), and a change carries the uptime of the last
    tick held back before it. The stand-in counts an advert every fourth signal: the
    cadence of advert_int 1 at 0.25 s."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a private /tmp (unshare -m)")
    import json

    from arbiter.probe.keepalived import (
        QuietTicks,
        dump_uptime,
        dump_uptimes,
        is_dump_line,
        is_same_line,
    )

    template = {"one": DUMP, "fast": DUMP.replace('"adver_int": 1', '"adver_int": 0.5'),
                "two": DUMP.replace("}}]", "}}, " + DUMP[1:-1].replace("VI_1", "VI_6")
                                    .replace(": N", ": 0") + "]")}[dump]
    assert len(json.loads(template.replace("N", "0"))) == (2 if dump == "two" else 1)
    assert template != DUMP or dump == "one"
    lines = run_watch(outside_tmp, via, every=4, want=32, quiet=3, template=template)
    assert lines[0] == "@@arbiter-keepalived v1 0.1 quiet 3", lines[:2]
    seen, texts, block, last_up = [], [], None, 0.0
    for line in lines[1:]:
        if is_dump_line(line):
            block = []
            up, held = dump_uptimes(line)
            assert up is not None and up > last_up, lines
            assert held is None or last_up < held < up, lines
            seen.append("H" if held is not None else "D")
            last_up = up
        elif is_same_line(line):
            up = dump_uptime(line, "@@kv-same")
            assert up is not None and up > last_up, lines
            seen.append("S")
            last_up = up
        elif line == "@@kv-end" and block is not None:
            texts.append("\n".join(block))
            block = None
        elif block is not None:
            block.append(line)
    # the rule, fed the dump of every tick (signal n shows advert n // 4)
    rule, want = QuietTicks(3), []
    for n in range(1, 200):
        r = rule.tick(template.replace("N", str(n // 4)), float(n))
        if r is not None:
            want.append("S" if r[0] == "same" else "H" if r[1] is not None else "D")
    assert "".join(seen) == "".join(want)[:len(seen)], (seen, lines[:6])
    assert ("H" in seen) is (dump == "one")
    assert len(texts) >= 3
