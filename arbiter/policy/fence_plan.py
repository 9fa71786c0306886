"""Which fence is due this round, if any: confirmation, the state of the incident,
the survivor rule, and the guards that no rule can talk past. Pure; part of the
policy that ``decide.assess`` runs.

- ``maybe_fence``: a split brain confirmed over time, ranked by the survivor rule;
- ``_after_fence``: after the fence, a victim claims the VIP again, or a node that was
  not part of the split claims it while the survivor holds it;
- ``_plan``: the guards, and how each victim is fenced.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from arbiter.config import ClusterConfig, Config
from arbiter.model import (
    ClusterHistory,
    ClusterObservation,
    FenceMethod,
    FenceMode,
    FencePlan,
    IncidentState,
    VictimAction,
)
from arbiter.policy.incident_fsm import AFTER_FENCE
from arbiter.policy.liveness import Keepalived, keepalived_state, runs
from arbiter.policy.quorum import ClusterView
from arbiter.policy.survivor import deciding_rule, rank_candidates

# Incident states from which a (new or retried) fence may be ordered.
_FENCEABLE = (IncidentState.OPEN, IncidentState.FENCE_FAILED)


def maybe_fence(
    config: Config,
    cluster: ClusterConfig,
    obs: ClusterObservation,
    hist: ClusterHistory,
    split_vips: tuple[str, ...],
    holders: dict[str, tuple[str, ...]],
    now: datetime,
    peers: Mapping[str, ClusterView] | None = None,
) -> tuple[FencePlan | None, str]:
    """``peers`` ([ha]): the other arbiters' fresh views, for the survivor rule."""
    a = config.arbiter
    inc = hist.incident
    if inc is None:
        return None, ""
    if inc.state in AFTER_FENCE:
        return _after_fence(config, cluster, obs, hist, split_vips, holders, now)
    # Confirmation spans time as well as observations: rounds woken by events can come
    # min_round_gap apart, and a normal handover's overlap must never look confirmed.
    # keepalived's own view can tell the two apart (``hist.view_split``): two masters
    # that cannot hear each other need no span, only the observations.
    lasted = (now - hist.split_since).total_seconds() if hist.split_since else 0.0
    need_obs = 2 if a.confirm_after is not None else a.confirm_rounds
    span = 0.0 if hist.view_split else config.confirm_span
    if hist.split_streak < need_obs or lasted < span:
        return None, (f"waiting for confirmation ({lasted:.2f}s of {span:g}s, "
                      f"{hist.split_streak} of {need_obs} observations)")
    if inc.state is IncidentState.FENCING:
        return None, "a fence is already in flight"
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
    ranking = rank_candidates(cluster, obs, hist, candidates, split_vips, peers)
    survivor = ranking[0].name
    victims = [n for n in candidates if n != survivor]
    beats = "; ".join(
        f"over {r.name} by rule: {deciding_rule(ranking[0], r, peers is not None)}"
        for r in ranking[1:]
    )
    confirmed = f" (split confirmed by keepalived: {hist.view_split})" if hist.view_split else ""
    return _plan(config, cluster, obs, hist, survivor, victims, split_vips,
                 f"{survivor} survives {beats}{confirmed}",
                 tuple((r.name, r.why) for r in ranking))


def _after_fence(
    config: Config,
    cluster: ClusterConfig,
    obs: ClusterObservation,
    hist: ClusterHistory,
    split_vips: tuple[str, ...],
    holders: dict[str, tuple[str, ...]],
    now: datetime,
) -> tuple[FencePlan | None, str]:
    """A split after this incident's fence, while the survivor still holds the VIP.
    The survivor never changes within an incident. Who else holds it is either:

    - a **victim** re-claiming (held, or released automatically): this very split was
      confirmed already, so two observations in a row, and it is held for an operator;
      a victim that holds it again before the incident is over (``fenced``) is not
      fenced twice;
    - a **new claimant**, not part of the split when it was decided (a third director
      whose master-down ended after the fence): confirmed in the usual way on its own
      observations (keepalived's view, or the observations and the span), then fenced
      in the same incident and added to its victims (issue 28).
    """
    inc = hist.incident
    assert inc is not None and inc.survivor is not None
    survivor = inc.survivor
    others = sorted({n for v in split_vips for n in holders[v]} - {survivor})
    if not all(survivor in holders[v] for v in split_vips):
        return None, (f"split brain not between incident #{inc.id}'s survivor "
                      f"{survivor} and other nodes while it is {inc.state.value}: "
                      "operator attention needed")
    new = [n for n in others if n not in inc.victims]
    back = [n for n in others if n in inc.victims]
    if inc.state is IncidentState.FENCED and back:
        if not new:
            return None, ("split brain persists although this incident was already fenced; "
                          "not fencing twice: operator attention needed")
        back = []  # a victim its own fence did not keep down waits for an operator
    waiting = [_unconfirmed(config, hist, n, now, n in back) for n in new + back]
    if any(waiting):
        return None, "; ".join(w for w in waiting if w)
    vips = ", ".join(split_vips)
    parts = []
    if back:
        how = ("after its automatic release" if inc.state is IncidentState.WATCHING
               else "while held")
        parts.append(f"re-claim: {', '.join(back)} claimed {vips} again {how} while "
                     f"{survivor} holds it; {survivor} survives as decided in incident "
                     f"#{inc.id}, and the victim is held for an operator")
    for n in new:
        parts.append(f"{n} claimed {vips} while {survivor}, the survivor of incident "
                     f"#{inc.id}, holds it: part of the same split"
                     + (f" (confirmed by keepalived: {hist.view_split})"
                        if hist.view_split else ""))
    return _plan(config, cluster, obs, hist, survivor, back + new, split_vips,
                 "; ".join(parts), ((survivor, "survivor of this incident"),))


def _unconfirmed(config: Config, hist: ClusterHistory, node: str, now: datetime,
                 victim: bool) -> str:
    """Why ``node``'s claim is not confirmed yet ("" once it is): a victim's re-claim
    needs two observations; a new claimant the usual confirmation, on its own count."""
    count, since = hist.claim_of(node)
    if victim:
        return "" if count >= 2 else f"{node} claims the VIP again: confirming once more"
    a = config.arbiter
    need = 2 if a.confirm_after is not None else a.confirm_rounds
    span = 0.0 if hist.view_split else config.confirm_span
    lasted = (now - since).total_seconds() if since else 0.0
    if count >= need and lasted >= span:
        return ""
    return (f"{node} claims the VIP too: confirming ({lasted:.2f}s of {span:g}s, "
            f"{count} of {need} observations)")


def _plan(
    config: Config,
    cluster: ClusterConfig,
    obs: ClusterObservation,
    hist: ClusterHistory,
    survivor: str,
    victims: list[str],
    split_vips: tuple[str, ...],
    why: str,
    ranking: tuple[tuple[str, str], ...],
) -> tuple[FencePlan | None, str]:
    """The fence of ``victims``, if the guards allow it."""
    a = config.arbiter
    all_nodes = {n.name for n in cluster.nodes}
    # Guards: the rule must not be able to talk us into an unsafe fence.
    if survivor in hist.held_nodes:
        return None, f"refusing: best survivor {survivor} is itself held fenced"
    if all_nodes <= set(victims) | hist.held_nodes:
        return None, "refusing: fencing would leave no node of the cluster unfenced"
    working = {o.node for o in obs.nodes if runs(o) is True}
    if working and working <= set(victims):
        return None, (
            f"refusing: {', '.join(sorted(working))} would be fenced but its keepalived "
            "is the only one that still works"
        )
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
        # a stopped keepalived: only its stale VIP to take; a frozen or hung one is
        # stopped too (the signal stays pending, so it exits if it ever resumes)
        # and the escalation takes the VIP by hand
        method = (
            FenceMethod.REMOVE_ADDRESS
            if keepalived_state(o)[0] is Keepalived.STOPPED
            else FenceMethod.STOP_KEEPALIVED
        )
        actions.append(VictimAction(node=v, method=method, vips=o.holds(cluster.vips)))
    reason = (
        f"{why}; "
        + ", ".join(
            f"fence: {action_words(x)}" for x in actions
        )
    )
    order = FencePlan(
        mode=FenceMode(cluster.fence_mode),
        cluster=cluster.name,
        survivor=survivor,
        victims=tuple(actions),
        vips=split_vips,
        reason=reason,
        ranking=ranking,
        dry_run=a.dry_run,
    )
    return order, ("dry run: decision recorded, not acting" if a.dry_run else "fence due")


def action_words(x: VictimAction) -> str:
    """What fencing does to one victim, in words: "stop keepalived on lb2"."""
    if x.method is FenceMethod.REMOVE_ADDRESS:
        return f"remove the stale VIP from {x.node} (keepalived is not running there)"
    return f"stop keepalived on {x.node}"
