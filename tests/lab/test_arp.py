"""The ARP view on the lab, with real keepalived: the arbiter host shares the lab
bridge with the directors, so it sees which MAC answers for the VIP.

- a new holder's gratuitous ARP wakes a round at once: detection without push and
  between polls (latency printed);
- with lb2's sshd stopped, the split brain is still seen, by ARP alone;
- a third host that adds the VIP is an address conflict: one vip_conflict incident,
  no fence.
"""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.lab.labctl import VIP1, AddrEvents, Lab, sshd_down_then_cut, steady, wait_for

pytestmark = pytest.mark.lab
SLOW_POLL = 4.0  # the arbiter's interval here: far longer than a GARP's wake-up
MASTER_DOWN = 3 * 1.0 + (256 - 90) / 256  # lb2 claims the VIP this long after the cut


def arp_on(lab: Lab, **arbiter: object) -> None:
    lab.set_cluster(arp_interface="eth0", arp_timeout=0.2)
    lab.set_arbiter(**arbiter)


def opened_ts(inc: dict) -> float:
    return datetime.fromisoformat(inc["opened_at"]).timestamp()


def arp_answers(lab: Lab) -> dict[str, list[dict]]:
    (web,) = lab.api("/status")["clusters"]
    assert web["arp"] is not None and web["arp"]["error"] is None, web["arp"]
    return web["arp"]["answers"]


def test_a_new_holders_gratuitous_arp_is_seen_between_polls(lab: Lab) -> None:
    """Push detection off and a 4 s interval: only the GARP can wake a round early."""
    arp_on(lab, push=False, interval=SLOW_POLL, confirm_rounds=3)
    steady(lab)
    assert [a["node"] for a in arp_answers(lab)[VIP1]] == ["lb1"]
    events = AddrEvents(lab)
    try:
        lab.fault("vrrp-cut")
        _, added = events.wait("add", 15, host="lb2")  # lb2 becomes MASTER: VIP + GARP
    finally:
        events.close()
    (inc,) = wait_for(lambda: lab.incidents("split_brain"), 10, "split brain opened")
    latency = opened_ts(inc) - added
    print(f"\nGARP-only detection: incident opened {latency * 1000:.0f} ms after lb2 "
          f"took the VIP (interval {SLOW_POLL:g}s, push off)")
    assert latency < 1.0, latency
    assert "answered by" in inc["reason"] and "(lb1)" in inc["reason"] \
        and "(lb2)" in inc["reason"], inc["reason"]
    assert "ARP" in lab.arbiter_log()


def test_sshd_stopped_then_vrrp_cut_is_seen_by_arp_alone(lab: Lab) -> None:
    arp_on(lab, confirm_rounds=30)  # watch it be seen; fencing is the next test's
    steady(lab)
    inc, t0 = sshd_down_then_cut(lab)
    web = lab.api("/status")["clusters"][0]
    assert web["holders"][VIP1] == ["lb1", "lb2"]
    assert sorted(a["node"] for a in web["arp"]["answers"][VIP1]) == ["lb1", "lb2"]
    print(f"\nsshd down on lb2: split brain opened {opened_ts(inc) - t0:.2f}s after the cut")
    lab.heal("vrrp-cut")
    lab.heal("sshd-stop", "lb2")


def test_a_third_host_with_the_vip_is_a_conflict_and_nothing_is_fenced(lab: Lab) -> None:
    arp_on(lab)
    steady(lab)
    web1 = lab.exec("web1", f"ip addr add {VIP1}/24 dev eth0 && "
                            f"arping -q -U -c 2 -I eth0 {VIP1}; true")
    assert web1.returncode == 0, web1.stderr
    try:
        (inc,) = wait_for(lambda: lab.incidents("vip_conflict"), 15, "a vip_conflict incident")
        assert "no configured node" in inc["reason"], inc["reason"]
        time.sleep(3)  # more rounds: still one incident, and no fence of anything
        assert len(lab.incidents("vip_conflict")) == 1
        assert lab.incidents("split_brain") == []
        assert lab.keepalived_running("lb1") and lab.keepalived_running("lb2")
        (web,) = lab.api("/status")["clusters"]
        assert web["state"] == "degraded" and "address conflict" in web["state_reason"]
        assert web["conflicts"][VIP1], web
        metrics = subprocess.run(["ip", "netns", "exec", lab.ns("arb"), "curl", "-sS",
                                  "--max-time", "5", "http://127.0.0.1:8080/metrics"],
                                 capture_output=True, text=True, timeout=10).stdout
        assert f'arbiter_arp_answerers{{cluster="web",vip="{VIP1}"}} 2.0' in metrics
    finally:
        lab.exec("web1", f"ip addr del {VIP1}/24 dev eth0; true")
    wait_for(lambda: lab.incidents("vip_conflict")[0]["state"] == "resolved", 20,
             "the conflict resolved once web1 dropped the VIP")


# --- fencing levels ------------------------------------------------------------------
AGENT = str(Path(__file__).resolve().parents[2] / "deploy" / "lab" / "lab-fence-agent")


def agent_levels(lab: Lab, levels: list[str]) -> None:
    lab.set_cluster(fence_levels=levels, fence_agent=AGENT,
                    fence_agent_options={"netns": lab.ns("gw")})


def attempts(lab: Lab, incident: int) -> list[dict]:
    return lab.api(f"/incidents/{incident}")["fence_attempts"]


def link_up(lab: Lab, host: str) -> bool:
    out = subprocess.run(["ip", "-n", lab.ns("gw"), "-o", "link", "show", f"v-{host}"],
                         capture_output=True, text=True, timeout=10).stdout
    return ",UP" in out or "<UP" in out


def test_sshd_dead_victim_is_fenced_through_the_agent_level(lab: Lab) -> None:
    """Issue 14, lab test 1: sshd stopped on lb2, then a VRRP cut. The split is seen by
    ARP; ssh and vip-del cannot reach lb2; the agent powers it off, verified."""
    arp_on(lab, auto_release=False)
    agent_levels(lab, ["ssh", "vip-del", "agent"])
    steady(lab)
    lab.fault("sshd-stop", "lb2")
    wait_for(lambda: not next(n for n in lab.api("/status")["clusters"][0]["nodes"]
                              if n["name"] == "lb2")["ssh"]["ok"], 15, "lb2's SSH down")
    lab.fault("vrrp-cut")
    t0 = time.time()
    (inc,) = wait_for(lambda: lab.incidents("split_brain"), 10, "split brain opened")
    print(f"\nsplit brain seen {opened_ts(inc) - t0:.2f}s after the cut (lb2's SSH down)")
    assert opened_ts(inc) - t0 < 1.0 + MASTER_DOWN, "not seen within a second of the claim"
    done = wait_for(lambda: (lambda i: i if i["state"] in ("fenced", "fence_failed")
                             else None)(lab.api(f"/incidents/{inc['id']}")), 60,
                    "the fence's result")
    steps = attempts(lab, inc["id"])
    assert done["state"] == "fenced", steps
    tried = [s["level"] for s in steps]
    assert tried.index("ssh") < tried.index("vip-del") < tried.index("agent"), tried
    assert not any(s["ok"] for s in steps if s["level"] in ("ssh", "vip-del"))
    agent = {s["step"]: s for s in steps if s["level"] == "agent"}
    assert agent["agent_off"]["ok"] and agent["agent_status"]["ok"], agent
    assert not link_up(lab, "lb2")  # powered off, as the lab's agent does it
    # (lb2's keepalived sees its link go down and drops the VIP itself: what it holds
    # no longer matters, no client can reach it)
    # the next rounds' ARP view: clients reach lb1 only
    wait_for(lambda: [a["node"] for a in arp_answers(lab)[VIP1]] == ["lb1"], 5,
             "only lb1's MAC answering")
    assert lab.keepalived_running("lb1")
    # the release powers it on again (the agent's action=on)
    lab.heal("vrrp-cut")
    lab.heal("sshd-stop", "lb2")
    code, body = lab.post(f"/incidents/{inc['id']}/release", {"reason": "checked"},
                          lab.token("ops"))
    assert code == 200, body
    assert body["recover"][0]["ok"] and "action=on" in body["recover"][0]["command"], body
    assert link_up(lab, "lb2")


def test_a_failing_first_level_falls_through_to_the_agent(lab: Lab) -> None:
    """Issue 14, lab test 4: level 1 (a fence_command that exits 1) fails, the agent
    level succeeds; the incident shows both, each verified."""
    arp_on(lab, auto_release=False)
    agent_levels(lab, ["ssh", "agent"])
    lab.set_cluster(fence_command="/bin/false")
    lab.allow_on("lb2", "/bin/false")
    steady(lab)
    lab.fault("vrrp-cut")
    (inc,) = wait_for(lambda: lab.incidents("split_brain"), 15, "split brain opened")
    done = wait_for(lambda: (lambda i: i if i["state"] in ("fenced", "fence_failed")
                             else None)(lab.api(f"/incidents/{inc['id']}")), 60,
                    "the fence's result")
    steps = attempts(lab, inc["id"])
    assert done["state"] == "fenced", steps
    ssh = [s for s in steps if s["level"] == "ssh"]
    assert ssh[0]["step"] == "fence_command" and ssh[0]["exit_status"] == 1
    assert any(s["step"] == "verify" and not s["ok"] for s in ssh)  # verified: still there
    agent = [s for s in steps if s["level"] == "agent"]
    assert [s["step"] for s in agent][:2] == ["agent_off", "agent_status"]
    assert all(s["ok"] for s in agent), agent
    assert "by agent" in done["timeline"][-1]["message"], done["timeline"][-1]
    lab.heal("vrrp-cut")
