"""The HA soak's invariants (bench/soak_ha.py), read from what the lab recorded: the
directors' audit of term-carrying commands (arbiter-ssh-wrapper's `audit_file`), the
gates' audit (`ARBITER_GATE_AUDIT`), the shared database (incidents, fence steps,
lease_history), the arbiters' API, and the VIP holders sampled every 100 ms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from tests.lab.labctl import Lab


@dataclass
class Episode:
    """One fault of the HA soak, as it ran and as the checks judge it (here, beside
    the checks, so bench.soak_ha imports it and nothing imports back)."""

    fault: str
    cut: bool
    target: str = ""  # the arbiter the fault is on
    leader: str = ""  # who led before
    term: int = 0  # under which term
    t_fault: float = 0.0  # wall clock (the directors' audit uses it too)
    blocked: list[tuple[float, float]] = field(default_factory=list)  # nobody may act
    samples: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    takeover_s: float | None = None
    split_s: float | None = None  # the longest split, when it overlapped a takeover
    incidents: list[dict] = field(default_factory=list)
    split_bound: float = 10.0  # H8: lease_ttl + SPLIT_MARGIN



DIRECTORS = ("lb1", "lb2")
QUORUM = 2
# From when a majority of arbiters can see a split (and reach the database) to one
# holder: the takeover (lease_ttl + the watch's 20 ms + a round), confirmation (two
# observations; keepalived's view skips confirm_min_span), the fence and its
# verification, with 2 s to spare for a loaded CI machine: 10 s at the default
# lease_ttl of 5 s. README "Timing bounds".
SPLIT_MARGIN = 5.0
_AUDIT = re.compile(r"^(\d+\.?\d*) term (\d+) seen (\d+) (ran|refused): (.*)$")
_GATE = re.compile(r"^(\d+\.?\d*) (?:term (\d+) seen (\d+): (counted|ignored)"
                   r"|act (\w+) term (\d+))$")
_VIEWS = re.compile(r"^(\d+) of (\d+) arbiters see")
FENCE = "kill -TERM"  # the lab's fence_command
ARBITERS = ("arb", "arb2", "arb3")
LEADER_FAULTS = ("leader-kill", "leader-stop", "leader-isolate", "all-restart", "handover")


def status(lab: Lab, host: str) -> dict | None:
    try:
        return lab.api("/status", host)
    except (RuntimeError, ValueError):
        return None


def leader(lab: Lab, up: tuple[str, ...] = ARBITERS) -> tuple[str, int] | None:
    """(the arbiter leading the shard, its term), asking each in turn."""
    for h in up:
        st = status(lab, h)
        sh = ((st or {}).get("arbiter", {}).get("ha") or {}).get("shards", {}).get("default")
        if sh and sh.get("leading"):
            return h, sh["term"]
    return None


class Audit:
    """The directors' audit files, read from where each episode began."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.offsets: dict[str, int] = {}

    def _path(self, host: str, kind: str):  # type: ignore[no-untyped-def]
        return self.lab.dir / host / "log" / ("terms.log" if kind == "terms" else
                                               "gate-audit.log")

    def lines(self, host: str, kind: str) -> list[str]:
        p = self._path(host, kind)
        return p.read_text().splitlines() if p.exists() else []

    def mark(self) -> None:
        for h in DIRECTORS:
            for kind in ("terms", "gate"):
                self.offsets[f"{h}/{kind}"] = len(self.lines(h, kind))

    def new(self, host: str, kind: str) -> list[str]:
        return self.lines(host, kind)[self.offsets.get(f"{host}/{kind}", 0):]


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def spans(samples: list[tuple[float, tuple[str, ...]]]) -> list[tuple[float, float]]:
    """(start, end) of each run of samples with two holders."""
    out, start = [], None
    for t, h in samples:
        if len(h) > 1 and start is None:
            start = t
        elif len(h) <= 1 and start is not None:
            out.append((start, t))
            start = None
    if start is not None and samples:
        out.append((start, samples[-1][0] + 0.1))
    return out


def check(lab: Lab, ep: Episode, audit: Audit, before: int) -> None:  # noqa: C901 (one list)
    v = ep.violations
    incs = lab.sql(f"SELECT id, state, term, reason, decided_at, victims, held_nodes "
                   f"FROM incidents WHERE id > {before} AND kind = 'split_brain' ORDER BY id")
    steps = lab.sql(f"SELECT incident_id, node, step, ok, term, started_at FROM "
                    f"fence_attempts WHERE incident_id > {before} ORDER BY id")
    terms = {r["term"]: r for r in lab.sql(
        "SELECT term, holder, taken_at FROM lease_history WHERE shard = 'default'")}
    ep.incidents = [{k: i[k] for k in ("id", "state", "term", "victims", "held_nodes")}
                    | {"steps": [(s["node"], s["step"], s["ok"], s["term"]) for s in steps
                                 if s["incident_id"] == i["id"]]} for i in incs]

    # H1 at most one fence per episode, under one term: what the directors ran
    fences = [(h, m) for h in DIRECTORS for line in audit.new(h, "terms")
              if (m := _AUDIT.match(line)) and m.group(4) == "ran" and FENCE in m.group(5)]
    if len(fences) > 1:
        v.append(f"H1 {len(fences)} fence commands ran: "
                 + ", ".join(f"{h} term {m.group(2)}" for h, m in fences))
    if len({s["term"] for s in steps if s["step"] == "fence_command"}) > 1:
        v.append("H1 fence steps recorded under several terms")
    # H2 nothing ran on a node under a term lower than one it had seen
    for h in DIRECTORS:
        high, lines = 0, audit.lines(h, "terms")
        n_old = len(lines) - len(audit.new(h, "terms"))
        for k, line in enumerate(lines):
            m = _AUDIT.match(line)
            if m is None:
                continue
            term, seen, what = int(m.group(2)), int(m.group(3)), m.group(4)
            if what == "ran" and (term < seen or term < high) and k >= n_old:
                v.append(f"H2 {h} ran term {term} after seeing {max(seen, high)}: "
                         f"{m.group(5)[:60]}")
            high = max(high, term if what == "ran" else 0, seen)
    # H3 no fence on fewer than quorum fresh views
    for i in incs:
        fenced = any(s["incident_id"] == i["id"] and s["step"] == "fence_command"
                     for s in steps)
        m = _VIEWS.match(i["reason"] or "")
        if fenced and (m is None or int(m.group(1)) < QUORUM):
            v.append(f"H3 incident {i['id']} fenced on: {(i['reason'] or '')[:80]}")
    # H4 every decision and fence step under a term its arbiter held then
    def held(term: int | None, at: str | None) -> bool:
        if term is None or term not in terms or at is None:
            return False  # a record without a term: no [ha] guard ran
        start = _ts(terms[term]["taken_at"]) or 0.0
        nxt = min((_ts(r["taken_at"]) or 0.0 for t, r in terms.items() if t > term),
                  default=float("inf"))
        return start - 0.05 <= (_ts(at) or 0.0) < nxt + 0.05
    for i in incs:
        if i["decided_at"] and not held(i["term"], i["decided_at"]):
            v.append(f"H4 incident {i['id']} decided under term {i['term']} at "
                     f"{i['decided_at']}, outside that term")
    for s in steps:
        if s["term"] is None or not held(s["term"], s["started_at"]):
            v.append(f"H4 fence step {s['step']} on {s['node']} recorded under term "
                     f"{s['term']} at {s['started_at']}, outside that term")
    # H5 opened once, never lost: the leader's API shows every incident the DB has
    if len(incs) > 1:
        v.append(f"H5 {len(incs)} split-brain incidents in one episode")
    who = leader(lab)
    if who is not None:
        shown = {i["id"] for i in lab.incidents("split_brain", host=who[0])}
        lost = [i["id"] for i in incs if i["id"] not in shown]
        if lost:
            v.append(f"H5 incident(s) {lost} in the database, not in {who[0]}'s API")
    # H6 no keepalived left stopped without a hold
    held_nodes = {n for i in lab.sql("SELECT held_nodes FROM incidents WHERE held")
                  for n in (i["held_nodes"] or [])}
    for h in DIRECTORS:
        if not lab.keepalived_running(h) and h not in held_nodes:
            v.append(f"H6 {h}'s keepalived is stopped and not held")
    # H7 no gate acted on a lower term than it had seen
    for h in DIRECTORS:
        high, n_old = 0, len(audit.lines(h, "gate")) - len(audit.new(h, "gate"))
        for k, line in enumerate(audit.lines(h, "gate")):
            m = _GATE.match(line)
            if m is None:
                continue
            if m.group(5):  # an act
                if int(m.group(6)) < high and k >= n_old:
                    v.append(f"H7 {h}'s gate acted ({m.group(5)}) on term {m.group(6)} "
                             f"after seeing {high}")
            else:
                high = max(high, int(m.group(3)),
                           int(m.group(2)) if m.group(4) == "counted" else 0)
    # H8 a split the majority can see ends within its bound of when it can
    for start, end in spans(ep.samples):
        visible = start
        for b0, b1 in ep.blocked:
            if b0 <= visible < b1:
                visible = b1
        if end - visible > ep.split_bound:
            v.append(f"H8 a split lasted {end - visible:.1f}s after the majority could "
                     f"see it (bound {ep.split_bound:g}s)")
    _windows(ep, audit)


def _windows(ep: Episode, audit: Audit) -> None:
    """The takeover: from the fault on the leader to the first announce of a newer
    term on a director (the new leader's first round); the split that overlapped it."""
    if ep.fault not in LEADER_FAULTS:
        return
    firsts = [float(m.group(1)) for h in DIRECTORS for line in audit.new(h, "terms")
              if (m := _AUDIT.match(line)) and m.group(4) == "ran"
              and int(m.group(2)) > ep.term and m.group(5) == "@@announce"]
    if firsts:
        ep.takeover_s = round(min(firsts) - ep.t_fault, 3)
        took = min(firsts)
        overl = [e - s for s, e in spans(ep.samples) if s <= took and e >= ep.t_fault]
        if overl:
            ep.split_s = round(max(overl), 3)
