"""The /status document and the other bodies built from the arbiter's View, as the API
answers them and the status page renders them (``arbiter.web``). No I/O, no side
effects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from arbiter.config import ClusterConfig
from arbiter.model import ClusterHistory, Pause, Verdict
from arbiter.policy.address_warnings import vip_warnings
from arbiter.policy.cluster_state import cluster_state, overall
from arbiter.policy.liveness import keepalived_state
from arbiter.policy.verdicts import without_view
from arbiter.policy.view_health import failing_views
from arbiter.policy.vrrp import budget_warnings
from arbiter.round.outputs.gate_log import GateWiring
from arbiter.round.outputs.view import View
from arbiter.serialize import iso, node_observation


def verdict(view: View, cluster: ClusterConfig, node: str, vip: str | None,
            now: datetime) -> dict[str, Any]:
    rt = view
    hist: ClusterHistory = view.history.cluster(cluster.name)
    inc = hist.incident
    body: dict[str, Any] = {
        "cluster": cluster.name,
        "node": node,
        "vip": vip,
        "holder": None,
        # the incident that denies this node: the open one, or the one holding it
        "incident": inc.id if inc else (h.incident if (h := hist.hold_of(node)) else None),
        "epoch": hist.epoch,
        "observed_at": iso(rt.snapshot.at) if rt.snapshot else None,
    }
    if view.ha is not None:  # the leader's term, highest seen: a gate ignores lower ones
        body["term"] = view.terms.get(cluster.shard, 0)
    stale = view.staleness(now)
    if stale:
        return {**body, "verdict": Verdict.ABSTAIN.value, "reason": stale}
    assert rt.assessment is not None
    ca = rt.assessment.cluster(cluster.name)
    na = ca.node(node) if ca else None
    if ca is None or na is None:
        return {**body, "verdict": Verdict.ABSTAIN.value, "reason": "node not assessed yet"}
    if vip:
        holder = ca.holder_of(vip)
    else:
        holders = {ca.holder_of(v) for v in cluster.vips}
        holder = holders.pop() if len(holders) == 1 else None
    verdict_, reason = na.for_vip(vip)
    return {**body, "holder": holder, "verdict": verdict_.value, "reason": reason}


def arp_view(iface: str | None, sight: Any) -> dict[str, Any] | None:
    if iface is None:
        return {"interface": None, "answers": {},
                "error": "not configured: no arp_interface (the ARP view needs the arbiter "
                         "on the directors' layer-2 segment)"}
    if sight is None:
        return {"interface": iface, "error": "no round yet", "answers": {}}
    own = dict(sight.owners)
    return {"interface": iface, "error": sight.error,
            "answers": {v: [{"mac": m, "node": own.get(m)} for m in macs]
                        for v, macs in sight.answers}}


def pause_json(p: Pause) -> dict[str, Any]:
    return {"id": p.id, "scope": p.scope, "by": p.by, "reason": p.reason,
            "since": iso(p.started_at), "until": iso(p.until), "summary": p.describe()}


def status(view: View, now: datetime, gates: dict[str, list[GateWiring]] | None = None,
           gate_warnings: dict[str, dict[str, str]] | None = None) -> dict:
    """``gates``: each cluster's gate wiring (GateLog.wiring), and the warnings for
    exclusive clusters whose gates do not ask."""
    rt, config, history = view, view.config, view.history
    gates, gate_warnings = gates or {}, gate_warnings or {}
    last_seen, last_event, gateway_view = view.last_seen, view.last_event, view.gateway_view
    snap, a = rt.snapshot, rt.assessment
    stale = view.staleness(now)
    clusters = []
    for index, c in enumerate(config.clusters):
        hist = history.cluster(c.name)
        ca = a.cluster(c.name) if a else None
        obs = snap.cluster(c.name) if snap else None
        nodes = []
        wiring = {w.node: w for w in gates.get(c.name, [])}
        for n in c.nodes:
            o = obs.node(n.name) if obs else None
            na = ca.node(n.name) if ca else None
            entry: dict[str, Any] = {"name": n.name, "address": n.address, "priority": n.priority}
            if o is not None:
                entry.update(node_observation(o, c.vips))
                # whether it answers, as the survivor rule reads it (issue 28)
                ka, ka_why = keepalived_state(o)
                entry["keepalived_state"] = {"state": ka.value, "why": ka_why}
            entry["last_seen"] = iso(last_seen.get((c.name, n.name)))
            entry["last_event"] = (last_event or {}).get((c.name, n.name))
            entry["verdict"] = na.verdict.value if na else None
            entry["verdict_reason"] = na.reason if na else None
            entry["held"] = n.name in hist.held_nodes
            w = wiring.get(n.name)
            entry["gate"] = None if w is None else {
                "wired": w.wired, "summary": f"gate: {w.summary}",
                "asked_ago_s": w.asked_ago, "verdict": w.verdict}
            # what the track files on this node say now ([clusters] track_files)
            entry["track"] = dict(view.track.get((c.name, n.name), {})) \
                if c.track_files else None
            nodes.append(entry)
        inc = hist.incident
        warnings = list(gate_warnings.get(c.name, {}).values())
        if obs is not None:
            warnings += budget_warnings(c, index, obs, config.arbiter.keepalived_watch_every)
            # a view that keeps failing: the exclusive rule has fallen back (issue 29)
            then = ("exclusive verdicts run on the fallback rule" if c.verdict == "exclusive"
                    else "confirmation waits for confirm_min_span")
            warnings += [f"{w}: {then}" for w in failing_views(c, obs, now)]
            warnings += vip_warnings(c, obs)
        word, why = cluster_state(config, hist, ca, stale or (a.abstain_reason if a else None),
                                  warnings, rt.db_error)
        pause = next((p for p in view.pauses if p.covers(c.name, now)), None)
        clusters.append({
            "name": c.name,
            # a maintenance pause in force: watched, recorded and notified, never fenced
            "paused": None if pause is None else pause_json(pause),
            "state": word,
            "state_reason": why,
            "verdict_mode": c.verdict,
            # keepalived's own view: which exclusive rule is in force, and who is denied
            "keepalived": {
                "view": c.keepalived_view, "track_files": c.track_files,
                "exclusive_rule": None if c.verdict != "exclusive" else (
                    "deny a backup that misses a healthy master's adverts"
                    if obs is None or (why := without_view(c, obs, now)) is None
                    else f"deny every backup while the holder is healthy ({why})"),
                "denials": [{"node": d.node, "vrid": d.vrid, "family": d.family,
                             "since": iso(d.since),
                             "probing_since": iso(d.probe_at)} for d in hist.denials],
                "split_seen": hist.view_split,
            },
            "warnings": warnings,
            "vips": c.vips,
            "gateways": {g: (gateway_view or {}).get(g) for g in config.gateways_for(c)},
            "holders": {v: list(h) for v, h in ca.holders} if ca else {},
            "split_vips": list(ca.split_vips) if ca else [],
            "orphan_vips": list(ca.orphan_vips) if ca else [],
            # the ARP view beside the SSH holders (null: no arp_interface)
            "arp": arp_view(c.arp_interface, obs.arp if obs else None),
            "conflicts": {v: list(m) for v, m in ca.conflicts} if ca else {},
            "split_streak": hist.split_streak,
            "reason": ca.reason if ca else None,
            "incident": None if inc is None else {
                "id": inc.id, "state": inc.state.value, "survivor": inc.survivor,
                "victims": list(inc.victims), "attempts": inc.attempts, "mode": inc.mode.value,
            },
            "fence_mode": c.fence_mode,
            "notes": list(ca.notes) if ca else [],
            "held": [
                {"node": h.node, "incident": h.incident, "survivor": h.survivor,
                 "mode": h.mode.value,
                 "release_streak": dict(hist.release_streaks).get(h.node, 0)}
                for h in hist.held
            ],
            "epoch": hist.epoch,
            "shard": c.shard,
            "nodes": nodes,
        })
    st = rt.stats
    return {
        # all is well, or what needs an operator, in one place
        "overall": overall([(c["name"], c["state"], c["state_reason"]) for c in clusters],
                           (rt.notify or {}).get("dead", 0)),
        "arbiter": {
            "self_check": None if snap is None else {
                "gateways": dict(snap.self_check.gateways),
                "sees_gateway": snap.self_check.sees_gateway,
            },
            "abstaining": a.abstain_reason if a else "no round has completed yet",
            "stale": stale,
            "tilt": {"until": iso(rt.tilt_until), "reason": rt.tilt_reason}
            if rt.tilt_until and now < rt.tilt_until else None,
            "dry_run": config.arbiter.dry_run,
            "load": rt.load.as_json(),
            "interval": config.arbiter.interval,
            "confirm_rounds": config.arbiter.confirm_rounds,
            "last_round": {
                "started_at": iso(st.started_at), "finished_at": iso(st.finished_at),
                "duration_ms": round(st.duration_ms, 1), "count": st.count,
                "overruns": st.overruns,
            },
            "push": {"enabled": rt.push.enabled, "watchers_up": rt.push.watchers_up,
                     "events": rt.push.events, "last": rt.push.last},
            "db_error": rt.db_error,
            "unwritten_fence_records": rt.unwritten,
            "db_file_problem": rt.db_file_problem,
            "last_error": rt.last_error,
            "isolated_incident": history.isolated_incident,
            # [ha]: this arbiter's name, the leader and term of each shard, and whether
            # this one leads it (null without [ha])
            "ha": rt.ha,
            # [notify]: each channel's last result, pending and dead notifications
            "notify": rt.notify,
            # the config file in force and the last reload (refused ones say why)
            "config": rt.config_status,
            "pauses": [pause_json(p) for p in view.pauses if now < p.until],
        },
        "clusters": clusters,
    }
