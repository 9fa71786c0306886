"""Exclusive verdicts, measured on one gated lab (issue 11): what they gain and what
they cost, beside reactive verdicts and plain keepalived.

- the gain: the split-brain window under a VRRP cut, exclusive against reactive push
  (exclusive: samples with two holders, every 50 ms, and the VIP adds lb2 made);
- the cost: failover after the master (lb1) dies: kill -9, graceful stop, link cut.
  Under exclusive verdicts the backup waits in FAULT until the arbiter sees the master
  unhealthy, then for the gate's rise, then for keepalived's master-down interval.

One lab (`lab up --gate`) serves all three setups:
- exclusive: `verdict = "exclusive"`, the arbiter running;
- reactive: `verdict = "reactive"`, the arbiter running (push detection, SSH fence);
- plain: the arbiter stopped, so every gate falls back to its gateway ping and passes:
  keepalived decides alone, as without the arbiter.

Times are from the fault to the first 50 ms sample in which lb2 holds the VIP
(takeover), and in which it holds it alone (alone: lb1's copy gone too).

    python -m bench.window --modes failover --failover-reps 3 [--json out.json]
"""

from __future__ import annotations

import threading
import time

from bench.common import median
from bench.cuts import one_cut, summarize
from tests.lab.labctl import VIP1, AddrEvents, Lab, steady, wait_for

SETUPS = ("exclusive", "reactive", "plain")
FAULTS = ("keepalived-kill", "keepalived-stop", "link-cut")


def lb2_state(lab: Lab) -> str | None:
    nodes = {n["name"]: n for n in lab.api("/status")["clusters"][0]["nodes"]}
    return (nodes["lb2"]["last_event"] or {}).get("state")


def use(lab: Lab, setup: str) -> None:
    """Bring the lab to its steady state under ``setup``: lb1 holds the VIP, lb2 waits
    (in FAULT under exclusive verdicts, in BACKUP otherwise)."""
    lab.kill_arbiter()
    # without the arbiter the gates pass on their gateway ping: plain VRRP, lb1 preempts
    wait_for(lambda: lab.holders()[VIP1] == ["lb1"], 30, "lb1 to hold the VIP")
    if setup == "plain":
        time.sleep(3.0)  # lb2's gate passes rise times: it is a BACKUP again
        return
    lab.set_cluster(verdict=setup)
    steady(lab)
    if setup == "exclusive":  # denied now: lb2's keepalived reports FAULT
        wait_for(lambda: lb2_state(lab) == "FAULT", 15, "lb2 in FAULT")
    else:  # allowed: it stays the BACKUP it became while the arbiter was down
        wait_for(lambda: lab.verdict("lb2")["verdict"] == "allow", 15, "lb2 allowed")


def measure(lab: Lab, fault: str, observe: float) -> dict:
    # the fault command returns once it is done (a graceful stop waits for keepalived
    # to exit, as systemctl does): sample from the moment it is sent
    inject = threading.Thread(target=lab.fault, args=(fault, "lb1"))
    t0 = time.monotonic()
    inject.start()
    takeover = alone = None
    end = t0 + observe
    while time.monotonic() < end and alone is None:
        h = lab.holders()[VIP1]
        now = time.monotonic() - t0
        if "lb2" in h and takeover is None:
            takeover = round(now, 2)
        if h == ["lb2"]:
            alone = round(now, 2)
        time.sleep(0.05)
    inject.join()
    lab.heal(fault, "lb1")
    return {"takeover_s": takeover, "alone_s": alone}


def close_incidents(lab: Lab) -> None:
    """Let the arbiter close what the fault opened (releasing any hold), so that the
    next run starts clean: a restart would otherwise keep lb1 a victim."""
    ops = lab.token("ops")
    for i in lab.incidents():
        if i["held_nodes"]:
            lab.post(f"/incidents/{i['id']}/release", {"reason": "bench"}, ops)
    wait_for(lambda: lab.api("/status")["clusters"][0]["incident"] is None, 30,
             "the incident to close")


def cut_exclusive(lab: Lab, observe: float) -> dict:
    use(lab, "exclusive")
    ev = AddrEvents(lab)
    try:
        lab.fault("vrrp-cut")
        samples = dual = 0
        end = time.monotonic() + observe
        while time.monotonic() < end:
            samples += 1
            dual += len(lab.holders()[VIP1]) > 1
            time.sleep(0.05)
        adds = 0
        while not ev.q.empty():
            host, kind, _ = ev.q.get_nowait()
            adds += host == "lb2" and kind == "add"
    finally:
        ev.close()
        lab.heal("vrrp-cut")
    return {"observed_s": observe, "samples": samples, "samples_with_two_holders": dual,
            "vip_adds_on_lb2": adds,
            "split_brain_incidents": len(lab.incidents("split_brain"))}


def cut_reactive(lab: Lab, cuts: int) -> dict:
    lab.set_arbiter(push=True, interval=1.0, confirm_after=0.5)  # window.py's push mode
    use(lab, "reactive")
    ev = AddrEvents(lab)
    rows, last = [], max((i["id"] for i in lab.incidents()), default=0)
    try:
        for _ in range(cuts):
            r = one_cut(lab, ev, last)
            last = r["incident"]
            rows.append(r)
    finally:
        ev.close()
    return summarize(rows)


def run(reps: int, observe: float, faults: tuple[str, ...] = FAULTS) -> dict:
    lab = Lab("active-backup+gate")
    try:
        lab.set_arbiter(auto_release=False, resolve_rounds=2)
        out: dict = {"window": {"exclusive": cut_exclusive(lab, observe),
                                "reactive_push": cut_reactive(lab, reps)}}
        print(f"window: {out['window']}", flush=True)
        fo: dict = {}
        for setup in SETUPS:
            for fault in faults:
                rows = []
                for _ in range(reps):
                    use(lab, setup)
                    rows.append(measure(lab, fault, observe))
                    if setup != "plain":
                        close_incidents(lab)
                    print(f"failover {setup} {fault}: {rows[-1]}", flush=True)
                fo.setdefault(setup, {})[fault] = summary(rows)
        out["failover"] = fo
        return out
    except Exception:
        lab.dump_logs()
        raise
    finally:
        lab.down()


def summary(rows: list[dict]) -> dict:
    out: dict = {"runs": rows}
    for k in ("takeover_s", "alone_s"):
        vals = [r[k] for r in rows if r[k] is not None]
        out[k] = round(median(vals), 2) if vals else None
        missed = len(rows) - len(vals)
        if missed:
            out[f"{k}_never"] = missed
    return out
