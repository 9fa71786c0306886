"""The address rules (issue 31), pure: which addresses of a node's `ip -j addr` make it
a holder of a VIP, for both families, and which VIPs the config refuses.

- loopback (LVS-DR real servers), link-local (fe80::/10) and dadfailed never count;
- tentative counts (the node has claimed the VIP; DAD only delays it ~1 s);
- an address is compared in canonical form, however the node spelled it;
- the fence's `ip addr del` carries the prefix the node has, IPv6 or IPv4.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbiter.config import ConfigError
from arbiter.model import ClusterObservation, KeepalivedView, NodeObservation, VrrpInstance
from arbiter.model.observations import Address
from arbiter.policy.address_warnings import vip_warnings
from arbiter.probe.collect import parse_collect
from arbiter.round.acts.fence import del_command
from tests.unit.builders import T0, make_config

VIP6 = "fd77:77:77::100"


def addr(ifname: str, local: str, prefixlen: int, **flags: bool) -> dict[str, object]:
    return {"family": "inet6" if ":" in local else "inet", "local": local,
            "prefixlen": prefixlen, "scope": "link" if local.startswith("fe80") else "global",
            **flags}


def collect(*addresses: tuple[str, dict[str, object]]) -> str:
    links: dict[str, list[dict[str, object]]] = {}
    for ifname, a in addresses:
        links.setdefault(ifname, []).append(a)
    dump = [{"ifname": i, "link_type": "loopback" if i == "lo" else "ether",
             "address": "02:00:00:00:00:01", "addr_info": a} for i, a in links.items()]
    return "\n".join(["@@addr", json.dumps(dump), "@@keepalived", "running", "@@gw",
                      "@@end"])


def holds(stdout: str, vips: list[str]) -> tuple[str, ...]:
    facts = parse_collect(stdout, [])
    obs = NodeObservation("lb1", True, True, T0, addresses=facts.addresses)
    return obs.holds(vips)


# (what the node shows, VIPs asked about, held)
CASES = [
    ("global IPv6", [("eth0", addr("eth0", VIP6, 64))], [VIP6], (VIP6,)),
    ("/128 IPv6", [("eth0", addr("eth0", VIP6, 128))], [VIP6], (VIP6,)),
    ("tentative counts", [("eth0", addr("eth0", VIP6, 64, tentative=True))], [VIP6],
     (VIP6,)),
    ("dadfailed never", [("eth0", addr("eth0", VIP6, 64, tentative=True, dadfailed=True))],
     [VIP6], ()),
    ("on lo never", [("lo", addr("lo", VIP6, 128))], [VIP6], ()),
    ("uppercase, uncompressed spelling", [("eth0", addr("eth0", "FD77:77:77:0:0:0:0:100",
                                                          64))], [VIP6], (VIP6,)),
    ("IPv4 beside IPv6", [("eth0", addr("eth0", "192.168.77.100", 24)),
                          ("eth0", addr("eth0", VIP6, 64, dadfailed=True))],
     ["192.168.77.100", VIP6], ("192.168.77.100",)),
    ("another address of the prefix", [("eth0", addr("eth0", "fd77:77:77::11", 64))],
     [VIP6], ()),
]


@pytest.mark.parametrize("what,shown,vips,held", CASES, ids=[c[0] for c in CASES])
def test_which_addresses_hold(what: str, shown: list[tuple[str, dict[str, object]]],
                              vips: list[str], held: tuple[str, ...]) -> None:
    assert holds(collect(*shown), vips) == held, what


def test_a_link_local_address_never_claims() -> None:
    a = parse_collect(collect(("eth0", addr("eth0", "fe80::1", 64))), []).addresses[0]
    assert a.is_link_local and not a.claims
    assert not Address("eth0", "fec0::1", 64).is_link_local  # fec0::/10 is not fe80::/10


@given(st.ip_addresses(v=6))
def test_link_local_agrees_with_ipaddress(ip: object) -> None:
    a = Address("eth0", str(ip), 64)
    assert a.is_link_local == ip.is_link_local  # type: ignore[attr-defined]


def test_the_flags_must_be_booleans() -> None:
    bad = collect(("eth0", {**addr("eth0", VIP6, 64), "dadfailed": "yes"}))
    with pytest.raises(Exception, match="dadfailed"):
        parse_collect(bad, [])


@pytest.mark.parametrize("a,cmd", [
    (Address("eth0", VIP6, 64), "ip addr del fd77:77:77::100/64 dev eth0"),
    (Address("eth0", VIP6, 128), "ip addr del fd77:77:77::100/128 dev eth0"),
    (Address("eth0.7", "192.168.77.100", 24), "ip addr del 192.168.77.100/24 dev eth0.7"),
])
def test_the_escalation_deletes_with_the_nodes_own_prefix(a: Address, cmd: str) -> None:
    assert del_command(a) == cmd


@pytest.mark.parametrize("vip,why", [
    ("fe80::100", "link-local"), ("169.254.1.1", "link-local"), ("ff02::12", "multicast"),
    ("::", "unspecified"), ("::1", "loopback"), ("224.0.0.18", "multicast"),
])
def test_the_config_refuses_an_address_that_cannot_be_a_vip(vip: str, why: str) -> None:
    with pytest.raises(ConfigError) as e:
        make_config(vips=["192.168.77.100", vip])
    text = str(e.value)
    assert "clusters[0].vips: [1] " in text and why in text, text


def test_the_config_takes_a_dual_stack_cluster_in_canonical_form() -> None:
    c = make_config(vips=["192.168.77.100", "FD77:77:77:0::100"])
    assert c.clusters[0].vips == ["192.168.77.100", VIP6]


# --- warnings about VIPs as the directors carry them ----------------------------------

def _view(*vip_sets: tuple[str, ...]) -> KeepalivedView:
    return KeepalivedView(tuple(
        VrrpInstance(name=f"VI_{k}", vrid=51, version=3, state="MASTER", wantstate="MASTER",
                     base_priority=100, effective_priority=100, advert_int=1.0, vips=vips,
                     interface="eth0", last_transition=0.0, samples=(),
                     state_since=T0) for k, vips in enumerate(vip_sets)), T0)


def _obs(vip: str, *, deprecated: bool, view: KeepalivedView | None) -> ClusterObservation:
    lb1 = NodeObservation("lb1", True, True, T0, addresses=(
        Address("eth0", vip, 128 if deprecated else 64, deprecated=deprecated),),
        keepalived=view)
    return ClusterObservation("web", (lb1, NodeObservation("lb2", True, True, T0,
                                                           addresses=())))


@pytest.mark.parametrize("vip,deprecated,view,words", [
    (VIP6, True, _view((VIP6,)), []),
    (VIP6, False, _view((VIP6,)), ["as a preferred address", "/128"]),
    ("192.168.77.100", False, _view(("192.168.77.100",)), []),  # IPv4: no such rule
    (VIP6, True, _view(("192.168.77.100",)), ["in no keepalived instance", "family"]),
    (VIP6, True, None, []),  # no view: nothing to say about instances
])
def test_vip_warnings(vip: str, deprecated: bool, view: KeepalivedView | None,
                      words: list[str]) -> None:
    c = make_config(vips=[vip]).clusters[0]
    got = " | ".join(vip_warnings(c, _obs(vip, deprecated=deprecated, view=view)))
    assert all(w in got for w in words) and (got != "") == bool(words), got


def test_the_collect_reads_deprecated() -> None:
    (a,) = parse_collect(collect(("eth0", addr("eth0", VIP6, 128, deprecated=True))),
                         []).addresses
    assert a.deprecated and a.claims
