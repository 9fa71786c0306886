"""The ARP view in the pure policy: a holder seen only at layer 2 counts, the
reason names the MACs, a stranger's MAC is a vip_conflict that fences nothing.
And the frames themselves, built and parsed without a socket."""

from __future__ import annotations

import socket

from hypothesis import given
from hypothesis import strategies as st

from arbiter.model import ArpSight, IncidentKind, IncidentState
from arbiter.policy.effects import ChangeState, OpenIncident, RecordDecision, StartFence
from arbiter.probe.arp import ARP_REPLY, parse_frame, request_frame
from tests.unit.builders import VIP1, Driver, effects_of, make_config, node

MAC1, MAC2, STRANGER = "02:00:00:00:00:11", "02:00:00:00:00:12", "02:aa:bb:cc:dd:ee"
OWNERS = ((MAC1, "lb1"), (MAC2, "lb2"))


def sight(*macs: str) -> ArpSight:
    return ArpSight(answers=((VIP1, macs),), owners=OWNERS)


def test_a_holder_seen_only_by_arp_counts_and_the_reason_names_the_macs() -> None:
    d = Driver(make_config())
    # lb2's SSH is down (it answers ICMP): only ARP says it holds the VIP too
    for _ in range(2):
        a = d.round(node("lb1", (VIP1,)), node("lb2", ssh=False), arp=sight(MAC1, MAC2))
    ca = d.web(a)
    assert dict(ca.holders)[VIP1] == ("lb1", "lb2") and ca.split_vips == (VIP1,)
    (opened,) = effects_of(d.web(d.log[0]), OpenIncident)
    assert f"{VIP1} answered by {MAC1} (lb1) and {MAC2} (lb2)" in opened.reason
    assert effects_of(ca, RecordDecision)  # confirmed over two rounds: decided


def test_one_mac_answering_is_no_split_brain() -> None:
    d = Driver(make_config())
    for _ in range(3):
        a = d.round(node("lb1", (VIP1,)), node("lb2"), arp=sight(MAC1))
    assert d.web(a).split_vips == () and not effects_of(d.web(a), OpenIncident)


def test_a_strangers_mac_is_a_conflict_never_a_fence() -> None:
    d = Driver(make_config())
    first = d.round(node("lb1", (VIP1,)), node("lb2"), arp=sight(MAC1, STRANGER))
    assert not effects_of(d.web(first), OpenIncident)  # one round is no evidence
    second = d.round(node("lb1", (VIP1,)), node("lb2"), arp=sight(MAC1, STRANGER))
    ca = d.web(second)
    (opened,) = effects_of(ca, OpenIncident)
    assert opened.kind is IncidentKind.VIP_CONFLICT
    assert f"{STRANGER} (no configured node)" in opened.reason
    assert not effects_of(ca, StartFence) and not effects_of(ca, RecordDecision)
    assert ca.conflicts == ((VIP1, (STRANGER,)),) and ca.split_vips == ()
    third = d.round(node("lb1", (VIP1,)), node("lb2"), arp=sight(MAC1, STRANGER))
    assert not effects_of(d.web(third), OpenIncident)  # one incident, not one per round
    gone = d.round(node("lb1", (VIP1,)), node("lb2"), arp=sight(MAC1))
    (closed,) = effects_of(d.web(gone), ChangeState)
    assert closed.dst is IncidentState.RESOLVED


def test_no_conflict_is_opened_while_abstaining() -> None:
    d = Driver(make_config())
    for _ in range(3):
        a = d.round(node("lb1", (VIP1,)), node("lb2"), arp=sight(MAC1, STRANGER),
                    sees_gateway=False)
    assert not effects_of(d.web(a), OpenIncident)


ips = st.tuples(*[st.integers(1, 254)] * 4).map(lambda t: ".".join(map(str, t)))
macs = st.binary(min_size=6, max_size=6)


@given(macs, ips, ips)
def test_a_request_parses_back_to_what_was_asked(mac: bytes, src: str, dst: str) -> None:
    frame = request_frame(mac, socket.inet_aton(src), socket.inet_aton(dst))
    p = parse_frame(frame)
    assert len(frame) == 60 and p is not None
    assert (p.op, p.sender_ip, p.target_ip) == (1, src, dst)
    assert p.sender_mac == ":".join(f"{b:02x}" for b in mac)


@given(st.binary(max_size=80))
def test_any_bytes_parse_to_a_packet_or_none_never_an_error(data: bytes) -> None:
    p = parse_frame(data)
    assert p is None or p.op in (1, ARP_REPLY)


def test_a_flood_of_spoofed_macs_is_bounded() -> None:
    from arbiter.probe.arp import MAX_MACS_PER_VIP, Seen

    seen = Seen()
    for i in range(MAX_MACS_PER_VIP * 10):
        seen.note(VIP1, f"02:00:00:00:{i // 256:02x}:{i % 256:02x}", float(i))
    assert len(seen.answers[VIP1]) == MAX_MACS_PER_VIP
    assert seen.since(VIP1, float(MAX_MACS_PER_VIP * 10 - 1)) == ("02:00:00:00:02:7f",)
