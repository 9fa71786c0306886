"""The policy for held victims: when a gate-mode fence is done or failed, and when
a held victim has healed and is released. Pure, like the rest of the policy.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from arbiter.config import ClusterConfig, Config
from arbiter.model import (
    ClusterHistory,
    ClusterObservation,
    FenceMode,
    Hold,
    IncidentState,
)
from arbiter.policy import incident_fsm
from arbiter.policy.effects import ChangeState, Effect, ref_of
from arbiter.policy.liveness import hung

S = IncidentState



def gate_progress(
    config: Config, cluster: ClusterConfig, obs: ClusterObservation, hist: ClusterHistory,
    now: datetime,
) -> tuple[ClusterHistory, tuple[Effect, ...]]:
    """Gate mode has no fence command to wait for: the fence is done when the
    victims are seen without the VIPs, and failed when they keep them too long."""
    inc = hist.incident
    if inc is None or inc.mode is not FenceMode.GATE or inc.state is not S.FENCING:
        return hist, ()
    still = [v for v in inc.victims
             if (o := obs.node(v)) is not None and o.holds(cluster.vips)]
    unknown = [v for v in inc.victims if (o := obs.node(v)) is None or o.addresses is None]
    if not still and not unknown:
        held = hist.held + tuple(
            Hold(v, inc.id or 0, inc.survivor or "", FenceMode.GATE, False)
            for v in inc.victims if v not in hist.held_nodes
        )
        msg = f"{', '.join(inc.victims)} dropped the VIP(s) after the gate denied them"
        return (hist.with_(incident=incident_fsm.advance(inc, S.FENCED), held=held),
                (ChangeState(ref_of(inc), S.FENCING, S.FENCED, msg, inc.victims),))
    waited = (now - inc.last_attempt_at).total_seconds() if inc.last_attempt_at else 0.0
    if waited > config.arbiter.fence_verify_timeout:
        msg = (f"{', '.join(still or unknown)} still hold(s) the VIP {waited:.1f}s after the "
               "gate denied it: is arbiter-gate wired into its keepalived?")
        return (hist.with_(incident=incident_fsm.advance(inc, S.FENCE_FAILED,
                                                         last_attempt_at=now)),
                (ChangeState(ref_of(inc), S.FENCING, S.FENCE_FAILED, msg),))
    return hist, ()


def auto_release(
    config: Config, cluster: ClusterConfig, obs: ClusterObservation, hist: ClusterHistory,
    now: datetime,
) -> tuple[ClusterHistory, tuple[tuple[Hold, str], ...], list[str], tuple[Effect, ...]]:
    """A held victim is healed when, for release_rounds rounds in a row, it has
    reached the survivor and a gateway again from its own vantage. Returns the
    memory, the releases, notes, and the incident's move to WATCHING."""
    a = config.arbiter
    inc = hist.incident
    streaks = dict(hist.release_streaks)
    released_at = dict(hist.auto_released_at)
    releases: list[tuple[Hold, str]] = []
    notes: list[str] = []
    keep: list[Hold] = []
    for h in hist.held:
        o = obs.node(h.node)
        surv = cluster.node(h.survivor)
        # a frozen or hung keepalived does not heal with the network: its hold waits
        # until it is gone (an operator's SIGCONT lets the pending stop take it)
        healed = bool(
            o is not None and o.ssh_ok and o.gateways_seen > 0 and surv is not None
            and dict(o.peers).get(surv.address, False) and not hung(o)
        )
        streaks[h.node] = streaks.get(h.node, 0) + 1 if healed else 0
        if streaks[h.node] < a.release_rounds or not a.auto_release:
            keep.append(h)
            continue
        if h.operator_only:
            notes.append(f"{h.node} reaches {h.survivor} and a gateway again, but it claimed "
                         "the VIP again after an automatic release and was re-fenced: "
                         "waiting for an operator")
            keep.append(h)
            continue
        if inc is not None and inc.id == h.incident and inc.state is S.FENCING:
            keep.append(h)  # its incident's fence is still out: release after it
            continue
        last = released_at.get(h.node)
        if last is not None and (now - last).total_seconds() < a.release_cooldown:
            notes.append(
                f"{h.node} reaches {h.survivor} and a gateway again, but it was released "
                "automatically "
                f"{(now - last).total_seconds():.0f}s ago and split again: waiting for an operator"
            )
            keep.append(h)
            continue
        why = (f"{h.node} reached {h.survivor} and its gateway for {streaks[h.node]} rounds "
               "in a row: released automatically")
        releases.append((h, why))
        released_at[h.node] = now
        streaks.pop(h.node)
    effects: list[Effect] = []
    if (inc is not None and any(h.incident == inc.id for h, _ in releases)
            and not any(h.incident == inc.id for h in keep)):
        # Every victim of the incident is free again, but it stays watched: a claim of
        # the VIP while the survivor holds it is re-fenced at once (issue 11).
        if incident_fsm.legal(inc.state, S.WATCHING):
            effects.append(ChangeState(ref_of(inc), inc.state, S.WATCHING,
                                       f"{', '.join(inc.victims)} released automatically; "
                                       "a new claim of the VIP is re-fenced at once"))
            inc = incident_fsm.advance(inc, S.WATCHING)
        else:
            inc = replace(inc, released=True)
    return (
        hist.with_(incident=inc, held=tuple(keep),
                   release_streaks=tuple(sorted(streaks.items())),
                   auto_released_at=tuple(sorted(released_at.items()))),
        tuple(releases),
        notes,
        tuple(effects),
    )
