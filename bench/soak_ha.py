"""The HA soak (issue 23): several arbiters on the lab under seeded random faults.

`python -m bench.soak --ha 3 --faults N --seed S` runs on `lab up --gate --ha 3`: three
arbiter hosts (arb prefers the shard, so it leads when it is up), a PostgreSQL host,
and the directors with arbiter-ssh-wrapper as the forced command and arbiter-gate
asking all three arbiters. Verdicts are reactive, so a VRRP cut makes a real split
brain for the arbiters to fence. Each fault comes alone or with a VRRP cut at a random
moment around it; it is watched, healed, checked, and the site settled again (holds
released through the leader's API).

Invariants (bench/soak_checks.py), on every fault:
  H1 at most one fence per episode, by exactly one term (the directors' own audit:
     the fence commands that ran);
  H2 no command ran on a node under a term lower than one the node had seen;
  H3 no fence decided on fewer than `quorum` fresh views;
  H4 every decision and fence step recorded under a term its arbiter held then
     (lease_history: who took each term, and when);
  H5 every incident opened once, and never lost across takeovers;
  H6 no keepalived left stopped without a hold;
  H7 no gate acted on a term lower than one it had seen (the gates' audit);
  H8 a split the majority can see ends within lease_ttl + 5 s (from when it can see it).

Takeover windows: from the fault on the leader to the first command the new leader's
first round sent (its term's announce, in the directors' audit), and, where a split
overlapped the takeover, from the split's start to one holder.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench.common import median, pct
from bench.soak_checks import ARBITERS, SPLIT_MARGIN, Audit, Episode, check, leader
from tests.lab.labctl import VIP1, Lab, wait_for

FAULTS = ("leader-kill", "leader-stop", "follower-kill", "db-stop", "db-freeze",
          "directors-cut", "db-cut", "leader-isolate", "all-restart", "handover")


class Sampler:
    """VIP holders every 100 ms on a thread of its own (wall clock), while faults are
    injected; bounded by ``limit`` seconds."""

    def __init__(self, lab: Lab, ep: Episode, limit: float = 120.0):
        self.lab, self.ep, self.limit = lab, ep, limit
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        end = time.monotonic() + self.limit
        while not self.stop.is_set() and time.monotonic() < end:
            with contextlib.suppress(Exception):  # a namespace busy for a moment
                self.ep.samples.append((time.time(), tuple(self.lab.holders()[VIP1])))
            self.stop.wait(0.1)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def running(lab: Lab, host: str) -> bool:
    pid = lab.dir / host / "arbiter.pid"
    return pid.exists()


def start(lab: Lab, host: str) -> None:
    if not running(lab, host):
        lab.start_arbiter(host)


def dual_seen(ep: Episode) -> bool:
    return any(len(h) > 1 for _, h in ep.samples[-3:])


def inject(lab: Lab, ep: Episode, rng: random.Random, ttl: float) -> None:
    """The fault, and the VRRP cut at a random moment around it, then the heals."""
    f = ep.fault
    followers = [h for h in ARBITERS if h != ep.leader]
    cut_at = rng.uniform(-2.0, 3.0) if ep.cut else None  # seconds after the fault
    if cut_at is not None and cut_at < 0:
        lab.fault("vrrp-cut")
        time.sleep(-cut_at)

    def maybe_cut() -> None:
        nonlocal cut_at
        if cut_at is not None and cut_at >= 0 and time.time() - ep.t_fault >= cut_at:
            lab.fault("vrrp-cut")
            cut_at = None

    def hold(seconds: float) -> None:
        end = time.time() + seconds
        while time.time() < end:
            maybe_cut()
            time.sleep(0.05)

    if f == "handover":
        # arb (which prefers the shard) dies; another leads; during the split that
        # follows, arb comes back and asks for the shard: a handover under a split
        ep.target = "arb"
        lab.kill_arbiter("arb")
        wait_for(lambda: leader(lab, ("arb2", "arb3")), ttl + 10, "a follower to lead")
        ep.leader, ep.term = leader(lab, ("arb2", "arb3")) or ("", 0)
        lab.fault("vrrp-cut")
        cut_at = None
        wait_for(lambda: dual_seen(ep), 15, "the split")
        time.sleep(rng.uniform(0.0, 1.5))
        ep.t_fault = time.time()
        lab.start_arbiter("arb")
        hold(ttl + 6)
    else:
        ep.t_fault = time.time()
        if f == "leader-kill":
            ep.target = ep.leader
            lab.kill_arbiter(ep.leader)
            hold(ttl + 6)
            lab.start_arbiter(ep.leader)
        elif f == "leader-stop":
            ep.target = ep.leader
            lab.signal_arbiter("pause", ep.leader)
            hold(rng.uniform(0.5, 2.0) * ttl)
            lab.signal_arbiter("resume", ep.leader)
            hold(4)
        elif f == "follower-kill":
            ep.target = rng.choice(followers)
            lab.kill_arbiter(ep.target)
            hold(6)
            lab.start_arbiter(ep.target)
        elif f in ("db-stop", "db-freeze"):
            hold(rng.uniform(2.0, 8.0))
            lab.fault(f)
            t0 = time.time()
            hold(rng.uniform(2.0, 8.0))
            lab.heal(f)
            ep.blocked.append((t0, time.time()))
        elif f in ("directors-cut", "db-cut"):
            ep.target = rng.choice(ARBITERS)
            targets = ("lb1", "lb2") if f == "directors-cut" else ("db",)
            for t in targets:
                lab.fault("arbiter-cut", ep.target, t)
            hold(ttl + 6)
            for t in targets:
                lab.heal("arbiter-cut", ep.target, t)
        elif f == "leader-isolate":
            ep.target = ep.leader
            lab.fault("arbiter-isolate", ep.leader)
            hold(ttl + 6)
            lab.heal("arbiter-isolate", ep.leader)
        elif f == "all-restart":
            ep.target = "all"
            for h in ARBITERS:
                lab.kill_arbiter(h)
            starts = [threading.Thread(target=lab.start_arbiter, args=(h,)) for h in ARBITERS]
            for t in starts:
                t.start()
            for t in starts:
                t.join(60)
            ep.blocked.append((ep.t_fault, time.time()))
            hold(ttl + 4)
    hold(4.0)  # the fault healed: the arbiters settle
    maybe_cut()
    lab.heal("vrrp-cut")
    time.sleep(4.0)  # VRRP settles: lb1 preempts


def settle(lab: Lab, ttl: float) -> None:
    """Every arbiter up, arb leading, the split healed, holds released through the
    leader's API, lb1 alone with the VIP, no open incident."""
    for h in ARBITERS:
        start(lab, h)
    seen: list[str] = []

    def ok() -> bool:
        who = leader(lab)
        if who is None:
            seen[:] = ["no leader"]
            return False
        host = who[0]
        for i in lab.incidents(host=host):
            if i["held_nodes"]:
                lab.post(f"/incidents/{i['id']}/release", {"reason": "soak"},
                         lab.token("ops"), host=host)
        for h in ("lb1", "lb2"):
            if not lab.keepalived_running(h):
                lab.heal("keepalived-kill", h)
        (web,) = lab.api("/status", host)["clusters"]
        seen[:] = [f"leader {who}, holders {lab.holders()[VIP1]}, {web['state']}: "
                   f"{web['state_reason']}; incident {web['incident']}"]
        return (host == "arb" and lab.holders()[VIP1] == ["lb1"] and not web["held"]
                and web["incident"] is None
                and all(n["health"] == "healthy" for n in web["nodes"]))

    try:
        wait_for(ok, 90 + 3 * ttl, "the steady state", every=0.5)
    except AssertionError as exc:
        why = f"{exc}; last seen: {seen[0] if seen else '-'}"
        print(f"settle: {why}", flush=True)  # on stdout: CI shows it
        raise AssertionError(why) from None


def run(lab: Lab, faults: int, seed: int, ttl: float, report,  # type: ignore[no-untyped-def]
        kinds: tuple[str, ...] = FAULTS) -> list[Episode]:
    rng = random.Random(seed)
    episodes: list[Episode] = []
    audit = Audit(lab)
    settle(lab, ttl)
    for n in range(faults):
        fault = rng.choice(kinds)
        ep = Episode(fault, cut=fault == "handover" or rng.random() < 0.5,
                     split_bound=ttl + SPLIT_MARGIN)
        ep.leader, ep.term = leader(lab) or ("", 0)
        before = max((i["id"] for i in lab.incidents(host=ep.leader)), default=0)
        audit.mark()
        sampler = Sampler(lab, ep)
        try:
            inject(lab, ep, rng, ttl)
        finally:
            sampler.close()
        check(lab, ep, audit, before)
        episodes.append(ep)
        extra = f" takeover {ep.takeover_s:.2f}s" if ep.takeover_s is not None else ""
        print(f"{n + 1:4d} {fault:15s} {'cut' if ep.cut else '   '} "
              f"{'ok' if not ep.violations else ep.violations}{extra}", flush=True)
        report(episodes)
        if n + 1 < faults:  # the last fault needs no steady state after it
            settle(lab, ttl)
    return episodes


def summary(episodes: list[Episode]) -> dict:
    def dist(xs: list[float]) -> dict | None:
        return {"n": len(xs), "median": round(median(xs), 2), "p95": round(pct(xs, 95), 2),
                "max": round(max(xs), 2)} if xs else None

    return {
        "by_fault": dict(Counter(f"{e.fault}{'+cut' if e.cut else ''}" for e in episodes)),
        "violations": dict(Counter(v.split()[0] for e in episodes for v in e.violations)),
        "takeover_s": dist([e.takeover_s for e in episodes if e.takeover_s is not None]),
        "split_during_takeover_s": dist([e.split_s for e in episodes
                                         if e.split_s is not None]),
        "episodes": [{"fault": e.fault, "cut": e.cut, "target": e.target,
                      "at": datetime.fromtimestamp(e.t_fault, UTC).isoformat(timespec="seconds"),
                      "leader": e.leader, "term": e.term, "takeover_s": e.takeover_s,
                      "split_s": e.split_s, "violations": e.violations,
                      **({"incidents": e.incidents} if e.violations else {})}
                     for e in episodes],
    }


def main(faults: int, seed: int, json_path: str | None, ha: int,
         lease_ttl: float | None, renew_every: float | None,
         only: str | None = None) -> int:
    """`python -m bench.soak --ha 3 ...`: the lab up, the soak, the report; exit 1 on
    any violation."""
    import json
    import sys

    from bench.common import write_json

    if ha != 3:
        raise SystemExit("--ha: the HA soak runs three arbiters (--ha 3)")
    kinds = tuple(only.split(",")) if only else FAULTS
    bad = [k for k in kinds if k not in FAULTS]
    if bad:
        raise SystemExit(f"--only: unknown fault(s) {', '.join(bad)}; "
                         f"choose from {', '.join(FAULTS)}")
    lab = Lab("active-backup+gate+ha3")
    started = time.monotonic()
    episodes: list[Episode] = []
    ha_over = {k: v for k, v in (("lease_ttl", lease_ttl), ("renew_every", renew_every))
               if v is not None}
    ttl = lease_ttl or 5.0

    def report(eps: list[Episode]) -> dict:
        out = {"seed": seed, "faults": len(eps), "ha": {"lease_ttl": ttl, **ha_over},
               "seconds": round(time.monotonic() - started), **summary(eps)}
        write_json(json_path, out)
        return out

    try:
        lab.set_cluster(verdict="reactive", track_files=False)
        lab.set_arbiter(auto_release=False, fence_retry_after=2.0)
        if ha_over:
            lab.set_ha(**ha_over)
        lab.set_ha("arb", prefer=["default"])  # arb leads whenever it is up
        wait_for(lambda: lab.holders()[VIP1] == ["lb1"], 20, "keepalived to elect lb1")
        lab.start_arbiter("arb")
        wait_for(lambda: leader(lab, ("arb",)), 15, "arb to lead")
        for h in ("arb2", "arb3"):
            lab.start_arbiter(h)
        episodes = run(lab, faults, seed, ttl, report, kinds)
    except KeyboardInterrupt:
        print(f"stopped after {len(episodes)} faults", file=sys.stderr)
    finally:
        logs = {h: lab.arbiter_log(h) for h in ARBITERS}
        lab.down()
    out = report(episodes)
    print(json.dumps({k: v for k, v in out.items() if k != "episodes"}, indent=2))
    kept = Path(tempfile.mkdtemp(prefix="soak-ha-logs-"))
    for h, text in logs.items():
        (kept / f"{h}.log").write_text(text)
    if out["violations"]:
        bad = [dict(e, n=n + 1) for n, e in enumerate(out["episodes"]) if e["violations"]]
        print(json.dumps(bad, indent=1))
        for h, text in logs.items():
            print(f"--- {h}'s log, last 4000 characters\n{text[-4000:]}")
    print(f"the arbiters' whole logs (episodes carry their time, 'at'): {kept}")
    return 1 if out["violations"] else 0
