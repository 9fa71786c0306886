"""Pretty-print the arbiter's API answers for the demo (reads JSON on stdin)."""

import json
import sys


def status(s: dict) -> None:
    a = s["arbiter"]
    lr = a["last_round"]
    print(f"arbiter: sees its gateway: {a['self_check']['sees_gateway']}; "
          f"{lr['count']} rounds so far, last took {lr['duration_ms']} ms")
    for c in s["clusters"]:
        print(f"cluster {c['name']}: {c['state'].upper()} ({c['state_reason']}); "
              f"verdicts {c['verdict_mode']}; holders {c['holders']}")
        for n in c["nodes"]:
            ka = "running" if n["keepalived_running"] else "stopped"
            gate = f"; {n['gate']['summary']}" if n.get("gate") else ""
            print(f"  {n['name']}: {n['health']}, keepalived {ka}, holds {n['holds'] or '-'}, "
                  f"own gateway view {n['gateways']}, verdict {n['verdict']}{gate}")
        for w in c["warnings"]:
            print(f"  WARNING: {w}")


def incident(i: dict) -> None:
    keys = ("id", "kind", "state", "vips", "survivor", "victims", "reason", "opened_at",
            "fenced_at")
    print(json.dumps({k: i[k] for k in keys}, indent=2))
    print("timeline:")
    for e in i["timeline"]:
        print(f"  {e['at'][11:23]}  {e['state']:<8} {e['message']}")
    print("fence attempts:")
    for a in i["fence_attempts"]:
        ok = "ok" if a["ok"] else "FAILED"
        print(f"  {a['node']} {a['step']:<14} {ok:<6} {a['duration_ms']:>6.0f} ms  {a['command']}")


if __name__ == "__main__":
    {"status": status, "incident": incident}[sys.argv[1]](json.load(sys.stdin))
