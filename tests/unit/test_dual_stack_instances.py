"""Instances told apart by more than their vrid (issue 31), pure.

A dual-stack pair runs VI_4 (IPv4) and VI_6 (IPv6) with the same virtual_router_id:
VRRP for IPv4 and for IPv6 are separate protocols, and keepalived keys an instance on
its interface, family and vrid. When only the IPv6 adverts are lost, lb2 must be
denied for the IPv6 VIP alone, on VI_6's counters, and never for the IPv4 VIP.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from arbiter.model import KeepalivedView, Verdict, VrrpInstance, VrrpSample
from arbiter.policy.vrrp import split_by_view
from tests.unit.builders import T0, VIP1, Driver, make_config, node

VIP6 = "fd00:77::100"


def inst(name: str, vip: str, state: str, rcvd: list[int], sent: list[int],
         prio: int) -> VrrpInstance:
    samples = tuple(VrrpSample(T0 - timedelta(seconds=0.25 * (len(rcvd) - 1 - k)), state,
                               r, s) for k, (r, s) in enumerate(zip(rcvd, sent, strict=True)))
    return VrrpInstance(name=name, vrid=51, version=3, state=state, wantstate=state,
                        base_priority=prio, effective_priority=prio, advert_int=1.0,
                        vips=(vip,), interface="eth0", last_transition=0.0,
                        samples=samples, state_since=T0 - timedelta(seconds=60))


N = 17  # 4 s of dumps at 0.25 s: lb1 sends one advert a second on each instance
SENT = [10 + k // 4 for k in range(N)]
HEARD = [5 + k // 4 for k in range(N)]  # lb2 hears each advert
DEAF = [5] * N  # lb2 has heard nothing since the first dump


def test_only_the_ipv6_adverts_lost_denies_only_the_ipv6_vip() -> None:
    lb1_view = KeepalivedView((inst("VI_4", VIP1, "MASTER", [0] * N, SENT, 100),
                               inst("VI_6", VIP6, "MASTER", [0] * N, SENT, 100)), T0)
    lb2_view = KeepalivedView((inst("VI_4", VIP1, "BACKUP", HEARD, [0] * N, 90),
                               inst("VI_6", VIP6, "BACKUP", DEAF, [0] * N, 90)), T0)
    cfg = make_config(vips=[VIP1, VIP6])
    web = cfg.clusters[0].model_copy(update={"verdict": "exclusive"})
    d = Driver(cfg.model_copy(update={"clusters": [web]}))
    ca = d.web(d.round(replace(node("lb1", (VIP1, VIP6)), keepalived=lb1_view),
                       replace(node("lb2"), keepalived=lb2_view)))
    lb2 = ca.node("lb2")
    v4, why4 = lb2.for_vip(VIP1)
    v6, why6 = lb2.for_vip(VIP6)
    assert v6 is Verdict.DENY and "VI_6" in why6, why6
    assert v4 is Verdict.ALLOW and "hears lb1 on VI_4" in why4, why4
    (den,) = ca.next_history.denials
    assert (den.node, den.vrid, den.family) == ("lb2", 51, 6)


def test_a_view_of_two_families_never_pairs_them() -> None:
    """A split on the IPv4 VIP is never confirmed by the IPv6 instance's counters."""
    lb1 = KeepalivedView((inst("VI_6", VIP6, "MASTER", [0] * N, SENT, 100),
                          inst("VI_4", VIP1, "MASTER", HEARD, SENT, 100)), T0)
    lb2 = KeepalivedView((inst("VI_6", VIP6, "BACKUP", DEAF, [0] * N, 90),
                          inst("VI_4", VIP1, "MASTER", HEARD, SENT, 90)), T0)
    assert lb2.peer(lb1.instances[1]).name == "VI_4"
    assert lb2.peer(lb1.instances[0]).name == "VI_6"
    cfg = make_config(vips=[VIP1, VIP6])
    from arbiter.model import ClusterObservation

    obs = ClusterObservation("web", (replace(node("lb1", (VIP1,)), keepalived=lb1),
                                     replace(node("lb2", (VIP1,)), keepalived=lb2)))
    # both VI_4s hear each other (a preemption, not a split): not confirmed, though
    # lb2's VI_6 (same vrid) is deaf to lb1
    assert split_by_view(cfg.clusters[0], obs, (VIP1,), {VIP1: ("lb1", "lb2")}, T0,
                         0.25) is None
