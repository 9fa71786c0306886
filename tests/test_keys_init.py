"""`arbiter keys init` (issue 30) against simulated directors (real asyncssh servers):
the key made as the service reads it, each host key shown and pinned once, a pinned
key kept, a changed one never replaced."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest

from tests.conftest import write_config


async def keys_init(cfg: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The command as a process; the simulated directors answer from this event loop
    meanwhile (so never a blocking subprocess.run here)."""
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "arbiter.cli", "keys", "init", "-c", str(cfg), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(stdin.encode()), 60)
    return subprocess.CompletedProcess([], p.returncode or 0, out.decode(), err.decode())


async def test_keys_init_makes_the_key_and_pins_what_the_operator_confirms(
        site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_config(site, tmp_path)
    conf = tmp_path / "arbiter.toml"
    text = conf.read_text()
    key, kh = tmp_path / "new" / "id_ed25519", tmp_path / "new" / "known_hosts"
    import re

    text = re.sub(r'client_keys = \[.*\]', f'client_keys = ["{key}"]', text)
    text = re.sub(r'known_hosts = ".*"', f'known_hosts = "{kh}"', text)
    conf.write_text(text)
    # declined: the key is made, nothing pinned
    p = await keys_init(conf, "--user", "root", stdin="n\n")
    assert p.returncode == 1 and "not written" in p.stdout, p.stdout + p.stderr
    assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert asyncssh.read_private_key(str(key)).get_algorithm() == "ssh-ed25519"
    assert 'command="/usr/local/sbin/arbiter-ssh-wrapper /etc/arbiter/ssh-wrapper.conf"' in p.stdout
    assert not kh.exists()
    # confirmed: every director's key, as the sim serves it, with its fingerprint
    p = await keys_init(conf, "--user", "root", stdin="y\n")
    assert p.returncode == 0, p.stdout + p.stderr
    want = {n.known_hosts_line() for n in site.nodes.values()}
    assert set(kh.read_text().splitlines()) == want
    for n in site.nodes.values():
        assert n.host_key.get_fingerprint("sha256") in p.stdout
    # again: kept, nothing added
    p = await keys_init(conf, "--yes")
    assert p.returncode == 0 and p.stdout.count("already pinned") == len(want)
    assert set(kh.read_text().splitlines()) == want
    # a host whose key changed: not replaced, named, exit 2
    lines = kh.read_text().splitlines()
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    lines[0] = lines[0].split()[0] + " " + other
    kh.write_text("\n".join(lines) + "\n")
    p = await keys_init(conf, "--yes")
    assert p.returncode == 2 and "pinned key differs" in p.stderr, p.stderr
    assert kh.read_text().splitlines()[0].endswith(other)


COLLECT_HOST_KEYS = Path(__file__).resolve().parents[1] / "deploy/node/collect-host-keys"


async def collect_host_keys(out: Path, *hosts: str,
                            prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    p = await asyncio.create_subprocess_exec(
        *prefix, "dash", str(COLLECT_HOST_KEYS), str(out), *hosts,
        env={"PATH": "/usr/bin:/bin", "YES": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    o, e = await asyncio.wait_for(p.communicate(), 60)
    return subprocess.CompletedProcess([], p.returncode or 0, o.decode(), e.decode())


async def test_collect_host_keys_takes_ipv4_and_ipv6_with_ports(
        site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The script `keys init` replaced, still shipped: `[ADDR]:PORT` for IPv6 (it once
    cut an IPv6 address at its last colon and took the rest for the port)."""
    from arbiter.sim.node import standard_state

    await site.add(standard_state("lb6", "::1", [], [], {}))
    out = tmp_path / "known_hosts"
    lb1, lb6 = site.nodes["lb1"], site.nodes["lb6"]
    p = await collect_host_keys(out, f"127.0.0.11:{site.port}", f"[::1]:{site.port}")
    assert p.returncode == 0, p.stdout + p.stderr
    assert set(out.read_text().splitlines()) == {lb1.known_hosts_line(), lb6.known_hosts_line()}
    p = await collect_host_keys(tmp_path / "none", "[::1]:ssh")
    assert p.returncode == 2 and "bad port in [::1]:ssh" in p.stderr, p.stderr
    # a bare IPv6 address is port 22, and nobody answering is said, naming both: asked
    # in a network namespace of its own with loopback down, so nothing is contacted
    if os.geteuid() != 0:
        pytest.skip("needs root for unshare -n (a namespace with loopback down)")
    p = await collect_host_keys(tmp_path / "none", "::1", prefix=("/usr/bin/unshare", "-n"))
    assert p.returncode == 1 and "no answer from ::1 port 22" in p.stderr, p.stderr
    assert not (tmp_path / "none").exists()
