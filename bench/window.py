"""The split-brain window in the lab, over repeated VRRP cuts, per detection/fence mode:

- poll: scheduled rounds only (interval 1 s, confirm_rounds 2, push off);
- push: `ip monitor` over SSH wakes a round at once; confirm_after 0.5 s; SSH fence;
- garp: the ARP view (arp_interface on the lab bridge), push off: the new holder's
  gratuitous ARP wakes a round; confirm_after 0.5 s; SSH fence;
- gate: push detection as above, but fence_mode "gate": no SSH, the victim's
  arbiter-gate puts it into FAULT;
- seed: no arbiter; the seeds' split-brain ping script, run every 2 s on the master
  the way seed 001 deploys it;
- push6 and ndp: push and garp on an IPv6-only lab (`lab up --ipv6`: a VRRPv3
  instance for fd77:77:77::100, the arbiter reaching the directors over IPv6); ndp is
  the neighbour view, woken by the new holder's unsolicited neighbour advertisement.

Times come from `ip -ts -o monitor address` inside the directors' namespaces (kernel
event times), and from the incident the arbiter recorded:
- detection: incident opened - second holder's VIP added;
- fence: victim's VIP deleted - incident opened;
- window: victim's VIP deleted - second holder's VIP added.

    python -m bench.window --cuts 20 --modes poll push garp gate seed [--json out.json]
    python -m bench.window --cuts 20 --modes push push6 garp ndp   # IPv6 beside IPv4
    python -m bench.window --modes failover --failover-reps 5   # exclusive verdicts:
                                                     # gain and cost (bench/failover.py)
    python -m bench.window --modes failover --failover-advert-int 0.5  # and VRRPv3 at 0.5 s
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys

from bench.common import write_json
from bench.cuts import one_cut, summarize
from tests.lab.labctl import VIP1, VIP6, AddrEvents, Lab, steady, wait_for

MASTER_DOWN = 3 * 1.0 + (256 - 90) / 256  # lb2: 3 x advert_int + skew
IPV6_MODES = {"push6": "push", "ndp": "garp"}  # an IPv6 lab, configured as this mode


def configure(lab: Lab, mode: str) -> None:
    lab.set_arbiter(resolve_rounds=2, auto_release=False)
    if mode == "poll":
        lab.set_arbiter(push=False, interval=1.0, confirm_rounds=2)
    elif mode == "garp":
        lab.set_arbiter(push=False, interval=1.0, confirm_after=0.5)
        lab.set_cluster(arp_interface="eth0")
    else:
        lab.set_arbiter(push=True, interval=1.0, confirm_after=0.5)
    if mode == "gate":  # reactive verdicts: this mode measures how a split is ended
        lab.set_cluster(fence_mode="gate", verdict="reactive")


def run_mode(mode: str, cuts: int) -> dict:
    ipv6 = mode in IPV6_MODES
    vip = VIP6 if ipv6 else VIP1
    lab = Lab("active-backup+gate" if mode == "gate" else "active-backup",
              up=("--ipv6",) if ipv6 else ())
    ev = None
    try:
        configure(lab, IPV6_MODES.get(mode, mode))
        steady(lab, {vip: ["lb1"]})
        ev = AddrEvents(lab, vip)
        rows, last = [], 0
        for i in range(cuts):
            try:
                r = one_cut(lab, ev, last, vip)
            except Exception:
                lab.dump_logs()
                raise
            last = r["incident"]
            rows.append(r)
            print(f"{mode} cut {i + 1}/{cuts}: {r}", flush=True)
        return summarize(rows)
    finally:
        if ev:
            ev.close()
        lab.down()


SEED_SCRIPT = """
# seed 001's split-brain script, run on the MASTER (lb1) every 2 s
while true; do
  ping -c 4 -i 0.5 -w 2 192.168.77.12 >/dev/null 2>&1
  if [ $? -ne 0 ]; then
    ssh 192.168.77.21 ping -c 4 -i 0.5 -w 2 -I 192.168.77.21 192.168.77.12
    if [ $? -eq 0 ]; then
      kill -TERM $(cat /run/keepalived.pid)   # systemctl stop keepalived
    fi
  fi
  sleep 2
done
"""


def run_seed(observe: float) -> dict:
    lab = Lab("active-backup")
    script = None
    try:
        wait_for(lambda: lab.holders()[VIP1] == ["lb1"], 20, "election")
        script = subprocess.Popen(["bash", str(lab_path()), "exec", "lb1", "sh", "-c",
                                   SEED_SCRIPT], env=lab.env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        ev = AddrEvents(lab)
        lab.fault("vrrp-cut")
        _, t_add = ev.wait("add", 15, host="lb2")
        try:
            _, t_del = ev.wait("del", observe)
            resolved = round(t_del - t_add, 3)
        except TimeoutError:
            resolved = None
        ev.close()
        both = lab.keepalived_running("lb1") and lab.keepalived_running("lb2")
        return {"observed_s": observe, "window_s": resolved,
                "outcome": ("split brain never resolved: ping to the peer succeeds, so the "
                            "script never acts" if resolved is None else "resolved"),
                "holders_at_end": lab.holders()[VIP1], "both_keepalived_running": both}
    finally:
        if script is not None:
            script.kill()
        lab.down()


def lab_path():  # type: ignore[no-untyped-def]
    from tests.lab.labctl import LAB

    return LAB


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuts", type=int, default=20)
    ap.add_argument("--modes", nargs="+",
                    default=["poll", "push", "garp", "gate", "seed", "push6", "ndp"])
    ap.add_argument("--seed-observe", type=float, default=20.0)
    ap.add_argument("--failover-reps", type=int, default=3,
                    help="mode failover (bench/failover.py): runs per setup and fault, "
                    "and reactive cuts")
    ap.add_argument("--failover-observe", type=float, default=20.0,
                    help="mode failover: seconds each fault and the exclusive cut are watched")
    ap.add_argument("--failover-faults", nargs="+", default=None)
    ap.add_argument("--failover-setups", nargs="+", default=None,
                    help="mode failover: plain, hold (exclusive before issue 21), exclusive")
    ap.add_argument("--failover-advert-int", type=float, default=None,
                    help="mode failover: also run plain and exclusive on a VRRPv3 lab with "
                    "this advert_int (e.g. 0.5)")
    ap.add_argument("--json")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/window.py needs root (the lab)", file=sys.stderr)
        return 2
    out: dict = {"master_down_interval_s": round(MASTER_DOWN, 3)}
    for m in a.modes:
        with contextlib.suppress(KeyboardInterrupt):
            if m == "failover":
                from bench import failover

                faults = tuple(a.failover_faults or failover.FAULTS)
                out[m] = failover.run(a.failover_reps, a.failover_observe, faults,
                                      setups=tuple(a.failover_setups or failover.SETUPS))
                if a.failover_advert_int:
                    ai = f"{a.failover_advert_int:g}"
                    out[f"{m}-advert-int-{ai}"] = failover.run(
                        a.failover_reps, a.failover_observe, faults,
                        up=("--advert-int", ai, "--vrrp-version", "3"),
                        setups=("plain", "exclusive"))
            else:
                out[m] = run_seed(a.seed_observe) if m == "seed" else run_mode(m, a.cuts)
            print(f"{m}: {out[m]}", flush=True)
    write_json(a.json, {"window": out})
    import json

    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
