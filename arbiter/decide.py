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

from datetime import datetime

from arbiter import incident_fsm
from arbiter.config import ClusterConfig, Config
from arbiter.effects import (
    ChangeState,
    Effect,
    OpenIncident,
    RecordDecision,
    Recover,
    ReleaseHold,
    SaveClusterMemory,
    StartFence,
    ref_of,
)
from arbiter.holds import auto_release, gate_progress
from arbiter.model import (
    Assessment,
    ClusterAssessment,
    ClusterHistory,
    ClusterObservation,
    FenceMethod,
    FenceMode,
    FencePlan,
    Health,
    History,
    IncidentKind,
    IncidentMemory,
    IncidentState,
    NodeAssessment,
    NodeObservation,
    Snapshot,
    Verdict,
    VictimAction,
)
from arbiter.survivor import deciding_rule, rank_candidates

# Incident states from which a (new or retried) fence may be ordered.
_FENCEABLE = (IncidentState.OPEN, IncidentState.FENCE_FAILED)
S = IncidentState


def assess(config: Config, snapshot: Snapshot, history: History, now: datetime) -> Assessment:
    abstain_reason = _abstain_reason(snapshot)
    clusters = []
    for cluster in config.clusters:
        obs = snapshot.cluster(cluster.name) or ClusterObservation(cluster.name, ())
        clusters.append(
            assess_cluster(config, cluster, obs, history.cluster(cluster.name), abstain_reason, now)
        )
    isolated = not snapshot.self_check.sees_gateway
    effects: tuple[Effect, ...] = ()
    if isolated and history.isolated_incident is None:
        effects = (OpenIncident(IncidentKind.ARBITER_ISOLATED,
                                abstain_reason or "arbiter isolated"),)
    elif not isolated and history.isolated_incident is not None:
        effects = (ChangeState(history.isolated_incident, S.OPEN, S.RESOLVED,
                               "arbiter reaches a gateway again"),)
    return Assessment(at=now, abstain_reason=abstain_reason, clusters=tuple(clusters),
                      effects=effects)


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
    effects: list[Effect] = []
    fence: FencePlan | None = None
    reason: str

    nxt, gate_effects = gate_progress(config, cluster, obs, hist, now)
    effects.extend(gate_effects)

    # --- split-brain bookkeeping -------------------------------------------
    if split_vips and abstain_reason is None:
        streak = hist.split_streak + 1
        since = hist.split_since if hist.split_streak > 0 and hist.split_since else now
        old = nxt.incident
        if old is not None and old.released:
            # Split brain after a release is a new incident (with its own fence), not
            # the old one that must never be fenced twice.
            effects.append(ChangeState(ref_of(old), old.state, S.RESOLVED,
                                       "split brain again after a release: a new incident"))
            nxt = nxt.with_(incident=None)
            streak, since = 1, now
        nxt = nxt.with_(split_streak=streak, clean_streak=0, split_since=since)
        progress = (f"round {streak} of {config.arbiter.confirm_rounds}"
                    if config.arbiter.confirm_after is None else f"observation {streak}")
        reason = (
            f"split brain on {', '.join(split_vips)} "
            f"({'; '.join(f'{v} held by ' + ' and '.join(holders[v]) for v in split_vips)}), "
            f"{progress}"
        )
        if nxt.incident is None:
            effects.append(OpenIncident(IncidentKind.SPLIT_BRAIN, reason, split_vips))
            nxt = nxt.with_(incident=IncidentMemory(id=None, state=S.OPEN))
    elif split_vips:
        # Evidence gathered while we may be the isolated one is not evidence: the
        # clock of confirm_after starts again too.
        nxt = nxt.with_(split_streak=0, clean_streak=0, split_since=None)
        reason = f"split brain seen on {', '.join(split_vips)} but {abstain_reason}"
    else:
        nxt = nxt.with_(split_streak=0, split_since=None, clean_streak=hist.clean_streak + 1)
        reason = "no split brain"
        inc = nxt.incident
        if inc is not None and inc.state is not S.FENCING:
            if nxt.clean_streak >= config.arbiter.resolve_rounds:
                reason = f"split brain gone for {nxt.clean_streak} rounds: resolved"
                effects.append(ChangeState(ref_of(inc), inc.state, S.RESOLVED, reason))
                nxt = nxt.with_(incident=None)
            else:
                reason = (
                    f"split brain gone, {nxt.clean_streak} of "
                    f"{config.arbiter.resolve_rounds} clean rounds before resolving"
                )
        # Only an uncontested round teaches us who the incumbent is: one in which
        # every node's addresses were read just now. A node whose SSH failed (or whose
        # addresses are carried forward) is unknown, not "without the VIP" (found by
        # the soak: lb1 still reconnecting after an isolation made lb2 "incumbent").
        seen_all = len(obs.nodes) == len(cluster.nodes) and all(
            n.addresses is not None and not n.carried_forward for n in obs.nodes)
        if abstain_reason is None and seen_all:
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
            inc = nxt.incident
            assert inc is not None
            attempt = inc.attempts + (0 if fence.dry_run else 1)
            dst = S.DECIDED if fence.dry_run else S.FENCING
            intended = () if fence.dry_run or fence.mode is not FenceMode.SSH else tuple(
                v.node for v in fence.victims if v.method is FenceMethod.STOP_KEEPALIVED)
            effects.append(RecordDecision(ref_of(inc), inc.state, dst, fence, attempt, intended))
            if not fence.dry_run and fence.mode is FenceMode.SSH:
                effects.append(StartFence(ref_of(inc), fence, attempt))
            nxt = nxt.with_(incident=incident_fsm.advance(
                inc, dst, survivor=fence.survivor,
                victims=tuple(v.node for v in fence.victims), attempts=attempt,
                last_attempt_at=inc.last_attempt_at if fence.dry_run else now,
                mode=fence.mode,
            ))

    # --- orphaned VIPs -----------------------------------------------------
    if orphan_vips and abstain_reason is None:
        nxt = nxt.with_(orphan_streak=hist.orphan_streak + 1)
        notes.append(f"orphaned VIP(s) {', '.join(orphan_vips)}: held by no node")
        if nxt.orphan_streak >= config.arbiter.confirm_rounds and hist.orphan_incident is None:
            effects.append(OpenIncident(IncidentKind.ORPHAN_VIP, "; ".join(notes), orphan_vips))
    elif not orphan_vips:
        nxt = nxt.with_(orphan_streak=0)
        if hist.orphan_incident is not None:
            effects.append(ChangeState(hist.orphan_incident, S.OPEN, S.RESOLVED,
                                       "every VIP has a holder again"))
            nxt = nxt.with_(orphan_incident=None)

    if abstain_reason is None and not split_vips:
        nxt, releases, rel_notes = auto_release(config, cluster, obs, nxt, now)
        notes.extend(rel_notes)
        for h, why in releases:
            effects.append(ReleaseHold(h, why))
            if h.keepalived_stopped:
                effects.append(Recover(h, "auto"))

    nodes = tuple(
        _node_verdict(config, cluster, obs.node(n.name), nxt, abstain_reason)
        for n in cluster.nodes
    )
    verdicts = tuple((n.node, n.verdict.value) for n in nodes)
    epoch_changed = verdicts != hist.verdicts
    nxt = nxt.with_(verdicts=verdicts, epoch=hist.epoch + (1 if epoch_changed else 0))
    if epoch_changed or nxt.incumbents != hist.incumbents:
        effects.append(SaveClusterMemory(nxt.epoch, nxt.incumbents))
    return ClusterAssessment(
        cluster=cluster.name,
        nodes=nodes,
        holders=tuple(holders.items()),
        split_vips=split_vips,
        orphan_vips=orphan_vips,
        reason=reason,
        next_history=nxt,
        fence=fence,
        notes=tuple(notes),
        effects=tuple(effects),
    )


def _maybe_fence(
    config: Config,
    cluster: ClusterConfig,
    obs: ClusterObservation,
    hist: ClusterHistory,
    split_vips: tuple[str, ...],
    holders: dict[str, tuple[str, ...]],
    now: datetime,
) -> tuple[FencePlan | None, str]:
    a = config.arbiter
    inc = hist.incident
    if inc is None:
        return None, ""
    # Confirmation spans time as well as observations: rounds woken by events can come
    # min_round_gap apart, and a normal handover's overlap must never look confirmed.
    lasted = (now - hist.split_since).total_seconds() if hist.split_since else 0.0
    need_obs = 2 if a.confirm_after is not None else a.confirm_rounds
    if hist.split_streak < need_obs or lasted < config.confirm_span:
        return None, (f"waiting for confirmation ({lasted:.2f}s of {config.confirm_span:g}s, "
                      f"{hist.split_streak} of {need_obs} observations)")
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
    order = FencePlan(
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
