"""The arbitration policy: pure functions, no I/O, no clock.

``assess(config, snapshot, history, now)`` looks at one immutable snapshot and
the memory of earlier rounds, and returns what is true now, what each node's
verdict is, and whether a fence is due, each with a readable reason.

Safety rules that hold for every input (see tests/unit/test_invariants.py):
- never fence every node of a cluster;
- never fence while abstaining (arbiter isolated, or in TILT);
- never fence the only node that still sees a gateway;
- never fence before ``confirm_rounds`` consecutive rounds of split brain;
- at most one fence in flight per cluster, and never twice for one incident
  that is already fenced.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from arbiter.config import ClusterConfig, Config
from arbiter.model import (
    Assessment,
    ClusterAssessment,
    ClusterHistory,
    ClusterObservation,
    FenceMethod,
    FenceMode,
    FenceOrder,
    Health,
    History,
    Hold,
    IncidentState,
    NodeAssessment,
    NodeObservation,
    OpenIncident,
    Snapshot,
    Verdict,
    VictimAction,
)

# Incident states from which a (new or retried) fence may be ordered.
_FENCEABLE = (IncidentState.OPEN, IncidentState.FENCE_FAILED)


def assess(config: Config, snapshot: Snapshot, history: History, now: datetime) -> Assessment:
    abstain_reason = _abstain_reason(snapshot)
    clusters = []
    for cluster in config.clusters:
        obs = snapshot.cluster(cluster.name) or ClusterObservation(cluster.name, ())
        clusters.append(
            assess_cluster(config, cluster, obs, history.cluster(cluster.name), abstain_reason, now)
        )
    isolated = not snapshot.self_check.sees_gateway
    return Assessment(
        at=now,
        abstain_reason=abstain_reason,
        clusters=tuple(clusters),
        open_isolated=isolated and history.isolated_incident is None,
        resolve_isolated=not isolated and history.isolated_incident is not None,
    )


def _abstain_reason(snapshot: Snapshot) -> str | None:
    sc = snapshot.self_check
    if not sc.sees_gateway:
        gws = ", ".join(g for g, _ in sc.gateways) or "none configured"
        return f"arbiter isolated: none of its gateways answers ICMP ({gws})"
    if sc.tilt_reason:
        return f"TILT: {sc.tilt_reason}"
    return None


def holders_by_vip(cluster: ClusterConfig, obs: ClusterObservation) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for vip in cluster.vips:
        out[vip] = tuple(sorted(n.node for n in obs.nodes if vip in n.holds(cluster.vips)))
    return out


def assess_cluster(
    config: Config,
    cluster: ClusterConfig,
    obs: ClusterObservation,
    hist: ClusterHistory,
    abstain_reason: str | None,
    now: datetime,
) -> ClusterAssessment:
    holders = holders_by_vip(cluster, obs)
    split_vips = tuple(v for v, h in holders.items() if len(h) >= 2)
    any_healthy = any(n.health is Health.HEALTHY for n in obs.nodes)
    orphan_vips = tuple(v for v, h in holders.items() if not h and any_healthy)
    notes: list[str] = []

    nxt = hist
    open_split = resolve_split = False
    fence: FenceOrder | None = None
    reason: str

    nxt, gate_outcome = _gate_progress(config, cluster, obs, nxt, now)

    # --- split-brain bookkeeping -------------------------------------------
    if split_vips and abstain_reason is None:
        streak = hist.split_streak + 1
        since = hist.split_since if hist.split_streak > 0 and hist.split_since else now
        if nxt.incident is not None and nxt.incident.released:
            # Split brain after a release is a new incident (with its own fence), not
            # the old one that must never be fenced twice.
            resolve_split = True
            nxt = nxt.with_(incident=None)
            streak, since = 1, now
        nxt = nxt.with_(split_streak=streak, clean_streak=0, split_since=since)
        if nxt.incident is None:
            open_split = True
            nxt = nxt.with_(incident=OpenIncident(id=None, state=IncidentState.OPEN))
        progress = (f"round {streak} of {config.arbiter.confirm_rounds}"
                    if config.arbiter.confirm_after is None else f"observation {streak}")
        reason = (
            f"split brain on {', '.join(split_vips)} "
            f"({'; '.join(f'{v} held by ' + ' and '.join(holders[v]) for v in split_vips)}), "
            f"{progress}"
        )
    elif split_vips:
        # Evidence gathered while we may be the isolated one is not evidence: the
        # clock of confirm_after starts again too.
        nxt = nxt.with_(split_streak=0, clean_streak=0, split_since=None)
        reason = f"split brain seen on {', '.join(split_vips)} but {abstain_reason}"
    else:
        nxt = nxt.with_(split_streak=0, split_since=None, clean_streak=hist.clean_streak + 1)
        reason = "no split brain"
        inc = nxt.incident
        if inc is not None and inc.state is not IncidentState.FENCING:
            if nxt.clean_streak >= config.arbiter.resolve_rounds:
                resolve_split = True
                nxt = nxt.with_(incident=None)
                reason = f"split brain gone for {nxt.clean_streak} rounds: resolved"
            else:
                reason = (
                    f"split brain gone, {nxt.clean_streak} of "
                    f"{config.arbiter.resolve_rounds} clean rounds before resolving"
                )
        # Only an uncontested round teaches us who the incumbent is.
        if abstain_reason is None:
            inc_map = dict(hist.incumbents)
            for vip, h in holders.items():
                if len(h) == 1:
                    inc_map[vip] = h[0]
            nxt = nxt.with_(incumbents=tuple(sorted(inc_map.items())))

    # --- fence decision ----------------------------------------------------
    if split_vips and abstain_reason is None:
        fence, why = _maybe_fence(config, cluster, obs, nxt, split_vips, holders, now)
        if why:
            reason = f"{reason}; {why}"
        if fence is not None:
            held_by = nxt.incident
            assert held_by is not None
            new_state = IncidentState.DECIDED if fence.dry_run else IncidentState.FENCING
            nxt = nxt.with_(
                incident=replace(
                    held_by,
                    state=new_state,
                    survivor=fence.survivor,
                    victims=tuple(v.node for v in fence.victims),
                    attempts=held_by.attempts + (0 if fence.dry_run else 1),
                    last_attempt_at=now if not fence.dry_run else held_by.last_attempt_at,
                    mode=fence.mode,
                ),
            )

    # --- orphaned VIPs -----------------------------------------------------
    open_orphan = resolve_orphan = False
    if orphan_vips and abstain_reason is None:
        nxt = nxt.with_(orphan_streak=hist.orphan_streak + 1)
        if nxt.orphan_streak >= config.arbiter.confirm_rounds and hist.orphan_incident is None:
            open_orphan = True
        notes.append(f"orphaned VIP(s) {', '.join(orphan_vips)}: held by no node")
    elif not orphan_vips:
        nxt = nxt.with_(orphan_streak=0)
        resolve_orphan = hist.orphan_incident is not None
        if resolve_orphan:
            nxt = nxt.with_(orphan_incident=None)

    releases: tuple[tuple[Hold, str], ...] = ()
    if abstain_reason is None and not split_vips:
        nxt, releases, rel_notes = _auto_release(config, cluster, obs, nxt, now)
        notes.extend(rel_notes)

    nodes = tuple(
        _node_verdict(config, cluster, obs.node(n.name), nxt, abstain_reason)
        for n in cluster.nodes
    )
    verdicts = tuple((n.node, n.verdict.value) for n in nodes)
    epoch_changed = verdicts != hist.verdicts
    nxt = nxt.with_(verdicts=verdicts, epoch=hist.epoch + (1 if epoch_changed else 0))
    return ClusterAssessment(
        cluster=cluster.name,
        nodes=nodes,
        holders=tuple(holders.items()),
        split_vips=split_vips,
        orphan_vips=orphan_vips,
        reason=reason,
        next_history=nxt,
        fence=fence,
        open_split=open_split,
        resolve_split=resolve_split,
        open_orphan=open_orphan,
        resolve_orphan=resolve_orphan,
        epoch_changed=epoch_changed,
        notes=tuple(notes),
        gate_outcome=gate_outcome,
        releases=releases,
    )


def _gate_progress(
    config: Config, cluster: ClusterConfig, obs: ClusterObservation, hist: ClusterHistory,
    now: datetime,
) -> tuple[ClusterHistory, tuple[bool, str] | None]:
    """Gate mode has no fence command to wait for: the fence is done when the
    victims are seen without the VIPs, and failed when they keep them too long."""
    inc = hist.incident
    if inc is None or inc.mode is not FenceMode.GATE or inc.state is not IncidentState.FENCING:
        return hist, None
    still = [v for v in inc.victims
             if (o := obs.node(v)) is not None and o.holds(cluster.vips)]
    unknown = [v for v in inc.victims if (o := obs.node(v)) is None or o.addresses is None]
    if not still and not unknown:
        held = hist.held + tuple(
            Hold(v, inc.id or 0, inc.survivor or "", FenceMode.GATE, False)
            for v in inc.victims if v not in hist.held_nodes
        )
        msg = f"{', '.join(inc.victims)} dropped the VIP(s) after the gate denied them"
        return hist.with_(incident=replace(inc, state=IncidentState.FENCED),
                          held=held), (True, msg)
    waited = (now - inc.last_attempt_at).total_seconds() if inc.last_attempt_at else 0.0
    if waited > config.arbiter.fence_verify_timeout:
        msg = (f"{', '.join(still or unknown)} still hold(s) the VIP {waited:.1f}s after the "
               "gate denied it: is arbiter-gate wired into its keepalived?")
        return hist.with_(incident=replace(inc, state=IncidentState.FENCE_FAILED,
                                           last_attempt_at=now)), (False, msg)
    return hist, None


def _auto_release(
    config: Config, cluster: ClusterConfig, obs: ClusterObservation, hist: ClusterHistory,
    now: datetime,
) -> tuple[ClusterHistory, tuple[tuple[Hold, str], ...], list[str]]:
    """A held victim is healed when, for release_rounds rounds in a row, it has
    reached the survivor and a gateway again from its own vantage."""
    a = config.arbiter
    streaks = dict(hist.release_streaks)
    released_at = dict(hist.auto_released_at)
    releases: list[tuple[Hold, str]] = []
    notes: list[str] = []
    keep: list[Hold] = []
    for h in hist.held:
        o = obs.node(h.node)
        surv = cluster.node(h.survivor)
        healed = bool(
            o is not None and o.ssh_ok and o.gateways_seen > 0 and surv is not None
            and dict(o.peers).get(surv.address, False)
        )
        streaks[h.node] = streaks.get(h.node, 0) + 1 if healed else 0
        if streaks[h.node] < a.release_rounds or not a.auto_release:
            keep.append(h)
            continue
        last = released_at.get(h.node)
        if last is not None and (now - last).total_seconds() < a.release_cooldown:
            notes.append(
                f"{h.node} looks healed, but it was released automatically "
                f"{(now - last).total_seconds():.0f}s ago and split again: waiting for an operator"
            )
            keep.append(h)
            continue
        why = (f"{h.node} reached {h.survivor} and its gateway for {streaks[h.node]} rounds "
               "in a row: released automatically")
        releases.append((h, why))
        released_at[h.node] = now
        streaks.pop(h.node)
    inc = hist.incident
    if inc is not None and any(h.incident == inc.id for h, _ in releases):
        inc = replace(inc, released=True)
    return (
        hist.with_(incident=inc, held=tuple(keep),
                   release_streaks=tuple(sorted(streaks.items())),
                   auto_released_at=tuple(sorted(released_at.items()))),
        tuple(releases),
        notes,
    )


def survivor_key(
    node: NodeObservation, cfg_priority: int, incumbent_of: int
) -> tuple[bool, bool, int, int, int]:
    """Higher sorts first. Name is the last tie-break and is applied by the caller."""
    return (
        node.reachable,
        node.keepalived_running is True,
        node.gateways_seen,
        incumbent_of,
        cfg_priority,
    )


RULES = (
    "reachable by the arbiter",
    "keepalived running",
    "sees more of its gateways",
    "incumbent (held the VIPs alone before the split)",
    "higher priority",
)


@dataclass(frozen=True, slots=True)
class Ranked:
    name: str
    key: tuple[bool, bool, int, int, int]
    why: str


def rank_candidates(
    cluster: ClusterConfig,
    obs: ClusterObservation,
    hist: ClusterHistory,
    candidates: list[str],
    split_vips: tuple[str, ...],
) -> list[Ranked]:
    """Order candidates best-first by the survivor rule; each with its facts."""
    rows = []
    for name in candidates:
        o = obs.node(name)
        assert o is not None
        cfg = cluster.node(name)
        prio = cfg.priority if cfg else 0
        inc = sum(1 for v in split_vips if hist.incumbent_of(v) == name)
        why = (
            f"{'reachable' if o.reachable else 'unreachable'}, keepalived "
            f"{_ka_word(o.keepalived_running)}, sees {o.gateways_seen}/{len(o.gateways)} "
            f"gateway(s), incumbent of {inc} split VIP(s), priority {prio}"
        )
        rows.append(Ranked(name, survivor_key(o, prio, inc), why))
    # Deterministic: best key first, then lowest name.
    rows.sort(key=lambda r: (tuple(-int(x) for x in r.key), r.name))
    return rows


def deciding_rule(best: Ranked, other: Ranked) -> str:
    """The first rule of the survivor order that separates the two, in words."""
    for rule, a, b in zip(RULES, best.key, other.key, strict=True):
        if a != b:
            if isinstance(a, bool):
                return rule
            return f"{rule} ({int(a)} > {int(b)})"
    return f"lowest name ({best.name} < {other.name}), all else equal"


def _ka_word(running: bool | None) -> str:
    return {True: "running", False: "stopped", None: "unknown"}[running]


def _maybe_fence(
    config: Config,
    cluster: ClusterConfig,
    obs: ClusterObservation,
    hist: ClusterHistory,
    split_vips: tuple[str, ...],
    holders: dict[str, tuple[str, ...]],
    now: datetime,
) -> tuple[FenceOrder | None, str]:
    a = config.arbiter
    inc = hist.incident
    if inc is None:
        return None, ""
    if a.confirm_after is not None:
        lasted = (now - hist.split_since).total_seconds() if hist.split_since else 0.0
        if hist.split_streak < 2 or lasted < a.confirm_after:
            return None, (f"waiting for confirmation ({lasted:.2f}s of {a.confirm_after}s, "
                          f"{hist.split_streak} observation(s))")
    elif hist.split_streak < a.confirm_rounds:
        return None, "waiting for confirmation"
    if inc.state is IncidentState.FENCING:
        return None, "a fence is already in flight"
    if inc.state is IncidentState.FENCED:
        return None, (
            "split brain persists although this incident was already fenced; "
            "not fencing twice: operator attention needed"
        )
    if inc.state is IncidentState.DECIDED:
        return None, f"dry run: decision already recorded ({inc.survivor} survives)"
    if inc.state is IncidentState.FENCE_FAILED:
        if inc.attempts >= a.max_fence_attempts:
            return None, (
                f"fence failed {inc.attempts} time(s): giving up, operator attention needed"
            )
        since = (now - inc.last_attempt_at).total_seconds() if inc.last_attempt_at else None
        if since is not None and since < a.fence_retry_after:
            return None, "last fence failed; waiting before retrying"
    assert inc.state in _FENCEABLE

    candidates = sorted({n for v in split_vips for n in holders[v]})
    ranking = rank_candidates(cluster, obs, hist, candidates, split_vips)
    survivor = ranking[0].name
    victims = [n for n in candidates if n != survivor]
    all_nodes = {n.name for n in cluster.nodes}

    # Guards: the rule must not be able to talk us into an unsafe fence.
    if survivor in hist.held_nodes:
        return None, f"refusing: best survivor {survivor} is itself held fenced"
    if all_nodes <= set(victims) | hist.held_nodes:
        return None, "refusing: fencing would leave no node of the cluster unfenced"
    seeing = {o.node for o in obs.nodes if o.gateways_seen > 0}
    if seeing and seeing <= set(victims):
        return None, (
            f"refusing: {', '.join(sorted(seeing))} would be fenced but "
            "is the only node that still sees a gateway"
        )

    actions = []
    for v in victims:
        o = obs.node(v)
        assert o is not None
        method = (
            FenceMethod.REMOVE_ADDRESS if o.keepalived_running is False
            else FenceMethod.STOP_KEEPALIVED
        )
        actions.append(VictimAction(node=v, method=method, vips=o.holds(cluster.vips)))
    beats = "; ".join(
        f"over {r.name} by rule: {deciding_rule(ranking[0], r)}" for r in ranking[1:]
    )
    reason = (
        f"{survivor} survives {beats}; "
        + ", ".join(
            f"{x.node} {'loses its stale VIP (keepalived is not running)' if x.method is FenceMethod.REMOVE_ADDRESS else 'has keepalived stopped'}"  # noqa: E501
            for x in actions
        )
    )
    order = FenceOrder(
        mode=FenceMode(cluster.fence_mode),
        cluster=cluster.name,
        survivor=survivor,
        victims=tuple(actions),
        vips=split_vips,
        reason=reason,
        ranking=tuple((r.name, r.why) for r in ranking),
        dry_run=a.dry_run,
    )
    return order, ("dry run: decision recorded, not acting" if a.dry_run else "fence due")


def _node_verdict(
    config: Config,
    cluster: ClusterConfig,
    o: NodeObservation | None,
    hist: ClusterHistory,
    abstain_reason: str | None,
) -> NodeAssessment:
    name = o.node if o else "?"
    health = o.health if o else Health.UNREACHABLE
    holds = o.holds(cluster.vips) if o else ()
    if abstain_reason:
        return NodeAssessment(name, health, holds, Verdict.ABSTAIN, abstain_reason)
    inc = hist.incident
    deny_reason = None
    if (inc is not None and name in inc.victims and not inc.released
            and inc.state is not IncidentState.DECIDED):
        deny_reason = (
            f"victim of open split-brain incident #{inc.id} ({inc.state.value}); "
            f"{inc.survivor} survives"
        )
    elif (h := hist.hold_of(name)) is not None:
        deny_reason = f"held fenced by incident #{h.incident} until released"
    if deny_reason:
        return NodeAssessment(name, health, holds, Verdict.DENY, deny_reason)
    if inc is not None and inc.state is IncidentState.DECIDED and name in inc.victims:
        return NodeAssessment(
            name, health, holds, Verdict.ALLOW, "dry run: would be denied as split-brain victim"
        )
    # Normal VRRP failover must never be hindered.
    return NodeAssessment(name, health, holds, Verdict.ALLOW, "no split brain involves this node")


# --- pure helpers the cycle uses to fold results back into history ----------


def carry_forward(
    prev: NodeObservation | None, new: NodeObservation, hold_seconds: float
) -> NodeObservation:
    """A node that answers ICMP but not SSH is degraded, not gone: keep its
    last seen addresses for ``hold_seconds`` so a dead sshd cannot hide a VIP."""
    if new.ssh_ok or not new.icmp_ok or prev is None or prev.addresses is None:
        return new
    seen_at = prev.addresses_seen_at or prev.observed_at
    if (new.observed_at - seen_at).total_seconds() > hold_seconds:
        return new
    return replace(
        new,
        addresses=prev.addresses,
        addresses_seen_at=seen_at,
        keepalived_running=prev.keepalived_running,
        gateways=prev.gateways,
    )


def fence_finished(
    hist: ClusterHistory, incident_id: int, ok: bool, held: tuple[str, ...], at: datetime
) -> ClusterHistory:
    """Fold an SSH fence's result in; ``held`` are the victims whose keepalived we stopped."""
    inc = hist.incident
    survivor = inc.survivor if inc is not None and inc.id == incident_id else None
    holds = tuple(
        Hold(n, incident_id, survivor or "", FenceMode.SSH, True) for n in held
    )
    merged = _add_holds(hist.held, holds)
    if inc is None or inc.id != incident_id:
        return hist.with_(held=merged)  # resolved meanwhile; still remember who is held
    state = IncidentState.FENCED if ok else IncidentState.FENCE_FAILED
    return hist.with_(incident=replace(inc, state=state, last_attempt_at=at), held=merged)


def _add_holds(held: tuple[Hold, ...], new: tuple[Hold, ...]) -> tuple[Hold, ...]:
    have = {h.node for h in held}
    return held + tuple(h for h in new if h.node not in have)


def hold(hist: ClusterHistory, h: Hold) -> ClusterHistory:
    return hist.with_(held=_add_holds(hist.held, (h,)))


def release(hist: ClusterHistory, node: str, incident_id: int | None = None) -> ClusterHistory:
    """Lift the hold on ``node``; if its incident is still open, stop denying its victims."""
    inc = hist.incident
    if inc is not None and incident_id is not None and inc.id == incident_id:
        inc = replace(inc, released=True)
    return hist.with_(
        incident=inc,
        held=tuple(h for h in hist.held if h.node != node),
        release_streaks=tuple((n, c) for n, c in hist.release_streaks if n != node),
    )
