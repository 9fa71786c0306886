"""The one-socket pinger: real ICMP, only to 127.0.0.0/8 and ::1, and for the failure
paths inside a network namespace this test creates (`unshare --net`), where an
address is made silent with nftables. Nothing leaves the machine."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from arbiter.probe.icmp import V4, V6, IcmpPinger, choose_privileged, parse_icmp

ROOT = Path(__file__).resolve().parents[1]


def _need_root() -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nft"):
        why = "needs root, unshare and nft (a throw-away network namespace)"
        if os.environ.get("ARBITER_LAB_REQUIRED"):
            pytest.fail(f"ARBITER_LAB_REQUIRED is set but this test {why}")
        pytest.skip(why)


def in_fresh_netns(setup: str, code: str) -> dict:
    """Run `code` (python, prints JSON) in a new network namespace after `setup` (sh)."""
    _need_root()
    script = textwrap.dedent(code)
    p = subprocess.run(
        ["unshare", "--net", "sh", "-ec", f"{setup}\nexec {sys.executable} -c \"$0\"", script],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


PING = """
import asyncio, json, time
from arbiter.probe.icmp import IcmpPinger
addrs = {addrs!r}
t0 = time.monotonic()
r = asyncio.run(IcmpPinger({privileged}).ping_many(addrs, {timeout}))
print(json.dumps({{"took": time.monotonic() - t0,
                   "res": {{a: [p.ok, p.rtt_ms, p.error] for a, p in r.items()}}}}))
"""


# --- parsing, no I/O -----------------------------------------------------------

def _echo(typ: int, ident: int, seq: int) -> bytes:
    return struct.pack("!BBHHH", typ, 0, 0, ident, seq)


def _ipv4_header(dst: str = "0.0.0.0") -> bytes:
    return bytes([0x45]) + bytes(15) + socket.inet_aton(dst)


def test_parse_echo_reply_with_and_without_ip_header() -> None:
    assert parse_icmp(_ipv4_header() + _echo(0, 7, 9), privileged=True) == (0, 0, 7, 9, None)
    assert parse_icmp(_echo(0, 7, 9), privileged=False) == (0, 0, 7, 9, None)
    assert parse_icmp(_echo(129, 7, 9), privileged=True, fam=V6) == (129, 0, 7, 9, None)


def test_parse_error_quotes_the_original_request() -> None:
    unreachable = struct.pack("!BBHI", 3, 1, 0, 0) + _ipv4_header("127.0.0.9") + _echo(8, 7, 42)
    assert parse_icmp(_ipv4_header() + unreachable, privileged=True) == (3, 1, 7, 42, "127.0.0.9")
    v6_header = bytes(24) + socket.inet_pton(socket.AF_INET6, "::1")
    v6 = struct.pack("!BBHI", 1, 3, 0, 0) + v6_header + _echo(128, 7, 42)
    assert parse_icmp(v6, privileged=True, fam=V6) == (1, 3, 7, 42, "::1")


@pytest.mark.parametrize("packet", [b"", b"\x45", _ipv4_header() + _echo(8, 7, 9),
                                    _ipv4_header() + struct.pack("!BBHI", 3, 1, 0, 0)])
def test_parse_ignores_requests_and_truncated_packets(packet: bytes) -> None:
    assert parse_icmp(packet, privileged=True, fam=V4) is None


# --- real ICMP on loopback ----------------------------------------------------

async def test_many_loopback_hosts_in_one_round() -> None:
    # 127.0.0.0/8 is all local: 600 distinct echo targets without leaving the host
    addrs = [f"127.3.{i // 200}.{i % 200 + 1}" for i in range(600)] + ["127.0.0.1"]
    res = await IcmpPinger(choose_privileged("auto")).ping_many(addrs, 1.0)
    assert set(res) == set(addrs)
    down = {a: r.error for a, r in res.items() if not r.ok}
    assert down == {}
    assert all(r.rtt_ms is not None and r.rtt_ms >= 0 for r in res.values())


@pytest.mark.parametrize("privileged", [True, False])
def test_silent_host_is_down_after_the_timeout_and_others_are_not(privileged: bool) -> None:
    # In a namespace of our own: lo up, echo requests to 127.0.0.9 dropped on input;
    # the datagram (unprivileged) socket mode is allowed by this namespace's sysctl.
    setup = """
ip link set lo up
sysctl -qw net.ipv4.ping_group_range="0 0"
nft add table inet t
nft add chain inet t in '{ type filter hook input priority 0; }'
nft add rule inet t in ip daddr 127.0.0.9 icmp type echo-request drop
"""
    out = in_fresh_netns(setup, PING.format(addrs=["127.0.0.1", "127.0.0.9", "127.0.0.10"],
                                            privileged=privileged, timeout=0.4))
    res = out["res"]
    assert res["127.0.0.1"][0] is True and res["127.0.0.10"][0] is True
    assert res["127.0.0.9"] == [False, None, "no echo reply"]
    assert 0.35 <= out["took"] < 3.0


def test_icmp_error_marks_that_host_down_at_once() -> None:
    # nftables answers echo requests to 127.0.0.11 with host-unreachable: a real ICMP
    # error quoting our request, read from the same raw socket as the replies.
    setup = """
ip link set lo up
nft add table inet t
nft add chain inet t in '{ type filter hook input priority 0; }'
nft add rule inet t in ip daddr 127.0.0.11 icmp type echo-request \
  reject with icmp type host-unreachable
"""
    out = in_fresh_netns(setup, PING.format(addrs=["127.0.0.1", "127.0.0.11"], privileged=True,
                                            timeout=2.0))
    ok, rtt, err = out["res"]["127.0.0.11"]
    assert ok is False and rtt is None
    assert err.startswith("destination unreachable (code 1)")
    assert out["res"]["127.0.0.1"][0] is True
    assert out["took"] < 1.5  # known from the error, not after the 2 s timeout


def test_no_route_is_down_at_once_not_an_exception() -> None:
    # lo stays down in a fresh namespace: nothing is reachable, sending fails
    out = in_fresh_netns("true", PING.format(addrs=["127.0.0.1", "::1"], privileged=True,
                                             timeout=2.0))
    assert {a: r[0] for a, r in out["res"].items()} == {"127.0.0.1": False, "::1": False}
    assert all(r[2] for r in out["res"].values())  # each says why
    assert out["took"] < 1.5  # a send error is known at once, not after the timeout


async def test_pinging_works_with_more_than_1024_files_open() -> None:
    # At 1000 nodes the arbiter holds a socket per SSH connection, so the ICMP socket's
    # descriptor is past select()'s FD_SETSIZE; the pinger must not depend on it.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 1300
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {need}: cannot test this here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert max(held) > 1024
        res = await IcmpPinger(choose_privileged("auto")).ping_many(["127.0.0.1"], 1.0)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert res["127.0.0.1"].ok, res
