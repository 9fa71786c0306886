"""The arbitration policy: pure functions, no I/O, no clock.

``assess(config, snapshot, history, now)`` looks at one immutable snapshot and
the memory of earlier rounds, and returns what is true now, what each node's
verdict is, and whether a fence is due, each with a readable reason.

Safety rules that hold for every input (see tests/unit/test_invariants.py):
- never fence every node of a cluster;
- never fence while abstaining (arbiter isolated, or in TILT);
- never fence the only node that still sees a gateway;
- never fence before ``confirm_rounds`` consecutive rounds of split brain (a victim's
  re-claim of a split its incident already confirmed: two observations);
- at most one fence in flight per cluster, and never a second fence for a split that
  persists after its fence (a re-claim after a release is fenced again, in the same
  incident, and then held for an operator).

The fence decision itself lives in ``fence_plan``; the verdicts in ``verdicts``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from arbiter.config import ClusterConfig, Config
from arbiter.model import (
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
    Pause,
    Snapshot,
)
from arbiter.policy import incident_fsm
from arbiter.policy.assessment import Assessment, ClusterAssessment
from arbiter.policy.effects import (
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
from arbiter.policy.fence_plan import maybe_fence
from arbiter.policy.holds import auto_release, gate_progress
from arbiter.policy.quorum import Quorum, compact, judge
from arbiter.policy.verdicts import exclusive_rulings, guarded_vips, node_verdict
from arbiter.policy.view_health import failing_views
from arbiter.policy.vrrp import split_by_view

S = IncidentState


def assess(config: Config, snapshot: Snapshot, history: History, now: datetime,
           quorum: Quorum | None = None, pauses: tuple[Pause, ...] = ()) -> Assessment:
    """``quorum`` ([ha]): the other arbiters' fresh views; a fence needs enough of them.
    ``pauses``: maintenance pauses in force; nothing is fenced in their scope."""
    abstain_reason = abstain_reason_of(snapshot)
    clusters = []
    for cluster in config.clusters:
        obs = snapshot.cluster(cluster.name) or ClusterObservation(cluster.name, ())
        clusters.append(
            assess_cluster(config, cluster, obs, history.cluster(cluster.name), abstain_reason,
                           now, quorum,
                           next((p for p in pauses if p.covers(cluster.name, now)), None))
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


def abstain_reason_of(snapshot: Snapshot) -> str | None:
    """Why this arbiter's round is no evidence (isolated, TILT), or None."""
    sc = snapshot.self_check
    if not sc.sees_gateway:
        gws = ", ".join(g for g, _ in sc.gateways) or "none configured"
        return f"arbiter isolated: none of its gateways answers ICMP ({gws})"
    if sc.tilt_reason:
        return f"TILT: {sc.tilt_reason}"
    return None


def holders_by_vip(cluster: ClusterConfig, obs: ClusterObservation) -> dict[str, tuple[str, ...]]:
    """Who holds each VIP: by its addresses over SSH, and by the MAC that answers ARP
    for it (the ARP view), so a node whose SSH is down still counts."""
    out: dict[str, tuple[str, ...]] = {}
    for vip in cluster.vips:
        by_ssh = {n.node for n in obs.nodes if vip in n.holds(cluster.vips)}
        by_arp = set(obs.arp.nodes_for(vip)) if obs.arp is not None else set()
        out[vip] = tuple(sorted(by_ssh | by_arp))
    return out


def _held_by(vip: str, holders: tuple[str, ...], obs: ClusterObservation) -> str:
    text = f"{vip} held by " + " and ".join(holders)
    if obs.arp is not None and len(obs.arp.macs(vip)) >= 2:
        text += f" ({obs.arp.describe(vip)})"  # split brain seen at layer 2
    return text



def assess_cluster(
    config: Config,
    cluster: ClusterConfig,
    obs: ClusterObservation,
    hist: ClusterHistory,
    abstain_reason: str | None,
    now: datetime,
    quorum: Quorum | None = None,
    pause: Pause | None = None,
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
        nxt = nxt.with_(split_streak=streak, clean_streak=0, split_since=since,
                        clean_since=None,
                        claims=_claims(nxt.claims if streak > 1 else (), holders,
                                       split_vips, now))
        progress = (f"round {streak} of {config.arbiter.confirm_rounds}"
                    if config.arbiter.confirm_after is None else f"observation {streak}")
        reason = (
            f"split brain on {', '.join(split_vips)} "
            f"({'; '.join(_held_by(v, holders[v], obs) for v in split_vips)}), "
            f"{progress}"
        )
        if nxt.incident is None:
            during = f"; detected during a maintenance pause: {pause.describe()}" \
                if pause is not None else ""
            effects.append(OpenIncident(IncidentKind.SPLIT_BRAIN, reason + during, split_vips))
            nxt = nxt.with_(incident=IncidentMemory(id=None, state=S.OPEN))
    elif split_vips:
        # Evidence gathered while we may be the isolated one is not evidence: the
        # clock of confirm_after starts again too.
        nxt = nxt.with_(split_streak=0, clean_streak=0, split_since=None, clean_since=None,
                        claims=())
        reason = f"split brain seen on {', '.join(split_vips)} but {abstain_reason}"
    else:
        nxt = nxt.with_(split_streak=0, split_since=None, clean_streak=hist.clean_streak + 1,
                        clean_since=hist.clean_since if hist.clean_streak else now, claims=())
        # never "no split brain" while a node is held: the operator may still owe work
        reason = ("one holder per VIP; " + ", ".join(sorted(nxt.held_nodes)) + " held"
                  if nxt.held else "no split brain")
        inc = nxt.incident
        if inc is not None and inc.state in incident_fsm.RECLAIMABLE:
            nxt, reason = _after_split(config, nxt, now, effects)
        elif inc is not None and inc.state is not S.FENCING:
            # Like confirmation, resolution spans time: rounds woken early by events
            # must not resolve an incident (and so open a new one for the heal's
            # handover overlap) sooner than resolve_rounds scheduled rounds would.
            clean_for = (now - nxt.clean_since).total_seconds() if nxt.clean_since else 0.0
            span = (config.arbiter.resolve_rounds - 1) * config.arbiter.interval
            if nxt.clean_streak >= config.arbiter.resolve_rounds and clean_for >= span:
                held = [h.node for h in nxt.held if h.incident == inc.id]
                if held and inc.state in (S.FENCED, S.FENCE_FAILED):
                    # not resolved while it holds a node: its state says it waits
                    reason = (f"split brain gone for {nxt.clean_streak} rounds; "
                              f"{', '.join(held)} held until released")
                    effects.append(ChangeState(ref_of(inc), inc.state, S.HELD, reason))
                    nxt = nxt.with_(incident=incident_fsm.advance(inc, S.HELD))
                else:
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

    # keepalived's own view: two masters that cannot hear each other are a split, not
    # a handover, and need no confirmation span (two observations still)
    seen = split_by_view(cluster, obs, split_vips, holders, now,
                         config.arbiter.keepalived_watch_every) \
        if split_vips and abstain_reason is None and cluster.keepalived_view else None
    nxt = nxt.with_(view_split=seen)

    # --- fence decision ----------------------------------------------------
    if split_vips and abstain_reason is None:
        fence, why = maybe_fence(config, cluster, obs, nxt, split_vips, holders, now,
                                 quorum.views_of(cluster.name) if quorum else None)
        if fence is not None and quorum is not None:
            fence, views = judge(quorum, cluster, compact(cluster, obs), split_vips, fence)
            if fence is not None:
                fence = replace(fence, reason=f"{views}: {fence.reason}")
            else:
                why = views
        if fence is not None and pause is not None:
            # a pause switches fencing off, nothing else: the split stays confirmed, and
            # is fenced in the first round after the pause ends if it is still there
            fence, why = None, f"{pause.describe()}: not fencing until it ends"
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
                victims=victims_after(inc, fence), attempts=attempt,
                last_attempt_at=inc.last_attempt_at if fence.dry_run else now,
                mode=fence.mode, refenced=inc.refenced or _refences(inc, fence),
            ))

    # --- orphaned VIPs -----------------------------------------------------
    why = f"orphaned VIP(s) {', '.join(orphan_vips)}: held by no node"
    if orphan_vips and abstain_reason is None:
        notes.append(why)
    streak, standing = _standing(config, IncidentKind.ORPHAN_VIP, orphan_vips, why,
                                 hist.orphan_streak, hist.orphan_incident, abstain_reason,
                                 effects, "every VIP has a holder again")
    nxt = nxt.with_(orphan_streak=streak, orphan_incident=standing)

    # --- address conflicts (the ARP view) ------------------------------------
    # a MAC of no configured node answering for a VIP: alerted, never fenced (the
    # arbiter cannot fence what it does not manage)
    conflicts = tuple((v, obs.arp.strangers(v)) for v in cluster.vips
                      if obs.arp is not None and obs.arp.strangers(v))
    why = ("address conflict: " + "; ".join(obs.arp.describe(v) for v, _ in conflicts)
           + "; a MAC of no configured node: not fenced, find that host"
           if obs.arp is not None and conflicts else "")
    if conflicts and abstain_reason is None:
        notes.append(why)
    streak, standing = _standing(config, IncidentKind.VIP_CONFLICT,
                                 tuple(v for v, _ in conflicts), why, hist.conflict_streak,
                                 hist.conflict_incident, abstain_reason, effects,
                                 "no foreign MAC answers for the VIPs any more")
    nxt = nxt.with_(conflict_streak=streak, conflict_incident=standing)

    # --- keepalived's view keeps failing (issue 29): the fallback rule, told ---------
    failing = failing_views(cluster, obs, now) if cluster.verdict == "exclusive" else ()
    why = ("keepalived's view failing: " + "; ".join(failing)
           + ": exclusive verdicts run on the fallback rule (deny every backup while "
           "the holder is healthy)") if failing else ""
    if failing and abstain_reason is None:
        notes.append(why)
    streak, standing = _standing(config, IncidentKind.VIEW_FAILING,
                                 tuple(cluster.vips) if failing else (), why,
                                 hist.view_fail_streak, hist.view_fail_incident,
                                 abstain_reason, effects, "keepalived's view works again")
    nxt = nxt.with_(view_fail_streak=streak, view_fail_incident=standing)

    if abstain_reason is None and not split_vips:
        nxt, releases, rel_notes, rel_effects = auto_release(config, cluster, obs, nxt, now)
        notes.extend(rel_notes)
        for h, why in releases:
            effects.append(ReleaseHold(h, why))
        effects.extend(rel_effects)  # the incident's move to WATCHING, after its releases
        effects.extend(Recover(h, "auto") for h, _ in releases if h.keepalived_stopped)

    guarded = guarded_vips(cluster, obs) \
        if cluster.verdict == "exclusive" and abstain_reason is None else {}
    rulings, denials = exclusive_rulings(cluster, obs, nxt, guarded, now,
                                         config.arbiter.keepalived_watch_every)
    nxt = nxt.with_(denials=denials)
    nodes = tuple(
        node_verdict(cluster, obs.node(n.name), n.name, nxt, abstain_reason, rulings)
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
        conflicts=conflicts,
    )


def _claims(before: tuple[tuple[str, int, datetime], ...], holders: dict[str, tuple[str, ...]],
            split_vips: tuple[str, ...], now: datetime) -> tuple[tuple[str, int, datetime], ...]:
    """Each node's run of consecutive observations holding a split VIP: one that
    joins later starts its own count (``fence_plan`` confirms a new claimant on it)."""
    prev = {n: (c, t) for n, c, t in before}
    out = []
    for n in sorted({n for v in split_vips for n in holders[v]}):
        c, t = prev.get(n, (0, now))
        out.append((n, c + 1, t))
    return tuple(out)


def victims_after(inc: IncidentMemory, fence: FencePlan) -> tuple[str, ...]:
    """The incident's victims once ``fence`` is decided: a fence after the first (a
    re-claim, a new claimant) adds to them; a first fence or a retry sets them."""
    new = tuple(v.node for v in fence.victims)
    if inc.state in incident_fsm.AFTER_FENCE:
        return tuple(dict.fromkeys(inc.victims + new))
    return new


def _refences(inc: IncidentMemory, fence: FencePlan) -> bool:
    """A victim fenced again after its hold (a re-claim): its holds wait for an
    operator. A new claimant's first fence is not a re-fence."""
    return inc.state in incident_fsm.RECLAIMABLE and \
        any(v.node in inc.victims for v in fence.victims)


def _standing(config: Config, kind: IncidentKind, vips: tuple[str, ...], why: str,
              streak: int, incident: int | None, abstain_reason: str | None,
              effects: list[Effect], over: str) -> tuple[int, int | None]:
    """An incident about a standing condition (an orphaned VIP, an address conflict):
    opened once it has lasted confirm_rounds rounds, resolved when it is gone, left
    alone while the arbiter abstains. Returns the next (streak, incident)."""
    if vips and abstain_reason is None:
        if streak + 1 >= config.arbiter.confirm_rounds and incident is None:
            effects.append(OpenIncident(kind, why, vips))
        return streak + 1, incident
    if not vips:
        if incident is not None:
            effects.append(ChangeState(incident, S.OPEN, S.RESOLVED, over))
        return 0, None
    return streak, incident


def _after_split(config: Config, hist: ClusterHistory, now: datetime,
                 effects: list[Effect]) -> tuple[ClusterHistory, str]:
    """A held incident waits for its release; a watched one (its victims released
    automatically) resolves once release_cooldown passed with no new claim."""
    inc = hist.incident
    assert inc is not None
    if inc.state is S.HELD:
        held = [h.node for h in hist.held if h.incident == inc.id]
        return hist, (f"split brain over; {', '.join(held) or 'a victim'} held by incident "
                      f"#{inc.id} until released")
    released = [t for n, t in hist.auto_released_at if n in inc.victims]
    since = (now - max(released)).total_seconds() if released else None
    cooldown = config.arbiter.release_cooldown
    if since is None or since >= cooldown:
        why = (f"no new claim for {cooldown:g}s after the automatic release: resolved")
        effects.append(ChangeState(ref_of(inc), S.WATCHING, S.RESOLVED, why))
        return hist.with_(incident=None), why
    return hist, (f"split brain over; watching {', '.join(inc.victims)} for "
                  f"{cooldown - since:.0f}s more after its automatic release "
                  "(a new claim is re-fenced at once)")
