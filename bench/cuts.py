"""One VRRP cut measured end to end on the lab, and a summary of many: shared by
``bench.window`` (the split-brain window) and ``bench.failover`` (reactive cuts)."""

from __future__ import annotations

import time
from datetime import datetime

from bench.common import median, pct
from tests.lab.labctl import VIP1, AddrEvents, Lab, wait_for


def one_cut(lab: Lab, ev: AddrEvents, last_id: int, vip: str = VIP1) -> dict:
    ev.drain()
    t_cut = time.time()
    lab.fault("vrrp-cut")
    _, t_add = ev.wait("add", 15, host="lb2")
    victim, t_del = ev.wait("del", 15)
    inc = wait_for(lambda: [i for i in lab.incidents("split_brain") if i["id"] > last_id
                            and i["decided_at"]], 10, "the incident")[0]
    opened = datetime.fromisoformat(inc["opened_at"]).timestamp()
    row = {"incident": inc["id"], "victim": victim, "cut_to_dual_s": round(t_add - t_cut, 3),
           "detection_s": round(opened - t_add, 3), "fence_s": round(t_del - opened, 3),
           "window_s": round(t_del - t_add, 3)}
    # heal, release, and wait until the pair is back to normal VRRP; release only once
    # the fenced keepalived has finished stopping, as an operator would
    if victim == "lb2":
        wait_for(lambda: not lab.keepalived_running("lb2") or mode_is_gate(lab), 10,
                 "lb2's keepalived stopped")
    lab.heal("vrrp-cut")
    wait_for(lambda: lab.post(f"/incidents/{inc['id']}/release", {"reason": "bench"},
                              lab.token("ops"))[0] == 200, 15, "release")
    wait_for(lambda: lab.keepalived_running("lb2"), 10, "keepalived back on lb2")
    wait_for(lambda: lab.holders()[vip] == ["lb1"], 15, "lb1 alone")
    wait_for(lambda: not [i for i in lab.incidents("split_brain") if i["state"] != "resolved"],
             20, "incident resolved")
    time.sleep(1.0)
    return row


def mode_is_gate(lab: Lab) -> bool:
    return 'fence_mode = "gate"' in (lab.dir / "arbiter.toml").read_text()


def summarize(rows: list[dict]) -> dict:
    out: dict = {"cuts": len(rows), "victims": sorted({r["victim"] for r in rows})}
    for k in ("cut_to_dual_s", "detection_s", "fence_s", "window_s"):
        vals = [r[k] for r in rows]
        out[k] = {"median": round(median(vals), 3), "p95": round(pct(vals, 95), 3),
                  "max": round(max(vals), 3)}
    return out
