"""The ARP view: which MAC addresses answer for each VIP on the arbiter's own
segment, seen with ``AF_PACKET`` sockets (needs ``CAP_NET_RAW``): ARP for IPv4 VIPs,
neighbour discovery for IPv6 ones (``probe.ndp``; the neighbour view, issue 31).

- **probe**: each round, one ARP request per VIP; every distinct MAC that answers
  within ``arp_timeout`` is a holder as clients see it, whatever SSH says.
- **listen**: continuously, gratuitous ARPs and unsolicited replies for the VIPs.
  keepalived sends them the moment it becomes MASTER, so a new holder is seen in
  milliseconds even when SSH is down; the listener wakes a round.

Plain ``socket`` and ``struct``: an ARP frame is 42 bytes of fixed layout, and the
loop's own ``add_reader`` watches the socket, so no packet library (scapy is a
large dependency that wants its own sniffing threads) is needed.

It works only where the arbiter shares the directors' layer-2 segment; behind a
router every answer comes from the router's MAC, so the view is unavailable there.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from arbiter.probe.ndp import (
    ETH_P_IPV6,
    NaPacket,
    attach_na_filter,
    link_local_of,
    mac_str,
    parse_na,
    prefixes_of,
    solicitation_frame,
    unsolicited_na_frame,
)

log = logging.getLogger("arbiter.arp")

ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
BROADCAST = b"\xff" * 6
ARP_REQUEST, ARP_REPLY = 1, 2
MAX_FRAMES_PER_WAKE = 1024  # a flood costs one bounded pass per wake-up
MAX_MACS_PER_VIP = 64  # a spoofed flood of MACs cannot grow memory without bound


class ArpUnavailable(Exception):
    """The ARP view cannot run here (no CAP_NET_RAW, no such interface); says why."""


def request_frame(src_mac: bytes, src_ip: bytes, target_ip: bytes) -> bytes:
    """An Ethernet broadcast 'who has target_ip, tell src_ip', padded to 60 bytes."""
    eth = BROADCAST + src_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, ARP_REQUEST, src_mac, src_ip,
                      b"\x00" * 6, target_ip)
    return (eth + arp).ljust(60, b"\x00")


@dataclass(frozen=True)
class ArpPacket:
    op: int
    sender_mac: str
    sender_ip: str
    target_ip: str

    @property
    def gratuitous(self) -> bool:
        return self.sender_ip == self.target_ip


def parse_frame(frame: bytes) -> ArpPacket | None:
    """An Ethernet ARP frame for IPv4 over Ethernet, or None for anything else."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op, sha, spa, _tha, tpa = struct.unpack(
        "!HHBBH6s4s6s4s", frame[14:42])
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4) or op not in (ARP_REQUEST, ARP_REPLY):
        return None
    return ArpPacket(op, mac_str(sha), socket.inet_ntoa(spa), socket.inet_ntoa(tpa))


def _ipv4_of(sock: socket.socket, ifname: str, request: int = SIOCGIFADDR) -> bytes:
    """The interface's IPv4 address (or netmask), or 0.0.0.0 if it has none (then the
    probes are RFC 5227 probes, which every host answers all the same)."""
    try:
        res = fcntl.ioctl(sock.fileno(), request, struct.pack("256s", ifname.encode()[:15]))
        return res[20:24]
    except OSError:
        return b"\x00" * 4


@dataclass
class Seen:
    """MACs seen answering for each VIP, with when (monotonic)."""

    answers: dict[str, dict[str, float]] = field(default_factory=dict)  # vip -> mac -> t

    def note(self, vip: str, mac: str, t: float) -> None:
        by = self.answers.setdefault(vip, {})
        if mac not in by and len(by) >= MAX_MACS_PER_VIP:
            del by[min(by, key=by.__getitem__)]  # the one heard from longest ago
        by[mac] = t

    def since(self, vip: str, t0: float) -> tuple[str, ...]:
        return tuple(sorted(m for m, t in self.answers.get(vip, {}).items() if t >= t0))


class ArpWatch:
    """One interface: probes on demand, listens all the time, for a set of VIPs.

    ``on_claim(vip, mac)`` is called (on the loop) for a gratuitous ARP or an
    unsolicited reply for a VIP: a node has just claimed it."""

    def __init__(self, ifname: str, vips: set[str],
                 on_claim: Callable[[str, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.ifname = ifname
        self.vips = {v for v in vips if ipaddress.ip_address(v).version == 4}
        self.vips6 = {v for v in vips if ipaddress.ip_address(v).version == 6}
        self._sock6: socket.socket | None = None  # advertisements only (a BPF filter)
        self._ip6: bytes | None = None  # the interface's link-local: our NS's source
        self.networks6: list[ipaddress.IPv6Network] = []
        self.on_claim = on_claim
        self.clock = clock
        self.seen = Seen()
        self._sock: socket.socket | None = None
        self.network: ipaddress.IPv4Network | None = None  # the interface's own subnet
        self._mac = b""
        self._ip = b""
        self._probing_until = 0.0

    @property
    def mac(self) -> str:
        return mac_str(self._mac)

    def open(self) -> None:
        """Open and bind the socket; ArpUnavailable (saying why) if it cannot."""
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        except PermissionError:
            raise ArpUnavailable("an AF_PACKET socket needs CAP_NET_RAW (run as root, or "
                                 "AmbientCapabilities=CAP_NET_RAW in the systemd unit)") \
                from None
        try:
            s.bind((self.ifname, ETH_P_ARP))
        except OSError as exc:
            s.close()
            raise ArpUnavailable(f"cannot bind to interface {self.ifname!r}: "
                                 f"{exc.strerror}") from None
        s.setblocking(False)
        self._mac = s.getsockname()[4]
        self._ip = _ipv4_of(s, self.ifname)
        mask = _ipv4_of(s, self.ifname, SIOCGIFNETMASK)
        if self._ip != b"\x00" * 4:
            self.network = ipaddress.IPv4Network(
                f"{socket.inet_ntoa(self._ip)}/{socket.inet_ntoa(mask)}", strict=False)
        self._sock = s
        self._ip6 = link_local_of(self.ifname)
        self.networks6 = prefixes_of(self.ifname)
        if self.vips6:
            self._open6()

    def _open6(self) -> None:
        """The neighbour view's socket: IPv6 frames the filter lets through (NAs)."""
        if self._ip6 is None:
            self.close()
            raise ArpUnavailable(f"{self.ifname} has no IPv6 link-local address: the "
                                 "neighbour view needs one to solicit from")
        s6 = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IPV6))
        try:
            attach_na_filter(s6)
            s6.bind((self.ifname, ETH_P_IPV6))
        except OSError as exc:
            s6.close()
            self.close()
            raise ArpUnavailable(f"cannot listen for neighbour advertisements on "
                                 f"{self.ifname!r}: {exc.strerror}") from None
        s6.setblocking(False)
        self._sock6 = s6

    def start(self) -> None:
        if self._sock is None:
            self.open()
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        loop.add_reader(self._sock.fileno(), self._readable)
        if self._sock6 is not None:
            loop.add_reader(self._sock6.fileno(), self._readable6)

    def close(self) -> None:
        for s in (self._sock, self._sock6):
            if s is not None:
                with contextlib.suppress(RuntimeError):  # no running loop: none registered
                    asyncio.get_running_loop().remove_reader(s.fileno())
                s.close()
        self._sock = self._sock6 = None

    def _readable(self) -> None:
        assert self._sock is not None
        self._drain(self._sock, 128, "ARP", lambda f: self._handle(parse_frame(f)))

    def _readable6(self) -> None:
        assert self._sock6 is not None
        self._drain(self._sock6, 256, "NDP", lambda f: self._handle_na(parse_na(f)))

    def _drain(self, sock: socket.socket, size: int, what: str,
               handle: Callable[[bytes], None]) -> None:
        """Every frame the socket has, up to MAX_FRAMES_PER_WAKE (a flood costs one
        bounded pass per wake-up); our own outgoing frames are skipped."""
        for _ in range(MAX_FRAMES_PER_WAKE):
            try:
                frame, addr = sock.recvfrom(size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("%s on %s: %s", what, self.ifname, exc)
                return
            if addr[2] != PACKET_OUTGOING:
                handle(frame)

    def _handle_na(self, p: NaPacket | None) -> None:
        if p is None or p.target not in self.vips6 or p.mac == self.mac:
            return
        now = self.clock()
        self.seen.note(p.target, p.mac, now)
        # a claim: an unsolicited advertisement (keepalived's, as it becomes MASTER), or
        # an answer nobody here asked for (outside a probe)
        if (not p.solicited or now > self._probing_until) and self.on_claim is not None:
            self.on_claim(p.target, p.mac)

    def _handle(self, p: ArpPacket | None) -> None:
        if p is None or p.sender_ip not in self.vips or p.sender_mac == self.mac:
            return
        now = self.clock()
        self.seen.note(p.sender_ip, p.sender_mac, now)
        # a claim: a gratuitous ARP, or a reply nobody asked for (outside a probe)
        claim = p.gratuitous or (p.op == ARP_REPLY and now > self._probing_until)
        if claim and self.on_claim is not None:
            self.on_claim(p.sender_ip, p.sender_mac)

    async def probe(self, vips: list[str], timeout: float) -> dict[str, tuple[str, ...]]:
        """Ask for each VIP once; every MAC that answered within ``timeout``."""
        if self._sock is None:
            raise ArpUnavailable("the ARP socket is not open")
        wanted = [v for v in vips if v in self.vips or (v in self.vips6 and self._sock6)]
        t0 = self.clock()
        self._probing_until = t0 + timeout + 0.05
        for vip in wanted:
            frame = (request_frame(self._mac, self._ip, socket.inet_aton(vip))
                     if vip in self.vips else solicitation_frame(self._mac, self._ip6 or b"",
                                                                 vip))
            try:
                self._sock.send(frame)
            except OSError as exc:
                raise ArpUnavailable(f"cannot send on {self.ifname}: {exc.strerror}") \
                    from None
        await asyncio.sleep(timeout)
        return {vip: self.seen.since(vip, t0) for vip in wanted}


    def send_na(self, vip: str, mac: str, count: int = 2) -> None:
        """Tell the link that IPv6 ``vip`` is at ``mac`` (an unsolicited neighbour
        advertisement, ``probe.ndp``), ``count`` times as keepalived does; ArpUnavailable
        when it cannot (no socket, no IPv6 on the interface)."""
        if self._sock is None:
            raise ArpUnavailable("the ARP socket is not open")
        src = self._ip6 or link_local_of(self.ifname)
        if src is None:
            raise ArpUnavailable(f"{self.ifname} has no IPv6 link-local address to send "
                                 "neighbour advertisements from")
        frame = unsolicited_na_frame(self._mac, src, vip, bytes.fromhex(mac.replace(":", "")))
        for _ in range(count):
            try:
                self._sock.send(frame)
            except OSError as exc:
                raise ArpUnavailable(f"cannot send on {self.ifname}: {exc.strerror}") \
                    from None


def off_segment(vips: list[str], network: ipaddress.IPv4Network | None,
                networks6: list[ipaddress.IPv6Network] | None = None) -> list[str]:
    """VIPs outside the interface's subnets: behind a router, where ARP or neighbour
    discovery cannot see who holds them (every answer would be the router's). An
    interface without an address of a family says nothing about that family's VIPs."""
    out = []
    for v in vips:
        a = ipaddress.ip_address(v)
        if a.version == 4 and network is not None and a not in network:
            out.append(v)
        if a.version == 6 and networks6 and not any(a in n for n in networks6):
            out.append(v)
    return out
