"""End-to-end with the nodes in the loop: arbiter-gate and arbiter-notify wired into
real keepalived on both directors (lab variant `+gate`), with reactive verdicts: these
tests need the split brain that exclusive verdicts prevent (tests/lab/test_exclusive.py)."""

from __future__ import annotations

import contextlib
import re
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.lab.labctl import VIP1, Lab, Window, steady, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.parametrize("lab", ["active-backup+gate"],
                                                       indirect=True)]
GATE_INTERVAL = 1.0
# keepalived's master-down interval for lb2: 3 x advert_int + (256 - priority) / 256
MASTER_DOWN = 3 * 1.0 + (256 - 90) / 256


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def logged_events(lab: Lab, node: str, state: str) -> list[float]:
    """When the arbiter logged each event ``node`` sent for VI_1 in ``state``: the log
    keeps every one, while /status keeps only the latest (with the gate, lb2's MASTER
    event is followed within milliseconds by FAULT once the deny reaches it)."""
    line = re.compile(rf"^(\S+ \S+) INFO +arbiter\.service: \[web\] event from {node}: "
                      rf"VI_1 is {state}$", re.M)
    # the log's local time, read back as local time: the arbiter runs on this host
    return [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()
            for m in line.finditer(lab.arbiter_log())]


def last_event(lab: Lab, node: str) -> dict | None:
    nodes = {n["name"]: n for n in lab.api("/status")["clusters"][0]["nodes"]}
    return nodes[node]["last_event"]


@pytest.fixture(autouse=True)
def _reactive(lab: Lab) -> None:
    lab.set_cluster(verdict="reactive")


def test_gate_only_fence_puts_victim_into_fault(lab: Lab) -> None:
    lab.set_cluster(fence_mode="gate")
    steady(lab)
    lab.fault("vrrp-cut")
    inc = wait_for(lambda: [i for i in lab.incidents("split_brain") if i["decided_at"]], 20,
                   "a decision")[0]
    decided = ts(inc["decided_at"])
    wait_for(lambda: lab.holders()[VIP1] == ["lb1"], 10, "lb2 to drop the VIP")
    gone = time.time()
    print(f"\ndecision -> victim in FAULT without the VIP: {gone - decided:.2f}s "
          f"(bound: 2 gate intervals = {2 * GATE_INTERVAL:.1f}s)")
    assert gone - decided <= 2 * GATE_INTERVAL + 0.2  # + the 50-100 ms poll granularity
    assert lab.keepalived_running("lb2")  # nothing was stopped: the node fenced itself
    wait_for(lambda: (last_event(lab, "lb2") or {}).get("state") == "FAULT", 5, "FAULT event")
    final = wait_for(lambda: [i for i in lab.incidents("split_brain") if i["state"] == "fenced"],
                     10, "incident fenced")[0]
    assert final["mode"] == "gate"
    assert [s["step"] for s in lab.api(f"/incidents/{final['id']}")["fence_attempts"]] \
        in ([], ["announce"])
    assert lab.verdict("lb2")["verdict"] == "deny"


def test_director_link_cut_releases_vip_itself(lab: Lab) -> None:
    steady(lab)
    lab.fault("link-cut", "lb1")  # lb1 reaches neither its gateway nor the arbiter
    wait_for(lambda: lab.holders()[VIP1] == ["lb2"], 15, "lb1 to let go and lb2 to take over")
    lab.heal("link-cut", "lb1")
    deadline = time.monotonic() + 12
    seen = []
    dual_since = None
    while time.monotonic() < deadline:
        h = lab.holders()[VIP1]
        seen.append(tuple(h))
        # lb1 preempts after the heal (higher priority). keepalived's handover has lb1
        # add the VIP a few ms before lb2's removal, which a sample can catch (seen once
        # in CI); two holders for longer than a handover is a split brain.
        now = time.monotonic()
        dual_since = (dual_since or now) if len(h) > 1 else None
        assert dual_since is None or now - dual_since < 0.5, f"dual VIP after heal: {h}"
        time.sleep(0.05)
    assert len(seen[-1]) == 1
    path = " -> ".join(dict.fromkeys("+".join(x) or "-" for x in seen))
    print(f"\nafter heal the VIP went {path}")
    assert lab.incidents("split_brain") == []


def test_release_after_heal_returns_to_normal_vrrp(lab: Lab) -> None:
    steady(lab)
    lab.fault("vrrp-cut")
    Window(lab).watch(timeout=20)
    inc = wait_for(lambda: [i for i in lab.incidents("split_brain")
                            if i["state"] in ("fenced", "held", "resolved")], 10, "fenced")[0]
    wait_for(lambda: not lab.keepalived_running("lb2"), 5, "lb2's keepalived stopped")
    lab.heal("vrrp-cut")
    code, body = lab.post(f"/incidents/{inc['id']}/release", {"reason": "vrrp healed"},
                          lab.token("ops"))
    assert code == 200, body
    assert body["released"] == ["lb2"] and body["recover"][0]["ok"], body
    wait_for(lambda: lab.keepalived_running("lb2"), 5, "lb2's keepalived back")
    wait_for(lambda: (last_event(lab, "lb2") or {}).get("state") == "BACKUP", 10, "lb2 BACKUP")
    for _ in range(30):  # and it stays normal: one holder, no FAULT
        assert lab.holders()[VIP1] == ["lb1"]
        time.sleep(0.1)
    assert last_event(lab, "lb2")["state"] == "BACKUP"
    assert lab.verdict("lb2")["verdict"] == "allow"
    rel = lab.api(f"/incidents/{inc['id']}")
    assert rel["released_by"].startswith("ops") and rel["released_at"]
    steps = [(s["node"], s["step"], s["ok"]) for s in rel["fence_attempts"]]
    assert ("lb2", "recover", True) in steps


def test_notify_event_triggers_detection_before_the_schedule(lab: Lab) -> None:
    interval = 10.0
    # push off: the address watch would otherwise see the VIP before notify reports it
    lab.set_arbiter(interval=interval, push=False)
    steady(lab)
    before = lab.api("/status")["arbiter"]["last_round"]["started_at"]
    lab.fault("vrrp-cut")
    inc = wait_for(lambda: lab.incidents("split_brain"), 20, "split brain seen")[0]
    opened = ts(inc["opened_at"])
    # lb2's MASTER event that led to it (logged as it arrived, before that round)
    masters = [t for t in logged_events(lab, "lb2", "MASTER") if t <= opened]
    assert masters, "no MASTER event from lb2 before the incident opened"
    event_at = masters[-1]
    # the round that would have seen it without the event: the schedule's next slot
    scheduled = ts(before) + interval
    while scheduled < event_at:
        scheduled += interval
    print(f"\nevent -> incident: {opened - event_at:.3f}s; scheduled round would have come "
          f"{scheduled - opened:.2f}s later")
    assert 0 <= opened - event_at < 1.0
    assert scheduled - opened > 0


def test_write_endpoints_refuse_bad_tokens(lab: Lab) -> None:
    steady(lab)
    ev = {"cluster": "web", "node": "lb2", "instance": "VI_1", "state": "MASTER",
          "priority": 90}
    assert lab.post("/events", ev)[0] == 401
    assert lab.post("/events", ev, "not-a-valid-token-at-all")[0] == 401
    assert lab.post("/events", ev, lab.token("lb1"))[0] == 403  # lb1 cannot speak for lb2
    assert lab.post("/incidents/1/release", {}, lab.token("lb2"))[0] == 403
    assert lab.post("/incidents/1/release", {})[0] == 401
    assert lab.post("/incidents/1/release", {}, lab.token("ops"))[0] == 404  # a real token
    time.sleep(1.5)
    assert last_event(lab, "lb2") is None and lab.incidents() == []
    assert lab.holders()[VIP1] == ["lb1"]
    log = lab.arbiter_log()
    assert log.count("auth: 401") >= 3 and log.count("auth: 403") >= 2


def test_a_handover_overlap_is_never_fenced(lab: Lab) -> None:
    """Issue 10: lb1's keepalived stalls (SIGSTOP) long enough for lb2 to take over; it
    resumes 0.3 s later and lb2 steps down by itself. Both hold the VIP for that
    moment, while lb2's notify and the address watch wake rounds 50 ms apart. VRRP is
    resolving it on its own: the arbiter must not fence (confirm_min_span 0.5 s)."""
    import os
    import signal
    import subprocess

    from tests.lab.labctl import AddrEvents

    steady(lab)
    # lb1's keepalived processes, by their pids outside the lab: signalled from here,
    # with no shell in between, so the overlap is the one chosen
    def comm(pid: str) -> str:  # a short-lived process may be gone by the time we look
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except FileNotFoundError:
            return ""

    pids = [int(p) for p in subprocess.run(["ip", "netns", "pids", lab.ns("lb1")],
                                           capture_output=True, text=True).stdout.split()
            if comm(p) == "keepalived"]
    assert pids
    ev = AddrEvents(lab)
    try:
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        _, added = ev.wait("add", 10, host="lb2")
        time.sleep(max(0.0, added + 0.3 - time.time()))  # 0.3 s after lb2 added the VIP
        for p in pids:
            os.kill(p, signal.SIGCONT)
        _, dropped = ev.wait("del", 5, host="lb2")
    finally:
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
        ev.close()
    overlap = dropped - added
    wait_for(lambda: (last_event(lab, "lb2") or {}).get("state") == "BACKUP", 10,
             "lb2 back to BACKUP")
    time.sleep(2.0)  # rounds enough to have decided, had the overlap been confirmed
    incs = lab.incidents("split_brain")
    print(f"\noverlap {overlap:.3f}s (lb2's VIP added -> dropped); incidents: "
          f"{[(i['id'], i['state']) for i in incs]}")
    assert 0.25 <= overlap < 0.5  # the scenario really overlapped, within the span
    assert all(i["decided_at"] is None for i in incs)
    assert not [a for i in incs for a in lab.api(f"/incidents/{i['id']}")["fence_attempts"]]
    assert lab.keepalived_running("lb1") and lab.keepalived_running("lb2")
    assert lab.holders()[VIP1] == ["lb1"]
