"""Exclusive verdicts, measured on one gated lab (issues 11 and 21): the split brain
they prevent, and what a real failover pays for it, beside plain keepalived.

Setups, all on one lab (`lab up --gate`: arbiter-gate, arbiter-notify and the track
files wired into real keepalived), switched between runs:
- plain: the arbiter stopped. Every gate falls back to its gateway ping and passes,
  and any deny left in a track file is lifted by the gate after its TTL: keepalived
  decides alone, as without the arbiter;
- hold: exclusive verdicts as before issue 21 (`keepalived_view = false`, no track
  files, the gate with `rise 2`): every backup waits in FAULT while the master is
  healthy;
- exclusive: exclusive verdicts on keepalived's own view (issue 21): a backup stays
  in BACKUP and is denied, through its track file, only once it misses the adverts of
  a healthy master that is sending (gate `rise 1`).

Faults on the master lb1: keepalived-kill (every keepalived process stopped, then
killed: the VIP stays behind, stale), keepalived-stop (graceful), link-cut; and a
VRRP cut between the directors. Times run from the fault to the first 50 ms sample in
which lb2 holds the VIP (takeover) and in which it holds it alone (alone); a cut is
judged by its samples with two holders.

    python -m bench.window --modes failover --failover-reps 5 [--json out.json]
"""

from __future__ import annotations

import threading
import time

from bench.common import median, pct
from tests.lab.labctl import VIP1, Lab, steady, wait_for

SETUPS = ("plain", "hold", "exclusive")
FAULTS = ("keepalived-kill", "keepalived-stop", "link-cut", "vrrp-cut")
CUT_OBSERVE = 12.0  # seconds a VRRP cut is sampled: lb2 would claim after ~3.6 s


def lb2_state(lab: Lab) -> str | None:
    """lb2's VI_1 as its keepalived reports it: the keepalived view, or (with the view
    off) the last transition arbiter-notify reported."""
    nodes = {n["name"]: n for n in lab.api("/status")["clusters"][0]["nodes"]}
    kv = nodes["lb2"].get("keepalived") or {}
    state = next((i["state"] for i in kv.get("instances", []) if i["name"] == "VI_1"), None)
    return state or (nodes["lb2"]["last_event"] or {}).get("state")


def use(lab: Lab, setup: str) -> None:
    """Bring the lab to its steady state under ``setup``: lb1 holds the VIP, lb2 waits
    (in FAULT under hold, in BACKUP otherwise)."""
    lab.kill_arbiter()
    lab.reconf("--gate-rise", "2" if setup == "hold" else "1")
    # without the arbiter the gates pass on their gateway ping, and any deny in a track
    # file is lifted after the gate's TTL: plain VRRP, lb1 preempts
    wait_for(lambda: lab.holders()[VIP1] == ["lb1"], 30, "lb1 to hold the VIP")
    wait_for(lambda: all(lab.exec(h, "cat /run/arbiter-verdict/VI_1").stdout.strip() == "0"
                         for h in ("lb1", "lb2")), 10, "the track files to allow")
    time.sleep(3.0)  # lb2's gate passes its rise: a BACKUP again
    if setup == "plain":
        return
    lab.set_cluster(verdict="exclusive", keepalived_view=setup == "exclusive",
                    track_files=setup == "exclusive")
    steady(lab)
    want = "FAULT" if setup == "hold" else "BACKUP"
    wait_for(lambda: lb2_state(lab) == want, 15, f"lb2 in {want}")


def sample(lab: Lab, fault: str, observe: float) -> dict:
    """Inject ``fault`` on lb1 and sample the holders every 50 ms."""
    inject = threading.Thread(target=lab.fault, args=(fault, "lb1"))
    t0 = time.monotonic()
    inject.start()
    takeover = alone = None
    samples = dual = 0
    end = t0 + observe
    while time.monotonic() < end:
        h = lab.holders()[VIP1]
        now = time.monotonic() - t0
        samples += 1
        dual += len(h) > 1
        if "lb2" in h and takeover is None:
            takeover = round(now, 2)
        if h == ["lb2"] and alone is None:
            alone = round(now, 2)
            if fault != "vrrp-cut":
                break
        time.sleep(0.05)
    inject.join()
    return {"takeover_s": takeover, "alone_s": alone, "samples": samples,
            "samples_with_two_holders": dual}


def settle(lab: Lab, fault: str, setup: str) -> None:
    """Heal, then let the arbiter close what the fault opened (releasing any hold)."""
    lab.heal(fault, "lb1" if fault != "vrrp-cut" else "")
    if setup == "plain":
        return
    ops = lab.token("ops")
    for i in lab.incidents():
        if i["held_nodes"]:
            lab.post(f"/incidents/{i['id']}/release", {"reason": "bench"}, ops)
    wait_for(lambda: lab.api("/status")["clusters"][0]["incident"] is None, 40,
             "the incident to close")


def run(reps: int, observe: float, faults: tuple[str, ...] = FAULTS,
        up: tuple[str, ...] = (), setups: tuple[str, ...] = SETUPS) -> dict:
    lab = Lab("active-backup+gate", up)
    try:
        lab.set_arbiter(auto_release=False, resolve_rounds=2)
        out: dict = {"lab": list(up) or ["advert_int 1", "VRRPv2"]}
        for setup in setups:
            for fault in faults:
                rows = []
                for _ in range(reps):
                    use(lab, setup)
                    rows.append(sample(lab, fault, CUT_OBSERVE if fault == "vrrp-cut"
                                       else observe))
                    settle(lab, fault, setup)
                    print(f"{setup} {fault}: {rows[-1]}", flush=True)
                out.setdefault(setup, {})[fault] = summary(rows)
        return out
    except Exception:
        lab.dump_logs()
        raise
    finally:
        lab.down()


def summary(rows: list[dict]) -> dict:
    out: dict = {"runs": rows}
    for k in ("takeover_s", "alone_s", "samples_with_two_holders"):
        vals = [r[k] for r in rows if r[k] is not None]
        out[k] = {"median": round(median(vals), 2), "p95": round(pct(vals, 95), 2)} \
            if vals else None
        if len(vals) < len(rows):
            out[f"{k}_never"] = len(rows) - len(vals)
    return out
