"""Director situations no other lab test covers (issue 28's hunt), each with what the
arbiter should do, on real keepalived:

- the master loses its gateway while its VRRP still works: nothing to fence, no deny
  for the backup (the master is not a healthy holder), keepalived keeps the VIP where
  it is (moving it is keepalived's job, through its own track script);
- the victim's keepalived is restarted by hand during the cut it was fenced for: the
  same incident fences it again, at once, and holds it for an operator;
- a director reboots (its keepalived starts again as BACKUP, with no view yet) under
  exclusive verdicts: it is never denied for adverts it could not have counted, and
  there is no split;
- nopreempt with the lower-priority director as incumbent, under a VRRP cut: the
  incumbent survives, the higher priority is fenced;
- keepalived reloaded (SIGHUP) on a denied backup during a cut: the track file still
  says 1, so it stays in FAULT: no split.
"""

from __future__ import annotations

import time

import pytest

from tests.lab.labctl import VIP1, Lab, steady, wait_for
from tests.lab.test_exclusive import gated_steady, holders_sampled, vi1

pytestmark = pytest.mark.lab


def test_the_master_loses_its_gateway_while_vrrp_works(lab: Lab) -> None:
    steady(lab)
    lab.fault("gw-blind", "lb1")
    wait_for(lambda: lab.api("/status")["clusters"][0]["nodes"][0]["gateways"]
             == {"192.168.77.254": False}, 10, "the arbiter sees lb1 gateway-blind")
    samples = holders_sampled(lab, 6.0, every=0.1)
    assert all(s[VIP1] == ["lb1"] for s in samples)
    assert lab.incidents("split_brain") == []
    v = lab.verdict("lb2")
    assert v["verdict"] == "allow", v
    assert lab.keepalived_running("lb1") and lab.keepalived_running("lb2")


def test_a_victim_restarted_by_hand_during_its_cut_is_fenced_again_in_the_same_incident(
        lab: Lab) -> None:
    lab.set_arbiter(auto_release=False)
    steady(lab)
    lab.fault("vrrp-cut")
    wait_for(lambda: lab.incidents("split_brain") and not lab.keepalived_running("lb2"),
             15, "lb2 fenced")
    wait_for(lambda: lab.incidents("split_brain")[0]["state"] == "held", 15, "held")
    lab.heal("keepalived-stop", "lb2")  # an operator starts it again; the cut is there
    wait_for(lambda: (inc := lab.api(f"/incidents/{lab.incidents('split_brain')[0]['id']}"))
             and [t["state"] for t in inc["timeline"]].count("fencing") == 2, 20,
             "lb2 fenced again")
    wait_for(lambda: lab.holders()[VIP1] == ["lb1"], 10, "lb1 alone")
    (inc,) = lab.incidents("split_brain")  # one fault, one incident
    full = lab.api(f"/incidents/{inc['id']}")
    assert full["survivor"] == "lb1" and full["victims"] == ["lb2"]
    assert "re-claim" in full["reason"]


@pytest.mark.parametrize("lab", ["active-backup+gate"], indirect=True)
def test_a_rebooted_director_is_not_denied_for_adverts_it_could_not_count(lab: Lab) -> None:
    gated_steady(lab)
    lab.fault("keepalived-stop", "lb2")
    wait_for(lambda: not lab.keepalived_running("lb2"), 10, "lb2 down")
    time.sleep(1.0)
    lab.heal("keepalived-stop", "lb2")  # it comes back as BACKUP, no view yet
    samples = holders_sampled(lab, 8.0, every=0.1)
    assert all(s[VIP1] == ["lb1"] for s in samples)
    wait_for(lambda: (vi1(lab, "lb2") or {}).get("state") == "BACKUP", 10, "lb2 in BACKUP")
    v = lab.verdict("lb2")
    assert v["verdict"] == "allow" and "hears lb1" in v["reason"], v
    assert lab.incidents("split_brain") == []
    track = lab.api("/status")["clusters"][0]["nodes"][1]["track"]
    assert all(t["value"] in (0, None) for t in track.values()), track


@pytest.mark.parametrize("lab", ["nopreempt"], indirect=True)
def test_nopreempt_the_lower_priority_incumbent_survives_a_cut(lab: Lab) -> None:
    wait_for(lambda: lab.holders()[VIP1] == ["lb1"], 20, "lb1 elected")
    lab.fault("keepalived-stop", "lb1")
    wait_for(lambda: lab.holders()[VIP1] == ["lb2"], 10, "lb2 takes over")
    lab.heal("keepalived-stop", "lb1")  # back as BACKUP: nopreempt keeps lb2 master
    time.sleep(5)
    steady(lab, {VIP1: ["lb2"]})
    lab.fault("vrrp-cut")
    wait_for(lambda: lab.incidents("split_brain"), 15, "the split")
    wait_for(lambda: lab.holders()[VIP1] == ["lb2"] and not lab.keepalived_running("lb1"),
             15, "lb1 fenced, lb2 alone")
    full = lab.api(f"/incidents/{lab.incidents('split_brain')[0]['id']}")
    assert full["survivor"] == "lb2" and full["victims"] == ["lb1"]
    assert "by rule: incumbent" in full["reason"], full["reason"]


@pytest.mark.parametrize("lab", ["active-backup+gate"], indirect=True)
def test_keepalived_reloaded_on_a_denied_backup_keeps_it_out(lab: Lab) -> None:
    gated_steady(lab)
    lab.fault("vrrp-cut")
    wait_for(lambda: (vi1(lab, "lb2") or {}).get("state") == "FAULT", 10, "lb2 in FAULT")
    lab.fault("keepalived-reload", "lb2")
    samples = holders_sampled(lab, 8.0, every=0.05)
    duals = [s for s in samples if len(s[VIP1]) > 1]
    print(f"\n{len(samples)} samples over 8 s after the reload, {len(duals)} with two holders")
    assert duals == [] and all(s[VIP1] == ["lb1"] for s in samples)
    assert lab.incidents("split_brain") == []
    assert lab.keepalived_running("lb2")
