"""Issue 30, proved the way it will be used: from `apt install` to a fenced split brain
on a stock Debian 12, following the README alone.

The .deb is built from this checkout; a fresh Debian 12 (minbase plus systemd-sysv) is
booted with systemd in systemd-nspawn, inside the lab's arbiter namespace
(tests/lab/booted_debian.py). The commands are the README's own: every fenced block of
"First deployment" whose first line is `# on the arbiter host, as root` runs as typed,
in order, as root in the booted machine. The operator's part is a scripted `EDITOR`
(the lab's addresses already match the example: the edit sets the SSH user, the
token, the lab's fence and recover commands, and later `dry_run = false`) and, on the
directors, the `authorized_keys` line `keys init` printed. The service runs under the
real systemd with the shipped unit (its user, CAP_NET_RAW, its sandbox), must reach a
healthy self-check, and fences the split that the README's rehearsal block makes on a
director. The only machine traffic outside the lab is apt's, before the boot."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.booted_debian import BootedDebian, why_not_bootable
from tests.lab.labctl import VIP1, Lab, wait_for

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.lab
ARBITER_HOST = "# on the arbiter host, as root"

# The operator's edits, as a scripted EDITOR: the first call makes the example the
# lab's config (still dry_run), the second arms it. Each OLD must be in the file once.
OPERATOR_EDIT = r'''#!/usr/bin/python3
import sys
from pathlib import Path
path = Path(sys.argv[1])
text = path.read_text()
calls = Path("/srv/extra/edits")
n = int(calls.read_text()) if calls.exists() else 0
edits = [[
    ('username = "arbiter"', 'username = "root"'),
    ('# tokens = { ops = "${ARBITER_OPS_TOKEN}" }', 'tokens = { ops = "${ARBITER_OPS_TOKEN}" }'),
    ('# fence_command = "systemctl stop keepalived"',
     'fence_command = "kill -TERM $(cat /run/keepalived.pid)"'),
    ('# recover_command = "systemctl start keepalived"',
     'recover_command = "/run/arbiter/bin/host-keepalived start"'),
], [("dry_run = true ", "dry_run = false")]][n]
for old, new in edits:
    if text.count(old) != 1:
        sys.exit(f"operator-edit: {old!r} is in {path} {text.count(old)} times, not once")
    text = text.replace(old, new)
path.write_text(text)
calls.write_text(str(n + 1))
'''


def readme_blocks() -> list[tuple[str, str]]:
    """(first line, the commands) of each fenced block in README "First deployment"."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## First deployment\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^ *```sh\n(.*?)^ *```", section, flags=re.S | re.M)
    out = []
    for b in blocks:
        lines = [ln.strip() for ln in b.strip("\n").splitlines()]
        out.append((lines[0], "\n".join(lines[1:])))
    return out


def test_the_readme_blocks_say_where_they_run() -> None:
    blocks = readme_blocks()
    assert blocks and all(first.startswith("# on ") for first, _ in blocks), blocks
    ours = [cmd for first, cmd in blocks if first.startswith(ARBITER_HOST)]
    assert any("apt install" in c for c in ours) and any("systemctl reload" in c for c in ours)
    # the one block CI does not run needs a mail relay or webhook: say so, not skip it
    others = [first for first, _ in blocks if not first.startswith(ARBITER_HOST)]
    assert others == ["# on the arbiter host, once [notify] is filled in",
                      "# on one director"], others


@pytest.fixture
def deb(tmp_path: Path) -> Path:
    build = subprocess.run(["bash", str(REPO / "deploy/package/build-deb"), "--out",
                            str(tmp_path / "dist")], capture_output=True, text=True,
                           timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    return Path(build.stdout.strip().splitlines()[-1])


def test_from_apt_install_to_a_fence_on_a_booted_debian(deb: Path, tmp_path: Path) -> None:
    why = why_not_bootable()
    assert why is None, why
    blocks = readme_blocks()
    lab = Lab("active-backup")
    machine = None
    try:
        machine = BootedDebian(tmp_path / "debian")
        machine.put(deb)
        edit = tmp_path / "operator-edit"
        edit.write_text(OPERATOR_EDIT)
        machine.put(edit, mode=0o755)
        # what apt will need, fetched on the machine's network: the booted machine is
        # in the lab, which has no route out (a real host would reach its mirror)
        fetched = machine.prepare("apt-get update -q >/dev/null\n"
                                  f"apt-get install -y -q --download-only ./{deb.name}")
        assert fetched.returncode == 0, fetched.stdout[-2000:] + fetched.stderr[-2000:]
        machine.boot(Path("/run/netns") / lab.ns("arb"))
        ran = [run_block(machine, lab, first, cmd) for first, cmd in blocks]
        assert [r for r in ran if r] == ["apt", "config", "keys", "validate", "check",
                                          "serve", "armed"], ran

        # under the unit's own settings: its user, CAP_NET_RAW alone, no new privileges
        unit = machine.run("systemctl show -p MainPID -p ActiveState keepalived-arbiter")
        props = dict(ln.split("=", 1) for ln in unit.stdout.split())
        assert props["ActiveState"] == "active", props
        pid = props["MainPID"]
        proc = machine.run(f"grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/{pid}/status"
                           f" && stat -c %U /proc/{pid}")
        status = dict(re.findall(r"^(\w+):\s+(\S+)", proc.stdout, flags=re.M))
        assert status["CapEff"] == status["CapBnd"] == f"{1 << 13:016x}", proc.stdout  # net_raw
        assert status["NoNewPrivs"] == "1" and proc.stdout.split()[-1] == "arbiter", proc.stdout
        arb = lab.api("/status")["arbiter"]
        assert arb["self_check"]["sees_gateway"] is True, arb["self_check"]
        assert arb["dry_run"] is False, "the reload armed it"

        # the README's rehearsal, on a director: VRRP blocked, both claim the VIP
        rehearsal = next(cmd for first, cmd in blocks if first == "# on one director")
        done = lab.exec("lb2", rehearsal)
        assert done.returncode == 0, done.stderr

        def fenced() -> dict | None:
            out = machine.run("arbiter incidents -c /etc/arbiter/arbiter.toml --json")
            rows = json.loads(out.stdout) if out.returncode == 0 else []
            return next((r for r in rows if r["state"] in ("fenced", "held")), None)

        incident = wait_for(fenced, 40, "a fenced incident")
        assert incident["survivor"] == "lb1" and incident["victims"] == ["lb2"], incident
        wait_for(lambda: lab.holders()[VIP1] == ["lb1"], 15, "lb1 alone holds the VIP")
        journal = machine.run("journalctl -u keepalived-arbiter --no-pager -o cat")
        assert "Traceback" not in journal.stdout, journal.stdout[-3000:]
    except BaseException:
        if machine is not None and machine.leader is not None:
            j = machine.run("journalctl --no-pager -o short-monotonic | tail -n 60; "
                            "systemctl --failed --no-legend || true")
            print(f"---- the booted machine's journal ----\n{j.stdout}{j.stderr}")
        raise
    finally:
        lab.exec("lb2", "nft delete table inet t 2>/dev/null || true")
        if machine is not None:
            machine.stop()
        lab.down()


def run_block(machine: BootedDebian, lab: Lab, first: str, cmd: str) -> str:
    """Run one README block where it says it runs; what it was (for the order check)."""
    if not first.startswith(ARBITER_HOST):
        return ""
    # the operator's "y": apt's [Y/n], and keys init's after comparing the fingerprints
    answer = "y\n" if "arbiter keys init" in cmd or "apt install" in cmd else None
    t = time.monotonic()
    p = machine.run(cmd, stdin=answer, env={"EDITOR": "/srv/extra/operator-edit"},
                    timeout=180)
    took = time.monotonic() - t
    print(f"$ {cmd}\n{p.stdout}{p.stderr}({took:.1f} s, exit {p.returncode})")
    assert p.returncode == 0, f"README block failed:\n{cmd}\n{p.stdout}{p.stderr}"
    if "apt install" in cmd:
        return "apt"
    if "EDITOR" in cmd and "systemctl reload" not in cmd:
        return "config"
    if "arbiter keys init" in cmd:
        # step 4 on the directors: the line it printed, with the wrapper where the lab has it
        line = next(ln.strip() for ln in p.stdout.splitlines() if "restrict ssh-ed25519" in ln)
        line = re.sub(r'^command="[^"]*"', 'command="/run/arbiter/bin/arbiter-ssh-wrapper '
                      '/run/arbiter/ssh-wrapper.conf"', line)
        with (lab.dir / "authorized_keys").open("a") as f:
            f.write(line + "\n")
        assert re.search(r"lb1 192\.168\.77\.11:22 ssh-ed25519 SHA256:", p.stdout), p.stdout
        assert "written to /etc/arbiter/known_hosts" in p.stdout, p.stdout
        key = machine.run("stat -c '%U %a' /etc/arbiter/id_ed25519").stdout.strip()
        assert key == "arbiter 600", key
        return "keys"
    if "config validate" in cmd:
        assert "OK (1 cluster(s), 2 node(s)" in p.stdout, p.stdout
        return "validate"
    if "arbiter check" in cmd:
        return "check"
    if "systemctl enable --now" in cmd:
        assert "lb1" in p.stdout and "dry run" in p.stdout.lower(), p.stdout
        return "serve"
    if "systemctl reload" in cmd:
        wait_for(lambda: lab.api("/status")["arbiter"]["dry_run"] is False, 15, "the reload")
        return "armed"
    return ""
