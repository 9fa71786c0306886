"""IPv6 neighbour discovery frames (RFC 4861) for the ARP view's interface (issue 31):
the solicitation the neighbour view sends for each IPv6 VIP each round, the
advertisements it reads back (and the unsolicited ones keepalived sends as it becomes
MASTER), and the unsolicited advertisement the arbiter sends after a fence, so clients
move an IPv6 VIP to the survivor's MAC at once.

Why the arbiter sends it, not the survivor: the IPv4 announce is `arping -U` run on the
survivor, but no tool in a stock Debian sends an unsolicited NA (iputils' arping is
IPv4 only; ndisc6 only solicits), and keepalived sends its own only as it becomes
MASTER, which the survivor of a fence never does again. The arbiter already has an
``AF_PACKET`` socket on the directors' segment (``arp_interface``). The frame leaves
with the arbiter's own MAC as its Ethernet source (a switch keeps learning the
survivor's MAC on the survivor's port) and names the survivor's MAC in the target
link-layer address option, with the override flag: a neighbour that has an entry for
the VIP replaces the MAC in it (RFC 4861 7.2.5), whoever sent the advertisement.

Plain ``struct``: 86 bytes of fixed layout and one checksum.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

ETH_P_IPV6 = 0x86DD
ICMPV6 = 58
NA = 136
ALL_NODES = ipaddress.IPv6Address("ff02::1")
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"  # 33:33 + the group's low 32 bits
FLAG_ROUTER, FLAG_SOLICITED, FLAG_OVERRIDE = 0x80000000, 0x40000000, 0x20000000
OPT_TARGET_LLADDR = 2


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): ones' complement of the ones' complement sum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmpv6_checksum(src: bytes, dst: bytes, message: bytes) -> int:
    """ICMPv6's checksum covers a pseudo-header of both addresses (RFC 8200 8.1)."""
    pseudo = src + dst + struct.pack("!I3xB", len(message), ICMPV6)
    return checksum(pseudo + message)


def unsolicited_na_frame(src_mac: bytes, src_ip: bytes, target: str,
                         target_mac: bytes) -> bytes:
    """An Ethernet frame to all nodes: ``target`` is at ``target_mac`` (override set,
    solicited and router clear), sent from ``src_mac``/``src_ip`` (the arbiter's)."""
    tgt = ipaddress.IPv6Address(target).packed
    dst = ALL_NODES.packed
    body = struct.pack("!BBHI16sBB6s", NA, 0, 0, FLAG_OVERRIDE, tgt,
                       OPT_TARGET_LLADDR, 1, target_mac)
    body = body[:2] + struct.pack("!H", icmpv6_checksum(src_ip, dst, body)) + body[4:]
    # version 6, no traffic class or flow label; hop limit 255, as RFC 4861 requires
    # (a receiver drops neighbour discovery that crossed a router)
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(body), ICMPV6, 255, src_ip, dst)
    return ALL_NODES_MAC + src_mac + struct.pack("!H", ETH_P_IPV6) + ip6 + body


IF_INET6 = Path("/proc/net/if_inet6")


def addresses6(ifname: str, if_inet6: Path = IF_INET6) -> list[tuple[bytes, int, str]]:
    """The interface's IPv6 addresses from the kernel's one table of them: (address,
    prefix length, scope: "20" link, "00" global); none when it cannot be read."""
    try:
        lines = if_inet6.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        f = line.split()
        # address, ifindex, prefix length, scope, flags, name
        if len(f) == 6 and f[5] == ifname and len(f[0]) == 32:
            out.append((bytes.fromhex(f[0]), int(f[2], 16), f[3]))
    return out


def link_local_of(ifname: str, if_inet6: Path = IF_INET6) -> bytes | None:
    """The interface's IPv6 link-local address (the source of what it sends on the
    link), or None when it has none (IPv6 off on it)."""
    return next((a for a, _, scope in addresses6(ifname, if_inet6) if scope == "20"), None)


# --- the neighbour view: solicit each IPv6 VIP, read the advertisements ---------------

NS = 135
OPT_SOURCE_LLADDR = 1
SO_ATTACH_FILTER = 26


def solicited_node(target: bytes) -> bytes:
    """ff02::1:ffXX:XXXX, the group a node holding ``target`` listens on (RFC 4291)."""
    return bytes.fromhex("ff0200000000000000000001ff") + target[13:]


def multicast_mac(group: bytes) -> bytes:
    return b"\x33\x33" + group[12:]  # RFC 2464: 33:33 and the group's low 32 bits


def solicitation_frame(src_mac: bytes, src_ip: bytes, target: str) -> bytes:
    """'Who has ``target``?' to its solicited-node group, with our MAC as the source
    link-layer address option, so the holder answers us directly."""
    tgt = ipaddress.IPv6Address(target).packed
    dst = solicited_node(tgt)
    body = struct.pack("!BBHI16sBB6s", NS, 0, 0, 0, tgt, OPT_SOURCE_LLADDR, 1, src_mac)
    body = body[:2] + struct.pack("!H", icmpv6_checksum(src_ip, dst, body)) + body[4:]
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(body), ICMPV6, 255, src_ip, dst)
    return multicast_mac(dst) + src_mac + struct.pack("!H", ETH_P_IPV6) + ip6 + body


@dataclass(frozen=True)
class NaPacket:
    target: str  # canonical
    mac: str  # the target link-layer address option, else the frame's Ethernet source
    solicited: bool
    override: bool


def mac_str(b: bytes) -> str:
    """``0a:1b:…``: a MAC as ARP, NDP and ``ip -j`` show it."""
    return ":".join(f"{x:02x}" for x in b)


def parse_na(frame: bytes) -> NaPacket | None:
    """A neighbour advertisement as a receiving host validates it (RFC 4861 7.1.2:
    hop limit 255, code 0, a valid checksum, at least 24 bytes, a unicast target, the
    solicited flag clear when sent to a group, no zero-length option), or None.
    Extension headers are not followed: neighbour discovery never carries them."""
    if len(frame) < 54 + 24 or frame[12:14] != b"\x86\xdd":
        return None
    vtf, plen, nxt, hops, src, dst = struct.unpack("!IHBB16s16s", frame[14:54])
    if vtf >> 28 != 6 or nxt != ICMPV6 or hops != 255 or plen < 24 or len(frame) < 54 + plen:
        return None
    msg = frame[54:54 + plen]
    if msg[0] != NA or msg[1] != 0 or icmpv6_checksum(src, dst, msg) != 0:
        return None
    (flags,) = struct.unpack("!I", msg[4:8])
    target = msg[8:24]
    if target[0] == 0xFF or (dst[0] == 0xFF and flags & FLAG_SOLICITED):
        return None
    mac = frame[6:12]
    i = 24
    for _ in range(64):  # bounded: at most 64 options are looked at
        if i + 2 > len(msg):
            break
        kind, units = msg[i], msg[i + 1]
        if units == 0:
            return None
        if kind == OPT_TARGET_LLADDR and units == 1 and i + 8 <= len(msg):
            mac = msg[i + 2:i + 8]
        i += units * 8
    return NaPacket(str(ipaddress.IPv6Address(target)), mac_str(mac),
                    bool(flags & FLAG_SOLICITED), bool(flags & FLAG_OVERRIDE))


# Classic BPF, so the kernel hands the socket only what could be an advertisement:
# IPv6, next header ICMPv6, hop limit 255, type 136. A busy segment's other IPv6
# traffic never reaches Python (each instruction: code, jump if true, if false, k).
NA_FILTER = (
    (0x28, 0, 0, 12),  # ldh [12]: the EtherType
    (0x15, 0, 7, ETH_P_IPV6),
    (0x30, 0, 0, 20),  # ldb [20]: next header
    (0x15, 0, 5, ICMPV6),
    (0x30, 0, 0, 21),  # ldb [21]: hop limit
    (0x15, 0, 3, 255),
    (0x30, 0, 0, 54),  # ldb [54]: ICMPv6 type
    (0x15, 0, 1, NA),
    (0x06, 0, 0, 0x40000),  # accept
    (0x06, 0, 0, 0),  # drop
)


def attach_na_filter(sock: socket.socket) -> None:
    prog = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in NA_FILTER))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    struct.pack("HL", len(NA_FILTER), ctypes.addressof(prog)))


def prefixes_of(ifname: str, if_inet6: Path = IF_INET6) -> list[ipaddress.IPv6Network]:
    """The interface's global IPv6 prefixes (an IPv6 VIP outside all of them is behind
    a router, where the neighbour view cannot see who holds it)."""
    return [ipaddress.IPv6Network((ipaddress.IPv6Address(a), plen), strict=False)
            for a, plen, scope in addresses6(ifname, if_inet6) if scope == "00"]
