"""IPv6 end to end on the lab (issue 31): real keepalived VRRPv3 instances for an IPv6
VIP on a ULA prefix, the arbiter reaching the directors, its gateway and its API over
IPv6, and a VRRP cut (protocol 112 dropped for both families).

- an IPv6-only pair: the split is detected, confirmed, fenced and verified, and the
  survivor is announced: a client's neighbour cache that the challenger's own NAs had
  moved to it points at the survivor again, from the arbiter's advertisement;
- a dual-stack pair (VI_1 for IPv4 and VI_6 for IPv6, the same vrid): one victim for
  both families, as for dual-master;
- the neighbour view: with lb2's sshd stopped, the split is seen by neighbour
  discovery alone; and lb2's unsolicited NA as it becomes MASTER wakes a round between
  polls (latency printed, beside the GARP figure of tests/lab/test_arp.py).
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime

import pytest

from tests.lab.labctl import (
    VIP1,
    VIP6,
    AddrEvents,
    Lab,
    Window,
    sshd_down_then_cut,
    steady,
    wait_for,
)

pytestmark = pytest.mark.lab


def neighbour_mac(lab: Lab, host: str, addr: str) -> str | None:
    p = subprocess.run(["ip", "-n", lab.ns(host), "-j", "-6", "neigh", "show", addr],
                       capture_output=True, text=True, check=True)
    entries = json.loads(p.stdout or "[]")
    return entries[0].get("lladdr") if entries else None


def mac_of(lab: Lab, host: str) -> str:
    p = subprocess.run(["ip", "-n", lab.ns(host), "-j", "link", "show", "eth0"],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)[0]["address"]


def test_ipv6_only_vrrp_cut_is_fenced_verified_and_announced() -> None:
    lab = Lab("active-backup", up=("--ipv6",))
    try:
        lab.set_cluster(arp_interface="eth0")  # the segment the NAs are sent on
        steady(lab, {VIP6: ["lb1"]})
        # web1 talks to the VIP: its neighbour cache holds lb1's MAC for it
        ping = subprocess.run(["ip", "netns", "exec", lab.ns("web1"), "ping", "-6", "-c", "1",
                               "-W", "2", VIP6], capture_output=True, text=True)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        lb1, lb2 = mac_of(lab, "lb1"), mac_of(lab, "lb2")
        assert neighbour_mac(lab, "web1", VIP6) == lb1
        lab.fault("vrrp-cut")
        # lb2 becomes MASTER too and sends its own NAs: web1 moves to lb2 (no traffic
        # from web1 from here on, so no neighbour probe of its own moves it back)
        wait_for(lambda: neighbour_mac(lab, "web1", VIP6) == lb2, 15,
                 "lb2's unsolicited NAs to reach web1")
        wait_for(lambda: lab.holders()[VIP6] == ["lb1"], 15, "the split to end")
        (inc,) = wait_for(lambda: [i for i in lab.incidents("split_brain")
                                   if i["state"] in ("fenced", "held")], 10, "fenced incident")
        assert inc["survivor"] == "lb1" and inc["victims"] == ["lb2"], inc
        assert inc["vips"] == [VIP6]
        steps = wait_for(lambda: (lambda st: st if st and st[-1]["step"] == "announce"
                                  else None)(lab.api(f"/incidents/{inc['id']}")
                                             ["fence_attempts"]), 10, "the announce step")
        got = [(s["node"], s["step"], s["ok"]) for s in steps]
        assert ("lb2", "fence_command", True) in got and ("lb2", "verify", True) in got, got
        assert got[-1] == ("lb1", "announce", True), steps[-1]
        assert steps[-1]["command"].startswith(f"NA {VIP6} is at {lb1}")
        # lb2's own NAs, as it became MASTER, had moved web1 to lb2; the arbiter's NA
        # (target link-layer address lb1, override) moves it back without a probe
        wait_for(lambda: neighbour_mac(lab, "web1", VIP6) == lb1, 3,
                 "web1's neighbour cache to name lb1 again")
        body = subprocess.run(["ip", "netns", "exec", lab.ns("web1"), "curl", "-s",
                               "--max-time", "3", f"http://[{VIP6}]/"],
                              capture_output=True, text=True).stdout
        assert body.strip() in ("web1", "web2")
        assert lab.verdict("lb2")["verdict"] == "deny"
        st = lab.api("/status")["clusters"][0]
        assert {n["node"]: n["holds"] for n in st["nodes"]} == {"lb1": [VIP6], "lb2": []}
    finally:
        lab.down()


def test_dual_stack_vrrp_cut_has_one_victim_for_both_families() -> None:
    lab = Lab("active-backup", up=("--dual-stack",))
    try:
        steady(lab, {VIP1: ["lb1"], VIP6: ["lb1"]})
        lab.fault("vrrp-cut")
        Window(lab, (VIP1, VIP6)).watch(timeout=20)
        wait_for(lambda: lab.holders()[VIP1] == ["lb1"] and lab.holders()[VIP6] == ["lb1"],
                 10, "lb1 alone to hold both VIPs")
        wait_for(lambda: not lab.keepalived_running("lb2"), 5, "lb2's keepalived to exit")
        assert lab.keepalived_running("lb1")
        incs = wait_for(lambda: [i for i in lab.incidents("split_brain")
                                 if i["state"] in ("fenced", "held")], 10, "fenced incident")
        assert {i["survivor"] for i in incs} == {"lb1"}, incs
        assert {v for i in incs for v in i["victims"]} == {"lb2"}, incs
        assert {v for i in incs for v in i["vips"]} <= {VIP1, VIP6}
    finally:
        lab.down()


def neighbour_answers(lab: Lab) -> list[str]:
    (web,) = lab.api("/status")["clusters"]
    assert web["arp"] is not None and web["arp"]["error"] is None, web["arp"]
    return sorted(a["node"] for a in web["arp"]["answers"].get(VIP6, []))


def test_the_neighbour_view_sees_a_split_while_sshd_is_down() -> None:
    lab = Lab("active-backup", up=("--ipv6",))
    try:
        lab.set_cluster(arp_interface="eth0", arp_timeout=0.2)
        lab.set_arbiter(confirm_rounds=30)  # watch it be seen; fencing is tested above
        steady(lab, {VIP6: ["lb1"]})
        assert neighbour_answers(lab) == ["lb1"]  # lb1 answers our solicitation
        inc, t0 = sshd_down_then_cut(lab)
        assert neighbour_answers(lab) == ["lb1", "lb2"]
        assert lab.api("/status")["clusters"][0]["holders"][VIP6] == ["lb1", "lb2"]
        assert "answered by" in inc["reason"], inc["reason"]
        opened = datetime.fromisoformat(inc["opened_at"]).timestamp()
        print(f"\nsshd down on lb2: IPv6 split brain opened {opened - t0:.2f}s after the cut")
    finally:
        lab.down()


def test_an_unsolicited_na_is_seen_between_polls() -> None:
    """Push detection off and a 4 s interval: only lb2's NA can wake a round early."""
    lab = Lab("active-backup", up=("--ipv6",))
    try:
        lab.set_cluster(arp_interface="eth0", arp_timeout=0.2)
        lab.set_arbiter(push=False, interval=4.0, confirm_rounds=3)
        steady(lab, {VIP6: ["lb1"]})
        events = AddrEvents(lab, VIP6)
        try:
            lab.fault("vrrp-cut")
            _, added = events.wait("add", 15, host="lb2")  # lb2 becomes MASTER: VIP + NA
        finally:
            events.close()
        (inc,) = wait_for(lambda: lab.incidents("split_brain"), 10, "split brain opened")
        latency = datetime.fromisoformat(inc["opened_at"]).timestamp() - added
        print(f"\nNA-only detection: incident opened {latency * 1000:.0f} ms after lb2 took "
              "the VIP (interval 4s, push off)")
        assert latency < 1.0, latency
        assert "(lb1)" in inc["reason"] and "(lb2)" in inc["reason"], inc["reason"]
    finally:
        lab.down()


def test_exclusive_verdicts_on_ipv6_make_no_split_brain() -> None:
    """--gate: arbiter-gate asks http://[fd77:77:77::2]:8080 about the IPv6 VIP, and a
    VRRP cut (protocol 112 of both families) never gives the VIP two holders."""
    from tests.lab.test_exclusive import gated_steady, holders_sampled

    lab = Lab("active-backup+gate", up=("--ipv6",))
    try:
        gated_steady(lab, {VIP6: ["lb1"]})
        assert lab.verdict("lb2")["verdict"] == "allow"
        lab.fault("vrrp-cut")
        samples = holders_sampled(lab, 20.0)
        duals = [s for s in samples if len(s[VIP6]) > 1]
        print(f"\n{len(samples)} samples over 20 s, {len(duals)} with two holders of {VIP6}")
        assert len(samples) >= 150 and duals == []
        assert all(s[VIP6] == ["lb1"] for s in samples)
        assert lab.api(f"/verdict?cluster=web&node=lb2&vip={VIP6}")["verdict"] == "deny"
    finally:
        lab.down()
