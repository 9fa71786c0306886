"""The unsolicited neighbour advertisement the arbiter sends after a fence (issue 31),
built in the test and read back field by field as a receiving kernel would check it
(RFC 4861 7.1.2: hop limit 255, code 0, checksum, target not multicast, solicited flag
clear for a multicast destination). The lab test proves a real kernel takes it."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbiter.probe.arp import MAX_MACS_PER_VIP, ArpWatch, off_segment
from arbiter.probe.ndp import (
    FLAG_OVERRIDE,
    FLAG_SOLICITED,
    checksum,
    icmpv6_checksum,
    link_local_of,
    parse_na,
    prefixes_of,
    solicitation_frame,
    unsolicited_na_frame,
)

ARB_MAC = bytes.fromhex("020000770002")
LB1_MAC = bytes.fromhex("0a1b2c3d4e5f")
ARB_LL = ipaddress.IPv6Address("fe80::ff:fe77:2").packed


def test_the_frame_is_what_a_receiver_accepts() -> None:
    f = unsolicited_na_frame(ARB_MAC, ARB_LL, "fd77:77:77::100", LB1_MAC)
    assert len(f) == 14 + 40 + 32
    assert f[:6] == bytes.fromhex("333300000001") and f[6:12] == ARB_MAC  # to all nodes
    assert f[12:14] == b"\x86\xdd"
    vtf, plen, nxt, hops, src, dst = struct.unpack("!IHBB16s16s", f[14:54])
    assert vtf >> 28 == 6 and (plen, nxt, hops) == (32, 58, 255)
    assert src == ARB_LL and ipaddress.IPv6Address(dst) == ipaddress.IPv6Address("ff02::1")
    icmp = f[54:]
    typ, code, _csum, flags, target, opt, optlen, mac = struct.unpack("!BBHI16sBB6s", icmp)
    assert (typ, code) == (136, 0)
    assert flags & FLAG_OVERRIDE and not flags & FLAG_SOLICITED
    assert str(ipaddress.IPv6Address(target)) == "fd77:77:77::100"
    assert (opt, optlen, mac) == (2, 1, LB1_MAC)  # target link-layer address: lb1's
    # the checksum, recomputed over the pseudo-header with the field in place, is 0
    pseudo = src + dst + struct.pack("!I3xB", len(icmp), 58)
    assert checksum(pseudo + icmp) == 0


@given(st.binary(min_size=0, max_size=64))
def test_a_message_with_its_checksum_sums_to_zero(payload: bytes) -> None:
    msg = b"\x88\x00\x00\x00" + payload + (b"\x00" if len(payload) % 2 else b"")
    c = icmpv6_checksum(ARB_LL, ARB_LL, msg)
    msg = msg[:2] + struct.pack("!H", c) + msg[4:]
    assert icmpv6_checksum(ARB_LL, ARB_LL, msg) == 0


def test_the_link_local_source_comes_from_the_interface(tmp_path: Path) -> None:
    p = tmp_path / "if_inet6"
    p.write_text("fd7700770077000000000000000000020002 40 00 80     eth0\n"
                 "fe8000000000000000ff00fffe770002 02 40 20 80     eth0\n"
                 "fe8000000000000000ff00fffe770009 03 40 20 80     eth1\n")
    assert link_local_of("eth0", p) == bytes.fromhex("fe8000000000000000ff00fffe770002")
    assert link_local_of("eth2", p) is None
    assert link_local_of("eth0", tmp_path / "missing") is None
    # one table read for both: the global prefixes of the same interface
    p.write_text(p.read_text() + "fd770077007700000000000000000002 02 40 00 80     eth0\n")
    assert prefixes_of("eth0", p) == [ipaddress.IPv6Network("fd77:77:77::/64")]
    assert prefixes_of("eth1", p) == [] and prefixes_of("eth0", tmp_path / "missing") == []


# --- the neighbour view: advertisements read back, frames built here ----------------

LB2_MAC = bytes.fromhex("0a1b2c3d4e60")
LB2_LL = ipaddress.IPv6Address("fe80::812:2cff:fe3d:4e60").packed
VIP6 = "fd77:77:77::100"


def na_from(sender_mac: bytes, sender_ip: bytes, dst: str, *, solicited: bool = False,
            tlla: bytes | None = None, hops: int = 255, code: int = 0,
            target: str = VIP6) -> bytes:
    """An advertisement as a director's kernel or keepalived sends it."""
    d = ipaddress.IPv6Address(dst).packed
    flags = FLAG_OVERRIDE | (FLAG_SOLICITED if solicited else 0)
    body = struct.pack("!BBHI16s", 136, code, 0, flags, ipaddress.IPv6Address(target).packed)
    if tlla is not None:
        body += struct.pack("!BB6s", 2, 1, tlla)
    body = body[:2] + struct.pack("!H", icmpv6_checksum(sender_ip, d, body)) + body[4:]
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(body), 58, hops, sender_ip, d)
    return b"\x33\x33\x00\x00\x00\x01" + sender_mac + b"\x86\xdd" + ip6 + body


def test_an_unsolicited_advertisement_names_its_holder() -> None:
    p = parse_na(na_from(LB2_MAC, LB2_LL, "ff02::1", tlla=LB2_MAC))
    assert p is not None and (p.target, p.mac, p.solicited) == (VIP6, "0a:1b:2c:3d:4e:60", False)
    # without the option, the Ethernet source names it
    p = parse_na(na_from(LB2_MAC, LB2_LL, "fe80::ff:fe77:2", solicited=True))
    assert p is not None and p.mac == "0a:1b:2c:3d:4e:60" and p.solicited
    # Ethernet padding after the payload changes nothing
    assert parse_na(na_from(LB2_MAC, LB2_LL, "ff02::1", tlla=LB2_MAC) + b"\0" * 10) is not None


@pytest.mark.parametrize("frame,why", [
    (na_from(LB2_MAC, LB2_LL, "ff02::1", hops=254), "crossed a router"),
    (na_from(LB2_MAC, LB2_LL, "ff02::1", code=1), "code not 0"),
    (na_from(LB2_MAC, LB2_LL, "ff02::1", solicited=True), "solicited, to a group"),
    (na_from(LB2_MAC, LB2_LL, "ff02::1", target="ff02::1"), "multicast target"),
    (na_from(LB2_MAC, LB2_LL, "ff02::1")[:-1], "truncated"),
    (na_from(LB2_MAC, LB2_LL, "ff02::1")[:60] + b"\xff" + na_from(LB2_MAC, LB2_LL,
                                                                "ff02::1")[61:], "checksum"),
    (na_from(LB2_MAC, LB2_LL, "ff02::1", tlla=LB2_MAC)[:-7] + b"\x00" * 7, "zero-length option"),
    (bytes(100), "not IPv6"),
])
def test_a_malformed_advertisement_is_dropped(frame: bytes, why: str) -> None:
    assert parse_na(frame) is None, why


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_are_dropped(data: bytes) -> None:
    parse_na(b"\x33\x33\x00\x00\x00\x01" + LB2_MAC + b"\x86\xdd" + data)  # never raises


def test_the_solicitation_goes_to_the_solicited_node_group() -> None:
    f = solicitation_frame(ARB_MAC, ARB_LL, VIP6)
    assert f[:6] == bytes.fromhex("3333ff000100")  # 33:33 + ff02::1:ff00:0100's low bits
    dst = ipaddress.IPv6Address(f[38:54])
    assert dst == ipaddress.IPv6Address("ff02::1:ff00:100")
    icmp = f[54:]
    assert icmp[0] == 135 and icmp[24:32] == b"\x01\x01" + ARB_MAC  # source lladdr: ours
    assert checksum(f[22:38] + f[38:54] + struct.pack("!I3xB", len(icmp), 58) + icmp) == 0


def watch_with(clock: list[float]) -> tuple[ArpWatch, list[tuple[str, str]]]:
    claims: list[tuple[str, str]] = []
    w = ArpWatch("eth0", {VIP6, "192.168.77.100"}, lambda v, m: claims.append((v, m)),
                 clock=lambda: clock[0])
    return w, claims


def test_the_watch_counts_answers_and_wakes_on_a_claim() -> None:
    clock = [100.0]
    w, claims = watch_with(clock)
    assert w.vips6 == {VIP6} and w.vips == {"192.168.77.100"}
    w._handle_na(parse_na(na_from(LB2_MAC, LB2_LL, "ff02::1", tlla=LB2_MAC)))
    assert claims == [(VIP6, "0a:1b:2c:3d:4e:60")]  # keepalived's NA as it became MASTER
    assert w.seen.since(VIP6, 99.0) == ("0a:1b:2c:3d:4e:60",)
    # an answer to our own probe is counted, and is no claim
    w._probing_until = 101.0
    w._handle_na(parse_na(na_from(LB1_MAC, LB2_LL, "fe80::ff:fe77:2", solicited=True)))
    assert len(claims) == 1
    assert w.seen.since(VIP6, 99.0) == ("0a:1b:2c:3d:4e:5f", "0a:1b:2c:3d:4e:60")
    # an advertisement for an address that is no VIP is ignored
    w._handle_na(parse_na(na_from(LB2_MAC, LB2_LL, "ff02::1", target="fd77:77:77::12")))
    assert w.seen.since("fd77:77:77::12", 0) == ()


def test_a_flood_of_macs_stays_bounded() -> None:
    clock = [100.0]
    w, _ = watch_with(clock)
    for k in range(MAX_MACS_PER_VIP * 3):
        clock[0] += 0.001
        mac = bytes([2, 0, 0, 0, k >> 8, k & 0xFF])
        w._handle_na(parse_na(na_from(mac, LB2_LL, "ff02::1")))
    assert len(w.seen.answers[VIP6]) == MAX_MACS_PER_VIP


def test_an_ipv6_vip_off_the_interfaces_prefixes_is_off_segment() -> None:
    nets6 = [ipaddress.IPv6Network("fd77:77:77::/64")]
    v4 = ipaddress.IPv4Network("192.168.77.0/24")
    assert off_segment([VIP6, "fd00:1::100", "192.168.77.100", "10.0.0.1"], v4, nets6) == [
        "fd00:1::100", "10.0.0.1"]
    assert off_segment([VIP6], v4, []) == []  # no IPv6 prefix: nothing to say
