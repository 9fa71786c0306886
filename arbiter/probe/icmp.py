"""ICMP echo with icmplib: privileged raw sockets when allowed, else datagram sockets.

A round pings every director and gateway at once. icmplib's `multiping` opens a
socket and a task per host: at 1000 hosts that cost 0.45 CPU-seconds per round
(profiled), as much as the rest of the round. So a round uses one icmplib socket
per address family: icmplib builds and sends every echo request, and the replies
are read from that socket and matched by id and sequence. One request per host,
no retries: a missed echo is `down` for this round, and the policy never acts on
one round. RTTs are measured to the next read of the socket, which happens at
least every DRAIN_EVERY sends, so they are upper bounds within a few ms.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Literal, Protocol

from icmplib import ICMPRequest, ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import ICMPLibError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Family:
    socket: type
    echo_reply: int
    unreachable: int
    time_exceeded: int
    ip_header: bool  # does a raw socket deliver the IP header? (IPv4 yes, IPv6 never)


V4 = Family(ICMPv4Socket, 0, 3, 11, True)
V6 = Family(ICMPv6Socket, 129, 1, 3, False)
MAX_PER_SOCKET = 65536  # sequence numbers are 16 bits
RCVBUF = 4 << 20  # replies to a whole round's requests may queue before the first read
# a fixed payload (the default is 56 random bytes, made per request: a quarter of
# the pinger's CPU); 56 bytes, as ping(8) sends
PAYLOAD = b"keepalived-arbiter".ljust(56, b".")
DRAIN_EVERY = 16  # read what has arrived after this many sends


@dataclass(frozen=True, slots=True)
class PingResult:
    ok: bool
    rtt_ms: float | None = None
    error: str | None = None


class Pinger(Protocol):
    async def ping_many(self, addresses: list[str], timeout: float) -> dict[str, PingResult]: ...


class IcmpUnavailable(Exception):
    pass


def choose_privileged(mode: Literal["auto", "yes", "no"]) -> bool:
    """Decide once at start-up, so a permission problem is a start-up error, not a silent 'down'."""
    if mode == "yes":
        return True
    if mode == "no":
        return False
    for privileged in (True, False):
        try:
            ICMPv4Socket(privileged=privileged).close()
            return privileged
        except (ICMPLibError, OSError) as exc:
            log.debug("ICMP socket privileged=%s unavailable: %s", privileged, exc)
    raise IcmpUnavailable(
        "arbiter.icmp_privileged: neither raw ICMP sockets (need CAP_NET_RAW) nor "
        "unprivileged ICMP sockets (sysctl net.ipv4.ping_group_range must include the "
        "arbiter's group) are allowed on this host"
    )


def _ip_header_len(packet: bytes, at: int, fam: Family) -> int:
    return (packet[at] & 0x0F) * 4 if fam.ip_header else 40


def parse_icmp(
    packet: bytes, privileged: bool, fam: Family = V4
) -> tuple[int, int, int, int, str | None] | None:
    """(type, code, id, sequence, quoted destination) of an echo reply (destination
    None), or of the echo request quoted in an ICMP error. A raw IPv4 socket's packets
    start with the IP header; on Linux a datagram ICMP socket, and any ICMPv6 socket,
    delivers the ICMP message alone."""
    off = _ip_header_len(packet, 0, fam) if privileged and fam.ip_header and packet else 0
    if len(packet) < off + 8:
        return None
    typ, code = packet[off], packet[off + 1]
    dst = None
    if typ in (fam.unreachable, fam.time_exceeded):  # quotes our IP header + the echo
        inner = off + 8
        if len(packet) < inner + 1:
            return None
        off = inner + _ip_header_len(packet, inner, fam)
        if len(packet) < off + 8:
            return None
        at, size, af = (inner + 16, 4, socket.AF_INET) if fam.ip_header else \
            (inner + 24, 16, socket.AF_INET6)
        dst = socket.inet_ntop(af, packet[at:at + size])
    elif typ != fam.echo_reply:
        return None  # e.g. our own echo requests to local addresses, seen by a raw socket
    ident, seq = struct.unpack_from("!2H", packet, off + 4)
    return typ, code, ident, seq, dst


class _Batch:
    """One socket's worth of hosts: send to all, then read replies until every host has
    answered or the timeout has passed since its own request went out."""

    def __init__(self, addresses: list[str], privileged: bool, timeout: float, fam: Family):
        self.privileged = privileged
        self.timeout = timeout
        self.fam = fam
        self.sock = fam.socket(privileged=privileged)
        raw = self.sock.sock
        for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            try:  # FORCE (root) goes past net.core.rmem_max; else as much as allowed
                if opt is not None:
                    raw.setsockopt(socket.SOL_SOCKET, opt, RCVBUF)
                    break
            except OSError:
                continue
        self.ident = int.from_bytes(os.urandom(2), "big")
        self.addresses = addresses
        self.sent_at: dict[int, float] = {}
        self.results: dict[str, PingResult] = {}

    def run(self) -> dict[str, PingResult]:
        try:
            for seq, addr in enumerate(self.addresses):
                self._send(seq, addr)
                if seq % DRAIN_EVERY == DRAIN_EVERY - 1:
                    self._drain()
            self._wait()
        finally:
            self.sock.close()
        for addr in self.addresses:
            self.results.setdefault(addr, PingResult(False, None, "no echo reply"))
        return self.results

    def _send(self, seq: int, addr: str) -> None:
        try:
            self.sock.send(ICMPRequest(addr, id=self.ident, sequence=seq, payload=PAYLOAD))
        except (ICMPLibError, OSError) as exc:  # e.g. no route: down now, not after timeout
            self.results[addr] = PingResult(False, None, f"send failed: {exc}")
            return
        self.sent_at[seq] = time.monotonic()
        if not self.privileged:  # the kernel chose the id: the socket's port
            self.ident = self.sock.sock.getsockname()[1]

    def _wait(self) -> None:
        # poll, not select: with a thousand SSH connections open, this socket's fd is
        # past select()'s FD_SETSIZE of 1024
        poller = select.poll()
        poller.register(self.sock.sock, select.POLLIN)
        last = max(self.sent_at.values(), default=time.monotonic())
        deadline = last + self.timeout
        while len(self.results) < len(self.addresses):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if poller.poll(max(1, math.ceil(left * 1000))):
                self._drain()

    def _drain(self) -> None:
        raw = self.sock.sock
        while True:
            try:
                packet, (source, *_rest) = raw.recvfrom(1024, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            now = time.monotonic()
            parsed = parse_icmp(packet, self.privileged, self.fam)
            if parsed is None:
                continue
            typ, code, ident, seq, dst = parsed
            if ident != self.ident or seq >= len(self.addresses):
                continue  # another pinger's traffic (a raw socket sees all ICMP)
            addr = self.addresses[seq]
            sent = self.sent_at.get(seq)
            if addr in self.results or sent is None or now - sent > self.timeout:
                continue
            if typ == self.fam.echo_reply:
                if source.split("%")[0] == addr:
                    self.results[addr] = PingResult(True, round((now - sent) * 1000, 3))
            elif dst == addr:  # an error about our request to addr, not someone else's
                what = ("destination unreachable" if typ == self.fam.unreachable
                        else "ttl exceeded")
                self.results[addr] = PingResult(False, None, f"{what} (code {code}) from {source}")


def ping_all(addresses: list[str], timeout: float, privileged: bool) -> dict[str, PingResult]:
    """Addresses are normalised IP strings (config validates them)."""
    out: dict[str, PingResult] = {}
    for fam in (V4, V6):
        mine = [a for a in addresses if (":" in a) == (fam is V6)]
        for i in range(0, len(mine), MAX_PER_SOCKET):
            part = mine[i:i + MAX_PER_SOCKET]
            try:
                out.update(_Batch(part, privileged, timeout, fam).run())
            except (ICMPLibError, OSError) as exc:  # e.g. no IPv6 on this host
                out.update({a: PingResult(False, None, f"{type(exc).__name__}: {exc}")
                            for a in part})
    return out


class IcmpPinger:
    def __init__(self, privileged: bool):
        self.privileged = privileged

    async def ping_many(self, addresses: list[str], timeout: float) -> dict[str, PingResult]:
        uniq = sorted(set(addresses))
        if not uniq:
            return {}
        try:
            # Its own thread: a round busy with a thousand SSH exchanges must not delay
            # reading echo replies past the timeout (seen at 1000 nodes: 40% of healthy
            # nodes reported ICMP-dead when the pings shared the event loop).
            return await asyncio.to_thread(ping_all, uniq, timeout, self.privileged)
        except Exception as exc:  # noqa: BLE001 - a failed probe is a value, never a crash
            log.warning("ICMP round failed: %s: %s", type(exc).__name__, exc)
            err = f"{type(exc).__name__}: {exc}"
            return {a: PingResult(False, None, err) for a in uniq}
