"""Each cluster's state in one word an operator can act on. Pure.

    ok              nothing to do
    split           a split brain is seen and being confirmed or retried
    fencing         a fence is in flight
    held            a victim is held; automatic release may still free it
    needs-operator  only an operator can end this (see the reason)
    abstaining      the arbiter cannot judge: isolated, TILT or stale observations
    degraded        it works, but something is wrong (a node unhealthy, an orphaned
                    VIP, the database, an exclusive gate that never asks)

The first rule that matches wins, in the order of the table below; the reason says
which rule it was.
"""

from __future__ import annotations

from arbiter.config import Config
from arbiter.model import ClusterHistory, Health, IncidentState
from arbiter.policy.assessment import ClusterAssessment

S = IncidentState


def cluster_state(
    config: Config, history: ClusterHistory, ca: ClusterAssessment | None,
    abstaining: str | None, gate_warnings: list[str], db_error: str | None,
) -> tuple[str, str]:
    """(one word, why)."""
    if abstaining:
        return "abstaining", abstaining
    if ca is None:
        return "abstaining", "not assessed yet"
    inc = history.incident
    a = config.arbiter
    if inc is not None and inc.state is S.FENCING:
        return "fencing", f"incident #{inc.id}: fence attempt {inc.attempts} in flight"
    if inc is not None and ca.split_vips:
        if inc.state is S.FENCED:
            return "needs-operator", (f"incident #{inc.id}: split brain persists although "
                                      "fenced")
        if inc.state is S.FENCE_FAILED and inc.attempts >= a.max_fence_attempts:
            return "needs-operator", (f"incident #{inc.id}: fence failed {inc.attempts} "
                                      "time(s), gave up")
        if "operator attention needed" in ca.reason:
            return "needs-operator", ca.reason
    if ca.split_vips:
        return "split", ca.reason
    stuck = [h for h in history.held if h.operator_only or not a.auto_release]
    if stuck:
        why = ("re-fenced after an automatic release" if stuck[0].operator_only
               else "auto_release is off")
        return "needs-operator", (f"{', '.join(h.node for h in stuck)} held by incident "
                                  f"#{stuck[0].incident} until an operator releases it ({why})")
    if history.held:
        return "held", (f"{', '.join(h.node for h in history.held)} held; released "
                        "automatically once it reaches the survivor and a gateway "
                        f"for {a.release_rounds} rounds")
    if inc is not None and inc.state is S.FENCE_FAILED and inc.attempts >= a.max_fence_attempts:
        return "needs-operator", f"incident #{inc.id}: fence failed, gave up"
    problems = [f"{n.node} {n.health.value}" for n in ca.nodes if n.health is not Health.HEALTHY]
    if ca.orphan_vips:
        problems.append(f"no holder for {', '.join(ca.orphan_vips)}")
    for vip, macs in ca.conflicts:
        problems.append(f"address conflict: {vip} also answered by {', '.join(macs)} "
                        "(no configured node; find that host)")
    if db_error:
        problems.append(f"database: {db_error}")
    problems += gate_warnings
    if problems:
        return "degraded", "; ".join(problems)
    if inc is not None and inc.state is S.WATCHING:
        return "ok", f"incident #{inc.id} watches {', '.join(inc.victims)} after its release"
    return "ok", "one holder per VIP, every node healthy"


# What an operator does about each state (the status page's banner, `arbiter status`).
ADVICE: dict[str, str] = {
    "ok": "Nothing to do.",
    "split": "The arbiter is confirming the split brain and will fence within seconds. "
             "Watch; act only if it turns into needs-operator.",
    "fencing": "A fence is running. Wait for its result.",
    "held": "A fenced node is held out of service. It is released automatically once the "
            "split brain has been over long enough, or release it yourself: "
            "arbiter release ID --reason TEXT -c FILE.",
    "needs-operator": "Only you can end this: read the reason and the incident's timeline, "
                      "fix the cause (VRRP traffic, the node), then release the node.",
    "abstaining": "The arbiter cannot judge and fences nothing: gates fall back to their "
                  "gateway ping. Check the arbiter's own network, its clock and its rounds.",
    "degraded": "It works, but something is wrong: read the reason and fix it before the "
                "next failure needs the arbiter.",
}


WORST_FIRST = ("needs-operator", "abstaining", "split", "fencing", "held", "degraded", "ok")
# states only an operator ends, or that they must look at
NEEDS_OPERATOR = frozenset({"needs-operator", "held", "degraded", "abstaining"})


def overall(clusters: list[tuple[str, str, str]], dead_notifications: int) -> dict:
    """The whole arbiter in one word (the worst cluster's), whether an operator is
    needed, and why. ``clusters``: (name, state, reason). A dead notification needs
    an operator too: they would not hear of the next incident."""
    words = [w for _, w, _ in clusters]
    word = next((w for w in WORST_FIRST if w in words), "ok")
    reasons = [f"{name}: {w}: {why}" for name, w, why in clusters if w != "ok"]
    if dead_notifications:
        reasons.append(f"{dead_notifications} notification(s) given up (arbiter.notify)")
    return {"state": word,
            "needs_operator": bool(dead_notifications) or any(w in NEEDS_OPERATOR
                                                               for w in words),
            "reasons": reasons, "advice": ADVICE[word]}


def arbiter_problems(status: dict) -> list[str]:
    """What is wrong with the arbiter itself, in words, from /status (the page's
    banner and `arbiter status` show the same list)."""
    a = status["arbiter"]
    out = []
    if a.get("abstaining"):
        out.append(f"Abstaining: {a['abstaining']}")
    if a.get("tilt"):
        out.append(f"TILT: {a['tilt']['reason']} (until {a['tilt']['until']})")
    if a.get("db_error"):
        out.append(f"Database: {a['db_error']}")
    if a.get("db_file_problem"):
        out.append(f"Database file: {a['db_file_problem']}")
    n = a.get("notify") or {}
    if n.get("dead"):
        out.append(f"Notifications: {n['dead']} given up after every retry (/status "
                   "arbiter.notify.last_dead; `arbiter notify test`)")
    if n.get("pending") and any((c or {}).get("last_error") for c in
                                (n.get("channels") or {}).values()):
        out.append(f"Notifications: {n['pending']} pending, a channel is failing")
    if n.get("error"):
        out.append(f"Notifications: {n['error']}")
    if a.get("last_error"):
        out.append(f"Last round failed: {a['last_error']}")
    if (a.get("load") or {}).get("warning"):
        out.append(f"Load: {a['load']['warning']}")
    return out
